//! The server: a TCP listener, HTTP/1.1 and HTTP/2 (hyper), optional TLS, and
//! the endpoints in front of a [`Service`].

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use syncline_transport::tls::{self as shared_tls, ClientAuth, Identity};
use syncline_transport::{
    BoxFuture, Frame, Limits, PeerInfo, ServerHandle, Service, ServiceError, TransportError,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::body::{FrameStreamBody, FullBody, ServerBody, ShutdownSignal};
use crate::tls;
use crate::wire::{self, BodyError};

/// The default [`HttpServerConfig::with_shutdown_grace`]: 5 seconds.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The default [`HttpServerConfig::with_handshake_timeout`]: 10 seconds.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server waits between failed accepts (out of file descriptors,
/// say), so a persistent failure does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How much of an over-limit request body the server reads and drops before
/// answering 413. An HTTP/1.1 client still sending its body when the server
/// closes the connection can lose the answer to a reset; reading the rest of a
/// moderately large body keeps the connection, and the answer, intact.
const DRAIN_MAX: usize = 32 * 1024 * 1024;
/// How long the server spends draining an over-limit body at most.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Renders the text that `GET /metrics` answers.
type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// How an [`HttpServer`] runs: frame limits, TLS, its timeouts, and the
/// metrics it shows.
#[derive(Clone)]
pub struct HttpServerConfig {
    limits: Limits,
    tls: Option<(Identity, ClientAuth)>,
    shutdown_grace: Duration,
    handshake_timeout: Duration,
    metrics: Option<RenderMetrics>,
}

impl fmt::Debug for HttpServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServerConfig")
            .field("limits", &self.limits)
            .field("tls", &self.tls)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("metrics", &self.metrics.as_ref().map(|_| "<renderer>"))
            .finish()
    }
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpServerConfig {
    /// Plain HTTP with the default [`Limits`], a 5-second shutdown grace and a
    /// 10-second TLS handshake timeout.
    pub fn new() -> Self {
        HttpServerConfig {
            limits: Limits::new(),
            tls: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            metrics: None,
        }
    }

    /// Sets the limits: request bodies, responses and pushed frames are
    /// bounded by [`Limits::max_frame_len`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Serves HTTPS instead of plain HTTP: the server presents `identity`
    /// (HTTP/2 and HTTP/1.1 offered through ALPN) and asks clients for
    /// certificates as `client_auth` says. Under mutual TLS the client's
    /// end-entity certificate (DER) reaches the service as
    /// [`PeerInfo::tls_identity`] with every request on that connection, so
    /// the service's access control can map it to a principal.
    pub fn with_tls(mut self, identity: Identity, client_auth: ClientAuth) -> Self {
        self.tls = Some((identity, client_auth));
        self
    }

    /// Sets how long [`HttpServer::shutdown`] waits for connections to finish
    /// before cutting them. Requests in flight are answered at once when
    /// shutdown starts, so this only bounds slow clients.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets how long a client may take to complete the TLS handshake.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Serves `GET /metrics` (and `HEAD`): `200` with the text `render`
    /// returns, as Prometheus' text format (`text/plain; version=0.0.4`).
    /// Without it, `/metrics` is `404`. `render` runs on the connection's
    /// task for every scrape, so it should be quick (a Prometheus
    /// exporter's `render`, say). The route asks for no credentials.
    pub fn with_metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// The limits the server enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

/// A running HTTP server in front of a [`Service`].
///
/// Dropping it shuts it down in the background (its tasks see the shutdown
/// signal's sender go away); [`HttpServer::shutdown`] also waits until it has
/// stopped.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    scheme: &'static str,
    shutdown: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks a free port) and serves `service` there.
    ///
    /// Fails with [`TransportError::Local`] when the address cannot be bound
    /// or rustls refuses the TLS identity. Must be called inside a tokio
    /// runtime with I/O and time enabled.
    pub async fn bind(
        addr: SocketAddr,
        service: Arc<dyn Service>,
        config: HttpServerConfig,
    ) -> Result<HttpServer, TransportError> {
        let acceptor = match &config.tls {
            Some((identity, client_auth)) => Some(TlsAcceptor::from(Arc::new(tls::server_config(
                identity,
                client_auth,
            )?))),
            None => None,
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|error| TransportError::Local {
                reason: format!("cannot bind {addr}: {error}"),
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|error| TransportError::Local {
                reason: format!("cannot read the bound address: {error}"),
            })?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new());
        builder.http2().timer(TokioTimer::new());
        let shared = Arc::new(Shared {
            service,
            limits: config.limits,
            metrics: config.metrics,
            builder,
            shutdown: shutdown_rx,
        });
        let accept_task = tokio::spawn(accept_loop(
            listener,
            shared,
            acceptor,
            config.handshake_timeout,
            config.shutdown_grace,
        ));
        tracing::debug!(%local_addr, scheme, "http transport serving");
        Ok(HttpServer {
            local_addr,
            scheme,
            shutdown,
            accept_task,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base URL clients connect to, such as `http://127.0.0.1:8080`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.local_addr)
    }

    /// Stops the server and returns once it has stopped: it accepts no more
    /// connections, answers requests in flight as shutting down (the client
    /// gets [`TransportError::Closed`] by the peer), ends open subscriptions
    /// the same way, closes idle connections, and after the shutdown grace
    /// cuts whatever is left.
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        // The task ends by itself once signalled; a panic in it has nothing
        // left to clean up.
        let _ = self.accept_task.await;
        tracing::debug!(local_addr = %self.local_addr, "http transport stopped");
    }
}

impl ServerHandle for HttpServer {
    /// The server's base URL ([`HttpServer::url`]).
    fn local_addr(&self) -> String {
        self.url()
    }

    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(HttpServer::shutdown(*self))
    }
}

/// What every connection task of one server shares.
struct Shared {
    service: Arc<dyn Service>,
    limits: Limits,
    /// Renders `GET /metrics`, if the server shows metrics.
    metrics: Option<RenderMetrics>,
    builder: auto::Builder<TokioExecutor>,
    shutdown: watch::Receiver<bool>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("service", &self.service)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Resolves once shutdown has started (or the server was dropped).
    fn shutdown_signal(&self) -> ShutdownSignal {
        let mut shutdown = self.shutdown.clone();
        Box::pin(async move {
            // An error means the server handle is gone: shut down too.
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    acceptor: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    grace: Duration,
) {
    let mut connections = JoinSet::new();
    let mut stopping = shared.shutdown_signal();
    loop {
        tokio::select! {
            biased;
            () = &mut stopping => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let shared = shared.clone();
                    let acceptor = acceptor.clone();
                    connections.spawn(async move {
                        serve_tcp(stream, remote, shared, acceptor, handshake_timeout).await;
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "http transport: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Every connection saw the same signal and is finishing; cut the slow ones.
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            left = connections.len(),
            "http transport: cutting connections after the shutdown grace"
        );
        connections.shutdown().await;
    }
}

async fn serve_tcp(
    stream: TcpStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<TlsAcceptor>,
    handshake_timeout: Duration,
) {
    // Pushed frames are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = acceptor else {
        let caller = Caller {
            addr: remote,
            certificate: None,
        };
        return serve_http(stream, caller, shared).await;
    };
    let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
    let tls = tokio::select! {
        () = shared.shutdown_signal() => return,
        tls = handshake => tls,
    };
    match tls {
        Ok(Ok(tls)) => {
            // Under mutual TLS, the client's end-entity certificate, verified
            // by the handshake, names the caller of every request on it.
            let certificate = shared_tls::peer_identity(tls.get_ref().1.peer_certificates());
            let caller = Caller {
                addr: remote,
                certificate,
            };
            serve_http(tls, caller, shared).await;
        }
        Ok(Err(error)) => tracing::debug!(%remote, %error, "http transport: TLS handshake failed"),
        Err(_) => tracing::debug!(%remote, "http transport: TLS handshake timed out"),
    }
}

/// Who is at the other end of a connection.
#[derive(Debug)]
struct Caller {
    addr: SocketAddr,
    /// The client's certificate (DER) under mutual TLS.
    certificate: Option<Vec<u8>>,
}

/// Serves one connection until the client closes it or the server shuts down,
/// then lets it finish gracefully.
async fn serve_http<I>(io: I, caller: Caller, shared: Arc<Shared>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let remote = caller.addr;
    let caller = Arc::new(caller);
    let handler = shared.clone();
    let service = service_fn(move |request| {
        let shared = handler.clone();
        let caller = caller.clone();
        async move { Ok::<_, Infallible>(route(request, &caller, &shared).await) }
    });
    let connection = shared.builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shared.shutdown_signal() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%remote, error = %error, "http transport: connection ended with an error");
    }
}

async fn route(
    request: Request<Incoming>,
    caller: &Caller,
    shared: &Shared,
) -> Response<ServerBody> {
    let path = request.uri().path();
    let method = request.method();
    match path {
        wire::HEALTH_PATH if method == Method::GET || method == Method::HEAD => {
            text(StatusCode::OK, "ok")
        }
        // Only a server given a renderer has the route.
        wire::METRICS_PATH => match &shared.metrics {
            Some(render) if method == Method::GET || method == Method::HEAD => metrics(render),
            Some(_) => method_not_allowed("GET, HEAD"),
            None => text(StatusCode::NOT_FOUND, "not found"),
        },
        wire::EXCHANGE_PATH if method == Method::POST => {
            until_shutdown(shared, exchange(request, caller, shared)).await
        }
        wire::SUBSCRIBE_PATH if method == Method::POST => {
            until_shutdown(shared, subscribe(request, caller, shared)).await
        }
        wire::HEALTH_PATH => method_not_allowed("GET, HEAD"),
        wire::EXCHANGE_PATH | wire::SUBSCRIBE_PATH => method_not_allowed("POST"),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Runs a request's handling, or answers "shutting down" when the server
/// starts shutting down first: a service that never answers cannot hold the
/// shutdown up.
async fn until_shutdown(
    shared: &Shared,
    handling: impl Future<Output = Response<ServerBody>>,
) -> Response<ServerBody> {
    tokio::select! {
        biased;
        () = shared.shutdown_signal() => {
            let mut response = text(StatusCode::SERVICE_UNAVAILABLE, "server shutting down");
            let headers = response.headers_mut();
            headers.insert(wire::ERROR_HEADER, HeaderValue::from_static(wire::ERROR_SHUTTING_DOWN));
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
            response
        }
        response = handling => response,
    }
}

async fn exchange(
    request: Request<Incoming>,
    caller: &Caller,
    shared: &Shared,
) -> Response<ServerBody> {
    let (peer, frame) = match read_request(request, caller, shared).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    match shared.service.exchange(&peer, frame).await {
        Ok(response) => {
            let len = response.len();
            if shared.limits.check_send(len).is_err() {
                let mut refused = text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the service's response is over the server's frame limit",
                );
                let headers = refused.headers_mut();
                headers.insert(
                    wire::ERROR_HEADER,
                    HeaderValue::from_static(wire::ERROR_RESPONSE_TOO_LARGE),
                );
                headers.insert(wire::FRAME_LEN_HEADER, HeaderValue::from(len));
                headers.insert(
                    wire::MAX_FRAME_LEN_HEADER,
                    HeaderValue::from(shared.limits.max_frame_len()),
                );
                return refused;
            }
            frames(StatusCode::OK, ServerBody::Full(FullBody::new(response)))
        }
        Err(refusal) => refused(&refusal),
    }
}

async fn subscribe(
    request: Request<Incoming>,
    caller: &Caller,
    shared: &Shared,
) -> Response<ServerBody> {
    let (peer, frame) = match read_request(request, caller, shared).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    match shared.service.subscribe(&peer, frame).await {
        Ok(pushed) => {
            let body = FrameStreamBody::new(pushed, shared.limits, shared.shutdown_signal());
            let mut response = frames(StatusCode::OK, ServerBody::Frames(body));
            // Proxies and caches must pass pushed frames on as they come.
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(refusal) => refused(&refusal),
    }
}

/// The peer and the request frame, or the response refusing the request.
async fn read_request(
    request: Request<Incoming>,
    caller: &Caller,
    shared: &Shared,
) -> Result<(PeerInfo, Frame), Response<ServerBody>> {
    let remote = caller.addr;
    let (parts, mut body) = request.into_parts();
    let mut peer = PeerInfo::new(remote.to_string());
    if let Some(token) = wire::bearer_token(&parts.headers) {
        peer = peer.with_bearer_token(token);
    }
    if let Some(certificate) = &caller.certificate {
        peer = peer.with_tls_identity(certificate.clone());
    }
    let max = shared.limits.max_frame_len();
    // A declared length over the limit is refused before anything is read,
    // any other body as soon as it passes the limit.
    match wire::read_body(&mut body, max).await {
        Ok(frame) => Ok((peer, frame)),
        Err(BodyError::TooLarge { .. }) => {
            drain(body).await;
            Err(request_too_large(max))
        }
        Err(BodyError::Failed(reason)) => {
            tracing::debug!(%remote, %reason, "http transport: cannot read a request body");
            Err(text(
                StatusCode::BAD_REQUEST,
                "cannot read the request body",
            ))
        }
    }
}

/// Reads and drops the rest of an over-limit request body, within bounds, so
/// the connection (and the 413 on it) survives when the body is not huge.
async fn drain(body: Incoming) {
    if wire::content_length_hint(&body).is_some_and(|len| len > DRAIN_MAX as u64) {
        return;
    }
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, wire::drain_body(body, DRAIN_MAX)).await;
}

/// The 413 answering an over-limit request, with the server's limit.
fn request_too_large(max: usize) -> Response<ServerBody> {
    let mut response = text(
        StatusCode::PAYLOAD_TOO_LARGE,
        "the request is over the server's frame limit",
    );
    let headers = response.headers_mut();
    headers.insert(
        wire::ERROR_HEADER,
        HeaderValue::from_static(wire::ERROR_REQUEST_TOO_LARGE),
    );
    headers.insert(wire::MAX_FRAME_LEN_HEADER, HeaderValue::from(max));
    response
}

/// A service's refusal: its code as the status (when it is an error status)
/// and in a header, its reason as the body.
fn refused(refusal: &ServiceError) -> Response<ServerBody> {
    let code = refusal.code().get();
    let status = match StatusCode::from_u16(code) {
        Ok(status) if status.is_client_error() || status.is_server_error() => status,
        // A code that is not an error status would read as success or
        // redirection; the header carries it instead.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = text(status, refusal.reason().to_owned());
    response
        .headers_mut()
        .insert(wire::REFUSAL_CODE_HEADER, HeaderValue::from(code));
    response
}

/// The metrics, as the renderer writes them.
fn metrics(render: &RenderMetrics) -> Response<ServerBody> {
    let mut response = text(StatusCode::OK, render());
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(wire::METRICS_MEDIA_TYPE),
    );
    response
}

fn frames(status: StatusCode, body: ServerBody) -> Response<ServerBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(wire::FRAME_MEDIA_TYPE),
    );
    response
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ServerBody> {
    let mut response = Response::new(ServerBody::Full(FullBody::new(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn method_not_allowed(allow: &'static str) -> Response<ServerBody> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncline_transport::RefusalCode;

    #[test]
    fn refusals_keep_their_code() {
        let response = refused(&ServiceError::forbidden("no"));
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            wire::header_number::<u16>(response.headers(), wire::REFUSAL_CODE_HEADER),
            Some(403)
        );
        // A code that is not an error status travels in the header alone.
        let response = refused(&ServiceError::new(RefusalCode::new(200), "odd"));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            wire::header_number::<u16>(response.headers(), wire::REFUSAL_CODE_HEADER),
            Some(200)
        );
    }
}
