//! rustls configurations built from the TLS vocabulary: a client's from its
//! [`ServerTrust`] and optional [`Identity`], a server's from its [`Identity`]
//! and [`ClientAuth`]; and what a server tells its service about the client.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig, SupportedProtocolVersion};

use crate::tls::error::TlsError;
use crate::tls::identity::Identity;
use crate::tls::provider;
use crate::tls::trust::{Auth, ClientAuth, ServerTrust, Trust};
use crate::tls::verify::{AnyClientCertificate, PinnedServerCertificate};

/// The rustls configuration of a client that trusts servers by `trust`,
/// presents `identity` to servers that ask for a client certificate, offers
/// the `alpn` protocols (most preferred first; none when empty), and speaks
/// the protocol `versions` (`&[&rustls::version::TLS13]` for QUIC,
/// [`rustls::DEFAULT_VERSIONS`] for HTTPS). It uses the ring provider.
pub fn client_config(
    trust: &ServerTrust,
    identity: Option<&Identity>,
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(TlsError::Config)?;
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
            .map_err(TlsError::Config)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(config)
}

/// The rustls configuration of a server that presents `identity`, asks
/// clients for certificates as `client_auth` says, requires one of the `alpn`
/// protocols (when not empty), and speaks the protocol `versions`. It uses
/// the ring provider.
pub fn server_config(
    identity: &Identity,
    client_auth: &ClientAuth,
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(TlsError::Config)?;
    let builder = match &client_auth.0 {
        Auth::None => builder.with_no_client_auth(),
        Auth::Roots(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
                .build()
                .map_err(TlsError::ClientVerifier)?;
            builder.with_client_cert_verifier(verifier)
        }
        Auth::AnyCertificate => {
            builder.with_client_cert_verifier(Arc::new(AnyClientCertificate::new(&provider)))
        }
    };
    let mut config = builder
        .with_single_cert(identity.chain(), identity.key())
        .map_err(TlsError::Config)?;
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(config)
}

/// What a server puts in [`PeerInfo::tls_identity`](crate::PeerInfo::tls_identity):
/// the DER of the client's end-entity certificate, from the chain rustls
/// verified (`peer_certificates()` on a rustls connection), when the client
/// presented one.
pub fn peer_identity(chain: Option<&[CertificateDer<'_>]>) -> Option<Vec<u8>> {
    chain
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.to_vec())
}

#[cfg(test)]
mod tests {
    //! Real handshakes over TCP on 127.0.0.1, one thread a side.

    use std::error::Error;
    use std::io::{self, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::thread;
    use std::time::Duration;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, ServerConnection};

    use super::*;
    use crate::tls::fingerprint::Fingerprint;
    use crate::tls::identity::SelfSigned;

    type TestResult = Result<(), Box<dyn Error>>;

    const ALPN: &[&[u8]] = &[b"test/1"];
    const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    /// The longest a side waits for the other, so a broken test fails
    /// instead of hanging.
    const WAIT: Duration = Duration::from_secs(10);

    fn generate() -> Result<SelfSigned, TlsError> {
        SelfSigned::generate(vec!["localhost".to_owned()])
    }

    /// What each side of one handshake saw: the server the client's
    /// certificate (from [`peer_identity`]), the client the byte the server
    /// sends once it accepted the handshake.
    struct Outcome {
        server: io::Result<Option<Vec<u8>>>,
        client: io::Result<()>,
    }

    /// Runs one TLS handshake between the configurations over 127.0.0.1.
    fn handshake(client: ClientConfig, server: ServerConfig) -> Result<Outcome, Box<dyn Error>> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let server = Arc::new(server);
        let server_side = thread::spawn(move || -> io::Result<Option<Vec<u8>>> {
            let (mut tcp, _) = listener.accept()?;
            tcp.set_read_timeout(Some(WAIT))?;
            let mut conn = ServerConnection::new(server).map_err(io::Error::other)?;
            while conn.is_handshaking() {
                conn.complete_io(&mut tcp)?;
            }
            conn.writer().write_all(b"k")?;
            conn.complete_io(&mut tcp)?;
            Ok(peer_identity(conn.peer_certificates()))
        });
        let client = (|| -> io::Result<()> {
            let mut tcp = TcpStream::connect(addr)?;
            tcp.set_read_timeout(Some(WAIT))?;
            let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
            let mut conn = ClientConnection::new(Arc::new(client), name.to_owned())
                .map_err(io::Error::other)?;
            let mut byte = [0u8; 1];
            rustls::Stream::new(&mut conn, &mut tcp).read_exact(&mut byte)
        })();
        let server = server_side
            .join()
            .map_err(|_| "the server thread panicked")?;
        Ok(Outcome { server, client })
    }

    /// The rustls error inside an I/O error from a handshake.
    fn tls_error(error: &io::Error) -> Option<&rustls::Error> {
        error.get_ref()?.downcast_ref::<rustls::Error>()
    }

    #[test]
    fn a_pinned_server_is_accepted_and_another_certificate_refused() -> TestResult {
        let cert = generate()?;
        let server = || server_config(&cert.identity(), &ClientAuth::none(), ALPN, TLS13);

        let pinned = ServerTrust::pinned(cert.fingerprint());
        let outcome = handshake(client_config(&pinned, None, ALPN, TLS13)?, server()?)?;
        assert!(outcome.client.is_ok(), "{:?}", outcome.client);
        assert!(matches!(outcome.server, Ok(None)), "{:?}", outcome.server);

        let impostor = ServerTrust::pinned(generate()?.fingerprint());
        let outcome = handshake(client_config(&impostor, None, ALPN, TLS13)?, server()?)?;
        let Err(error) = outcome.client else {
            panic!("a client accepted a certificate it did not pin");
        };
        assert!(
            matches!(
                tls_error(&error),
                Some(rustls::Error::InvalidCertificate(_))
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("pinned"), "{error}");
        assert!(outcome.server.is_err(), "the server finished the handshake");
        Ok(())
    }

    #[test]
    fn a_client_without_a_certificate_is_refused_when_one_is_required() -> TestResult {
        let server_cert = generate()?;
        let client_ca = generate()?;
        let trust = ServerTrust::pinned(server_cert.fingerprint());
        for auth in [
            ClientAuth::roots_from_pem(client_ca.certificate_pem().as_bytes())?,
            ClientAuth::any_certificate(),
        ] {
            let server = server_config(&server_cert.identity(), &auth, ALPN, TLS13)?;
            let outcome = handshake(client_config(&trust, None, ALPN, TLS13)?, server)?;
            let Err(error) = outcome.server else {
                panic!("{auth:?} let in a client without a certificate");
            };
            assert!(
                matches!(
                    tls_error(&error),
                    Some(rustls::Error::NoCertificatesPresented)
                ),
                "{auth:?}: {error:?}"
            );
            assert!(outcome.client.is_err(), "{auth:?}");
        }
        Ok(())
    }

    #[test]
    fn the_server_learns_the_client_certificate() -> TestResult {
        let server_cert = generate()?;
        let alice = generate()?;
        let trust = ServerTrust::roots_from_der(vec![server_cert.certificate_der().to_vec()])?;
        for auth in [
            ClientAuth::roots_from_der(vec![alice.certificate_der().to_vec()])?,
            ClientAuth::any_certificate(),
        ] {
            let server = server_config(&server_cert.identity(), &auth, ALPN, TLS13)?;
            let client = client_config(&trust, Some(&alice.identity()), ALPN, TLS13)?;
            let outcome = handshake(client, server)?;
            assert!(outcome.client.is_ok(), "{auth:?}: {:?}", outcome.client);
            let der = outcome.server?.ok_or("the server saw no certificate")?;
            assert_eq!(Fingerprint::of_certificate(&der), alice.fingerprint());
        }
        Ok(())
    }

    #[test]
    fn configurations_carry_alpn_and_versions() -> TestResult {
        let cert = generate()?;
        let trust = ServerTrust::pinned(cert.fingerprint());
        let client = client_config(
            &trust,
            None,
            &[b"h2", b"http/1.1"],
            rustls::DEFAULT_VERSIONS,
        )?;
        assert_eq!(client.alpn_protocols, [&b"h2"[..], b"http/1.1"]);
        let client = client_config(&trust, None, &[], TLS13)?;
        assert!(client.alpn_protocols.is_empty());
        let server = server_config(&cert.identity(), &ClientAuth::none(), ALPN, TLS13)?;
        assert_eq!(server.alpn_protocols, [ALPN[0]]);
        assert!(matches!(
            client_config(&trust, None, ALPN, &[]),
            Err(TlsError::Config(_))
        ));
        assert_eq!(peer_identity(None), None);
        Ok(())
    }
}
