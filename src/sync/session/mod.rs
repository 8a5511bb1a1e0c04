//! The client side of sync with one remote, as a state machine that does no
//! I/O and reads no clock.
//!
//! After quinn-proto's `Connection`: the [`Session`] is driven from outside.
//! The driver (the engine, or a test) feeds it what happened, each input
//! with the time ([`Now`]): a command, a local commit, a notification, a
//! timeout, and the result of each [`Action`] it asked for (a connection,
//! an exchange's answer frame, a store read or write). It says what to do
//! next through [`Session::poll_action`], what happened through
//! [`Session::poll_event`], and when it wants to be woken through
//! [`Session::poll_timeout`]. Every protocol rule lives here: the
//! handshake's checks, the push and pull loops with their cursor, digest
//! and ack checks, heartbeats, the silent-subscription timeout, backoff
//! with jitter (from a seed), status and statistics.
//!
//! One action is outstanding at a time, and a round runs to its end before
//! the next input of the idle kinds (command, commit, notification,
//! timeout) is taken. Inputs that do not fit the current phase are ignored,
//! so that no sequence of inputs can panic it.

use std::collections::VecDeque;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use syncline_transport::{RefusalCode, TransportError};

use crate::model::{Change, ReplicaId, Scope};
use crate::store::Refused;
use crate::sync::config::SyncConfig;
use crate::sync::error::{ProtocolViolation, SyncError};
use crate::sync::protocol::{
    self, CollectionSpec, Notify, PROTOCOL_VERSION, Request, RequestBody, Response,
};
use crate::sync::status::{Status, SyncEvent, SyncReport, SyncStats};

mod end;
mod io;
mod pull;
mod push;
#[cfg(test)]
mod tests;

pub(crate) use io::{Action, Commit, Local, Now, Outbox, Progress, PullCursor};

/// A connection that passed the handshake.
#[derive(Clone, Debug)]
struct Link {
    remote: ReplicaId,
    collections: Vec<String>,
    /// The configured scopes whose collection the remote syncs (empty:
    /// the engine syncs whole collections).
    scopes: Vec<Scope>,
    subscribed: bool,
    /// The greatest lsn the subscription announced (at first, the cursor it
    /// was opened after): a notification at or below it is a heartbeat.
    notified: u64,
    /// When the subscription last delivered a frame.
    heard: Instant,
}

/// Where a round is, and what it waits for.
#[derive(Clone, Debug, PartialEq)]
enum Phase {
    /// Waiting for the store to bootstrap the shared collections again.
    Resyncing,
    /// No round.
    Idle,
    /// Waiting for [`Session::handle_connected`].
    Connecting,
    /// Waiting for the welcome.
    Hello { ours: Vec<CollectionSpec> },
    /// Waiting for the pull cursor to subscribe after.
    SubscribeCursor { link: Link },
    /// Waiting for the subscription to open.
    Subscribing { link: Link, after: u64 },
    /// Waiting for the outbox.
    Outbox,
    /// Waiting for the ack of a push.
    Pushing {
        through: u64,
        has_more: bool,
        /// The pushed groups: their sizes and the lsns that end them.
        groups: Vec<(u32, u64)>,
        /// The pushed changes, kept until the ack: a refused group is
        /// recorded with the changes it carried.
        changes: Vec<Change>,
    },
    /// Waiting for a part of an oversized group to be staged by the remote
    /// (or, after the last, for the ack).
    PushingParts {
        through: u64,
        has_more: bool,
        /// The group: its size and the lsn that ends it.
        groups: Vec<(u32, u64)>,
        /// The group's changes, kept until the ack: the remote may ask for
        /// a part starting at any of them.
        changes: Vec<Change>,
    },
    /// Waiting for the ack to be recorded.
    RecordingPush {
        through: u64,
        /// The changes the remote accepted.
        count: usize,
        has_more: bool,
        /// The groups it refused.
        refused: Vec<Refused>,
    },
    /// Waiting for the pull cursor.
    PullCursor,
    /// Waiting for the store to drop a scope's records and cursor.
    DroppingScope,
    /// Waiting for the store to drop the scopes no longer asked for.
    Pruning { link: Link },
    /// Waiting for the remote's relayed cursors.
    Relaying,
    /// Waiting for the store to adopt what they prove.
    Adopting,
    /// Waiting for a pull's answer.
    Pulling { after: u64 },
    /// Waiting for a pulled part to be staged.
    StagingPart { after: u64, transfer: u64 },
    /// Waiting for a pulled batch to be applied.
    Applying {
        after: u64,
        through: u64,
        has_more: bool,
        /// The next pull, asked for while this batch is applied (the
        /// remote reads it meanwhile): its answer, when it came first.
        prefetch: Option<Prefetch>,
    },
}

/// The next pull of a round, asked for before the current batch is applied.
#[derive(Clone, Debug)]
pub(super) enum Prefetch {
    /// Asked; no answer yet.
    Asked,
    /// Answered before the apply finished (a driver may answer in either
    /// order): kept until it has.
    Answered(Result<Vec<u8>, TransportError>),
}

// Phases compare only in tests; an error compares by what it says.
impl PartialEq for Prefetch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Asked, Self::Asked) => true,
            (Self::Answered(a), Self::Answered(b)) => format!("{a:?}") == format!("{b:?}"),
            _ => false,
        }
    }
}

// `Link` holds an `Instant`; phases compare only in tests.
impl PartialEq for Link {
    fn eq(&self, other: &Self) -> bool {
        self.remote == other.remote && self.collections == other.collections
    }
}

/// What a round still has to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Push,
    Pull,
    Done,
}

/// The client side of sync with one remote. See the module docs.
#[derive(Debug)]
pub(crate) struct Session {
    local: ReplicaId,
    config: SyncConfig,
    rng: StdRng,
    phase: Phase,
    stage: Stage,
    /// Whether the round pulls after it pushes.
    pulls: bool,
    /// Whether the round pushes again after its pull: a pulled change moves
    /// its record to a new feed entry, with the other changes the record
    /// keeps (conflicts), which the remote may not hold yet.
    repush: bool,
    report: SyncReport,
    link: Option<Link>,
    /// The remote's id, once a handshake told it; kept across reconnects.
    remote: Option<ReplicaId>,
    /// Failed rounds in a row.
    failures: u32,
    /// The token presented on the current connection.
    token: Option<String>,
    /// Whether this round already asked the token provider for a fresh
    /// token after a refusal.
    refreshed: bool,
    /// Whether this round already bootstrapped again after a
    /// `RESYNC_REQUIRED` refusal.
    resynced: bool,
    /// The refusal that ended this round's push, while its pull runs.
    push_error: Option<SyncError>,
    /// The parts staged here of a group pulled in parts: its transfer and
    /// how many.
    pull_staged: Option<(u64, u32)>,
    /// Which of the link's scopes the pull stage is at (scoped engines).
    target: usize,
    /// When the remote's relayed cursors were last asked for.
    relayed_at: Option<Instant>,
    /// Rounds begun so far; the current one is number `begun`.
    begun: u64,
    /// The number of the last round that succeeded (0: none).
    synced: u64,
    retry_at: Option<Instant>,
    poll_at: Option<Instant>,
    /// When the last durable pulled batch was asked for, or the round
    /// began: pulled batches go without an fsync until `durable_interval`
    /// after it.
    durable_at: Instant,
    status: Status,
    stats: SyncStats,
    actions: VecDeque<Action>,
    events: VecDeque<SyncEvent>,
}

impl Session {
    /// A session of replica `local`, started at `now`: unless it syncs on
    /// demand, it connects at once.
    pub(crate) fn new(local: ReplicaId, config: SyncConfig, seed: u64, now: Instant) -> Self {
        let retry_at = (!config.on_demand).then_some(now);
        let token = config.token.clone();
        Self {
            local,
            config,
            rng: StdRng::seed_from_u64(seed),
            phase: Phase::Idle,
            stage: Stage::Done,
            pulls: false,
            report: SyncReport::default(),
            link: None,
            remote: None,
            failures: 0,
            token,
            refreshed: false,
            resynced: false,
            push_error: None,
            repush: false,
            pull_staged: None,
            target: 0,
            relayed_at: None,
            begun: 0,
            synced: 0,
            retry_at,
            poll_at: None,
            durable_at: now,
            status: Status::Offline,
            stats: SyncStats::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ---- what the driver reads ----

    /// The next thing to do, if any.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next thing that happened, if any.
    pub(crate) fn poll_event(&mut self) -> Option<SyncEvent> {
        self.events.pop_front()
    }

    /// When to call [`Session::handle_timeout`] next, if ever. Only
    /// meaningful between rounds.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.is_busy() {
            return None;
        }
        let timer = self.retry_at.or(self.poll_at);
        match (timer, self.silence_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a round is under way.
    pub(crate) fn is_busy(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// The status (the driver follows it through the status events).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn status(&self) -> Status {
        self.status
    }

    /// The statistics (without `pending`, which the store knows).
    pub(crate) fn stats(&self) -> &SyncStats {
        &self.stats
    }

    /// The remote's replica id, once a handshake told it.
    pub(crate) fn remote(&self) -> Option<ReplicaId> {
        self.remote
    }

    /// How many rounds have begun, and the number of the last that
    /// succeeded: a round begun after some moment succeeded once
    /// `synced` passes the `begun` of that moment.
    pub(crate) fn progress(&self) -> Progress {
        Progress {
            begun: self.begun,
            synced: self.synced,
        }
    }

    /// Whether the driver should report local commits
    /// ([`Session::handle_local_commit`]).
    pub(crate) fn wants_commits(&self) -> bool {
        self.config.direction.pushes()
    }

    /// Whether the driver should read the subscription
    /// ([`Session::handle_notification`]).
    pub(crate) fn wants_notifications(&self) -> bool {
        self.online() && self.link.as_ref().is_some_and(|l| l.subscribed)
    }

    // ---- idle inputs ----

    /// The user asked for a round.
    pub(crate) fn handle_command(&mut self, push: bool, pull: bool, now: Now) {
        if !self.is_busy() {
            self.begin(push, pull, now);
        }
    }

    /// The app says the network is back ([`crate::SyncEngine::reconnect_now`]):
    /// forget the backoff, drop the connection (it may be dead without
    /// knowing it), and, unless on demand, sync at once.
    pub(crate) fn handle_reconnect(&mut self, now: Now) {
        if self.is_busy() {
            return;
        }
        self.failures = 0;
        self.retry_at = None;
        if self.link.take().is_some() {
            self.actions.push_back(Action::Disconnect);
        }
        if !self.config.on_demand {
            self.begin(true, true, now);
        }
    }

    /// A commit happened on the local replica.
    pub(crate) fn handle_local_commit(&mut self, commit: Commit, now: Now) {
        let ours = match commit {
            Commit::Lagged => true,
            // A local-only change never leaves: nothing to capture or push.
            Commit::Change { synced: false, .. } => return,
            Commit::Change {
                lsn, source: None, ..
            } => {
                self.events.push_back(SyncEvent::Captured { lsn });
                true
            }
            // Changes pulled from this remote need no push back, unless
            // they moved records that keep changes it may lack (conflicts).
            Commit::Change {
                source, carried, ..
            } => carried || source != self.remote,
        };
        // Only a connected, automatic engine pushes by itself.
        let watching = self.online() && self.config.direction.pushes() && !self.config.on_demand;
        if watching && ours && !self.is_busy() {
            self.begin(true, false, now);
        }
    }

    /// The subscription delivered a frame (`Some(Ok)`), failed (`Some(Err)`)
    /// or ended (`None`).
    pub(crate) fn handle_notification(
        &mut self,
        frame: Option<Result<&[u8], TransportError>>,
        now: Now,
    ) {
        if self.is_busy() || !self.wants_notifications() {
            return;
        }
        let notify = match frame {
            Some(Ok(bytes)) => match protocol::decode::<Notify>(bytes) {
                Ok(notify) => notify,
                Err(source) => {
                    return self.lost(
                        ProtocolViolation::Undecodable {
                            what: "notification",
                            source,
                        }
                        .into(),
                        now,
                    );
                }
            },
            Some(Err(e)) => return self.lost(e.into(), now),
            None => return self.lost(ProtocolViolation::SubscriptionEnded.into(), now),
        };
        let Some(link) = self.link.as_mut() else {
            return;
        };
        link.heard = now.at;
        self.stats.remote_lsn = self.stats.remote_lsn.max(notify.last_lsn);
        if notify.last_lsn <= link.notified {
            // A heartbeat: alive, and nothing new.
            return;
        }
        link.notified = notify.last_lsn;
        self.begin(false, true, now);
    }

    /// Time passed: a retry or poll may be due, or the subscription silent
    /// for too long.
    pub(crate) fn handle_timeout(&mut self, now: Now) {
        if self.is_busy() {
            return;
        }
        if self.retry_at.or(self.poll_at).is_some_and(|t| t <= now.at) {
            self.begin(true, true, now);
        } else if self.silence_deadline().is_some_and(|t| t <= now.at) {
            let timeout = self.config.subscription_timeout.unwrap_or_default();
            self.lost(
                SyncError::Transport(TransportError::network(format!(
                    "the subscription was silent for {timeout:?}, heartbeats included"
                ))),
                now,
            );
        }
    }

    // ---- results of actions ----

    /// The result of [`Action::Connect`].
    pub(crate) fn handle_connected(&mut self, result: Result<Local, TransportError>, now: Now) {
        if self.phase != Phase::Connecting {
            return;
        }
        match result {
            Ok(local) => {
                self.token = local.token;
                let request = self.request(RequestBody::Hello {
                    clock: local.clock,
                    collections: local.collections.clone(),
                });
                self.phase = Phase::Hello {
                    ours: local.collections,
                };
                self.actions.push_back(Action::Exchange(request));
            }
            Err(e) => self.finish(Err(e.into()), now),
        }
    }

    /// The answer to [`Action::Exchange`]: the response frame, or how the
    /// transport failed (a refusal included).
    pub(crate) fn handle_response(&mut self, answer: Result<&[u8], TransportError>, now: Now) {
        if let Phase::Applying {
            prefetch: Some(prefetch @ Prefetch::Asked),
            ..
        } = &mut self.phase
        {
            // The next pull's answer, before this batch's apply: kept.
            *prefetch = Prefetch::Answered(answer.map(<[u8]>::to_vec));
            return;
        }
        let expected = match &self.phase {
            Phase::Hello { .. } => "a welcome",
            Phase::Pushing { .. } => "an ack",
            Phase::PushingParts { .. } => "a staged part or an ack",
            Phase::Pulling { .. } => "changes",
            Phase::Relaying => "relayed cursors",
            _ => return,
        };
        let response = match answer {
            Ok(bytes) => match protocol::decode::<Response>(bytes) {
                Ok(response) => response,
                Err(source) => {
                    let error = match protocol::legacy_refusal(bytes) {
                        Some(refusal) => refusal.into(),
                        None => ProtocolViolation::Undecodable {
                            what: "response",
                            source,
                        }
                        .into(),
                    };
                    return self.finish(Err(error), now);
                }
            },
            Err(e) if self.phase == Phase::Relaying => {
                // An older server, or a failure here: the round itself is
                // done; cursors of other hubs are a saving, not a need.
                tracing::debug!(error = %e, "the remote did not tell its relayed cursors");
                self.phase = Phase::Idle;
                return self.finish(Ok(self.report), now);
            }
            Err(TransportError::Refused { code, reason })
                if matches!(self.phase, Phase::Pulling { .. })
                    && matches!(code, RefusalCode::FORBIDDEN | RefusalCode::CONFLICT)
                    && self.target().is_some() =>
            {
                return self.scope_refused(code, reason, now);
            }
            Err(e) => return self.finish(Err(e.into()), now),
        };
        let phase = std::mem::replace(&mut self.phase, Phase::Idle);
        let next = match (phase, response) {
            (
                Phase::Hello { ours },
                Response::Welcome {
                    replica,
                    collections,
                    last_lsn,
                    ..
                },
            ) => {
                self.stats.remote_lsn = last_lsn;
                self.welcome(ours, replica, &collections, now)
            }
            (
                Phase::Pushing {
                    through,
                    has_more,
                    groups,
                    changes,
                },
                Response::Ack {
                    through: acked,
                    refused,
                    ..
                },
            ) => self.acked(through, acked, has_more, &groups, &changes, refused, now),
            (Phase::Pulling { after }, Response::Changes { batch, has_more }) => {
                self.changes(after, batch, has_more, now)
            }
            (
                Phase::Pulling { after },
                Response::Part {
                    part,
                    batch,
                    has_more,
                },
            ) => self.part(after, part, batch, has_more, now),
            (
                Phase::PushingParts {
                    through,
                    has_more,
                    groups,
                    changes,
                },
                Response::Staged { transfer, next },
            ) => self.staged(through, has_more, groups, changes, transfer, next),
            (
                Phase::PushingParts {
                    through,
                    has_more,
                    groups,
                    changes,
                },
                Response::Ack {
                    through: acked,
                    refused,
                    ..
                },
            ) => self.acked(through, acked, has_more, &groups, &changes, refused, now),
            (Phase::Relaying, Response::Relayed { remotes }) => {
                self.relayed(remotes);
                Ok(())
            }
            (_, other) => Err(ProtocolViolation::Unexpected {
                expected,
                got: other.kind(),
            }
            .into()),
        };
        if let Err(e) = next {
            self.finish(Err(e), now);
        }
    }

    /// The result of [`Action::Subscribe`].
    pub(crate) fn handle_subscribed(&mut self, result: Result<(), TransportError>, now: Now) {
        let Phase::Subscribing { .. } = self.phase else {
            return;
        };
        let Phase::Subscribing { mut link, after } =
            std::mem::replace(&mut self.phase, Phase::Idle)
        else {
            return;
        };
        match result {
            Ok(()) => {
                link.subscribed = true;
                link.notified = after;
                link.heard = now.at;
                self.link = Some(link);
                self.next(now);
            }
            Err(e) => self.finish(Err(e.into()), now),
        }
    }

    /// The result of [`Action::ReadPullCursor`].
    pub(crate) fn handle_pull_cursor(
        &mut self,
        result: Result<impl Into<PullCursor>, SyncError>,
        now: Now,
    ) {
        let PullCursor { after, staged } = match result {
            Ok(cursor) => cursor.into(),
            Err(e) => {
                if matches!(
                    self.phase,
                    Phase::SubscribeCursor { .. } | Phase::PullCursor
                ) {
                    self.finish(Err(e), now);
                }
                return;
            }
        };
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::SubscribeCursor { link } => {
                // A scoped engine hears only of commits inside its scopes.
                let request = if link.scopes.is_empty() {
                    self.request(RequestBody::Subscribe { after })
                } else {
                    self.request(RequestBody::SubscribeScopes {
                        after,
                        scopes: link.scopes.clone(),
                    })
                };
                self.phase = Phase::Subscribing { link, after };
                self.actions.push_back(Action::Subscribe(request));
            }
            Phase::PullCursor => {
                self.pull_staged = staged;
                // A group pulled in parts, some staged: resume it.
                let request = self.pull_request(after, staged);
                self.phase = Phase::Pulling { after };
                self.actions.push_back(Action::Exchange(request));
            }
            other => self.phase = other,
        }
    }

    // ---- the round ----

    /// Starts a round: connect if needed, push, then pull (as the direction
    /// allows).
    fn begin(&mut self, push: bool, pull: bool, now: Now) {
        let push = push && self.config.direction.pushes();
        let pull = pull && self.config.direction.pulls();
        self.report = SyncReport::default();
        self.begun += 1;
        self.durable_at = now.at;
        self.refreshed = false;
        self.resynced = false;
        self.push_error = None;
        self.target = 0;
        self.stage = match (push, pull) {
            (true, _) => Stage::Push,
            (false, true) => Stage::Pull,
            (false, false) => Stage::Done,
        };
        self.pulls = pull;
        self.repush = false;
        self.set_status(Status::Syncing);
        if self.link.is_none() {
            self.phase = Phase::Connecting;
            self.actions.push_back(Action::Connect { refresh: false });
        } else {
            self.next(now);
        }
    }

    /// The next step of the round, from the idle phase.
    fn next(&mut self, now: Now) {
        let Some(link) = &self.link else {
            return self.finish(Err(SyncError::Stopped), now);
        };
        let remote = link.remote;
        match self.stage {
            Stage::Push => {
                self.phase = Phase::Outbox;
                self.actions.push_back(Action::ReadOutbox {
                    remote,
                    limit: self.config.batch_size,
                    max_bytes: self.config.max_batch_bytes,
                    collections: link.collections.clone(),
                    scopes: self.config.scopes.clone(),
                });
            }
            Stage::Pull if !self.config.scopes.is_empty() && self.target >= link.scopes.len() => {
                // A scoped engine whose every scope is pulled (or refused).
                self.stage = Stage::Done;
                self.finish(Ok(self.report), now)
            }
            Stage::Pull => {
                self.phase = Phase::PullCursor;
                self.actions.push_back(Action::ReadPullCursor {
                    remote,
                    scope: self.target(),
                });
            }
            Stage::Done if self.relay_due(now) => {
                self.relayed_at = Some(now.at);
                self.phase = Phase::Relaying;
                let request = self.request(RequestBody::Relayed);
                self.actions.push_back(Action::Exchange(request));
            }
            Stage::Done => self.finish(Ok(self.report), now),
        }
    }

    /// Whether to ask the remote for its relayed cursors at the end of
    /// this round: after a pull, at most once per `relay_interval`.
    fn relay_due(&self, now: Now) -> bool {
        let Some(every) = self.config.relay_interval else {
            return false;
        };
        self.pulls
            && self.phase == Phase::Idle
            && self
                .relayed_at
                .is_none_or(|at| now.at.saturating_duration_since(at) >= every)
    }

    /// The remote's relayed cursors: hand them to the store.
    fn relayed(&mut self, remotes: Vec<protocol::Relayed>) {
        let Some(link) = &self.link else {
            return;
        };
        self.phase = Phase::Adopting;
        self.actions.push_back(Action::AdoptRelayed {
            remote: link.remote,
            relayed: remotes,
            scopes: link.scopes.clone(),
        });
    }

    /// The result of [`Action::AdoptRelayed`]: how many cursors moved.
    pub(crate) fn handle_adopted(&mut self, result: Result<usize, SyncError>, now: Now) {
        if self.phase != Phase::Adopting {
            return;
        }
        self.phase = Phase::Idle;
        match result {
            Ok(moved) => {
                if moved > 0 {
                    tracing::debug!(moved, "cursors of other hubs taken from the remote's");
                }
                self.finish(Ok(self.report), now)
            }
            Err(e) => self.finish(Err(e), now),
        }
    }

    /// Checks the welcome, then subscribes or goes on with the round.
    fn welcome(
        &mut self,
        ours: Vec<CollectionSpec>,
        remote: ReplicaId,
        theirs: &[CollectionSpec],
        now: Now,
    ) -> Result<(), SyncError> {
        if remote == self.local {
            return Err(ProtocolViolation::OwnReplicaId.into());
        }
        // The server compared our collections with its own; check its side
        // too, for the collections both sync.
        let shared: Vec<CollectionSpec> = ours
            .iter()
            .filter(|o| theirs.iter().any(|t| t.name == o.name))
            .cloned()
            .collect();
        protocol::check_collections(&shared, theirs)
            .map_err(|d| SyncError::Protocol(ProtocolViolation::Disagreement(d)))?;
        // A collection the remote does not sync is left out, alone, and
        // said so; the others sync.
        for missing in ours.iter().filter(|o| !shared.contains(o)) {
            tracing::warn!(collection = %missing.name, "the remote does not sync this collection");
            self.events.push_back(SyncEvent::ScopeRefused {
                scope: Scope::collection(missing.name.clone()),
                code: RefusalCode::CONFLICT,
                reason: format!("the remote does not sync collection {:?}", missing.name),
            });
        }
        let collections: Vec<String> = shared.into_iter().map(|s| s.name).collect();
        let scopes = self
            .config
            .scopes
            .iter()
            .filter(|s| collections.contains(&s.collection))
            .cloned()
            .collect();
        self.remote = Some(remote);
        let link = Link {
            remote,
            collections,
            scopes,
            subscribed: false,
            notified: 0,
            heard: now.at,
        };
        if !self.config.scopes.is_empty() {
            // Scopes pulled before and no longer asked for go first.
            self.phase = Phase::Pruning { link };
            self.actions.push_back(Action::PruneScopes {
                remote,
                keep: self.config.scopes.clone(),
            });
            return Ok(());
        }
        self.linked(link, now);
        Ok(())
    }

    /// The result of [`Action::PruneScopes`]: the scopes dropped, and how
    /// many records each took.
    pub(crate) fn handle_pruned(&mut self, result: Result<Vec<(Scope, u64)>, SyncError>, now: Now) {
        let Phase::Pruning { .. } = &self.phase else {
            return;
        };
        let Phase::Pruning { link } = std::mem::replace(&mut self.phase, Phase::Idle) else {
            return;
        };
        match result {
            Ok(dropped) => {
                for (scope, dropped) in dropped {
                    self.events
                        .push_back(SyncEvent::ScopeDropped { scope, dropped });
                }
                self.linked(link, now);
            }
            Err(e) => self.finish(Err(e), now),
        }
    }

    /// The handshake is done: subscribe, or go on with the round.
    fn linked(&mut self, link: Link, now: Now) {
        let remote = link.remote;
        let subscribe = self.config.live && !self.config.on_demand && self.config.direction.pulls();
        if subscribe {
            self.phase = Phase::SubscribeCursor { link: link.clone() };
            self.actions.push_back(Action::ReadPullCursor {
                remote,
                scope: link.scopes.first().cloned(),
            });
        } else {
            self.link = Some(link);
            self.next(now);
        }
    }

    /// Connected, and not waiting out a backoff.
    fn online(&self) -> bool {
        self.link.is_some() && self.retry_at.is_none()
    }

    /// When the subscription has been silent for too long.
    fn silence_deadline(&self) -> Option<Instant> {
        let link = self.link.as_ref().filter(|l| l.subscribed)?;
        if !self.online() {
            return None;
        }
        Some(link.heard + self.config.subscription_timeout?)
    }

    /// The scope the pull stage is at; `None` for an engine that syncs
    /// whole collections.
    fn target(&self) -> Option<Scope> {
        if self.config.scopes.is_empty() {
            return None;
        }
        self.link.as_ref()?.scopes.get(self.target).cloned()
    }

    /// The pull from `after` (with `part`: of the group being pulled in
    /// parts, from its change `next`) of the current target.
    fn pull_request(&self, after: u64, part: Option<(u64, u32)>) -> Request {
        let limit = u32::try_from(self.config.batch_size).unwrap_or(u32::MAX);
        let body = match (self.target(), part) {
            (Some(scope), part) => RequestBody::PullScope {
                scope,
                after,
                limit,
                part,
            },
            (None, Some((transfer, next))) => RequestBody::PullPart {
                after,
                transfer,
                next,
                collections: self.link_collections(),
            },
            (None, None) => RequestBody::Pull {
                after,
                limit,
                collections: self.link_collections(),
            },
        };
        self.request(body)
    }

    fn link_collections(&self) -> Vec<String> {
        self.link
            .as_ref()
            .map(|l| l.collections.clone())
            .unwrap_or_default()
    }

    fn request(&self, body: RequestBody) -> Request {
        Request {
            version: PROTOCOL_VERSION,
            from: self.local,
            token: self.token.clone(),
            body,
        }
    }
}
