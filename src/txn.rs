//! Multi-record transactions: the handle that queues local writes and
//! hands them to the store's commit path.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::clock::Stamp;
use crate::error::WriteError;
use crate::model::{ChangeId, Key, Op};
use crate::replica::{CommitNote, Replica};
use crate::store::{LocalOp, check_local};
use crate::value::{Value, to_value};

/// A multi-record transaction: queued writes that [`Transaction::commit`]
/// stores atomically and durably, as one atomic group that travels in one
/// batch. Dropping it uncommitted writes nothing.
pub struct Transaction {
    replica: Replica,
    ops: Vec<LocalOp>,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("replica", &self.replica.id())
            .field("ops", &self.ops.len())
            .finish()
    }
}

/// What a single write stored: [`crate::Collection::put`] and its kin
/// return it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Written {
    /// The change's id.
    pub id: ChangeId,
    /// The change's stamp: its place in the merge order, which
    /// [`crate::Collection::record`] shows as the record's version while
    /// this write wins.
    pub stamp: Stamp,
    /// The change's lsn in this replica's feed.
    pub lsn: u64,
}

/// What a commit stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The ids of the changes, in the order they were queued.
    pub ids: Vec<ChangeId>,
    /// The stamp of the last change (the greatest of the commit).
    pub stamp: Stamp,
    /// The lsn of the last change.
    pub lsn: u64,
    /// Conflicts recorded: the writes lost to changes they did not see
    /// (possible under ranked and custom policies).
    pub conflicts: usize,
}

impl Transaction {
    pub(crate) fn new(replica: Replica) -> Self {
        Self {
            replica,
            ops: Vec::new(),
        }
    }

    /// Queues setting a record to `value`.
    pub fn put(
        &mut self,
        collection: &str,
        key: impl Into<Key>,
        value: impl Into<Value>,
    ) -> &mut Self {
        self.push(collection, key.into(), Op::Put(value.into()))
    }

    /// Queues setting a record to a serde value converted to a [`Value`].
    pub fn put_typed<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: impl Into<Key>,
        value: &T,
    ) -> Result<&mut Self, WriteError> {
        let value = to_value(value)?;
        Ok(self.put(collection, key, value))
    }

    /// Queues setting some fields of a map-valued record. On a
    /// last-writer-wins collection this is a read-modify-write at commit that
    /// stores a `Put` of the whole record; a missing or deleted record starts
    /// from an empty map.
    pub fn patch(
        &mut self,
        collection: &str,
        key: impl Into<Key>,
        fields: BTreeMap<String, Value>,
    ) -> &mut Self {
        self.push(collection, key.into(), Op::Patch(fields))
    }

    /// Queues deleting a record (leaving a tombstone).
    pub fn delete(&mut self, collection: &str, key: impl Into<Key>) -> &mut Self {
        self.push(collection, key.into(), Op::Delete)
    }

    /// Queues a purge of a record: a delete that erases its history on
    /// every replica it reaches (see [`crate::Collection::purge`]).
    pub fn purge(&mut self, collection: &str, key: impl Into<Key>) -> &mut Self {
        self.push(collection, key.into(), Op::Purge)
    }

    /// Queues automerge changes (uncompressed change chunks, concatenated)
    /// to a record of an automerge collection, as
    /// [`crate::Collection::automerge_change`] makes them, or as a record's
    /// value holds them (its changes, each once, concatenated): writing a
    /// record's value into another replica's record gives it the same
    /// document. The bytes are validated at commit; changes the record
    /// already holds change nothing.
    #[cfg(feature = "automerge")]
    pub fn automerge(
        &mut self,
        collection: &str,
        key: impl Into<Key>,
        changes: Vec<u8>,
    ) -> &mut Self {
        self.push(collection, key.into(), Op::Automerge(changes))
    }

    /// The collection of each queued write, in order (the simulation
    /// records what each commit wrote).
    #[cfg(feature = "testing")]
    pub(crate) fn collections(&self) -> Vec<String> {
        self.ops.iter().map(|op| op.collection.clone()).collect()
    }

    /// The number of queued writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Checks the queued writes as [`Transaction::commit`] does before it
    /// writes (collections known, keys, value depth and size, ops the
    /// policies allow, the number of writes), and writes nothing: a tool
    /// can find which write of a refused transaction is at fault. A
    /// transaction that passes can still fail to commit (storage, or a
    /// patch of a record that holds no map).
    pub fn check(&self) -> Result<(), WriteError> {
        check_local(
            self.replica.limits(),
            &self.replica.read_collections(),
            &self.ops,
        )
        .map(drop)
    }

    /// Stores every queued write in one durable commit, or none of them.
    ///
    /// Each write gets its own change (id, stamp) and feed entry; watchers
    /// see them after the commit. An empty transaction commits nothing.
    pub fn commit(self) -> Result<Committed, WriteError> {
        let replica = &self.replica;
        let (rules, synced) = {
            let collections = replica.read_collections();
            let rules = check_local(replica.limits(), &collections, &self.ops)?;
            let synced = self
                .ops
                .iter()
                .any(|op| collections.get(&op.collection).is_some_and(|(c, _)| c.sync));
            (rules, synced)
        };
        let stored = replica.store().write_local(
            replica.limits(),
            &*replica.config().time,
            self.ops,
            rules,
            &|| replica.has_listeners(),
        )?;
        let (ids, conflicts) = stored.value;
        replica.publish(stored.events);
        if !ids.is_empty() {
            replica.note_commit(CommitNote {
                lsn: stored.lsn,
                source: None,
                synced,
                carried: false,
            });
        }
        Ok(Committed {
            ids,
            stamp: stored.clock,
            lsn: stored.lsn,
            conflicts,
        })
    }

    /// Queues an op.
    fn push(&mut self, collection: &str, key: Key, op: Op) -> &mut Self {
        self.ops.push(LocalOp {
            collection: collection.to_string(),
            key,
            op,
        });
        self
    }
}
