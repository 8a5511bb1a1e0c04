//! Why TLS material or a TLS configuration could not be loaded or built.

use std::fmt;
use std::io;
use std::path::PathBuf;

use rustls::pki_types::pem;

use crate::error::{Fault, TransportError};
use crate::tls::fingerprint::ParseFingerprintError;

/// Why TLS material (certificates, keys, fingerprints) or a rustls
/// configuration could not be loaded, written or built.
///
/// Every variant is a bad local setup: its [`fault`](TlsError::fault) is
/// [`Fault::Local`], and it becomes [`TransportError::Local`] when a transport
/// reports it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A PEM file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// PEM text is malformed.
    #[error("malformed PEM in {what}: {source}")]
    Pem {
        /// Which input.
        what: Material,
        /// What the parser said.
        source: pem::Error,
    },
    /// The input holds no certificate.
    #[error("no certificate found in {what}")]
    NoCertificate {
        /// Which input.
        what: Material,
    },
    /// The input holds no private key.
    #[error("no private key found in {what}")]
    NoPrivateKey {
        /// Which input.
        what: Material,
    },
    /// A certificate was rejected: not parsable, or not usable as a root.
    #[error("invalid certificate in {what}: {source}")]
    InvalidCertificate {
        /// Which input.
        what: Material,
        /// Why rustls rejected it.
        source: rustls::Error,
    },
    /// A private key was rejected: an unsupported algorithm, or not the key of
    /// its certificate.
    #[error("invalid private key: {0}")]
    InvalidKey(#[source] rustls::Error),
    /// A fingerprint is not 32 bytes of hex.
    #[error(transparent)]
    Fingerprint(#[from] ParseFingerprintError),
    /// A self-signed certificate could not be generated.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[source] rcgen::Error),
    /// The verifier of client certificates could not be built from its roots.
    #[error("cannot verify client certificates: {0}")]
    ClientVerifier(#[source] rustls::server::VerifierBuilderError),
    /// rustls refused the configuration (an identity or protocol versions it
    /// cannot use).
    #[error("invalid TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

impl TlsError {
    /// Whose fault this error is: always [`Fault::Local`], a bad local setup
    /// that fails the same way until the files or settings are fixed.
    pub fn fault(&self) -> Fault {
        Fault::Local
    }
}

/// A bad TLS setup is a local failure.
impl From<TlsError> for TransportError {
    fn from(error: TlsError) -> Self {
        TransportError::Local {
            reason: error.to_string(),
        }
    }
}

/// Which piece of TLS material an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Material {
    /// A certificate chain, end-entity certificate first.
    CertificateChain,
    /// A private key.
    PrivateKey,
    /// Root (CA) certificates that a trust store is built from.
    RootCertificates,
}

impl fmt::Display for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Material::CertificateChain => "the certificate chain",
            Material::PrivateKey => "the private key",
            Material::RootCertificates => "the root certificates",
        })
    }
}
