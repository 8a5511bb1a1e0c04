//! The one validation pass: every change, local or remote, is checked here
//! before its commit begins, so a refused write or batch stores nothing and
//! leaves the counters where they were.

use std::collections::HashMap;

use crate::codec;
use crate::error::{ApplyError, InvalidReason, KeyError, WriteError};
use crate::merge::{OpError, OpKind, Rule, check_op};
use crate::model::{Change, CollectionConfig, Key, MergePolicy, Op};
use crate::value::{MAX_DEPTH, ValueError};

use super::LocalOp;

/// The defined collections: each one's configuration and its merge rule.
pub(crate) type Collections = HashMap<String, (CollectionConfig, Rule)>;

/// The bounds every change must keep (from [`crate::ReplicaConfig`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The longest key, in bytes.
    pub(crate) max_key_len: usize,
    /// The largest encoded value, in bytes.
    pub(crate) max_value_len: usize,
    /// The most changes in one commit.
    pub(crate) max_batch_changes: usize,
}

/// The checks every change passes, local or remote, except the policy's:
/// key bounds, nesting depth, encoded size. Generic over the error so that
/// local writes and remote batches each get their own.
pub(crate) fn check_bounds<E>(limits: &Limits, key: &Key, op: &Op) -> Result<(), E>
where
    E: From<KeyError> + From<ValueError> + From<TooLarge>,
{
    check_key(key, limits.max_key_len)?;
    check_value(limits, op)
}

/// Depth and encoded size of an op's value.
pub(crate) fn check_value<E>(limits: &Limits, op: &Op) -> Result<(), E>
where
    E: From<ValueError> + From<TooLarge>,
{
    check_depth(op)?;
    let len = encoded_len(op);
    if len > limits.max_value_len {
        return Err(TooLarge {
            len,
            max: limits.max_value_len,
        }
        .into());
    }
    Ok(())
}

/// An encoded value longer than the configured maximum.
#[derive(Debug)]
pub(crate) struct TooLarge {
    len: usize,
    max: usize,
}

impl From<TooLarge> for WriteError {
    fn from(TooLarge { len, max }: TooLarge) -> Self {
        Self::ValueTooLarge { len, max }
    }
}

impl From<TooLarge> for InvalidReason {
    fn from(TooLarge { len, max }: TooLarge) -> Self {
        Self::ValueTooLarge { len, max }
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

/// Validates a local transaction; returns each op's rule.
///
/// A patch on a record-level collection is allowed here (the commit turns
/// it into a put of the whole record, and checks that put's size again);
/// a put of a non-map on a field-level collection is [`WriteError::NotAMap`].
pub(crate) fn check_local(
    limits: &Limits,
    collections: &Collections,
    ops: &[LocalOp],
) -> Result<Vec<Rule>, WriteError> {
    if ops.len() > limits.max_batch_changes {
        return Err(WriteError::TransactionTooLarge {
            len: ops.len(),
            max: limits.max_batch_changes,
        });
    }
    ops.iter()
        .map(|op| {
            let (config, rule) = collections
                .get(&op.collection)
                .ok_or_else(|| WriteError::UnknownCollection(op.collection.clone()))?;
            check_bounds::<WriteError>(limits, &op.key, &op.op)?;
            match (&op.op, &config.policy) {
                (Op::Patch(_), p) if p.is_record_level() => {}
                (op, policy) => check_op(op, policy).map_err(local_op_error)?,
            }
            Ok(rule.clone())
        })
        .collect()
}

/// Validates a remote batch whole; returns each change's rule. The remote
/// checks come on top of the local ones: the collection must be synced,
/// sequence numbers start at 1, and no change is made on top of a later one.
pub(crate) fn check_remote(
    limits: &Limits,
    collections: &Collections,
    changes: &[Change],
) -> Result<Vec<Rule>, ApplyError> {
    if changes.len() > limits.max_batch_changes {
        return Err(ApplyError::BatchTooLarge {
            len: changes.len(),
            max: limits.max_batch_changes,
        });
    }
    changes
        .iter()
        .map(|change| {
            let Some((config, rule)) = collections.get(&change.collection) else {
                return Err(ApplyError::UnknownCollection {
                    id: change.id,
                    collection: change.collection.clone(),
                });
            };
            if !config.sync {
                return Err(ApplyError::LocalOnlyCollection {
                    id: change.id,
                    collection: change.collection.clone(),
                });
            }
            check_change(limits, &config.policy, change).map_err(|reason| {
                ApplyError::InvalidChange {
                    id: change.id,
                    reason,
                }
            })?;
            Ok(rule.clone())
        })
        .collect()
}

/// The checks of one remote change against its collection's policy.
fn check_change(
    limits: &Limits,
    policy: &MergePolicy,
    change: &Change,
) -> Result<(), InvalidReason> {
    if change.id.seq == 0 {
        return Err(InvalidReason::ZeroSeq);
    }
    if change.base > change.stamp {
        return Err(InvalidReason::BaseAfterStamp);
    }
    check_bounds::<InvalidReason>(limits, &change.key, &change.op)?;
    Ok(check_op(&change.op, policy)?)
}

/// A local write's error for an op its policy refuses: a put of a non-map
/// on a field-level collection has its own.
fn local_op_error(e: OpError) -> WriteError {
    match e {
        OpError::NotAllowed {
            op: OpKind::PutOther,
            policy: MergePolicy::FieldLww,
        } => WriteError::NotAMap,
        e => WriteError::Op(e),
    }
}

/// Refuses values nested deeper than [`MAX_DEPTH`]: the codec could not
/// decode them again, and deep recursion could exhaust the stack.
fn check_depth(op: &Op) -> Result<(), ValueError> {
    match op {
        Op::Put(v) => v.check_depth(),
        Op::Patch(fields) => fields.values().try_for_each(|v| {
            // A patch's fields sit one level below the record.
            if v.depth() >= MAX_DEPTH {
                Err(ValueError::TooDeep { max: MAX_DEPTH })
            } else {
                Ok(())
            }
        }),
        Op::Delete | Op::Purge | Op::Automerge(_) => Ok(()),
    }
}

/// The encoded length of an op's value (0 for a delete).
fn encoded_len(op: &Op) -> usize {
    match op {
        Op::Put(v) => codec::encoded_len(v),
        Op::Patch(fields) => codec::encoded_len(fields),
        Op::Automerge(bytes) => bytes.len(),
        Op::Delete | Op::Purge => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::clock::Stamp;
    use crate::model::{ChangeId, ReplicaId};
    use crate::value::Value;

    const LIMITS: Limits = Limits {
        max_key_len: 4,
        max_value_len: 64,
        max_batch_changes: 2,
    };

    fn collections() -> Collections {
        let lww = CollectionConfig::default();
        let fields = CollectionConfig::default().with_policy(MergePolicy::FieldLww);
        let local = CollectionConfig {
            sync: false,
            ..CollectionConfig::default()
        };
        HashMap::from([
            ("lww".to_string(), (lww, Rule::Lww)),
            ("fields".to_string(), (fields, Rule::FieldLww)),
            ("local".to_string(), (local, Rule::Lww)),
        ])
    }

    fn local(collection: &str, key: &str, op: Op) -> LocalOp {
        LocalOp {
            collection: collection.into(),
            key: key.into(),
            op,
        }
    }

    fn remote(collection: &str, key: &str, seq: u64, base: u64, op: Op) -> Change {
        Change {
            id: ChangeId {
                origin: ReplicaId::from_bytes([1; 16]),
                seq,
            },
            collection: collection.into(),
            key: key.into(),
            stamp: Stamp::from_u64(10),
            base: Stamp::from_u64(base),
            op,
        }
    }

    #[test]
    fn one_pass_refuses_the_same_things_with_each_side_s_error() {
        let colls = collections();
        let scalar = || Op::Put(Value::Int(1));
        let patch = || Op::Patch(BTreeMap::from([("f".to_string(), Value::Int(1))]));
        // Local: a patch on a record-level collection is a read-modify-write.
        assert!(check_local(&LIMITS, &colls, &[local("lww", "k", patch())]).is_ok());
        assert!(matches!(
            check_local(&LIMITS, &colls, &[local("fields", "k", scalar())]),
            Err(WriteError::NotAMap)
        ));
        assert!(matches!(
            check_local(&LIMITS, &colls, &[local("lww", "", scalar())]),
            Err(WriteError::Key(KeyError::Empty))
        ));
        assert!(matches!(
            check_local(
                &LIMITS,
                &colls,
                &[local("lww", "k", Op::Put(Value::Bytes(vec![0; 80])))]
            ),
            Err(WriteError::ValueTooLarge { max: 64, .. })
        ));
        assert!(matches!(
            check_local(&LIMITS, &colls, &[local("nope", "k", scalar())]),
            Err(WriteError::UnknownCollection(_))
        ));
        // Remote: the same checks, as typed reasons, plus the remote-only ones.
        let reason = |change: Change| match check_remote(&LIMITS, &colls, &[change]) {
            Err(ApplyError::InvalidChange { reason, .. }) => Some(reason),
            _ => None,
        };
        assert!(matches!(
            reason(remote("lww", "k", 1, 0, patch())),
            Some(InvalidReason::Op(OpError::NotAllowed {
                op: OpKind::Patch,
                policy: MergePolicy::Lww
            }))
        ));
        assert!(matches!(
            reason(remote("fields", "k", 1, 0, scalar())),
            Some(InvalidReason::Op(OpError::NotAllowed {
                op: OpKind::PutOther,
                ..
            }))
        ));
        assert!(matches!(
            reason(remote("lww", "toolong", 1, 0, scalar())),
            Some(InvalidReason::Key(KeyError::TooLong { len: 7, max: 4 }))
        ));
        assert!(matches!(
            reason(remote("lww", "k", 0, 0, scalar())),
            Some(InvalidReason::ZeroSeq)
        ));
        assert!(matches!(
            reason(remote("lww", "k", 1, 11, scalar())),
            Some(InvalidReason::BaseAfterStamp)
        ));
        assert!(matches!(
            check_remote(&LIMITS, &colls, &[remote("local", "k", 1, 0, scalar())]),
            Err(ApplyError::LocalOnlyCollection { .. })
        ));
        let three = vec![remote("lww", "k", 1, 0, scalar()); 3];
        assert!(matches!(
            check_remote(&LIMITS, &colls, &three),
            Err(ApplyError::BatchTooLarge { len: 3, max: 2 })
        ));
        assert!(check_remote(&LIMITS, &colls, &three[..2]).is_ok());
    }
}
