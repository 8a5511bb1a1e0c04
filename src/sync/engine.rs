//! The sync engine: the tokio driver around a [`Session`]. It connects,
//! runs the exchanges and the store work the session asks for, reads the
//! subscription and the replica's commit notes, sleeps until the session's
//! timeout, and publishes status, statistics and events.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use syncline_transport::{Connection, Connector, Frame, Subscription, TransportError};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::sync::config::wants;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::field::{Empty, display};
use tracing::{Instrument, Span};

use crate::error::{ReadError, StorageError};
use crate::model::ReplicaId;
use crate::replica::{CommitNote, Replica};
use crate::store::{CommitDurability, Cursor, STAGED_PULLED};
use crate::sync::config::{SyncConfig, TokenProvider};
use crate::sync::error::SyncError;
use crate::sync::protocol::{self, Request, synced_specs};
use crate::sync::session::{Action, Commit, Local, Now, Outbox, Progress, PullCursor, Session};
use crate::sync::status::{Status, SyncEvent, SyncReport, SyncStats};

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
    progress: watch::Receiver<Progress>,
    on_demand: bool,
    events: broadcast::Sender<SyncEvent>,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
    /// Store work runs on the engine's task (simulations).
    inline_store: bool,
}

impl fmt::Debug for SyncEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncEngine")
            .field("replica", &self.shared.replica.id())
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

/// What the handle and the driver share.
struct Shared {
    replica: Replica,
    stats: Mutex<SyncStats>,
    /// The remote's replica id, once a handshake told it.
    remote: Mutex<Option<ReplicaId>>,
    /// Held by each piece of the driver's store work while it runs, so that
    /// [`SyncEngine::stop`] can wait for the one under way (a blocking task
    /// outlives the aborted driver).
    store_work: Mutex<()>,
    /// Set by [`SyncEngine::stop`] before it flushes: store work that
    /// starts after the flush commits durably.
    stopping: AtomicBool,
}

enum Command {
    Sync {
        push: bool,
        pull: bool,
        reply: oneshot::Sender<Result<SyncReport, SyncError>>,
    },
    Reconnect,
}

impl SyncEngine {
    /// Starts syncing `replica` with the server behind `connector`. Must be
    /// called inside a tokio runtime.
    pub fn start(replica: Replica, connector: Arc<dyn Connector>, config: SyncConfig) -> Self {
        Self::spawn(replica, connector, config, false)
    }

    /// [`SyncEngine::start`], running store work on the engine's own task
    /// instead of tokio's blocking pool: for deterministic simulations on a
    /// current-thread runtime (it blocks the runtime while redb commits).
    #[cfg(feature = "testing")]
    pub(crate) fn start_inline(
        replica: Replica,
        connector: Arc<dyn Connector>,
        config: SyncConfig,
    ) -> Self {
        Self::spawn(replica, connector, config, true)
    }

    fn spawn(
        replica: Replica,
        connector: Arc<dyn Connector>,
        config: SyncConfig,
        inline_store: bool,
    ) -> Self {
        let (commands, rx) = mpsc::channel(16);
        let (status_tx, status) = watch::channel(Status::Offline);
        let (progress_tx, progress) = watch::channel(Progress::default());
        let on_demand = config.on_demand;
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            replica: replica.clone(),
            stats: Mutex::new(SyncStats::default()),
            remote: Mutex::new(None),
            store_work: Mutex::new(()),
            stopping: AtomicBool::new(false),
        });
        let seed = config.seed.unwrap_or_else(rand::random);
        let token = config.token.clone();
        let token_provider = config.token_provider.clone();
        // Only a pushing engine wakes on local commits.
        let local = config.direction.pushes().then(|| replica.commit_notes());
        let session = Session::new(replica.id(), config, seed, Instant::now().into_std());
        let driver = Driver {
            token,
            token_provider,
            local,
            replica,
            connector,
            session,
            inline_store,
            conn: None,
            subscription: None,
            reply: None,
            commands: rx,
            status: status_tx,
            progress: progress_tx,
            events: events.clone(),
            shared: shared.clone(),
            round: 0,
            round_span: None,
        };
        let task = tokio::spawn(driver.run());
        Self {
            commands,
            status,
            progress,
            on_demand,
            events,
            shared,
            task: Some(task),
            inline_store,
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
        let mut stats = lock(&self.shared.stats).clone();
        let remote = *lock(&self.shared.remote);
        stats.pending = match remote {
            Some(r) => self.shared.replica.pending_for(r).unwrap_or(0),
            // Never connected: everything synced is pending.
            None => self.shared.replica.last_lsn(),
        };
        stats
    }

    /// The remote's replica id, once a handshake succeeded.
    pub fn remote(&self) -> Option<ReplicaId> {
        *lock(&self.shared.remote)
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

    /// Waits until everything committed here before the call is pushed and
    /// everything the remote held at the call is pulled: until a round
    /// that began after the call succeeds. An automatic engine keeps
    /// retrying (with its backoff) until then; an on-demand engine runs one
    /// round and returns its error. Fails with [`SyncError::TimedOut`]
    /// after `timeout`.
    ///
    /// Refused changes do not hold it back: a round that moved them aside
    /// succeeds.
    pub async fn wait_synced(&self, timeout: std::time::Duration) -> Result<(), SyncError> {
        let mut progress = self.progress.clone();
        let start = progress.borrow().begun;
        let work = async {
            match self.sync_now().await {
                Ok(_) => return Ok(()),
                Err(e) if self.on_demand || matches!(e, SyncError::Stopped) => return Err(e),
                Err(_) => {}
            }
            // The engine retries by itself: wait for a round begun after
            // the call to succeed.
            progress
                .wait_for(|p| p.synced > start)
                .await
                .map_err(|_| SyncError::Stopped)?;
            Ok(())
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| SyncError::TimedOut(timeout))?
    }

    /// Reconnects now, forgetting the backoff: for an app that learns the
    /// network is back. The connection is dropped and made again, and an
    /// automatic engine syncs at once (also after it gave up, see
    /// [`SyncConfig::max_retry_attempts`]). Returns once the engine took
    /// the request; a round in progress finishes first.
    pub async fn reconnect_now(&self) -> Result<(), SyncError> {
        self.commands
            .send(Command::Reconnect)
            .await
            .map_err(|_| SyncError::Stopped)
    }

    async fn command(&self, push: bool, pull: bool) -> Result<SyncReport, SyncError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Sync { push, pull, reply })
            .await
            .map_err(|_| SyncError::Stopped)?;
        rx.await.map_err(|_| SyncError::Stopped)?
    }

    /// Stops the engine and waits for its task to end, then makes every
    /// pulled batch durable (see [`SyncConfig::durable_interval`]). Cursors
    /// commit with their data; a new engine resumes from them.
    pub async fn stop(mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        let shared = self.shared.clone();
        let flush = move || {
            // After the store work under way, if any: it may have begun a
            // deferred commit before the flag was set.
            let _work = lock(&shared.store_work);
            shared.replica.ensure_durable()
        };
        let flushed = if self.inline_store {
            flush()
        } else {
            tokio::task::spawn_blocking(flush)
                .await
                .unwrap_or(Err(StorageError::TaskFailed))
        };
        if let Err(e) = flushed {
            tracing::warn!(error = %e, "flushing pulled batches on stop failed");
        }
    }
}

impl Drop for SyncEngine {
    /// Stops the task. Deferred pulled batches reach the disk with the
    /// replica's next durable commit, or when it closes.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The engine's task: performs the session's actions and feeds it inputs.
struct Driver {
    replica: Replica,
    token: Option<String>,
    token_provider: Option<Arc<dyn TokenProvider>>,
    progress: watch::Sender<Progress>,
    connector: Arc<dyn Connector>,
    session: Session,
    inline_store: bool,
    conn: Option<Box<dyn Connection>>,
    subscription: Option<Subscription>,
    /// The command whose round is running.
    reply: Option<oneshot::Sender<Result<SyncReport, SyncError>>>,
    /// Commit notes, when the engine pushes: no change events are built
    /// for the engine.
    local: Option<broadcast::Receiver<CommitNote>>,
    commands: mpsc::Receiver<Command>,
    status: watch::Sender<Status>,
    events: broadcast::Sender<SyncEvent>,
    shared: Arc<Shared>,
    /// The number of the last round begun, as the session counts them.
    round: u64,
    /// That round's span, until it finishes.
    round_span: Option<Span>,
}

impl Driver {
    async fn run(mut self) {
        loop {
            self.perform().await;
            if !self.wait().await {
                return;
            }
        }
    }

    fn now(&self) -> Now {
        Now {
            at: Instant::now().into_std(),
            millis: self.replica.now_millis(),
        }
    }

    /// Performs the session's actions until it has none.
    async fn perform(&mut self) {
        // An action taken from the session ahead of its turn (see `Apply`).
        let mut ahead: Option<Action> = None;
        while let Some(action) = ahead.take().or_else(|| self.session.poll_action()) {
            self.publish();
            let span = self.round_span();
            ahead = self.act(action).instrument(span).await;
        }
        self.publish();
    }

    /// The span of the round under way: a new one when the session began
    /// another round, none between rounds.
    fn round_span(&mut self) -> Span {
        let begun = self.session.progress().begun;
        if begun != self.round {
            self.round = begun;
            self.round_span = Some(tracing::info_span!(
                "sync_round",
                round = begun,
                remote = Empty,
                pushed = Empty,
                pulled = Empty,
                error = Empty,
            ));
        }
        self.round_span.clone().unwrap_or_else(Span::none)
    }

    /// Performs one action; returns the next one if it took it from the
    /// session ahead of its turn (see `Apply`).
    async fn act(&mut self, action: Action) -> Option<Action> {
        match action {
            Action::Connect { refresh } => {
                let attempt = self.connector.connect();
                let result = match attempt.instrument(tracing::debug_span!("connect")).await {
                    Ok(conn) => {
                        self.conn = Some(conn);
                        let token = match &self.token_provider {
                            Some(provider) => provider.token(refresh).await,
                            None => self.token.clone(),
                        };
                        Ok(Local {
                            clock: self.replica.clock(),
                            collections: synced_specs(self.replica.collections()),
                            token,
                        })
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "connecting failed");
                        Err(e)
                    }
                };
                let now = self.now();
                self.session.handle_connected(result, now);
            }
            Action::Exchange(request) => {
                let answer = self.exchange(&request).await;
                let now = self.now();
                self.answer(answer, now);
            }
            Action::Subscribe(request) => {
                let frame = Frame::from(protocol::encode(&request));
                let result = match &self.conn {
                    Some(conn) => conn.subscribe(frame).await.map(|s| {
                        self.subscription = Some(s);
                    }),
                    None => Err(TransportError::Closed {
                        by: syncline_transport::Side::Local,
                    }),
                };
                let now = self.now();
                self.session.handle_subscribed(result, now);
            }
            Action::ReadPullCursor { remote, scope } => {
                let result = self
                    .blocking(move |r| {
                        let after = match &scope {
                            Some(scope) => r.scope_cursor(remote, scope)?,
                            None => r.peer_state(remote)?.pulled,
                        };
                        let staged = r.staged_progress(STAGED_PULLED, remote)?;
                        Ok::<_, ReadError>(PullCursor { after, staged })
                    })
                    .await
                    .map_err(SyncError::from);
                let now = self.now();
                self.session.handle_pull_cursor(result, now);
            }
            Action::ReadOutbox {
                remote,
                limit,
                max_bytes,
                collections,
                scopes,
            } => {
                let result = self
                    .blocking(move |r| {
                        let acked = r.peer_state(remote)?.pushed;
                        let slice =
                            r.feed_for(Some(remote), acked, limit, max_bytes, &|c, k| {
                                wants(&collections, &scopes, c, k)
                            })?;
                        Ok::<_, ReadError>(Outbox {
                            acked,
                            changes: slice.changes,
                            through: slice.through,
                            has_more: slice.has_more,
                            groups: slice.groups,
                            oversized: slice.oversized,
                        })
                    })
                    .await
                    .map_err(SyncError::from);
                let now = self.now();
                self.session.handle_outbox(result, now);
            }
            Action::RecordPushed {
                remote,
                through,
                now_ms,
                refused,
                collections,
                scopes,
            } => {
                let result = self
                    .blocking(move |r| {
                        r.record_pushed(remote, through, now_ms, &refused, &|c, k| {
                            wants(&collections, &scopes, c, k)
                        })
                    })
                    .await
                    .map_err(SyncError::from);
                let now = self.now();
                self.session.handle_pushed(result, now);
            }
            Action::Apply {
                remote,
                changes,
                through,
                durable,
                scope,
            } => {
                // A pull with more to come asks for the next batch at
                // once: the remote reads it while this one is applied.
                // The session takes the apply's result first.
                let next = self.session.poll_action();
                let shared = self.shared.clone();
                let apply = self.blocking(move |r| {
                    let durability = pull_durability(durable, &shared);
                    let cursor = Cursor { through, scope };
                    r.apply_batch(Some(remote), &changes, Some(cursor), durability)
                });
                match next {
                    Some(Action::Exchange(request)) => {
                        let (result, answer) = tokio::join!(apply, self.exchange(&request));
                        let now = self.now();
                        self.session.handle_applied(result, now);
                        self.answer(answer, now);
                    }
                    other => {
                        let result = apply.await;
                        let now = self.now();
                        self.session.handle_applied(result, now);
                        return other;
                    }
                }
            }
            Action::Resync {
                remote,
                collections,
            } => {
                let result = self
                    .blocking(move |r| r.resync(remote, &collections))
                    .await
                    .map_err(SyncError::from);
                let now = self.now();
                self.session.handle_resynced(result, now);
            }
            Action::AdoptRelayed {
                remote,
                relayed,
                scopes,
            } => {
                let relayed: Vec<_> = relayed.iter().map(|r| (r.remote, r.pulled, r.at)).collect();
                let result = self
                    .blocking(move |r| r.adopt_relayed(remote, &relayed, &scopes))
                    .await
                    .map_err(SyncError::from);
                let now = self.now();
                self.session.handle_adopted(result, now);
            }
            Action::PruneScopes { remote, keep } => {
                let result = self
                    .blocking(move |r| r.prune_scopes(remote, &keep))
                    .await
                    .map_err(SyncError::from);
                let now = self.now();
                self.session.handle_pruned(result, now);
            }
            Action::DropScope {
                remote,
                scope,
                keep,
            } => {
                let result = self
                    .blocking(move |r| r.drop_scope(remote, &scope, &keep))
                    .await
                    .map_err(SyncError::from);
                let now = self.now();
                self.session.handle_scope_dropped(result, now);
            }
            Action::StagePart {
                remote,
                transfer,
                offset,
                changes,
            } => {
                let result = self
                    .blocking(move |r| {
                        r.stage_part(STAGED_PULLED, remote, transfer, offset, &changes)
                    })
                    .await
                    .map_err(SyncError::from);
                let now = self.now();
                self.session.handle_staged(result, now);
            }
            Action::ApplyStaged {
                remote,
                transfer,
                changes,
                through,
                durable,
                scope,
            } => {
                let shared = self.shared.clone();
                let result = self
                    .blocking(move |r| {
                        let durability = pull_durability(durable, &shared);
                        r.apply_staged(
                            STAGED_PULLED,
                            remote,
                            transfer,
                            &changes,
                            Some(Cursor { through, scope }),
                            durability,
                        )
                    })
                    .await;
                let now = self.now();
                self.session.handle_applied(result, now);
            }
            Action::Disconnect => {
                self.subscription = None;
                self.conn = None;
            }
            Action::Finished(result) => {
                self.finished(&result);
                if let Some(reply) = self.reply.take() {
                    let _ = reply.send(result);
                }
            }
        }
        None
    }

    /// Completes the round's span and counts the round.
    fn finished(&mut self, result: &Result<SyncReport, SyncError>) {
        let span = self.round_span.take().unwrap_or_else(Span::none);
        if let Some(remote) = self.session.remote() {
            span.record("remote", display(remote));
        }
        match result {
            Ok(report) => {
                crate::metrics::round_finished(None);
                span.record("pushed", report.pushed);
                span.record("pulled", report.pulled);
                tracing::debug!(
                    pushed = report.pushed,
                    pulled = report.pulled,
                    "round finished"
                );
            }
            Err(e) => {
                let fault = e.fault();
                crate::metrics::round_finished(Some(fault));
                span.record("error", display(e));
                tracing::debug!(error = %e, ?fault, "round failed");
            }
        }
    }

    /// Waits for the next input and feeds it to the session. False when the
    /// engine is dropped.
    async fn wait(&mut self) -> bool {
        let timeout = self.session.poll_timeout().map(Instant::from_std);
        let commits = self.session.wants_commits();
        let notifications = self.session.wants_notifications();
        tokio::select! {
            // Deterministic order (simulations replay exactly): commands
            // first, then local commits, notifications, timers.
            biased;
            command = self.commands.recv() => match command {
                Some(Command::Sync { push, pull, reply }) => {
                    self.reply = Some(reply);
                    let now = self.now();
                    self.session.handle_command(push, pull, now);
                }
                Some(Command::Reconnect) => {
                    let now = self.now();
                    self.session.handle_reconnect(now);
                }
                None => return false,
            },
            note = next_note(&mut self.local), if commits => {
                let commit = match note {
                    Ok(note) => Commit::Change {
                        lsn: note.lsn,
                        source: note.source,
                        synced: note.synced,
                        carried: note.carried,
                    },
                    Err(RecvError::Lagged(_)) => Commit::Lagged,
                    Err(RecvError::Closed) => return false,
                };
                let now = self.now();
                self.session.handle_local_commit(commit, now);
            },
            frame = next_frame(&mut self.subscription), if notifications => {
                let now = self.now();
                let frame = frame.as_ref().map(|r| match r {
                    Ok(frame) => Ok(&frame[..]),
                    Err(e) => Err(e.clone()),
                });
                self.session.handle_notification(frame, now);
            },
            () = sleep_until(timeout) => {
                let now = self.now();
                self.session.handle_timeout(now);
            }
        }
        true
    }

    /// Hands the session's events, status, statistics and remote to the
    /// handle's channels.
    fn publish(&mut self) {
        while let Some(event) = self.session.poll_event() {
            if let SyncEvent::StatusChanged(status) = event {
                self.status.send_replace(status);
            }
            let _ = self.events.send(event);
        }
        {
            let now = self.session.stats();
            let mut stats = lock(&self.shared.stats);
            crate::metrics::engine_moved(
                now.pushed.saturating_sub(stats.pushed),
                now.pulled.saturating_sub(stats.pulled),
                now.conflicts.saturating_sub(stats.conflicts),
                now.rejected.saturating_sub(stats.rejected),
            );
            *stats = now.clone();
        }
        *lock(&self.shared.remote) = self.session.remote();
        let progress = self.session.progress();
        self.progress.send_if_modified(|p| {
            let changed = *p != progress;
            *p = progress;
            changed
        });
    }

    /// Runs blocking store work off the async workers.
    /// Sends a request on the connection and waits for its answer.
    async fn exchange(&self, request: &Request) -> Result<Frame, TransportError> {
        let frame = Frame::from(protocol::encode(request));
        match &self.conn {
            Some(conn) => conn.exchange(frame).await,
            None => Err(TransportError::Closed {
                by: syncline_transport::Side::Local,
            }),
        }
    }

    /// Hands an exchange's answer to the session.
    fn answer(&mut self, answer: Result<Frame, TransportError>, now: Now) {
        match &answer {
            Ok(frame) => self.session.handle_response(Ok(frame), now),
            Err(e) => self.session.handle_response(Err(e.clone()), now),
        }
    }

    async fn blocking<T, E>(
        &self,
        f: impl FnOnce(&Replica) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        if self.inline_store {
            let _work = lock(&self.shared.store_work);
            return f(&self.replica);
        }
        let shared = self.shared.clone();
        match tokio::task::spawn_blocking(move || {
            let _work = lock(&shared.store_work);
            f(&shared.replica)
        })
        .await
        {
            Ok(result) => result,
            Err(e) => {
                tracing::warn!(error = %e, "store task failed");
                Err(E::from(StorageError::TaskFailed))
            }
        }
    }
}

/// A mutex's contents; a panic elsewhere cannot leave these half-written.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The durability of a pulled batch's commit: as the session asked, or
/// durable once the engine is stopping (the flush of
/// [`SyncEngine::stop`] may have run already).
fn pull_durability(durable: bool, shared: &Shared) -> CommitDurability {
    if durable || shared.stopping.load(Ordering::SeqCst) {
        CommitDurability::Immediate
    } else {
        CommitDurability::Deferred
    }
}

/// The next commit note, or never when the engine does not listen.
async fn next_note(
    local: &mut Option<broadcast::Receiver<CommitNote>>,
) -> Result<CommitNote, RecvError> {
    match local.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_frame(sub: &mut Option<Subscription>) -> Option<Result<Frame, TransportError>> {
    match sub.as_mut() {
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

#[cfg(all(test, feature = "loopback"))]
mod tests {
    use std::time::Duration;

    use syncline_loopback::LoopbackNetwork;
    use syncline_transport::Limits;

    use super::*;
    use crate::sync::server::SyncServer;

    const WAIT: Duration = Duration::from_secs(30);

    use crate::replica::tests::replica;

    /// The next event `pick` accepts (a timeout is a safety net only).
    async fn next_event(events: &mut broadcast::Receiver<SyncEvent>, pick: fn(&SyncEvent) -> bool) {
        let wait = async {
            loop {
                match events.recv().await {
                    Ok(e) if pick(&e) => return,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(e) => panic!("events ended: {e}"),
                }
            }
        };
        tokio::time::timeout(WAIT, wait).await.expect("the event");
    }

    /// The engine and the server's subscription wake on commit notes: with
    /// an engine running both ways, live, and nobody watching, no commit on
    /// either side builds a change event.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_running_engine_builds_no_change_events() {
        let net = LoopbackNetwork::new(1);
        let hub = replica(1);
        let _server = net
            .serve(
                "hub",
                SyncServer::new(hub.clone()).into_service(),
                Limits::default(),
            )
            .unwrap();
        let client = replica(2);
        let engine = SyncEngine::start(
            client.clone(),
            net.connector("client", "hub"),
            SyncConfig::default(),
        );
        engine.wait_synced(WAIT).await.unwrap();
        let mut events = engine.events();
        // Pulled through the subscription, pushed on the local commit.
        hub.collection("todos").unwrap().put("up", 1i64).unwrap();
        next_event(&mut events, |e| matches!(e, SyncEvent::Pulled { .. })).await;
        client
            .collection("todos")
            .unwrap()
            .put("down", 2i64)
            .unwrap();
        next_event(&mut events, |e| matches!(e, SyncEvent::Pushed { .. })).await;
        assert!(
            client
                .collection("todos")
                .unwrap()
                .get("up")
                .unwrap()
                .is_some()
        );
        assert!(
            hub.collection("todos")
                .unwrap()
                .get("down")
                .unwrap()
                .is_some()
        );
        assert!(!client.has_listeners(), "the engine built change events");
        assert!(!hub.has_listeners(), "the subscription built change events");
        // A user's watch still gets them.
        let mut watch = client.watch();
        assert!(client.has_listeners());
        hub.collection("todos").unwrap().put("again", 3i64).unwrap();
        let event = tokio::time::timeout(WAIT, watch.recv())
            .await
            .expect("an event")
            .unwrap();
        assert_eq!(event.change.key.as_bytes(), b"again");
        engine.stop().await;
    }
}
