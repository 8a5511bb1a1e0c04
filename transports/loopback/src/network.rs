//! The simulated network: named endpoints, faults, partitions and counters.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use syncline_transport::{Connector, Limits, Service, TransportError};
use tokio::sync::watch;

use crate::link::LoopbackConnector;
use crate::rng::SplitMix64;
use crate::server::{LoopbackServer, ServerShared};

/// An in-process network of named nodes: servers listen on a name, clients
/// connect from a name to a name. Cheap to clone; clones share the network.
///
/// Every random fault decision comes from one generator seeded by
/// [`LoopbackNetwork::new`], drawn a fixed number of times per connect, exchange
/// and subscribe, at the moment the caller starts it. The same seed and the
/// same order of calls give the same faults.
#[derive(Clone)]
pub struct LoopbackNetwork {
    pub(crate) shared: Arc<NetShared>,
}

/// The faults a [`LoopbackNetwork`] injects; none by default.
///
/// Faults apply to messages: connection attempts, requests, responses. Pushed
/// frames of a subscription travel on a reliable ordered stream, as over QUIC
/// or HTTP: they see latency but are never dropped, duplicated or reordered;
/// a partition ends the whole stream instead.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Faults {
    /// One-way delay of each message, drawn uniformly from `min..=max`
    /// (simulated with `tokio::time::sleep`, so it follows a paused clock).
    pub latency: (Duration, Duration),
    /// Probability that a message is lost: a connection attempt (connect fails),
    /// a request (the service never sees it) or a response (the service ran,
    /// the client gets a network error). Each is drawn on its own.
    pub drop_rate: f64,
    /// Probability that a request reaches the service twice; the client gets
    /// the first answer. Subscribe requests are never duplicated.
    pub duplicate_rate: f64,
    /// Whether requests on one connection may overtake each other. When false,
    /// a connection delivers its requests to the service in the order they were
    /// sent, each no earlier than its own latency allows.
    pub reorder: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self::none()
    }
}

impl Faults {
    /// No latency, no loss, no duplicates, no reordering.
    pub const fn none() -> Self {
        Faults {
            latency: (Duration::ZERO, Duration::ZERO),
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            reorder: false,
        }
    }

    /// Sets the latency range; the bounds are swapped if `min > max`, and each
    /// is at most one day (which keeps deadline arithmetic from overflowing).
    pub fn with_latency(mut self, min: Duration, max: Duration) -> Self {
        let (min, max) = (min.min(MAX_LATENCY), max.min(MAX_LATENCY));
        self.latency = (min.min(max), min.max(max));
        self
    }

    /// Sets the drop probability, clamped to `0..=1` (NaN counts as 0).
    pub fn with_drop_rate(mut self, rate: f64) -> Self {
        self.drop_rate = clamp_rate(rate);
        self
    }

    /// Sets the duplicate probability, clamped to `0..=1` (NaN counts as 0).
    pub fn with_duplicate_rate(mut self, rate: f64) -> Self {
        self.duplicate_rate = clamp_rate(rate);
        self
    }

    /// Sets whether requests on one connection may overtake each other.
    pub fn with_reorder(mut self, reorder: bool) -> Self {
        self.reorder = reorder;
        self
    }

    fn normalized(self) -> Self {
        self.with_latency(self.latency.0, self.latency.1)
            .with_drop_rate(self.drop_rate)
            .with_duplicate_rate(self.duplicate_rate)
    }
}

/// The longest simulated latency.
const MAX_LATENCY: Duration = Duration::from_secs(24 * 60 * 60);

fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

/// Counters of a [`LoopbackNetwork`] since it was made. Frames are requests,
/// responses and pushed frames; bytes are their lengths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkStats {
    /// Frames handed to the network (within the sender's limit).
    pub frames_sent: u64,
    /// Bytes of the frames sent.
    pub bytes_sent: u64,
    /// Frames delivered to a service or a client, duplicates included.
    pub frames_received: u64,
    /// Bytes of the frames received.
    pub bytes_received: u64,
    /// Frames lost to the drop fault.
    pub frames_dropped: u64,
    /// Extra deliveries made by the duplicate fault.
    pub frames_duplicated: u64,
    /// Connections opened.
    pub connections: u64,
}

impl LoopbackNetwork {
    /// The process's own network, with no faults: the one `loopback://`
    /// URLs reach by default (`syncline::connect`). Every call returns a
    /// handle to the same network.
    pub fn process() -> Self {
        static PROCESS: std::sync::OnceLock<LoopbackNetwork> = std::sync::OnceLock::new();
        PROCESS.get_or_init(|| LoopbackNetwork::new(0)).clone()
    }

    /// An empty network whose faults are drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        LoopbackNetwork {
            shared: Arc::new(NetShared {
                state: Mutex::new(NetState {
                    rng: SplitMix64::new(seed),
                    faults: Faults::none(),
                    servers: HashMap::new(),
                    nodes: HashMap::new(),
                    pairs: HashMap::new(),
                }),
                topology: watch::Sender::new(0),
                stats: Counters::default(),
            }),
        }
    }

    /// Starts a server named `name` for `service`, enforcing `limits` on what
    /// it receives and sends. Fails with [`TransportError::Local`] if a server
    /// already listens on `name`.
    pub fn serve(
        &self,
        name: &str,
        service: Arc<dyn Service>,
        limits: Limits,
    ) -> Result<LoopbackServer, TransportError> {
        LoopbackServer::start(self.shared.clone(), name, service, limits)
    }

    /// A connector from node `from` (the client's name, reported to services
    /// as [`PeerInfo::remote`](syncline_transport::PeerInfo::remote)) to the
    /// server named `to`, with default limits.
    pub fn connector(&self, from: &str, to: &str) -> Arc<dyn Connector> {
        self.connector_with_limits(from, to, Limits::default())
    }

    /// A connector like [`LoopbackNetwork::connector`] whose connections
    /// enforce `limits`.
    pub fn connector_with_limits(
        &self,
        from: &str,
        to: &str,
        limits: Limits,
    ) -> Arc<dyn Connector> {
        Arc::new(LoopbackConnector::new(
            self.shared.clone(),
            from,
            to,
            limits,
        ))
    }

    /// Replaces the faults; they apply to everything started from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.state().faults = faults.normalized();
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.state().faults
    }

    /// Cuts the link between nodes `a` and `b` in both directions: connecting
    /// fails, connections between them die (their operations fail with network
    /// errors, their subscriptions end with an error) and stay dead after
    /// [`heal`](LoopbackNetwork::heal); reconnect then.
    pub fn partition(&self, a: &str, b: &str) {
        self.shared.change_topology(|state| {
            let pair = state.pair_mut(a, b);
            if !pair.cut {
                pair.cut = true;
                pair.cuts += 1;
            }
        });
    }

    /// Restores the link between `a` and `b` for new connections.
    pub fn heal(&self, a: &str, b: &str) {
        self.shared
            .change_topology(|state| state.pair_mut(a, b).cut = false);
    }

    /// Heals every partition and brings every node back online.
    pub fn heal_all(&self) {
        self.shared.change_topology(|state| {
            state
                .pairs
                .values_mut()
                .flat_map(HashMap::values_mut)
                .for_each(|p| p.cut = false);
            state.nodes.values_mut().for_each(|n| n.offline = false);
        });
    }

    /// Takes node `name` offline (cut off from every node, as if every link
    /// to it were partitioned) or brings it back online.
    pub fn set_online(&self, name: &str, online: bool) {
        self.shared.change_topology(|state| {
            let node = state.nodes.entry(name.to_owned()).or_default();
            if !online && !node.offline {
                node.cuts += 1;
            }
            node.offline = !online;
        });
    }

    /// Whether a message from `a` can reach `b` now: both online and the link
    /// between them not cut.
    pub fn is_reachable(&self, a: &str, b: &str) -> bool {
        self.shared.state().epoch(a, b).is_some()
    }

    /// The counters so far.
    pub fn stats(&self) -> NetworkStats {
        let c = &self.shared.stats;
        NetworkStats {
            frames_sent: c.frames_sent.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            frames_received: c.frames_received.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            frames_dropped: c.frames_dropped.load(Ordering::Relaxed),
            frames_duplicated: c.frames_duplicated.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for LoopbackNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state();
        let mut servers: Vec<&str> = state.servers.keys().map(String::as_str).collect();
        servers.sort_unstable();
        f.debug_struct("LoopbackNetwork")
            .field("servers", &servers)
            .field("faults", &state.faults)
            .finish_non_exhaustive()
    }
}

/// What the network's handles, connections and servers share.
#[derive(Debug)]
pub(crate) struct NetShared {
    state: Mutex<NetState>,
    /// Bumped on every partition, heal or online change, so that operations in
    /// flight and open subscriptions re-check their link.
    topology: watch::Sender<u64>,
    stats: Counters,
}

#[derive(Debug)]
struct NetState {
    rng: SplitMix64,
    faults: Faults,
    servers: HashMap<String, Arc<ServerShared>>,
    nodes: HashMap<String, Node>,
    /// Links by their two node names, the smaller name first.
    pairs: HashMap<String, HashMap<String, Pair>>,
}

#[derive(Debug, Default)]
struct Node {
    offline: bool,
    /// How many times the node went offline.
    cuts: u64,
}

#[derive(Debug, Default)]
struct Pair {
    cut: bool,
    /// How many times the link was cut.
    cuts: u64,
}

#[derive(Debug, Default)]
struct Counters {
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    frames_received: AtomicU64,
    bytes_received: AtomicU64,
    frames_dropped: AtomicU64,
    frames_duplicated: AtomicU64,
    connections: AtomicU64,
}

/// The cut counters of a link when a connection was made: the connection is
/// dead once any of them moved, even if the link was healed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkEpoch {
    from: u64,
    to: u64,
    pair: u64,
}

/// The fault decisions for one exchange or subscribe, drawn when it is sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Draws {
    pub(crate) drop_request: bool,
    pub(crate) duplicate: bool,
    pub(crate) drop_response: bool,
    pub(crate) request_latency: Duration,
    pub(crate) response_latency: Duration,
    /// Seeds the latencies of a subscription's pushed frames, so they do not
    /// depend on how tasks interleave.
    pub(crate) stream_seed: u64,
    pub(crate) reorder: bool,
}

impl NetShared {
    /// Draws the decisions of one exchange or subscribe: always six draws,
    /// whatever the faults, so changing one fault does not shift the others.
    pub(crate) fn draw_exchange(&self) -> Draws {
        let state = &mut *self.state();
        let faults = state.faults;
        let rng = &mut state.rng;
        let (min, max) = faults.latency;
        Draws {
            drop_request: rng.chance(faults.drop_rate),
            duplicate: rng.chance(faults.duplicate_rate),
            drop_response: rng.chance(faults.drop_rate),
            request_latency: rng.duration(min, max),
            response_latency: rng.duration(min, max),
            stream_seed: rng.next_u64(),
            reorder: faults.reorder,
        }
    }

    /// Draws the decisions of one connection attempt: lost, and its latency.
    pub(crate) fn draw_connect(&self) -> (bool, Duration) {
        let state = &mut *self.state();
        let (min, max) = state.faults.latency;
        let lost = state.rng.chance(state.faults.drop_rate);
        (lost, state.rng.duration(min, max))
    }

    /// The latency range in force.
    pub(crate) fn latency(&self) -> (Duration, Duration) {
        self.state().faults.latency
    }

    /// The link's epoch if `from` can reach `to` now.
    pub(crate) fn epoch(&self, from: &str, to: &str) -> Option<LinkEpoch> {
        self.state().epoch(from, to)
    }

    /// Whether a connection made at `epoch` is still alive.
    pub(crate) fn intact(&self, from: &str, to: &str, epoch: LinkEpoch) -> bool {
        self.state().epoch(from, to) == Some(epoch)
    }

    pub(crate) fn topology(&self) -> watch::Receiver<u64> {
        self.topology.subscribe()
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<Arc<ServerShared>> {
        self.state().servers.get(name).cloned()
    }

    pub(crate) fn register(&self, server: Arc<ServerShared>) -> Result<(), TransportError> {
        let mut state = self.state();
        if state.servers.contains_key(&server.name) {
            return Err(TransportError::Local {
                reason: format!("a server already listens on {}", server.name),
            });
        }
        state.servers.insert(server.name.clone(), server);
        Ok(())
    }

    /// Removes `server` from the directory, if it is still the one listening
    /// on its name.
    pub(crate) fn deregister(&self, server: &Arc<ServerShared>) {
        let mut state = self.state();
        if state
            .servers
            .get(&server.name)
            .is_some_and(|s| Arc::ptr_eq(s, server))
        {
            state.servers.remove(&server.name);
        }
    }

    pub(crate) fn record_sent(&self, len: usize) {
        self.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_sent
            .fetch_add(len as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_received(&self, len: usize) {
        self.stats.frames_received.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_received
            .fetch_add(len as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_dropped(&self) {
        self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_duplicated(&self) {
        self.stats.frames_duplicated.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_connection(&self) {
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
    }

    fn change_topology(&self, change: impl FnOnce(&mut NetState)) {
        change(&mut self.state());
        self.topology.send_modify(|generation| *generation += 1);
    }

    fn state(&self) -> MutexGuard<'_, NetState> {
        lock(&self.state)
    }
}

impl NetState {
    fn epoch(&self, from: &str, to: &str) -> Option<LinkEpoch> {
        let from_node = self.nodes.get(from);
        let to_node = self.nodes.get(to);
        let (lo, hi) = if from <= to { (from, to) } else { (to, from) };
        let pair = self.pairs.get(lo).and_then(|m| m.get(hi));
        let offline = |node: Option<&Node>| node.is_some_and(|n| n.offline);
        if offline(from_node) || offline(to_node) || pair.is_some_and(|p| p.cut) {
            return None;
        }
        Some(LinkEpoch {
            from: from_node.map_or(0, |n| n.cuts),
            to: to_node.map_or(0, |n| n.cuts),
            pair: pair.map_or(0, |p| p.cuts),
        })
    }

    fn pair_mut(&mut self, a: &str, b: &str) -> &mut Pair {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        self.pairs
            .entry(lo.to_owned())
            .or_default()
            .entry(hi.to_owned())
            .or_default()
    }
}

/// Locks a mutex that no code panics while holding, so poisoning cannot carry
/// a broken invariant.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
