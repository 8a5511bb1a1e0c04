//! TLS with rustls and its ring provider: the server's certificate, and the
//! client's trust (web roots, a PEM root store, or a pinned certificate).

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use syncline_transport::TransportError;

/// The ALPN protocols both sides offer, most preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The SHA-256 fingerprint of a DER certificate, as
/// [`HttpClientConfig::with_pinned_certificate_sha256`](crate::HttpClientConfig::with_pinned_certificate_sha256)
/// expects it.
///
/// `openssl x509 -in cert.pem -noout -fingerprint -sha256` prints the same
/// bytes in hex.
pub fn sha256_fingerprint(certificate_der: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, certificate_der);
    let mut fingerprint = [0u8; 32];
    // A SHA-256 digest is always 32 bytes, so the lengths match.
    fingerprint.copy_from_slice(digest.as_ref());
    fingerprint
}

/// The server side of HTTPS: a certificate chain and its private key, with
/// HTTP/2 and HTTP/1.1 offered through ALPN, and optionally mutual TLS.
#[derive(Clone)]
pub struct ServerTlsConfig {
    config: Arc<rustls::ServerConfig>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    client_roots: usize,
}

impl fmt::Debug for ServerTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTlsConfig")
            .field("alpn", &["h2", "http/1.1"])
            .field("client_roots", &self.client_roots)
            .finish_non_exhaustive()
    }
}

impl ServerTlsConfig {
    /// A TLS identity from PEM text: `certificate_chain` holds the server's
    /// certificate first, then any intermediates; `private_key` holds its key
    /// (PKCS#8, PKCS#1 or SEC1).
    ///
    /// Fails with [`TransportError::Local`] when the PEM holds no certificate
    /// or no key, or the key does not fit the certificate.
    pub fn from_pem(certificate_chain: &[u8], private_key: &[u8]) -> Result<Self, TransportError> {
        let chain = parse_certificates(certificate_chain, "certificate chain")?;
        let key = PrivateKeyDer::from_pem_slice(private_key)
            .map_err(|error| local(format!("bad private key PEM: {error}")))?;
        let config = server_config(&chain, &key, None)?;
        Ok(ServerTlsConfig {
            config: Arc::new(config),
            chain,
            key: Arc::new(key),
            client_roots: 0,
        })
    }

    /// Requires mutual TLS: every client must present a certificate that
    /// chains to one of the CA certificates in `pem`, or the handshake fails.
    /// The client's end-entity certificate (DER) reaches the service as
    /// [`PeerInfo::tls_identity`](syncline_transport::PeerInfo::tls_identity)
    /// with every request on that connection, so the service's access
    /// control can map it to a principal.
    ///
    /// Fails with [`TransportError::Local`] when the PEM holds no usable
    /// certificate.
    pub fn with_client_roots_pem(mut self, pem: &[u8]) -> Result<Self, TransportError> {
        let roots = root_store(pem, "client root certificates")?;
        self.client_roots = roots.len();
        self.config = Arc::new(server_config(&self.chain, &self.key, Some(roots))?);
        Ok(self)
    }

    /// The rustls configuration the server's acceptor uses.
    pub(crate) fn rustls(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }
}

/// The rustls server configuration: the identity, ALPN, and client
/// certificates checked against `client_roots` when there are any.
fn server_config(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    client_roots: Option<RootCertStore>,
) -> Result<rustls::ServerConfig, TransportError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| local(format!("TLS setup: {error}")))?;
    let builder = match client_roots {
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|error| local(format!("client certificate verifier: {error}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain.to_vec(), key.clone_key())
        .map_err(|error| local(format!("bad TLS identity: {error}")))?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The PEM certificates in `pem` as a root store.
fn root_store(pem: &[u8], what: &str) -> Result<RootCertStore, TransportError> {
    let mut roots = RootCertStore::empty();
    for certificate in parse_certificates(pem, what)? {
        roots
            .add(certificate)
            .map_err(|error| local(format!("bad certificate in the {what}: {error}")))?;
    }
    Ok(roots)
}

/// A client's own certificate chain and key, for servers that require
/// mutual TLS, as PEM text (parsed when the client is built).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ClientIdentityPem {
    pub(crate) chain: Vec<u8>,
    pub(crate) key: Vec<u8>,
}

impl fmt::Debug for ClientIdentityPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        write!(
            f,
            "ClientIdentityPem(<{} bytes of certificates>)",
            self.chain.len()
        )
    }
}

/// Whom a client trusts to be its server over HTTPS.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Trust {
    /// The Mozilla root certificates (webpki-roots).
    WebRoots,
    /// Only the root certificates in this PEM text.
    RootsPem(Vec<u8>),
    /// Only a server certificate with this SHA-256 fingerprint.
    Pinned([u8; 32]),
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::WebRoots => f.write_str("WebRoots"),
            Trust::RootsPem(pem) => write!(f, "RootsPem(<{} bytes>)", pem.len()),
            Trust::Pinned(fingerprint) => {
                f.write_str("Pinned(")?;
                for byte in fingerprint {
                    write!(f, "{byte:02x}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// The rustls client configuration for `trust`, presenting `identity` to
/// servers that ask for a client certificate; without ALPN (the connector
/// sets it).
pub(crate) fn client_config(
    trust: &Trust,
    identity: Option<&ClientIdentityPem>,
) -> Result<rustls::ClientConfig, TransportError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| local(format!("TLS setup: {error}")))?;
    let builder = match trust {
        Trust::WebRoots => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots)
        }
        Trust::RootsPem(pem) => {
            builder.with_root_certificates(root_store(pem, "root certificates")?)
        }
        Trust::Pinned(fingerprint) => {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCertificate {
                    fingerprint: *fingerprint,
                    algorithms: provider().signature_verification_algorithms,
                }))
        }
    };
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(identity) => {
            let chain = parse_certificates(&identity.chain, "client certificate chain")?;
            let key = PrivateKeyDer::from_pem_slice(&identity.key)
                .map_err(|error| local(format!("bad client private key PEM: {error}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| local(format!("bad client TLS identity: {error}")))
        }
    }
}

/// A client configuration that trusts nobody, for a plain-HTTP client whose
/// connector never starts TLS.
pub(crate) fn plain_http_config() -> Result<rustls::ClientConfig, TransportError> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| local(format!("TLS setup: {error}")))?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth())
}

/// The one crypto provider of this crate: ring, passed explicitly so a build
/// that also has aws-lc-rs compiled in never has to pick.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn parse_certificates(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| local(format!("bad {what} PEM: {error}")))?;
    if certificates.is_empty() {
        return Err(local(format!("no certificate in the {what} PEM")));
    }
    Ok(certificates)
}

fn local(reason: String) -> TransportError {
    TransportError::Local { reason }
}

/// Accepts exactly one server certificate, known by its SHA-256 fingerprint:
/// for development servers with a self-signed certificate. Neither the name
/// nor the validity period is checked; the handshake signature still is, so
/// the server must hold the certificate's key.
#[derive(Debug)]
struct PinnedCertificate {
    fingerprint: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if sha256_fingerprint(end_entity) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_is_a_local_error() {
        let error = ServerTlsConfig::from_pem(b"not pem", b"not pem either");
        assert!(
            matches!(error, Err(TransportError::Local { .. })),
            "{error:?}"
        );
        let error = client_config(&Trust::RootsPem(b"nothing".to_vec()), None);
        assert!(matches!(error, Err(TransportError::Local { .. })));
        let identity = ClientIdentityPem {
            chain: b"no pem".to_vec(),
            key: b"no pem".to_vec(),
        };
        let error = client_config(&Trust::WebRoots, Some(&identity));
        assert!(matches!(error, Err(TransportError::Local { .. })));
        assert!(!format!("{identity:?}").contains("no pem"));
    }

    #[test]
    fn fingerprint_is_sha256() {
        // SHA-256 of the empty input.
        let empty = sha256_fingerprint(b"");
        assert_eq!(empty[..4], [0xe3, 0xb0, 0xc4, 0x42]);
        assert_eq!(
            format!("{:?}", Trust::Pinned(empty)).len(),
            "Pinned()".len() + 64
        );
    }

    #[test]
    fn client_configs_build() {
        assert!(client_config(&Trust::WebRoots, None).is_ok());
        assert!(client_config(&Trust::Pinned([0; 32]), None).is_ok());
    }
}
