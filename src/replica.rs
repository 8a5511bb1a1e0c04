//! A replica: one redb database, its clock, its collections and its feed.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use redb::backends::InMemoryBackend;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableHandle, WriteTransaction};
use tokio::sync::broadcast;

use crate::clock::{Hlc, Stamp, SystemTimeSource, TimeSource};
use crate::codec;
use crate::collection::Collection;
use crate::error::{ApplyError, OpenError, ReadError, StorageError, WriteError};
use crate::merge::{Resolver, Rule};
use crate::model::{Change, CollectionConfig, ReplicaId};
use crate::tables::{
    self, CHANGES, COLLECTIONS, CONFLICTS, ChangeBody, FEED, FORMAT_VERSION, FeedGroup, META,
    PEERS, RECORDS,
};
use crate::txn::Transaction;
use crate::watch::{ChangeEvent, Watch};
use crate::writer::{Writer, check_key, check_op_for_policy};

/// The longest collection name, in bytes.
pub const MAX_COLLECTION_NAME_LEN: usize = 255;
/// The largest `max_value_len` a configuration may set: one encoded value
/// must fit in a peer frame.
pub const MAX_VALUE_LEN_LIMIT: usize = 16 << 20;

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

    fn validate(&self) -> Result<(), OpenError> {
        if self.max_key_len == 0 {
            return Err(OpenError::Config("max_key_len must be at least 1".into()));
        }
        if self.max_value_len > MAX_VALUE_LEN_LIMIT {
            return Err(OpenError::Config(format!(
                "max_value_len {} exceeds the limit of {MAX_VALUE_LEN_LIMIT}",
                self.max_value_len
            )));
        }
        if self.max_batch_changes == 0 {
            return Err(OpenError::Config(
                "max_batch_changes must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What [`Replica::apply_remote`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Changes stored for the first time.
    pub applied: usize,
    /// Changes already stored, skipped.
    pub duplicates: usize,
    /// Conflicts recorded: concurrent changes that lost.
    pub conflicts: usize,
    /// The lsn of the last change stored, or the previous last lsn if none was.
    pub last_lsn: u64,
}

/// One entry of a replica's feed.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEntry {
    /// The local sequence number.
    pub lsn: u64,
    /// The change.
    pub change: Change,
    /// The peer it came from, `None` when made on this replica.
    pub source: Option<ReplicaId>,
    /// Whether this is the last change of an atomic group.
    pub group_end: bool,
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
    db: Database,
    id: ReplicaId,
    config: ReplicaConfig,
    /// Held for the whole of every write transaction: redb admits one writer
    /// at a time anyway, and the counters must move with the commit.
    write: Mutex<WriteState>,
    collections: RwLock<HashMap<String, (CollectionConfig, Rule)>>,
    events: broadcast::Sender<Arc<ChangeEvent>>,
    /// Serializes automerge writes (read the document, change, commit).
    #[cfg(feature = "automerge")]
    automerge: Mutex<()>,
}

/// Counters that advance with each commit; restored from the database on open.
#[derive(Clone, Debug)]
pub(crate) struct WriteState {
    pub(crate) hlc: Hlc,
    /// The last sequence number given to one of this replica's own changes.
    pub(crate) seq: u64,
    /// The last lsn in the feed.
    pub(crate) lsn: u64,
}

impl fmt::Debug for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Opens the replica stored at `path`, creating it if the file does not exist.
    pub fn open(path: impl AsRef<Path>, config: ReplicaConfig) -> Result<Self, OpenError> {
        config.validate()?;
        let db = Database::create(path)?;
        Self::init(db, config)
    }

    /// Opens a replica held in memory only (redb's in-memory backend): for
    /// tests, simulations and benchmarks.
    pub fn in_memory(config: ReplicaConfig) -> Result<Self, OpenError> {
        config.validate()?;
        let db = Database::builder().create_with_backend(InMemoryBackend::new())?;
        Self::init(db, config)
    }

    fn init(db: Database, config: ReplicaConfig) -> Result<Self, OpenError> {
        let read = db.begin_read().map_err(StorageError::from)?;
        let existing: Vec<String> = read
            .list_tables()
            .map_err(StorageError::from)?
            .map(|t| t.name().to_string())
            .collect();
        drop(read);
        if !existing.iter().any(|n| n == META.name()) {
            if !existing.is_empty() {
                return Err(OpenError::Foreign(format!(
                    "the file holds tables {existing:?} but no {:?}",
                    META.name()
                )));
            }
            Self::create_tables(&db, config.replica_id.unwrap_or_else(ReplicaId::random))?;
        }

        let read = db.begin_read().map_err(StorageError::from)?;
        let meta = read.open_table(META).map_err(StorageError::from)?;
        let format = match meta.get("format").map_err(StorageError::from)? {
            Some(g) => <[u8; 4]>::try_from(g.value()).map(u32::from_le_bytes).ok(),
            None => None,
        };
        match format {
            Some(FORMAT_VERSION) => {}
            Some(1) => {
                drop(meta);
                drop(read);
                crate::upgrade::from_1(&db)?;
                return Self::init(db, config);
            }
            Some(found) => {
                return Err(OpenError::UnsupportedFormat {
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            None => return Err(OpenError::Foreign("no readable format version".into())),
        }
        let id = match meta.get("replica").map_err(StorageError::from)? {
            Some(g) => <[u8; 16]>::try_from(g.value())
                .map(ReplicaId::from_bytes)
                .map_err(|_| OpenError::Foreign("malformed replica id".into()))?,
            None => return Err(OpenError::Foreign("no replica id".into())),
        };
        // The counters as of the last commit that stored changes live in its
        // feed group; meta holds them as of creation or the format upgrade.
        let mut clock = tables::meta_u64(&meta, "clock")?.unwrap_or(0);
        let mut seq = tables::meta_u64(&meta, "seq")?.unwrap_or(0);
        let feed = read.open_table(FEED).map_err(StorageError::from)?;
        let lsn = match feed.last().map_err(StorageError::from)? {
            Some((last, bytes)) => {
                let group: FeedGroup = tables::decode(FEED.name(), bytes.value())?;
                clock = clock.max(group.clock.as_u64());
                seq = seq.max(group.seq);
                last.value()
            }
            None => 0,
        };
        drop(feed);
        let mut collections = HashMap::new();
        for entry in read
            .open_table(COLLECTIONS)
            .map_err(StorageError::from)?
            .iter()
            .map_err(StorageError::from)?
        {
            let (name, bytes) = entry.map_err(StorageError::from)?;
            let cfg: CollectionConfig = tables::decode(COLLECTIONS.name(), bytes.value())?;
            let rule = Rule::for_policy(&cfg.policy, &config.resolvers)
                .map_err(|e| OpenError::Config(format!("collection {:?}: {e}", name.value())))?;
            collections.insert(name.value().to_string(), (cfg, rule));
        }
        drop(meta);
        drop(read);

        let hlc = Hlc::new(Stamp::from_u64(clock), config.max_clock_drift);
        let (events, _) = broadcast::channel(config.watch_capacity.max(1));
        tracing::debug!(replica = %id, lsn, seq, "opened replica");
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                id,
                write: Mutex::new(WriteState { hlc, seq, lsn }),
                collections: RwLock::new(collections),
                events,
                config,
                #[cfg(feature = "automerge")]
                automerge: Mutex::new(()),
            }),
        })
    }

    fn create_tables(db: &Database, id: ReplicaId) -> Result<(), StorageError> {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert("format", FORMAT_VERSION.to_le_bytes().as_slice())?;
            meta.insert("replica", id.as_bytes().as_slice())?;
            meta.insert("clock", 0u64.to_le_bytes().as_slice())?;
            meta.insert("seq", 0u64.to_le_bytes().as_slice())?;
            txn.open_table(COLLECTIONS)?;
            txn.open_table(CHANGES)?;
            txn.open_table(RECORDS)?;
            txn.open_table(FEED)?;
            txn.open_table(PEERS)?;
            txn.open_table(CONFLICTS)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.inner.id
    }

    /// The configuration the replica was opened with.
    pub fn config(&self) -> &ReplicaConfig {
        &self.inner.config
    }

    /// The clock's high-water mark: the greatest stamp issued or received.
    pub fn clock(&self) -> Stamp {
        self.lock_write().hlc.last()
    }

    /// The lsn of the last change in the feed (0 when empty).
    pub fn last_lsn(&self) -> u64 {
        self.lock_write().lsn
    }

    /// Defines a collection, or opens it if it exists with the same
    /// configuration. A collection's configuration never changes once defined.
    pub fn define_collection(
        &self,
        name: &str,
        config: CollectionConfig,
    ) -> Result<Collection, WriteError> {
        if name.is_empty() || name.len() > MAX_COLLECTION_NAME_LEN {
            return Err(WriteError::InvalidCollectionName(format!(
                "collection names are 1 to {MAX_COLLECTION_NAME_LEN} bytes, got {}",
                name.len()
            )));
        }
        if let Some(existing) = self.collection_config(name) {
            return if existing == config {
                Ok(Collection::new(self.clone(), name.to_string()))
            } else {
                Err(WriteError::CollectionMismatch(name.to_string()))
            };
        }
        let rule = Rule::for_policy(&config.policy, &self.inner.config.resolvers)
            .map_err(WriteError::Unsupported)?;
        let _guard = self.lock_write();
        let txn = self.begin_write().map_err(WriteError::Storage)?;
        txn.open_table(COLLECTIONS)
            .map_err(StorageError::from)?
            .insert(name, codec::encode(&config).as_slice())
            .map_err(StorageError::from)?;
        txn.commit().map_err(StorageError::from)?;
        self.inner
            .collections
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), (config, rule));
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
        self.apply_batch(source, changes, None)
    }

    /// Applies a remote batch from `source` and, in the same commit, moves
    /// the pull cursor kept for it to `pulled`: a crash never skips or loses
    /// changes.
    pub(crate) fn apply_batch(
        &self,
        source: Option<ReplicaId>,
        changes: &[Change],
        pulled: Option<u64>,
    ) -> Result<ApplyReport, ApplyError> {
        let max = self.inner.config.max_batch_changes;
        if changes.len() > max {
            return Err(ApplyError::BatchTooLarge {
                len: changes.len(),
                max,
            });
        }
        let policies = self.validate_remote(changes)?;

        let mut guard = self.lock_write();
        let now = self.inner.config.time.now_millis();
        for change in changes {
            guard.hlc.check(change.stamp, now)?;
        }
        let mut state = guard.clone();
        let txn = self.begin_write()?;
        let mut report = ApplyReport::default();
        let mut events = Vec::new();
        let listened = self.has_listeners();
        {
            let mut w = Writer::open(&txn)?;
            for (change, rule) in changes.iter().zip(&policies) {
                match w.store(&mut state, rule, change)? {
                    Some((lsn, conflicts)) => {
                        report.applied += 1;
                        report.conflicts += conflicts;
                        if listened {
                            events.push(ChangeEvent {
                                lsn,
                                change: change.clone(),
                                source,
                            });
                        }
                    }
                    None => report.duplicates += 1,
                }
                state.hlc.observe(change.stamp);
                if change.id.origin == self.inner.id {
                    // Our own change coming back (say, after a restore from an
                    // old backup): never reuse its sequence number.
                    state.seq = state.seq.max(change.id.seq);
                }
            }
            // The changes stored, duplicates left out, are one group.
            w.finish(&state, source)?;
        }
        if let Some(peer) = source {
            let (before, after) = (guard.lsn, state.lsn);
            crate::peers::update(&txn, peer, |p| {
                if let Some(pulled) = pulled {
                    p.pulled = p.pulled.max(pulled);
                }
                // Everything this batch added came from `peer` and never needs
                // pushing back: if nothing was pending for it before, nothing is now.
                if p.pushed >= before {
                    p.pushed = after;
                }
            })?;
        }
        txn.commit().map_err(StorageError::from)?;
        *guard = state;
        report.last_lsn = guard.lsn;
        drop(guard);
        self.publish(events);
        Ok(report)
    }

    fn validate_remote(&self, changes: &[Change]) -> Result<Vec<Rule>, ApplyError> {
        let cfg = &self.inner.config;
        let collections = self
            .inner
            .collections
            .read()
            .unwrap_or_else(|p| p.into_inner());
        changes
            .iter()
            .map(|change| {
                let invalid = |reason: String| ApplyError::InvalidChange {
                    id: change.id,
                    reason,
                };
                let Some((coll, rule)) = collections.get(&change.collection) else {
                    return Err(ApplyError::UnknownCollection {
                        id: change.id,
                        collection: change.collection.clone(),
                    });
                };
                if !coll.sync {
                    return Err(ApplyError::LocalOnlyCollection {
                        id: change.id,
                        collection: change.collection.clone(),
                    });
                }
                if change.id.seq == 0 {
                    return Err(invalid("sequence numbers start at 1".into()));
                }
                if change.base > change.stamp {
                    return Err(invalid("made on top of a later change".into()));
                }
                check_key(&change.key, cfg.max_key_len).map_err(|e| invalid(e.to_string()))?;
                crate::writer::check_op_depth(&change.op).map_err(|e| invalid(e.to_string()))?;
                let len = crate::writer::encoded_len(&change.op);
                if len > cfg.max_value_len {
                    return Err(invalid(format!(
                        "value of {len} bytes exceeds the maximum of {}",
                        cfg.max_value_len
                    )));
                }
                check_op_for_policy(&change.op, &coll.policy).map_err(invalid)?;
                Ok(rule.clone())
            })
            .collect()
    }

    /// Reads up to `limit` feed entries after `lsn`, never splitting an atomic
    /// group: the result may run past `limit` to the end of the group it is in.
    pub fn feed_after(&self, lsn: u64, limit: usize) -> Result<Vec<FeedEntry>, ReadError> {
        self.feed_scan(lsn, limit, usize::MAX)
    }

    /// [`Replica::feed_after`], also stopping at the end of the group in which
    /// the encoded changes pass about `max_bytes` (at least one group).
    pub(crate) fn feed_scan(
        &self,
        lsn: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<FeedEntry>, ReadError> {
        let read = self.begin_read()?;
        let feed = read.open_table(FEED).map_err(StorageError::from)?;
        let changes = read.open_table(CHANGES).map_err(StorageError::from)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        tables::walk_feed::<ReadError>(&feed, lsn, |lsn, source, item, group_end| {
            let body = changes
                .get(item.log_key.as_bytes())
                .map_err(StorageError::from)?
                .ok_or_else(|| {
                    StorageError::Inconsistent(format!("feed entry {lsn} has no change"))
                })?;
            // The stored body plus the log key (names, stamp, origin) and
            // the sequence number: close to the change's size on the wire.
            bytes = bytes.saturating_add(body.value().len() + item.log_key.len() + 8);
            let body: ChangeBody = tables::decode(CHANGES.name(), body.value())?;
            out.push(FeedEntry {
                lsn,
                source,
                change: item.into_change(body)?,
                group_end,
            });
            Ok(!((out.len() >= limit || bytes >= max_bytes) && group_end))
        })?;
        Ok(out)
    }

    // ---- crate-internal plumbing used by collections and transactions ----

    pub(crate) fn collection_config(&self, name: &str) -> Option<CollectionConfig> {
        self.collection_rule(name).map(|(c, _)| c)
    }

    pub(crate) fn collection_rule(&self, name: &str) -> Option<(CollectionConfig, Rule)> {
        self.inner
            .collections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub(crate) fn lock_write(&self) -> MutexGuard<'_, WriteState> {
        // A panic while holding the lock cannot leave the counters ahead of
        // the database: they are replaced only after a successful commit.
        self.inner.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(feature = "automerge")]
    pub(crate) fn automerge_lock(&self) -> MutexGuard<'_, ()> {
        self.inner
            .automerge
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn begin_write(&self) -> Result<WriteTransaction, StorageError> {
        let mut txn = self.inner.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        Ok(txn)
    }

    pub(crate) fn begin_read(&self) -> Result<redb::ReadTransaction, StorageError> {
        Ok(self.inner.db.begin_read()?)
    }

    pub(crate) fn now_millis(&self) -> u64 {
        self.inner.config.time.now_millis()
    }

    pub(crate) fn publish(&self, events: Vec<ChangeEvent>) {
        for event in events {
            // No receivers is fine: nobody is watching.
            let _ = self.inner.events.send(Arc::new(event));
        }
    }

    /// Whether anyone listens for change events: commits skip building them
    /// when nobody does. Asked under the write lock, which subscribing takes
    /// too, so a commit either sees a new listener or is already visible to
    /// it (and events are published only after the commit).
    pub(crate) fn has_listeners(&self) -> bool {
        self.inner.events.receiver_count() > 0
    }

    pub(crate) fn subscribe_events(&self) -> broadcast::Receiver<Arc<ChangeEvent>> {
        let _guard = self.lock_write();
        self.inner.events.subscribe()
    }
}
