//! TLS material: identities (a certificate chain and its key), fingerprints,
//! self-signed development certificates, and the ways each side decides whom
//! to trust. Everything uses the ring crypto provider, passed explicitly.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use syncline_transport::TransportError;

use crate::ALPN;
use crate::verify::{AnyClientCertificate, PinnedServerCertificate};

/// Why TLS material or a TLS configuration could not be loaded or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// PEM text is malformed.
    #[error("malformed PEM in {what}: {reason}")]
    Pem {
        /// Which input: a certificate chain, a private key, root certificates.
        what: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// The input holds no certificate.
    #[error("no certificate found in {what}")]
    NoCertificate {
        /// Which input.
        what: &'static str,
    },
    /// The input holds no private key.
    #[error("no private key found in {what}")]
    NoPrivateKey {
        /// Which input.
        what: &'static str,
    },
    /// A certificate was rejected (not parsable, or not usable as a root).
    #[error("invalid certificate: {reason}")]
    InvalidCertificate {
        /// Why.
        reason: String,
    },
    /// A private key was rejected (unsupported algorithm, or not matching its
    /// certificate).
    #[error("invalid private key: {reason}")]
    InvalidKey {
        /// Why.
        reason: String,
    },
    /// A fingerprint is not 32 bytes of hex.
    #[error("malformed fingerprint: {reason}")]
    Fingerprint {
        /// Why.
        reason: String,
    },
    /// A self-signed certificate could not be generated.
    #[error("cannot generate a certificate: {reason}")]
    Generate {
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("invalid TLS configuration: {reason}")]
    Config {
        /// Why.
        reason: String,
    },
}

/// A bad TLS setup is a local failure.
impl From<TlsError> for TransportError {
    fn from(error: TlsError) -> Self {
        TransportError::Local {
            reason: error.to_string(),
        }
    }
}

/// A certificate chain and the private key of its first (end-entity)
/// certificate: what a server proves itself with, and what a client presents
/// for mutual TLS.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// An identity from PEM text: `cert_chain_pem` holds the end-entity
    /// certificate first, then any intermediates; `key_pem` holds its private
    /// key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = certificates_from_pem(cert_chain_pem, "the certificate chain")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| match error {
            pem::Error::NoItemsFound => TlsError::NoPrivateKey {
                what: "the private key",
            },
            other => pem_error("the private key", other),
        })?;
        Self::new(chain, key)
    }

    /// An identity from PEM files, as [`Identity::from_pem`] reads them.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        Self::from_pem(&read(cert_chain.as_ref())?, &read(key.as_ref())?)
    }

    /// An identity from DER: the chain (end-entity certificate first) and a
    /// PKCS#8 private key.
    pub fn from_der(cert_chain: Vec<Vec<u8>>, pkcs8_key: Vec<u8>) -> Result<Self, TlsError> {
        if cert_chain.is_empty() {
            return Err(TlsError::NoCertificate {
                what: "the certificate chain",
            });
        }
        let chain = cert_chain.into_iter().map(CertificateDer::from).collect();
        Self::new(chain, PrivatePkcs8KeyDer::from(pkcs8_key).into())
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        // Load the key once now, so an unsupported or mismatched key fails
        // here with a clear error instead of at the first handshake.
        rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider()).map_err(
            |error| TlsError::InvalidKey {
                reason: error.to_string(),
            },
        )?;
        Ok(Identity { chain, key })
    }

    /// The DER of the end-entity certificate: what a server sees as
    /// [`PeerInfo::tls_identity`](syncline_transport::PeerInfo::tls_identity)
    /// when a client presents this identity.
    pub fn certificate_der(&self) -> &[u8] {
        // `new` is only reached with a non-empty chain.
        self.chain.first().map_or(&[], |cert| cert.as_ref())
    }

    /// The SHA-256 fingerprint of the end-entity certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_certificate(self.certificate_der())
    }

    pub(crate) fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.chain.clone()
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// Shows the certificate's fingerprint, never the key.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint())
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// The SHA-256 digest of a certificate's DER, as a client pins it.
///
/// Shown and parsed as 32 hex bytes; colons between bytes are optional when
/// parsing (`"AB:CD:…"` or `"abcd…"`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_certificate(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0u8; 32];
        // A SHA-256 digest is 32 bytes.
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }

    /// A fingerprint from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }

    /// The fingerprint's 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for Fingerprint {
    type Err = TlsError;

    fn from_str(text: &str) -> Result<Self, TlsError> {
        let digits: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
        if digits.len() != 64 {
            return Err(TlsError::Fingerprint {
                reason: format!("expected 64 hex digits, found {}", digits.len()),
            });
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let (Some(high), Some(low)) = (hex_value(pair[0]), hex_value(pair[1])) else {
                return Err(TlsError::Fingerprint {
                    reason: "not a hex digit".into(),
                });
            };
            *byte = high << 4 | low;
        }
        Ok(Fingerprint(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A self-signed certificate and its key, for development: the server serves
/// [`SelfSigned::identity`], clients pin [`SelfSigned::fingerprint`].
#[derive(Clone)]
pub struct SelfSigned {
    certificate_der: Vec<u8>,
    certificate_pem: String,
    key_der: Vec<u8>,
    key_pem: String,
}

impl SelfSigned {
    /// Generates an ECDSA P-256 key and a certificate for `subject_alt_names`
    /// (DNS names or IP addresses, such as `"localhost"`).
    pub fn generate(subject_alt_names: impl Into<Vec<String>>) -> Result<Self, TlsError> {
        let generated = rcgen::generate_simple_self_signed(subject_alt_names).map_err(|error| {
            TlsError::Generate {
                reason: error.to_string(),
            }
        })?;
        Ok(SelfSigned {
            certificate_der: generated.cert.der().to_vec(),
            certificate_pem: generated.cert.pem(),
            key_der: generated.signing_key.serialize_der(),
            key_pem: generated.signing_key.serialize_pem(),
        })
    }

    /// The certificate and key as an identity a server (or a mutual-TLS
    /// client) presents.
    pub fn identity(&self) -> Identity {
        Identity {
            chain: vec![CertificateDer::from(self.certificate_der.clone())],
            key: PrivatePkcs8KeyDer::from(self.key_der.clone()).into(),
        }
    }

    /// The certificate's SHA-256 fingerprint, for a client to pin.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_certificate(&self.certificate_der)
    }

    /// The certificate's DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    /// The certificate in PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The private key in PEM (PKCS#8). Keep it secret.
    pub fn private_key_pem(&self) -> &str {
        &self.key_pem
    }
}

/// Shows the fingerprint, never the key.
impl fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSigned")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// How a client decides to trust the server's certificate.
#[derive(Clone)]
pub struct ServerTrust(Trust);

#[derive(Clone)]
enum Trust {
    /// WebPKI verification against these roots, checking the server name.
    Roots(Arc<RootCertStore>),
    /// The end-entity certificate must have this fingerprint.
    Pinned(Fingerprint),
}

impl ServerTrust {
    /// Trusts exactly the server certificate with this SHA-256 fingerprint (a
    /// self-signed development certificate, say). The server must still prove
    /// it holds the certificate's key; names and expiry are not checked.
    pub fn pinned(fingerprint: Fingerprint) -> Self {
        ServerTrust(Trust::Pinned(fingerprint))
    }

    /// Trusts server certificates that chain to one of the CA certificates in
    /// `pem` and name the server, as browsers do.
    pub fn roots_from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        Ok(ServerTrust(Trust::Roots(roots_from_pem(pem)?)))
    }

    /// [`ServerTrust::roots_from_pem`] with the CA certificates read from a
    /// PEM file.
    pub fn roots_from_pem_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        Self::roots_from_pem(&read(path.as_ref())?)
    }

    /// [`ServerTrust::roots_from_pem`] with DER CA certificates.
    pub fn roots_from_der(
        certificates: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<Self, TlsError> {
        let certs = certificates.into_iter().map(CertificateDer::from).collect();
        Ok(ServerTrust(Trust::Roots(root_store(certs)?)))
    }
}

impl fmt::Debug for ServerTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Trust::Roots(roots) => write!(f, "ServerTrust::Roots({} certificates)", roots.len()),
            Trust::Pinned(fingerprint) => write!(f, "ServerTrust::Pinned({fingerprint})"),
        }
    }
}

/// Whether a server asks clients for a certificate (mutual TLS), and which it
/// accepts. The client's end-entity certificate reaches the service as
/// [`PeerInfo::tls_identity`](syncline_transport::PeerInfo::tls_identity).
#[derive(Clone, Default)]
pub struct ClientAuth(Auth);

#[derive(Clone, Default)]
enum Auth {
    #[default]
    None,
    Roots(Arc<RootCertStore>),
    AnyCertificate,
}

impl ClientAuth {
    /// Clients present no certificate (the default).
    pub fn none() -> Self {
        ClientAuth(Auth::None)
    }

    /// Clients must present a certificate that chains to one of the CA
    /// certificates in `pem`.
    pub fn roots_from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        Ok(ClientAuth(Auth::Roots(roots_from_pem(pem)?)))
    }

    /// [`ClientAuth::roots_from_pem`] with the CA certificates read from a PEM
    /// file.
    pub fn roots_from_pem_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        Self::roots_from_pem(&read(path.as_ref())?)
    }

    /// [`ClientAuth::roots_from_pem`] with DER CA certificates.
    pub fn roots_from_der(
        certificates: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<Self, TlsError> {
        let certs = certificates.into_iter().map(CertificateDer::from).collect();
        Ok(ClientAuth(Auth::Roots(root_store(certs)?)))
    }

    /// Clients must present a certificate and prove they hold its key; any
    /// certificate is accepted, and the service decides whom it serves from
    /// [`PeerInfo::tls_identity`](syncline_transport::PeerInfo::tls_identity)
    /// (pinning clients by [`Fingerprint`], for instance).
    pub fn any_certificate() -> Self {
        ClientAuth(Auth::AnyCertificate)
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Auth::None => f.write_str("ClientAuth::None"),
            Auth::Roots(roots) => write!(f, "ClientAuth::Roots({} certificates)", roots.len()),
            Auth::AnyCertificate => f.write_str("ClientAuth::AnyCertificate"),
        }
    }
}

/// The ring provider, the only one this crate uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration of a client: TLS 1.3, ALPN `syncline/1`.
pub(crate) fn client_crypto(
    trust: &ServerTrust,
    identity: Option<&Identity>,
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?;
    let builder = match &trust.0 {
        Trust::Roots(roots) => builder.with_root_certificates(roots.clone()),
        Trust::Pinned(fingerprint) => {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedServerCertificate::new(
                    *fingerprint,
                    &provider,
                )))
        }
    };
    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain(), identity.key())
            .map_err(config_error)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// The rustls configuration of a server: TLS 1.3, ALPN `syncline/1`, no 0-RTT.
pub(crate) fn server_crypto(
    identity: &Identity,
    client_auth: &ClientAuth,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?;
    let builder = match &client_auth.0 {
        Auth::None => builder.with_no_client_auth(),
        Auth::Roots(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
                .build()
                .map_err(|error| TlsError::Config {
                    reason: error.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        Auth::AnyCertificate => {
            builder.with_client_cert_verifier(Arc::new(AnyClientCertificate::new(&provider)))
        }
    };
    let mut config = builder
        .with_single_cert(identity.chain(), identity.key())
        .map_err(config_error)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

fn certificates_from_pem(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(what, error))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

fn roots_from_pem(pem: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    root_store(certificates_from_pem(pem, "the root certificates")?)
}

fn root_store(certs: Vec<CertificateDer<'static>>) -> Result<Arc<RootCertStore>, TlsError> {
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what: "the root certificates",
        });
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|error| TlsError::InvalidCertificate {
                reason: error.to_string(),
            })?;
    }
    Ok(Arc::new(roots))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(what: &'static str, error: pem::Error) -> TlsError {
    TlsError::Pem {
        what,
        reason: error.to_string(),
    }
}

fn config_error(error: rustls::Error) -> TlsError {
    TlsError::Config {
        reason: error.to_string(),
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate() -> SelfSigned {
        match SelfSigned::generate(vec!["localhost".to_owned()]) {
            Ok(cert) => cert,
            Err(error) => panic!("generating a certificate failed: {error}"),
        }
    }

    #[test]
    fn fingerprints_print_and_parse() {
        let fingerprint = Fingerprint::of_certificate(b"not really a certificate");
        let shown = fingerprint.to_string();
        assert_eq!(shown.len(), 32 * 3 - 1);
        assert!(matches!(shown.parse::<Fingerprint>(), Ok(f) if f == fingerprint));
        let plain: String = shown.chars().filter(|c| *c != ':').collect();
        let lower = plain.to_lowercase();
        assert!(matches!(lower.parse::<Fingerprint>(), Ok(f) if f == fingerprint));
        assert!(matches!(
            "abcd".parse::<Fingerprint>(),
            Err(TlsError::Fingerprint { .. })
        ));
        assert!(matches!(
            "zz".repeat(32).parse::<Fingerprint>(),
            Err(TlsError::Fingerprint { .. })
        ));
        // The SHA-256 of the empty input, a known vector.
        assert_eq!(
            Fingerprint::of_certificate(b"").as_bytes()[..4],
            [0xe3, 0xb0, 0xc4, 0x42]
        );
    }

    #[test]
    fn self_signed_pem_loads_back_as_the_same_identity() {
        let cert = generate();
        let identity = Identity::from_pem(
            cert.certificate_pem().as_bytes(),
            cert.private_key_pem().as_bytes(),
        );
        let identity = match identity {
            Ok(identity) => identity,
            Err(error) => panic!("loading the PEM failed: {error}"),
        };
        assert_eq!(identity.certificate_der(), cert.certificate_der());
        assert_eq!(identity.fingerprint(), cert.fingerprint());
        assert_eq!(cert.identity().fingerprint(), cert.fingerprint());
        let shown = format!("{identity:?} {cert:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }

    #[test]
    fn bad_pem_is_refused_with_a_reason() {
        let cert = generate();
        let key = cert.private_key_pem().as_bytes();
        assert!(matches!(
            Identity::from_pem(b"", key),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(matches!(
            Identity::from_pem(cert.certificate_pem().as_bytes(), b"nothing here"),
            Err(TlsError::NoPrivateKey { .. })
        ));
        let truncated = &cert.certificate_pem()[..40];
        assert!(matches!(
            Identity::from_pem(truncated.as_bytes(), key),
            Err(TlsError::Pem { .. })
        ));
        // A key that is not the certificate's.
        let other = generate();
        assert!(matches!(
            Identity::from_pem(
                cert.certificate_pem().as_bytes(),
                other.private_key_pem().as_bytes()
            ),
            Err(TlsError::InvalidKey { .. })
        ));
        assert!(matches!(
            Identity::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem"),
            Err(TlsError::Read { .. })
        ));
        assert!(matches!(
            ServerTrust::roots_from_pem(b""),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(matches!(
            ClientAuth::roots_from_der(vec![vec![1, 2, 3]]),
            Err(TlsError::InvalidCertificate { .. })
        ));
    }

    #[test]
    fn configurations_build_for_every_trust_and_auth() {
        let cert = generate();
        let roots = ServerTrust::roots_from_pem(cert.certificate_pem().as_bytes());
        let roots = match roots {
            Ok(roots) => roots,
            Err(error) => panic!("{error}"),
        };
        for trust in [roots, ServerTrust::pinned(cert.fingerprint())] {
            for identity in [None, Some(cert.identity())] {
                let built = client_crypto(&trust, identity.as_ref());
                assert!(
                    matches!(&built, Ok(c) if c.alpn_protocols == [ALPN]),
                    "{trust:?}"
                );
            }
        }
        let client_roots = ClientAuth::roots_from_der(vec![cert.certificate_der().to_vec()]);
        let client_roots = match client_roots {
            Ok(auth) => auth,
            Err(error) => panic!("{error}"),
        };
        for auth in [
            ClientAuth::none(),
            client_roots,
            ClientAuth::any_certificate(),
        ] {
            assert!(server_crypto(&cert.identity(), &auth).is_ok(), "{auth:?}");
        }
    }
}
