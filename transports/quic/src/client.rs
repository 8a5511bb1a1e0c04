//! The client side: a connector that opens QUIC connections to one server from
//! one UDP socket, and the connection that runs exchanges and subscriptions on
//! streams.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use quinn::{ConnectError, RecvStream, SendStream, VarInt};
use rustls::pki_types::ServerName;
use syncline_transport::{
    BoxFuture, Connection, Connector, Frame, FrameCodec, Limits, Subscription, TransportError,
};
use tokio::sync::mpsc;

use crate::config::QuicClientConfig;
use crate::endpoint::{QuicClientEndpoint, require_runtime};
use crate::error::{
    CLOSE_BY_CLIENT, STREAM_CANCELLED, connect_failed, connection_lost, is_stopped, refine,
};
use crate::wire::{self, Reply, RequestKind};

/// Connects to one QUIC server: its socket address, and the name its
/// certificate must carry (unless the client pins the certificate).
///
/// Every connection a connector opens comes from one UDP socket, its
/// [`QuicClientEndpoint`]: by default its own, bound on the first
/// [`connect`](Connector::connect) and kept for every later connection and
/// reconnection; or one given to [`with_endpoint`](QuicConnector::with_endpoint)
/// and shared with other connectors. One connection carries any number of
/// concurrent exchanges and subscriptions, one stream each.
///
/// Connections keep their endpoint alive: they outlive the connector, and
/// closing one leaves the endpoint and the other connections open.
#[derive(Debug)]
pub struct QuicConnector {
    server_addr: SocketAddr,
    addr: Arc<str>,
    server_name: String,
    quinn_config: quinn::ClientConfig,
    codec: FrameCodec,
    connect_timeout: Duration,
    endpoint: EndpointSlot,
}

impl QuicConnector {
    /// A connector to the server at `server_addr` whose certificate names
    /// `server_name` (a DNS name or an IP address), from a UDP socket of its
    /// own that it binds on its first connect (on `0.0.0.0` or `[::]`, as
    /// the server's address is IPv4 or IPv6, and a free port).
    ///
    /// Fails with [`TransportError::Local`] if `server_name` is not a valid
    /// name or the TLS configuration cannot be built.
    pub fn new(
        server_addr: SocketAddr,
        server_name: impl Into<String>,
        config: QuicClientConfig,
    ) -> Result<Self, TransportError> {
        Self::build(
            server_addr,
            server_name.into(),
            config,
            EndpointSlot::Own(Mutex::new(None)),
        )
    }

    /// A connector to the server at `server_addr` whose certificate names
    /// `server_name`, opening its connections from `endpoint`, which any
    /// number of other connectors may share.
    ///
    /// Fails with [`TransportError::Local`] if `server_name` is not a valid
    /// name, the TLS configuration cannot be built, or `endpoint` cannot reach
    /// the server's address family (an IPv4 endpoint and an IPv6 server, say).
    pub fn with_endpoint(
        endpoint: QuicClientEndpoint,
        server_addr: SocketAddr,
        server_name: impl Into<String>,
        config: QuicClientConfig,
    ) -> Result<Self, TransportError> {
        endpoint.check_reaches(server_addr)?;
        Self::build(
            server_addr,
            server_name.into(),
            config,
            EndpointSlot::Shared(endpoint),
        )
    }

    fn build(
        server_addr: SocketAddr,
        server_name: String,
        config: QuicClientConfig,
        endpoint: EndpointSlot,
    ) -> Result<Self, TransportError> {
        if ServerName::try_from(server_name.as_str()).is_err() {
            return Err(TransportError::Local {
                reason: format!("{server_name:?} is not a valid TLS server name"),
            });
        }
        Ok(QuicConnector {
            server_addr,
            addr: Arc::from(server_addr.to_string()),
            server_name,
            quinn_config: config.quinn_config()?,
            codec: FrameCodec::new(config.limits()),
            connect_timeout: config.connect_timeout(),
            endpoint,
        })
    }

    /// The server's socket address.
    pub fn server_addr(&self) -> SocketAddr {
        self.server_addr
    }

    /// The name the server's certificate must carry.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The frame limits connections enforce.
    pub fn limits(&self) -> Limits {
        self.codec.limits()
    }

    /// The local address of the UDP socket connections come from; `None`
    /// before the first connect of a connector that binds its own.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.endpoint {
            EndpointSlot::Own(slot) => lock(slot).as_ref().map(QuicClientEndpoint::local_addr),
            EndpointSlot::Shared(endpoint) => Some(endpoint.local_addr()),
        }
    }

    async fn open(&self) -> Result<QuicConnection, TransportError> {
        let (endpoint, connecting) = self.start_handshake()?;
        let connection = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(connect_failed(&self.addr, &error)),
            Err(_) => {
                return Err(TransportError::Connect {
                    addr: self.addr.to_string(),
                    reason: format!(
                        "no handshake within {:?}: nobody answered",
                        self.connect_timeout
                    ),
                });
            }
        };
        Ok(QuicConnection {
            connection,
            _endpoint: endpoint,
            codec: self.codec,
            addr: self.addr.clone(),
        })
    }

    /// Starts a connection's handshake from the connector's endpoint, binding
    /// it first if the connector has none yet.
    ///
    /// An endpoint stops for good when the runtime that ran its task shuts
    /// down; the connector's own endpoint is then bound again, in the current
    /// runtime, while a shared one is the caller's to replace.
    fn start_handshake(&self) -> Result<(quinn::Endpoint, quinn::Connecting), TransportError> {
        // quinn spawns the connection's task on the current runtime.
        require_runtime("QuicConnector::connect")?;
        match &self.endpoint {
            EndpointSlot::Shared(endpoint) => match self.start_from(endpoint) {
                Err(ConnectError::EndpointStopping) => Err(TransportError::Local {
                    reason: format!(
                        "the shared client endpoint on {} has stopped (the runtime that bound \
                         it has shut down)",
                        endpoint.local_addr()
                    ),
                }),
                started => self.started(endpoint, started),
            },
            EndpointSlot::Own(slot) => {
                // Held while starting, so that concurrent first connects bind
                // one endpoint between them.
                let mut slot = lock(slot);
                if let Some(endpoint) = slot.as_ref() {
                    match self.start_from(endpoint) {
                        Err(ConnectError::EndpointStopping) => {}
                        started => return self.started(endpoint, started),
                    }
                }
                let endpoint = slot.insert(QuicClientEndpoint::for_server(self.server_addr)?);
                let started = self.start_from(endpoint);
                self.started(endpoint, started)
            }
        }
    }

    fn start_from(&self, endpoint: &QuicClientEndpoint) -> Result<quinn::Connecting, ConnectError> {
        endpoint.quinn().connect_with(
            self.quinn_config.clone(),
            self.server_addr,
            &self.server_name,
        )
    }

    fn started(
        &self,
        endpoint: &QuicClientEndpoint,
        started: Result<quinn::Connecting, ConnectError>,
    ) -> Result<(quinn::Endpoint, quinn::Connecting), TransportError> {
        match started {
            Ok(connecting) => Ok((endpoint.quinn().clone(), connecting)),
            Err(error) => Err(TransportError::Connect {
                addr: self.addr.to_string(),
                reason: error.to_string(),
            }),
        }
    }
}

/// Where a connector's connections come from.
#[derive(Debug)]
enum EndpointSlot {
    /// The connector's own endpoint, bound on the first connect.
    Own(Mutex<Option<QuicClientEndpoint>>),
    /// An endpoint the caller shares among connectors.
    Shared(QuicClientEndpoint),
}

/// Locks a connector's own endpoint slot. A panic while it was held left
/// either no endpoint or a whole one, so a poisoned lock is still usable.
fn lock(slot: &Mutex<Option<QuicClientEndpoint>>) -> MutexGuard<'_, Option<QuicClientEndpoint>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connector for QuicConnector {
    fn addr(&self) -> &str {
        &self.addr
    }

    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let connection = self.open().await?;
            Ok(Box::new(connection) as Box<dyn Connection>)
        })
    }
}

/// One QUIC connection to a server.
#[derive(Debug)]
struct QuicConnection {
    connection: quinn::Connection,
    /// A handle on the UDP socket, shared with the connector and its other
    /// connections; kept for as long as the connection.
    _endpoint: quinn::Endpoint,
    codec: FrameCodec,
    addr: Arc<str>,
}

impl QuicConnection {
    async fn exchange_frame(&self, request: Frame) -> Result<Frame, TransportError> {
        let mut pending = self.send_request(RequestKind::Exchange, &request).await?;
        match self.read_first_reply(&mut pending).await? {
            Reply::Frame(frame) => Ok(frame),
            other => Err(other.into_error()),
        }
    }

    async fn subscribe_frames(&self, request: Frame) -> Result<Subscription, TransportError> {
        let mut pending = self.send_request(RequestKind::Subscribe, &request).await?;
        match self.read_first_reply(&mut pending).await? {
            Reply::Subscribed => {}
            other => return Err(other.into_error()),
        }
        let (frames, subscription) = mpsc::channel(self.codec.limits().subscription_buffer());
        tokio::spawn(forward_pushes(
            pending.recv,
            frames,
            self.codec,
            self.connection.clone(),
            self.addr.clone(),
        ));
        Ok(Subscription::new(subscription))
    }

    /// Opens a stream and sends `request` on it, finishing the send side;
    /// returns the receive side for the reply.
    ///
    /// An over-limit request is refused before a stream is opened. When the
    /// server stops reading the request early (it refused it), the write
    /// error is kept for [`QuicConnection::read_first_reply`] to explain.
    async fn send_request(
        &self,
        kind: RequestKind,
        request: &[u8],
    ) -> Result<PendingReply, TransportError> {
        if let Some(reason) = self.connection.close_reason() {
            return Err(connection_lost(&self.addr, &reason));
        }
        self.codec.limits().check_send(request.len())?;
        let (mut send, recv) = self
            .connection
            .open_bi()
            .await
            .map_err(|error| connection_lost(&self.addr, &error))?;
        let sent = write_request(&mut send, &self.codec, kind, request).await;
        match sent {
            Ok(()) => Ok(PendingReply { recv, sent: Ok(()) }),
            Err(error) if is_stopped(&error) => Ok(PendingReply {
                recv,
                sent: Err(error),
            }),
            Err(error) => Err(self.refine(error)),
        }
    }

    /// Reads the server's first reply to a request.
    async fn read_first_reply(&self, pending: &mut PendingReply) -> Result<Reply, TransportError> {
        let reply = wire::read_reply(&mut pending.recv, &self.codec).await;
        match (reply, &pending.sent) {
            (Ok(Some(Reply::Frame(_))), Err(error)) => Err(self.refine(error.clone())),
            (Ok(Some(reply)), _) => Ok(reply),
            // A refusal did not arrive; the write error is the better account.
            (_, Err(error)) => Err(self.refine(error.clone())),
            (Ok(None), Ok(())) => Err(TransportError::Protocol {
                reason: "the server ended the stream without a reply".into(),
            }),
            (Err(error), Ok(())) => Err(self.refine(error)),
        }
    }

    fn refine(&self, error: TransportError) -> TransportError {
        refine(&self.addr, &self.connection, error)
    }
}

impl Connection for QuicConnection {
    fn exchange(&self, request: Frame) -> BoxFuture<'_, Result<Frame, TransportError>> {
        Box::pin(self.exchange_frame(request))
    }

    fn subscribe(&self, request: Frame) -> BoxFuture<'_, Result<Subscription, TransportError>> {
        Box::pin(self.subscribe_frames(request))
    }

    fn close(&self) {
        self.connection
            .close(VarInt::from_u32(CLOSE_BY_CLIENT), b"closed by the client");
    }

    fn is_closed(&self) -> bool {
        self.connection.close_reason().is_some()
    }
}

/// The receive side of a request's stream, and how sending the request went.
struct PendingReply {
    recv: RecvStream,
    /// `Err` when the server stopped reading the request early.
    sent: Result<(), TransportError>,
}

async fn write_request(
    send: &mut SendStream,
    codec: &FrameCodec,
    kind: RequestKind,
    request: &[u8],
) -> Result<(), TransportError> {
    wire::write_request(send, codec, kind, request).await?;
    // Finishing fails only on a stream already finished or reset, which
    // nothing here does; the reply tells whether the request arrived.
    let _ = send.finish();
    Ok(())
}

/// Forwards a subscription's pushed frames from its stream to the
/// [`Subscription`], until the stream ends, breaks, or the subscription is
/// dropped (then the server is told to stop).
async fn forward_pushes(
    mut recv: RecvStream,
    frames: mpsc::Sender<Result<Frame, TransportError>>,
    codec: FrameCodec,
    connection: quinn::Connection,
    addr: Arc<str>,
) {
    loop {
        let reply = tokio::select! {
            () = frames.closed() => {
                // Only fails on a stream already stopped or finished.
                let _ = recv.stop(VarInt::from_u32(STREAM_CANCELLED));
                return;
            }
            reply = wire::read_reply(&mut recv, &codec) => reply,
        };
        let item = match reply {
            Ok(Some(Reply::Frame(frame))) => Ok(frame),
            // The service ended the subscription.
            Ok(None) => return,
            // Over the server's limit, or out of place: either ends the stream.
            Ok(Some(other)) => Err(other.into_error()),
            Err(error) => Err(refine(&addr, &connection, error)),
        };
        let ended = item.is_err();
        if frames.send(item).await.is_err() || ended {
            // Dropping `recv` tells the server to stop sending.
            return;
        }
    }
}
