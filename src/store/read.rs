//! Reads: record states, change logs, conflicts, the feed and the peer
//! cursors. Each read is one snapshot (a redb read transaction).

use std::ops::Bound;

use redb::TableHandle;

use super::Store;
use super::keys;
use super::tables::{
    self, CHANGES, CONFLICTS, ChangeBody, ConflictBody, FEED, PEERS, PeerState, RECORDS, REJECTED,
    RejectedBody, STAGED,
};
use crate::clock::Stamp;
use crate::error::{Inconsistency, StorageError};
use crate::merge::RecordState;
use crate::model::{Change, ChangeId, Key, ReplicaId, Version};
use crate::value::Value;

/// A losing change that was concurrent with the record's winner.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    /// The record.
    pub key: Key,
    /// The losing change's version.
    pub loser: Version,
    /// The losing value; `None` when a delete lost.
    pub value: Option<Value>,
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

/// A slice of the feed prepared for one peer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FeedSlice {
    /// The changes to send, whole groups only.
    pub(crate) changes: Vec<Change>,
    /// The groups of `changes`, in order: how many changes each holds, and
    /// the lsn that ends it in this replica's feed (its name in
    /// `rejected-1`). Groups left with no change are left out.
    pub(crate) groups: Vec<(u32, u64)>,
    /// The lsn the slice covers through (skipped entries included).
    pub(crate) through: u64,
    /// Whether the feed goes on after `through`.
    pub(crate) has_more: bool,
    /// Whether the slice is one group larger than the bound: it travels
    /// in parts.
    pub(crate) oversized: bool,
}

impl Store {
    /// The cursors kept for `peer` (zeros if it was never synced).
    pub(crate) fn peer_state(&self, peer: ReplicaId) -> Result<PeerState, StorageError> {
        let read = self.begin_read()?;
        let table = read.open_table(PEERS)?;
        match table.get(peer.as_bytes())? {
            Some(g) => tables::decode(PEERS.name(), g.value()),
            None => Ok(PeerState::default()),
        }
    }

    /// A record's merged state, tombstones included.
    pub(crate) fn record(
        &self,
        collection: &str,
        key: &Key,
    ) -> Result<Option<RecordState>, StorageError> {
        let read = self.begin_read()?;
        let table = read.open_table(RECORDS)?;
        match table.get(keys::record(collection, key.as_bytes()).as_slice())? {
            Some(g) => Ok(Some(tables::decode(RECORDS.name(), g.value())?)),
            None => Ok(None),
        }
    }

    /// Walks a collection's records with keys in `start..end` (key order,
    /// or reversed); `visit` returns false to stop.
    pub(crate) fn scan_records(
        &self,
        collection: &str,
        start: &Bound<Key>,
        end: &Bound<Key>,
        reverse: bool,
        mut visit: impl FnMut(Key, RecordState) -> bool,
    ) -> Result<(), StorageError> {
        if range_is_empty(start, end) {
            return Ok(());
        }
        // A collection's record keys are its escaped name followed by the
        // key bytes, so key ranges map onto the prefix.
        let prefix = keys::collection(collection);
        let with = |k: &Key| keys::record(collection, k.as_bytes());
        let start = match start {
            Bound::Included(k) => Bound::Included(with(k)),
            Bound::Excluded(k) => Bound::Excluded(with(k)),
            Bound::Unbounded => Bound::Included(prefix.clone()),
        };
        let end = match end {
            Bound::Included(k) => Bound::Included(with(k)),
            Bound::Excluded(k) => Bound::Excluded(with(k)),
            Bound::Unbounded => Bound::Excluded(keys::prefix_end(&prefix)),
        };
        let read = self.begin_read()?;
        let table = read.open_table(RECORDS)?;
        let range = table.range::<&[u8]>((as_slice(&start), as_slice(&end)))?;
        let mut step = |entry: RecordEntry<'_>| -> Result<bool, StorageError> {
            let (k, v) = entry?;
            let state: RecordState = tables::decode(RECORDS.name(), v.value())?;
            let key = k
                .value()
                .get(prefix.len()..)
                .ok_or_else(|| StorageError::Invalid {
                    table: RECORDS.name(),
                    reason: Inconsistency::MalformedKey {
                        key: k.value().to_vec(),
                    },
                })?;
            Ok(visit(Key::new(key), state))
        };
        if reverse {
            for entry in range.rev() {
                if !step(entry)? {
                    break;
                }
            }
        } else {
            for entry in range {
                if !step(entry)? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The change log of one record, in merge order (stamp, then origin).
    pub(crate) fn history(&self, collection: &str, key: &Key) -> Result<Vec<Change>, StorageError> {
        let read = self.begin_read()?;
        let table = read.open_table(CHANGES)?;
        let prefix = keys::log_prefix(collection, key.as_bytes());
        let end = keys::prefix_end(&prefix);
        let mut out = Vec::new();
        for entry in table.range(prefix.as_slice()..end.as_slice())? {
            let (k, v) = entry?;
            let (stamp, origin) = keys::split_log_tail(CHANGES.name(), k.value())?;
            let body: ChangeBody = tables::decode(CHANGES.name(), v.value())?;
            out.push(Change {
                id: ChangeId {
                    origin: ReplicaId::from_bytes(origin),
                    seq: body.seq,
                },
                collection: collection.to_string(),
                key: key.clone(),
                stamp: Stamp::from_u64(stamp),
                base: body.base,
                op: body.op,
            });
        }
        Ok(out)
    }

    /// The conflicts of a collection, or of one record of it, in key order.
    pub(crate) fn conflicts(
        &self,
        collection: &str,
        key: Option<&Key>,
    ) -> Result<Vec<Conflict>, StorageError> {
        let prefix = match key {
            Some(key) => keys::log_prefix(collection, key.as_bytes()),
            None => keys::collection(collection),
        };
        let read = self.begin_read()?;
        let table = read.open_table(CONFLICTS)?;
        let end = keys::prefix_end(&prefix);
        let skip = keys::collection(collection).len();
        let mut out = Vec::new();
        for entry in table.range(prefix.as_slice()..end.as_slice())? {
            let (k, v) = entry?;
            let (key, stamp, origin) = keys::split_log(CONFLICTS.name(), k.value(), skip)?;
            let body: ConflictBody = tables::decode(CONFLICTS.name(), v.value())?;
            out.push(Conflict {
                key,
                loser: Version {
                    stamp: Stamp::from_u64(stamp),
                    id: ChangeId {
                        origin: ReplicaId::from_bytes(origin),
                        seq: body.seq,
                    },
                },
                value: body.value,
            });
        }
        Ok(out)
    }

    /// Up to `limit` feed entries after `after`, never splitting an atomic
    /// group, and about `max_bytes` at most: a group that would take the
    /// slice past `max_bytes` is left for the next slice, unless it is the
    /// first (a group larger than `max_bytes` comes alone). Returns the
    /// entries and their size, about their size on the wire.
    pub(crate) fn feed_scan(
        &self,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<FeedEntry>, usize), StorageError> {
        let read = self.begin_read()?;
        let feed = read.open_table(FEED)?;
        let changes = read.open_table(CHANGES)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        // Where the current group starts, and the size before it.
        let mut group_start = (0usize, 0usize);
        tables::walk_feed(&feed, after, |lsn, source, item, group_end| {
            let body = changes
                .get(item.log_key.as_bytes())?
                .ok_or(StorageError::Invalid {
                    table: FEED.name(),
                    reason: Inconsistency::MissingChange { lsn },
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
            if !group_end {
                return Ok(true);
            }
            if bytes > max_bytes && group_start.0 > 0 {
                // This group takes the slice past the bound: leave it.
                out.truncate(group_start.0);
                bytes = group_start.1;
                return Ok(false);
            }
            group_start = (out.len(), bytes);
            Ok(out.len() < limit && bytes < max_bytes)
        })?;
        Ok((out, bytes))
    }

    /// The feed after `after` as `peer` should see it: at most about `limit`
    /// changes and `max_bytes` (whole groups), leaving out what came from
    /// `peer` and collections not in `wanted`.
    pub(crate) fn feed_for(
        &self,
        peer: ReplicaId,
        after: u64,
        limit: usize,
        max_bytes: usize,
        wanted: &dyn Fn(&str) -> bool,
    ) -> Result<FeedSlice, StorageError> {
        let (entries, bytes) = self.feed_scan(after, limit.max(1), max_bytes)?;
        let through = entries.last().map_or(after, |e| e.lsn);
        let has_more = through < self.lock().lsn;
        let mut changes = Vec::with_capacity(entries.len());
        let mut groups = Vec::new();
        let mut in_group = 0u32;
        for e in entries {
            if pushable(
                peer,
                e.source,
                e.change.id.origin,
                &e.change.collection,
                wanted,
            ) {
                changes.push(e.change);
                in_group += 1;
            }
            if e.group_end && in_group > 0 {
                groups.push((in_group, e.lsn));
                in_group = 0;
            }
        }
        Ok(FeedSlice {
            changes,
            groups,
            through,
            has_more,
            oversized: bytes > max_bytes,
        })
    }
}

/// Whether a feed entry goes to `peer`: not received from it, not made by
/// it, and in a collection it wants.
pub(crate) fn pushable(
    peer: ReplicaId,
    source: Option<ReplicaId>,
    origin: ReplicaId,
    collection: &str,
    wanted: &dyn Fn(&str) -> bool,
) -> bool {
    source != Some(peer) && origin != peer && wanted(collection)
}

/// A group a peer refused, as `rejected-1` keeps it.
#[derive(Clone, Debug)]
pub(crate) struct RejectedGroup {
    /// The peer that refused it.
    pub(crate) peer: ReplicaId,
    /// The lsn that ends the group in this replica's feed.
    pub(crate) lsn: u64,
    /// The refusal code, reason, time and changes.
    pub(crate) body: RejectedBody,
}

/// A part of a group too large for one batch, as read for a peer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GroupPart {
    /// The lsn that ends the group.
    pub(crate) transfer: u64,
    /// Where the part starts among the group's changes for the peer.
    pub(crate) offset: u32,
    /// Its changes.
    pub(crate) changes: Vec<Change>,
    /// Whether it is the group's last part.
    pub(crate) last: bool,
    /// Whether the feed goes on after the group.
    pub(crate) has_more: bool,
}

impl Store {
    /// The part of the group after `after` that starts at its change
    /// `offset` (counting only the changes that go to `peer`, see
    /// [`pushable`]), about `max_bytes` long (at least one change). Reads
    /// only the part's changes: resuming a large group costs its part, not
    /// the group. `None` when no group follows `after`.
    pub(crate) fn group_part(
        &self,
        peer: ReplicaId,
        after: u64,
        wanted: &dyn Fn(&str) -> bool,
        offset: u32,
        max_bytes: usize,
    ) -> Result<Option<GroupPart>, StorageError> {
        let read = self.begin_read()?;
        let feed = read.open_table(FEED)?;
        let changes = read.open_table(CHANGES)?;
        let Some(entry) = feed.range(after.saturating_add(1)..)?.next() else {
            return Ok(None);
        };
        let (key, bytes) = entry?;
        let transfer = key.value();
        let group: tables::FeedGroup = tables::decode(FEED.name(), bytes.value())?;
        let source = group.source;
        let mut kept = Vec::with_capacity(group.entries.len());
        for item in group.entries {
            let (collection, _, _, origin) = keys::parse_log(FEED.name(), item.log_key.as_bytes())?;
            if pushable(
                peer,
                source,
                ReplicaId::from_bytes(origin),
                &collection,
                wanted,
            ) {
                kept.push(item);
            }
        }
        let start = (offset as usize).min(kept.len());
        let mut out = Vec::new();
        let mut size = 0usize;
        for item in kept.iter().skip(start) {
            let body = changes
                .get(item.log_key.as_bytes())?
                .ok_or(StorageError::Invalid {
                    table: FEED.name(),
                    reason: Inconsistency::MissingChange { lsn: transfer },
                })?;
            let len = body.value().len() + item.log_key.len() + 8;
            if !out.is_empty() && size.saturating_add(len) > max_bytes {
                break;
            }
            size = size.saturating_add(len);
            let body: ChangeBody = tables::decode(CHANGES.name(), body.value())?;
            out.push(item.clone().into_change(body)?);
        }
        let last = start + out.len() >= kept.len();
        Ok(Some(GroupPart {
            transfer,
            offset: u32::try_from(start).unwrap_or(u32::MAX),
            changes: out,
            last,
            has_more: !last || transfer < self.lock().lsn,
        }))
    }

    /// The staged parts of (`role`, `peer`): their transfer and how many.
    pub(crate) fn staged_progress(
        &self,
        role: u8,
        peer: ReplicaId,
    ) -> Result<Option<(u64, u32)>, StorageError> {
        let read = self.begin_read()?;
        match read.open_table(STAGED) {
            Ok(table) => super::writer::staged_progress(&table, role, peer),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The changes of the staged parts of `transfer` from (`role`, `peer`).
    pub(crate) fn staged_changes(
        &self,
        role: u8,
        peer: ReplicaId,
        transfer: u64,
    ) -> Result<Vec<Change>, StorageError> {
        let read = self.begin_read()?;
        match read.open_table(STAGED) {
            Ok(table) => super::writer::staged_changes(&table, role, peer, transfer),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// How many changes after `after` in the feed would go to `peer` (see
    /// [`pushable`]): what its next push carries. Reads the feed's groups
    /// only, never a change's body.
    pub(crate) fn pending_for(
        &self,
        peer: ReplicaId,
        after: u64,
        wanted: &dyn Fn(&str) -> bool,
    ) -> Result<u64, StorageError> {
        let read = self.begin_read()?;
        let feed = read.open_table(FEED)?;
        let mut count = 0u64;
        tables::walk_feed(&feed, after, |_, source, item, _| {
            let (collection, _, _, origin) = keys::parse_log(FEED.name(), item.log_key.as_bytes())?;
            if pushable(
                peer,
                source,
                ReplicaId::from_bytes(origin),
                &collection,
                wanted,
            ) {
                count += 1;
            }
            Ok(true)
        })?;
        Ok(count)
    }

    /// Every group a peer refused, in (peer, lsn) order, discarded ones
    /// included.
    pub(crate) fn rejected(&self) -> Result<Vec<RejectedGroup>, StorageError> {
        let read = self.begin_read()?;
        let table = match read.open_table(REJECTED) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in redb::ReadableTable::iter(&table)? {
            let (k, v) = entry?;
            let (peer, lsn) = split_rejected_key(k.value())?;
            out.push(RejectedGroup {
                peer,
                lsn,
                body: tables::decode(REJECTED.name(), v.value())?,
            });
        }
        Ok(out)
    }

    /// The changes stored under `log_keys`, in order.
    pub(crate) fn changes_at(&self, log_keys: &[Key]) -> Result<Vec<Change>, StorageError> {
        let read = self.begin_read()?;
        let table = read.open_table(CHANGES)?;
        log_keys
            .iter()
            .map(|k| {
                let body = table.get(k.as_bytes())?.ok_or(StorageError::Invalid {
                    table: REJECTED.name(),
                    reason: Inconsistency::MissingRejectedChange,
                })?;
                let body: ChangeBody = tables::decode(CHANGES.name(), body.value())?;
                tables::FeedItem { log_key: k.clone() }.into_change(body)
            })
            .collect()
    }
}

/// The (peer, lsn) of a `rejected-1` key.
fn split_rejected_key(key: &[u8]) -> Result<(ReplicaId, u64), StorageError> {
    let bad = || StorageError::Invalid {
        table: REJECTED.name(),
        reason: Inconsistency::MalformedKey { key: key.to_vec() },
    };
    let peer: [u8; 16] = key
        .get(..16)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(bad)?;
    let lsn: [u8; 8] = key
        .get(16..)
        .and_then(|l| l.try_into().ok())
        .ok_or_else(bad)?;
    Ok((ReplicaId::from_bytes(peer), u64::from_be_bytes(lsn)))
}

/// One entry of a walk over `records-2`.
type RecordEntry<'a> = Result<
    (
        redb::AccessGuard<'a, &'static [u8]>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

/// A bound over owned key bytes, as a bound over slices.
fn as_slice(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Whether a key range is empty (redb refuses ranges whose start is after their end).
fn range_is_empty(start: &Bound<Key>, end: &Bound<Key>) -> bool {
    match (start, end) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
        | (Bound::Excluded(a), Bound::Included(b)) => a >= b,
        _ => false,
    }
}
