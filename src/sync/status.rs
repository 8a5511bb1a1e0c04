//! What an engine reports: its status, statistics, events and round reports.

use syncline_transport::{Fault, RefusalCode};

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
    /// Transaction groups the remote refused (see [`crate::Replica::rejected`]).
    pub rejected: u64,
    /// Sync rounds completed without error.
    pub rounds: u64,
    /// When the last round finished without error, in ms since the epoch.
    pub last_sync_ms: Option<u64>,
    /// The last error, if the last round failed.
    pub last_error: Option<String>,
    /// The remote's feed head: its last lsn as of the last handshake,
    /// notification or pulled batch. With the `through` of
    /// [`SyncEvent::Pulled`], how far a pull has to go.
    pub remote_lsn: u64,
    /// Local changes the remote has not acknowledged and the next push
    /// carries: changes of synced collections not made by the remote nor
    /// received from it. (Before the first handshake, every feed entry.)
    pub pending: u64,
}

/// Something that happened in an engine.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncEvent {
    /// A local commit of changes to synced collections: they will be
    /// pushed. One event per commit (a transaction of many changes
    /// included).
    Captured {
        /// The lsn of the commit's last change.
        lsn: u64,
    },
    /// The remote acknowledged changes.
    Pushed {
        /// How many changes the batch carried.
        count: usize,
        /// The local lsn acknowledged through.
        through: u64,
    },
    /// The remote refused a transaction group; nothing of it was stored
    /// there, and it no longer holds back the push. It is listed by
    /// [`crate::Replica::rejected`] until retried or discarded.
    Rejected {
        /// The group's name: the lsn that ends it in the local feed.
        group: u64,
        /// Why, as the remote's code.
        code: RefusalCode,
        /// The remote's reason.
        reason: String,
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
    /// The remote said this replica fell behind its tombstone horizon
    /// (`RefusalCode::RESYNC_REQUIRED`): the shared collections were
    /// emptied and are pulled again from current state. The local writes
    /// no push had settled were written again as new writes, listed here
    /// (collection, key); their earlier versions are gone, by design.
    Resynced {
        /// The records written again.
        reapplied: Vec<(String, crate::Key)>,
    },
    /// The remote refused a scope (or a collection) alone, and the others
    /// sync: it does not sync the collection (`RefusalCode::CONFLICT`), or
    /// the caller's read grant does not cover the scope
    /// (`RefusalCode::FORBIDDEN`). See [`crate::SyncConfig::scopes`].
    ScopeRefused {
        /// The scope (a whole collection for a missing one).
        scope: crate::Scope,
        /// The remote's code.
        code: RefusalCode,
        /// The remote's reason.
        reason: String,
    },
    /// The records of a scope no longer granted or no longer asked for
    /// were dropped here, locally (no other replica is affected).
    ScopeDropped {
        /// The scope.
        scope: crate::Scope,
        /// How many records went.
        dropped: u64,
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
