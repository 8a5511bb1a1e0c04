//! What crosses the session's boundary: the time it is fed, the actions it
//! asks for, and the results of those actions.

use std::time::Instant;

use crate::clock::Stamp;
use crate::model::{Change, ReplicaId, Scope};
use crate::store::Refused;
use crate::sync::error::SyncError;
use crate::sync::protocol::{CollectionSpec, Request};
use crate::sync::status::SyncReport;
#[cfg(doc)]
use crate::sync::{config::SyncConfig, session::Session, status::SyncStats};

/// The time, as the driver read it: a monotonic instant for timers and the
/// wall clock for what is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Now {
    /// For timers (backoff, polling, the subscription's silence).
    pub(crate) at: Instant,
    /// Milliseconds since the Unix epoch, for cursors' last contact and
    /// [`SyncStats::last_sync_ms`].
    pub(crate) millis: u64,
}

/// What the session asks its driver to do. Each action's result is fed back
/// through the `handle_*` method its doc names.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    /// Open a connection to the remote; then [`Session::handle_connected`]
    /// with this replica's clock, synced collections and token (from the
    /// token provider, asked to refresh it when `refresh`).
    Connect {
        /// The remote refused the last token.
        refresh: bool,
    },
    /// Send a request and wait for its answer; then
    /// [`Session::handle_response`].
    Exchange(Request),
    /// Open the subscription stream; then [`Session::handle_subscribed`].
    Subscribe(Request),
    /// Read the cursor pulled through from `remote`; then
    /// [`Session::handle_pull_cursor`].
    ReadPullCursor {
        /// The remote.
        remote: ReplicaId,
        /// The scope whose cursor (`None`: the whole link's).
        scope: Option<Scope>,
    },
    /// Read the local feed after what `remote` acknowledged, leaving out its
    /// own changes and other collections; then [`Session::handle_outbox`].
    ReadOutbox {
        /// The remote.
        remote: ReplicaId,
        /// The most changes (whole groups may exceed it).
        limit: usize,
        /// About the most bytes (whole groups may exceed it).
        max_bytes: usize,
        /// The collections to include.
        collections: Vec<String>,
        /// The scopes to include, when the engine syncs scopes (empty: the
        /// whole collections).
        scopes: Vec<Scope>,
    },
    /// Record, durably, that `remote` holds the local feed through
    /// `through`; then [`Session::handle_pushed`].
    RecordPushed {
        /// The remote.
        remote: ReplicaId,
        /// The local lsn acknowledged through.
        through: u64,
        /// The time of the acknowledgement.
        now_ms: u64,
        /// The groups the remote refused, to move aside in the same commit.
        refused: Vec<Refused>,
        /// The collections pushed (the refused groups' changes are those
        /// of these collections that went to the remote).
        collections: Vec<String>,
        /// The scopes pushed (empty: the whole collections).
        scopes: Vec<Scope>,
    },
    /// Apply a pulled batch and move the pull cursor to `through` in the
    /// same commit; then [`Session::handle_applied`].
    Apply {
        /// The remote the changes came from.
        remote: ReplicaId,
        /// The changes, verified.
        changes: Vec<Change>,
        /// The remote's lsn the batch covers through.
        through: u64,
        /// Whether the commit waits for the disk (the last batch of a
        /// pull, or one due by [`SyncConfig::durable_interval`]); the
        /// others are deferred, which a crash may undo with their cursor.
        durable: bool,
        /// The scope the batch is of, whose cursor moves (`None`: the
        /// whole link's).
        scope: Option<Scope>,
    },
    /// Stage the part of the group `transfer` pulled from `remote` that
    /// starts at change `offset`, out of sight; then
    /// [`Session::handle_staged`] with how many changes are staged.
    StagePart {
        /// The remote.
        remote: ReplicaId,
        /// The remote's lsn that ends the group.
        transfer: u64,
        /// Where the part starts in the group.
        offset: u32,
        /// Its changes, verified.
        changes: Vec<Change>,
    },
    /// Apply a group pulled in parts: the staged ones and these, the last,
    /// in one commit that also moves the pull cursor to `through` and drops
    /// the staged parts; then [`Session::handle_applied`].
    ApplyStaged {
        /// The remote.
        remote: ReplicaId,
        /// The remote's lsn that ends the group.
        transfer: u64,
        /// The last part's changes, verified.
        changes: Vec<Change>,
        /// The remote's lsn the group covers through.
        through: u64,
        /// Whether the commit waits for the disk, as for [`Action::Apply`].
        durable: bool,
        /// The scope the group is of, as for [`Action::Apply`].
        scope: Option<Scope>,
    },
    /// Drop, in one commit, every scope pulled from `remote` before that
    /// is no longer asked for (not in `keep`): its records that no scope
    /// of `keep` covers, and its cursor; then
    /// [`Session::handle_pruned`] with the scopes dropped and how many
    /// records each took.
    PruneScopes {
        /// The remote.
        remote: ReplicaId,
        /// The scopes the engine syncs.
        keep: Vec<Scope>,
    },
    /// Take, durably, the pull cursors of other remotes that `remote`'s
    /// relayed cursors prove (`RequestBody::Relayed`): for each remote it
    /// pulled through `pulled` as of its lsn `at`, when this replica has
    /// pulled `remote` through `at` (each of `scopes`, when it syncs
    /// scopes), its cursor of that remote moves up to `pulled`; then
    /// [`Session::handle_adopted`] with how many moved.
    AdoptRelayed {
        /// The remote that told them.
        remote: ReplicaId,
        /// Its relayed cursors.
        relayed: Vec<crate::sync::protocol::Relayed>,
        /// The scopes the engine syncs (empty: whole collections).
        scopes: Vec<Scope>,
    },
    /// The remote no longer grants `scope`: in one commit, drop this
    /// replica's records in it that none of `keep` covers (locally, with
    /// no change, so no other replica is affected) and the scope's cursor,
    /// if one was stored (a scope never pulled drops nothing); then
    /// [`Session::handle_scope_dropped`] with how many records went.
    DropScope {
        /// The remote.
        remote: ReplicaId,
        /// The scope refused.
        scope: Scope,
        /// The other scopes the engine syncs.
        keep: Vec<Scope>,
    },
    /// Bootstrap the synced collections shared with `remote` again (the
    /// remote said the pull cursor lies behind its tombstone horizon): in
    /// one commit, empty them, write this replica's unsettled local writes
    /// again as new ones, and set the pull cursor to 0; then
    /// [`Session::handle_resynced`] with the records written again.
    Resync {
        /// The remote.
        remote: ReplicaId,
        /// The collections shared with it.
        collections: Vec<String>,
    },
    /// Drop the connection and its subscription.
    Disconnect,
    /// The round is over: answer the command that started it, if any.
    Finished(Result<SyncReport, SyncError>),
}

/// What the handshake needs from the local replica.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Local {
    /// The replica's clock reading.
    pub(crate) clock: Stamp,
    /// Its synced collections and their policies.
    pub(crate) collections: Vec<CollectionSpec>,
    /// The token to present on this connection.
    pub(crate) token: Option<String>,
}

/// The answer to [`Action::ReadOutbox`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Outbox {
    /// The local lsn the remote has acknowledged through.
    pub(crate) acked: u64,
    /// The changes to send, whole groups only.
    pub(crate) changes: Vec<Change>,
    /// The lsn the slice covers through (skipped entries included).
    pub(crate) through: u64,
    /// Whether the feed goes on after `through`.
    pub(crate) has_more: bool,
    /// The groups of `changes`: how many changes each holds, and the lsn
    /// that ends it in the local feed.
    pub(crate) groups: Vec<(u32, u64)>,
    /// Whether `changes` is one group larger than a batch: it goes in parts.
    pub(crate) oversized: bool,
}

/// The answer to [`Action::ReadPullCursor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PullCursor {
    /// The remote's lsn pulled through.
    pub(crate) after: u64,
    /// The parts staged of a group pulled in parts: its transfer and how
    /// many parts.
    pub(crate) staged: Option<(u64, u32)>,
}

impl From<u64> for PullCursor {
    fn from(after: u64) -> Self {
        Self {
            after,
            staged: None,
        }
    }
}

/// A local commit, as the replica's change stream reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Commit {
    /// A change at `lsn`, received from `source` (`None`: made here).
    Change {
        /// Its lsn.
        lsn: u64,
        /// The peer it came from.
        source: Option<ReplicaId>,
        /// Whether its collection syncs: a local-only change never wakes
        /// the engine.
        synced: bool,
        /// Whether it moved records that keep changes from before it.
        carried: bool,
    },
    /// The stream fell behind and lost some: assume they were local and
    /// synced.
    Lagged,
}

/// Rounds begun and the last that succeeded ([`Session::progress`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Rounds begun so far.
    pub(crate) begun: u64,
    /// The number of the last round that succeeded (0: none).
    pub(crate) synced: u64,
}
