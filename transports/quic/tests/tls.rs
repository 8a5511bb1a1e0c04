//! TLS and connection tests over real UDP sockets on 127.0.0.1: who is
//! trusted, who is refused (and how the refusal is reported), mutual TLS,
//! PEM files, timeouts.

mod common;

use std::error::Error;
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig as QuinnClientCrypto;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use syncline_quic::{
    ALPN, ClientAuth, Fingerprint, Identity, QuicClientConfig, QuicConnector, QuicServer,
    QuicServerConfig, SelfSigned, ServerTrust,
};
use syncline_transport::conformance::{TestRequest, TestService};
use syncline_transport::{Connector, Fault, Frame, TransportError};

use common::TestCa;

type TestResult = Result<(), Box<dyn Error>>;

/// The longest any step may take before the test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("gave up after {WAIT:?} waiting for {what}"),
    }
}

fn localhost() -> SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

fn self_signed() -> Result<SelfSigned, Box<dyn Error>> {
    Ok(SelfSigned::generate(vec!["localhost".to_owned()])?)
}

/// A server for a fresh [`TestService`].
fn serve(config: QuicServerConfig) -> Result<(QuicServer, Arc<TestService>), TransportError> {
    let service = Arc::new(TestService::new());
    let server = QuicServer::bind(localhost(), service.clone(), config)?;
    Ok((server, service))
}

/// Connects and runs one echo exchange.
async fn echo(connector: &QuicConnector) -> Result<Frame, TransportError> {
    let request = TestRequest::echo(b"hello");
    let conn = within("a connection", connector.connect()).await?;
    within("an echo", conn.exchange(request)).await
}

/// The attempt failed as a connection failure whose reason mentions `needle`.
fn expect_connect_error(result: Result<Frame, TransportError>, needle: &str) {
    match result {
        Err(error @ TransportError::Connect { .. }) => {
            println!("refused as expected: {error}");
            assert_eq!(error.fault(), Fault::Network, "{error}");
            assert!(
                error.to_string().contains(needle),
                "the reason should mention {needle:?}: {error}"
            );
        }
        other => panic!("expected a Connect error mentioning {needle:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_the_client_does_not_trust_is_refused() -> TestResult {
    let cert = self_signed()?;
    let (server, service) = serve(QuicServerConfig::new(cert.identity()))?;
    let other_ca = TestCa::new("someone else's CA")?;
    let trust = ServerTrust::roots_from_pem(other_ca.pem().as_bytes())?;
    let connector = QuicConnector::new(
        server.local_addr(),
        "localhost",
        QuicClientConfig::new(trust),
    )?;

    expect_connect_error(echo(&connector).await, "certificate");
    assert_eq!(service.exchanges(), 0);
    within("shutdown", server.shutdown()).await;
    Ok(())
}

#[tokio::test]
async fn a_wrong_pinned_fingerprint_is_refused() -> TestResult {
    let cert = self_signed()?;
    let (server, service) = serve(QuicServerConfig::new(cert.identity()))?;
    let impostor_pin = self_signed()?.fingerprint();
    let config = QuicClientConfig::new(ServerTrust::pinned(impostor_pin));
    let connector = QuicConnector::new(server.local_addr(), "localhost", config)?;

    expect_connect_error(echo(&connector).await, "pinned");
    assert_eq!(service.exchanges(), 0);

    // The right pin, given as text, works.
    let pin: Fingerprint = cert.fingerprint().to_string().parse()?;
    let config = QuicClientConfig::new(ServerTrust::pinned(pin));
    let connector = QuicConnector::new(server.local_addr(), "anything.example", config)?;
    let reply = echo(&connector).await?;
    assert_eq!(reply, TestRequest::echo_reply(&TestRequest::echo(b"hello")));
    within("shutdown", server.shutdown()).await;
    Ok(())
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() -> TestResult {
    let ca = TestCa::new("test CA")?;
    let leaf = ca.issue(&["other.example"])?;
    let (server, _service) = serve(QuicServerConfig::new(leaf.identity()?))?;
    let trust = ServerTrust::roots_from_pem(ca.pem().as_bytes())?;
    let connector = QuicConnector::new(
        server.local_addr(),
        "localhost",
        QuicClientConfig::new(trust),
    )?;

    expect_connect_error(echo(&connector).await, "certificate");
    within("shutdown", server.shutdown()).await;
    Ok(())
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate() -> TestResult {
    let server_cert = self_signed()?;
    let ca = TestCa::new("client CA")?;
    let config = QuicServerConfig::new(server_cert.identity())
        .with_client_auth(ClientAuth::roots_from_pem(ca.pem().as_bytes())?);
    let (server, service) = serve(config)?;
    let client = QuicClientConfig::new(ServerTrust::pinned(server_cert.fingerprint()));
    let connector = QuicConnector::new(server.local_addr(), "localhost", client)?;

    // TLS 1.3: the refusal may reach the client on connect or on the first
    // exchange; either way it is a Connect error naming the handshake.
    expect_connect_error(echo(&connector).await, "requires a client certificate");
    assert_eq!(
        service.exchanges(),
        0,
        "a refused client reached the service"
    );
    within("shutdown", server.shutdown()).await;
    Ok(())
}

#[tokio::test]
async fn mutual_tls_refuses_a_certificate_from_another_ca() -> TestResult {
    let server_cert = self_signed()?;
    let ca = TestCa::new("client CA")?;
    let config = QuicServerConfig::new(server_cert.identity())
        .with_client_auth(ClientAuth::roots_from_pem(ca.pem().as_bytes())?);
    let (server, service) = serve(config)?;
    let stranger = TestCa::new("stranger CA")?.issue(&["client"])?;
    let client = QuicClientConfig::new(ServerTrust::pinned(server_cert.fingerprint()))
        .with_identity(stranger.identity()?);
    let connector = QuicConnector::new(server.local_addr(), "localhost", client)?;

    expect_connect_error(
        echo(&connector).await,
        "does not accept our client certificate",
    );
    assert_eq!(service.exchanges(), 0);
    within("shutdown", server.shutdown()).await;
    Ok(())
}

#[tokio::test]
async fn mutual_tls_hands_the_client_certificate_to_the_service() -> TestResult {
    let server_cert = self_signed()?;
    let ca = TestCa::new("client CA")?;
    let config = QuicServerConfig::new(server_cert.identity())
        .with_client_auth(ClientAuth::roots_from_pem(ca.pem().as_bytes())?);
    let (server, service) = serve(config)?;
    let client_identity = ca.issue(&["alice"])?.identity()?;
    let client = QuicClientConfig::new(ServerTrust::pinned(server_cert.fingerprint()))
        .with_identity(client_identity.clone());
    let connector = QuicConnector::new(server.local_addr(), "localhost", client)?;

    echo(&connector).await?;
    let peer = service.last_peer().ok_or("the service saw no peer")?;
    assert_eq!(
        peer.tls_identity.as_deref(),
        Some(client_identity.certificate_der())
    );
    assert!(peer.remote.starts_with("127.0.0.1:"), "{}", peer.remote);
    within("shutdown", server.shutdown()).await;
    Ok(())
}

#[tokio::test]
async fn any_certificate_leaves_pinning_clients_to_the_service() -> TestResult {
    let server_cert = self_signed()?;
    let config = QuicServerConfig::new(server_cert.identity())
        .with_client_auth(ClientAuth::any_certificate());
    let (server, service) = serve(config)?;
    let trust = ServerTrust::pinned(server_cert.fingerprint());

    let alice = self_signed()?;
    let client = QuicClientConfig::new(trust.clone()).with_identity(alice.identity());
    let connector = QuicConnector::new(server.local_addr(), "localhost", client)?;
    echo(&connector).await?;
    let peer = service.last_peer().ok_or("the service saw no peer")?;
    let der = peer
        .tls_identity
        .ok_or("no client certificate reached the service")?;
    assert_eq!(Fingerprint::of_certificate(&der), alice.fingerprint());

    // A certificate is still required.
    let anonymous = QuicConnector::new(
        server.local_addr(),
        "localhost",
        QuicClientConfig::new(trust),
    )?;
    expect_connect_error(echo(&anonymous).await, "requires a client certificate");
    assert_eq!(service.exchanges(), 1);
    within("shutdown", server.shutdown()).await;
    Ok(())
}

#[tokio::test]
async fn pem_files_round_trip() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("file CA")?;
    let server_leaf = ca.issue(&["localhost", "127.0.0.1"])?;
    let client_leaf = ca.issue(&["bob"])?;
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("ca.pem"), ca.pem())?;
    // A deployed chain: the leaf, then the CA.
    std::fs::write(
        path("server.pem"),
        format!("{}{}", server_leaf.cert_pem, ca.pem()),
    )?;
    std::fs::write(path("server.key"), &server_leaf.key_pem)?;
    std::fs::write(path("client.pem"), &client_leaf.cert_pem)?;
    std::fs::write(path("client.key"), &client_leaf.key_pem)?;

    let server_identity = Identity::from_pem_files(path("server.pem"), path("server.key"))?;
    let config = QuicServerConfig::new(server_identity)
        .with_client_auth(ClientAuth::roots_from_pem_file(path("ca.pem"))?);
    let (server, service) = serve(config)?;
    let client_identity = Identity::from_pem_files(path("client.pem"), path("client.key"))?;
    let client = QuicClientConfig::new(ServerTrust::roots_from_pem_file(path("ca.pem"))?)
        .with_identity(client_identity.clone());

    for name in ["localhost", "127.0.0.1"] {
        let connector = QuicConnector::new(server.local_addr(), name, client.clone())?;
        echo(&connector).await?;
    }
    let peer = service.last_peer().ok_or("the service saw no peer")?;
    assert_eq!(
        peer.tls_identity.as_deref(),
        Some(client_identity.certificate_der())
    );
    within("shutdown", server.shutdown()).await;
    Ok(())
}

#[tokio::test]
async fn a_client_speaking_another_protocol_is_refused() -> TestResult {
    let ca = TestCa::new("test CA")?;
    let leaf = ca.issue(&["localhost"])?;
    let (server, service) = serve(QuicServerConfig::new(leaf.identity()?))?;

    // A plain quinn client that trusts the server but offers another ALPN.
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
        roots.add(cert?)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"other/1".to_vec()];
    assert_ne!(tls.alpn_protocols[0], ALPN);
    let config = quinn::ClientConfig::new(Arc::new(QuinnClientCrypto::try_from(tls)?));
    let endpoint = quinn::Endpoint::client(localhost())?;
    let connecting = endpoint.connect_with(config, server.local_addr(), "localhost")?;
    let refused = within("the handshake", connecting).await;
    assert!(
        refused.is_err(),
        "a client without ALPN syncline/1 connected"
    );
    assert_eq!(service.exchanges(), 0);
    within("shutdown", server.shutdown()).await;
    Ok(())
}

#[tokio::test]
async fn a_silent_address_fails_within_the_connect_timeout() -> TestResult {
    // A UDP socket that never answers: the handshake gets no reply.
    let silent = UdpSocket::bind(localhost())?;
    let cert = self_signed()?;
    let client = QuicClientConfig::new(ServerTrust::pinned(cert.fingerprint()))
        .with_connect_timeout(Duration::from_millis(300));
    let connector = QuicConnector::new(silent.local_addr()?, "localhost", client)?;
    expect_connect_error(echo(&connector).await, "no handshake");
    Ok(())
}

#[tokio::test]
async fn an_idle_connection_without_keep_alive_times_out_as_a_network_error() -> TestResult {
    let cert = self_signed()?;
    let idle = Duration::from_millis(300);
    let config = QuicServerConfig::new(cert.identity())
        .with_keep_alive(None)
        .with_idle_timeout(idle);
    let (server, _service) = serve(config)?;
    let client = QuicClientConfig::new(ServerTrust::pinned(cert.fingerprint()))
        .with_keep_alive(None)
        .with_idle_timeout(idle);
    let connector = QuicConnector::new(server.local_addr(), "localhost", client)?;
    let conn = within("a connection", connector.connect()).await?;
    let mut sub = within("a subscription", conn.subscribe(TestRequest::live())).await?;

    // Nothing is sent: the idle timeout ends the subscription with an error.
    match within("the idle timeout", sub.next()).await {
        Some(Err(error)) => assert_eq!(error.fault(), Fault::Network, "{error}"),
        other => panic!("expected the subscription to fail, got {other:?}"),
    }
    assert!(conn.is_closed());
    let after = within("an exchange", conn.exchange(TestRequest::echo(b"x"))).await;
    match after {
        Err(error) => assert_eq!(error.fault(), Fault::Network, "{error}"),
        Ok(frame) => panic!("a timed-out connection answered: {frame:?}"),
    }
    within("shutdown", server.shutdown()).await;
    Ok(())
}

#[tokio::test]
async fn keep_alive_holds_an_idle_connection_open() -> TestResult {
    let cert = self_signed()?;
    let idle = Duration::from_millis(1500);
    let config = QuicServerConfig::new(cert.identity())
        .with_keep_alive(None)
        .with_idle_timeout(idle);
    let (server, _service) = serve(config)?;
    let client = QuicClientConfig::new(ServerTrust::pinned(cert.fingerprint()))
        .with_keep_alive(Some(Duration::from_millis(200)))
        .with_idle_timeout(idle);
    let connector = QuicConnector::new(server.local_addr(), "localhost", client)?;
    let conn = within("a connection", connector.connect()).await?;
    let mut sub = within("a subscription", conn.subscribe(TestRequest::live())).await?;

    // Three idle timeouts pass with nothing but keep-alives on the wire.
    let waited = tokio::time::timeout(idle * 3, sub.next()).await;
    assert!(waited.is_err(), "the subscription ended: {waited:?}");
    assert!(!conn.is_closed());
    within("an exchange", conn.exchange(TestRequest::echo(b"x"))).await?;
    within("shutdown", server.shutdown()).await;
    Ok(())
}

#[test]
fn binding_needs_a_runtime_and_a_free_address() -> TestResult {
    let cert = self_signed()?;
    let service = Arc::new(TestService::new());
    let outside = QuicServer::bind(
        localhost(),
        service.clone(),
        QuicServerConfig::new(cert.identity()),
    );
    assert!(
        matches!(outside, Err(TransportError::Local { .. })),
        "{outside:?}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let taken = UdpSocket::bind(localhost())?;
        let busy = QuicServer::bind(
            taken.local_addr()?,
            service,
            QuicServerConfig::new(cert.identity()),
        );
        match busy {
            Err(error @ TransportError::Local { .. }) => assert_eq!(error.fault(), Fault::Local),
            other => panic!("binding a taken address: {other:?}"),
        }
        Ok::<_, Box<dyn Error>>(())
    })?;

    let bad_name = QuicConnector::new(
        localhost(),
        "not a valid name!",
        QuicClientConfig::new(ServerTrust::pinned(cert.fingerprint())),
    );
    assert!(
        matches!(bad_name, Err(TransportError::Local { .. })),
        "{bad_name:?}"
    );
    Ok(())
}
