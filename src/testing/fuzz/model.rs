//! A plain model of last-writer-wins records and their conflicts.

use std::collections::BTreeMap;

use crate::{Change, Conflict, Key, Op, RecordState, Replica, Rule, Stamp, Value, merge_all};

/// The merge order, spelled out: stamp, then origin, then sequence number.
type Rank = (u64, [u8; 16], u64);

pub(super) fn rank(c: &Change) -> Rank {
    (c.stamp.as_u64(), *c.id.origin.as_bytes(), c.id.seq)
}

/// The value a change gives its record under last-writer-wins.
fn op_value(op: &Op) -> Option<Value> {
    match op {
        Op::Put(v) => Some(v.clone()),
        Op::Patch(fields) => Some(Value::Map(fields.clone())),
        Op::Automerge(bytes) => Some(Value::Bytes(bytes.clone())),
        Op::Delete | Op::Purge => None,
    }
}

/// What the documented rules say a set of changes (no two in one slot)
/// holds, written as plainly as possible.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Model {
    /// Per record: the change with the greatest (stamp, origin, seq) decides
    /// (a delete leaves a tombstone), and `seen` is the greatest `base`.
    records: BTreeMap<(String, Key), RecordState>,
    /// Per collection, in (key, stamp, origin) order: the changes that lost
    /// and that no change of their record was made on top of (stamp above
    /// the record's `seen`).
    conflicts: BTreeMap<String, Vec<Conflict>>,
}

impl Model {
    pub(super) fn of<'a>(changes: impl IntoIterator<Item = &'a Change>) -> Self {
        let mut by_record: BTreeMap<(String, Key), Vec<&Change>> = BTreeMap::new();
        for c in changes {
            by_record
                .entry((c.collection.clone(), c.key.clone()))
                .or_default()
                .push(c);
        }
        let mut model = Self::default();
        for ((collection, key), changes) in by_record {
            let winner = changes
                .iter()
                .copied()
                .max_by_key(|c| rank(c))
                .expect("a record has changes");
            let seen = changes.iter().map(|c| c.base).max().unwrap_or(Stamp::ZERO);
            let mut losers: Vec<&Change> = changes
                .iter()
                .copied()
                .filter(|c| rank(c) != rank(winner) && c.stamp > seen)
                .collect();
            losers.sort_by_key(|c| (c.stamp, c.id.origin));
            let conflicts = model.conflicts.entry(collection.clone()).or_default();
            conflicts.extend(losers.into_iter().map(|c| Conflict {
                key: key.clone(),
                loser: c.version(),
                value: op_value(&c.op),
            }));
            model.records.insert(
                (collection, key),
                RecordState {
                    version: winner.version(),
                    value: op_value(&winner.op),
                    fields: BTreeMap::new(),
                    tombstone: None,
                    seen,
                },
            );
        }
        model
    }

    /// The records of one collection, in key order, as
    /// [`crate::Collection::states`] lists them.
    fn states(&self, collection: &str) -> Vec<(Key, RecordState)> {
        self.records
            .iter()
            .filter(|((c, _), _)| c == collection)
            .map(|((_, k), s)| (k.clone(), s.clone()))
            .collect()
    }

    /// The conflicts of one collection, as [`crate::Collection::conflicts`] lists them.
    fn conflicts(&self, collection: &str) -> Vec<Conflict> {
        self.conflicts.get(collection).cloned().unwrap_or_default()
    }

    /// [`merge_all`] over each record's changes (in reverse order) agrees.
    pub(super) fn check_merge_all(&self, changes: &[Change]) {
        let mut by_record: BTreeMap<(String, Key), Vec<&Change>> = BTreeMap::new();
        for c in changes {
            by_record
                .entry((c.collection.clone(), c.key.clone()))
                .or_default()
                .push(c);
        }
        assert_eq!(by_record.len(), self.records.len());
        for (slot, changes) in by_record {
            let merged = merge_all(&Rule::Lww, changes.into_iter().rev());
            assert_eq!(
                merged.as_ref(),
                self.records.get(&slot),
                "merge_all disagrees with the model on {slot:?}"
            );
        }
    }

    /// `replica` holds exactly these records and conflicts in `collection`.
    pub(super) fn check(&self, replica: &Replica, collection: &str, what: &str) {
        let handle = replica
            .collection(collection)
            .unwrap_or_else(|e| panic!("{what}: collection {collection:?}: {e}"));
        assert_eq!(
            handle.states().expect("records read"),
            self.states(collection),
            "{what}: records of {collection:?}"
        );
        let conflicts = handle.conflicts().expect("conflicts read");
        assert_eq!(
            conflicts,
            self.conflicts(collection),
            "{what}: conflicts of {collection:?}"
        );
    }
}
