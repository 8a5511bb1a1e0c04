//! What HTTPS adds to the shared TLS vocabulary of
//! [`syncline_transport::tls`]: its ALPN protocols, TLS 1.2 beside 1.3, and
//! the public web roots a client trusts by default.

use rustls::{ClientConfig, RootCertStore, ServerConfig};
use syncline_transport::TransportError;
use syncline_transport::tls::{self, ClientAuth, Identity, ServerTrust};

/// The ALPN protocols a server offers, most preferred first. The client's are
/// set by its hyper-rustls connector, which offers the same two.
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The rustls configuration of an HTTPS server: `identity`, client
/// certificates as `client_auth` says, HTTP/2 and HTTP/1.1 through ALPN.
pub(crate) fn server_config(
    identity: &Identity,
    client_auth: &ClientAuth,
) -> Result<ServerConfig, TransportError> {
    Ok(tls::server_config(
        identity,
        client_auth,
        ALPN,
        rustls::DEFAULT_VERSIONS,
    )?)
}

/// The rustls configuration of an HTTPS client: it trusts servers by `trust`
/// (the Mozilla roots of `webpki-roots` when `None`) and presents `identity`
/// to servers that ask for a client certificate; without ALPN, which the
/// connector sets.
pub(crate) fn client_config(
    trust: Option<&ServerTrust>,
    identity: Option<&Identity>,
) -> Result<ClientConfig, TransportError> {
    let web_roots;
    let trust = match trust {
        Some(trust) => trust,
        None => {
            web_roots = ServerTrust::roots(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            });
            &web_roots
        }
    };
    Ok(tls::client_config(
        trust,
        identity,
        &[],
        rustls::DEFAULT_VERSIONS,
    )?)
}

/// A client configuration that trusts nobody, for a plain-HTTP client whose
/// connector never starts TLS: the root certificates are not loaded for
/// nothing.
pub(crate) fn plain_http_config() -> Result<ClientConfig, TransportError> {
    let nobody = ServerTrust::roots(RootCertStore::empty());
    Ok(tls::client_config(
        &nobody,
        None,
        &[],
        rustls::DEFAULT_VERSIONS,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncline_transport::tls::SelfSigned;

    #[test]
    fn configurations_build_with_the_http_alpn() {
        let cert = match SelfSigned::generate(vec!["localhost".to_owned()]) {
            Ok(cert) => cert,
            Err(error) => panic!("{error}"),
        };
        let server = server_config(&cert.identity(), &ClientAuth::none());
        assert!(
            matches!(&server, Ok(config) if config.alpn_protocols == ALPN),
            "{server:?}"
        );
        let pinned = ServerTrust::pinned(cert.fingerprint());
        assert!(client_config(None, None).is_ok());
        assert!(client_config(Some(&pinned), Some(&cert.identity())).is_ok());
        assert!(matches!(plain_http_config(), Ok(config) if config.alpn_protocols.is_empty()));
    }
}
