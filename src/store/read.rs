//! Reads: record states, change logs, conflicts, the feed and the peer
//! cursors. Each read is one snapshot (a redb read transaction).

use std::ops::Bound;

use std::collections::HashMap;
use std::sync::RwLockReadGuard;

use redb::{ReadOnlyTable, ReadableTable, TableHandle};

use super::Store;
use super::keys;
use super::rows::{self, Held, Origins, Resolve};
use super::tables::{
    self, FEED, FeedRow, Kept, LOG, LogBody, ORIGINS, PEERS, PeerState, RECORDS, REJECTED,
    RecordRow, RejectedBody, STAGED,
};
use crate::clock::Stamp;
use crate::error::{Inconsistency, StorageError};
use crate::merge::{RecordState, record_value};
use crate::model::{Change, ChangeId, Key, ReplicaId, Scope, Version};
use crate::value::Value;

/// Origin numbers for one read: the committed ones, and the snapshot's
/// `origins-3` for numbers a commit gave after it was read into memory.
pub(super) struct ReadOrigins<'a> {
    known: RwLockReadGuard<'a, Origins>,
    table: ReadOnlyTable<u32, &'static [u8; 16]>,
}

/// The tables a walk over the feed reads, in one snapshot.
struct FeedTables<'a> {
    origins: ReadOrigins<'a>,
    feed: ReadOnlyTable<u64, &'static [u8]>,
    records: ReadOnlyTable<&'static [u8], &'static [u8]>,
    log: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl FeedTables<'_> {
    /// The changes a live feed entry sends, with about their size.
    fn entry(&self, step: &rows::Step<'_>) -> Result<(Vec<Held>, usize), StorageError> {
        rows::entry_changes_sized(
            &self.records,
            &self.log,
            &self.origins,
            step.lsn,
            step.row.record.as_bytes(),
        )
    }
}

impl Resolve for ReadOrigins<'_> {
    fn resolve(&self, n: u32) -> Result<ReplicaId, StorageError> {
        if let Some(id) = self.known.id(n) {
            return Ok(id);
        }
        match self.table.get(n)? {
            Some(id) => Ok(ReplicaId::from_bytes(*id.value())),
            None => Err(rows::unknown_origin(n)),
        }
    }
}

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

/// One change as a replica's feed sends it. The feed holds one entry per
/// record, at the lsn of the record's latest change; an entry sends the
/// changes merge needs to rebuild the record (its winner, and any
/// conflicts), so one lsn can carry several changes.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEntry {
    /// The local sequence number of the record's entry.
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
            Some(g) => {
                let row: RecordRow = tables::decode(RECORDS.name(), g.value())?;
                Ok(Some(rows::state_of(&row, &self.read_origins(&read)?)?))
            }
            None => Ok(None),
        }
    }

    /// The tables of a walk over the feed, as `read` sees them.
    fn feed_tables(&self, read: &redb::ReadTransaction) -> Result<FeedTables<'_>, StorageError> {
        Ok(FeedTables {
            origins: self.read_origins(read)?,
            feed: read.open_table(FEED)?,
            records: read.open_table(RECORDS)?,
            log: read.open_table(LOG)?,
        })
    }

    /// The origin numbers as `read` sees them.
    pub(super) fn read_origins(
        &self,
        read: &redb::ReadTransaction,
    ) -> Result<ReadOrigins<'_>, StorageError> {
        Ok(ReadOrigins {
            known: self.origins.read().unwrap_or_else(|p| p.into_inner()),
            table: read.open_table(ORIGINS)?,
        })
    }

    /// How many records of `collection` hold a value, and how many are
    /// tombstones: one byte read per row, no value decoded.
    pub(crate) fn counts(&self, collection: &str) -> Result<(u64, u64), StorageError> {
        let read = self.begin_read()?;
        let table = read.open_table(RECORDS)?;
        let prefix = keys::collection(collection);
        let end = keys::prefix_end(&prefix);
        let (mut live, mut dead) = (0, 0);
        for entry in table.range(prefix.as_slice()..end.as_slice())? {
            let (_, v) = entry?;
            if tables::row_is_live(v.value()) {
                live += 1;
            } else {
                dead += 1;
            }
        }
        Ok((live, dead))
    }

    /// Every peer this replica keeps cursors for, in id order.
    pub(crate) fn peers(&self) -> Result<Vec<(ReplicaId, PeerState)>, StorageError> {
        let read = self.begin_read()?;
        let table = read.open_table(PEERS)?;
        let mut out = Vec::new();
        for entry in ReadableTable::iter(&table)? {
            let (k, v) = entry?;
            out.push((
                ReplicaId::from_bytes(*k.value()),
                tables::decode(PEERS.name(), v.value())?,
            ));
        }
        Ok(out)
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
        let origins = self.read_origins(&read)?;
        let table = read.open_table(RECORDS)?;
        let range = table.range::<&[u8]>((as_slice(&start), as_slice(&end)))?;
        let mut step = |entry: RecordEntry<'_>| -> Result<bool, StorageError> {
            let (k, v) = entry?;
            let row: RecordRow = tables::decode(RECORDS.name(), v.value())?;
            let state = rows::state_of(&row, &origins)?;
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

    /// The changes one record holds (see [`crate::History`]), in merge
    /// order of stamp, then origin; with `undo`, also the changes kept to
    /// undo an unsettled local write.
    pub(crate) fn history(
        &self,
        collection: &str,
        key: &Key,
        undo: bool,
    ) -> Result<Vec<Change>, StorageError> {
        let read = self.begin_read()?;
        let origins = self.read_origins(&read)?;
        let records = read.open_table(RECORDS)?;
        let log = read.open_table(LOG)?;
        let Some(bytes) = records.get(keys::record(collection, key.as_bytes()).as_slice())? else {
            return Ok(Vec::new());
        };
        let row: RecordRow = tables::decode(RECORDS.name(), bytes.value())?;
        let mut out: Vec<Change> = rows::record_changes(&log, &origins, collection, key, &row)?
            .into_iter()
            .filter(|h| undo || !h.undo)
            .map(|h| h.change)
            .collect();
        out.sort_by_key(|c| c.version());
        Ok(out)
    }

    /// The conflicts of a collection, or of one record of it, in key order:
    /// the logged changes of record-level records stamped above the
    /// record's `seen` (kept as conflicts, not as history).
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
        let origins = self.read_origins(&read)?;
        let records = read.open_table(RECORDS)?;
        let log = read.open_table(LOG)?;
        let end = keys::prefix_end(&prefix);
        let skip = keys::collection(collection).len();
        let mut seen: HashMap<Key, Option<Stamp>> = HashMap::new();
        let mut out = Vec::new();
        for entry in log.range(prefix.as_slice()..end.as_slice())? {
            let (k, v) = entry?;
            let (key, stamp, origin) = keys::split_log(LOG.name(), k.value(), skip)?;
            let body: LogBody = tables::decode(LOG.name(), v.value())?;
            let mark = match seen.get(&key) {
                Some(mark) => *mark,
                None => {
                    let mark =
                        match records.get(keys::record(collection, key.as_bytes()).as_slice())? {
                            Some(r) => {
                                let row: RecordRow = tables::decode(RECORDS.name(), r.value())?;
                                row.winner.then_some(row.seen)
                            }
                            None => None,
                        };
                    seen.insert(key.clone(), mark);
                    mark
                }
            };
            let Some(mark) = mark else { continue };
            if body.kept != Kept::Merge || Stamp::from_u64(stamp) <= mark {
                continue;
            }
            out.push(Conflict {
                key: key.clone(),
                loser: Version {
                    stamp: Stamp::from_u64(stamp),
                    id: ChangeId {
                        origin: origins.resolve(origin)?,
                        seq: body.seq,
                    },
                },
                value: record_value(&body.op),
            });
        }
        // Origin numbers differ between replicas: order as merge does.
        out.sort_by(|a, b| (&a.key, a.loser).cmp(&(&b.key, b.loser)));
        Ok(out)
    }

    /// The changes of up to about `limit` feed entries after `after`, one
    /// per change each record sends, never splitting an atomic group, and
    /// about `max_bytes` at most: a group that would take the slice past
    /// `max_bytes` is left for the next slice, unless it is the first (a
    /// group larger than `max_bytes` comes alone). Returns the entries, their
    /// size (about their size on the wire) and the lsn they cover through.
    pub(crate) fn feed_scan(
        &self,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Scanned, StorageError> {
        let read = self.begin_read()?;
        let tables = self.feed_tables(&read)?;
        let mut out: Vec<FeedEntry> = Vec::new();
        let mut ends: Vec<u64> = Vec::new();
        let mut bytes = 0usize;
        let mut through = after;
        // Where the current group starts in `out`, and the size before it.
        let mut group_start = (0usize, 0usize);
        rows::walk_feed(&tables.feed, after, |step| {
            if !step.row.is_marker() {
                let (held, size) = tables.entry(&step)?;
                bytes = bytes.saturating_add(size);
                out.extend(held.into_iter().map(|h| FeedEntry {
                    lsn: step.lsn,
                    change: h.change,
                    source: h.source,
                    group_end: false,
                }));
            }
            if !step.group_end {
                return Ok(true);
            }
            if bytes > max_bytes && group_start.0 > 0 {
                // This group takes the slice past the bound: leave it.
                out.truncate(group_start.0);
                bytes = group_start.1;
                return Ok(false);
            }
            if out.len() > group_start.0
                && let Some(last) = out.last_mut()
            {
                last.group_end = true;
                ends.push(step.lsn);
            }
            through = step.lsn;
            group_start = (out.len(), bytes);
            Ok(out.len() < limit && bytes < max_bytes)
        })?;
        // A group cut short by the end of the feed cannot happen (every
        // group ends with an entry), but never hand out half of one.
        out.truncate(group_start.0);
        Ok(Scanned {
            entries: out,
            ends,
            bytes: group_start.1,
            through,
        })
    }

    /// The feed after `after` as `peer` should see it: at most about `limit`
    /// changes and `max_bytes` (whole groups), leaving out collections not
    /// in `wanted` and what came from `peer` or was made by it. `None`: a
    /// peer that bootstraps, which may hold nothing, not even its own
    /// changes (a resync emptied its collections), gets everything.
    pub(crate) fn feed_for(
        &self,
        peer: Option<ReplicaId>,
        after: u64,
        limit: usize,
        max_bytes: usize,
        wanted: &dyn Fn(&str, &Key) -> bool,
    ) -> Result<FeedSlice, StorageError> {
        let Scanned {
            entries,
            ends,
            bytes,
            through,
        } = self.feed_scan(after, limit.max(1), max_bytes)?;
        let has_more = through < self.lock().lsn;
        // Changes this peer refused before stay refused: a record that
        // moves on carries them again, and they are not sent again.
        let refused = match peer {
            Some(peer) => self.refused_by(peer)?,
            None => Default::default(),
        };
        let mut changes = Vec::with_capacity(entries.len());
        let mut groups = Vec::new();
        let mut in_group = 0u32;
        let mut ends = ends.into_iter();
        for e in entries {
            let group_end = e.group_end;
            let held = Held {
                change: e.change,
                source: e.source,
                history: false,
                undo: false,
            };
            // A peer that bootstraps (`None`) may no longer hold even its
            // own changes (a resync emptied its collections): it gets
            // everything, its own included.
            let goes = match peer {
                None => wanted(&held.change.collection, &held.change.key),
                Some(peer) => pushable(peer, &held, wanted),
            };
            if goes && !refused.contains(&slot(&held.change)) {
                changes.push(held.change);
                in_group += 1;
            }
            if group_end {
                let end = ends.next().unwrap_or(through);
                if in_group > 0 {
                    groups.push((in_group, end));
                    in_group = 0;
                }
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

impl Store {
    /// The feed after `after` restricted to `scope`, as `peer` should see
    /// it (`None`: a caller bootstrapping the scope gets its own changes
    /// too): at most about `limit` changes and `max_bytes`, whole groups
    /// (their part inside the scope). It reads in proportion to the scope,
    /// never the whole feed: the scope's rows (a range of `records-3`) when
    /// they are fewer than the feed entries after `after`, the feed after
    /// `after` otherwise, looking at an entry's record key before reading
    /// its record. `through` is the end of the last group sent when the
    /// slice stops early, the feed's head otherwise.
    pub(crate) fn scope_slice(
        &self,
        peer: Option<ReplicaId>,
        scope: &Scope,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<FeedSlice, StorageError> {
        let read = self.begin_read()?;
        let tables = self.feed_tables(&read)?;
        let head = match tables.feed.last()? {
            Some((lsn, _)) => lsn.value(),
            None => 0,
        };
        let mut range = keys::collection(&scope.collection);
        range.extend_from_slice(scope.prefix.as_bytes());
        let end = keys::prefix_end(&range);
        let limit = limit.max(1);
        // The entries of the scope after `after`, in lsn order, up to the
        // group that reaches `limit`: (lsn, group end, record key).
        let budget = head.saturating_sub(after);
        let entries = match self.scope_rows(&tables, &range, &end, after, budget, limit)? {
            Some(entries) => entries,
            None => scope_walk(&tables, &range, after, limit)?,
        };
        let refused = match peer {
            Some(peer) => self.refused_by(peer)?,
            None => Default::default(),
        };
        let mut changes = Vec::new();
        let mut groups: Vec<(u32, u64)> = Vec::new();
        let mut bytes = 0usize;
        let mut through = head;
        let mut has_more = false;
        let mut oversized = false;
        let mut at = 0;
        while at < entries.len() {
            let group = entries[at].1;
            let (mut group_changes, mut group_bytes) = (Vec::new(), 0usize);
            while at < entries.len() && entries[at].1 == group {
                let (lsn, _, record) = &entries[at];
                let (held, size) = rows::entry_changes_sized(
                    &tables.records,
                    &tables.log,
                    &tables.origins,
                    *lsn,
                    record,
                )?;
                group_bytes = group_bytes.saturating_add(size);
                for h in held {
                    let goes = match peer {
                        None => true,
                        Some(peer) => pushable(peer, &h, &|_, _| true),
                    };
                    if goes && !refused.contains(&slot(&h.change)) {
                        group_changes.push(h.change);
                    }
                }
                at += 1;
            }
            if !changes.is_empty() && bytes.saturating_add(group_bytes) > max_bytes {
                // This group takes the slice past the bound: leave it.
                through = groups.last().map_or(after, |g| g.1).max(after);
                has_more = true;
                break;
            }
            bytes = bytes.saturating_add(group_bytes);
            if !group_changes.is_empty() {
                groups.push((group_changes.len() as u32, group));
                changes.extend(group_changes);
            } else {
                groups.push((0, group));
            }
            if group_bytes > max_bytes && groups.len() == 1 {
                // One group larger than a batch: it travels in parts.
                oversized = true;
                through = group;
                has_more = true;
                break;
            }
            if changes.len() >= limit || bytes >= max_bytes {
                through = group;
                has_more = at < entries.len() || group < head;
                break;
            }
        }
        if !has_more && entries.len() >= limit {
            // The entries were cut at `limit`: more may follow.
            if let Some(last) = entries.last() {
                through = last.1;
                has_more = through < head;
            }
        }
        groups.retain(|g| g.0 > 0);
        Ok(FeedSlice {
            changes,
            groups,
            through,
            has_more,
            oversized,
        })
    }

    /// The scope's entries after `after` read from its rows (`range` to
    /// `end` in `records-3`), up to the group that reaches `limit`; `None`
    /// when the scope has more rows than `budget` (the feed entries after
    /// `after`): walking the feed costs less then.
    fn scope_rows(
        &self,
        tables: &FeedTables<'_>,
        range: &[u8],
        end: &[u8],
        after: u64,
        budget: u64,
        limit: usize,
    ) -> Result<Option<Vec<ScopeEntry>>, StorageError> {
        let mut found: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut seen = 0u64;
        for entry in tables.records.range(range..end)? {
            seen += 1;
            if seen > budget {
                return Ok(None);
            }
            let (k, v) = entry?;
            let lsn = tables::row_lsn(v.value())?;
            if lsn > after {
                found.push((lsn, k.value().to_vec()));
            }
        }
        found.sort_unstable_by_key(|f| f.0);
        let mut out = Vec::with_capacity(found.len().min(limit * 2));
        let mut cut: Option<u64> = None;
        for (lsn, record) in found {
            if cut.is_some_and(|g| lsn > g) {
                break;
            }
            let group = group_of(&tables.feed, lsn)?;
            out.push((lsn, group, record));
            if cut.is_none() && out.len() >= limit {
                cut = Some(group);
            }
        }
        Ok(Some(out))
    }

    /// Whether any live feed entry in `after+1..=through` is of a record
    /// in one of `scopes`, by its record key; yes past
    /// [`SCOPE_WALK`] entries.
    pub(crate) fn scopes_moved(
        &self,
        scopes: &[Scope],
        after: u64,
        through: u64,
    ) -> Result<bool, StorageError> {
        let prefixes: Vec<Vec<u8>> = scopes
            .iter()
            .map(|s| {
                let mut p = keys::collection(&s.collection);
                p.extend_from_slice(s.prefix.as_bytes());
                p
            })
            .collect();
        let read = self.begin_read()?;
        let feed = read.open_table(FEED)?;
        let mut walked = 0usize;
        let mut moved = false;
        rows::walk_feed(&feed, after, |step| {
            if step.lsn > through {
                return Ok(false);
            }
            walked += 1;
            moved = walked > SCOPE_WALK
                || (!step.row.is_marker()
                    && prefixes
                        .iter()
                        .any(|p| step.row.record.as_bytes().starts_with(p)));
            Ok(!moved)
        })?;
        Ok(moved)
    }

    /// `peer`'s pull cursor of `scope` (0: never pulled).
    pub(crate) fn scope_cursor(&self, peer: ReplicaId, scope: &Scope) -> Result<u64, StorageError> {
        let read = self.begin_read()?;
        let table = match read.open_table(tables::SCOPES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let key = tables::scope_key(peer, scope);
        Ok(table.get(key.as_slice())?.map_or(0, |g| g.value()))
    }

    /// How far this replica has pulled each of its remotes, and as of
    /// which of its lsns (`relayed-3`).
    /// Each as (remote, pulled through, at).
    pub(crate) fn relayed(&self) -> Result<Vec<(ReplicaId, u64, u64)>, StorageError> {
        let read = self.begin_read()?;
        let table = match read.open_table(tables::RELAYED) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in ReadableTable::iter(&table)? {
            let (k, v) = entry?;
            let v = v.value();
            let half = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v[at..at + 8]);
                u64::from_le_bytes(b)
            };
            out.push((ReplicaId::from_bytes(*k.value()), half(0), half(8)));
        }
        Ok(out)
    }

    /// Every scope cursor kept for `peer`.
    pub(crate) fn scope_cursors(&self, peer: ReplicaId) -> Result<Vec<(Scope, u64)>, StorageError> {
        let read = self.begin_read()?;
        let table = match read.open_table(tables::SCOPES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let lo = peer.as_bytes().to_vec();
        let hi = keys::prefix_end(&lo);
        let mut out = Vec::new();
        for entry in table.range(lo.as_slice()..hi.as_slice())? {
            let (k, v) = entry?;
            let rest = k
                .value()
                .get(16..)
                .ok_or_else(|| keys::malformed(tables::SCOPES.name(), k.value()))?;
            let (collection, prefix) = keys::split_record(tables::SCOPES.name(), rest)?;
            out.push((Scope::prefix(collection, prefix), v.value()));
        }
        Ok(out)
    }

    /// The lsn just before the group that ends at `end` (where a walk to
    /// read that group starts), or `None` when `end` ends no group.
    pub(crate) fn before_group(&self, end: u64) -> Result<Option<u64>, StorageError> {
        let read = self.begin_read()?;
        let feed = read.open_table(FEED)?;
        let Some(bytes) = feed.get(end)? else {
            return Ok(None);
        };
        let row: FeedRow = tables::decode(FEED.name(), bytes.value())?;
        Ok(row
            .group
            .filter(|_| row.end == 0)
            .map(|g| end.saturating_sub(g.span)))
    }
}

/// A feed entry of a scope: its lsn, the lsn that ends its group, and its
/// record key.
type ScopeEntry = (u64, u64, Vec<u8>);

/// The group end of the live feed entry at `lsn`.
fn group_of(feed: &ReadOnlyTable<u64, &'static [u8]>, lsn: u64) -> Result<u64, StorageError> {
    let bad = || StorageError::Invalid {
        table: FEED.name(),
        reason: Inconsistency::FeedRecord { lsn },
    };
    let bytes = feed.get(lsn)?.ok_or_else(bad)?;
    let row: FeedRow = tables::decode(FEED.name(), bytes.value())?;
    Ok(lsn.saturating_add(row.end))
}

/// The scope's entries after `after` read by walking the feed, up to the
/// group that reaches `limit`: an entry's record key (`range` is the
/// scope's prefix of record keys) decides before its record is read.
fn scope_walk(
    tables: &FeedTables<'_>,
    range: &[u8],
    after: u64,
    limit: usize,
) -> Result<Vec<ScopeEntry>, StorageError> {
    let mut out = Vec::new();
    rows::walk_feed(&tables.feed, after, |step| {
        if !step.row.is_marker() && step.row.record.as_bytes().starts_with(range) {
            out.push((step.lsn, step.group, step.row.record.as_bytes().to_vec()));
        }
        Ok(!(step.group_end && out.len() >= limit))
    })?;
    Ok(out)
}

/// How many feed entries a scoped subscription's check reads before it
/// answers "moved" without looking further.
const SCOPE_WALK: usize = 4096;

/// What [`Store::feed_scan`] read.
#[derive(Debug)]
pub(crate) struct Scanned {
    /// The changes, in feed order.
    pub(crate) entries: Vec<FeedEntry>,
    /// For each entry that ends a group, in order, the lsn that ends the
    /// group (its last entry may be a marker).
    pub(crate) ends: Vec<u64>,
    /// About their size on the wire.
    pub(crate) bytes: usize,
    /// The lsn they cover through.
    pub(crate) through: u64,
}

/// A change's slot: (collection, key, stamp, origin).
pub(crate) type Slot = (String, Key, Stamp, ReplicaId);

/// The slot of a change.
pub(crate) fn slot(c: &Change) -> Slot {
    (c.collection.clone(), c.key.clone(), c.stamp, c.id.origin)
}

/// Whether a held change goes to `peer`: not received from it, not made
/// by it, and in a collection it wants.
pub(crate) fn pushable(peer: ReplicaId, held: &Held, wanted: &dyn Fn(&str, &Key) -> bool) -> bool {
    held.source != Some(peer)
        && held.change.id.origin != peer
        && wanted(&held.change.collection, &held.change.key)
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
    /// [`pushable`]), about `max_bytes` long (at least one change). A
    /// group's entries keep their places while the transfer lasts: a record
    /// that moves on leaves a marker that holds the positions of the
    /// changes its entry sent, and sends nothing (the record comes later,
    /// with its new entry). A part that crosses markers covers more
    /// positions than it sends changes, so the peer's next offset may repeat
    /// some (duplicates, which it takes as such); an offset never skips one.
    /// `None` when no group follows `after`.
    pub(crate) fn group_part(
        &self,
        peer: Option<ReplicaId>,
        after: u64,
        wanted: &dyn Fn(&str, &Key) -> bool,
        offset: u32,
        max_bytes: usize,
    ) -> Result<Option<GroupPart>, StorageError> {
        let read = self.begin_read()?;
        let tables = self.feed_tables(&read)?;
        let mut transfer = None;
        // The group's positions for this peer, in order: a change, or the
        // place of one a marker's entry sent (its record moved on since).
        let mut positions: Vec<Option<(Change, usize)>> = Vec::new();
        rows::walk_feed(&tables.feed, after, |step| {
            if transfer.is_some_and(|t| t != step.group) {
                return Ok(false);
            }
            transfer = Some(step.group);
            match &step.row.moved {
                Some(sent) => {
                    let wanted_here = !step.row.record.is_empty() && {
                        let (collection, key) =
                            keys::split_record(FEED.name(), step.row.record.as_bytes())?;
                        wanted(&collection, &key)
                    };
                    for (origin, source) in sent {
                        let origin = tables.origins.resolve(*origin)?;
                        let source = source.map(|s| tables.origins.resolve(s)).transpose()?;
                        let theirs = peer.is_some_and(|p| origin == p || source == Some(p));
                        if wanted_here && !theirs {
                            positions.push(None);
                        }
                    }
                }
                None => {
                    let (held, size) = tables.entry(&step)?;
                    let each = size / held.len().max(1);
                    for h in held {
                        let goes = match peer {
                            None => wanted(&h.change.collection, &h.change.key),
                            Some(peer) => pushable(peer, &h, wanted),
                        };
                        if goes {
                            positions.push(Some((h.change, each)));
                        }
                    }
                }
            }
            Ok(!step.group_end)
        })?;
        let Some(transfer) = transfer else {
            return Ok(None);
        };
        let total = positions.len();
        let start = (offset as usize).min(total);
        let mut size = 0usize;
        let mut take = 0;
        let mut out = Vec::new();
        for position in positions.into_iter().skip(start) {
            if let Some((change, len)) = position {
                if !out.is_empty() && size.saturating_add(len) > max_bytes {
                    break;
                }
                size = size.saturating_add(len);
                out.push(change);
            }
            take += 1;
        }
        let last = start + take >= total;
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
    /// [`pushable`]): what its next push carries.
    pub(crate) fn pending_for(
        &self,
        peer: ReplicaId,
        after: u64,
        wanted: &dyn Fn(&str, &Key) -> bool,
    ) -> Result<u64, StorageError> {
        let read = self.begin_read()?;
        let tables = self.feed_tables(&read)?;
        // What the peer refused is not pushed again (see `feed_for`).
        let refused = self.refused_by(peer)?;
        let mut count = 0u64;
        rows::walk_feed(&tables.feed, after, |step| {
            if !step.row.is_marker() {
                let (held, _) = tables.entry(&step)?;
                count += held
                    .iter()
                    .filter(|h| pushable(peer, h, wanted) && !refused.contains(&slot(&h.change)))
                    .count() as u64;
            }
            Ok(true)
        })?;
        Ok(count)
    }

    /// The slots of every change `peer` refused (discarded refusals
    /// included).
    pub(crate) fn refused_by(
        &self,
        peer: ReplicaId,
    ) -> Result<std::collections::BTreeSet<Slot>, StorageError> {
        let read = self.begin_read()?;
        let table = match read.open_table(REJECTED) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Default::default()),
            Err(e) => return Err(e.into()),
        };
        let mut out = std::collections::BTreeSet::new();
        let lo = tables::rejected_key(peer, 0);
        let hi = tables::rejected_key(peer, u64::MAX);
        for entry in table.range(lo.as_slice()..=hi.as_slice())? {
            let (_, v) = entry?;
            let body: RejectedBody = tables::decode(REJECTED.name(), v.value())?;
            out.extend(body.changes.iter().map(slot));
        }
        Ok(out)
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
        for entry in ReadableTable::iter(&table)? {
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
}

/// The (peer, lsn) of a `rejected-3` key.
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

/// One entry of a walk over `records-3`.
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

#[cfg(test)]
mod tests {
    use crate::{CollectionConfig, Key, Replica, ReplicaConfig, ReplicaId};

    /// A group read in parts keeps its shape while records in it move on:
    /// a part never skips or repeats a change of the group that is still
    /// there, and records that moved on arrive later with their new entries.
    #[test]
    fn parts_of_a_group_keep_their_offsets_while_records_move_on() {
        let r = Replica::in_memory(ReplicaConfig::default()).unwrap();
        let c = r
            .define_collection("c", CollectionConfig::default())
            .unwrap();
        let mut txn = r.transaction();
        for i in 0..10 {
            txn.put("c", format!("k{i}"), i64::from(i));
        }
        txn.commit().unwrap();
        let peer = Some(ReplicaId::from_bytes([9; 16]));
        let all = |_: &str, _: &Key| true;
        let store = r.store();
        // Parts of about three changes each.
        let size = store
            .group_part(peer, 0, &all, 0, usize::MAX)
            .unwrap()
            .unwrap();
        assert_eq!(size.changes.len(), 10);
        let one = crate::codec::encoded_len(&size.changes[0]) * 3;
        let first = store.group_part(peer, 0, &all, 0, one).unwrap().unwrap();
        let mut got: Vec<Key> = first.changes.iter().map(|c| c.key.clone()).collect();
        assert!(!first.last && got.len() < 10);
        // Meanwhile a record already sent and one not yet sent move on.
        c.put("k1", 100i64).unwrap();
        c.put("k7", 700i64).unwrap();
        let mut offset = first.offset + first.changes.len() as u32;
        loop {
            let part = store
                .group_part(peer, 0, &all, offset, one)
                .unwrap()
                .unwrap();
            assert_eq!(part.transfer, first.transfer, "the same group");
            got.extend(part.changes.iter().map(|c| c.key.clone()));
            offset += part.changes.len() as u32;
            if part.last {
                break;
            }
        }
        let want: Vec<Key> = (0..10)
            .filter(|i| *i != 7)
            .map(|i| Key::from(format!("k{i}")))
            .collect();
        assert_eq!(got, want, "k7 moved on before its part: it comes later");
        // The moved records come after the group, with their new values.
        let rest = store.feed_scan(first.transfer, 100, usize::MAX).unwrap();
        let keys: Vec<Key> = rest.entries.iter().map(|e| e.change.key.clone()).collect();
        assert_eq!(keys, [Key::from("k1"), Key::from("k7")]);
    }
}
