//! The write path inside one redb transaction: validation helpers, and the
//! one way changes enter the tables (change log, feed, id index, merged
//! record, conflicts).

use redb::{ReadableTable, ReadableTableMetadata, TableHandle, WriteTransaction};

use crate::clock::Stamp;
use crate::codec;
use crate::error::{ApplyError, KeyError, StorageError};
use crate::merge::{RecordState, Rule, merge_one, record_value};
use crate::model::{Change, ChangeId, Key, MergePolicy, Op, ReplicaId, Version};
use crate::replica::WriteState;
use crate::tables::{
    self, CHANGES, CONFLICTS, ChangeBody, ConflictBody, FEED, FeedRecord, IDS, LogKey, META,
    RECORDS,
};

/// Which ops a collection's policy accepts; the reason when it does not.
pub(crate) fn check_op_for_policy(op: &Op, policy: &MergePolicy) -> Result<(), String> {
    let ok = match (op, policy) {
        (Op::Delete, _) => true,
        (Op::Put(_), p) if p.is_record_level() => true,
        (Op::Put(crate::value::Value::Map(_)) | Op::Patch(_), MergePolicy::FieldLww) => true,
        (Op::Automerge(_), MergePolicy::Automerge) => true,
        _ => false,
    };
    #[cfg(feature = "automerge")]
    if let (Op::Automerge(bytes), MergePolicy::Automerge) = (op, policy) {
        crate::automerge_policy::validate(bytes)?;
    }
    if ok {
        Ok(())
    } else {
        let what = match op {
            Op::Put(crate::value::Value::Map(_)) => "a put",
            Op::Put(_) => "a put of a value that is not a map",
            Op::Patch(_) => "a patch",
            Op::Automerge(_) => "an automerge change",
            Op::Delete => "a delete",
        };
        Err(format!("{what} is not allowed on a {policy:?} collection"))
    }
}

/// Refuses values nested deeper than [`crate::MAX_DEPTH`]: the codec could
/// not decode them again, and deep recursion could exhaust the stack.
pub(crate) fn check_op_depth(op: &Op) -> Result<(), crate::ValueError> {
    match op {
        Op::Put(v) => v.check_depth(),
        Op::Patch(fields) => fields.values().try_for_each(|v| {
            // A patch's fields sit one level below the record.
            if v.depth() >= crate::MAX_DEPTH {
                Err(crate::ValueError::TooDeep {
                    max: crate::MAX_DEPTH,
                })
            } else {
                Ok(())
            }
        }),
        Op::Delete | Op::Automerge(_) => Ok(()),
    }
}

/// The encoded length of an op's value (0 for a delete).
pub(crate) fn encoded_len(op: &Op) -> usize {
    match op {
        Op::Put(v) => codec::encode(v).len(),
        Op::Patch(fields) => codec::encode(fields).len(),
        Op::Automerge(bytes) => bytes.len(),
        Op::Delete => 0,
    }
}

/// Checks a key against the configured bounds.
pub(crate) fn check_key(key: &Key, max: usize) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > max {
        return Err(KeyError::TooLong {
            len: key.len(),
            max,
        });
    }
    Ok(())
}

/// The tables of one write transaction, and the one way changes enter them.
pub(crate) struct Writer<'txn> {
    changes: redb::Table<'txn, LogKey<'static>, &'static [u8]>,
    records: redb::Table<'txn, (&'static str, &'static [u8]), &'static [u8]>,
    feed: redb::Table<'txn, u64, &'static [u8]>,
    ids: redb::Table<'txn, (&'static [u8; 16], u64), u64>,
    conflicts: redb::Table<'txn, LogKey<'static>, &'static [u8]>,
    meta: redb::Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> Writer<'txn> {
    pub(crate) fn open(txn: &'txn WriteTransaction) -> Result<Self, StorageError> {
        Ok(Self {
            changes: txn.open_table(CHANGES)?,
            records: txn.open_table(RECORDS)?,
            feed: txn.open_table(FEED)?,
            ids: txn.open_table(IDS)?,
            conflicts: txn.open_table(CONFLICTS)?,
            meta: txn.open_table(META)?,
        })
    }

    /// The greatest stamp among the record's changes held here (zero for none).
    pub(crate) fn latest_stamp(&self, collection: &str, key: &Key) -> Result<Stamp, StorageError> {
        let lo = (collection, key.as_bytes(), 0u64, &[0u8; 16]);
        let hi = (collection, key.as_bytes(), u64::MAX, &[0xffu8; 16]);
        Ok(match self.changes.range(lo..=hi)?.next_back() {
            Some(entry) => Stamp::from_u64(entry?.0.value().2),
            None => Stamp::ZERO,
        })
    }

    /// The merged state of a record.
    pub(crate) fn record(
        &self,
        collection: &str,
        key: &Key,
    ) -> Result<Option<RecordState>, StorageError> {
        match self.records.get((collection, key.as_bytes()))? {
            Some(g) => Ok(Some(tables::decode(RECORDS.name(), g.value())?)),
            None => Ok(None),
        }
    }

    /// Stores a change if its id is new: change log, feed entry with the next
    /// lsn, id index, merged record, conflicts. Returns its lsn and the number
    /// of conflicts it recorded, or `None` for a duplicate.
    pub(crate) fn store(
        &mut self,
        state: &mut WriteState,
        rule: &Rule,
        change: &Change,
        source: Option<ReplicaId>,
        group_end: bool,
    ) -> Result<Option<(u64, usize)>, ApplyError> {
        let origin = change.id.origin.as_bytes();
        if let Some(lsn) = self
            .ids
            .get((origin, change.id.seq))
            .map_err(StorageError::from)?
        {
            let lsn = lsn.value();
            if self.stored_change(lsn)?.as_ref() != Some(change) {
                return Err(ApplyError::ConflictingDuplicate { id: change.id });
            }
            return Ok(None);
        }
        let current = self.record(&change.collection, &change.key)?;
        self.insert(state, rule, change, current, source, group_end)
            .map(Some)
    }

    /// Stores a change made here just now: its id and stamp are new by
    /// construction, and `current` is the record's state the caller read.
    pub(crate) fn store_fresh(
        &mut self,
        state: &mut WriteState,
        rule: &Rule,
        change: &Change,
        current: Option<RecordState>,
        group_end: bool,
    ) -> Result<(u64, usize), ApplyError> {
        self.insert(state, rule, change, current, None, group_end)
    }

    fn insert(
        &mut self,
        state: &mut WriteState,
        rule: &Rule,
        change: &Change,
        current: Option<RecordState>,
        source: Option<ReplicaId>,
        group_end: bool,
    ) -> Result<(u64, usize), ApplyError> {
        let origin = change.id.origin.as_bytes();
        let log_key = (
            change.collection.as_str(),
            change.key.as_bytes(),
            change.stamp.as_u64(),
            origin,
        );
        let body = ChangeBody {
            seq: change.id.seq,
            base: change.base,
            op: change.op.clone(),
        };
        let replaced = self
            .changes
            .insert(log_key, codec::encode(&body).as_slice())
            .map_err(StorageError::from)?
            .is_some();
        if replaced {
            // Same record, stamp and origin, but another id: a forged or
            // broken change. The error aborts the whole transaction.
            return Err(ApplyError::ConflictingDuplicate { id: change.id });
        }
        state.lsn += 1;
        let feed = FeedRecord {
            id: change.id,
            collection: change.collection.clone(),
            key: change.key.clone(),
            stamp: change.stamp,
            source,
            group_end,
        };
        self.feed
            .insert(state.lsn, codec::encode(&feed).as_slice())
            .map_err(StorageError::from)?;
        self.ids
            .insert((origin, change.id.seq), state.lsn)
            .map_err(StorageError::from)?;
        let next = merge_one(rule, current.as_ref(), change);
        if let Some(next) = &next {
            self.records
                .insert(
                    (change.collection.as_str(), change.key.as_bytes()),
                    codec::encode(next).as_slice(),
                )
                .map_err(StorageError::from)?;
        }
        let conflicts = if rule.is_record_level() {
            self.track_conflicts(change, current.as_ref(), next.as_ref())?
        } else {
            0
        };
        Ok((state.lsn, conflicts))
    }

    /// Keeps `conflicts-1` equal to the record's losing changes that no
    /// change has seen (stamp above the record's `seen`): clears the ones the
    /// new change saw and records the one it made lose, if any.
    fn track_conflicts(
        &mut self,
        change: &Change,
        before: Option<&RecordState>,
        changed: Option<&RecordState>,
    ) -> Result<usize, StorageError> {
        let Some(after) = changed.or(before) else {
            return Ok(0);
        };
        let (coll, key) = (change.collection.as_str(), change.key.as_bytes());
        // Most databases hold no conflicts at all: skip the lookup then.
        if before.is_some_and(|b| after.seen > b.seen) && !self.conflicts.is_empty()? {
            let lo = (coll, key, 0u64, &[0u8; 16]);
            let hi = (coll, key, after.seen.as_u64(), &[0xffu8; 16]);
            let seen: Vec<(u64, [u8; 16])> = self
                .conflicts
                .range(lo..=hi)?
                .map(|e| e.map(|(k, _)| (k.value().2, *k.value().3)))
                .collect::<Result<_, _>>()?;
            for (stamp, origin) in seen {
                self.conflicts.remove((coll, key, stamp, &origin))?;
            }
        }
        let loser: Option<(Version, Option<crate::value::Value>)> =
            if after.version == change.version() {
                before
                    .filter(|b| b.version != after.version)
                    .map(|b| (b.version, b.value.clone()))
            } else {
                Some((change.version(), record_value(&change.op)))
            };
        match loser {
            Some((version, value)) if version.stamp > after.seen => {
                let body = ConflictBody {
                    seq: version.id.seq,
                    value,
                };
                self.conflicts.insert(
                    (
                        coll,
                        key,
                        version.stamp.as_u64(),
                        version.id.origin.as_bytes(),
                    ),
                    codec::encode(&body).as_slice(),
                )?;
                Ok(1)
            }
            _ => Ok(0),
        }
    }

    /// Marks the feed entry at `lsn` as the end of its atomic group.
    pub(crate) fn mark_group_end(&mut self, lsn: u64) -> Result<(), StorageError> {
        let bytes = match self.feed.get(lsn)? {
            Some(g) => g.value().to_vec(),
            None => return Ok(()),
        };
        let mut rec: FeedRecord = tables::decode(FEED.name(), &bytes)?;
        rec.group_end = true;
        self.feed.insert(lsn, codec::encode(&rec).as_slice())?;
        Ok(())
    }

    /// Persists the clock's high-water mark and the sequence counter.
    pub(crate) fn save_counters(&mut self, state: &WriteState) -> Result<(), StorageError> {
        self.meta
            .insert("clock", state.hlc.last().as_u64().to_le_bytes().as_slice())?;
        self.meta
            .insert("seq", state.seq.to_le_bytes().as_slice())?;
        Ok(())
    }

    fn stored_change(&self, lsn: u64) -> Result<Option<Change>, StorageError> {
        let Some(rec) = self.feed.get(lsn)? else {
            return Ok(None);
        };
        let rec: FeedRecord = tables::decode(FEED.name(), rec.value())?;
        let Some(body) = self.changes.get((
            rec.collection.as_str(),
            rec.key.as_bytes(),
            rec.stamp.as_u64(),
            rec.id.origin.as_bytes(),
        ))?
        else {
            return Ok(None);
        };
        let body: ChangeBody = tables::decode(CHANGES.name(), body.value())?;
        Ok(Some(rec.into_change(body)))
    }
}

/// The next change id of this replica.
pub(crate) fn next_id(replica: ReplicaId, state: &mut WriteState) -> ChangeId {
    state.seq += 1;
    ChangeId {
        origin: replica,
        seq: state.seq,
    }
}
