//! Collection handles: reading and writing the records of one collection.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Bound, RangeBounds};

use redb::TableHandle;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::Stamp;
use crate::error::{ReadError, StorageError, WriteError};
use crate::keys;
use crate::merge::RecordState;
use crate::model::{Change, ChangeId, CollectionConfig, Key};
use crate::replica::Replica;
use crate::tables::{self, CHANGES, CONFLICTS, ChangeBody, ConflictBody, RECORDS};
use crate::txn::Committed;
use crate::value::{Value, from_value};
use crate::watch::Watch;
use crate::writer::check_key;

/// A handle on one collection of a [`Replica`]. Cheap to clone.
#[derive(Clone)]
pub struct Collection {
    replica: Replica,
    name: String,
}

impl fmt::Debug for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collection")
            .field("replica", &self.replica.id())
            .field("name", &self.name)
            .finish()
    }
}

/// A losing change that was concurrent with the record's winner.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    /// The record.
    pub key: Key,
    /// The losing change's version.
    pub loser: crate::model::Version,
    /// The losing value; `None` when a delete lost.
    pub value: Option<Value>,
}

/// Which records a [`Collection::scan`] returns: a key range or a prefix,
/// forwards or backwards, up to a limit. Tombstones are never returned.
#[derive(Clone, Debug)]
pub struct Scan {
    start: Bound<Key>,
    end: Bound<Key>,
    limit: Option<usize>,
    reverse: bool,
}

impl Default for Scan {
    fn default() -> Self {
        Self::all()
    }
}

impl Scan {
    /// Every record of the collection, in key order.
    pub fn all() -> Self {
        Self {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
            limit: None,
            reverse: false,
        }
    }

    /// The records whose keys start with `prefix`.
    pub fn prefix(prefix: impl Into<Key>) -> Self {
        let prefix = prefix.into();
        let end = match prefix_successor(prefix.as_bytes()) {
            Some(next) => Bound::Excluded(Key::new(next)),
            None => Bound::Unbounded,
        };
        Self {
            start: Bound::Included(prefix),
            end,
            ..Self::all()
        }
    }

    /// The records whose keys fall in `range` (bytewise order).
    pub fn range<K: Into<Key> + Clone>(range: impl RangeBounds<K>) -> Self {
        let conv = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(k.clone().into()),
            Bound::Excluded(k) => Bound::Excluded(k.clone().into()),
            Bound::Unbounded => Bound::Unbounded,
        };
        Self {
            start: conv(range.start_bound()),
            end: conv(range.end_bound()),
            ..Self::all()
        }
    }

    /// Returns at most `n` records.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Walks from the greatest key down.
    pub fn reverse(mut self) -> Self {
        self.reverse = true;
        self
    }
}

/// The smallest key greater than every key starting with `prefix`, if any.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

impl Collection {
    pub(crate) fn new(replica: Replica, name: String) -> Self {
        Self { replica, name }
    }

    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The collection's configuration.
    pub fn config(&self) -> CollectionConfig {
        // A collection, once defined, is never removed.
        self.replica
            .collection_config(&self.name)
            .unwrap_or_default()
    }

    /// The replica this collection belongs to.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Sets a record; durable when it returns.
    pub fn put(
        &self,
        key: impl Into<Key>,
        value: impl Into<Value>,
    ) -> Result<ChangeId, WriteError> {
        let mut txn = self.replica.transaction();
        txn.put(&self.name, key, value);
        single(txn.commit()?)
    }

    /// Sets a record to a serde value (a struct becomes a map of its fields).
    pub fn put_typed<T: Serialize + ?Sized>(
        &self,
        key: impl Into<Key>,
        value: &T,
    ) -> Result<ChangeId, WriteError> {
        let mut txn = self.replica.transaction();
        txn.put_typed(&self.name, key, value)?;
        single(txn.commit()?)
    }

    /// Sets some fields of a map-valued record, keeping the others.
    pub fn patch(
        &self,
        key: impl Into<Key>,
        fields: BTreeMap<String, Value>,
    ) -> Result<ChangeId, WriteError> {
        let mut txn = self.replica.transaction();
        txn.patch(&self.name, key, fields);
        single(txn.commit()?)
    }

    /// Deletes a record, leaving a tombstone that older writes cannot undo.
    pub fn delete(&self, key: impl Into<Key>) -> Result<ChangeId, WriteError> {
        let mut txn = self.replica.transaction();
        txn.delete(&self.name, key);
        single(txn.commit()?)
    }

    /// A record's value; `None` if it never existed or is deleted.
    pub fn get(&self, key: impl Into<Key>) -> Result<Option<Value>, ReadError> {
        Ok(self.record(key)?.and_then(|r| r.value))
    }

    /// A record's value converted to `T`.
    pub fn get_typed<T: DeserializeOwned>(
        &self,
        key: impl Into<Key>,
    ) -> Result<Option<T>, ReadError> {
        match self.get(key)? {
            Some(v) => Ok(Some(from_value(v)?)),
            None => Ok(None),
        }
    }

    /// A record's merged state, tombstones included, with the winning version.
    pub fn record(&self, key: impl Into<Key>) -> Result<Option<RecordState>, ReadError> {
        let key = key.into();
        check_key(&key, self.replica.config().max_key_len)?;
        let read = self.replica.begin_read()?;
        let table = read.open_table(RECORDS).map_err(StorageError::from)?;
        match table
            .get(keys::record(&self.name, key.as_bytes()).as_slice())
            .map_err(StorageError::from)?
        {
            Some(g) => Ok(Some(tables::decode(RECORDS.name(), g.value())?)),
            None => Ok(None),
        }
    }

    /// Live records in a key range or prefix, forwards or backwards, up to a limit.
    pub fn scan(&self, scan: Scan) -> Result<Vec<(Key, Value)>, ReadError> {
        let mut out = Vec::new();
        self.scan_states(&scan, |key, state| {
            if let Some(value) = state.value {
                out.push((key, value));
            }
            scan.limit.is_none_or(|n| out.len() < n)
        })?;
        Ok(out)
    }

    /// Every record's merged state, tombstones included, in key order.
    pub fn states(&self) -> Result<Vec<(Key, RecordState)>, ReadError> {
        let mut out = Vec::new();
        self.scan_states(&Scan::all(), |key, state| {
            out.push((key, state));
            true
        })?;
        Ok(out)
    }

    /// Walks the records table; `visit` returns false to stop.
    fn scan_states(
        &self,
        scan: &Scan,
        mut visit: impl FnMut(Key, RecordState) -> bool,
    ) -> Result<(), ReadError> {
        if scan.limit == Some(0) {
            return Ok(());
        }
        if range_is_empty(&scan.start, &scan.end) {
            return Ok(());
        }
        // A collection's record keys are its escaped name followed by the
        // key bytes, so key ranges map onto the prefix.
        let prefix = keys::collection(&self.name);
        let with = |k: &Key| keys::record(&self.name, k.as_bytes());
        let start = match &scan.start {
            Bound::Included(k) => Bound::Included(with(k)),
            Bound::Excluded(k) => Bound::Excluded(with(k)),
            Bound::Unbounded => Bound::Included(prefix.clone()),
        };
        let end = match &scan.end {
            Bound::Included(k) => Bound::Included(with(k)),
            Bound::Excluded(k) => Bound::Excluded(with(k)),
            Bound::Unbounded => Bound::Excluded(keys::prefix_end(&prefix)),
        };
        let read = self.replica.begin_read()?;
        let table = read.open_table(RECORDS).map_err(StorageError::from)?;
        let range = table
            .range::<&[u8]>((as_slice(&start), as_slice(&end)))
            .map_err(StorageError::from)?;
        let mut step = |entry: RecordEntry<'_>| -> Result<bool, ReadError> {
            let (k, v) = entry.map_err(StorageError::from)?;
            let state: RecordState = tables::decode(RECORDS.name(), v.value())?;
            let key = k.value().get(prefix.len()..).ok_or_else(|| {
                StorageError::Inconsistent(format!("short key in {}", RECORDS.name()))
            })?;
            Ok(visit(Key::new(key), state))
        };
        if scan.reverse {
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
    pub fn history(&self, key: impl Into<Key>) -> Result<Vec<Change>, ReadError> {
        let key = key.into();
        check_key(&key, self.replica.config().max_key_len)?;
        let read = self.replica.begin_read()?;
        let table = read.open_table(CHANGES).map_err(StorageError::from)?;
        let prefix = keys::log_prefix(&self.name, key.as_bytes());
        let end = keys::prefix_end(&prefix);
        let mut out = Vec::new();
        for entry in table
            .range(prefix.as_slice()..end.as_slice())
            .map_err(StorageError::from)?
        {
            let (k, v) = entry.map_err(StorageError::from)?;
            let (stamp, origin) = keys::split_log_tail(CHANGES.name(), k.value())?;
            let body: ChangeBody = tables::decode(CHANGES.name(), v.value())?;
            out.push(Change {
                id: ChangeId {
                    origin: crate::model::ReplicaId::from_bytes(origin),
                    seq: body.seq,
                },
                collection: self.name.clone(),
                key: key.clone(),
                stamp: Stamp::from_u64(stamp),
                base: body.base,
                op: body.op,
            });
        }
        Ok(out)
    }

    /// The conflicts of the collection, in key order: losing changes that
    /// were concurrent with the winner (no later change was made on top of
    /// them). Replicas holding the same changes list the same conflicts.
    /// Only record-level policies (LWW, ranked, custom) record conflicts.
    pub fn conflicts(&self) -> Result<Vec<Conflict>, ReadError> {
        self.read_conflicts(&keys::collection(&self.name))
    }

    /// The conflicts of one record.
    pub fn conflicts_of(&self, key: impl Into<Key>) -> Result<Vec<Conflict>, ReadError> {
        let key = key.into();
        check_key(&key, self.replica.config().max_key_len)?;
        self.read_conflicts(&keys::log_prefix(&self.name, key.as_bytes()))
    }

    /// The conflicts whose keys start with `prefix` (an escaped name).
    fn read_conflicts(&self, prefix: &[u8]) -> Result<Vec<Conflict>, ReadError> {
        let read = self.replica.begin_read()?;
        let table = read.open_table(CONFLICTS).map_err(StorageError::from)?;
        let end = keys::prefix_end(prefix);
        let skip = keys::collection(&self.name).len();
        let mut out = Vec::new();
        for entry in table
            .range(prefix..end.as_slice())
            .map_err(StorageError::from)?
        {
            let (k, v) = entry.map_err(StorageError::from)?;
            let (key, stamp, origin) = keys::split_log(CONFLICTS.name(), k.value(), skip)?;
            let body: ConflictBody = tables::decode(CONFLICTS.name(), v.value())?;
            out.push(Conflict {
                key,
                loser: crate::model::Version {
                    stamp: Stamp::from_u64(stamp),
                    id: ChangeId {
                        origin: crate::model::ReplicaId::from_bytes(origin),
                        seq: body.seq,
                    },
                },
                value: body.value,
            });
        }
        Ok(out)
    }

    /// Resolves a record's conflicts by writing its final value (`None`
    /// deletes it). The write is made on top of every change held for the
    /// record, so as it syncs it clears the conflicts on every replica. Any
    /// later write of the record does the same.
    pub fn resolve(
        &self,
        key: impl Into<Key>,
        value: Option<Value>,
    ) -> Result<ChangeId, WriteError> {
        match value {
            Some(v) => self.put(key, v),
            None => self.delete(key),
        }
    }

    /// A stream of the changes committed to this collection from now on.
    pub fn watch(&self) -> Watch {
        Watch::new(self.replica.subscribe_events(), Some(self.name.clone()))
    }
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

fn single(committed: Committed) -> Result<ChangeId, WriteError> {
    committed.ids.first().copied().ok_or_else(|| {
        WriteError::Storage(StorageError::Inconsistent(
            "a single write committed nothing".into(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_skips_trailing_ff() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
