//! The store: everything that knows redb.
//!
//! - [`tables`]: the table definitions, each with its key and value layout,
//!   and the stored body types; [`keys`]: the flat keys.
//! - [`Store`] (here): the database and the write counters, opening and
//!   creating a file (the format check, the counters restored from the last
//!   feed group), and [`upgrade`] of older formats.
//! - `commit`: the one commit path, used by local transactions, remote
//!   batches, cursor updates and collection definitions, with the writer
//!   (`writer`) that stores changes inside it.
//! - `validate`: the one validation pass every change goes through before a
//!   commit, local or remote.
//! - `read`: records, change logs, conflicts, the feed, peer cursors.
//!
//! Nothing here knows the [`crate::Replica`], [`crate::Collection`] or
//! [`crate::Transaction`] handles: they pass in what a call needs (rules,
//! limits, the replica id) and publish the change events a commit returns.

mod commit;
mod keys;
mod read;
mod rows;
mod stats;
mod tables;
mod upgrade;
mod validate;
mod verify;
mod writer;

use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

use redb::{
    Database, Durability, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableHandle,
    WriteTransaction,
};

use crate::clock::{Hlc, Stamp};
use crate::error::{ForeignReason, OpenError, StorageError};
use crate::model::{CollectionConfig, ReplicaId};
use rows::Origins;
use tables::{COLLECTIONS, FEED, FeedRow, LOG, META, ORIGINS, PEERS, RECORDS};

pub use commit::ApplyReport;
pub(crate) use commit::{Cursor, Durability as CommitDurability, LocalOp, Received, Refused};
pub(crate) use read::{FeedSlice, GroupPart};
pub(crate) use tables::{STAGED_PULLED, STAGED_PUSHED};

pub use read::{Conflict, FeedEntry};
pub(crate) use stats::compact_file;
pub use stats::{CollectionStats, StorageStats, TableStats};
pub use tables::{FORMAT_VERSION, PeerState, ServedState};
use validate::check_value;
pub(crate) use validate::{Collections, Limits, check_key, check_local, check_remote};
pub use verify::{Difference, DifferenceKind, VerifyReport};

/// The database a store reads and writes, or only reads.
enum Db {
    /// Opened for writing: the only process holding the file.
    Writable(Database),
    /// Opened read-only ([`Store::open_read_only`]): other readers may hold
    /// the file too, no writer may, and every write fails with
    /// [`StorageError::ReadOnly`].
    ReadOnly(ReadOnlyDatabase),
}

impl Db {
    fn begin_read(&self) -> Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            Self::Writable(db) => db.begin_read(),
            Self::ReadOnly(db) => db.begin_read(),
        }
    }

    /// The database, if it may be written.
    fn writable(&self) -> Result<&Database, StorageError> {
        match self {
            Self::Writable(db) => Ok(db),
            Self::ReadOnly(_) => Err(StorageError::ReadOnly),
        }
    }
}

/// A replica's database and the counters that advance with its commits.
pub(crate) struct Store {
    /// `None` once closed ([`Store::close`]): the file is released and
    /// every later transaction fails with [`StorageError::Closed`].
    db: RwLock<Option<Db>>,
    /// The replica's id, from `meta-1`: the origin of the changes made here.
    id: ReplicaId,
    /// Held for the whole of every write transaction: redb admits one writer
    /// at a time anyway, and the counters must move with the commit.
    write: Mutex<WriteState>,
    /// The origin numbers committed (`origins-3`), grown after each commit
    /// that numbers new origins.
    origins: RwLock<Origins>,
}

/// Counters that advance with each commit; restored from the database on open.
#[derive(Clone, Debug)]
pub(crate) struct WriteState {
    /// The hybrid logical clock.
    pub(crate) hlc: Hlc,
    /// The last sequence number given to one of this replica's own changes.
    pub(crate) seq: u64,
    /// The last lsn in the feed.
    pub(crate) lsn: u64,
    /// The last lsn on disk: moved to `lsn` by every durable commit, left
    /// by deferred ones. The feed is served only through it.
    pub(crate) durable: u64,
    /// The collection mark: every tombstone stamped below it is collected,
    /// so a remote change below it for a record not held could resurrect
    /// one, and is refused (`ApplyError::BeyondHorizon`). Zero: never
    /// collected.
    pub(crate) collected: Stamp,
    /// The greatest lsn a collection removed: a peer pulling from a cursor
    /// below it may have missed a delete that is gone.
    pub(crate) collected_lsn: u64,
}

/// An opened store, with what its file says about the replica.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The store.
    pub(crate) store: Store,
    /// The collections defined, as stored.
    pub(crate) collections: Vec<(String, CollectionConfig)>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("id", &self.id)
            .field("write", &self.write)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the replica held in `db`: creates the tables of a new replica
    /// (with `new_id`), upgrades a format 1 file, refuses foreign files and
    /// unknown formats, and restores the counters.
    pub(crate) fn open(
        db: Database,
        new_id: impl FnOnce() -> ReplicaId,
        max_clock_drift: Duration,
    ) -> Result<Opened, OpenError> {
        let existing: Vec<String> = db
            .begin_read()?
            .list_tables()?
            .map(|t| t.name().to_string())
            .collect();
        if !existing.iter().any(|n| n == META.name()) {
            if !existing.is_empty() {
                return Err(OpenError::Foreign(ForeignReason::NoMeta {
                    tables: existing,
                }));
            }
            create_tables(&db, new_id())?;
        }
        loop {
            match read_format(&db)? {
                Some(FORMAT_VERSION) => break,
                Some(1) => upgrade::from_1(&db)?,
                Some(2) => upgrade::from_2(&db)?,
                Some(found) => {
                    return Err(OpenError::UnsupportedFormat {
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                None => return Err(OpenError::Foreign(ForeignReason::NoFormat)),
            }
        }
        Self::load(Db::Writable(db), max_clock_drift)
    }

    /// Opens the replica held in `db` for reading only: refuses a file
    /// that holds no replica, or one in another format (an upgrade would
    /// write), and restores the counters. Nothing is written, ever.
    pub(crate) fn open_read_only(
        db: ReadOnlyDatabase,
        max_clock_drift: Duration,
    ) -> Result<Opened, OpenError> {
        let existing: Vec<String> = db
            .begin_read()?
            .list_tables()?
            .map(|t| t.name().to_string())
            .collect();
        if !existing.iter().any(|n| n == META.name()) {
            return Err(OpenError::Foreign(ForeignReason::NoMeta {
                tables: existing,
            }));
        }
        match read_format(&db)? {
            Some(FORMAT_VERSION) => {}
            Some(found @ (1 | 2)) => return Err(OpenError::NeedsUpgrade { found }),
            Some(found) => {
                return Err(OpenError::UnsupportedFormat {
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            None => return Err(OpenError::Foreign(ForeignReason::NoFormat)),
        }
        Self::load(Db::ReadOnly(db), max_clock_drift)
    }

    /// Reads the replica id, the counters and the collections of a file in
    /// the current format.
    fn load(db: Db, max_clock_drift: Duration) -> Result<Opened, OpenError> {
        let read = db.begin_read()?;
        let meta = read.open_table(META)?;
        let id = match meta.get("replica")? {
            Some(g) => <[u8; 16]>::try_from(g.value())
                .map(ReplicaId::from_bytes)
                .map_err(|_| OpenError::Foreign(ForeignReason::MalformedReplicaId))?,
            None => return Err(OpenError::Foreign(ForeignReason::NoReplicaId)),
        };
        // The counters as of the last commit that stored changes live in its
        // feed group; meta holds them as of creation or the format upgrade.
        let mut clock = tables::meta_u64(&meta, "clock")?.unwrap_or(0);
        let mut seq = tables::meta_u64(&meta, "seq")?.unwrap_or(0);
        // A collection may have removed the feed's last entries: it saved
        // the lsn, and opening never goes below it.
        let lsn = last_group(&read, &mut clock, &mut seq)?
            .max(tables::meta_u64(&meta, "lsn")?.unwrap_or(0));
        let collected = Stamp::from_u64(tables::meta_u64(&meta, "collected")?.unwrap_or(0));
        let collected_lsn = tables::meta_u64(&meta, "collected_lsn")?.unwrap_or(0);
        let origins = Origins::load(&read.open_table(ORIGINS)?)?;
        let mut collections = Vec::new();
        let table = read.open_table(COLLECTIONS)?;
        for entry in table.iter()? {
            let (name, bytes) = entry?;
            let config: CollectionConfig = tables::decode(COLLECTIONS.name(), bytes.value())?;
            collections.push((name.value().to_string(), config));
        }
        drop((table, meta, read));
        let hlc = Hlc::new(Stamp::from_u64(clock), max_clock_drift);
        tracing::debug!(replica = %id, lsn, seq, "opened replica");
        Ok(Opened {
            store: Self {
                db: RwLock::new(Some(db)),
                id,
                // What a file holds when opened is on disk: redb writes deferred
                // commits out when it closes and drops them when it recovers.
                write: Mutex::new(WriteState {
                    hlc,
                    seq,
                    lsn,
                    durable: lsn,
                    collected,
                    collected_lsn,
                }),
                origins: RwLock::new(origins),
            },
            collections,
        })
    }

    /// The replica's id.
    pub(crate) fn id(&self) -> ReplicaId {
        self.id
    }

    /// Locks the counters: the lock every write transaction holds. A panic
    /// while holding it cannot leave the counters ahead of the database:
    /// they are replaced only after a successful commit.
    pub(crate) fn lock(&self) -> MutexGuard<'_, WriteState> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Begins a write transaction; the caller holds [`Store::lock`].
    fn begin_write(
        &self,
        durability: commit::Durability,
    ) -> Result<WriteTransaction, StorageError> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner());
        let mut txn = db
            .as_ref()
            .ok_or(StorageError::Closed)?
            .writable()?
            .begin_write()?;
        txn.set_durability(match durability {
            commit::Durability::Immediate => Durability::Immediate,
            commit::Durability::Deferred => Durability::None,
        })?;
        Ok(txn)
    }

    /// Begins a read transaction: a snapshot as of the last commit.
    fn begin_read(&self) -> Result<redb::ReadTransaction, StorageError> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner());
        Ok(db.as_ref().ok_or(StorageError::Closed)?.begin_read()?)
    }

    /// Makes every commit durable and closes the database, releasing the
    /// file once the transactions still running end (redb closes it when
    /// the last one drops). Later calls find it closed and do nothing.
    /// Returns whether this call closed it.
    pub(crate) fn close(&self) -> Result<bool, StorageError> {
        // No write is in flight while the counters are locked.
        let state = self.lock();
        let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
        let Some(open) = db.as_mut() else {
            return Ok(false);
        };
        if state.lsn > state.durable {
            let mut txn = open.writable()?.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            txn.commit()?;
        }
        drop(db.take());
        drop(state);
        Ok(true)
    }
}

/// The `format` entry of `meta-1`, if it is four bytes.
fn read_format(db: &impl ReadableDatabase) -> Result<Option<u32>, StorageError> {
    let read = db.begin_read()?;
    let meta = read.open_table(META)?;
    Ok(match meta.get("format")? {
        Some(g) => <[u8; 4]>::try_from(g.value()).map(u32::from_le_bytes).ok(),
        None => None,
    })
}

/// The last lsn, and the counters of the feed's last group folded into
/// `clock` and `seq` (the greater of the two wins).
fn last_group(
    read: &redb::ReadTransaction,
    clock: &mut u64,
    seq: &mut u64,
) -> Result<u64, StorageError> {
    let feed = read.open_table(FEED)?;
    Ok(match feed.last()? {
        Some((last, bytes)) => {
            let row: FeedRow = tables::decode(FEED.name(), bytes.value())?;
            if let Some(group) = row.group {
                *clock = (*clock).max(group.clock.as_u64());
                *seq = (*seq).max(group.seq);
            }
            last.value()
        }
        None => 0,
    })
}

/// Creates the tables of a new replica, with its id and zero counters.
fn create_tables(db: &Database, id: ReplicaId) -> Result<(), StorageError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut meta = txn.open_table(META)?;
        meta.insert("format", FORMAT_VERSION.to_le_bytes().as_slice())?;
        meta.insert("replica", id.as_bytes().as_slice())?;
        meta.insert("clock", 0u64.to_le_bytes().as_slice())?;
        meta.insert("seq", 0u64.to_le_bytes().as_slice())?;
        txn.open_table(ORIGINS)?.insert(0, id.as_bytes())?;
        txn.open_table(COLLECTIONS)?;
        txn.open_table(RECORDS)?;
        txn.open_table(LOG)?;
        txn.open_table(FEED)?;
        txn.open_table(PEERS)?;
    }
    txn.commit()?;
    Ok(())
}
