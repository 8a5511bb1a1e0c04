//! Stream-level behaviour over real QUIC: the wire envelope as a raw quinn
//! client sees it, requests that outgrow flow control, and many operations
//! sharing one connection.

mod common;

use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig as QuinnClientCrypto;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use syncline_quic::{
    ALPN, QuicClientConfig, QuicConnector, QuicServer, QuicServerConfig, ServerTrust,
};
use syncline_transport::conformance::{TestRequest, TestService};
use syncline_transport::{
    Connection, Connector, DEFAULT_MAX_FRAME_LEN, Frame, Limits, Side, TransportError,
};
use tokio::task::JoinSet;

use common::TestCa;

type TestResult = Result<(), Box<dyn Error>>;

const WAIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("gave up after {WAIT:?} waiting for {what}"),
    }
}

/// A server for a fresh [`TestService`] with a CA-issued certificate, and the
/// CA's PEM for clients.
struct Setup {
    server: QuicServer,
    service: Arc<TestService>,
    ca_pem: String,
}

fn setup(limits: Limits) -> Result<Setup, Box<dyn Error>> {
    let ca = TestCa::new("streams CA")?;
    let leaf = ca.issue(&["localhost"])?;
    let service = Arc::new(TestService::new());
    let config = QuicServerConfig::new(leaf.identity()?).with_limits(limits);
    let server = QuicServer::bind(([127, 0, 0, 1], 0).into(), service.clone(), config)?;
    Ok(Setup {
        server,
        service,
        ca_pem: ca.pem().to_owned(),
    })
}

impl Setup {
    fn connector(&self, limits: Limits) -> Result<QuicConnector, Box<dyn Error>> {
        let trust = ServerTrust::roots_from_pem(self.ca_pem.as_bytes())?;
        let config = QuicClientConfig::new(trust).with_limits(limits);
        Ok(QuicConnector::new(
            self.server.local_addr(),
            "localhost",
            config,
        )?)
    }

    /// A plain quinn connection speaking `syncline/1`, to write raw bytes.
    async fn raw(&self) -> Result<(quinn::Endpoint, quinn::Connection), Box<dyn Error>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let config = quinn::ClientConfig::new(Arc::new(QuinnClientCrypto::try_from(tls)?));
        let bind: SocketAddr = ([127, 0, 0, 1], 0).into();
        let endpoint = quinn::Endpoint::client(bind)?;
        let connecting = endpoint.connect_with(config, self.server.local_addr(), "localhost")?;
        let connection = within("a raw connection", connecting).await?;
        Ok((endpoint, connection))
    }
}

/// Sends `bytes` on a new stream (finishing it when `finish`), and returns
/// everything the server sends back before finishing its side.
async fn raw_exchange(
    connection: &quinn::Connection,
    bytes: &[u8],
    finish: bool,
) -> Result<Vec<u8>, Box<dyn Error>> {
    let (mut send, mut recv) = connection.open_bi().await?;
    send.write_all(bytes).await?;
    if finish {
        send.finish()?;
    }
    Ok(within("the raw reply", recv.read_to_end(64 * 1024)).await?)
}

#[tokio::test]
async fn a_huge_announced_request_is_refused_from_its_header() -> TestResult {
    let setup = setup(Limits::new())?;
    let (_endpoint, connection) = setup.raw().await?;

    // An exchange announcing a 4 GiB frame, and never sending it: the server
    // answers from the header alone (status 2, length, limit).
    let reply = raw_exchange(&connection, &[0, 0xff, 0xff, 0xff, 0xff], false).await?;
    let mut expected = vec![2];
    expected.extend_from_slice(&u64::from(u32::MAX).to_be_bytes());
    expected.extend_from_slice(&(DEFAULT_MAX_FRAME_LEN as u64).to_be_bytes());
    assert_eq!(reply, expected);
    assert_eq!(setup.service.exchanges(), 0);
    within("shutdown", setup.server.shutdown()).await;
    Ok(())
}

#[tokio::test]
async fn malformed_requests_are_refused_as_bad_requests() -> TestResult {
    let setup = setup(Limits::new())?;
    let (_endpoint, connection) = setup.raw().await?;

    for (request, reason) in [
        (&[7, 0, 0, 0, 0][..], "unknown request kind 7"),
        (
            &[0, 0, 0, 0, 10, 1, 2, 3][..],
            "stream ended after 3 of 10 bytes",
        ),
        (&[1][..], "ended after the request kind"),
    ] {
        let reply = raw_exchange(&connection, request, true).await?;
        // Status 1, code 400, reason length, reason.
        assert!(reply.len() > 5, "{request:?}: {reply:?}");
        assert_eq!(reply[..3], [1, 1, 144], "{request:?}: {reply:?}");
        let len = usize::from(u16::from_be_bytes([reply[3], reply[4]]));
        let text = String::from_utf8_lossy(&reply[5..]);
        assert_eq!(len, text.len());
        assert!(text.contains(reason), "{request:?}: {text}");
    }
    // A stream finished before any request is simply closed.
    assert!(raw_exchange(&connection, &[], true).await?.is_empty());

    // A well-formed raw exchange: status 0, then the frame.
    let reply = raw_exchange(&connection, &[0, 0, 0, 0, 2, b'E', b'!'], true).await?;
    assert_eq!(reply, [0, 0, 0, 0, 2, b'e', b'!']);
    assert_eq!(setup.service.exchanges(), 1);
    within("shutdown", setup.server.shutdown()).await;
    Ok(())
}

#[tokio::test]
async fn a_request_beyond_the_flow_control_window_is_refused_early() -> TestResult {
    let server_limit = 64 * 1024;
    let setup = setup(Limits::new().with_max_frame_len(server_limit))?;
    let connector = setup.connector(Limits::new())?;
    let conn = within("a connection", connector.connect()).await?;

    // Far more than QUIC lets a client send before the server reads: the
    // client learns of the refusal while its write is blocked.
    let len = 8 * 1024 * 1024;
    let result = within(
        "an over-limit request",
        conn.exchange(TestRequest::echo_of_len(len)),
    )
    .await;
    match result {
        Err(TransportError::FrameTooLarge {
            len: l,
            max,
            sender: Side::Local,
        }) => assert_eq!((l, max), (len, server_limit)),
        other => panic!("expected FrameTooLarge sent by the local side, got {other:?}"),
    }
    assert_eq!(setup.service.exchanges(), 0);
    let request = TestRequest::echo(b"still there?");
    let reply = within("a follow-up", conn.exchange(request.clone())).await?;
    assert_eq!(reply, TestRequest::echo_reply(&request));
    within("shutdown", setup.server.shutdown()).await;
    Ok(())
}

#[tokio::test]
async fn subscriptions_and_exchanges_share_one_connection() -> TestResult {
    const SUBSCRIPTIONS: usize = 20;
    const EXCHANGES: u32 = 40;
    let setup = setup(Limits::new())?;
    let connector = setup.connector(Limits::new())?;
    let conn: Arc<dyn Connection> = Arc::from(within("a connection", connector.connect()).await?);

    let mut subs = Vec::new();
    for _ in 0..SUBSCRIPTIONS {
        subs.push(within("a subscription", conn.subscribe(TestRequest::live())).await?);
    }
    let mut exchanges = JoinSet::new();
    for tag in 0..EXCHANGES {
        let conn = conn.clone();
        exchanges.spawn(async move {
            (
                tag,
                conn.exchange(TestRequest::gather(EXCHANGES, tag)).await,
            )
        });
    }
    let pushed = within("a push", setup.service.push(Frame::from_static(b"news"))).await;
    assert_eq!(pushed, SUBSCRIPTIONS);
    for sub in &mut subs {
        let frame = within("a pushed frame", sub.next()).await;
        assert!(matches!(&frame, Some(Ok(f)) if f == "news"), "{frame:?}");
    }
    while let Some(joined) = within("the exchanges", exchanges.join_next()).await {
        let (tag, reply) = joined?;
        assert_eq!(reply?, TestRequest::gather_reply(tag));
    }
    setup.service.end_live();
    for sub in &mut subs {
        let end = within("the subscription's end", sub.next()).await;
        assert!(end.is_none(), "{end:?}");
    }
    within("shutdown", setup.server.shutdown()).await;
    Ok(())
}
