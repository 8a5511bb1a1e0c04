//! The write path inside one redb transaction: the one way changes enter
//! the tables (record rows, the log of what merge still needs, the feed),
//! and the other writes a commit may make (peer cursors, collection
//! definitions, refused groups, staged parts).

use std::collections::{BTreeSet, HashMap};

use redb::{ReadableTable, TableHandle, WriteTransaction};

use super::WriteState;
use super::keys;
use super::rows::{self, Origins, Resolve};
use super::tables::{
    self, COLLECTIONS, FEED, FeedRow, GroupInfo, Kept, LOG, LogBody, LogBodyRef, ORIGINS, PEERS,
    PeerState, RECORDS, REJECTED, RecordRow, RejectedBody, STAGED, StoredVersion,
};
use crate::clock::Stamp;
use crate::codec;
use crate::error::{Inconsistency, StorageError};
use crate::merge::{RecordState, Rule, merge_one};
use crate::model::{Change, ChangeId, CollectionConfig, History, Key, Op, ReplicaId, Version};

/// What storing one change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Kept, and the record's feed entry moved to this lsn; this many
    /// conflicts recorded (0 or 1).
    Stored {
        /// The record's new lsn.
        lsn: u64,
        /// Conflicts recorded.
        conflicts: usize,
        /// Whether the entry now also carries changes held from before
        /// (a winner kept, conflicts, field winners).
        carried: bool,
    },
    /// Merged, but what the record holds already supersedes it: nothing
    /// changed (at most, history kept it).
    Superseded,
    /// The record holds the same change: nothing was written.
    Duplicate,
    /// Stamped below the collection mark, for a record not held: it could
    /// resurrect a collected record. The error this becomes aborts the
    /// transaction.
    BeyondHorizon,
    /// The record holds a different change in its slot (record, stamp,
    /// origin). The error this becomes aborts the transaction.
    Conflicting,
}

/// How a policy's changes are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Record-level: the row holds the winner; the log holds losing changes
    /// that are conflicts, and the change that set `seen`.
    Record,
    /// Field-level: the log holds each field's winner, the newest delete,
    /// the greatest version and the change that set `seen`.
    Field,
    /// Automerge: the log holds every change.
    #[cfg(feature = "automerge")]
    All,
}

impl Kind {
    fn of(rule: &Rule) -> Self {
        match rule {
            Rule::FieldLww => Self::Field,
            #[cfg(feature = "automerge")]
            Rule::Automerge => Self::All,
            _ => Self::Record,
        }
    }
}

/// A change about to be logged: its version, base, op and source.
struct Entry<'a> {
    version: StoredVersion,
    base: Stamp,
    op: &'a Op,
    source: Option<u32>,
}

/// The tables of one write transaction, and the one way changes enter them.
pub(crate) struct Writer<'txn> {
    records: redb::Table<'txn, &'static [u8], &'static [u8]>,
    log: redb::Table<'txn, &'static [u8], &'static [u8]>,
    feed: redb::Table<'txn, u64, &'static [u8]>,
    txn: &'txn WriteTransaction,
    /// The origin numbers committed before this transaction.
    origins: &'txn Origins,
    /// The origins this transaction numbers, from `origins.len()` on.
    added: Vec<ReplicaId>,
    /// The collections' history settings, read on first use.
    histories: HashMap<String, History>,
    /// One buffer for encoded values and two for keys, for the whole
    /// transaction.
    scratch: Vec<u8>,
    key: Vec<u8>,
    log_key: Vec<u8>,
    /// The first lsn this commit gives.
    first: u64,
    /// [`Writer::acked_floor`], read on first use.
    acked_floor: Option<u64>,
    /// The entries of this commit's feed group, by `lsn - first`: the
    /// record key, or `None` when the record moved on within the commit.
    group: Vec<Option<Vec<u8>>>,
}

impl Resolve for Writer<'_> {
    fn resolve(&self, n: u32) -> Result<ReplicaId, StorageError> {
        match self.origins.id(n) {
            Some(id) => Ok(id),
            None => n
                .checked_sub(self.origins.len())
                .and_then(|i| self.added.get(i as usize).copied())
                .ok_or_else(|| rows::unknown_origin(n)),
        }
    }
}

impl<'txn> Writer<'txn> {
    pub(crate) fn open(
        txn: &'txn WriteTransaction,
        origins: &'txn Origins,
        lsn: u64,
    ) -> Result<Self, StorageError> {
        Ok(Self {
            records: txn.open_table(RECORDS)?,
            log: txn.open_table(LOG)?,
            feed: txn.open_table(FEED)?,
            txn,
            origins,
            added: Vec::new(),
            histories: HashMap::new(),
            scratch: Vec::with_capacity(256),
            key: Vec::with_capacity(64),
            log_key: Vec::with_capacity(64),
            first: lsn + 1,
            acked_floor: None,
            group: Vec::new(),
        })
    }

    /// The origins this transaction numbered, in order: the caller adds them
    /// to the committed ones after the commit.
    pub(crate) fn take_added(&mut self) -> Vec<ReplicaId> {
        std::mem::take(&mut self.added)
    }

    /// The lowest push cursor among the peers (0 with none): every entry at
    /// or below it was acknowledged by all of them.
    fn acked_floor(&mut self) -> Result<u64, StorageError> {
        if let Some(floor) = self.acked_floor {
            return Ok(floor);
        }
        let table = self.txn.open_table(PEERS)?;
        let mut floor: Option<u64> = None;
        for entry in table.iter()? {
            let (_, v) = entry?;
            let p: PeerState = tables::decode(PEERS.name(), v.value())?;
            floor = Some(floor.map_or(p.pushed, |f| f.min(p.pushed)));
        }
        let floor = floor.unwrap_or(0);
        self.acked_floor = Some(floor);
        Ok(floor)
    }

    /// The number of `id`, given now if it has none.
    fn number(&mut self, id: ReplicaId) -> Result<u32, StorageError> {
        if let Some(n) = self.origins.number(id) {
            return Ok(n);
        }
        let len = self.origins.len();
        if let Some(i) = self.added.iter().position(|a| *a == id) {
            return Ok(len + i as u32);
        }
        let n = len + u32::try_from(self.added.len()).unwrap_or(u32::MAX);
        self.txn.open_table(ORIGINS)?.insert(n, id.as_bytes())?;
        self.added.push(id);
        Ok(n)
    }

    /// The number of `id` if it has one, without giving one.
    fn known_number(&self, id: ReplicaId) -> Option<u32> {
        self.origins.number(id).or_else(|| {
            self.added
                .iter()
                .position(|a| *a == id)
                .map(|i| self.origins.len() + i as u32)
        })
    }

    fn stored(&mut self, v: Version) -> Result<StoredVersion, StorageError> {
        Ok(StoredVersion {
            stamp: v.stamp,
            origin: self.number(v.id.origin)?,
            seq: v.id.seq,
        })
    }

    /// The history `collection` keeps.
    fn history_of(&mut self, collection: &str) -> Result<History, StorageError> {
        if let Some(h) = self.histories.get(collection) {
            return Ok(*h);
        }
        let history = match self.txn.open_table(COLLECTIONS)?.get(collection)? {
            Some(bytes) => {
                tables::decode::<CollectionConfig>(COLLECTIONS.name(), bytes.value())?.history
            }
            None => History::Merge,
        };
        self.histories.insert(collection.to_string(), history);
        Ok(history)
    }

    /// A record's row.
    pub(crate) fn row(
        &mut self,
        collection: &str,
        key: &Key,
    ) -> Result<Option<RecordRow>, StorageError> {
        keys::record_into(&mut self.key, collection, key.as_bytes());
        self.read_row()
    }

    /// The row under the record key in `self.key`.
    fn read_row(&self) -> Result<Option<RecordRow>, StorageError> {
        match self.records.get(self.key.as_slice())? {
            Some(g) => Ok(Some(tables::decode(RECORDS.name(), g.value())?)),
            None => Ok(None),
        }
    }

    /// The merged state a row holds.
    pub(crate) fn state_of(&self, row: &RecordRow) -> Result<RecordState, StorageError> {
        rows::state_of(row, self)
    }

    /// The greatest stamp among the record's changes held here (zero for
    /// none): the row's version, or a logged change's.
    pub(crate) fn latest_stamp(
        &self,
        collection: &str,
        key: &Key,
        row: &RecordRow,
    ) -> Result<Stamp, StorageError> {
        let mut latest = row.version.stamp;
        if row.logged > 0 {
            let prefix = keys::log_prefix(collection, key.as_bytes());
            let end = keys::prefix_end(&prefix);
            if let Some(entry) = self
                .log
                .range(prefix.as_slice()..end.as_slice())?
                .next_back()
            {
                let (stamp, _) = keys::split_log_tail(LOG.name(), entry?.0.value())?;
                latest = latest.max(Stamp::from_u64(stamp));
            }
        }
        Ok(latest)
    }

    /// Stores a change from elsewhere, unless the record holds it already:
    /// merges it into the record's row, keeps what merge still needs in the
    /// log, and moves the record's feed entry when anything changed.
    pub(crate) fn store(
        &mut self,
        state: &mut WriteState,
        rule: &Rule,
        change: &Change,
        source: Option<ReplicaId>,
        now_ms: u64,
    ) -> Result<Outcome, StorageError> {
        keys::record_into(&mut self.key, &change.collection, change.key.as_bytes());
        if change.stamp < state.collected {
            // Older than the horizon: only a record held may take it.
            let Some(row) = self.read_row()? else {
                return Ok(Outcome::BeyondHorizon);
            };
            if let Some(held) = self.held(&row, change)? {
                return Ok(held);
            }
            return self.merge(state, rule, change, source, Some(row), now_ms, false);
        }
        let row = if Kind::of(rule) == Kind::Record {
            // Most remote changes of record-level policies are new records
            // (an initial sync): write the row the change makes on its own,
            // and redb's insert hands back the row it replaced, if any: one
            // B-tree walk instead of a read and a write.
            let lsn = state.lsn + 1;
            let mine = RecordRow {
                lsn,
                version: self.stored(change.version())?,
                base: change.base,
                source: source.map(|s| self.number(s)).transpose()?,
                value: crate::merge::record_value(&change.op),
                fields: Vec::new(),
                tombstone: None,
                seen: change.base,
                seen_by: None,
                winner: true,
                logged: 0,
                pending: false,
                purged: matches!(change.op, Op::Purge),
            };
            self.scratch.clear();
            codec::encode_into(&mine, &mut self.scratch);
            let old = self
                .records
                .insert(self.key.as_slice(), self.scratch.as_slice())?
                .map(|old| old.value().to_vec());
            let Some(old) = old else {
                state.lsn = lsn;
                self.group.push(Some(self.key.clone()));
                return Ok(Outcome::Stored {
                    lsn,
                    conflicts: 0,
                    carried: false,
                });
            };
            // Not new: merge as usual; whatever the merge leaves as it was
            // gets the old row back.
            let row: RecordRow = tables::decode(RECORDS.name(), &old)?;
            if let Some(held) = self.held(&row, change)? {
                self.write_row(&row)?;
                return Ok(held);
            }
            return self.merge(state, rule, change, source, Some(row), now_ms, true);
        } else {
            self.read_row()?
        };
        if let Some(row) = &row
            && let Some(held) = self.held(row, change)?
        {
            return Ok(held);
        }
        self.merge(state, rule, change, source, row, now_ms, false)
    }

    /// Stores a change made here just now: its stamp is new by construction,
    /// and `row` is the record's row the caller read (with [`Writer::row`],
    /// which leaves its key in place).
    pub(crate) fn store_fresh(
        &mut self,
        state: &mut WriteState,
        rule: &Rule,
        change: &Change,
        row: Option<RecordRow>,
        now_ms: u64,
    ) -> Result<Outcome, StorageError> {
        keys::record_into(&mut self.key, &change.collection, change.key.as_bytes());
        self.merge(state, rule, change, None, row, now_ms, false)
    }

    /// Whether the record holds `change`'s slot: the same change
    /// (`Duplicate`) or another (`Conflicting`). `None` when it does not:
    /// the change is new, or was superseded and dropped.
    fn held(&mut self, row: &RecordRow, change: &Change) -> Result<Option<Outcome>, StorageError> {
        let Some(origin) = self.known_number(change.id.origin) else {
            return Ok(None);
        };
        let same_op = |a: &Op, b: &Op| a == b || codec::encode(a) == codec::encode(b);
        if row.winner && row.version.stamp == change.stamp && row.version.origin == origin {
            let same = row.version.seq == change.id.seq
                && row.base == change.base
                && same_op(&rows::winner_op(row), &change.op);
            return Ok(Some(if same {
                Outcome::Duplicate
            } else {
                Outcome::Conflicting
            }));
        }
        if row.logged == 0 {
            return Ok(None);
        }
        keys::log_into(
            &mut self.log_key,
            &change.collection,
            change.key.as_bytes(),
            change.stamp.as_u64(),
            origin,
        );
        let Some(bytes) = self.log.get(self.log_key.as_slice())? else {
            return Ok(None);
        };
        let body: LogBody = tables::decode(LOG.name(), bytes.value())?;
        if body.kept != Kept::Merge {
            // Kept only here (history, undo): merge holds no such change,
            // and merging it again is what a first arrival would do.
            return Ok(None);
        }
        let same =
            body.seq == change.id.seq && body.base == change.base && same_op(&body.op, &change.op);
        Ok(Some(if same {
            Outcome::Duplicate
        } else {
            Outcome::Conflicting
        }))
    }

    /// Merges a change the record does not hold into it (its record key in
    /// `self.key`). With `restore`, the stored row is not `row` and must be
    /// written back unless the merge writes the record anyway.
    #[allow(clippy::too_many_arguments)]
    fn merge(
        &mut self,
        state: &mut WriteState,
        rule: &Rule,
        change: &Change,
        source: Option<ReplicaId>,
        row: Option<RecordRow>,
        now_ms: u64,
        restore: bool,
    ) -> Result<Outcome, StorageError> {
        let kind = Kind::of(rule);
        let before = row.as_ref().map(|r| self.state_of(r)).transpose()?;
        let next = merge_one(rule, before.as_ref(), change);
        let Some(after) = next.as_ref().or(before.as_ref()) else {
            return Err(StorageError::Invalid {
                table: RECORDS.name(),
                reason: Inconsistency::NoFirstState,
            });
        };
        let v = change.version();
        let history = self.history_of(&change.collection)?;
        let source = source.map(|s| self.number(s)).transpose()?;
        let mine = Entry {
            version: self.stored(v)?,
            base: change.base,
            op: &change.op,
            source,
        };
        let won = after.version == v;
        // The base and source of the change at the record's version.
        let (version_base, version_source) = match &row {
            Some(r) if !won => (r.base, r.source),
            _ => (change.base, source),
        };
        // The change whose base set `seen`, when that is not the change at
        // the version: merge keeps it.
        let seen_by = if after.seen == Stamp::ZERO || version_base == after.seen {
            None
        } else if change.base == after.seen {
            Some(mine.version)
        } else {
            match &row {
                Some(r) if r.seen_by.is_some() => r.seen_by,
                Some(r) => Some(r.version),
                None => None,
            }
        };
        let mut logged = row.as_ref().map_or(0, |r| r.logged);
        let mut moved = next.is_some();
        // What the record's entry sends now, before this change alters the
        // log: its marker's positions, should the entry move on.
        let sent = match &row {
            Some(r) if r.lsn < self.first => self.sent_by(r)?,
            _ => Vec::new(),
        };
        let local = source.is_none() && mine.version.origin == 0;
        // Whether the record has a local write no push has settled yet
        // (acknowledged; a refused one stays unsettled until it is retried
        // or discarded).
        let unsettled = row.as_ref().is_some_and(|r| r.pending);
        // This replica's own winner is what peers hold when every peer
        // acknowledged the record's entry; otherwise no peer needs it back.
        let acked = match (&row, local) {
            (Some(r), true) => r.lsn <= self.acked_floor()?,
            _ => false,
        };
        // What becomes of a change merge no longer needs. While a local
        // write is unacknowledged, the record keeps what it replaced (and
        // what arrives superseded by it) that peers may hold: if a peer
        // refuses the write, discarding the refusal rebuilds the record
        // from them. Others' changes always; its own when every peer
        // acknowledged them. Otherwise the collection's history may keep it.
        // A purge erases what it replaces; and nothing older than a purge
        // that stands is kept, not even as history.
        let purging = matches!(change.op, Op::Purge);
        let under_purge = |stamp: Stamp| {
            purging
                || row
                    .as_ref()
                    .is_some_and(|r| r.purged && stamp <= r.version.stamp)
        };
        let fate = |origin: u32, stamp: Stamp| {
            if under_purge(stamp) {
                None
            } else if (local && (origin != 0 || acked)) || (!local && unsettled) {
                Some(Kept::Undo)
            } else if keeps(history, stamp, now_ms) {
                Some(Kept::History)
            } else {
                None
            }
        };
        let mut conflicts = 0;
        let record_key = std::mem::take(&mut self.key);
        let (collection, key) = (change.collection.as_str(), change.key.as_bytes());
        match kind {
            Kind::Record => {
                if !won {
                    if change.stamp > after.seen {
                        logged += self.put_log(collection, key, &mine, Kept::Merge)?;
                        conflicts += 1;
                        moved = true;
                    } else if seen_by == Some(mine.version) {
                        logged += self.put_log(collection, key, &mine, Kept::Merge)?;
                        moved = true;
                    } else if let Some(kept) = fate(mine.version.origin, v.stamp) {
                        logged += self.put_log(collection, key, &mine, kept)?;
                    }
                } else if let Some(old) = &row {
                    // The old winner loses: a conflict when nothing saw it.
                    let op = rows::winner_op(old);
                    let loser = Entry {
                        version: old.version,
                        base: old.base,
                        op: &op,
                        source: old.source,
                    };
                    let kept = if old.version.stamp > after.seen {
                        conflicts += 1;
                        Some(Kept::Merge)
                    } else if seen_by == Some(old.version) {
                        Some(Kept::Merge)
                    } else {
                        fate(old.version.origin, old.version.stamp)
                    };
                    if let Some(kept) = kept {
                        logged += self.put_log(collection, key, &loser, kept)?;
                    }
                }
                // Changes at or below a raised `seen` are no conflicts any more.
                if logged > 0 && before.as_ref().is_some_and(|b| after.seen > b.seen) {
                    logged -= self.demote(collection, key, after.seen, seen_by, &fate)?;
                }
            }
            Kind::Field => {
                let needed_after = self.needed(after, seen_by)?;
                if needed_after.contains(&mine.version) {
                    logged += self.put_log(collection, key, &mine, Kept::Merge)?;
                    moved = true;
                } else if let Some(kept) = fate(mine.version.origin, v.stamp) {
                    logged += self.put_log(collection, key, &mine, kept)?;
                }
                if let (Some(before), Some(old)) = (&before, &row) {
                    let needed_before = self.needed(before, old.seen_by)?;
                    for gone in needed_before.difference(&needed_after) {
                        let kept = fate(gone.origin, gone.stamp);
                        logged -= self.drop_needed(collection, key, *gone, kept)?;
                    }
                }
            }
            #[cfg(feature = "automerge")]
            Kind::All => {
                logged += self.put_log(collection, key, &mine, Kept::Merge)?;
                moved = true;
            }
        }
        // (Under `Merge`, this drops history kept under an earlier setting.)
        if logged > 0 {
            logged -= self.trim_history(collection, key, history, now_ms)?;
        }
        if purging && won && logged > 0 {
            // Everything the purge saw goes, whatever kept it (the purge
            // itself, logged under a field-level policy, stays).
            let prefix = keys::log_prefix(collection, key);
            let hi = keys::log(
                collection,
                key,
                change.stamp.as_u64().saturating_sub(1),
                u32::MAX,
            );
            let mut gone = 0u32;
            self.log
                .retain_in(prefix.as_slice()..=hi.as_slice(), |_, _| {
                    gone += 1;
                    false
                })?;
            logged = logged.saturating_sub(gone);
        }
        self.key = record_key;
        let pending = unsettled || local;
        if !moved {
            if let Some(mut r) = row
                && (restore || r.logged != logged || r.pending != pending)
            {
                r.logged = logged;
                r.pending = pending;
                self.write_row(&r)?;
            }
            return Ok(Outcome::Superseded);
        }
        if let Some(old) = &row {
            self.supersede(old.lsn, sent)?;
        }
        let lsn = self.next_entry(state);
        let version = self.stored(after.version)?;
        let fields = after
            .fields
            .iter()
            .map(|(f, v)| Ok((f.clone(), self.stored(*v)?)))
            .collect::<Result<_, StorageError>>()?;
        let tombstone = after.tombstone.map(|t| self.stored(t)).transpose()?;
        let seen = after.seen;
        // The merged state's value moves into the row (no copy) when the
        // merge made a new state.
        let value = match next {
            Some(next) => next.value,
            None => before.and_then(|b| b.value),
        };
        let next_row = RecordRow {
            lsn,
            version,
            base: version_base,
            source: version_source,
            value,
            fields,
            tombstone,
            seen,
            seen_by,
            winner: kind == Kind::Record,
            logged,
            pending,
            purged: if won {
                purging
            } else {
                row.as_ref().is_some_and(|r| r.purged)
            },
        };
        self.write_row(&next_row)?;
        Ok(Outcome::Stored {
            lsn,
            conflicts,
            carried: !won || logged > 0,
        })
    }

    /// The versions a field-level state needs kept: its version, each
    /// field's winner, the newest delete and the change that set `seen`.
    fn needed(
        &mut self,
        state: &RecordState,
        seen_by: Option<StoredVersion>,
    ) -> Result<BTreeSet<StoredVersion>, StorageError> {
        let mut out = BTreeSet::new();
        out.insert(self.stored(state.version)?);
        for v in state.fields.values() {
            out.insert(self.stored(*v)?);
        }
        if let Some(t) = state.tombstone {
            out.insert(self.stored(t)?);
        }
        out.extend(seen_by);
        Ok(out)
    }

    /// Logs a change of the record (collection, key); returns 1 when its
    /// slot was empty, 0 when it replaced an entry.
    fn put_log(
        &mut self,
        collection: &str,
        key: &[u8],
        entry: &Entry<'_>,
        kept: Kept,
    ) -> Result<u32, StorageError> {
        keys::log_into(
            &mut self.log_key,
            collection,
            key,
            entry.version.stamp.as_u64(),
            entry.version.origin,
        );
        self.scratch.clear();
        codec::encode_into(
            &LogBodyRef {
                seq: entry.version.seq,
                base: entry.base,
                op: entry.op,
                source: entry.source,
                kept,
            },
            &mut self.scratch,
        );
        if kept != Kept::Merge && self.log.get(self.log_key.as_slice())?.is_some() {
            // Kept already: a second arrival never rewrites it.
            return Ok(0);
        }
        let old = self
            .log
            .insert(self.log_key.as_slice(), self.scratch.as_slice())?;
        Ok(u32::from(old.is_none()))
    }

    /// A logged change merge no longer needs: kept as `kept` says, or
    /// removed. Returns how many entries went (0 or 1).
    fn drop_needed(
        &mut self,
        collection: &str,
        key: &[u8],
        version: StoredVersion,
        kept: Option<Kept>,
    ) -> Result<u32, StorageError> {
        keys::log_into(
            &mut self.log_key,
            collection,
            key,
            version.stamp.as_u64(),
            version.origin,
        );
        let Some(bytes) = self.log.get(self.log_key.as_slice())? else {
            return Ok(0);
        };
        let mut body: LogBody = tables::decode(LOG.name(), bytes.value())?;
        drop(bytes);
        if let Some(kept) = kept {
            body.kept = kept;
            let encoded = codec::encode(&body);
            self.log
                .insert(self.log_key.as_slice(), encoded.as_slice())?;
            return Ok(0);
        }
        self.log.remove(self.log_key.as_slice())?;
        Ok(1)
    }

    /// Demotes the record's changes kept for merge stamped at or below
    /// `seen`, but the one that set it: kept as `fate` says, or removed.
    /// Returns how many entries went.
    fn demote(
        &mut self,
        collection: &str,
        key: &[u8],
        seen: Stamp,
        seen_by: Option<StoredVersion>,
        fate: &dyn Fn(u32, Stamp) -> Option<Kept>,
    ) -> Result<u32, StorageError> {
        let lo = keys::log_prefix(collection, key);
        let hi = keys::log(collection, key, seen.as_u64(), u32::MAX);
        let mut found = Vec::new();
        for entry in self.log.range(lo.as_slice()..=hi.as_slice())? {
            let (k, v) = entry?;
            let (stamp, origin) = keys::split_log_tail(LOG.name(), k.value())?;
            let body: LogBody = tables::decode(LOG.name(), v.value())?;
            let version = StoredVersion {
                stamp: Stamp::from_u64(stamp),
                origin,
                seq: body.seq,
            };
            if body.kept == Kept::Merge && Some(version) != seen_by {
                found.push((k.value().to_vec(), version, body));
            }
        }
        let mut gone = 0;
        for (k, version, mut body) in found {
            match fate(version.origin, version.stamp) {
                Some(kept) => {
                    body.kept = kept;
                    self.log
                        .insert(k.as_slice(), codec::encode(&body).as_slice())?;
                }
                None => {
                    self.log.remove(k.as_slice())?;
                    gone += 1;
                }
            }
        }
        Ok(gone)
    }

    /// Trims a record's history to what `history` keeps. Returns how many
    /// entries went.
    fn trim_history(
        &mut self,
        collection: &str,
        key: &[u8],
        history: History,
        now_ms: u64,
    ) -> Result<u32, StorageError> {
        let prefix = keys::log_prefix(collection, key);
        let end = keys::prefix_end(&prefix);
        let mut kept = Vec::new();
        for entry in self.log.range(prefix.as_slice()..end.as_slice())? {
            let (k, v) = entry?;
            let body: LogBody = tables::decode(LOG.name(), v.value())?;
            if body.kept == Kept::History {
                let (stamp, _) = keys::split_log_tail(LOG.name(), k.value())?;
                kept.push((k.value().to_vec(), Stamp::from_u64(stamp)));
            }
        }
        let drop_before = match history {
            History::Merge => kept.len(),
            History::Last(n) => kept.len().saturating_sub(n as usize),
            History::For(_) => kept
                .iter()
                .take_while(|(_, stamp)| !keeps(history, *stamp, now_ms))
                .count(),
        };
        let mut gone = 0;
        for (k, _) in kept.into_iter().take(drop_before) {
            self.log.remove(k.as_slice())?;
            gone += 1;
        }
        Ok(gone)
    }

    /// Writes a record's row under the key in `self.key`.
    fn write_row(&mut self, row: &RecordRow) -> Result<(), StorageError> {
        self.scratch.clear();
        codec::encode_into(row, &mut self.scratch);
        self.records
            .insert(self.key.as_slice(), self.scratch.as_slice())?;
        Ok(())
    }

    /// Gives the record in `self.key` the next lsn in this commit's group.
    fn next_entry(&mut self, state: &mut WriteState) -> u64 {
        state.lsn += 1;
        self.group.push(Some(self.key.clone()));
        state.lsn
    }

    /// What a record's feed entry sends, as (origin number, source number)
    /// per change: the row's winner and the log's `Kept::Merge` entries.
    /// The record's key is in `self.key`.
    fn sent_by(&self, row: &RecordRow) -> Result<Vec<(u32, Option<u32>)>, StorageError> {
        let mut out = Vec::with_capacity(1);
        if row.winner {
            out.push((row.version.origin, row.source));
        }
        if row.logged > 0 {
            let (collection, key) = keys::split_record(RECORDS.name(), &self.key)?;
            let prefix = keys::log_prefix(&collection, key.as_bytes());
            let end = keys::prefix_end(&prefix);
            for entry in self.log.range(prefix.as_slice()..end.as_slice())? {
                let (k, v) = entry?;
                let body: LogBody = tables::decode(LOG.name(), v.value())?;
                if body.kept == Kept::Merge {
                    let (_, origin) = keys::split_log_tail(LOG.name(), k.value())?;
                    out.push((origin, body.source));
                }
            }
        }
        Ok(out)
    }

    /// The feed entry at `lsn` is no longer its record's (whose entry sent
    /// `sent`): it leaves the feed with its group, and meanwhile holds its
    /// place as a marker.
    fn supersede(&mut self, lsn: u64, sent: Vec<(u32, Option<u32>)>) -> Result<(), StorageError> {
        if lsn >= self.first {
            if let Some(slot) = self.group.get_mut((lsn - self.first) as usize) {
                *slot = None;
            }
            return Ok(());
        }
        let Some(bytes) = self.feed.get(lsn)? else {
            return Err(StorageError::Invalid {
                table: FEED.name(),
                reason: Inconsistency::FeedRecord { lsn },
            });
        };
        let row: FeedRow = tables::decode(FEED.name(), bytes.value())?;
        drop(bytes);
        let end = lsn.saturating_add(row.end);
        // The group's last entry carries its shape: this one, or read once.
        let mut end_row = if row.end == 0 {
            None
        } else {
            match self.feed.get(end)? {
                Some(b) => Some(tables::decode::<FeedRow>(FEED.name(), b.value())?),
                None => None,
            }
        };
        let broken = || StorageError::Invalid {
            table: FEED.name(),
            reason: Inconsistency::FeedRecord { lsn: end },
        };
        let mut info = match &end_row {
            Some(end_row) => end_row.group,
            None if row.end == 0 => row.group,
            None => None,
        }
        .ok_or_else(broken)?;
        info.alive = info.alive.saturating_sub(1);
        if info.alive == 0 || info.span <= 1 {
            let start = end.saturating_sub(info.span.saturating_sub(1));
            self.feed.retain_in(start..=end, |_, _| false)?;
            return Ok(());
        }
        let marker = FeedRow {
            record: row.record,
            end: row.end,
            group: (row.end == 0).then_some(info),
            moved: Some(sent),
        };
        self.feed.insert(lsn, codec::encode(&marker).as_slice())?;
        if let Some(end_row) = &mut end_row {
            end_row.group = Some(info);
            self.feed.insert(end, codec::encode(&*end_row).as_slice())?;
        }
        Ok(())
    }

    /// Drops the undo entries ([`Kept::Undo`]) of the records whose feed
    /// entries lie in `after..=through`, now that a peer acknowledged them,
    /// except records in `refused` (a refused write may still be
    /// discarded).
    pub(crate) fn settle(
        &mut self,
        after: u64,
        through: u64,
        refused: &BTreeSet<Vec<u8>>,
    ) -> Result<(), StorageError> {
        let mut settled = Vec::new();
        for entry in self.feed.range(after.saturating_add(1)..=through)? {
            let (_, bytes) = entry?;
            let row: FeedRow = tables::decode(FEED.name(), bytes.value())?;
            if !row.is_marker() && !refused.contains(row.record.as_bytes()) {
                settled.push(row.record);
            }
        }
        for record in settled {
            self.key.clear();
            self.key.extend_from_slice(record.as_bytes());
            let Some(mut row) = self.read_row()? else {
                continue;
            };
            if !row.pending {
                continue;
            }
            let (collection, key) = keys::split_record(RECORDS.name(), record.as_bytes())?;
            let prefix = keys::log_prefix(&collection, key.as_bytes());
            let end = keys::prefix_end(&prefix);
            let mut gone = 0u32;
            self.log
                .retain_in(prefix.as_slice()..end.as_slice(), |_, v| {
                    let undo = tables::decode::<LogBody>(LOG.name(), v)
                        .is_ok_and(|b| b.kept == Kept::Undo);
                    gone += u32::from(undo);
                    !undo
                })?;
            row.logged = row.logged.saturating_sub(gone);
            row.pending = false;
            self.write_row(&row)?;
        }
        Ok(())
    }

    /// Writes where callers pulled from, and when.
    pub(crate) fn record_served(
        &mut self,
        served: &[(ReplicaId, tables::ServedState)],
    ) -> Result<(), StorageError> {
        let mut table = self.txn.open_table(tables::SERVED)?;
        for (peer, state) in served {
            table.insert(peer.as_bytes(), codec::encode(state).as_slice())?;
        }
        Ok(())
    }

    /// The cursors kept for `peer` (zeros if none).
    pub(crate) fn peer(&self, peer: ReplicaId) -> Result<PeerState, StorageError> {
        let table = self.txn.open_table(PEERS)?;
        match table.get(peer.as_bytes())? {
            Some(g) => tables::decode(PEERS.name(), g.value()),
            None => Ok(PeerState::default()),
        }
    }

    /// Collects the tombstones stamped below `cutoff`: each goes with its
    /// log entries and its feed entry (as a record that moves on to no new
    /// lsn), unless it is a local delete not settled yet on a replica that
    /// pushes. Raises the
    /// collection marks, and saves the counters in `meta-1` (the feed's last
    /// entry may go). Returns how many records went.
    pub(crate) fn collect(
        &mut self,
        state: &mut WriteState,
        cutoff: Stamp,
    ) -> Result<u64, StorageError> {
        // A local delete no push has settled stays, on a replica that
        // pushes: collected, it would never reach its peers. (A hub never
        // pushes; its peers pull.)
        let pushes = {
            let peers = self.txn.open_table(PEERS)?;
            let mut pushes = false;
            for entry in peers.iter()? {
                let (_, v) = entry?;
                pushes |= tables::decode::<PeerState>(PEERS.name(), v.value())?.pushed > 0;
            }
            pushes
        };
        let mut victims = Vec::new();
        for entry in self.records.iter()? {
            let (k, v) = entry?;
            let row: RecordRow = tables::decode(RECORDS.name(), v.value())?;
            if row.value.is_none() && row.version.stamp < cutoff && !(row.pending && pushes) {
                victims.push((k.value().to_vec(), row));
            }
        }
        for (record, row) in &victims {
            self.key.clear();
            self.key.extend_from_slice(record);
            let sent = self.sent_by(row)?;
            self.supersede(row.lsn, sent)?;
            if row.logged > 0 {
                let (collection, key) = keys::split_record(RECORDS.name(), record)?;
                let prefix = keys::log_prefix(&collection, key.as_bytes());
                let end = keys::prefix_end(&prefix);
                self.log
                    .retain_in(prefix.as_slice()..end.as_slice(), |_, _| false)?;
            }
            self.records.remove(record.as_slice())?;
            state.collected_lsn = state.collected_lsn.max(row.lsn);
        }
        state.collected = state.collected.max(cutoff);
        let mut meta = self.txn.open_table(tables::META)?;
        for (name, value) in [
            ("collected", state.collected.as_u64()),
            ("collected_lsn", state.collected_lsn),
            ("lsn", state.lsn),
            ("clock", state.hlc.last().as_u64()),
            ("seq", state.seq),
        ] {
            meta.insert(name, value.to_le_bytes().as_slice())?;
        }
        Ok(victims.len() as u64)
    }

    /// Empties `collection` for a resync: every record goes with its log
    /// entries and its feed entry. Returns the records whose winner is a
    /// local write no push has settled (`pending`), with their values
    /// (`None`: a delete), to be written again.
    pub(crate) fn wipe(
        &mut self,
        collection: &str,
    ) -> Result<Vec<(Key, Option<crate::value::Value>)>, StorageError> {
        let prefix = keys::collection(collection);
        let end = keys::prefix_end(&prefix);
        let mut rows = Vec::new();
        for entry in self.records.range(prefix.as_slice()..end.as_slice())? {
            let (k, v) = entry?;
            let row: RecordRow = tables::decode(RECORDS.name(), v.value())?;
            rows.push((k.value().to_vec(), row));
        }
        let mut pending = Vec::new();
        for (record, row) in rows {
            self.key.clear();
            self.key.extend_from_slice(&record);
            let sent = self.sent_by(&row)?;
            if row.lsn < self.first {
                self.supersede(row.lsn, sent)?;
            } else {
                self.supersede(row.lsn, Vec::new())?;
            }
            self.records.remove(record.as_slice())?;
            // This replica's own write, not settled by a push, and still the
            // record's winner: written again. (One that lost to a remote
            // change since lost at the remote too.)
            if row.pending && row.source.is_none() && row.version.origin == 0 {
                let (_, key) = keys::split_record(RECORDS.name(), &record)?;
                pending.push((key, row.value));
            }
        }
        let prefix = keys::collection(collection);
        self.log.retain_in(
            prefix.as_slice()..keys::prefix_end(&prefix).as_slice(),
            |_, _| false,
        )?;
        Ok(pending)
    }

    /// Moves `peer`'s pull cursor of `scope` up to `through`.
    pub(crate) fn move_scope_cursor(
        &mut self,
        peer: ReplicaId,
        scope: &crate::model::Scope,
        through: u64,
    ) -> Result<(), StorageError> {
        let mut table = self.txn.open_table(tables::SCOPES)?;
        let key = tables::scope_key(peer, scope);
        let now = table.get(key.as_slice())?.map_or(0, |g| g.value());
        if through > now {
            table.insert(key.as_slice(), through)?;
        }
        Ok(())
    }

    /// Records that this replica pulled `peer` through `pulled` in the
    /// commit that ends at `at` (see `tables::RELAYED`), if further.
    pub(crate) fn relay(
        &mut self,
        peer: ReplicaId,
        pulled: u64,
        at: u64,
    ) -> Result<(), StorageError> {
        let mut table = self.txn.open_table(tables::RELAYED)?;
        let now = table.get(peer.as_bytes())?.map(|g| g.value());
        let was = now.map_or(0, |v| {
            u64::from_le_bytes(v[..8].try_into().unwrap_or_default())
        });
        if pulled > was || now.is_none() {
            let mut value = [0u8; 16];
            value[..8].copy_from_slice(&pulled.max(was).to_le_bytes());
            value[8..].copy_from_slice(&at.to_le_bytes());
            table.insert(peer.as_bytes(), value)?;
        }
        Ok(())
    }

    /// Takes, from a remote's relayed cursors (`RequestBody::Relayed`),
    /// the pull cursors they prove: for each other remote it pulled as of
    /// a lsn this replica has pulled `via` through (for a scope, that
    /// scope's cursor), this replica holds everything that remote had
    /// through the cursor, so its own cursor of it moves there. Returns
    /// how many cursors moved.
    pub(crate) fn adopt_relayed(
        &mut self,
        local: ReplicaId,
        via: ReplicaId,
        relayed: &[(ReplicaId, u64, u64)],
        scopes: &[crate::model::Scope],
    ) -> Result<usize, StorageError> {
        let mut moved = 0;
        let whole = self.peer_state(via)?.pulled;
        for &(remote, pulled, at) in relayed.iter().filter(|r| r.0 != local && r.0 != via) {
            if scopes.is_empty() {
                if whole >= at {
                    let mut changed = false;
                    self.update_peer(remote, |p| {
                        changed = pulled > p.pulled;
                        p.pulled = p.pulled.max(pulled);
                    })?;
                    moved += usize::from(changed);
                }
                continue;
            }
            for scope in scopes {
                if self.scope_cursor(via, scope)?.unwrap_or(0) >= at
                    && self.scope_cursor(remote, scope)?.unwrap_or(0) < pulled
                {
                    self.move_scope_cursor(remote, scope, pulled)?;
                    moved += 1;
                }
            }
        }
        Ok(moved)
    }

    /// The cursors kept for `peer`.
    fn peer_state(&mut self, peer: ReplicaId) -> Result<PeerState, StorageError> {
        let table = self.txn.open_table(PEERS)?;
        Ok(match table.get(peer.as_bytes())? {
            Some(g) => tables::decode(PEERS.name(), g.value())?,
            None => PeerState::default(),
        })
    }

    /// Forgets `peer`'s pull cursor of `scope`.
    pub(crate) fn drop_scope_cursor(
        &mut self,
        peer: ReplicaId,
        scope: &crate::model::Scope,
    ) -> Result<(), StorageError> {
        let mut table = self.txn.open_table(tables::SCOPES)?;
        table.remove(tables::scope_key(peer, scope).as_slice())?;
        Ok(())
    }

    /// Drops the records of `collection` under `prefix` that `keep` does
    /// not cover, locally: each goes with its log entries and its feed
    /// entry, and no change is made (nothing travels, no other replica is
    /// affected). Returns how many went.
    pub(crate) fn evict(
        &mut self,
        collection: &str,
        prefix: &Key,
        keep: &dyn Fn(&Key) -> bool,
    ) -> Result<u64, StorageError> {
        let mut start = keys::collection(collection);
        start.extend_from_slice(prefix.as_bytes());
        let end = keys::prefix_end(&start);
        let mut rows = Vec::new();
        for entry in self.records.range(start.as_slice()..end.as_slice())? {
            let (k, v) = entry?;
            let (_, key) = keys::split_record(RECORDS.name(), k.value())?;
            if keep(&key) {
                continue;
            }
            let row: RecordRow = tables::decode(RECORDS.name(), v.value())?;
            rows.push((k.value().to_vec(), key, row));
        }
        let count = rows.len() as u64;
        for (record, key, row) in rows {
            self.key.clear();
            self.key.extend_from_slice(&record);
            let sent = self.sent_by(&row)?;
            if row.lsn < self.first {
                self.supersede(row.lsn, sent)?;
            } else {
                self.supersede(row.lsn, Vec::new())?;
            }
            self.records.remove(record.as_slice())?;
            let log = keys::log_prefix(collection, key.as_bytes());
            self.log
                .retain_in(log.as_slice()..keys::prefix_end(&log).as_slice(), |_, _| {
                    false
                })?;
        }
        Ok(count)
    }

    /// `peer`'s pull cursor of `scope`, if one is stored.
    pub(crate) fn scope_cursor(
        &self,
        peer: ReplicaId,
        scope: &crate::model::Scope,
    ) -> Result<Option<u64>, StorageError> {
        let table = self.txn.open_table(tables::SCOPES)?;
        let key = tables::scope_key(peer, scope);
        Ok(table.get(key.as_slice())?.map(|g| g.value()))
    }

    /// Forgets every scope cursor of `peer` (a resync starts them over).
    pub(crate) fn drop_scope_cursors(&mut self, peer: ReplicaId) -> Result<(), StorageError> {
        let mut table = self.txn.open_table(tables::SCOPES)?;
        let lo = peer.as_bytes().to_vec();
        let hi = keys::prefix_end(&lo);
        table.retain_in(lo.as_slice()..hi.as_slice(), |_, _| false)?;
        Ok(())
    }

    /// Reads, changes and writes the cursors of `peer`.
    pub(crate) fn update_peer(
        &mut self,
        peer: ReplicaId,
        change: impl FnOnce(&mut PeerState),
    ) -> Result<(), StorageError> {
        let mut state = self.peer_state(peer)?;
        change(&mut state);
        self.txn
            .open_table(PEERS)?
            .insert(peer.as_bytes(), codec::encode(&state).as_slice())?;
        Ok(())
    }

    /// Stores a collection's definition.
    pub(crate) fn define_collection(
        &mut self,
        name: &str,
        config: &CollectionConfig,
    ) -> Result<(), StorageError> {
        self.txn
            .open_table(COLLECTIONS)?
            .insert(name, codec::encode(config).as_slice())?;
        self.histories.remove(name);
        Ok(())
    }

    /// Where `peer`'s push cursor can go from `pushed`: past the entries
    /// right after it whose every change came from the peer or was made by
    /// it (and markers), which never need pushing.
    pub(crate) fn pushed_through(&self, peer: ReplicaId, pushed: u64) -> Result<u64, StorageError> {
        let mut through = pushed;
        rows::walk_feed(&self.feed, pushed, |step| {
            if !step.row.is_marker() {
                let held = rows::entry_changes(
                    &self.records,
                    &self.log,
                    self,
                    step.lsn,
                    step.row.record.as_bytes(),
                )?;
                if held
                    .iter()
                    .any(|h| h.source != Some(peer) && h.change.id.origin != peer)
                {
                    return Ok(false);
                }
            }
            through = step.lsn;
            Ok(true)
        })?;
        Ok(through)
    }

    /// Writes the `rejected-3` entry of the group ending at `lsn`, refused
    /// by `peer`.
    pub(crate) fn put_rejected(
        &mut self,
        peer: ReplicaId,
        lsn: u64,
        body: &RejectedBody,
    ) -> Result<(), StorageError> {
        self.txn.open_table(REJECTED)?.insert(
            tables::rejected_key(peer, lsn).as_slice(),
            codec::encode(body).as_slice(),
        )?;
        Ok(())
    }

    /// Removes and returns the `rejected-3` entry of the group ending at
    /// `lsn`, refused by `peer`.
    pub(crate) fn take_rejected(
        &mut self,
        peer: ReplicaId,
        lsn: u64,
    ) -> Result<Option<RejectedBody>, StorageError> {
        let mut table = self.txn.open_table(REJECTED)?;
        let old = table.remove(tables::rejected_key(peer, lsn).as_slice())?;
        match old {
            Some(bytes) => Ok(Some(tables::decode(REJECTED.name(), bytes.value())?)),
            None => Ok(None),
        }
    }

    /// The staged parts of (`role`, `peer`): the transfer they belong to and
    /// how many there are, in order from 0 (`None`: none staged).
    pub(crate) fn staged_progress(
        &self,
        role: u8,
        peer: ReplicaId,
    ) -> Result<Option<(u64, u32)>, StorageError> {
        let table = self.txn.open_table(STAGED)?;
        staged_progress(&table, role, peer)
    }

    /// Stages the part of `transfer` from (`role`, `peer`) that starts at
    /// change `index` of the group, if it is the next one (it starts where
    /// the staged ones end), dropping the parts of any other transfer of
    /// theirs. Returns how many changes are staged after it: where the next
    /// part starts.
    pub(crate) fn stage(
        &mut self,
        role: u8,
        peer: ReplicaId,
        transfer: u64,
        index: u32,
        changes: &[Change],
    ) -> Result<u32, StorageError> {
        let mut next = match self.staged_progress(role, peer)? {
            Some((t, n)) if t == transfer => n,
            Some(_) => {
                self.clear_staged(role, peer)?;
                0
            }
            None => 0,
        };
        if index == next && !changes.is_empty() {
            self.txn.open_table(STAGED)?.insert(
                tables::staged_key(role, peer, Some(transfer), Some(index)).as_slice(),
                codec::encode(changes).as_slice(),
            )?;
            next = next.saturating_add(u32::try_from(changes.len()).unwrap_or(u32::MAX));
        }
        Ok(next)
    }

    /// Removes every staged part of (`role`, `peer`).
    pub(crate) fn clear_staged(&mut self, role: u8, peer: ReplicaId) -> Result<(), StorageError> {
        let mut table = self.txn.open_table(STAGED)?;
        let prefix = tables::staged_key(role, peer, None, None);
        let end = keys::prefix_end(&prefix);
        table.retain_in(prefix.as_slice()..end.as_slice(), |_, _| false)?;
        Ok(())
    }

    /// Moves the records of `changes` to new feed entries in this commit's
    /// group: they go out again to every peer, which keeps what it holds as
    /// duplicates. Records no longer held are skipped.
    pub(crate) fn refeed(
        &mut self,
        state: &mut WriteState,
        changes: &[Change],
    ) -> Result<(), StorageError> {
        let mut done = BTreeSet::new();
        for change in changes {
            keys::record_into(&mut self.key, &change.collection, change.key.as_bytes());
            if !done.insert(self.key.clone()) {
                continue;
            }
            let Some(mut row) = self.read_row()? else {
                continue;
            };
            let sent = self.sent_by(&row)?;
            self.supersede(row.lsn, sent)?;
            row.lsn = self.next_entry(state);
            self.write_row(&row)?;
        }
        Ok(())
    }

    /// Ends the commit's writes: the feed group, when anything moved, with
    /// its shape and the counters on its last entry. A commit that moved
    /// nothing moved neither counter past what is stored already.
    pub(crate) fn finish(&mut self, state: &WriteState) -> Result<(), StorageError> {
        if self.group.is_empty() {
            return Ok(());
        }
        let last = state.lsn;
        let group = std::mem::take(&mut self.group);
        let info = GroupInfo {
            span: group.len() as u64,
            alive: group.iter().filter(|e| e.is_some()).count() as u64,
            clock: state.hlc.last(),
            seq: state.seq,
        };
        for (lsn, record) in (self.first..).zip(group) {
            let is_last = lsn == last;
            if record.is_none() && !is_last {
                continue;
            }
            let moved = record.is_none().then(Vec::new);
            let row = FeedRow {
                record: Key::new(record.unwrap_or_default()),
                end: last - lsn,
                group: is_last.then_some(info),
                moved,
            };
            self.scratch.clear();
            codec::encode_into(&row, &mut self.scratch);
            self.feed.insert(lsn, self.scratch.as_slice())?;
        }
        Ok(())
    }
}

/// Whether `history` keeps a superseded change stamped `stamp` now.
fn keeps(history: History, stamp: Stamp, now_ms: u64) -> bool {
    match history {
        History::Merge => false,
        History::Last(n) => n > 0,
        History::For(d) => {
            let age = now_ms.saturating_sub(stamp.millis());
            u128::from(age) <= d.as_millis()
        }
    }
}

/// The staged parts of (`role`, `peer`) in `table`: their transfer and how
/// many changes they hold (where the next part starts).
pub(crate) fn staged_progress(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    role: u8,
    peer: ReplicaId,
) -> Result<Option<(u64, u32)>, StorageError> {
    let prefix = tables::staged_key(role, peer, None, None);
    let end = keys::prefix_end(&prefix);
    let Some(last) = table.range(prefix.as_slice()..end.as_slice())?.next_back() else {
        return Ok(None);
    };
    let (k, v) = last?;
    let k = k.value();
    let bad = || StorageError::Invalid {
        table: STAGED.name(),
        reason: Inconsistency::MalformedKey { key: k.to_vec() },
    };
    let transfer: [u8; 8] = k
        .get(17..25)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let offset: [u8; 4] = k
        .get(25..29)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let part: Vec<Change> = tables::decode(STAGED.name(), v.value())?;
    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
    Ok(Some((
        u64::from_be_bytes(transfer),
        u32::from_be_bytes(offset).saturating_add(len),
    )))
}

/// The changes of every staged part of `transfer` from (`role`, `peer`)
/// in `table`, in order.
pub(crate) fn staged_changes(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    role: u8,
    peer: ReplicaId,
    transfer: u64,
) -> Result<Vec<Change>, StorageError> {
    let prefix = tables::staged_key(role, peer, Some(transfer), None);
    let end = keys::prefix_end(&prefix);
    let mut out = Vec::new();
    for entry in table.range(prefix.as_slice()..end.as_slice())? {
        let (_, v) = entry?;
        let part: Vec<Change> = tables::decode(STAGED.name(), v.value())?;
        out.extend(part);
    }
    Ok(out)
}

/// The next change id of this replica.
pub(crate) fn next_id(replica: ReplicaId, state: &mut WriteState) -> ChangeId {
    state.seq += 1;
    ChangeId {
        origin: replica,
        seq: state.seq,
    }
}
