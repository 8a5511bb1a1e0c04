//! What the format 3 rows mean, shared by reads and writes: origin numbers,
//! a record's state from its row, the changes a record sends, and walks
//! over the feed.

use std::collections::HashMap;

use redb::{ReadableTable, TableHandle};

use super::keys;
use super::tables::{self, FEED, FeedRow, Kept, LOG, LogBody, RECORDS, RecordRow, StoredVersion};
use crate::clock::Stamp;
use crate::error::{Inconsistency, StorageError};
use crate::merge::RecordState;
use crate::model::{Change, ChangeId, Key, Op, ReplicaId, Version};

/// The origin numbers known to be committed: number `n` stands for `ids[n]`.
#[derive(Debug, Default)]
pub(crate) struct Origins {
    ids: Vec<ReplicaId>,
    numbers: HashMap<ReplicaId, u32>,
}

impl Origins {
    /// The replica id numbered `n`.
    pub(crate) fn id(&self, n: u32) -> Option<ReplicaId> {
        self.ids.get(n as usize).copied()
    }

    /// The number of `id`, if it has one.
    pub(crate) fn number(&self, id: ReplicaId) -> Option<u32> {
        self.numbers.get(&id).copied()
    }

    /// How many numbers are given.
    pub(crate) fn len(&self) -> u32 {
        u32::try_from(self.ids.len()).unwrap_or(u32::MAX)
    }

    /// Gives `id` the next number.
    pub(crate) fn push(&mut self, id: ReplicaId) {
        self.numbers.insert(id, self.len());
        self.ids.push(id);
    }

    /// Reads every number from `origins-3`.
    pub(crate) fn load(
        table: &impl ReadableTable<u32, &'static [u8; 16]>,
    ) -> Result<Self, StorageError> {
        let mut out = Self::default();
        for entry in table.iter()? {
            let (n, id) = entry?;
            if n.value() != out.len() {
                return Err(StorageError::Invalid {
                    table: tables::ORIGINS.name(),
                    reason: Inconsistency::UnknownOrigin { index: out.len() },
                });
            }
            out.push(ReplicaId::from_bytes(*id.value()));
        }
        Ok(out)
    }
}

/// Resolves origin numbers to replica ids.
pub(crate) trait Resolve {
    /// The replica id numbered `n`.
    fn resolve(&self, n: u32) -> Result<ReplicaId, StorageError>;

    /// A stored version with its origin resolved.
    fn version(&self, v: StoredVersion) -> Result<Version, StorageError> {
        Ok(Version {
            stamp: v.stamp,
            id: ChangeId {
                origin: self.resolve(v.origin)?,
                seq: v.seq,
            },
        })
    }
}

/// The error for an origin number nobody gave.
pub(crate) fn unknown_origin(n: u32) -> StorageError {
    StorageError::Invalid {
        table: tables::ORIGINS.name(),
        reason: Inconsistency::UnknownOrigin { index: n },
    }
}

/// The merged state a row holds.
pub(crate) fn state_of(
    row: &RecordRow,
    origins: &impl Resolve,
) -> Result<RecordState, StorageError> {
    Ok(RecordState {
        version: origins.version(row.version)?,
        value: row.value.clone(),
        fields: row
            .fields
            .iter()
            .map(|(f, v)| Ok((f.clone(), origins.version(*v)?)))
            .collect::<Result<_, StorageError>>()?,
        tombstone: row.tombstone.map(|t| origins.version(t)).transpose()?,
        seen: row.seen,
    })
}

/// The op of a record-level row's winning change.
pub(crate) fn winner_op(row: &RecordRow) -> Op {
    match &row.value {
        Some(value) => Op::Put(value.clone()),
        None if row.purged => Op::Purge,
        None => Op::Delete,
    }
}

/// One change as a record sends it, with the peer it came from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Held {
    /// The change.
    pub(crate) change: Change,
    /// The peer it came from; `None` when made here.
    pub(crate) source: Option<ReplicaId>,
    /// Whether it is kept only here (history, or to undo a local write):
    /// it never travels.
    pub(crate) history: bool,
    /// Whether it is kept to undo a local write ([`Kept::Undo`]).
    pub(crate) undo: bool,
}

/// Every change a record holds: the row's winner first, when it holds one,
/// then the log in merge order (history included). Reads the log only when
/// the row says it has entries.
pub(crate) fn record_changes(
    log: &impl ReadableTable<&'static [u8], &'static [u8]>,
    origins: &impl Resolve,
    collection: &str,
    key: &Key,
    row: &RecordRow,
) -> Result<Vec<Held>, StorageError> {
    let mut out = Vec::with_capacity(1 + row.logged as usize);
    if row.winner {
        out.push(Held {
            change: Change {
                id: ChangeId {
                    origin: origins.resolve(row.version.origin)?,
                    seq: row.version.seq,
                },
                collection: collection.to_string(),
                key: key.clone(),
                stamp: row.version.stamp,
                base: row.base,
                op: winner_op(row),
            },
            source: row.source.map(|s| origins.resolve(s)).transpose()?,
            history: false,
            undo: false,
        });
    }
    if row.logged > 0 {
        let prefix = keys::log_prefix(collection, key.as_bytes());
        let end = keys::prefix_end(&prefix);
        for entry in log.range(prefix.as_slice()..end.as_slice())? {
            let (k, v) = entry?;
            let (stamp, origin) = keys::split_log_tail(LOG.name(), k.value())?;
            let body: LogBody = tables::decode(LOG.name(), v.value())?;
            out.push(Held {
                change: Change {
                    id: ChangeId {
                        origin: origins.resolve(origin)?,
                        seq: body.seq,
                    },
                    collection: collection.to_string(),
                    key: key.clone(),
                    stamp: Stamp::from_u64(stamp),
                    base: body.base,
                    op: body.op,
                },
                source: body.source.map(|s| origins.resolve(s)).transpose()?,
                history: body.kept != Kept::Merge,
                undo: body.kept == Kept::Undo,
            });
        }
    }
    Ok(out)
}

/// The changes of the record a feed entry names, as they travel (history
/// left out), checking that the record's row points back at the entry.
pub(crate) fn entry_changes(
    records: &impl ReadableTable<&'static [u8], &'static [u8]>,
    log: &impl ReadableTable<&'static [u8], &'static [u8]>,
    origins: &impl Resolve,
    lsn: u64,
    record: &[u8],
) -> Result<Vec<Held>, StorageError> {
    Ok(entry_changes_sized(records, log, origins, lsn, record)?.0)
}

/// [`entry_changes`], with about their size on the wire: the stored
/// bytes of the row (and of its log entries) and the record key twice.
pub(crate) fn entry_changes_sized(
    records: &impl ReadableTable<&'static [u8], &'static [u8]>,
    log: &impl ReadableTable<&'static [u8], &'static [u8]>,
    origins: &impl Resolve,
    lsn: u64,
    record: &[u8],
) -> Result<(Vec<Held>, usize), StorageError> {
    let bad = || StorageError::Invalid {
        table: FEED.name(),
        reason: Inconsistency::FeedRecord { lsn },
    };
    let (row, size): (RecordRow, usize) = match records.get(record)? {
        Some(bytes) => (
            tables::decode(RECORDS.name(), bytes.value())?,
            bytes.value().len(),
        ),
        None => return Err(bad()),
    };
    if row.lsn != lsn {
        return Err(bad());
    }
    let (collection, key) = keys::split_record(FEED.name(), record)?;
    let mut held = record_changes(log, origins, &collection, &key, &row)?;
    held.retain(|h| !h.history);
    // Logged changes are rare; their values count as the row's would.
    let size = (size + 2 * record.len()) * held.len().max(1);
    Ok((held, size))
}

/// One feed entry met by [`walk_feed`].
pub(crate) struct Step<'a> {
    /// Its lsn.
    pub(crate) lsn: u64,
    /// Its row (a marker's record is empty).
    pub(crate) row: &'a FeedRow,
    /// The lsn that ends its group.
    pub(crate) group: u64,
    /// Whether the next entry belongs to another group (or there is none).
    pub(crate) group_end: bool,
}

/// Calls `visit` with each feed entry after `after`, in lsn order, markers
/// included; `visit` returns false to stop.
pub(crate) fn walk_feed(
    feed: &impl ReadableTable<u64, &'static [u8]>,
    after: u64,
    mut visit: impl FnMut(Step<'_>) -> Result<bool, StorageError>,
) -> Result<(), StorageError> {
    let mut rows = feed.range(after.saturating_add(1)..)?;
    let mut next = rows.next().transpose()?;
    while let Some((lsn, bytes)) = next.take() {
        let lsn = lsn.value();
        let row: FeedRow = tables::decode(FEED.name(), bytes.value())?;
        let group = lsn.saturating_add(row.end);
        let group_end = lsn == group;
        if !visit(Step {
            lsn,
            row: &row,
            group,
            group_end,
        })? {
            return Ok(());
        }
        next = rows.next().transpose()?;
    }
    Ok(())
}
