//! The service the conformance kit runs behind a transport, and the requests it
//! understands.

use std::future;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::{BufMut, BytesMut};
use tokio::sync::{mpsc, watch};

use crate::client::BoxFuture;
use crate::error::ServiceError;
use crate::frame::Frame;
use crate::server::{PeerInfo, Service};

const ECHO: u8 = b'E';
const ECHO_REPLY: u8 = b'e';
const SIZED: u8 = b'S';
const REFUSE: u8 = b'R';
const GATHER: u8 = b'G';
const GATHER_REPLY: u8 = b'g';
const HANG: u8 = b'H';
const BURST: u8 = b'B';
const LIVE: u8 = b'L';

/// The largest response a sized request may ask for.
const MAX_SIZED: u64 = 64 * 1024 * 1024;
/// The most frames a burst subscription may ask for.
const MAX_BURST: u32 = 10_000;
/// How many pushed frames a live subscription's channel holds.
const LIVE_BUFFER: usize = 16;

/// Builds the requests [`TestService`] understands. The first byte names the
/// operation; an empty request gets an empty response.
#[derive(Debug, Clone, Copy)]
pub struct TestRequest;

impl TestRequest {
    /// An exchange answered with the request itself, its first byte changed
    /// from `E` to `e`; the request and response are `1 + payload.len()` bytes.
    pub fn echo(payload: &[u8]) -> Frame {
        Self::with_op(ECHO, payload)
    }

    /// An echo request of exactly `len` bytes (at least 1), payload from
    /// [`pattern`]; the response has the same length.
    pub fn echo_of_len(len: usize) -> Frame {
        Self::echo(&pattern(len.saturating_sub(1)))
    }

    /// The response [`TestService`] gives to `request` when it is an echo.
    pub fn echo_reply(request: &[u8]) -> Frame {
        match request.split_first() {
            Some((_, payload)) => Self::with_op(ECHO_REPLY, payload),
            None => Frame::new(),
        }
    }

    /// An exchange answered with [`pattern`]`(len)`.
    pub fn sized(len: u64) -> Frame {
        Self::with_op(SIZED, &len.to_be_bytes())
    }

    /// An exchange or subscription refused as forbidden, with `reason`.
    pub fn refuse(reason: &str) -> Frame {
        Self::with_op(REFUSE, reason.as_bytes())
    }

    /// An exchange answered only once `group` gather requests in all have
    /// reached the service, so answering needs the transport to run them
    /// concurrently. The response is `g` and `tag` in big-endian.
    pub fn gather(group: u32, tag: u32) -> Frame {
        let mut body = [0u8; 8];
        body[..4].copy_from_slice(&group.to_be_bytes());
        body[4..].copy_from_slice(&tag.to_be_bytes());
        Self::with_op(GATHER, &body)
    }

    /// The response to a gather request with `tag`.
    pub fn gather_reply(tag: u32) -> Frame {
        Self::with_op(GATHER_REPLY, &tag.to_be_bytes())
    }

    /// An exchange the service never answers.
    pub fn hang() -> Frame {
        Self::with_op(HANG, &[])
    }

    /// A subscription that delivers [`burst_frame`]`(0..count)` and ends.
    pub fn burst(count: u32) -> Frame {
        Self::with_op(BURST, &count.to_be_bytes())
    }

    /// A subscription fed by [`TestService::push`] and ended by
    /// [`TestService::end_live`].
    pub fn live() -> Frame {
        Self::with_op(LIVE, &[])
    }

    fn with_op(op: u8, body: &[u8]) -> Frame {
        let mut frame = BytesMut::with_capacity(1 + body.len());
        frame.put_u8(op);
        frame.put_slice(body);
        frame.freeze()
    }
}

/// `len` bytes of a fixed pattern, so a corrupted or truncated body is noticed.
pub fn pattern(len: usize) -> Vec<u8> {
    // i % 251 < 251, so the cast keeps every value.
    (0..len).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

/// Frame `k` of a burst subscription: empty when `k` is a multiple of 7,
/// otherwise `k` in big-endian followed by [`pattern`]`(k % 5)`.
pub fn burst_frame(k: u32) -> Frame {
    if k.is_multiple_of(7) {
        return Frame::new();
    }
    let mut frame = BytesMut::with_capacity(8);
    frame.put_u32(k);
    // k % 5 < 5: the cast cannot truncate.
    frame.put_slice(&pattern((k % 5) as usize));
    frame.freeze()
}

/// The service the conformance kit runs behind a transport: echoes, sized and
/// refused responses, concurrency gathers, and burst or live subscriptions,
/// with counters a check can wait on.
#[derive(Debug)]
pub struct TestService {
    exchanges: watch::Sender<u64>,
    gathered: watch::Sender<u32>,
    live: Mutex<Vec<mpsc::Sender<Frame>>>,
    last_peer: Mutex<Option<PeerInfo>>,
}

impl Default for TestService {
    fn default() -> Self {
        Self::new()
    }
}

impl TestService {
    /// A service with zeroed counters.
    pub fn new() -> Self {
        TestService {
            exchanges: watch::Sender::new(0),
            gathered: watch::Sender::new(0),
            live: Mutex::new(Vec::new()),
            last_peer: Mutex::new(None),
        }
    }

    /// How many exchange requests reached the service, answered or not.
    pub fn exchanges(&self) -> u64 {
        *self.exchanges.borrow()
    }

    /// Waits until at least `count` exchange requests have reached the service.
    pub async fn wait_for_exchanges(&self, count: u64) {
        let mut seen = self.exchanges.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = seen.wait_for(|n| *n >= count).await;
    }

    /// The peer of the latest request, as the transport described it.
    pub fn last_peer(&self) -> Option<PeerInfo> {
        lock(&self.last_peer).clone()
    }

    /// How many live subscriptions are open.
    pub fn live_subscriptions(&self) -> usize {
        let mut live = lock(&self.live);
        live.retain(|sender| !sender.is_closed());
        live.len()
    }

    /// Sends `frame` to every open live subscription, waiting while their
    /// buffers are full; returns how many took it. A subscription whose client
    /// went away stops taking frames.
    pub async fn push(&self, frame: Frame) -> usize {
        let senders = lock(&self.live).clone();
        let mut delivered = 0;
        for sender in &senders {
            if sender.send(frame.clone()).await.is_ok() {
                delivered += 1;
            }
        }
        lock(&self.live).retain(|sender| !sender.is_closed());
        delivered
    }

    /// Drops the senders of every live subscription, which ends them.
    pub fn end_live(&self) {
        lock(&self.live).clear();
    }

    async fn gather(&self, body: &[u8]) -> Result<Frame, ServiceError> {
        let (group, tag) = match body {
            [g0, g1, g2, g3, t0, t1, t2, t3] => (
                u32::from_be_bytes([*g0, *g1, *g2, *g3]),
                u32::from_be_bytes([*t0, *t1, *t2, *t3]),
            ),
            _ => return Err(ServiceError::bad_request("gather wants 8 bytes")),
        };
        self.gathered.send_modify(|n| *n = n.saturating_add(1));
        let mut arrived = self.gathered.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = arrived.wait_for(|n| *n >= group).await;
        Ok(TestRequest::gather_reply(tag))
    }
}

impl Service for TestService {
    fn exchange<'a>(
        &'a self,
        peer: &'a PeerInfo,
        request: Frame,
    ) -> BoxFuture<'a, Result<Frame, ServiceError>> {
        Box::pin(async move {
            self.exchanges.send_modify(|n| *n += 1);
            *lock(&self.last_peer) = Some(peer.clone());
            let Some((&op, body)) = request.split_first() else {
                return Ok(Frame::new());
            };
            match op {
                ECHO => Ok(TestRequest::echo_reply(&request)),
                SIZED => {
                    let len = match <[u8; 8]>::try_from(body) {
                        Ok(len) => u64::from_be_bytes(len),
                        Err(_) => return Err(ServiceError::bad_request("sized wants 8 bytes")),
                    };
                    match usize::try_from(len) {
                        Ok(len) if len as u64 <= MAX_SIZED => Ok(Frame::from(pattern(len))),
                        _ => Err(ServiceError::bad_request("sized response too long")),
                    }
                }
                REFUSE => Err(ServiceError::forbidden(String::from_utf8_lossy(body))),
                GATHER => self.gather(body).await,
                HANG => future::pending().await,
                _ => Err(ServiceError::bad_request("unknown test exchange")),
            }
        })
    }

    fn subscribe<'a>(
        &'a self,
        peer: &'a PeerInfo,
        request: Frame,
    ) -> BoxFuture<'a, Result<mpsc::Receiver<Frame>, ServiceError>> {
        Box::pin(async move {
            *lock(&self.last_peer) = Some(peer.clone());
            match request.split_first() {
                Some((&BURST, body)) => {
                    let count = match <[u8; 4]>::try_from(body) {
                        Ok(count) => u32::from_be_bytes(count),
                        Err(_) => return Err(ServiceError::bad_request("burst wants 4 bytes")),
                    };
                    if count > MAX_BURST {
                        return Err(ServiceError::bad_request("burst too long"));
                    }
                    // count <= MAX_BURST fits in usize.
                    let (sender, receiver) = mpsc::channel(count.max(1) as usize);
                    for k in 0..count {
                        // The channel has room for every frame, and the
                        // receiver is alive: try_send cannot fail.
                        let _ = sender.try_send(burst_frame(k));
                    }
                    Ok(receiver)
                }
                Some((&LIVE, _)) => {
                    let (sender, receiver) = mpsc::channel(LIVE_BUFFER);
                    lock(&self.live).push(sender);
                    Ok(receiver)
                }
                Some((&REFUSE, reason)) => {
                    Err(ServiceError::forbidden(String::from_utf8_lossy(reason)))
                }
                _ => Err(ServiceError::bad_request("unknown test subscription")),
            }
        })
    }
}

/// Locks a mutex that no code panics while holding, so poisoning cannot carry
/// a broken invariant.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
