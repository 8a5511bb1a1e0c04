//! The HTTP transport's own behaviour beyond the conformance suite: bearer
//! tokens, the body limit, the health check, the metrics route, routing,
//! HTTPS trust and mutual TLS.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use syncline_http::{
    ClientAuth, Fingerprint, HttpClient, HttpClientConfig, HttpServer, HttpServerConfig,
    ServerTrust,
};
use syncline_transport::{
    BoxFuture, Connection, Connector, Fault, Frame, Limits, PeerInfo, RefusalCode, Service,
    ServiceError, Side, TransportError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{loopback, within};

/// Echoes requests; refuses callers without the expected token when it has
/// one; remembers the last peer and counts the requests that reached it.
#[derive(Debug, Default)]
struct Recorder {
    required_token: Option<String>,
    last_peer: Mutex<Option<PeerInfo>>,
    exchanges: AtomicU64,
}

impl Recorder {
    fn requiring(token: &str) -> Self {
        Recorder {
            required_token: Some(token.to_owned()),
            ..Recorder::default()
        }
    }

    fn last_peer(&self) -> Option<PeerInfo> {
        self.last_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Service for Recorder {
    fn exchange<'a>(
        &'a self,
        peer: &'a PeerInfo,
        request: Frame,
    ) -> BoxFuture<'a, Result<Frame, ServiceError>> {
        Box::pin(async move {
            self.exchanges.fetch_add(1, Ordering::SeqCst);
            *self
                .last_peer
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(peer.clone());
            if let Some(required) = &self.required_token
                && peer.bearer_token.as_deref() != Some(required.as_str())
            {
                return Err(ServiceError::unauthorized(
                    "a valid bearer token is required",
                ));
            }
            Ok(request)
        })
    }
}

async fn serve(service: Arc<Recorder>, config: HttpServerConfig) -> HttpServer {
    within(
        "the server to bind",
        HttpServer::bind(loopback(), service, config),
    )
    .await
    .expect("the server binds 127.0.0.1 port 0")
}

async fn connect(url: &str, config: HttpClientConfig) -> Box<dyn Connection> {
    let client = HttpClient::new(url, config).expect("a valid client config");
    within("a connection", client.connect())
        .await
        .expect("the client connects")
}

/// Writes `request` on a fresh TCP connection and reads until the server
/// closes it.
async fn raw(server: &HttpServer, request: &[u8]) -> String {
    within("a raw HTTP answer", async {
        let mut stream = TcpStream::connect(server.local_addr())
            .await
            .expect("the server accepts TCP");
        stream
            .write_all(request)
            .await
            .expect("the request is written");
        let mut answer = Vec::new();
        // The server may reset after answering; what was read still counts.
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
}

#[tokio::test]
async fn bearer_token_and_remote_address_reach_peer_info() {
    let service = Arc::new(Recorder::default());
    let server = serve(service.clone(), HttpServerConfig::new()).await;
    let conn = connect(
        &server.url(),
        HttpClientConfig::new().with_bearer_token("t0ken"),
    )
    .await;
    let reply = within("an exchange", conn.exchange(Frame::from_static(b"hi"))).await;
    assert!(matches!(&reply, Ok(r) if r == "hi"), "{reply:?}");

    let peer = service.last_peer().expect("the service saw a peer");
    assert_eq!(peer.bearer_token.as_deref(), Some("t0ken"));
    assert!(peer.remote.starts_with("127.0.0.1:"), "{peer:?}");
    within("shutdown", server.shutdown()).await;
}

#[tokio::test]
async fn missing_or_wrong_token_is_refused_with_401() {
    let service = Arc::new(Recorder::requiring("right"));
    let server = serve(service.clone(), HttpServerConfig::new()).await;

    for config in [
        HttpClientConfig::new(),
        HttpClientConfig::new().with_bearer_token("wrong"),
    ] {
        let conn = connect(&server.url(), config).await;
        let refused = within(
            "a refused exchange",
            conn.exchange(Frame::from_static(b"x")),
        )
        .await;
        match refused {
            Err(error @ TransportError::Refused { code, .. }) => {
                assert_eq!(code, RefusalCode::UNAUTHORIZED);
                assert_eq!(error.fault(), Fault::Caller);
                assert!(
                    error
                        .to_string()
                        .contains("a valid bearer token is required")
                );
            }
            other => panic!("expected a 401 refusal, got {other:?}"),
        }
    }
    let conn = connect(
        &server.url(),
        HttpClientConfig::new().with_bearer_token("right"),
    )
    .await;
    let reply = within(
        "an allowed exchange",
        conn.exchange(Frame::from_static(b"x")),
    )
    .await;
    assert!(reply.is_ok(), "{reply:?}");
    within("shutdown", server.shutdown()).await;
}

#[tokio::test]
async fn over_limit_body_is_refused_with_413_and_the_server_keeps_serving() {
    const MAX: usize = 1024;
    let service = Arc::new(Recorder::default());
    let config = HttpServerConfig::new().with_limits(Limits::new().with_max_frame_len(MAX));
    let server = serve(service.clone(), config).await;
    let conn = connect(&server.url(), HttpClientConfig::new()).await;

    // Well past the limit, and past what socket buffers hold.
    let big = Frame::from(vec![7u8; 4 * 1024 * 1024]);
    for _ in 0..3 {
        let refused = within("an over-limit exchange", conn.exchange(big.clone())).await;
        match refused {
            Err(TransportError::FrameTooLarge { len, max, sender }) => {
                assert_eq!((len, max, sender), (big.len(), MAX, Side::Local));
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        let reply = within(
            "a follow-up exchange",
            conn.exchange(Frame::from_static(b"ok")),
        )
        .await;
        assert!(matches!(&reply, Ok(r) if r == "ok"), "{reply:?}");
    }
    assert_eq!(
        service.exchanges.load(Ordering::SeqCst),
        3,
        "only the follow-ups reach the service"
    );

    // A body without a declared length is refused while it is read.
    let mut chunked = b"POST /v1/exchange HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
        Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[1u8; 0x200]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(&server, &chunked).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("syncline-max-frame-len: 1024"), "{answer}");

    // A huge declared length is refused before a byte of the body is sent.
    let answer = raw(
        &server,
        b"POST /v1/exchange HTTP/1.1\r\nHost: t\r\nContent-Length: 4000000000\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(service.exchanges.load(Ordering::SeqCst), 3);

    let reply = within("an exchange after all that", conn.exchange(Frame::new())).await;
    assert!(matches!(&reply, Ok(r) if r.is_empty()), "{reply:?}");
    within("shutdown", server.shutdown()).await;
}

#[tokio::test]
async fn health_answers_200_ok_to_plain_http() {
    let server = serve(Arc::new(Recorder::default()), HttpServerConfig::new()).await;
    let answer = raw(
        &server,
        b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");

    let answer = raw(
        &server,
        b"GET /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let answer = raw(
        &server,
        b"GET /v1/exchange HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("allow: post"),
        "{answer}"
    );
    within("shutdown", server.shutdown()).await;
}

#[tokio::test]
async fn metrics_answer_the_renderers_text_only_when_configured() {
    // Without a renderer the route does not exist.
    let server = serve(Arc::new(Recorder::default()), HttpServerConfig::new()).await;
    let answer = raw(
        &server,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    within("shutdown", server.shutdown()).await;

    // With one, every scrape renders afresh.
    let scrapes = Arc::new(AtomicU64::new(0));
    let counted = scrapes.clone();
    let config = HttpServerConfig::new().with_metrics(move || {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        format!("# TYPE scrapes counter\nscrapes_total {n}\n")
    });
    let server = serve(Arc::new(Recorder::default()), config).await;
    for n in 1..=2 {
        let answer = raw(
            &server,
            b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{answer}"
        );
        assert!(
            answer.ends_with(&format!(
                "\r\n\r\n# TYPE scrapes counter\nscrapes_total {n}\n"
            )),
            "{answer}"
        );
    }
    let answer = raw(
        &server,
        b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert_eq!(scrapes.load(Ordering::SeqCst), 2, "a POST rendered");
    // The other routes are as before.
    let answer = raw(
        &server,
        b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    within("shutdown", server.shutdown()).await;
}

#[tokio::test]
async fn connecting_to_a_closed_port_is_a_connect_error() {
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("a bound address");
    drop(listener);
    let client = HttpClient::new(&format!("http://{addr}"), HttpClientConfig::new())
        .expect("a valid client config");
    match within("a refused connect", client.connect()).await {
        Err(error @ TransportError::Connect { .. }) => assert_eq!(error.fault(), Fault::Network),
        other => panic!("expected a Connect error, got {other:?}"),
    }
}

/// An HTTPS server with a fresh self-signed certificate, and that certificate.
async fn serve_https(service: Arc<Recorder>) -> (HttpServer, common::SelfSigned) {
    let cert = common::self_signed();
    let config = HttpServerConfig::new().with_tls(cert.identity(), ClientAuth::none());
    let server = serve(service, config).await;
    assert!(
        server.url().starts_with("https://127.0.0.1:"),
        "{}",
        server.url()
    );
    (server, cert)
}

#[tokio::test]
async fn https_with_a_trusted_root_works_and_untrusted_clients_are_refused() {
    let service = Arc::new(Recorder::default());
    let (server, cert) = serve_https(service.clone()).await;

    let trusted = HttpClientConfig::new()
        .with_server_trust(cert.as_root())
        .with_bearer_token("tls-token");
    let conn = connect(&server.url(), trusted).await;
    let reply = within(
        "an HTTPS exchange",
        conn.exchange(Frame::from_static(b"sealed")),
    )
    .await;
    assert!(matches!(&reply, Ok(r) if r == "sealed"), "{reply:?}");
    let peer = service.last_peer().expect("the service saw a peer");
    assert_eq!(peer.bearer_token.as_deref(), Some("tls-token"));

    // The Mozilla roots do not know a self-signed certificate.
    let untrusted =
        HttpClient::new(&server.url(), HttpClientConfig::new()).expect("a valid client config");
    match within("an untrusted connect", untrusted.connect()).await {
        Err(TransportError::Connect { reason, .. }) => {
            assert!(reason.to_lowercase().contains("certificate"), "{reason}");
        }
        other => panic!("expected a Connect error, got {other:?}"),
    }
    // Another certificate as the only root is no better.
    let other_root = HttpClientConfig::new().with_server_trust(common::self_signed().as_root());
    let client = HttpClient::new(&server.url(), other_root).expect("a valid client config");
    let result = within("a connect with the wrong root", client.connect()).await;
    assert!(
        matches!(result, Err(TransportError::Connect { .. })),
        "{result:?}"
    );

    // Plain HTTP to an HTTPS port is not answered as HTTP.
    let plain_url = server.url().replacen("https://", "http://", 1);
    let client = HttpClient::new(&plain_url, HttpClientConfig::new()).expect("a valid config");
    assert!(
        within("a plain connect to TLS", client.connect())
            .await
            .is_err()
    );

    assert_eq!(service.exchanges.load(Ordering::SeqCst), 1);
    within("shutdown", server.shutdown()).await;
}

/// Connects with `config` and makes one exchange: under TLS 1.3 a refused
/// client certificate may surface on either step.
async fn connect_and_exchange(
    url: &str,
    config: HttpClientConfig,
) -> Result<Frame, TransportError> {
    let client = HttpClient::new(url, config)?;
    within("a connect and an exchange", async {
        let conn = client.connect().await?;
        conn.exchange(Frame::from_static(b"knock")).await
    })
    .await
}

#[tokio::test]
async fn mutual_tls_hands_the_client_certificate_to_the_service_and_refuses_others() {
    let service = Arc::new(Recorder::default());
    let cert = common::self_signed();
    let clients = common::client_ca();
    let config = HttpServerConfig::new().with_tls(cert.identity(), clients.client_auth());
    let server = serve(service.clone(), config).await;
    let pin = cert.pinned();

    let alice = HttpClientConfig::new()
        .with_server_trust(pin.clone())
        .with_identity(clients.identity());
    let conn = connect(&server.url(), alice).await;
    let reply = within(
        "an exchange under mutual TLS",
        conn.exchange(Frame::from_static(b"mine")),
    )
    .await;
    assert!(matches!(&reply, Ok(r) if r == "mine"), "{reply:?}");
    let peer = service.last_peer().expect("the service saw a peer");
    assert_eq!(
        peer.tls_identity.as_deref(),
        Some(clients.cert_der.as_slice())
    );

    // No certificate, or one from another CA: refused before the service.
    let anonymous = HttpClientConfig::new().with_server_trust(pin.clone());
    let result = connect_and_exchange(&server.url(), anonymous).await;
    assert!(result.is_err(), "{result:?}");
    let stranger = common::client_ca();
    let stranger = HttpClientConfig::new()
        .with_server_trust(pin)
        .with_identity(stranger.identity());
    let result = connect_and_exchange(&server.url(), stranger).await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(service.exchanges.load(Ordering::SeqCst), 1);

    // A server without client roots sees no identity.
    let (plain_tls, plain_cert) = serve_https(service.clone()).await;
    let config = HttpClientConfig::new()
        .with_server_trust(plain_cert.pinned())
        .with_identity(clients.identity());
    connect_and_exchange(&plain_tls.url(), config)
        .await
        .expect("a client certificate nobody asked for is not sent");
    assert_eq!(service.last_peer().expect("a peer").tls_identity, None);

    within("shutdown", server.shutdown()).await;
    within("shutdown", plain_tls.shutdown()).await;
}

#[tokio::test]
async fn pinned_fingerprint_is_checked() {
    let service = Arc::new(Recorder::default());
    let (server, cert) = serve_https(service.clone()).await;

    let pin = Fingerprint::of_certificate(&cert.cert_der);
    let conn = connect(
        &server.url(),
        HttpClientConfig::new().with_server_trust(ServerTrust::pinned(pin)),
    )
    .await;
    let reply = within(
        "a pinned exchange",
        conn.exchange(Frame::from_static(b"pinned")),
    )
    .await;
    assert!(matches!(&reply, Ok(r) if r == "pinned"), "{reply:?}");

    let mut wrong = *pin.as_bytes();
    wrong[0] ^= 0xff;
    let wrong = ServerTrust::pinned(Fingerprint::from_bytes(wrong));
    let client = HttpClient::new(
        &server.url(),
        HttpClientConfig::new().with_server_trust(wrong),
    )
    .expect("a valid client config");
    match within("a connect with the wrong pin", client.connect()).await {
        Err(error @ TransportError::Connect { .. }) => {
            assert_eq!(error.fault(), Fault::Network);
            assert!(error.to_string().contains("pinned"), "{error}");
        }
        other => panic!("expected a Connect error, got {other:?}"),
    }
    assert_eq!(service.exchanges.load(Ordering::SeqCst), 1);
    within("shutdown", server.shutdown()).await;
}

#[tokio::test]
async fn https_offers_http2_through_alpn() {
    let (server, cert) = serve_https(Arc::new(Recorder::default())).await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            cert.cert_der.clone(),
        ))
        .expect("the certificate is a valid root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("an IP name");
    let tls = within("a TLS handshake", async {
        let tcp = TcpStream::connect(server.local_addr()).await?;
        connector.connect(name, tcp).await
    })
    .await
    .expect("the handshake succeeds");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    drop(tls);
    within("shutdown", server.shutdown()).await;
}
