//! The steps, store model and run behind [`apply_changes`].

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    ApplyError, Change, ChangeId, Fault, Key, ManualTime, Op, Replica, ReplicaId, Stamp, Value,
};

#[cfg(doc)]
use super::apply_changes;
use super::input::Input;
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

/// Why the model expects a batch to be refused.
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
    /// Accepted: these changes are new, the rest are duplicates.
    Accept {
        fresh: Vec<Change>,
        duplicates: usize,
    },
    /// Refused, for any of these reasons.
    Refuse(BTreeSet<Reason>),
}

/// Where a change is stored: (collection, key, stamp, origin).
type Slot = (String, Key, Stamp, ReplicaId);

fn slot(c: &Change) -> Slot {
    (c.collection.clone(), c.key.clone(), c.stamp, c.id.origin)
}

/// The receiver as the model sees it: the changes it accepted, and so on.
#[derive(Debug, Default)]
struct StoreModel {
    /// Stored changes by slot: (collection, key, stamp, origin) identifies
    /// a change.
    slots: BTreeMap<Slot, Change>,
    /// The feed: change, source, group end.
    feed: Vec<(Change, Option<ReplicaId>, bool)>,
    clock: Stamp,
    /// The greatest sequence number of the receiver's own id it has stored or seen.
    own_seq: u64,
}

impl StoreModel {
    /// What the documented rules say `apply_remote` does with `batch` at `now`.
    fn expect(&self, batch: &[Change], now: u64) -> Expected {
        let mut reasons = BTreeSet::new();
        for c in batch {
            if c.collection == UNKNOWN {
                reasons.insert(Reason::UnknownCollection);
            } else if c.collection == LOCAL {
                reasons.insert(Reason::LocalOnly);
            } else if c.id.seq == 0 || c.base > c.stamp || c.key.is_empty() {
                reasons.insert(Reason::Invalid);
            }
            if too_far_ahead(c.stamp, now) {
                reasons.insert(Reason::Drift);
            }
        }
        // Stored one by one in one write transaction: each change sees the
        // ones before it in the batch.
        let mut slots = BTreeMap::new();
        let mut fresh = Vec::new();
        let mut duplicates = 0;
        for c in batch {
            let slot = slot(c);
            if let Some(stored) = self.slots.get(&slot).or_else(|| slots.get(&slot)) {
                if stored != c {
                    reasons.insert(Reason::Conflict);
                    break;
                }
                duplicates += 1;
                continue;
            }
            slots.insert(slot, c.clone());
            fresh.push(c.clone());
        }
        if reasons.is_empty() {
            Expected::Accept { fresh, duplicates }
        } else {
            Expected::Refuse(reasons)
        }
    }

    fn accept(
        &mut self,
        batch: &[Change],
        fresh: Vec<Change>,
        source: Option<ReplicaId>,
        me: ReplicaId,
    ) {
        let n = fresh.len();
        for (i, c) in fresh.into_iter().enumerate() {
            self.slots.insert(slot(&c), c.clone());
            self.feed.push((c, source, i + 1 == n));
        }
        for c in batch {
            self.clock = self.clock.max(c.stamp);
            if c.id.origin == me {
                self.own_seq = self.own_seq.max(c.id.seq);
            }
        }
    }

    fn changes(&self) -> Vec<Change> {
        self.feed.iter().map(|(c, _, _)| c.clone()).collect()
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
    let mut run = ApplyRun {
        replica: in_memory(me, &time),
        time,
        me,
        generated: Vec::new(),
        pending: Vec::new(),
        seqs: [0; 3],
        model: StoreModel::default(),
    };
    run.model.clock = run.replica.clock();
    for step in steps {
        run.step(step);
    }
    run.cut(None);
    run.finish();
}

struct ApplyRun {
    replica: Replica,
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
        let expected = self.model.expect(&batch, now);
        let result = self.replica.apply_remote_from(source, &batch);
        match (expected, result) {
            (Expected::Accept { fresh, duplicates }, Ok(report)) => {
                assert_eq!(
                    (report.applied, report.duplicates),
                    (fresh.len(), duplicates),
                    "applied and duplicates of {batch:#?}"
                );
                self.model.accept(&batch, fresh, source, self.me);
                assert_eq!(report.last_lsn, self.model.feed.len() as u64);
            }
            (Expected::Refuse(reasons), Err(e)) => {
                let reason = reason_of(&e);
                assert!(
                    reason.is_some_and(|r| reasons.contains(&r)),
                    "batch {batch:#?} at time {now} was refused with {e:?}; the model expects one of {reasons:?}"
                );
                assert_eq!(e.fault(), Fault::Peer, "{e:?} is the peer's fault");
            }
            (expected, result) => panic!(
                "batch {batch:#?} at time {now}: the model expects {expected:?}, apply_remote returned {result:?}"
            ),
        }
        self.check_store();
    }

    /// The replica's counters and records match the model.
    fn check_store(&self) {
        assert_eq!(
            self.replica.last_lsn(),
            self.model.feed.len() as u64,
            "last_lsn"
        );
        assert_eq!(self.replica.clock(), self.model.clock, "clock");
        let model = Model::of(self.model.feed.iter().map(|(c, _, _)| c));
        for name in SYNCED {
            model.check(&self.replica, name, "the receiver");
        }
    }

    fn finish(mut self) {
        // A local write after all that: a new sequence number, a stamp above
        // everything the replica has seen, made on top of the newest change
        // of its record.
        let base = (self.model.feed.iter())
            .map(|(c, _, _)| c)
            .filter(|c| c.collection == SYNCED[0] && c.key.as_bytes() == b"k0")
            .map(|c| c.stamp)
            .max()
            .unwrap_or(Stamp::ZERO);
        let before = self.replica.clock();
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
        assert_eq!(committed.lsn, self.model.feed.len() as u64 + 1);
        let local = Change {
            id,
            collection: SYNCED[0].to_string(),
            key: Key::from("k0"),
            stamp: committed.stamp,
            base,
            op: Op::Put(Value::Int(-1)),
        };
        self.model.feed.push((local, None, true));
        self.model.clock = committed.stamp;
        self.check_store();

        let feed = self
            .replica
            .feed_after(0, usize::MAX)
            .expect("the feed reads");
        assert_eq!(feed.len(), self.model.feed.len(), "feed length");
        for (i, (entry, (change, source, end))) in feed.iter().zip(&self.model.feed).enumerate() {
            assert_eq!(entry.lsn, i as u64 + 1, "feed lsn");
            assert_eq!(&entry.change, change, "feed entry {}", entry.lsn);
            assert_eq!(entry.source, *source, "source of feed entry {}", entry.lsn);
            assert_eq!(
                entry.group_end, *end,
                "group end of feed entry {}",
                entry.lsn
            );
        }
        Model::default().check(&self.replica, LOCAL, "the local-only collection");
        let changes = self.model.changes();
        Model::of(&changes).check_merge_all(&changes);
    }
}
