//! The merge laws and order independence, as property tests.
//!
//! Any permutation of a change set, with duplicates, applied through
//! `apply_remote` in random batch splits, gives the same records (tombstones
//! and winning versions included) as any other, and as a `BTreeMap` model of
//! the documented rule: the greatest (stamp, origin, seq) wins, a winning
//! delete is a tombstone.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::memory_replica;
use proptest::prelude::*;
use syncline::{
    Change, ChangeId, Key, ManualTime, Op, RecordState, ReplicaId, Rule, Stamp, Value, merge_all,
    merge_one,
};

/// Changes over 3 origins, 2 collections, 4 keys and a narrow stamp range so
/// that ties on the stamp are common. (stamp, origin) pairs are unique, as
/// the clock guarantees, and each origin numbers its changes 1, 2, 3...
fn change_set() -> impl Strategy<Value = Vec<Change>> {
    let one = (
        0u8..3,
        0u8..2,
        0u8..4,
        0u64..24,
        prop::option::weighted(0.75, -5i64..5),
    );
    prop::collection::vec(one, 0..40).prop_map(|raw| {
        let mut seen = BTreeSet::new();
        let mut seqs = [0u64; 3];
        raw.into_iter()
            .filter(|(o, _, _, s, _)| seen.insert((*s, *o)))
            .map(|(o, c, k, s, v)| {
                seqs[o as usize] += 1;
                Change {
                    id: ChangeId {
                        origin: ReplicaId::from_bytes([o + 1; 16]),
                        seq: seqs[o as usize],
                    },
                    collection: if c == 0 { "todos" } else { "notes" }.to_string(),
                    key: Key::from(format!("k{k}")),
                    stamp: Stamp::new(1000 + s / 3, (s % 3) as u16),
                    base: Stamp::ZERO,
                    op: v.map_or(Op::Delete, |v| Op::Put(Value::Int(v))),
                }
            })
            .collect()
    })
}

/// A shuffled copy of `changes` with some of them repeated.
fn shuffled_with_duplicates(changes: Vec<Change>) -> impl Strategy<Value = Vec<Change>> {
    let n = changes.len();
    (Just(changes), prop::collection::vec(0..n.max(1), 0..n + 1)).prop_flat_map(
        |(changes, dups)| {
            let mut all = changes.clone();
            if !changes.is_empty() {
                all.extend(dups.into_iter().map(|i| changes[i].clone()));
            }
            Just(all).prop_shuffle()
        },
    )
}

/// Per record, the winning (stamp, origin, seq) and value.
type Model = BTreeMap<(String, Key), (Stamp, ReplicaId, u64, Option<Value>)>;

/// The documented rule, written as plainly as possible.
fn model(changes: &[Change]) -> Model {
    let mut out: Model = BTreeMap::new();
    for c in changes {
        let candidate = (
            c.stamp,
            c.id.origin,
            c.id.seq,
            match &c.op {
                Op::Put(v) => Some(v.clone()),
                _ => None,
            },
        );
        let slot = out
            .entry((c.collection.clone(), c.key.clone()))
            .or_insert(candidate.clone());
        if (candidate.0, candidate.1, candidate.2) > (slot.0, slot.1, slot.2) {
            *slot = candidate;
        }
    }
    out
}

/// Per record, the pure merge of its changes.
fn by_record(changes: &[Change]) -> BTreeMap<(String, Key), Vec<Change>> {
    let mut out: BTreeMap<(String, Key), Vec<Change>> = BTreeMap::new();
    for c in changes {
        out.entry((c.collection.clone(), c.key.clone()))
            .or_default()
            .push(c.clone());
    }
    out
}

/// Applies `changes` to a fresh replica in batches cut at `cuts`, returns all
/// record states.
fn apply_in_batches(changes: &[Change], cuts: &[usize]) -> BTreeMap<(String, Key), RecordState> {
    let time = ManualTime::new(common::T0);
    let r = memory_replica(9, &time);
    r.define_collection("notes", Default::default()).unwrap();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (changes.len() + 1)).collect();
    points.push(0);
    points.push(changes.len());
    points.sort_unstable();
    for w in points.windows(2) {
        r.apply_remote(&changes[w[0]..w[1]]).unwrap();
    }
    let mut out = BTreeMap::new();
    for name in ["notes", "todos"] {
        for (k, s) in r.collection(name).unwrap().states().unwrap() {
            out.insert((name.to_string(), k), s);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lww_is_commutative_associative_idempotent(
        (changes, shuffled) in change_set().prop_flat_map(|c| (Just(c.clone()), shuffled_with_duplicates(c))),
        split in 0usize..64,
    ) {
        for ((coll, key), mine) in by_record(&changes) {
            let expected = merge_all(&Rule::Lww, &mine);
            let theirs: Vec<Change> = shuffled.iter().filter(|c| c.collection == coll && c.key == key).cloned().collect();
            // Commutative and idempotent: any order, any repetition.
            prop_assert_eq!(&merge_all(&Rule::Lww, &theirs), &expected);
            // Associative: merging a merged prefix with the rest.
            let at = split % (theirs.len() + 1);
            let mut state = merge_all(&Rule::Lww, &theirs[..at]);
            for c in &theirs[at..] {
                if let Some(next) = merge_one(&Rule::Lww, state.as_ref(), c) {
                    state = Some(next);
                }
            }
            prop_assert_eq!(&state, &expected);
        }
    }

    #[test]
    fn apply_remote_is_order_and_batch_independent_and_matches_the_model(
        (changes, shuffled) in change_set().prop_flat_map(|c| (Just(c.clone()), shuffled_with_duplicates(c))),
        cuts_a in prop::collection::vec(0usize..100, 0..6),
        cuts_b in prop::collection::vec(0usize..100, 0..6),
    ) {
        let a = apply_in_batches(&changes, &cuts_a);
        let b = apply_in_batches(&shuffled, &cuts_b);
        prop_assert_eq!(&a, &b);
        let m = model(&changes);
        prop_assert_eq!(a.len(), m.len());
        for (rk, state) in &a {
            let (stamp, origin, seq, value) = &m[rk];
            prop_assert_eq!(state.version.stamp, *stamp);
            prop_assert_eq!(state.version.id.origin, *origin);
            prop_assert_eq!(state.version.id.seq, *seq);
            prop_assert_eq!(&state.value, value);
        }
    }
}

/// The merge laws for every policy, through the exported checker.
#[cfg(feature = "testing")]
mod every_policy {
    use std::sync::Arc;

    use proptest::prelude::*;
    use syncline::testing::laws::{arbitrary_changes, check_merge_laws};
    use syncline::testing::sim::MaxValue;
    use syncline::{Ranks, ReplicaId, Rule, merge_one};

    fn rules() -> Vec<Rule> {
        vec![
            Rule::Lww,
            Rule::FieldLww,
            Rule::Ranked(Ranks::hub_wins(ReplicaId::from_bytes([2; 16]))),
            Rule::Custom(Arc::new(MaxValue)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn every_policy_obeys_the_merge_laws(seed in any::<u64>(), n in 0usize..16) {
            let changes = arbitrary_changes(seed, n);
            for rule in rules() {
                let checked = check_merge_laws(|s, c| merge_one(&rule, s, c), &changes, seed);
                prop_assert!(checked.is_ok(), "{rule:?}: {}", checked.unwrap_err());
            }
        }
    }
}
