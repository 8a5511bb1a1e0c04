//! Collection handles: reading and writing the records of one collection.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Bound, RangeBounds};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Inconsistency, ReadError, StorageError, WriteError};
use crate::merge::RecordState;
use crate::model::{Change, CollectionConfig, Key};
use crate::replica::Replica;
use crate::store::{Conflict, check_key};
use crate::txn::{Committed, Written};
use crate::value::{Value, from_value};
use crate::watch::Watch;

#[cfg(feature = "automerge")]
mod automerge;

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
    pub fn put(&self, key: impl Into<Key>, value: impl Into<Value>) -> Result<Written, WriteError> {
        let mut txn = self.replica.transaction();
        txn.put(&self.name, key, value);
        single(txn.commit()?)
    }

    /// Sets a record to a serde value (a struct becomes a map of its fields).
    pub fn put_typed<T: Serialize + ?Sized>(
        &self,
        key: impl Into<Key>,
        value: &T,
    ) -> Result<Written, WriteError> {
        let mut txn = self.replica.transaction();
        txn.put_typed(&self.name, key, value)?;
        single(txn.commit()?)
    }

    /// Sets some fields of a map-valued record, keeping the others.
    pub fn patch(
        &self,
        key: impl Into<Key>,
        fields: BTreeMap<String, Value>,
    ) -> Result<Written, WriteError> {
        let mut txn = self.replica.transaction();
        txn.patch(&self.name, key, fields);
        single(txn.commit()?)
    }

    /// Deletes a record, leaving a tombstone that older writes cannot undo.
    pub fn delete(&self, key: impl Into<Key>) -> Result<Written, WriteError> {
        let mut txn = self.replica.transaction();
        txn.delete(&self.name, key);
        single(txn.commit()?)
    }

    /// Purges a record: deletes it and erases its history, here and on
    /// every replica the purge reaches. Each drops the record's earlier
    /// changes, whatever kept them (conflicts, the collection's history,
    /// undo entries), keeps only the purge as a tombstone, and keeps no
    /// change older than the purge that arrives later, not even as
    /// history; a tombstone collection removes the purge itself after its
    /// horizon. Newer writes recreate the record as after a delete. Not on
    /// automerge collections (`OpError::NotAllowed`).
    ///
    /// What redb freed stays in the file's free pages until reused or the
    /// file is compacted ([`crate::Replica::compact_file`]); a replica that
    /// never receives the purge keeps what it holds.
    pub fn purge(&self, key: impl Into<Key>) -> Result<Written, WriteError> {
        let mut txn = self.replica.transaction();
        txn.purge(&self.name, key);
        single(txn.commit()?)
    }

    /// How many records hold a value (tombstones not counted). Reads one
    /// byte per record, never a value.
    pub fn len(&self) -> Result<u64, ReadError> {
        Ok(self.counts()?.live)
    }

    /// Whether no record holds a value.
    pub fn is_empty(&self) -> Result<bool, ReadError> {
        Ok(self.len()? == 0)
    }

    /// How many records hold a value, and how many are tombstones. Reads
    /// one byte per record, never a value.
    pub fn counts(&self) -> Result<RecordCounts, ReadError> {
        let (live, tombstones) = self.replica.store().counts(&self.name)?;
        Ok(RecordCounts { live, tombstones })
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
        let key = self.checked(key)?;
        Ok(self.replica.store().record(&self.name, &key)?)
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

    /// Records in a key range or prefix, tombstones included, with their
    /// merged states: [`Collection::scan`] for tools that page through
    /// every record (the limit counts tombstones too).
    pub fn records(&self, scan: Scan) -> Result<Vec<(Key, RecordState)>, ReadError> {
        let mut out = Vec::new();
        self.scan_states(&scan, |key, state| {
            out.push((key, state));
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

    /// Walks the records in `scan`'s range; `visit` returns false to stop.
    fn scan_states(
        &self,
        scan: &Scan,
        visit: impl FnMut(Key, RecordState) -> bool,
    ) -> Result<(), ReadError> {
        if scan.limit == Some(0) {
            return Ok(());
        }
        Ok(self.replica.store().scan_records(
            &self.name,
            &scan.start,
            &scan.end,
            scan.reverse,
            visit,
        )?)
    }

    /// The changes this replica keeps of one record, in merge order (stamp,
    /// then origin): what its merge policy needs (the winner, conflicts, the
    /// change that saw the most; field-level: each field's winner and the
    /// newest delete; automerge: every change), plus the superseded changes
    /// the collection's [`crate::History`] keeps (none by default). Changes
    /// superseded beyond that are dropped, here and on every replica, so
    /// two replicas may keep different histories of the same record; they
    /// always merge to the same state.
    pub fn history(&self, key: impl Into<Key>) -> Result<Vec<Change>, ReadError> {
        let key = self.checked(key)?;
        Ok(self.replica.store().history(&self.name, &key, false)?)
    }

    /// The conflicts of the collection, in key order: losing changes that
    /// were concurrent with the winner (no later change was made on top of
    /// them). Replicas holding the same changes list the same conflicts.
    /// Only record-level policies (LWW, ranked, custom) record conflicts.
    pub fn conflicts(&self) -> Result<Vec<Conflict>, ReadError> {
        Ok(self.replica.store().conflicts(&self.name, None)?)
    }

    /// The conflicts of one record.
    pub fn conflicts_of(&self, key: impl Into<Key>) -> Result<Vec<Conflict>, ReadError> {
        let key = self.checked(key)?;
        Ok(self.replica.store().conflicts(&self.name, Some(&key))?)
    }

    /// A key, checked against the configured bounds.
    fn checked(&self, key: impl Into<Key>) -> Result<Key, ReadError> {
        let key = key.into();
        check_key(&key, self.replica.limits().max_key_len)?;
        Ok(key)
    }

    /// Resolves a record's conflicts by writing its final value (`None`
    /// deletes it). The write is made on top of every change held for the
    /// record, so as it syncs it clears the conflicts on every replica. Any
    /// later write of the record does the same.
    pub fn resolve(
        &self,
        key: impl Into<Key>,
        value: Option<Value>,
    ) -> Result<Written, WriteError> {
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

/// How many records a collection holds ([`Collection::counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordCounts {
    /// Records with a value.
    pub live: u64,
    /// Deleted records (tombstones) not collected yet.
    pub tombstones: u64,
}

/// The id of a one-write transaction's change.
fn single(committed: Committed) -> Result<Written, WriteError> {
    let id = committed.ids.first().copied().ok_or_else(|| {
        WriteError::Storage(StorageError::Invalid {
            table: "feed-3",
            reason: Inconsistency::EmptyCommit,
        })
    })?;
    Ok(Written {
        id,
        stamp: committed.stamp,
        lsn: committed.lsn,
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
