//! Client connections, and how requests, responses and pushed frames cross a
//! link between two nodes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncline_transport::{
    BoxFuture, Connection, Connector, Frame, Limits, PeerInfo, Side, Subscription, TransportError,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::network::{Draws, LinkEpoch, NetShared, lock};
use crate::rng::SplitMix64;
use crate::server::ServerShared;

/// Connects node `from` to the server named `to`.
#[derive(Debug)]
pub(crate) struct LoopbackConnector {
    network: Arc<NetShared>,
    from: String,
    to: String,
    limits: Limits,
}

impl LoopbackConnector {
    pub(crate) fn new(network: Arc<NetShared>, from: &str, to: &str, limits: Limits) -> Self {
        LoopbackConnector {
            network,
            from: from.to_owned(),
            to: to.to_owned(),
            limits,
        }
    }
}

impl Connector for LoopbackConnector {
    fn addr(&self) -> &str {
        &self.to
    }

    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>> {
        // Drawn now, so the fault sequence follows the order of calls.
        let (lost, latency) = self.network.draw_connect();
        Box::pin(async move {
            delay(latency).await;
            let refused = |reason: &str| TransportError::Connect {
                addr: self.to.clone(),
                reason: reason.to_owned(),
            };
            if lost {
                return Err(refused("connection attempt lost"));
            }
            let Some(epoch) = self.network.epoch(&self.from, &self.to) else {
                return Err(refused("no route: partitioned or offline"));
            };
            let Some(server) = self.network.lookup(&self.to) else {
                return Err(refused("no server listens on this name"));
            };
            self.network.record_connection();
            let link = Link {
                network: self.network.clone(),
                server,
                from: self.from.clone(),
                to: self.to.clone(),
                limits: self.limits,
                epoch,
                state: watch::Sender::new(LinkState::Open),
                lane: Mutex::new(None),
            };
            Ok(Box::new(LoopbackConnection {
                link: Arc::new(link),
            }) as Box<dyn Connection>)
        })
    }
}

/// A client's connection; dropping it closes it.
#[derive(Debug)]
struct LoopbackConnection {
    link: Arc<Link>,
}

impl Connection for LoopbackConnection {
    fn exchange(&self, request: Frame) -> BoxFuture<'_, Result<Frame, TransportError>> {
        let flight = self.link.send(request.len());
        Box::pin(async move { self.link.exchange(flight?, request).await })
    }

    fn subscribe(&self, request: Frame) -> BoxFuture<'_, Result<Subscription, TransportError>> {
        let flight = self.link.send(request.len());
        Box::pin(async move { self.link.subscribe(flight?, request).await })
    }

    fn close(&self) {
        self.link.close();
    }

    fn is_closed(&self) -> bool {
        self.link.check().is_err()
    }
}

impl Drop for LoopbackConnection {
    fn drop(&mut self) {
        self.link.close();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Open,
    /// Closed by the client.
    Closed,
    /// Killed by a partition or an offline node.
    Broken,
}

/// One connection's state, shared by its client handle, its operations in
/// flight and its subscriptions' forwarding tasks.
#[derive(Debug)]
struct Link {
    network: Arc<NetShared>,
    server: Arc<ServerShared>,
    from: String,
    to: String,
    /// The client's limits.
    limits: Limits,
    epoch: LinkEpoch,
    state: watch::Sender<LinkState>,
    /// Resolves when the latest request sent on this connection has arrived;
    /// the next request waits for it unless reordering is on.
    lane: Mutex<Option<oneshot::Receiver<()>>>,
}

/// A request on its way: its fault decisions and its place in the lane.
struct Flight {
    draws: Draws,
    arrival: Instant,
    after: Option<oneshot::Receiver<()>>,
    arrived: oneshot::Sender<()>,
}

impl Link {
    /// Starts sending a request of `len` bytes: checks the connection and the
    /// client's limit, draws the faults and takes a place in the lane. Runs
    /// when the caller calls, not when the future is first polled.
    fn send(&self, len: usize) -> Result<Flight, TransportError> {
        self.check()?;
        self.limits.check_send(len)?;
        let draws = self.network.draw_exchange();
        let (arrived, next) = oneshot::channel();
        let previous = lock(&self.lane).replace(next);
        self.network.record_sent(len);
        Ok(Flight {
            draws,
            arrival: Instant::now() + draws.request_latency,
            after: if draws.reorder { None } else { previous },
            arrived,
        })
    }

    async fn exchange(&self, flight: Flight, request: Frame) -> Result<Frame, TransportError> {
        let draws = flight.draws;
        self.deliver(flight, request.len()).await?;
        if draws.duplicate {
            self.network.record_duplicated();
            self.network.record_received(request.len());
        }

        let (reply, answer) = oneshot::channel();
        let service = self.server.service.clone();
        let peer = PeerInfo::new(self.from.clone());
        self.server.spawn_until_shutdown(async move {
            let first = service.exchange(&peer, request.clone()).await;
            if draws.duplicate {
                // The copy is handled before the answer leaves, and its own
                // answer is lost: the client sees one response.
                let _ = service.exchange(&peer, request).await;
            }
            let _ = reply.send(first);
        })?;
        let answer = tokio::select! {
            biased;
            error = self.interrupted() => return Err(error),
            answer = answer => answer,
        };
        // The task only ends without answering when the server shuts down.
        let answer = answer.map_err(|_| TransportError::Closed { by: Side::Peer })?;
        let response = match answer {
            Ok(frame) => match self.server.limits.check_send(frame.len()) {
                Ok(()) => {
                    self.network.record_sent(frame.len());
                    Ok(frame)
                }
                // The server refuses to send it and tells the client why.
                Err(_) => Err(TransportError::FrameTooLarge {
                    len: frame.len(),
                    max: self.server.limits.max_frame_len(),
                    sender: Side::Peer,
                }),
            },
            Err(refusal) => Err(TransportError::from(refusal)),
        };

        self.travel_back(draws).await?;
        let frame = response?;
        self.limits.check_receive(frame.len())?;
        self.network.record_received(frame.len());
        Ok(frame)
    }

    async fn subscribe(
        self: &Arc<Self>,
        flight: Flight,
        request: Frame,
    ) -> Result<Subscription, TransportError> {
        let draws = flight.draws;
        self.deliver(flight, request.len()).await?;

        let (sink, frames) = mpsc::channel(self.limits.subscription_buffer());
        let (reply, answer) = oneshot::channel();
        let service = self.server.service.clone();
        let link = self.clone();
        self.server.spawn(async move {
            let peer = PeerInfo::new(link.from.clone());
            let opened = tokio::select! {
                biased;
                _ = link.interrupted() => return,
                opened = service.subscribe(&peer, request) => opened,
            };
            match opened {
                Ok(source) => {
                    if reply.send(Ok(())).is_ok() {
                        link.forward(source, sink, draws.stream_seed).await;
                    }
                }
                Err(refusal) => {
                    let _ = reply.send(Err(refusal));
                }
            }
        })?;
        let answer = tokio::select! {
            biased;
            error = self.interrupted() => return Err(error),
            answer = answer => answer,
        };
        // The task only ends without answering when the link is interrupted.
        let answer = answer.map_err(|_| TransportError::Closed { by: Side::Peer })?;
        // A lost answer drops `frames`, which stops the forwarding task.
        self.travel_back(draws).await?;
        answer.map_err(TransportError::from)?;
        Ok(Subscription::new(frames))
    }

    /// Carries a request of `len` bytes to the server: waits for its arrival,
    /// applies the drop fault and the server's limit.
    async fn deliver(&self, flight: Flight, len: usize) -> Result<(), TransportError> {
        let Flight {
            draws,
            arrival,
            after,
            arrived,
        } = flight;
        let travel = async move {
            if let Some(earlier) = after {
                // Sent or abandoned: either way the earlier request is no
                // longer ahead of this one.
                let _ = earlier.await;
            }
            if arrival > Instant::now() {
                tokio::time::sleep_until(arrival).await;
            }
        };
        let arrived_ok = tokio::select! {
            biased;
            error = self.interrupted() => Err(error),
            () = travel => self.check(),
        };
        // Let the next request on this connection arrive.
        drop(arrived);
        arrived_ok?;
        if draws.drop_request {
            self.network.record_dropped();
            return Err(TransportError::network("request lost"));
        }
        if self.server.limits.check_receive(len).is_err() {
            // The server refuses it; the client sent it, so it is its fault.
            return Err(TransportError::FrameTooLarge {
                len,
                max: self.server.limits.max_frame_len(),
                sender: Side::Local,
            });
        }
        self.network.record_received(len);
        Ok(())
    }

    /// Carries an answer back to the client: latency, then the drop fault.
    async fn travel_back(&self, draws: Draws) -> Result<(), TransportError> {
        tokio::select! {
            biased;
            error = self.interrupted() => return Err(error),
            () = delay(draws.response_latency) => self.check()?,
        }
        if draws.drop_response {
            self.network.record_dropped();
            return Err(TransportError::network("response lost"));
        }
        Ok(())
    }

    /// Forwards a service's pushed frames to the client until one side ends the
    /// stream or the link is interrupted.
    async fn forward(
        &self,
        mut source: mpsc::Receiver<Frame>,
        sink: mpsc::Sender<Result<Frame, TransportError>>,
        seed: u64,
    ) {
        // Best effort: a client that stopped reading gets `None` instead.
        let end = |error: TransportError| {
            let _ = sink.try_send(Err(error));
        };
        let mut latencies = SplitMix64::new(seed);
        let interrupted = self.interrupted();
        tokio::pin!(interrupted);
        loop {
            let frame = tokio::select! {
                biased;
                error = &mut interrupted => return end(error),
                () = sink.closed() => return,
                frame = source.recv() => match frame {
                    Some(frame) => frame,
                    None => return,
                },
            };
            let len = frame.len();
            if self.server.limits.check_send(len).is_err() {
                // Refused by the server's own limit: from the client's side,
                // the peer tried to send it.
                return end(TransportError::FrameTooLarge {
                    len,
                    max: self.server.limits.max_frame_len(),
                    sender: Side::Peer,
                });
            }
            self.network.record_sent(len);
            let (min, max) = self.network.latency();
            tokio::select! {
                biased;
                error = &mut interrupted => return end(error),
                () = delay(latencies.duration(min, max)) => {}
            }
            if let Err(error) = self.limits.check_receive(len) {
                return end(error);
            }
            tokio::select! {
                biased;
                error = &mut interrupted => return end(error),
                sent = sink.send(Ok(frame)) => if sent.is_err() { return },
            }
            self.network.record_received(len);
        }
    }

    /// Resolves, with the error operations should fail with, once the
    /// connection is closed, its server shut down, or its link cut.
    async fn interrupted(&self) -> TransportError {
        // Subscribing before checking means no change is missed in between.
        let mut state = self.state.subscribe();
        let mut shutdown = self.server.shutdown_signal();
        let mut topology = self.network.topology();
        loop {
            if let Err(error) = self.check() {
                return error;
            }
            // The senders live as long as `self`, so `changed` cannot fail;
            // if it did, the link would be unusable anyway.
            let alive = tokio::select! {
                biased;
                changed = state.changed() => changed.is_ok(),
                changed = shutdown.changed() => changed.is_ok(),
                changed = topology.changed() => changed.is_ok(),
            };
            if !alive {
                return TransportError::network("connection lost");
            }
        }
    }

    /// Whether the connection can carry traffic now; a cut link kills it.
    fn check(&self) -> Result<(), TransportError> {
        let state = *self.state.borrow();
        match state {
            LinkState::Closed => return Err(TransportError::Closed { by: Side::Local }),
            LinkState::Broken => return Err(TransportError::network("connection lost: link cut")),
            LinkState::Open => {}
        }
        if self.server.is_shut_down() {
            return Err(TransportError::Closed { by: Side::Peer });
        }
        if !self.network.intact(&self.from, &self.to, self.epoch) {
            self.state.send_if_modified(|state| {
                let open = *state == LinkState::Open;
                if open {
                    *state = LinkState::Broken;
                }
                open
            });
            return Err(TransportError::network("connection lost: link cut"));
        }
        Ok(())
    }

    fn close(&self) {
        self.state.send_if_modified(|state| {
            let changed = *state != LinkState::Closed;
            *state = LinkState::Closed;
            changed
        });
    }
}

/// Simulated delay; zero skips the timer.
async fn delay(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}
