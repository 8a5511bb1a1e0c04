//! Whom each side trusts: the server's certificate as a client judges it
//! ([`ServerTrust`]), and client certificates as a server asks for them
//! ([`ClientAuth`]).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

use crate::tls::error::TlsError;
use crate::tls::fingerprint::Fingerprint;
use crate::tls::pem;

/// How a client decides to trust the server's certificate: by CA roots (the
/// certificate must chain to one and name the server, as browsers check), or
/// by a pinned [`Fingerprint`].
#[derive(Clone)]
pub struct ServerTrust(pub(crate) Trust);

#[derive(Clone)]
pub(crate) enum Trust {
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

    /// Trusts server certificates that chain to a root in `roots` and name
    /// the server: a store the caller filled, such as the public web roots of
    /// the `webpki-roots` crate.
    pub fn roots(roots: impl Into<Arc<RootCertStore>>) -> Self {
        ServerTrust(Trust::Roots(roots.into()))
    }

    /// Trusts server certificates that chain to one of the CA certificates in
    /// `pem` and name the server.
    pub fn roots_from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        Ok(ServerTrust(Trust::Roots(pem::root_store_from_pem(pem)?)))
    }

    /// [`ServerTrust::roots_from_pem`] with the CA certificates read from a
    /// PEM file.
    pub fn roots_from_pem_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        Self::roots_from_pem(&pem::read(path.as_ref())?)
    }

    /// [`ServerTrust::roots_from_pem`] with DER CA certificates.
    pub fn roots_from_der(
        certificates: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<Self, TlsError> {
        let certs = certificates.into_iter().map(CertificateDer::from).collect();
        Ok(ServerTrust(Trust::Roots(pem::root_store(certs)?)))
    }

    /// The pinned fingerprint, when this trust is a pin.
    pub fn pinned_fingerprint(&self) -> Option<Fingerprint> {
        match &self.0 {
            Trust::Pinned(fingerprint) => Some(*fingerprint),
            Trust::Roots(_) => None,
        }
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
/// [`PeerInfo::tls_identity`](crate::PeerInfo::tls_identity), its fingerprint
/// through [`Fingerprint::of_peer`].
#[derive(Clone, Default)]
pub struct ClientAuth(pub(crate) Auth);

#[derive(Clone, Default)]
pub(crate) enum Auth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A certificate chaining to one of these roots is required.
    Roots(Arc<RootCertStore>),
    /// Any certificate is required; the service judges it.
    AnyCertificate,
}

impl ClientAuth {
    /// Clients present no certificate (the default).
    pub fn none() -> Self {
        ClientAuth(Auth::None)
    }

    /// Clients must present a certificate that chains to a root in `roots`
    /// (WebPKI verification), or the handshake fails.
    pub fn roots(roots: impl Into<Arc<RootCertStore>>) -> Self {
        ClientAuth(Auth::Roots(roots.into()))
    }

    /// Clients must present a certificate that chains to one of the CA
    /// certificates in `pem`.
    pub fn roots_from_pem(pem: &[u8]) -> Result<Self, TlsError> {
        Ok(ClientAuth(Auth::Roots(pem::root_store_from_pem(pem)?)))
    }

    /// [`ClientAuth::roots_from_pem`] with the CA certificates read from a PEM
    /// file.
    pub fn roots_from_pem_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        Self::roots_from_pem(&pem::read(path.as_ref())?)
    }

    /// [`ClientAuth::roots_from_pem`] with DER CA certificates.
    pub fn roots_from_der(
        certificates: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<Self, TlsError> {
        let certs = certificates.into_iter().map(CertificateDer::from).collect();
        Ok(ClientAuth(Auth::Roots(pem::root_store(certs)?)))
    }

    /// Clients must present a certificate and prove they hold its key; any
    /// certificate is accepted, and the service decides whom it serves from
    /// [`PeerInfo::tls_identity`](crate::PeerInfo::tls_identity) (pinning
    /// clients by [`Fingerprint`], for instance).
    pub fn any_certificate() -> Self {
        ClientAuth(Auth::AnyCertificate)
    }

    /// Whether clients must present a certificate.
    pub fn is_required(&self) -> bool {
        !matches!(self.0, Auth::None)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::error::Material;

    #[test]
    fn empty_or_bad_roots_are_refused() {
        assert!(matches!(
            ServerTrust::roots_from_pem(b""),
            Err(TlsError::NoCertificate {
                what: Material::RootCertificates
            })
        ));
        assert!(matches!(
            ClientAuth::roots_from_der(vec![vec![1, 2, 3]]),
            Err(TlsError::InvalidCertificate { .. })
        ));
        assert!(matches!(
            ServerTrust::roots_from_der(Vec::new()),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(matches!(
            ClientAuth::roots_from_pem_file("/nonexistent/ca.pem"),
            Err(TlsError::Read { .. })
        ));
    }

    #[test]
    fn debug_names_the_kind_of_trust() {
        let pin = Fingerprint::of_certificate(b"");
        let trust = ServerTrust::pinned(pin);
        assert_eq!(trust.pinned_fingerprint(), Some(pin));
        assert!(format!("{trust:?}").starts_with("ServerTrust::Pinned(e3b0c442"));
        let roots = ServerTrust::roots(RootCertStore::empty());
        assert_eq!(roots.pinned_fingerprint(), None);
        assert_eq!(format!("{roots:?}"), "ServerTrust::Roots(0 certificates)");
        assert!(!ClientAuth::default().is_required());
        assert!(ClientAuth::any_certificate().is_required());
    }
}
