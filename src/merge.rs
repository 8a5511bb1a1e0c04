//! Merge rules: pure functions from a record's changes to its state.
//!
//! A rule must be a deterministic, total function of the *set* of a record's
//! changes: the same set in any order, with duplicates, gives the same state.
//! The store applies rules incrementally (current state + one change); the
//! property tests check that this agrees with [`merge_all`] over the set.

use serde::{Deserialize, Serialize};

use crate::model::{Change, MergePolicy, Op, Version};
use crate::value::Value;

/// The merged state of one record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordState {
    /// The version of the change that decided the state.
    pub version: Version,
    /// The record's value, or `None` for a tombstone.
    pub value: Option<Value>,
}

impl RecordState {
    /// Whether the record is deleted (a tombstone).
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// Folds one change into a record's state under `policy`.
///
/// Returns the new state, or `None` when the change does not alter it.
pub fn merge_one(
    policy: MergePolicy,
    current: Option<&RecordState>,
    change: &Change,
) -> Option<RecordState> {
    match policy {
        MergePolicy::Lww => lww(current, change),
    }
}

/// The state a set of changes yields under `policy`, in whatever order and
/// multiplicity they come; `None` when there are no changes.
pub fn merge_all<'a>(
    policy: MergePolicy,
    changes: impl IntoIterator<Item = &'a Change>,
) -> Option<RecordState> {
    let mut state = None;
    for change in changes {
        if let Some(next) = merge_one(policy, state.as_ref(), change) {
            state = Some(next);
        }
    }
    state
}

/// Last writer wins: the change with the greatest [`Version`] decides the
/// record. A winning `Delete` leaves a tombstone, so an older `Put` that
/// arrives later does not resurrect the record; a newer one does.
fn lww(current: Option<&RecordState>, change: &Change) -> Option<RecordState> {
    let version = change.version();
    if current.is_some_and(|c| c.version >= version) {
        return None;
    }
    let value = match &change.op {
        Op::Put(value) => Some(value.clone()),
        // The store turns patches on LWW collections into puts before they
        // are stored, and refuses them from peers; reading one as a put of
        // its fields keeps this function total.
        Op::Patch(fields) => Some(Value::Map(fields.clone())),
        Op::Delete => None,
    };
    Some(RecordState { version, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Stamp;
    use crate::model::{ChangeId, ReplicaId};

    fn change(stamp: u64, origin: u8, op: Op) -> Change {
        Change {
            id: ChangeId {
                origin: ReplicaId::from_bytes([origin; 16]),
                seq: stamp,
            },
            collection: "c".into(),
            key: "k".into(),
            stamp: Stamp::from_u64(stamp),
            op,
        }
    }

    #[test]
    fn delete_leaves_tombstone_older_put_cannot_undo() {
        let put1 = change(1, 1, Op::Put(Value::Int(1)));
        let del = change(5, 2, Op::Delete);
        let late_put = change(3, 3, Op::Put(Value::Int(3)));
        let state = merge_all(MergePolicy::Lww, [&put1, &del, &late_put]).unwrap();
        assert!(state.is_tombstone());
        assert_eq!(state.version, del.version());

        let newer = change(9, 1, Op::Put(Value::Int(9)));
        let state = merge_all(MergePolicy::Lww, [&put1, &del, &late_put, &newer]).unwrap();
        assert_eq!(state.value, Some(Value::Int(9)));
    }

    #[test]
    fn equal_stamps_break_ties_by_origin() {
        let a = change(7, 1, Op::Put(Value::Int(1)));
        let b = change(7, 2, Op::Put(Value::Int(2)));
        let ab = merge_all(MergePolicy::Lww, [&a, &b]);
        let ba = merge_all(MergePolicy::Lww, [&b, &a]);
        assert_eq!(ab, ba);
        assert_eq!(ab.unwrap().value, Some(Value::Int(2)));
    }

    #[test]
    fn reapplying_the_winner_changes_nothing() {
        let a = change(7, 1, Op::Put(Value::Int(1)));
        let state = merge_one(MergePolicy::Lww, None, &a).unwrap();
        assert!(merge_one(MergePolicy::Lww, Some(&state), &a).is_none());
    }
}
