//! The client side: connectors, connections and subscriptions.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::error::TransportError;
use crate::frame::Frame;

/// A boxed, sendable future: the return type of the transport traits, which
/// keeps them dyn-compatible (`Arc<dyn Connector>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens connections to one remote address.
///
/// A connector knows its address; connecting again after a connection fails or
/// closes is the caller's way to reconnect.
pub trait Connector: Send + Sync + Debug {
    /// The address this connector connects to, for logs and errors.
    fn addr(&self) -> &str;

    /// Opens a new connection.
    ///
    /// Fails with [`TransportError::Connect`] (or another network error) when
    /// the address cannot be reached; it never waits forever.
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>>;
}

/// An open connection to a server.
///
/// Exchanges and subscriptions may run concurrently on one connection; each
/// exchange gets its own response. After the connection closes or dies, every
/// operation fails promptly (never hangs) and open subscriptions end.
pub trait Connection: Send + Sync + Debug {
    /// Sends `request` and waits for the service's response.
    ///
    /// An over-limit request or response is [`TransportError::FrameTooLarge`]
    /// and leaves the connection usable; a refusal by the service is
    /// [`TransportError::Refused`].
    fn exchange(&self, request: Frame) -> BoxFuture<'_, Result<Frame, TransportError>>;

    /// Sends `request` and opens a stream of frames pushed by the service.
    fn subscribe(&self, request: Frame) -> BoxFuture<'_, Result<Subscription, TransportError>>;

    /// Closes the connection: operations in flight and later fail with
    /// [`TransportError::Closed`], open subscriptions end.
    fn close(&self);

    /// Whether the connection is closed or known to be dead.
    fn is_closed(&self) -> bool;
}

/// A stream of frames pushed by a service, opened by [`Connection::subscribe`].
///
/// It yields frames in the order the service sent them and ends with `None`
/// when the service drops its sender, or with one `Err` (then `None`) when the
/// connection closes or dies. Dropping it tells the server to stop the stream.
#[derive(Debug)]
pub struct Subscription {
    frames: mpsc::Receiver<Result<Frame, TransportError>>,
    ended: bool,
}

impl Subscription {
    /// A subscription fed by a transport through `frames`; the transport sends
    /// an `Err` when the stream breaks and drops its sender when it ends.
    pub fn new(frames: mpsc::Receiver<Result<Frame, TransportError>>) -> Self {
        Subscription {
            frames,
            ended: false,
        }
    }

    /// The next pushed frame; `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<Result<Frame, TransportError>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polls for the next pushed frame, for adapting a subscription to a
    /// `Stream`.
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame, TransportError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let item = std::task::ready!(self.frames.poll_recv(cx));
        match &item {
            Some(Ok(_)) => {}
            // An error ends the stream: nothing after it is delivered.
            Some(Err(_)) | None => {
                self.ended = true;
                self.frames.close();
            }
        }
        Poll::Ready(item)
    }

    /// Whether the stream has ended (returned `None` or an error).
    pub fn is_ended(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Side;

    #[tokio::test]
    async fn subscription_ends_after_an_error() {
        let (tx, rx) = mpsc::channel(4);
        let mut sub = Subscription::new(rx);
        assert!(tx.send(Ok(Frame::from_static(b"a"))).await.is_ok());
        assert!(
            tx.send(Err(TransportError::Closed { by: Side::Peer }))
                .await
                .is_ok()
        );
        // Anything after the error is never delivered.
        let _ = tx.try_send(Ok(Frame::from_static(b"b")));
        assert!(matches!(sub.next().await, Some(Ok(f)) if f == "a"));
        assert!(matches!(
            sub.next().await,
            Some(Err(TransportError::Closed { .. }))
        ));
        assert!(sub.is_ended());
        assert!(sub.next().await.is_none());
    }

    #[tokio::test]
    async fn subscription_ends_when_the_sender_drops() {
        let (tx, rx) = mpsc::channel(4);
        let mut sub = Subscription::new(rx);
        drop(tx);
        assert!(sub.next().await.is_none());
        assert!(sub.is_ended());
    }
}
