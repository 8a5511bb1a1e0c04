//! What a replica's file holds, counted (`Replica::storage_stats`), and
//! compaction of a file no process has open.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableHandle};

use super::Store;
use super::keys;
use super::tables::{
    self, FEED, FeedRow, Kept, LOG, LogBody, PEERS, PeerState, RECORDS, RecordRow,
};
use crate::error::{OpenError, StorageError};
use crate::model::ReplicaId;

/// Counts and sizes of what a replica's file holds
/// ([`crate::Replica::storage_stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageStats {
    /// Per collection, by name.
    pub collections: BTreeMap<String, CollectionStats>,
    /// Feed entries: one per record, at its latest lsn.
    pub feed_entries: u64,
    /// Feed markers: entries whose record moved on, kept while their
    /// group has a live entry.
    pub feed_markers: u64,
    /// Every table of the file: its name and sizes.
    pub tables: Vec<TableStats>,
    /// The peers this replica synced with: their cursors and when each was
    /// last heard from.
    pub peers: Vec<(ReplicaId, PeerState)>,
    /// The callers of this replica's server: where each last pulled from
    /// and when (written by the server every `collect_every`). A caller
    /// whose cursor lies below the collection mark's lsn is told to resync
    /// at its next pull; one not heard from for longer than the horizon
    /// will be.
    pub served: Vec<(ReplicaId, tables::ServedState)>,
    /// The tombstone collection marks ([`crate::Replica::collected`]): the
    /// stamp below which tombstones are collected, and the greatest lsn
    /// collected (zeros when never collected).
    pub collected: (crate::clock::Stamp, u64),
}

/// Counts of one collection's records and kept changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CollectionStats {
    /// Records with a value.
    pub live: u64,
    /// Deleted records (tombstones).
    pub tombstones: u64,
    /// Conflicts listed (record-level policies).
    pub conflicts: u64,
    /// Changes kept: each record's winner (record-level policies) and the
    /// log's entries merge needs.
    pub changes: u64,
    /// Superseded changes kept only here: a collection's history, or to
    /// undo a local write a peer may still refuse.
    pub history: u64,
    /// The greatest lsn among its records' feed entries: where its latest
    /// change sits in the feed (0 with no records).
    pub head: u64,
}

/// The sizes of one redb table, as redb counts them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableStats {
    /// The table's name (`records-3`, `feed-3`, ...).
    pub name: String,
    /// Entries.
    pub entries: u64,
    /// Bytes of keys and values.
    pub stored_bytes: u64,
    /// Bytes of redb's own metadata (lengths, offsets, branch keys).
    pub metadata_bytes: u64,
    /// Bytes of pages left unused (pages are 4 KiB, split half full).
    pub fragmented_bytes: u64,
}

impl Store {
    /// Counts what the file holds, in one snapshot: reads every record,
    /// log entry and feed entry, so it costs a scan of the file.
    pub(crate) fn storage_stats(&self) -> Result<StorageStats, StorageError> {
        let read = self.begin_read()?;
        let mut out = StorageStats {
            collected: self.collected(),
            ..StorageStats::default()
        };
        let records = read.open_table(RECORDS)?;
        for entry in records.iter()? {
            let (k, v) = entry?;
            let (collection, _) = keys::split_record(RECORDS.name(), k.value())?;
            let row: RecordRow = tables::decode(RECORDS.name(), v.value())?;
            let c = out.collections.entry(collection).or_default();
            if row.value.is_some() {
                c.live += 1;
            } else {
                c.tombstones += 1;
            }
            c.changes += u64::from(row.winner);
            c.head = c.head.max(row.lsn);
        }
        let log = read.open_table(LOG)?;
        let mut seen: Option<(Vec<u8>, Option<crate::clock::Stamp>)> = None;
        for entry in log.iter()? {
            let (k, v) = entry?;
            let (collection, key, stamp, _) = keys::parse_log(LOG.name(), k.value())?;
            let body: LogBody = tables::decode(LOG.name(), v.value())?;
            let record = keys::record(&collection, key.as_bytes());
            // The record's `seen`, for conflicts (record-level rows only).
            let mark = match &seen {
                Some((r, mark)) if *r == record => *mark,
                _ => {
                    let mark = match records.get(record.as_slice())? {
                        Some(r) => {
                            let row: RecordRow = tables::decode(RECORDS.name(), r.value())?;
                            row.winner.then_some(row.seen)
                        }
                        None => None,
                    };
                    seen = Some((record, mark));
                    mark
                }
            };
            let c = out.collections.entry(collection).or_default();
            if body.kept == Kept::Merge {
                c.changes += 1;
                if mark.is_some_and(|m| crate::clock::Stamp::from_u64(stamp) > m) {
                    c.conflicts += 1;
                }
            } else {
                c.history += 1;
            }
        }
        let feed = read.open_table(FEED)?;
        for entry in feed.iter()? {
            let (_, v) = entry?;
            let row: FeedRow = tables::decode(FEED.name(), v.value())?;
            if row.is_marker() {
                out.feed_markers += 1;
            } else {
                out.feed_entries += 1;
            }
        }
        match read.open_table(tables::SERVED) {
            Ok(served) => {
                for entry in served.iter()? {
                    let (k, v) = entry?;
                    let state = tables::decode(tables::SERVED.name(), v.value())?;
                    out.served.push((ReplicaId::from_bytes(*k.value()), state));
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let peers = read.open_table(PEERS)?;
        for entry in peers.iter()? {
            let (k, v) = entry?;
            let state: PeerState = tables::decode(PEERS.name(), v.value())?;
            out.peers.push((ReplicaId::from_bytes(*k.value()), state));
        }
        for handle in read.list_tables()? {
            let name = handle.name().to_string();
            let def: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new(&name);
            let table = read.open_untyped_table(def)?;
            let stats = table.stats()?;
            out.tables.push(TableStats {
                name,
                entries: table.len()?,
                stored_bytes: stats.stored_bytes(),
                metadata_bytes: stats.metadata_bytes(),
                fragmented_bytes: stats.fragmented_bytes(),
            });
        }
        Ok(out)
    }
}

/// Compacts a replica's file that no process has open: redb moves its
/// pages down and gives the free space at the end back to the file
/// system. Returns whether anything moved. Pages freed inside the file
/// are reused by later commits anyway; compaction is for operators who
/// want the space back (after deleting much, or a large upgrade).
pub(crate) fn compact_file(path: &Path) -> Result<bool, OpenError> {
    let mut db = Database::open(path)?;
    let mut moved = false;
    while db.compact().map_err(StorageError::from)? {
        moved = true;
    }
    Ok(moved)
}
