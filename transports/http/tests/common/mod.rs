//! Helpers shared by the HTTP transport's integration tests.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use syncline_http::{ClientAuth, Fingerprint, Identity, ServerTrust};

/// The longest a test waits for one step.
pub const STEP: Duration = Duration::from_secs(10);

/// 127.0.0.1 port 0: a free port on the loopback interface.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Awaits `future`, failing the test if it takes longer than [`STEP`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(STEP, future).await {
        Ok(output) => output,
        Err(_) => panic!("gave up after {STEP:?} waiting for {what}"),
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost.
pub struct SelfSigned {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
}

/// Makes a fresh self-signed certificate with rcgen.
pub fn self_signed() -> SelfSigned {
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).expect("rcgen makes a certificate");
    SelfSigned {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
        cert_der: certified.cert.der().to_vec(),
    }
}

impl SelfSigned {
    /// The certificate and key as a server identity, through the PEM API.
    pub fn identity(&self) -> Identity {
        Identity::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
            .expect("rcgen's PEM parses")
    }

    /// Trust in this certificate as the only root.
    pub fn as_root(&self) -> ServerTrust {
        ServerTrust::roots_from_pem(self.cert_pem.as_bytes()).expect("rcgen's PEM parses")
    }

    /// Trust in exactly this certificate, by its fingerprint.
    pub fn pinned(&self) -> ServerTrust {
        ServerTrust::pinned(Fingerprint::of_certificate(&self.cert_der))
    }
}

/// A certificate authority and one client certificate it issued, for
/// mutual TLS.
pub struct ClientCa {
    /// The CA certificate, PEM: what the server trusts.
    pub ca_pem: String,
    /// The client's certificate, PEM.
    pub cert_pem: String,
    /// The client's private key, PEM.
    pub key_pem: String,
    /// The client's certificate, DER.
    pub cert_der: Vec<u8>,
}

/// Makes a fresh CA with rcgen, and a client certificate signed by it.
pub fn client_ca() -> ClientCa {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "test client CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().expect("a CA key");
    let ca = params.self_signed(&ca_key).expect("a CA certificate");
    let issuer = Issuer::new(params, ca_key);
    let mut leaf = CertificateParams::new(vec!["alice".to_owned()]).expect("leaf parameters");
    leaf.distinguished_name.push(DnType::CommonName, "alice");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().expect("a client key");
    let cert = leaf.signed_by(&key, &issuer).expect("a client certificate");
    ClientCa {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().to_vec(),
    }
}

impl ClientCa {
    /// Client certificates must chain to this CA.
    pub fn client_auth(&self) -> ClientAuth {
        ClientAuth::roots_from_pem(self.ca_pem.as_bytes()).expect("the CA PEM parses")
    }

    /// The client's certificate and key, through the PEM API.
    pub fn identity(&self) -> Identity {
        Identity::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
            .expect("rcgen's PEM parses")
    }
}
