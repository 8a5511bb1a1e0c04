//! The steps, store model and run behind [`apply_changes`].

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    ApplyError, Change, ChangeId, Fault, Key, ManualTime, Op, Replica, ReplicaId, Stamp, Value,
    Watch,
};

#[cfg(doc)]
use super::apply_changes;
use super::input::Input;
use super::keep::{Kept, Outcome, Record, drain, record_of};
use super::model::Model;
use super::setup::{debug_enabled, in_memory, key, move_time, now, replica_id, too_far_ahead};
use super::{DRIFT_MS, LOCAL, MAX_STEPS, SYNCED, T0, UNKNOWN};

/// One step of [`apply_changes`], as read from the input.
///
/// The first byte of a step picks its kind (`byte % 8`); each field is one
/// more byte. [`ApplyStep::encode`] is the inverse, for writing seeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ApplyStep {
    /// Kinds 0 to 2: a new change. `origin % 3` picks the origin (a value of
    /// 0xfc or more gives sequence number 0, which is refused); collection
    /// `% 32`: 30 local-only, 31 unknown, else `a` or `b`; key `% 32`: 31
    /// empty (refused), else `k0` to `k3`; `stamp`: see [`apply_stamp`];
    /// `op % 8`: 7 a delete, else a put of `op / 8`; `base`: see [`apply_base`].
    Fresh {
        origin: u8,
        collection: u8,
        key: u8,
        stamp: u8,
        op: u8,
        base: u8,
    },
    /// Kind 3: an exact copy of an earlier change (`of` indexes them).
    Duplicate { of: u8 },
    /// Kind 4: an earlier change's id with other content (`how % 5`: value,
    /// stamp, key, collection or base).
    Forge { of: u8, how: u8 },
    /// Kind 5: an earlier change's record, stamp and origin under a new id.
    SameSlot { of: u8, op: u8 },
    /// Kind 6: apply the pending changes as one batch; `source % 4` 0 or 1
    /// through `apply_remote`, 2 or 3 from origin 1 or 2.
    Cut { source: u8 },
    /// Kind 7: move the receiver's clock (see [`move_time`]).
    Time { by: u8 },
}

impl ApplyStep {
    pub(super) fn parse(data: &[u8]) -> Vec<Self> {
        let mut input = Input::new(data);
        let mut steps = Vec::new();
        while !input.is_empty() && steps.len() < MAX_STEPS {
            let step = match input.byte() % 8 {
                0..=2 => Self::Fresh {
                    origin: input.byte(),
                    collection: input.byte(),
                    key: input.byte(),
                    stamp: input.byte(),
                    op: input.byte(),
                    base: input.byte(),
                },
                3 => Self::Duplicate { of: input.byte() },
                4 => Self::Forge {
                    of: input.byte(),
                    how: input.byte(),
                },
                5 => Self::SameSlot {
                    of: input.byte(),
                    op: input.byte(),
                },
                6 => Self::Cut {
                    source: input.byte(),
                },
                _ => Self::Time { by: input.byte() },
            };
            steps.push(step);
        }
        steps
    }

    pub(super) fn encode(steps: &[Self]) -> Vec<u8> {
        let mut out = Vec::new();
        for step in steps {
            match *step {
                Self::Fresh {
                    origin,
                    collection,
                    key,
                    stamp,
                    op,
                    base,
                } => out.extend([0, origin, collection, key, stamp, op, base]),
                Self::Duplicate { of } => out.extend([3, of]),
                Self::Forge { of, how } => out.extend([4, of, how]),
                Self::SameSlot { of, op } => out.extend([5, of, op]),
                Self::Cut { source } => out.extend([6, source]),
                Self::Time { by } => out.extend([7, by]),
            }
        }
        out
    }
}

/// The stamp a [`ApplyStep::Fresh`] byte stands for. Below 0xf0: one of 16
/// stamps within 4 ms of the start time, so ties are common. 0xf0: exactly
/// the drift bound ahead of the start time (accepted while the clock reads
/// it); 0xf1: one millisecond more (refused); up to 0xfe: hours ahead; 0xff:
/// [`Stamp::MAX`].
fn apply_stamp(byte: u8) -> Stamp {
    match byte {
        0xf0 => Stamp::new(T0 + DRIFT_MS, 0),
        0xf1 => Stamp::new(T0 + DRIFT_MS + 1, 0),
        0xf2..=0xfe => Stamp::new(T0 + u64::from(byte - 0xf1) * 3_600_000, 0),
        0xff => Stamp::MAX,
        _ => Stamp::new(T0 + u64::from((byte >> 2) & 3), u16::from(byte & 3)),
    }
}

/// The `base` a [`ApplyStep::Fresh`] byte stands for, for a change stamped
/// `stamp`: [`Stamp::ZERO`] (a new record) for an even byte, else one of the
/// 16 stamps near the start time, capped at `stamp` unless the byte is 0xf1
/// or more (a base after the stamp, which is refused).
fn apply_base(byte: u8, stamp: Stamp) -> Stamp {
    if byte.is_multiple_of(2) {
        return Stamp::ZERO;
    }
    let base = apply_stamp(byte >> 1 & 0x0f);
    if byte >= 0xf1 { base } else { base.min(stamp) }
}

fn apply_op(byte: u8) -> Op {
    if byte % 8 == 7 {
        Op::Delete
    } else {
        Op::Put(Value::Int(i64::from(byte / 8)))
    }
}

/// Why a batch is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Reason {
    UnknownCollection,
    LocalOnly,
    Invalid,
    Drift,
    Conflict,
}

fn reason_of(e: &ApplyError) -> Option<Reason> {
    Some(match e {
        ApplyError::UnknownCollection { .. } => Reason::UnknownCollection,
        ApplyError::LocalOnlyCollection { .. } => Reason::LocalOnly,
        ApplyError::InvalidChange { .. } => Reason::Invalid,
        ApplyError::ClockDrift(_) => Reason::Drift,
        ApplyError::ConflictingDuplicate { .. } => Reason::Conflict,
        _ => return None,
    })
}

/// What the model expects of one batch.
#[derive(Debug)]
enum Expected {
    /// Refused, for this reason.
    Refuse(Reason),
    /// Accepted; or, when `or_conflict`, refused for a forged duplicate of a
    /// slot whose change the receiver may have dropped.
    Accept { or_conflict: bool },
}

/// The receiver as the model sees it.
#[derive(Debug, Default)]
struct StoreModel {
    /// What it merged and holds, and where its feed entries are.
    kept: Kept,
    clock: Stamp,
    /// The last lsn it gave.
    lsn: u64,
    /// The greatest sequence number of the receiver's own id it has stored or seen.
    own_seq: u64,
}

impl StoreModel {
    /// What the documented rules say `apply_remote` does with `batch` at
    /// `now`: the first change that fails validation refuses it (an unknown
    /// collection, then a local-only one, then an invalid change), then a
    /// stamp beyond the drift bound; then the changes are stored one by one,
    /// each seeing the ones before it, and a forged duplicate of a held slot
    /// refuses it.
    fn expect(&self, batch: &[Change], now: u64, source: Option<ReplicaId>) -> Expected {
        for c in batch {
            if c.collection == UNKNOWN {
                return Expected::Refuse(Reason::UnknownCollection);
            } else if c.collection == LOCAL {
                return Expected::Refuse(Reason::LocalOnly);
            } else if c.id.seq == 0 || c.base > c.stamp || c.key.is_empty() {
                return Expected::Refuse(Reason::Invalid);
            }
        }
        if batch.iter().any(|c| too_far_ahead(c.stamp, now)) {
            return Expected::Refuse(Reason::Drift);
        }
        let mut kept = self.kept.clone();
        let mut or_conflict = false;
        for c in batch {
            let judged = kept.judge(c);
            if judged.refused() {
                return Expected::Refuse(Reason::Conflict);
            }
            or_conflict |= judged.outcomes.contains(&Outcome::Conflicting);
            kept.store(c, source, None);
        }
        Expected::Accept { or_conflict }
    }
}

/// Runs the [`apply_changes`] target on `data`.
pub(super) fn run(data: &[u8]) {
    let steps = ApplyStep::parse(data);
    if debug_enabled() {
        eprintln!("{steps:#?}");
    }
    let time = ManualTime::new(T0);
    let me = replica_id(2);
    let replica = in_memory(me, &time);
    let mut run = ApplyRun {
        watch: replica.watch(),
        model: StoreModel {
            clock: replica.clock(),
            ..StoreModel::default()
        },
        replica,
        time,
        me,
        generated: Vec::new(),
        pending: Vec::new(),
        seqs: [0; 3],
    };
    for step in steps {
        run.step(step);
    }
    run.cut(None);
    run.finish();
}

struct ApplyRun {
    replica: Replica,
    /// The replica's events: one per change stored.
    watch: Watch,
    time: ManualTime,
    me: ReplicaId,
    /// Every change made so far, in order; duplicates and forgeries pick from it.
    generated: Vec<Change>,
    /// The changes of the next batch.
    pending: Vec<Change>,
    /// The last sequence number given per origin.
    seqs: [u64; 3],
    model: StoreModel,
}

impl ApplyRun {
    fn earlier(&self, of: u8) -> Option<Change> {
        if self.generated.is_empty() {
            return None;
        }
        Some(self.generated[usize::from(of) % self.generated.len()].clone())
    }

    fn next_seq(&mut self, origin: ReplicaId) -> u64 {
        let i = usize::from(origin.as_bytes()[0] - 1);
        self.seqs[i] += 1;
        self.seqs[i]
    }

    fn push(&mut self, change: Change) {
        self.generated.push(change.clone());
        self.pending.push(change);
    }

    fn step(&mut self, step: ApplyStep) {
        match step {
            ApplyStep::Fresh {
                origin,
                collection,
                key: k,
                stamp,
                op,
                base,
            } => {
                let id = replica_id(usize::from(origin % 3));
                let seq = if origin >= 0xfc { 0 } else { self.next_seq(id) };
                let collection = match collection % 32 {
                    30 => LOCAL,
                    31 => UNKNOWN,
                    n => SYNCED[usize::from(n % 2)],
                };
                let key = if k % 32 == 31 {
                    Key::new(vec![])
                } else {
                    key(k)
                };
                self.push(Change {
                    id: ChangeId { origin: id, seq },
                    collection: collection.to_string(),
                    key,
                    stamp: apply_stamp(stamp),
                    base: apply_base(base, apply_stamp(stamp)),
                    op: apply_op(op),
                });
            }
            ApplyStep::Duplicate { of } => {
                if let Some(c) = self.earlier(of) {
                    self.push(c);
                }
            }
            ApplyStep::Forge { of, how } => {
                if let Some(mut c) = self.earlier(of) {
                    match how % 5 {
                        0 => {
                            c.op = match c.op {
                                Op::Put(Value::Int(n)) => Op::Put(Value::Int(n.wrapping_add(1))),
                                _ => Op::Put(Value::Int(0)),
                            }
                        }
                        1 => c.stamp = Stamp::from_u64(c.stamp.as_u64() ^ 1),
                        2 => {
                            c.key = Key::from(if c.key.as_bytes() == b"k0" {
                                "k1"
                            } else {
                                "k0"
                            })
                        }
                        3 => {
                            c.collection = if c.collection == SYNCED[0] {
                                SYNCED[1]
                            } else {
                                SYNCED[0]
                            }
                            .to_string()
                        }
                        _ => c.base = Stamp::from_u64(c.base.as_u64() ^ 1),
                    }
                    self.push(c);
                }
            }
            ApplyStep::SameSlot { of, op } => {
                if let Some(mut c) = self.earlier(of) {
                    c.id.seq = self.next_seq(c.id.origin);
                    c.op = apply_op(op);
                    self.push(c);
                }
            }
            ApplyStep::Cut { source } => {
                let source = match source % 4 {
                    0 | 1 => None,
                    n => Some(replica_id(usize::from(n - 2))),
                };
                self.cut(source);
            }
            ApplyStep::Time { by } => {
                move_time(&self.time, by);
            }
        }
    }

    /// Applies the pending changes as one batch and checks the outcome.
    fn cut(&mut self, source: Option<ReplicaId>) {
        let batch = std::mem::take(&mut self.pending);
        let now = now(&self.time);
        let before_lsn = self.model.lsn;
        let expected = self.model.expect(&batch, now, source);
        let result = self.replica.apply_remote_from(source, &batch);
        let events = drain(&mut self.watch);
        if debug_enabled() {
            eprintln!("batch of {} from {source:?}: {result:?}", batch.len());
        }
        let what = format!("batch {batch:#?} at time {now}");
        match (expected, result) {
            (Expected::Accept { .. }, Ok(report)) => {
                let tally = self
                    .model
                    .kept
                    .replay(&batch, source, &events, before_lsn, &what);
                tally.check(&report, &what);
                self.model.lsn += tally.applied as u64;
                assert_eq!(report.last_lsn, self.model.lsn, "{what}: last_lsn reported");
                for c in &batch {
                    self.model.clock = self.model.clock.max(c.stamp);
                    if c.id.origin == self.me {
                        self.model.own_seq = self.model.own_seq.max(c.id.seq);
                    }
                }
                let records: BTreeSet<Record> = batch.iter().map(record_of).collect();
                self.model.kept.sync(&self.replica, &records, &what);
                (self.model.kept).check_commit(&self.replica, before_lsn, &tally.moved, &what);
            }
            (expected, Err(e))
                if reason_of(&e).is_some_and(|r| match expected {
                    Expected::Refuse(reason) => r == reason,
                    Expected::Accept { or_conflict } => or_conflict && r == Reason::Conflict,
                }) =>
            {
                assert_eq!(e.fault(), Fault::Peer, "{e:?} is the peer's fault");
                assert!(events.is_empty(), "{what}: refused, yet stored {events:#?}");
                // Nothing stored: every record holds what it held.
                let records: BTreeSet<Record> = (batch.iter())
                    .filter(|c| SYNCED.contains(&c.collection.as_str()) && !c.key.is_empty())
                    .map(record_of)
                    .collect();
                self.model.kept.sync(&self.replica, &records, &what);
                (self.model.kept).check_commit(&self.replica, before_lsn, &BTreeMap::new(), &what);
            }
            (expected, result) => {
                panic!("{what}: the model expects {expected:?}, apply_remote returned {result:?}")
            }
        }
        self.check_store();
    }

    /// The replica's counters and records match the model.
    fn check_store(&self) {
        assert_eq!(self.replica.last_lsn(), self.model.lsn, "last_lsn");
        assert_eq!(self.replica.clock(), self.model.clock, "clock");
        let model = Model::of(self.model.kept.changes());
        for name in SYNCED {
            model.check(&self.replica, name, "the receiver");
        }
    }

    fn finish(mut self) {
        // A local write after all that: a new sequence number, a stamp above
        // everything the replica has seen, made on top of the newest change
        // of its record.
        let base = self.model.kept.newest_stamp(SYNCED[0], &Key::from("k0"));
        let before = self.replica.clock();
        let before_lsn = self.model.lsn;
        let now = now(&self.time);
        let mut txn = self.replica.transaction();
        txn.put(SYNCED[0], "k0", Value::Int(-1));
        let committed = txn.commit().expect("a local write commits");
        let id = ChangeId {
            origin: self.me,
            seq: self.model.own_seq + 1,
        };
        assert_eq!(committed.ids, [id], "the local write's id");
        assert!(
            committed.stamp > before && committed.stamp >= Stamp::new(now, 0),
            "local stamp {:?} after clock {before:?} at time {now}",
            committed.stamp
        );
        assert_eq!(committed.lsn, before_lsn + 1, "the local write's lsn");
        let local = Change {
            id,
            collection: SYNCED[0].to_string(),
            key: Key::from("k0"),
            stamp: committed.stamp,
            base,
            op: Op::Put(Value::Int(-1)),
        };
        let events = drain(&mut self.watch);
        let what = "the local write";
        let tally = (self.model.kept).replay(
            std::slice::from_ref(&local),
            None,
            &events,
            before_lsn,
            what,
        );
        assert_eq!(tally.applied, 1, "{what} is stored");
        self.model.lsn += 1;
        self.model.clock = committed.stamp;
        let record = record_of(&local);
        self.model.kept.sync(&self.replica, [&record], what);
        (self.model.kept).check_commit(&self.replica, before_lsn, &tally.moved, what);
        self.check_store();

        let feed = self.model.kept.check_feed(&self.replica, "the receiver");
        assert!(
            feed.iter()
                .all(|e| SYNCED.contains(&e.change.collection.as_str())),
            "the feed holds a change to a collection that does not sync"
        );
        Model::default().check(&self.replica, LOCAL, "the local-only collection");
        let changes: Vec<Change> = self.model.kept.changes().cloned().collect();
        let model = Model::of(&changes);
        model.check_merge_all(&changes);

        // A pull reads current state: the feed alone rebuilds every record.
        let latest = (feed.iter())
            .map(|e| e.change.stamp.millis())
            .fold(now, u64::max);
        let fresh = in_memory(replica_id(3), &ManualTime::new(latest));
        let sent: Vec<Change> = feed.into_iter().map(|e| e.change).collect();
        let report = fresh
            .apply_remote_from(Some(self.me), &sent)
            .unwrap_or_else(|e| panic!("a fresh replica refused the receiver's feed: {e}"));
        assert_eq!(report.duplicates, 0, "a fresh replica holds nothing yet");
        for name in SYNCED {
            model.check(&fresh, name, "a fresh replica fed the receiver's feed");
        }
    }
}
