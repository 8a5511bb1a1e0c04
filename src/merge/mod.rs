//! Merge rules: pure functions from a record's changes to its state.
//!
//! A rule must be a deterministic, total function of the *set* of a record's
//! changes: the same set in any order, with duplicates, gives the same state.
//! The store applies rules incrementally (current state + one change); the
//! property tests and [`crate::testing::laws`] (feature `testing`) check that
//! this agrees with folding the set in any order.
//!
//! This layer knows the model and the clock only: nothing here reads or
//! writes storage, and [`check_op`] is the one place that says which ops a
//! policy accepts.

#[cfg(feature = "automerge")]
pub(crate) mod automerge;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Stamp;
use crate::model::{Change, MergePolicy, Op, Ranks, Version};
use crate::value::Value;

#[cfg(feature = "automerge")]
pub use self::automerge::AutomergeOpError;

/// The merged state of one record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordState {
    /// The version of the change that decided the state; for field-level
    /// records, the greatest version among the changes applied.
    pub version: Version,
    /// The record's value, or `None` for a tombstone.
    pub value: Option<Value>,
    /// Field-level records: the winning version of each field (empty otherwise).
    pub fields: BTreeMap<String, Version>,
    /// Field-level records: the newest delete, which masks every field
    /// written at or before it (`None` otherwise).
    pub tombstone: Option<Version>,
    /// The greatest [`Change::base`] among the record's changes: every change
    /// stamped at or before it was seen by a later change, so it is no conflict.
    pub seen: Stamp,
}

impl RecordState {
    /// Whether the record is deleted (a tombstone).
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    fn single(change: &Change, value: Option<Value>, seen: Stamp) -> Self {
        Self {
            version: change.version(),
            value,
            fields: BTreeMap::new(),
            tombstone: None,
            seen: seen.max(change.base),
        }
    }
}

/// One side of a [`Resolver`]'s choice: a version of a record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate<'a> {
    /// The change's version (stamp and id, with its origin).
    pub version: Version,
    /// Its value; `None` for a delete.
    pub value: Option<&'a Value>,
}

/// A user-supplied merge rule for [`MergePolicy::Custom`]: it orders any two
/// versions of a record, and the greatest wins.
///
/// It must be a total order that depends only on the two candidates (never
/// on time, randomness or arrival order); `Equal` falls back to last writer
/// wins. Check yours with `syncline::testing::laws` (feature `testing`).
///
/// ```
/// use std::cmp::Ordering;
/// use syncline::{Candidate, Resolver, Value};
///
/// /// The greatest number wins; anything else loses to a number.
/// #[derive(Debug)]
/// struct MaxWins;
///
/// impl Resolver for MaxWins {
///     fn name(&self) -> &str {
///         "max-wins"
///     }
///     fn compare(&self, a: Candidate<'_>, b: Candidate<'_>) -> Ordering {
///         let n = |c: Candidate<'_>| c.value.and_then(Value::as_i64);
///         n(a).cmp(&n(b))
///     }
/// }
/// ```
pub trait Resolver: Send + Sync + fmt::Debug {
    /// The name collections refer to in [`MergePolicy::Custom`]; replicas
    /// compare it in the handshake.
    fn name(&self) -> &str;

    /// Orders two candidate versions; the greater wins.
    fn compare(&self, a: Candidate<'_>, b: Candidate<'_>) -> Ordering;
}

/// A merge rule ready to apply: a [`MergePolicy`] with its resolver found.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Rule {
    /// [`MergePolicy::Lww`].
    Lww,
    /// [`MergePolicy::FieldLww`].
    FieldLww,
    /// [`MergePolicy::Ranked`].
    Ranked(Ranks),
    /// [`MergePolicy::Custom`], with its resolver.
    Custom(Arc<dyn Resolver>),
    /// [`MergePolicy::Automerge`].
    #[cfg(feature = "automerge")]
    Automerge,
}

impl Rule {
    /// The rule of `policy`, finding a custom policy's resolver among
    /// `resolvers`; an error says what is missing.
    pub fn for_policy(
        policy: &MergePolicy,
        resolvers: &[Arc<dyn Resolver>],
    ) -> Result<Self, PolicyError> {
        Ok(match policy {
            MergePolicy::Lww => Self::Lww,
            MergePolicy::FieldLww => Self::FieldLww,
            MergePolicy::Ranked(ranks) => Self::Ranked(ranks.clone()),
            MergePolicy::Custom(name) => Self::Custom(
                resolvers
                    .iter()
                    .find(|r| r.name() == name)
                    .cloned()
                    .ok_or_else(|| PolicyError::UnknownResolver { name: name.clone() })?,
            ),
            #[cfg(feature = "automerge")]
            MergePolicy::Automerge => Self::Automerge,
            #[cfg(not(feature = "automerge"))]
            MergePolicy::Automerge => {
                return Err(PolicyError::FeatureDisabled {
                    feature: "automerge",
                });
            }
        })
    }

    /// Whether the rule picks one change as the winner, so that losing
    /// concurrent changes are conflicts.
    pub fn is_record_level(&self) -> bool {
        matches!(self, Self::Lww | Self::Ranked(_) | Self::Custom(_))
    }
}

/// Why a collection's [`MergePolicy`] has no [`Rule`] here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A [`MergePolicy::Custom`] names a resolver that is not registered.
    #[error("no resolver named {name:?} is registered")]
    UnknownResolver {
        /// The name the policy gives.
        name: String,
    },
    /// The policy needs a cargo feature this build was made without.
    #[error("the policy needs the `{feature}` feature")]
    FeatureDisabled {
        /// The feature.
        feature: &'static str,
    },
}

/// What an op does, as far as policies tell ops apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpKind {
    /// A put of a map.
    PutMap,
    /// A put of a value that is not a map.
    PutOther,
    /// A patch of some fields.
    Patch,
    /// Automerge changes.
    Automerge,
    /// A delete.
    Delete,
    /// A purge: a delete that erases the record's history.
    Purge,
}

impl OpKind {
    /// The kind of `op`.
    pub fn of(op: &Op) -> Self {
        match op {
            Op::Put(Value::Map(_)) => Self::PutMap,
            Op::Put(_) => Self::PutOther,
            Op::Patch(_) => Self::Patch,
            Op::Automerge(_) => Self::Automerge,
            Op::Delete => Self::Delete,
            Op::Purge => Self::Purge,
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PutMap => "a put",
            Self::PutOther => "a put of a value that is not a map",
            Self::Patch => "a patch",
            Self::Automerge => "an automerge change",
            Self::Delete => "a delete",
            Self::Purge => "a purge",
        })
    }
}

/// Why an op may not be stored in a collection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// The collection's policy does not accept this kind of op.
    #[error("{op} is not allowed on a {policy:?} collection")]
    NotAllowed {
        /// What the op does.
        op: OpKind,
        /// The collection's policy.
        policy: MergePolicy,
    },
    /// The bytes of an automerge op are malformed.
    #[cfg(feature = "automerge")]
    #[error(transparent)]
    Automerge(#[from] AutomergeOpError),
}

/// Which ops `policy` accepts (as stored: a local patch on a record-level
/// collection is turned into a put before it gets here), and whether an
/// automerge op's bytes are well formed. Local writes and remote batches
/// both go through here.
pub(crate) fn check_op(op: &Op, policy: &MergePolicy) -> Result<(), OpError> {
    let kind = OpKind::of(op);
    let ok = match (kind, policy) {
        (OpKind::Delete, _) => true,
        (OpKind::Purge, p) => *p != MergePolicy::Automerge,
        (OpKind::PutMap | OpKind::PutOther, p) if p.is_record_level() => true,
        (OpKind::PutMap | OpKind::Patch, MergePolicy::FieldLww) => true,
        (OpKind::Automerge, MergePolicy::Automerge) => true,
        _ => false,
    };
    if !ok {
        return Err(OpError::NotAllowed {
            op: kind,
            policy: policy.clone(),
        });
    }
    #[cfg(feature = "automerge")]
    if let Op::Automerge(bytes) = op {
        automerge::validate(bytes)?;
    }
    Ok(())
}

/// Folds one change into a record's state under `rule`.
///
/// Returns the new state, or `None` when the change does not alter it.
pub fn merge_one(
    rule: &Rule,
    current: Option<&RecordState>,
    change: &Change,
) -> Option<RecordState> {
    match rule {
        Rule::Lww => select(current, change, |new, cur| new.version > cur.version),
        Rule::Ranked(ranks) => select(current, change, |new, cur| {
            let rank = |c: &Candidate<'_>| ranks.rank(c.version.id.origin);
            (rank(&new), new.version) > (rank(&cur), cur.version)
        }),
        Rule::Custom(resolver) => select(current, change, |new, cur| {
            match resolver.compare(new, cur) {
                Ordering::Greater => true,
                Ordering::Less => false,
                Ordering::Equal => new.version > cur.version,
            }
        }),
        Rule::FieldLww => field_lww(current, change),
        #[cfg(feature = "automerge")]
        Rule::Automerge => automerge::merge(current, change),
    }
}

/// The state a set of changes yields under `rule`, in whatever order and
/// multiplicity they come; `None` when there are no changes.
pub fn merge_all<'a>(
    rule: &Rule,
    changes: impl IntoIterator<Item = &'a Change>,
) -> Option<RecordState> {
    let mut state = None;
    for change in changes {
        if let Some(next) = merge_one(rule, state.as_ref(), change) {
            state = Some(next);
        }
    }
    state
}

/// The value a record-level change gives its record.
pub(crate) fn record_value(op: &Op) -> Option<Value> {
    match op {
        Op::Put(value) => Some(value.clone()),
        // The store turns patches on record-level collections into puts
        // before they are stored and refuses them from peers; reading one as
        // a put of its fields keeps this function total.
        Op::Patch(fields) => Some(Value::Map(fields.clone())),
        // Refused on record-level collections; read as bytes for totality.
        Op::Automerge(bytes) => Some(Value::Bytes(bytes.clone())),
        Op::Delete | Op::Purge => None,
    }
}

/// Record-level rules: the greatest change by `beats` decides the record. A
/// winning `Delete` leaves a tombstone, so an older `Put` that arrives later
/// does not resurrect the record; a newer one does.
fn select(
    current: Option<&RecordState>,
    change: &Change,
    beats: impl Fn(Candidate<'_>, Candidate<'_>) -> bool,
) -> Option<RecordState> {
    let value = record_value(&change.op);
    let Some(cur) = current else {
        return Some(RecordState::single(change, value, Stamp::ZERO));
    };
    let new = Candidate {
        version: change.version(),
        value: value.as_ref(),
    };
    let old = Candidate {
        version: cur.version,
        value: cur.value.as_ref(),
    };
    if new.version != old.version && beats(new, old) {
        return Some(RecordState::single(change, value, cur.seen));
    }
    (change.base > cur.seen).then(|| RecordState {
        seen: change.base,
        ..cur.clone()
    })
}

/// Field-level last writer wins; see [`MergePolicy::FieldLww`].
fn field_lww(current: Option<&RecordState>, change: &Change) -> Option<RecordState> {
    let v = change.version();
    let mut next = current.cloned().unwrap_or(RecordState {
        version: v,
        value: None,
        fields: BTreeMap::new(),
        tombstone: None,
        seen: Stamp::ZERO,
    });
    let mut map = match next.value.take() {
        Some(Value::Map(map)) => map,
        _ => BTreeMap::new(),
    };
    let masked = next.tombstone.is_some_and(|t| t >= v);
    match &change.op {
        Op::Delete | Op::Purge if !masked => {
            next.tombstone = Some(v);
            next.fields.retain(|_, fv| *fv > v);
            map.retain(|f, _| next.fields.contains_key(f));
        }
        Op::Put(Value::Map(fields)) | Op::Patch(fields) if !masked => {
            for (f, value) in fields {
                if next.fields.get(f).is_none_or(|fv| *fv < v) {
                    next.fields.insert(f.clone(), v);
                    map.insert(f.clone(), value.clone());
                }
            }
        }
        // Masked writes, and ops the store refuses on field-level
        // collections (non-map puts, automerge changes), change no field.
        _ => {}
    }
    next.version = next.version.max(v);
    next.seen = next.seen.max(change.base);
    let exists = !next.fields.is_empty() || next.tombstone != Some(next.version);
    next.value = exists.then_some(Value::Map(map));
    (current != Some(&next)).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
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
            base: Stamp::ZERO,
            op,
        }
    }

    fn fields(pairs: &[(&str, i64)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(f, v)| (f.to_string(), Value::Int(*v)))
            .collect()
    }

    #[test]
    fn delete_leaves_tombstone_older_put_cannot_undo() {
        let put1 = change(1, 1, Op::Put(Value::Int(1)));
        let del = change(5, 2, Op::Delete);
        let late_put = change(3, 3, Op::Put(Value::Int(3)));
        let state = merge_all(&Rule::Lww, [&put1, &del, &late_put]).unwrap();
        assert!(state.is_tombstone());
        assert_eq!(state.version, del.version());

        let newer = change(9, 1, Op::Put(Value::Int(9)));
        let state = merge_all(&Rule::Lww, [&put1, &del, &late_put, &newer]).unwrap();
        assert_eq!(state.value, Some(Value::Int(9)));
    }

    #[test]
    fn equal_stamps_break_ties_by_origin() {
        let a = change(7, 1, Op::Put(Value::Int(1)));
        let b = change(7, 2, Op::Put(Value::Int(2)));
        let ab = merge_all(&Rule::Lww, [&a, &b]);
        let ba = merge_all(&Rule::Lww, [&b, &a]);
        assert_eq!(ab, ba);
        assert_eq!(ab.unwrap().value, Some(Value::Int(2)));
    }

    #[test]
    fn reapplying_the_winner_changes_nothing() {
        let a = change(7, 1, Op::Put(Value::Int(1)));
        let state = merge_one(&Rule::Lww, None, &a).unwrap();
        assert!(merge_one(&Rule::Lww, Some(&state), &a).is_none());
    }

    #[test]
    fn rank_beats_stamp() {
        let hub = ReplicaId::from_bytes([9; 16]);
        let rule = Rule::Ranked(Ranks::hub_wins(hub));
        let from_hub = change(1, 9, Op::Put(Value::Int(1)));
        let later_client = change(50, 1, Op::Put(Value::Int(2)));
        let state = merge_all(&rule, [&from_hub, &later_client]).unwrap();
        assert_eq!(state.value, Some(Value::Int(1)));
        let rule = Rule::Ranked(Ranks::clients_win(hub));
        let state = merge_all(&rule, [&later_client, &from_hub]).unwrap();
        assert_eq!(state.value, Some(Value::Int(2)));
    }

    #[test]
    fn concurrent_edits_of_different_fields_both_survive() {
        let a = change(5, 1, Op::Patch(fields(&[("title", 1)])));
        let b = change(6, 2, Op::Patch(fields(&[("done", 1)])));
        let state = merge_all(&Rule::FieldLww, [&b, &a]).unwrap();
        assert_eq!(
            state.value,
            Some(Value::Map(fields(&[("done", 1), ("title", 1)])))
        );
    }

    #[test]
    fn field_tombstone_masks_older_fields_and_newer_fields_resurrect_alone() {
        let old = change(3, 1, Op::Patch(fields(&[("a", 1), ("b", 1)])));
        let del = change(10, 2, Op::Delete);
        let late_old = change(9, 3, Op::Patch(fields(&[("c", 1)])));
        let state = merge_all(&Rule::FieldLww, [&old, &del, &late_old]).unwrap();
        assert!(state.is_tombstone(), "{state:?}");
        let newer = change(12, 1, Op::Patch(fields(&[("b", 2)])));
        for order in [
            [&old, &del, &late_old, &newer],
            [&newer, &late_old, &del, &old],
        ] {
            let state = merge_all(&Rule::FieldLww, order).unwrap();
            assert_eq!(state.value, Some(Value::Map(fields(&[("b", 2)]))));
        }
    }
}
