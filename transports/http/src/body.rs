//! The HTTP bodies this transport sends: a whole frame, and a server's stream
//! of pushed frames.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame as BodyFrame, SizeHint};
use syncline_transport::{Frame, Limits};
use tokio::sync::mpsc;

use crate::wire;

/// A body sent in one piece: a request or response frame, or a short text.
#[derive(Debug, Default)]
pub(crate) struct FullBody {
    data: Option<Bytes>,
    len: u64,
}

impl FullBody {
    /// A body holding `data`.
    pub(crate) fn new(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        FullBody {
            len: data.len() as u64,
            data: (!data.is_empty()).then_some(data),
        }
    }
}

impl Body for FullBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().data.take().map(|d| Ok(BodyFrame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // The exact length makes hyper send a Content-Length, which the client
        // checks against its limit before reading the body.
        SizeHint::with_exact(self.len)
    }
}

/// A future that resolves when the server starts shutting down.
pub(crate) type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The body of a subscription response: the service's pushed frames as
/// records (see [`wire`]), ended by a closing record.
///
/// It holds the service's receiver, so when hyper drops the body (the client
/// went away, or the stream ended) the service's sends start failing.
pub(crate) struct FrameStreamBody {
    frames: mpsc::Receiver<Frame>,
    limits: Limits,
    shutdown: ShutdownSignal,
    /// The body of a frame whose record header was just sent.
    pending: Option<Bytes>,
    /// A closing record was sent; nothing follows.
    done: bool,
}

impl std::fmt::Debug for FrameStreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameStreamBody")
            .field("limits", &self.limits)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl FrameStreamBody {
    /// A stream of the frames from `frames`, each checked against `limits`,
    /// ended early when `shutdown` resolves.
    pub(crate) fn new(
        frames: mpsc::Receiver<Frame>,
        limits: Limits,
        shutdown: ShutdownSignal,
    ) -> Self {
        FrameStreamBody {
            frames,
            limits,
            shutdown,
            pending: None,
            done: false,
        }
    }

    /// Sends the closing `record` and releases the service's sender.
    fn close_with(&mut self, record: Bytes) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        self.done = true;
        self.frames.close();
        Poll::Ready(Some(Ok(BodyFrame::data(record))))
    }
}

impl Body for FrameStreamBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(body) = this.pending.take() {
            return Poll::Ready(Some(Ok(BodyFrame::data(body))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        // Shutdown goes first, so a service that pushes without pause cannot
        // keep the server from stopping.
        if this.shutdown.as_mut().poll(cx).is_ready() {
            return this.close_with(wire::shutdown_record());
        }
        match this.frames.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => this.close_with(wire::end_record()),
            Poll::Ready(Some(frame)) => {
                match wire::frame_record_header(frame.len(), &this.limits) {
                    Ok(header) => {
                        if !frame.is_empty() {
                            this.pending = Some(frame);
                        }
                        Poll::Ready(Some(Ok(BodyFrame::data(header))))
                    }
                    // Refused by the server's own limit: the stream ends, and the
                    // client learns the frame's length and the limit.
                    Err(_) => this.close_with(wire::too_large_record(
                        frame.len(),
                        this.limits.max_frame_len(),
                    )),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_none()
    }
}

/// The body of any response the server sends.
#[derive(Debug)]
pub(crate) enum ServerBody {
    /// A whole frame or a short text.
    Full(FullBody),
    /// A subscription's stream of records.
    Frames(FrameStreamBody),
}

impl Body for ServerBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ServerBody::Full(body) => Pin::new(body).poll_frame(cx),
            ServerBody::Frames(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ServerBody::Full(body) => body.is_end_stream(),
            ServerBody::Frames(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ServerBody::Full(body) => body.size_hint(),
            ServerBody::Frames(body) => body.size_hint(),
        }
    }
}
