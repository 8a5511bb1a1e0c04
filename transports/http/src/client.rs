//! The client: a pooled hyper-util client behind the [`Connector`] and
//! [`Connection`] traits.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::response::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use syncline_transport::tls::{Identity, ServerTrust};
use syncline_transport::{
    BoxFuture, Connection, Connector, Frame, FrameCodec, Limits, MAX_REASON_LEN, RefusalCode,
    ServiceError, Side, Subscription, TransportError,
};
use tokio::sync::{mpsc, watch};

use crate::body::FullBody;
use crate::tls;
use crate::wire::{self, BodyError, BodyReader, Record};

/// The default [`HttpClientConfig::with_connect_timeout`]: 10 seconds.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default [`HttpClientConfig::with_request_timeout`]: 60 seconds.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The most of a health-check answer the client reads.
const HEALTH_BODY_MAX: usize = 256;
/// What the client calls itself in `User-Agent`.
const USER_AGENT_VALUE: &str = concat!("syncline-http/", env!("CARGO_PKG_VERSION"));

/// How an [`HttpClient`] connects: limits, credentials, trust and timeouts.
#[derive(Clone)]
pub struct HttpClientConfig {
    limits: Limits,
    bearer_token: Option<String>,
    trust: Option<ServerTrust>,
    identity: Option<Identity>,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
}

/// Keeps the token out of logs.
impl fmt::Debug for HttpClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClientConfig")
            .field("limits", &self.limits)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("trust", &self.trust)
            .field("identity", &self.identity)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClientConfig {
    /// The default [`Limits`], no token, the Mozilla root certificates for
    /// HTTPS, a 10-second connect timeout and a 60-second request timeout.
    pub fn new() -> Self {
        HttpClientConfig {
            limits: Limits::new(),
            bearer_token: None,
            trust: None,
            identity: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
        }
    }

    /// Sets the limits: requests over [`Limits::max_frame_len`] are refused
    /// before sending, responses and pushed frames over it before reading
    /// their bodies.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sends `token` as `Authorization: Bearer <token>` with every request;
    /// the server's service sees it as
    /// [`PeerInfo::bearer_token`](syncline_transport::PeerInfo::bearer_token).
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// Trusts HTTPS servers by `trust` (CA roots, or a pinned
    /// [`Fingerprint`](crate::Fingerprint) for a development server with a
    /// self-signed certificate) instead of the Mozilla root certificates.
    pub fn with_server_trust(mut self, trust: ServerTrust) -> Self {
        self.trust = Some(trust);
        self
    }

    /// Presents `identity` to HTTPS servers that require mutual TLS
    /// ([`ClientAuth`](crate::ClientAuth) on
    /// [`HttpServerConfig::with_tls`](crate::HttpServerConfig::with_tls)).
    /// A server that asks for no certificate is sent none.
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Sets how long [`Connector::connect`] may take, TCP and TLS included.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long an exchange may take from sending to the whole response,
    /// and a subscription until its stream opens; `None` waits as long as the
    /// connection lives.
    pub fn with_request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The limits the client enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

/// A [`Connector`] to one syncline HTTP server, known by its base URL.
///
/// Its connections share one pool of HTTP connections (HTTP/2 over HTTPS when
/// the server offers it, HTTP/1.1 otherwise), so connecting is cheap and
/// exchanges on one connection run concurrently. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct HttpClient {
    shared: Arc<ClientShared>,
}

impl HttpClient {
    /// A client of the server at `base_url`: `http://host:port` or
    /// `https://host:port`, optionally with a path prefix the endpoints go
    /// under (`https://example.com/sync` posts to
    /// `https://example.com/sync/v1/exchange`).
    ///
    /// Fails with [`TransportError::Local`] for a URL that is not `http` or
    /// `https` with a host, a bearer token that cannot go in a header, or a
    /// client identity rustls cannot use. Nothing is connected yet.
    pub fn new(base_url: &str, config: HttpClientConfig) -> Result<HttpClient, TransportError> {
        let uri: Uri = base_url
            .parse()
            .map_err(|error| local(format!("bad base URL {base_url:?}: {error}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(local(format!("base URL {base_url:?} is not http or https"))),
        };
        let Some(authority) = uri.authority() else {
            return Err(local(format!("base URL {base_url:?} has no host")));
        };
        if uri.query().is_some() {
            return Err(local(format!("base URL {base_url:?} has a query")));
        }
        let scheme = if https { "https" } else { "http" };
        let base = format!("{scheme}://{authority}{}", uri.path().trim_end_matches('/'));
        let endpoint = |path: &str| {
            format!("{base}{path}")
                .parse::<Uri>()
                .map_err(|error| local(format!("bad base URL {base_url:?}: {error}")))
        };
        let authorization = match &config.bearer_token {
            Some(token) => {
                let mut value = HeaderValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| local("the bearer token cannot go in a header".to_owned()))?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        // Plain HTTP never uses the TLS settings; an empty trust store keeps
        // the root certificates from being loaded for nothing.
        let tls = if https {
            tls::client_config(config.trust.as_ref(), config.identity.as_ref())?
        } else {
            tls::plain_http_config()?
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(HttpClient {
            shared: Arc::new(ClientShared {
                exchange: endpoint(wire::EXCHANGE_PATH)?,
                subscribe: endpoint(wire::SUBSCRIBE_PATH)?,
                health: endpoint(wire::HEALTH_PATH)?,
                base,
                authorization,
                limits: config.limits,
                connect_timeout: config.connect_timeout,
                request_timeout: config.request_timeout,
                client,
            }),
        })
    }

    /// The base URL, normalized (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.shared.base
    }
}

impl Connector for HttpClient {
    fn addr(&self) -> &str {
        &self.shared.base
    }

    /// Checks that the server answers `GET /health` (which also opens the
    /// pooled connection and completes TLS), then returns a connection on the
    /// shared pool. Any failure to reach it, TLS refusals included, is
    /// [`TransportError::Connect`].
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let shared = &self.shared;
            match tokio::time::timeout(shared.connect_timeout, shared.probe()).await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(TransportError::Connect {
                        addr: shared.base.clone(),
                        reason: format!("timed out after {:?}", shared.connect_timeout),
                    });
                }
            }
            Ok(Box::new(HttpConnection {
                shared: shared.clone(),
                closed: watch::Sender::new(false),
            }) as Box<dyn Connection>)
        })
    }
}

/// What an [`HttpClient`] and its connections share.
struct ClientShared {
    base: String,
    exchange: Uri,
    subscribe: Uri,
    health: Uri,
    authorization: Option<HeaderValue>,
    limits: Limits,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
    client: Client<HttpsConnector<HttpConnector>, FullBody>,
}

impl fmt::Debug for ClientShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientShared")
            .field("base", &self.base)
            .field("limits", &self.limits)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl ClientShared {
    /// `GET /health`, expecting a success status.
    async fn probe(&self) -> Result<(), TransportError> {
        let mut request = Request::new(FullBody::default());
        *request.uri_mut() = self.health.clone();
        request
            .headers_mut()
            .insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        let response =
            self.client
                .request(request)
                .await
                .map_err(|error| TransportError::Connect {
                    addr: self.base.clone(),
                    reason: wire::error_chain(&error),
                })?;
        let status = response.status();
        // Read the short answer so the connection goes back to the pool.
        let _ = wire::read_text(response.into_body(), HEALTH_BODY_MAX).await;
        if !status.is_success() {
            return Err(TransportError::Connect {
                addr: self.base.clone(),
                reason: format!("the health check answered {status}"),
            });
        }
        Ok(())
    }

    /// Posts `frame` to `uri`.
    async fn post(&self, uri: &Uri, frame: Frame) -> Result<Response<Incoming>, TransportError> {
        let mut request = Request::new(FullBody::new(frame));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri.clone();
        let headers = request.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(wire::FRAME_MEDIA_TYPE),
        );
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if let Some(authorization) = &self.authorization {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        self.client
            .request(request)
            .await
            .map_err(|error| request_error(&self.base, &error))
    }

    /// The error a response other than `200 OK` stands for. `request_len` is
    /// the length of the request frame it answers.
    async fn refusal(&self, parts: &Parts, body: Incoming, request_len: usize) -> TransportError {
        let headers = &parts.headers;
        match headers
            .get(wire::ERROR_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            Some(wire::ERROR_SHUTTING_DOWN) => return TransportError::Closed { by: Side::Peer },
            Some(wire::ERROR_RESPONSE_TOO_LARGE) => {
                let len = wire::header_number(headers, wire::FRAME_LEN_HEADER);
                let max = wire::header_number(headers, wire::MAX_FRAME_LEN_HEADER);
                return match (len, max) {
                    (Some(len), Some(max)) => TransportError::FrameTooLarge {
                        len,
                        max,
                        sender: Side::Peer,
                    },
                    _ => TransportError::Protocol {
                        reason: "a response-too-large error without its lengths".to_owned(),
                    },
                };
            }
            _ => {}
        }
        if let Some(code) = wire::header_number::<u16>(headers, wire::REFUSAL_CODE_HEADER) {
            let reason = wire::read_text(body, MAX_REASON_LEN).await;
            return ServiceError::new(RefusalCode::new(code), reason).into();
        }
        if parts.status == StatusCode::PAYLOAD_TOO_LARGE {
            // Our server names its limit; a proxy's 413 does not, and then the
            // refused length itself bounds the limit.
            let max = wire::header_number(headers, wire::MAX_FRAME_LEN_HEADER)
                .unwrap_or(request_len.saturating_sub(1));
            return TransportError::FrameTooLarge {
                len: request_len,
                max,
                sender: Side::Local,
            };
        }
        let mut reason = wire::read_text(body, MAX_REASON_LEN).await;
        if reason.trim().is_empty() {
            reason = parts.status.to_string();
        }
        ServiceError::new(RefusalCode::new(parts.status.as_u16()), reason).into()
    }
}

/// A connection handed out by [`HttpClient::connect`]: a handle on the shared
/// pool with its own closed state. Dropping it closes it.
#[derive(Debug)]
struct HttpConnection {
    shared: Arc<ClientShared>,
    /// True once closed; subscriptions' pumps watch it.
    closed: watch::Sender<bool>,
}

impl HttpConnection {
    fn check_open(&self) -> Result<(), TransportError> {
        if *self.closed.borrow() {
            return Err(TransportError::Closed { by: Side::Local });
        }
        Ok(())
    }

    /// Runs `work` within the request timeout, failing with
    /// [`TransportError::Closed`] as soon as the connection is closed.
    async fn guarded<T>(
        &self,
        work: impl Future<Output = Result<T, TransportError>>,
    ) -> Result<T, TransportError> {
        let mut closed = self.closed.subscribe();
        let timed = async {
            match self.shared.request_timeout {
                Some(limit) => tokio::time::timeout(limit, work)
                    .await
                    .unwrap_or(Err(TransportError::Timeout)),
                None => work.await,
            }
        };
        tokio::select! {
            biased;
            _ = closed.wait_for(|closed| *closed) => Err(TransportError::Closed { by: Side::Local }),
            result = timed => result,
        }
    }
}

impl Connection for HttpConnection {
    fn exchange(&self, request: Frame) -> BoxFuture<'_, Result<Frame, TransportError>> {
        Box::pin(async move {
            self.check_open()?;
            let request_len = request.len();
            self.shared.limits.check_send(request_len)?;
            let shared = &self.shared;
            self.guarded(async move {
                let response = shared.post(&shared.exchange, request).await?;
                let (parts, mut body) = response.into_parts();
                if parts.status != StatusCode::OK {
                    return Err(shared.refusal(&parts, body, request_len).await);
                }
                let max = shared.limits.max_frame_len();
                match wire::read_body(&mut body, max).await {
                    Ok(frame) => Ok(frame),
                    Err(BodyError::TooLarge { len }) => Err(TransportError::FrameTooLarge {
                        len,
                        max,
                        sender: Side::Peer,
                    }),
                    Err(BodyError::Failed(reason)) => {
                        Err(TransportError::Network(Arc::new(io::Error::other(reason))))
                    }
                }
            })
            .await
        })
    }

    fn subscribe(&self, request: Frame) -> BoxFuture<'_, Result<Subscription, TransportError>> {
        Box::pin(async move {
            self.check_open()?;
            let request_len = request.len();
            self.shared.limits.check_send(request_len)?;
            let shared = &self.shared;
            let body = self
                .guarded(async move {
                    let response = shared.post(&shared.subscribe, request).await?;
                    let (parts, body) = response.into_parts();
                    if parts.status != StatusCode::OK {
                        return Err(shared.refusal(&parts, body, request_len).await);
                    }
                    Ok(body)
                })
                .await?;
            let (frames, receiver) = mpsc::channel(shared.limits.subscription_buffer());
            tokio::spawn(pump(
                BodyReader::new(body),
                FrameCodec::new(shared.limits),
                frames,
                self.closed.subscribe(),
            ));
            Ok(Subscription::new(receiver))
        })
    }

    fn close(&self) {
        self.closed.send_replace(true);
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }
}

impl Drop for HttpConnection {
    fn drop(&mut self) {
        self.closed.send_replace(true);
    }
}

/// Reads a subscription's records and hands its frames to the subscriber,
/// until the stream ends, the subscriber drops it (which drops the body and so
/// tells the server), or the connection closes.
async fn pump(
    mut reader: BodyReader<Incoming>,
    codec: FrameCodec,
    frames: mpsc::Sender<Result<Frame, TransportError>>,
    mut closed: watch::Receiver<bool>,
) {
    // Best effort: a subscriber that stopped reading gets `None` instead.
    let end = |error: TransportError| {
        let _ = frames.try_send(Err(error));
    };
    loop {
        let record = tokio::select! {
            biased;
            // An error means the connection was dropped: closed too.
            _ = closed.wait_for(|closed| *closed) => {
                return end(TransportError::Closed { by: Side::Local });
            }
            () = frames.closed() => return,
            record = wire::read_record(&mut reader, &codec) => record,
        };
        let frame = match record {
            Ok(Record::Frame(frame)) => frame,
            Ok(Record::End) => return,
            Ok(Record::TooLarge { len, max }) => {
                return end(TransportError::FrameTooLarge {
                    len,
                    max,
                    sender: Side::Peer,
                });
            }
            Ok(Record::Shutdown) => return end(TransportError::Closed { by: Side::Peer }),
            Err(error) => return end(error),
        };
        tokio::select! {
            biased;
            _ = closed.wait_for(|closed| *closed) => {
                return end(TransportError::Closed { by: Side::Local });
            }
            sent = frames.send(Ok(frame)) => {
                if sent.is_err() {
                    return;
                }
            }
        }
    }
}

/// Maps a failed request: not reaching the server is
/// [`TransportError::Connect`], anything later a network error that keeps the
/// I/O error kind when there is one.
fn request_error(base: &str, error: &hyper_util::client::legacy::Error) -> TransportError {
    let reason = wire::error_chain(error);
    if error.is_connect() {
        return TransportError::Connect {
            addr: base.to_owned(),
            reason,
        };
    }
    let mut source = error.source();
    let mut kind = io::ErrorKind::Other;
    while let Some(cause) = source {
        if let Some(io_error) = cause.downcast_ref::<io::Error>() {
            kind = io_error.kind();
            break;
        }
        source = cause.source();
    }
    TransportError::Network(Arc::new(io::Error::new(kind, reason)))
}

fn local(reason: String) -> TransportError {
    TransportError::Local { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_normalized() {
        let client = HttpClient::new("http://127.0.0.1:9/", HttpClientConfig::new());
        assert!(matches!(&client, Ok(c) if c.base_url() == "http://127.0.0.1:9"));
        let client = HttpClient::new("https://example.com/sync/", HttpClientConfig::new());
        assert!(
            matches!(&client, Ok(c) if c.shared.exchange == "https://example.com/sync/v1/exchange")
        );
        for bad in [
            "ftp://example.com",
            "example.com",
            "http://",
            "http://a/?q=1",
        ] {
            let client = HttpClient::new(bad, HttpClientConfig::new());
            assert!(
                matches!(client, Err(TransportError::Local { .. })),
                "{bad}: {client:?}"
            );
        }
        let token = HttpClientConfig::new().with_bearer_token("bad\ntoken");
        assert!(HttpClient::new("http://a", token).is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let config = HttpClientConfig::new().with_bearer_token("s3cret");
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
