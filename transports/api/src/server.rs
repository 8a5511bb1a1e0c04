//! The server side: the service a transport hands frames to, what it learns
//! about the peer, and the handle of a running server.

use std::fmt::{self, Debug};

use tokio::sync::mpsc;

use crate::client::BoxFuture;
use crate::error::{RefusalCode, ServiceError};
use crate::frame::Frame;

/// What a transport knows about the peer that sent a request.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer's address or name (a socket address, or a loopback node name).
    pub remote: String,
    /// The bearer token the peer presented, when the transport carries one
    /// (HTTP's `Authorization` header).
    pub bearer_token: Option<String>,
    /// The DER of the peer's TLS client certificate, when it presented one
    /// (mutual TLS).
    pub tls_identity: Option<Vec<u8>>,
}

impl PeerInfo {
    /// A peer known by its address or name alone.
    pub fn new(remote: impl Into<String>) -> Self {
        PeerInfo {
            remote: remote.into(),
            bearer_token: None,
            tls_identity: None,
        }
    }

    /// Adds the bearer token the peer presented.
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// Adds the DER of the peer's TLS client certificate.
    pub fn with_tls_identity(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.tls_identity = Some(der.into());
        self
    }
}

/// Keeps tokens out of logs: only whether one is present is shown.
impl Debug for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerInfo")
            .field("remote", &self.remote)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "tls_identity",
                &self
                    .tls_identity
                    .as_ref()
                    .map(|der| format!("<{} bytes>", der.len())),
            )
            .finish()
    }
}

/// What a server does with the frames it receives: the sync engine's serving
/// side implements it, transports call it.
///
/// A transport enforces frame limits around the service: an over-limit request
/// never reaches it, and an over-limit response or pushed frame is refused
/// rather than sent.
pub trait Service: Send + Sync + Debug {
    /// Answers one request. `Err` refuses it; the client receives
    /// [`TransportError::Refused`](crate::TransportError::Refused) with the
    /// code and reason.
    fn exchange<'a>(
        &'a self,
        peer: &'a PeerInfo,
        request: Frame,
    ) -> BoxFuture<'a, Result<Frame, ServiceError>>;

    /// Opens a stream of pushed frames. The transport forwards every frame sent
    /// on the returned channel's sender, in order, and ends the client's
    /// subscription when the sender is dropped. When the client goes away the
    /// transport drops the receiver, so the service's sends fail.
    ///
    /// The default refuses with [`RefusalCode::NOT_IMPLEMENTED`].
    fn subscribe<'a>(
        &'a self,
        peer: &'a PeerInfo,
        request: Frame,
    ) -> BoxFuture<'a, Result<mpsc::Receiver<Frame>, ServiceError>> {
        let _ = (peer, request);
        Box::pin(async {
            Err(ServiceError::new(
                RefusalCode::NOT_IMPLEMENTED,
                "subscriptions are not supported",
            ))
        })
    }
}

/// A running server of some transport, as the conformance kit and generic code
/// see it. Each transport's server type also has these as inherent methods.
pub trait ServerHandle: Send + Sync + Debug {
    /// The address clients connect to, as text: a socket address, a URL, or a
    /// loopback name.
    fn local_addr(&self) -> String;

    /// Stops the server: it accepts nothing more, closes its connections (their
    /// requests in flight fail on the client with a network or closed error,
    /// their subscriptions end), and returns once its tasks have stopped.
    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_bearer_token() {
        let peer = PeerInfo::new("10.0.0.1:443")
            .with_bearer_token("s3cret")
            .with_tls_identity(vec![1, 2, 3]);
        let shown = format!("{peer:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("<3 bytes>"),
            "{shown}"
        );
    }

    #[derive(Debug)]
    struct Nothing;

    impl Service for Nothing {
        fn exchange<'a>(
            &'a self,
            _peer: &'a PeerInfo,
            request: Frame,
        ) -> BoxFuture<'a, Result<Frame, ServiceError>> {
            Box::pin(async move { Ok(request) })
        }
    }

    #[tokio::test]
    async fn default_subscribe_is_refused_as_not_implemented() {
        let peer = PeerInfo::new("a");
        let refused = Nothing.subscribe(&peer, Frame::new()).await;
        assert!(matches!(refused, Err(e) if e.code() == RefusalCode::NOT_IMPLEMENTED));
    }
}
