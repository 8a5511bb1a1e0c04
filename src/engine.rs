//! The client side of sync: one engine per remote, running push, pull and
//! subscribe over any transport, with backoff, status, statistics and events.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use syncline_transport::{Connection, Connector, Frame, Subscription, TransportError};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{ApplyError, Fault, ReadError, StorageError};
use crate::model::ReplicaId;
use crate::protocol::{
    self, Batch, Notify, PROTOCOL_VERSION, Refusal, Request, RequestBody, Response,
};
use crate::replica::Replica;
use crate::server::synced_specs;
use crate::watch::WatchError;

/// Which way changes flow between this replica and the remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Send local changes only.
    Push,
    /// Receive remote changes only.
    Pull,
    /// Both ways.
    Both,
}

impl Direction {
    fn pushes(self) -> bool {
        matches!(self, Self::Push | Self::Both)
    }

    fn pulls(self) -> bool {
        matches!(self, Self::Pull | Self::Both)
    }
}

/// How an engine syncs with one remote.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Which way changes flow. Default both.
    pub direction: Direction,
    /// The token presented to the server, if it wants one.
    pub token: Option<String>,
    /// The most changes per push or pull batch (whole transactions may
    /// exceed it). Default 1,000.
    pub batch_size: usize,
    /// About the most bytes of changes per push batch (whole transactions
    /// may exceed it); keep it below the transport's frame limit. Default 4 MiB.
    pub max_batch_bytes: usize,
    /// Keep a subscription open so remote changes arrive in milliseconds.
    /// Default on.
    pub live: bool,
    /// How long a subscription may stay silent before it is presumed dead
    /// (say, a network path that died without closing the connection) and
    /// replaced: the engine reconnects as after any failure. Servers send a
    /// heartbeat every [`crate::ServerConfig::heartbeat`] (15 s by default),
    /// so keep this a few times that. `None` trusts the stream forever.
    /// Default 45 s.
    pub subscription_timeout: Option<Duration>,
    /// Also sync on this interval, as a safety net. Default 30 s.
    pub poll_interval: Option<Duration>,
    /// Sync only when asked ([`SyncEngine::sync_now`], `push`, `pull`): no
    /// connection at start, no subscription, no polling, no retries. Default off.
    pub on_demand: bool,
    /// The first retry delay after a failure; it doubles up to `backoff_max`,
    /// with jitter. Default 100 ms.
    pub backoff_initial: Duration,
    /// The longest retry delay. Default 30 s.
    pub backoff_max: Duration,
    /// Seed of the jitter, for reproducible simulations; `None` draws one.
    pub seed: Option<u64>,
    /// Run store work on the engine's own task instead of tokio's blocking
    /// pool. Only for deterministic simulations on a current-thread runtime:
    /// it blocks the runtime while redb commits. Default off.
    pub inline_store: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            direction: Direction::Both,
            token: None,
            batch_size: 1000,
            max_batch_bytes: 4 << 20,
            live: true,
            subscription_timeout: Some(Duration::from_secs(45)),
            poll_interval: Some(Duration::from_secs(30)),
            on_demand: false,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            seed: None,
            inline_store: false,
        }
    }
}

impl SyncConfig {
    /// This config with a token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// This config with a direction.
    pub fn with_direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }
}

/// What an engine is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Connected and up to date, waiting for changes.
    Idle,
    /// Exchanging changes.
    Syncing,
    /// The remote cannot be reached; retrying with backoff.
    Offline,
    /// The remote refused or misbehaved, or local storage failed; retrying
    /// with backoff. The error is in [`SyncStats::last_error`].
    Error,
}

/// Counters of an engine since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Local changes the remote acknowledged.
    pub pushed: u64,
    /// Remote changes applied here for the first time.
    pub pulled: u64,
    /// Conflicts that pulled changes recorded here.
    pub conflicts: u64,
    /// Sync rounds completed without error.
    pub rounds: u64,
    /// When the last round finished without error, in ms since the epoch.
    pub last_sync_ms: Option<u64>,
    /// The last error, if the last round failed.
    pub last_error: Option<String>,
    /// Local feed entries not yet acknowledged by the remote (including some
    /// that will be skipped because they came from it).
    pub pending: u64,
}

/// Something that happened in an engine.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncEvent {
    /// A local change was committed and will be pushed.
    Captured {
        /// Its lsn.
        lsn: u64,
    },
    /// The remote acknowledged changes.
    Pushed {
        /// How many changes the batch carried.
        count: usize,
        /// The local lsn acknowledged through.
        through: u64,
    },
    /// Remote changes were applied.
    Pulled {
        /// How many were new here.
        count: usize,
        /// The remote lsn pulled through.
        through: u64,
    },
    /// A round failed.
    Error {
        /// Whose fault.
        fault: Fault,
        /// What happened.
        message: String,
    },
    /// Pulled changes made concurrent changes lose; see [`crate::Collection::conflicts`].
    Conflict {
        /// How many conflicts the batch recorded.
        count: usize,
    },
    /// The status changed.
    StatusChanged(Status),
}

/// What one sync round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Local changes the remote acknowledged.
    pub pushed: usize,
    /// Remote changes applied here for the first time.
    pub pulled: usize,
}

/// A sync round failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The transport failed (unreachable, lost, closed, over-limit frame).
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The remote refused the request; nothing was stored there.
    #[error("refused by the remote: {0}")]
    Refused(Refusal),
    /// The remote broke the protocol (undecodable answer, bad digest,
    /// cursor going backwards).
    #[error("protocol violation by the remote: {0}")]
    Protocol(String),
    /// A pulled batch was refused here (e.g. stamps too far ahead); nothing
    /// of it was stored.
    #[error("pulled batch refused: {0}")]
    Apply(Arc<ApplyError>),
    /// Reading or writing the local database failed.
    #[error("local storage: {0}")]
    Storage(Arc<StorageError>),
    /// The engine was stopped.
    #[error("the engine is stopped")]
    Stopped,
}

impl SyncError {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Transport(e) => match e.fault() {
                syncline_transport::Fault::Network => Fault::Network,
                syncline_transport::Fault::Caller => Fault::Caller,
                _ => Fault::Peer,
            },
            Self::Refused(_) => Fault::Caller,
            Self::Protocol(_) => Fault::Peer,
            Self::Apply(e) => e.fault(),
            Self::Storage(_) => Fault::Storage,
            Self::Stopped => Fault::Caller,
        }
    }
}

impl From<ReadError> for SyncError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Storage(s) => Self::Storage(Arc::new(s)),
            other => Self::Storage(Arc::new(StorageError::Inconsistent(other.to_string()))),
        }
    }
}

impl From<StorageError> for SyncError {
    fn from(e: StorageError) -> Self {
        Self::Storage(Arc::new(e))
    }
}

/// A running sync engine for one remote. Dropping it stops the engine.
///
/// ```no_run
/// # async fn demo(replica: syncline::Replica, hub: std::sync::Arc<dyn syncline_transport::Connector>) {
/// use syncline::{SyncConfig, SyncEngine, Status};
///
/// let engine = SyncEngine::start(replica, hub, SyncConfig::default());
/// let mut status = engine.status();
/// status.wait_for(|s| *s == Status::Idle).await.unwrap();
/// println!("{:?}", engine.stats());
/// # }
/// ```
pub struct SyncEngine {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Status>,
    events: broadcast::Sender<SyncEvent>,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for SyncEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncEngine")
            .field("replica", &self.shared.replica.id())
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

struct Shared {
    replica: Replica,
    stats: Mutex<SyncStats>,
    /// The remote's replica id, once a handshake told it.
    remote: Mutex<Option<ReplicaId>>,
}

enum Command {
    Sync {
        push: bool,
        pull: bool,
        reply: oneshot::Sender<Result<SyncReport, SyncError>>,
    },
}

impl SyncEngine {
    /// Starts syncing `replica` with the server behind `connector`. Must be
    /// called inside a tokio runtime.
    pub fn start(replica: Replica, connector: Arc<dyn Connector>, config: SyncConfig) -> Self {
        let (commands, rx) = mpsc::channel(16);
        let (status_tx, status) = watch::channel(Status::Offline);
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            replica: replica.clone(),
            stats: Mutex::new(SyncStats::default()),
            remote: Mutex::new(None),
        });
        let seed = config.seed.unwrap_or_else(rand::random);
        let worker = Worker {
            local: replica.watch(),
            replica,
            connector,
            config,
            session: None,
            commands: rx,
            status: status_tx,
            events: events.clone(),
            shared: shared.clone(),
            rng: StdRng::seed_from_u64(seed),
            failures: 0,
        };
        let task = tokio::spawn(worker.run());
        Self {
            commands,
            status,
            events,
            shared,
            task: Some(task),
        }
    }

    /// The status, as a watch channel.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// A stream of events from now on.
    pub fn events(&self) -> broadcast::Receiver<SyncEvent> {
        self.events.subscribe()
    }

    /// The statistics so far.
    pub fn stats(&self) -> SyncStats {
        let mut stats = self
            .shared
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let remote = *self.shared.remote.lock().unwrap_or_else(|p| p.into_inner());
        let pushed = remote
            .and_then(|r| self.shared.replica.peer_state(r).ok())
            .map_or(0, |p| p.pushed);
        stats.pending = self.shared.replica.last_lsn().saturating_sub(pushed);
        stats
    }

    /// The remote's replica id, once a handshake succeeded.
    pub fn remote(&self) -> Option<ReplicaId> {
        *self.shared.remote.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pushes and pulls now (as configured by the direction), connecting if
    /// needed, and returns what the round did.
    pub async fn sync_now(&self) -> Result<SyncReport, SyncError> {
        self.command(true, true).await
    }

    /// Pushes now.
    pub async fn push(&self) -> Result<SyncReport, SyncError> {
        self.command(true, false).await
    }

    /// Pulls now.
    pub async fn pull(&self) -> Result<SyncReport, SyncError> {
        self.command(false, true).await
    }

    async fn command(&self, push: bool, pull: bool) -> Result<SyncReport, SyncError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Sync { push, pull, reply })
            .await
            .map_err(|_| SyncError::Stopped)?;
        rx.await.map_err(|_| SyncError::Stopped)?
    }

    /// Stops the engine and waits for its task to end. Cursors are already
    /// durable; a new engine resumes from them.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for SyncEngine {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A connection that passed the handshake.
struct Session {
    conn: Box<dyn Connection>,
    remote: ReplicaId,
    collections: Vec<String>,
    subscription: Option<Subscription>,
    /// The greatest lsn the subscription announced (at first, the cursor it
    /// was opened after): a notification at or below it is a heartbeat.
    notified: u64,
    /// When the subscription last delivered a frame.
    heard: Instant,
}

struct Worker {
    replica: Replica,
    connector: Arc<dyn Connector>,
    config: SyncConfig,
    session: Option<Session>,
    local: crate::watch::Watch,
    commands: mpsc::Receiver<Command>,
    status: watch::Sender<Status>,
    events: broadcast::Sender<SyncEvent>,
    shared: Arc<Shared>,
    rng: StdRng,
    failures: u32,
}

/// Why the worker woke up.
enum Wake {
    Command(Command),
    Local,
    Remote,
    SubscriptionLost(SyncError),
    Timer,
    Exit,
}

impl Worker {
    async fn run(mut self) {
        let mut retry_at = (!self.config.on_demand).then(Instant::now);
        let mut poll_at = None;
        loop {
            let wake = self.wait(retry_at, poll_at).await;
            let (push, pull, reply) = match wake {
                Wake::Exit => return,
                Wake::Command(Command::Sync { push, pull, reply }) => (push, pull, Some(reply)),
                Wake::Local => (true, false, None),
                Wake::Remote => (false, true, None),
                Wake::Timer => (true, true, None),
                Wake::SubscriptionLost(e) => {
                    self.session = None;
                    self.failed(&e);
                    retry_at = Some(Instant::now() + self.backoff());
                    continue;
                }
            };
            let push = push && self.config.direction.pushes();
            let pull = pull && self.config.direction.pulls();
            let result = self.round(push, pull).await;
            match &result {
                Ok(_) => {
                    self.failures = 0;
                    retry_at = None;
                    poll_at = self
                        .config
                        .poll_interval
                        .filter(|_| !self.config.on_demand)
                        .map(|p| Instant::now() + p);
                    self.set_status(Status::Idle);
                }
                Err(e) => {
                    self.session = None;
                    self.failed(e);
                    if !self.config.on_demand {
                        retry_at = Some(Instant::now() + self.backoff());
                    }
                }
            }
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
        }
    }

    /// Waits for the next reason to sync. While retrying after a failure,
    /// only the retry timer and commands wake it: writes made offline wait
    /// for the connection to come back.
    async fn wait(&mut self, retry_at: Option<Instant>, poll_at: Option<Instant>) -> Wake {
        let online = self.session.is_some() && retry_at.is_none();
        let watch_local = online && self.config.direction.pushes();
        let timer = retry_at.or(poll_at);
        let remote = self
            .shared
            .remote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .to_owned();
        loop {
            // A subscription silent for too long is presumed dead.
            let silence = self
                .session
                .as_ref()
                .filter(|s| online && s.subscription.is_some())
                .zip(self.config.subscription_timeout)
                .map(|(s, timeout)| s.heard + timeout);
            tokio::select! {
                // Deterministic order (simulations replay exactly): commands
                // first, then local commits, notifications, timers.
                biased;
                command = self.commands.recv() => {
                    return match command {
                        Some(c) => Wake::Command(c),
                        None => Wake::Exit,
                    };
                }
                event = self.local.recv(), if watch_local || self.config.direction.pushes() => match event {
                    Ok(e) => {
                        if e.source.is_none() {
                            let _ = self.events.send(SyncEvent::Captured { lsn: e.lsn });
                        }
                        // Changes pulled from this remote need no push back.
                        if watch_local && (e.source.is_none() || e.source != remote) {
                            return Wake::Local;
                        }
                    }
                    Err(WatchError::Lagged(_)) if watch_local => return Wake::Local,
                    Err(WatchError::Lagged(_)) => {}
                    Err(WatchError::Closed) => return Wake::Exit,
                },
                frame = next_frame(&mut self.session), if online => match frame {
                    Some(Ok(frame)) => match protocol::decode::<Notify>(&frame) {
                        Ok(notify) => {
                            if let Some(s) = self.session.as_mut() {
                                s.heard = Instant::now();
                                if notify.last_lsn <= s.notified {
                                    // A heartbeat: alive, and nothing new.
                                    continue;
                                }
                                s.notified = notify.last_lsn;
                            }
                            return Wake::Remote;
                        }
                        Err(e) => return Wake::SubscriptionLost(SyncError::Protocol(format!("bad notification: {e}"))),
                    },
                    Some(Err(e)) => return Wake::SubscriptionLost(e.into()),
                    None => return Wake::SubscriptionLost(SyncError::Protocol("the subscription ended".into())),
                },
                () = sleep_until(timer) => return Wake::Timer,
                () = sleep_until(silence) => {
                    let timeout = self.config.subscription_timeout.unwrap_or_default();
                    return Wake::SubscriptionLost(SyncError::Transport(TransportError::network(
                        format!("the subscription was silent for {timeout:?}, heartbeats included"),
                    )));
                }
            }
        }
    }

    fn backoff(&mut self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(20);
        let base = self
            .config
            .backoff_initial
            .saturating_mul(1u32 << exp)
            .min(self.config.backoff_max);
        // Full jitter on the upper half: between base/2 and base.
        base.mul_f64(0.5 + self.rng.random::<f64>() * 0.5)
    }

    fn failed(&mut self, e: &SyncError) {
        self.failures = self.failures.saturating_add(1);
        tracing::debug!(error = %e, failures = self.failures, "sync round failed");
        self.shared
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_error = Some(e.to_string());
        let _ = self.events.send(SyncEvent::Error {
            fault: e.fault(),
            message: e.to_string(),
        });
        let status = match e.fault() {
            Fault::Network => Status::Offline,
            _ => Status::Error,
        };
        self.set_status(status);
    }

    fn set_status(&self, status: Status) {
        let changed = self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
        if changed {
            let _ = self.events.send(SyncEvent::StatusChanged(status));
        }
    }

    /// One round: connect if needed, push, then pull.
    async fn round(&mut self, push: bool, pull: bool) -> Result<SyncReport, SyncError> {
        self.set_status(Status::Syncing);
        if self.session.is_none() {
            self.session = Some(self.connect().await?);
        }
        let mut report = SyncReport::default();
        if push {
            report.pushed = self.push_all().await?;
        }
        if pull {
            report.pulled = self.pull_all().await?;
        }
        let mut stats = self.shared.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.last_sync_ms = Some(self.replica.now_millis());
        stats.rounds += 1;
        stats.last_error = None;
        Ok(report)
    }

    fn request(&self, body: RequestBody) -> Frame {
        Frame::from(protocol::encode(&Request {
            version: PROTOCOL_VERSION,
            from: self.replica.id(),
            token: self.config.token.clone(),
            body,
        }))
    }

    async fn exchange(&self, body: RequestBody) -> Result<Response, SyncError> {
        let frame = self.request(body);
        let session = self.session.as_ref().ok_or(SyncError::Stopped)?;
        let answer = session.conn.exchange(frame).await?;
        match protocol::decode::<Response>(&answer) {
            Ok(Response::Refused(refusal)) => Err(SyncError::Refused(refusal)),
            Ok(response) => Ok(response),
            Err(e) => Err(SyncError::Protocol(format!("undecodable response: {e}"))),
        }
    }

    async fn connect(&mut self) -> Result<Session, SyncError> {
        let conn = self.connector.connect().await?;
        let ours = synced_specs(&self.replica);
        let hello = self.request(RequestBody::Hello {
            clock: self.replica.clock(),
            collections: ours.clone(),
        });
        let answer = conn.exchange(hello).await?;
        let (remote, theirs) = match protocol::decode::<Response>(&answer) {
            Ok(Response::Welcome {
                replica,
                collections,
                ..
            }) => (replica, collections),
            Ok(Response::Refused(refusal)) => return Err(SyncError::Refused(refusal)),
            Ok(other) => {
                return Err(SyncError::Protocol(format!(
                    "expected a welcome, got {other:?}"
                )));
            }
            Err(e) => return Err(SyncError::Protocol(format!("undecodable welcome: {e}"))),
        };
        if remote == self.replica.id() {
            return Err(SyncError::Protocol(
                "the remote has this replica's own id".into(),
            ));
        }
        // The server compared our collections with its own; check its side too.
        crate::server::check_collections(
            &theirs
                .iter()
                .filter(|t| ours.iter().any(|o| o.name == t.name))
                .cloned()
                .collect::<Vec<_>>(),
            &ours,
        )
        .map_err(|r| SyncError::Protocol(r.reason))?;
        *self.shared.remote.lock().unwrap_or_else(|p| p.into_inner()) = Some(remote);
        let (subscription, notified) =
            if self.config.live && !self.config.on_demand && self.config.direction.pulls() {
                let after = self.blocking(move |r| r.peer_state(remote)).await?.pulled;
                let frame = self.request(RequestBody::Subscribe { after });
                (Some(conn.subscribe(frame).await?), after)
            } else {
                (None, 0)
            };
        tracing::debug!(remote = %remote, "connected");
        Ok(Session {
            conn,
            remote,
            collections: ours.into_iter().map(|s| s.name).collect(),
            subscription,
            notified,
            heard: Instant::now(),
        })
    }

    /// Pushes everything the remote has not acknowledged.
    async fn push_all(&mut self) -> Result<usize, SyncError> {
        let (remote, collections) = self.session_info()?;
        let batch_size = self.config.batch_size;
        let max_bytes = self.config.max_batch_bytes;
        let mut total = 0;
        loop {
            let wanted = collections.clone();
            let (acked, slice) = self
                .blocking(move |r| {
                    let acked = r.peer_state(remote)?.pushed;
                    let slice = r.feed_for(remote, acked, batch_size, max_bytes, &|c| {
                        wanted.iter().any(|w| w == c)
                    })?;
                    Ok::<_, ReadError>((acked, slice))
                })
                .await?;
            if slice.through <= acked {
                return Ok(total);
            }
            let count = slice.changes.len();
            if count > 0 {
                match self
                    .exchange(RequestBody::Push(Batch::new(slice.changes, slice.through)))
                    .await?
                {
                    Response::Ack { through, .. } if through == slice.through => {}
                    other => {
                        return Err(SyncError::Protocol(format!(
                            "expected an ack through {}, got {other:?}",
                            slice.through
                        )));
                    }
                }
            }
            let through = slice.through;
            let now = self.replica.now_millis();
            self.blocking(move |r| r.record_pushed(remote, through, now))
                .await?;
            total += count;
            if count > 0 {
                self.shared
                    .stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pushed += count as u64;
                let _ = self.events.send(SyncEvent::Pushed { count, through });
            }
            if !slice.has_more {
                return Ok(total);
            }
        }
    }

    /// Pulls until the remote has nothing more.
    async fn pull_all(&mut self) -> Result<usize, SyncError> {
        let (remote, collections) = self.session_info()?;
        let mut total = 0;
        loop {
            let after = self.blocking(move |r| r.peer_state(remote)).await?.pulled;
            let response = self
                .exchange(RequestBody::Pull {
                    after,
                    limit: u32::try_from(self.config.batch_size).unwrap_or(u32::MAX),
                    collections: collections.clone(),
                })
                .await?;
            let Response::Changes { batch, has_more } = response else {
                return Err(SyncError::Protocol(format!(
                    "expected changes, got {response:?}"
                )));
            };
            if !batch.verify() {
                return Err(SyncError::Protocol(
                    "the batch digest does not match its changes".into(),
                ));
            }
            if batch.through < after {
                return Err(SyncError::Protocol(format!(
                    "the cursor went backwards from {after} to {}",
                    batch.through
                )));
            }
            if let Some(c) = batch
                .changes
                .iter()
                .find(|c| !collections.contains(&c.collection))
            {
                return Err(SyncError::Protocol(format!(
                    "a change of unrequested collection {:?}",
                    c.collection
                )));
            }
            let through = batch.through;
            let report = self
                .blocking(move |r| r.apply_batch(Some(remote), &batch.changes, Some(through)))
                .await
                .map_err(|e| match e {
                    ApplyError::Storage(s) => SyncError::Storage(Arc::new(s)),
                    other => SyncError::Apply(Arc::new(other)),
                })?;
            total += report.applied;
            if report.conflicts > 0 {
                self.shared
                    .stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .conflicts += report.conflicts as u64;
                let _ = self.events.send(SyncEvent::Conflict {
                    count: report.conflicts,
                });
            }
            if report.applied > 0 {
                self.shared
                    .stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pulled += report.applied as u64;
                let _ = self.events.send(SyncEvent::Pulled {
                    count: report.applied,
                    through,
                });
            }
            if !has_more || through == after {
                return Ok(total);
            }
        }
    }

    fn session_info(&self) -> Result<(ReplicaId, Vec<String>), SyncError> {
        let s = self.session.as_ref().ok_or(SyncError::Stopped)?;
        Ok((s.remote, s.collections.clone()))
    }

    /// Runs blocking store work off the async workers.
    async fn blocking<T, E>(
        &self,
        f: impl FnOnce(&Replica) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        if self.config.inline_store {
            return f(&self.replica);
        }
        let replica = self.replica.clone();
        match tokio::task::spawn_blocking(move || f(&replica)).await {
            Ok(result) => result,
            Err(e) => Err(E::from(StorageError::Inconsistent(format!(
                "store task failed: {e}"
            )))),
        }
    }
}

async fn next_frame(session: &mut Option<Session>) -> Option<Result<Frame, TransportError>> {
    match session.as_mut().and_then(|s| s.subscription.as_mut()) {
        Some(sub) => sub.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
