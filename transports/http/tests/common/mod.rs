//! Helpers shared by the HTTP transport's integration tests.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

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
