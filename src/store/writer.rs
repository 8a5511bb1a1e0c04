//! The write path inside one redb transaction: the one way changes enter
//! the tables (change log, feed, merged record, conflicts), and the other
//! writes a commit may make (peer cursors, collection definitions).

use redb::{ReadableTable, ReadableTableMetadata, TableHandle, WriteTransaction};

use super::WriteState;
use super::keys;
use super::tables::{
    self, CHANGES, COLLECTIONS, CONFLICTS, ChangeBodyRef, ConflictBody, FEED, FeedGroup, FeedItem,
    PEERS, PeerState, RECORDS, REJECTED, RejectedBody, STAGED,
};
use crate::clock::Stamp;
use crate::codec;
use crate::error::{Inconsistency, StorageError};
use crate::merge::{RecordState, Rule, merge_one, record_value};
use crate::model::{Change, ChangeId, CollectionConfig, Key, ReplicaId, Version};
use crate::value::Value;

/// What storing one change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored under this lsn, recording this many conflicts.
    Stored {
        /// The change's lsn.
        lsn: u64,
        /// Conflicts recorded (0 or 1).
        conflicts: usize,
    },
    /// Its slot already held the same change: nothing was written.
    Duplicate,
    /// Its slot holds a different change. The error this becomes aborts the
    /// transaction, so the overwritten slot is never committed.
    Conflicting,
}

/// What putting a change into its record's log found in its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Logged {
    /// Nothing: the change is new.
    New,
    /// The same change.
    Same,
    /// A different change.
    Different,
}

/// A record's state before a change, when known.
enum Current {
    /// Read by the caller (`None`: no such record).
    Read(Option<RecordState>),
    /// Not read yet.
    Unread,
}

/// The tables of one write transaction, and the one way changes enter them.
pub(crate) struct Writer<'txn> {
    changes: redb::Table<'txn, &'static [u8], &'static [u8]>,
    records: redb::Table<'txn, &'static [u8], &'static [u8]>,
    feed: redb::Table<'txn, u64, &'static [u8]>,
    /// Opened on first use: most commits never touch it.
    conflicts: Option<redb::Table<'txn, &'static [u8], &'static [u8]>>,
    txn: &'txn WriteTransaction,
    /// One buffer for encoded values and one for keys, for the whole
    /// transaction.
    scratch: Vec<u8>,
    key: Vec<u8>,
    /// The feed group of this commit, written once by [`Writer::finish`].
    group: Vec<FeedItem>,
}

impl<'txn> Writer<'txn> {
    pub(crate) fn open(txn: &'txn WriteTransaction) -> Result<Self, StorageError> {
        Ok(Self {
            changes: txn.open_table(CHANGES)?,
            records: txn.open_table(RECORDS)?,
            feed: txn.open_table(FEED)?,
            conflicts: None,
            txn,
            scratch: Vec::with_capacity(256),
            key: Vec::with_capacity(64),
            group: Vec::new(),
        })
    }

    /// The greatest stamp among the record's changes held here (zero for none).
    pub(crate) fn latest_stamp(&self, collection: &str, key: &Key) -> Result<Stamp, StorageError> {
        let prefix = keys::log_prefix(collection, key.as_bytes());
        let end = keys::prefix_end(&prefix);
        Ok(
            match self
                .changes
                .range(prefix.as_slice()..end.as_slice())?
                .next_back()
            {
                Some(entry) => {
                    let (stamp, _) = keys::split_log_tail(CHANGES.name(), entry?.0.value())?;
                    Stamp::from_u64(stamp)
                }
                None => Stamp::ZERO,
            },
        )
    }

    /// The merged state of a record.
    pub(crate) fn record(
        &mut self,
        collection: &str,
        key: &Key,
    ) -> Result<Option<RecordState>, StorageError> {
        keys::record_into(&mut self.key, collection, key.as_bytes());
        match self.records.get(self.key.as_slice())? {
            Some(g) => Ok(Some(tables::decode(RECORDS.name(), g.value())?)),
            None => Ok(None),
        }
    }

    /// Stores a change unless it is already stored: change log, the next lsn
    /// in this commit's feed group, merged record, conflicts.
    pub(crate) fn store(
        &mut self,
        state: &mut WriteState,
        rule: &Rule,
        change: &Change,
    ) -> Result<Outcome, StorageError> {
        match self.log(change)? {
            Logged::New => {}
            Logged::Same => return Ok(Outcome::Duplicate),
            Logged::Different => return Ok(Outcome::Conflicting),
        }
        let current = if matches!(rule, Rule::Lww) {
            // Read by the record's own insert (see `merge_into_record`).
            Current::Unread
        } else {
            Current::Read(self.record(&change.collection, &change.key)?)
        };
        let (lsn, conflicts) = self.insert(state, rule, change, current)?;
        Ok(Outcome::Stored { lsn, conflicts })
    }

    /// Stores a change made here just now: its stamp is new by construction,
    /// and `current` is the record's state the caller read.
    pub(crate) fn store_fresh(
        &mut self,
        state: &mut WriteState,
        rule: &Rule,
        change: &Change,
        current: Option<RecordState>,
    ) -> Result<(u64, usize), StorageError> {
        if self.log(change)? != Logged::New {
            // Only a stamp issued twice could get here: a clock bug.
            return Err(StorageError::Invalid {
                table: CHANGES.name(),
                reason: Inconsistency::StampReused,
            });
        }
        self.insert(state, rule, change, Current::Read(current))
    }

    /// Puts a change into its record's log and, when new, into this
    /// commit's feed group. A different change in the slot (same record,
    /// stamp and origin) is overwritten here, but the caller's error aborts
    /// the whole transaction, so the overwrite is never committed.
    fn log(&mut self, change: &Change) -> Result<Logged, StorageError> {
        keys::log_into(
            &mut self.key,
            &change.collection,
            change.key.as_bytes(),
            change.stamp.as_u64(),
            change.id.origin.as_bytes(),
        );
        self.scratch.clear();
        codec::encode_into(
            &ChangeBodyRef {
                seq: change.id.seq,
                base: change.base,
                op: &change.op,
            },
            &mut self.scratch,
        );
        // One lookup for both the duplicate check and the insert: new
        // changes are the common case.
        let old = self
            .changes
            .insert(self.key.as_slice(), self.scratch.as_slice())?;
        match old {
            None => {
                // New: it takes the next place in this commit's feed group.
                self.group.push(FeedItem {
                    log_key: Key::new(self.key.as_slice()),
                });
                Ok(Logged::New)
            }
            Some(old) if old.value() == self.scratch.as_slice() => Ok(Logged::Same),
            Some(_) => Ok(Logged::Different),
        }
    }

    /// Everything after the change log: feed group, merged record,
    /// conflicts.
    fn insert(
        &mut self,
        state: &mut WriteState,
        rule: &Rule,
        change: &Change,
        current: Current,
    ) -> Result<(u64, usize), StorageError> {
        state.lsn += 1;
        let (before, next) = self.merge_into_record(rule, change, current)?;
        let conflicts = if rule.is_record_level() {
            self.track_conflicts(change, before.as_ref(), next.as_ref())?
        } else {
            0
        };
        Ok((state.lsn, conflicts))
    }

    /// Merges a change into its record and writes the record if it
    /// changed. Returns the state before and the new state (`None` when it
    /// did not change).
    ///
    /// When the state before is [`Current::Unread`] (last-writer-wins,
    /// remote changes), the record's insert reads it: the state the change
    /// makes on its own is written first, and redb returns the one it
    /// replaced. That is the right state whenever the record is new here,
    /// and whenever the change wins over a state whose `seen` is not above
    /// the change's `base`: the common cases, one B-tree walk instead of
    /// two. Otherwise the right state is written over it in the same
    /// transaction.
    fn merge_into_record(
        &mut self,
        rule: &Rule,
        change: &Change,
        current: Current,
    ) -> Result<(Option<RecordState>, Option<RecordState>), StorageError> {
        keys::record_into(&mut self.key, &change.collection, change.key.as_bytes());
        let (before, next) = match current {
            Current::Read(before) => {
                let next = merge_one(rule, before.as_ref(), change);
                if let Some(next) = &next {
                    self.write_record(next)?;
                }
                (before, next)
            }
            Current::Unread => {
                let alone = merge_one(rule, None, change).ok_or(StorageError::Invalid {
                    table: RECORDS.name(),
                    reason: Inconsistency::NoFirstState,
                })?;
                self.scratch.clear();
                codec::encode_into(&alone, &mut self.scratch);
                let before: Option<RecordState> = match self
                    .records
                    .insert(self.key.as_slice(), self.scratch.as_slice())?
                {
                    Some(old) => Some(tables::decode(RECORDS.name(), old.value())?),
                    None => None,
                };
                let Some(old) = &before else {
                    return Ok((None, Some(alone)));
                };
                let next = merge_one(rule, Some(old), change);
                match &next {
                    Some(next) if *next == alone => {}
                    Some(next) => self.write_record(next)?,
                    // The change lost and changed nothing: put back the old state.
                    None => self.write_record(old)?,
                }
                (before, next)
            }
        };
        Ok((before, next))
    }

    /// Writes a record's state under the key in `self.key`.
    fn write_record(&mut self, state: &RecordState) -> Result<(), StorageError> {
        self.scratch.clear();
        codec::encode_into(state, &mut self.scratch);
        self.records
            .insert(self.key.as_slice(), self.scratch.as_slice())?;
        Ok(())
    }

    fn conflicts(
        &mut self,
    ) -> Result<&mut redb::Table<'txn, &'static [u8], &'static [u8]>, StorageError> {
        match &mut self.conflicts {
            Some(table) => Ok(table),
            slot @ None => Ok(slot.insert(self.txn.open_table(CONFLICTS)?)),
        }
    }

    /// Keeps `conflicts-2` equal to the record's losing changes that no
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
        if before.is_some_and(|b| after.seen > b.seen) && !self.conflicts()?.is_empty()? {
            let lo = keys::log_prefix(coll, key);
            let hi = keys::log(coll, key, after.seen.as_u64(), &[0xff; 16]);
            let table = self.conflicts()?;
            let seen: Vec<Vec<u8>> = table
                .range(lo.as_slice()..=hi.as_slice())?
                .map(|e| e.map(|(k, _)| k.value().to_vec()))
                .collect::<Result<_, _>>()?;
            for k in seen {
                table.remove(k.as_slice())?;
            }
        }
        let loser: Option<(Version, Option<Value>)> = if after.version == change.version() {
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
                // Conflicts are rare: a fresh key buffer is fine here.
                let k = keys::log(
                    coll,
                    key,
                    version.stamp.as_u64(),
                    version.id.origin.as_bytes(),
                );
                self.conflicts()?
                    .insert(k.as_slice(), codec::encode(&body).as_slice())?;
                Ok(1)
            }
            _ => Ok(0),
        }
    }

    /// Reads, changes and writes the cursors of `peer`.
    pub(crate) fn update_peer(
        &mut self,
        peer: ReplicaId,
        change: impl FnOnce(&mut PeerState),
    ) -> Result<(), StorageError> {
        let mut table = self.txn.open_table(PEERS)?;
        let mut state = match table.get(peer.as_bytes())? {
            Some(g) => tables::decode(PEERS.name(), g.value())?,
            None => PeerState::default(),
        };
        change(&mut state);
        table.insert(peer.as_bytes(), codec::encode(&state).as_slice())?;
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
        Ok(())
    }

    /// The `changes-2` keys of the changes of the feed group ending at
    /// `lsn` that went to `peer` (see [`super::read::pushable`]).
    pub(crate) fn pushed_keys(
        &self,
        lsn: u64,
        peer: ReplicaId,
        wanted: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Key>, StorageError> {
        let Some(bytes) = self.feed.get(lsn)? else {
            return Ok(Vec::new());
        };
        let group: FeedGroup = tables::decode(FEED.name(), bytes.value())?;
        let mut out = Vec::with_capacity(group.entries.len());
        for item in group.entries {
            let (collection, _, _, origin) = keys::parse_log(FEED.name(), item.log_key.as_bytes())?;
            if super::read::pushable(
                peer,
                group.source,
                ReplicaId::from_bytes(origin),
                &collection,
                wanted,
            ) {
                out.push(item.log_key);
            }
        }
        Ok(out)
    }

    /// Writes the `rejected-1` entry of the group ending at `lsn`, refused
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

    /// Removes and returns the `rejected-1` entry of the group ending at
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
        let keys: Vec<Vec<u8>> = table
            .range(prefix.as_slice()..end.as_slice())?
            .map(|e| e.map(|(k, _)| k.value().to_vec()))
            .collect::<Result<_, _>>()?;
        for k in keys {
            table.remove(k.as_slice())?;
        }
        Ok(())
    }

    /// Puts changes already stored into this commit's feed group again,
    /// each at the next lsn: they go out again to every peer, which keeps
    /// the ones it holds as duplicates.
    pub(crate) fn refeed(&mut self, state: &mut WriteState, log_keys: Vec<Key>) {
        for log_key in log_keys {
            state.lsn += 1;
            self.group.push(FeedItem { log_key });
        }
    }

    /// The feed table, to read inside this commit.
    pub(crate) fn feed(&self) -> &redb::Table<'txn, u64, &'static [u8]> {
        &self.feed
    }

    /// Ends the commit's writes: the feed group, when anything was stored,
    /// under the last lsn, with the clock's high-water mark and the sequence
    /// counter. A commit that stored nothing moved neither past what is
    /// stored already.
    pub(crate) fn finish(
        &mut self,
        state: &WriteState,
        source: Option<ReplicaId>,
    ) -> Result<(), StorageError> {
        if self.group.is_empty() {
            return Ok(());
        }
        let group = FeedGroup {
            clock: state.hlc.last(),
            seq: state.seq,
            source,
            entries: std::mem::take(&mut self.group),
        };
        self.scratch.clear();
        codec::encode_into(&group, &mut self.scratch);
        self.feed.insert(state.lsn, self.scratch.as_slice())?;
        Ok(())
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
