//! Multi-record transactions: the one local write path.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::clock::Stamp;
use crate::error::{ApplyError, StorageError, WriteError};
use crate::merge::Rule;
use crate::model::{Change, ChangeId, Key, MergePolicy, Op};
use crate::replica::Replica;
use crate::value::{Value, to_value};
use crate::watch::ChangeEvent;
use crate::writer::{Writer, check_key, check_op_depth, check_op_for_policy, encoded_len, next_id};

/// A multi-record transaction: queued writes that [`Transaction::commit`]
/// stores atomically and durably, as one atomic group that travels in one
/// batch. Dropping it uncommitted writes nothing.
pub struct Transaction {
    replica: Replica,
    ops: Vec<(String, Key, Op)>,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("replica", &self.replica.id())
            .field("ops", &self.ops.len())
            .finish()
    }
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
        self.ops
            .push((collection.to_string(), key.into(), Op::Put(value.into())));
        self
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
        self.ops
            .push((collection.to_string(), key.into(), Op::Patch(fields)));
        self
    }

    /// Queues deleting a record (leaving a tombstone).
    pub fn delete(&mut self, collection: &str, key: impl Into<Key>) -> &mut Self {
        self.ops
            .push((collection.to_string(), key.into(), Op::Delete));
        self
    }

    /// Queues automerge changes (uncompressed change chunks, concatenated)
    /// to a record of an automerge collection; see
    /// [`crate::Collection::automerge_change`].
    #[cfg(feature = "automerge")]
    pub(crate) fn automerge(
        &mut self,
        collection: &str,
        key: impl Into<Key>,
        changes: Vec<u8>,
    ) -> &mut Self {
        self.ops
            .push((collection.to_string(), key.into(), Op::Automerge(changes)));
        self
    }

    /// The number of queued writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Stores every queued write in one durable commit, or none of them.
    ///
    /// Each write gets its own change (id, stamp) and feed entry; watchers
    /// see them after the commit. An empty transaction commits nothing.
    pub fn commit(self) -> Result<Committed, WriteError> {
        let replica = &self.replica;
        let cfg = replica.config();
        if self.ops.len() > cfg.max_batch_changes {
            return Err(WriteError::TransactionTooLarge {
                len: self.ops.len(),
                max: cfg.max_batch_changes,
            });
        }
        let mut policies = Vec::with_capacity(self.ops.len());
        for (collection, key, op) in &self.ops {
            let (coll, rule) = replica
                .collection_rule(collection)
                .ok_or_else(|| WriteError::UnknownCollection(collection.clone()))?;
            check_key(key, cfg.max_key_len)?;
            check_value_len(op, cfg.max_value_len)?;
            match (op, &coll.policy) {
                // A patch on a record-level collection is a read-modify-write.
                (Op::Patch(_), p) if p.is_record_level() => {}
                (Op::Put(v), MergePolicy::FieldLww) if !matches!(v, Value::Map(_)) => {
                    return Err(WriteError::NotAMap);
                }
                (op, policy) => check_op_for_policy(op, policy).map_err(WriteError::Unsupported)?,
            }
            policies.push(rule);
        }

        let mut guard = replica.lock_write();
        if self.ops.is_empty() {
            return Ok(Committed {
                ids: Vec::new(),
                stamp: guard.hlc.last(),
                lsn: guard.lsn,
                conflicts: 0,
            });
        }
        let mut state = guard.clone();
        let now = replica.now_millis();
        let txn = replica.begin_write()?;
        let listened = replica.has_listeners();
        let mut events = Vec::with_capacity(if listened { self.ops.len() } else { 0 });
        let mut ids = Vec::with_capacity(self.ops.len());
        let mut conflict_count = 0;
        {
            let mut w = Writer::open(&txn)?;
            for ((collection, key, op), rule) in self.ops.into_iter().zip(policies) {
                let current = w.record(&collection, &key)?;
                let op = match (op, &rule) {
                    (Op::Patch(fields), rule) if rule.is_record_level() => {
                        let mut map = match current.as_ref().and_then(|r| r.value.clone()) {
                            Some(Value::Map(map)) => map,
                            None => BTreeMap::new(),
                            Some(_) => return Err(WriteError::NotAMap),
                        };
                        map.extend(fields);
                        let op = Op::Put(Value::Map(map));
                        check_value_len(&op, cfg.max_value_len)?;
                        op
                    }
                    (op, _) => op,
                };
                // Made on top of the newest change of the record held here:
                // the winner under last-writer-wins policies, where the
                // winner's stamp is the greatest; a lookup otherwise.
                let base = match (&rule, &current) {
                    (_, None) => Stamp::ZERO,
                    (Rule::Lww | Rule::FieldLww, Some(c)) => c.version.stamp,
                    _ => w.latest_stamp(&collection, &key)?,
                };
                let change = Change {
                    id: next_id(replica.id(), &mut state),
                    collection,
                    key,
                    stamp: state.hlc.tick(now),
                    base,
                    op,
                };
                let (lsn, conflicts) = w
                    .store_fresh(&mut state, &rule, &change, current)
                    .map_err(local_store_error)?;
                conflict_count += conflicts;
                ids.push(change.id);
                if listened {
                    events.push(ChangeEvent {
                        lsn,
                        change,
                        source: None,
                    });
                }
            }
            w.finish(&state, None)?;
        }
        txn.commit().map_err(StorageError::from)?;
        *guard = state;
        let committed = Committed {
            ids,
            stamp: guard.hlc.last(),
            lsn: guard.lsn,
            conflicts: conflict_count,
        };
        drop(guard);
        replica.publish(events);
        Ok(committed)
    }
}

fn check_value_len(op: &Op, max: usize) -> Result<(), WriteError> {
    check_op_depth(op)?;
    let len = encoded_len(op);
    if len > max {
        return Err(WriteError::ValueTooLarge { len, max });
    }
    Ok(())
}

/// Storing a freshly made local change can only fail in storage: its id and
/// stamp are new by construction.
fn local_store_error(e: ApplyError) -> WriteError {
    match e {
        ApplyError::Storage(e) => WriteError::Storage(e),
        other => WriteError::Storage(StorageError::Inconsistent(other.to_string())),
    }
}
