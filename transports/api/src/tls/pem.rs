//! Reading and writing PEM: certificates, keys and root stores.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::tls::error::{Material, TlsError};

/// The certificates in PEM text; at least one.
pub(crate) fn certificates(
    pem: &[u8],
    what: Material,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

/// The first private key in PEM text (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = Material::PrivateKey;
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey { what },
        source => TlsError::Pem { what, source },
    })
}

/// A root store of the CA certificates in PEM text.
pub(crate) fn root_store_from_pem(pem: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    root_store(certificates(pem, Material::RootCertificates)?)
}

/// A root store of DER CA certificates; at least one, each usable as a root.
pub(crate) fn root_store(
    certs: Vec<CertificateDer<'static>>,
) -> Result<Arc<RootCertStore>, TlsError> {
    let what = Material::RootCertificates;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|source| TlsError::InvalidCertificate { what, source })?;
    }
    Ok(Arc::new(roots))
}

/// The bytes of a file.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to a new file at `path`, refusing to replace an existing
/// one. With `secret`, the file is readable by its owner only (on Unix).
pub(crate) fn write_new(path: &Path, contents: &[u8], secret: bool) -> Result<(), TlsError> {
    let write = || -> io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = secret;
        let mut file = options.open(path)?;
        file.write_all(contents)?;
        file.sync_all()
    };
    write().map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}
