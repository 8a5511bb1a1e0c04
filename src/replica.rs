//! A replica: one redb database, its clock, its collections and its feed.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};
#[cfg(feature = "automerge")]
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use redb::backends::InMemoryBackend;
use redb::{Database, ReadOnlyDatabase};
use tokio::sync::{broadcast, watch};

use crate::clock::{Stamp, SystemTimeSource, TimeSource};
use crate::collection::Collection;
use crate::error::{
    ApplyError, CollectionNameError, ConfigError, OpenError, ReadError, StorageError, WriteError,
};
use crate::merge::{Resolver, Rule};
use crate::model::{Change, CollectionConfig, Key, ReplicaId, Scope};
use crate::store::{
    ApplyReport, Collections, CommitDurability, Cursor, FeedEntry, FeedSlice, GroupPart, Limits,
    Opened, PeerState, Received, Refused, Store, VerifyReport, check_remote,
};
use crate::txn::Transaction;
use crate::watch::{ChangeEvent, Watch};

/// The longest collection name, in bytes.
pub const MAX_COLLECTION_NAME_LEN: usize = 255;
/// The largest `max_value_len` a configuration may set: one encoded value
/// must fit in a peer frame.
pub const MAX_VALUE_LEN_LIMIT: usize = 16 << 20;

/// How many commit notes a listener may fall behind before it lags (and
/// then assumes a local commit it did not see).
const COMMIT_NOTES: usize = 1024;

/// A commit that stored changes, as the sync engine and the server's
/// subscriptions hear of it: a few words per commit, whatever its size, so
/// that no change is cloned for listeners that only need to wake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CommitNote {
    /// The lsn of its last change.
    pub(crate) lsn: u64,
    /// The peer its changes came from; `None` for a local transaction.
    pub(crate) source: Option<ReplicaId>,
    /// Whether any of its changes is of a synced collection.
    pub(crate) synced: bool,
    /// Whether it moved records that keep changes from before it, which
    /// its source may lack.
    pub(crate) carried: bool,
}

/// How a replica is opened.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// How far ahead of local physical time a remote stamp may be before its
    /// batch is refused. Default 60 s.
    pub max_clock_drift: Duration,
    /// The longest key, in bytes. Default 1024.
    pub max_key_len: usize,
    /// The largest encoded value, in bytes. Default 1 MiB; at most
    /// [`MAX_VALUE_LEN_LIMIT`].
    pub max_value_len: usize,
    /// The most changes in one transaction or one remote batch. Default 10,000.
    pub max_batch_changes: usize,
    /// Where physical time comes from. Default: the system clock.
    pub time: Arc<dyn TimeSource>,
    /// The id a *new* database takes; `None` draws a random one. Ignored when
    /// the database exists. Simulations set it to stay deterministic.
    pub replica_id: Option<ReplicaId>,
    /// How many committed changes a [`Watch`] may fall behind before it lags.
    pub watch_capacity: usize,
    /// The resolvers that collections with [`crate::MergePolicy::Custom`] name.
    pub resolvers: Vec<Arc<dyn Resolver>>,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            max_clock_drift: Duration::from_secs(60),
            max_key_len: 1024,
            max_value_len: 1 << 20,
            max_batch_changes: 10_000,
            time: Arc::new(SystemTimeSource),
            replica_id: None,
            watch_capacity: 4096,
            resolvers: Vec::new(),
        }
    }
}

impl ReplicaConfig {
    /// This configuration with a resolver for [`crate::MergePolicy::Custom`] collections.
    pub fn with_resolver(mut self, resolver: impl Resolver + 'static) -> Self {
        self.resolvers.push(Arc::new(resolver));
        self
    }

    /// This configuration with another time source.
    pub fn with_time(mut self, time: impl TimeSource + 'static) -> Self {
        self.time = Arc::new(time);
        self
    }

    /// The limits every change must keep, checked against what the store
    /// can carry.
    fn limits(&self) -> Result<Limits, ConfigError> {
        if self.max_key_len == 0 {
            return Err(ConfigError::Zero {
                field: "max_key_len",
            });
        }
        if self.max_value_len > MAX_VALUE_LEN_LIMIT {
            return Err(ConfigError::TooLarge {
                field: "max_value_len",
                value: self.max_value_len,
                limit: MAX_VALUE_LEN_LIMIT,
            });
        }
        if self.max_batch_changes == 0 {
            return Err(ConfigError::Zero {
                field: "max_batch_changes",
            });
        }
        Ok(Limits {
            max_key_len: self.max_key_len,
            max_value_len: self.max_value_len,
            max_batch_changes: self.max_batch_changes,
        })
    }
}

/// A local-first replica: a redb database of collections of records.
///
/// Cheap to clone; clones share the database. Reads and writes are
/// synchronous; a write returns once it is durable.
#[derive(Clone)]
pub struct Replica {
    inner: Arc<Inner>,
}

struct Inner {
    /// The database and the write counters.
    store: Store,
    config: ReplicaConfig,
    /// The configuration's limits, checked on open.
    limits: Limits,
    /// The defined collections with their rules; a collection, once
    /// defined, never changes or goes.
    collections: RwLock<Collections>,
    /// Change events, published after each commit, built only when a
    /// [`Watch`] listens.
    events: broadcast::Sender<Arc<ChangeEvent>>,
    /// One note per commit that stored changes, for the sync engine and
    /// the server's subscriptions: they only need to wake.
    commits: broadcast::Sender<CommitNote>,
    /// The lsn of the last commit that stored changes: what the server's
    /// subscriptions wait on. A watch, so a burst of commits wakes each
    /// subscription once (they coalesce), however many there are.
    head: watch::Sender<u64>,
    /// Serializes automerge writes (read the document, change, commit).
    #[cfg(feature = "automerge")]
    automerge: Mutex<()>,
}

impl fmt::Debug for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.inner.store.id())
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Opens the replica stored at `path`, creating it if the file does not exist.
    pub fn open(path: impl AsRef<Path>, config: ReplicaConfig) -> Result<Self, OpenError> {
        let limits = config.limits()?;
        let db = Database::create(path)?;
        Self::init(db, config, limits)
    }

    /// Opens the replica stored at `path` for reading only, for tools that
    /// look inside a file (`syncline inspect`, `dump`, `verify`): nothing is
    /// ever written, not even a format upgrade, so the file stays as it
    /// was. Other read-only opens may share the file; a process that has
    /// it open for writing (a running hub) makes this fail with
    /// `OpenError::Storage` (redb's "already open"), and so does a file
    /// that was not closed cleanly (redb would have to repair it: open it
    /// for writing once). A format 1 or 2 file fails with
    /// [`OpenError::NeedsUpgrade`], a file that does not exist or holds no
    /// replica with an error too. Every write fails with
    /// `StorageError::ReadOnly`.
    pub fn open_read_only(
        path: impl AsRef<Path>,
        config: ReplicaConfig,
    ) -> Result<Self, OpenError> {
        let limits = config.limits()?;
        let db = ReadOnlyDatabase::open(path)?;
        let opened = Store::open_read_only(db, config.max_clock_drift)?;
        Self::init_opened(opened, config, limits)
    }

    /// Closes the replica: makes every commit durable (pulled batches
    /// commit without an fsync, see `SyncConfig::durable_interval`) and
    /// releases the file, so that it can be opened again, in this process
    /// or another. Every clone of this replica, and every engine, server
    /// or collection built on it, fails from then on with
    /// `StorageError::Closed`: stop engines ([`crate::SyncEngine::stop`])
    /// and shut servers down first, so that what they were doing ends
    /// cleanly. Waits for a write in progress; a read in progress on
    /// another thread delays the release of the file until it ends.
    /// Closing a closed replica does nothing.
    pub fn close(self) -> Result<(), StorageError> {
        if self.inner.store.close()? {
            tracing::debug!(replica = %self.id(), "closed replica");
        }
        Ok(())
    }

    /// Compacts the replica file at `path`, which no replica may have open
    /// (in this process or another): redb moves its pages down and returns
    /// the free space at the end to the file system. True when anything
    /// moved. Space freed inside a file is reused by later commits anyway;
    /// compact to give it back, after deleting much or after an upgrade.
    /// A file that is open fails with `OpenError::Storage` (redb's
    /// "already open").
    pub fn compact_file(path: impl AsRef<Path>) -> Result<bool, OpenError> {
        crate::store::compact_file(path.as_ref())
    }

    /// Collects the tombstones whose delete is stamped more than `horizon`
    /// before now (this replica's clock): each deleted record goes with its
    /// delete, its kept changes and its feed entry, in one durable commit;
    /// on a replica that pushes to peers, a local delete no push has
    /// settled yet stays. Returns how many records went.
    ///
    /// From then on no record comes back through a change older than the
    /// horizon: a remote change stamped below the collection mark for a
    /// record this replica does not hold refuses its batch
    /// (`ApplyError::BeyondHorizon`), and a server refuses a pull from a
    /// cursor below the last lsn collected (`RefusalCode::RESYNC_REQUIRED`,
    /// 410): that peer may have missed a delete that is gone, and must
    /// sync again from current state. Run it on a hub whose peers all sync
    /// within the horizon. (Automatic collection on a server, and an
    /// engine's automatic resync, are not built yet: see the design.)
    pub fn collect_tombstones(&self, horizon: Duration) -> Result<u64, WriteError> {
        let now = self.inner.config.time.now_millis();
        let cutoff = Stamp::new(now.saturating_sub(horizon.as_millis() as u64), 0);
        Ok(self.inner.store.collect_tombstones(cutoff)?)
    }

    /// Bootstraps the synced `collections` shared with `remote` again (see
    /// `Store::resync`): the records written again, in order.
    pub(crate) fn resync(
        &self,
        remote: ReplicaId,
        collections: &[String],
    ) -> Result<Vec<(String, Key)>, StorageError> {
        let rules: Vec<(String, Rule)> = {
            let defined = self.read_collections();
            collections
                .iter()
                .filter_map(|name| {
                    defined
                        .get(name)
                        .filter(|(c, _)| c.sync)
                        .map(|(_, rule)| (name.clone(), rule.clone()))
                })
                .collect()
        };
        let stored = self
            .inner
            .store
            .resync(&*self.inner.config.time, remote, &rules, &|| {
                self.has_listeners()
            })?;
        let again = stored.value;
        self.publish(stored.events);
        if !again.is_empty() {
            self.note_commit(CommitNote {
                lsn: stored.lsn,
                source: None,
                synced: true,
                carried: false,
            });
        }
        Ok(again)
    }

    /// Every peer this replica synced with, in id order, with its cursors
    /// and when it was last heard from.
    pub fn peers(&self) -> Result<Vec<(ReplicaId, PeerState)>, ReadError> {
        Ok(self.inner.store.peers()?)
    }

    /// Records where callers of this replica's server pulled from (the
    /// server, from memory, every `collect_every`).
    pub(crate) fn record_served(
        &self,
        served: &[(ReplicaId, crate::ServedState)],
    ) -> Result<(), StorageError> {
        self.inner.store.record_served(served)
    }

    /// The collection marks: the stamp below which this replica collected
    /// tombstones, and the greatest lsn a collection removed (zeros when it
    /// never collected).
    pub fn collected(&self) -> (Stamp, u64) {
        self.inner.store.collected()
    }

    /// What the file holds, counted: per collection, live records,
    /// tombstones, conflicts, changes kept for merge and changes kept only
    /// as history; feed entries and markers; every table's entries and
    /// bytes (stored, redb's metadata, unused); and the peers with their
    /// cursors and last contact. It reads the whole file in one snapshot:
    /// an operator's call, not one for every request.
    pub fn storage_stats(&self) -> Result<crate::StorageStats, ReadError> {
        Ok(self.inner.store.storage_stats()?)
    }

    /// Recomputes every record from the changes it keeps and checks the
    /// feed against the records, in one snapshot; writes nothing.
    ///
    /// For each record: its kept changes that travel (the row's winner and
    /// the log's entries kept for merge) are merged again with the
    /// collection's rule, and the result compared with the stored state
    /// (version, value, field winners, newest delete, `seen`) and the
    /// conflicts listed; the row's count of log entries is compared with
    /// the log. The feed: every record has exactly one entry, at its row's
    /// lsn; every entry names a record whose row points back at it; no lsn
    /// is past the last one; each group's last entry carries its shape and
    /// counts its live entries right. Log entries whose record is gone,
    /// records of undefined collections and bytes that do not decode are
    /// reported too.
    ///
    /// A record-level row is its winning change: a value altered in place
    /// into another well-formed value cannot be told from a real one (no
    /// second copy exists); field-level and automerge rows are recomputed
    /// from the log, so theirs can. It reads the whole file: an operator's
    /// call. Fails only when the file cannot be read; what is wrong inside
    /// it is the report's ([`VerifyReport::differences`]).
    pub fn verify(&self) -> Result<VerifyReport, ReadError> {
        let rules: std::collections::HashMap<String, Rule> = self
            .read_collections()
            .iter()
            .map(|(name, (_, rule))| (name.clone(), rule.clone()))
            .collect();
        Ok(self.inner.store.verify(&rules)?)
    }

    /// Opens a replica held in memory only (redb's in-memory backend): for
    /// tests, simulations and benchmarks.
    pub fn in_memory(config: ReplicaConfig) -> Result<Self, OpenError> {
        let limits = config.limits()?;
        let db = Database::builder().create_with_backend(InMemoryBackend::new())?;
        Self::init(db, config, limits)
    }

    /// Opens the store in `db` and finds each stored collection's rule.
    fn init(db: Database, config: ReplicaConfig, limits: Limits) -> Result<Self, OpenError> {
        let opened = Store::open(
            db,
            || config.replica_id.unwrap_or_else(ReplicaId::random),
            config.max_clock_drift,
        )?;
        Self::init_opened(opened, config, limits)
    }

    /// Finds each stored collection's rule and builds the handle.
    fn init_opened(
        opened: Opened,
        config: ReplicaConfig,
        limits: Limits,
    ) -> Result<Self, OpenError> {
        let mut collections = Collections::new();
        for (name, cfg) in opened.collections {
            let rule = Rule::for_policy(&cfg.policy, &config.resolvers).map_err(|source| {
                ConfigError::Policy {
                    collection: name.clone(),
                    source,
                }
            })?;
            collections.insert(name, (cfg, rule));
        }
        let (events, _) = broadcast::channel(config.watch_capacity.max(1));
        let (commits, _) = broadcast::channel(COMMIT_NOTES);
        let head = watch::Sender::new(opened.store.lock().lsn);
        Ok(Self {
            inner: Arc::new(Inner {
                store: opened.store,
                limits,
                collections: RwLock::new(collections),
                events,
                commits,
                head,
                config,
                #[cfg(feature = "automerge")]
                automerge: Mutex::new(()),
            }),
        })
    }

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.inner.store.id()
    }

    /// The configuration the replica was opened with.
    pub fn config(&self) -> &ReplicaConfig {
        &self.inner.config
    }

    /// The clock's high-water mark: the greatest stamp issued or received.
    pub fn clock(&self) -> Stamp {
        self.inner.store.lock().hlc.last()
    }

    /// The lsn of the last change in the feed (0 when empty).
    pub fn last_lsn(&self) -> u64 {
        self.inner.store.lock().lsn
    }

    /// Defines a collection, or opens it if it exists with the same
    /// configuration. Its policy and sync flag never change once defined;
    /// its [`crate::History`] setting may (it is local to this replica), and
    /// applies from each record's next write.
    pub fn define_collection(
        &self,
        name: &str,
        config: CollectionConfig,
    ) -> Result<Collection, WriteError> {
        if name.is_empty() {
            return Err(CollectionNameError::Empty.into());
        }
        if name.len() > MAX_COLLECTION_NAME_LEN {
            return Err(CollectionNameError::TooLong {
                len: name.len(),
                max: MAX_COLLECTION_NAME_LEN,
            }
            .into());
        }
        // Held across the check, the commit and the insert, so that two
        // definitions of one name cannot both pass the check, and the map
        // always says what the table says. Nothing takes this lock while
        // holding the store's write lock, so the order cannot deadlock.
        let mut collections = self
            .inner
            .collections
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((existing, rule)) = collections.get(name) {
            if *existing == config {
                return Ok(Collection::new(self.clone(), name.to_string()));
            }
            if existing.policy != config.policy || existing.sync != config.sync {
                return Err(WriteError::CollectionMismatch(name.to_string()));
            }
            // Only the history setting differs: it is local and may change;
            // it applies from each record's next write.
            let rule = rule.clone();
            self.inner.store.define_collection(name, &config)?;
            collections.insert(name.to_string(), (config, rule));
            return Ok(Collection::new(self.clone(), name.to_string()));
        }
        let rule = Rule::for_policy(&config.policy, &self.inner.config.resolvers)?;
        self.inner.store.define_collection(name, &config)?;
        collections.insert(name.to_string(), (config, rule));
        drop(collections);
        Ok(Collection::new(self.clone(), name.to_string()))
    }

    /// A handle on a defined collection.
    pub fn collection(&self, name: &str) -> Result<Collection, ReadError> {
        match self.collection_config(name) {
            Some(_) => Ok(Collection::new(self.clone(), name.to_string())),
            None => Err(ReadError::UnknownCollection(name.to_string())),
        }
    }

    /// The defined collections and their configurations, sorted by name.
    pub fn collections(&self) -> Vec<(String, CollectionConfig)> {
        let map = self
            .inner
            .collections
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = map
            .iter()
            .map(|(k, (c, _))| (k.clone(), c.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Starts a multi-record transaction; nothing is written until
    /// [`Transaction::commit`], which writes all of it or none.
    pub fn transaction(&self) -> Transaction {
        Transaction::new(self.clone())
    }

    /// A stream of every change committed from now on, local and remote.
    pub fn watch(&self) -> Watch {
        Watch::new(self.subscribe_events(), None)
    }

    /// Merges changes made elsewhere, all in one commit, as one atomic group.
    ///
    /// The batch is validated first; any invalid change (a stamp too far
    /// ahead, an unknown or local-only collection, a bad key, an oversized
    /// value, a forged duplicate) refuses the whole batch: nothing is stored
    /// and the clock does not move. Changes already stored are skipped, so a
    /// replayed batch is harmless.
    pub fn apply_remote(&self, changes: &[Change]) -> Result<ApplyReport, ApplyError> {
        self.apply_remote_from(None, changes)
    }

    /// [`Replica::apply_remote`], recording the peer the batch came from so
    /// that the feed can leave those changes out when serving that peer.
    pub fn apply_remote_from(
        &self,
        source: Option<ReplicaId>,
        changes: &[Change],
    ) -> Result<ApplyReport, ApplyError> {
        self.apply_batch(source, changes, None, CommitDurability::Immediate)
    }

    /// Checks remote changes as [`Replica::apply_remote`] would, without
    /// storing anything: a server judges each pushed group with it. Stamps
    /// are not checked against the drift bound here: a stamp too far ahead
    /// refuses the whole push for now (the sender retries once time caught
    /// up), never one group for good.
    pub(crate) fn check_remote(&self, changes: &[Change]) -> Result<(), ApplyError> {
        check_remote(&self.inner.limits, &self.read_collections(), changes).map(drop)
    }

    /// Applies a remote batch from `source` and, in the same commit, moves
    /// the pull cursor kept for it to `pulled`: a crash never skips or loses
    /// changes. Only a pulled batch, which can be fetched again, may commit
    /// with [`CommitDurability::Deferred`].
    pub(crate) fn apply_batch(
        &self,
        source: Option<ReplicaId>,
        changes: &[Change],
        pulled: Option<Cursor>,
        durability: CommitDurability,
    ) -> Result<ApplyReport, ApplyError> {
        let rules = check_remote(&self.inner.limits, &self.read_collections(), changes)?;
        let received = Received {
            source,
            pulled,
            clear_staged: None,
            durability,
        };
        let stored = self.inner.store.apply_remote(
            &*self.inner.config.time,
            received,
            changes,
            rules,
            &|| self.has_listeners(),
        )?;
        self.publish_remote(stored.events, &stored.value, source);
        Ok(stored.value)
    }

    /// Stages part `index` of the group `transfer` that `peer` sends in
    /// parts (`role`: pushed to this replica, or pulled by it), if it is the
    /// next one; returns how many parts are staged.
    pub(crate) fn stage_part(
        &self,
        role: u8,
        peer: ReplicaId,
        transfer: u64,
        index: u32,
        changes: &[Change],
    ) -> Result<u32, StorageError> {
        self.inner.store.stage(role, peer, transfer, index, changes)
    }

    /// The staged parts of (`role`, `peer`): their transfer and how many.
    pub(crate) fn staged_progress(
        &self,
        role: u8,
        peer: ReplicaId,
    ) -> Result<Option<(u64, u32)>, StorageError> {
        self.inner.store.staged_progress(role, peer)
    }

    /// A part of the group after `after`, as `peer` should see it, that
    /// starts at its change `offset`: for groups too large for one batch.
    /// Durable first, as [`Replica::feed_for`].
    pub(crate) fn group_part(
        &self,
        peer: Option<ReplicaId>,
        after: u64,
        wanted: &dyn Fn(&str, &Key) -> bool,
        offset: u32,
        max_bytes: usize,
    ) -> Result<Option<GroupPart>, StorageError> {
        self.inner.store.ensure_durable()?;
        self.inner
            .store
            .group_part(peer, after, wanted, offset, max_bytes)
    }

    /// Drops every staged part of (`role`, `peer`).
    pub(crate) fn clear_staged(&self, role: u8, peer: ReplicaId) -> Result<(), StorageError> {
        self.inner.store.clear_staged(role, peer)
    }

    /// The changes staged so far of the group `transfer` from (`role`, `peer`).
    pub(crate) fn staged_changes(
        &self,
        role: u8,
        peer: ReplicaId,
        transfer: u64,
    ) -> Result<Vec<Change>, StorageError> {
        self.inner.store.staged_changes(role, peer, transfer)
    }

    /// Applies a group sent in parts: the staged ones and `last`, in one
    /// commit that also removes the staged parts and, when `pulled` is
    /// given, moves the pull cursor. Durability as for
    /// [`Replica::apply_batch`].
    pub(crate) fn apply_staged(
        &self,
        role: u8,
        peer: ReplicaId,
        transfer: u64,
        last: &[Change],
        pulled: Option<Cursor>,
        durability: CommitDurability,
    ) -> Result<ApplyReport, ApplyError> {
        let mut changes = self.staged_changes(role, peer, transfer)?;
        changes.extend_from_slice(last);
        let rules = check_remote(&self.inner.limits, &self.read_collections(), &changes)?;
        let received = Received {
            source: Some(peer),
            pulled,
            clear_staged: Some(role),
            durability,
        };
        let stored = self.inner.store.apply_remote(
            &*self.inner.config.time,
            received,
            &changes,
            rules,
            &|| self.has_listeners(),
        )?;
        self.publish_remote(stored.events, &stored.value, Some(peer));
        Ok(stored.value)
    }

    /// Reads up to `limit` feed entries after `lsn`, never splitting an atomic
    /// group: the result may run past `limit` to the end of the group it is in.
    ///
    /// The last entries may come from pulled batches not yet on disk (see
    /// [`crate::SyncConfig::durable_interval`]): a crash can still give
    /// their lsns to other changes. [`crate::SyncServer`] flushes them
    /// before it serves the feed.
    pub fn feed_after(&self, lsn: u64, limit: usize) -> Result<Vec<FeedEntry>, ReadError> {
        Ok(self.inner.store.feed_scan(lsn, limit, usize::MAX)?.entries)
    }

    /// The cursors kept for `peer` (zeros if it was never synced).
    pub fn peer_state(&self, peer: ReplicaId) -> Result<PeerState, ReadError> {
        Ok(self.inner.store.peer_state(peer)?)
    }

    /// Records that `peer` acknowledged holding this replica's feed through
    /// `pushed`, and, in the same commit, the groups it refused (of the
    /// collections in `wanted`).
    pub(crate) fn record_pushed(
        &self,
        peer: ReplicaId,
        pushed: u64,
        now_ms: u64,
        refused: &[Refused],
        wanted: &dyn Fn(&str, &Key) -> bool,
    ) -> Result<(), StorageError> {
        self.inner
            .store
            .record_pushed(peer, pushed, now_ms, refused, wanted)
    }

    /// How many local changes `peer` has not acknowledged and its next push
    /// would carry: changes of synced collections, after its push cursor,
    /// not made by it nor received from it.
    pub(crate) fn pending_for(&self, peer: ReplicaId) -> Result<u64, ReadError> {
        let pushed = self.peer_state(peer)?.pushed;
        let collections = self.read_collections();
        let synced = |name: &str, _: &Key| collections.get(name).is_some_and(|(c, _)| c.sync);
        Ok(self.inner.store.pending_for(peer, pushed, &synced)?)
    }

    /// The feed after `after` as `peer` should see it: at most about `limit`
    /// changes and `max_bytes` (whole groups), leaving out what came from `peer` and
    /// collections not in `wanted`.
    ///
    /// Served entries are durable: deferred commits are flushed first, so
    /// that a crash can never give a served lsn to another change.
    pub(crate) fn feed_for(
        &self,
        peer: Option<ReplicaId>,
        after: u64,
        limit: usize,
        max_bytes: usize,
        wanted: &dyn Fn(&str, &Key) -> bool,
    ) -> Result<FeedSlice, ReadError> {
        self.inner.store.ensure_durable()?;
        Ok(self
            .inner
            .store
            .feed_for(peer, after, limit, max_bytes, wanted)?)
    }

    /// The feed after `after` restricted to `scope`, as `peer` should see
    /// it (see `Store::scope_slice`). Durable first, as
    /// [`Replica::feed_for`].
    pub(crate) fn scope_for(
        &self,
        peer: Option<ReplicaId>,
        scope: &Scope,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<FeedSlice, StorageError> {
        self.inner.store.ensure_durable()?;
        self.inner
            .store
            .scope_slice(peer, scope, after, limit, max_bytes)
    }

    /// The pull cursor of `scope` kept for `peer` (0: never pulled).
    pub(crate) fn scope_cursor(&self, peer: ReplicaId, scope: &Scope) -> Result<u64, StorageError> {
        self.inner.store.scope_cursor(peer, scope)
    }

    /// Drops `scope` for `peer`: the records in it that no scope of `keep`
    /// covers, locally, and its cursor, if the scope was pulled before.
    /// Returns how many records went.
    pub(crate) fn drop_scope(
        &self,
        peer: ReplicaId,
        scope: &Scope,
        keep: &[Scope],
    ) -> Result<u64, StorageError> {
        self.inner.store.drop_scope(peer, scope, keep)
    }

    /// Drops every scope pulled from `peer` that `keep` does not list (see
    /// [`Replica::drop_scope`]): the scopes dropped, with how many records
    /// each took.
    pub(crate) fn prune_scopes(
        &self,
        peer: ReplicaId,
        keep: &[Scope],
    ) -> Result<Vec<(Scope, u64)>, StorageError> {
        let stale: Vec<Scope> = self
            .inner
            .store
            .scope_cursors(peer)?
            .into_iter()
            .map(|(scope, _)| scope)
            .filter(|s| !keep.contains(s))
            .collect();
        let mut out = Vec::new();
        for scope in stale {
            let dropped = self.inner.store.drop_scope(peer, &scope, keep)?;
            out.push((scope, dropped));
        }
        Ok(out)
    }

    /// How far this replica has pulled each of its remotes, as of which of
    /// its lsns: (remote, pulled through, at).
    pub(crate) fn relayed(&self) -> Result<Vec<(ReplicaId, u64, u64)>, StorageError> {
        self.inner.store.relayed()
    }

    /// Takes the pull cursors of other remotes that `via`'s relayed
    /// cursors prove (for `scopes`' cursors when the engine syncs scopes).
    /// Returns how many moved.
    pub(crate) fn adopt_relayed(
        &self,
        via: ReplicaId,
        relayed: &[(ReplicaId, u64, u64)],
        scopes: &[Scope],
    ) -> Result<usize, StorageError> {
        self.inner.store.adopt_relayed(via, relayed, scopes)
    }

    /// Whether the feed moved inside any of `scopes` between `after` and
    /// `through` (what a scoped subscription checks before it wakes its
    /// caller). Reads at most a few thousand feed entries, looking at their
    /// record keys only; past that, or on a storage error, it answers yes
    /// (a pull that finds nothing costs less than a missed change).
    pub(crate) fn scopes_moved(&self, scopes: &[Scope], after: u64, through: u64) -> bool {
        self.inner
            .store
            .scopes_moved(scopes, after, through)
            .unwrap_or(true)
    }

    /// The lsn just before the feed group that ends at `end`, if one does.
    pub(crate) fn before_group(&self, end: u64) -> Result<Option<u64>, StorageError> {
        self.inner.store.before_group(end)
    }

    // ---- crate-internal plumbing used by collections and transactions ----

    /// A defined collection's configuration.
    pub(crate) fn collection_config(&self, name: &str) -> Option<CollectionConfig> {
        self.read_collections().get(name).map(|(c, _)| c.clone())
    }

    /// A defined collection's configuration and merge rule.
    pub(crate) fn collection_rule(&self, name: &str) -> Option<(CollectionConfig, Rule)> {
        self.read_collections().get(name).cloned()
    }

    /// The defined collections, read-locked.
    pub(crate) fn read_collections(&self) -> RwLockReadGuard<'_, Collections> {
        self.inner
            .collections
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The store.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The limits every change must keep.
    pub(crate) fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Serializes automerge writes on this replica.
    #[cfg(feature = "automerge")]
    pub(crate) fn automerge_lock(&self) -> MutexGuard<'_, ()> {
        self.inner
            .automerge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Physical time now, from the configured time source.
    pub(crate) fn now_millis(&self) -> u64 {
        self.inner.config.time.now_millis()
    }

    /// Publishes the events of a commit, after it.
    pub(crate) fn publish(&self, events: Vec<ChangeEvent>) {
        for event in events {
            // No receivers is fine: nobody is watching.
            let _ = self.inner.events.send(Arc::new(event));
        }
    }

    /// Tells the commit listeners that a commit stored changes, after it.
    pub(crate) fn note_commit(&self, note: CommitNote) {
        // No receivers is fine: no engine or subscription runs.
        let _ = self.inner.commits.send(note);
        self.inner.head.send_if_modified(|head| {
            let moved = note.lsn > *head;
            *head = (*head).max(note.lsn);
            moved
        });
    }

    /// The lsn of the last commit that stored changes, as a watch: a
    /// waiter wakes once however many commits happened since it looked.
    pub(crate) fn head(&self) -> watch::Receiver<u64> {
        self.inner.head.subscribe()
    }

    /// A receiver of a note per commit that stores changes, from now on.
    pub(crate) fn commit_notes(&self) -> broadcast::Receiver<CommitNote> {
        self.inner.commits.subscribe()
    }

    /// Makes every commit so far durable (one empty durable commit), when
    /// deferred commits are not yet on disk.
    pub(crate) fn ensure_durable(&self) -> Result<(), StorageError> {
        self.inner.store.ensure_durable()
    }

    /// Publishes a remote batch's events and its commit note.
    fn publish_remote(
        &self,
        events: Vec<ChangeEvent>,
        report: &ApplyReport,
        source: Option<ReplicaId>,
    ) {
        self.publish(events);
        if report.applied > 0 {
            self.note_commit(CommitNote {
                lsn: report.last_lsn,
                source,
                // Remote changes are only ever of synced collections.
                synced: true,
                carried: report.carried > 0,
            });
        }
    }

    /// Whether anyone listens for change events: commits skip building them
    /// when nobody does. Only [`Watch`]es count: the sync engine and the
    /// server's subscriptions hear of commits through [`CommitNote`]s. The store asks under the write lock, which
    /// subscribing takes too, so a commit either sees a new listener or is
    /// already visible to it (and events are published only after the
    /// commit).
    pub(crate) fn has_listeners(&self) -> bool {
        self.inner.events.receiver_count() > 0
    }

    /// A receiver of every change event from now on.
    pub(crate) fn subscribe_events(&self) -> broadcast::Receiver<Arc<ChangeEvent>> {
        let _guard = self.inner.store.lock();
        self.inner.events.subscribe()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An in-memory replica with id `[id; 16]` and the `todos` collection.
    pub(crate) fn replica(id: u8) -> Replica {
        let r = Replica::in_memory(ReplicaConfig {
            replica_id: Some(ReplicaId::from_bytes([id; 16])),
            ..ReplicaConfig::default()
        })
        .unwrap();
        r.define_collection("todos", CollectionConfig::default())
            .unwrap();
        r
    }

    /// The last lsn and the last durable one.
    fn lsns(r: &Replica) -> (u64, u64) {
        let state = r.store().lock();
        (state.lsn, state.durable)
    }

    #[test]
    fn deferred_commits_are_flushed_before_the_feed_is_served() {
        let a = replica(1);
        let b = replica(2);
        let todos = a.collection("todos").unwrap();
        let pull = |from: u64| -> Vec<Change> {
            let feed = a.feed_after(from, usize::MAX).unwrap();
            feed.into_iter().map(|e| e.change).collect()
        };
        todos.put("one", 1i64).unwrap();
        b.apply_batch(
            Some(a.id()),
            &pull(0),
            Some(Cursor::whole(1)),
            CommitDurability::Deferred,
        )
        .unwrap();
        assert_eq!(lsns(&b), (1, 0), "a deferred commit leaves the durable lsn");
        // Serving the feed to a third replica flushes first.
        let c = ReplicaId::from_bytes([3; 16]);
        let slice = b
            .feed_for(Some(c), 0, 100, usize::MAX, &|_, _| true)
            .unwrap();
        assert_eq!(slice.changes.len(), 1);
        assert_eq!(lsns(&b), (1, 1));
        // A durable commit of any kind makes the deferred ones before it durable.
        todos.put("two", 2i64).unwrap();
        b.apply_batch(
            Some(a.id()),
            &pull(1),
            Some(Cursor::whole(2)),
            CommitDurability::Deferred,
        )
        .unwrap();
        assert_eq!(lsns(&b), (2, 1));
        b.collection("todos").unwrap().put("mine", 3i64).unwrap();
        assert_eq!(lsns(&b), (3, 3));
        // Nothing deferred: serving commits nothing.
        b.feed_for(Some(c), 0, 100, usize::MAX, &|_, _| true)
            .unwrap();
        assert_eq!(lsns(&b), (3, 3));
    }

    #[test]
    fn commits_send_one_note_each_and_no_events_without_a_watch() {
        let a = replica(1);
        a.define_collection("drafts", CollectionConfig::local_only())
            .unwrap();
        let mut notes = a.commit_notes();
        let mut txn = a.transaction();
        txn.put("todos", "x", 1i64).put("todos", "y", 2i64);
        txn.commit().unwrap();
        a.collection("drafts").unwrap().put("d", 3i64).unwrap();
        assert!(!a.has_listeners(), "commit notes are not change events");
        let remote = replica(2);
        remote.collection("todos").unwrap().put("z", 4i64).unwrap();
        let changes: Vec<Change> = remote
            .feed_after(0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| e.change)
            .collect();
        a.apply_remote_from(Some(remote.id()), &changes).unwrap();
        // Already held: stores nothing, no note.
        a.apply_remote_from(Some(remote.id()), &changes).unwrap();
        let got: Vec<CommitNote> = std::iter::from_fn(|| notes.try_recv().ok()).collect();
        assert_eq!(
            got,
            [
                CommitNote {
                    lsn: 2,
                    source: None,
                    synced: true,
                    carried: false,
                },
                CommitNote {
                    lsn: 3,
                    source: None,
                    synced: false,
                    carried: false,
                },
                CommitNote {
                    lsn: 4,
                    source: Some(remote.id()),
                    synced: true,
                    carried: false,
                },
            ]
        );
    }
}
