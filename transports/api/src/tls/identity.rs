//! Identities (a certificate chain and its key) and self-signed development
//! certificates.

use std::fmt;
use std::path::Path;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::tls::error::{Material, TlsError};
use crate::tls::fingerprint::Fingerprint;
use crate::tls::pem;
use crate::tls::provider;

/// A certificate chain and the private key of its first (end-entity)
/// certificate: what a server proves itself with, and what a client presents
/// for mutual TLS.
///
/// Loading checks that rustls can use the key and that it belongs to the
/// certificate, so a bad identity fails here rather than at the first
/// handshake. `Debug` shows the fingerprint, never the key.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// An identity from PEM text: `cert_chain_pem` holds the end-entity
    /// certificate first, then any intermediates; `key_pem` holds its private
    /// key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = pem::certificates(cert_chain_pem, Material::CertificateChain)?;
        Self::new(chain, pem::private_key(key_pem)?)
    }

    /// An identity from PEM files, as [`Identity::from_pem`] reads them.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        Self::from_pem(&pem::read(cert_chain.as_ref())?, &pem::read(key.as_ref())?)
    }

    /// An identity from DER: the chain (end-entity certificate first) and a
    /// PKCS#8 private key.
    pub fn from_der(cert_chain: Vec<Vec<u8>>, pkcs8_key: Vec<u8>) -> Result<Self, TlsError> {
        if cert_chain.is_empty() {
            return Err(TlsError::NoCertificate {
                what: Material::CertificateChain,
            });
        }
        let chain = cert_chain.into_iter().map(CertificateDer::from).collect();
        Self::new(chain, PrivatePkcs8KeyDer::from(pkcs8_key).into())
    }

    /// A self-signed development identity kept in two PEM files, so that its
    /// fingerprint survives restarts: loaded from `cert` and `key` when
    /// either exists, otherwise generated for `subject_alt_names` (as
    /// [`SelfSigned::generate`] does) and written there, the key readable by
    /// its owner only.
    ///
    /// Existing files are never replaced: if only one of them exists, loading
    /// fails with [`TlsError::Read`] naming the missing one.
    pub fn load_or_generate(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        subject_alt_names: impl Into<Vec<String>>,
    ) -> Result<Self, TlsError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        if cert.exists() || key.exists() {
            return Self::from_pem_files(cert, key);
        }
        let generated = SelfSigned::generate(subject_alt_names)?;
        generated.write_pem_files(cert, key)?;
        Ok(generated.identity())
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider())
            .map_err(TlsError::InvalidKey)?;
        Ok(Identity { chain, key })
    }

    /// The DER of the end-entity certificate: what a server sees as
    /// [`PeerInfo::tls_identity`](crate::PeerInfo::tls_identity) when a client
    /// presents this identity.
    pub fn certificate_der(&self) -> &[u8] {
        // Every constructor refuses an empty chain.
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

/// A self-signed certificate and its key, for development: the server serves
/// [`SelfSigned::identity`], clients pin [`SelfSigned::fingerprint`]. Write it
/// out with [`SelfSigned::write_pem_files`] (or use
/// [`Identity::load_or_generate`]) to keep the same fingerprint across
/// restarts.
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
        let generated =
            rcgen::generate_simple_self_signed(subject_alt_names).map_err(TlsError::Generate)?;
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
        // rcgen made the key for this certificate, in PKCS#8 with a ring
        // algorithm, so there is nothing for `Identity::new` to check.
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

    /// Writes the certificate and the key as PEM to two new files, which
    /// [`Identity::from_pem_files`] loads back. The key file is readable by
    /// its owner only (on Unix); existing files are never replaced.
    pub fn write_pem_files(
        &self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<(), TlsError> {
        // The key first: a certificate file never exists without its key.
        pem::write_new(key.as_ref(), self.key_pem.as_bytes(), true)?;
        pem::write_new(cert.as_ref(), self.certificate_pem.as_bytes(), false)
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

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    type TestResult = Result<(), Box<dyn Error>>;

    fn generate() -> Result<SelfSigned, TlsError> {
        SelfSigned::generate(vec!["localhost".to_owned()])
    }

    #[test]
    fn self_signed_pem_loads_back_as_the_same_identity() -> TestResult {
        let cert = generate()?;
        let identity = Identity::from_pem(
            cert.certificate_pem().as_bytes(),
            cert.private_key_pem().as_bytes(),
        )?;
        assert_eq!(identity.certificate_der(), cert.certificate_der());
        assert_eq!(identity.fingerprint(), cert.fingerprint());
        assert_eq!(cert.identity().fingerprint(), cert.fingerprint());
        let shown = format!("{identity:?} {cert:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
        Ok(())
    }

    #[test]
    fn pem_files_keep_the_fingerprint_across_restarts() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (cert_path, key_path) = (dir.path().join("hub.pem"), dir.path().join("hub.key"));
        let cert = generate()?;
        cert.write_pem_files(&cert_path, &key_path)?;
        let loaded = Identity::from_pem_files(&cert_path, &key_path)?;
        assert_eq!(loaded.fingerprint(), cert.fingerprint());

        // Writing again never replaces the files.
        let again = generate()?.write_pem_files(&cert_path, &key_path);
        assert!(matches!(again, Err(TlsError::Write { .. })), "{again:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path)?.permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is readable by others: {mode:o}");
        }

        // A hub that restarts finds its identity again.
        let (cert2, key2) = (dir.path().join("b.pem"), dir.path().join("b.key"));
        let first = Identity::load_or_generate(&cert2, &key2, vec!["localhost".to_owned()])?;
        let second = Identity::load_or_generate(&cert2, &key2, vec!["localhost".to_owned()])?;
        assert_eq!(first.fingerprint(), second.fingerprint());
        std::fs::remove_file(&cert2)?;
        let half = Identity::load_or_generate(&cert2, &key2, vec!["localhost".to_owned()]);
        assert!(
            matches!(&half, Err(TlsError::Read { path, .. }) if *path == cert2),
            "{half:?}"
        );
        Ok(())
    }

    #[test]
    fn bad_pem_is_refused_with_a_reason() -> TestResult {
        let cert = generate()?;
        let key = cert.private_key_pem().as_bytes();
        assert!(matches!(
            Identity::from_pem(b"", key),
            Err(TlsError::NoCertificate {
                what: Material::CertificateChain
            })
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
        let other = generate()?;
        assert!(matches!(
            Identity::from_pem(
                cert.certificate_pem().as_bytes(),
                other.private_key_pem().as_bytes()
            ),
            Err(TlsError::InvalidKey(_))
        ));
        assert!(matches!(
            Identity::from_der(Vec::new(), Vec::new()),
            Err(TlsError::NoCertificate { .. })
        ));
        let missing = Identity::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem");
        assert!(matches!(&missing, Err(TlsError::Read { .. })));
        if let Err(error) = missing {
            assert_eq!(error.fault(), crate::Fault::Local);
            let error = crate::TransportError::from(error);
            assert!(
                error.to_string().contains("/nonexistent/cert.pem"),
                "{error}"
            );
        }
        Ok(())
    }
}
