//! The merge laws as a checker you can run against any merge rule,
//! syncline's own or yours.
//!
//! A merge rule folds a record's changes into its state one at a time:
//! `fold(state, change) -> new state` (`None` when the change does not alter
//! it), the shape of [`crate::merge_one`]. Replicas converge only if the
//! state depends on the *set* of changes alone, so [`check_merge_laws`]
//! checks that folding gives the same state
//!
//! - in any order (commutativity),
//! - with any change repeated (idempotence),
//! - and when a prefix is folded first and the rest later, each part in its
//!   own order (associativity of batches).
//!
//! ```
//! use syncline::testing::laws::{check_merge_laws, arbitrary_changes};
//! use syncline::{merge_one, Rule};
//!
//! for seed in 0..100 {
//!     let changes = arbitrary_changes(seed, 12);
//!     check_merge_laws(|s, c| merge_one(&Rule::Lww, s, c), &changes, seed).unwrap();
//! }
//! ```

use std::fmt;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::clock::Stamp;
use crate::model::{Change, ChangeId, Key, Op, ReplicaId};
use crate::value::Value;

/// A merge law that a rule broke, with the changes that show it.
#[derive(Clone, Debug)]
pub struct LawViolation {
    /// The law: "commutativity", "idempotence" or "associativity".
    pub law: &'static str,
    /// The changes in the order that gave `left`.
    pub left_order: Vec<Change>,
    /// The state that order gave.
    pub left: String,
    /// The changes in the order that gave `right`.
    pub right_order: Vec<Change>,
    /// The state that order gave.
    pub right: String,
}

impl fmt::Display for LawViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} violated:", self.law)?;
        writeln!(f, "  one order gave  {}", self.left)?;
        writeln!(f, "  another gave    {}", self.right)?;
        writeln!(f, "  first order:")?;
        for c in &self.left_order {
            writeln!(f, "    {:?} {:?} {:?}", c.stamp, c.id, c.op)?;
        }
        writeln!(f, "  second order:")?;
        for c in &self.right_order {
            writeln!(f, "    {:?} {:?} {:?}", c.stamp, c.id, c.op)?;
        }
        Ok(())
    }
}

impl std::error::Error for LawViolation {}

/// Folds `changes` in order with `fold`, from no state.
pub fn fold_all<S>(
    fold: &impl Fn(Option<&S>, &Change) -> Option<S>,
    changes: &[Change],
) -> Option<S> {
    fold_from(fold, None, changes)
}

fn fold_from<S>(
    fold: &impl Fn(Option<&S>, &Change) -> Option<S>,
    mut state: Option<S>,
    changes: &[Change],
) -> Option<S> {
    for change in changes {
        if let Some(next) = fold(state.as_ref(), change) {
            state = Some(next);
        }
    }
    state
}

/// Checks commutativity, idempotence and associativity of `fold` on
/// `changes` (one record's changes), over shuffles drawn from `seed`.
pub fn check_merge_laws<S: PartialEq + fmt::Debug>(
    fold: impl Fn(Option<&S>, &Change) -> Option<S>,
    changes: &[Change],
    seed: u64,
) -> Result<(), LawViolation> {
    let mut rng = StdRng::seed_from_u64(seed);
    let reference = fold_all(&fold, changes);
    let violation = |law, right_order: Vec<Change>, right: &Option<S>| LawViolation {
        law,
        left_order: changes.to_vec(),
        left: format!("{reference:?}"),
        right_order,
        right: format!("{right:?}"),
    };
    for _ in 0..8 {
        // Commutativity: any order.
        let mut shuffled = changes.to_vec();
        shuffled.shuffle(&mut rng);
        let state = fold_all(&fold, &shuffled);
        if state != reference {
            return Err(violation("commutativity", shuffled, &state));
        }
        // Idempotence: repeats anywhere.
        let mut repeated = shuffled.clone();
        for _ in 0..rng.random_range(1..=changes.len().max(1)) {
            if let Some(c) = changes.get(rng.random_range(0..changes.len().max(1))) {
                let at = rng.random_range(0..=repeated.len());
                repeated.insert(at, c.clone());
            }
        }
        let state = fold_all(&fold, &repeated);
        if state != reference {
            return Err(violation("idempotence", repeated, &state));
        }
        // Associativity: a prefix folded first, the rest folded onto its state.
        let at = rng.random_range(0..=shuffled.len());
        let (mut a, mut b) = (shuffled[..at].to_vec(), shuffled[at..].to_vec());
        a.shuffle(&mut rng);
        b.shuffle(&mut rng);
        let state = fold_from(&fold, fold_all(&fold, &a), &b);
        if state != reference {
            let order = a.into_iter().chain(b).collect();
            return Err(violation("associativity", order, &state));
        }
    }
    Ok(())
}

/// `n` changes of one record (collection `"c"`, key `"k"`), drawn from
/// `seed`: three origins, stamps from a narrow range so that ties on the
/// stamp happen, puts of small integers and of maps with a few fields, and
/// deletes. (stamp, origin) pairs are unique, as real clocks guarantee.
pub fn arbitrary_changes(seed: u64, n: usize) -> Vec<Change> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seqs = [0u64; 3];
    let mut used = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let origin = rng.random_range(0..3u8);
        let stamp = Stamp::new(
            1_000 + rng.random_range(0..(n as u64 / 2 + 2)),
            rng.random_range(0..3),
        );
        if !used.insert((stamp, origin)) {
            continue;
        }
        seqs[origin as usize] += 1;
        let op = match rng.random_range(0..10) {
            0..=5 => Op::Put(Value::Int(rng.random_range(-5..5))),
            6..=7 => Op::Put(Value::Map(
                (0..rng.random_range(1..3))
                    .map(|_| {
                        (
                            format!("f{}", rng.random_range(0..3)),
                            Value::Int(rng.random_range(0..9)),
                        )
                    })
                    .collect(),
            )),
            _ => Op::Delete,
        };
        out.push(Change {
            id: ChangeId {
                origin: ReplicaId::from_bytes([origin + 1; 16]),
                seq: seqs[origin as usize],
            },
            collection: "c".into(),
            key: Key::from("k"),
            stamp,
            base: Stamp::ZERO,
            op,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Rule, merge_one};

    #[test]
    fn lww_obeys_the_laws() {
        for seed in 0..200 {
            let changes = arbitrary_changes(seed, (seed % 16) as usize);
            check_merge_laws(|s, c| merge_one(&Rule::Lww, s, c), &changes, seed).unwrap();
        }
    }

    #[test]
    fn first_arrival_wins_is_caught() {
        // Keeps whatever came first: order-dependent, so not a merge rule.
        let first_wins = |s: Option<&Op>, c: &Change| {
            if s.is_none() {
                Some(c.op.clone())
            } else {
                None
            }
        };
        let found = (0..50).any(|seed| {
            let changes = arbitrary_changes(seed, 6);
            check_merge_laws(first_wins, &changes, seed).is_err()
        });
        assert!(found, "the checker must catch an order-dependent rule");
    }

    #[test]
    fn counting_arrivals_breaks_idempotence() {
        let count = |s: Option<&u32>, _c: &Change| Some(s.copied().unwrap_or(0) + 1);
        let err = check_merge_laws(count, &arbitrary_changes(1, 5), 1).unwrap_err();
        assert_eq!(err.law, "idempotence");
        assert!(err.to_string().contains("idempotence violated"));
    }
}
