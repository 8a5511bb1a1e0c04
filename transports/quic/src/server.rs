//! The server side: a QUIC endpoint that accepts connections, and the tasks
//! that hand each stream's request to the service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream, VarInt};
use rustls::pki_types::CertificateDer;
use syncline_transport::tls;
use syncline_transport::{
    BoxFuture, Frame, FrameCodec, Limits, PeerInfo, ServerHandle, Service, ServiceError,
    TransportError,
};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::config::QuicServerConfig;
use crate::error::{CLOSE_SHUTDOWN, STREAM_CANCELLED};
use crate::wire::{self, Reply, RequestKind};

/// How long [`QuicServer::shutdown`] waits, at each of its two steps, for the
/// connections' tasks to stop (then they are aborted) and for clients to hear
/// that their connections are closed (then the socket is dropped anyway).
const CLOSE_DRAIN: Duration = Duration::from_secs(2);

/// A running QUIC server: one UDP socket, any number of client connections,
/// each request handed to the [`Service`].
///
/// Stop it with [`shutdown`](QuicServer::shutdown); dropping it closes the
/// endpoint too, without waiting for its tasks.
#[derive(Debug)]
pub struct QuicServer {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    limits: Limits,
    accept: Option<JoinHandle<()>>,
}

impl QuicServer {
    /// Binds a UDP socket on `addr` (port 0 picks a free port) and serves
    /// `service` on it.
    ///
    /// Must be called within a tokio runtime, which runs the server's tasks.
    /// Fails with [`TransportError::Local`] when there is no runtime, the
    /// address cannot be bound, or the TLS configuration is unusable.
    pub fn bind(
        addr: SocketAddr,
        service: Arc<dyn Service>,
        config: QuicServerConfig,
    ) -> Result<Self, TransportError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| TransportError::Local {
            reason: "QuicServer::bind must be called within a tokio runtime".into(),
        })?;
        let quinn_config = config.quinn_config()?;
        let endpoint = {
            // quinn finds the runtime through the current context.
            let _entered = runtime.enter();
            crate::socket::endpoint(addr, Some(quinn_config))
        }
        .map_err(|error| TransportError::Local {
            reason: format!("cannot bind {addr}: {error}"),
        })?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|error| TransportError::Local {
                reason: format!("cannot read the bound address: {error}"),
            })?;
        let limits = config.limits();
        let accept = runtime.spawn(accept_connections(
            endpoint.clone(),
            service,
            FrameCodec::new(limits),
        ));
        Ok(QuicServer {
            endpoint,
            local_addr,
            limits,
            accept: Some(accept),
        })
    }

    /// The socket address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The frame limits the server enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Stops the server: it accepts nothing more and closes every connection
    /// (clients' requests in flight fail with [`TransportError::Closed`] by the
    /// peer, their subscriptions end), and returns once its tasks have stopped
    /// and the clients have been told (or a short drain time has passed).
    pub async fn shutdown(mut self) {
        self.close();
        if let Some(accept) = self.accept.take() {
            // The accept task ends once the endpoint is closed; a panic in it
            // has nothing left to clean up.
            let _ = accept.await;
        }
        let _ = tokio::time::timeout(CLOSE_DRAIN, self.endpoint.wait_idle()).await;
    }

    fn close(&self) {
        self.endpoint
            .close(VarInt::from_u32(CLOSE_SHUTDOWN), b"server shutdown");
    }
}

impl Drop for QuicServer {
    fn drop(&mut self) {
        self.close();
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}

impl ServerHandle for QuicServer {
    fn local_addr(&self) -> String {
        self.local_addr.to_string()
    }

    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(QuicServer::shutdown(*self))
    }
}

/// Accepts connections until the endpoint closes, then waits for every
/// connection's task to stop.
async fn accept_connections(
    endpoint: quinn::Endpoint,
    service: Arc<dyn Service>,
    codec: FrameCodec,
) {
    let mut connections = JoinSet::new();
    while let Some(incoming) = endpoint.accept().await {
        connections.spawn(serve_connection(incoming, service.clone(), codec));
        while connections.try_join_next().is_some() {}
    }
    // Closing the endpoint closed every connection, so their tasks end by
    // themselves, each after stopping its streams' tasks; abort any that
    // linger.
    let drained = tokio::time::timeout(CLOSE_DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.shutdown().await;
    }
}

/// Completes one handshake, then serves the connection's streams until it
/// closes; its streams' tasks stop with it.
async fn serve_connection(incoming: quinn::Incoming, service: Arc<dyn Service>, codec: FrameCodec) {
    // A failed handshake (an untrusted client certificate, say) is the
    // client's to report.
    let Ok(connection) = incoming.await else {
        return;
    };
    let peer = Arc::new(peer_info(&connection));
    let mut streams = JoinSet::new();
    while let Ok((send, recv)) = connection.accept_bi().await {
        streams.spawn(serve_stream(
            send,
            recv,
            service.clone(),
            peer.clone(),
            codec,
        ));
        while streams.try_join_next().is_some() {}
    }
    streams.shutdown().await;
}

/// What the service learns about a connection's client: its socket address,
/// and its end-entity certificate under mutual TLS.
fn peer_info(connection: &quinn::Connection) -> PeerInfo {
    let peer = PeerInfo::new(connection.remote_address().to_string());
    let chain = connection
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok());
    match tls::peer_identity(chain.as_deref().map(Vec::as_slice)) {
        Some(der) => peer.with_tls_identity(der),
        None => peer,
    }
}

/// Serves one stream: reads its request and answers it as an exchange or a
/// subscription.
async fn serve_stream(
    mut send: SendStream,
    mut recv: RecvStream,
    service: Arc<dyn Service>,
    peer: Arc<PeerInfo>,
    codec: FrameCodec,
) {
    let (kind, request) = match wire::read_request(&mut recv, &codec).await {
        Ok(Some(request)) => request,
        // The client opened a stream and sent nothing.
        Ok(None) => return,
        Err(error) => {
            let refusal = match error {
                TransportError::FrameTooLarge { len, max, .. } => Reply::RequestTooLarge {
                    len: wire_len(len),
                    max: wire_len(max),
                },
                TransportError::Protocol { reason } => {
                    Reply::refused(&ServiceError::bad_request(reason))
                }
                // The stream or the connection broke: nobody to answer.
                _ => return,
            };
            // The rest of the request is not wanted.
            let _ = recv.stop(VarInt::from_u32(STREAM_CANCELLED));
            finish_with(&mut send, &codec, &refusal).await;
            return;
        }
    };
    // The request is complete; the client has finished its side.
    drop(recv);
    match kind {
        RequestKind::Exchange => serve_exchange(send, &*service, &peer, request, codec).await,
        RequestKind::Subscribe => serve_subscription(send, &*service, &peer, request, codec).await,
    }
}

async fn serve_exchange(
    mut send: SendStream,
    service: &dyn Service,
    peer: &PeerInfo,
    request: Frame,
    codec: FrameCodec,
) {
    let answer = tokio::select! {
        answer = service.exchange(peer, request) => answer,
        // The client gave up on the exchange: stop working on it.
        _ = send.stopped() => return,
    };
    let reply = match answer {
        Ok(frame) => frame_reply(frame, &codec),
        Err(refusal) => Reply::refused(&refusal),
    };
    finish_with(&mut send, &codec, &reply).await;
}

async fn serve_subscription(
    mut send: SendStream,
    service: &dyn Service,
    peer: &PeerInfo,
    request: Frame,
    codec: FrameCodec,
) {
    let opened = tokio::select! {
        opened = service.subscribe(peer, request) => opened,
        _ = send.stopped() => return,
    };
    let mut pushes: mpsc::Receiver<Frame> = match opened {
        Ok(pushes) => pushes,
        Err(refusal) => {
            finish_with(&mut send, &codec, &Reply::refused(&refusal)).await;
            return;
        }
    };
    if wire::write_reply(&mut send, &codec, &Reply::Subscribed)
        .await
        .is_err()
    {
        return;
    }
    loop {
        let push = tokio::select! {
            push = pushes.recv() => push,
            // The client dropped its subscription: dropping `pushes` makes the
            // service's sends fail.
            _ = send.stopped() => return,
        };
        let Some(frame) = push else {
            // The service ended the subscription.
            let _ = send.finish();
            return;
        };
        let reply = frame_reply(frame, &codec);
        if matches!(reply, Reply::FrameTooLarge { .. }) {
            finish_with(&mut send, &codec, &reply).await;
            return;
        }
        if wire::write_reply(&mut send, &codec, &reply).await.is_err() {
            return;
        }
    }
}

/// The reply carrying `frame`, or saying it is over the server's limit.
fn frame_reply(frame: Frame, codec: &FrameCodec) -> Reply {
    match codec.limits().check_send(frame.len()) {
        Ok(()) => Reply::Frame(frame),
        Err(_) => Reply::FrameTooLarge {
            len: wire_len(frame.len()),
            max: wire_len(codec.limits().max_frame_len()),
        },
    }
}

/// A length as the envelope carries it (a `u64`; saturating on the wider
/// targets no one runs).
fn wire_len(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

/// Writes `reply` and finishes the stream. A client that went away cannot be
/// told anything, so errors end the stream silently.
async fn finish_with(send: &mut SendStream, codec: &FrameCodec, reply: &Reply) {
    if wire::write_reply(send, codec, reply).await.is_ok() {
        let _ = send.finish();
    }
}
