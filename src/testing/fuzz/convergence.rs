//! The steps, replicas and run behind [`converge`].

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    ApplyError, Change, ChangeId, FeedEntry, ManualTime, Replica, ReplicaId, Stamp, Value,
};

#[cfg(doc)]
use super::converge;
use super::input::Input;
use super::model::Model;
use super::setup::{debug_enabled, in_memory, key, move_time, now, replica_id, too_far_ahead};
use super::{LOCAL, MAX_STEPS, SYNCED, T0};

/// One step of [`converge`], as read from the input (after 3 bytes of clock
/// skew, one per replica). The first byte of a step picks its kind
/// (`byte % 8`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ConvergeStep {
    /// Kinds 0 and 1: one local write; kind 2: a two-record transaction.
    /// Each write is (collection `% 5`: 0-1 `a`, 2-3 `b`, 4 local-only;
    /// key; op `% 4`: 3 a delete, else a put of `op / 4`).
    Write {
        replica: u8,
        writes: Vec<(u8, u8, u8)>,
    },
    /// Kind 3: move a replica's clock (see [`move_time`]).
    Time { replica: u8, by: u8 },
    /// Kinds 4 to 6: replica `to` applies a slice of replica `from`'s feed
    /// (`pair % 3` is `from`, `to` one of the two others). `mode % 4`: 0-1
    /// from its cursor on; 2 re-delivers from an earlier lsn (`at`); 3 skips
    /// ahead of the cursor by `at % 4` (reordering). At most about
    /// `1 + limit % 8` changes, never splitting a group.
    Deliver {
        pair: u8,
        mode: u8,
        at: u8,
        limit: u8,
    },
    /// Kind 7: everything after the cursor, leaving out what came from `to`
    /// (as the server does).
    DeliverAll { pair: u8 },
}

impl ConvergeStep {
    pub(super) fn parse(data: &[u8]) -> ([u8; 3], Vec<Self>) {
        let mut input = Input::new(data);
        let skews = [input.byte(), input.byte(), input.byte()];
        let mut steps = Vec::new();
        while !input.is_empty() && steps.len() < MAX_STEPS {
            let kind = input.byte() % 8;
            let step = match kind {
                0..=2 => {
                    let replica = input.byte();
                    let n = if kind == 2 { 2 } else { 1 };
                    let writes = (0..n)
                        .map(|_| (input.byte(), input.byte(), input.byte()))
                        .collect();
                    Self::Write { replica, writes }
                }
                3 => Self::Time {
                    replica: input.byte(),
                    by: input.byte(),
                },
                4..=6 => Self::Deliver {
                    pair: input.byte(),
                    mode: input.byte(),
                    at: input.byte(),
                    limit: input.byte(),
                },
                _ => Self::DeliverAll { pair: input.byte() },
            };
            steps.push(step);
        }
        (skews, steps)
    }

    pub(super) fn encode(skews: [u8; 3], steps: &[Self]) -> Vec<u8> {
        let mut out = skews.to_vec();
        for step in steps {
            match step {
                Self::Write { replica, writes } => {
                    out.push(if writes.len() >= 2 { 2 } else { 0 });
                    out.push(*replica);
                    for &(c, k, v) in writes.iter().take(2) {
                        out.extend([c, k, v]);
                    }
                }
                Self::Time { replica, by } => out.extend([3, *replica, *by]),
                Self::Deliver {
                    pair,
                    mode,
                    at,
                    limit,
                } => out.extend([4, *pair, *mode, *at, *limit]),
                Self::DeliverAll { pair } => out.extend([7, *pair]),
            }
        }
        out
    }
}

/// `from` and `to` of a delivery.
fn pair(byte: u8) -> (usize, usize) {
    let from = usize::from(byte % 3);
    let to = (from + 1 + usize::from((byte / 3) % 2)) % 3;
    (from, to)
}

/// Moves a cursor past a delivered feed slice that started at `start`, if
/// everything up to `start` was delivered already.
fn advance(cursor: &mut u64, start: u64, entries: &[FeedEntry]) {
    if let Some(last) = entries.last()
        && start <= *cursor
    {
        *cursor = (*cursor).max(last.lsn);
    }
}

/// One replica of [`converge`] and what the checks know of it.
struct Node {
    replica: Replica,
    time: ManualTime,
    id: ReplicaId,
    /// The last stamp it issued.
    last_issued: Stamp,
    /// The last clock reading taken: it must never go down.
    last_clock: Stamp,
    /// The ids of the changes it holds.
    known: BTreeSet<ChangeId>,
    /// Its writes to the local-only collection.
    local_only: Vec<Change>,
    /// Its last own sequence number.
    seq: u64,
}

impl Node {
    /// Reads the clock, checking it never went backwards.
    fn clock(&mut self) -> Stamp {
        let clock = self.replica.clock();
        assert!(
            clock >= self.last_clock,
            "replica {:?}: clock went back from {:?} to {clock:?}",
            self.id,
            self.last_clock
        );
        self.last_clock = clock;
        clock
    }
}

struct ConvergeRun {
    nodes: Vec<Node>,
    /// `cursors[to][from]`: `to` holds everything of `from`'s feed through it.
    cursors: [[u64; 3]; 3],
    /// Every change made to a synced collection.
    synced: Vec<Change>,
    /// Every change made, by id.
    all: BTreeMap<ChangeId, Change>,
    /// The latest physical time any replica's clock has read.
    max_time: u64,
}

/// Runs the [`converge`] target on `data`.
pub(super) fn run(data: &[u8]) {
    let (skews, steps) = ConvergeStep::parse(data);
    if debug_enabled() {
        eprintln!("skews {skews:?}\n{steps:#?}");
    }
    let mut max_time = 0;
    let nodes = skews
        .iter()
        .enumerate()
        .map(|(i, &skew)| {
            let start = T0.saturating_add_signed((i64::from(skew) - 128) * 500);
            max_time = max_time.max(start);
            let time = ManualTime::new(start);
            let id = replica_id(i);
            let replica = in_memory(id, &time);
            Node {
                last_clock: replica.clock(),
                replica,
                time,
                id,
                last_issued: Stamp::ZERO,
                known: BTreeSet::new(),
                local_only: Vec::new(),
                seq: 0,
            }
        })
        .collect();
    let mut run = ConvergeRun {
        nodes,
        cursors: [[0; 3]; 3],
        synced: Vec::new(),
        all: BTreeMap::new(),
        max_time,
    };
    for step in steps {
        run.step(step);
    }
    run.finish();
}

impl ConvergeRun {
    fn step(&mut self, step: ConvergeStep) {
        match step {
            ConvergeStep::Write { replica, writes } => {
                self.write(usize::from(replica % 3), &writes);
            }
            ConvergeStep::Time { replica, by } => {
                let t = move_time(&self.nodes[usize::from(replica % 3)].time, by);
                self.max_time = self.max_time.max(t);
            }
            ConvergeStep::Deliver {
                pair: p,
                mode,
                at,
                limit,
            } => {
                let (from, to) = pair(p);
                let cursor = self.cursors[to][from];
                let start = match mode % 4 {
                    0 | 1 => cursor,
                    2 => u64::from(at) % (cursor + 1),
                    _ => cursor + 1 + u64::from(at % 4),
                };
                self.deliver(from, to, start, 1 + usize::from(limit % 8), false);
            }
            ConvergeStep::DeliverAll { pair: p } => {
                let (from, to) = pair(p);
                self.deliver(from, to, self.cursors[to][from], usize::MAX, true);
            }
        }
    }

    /// A local transaction on replica `r`, with its checks.
    fn write(&mut self, r: usize, writes: &[(u8, u8, u8)]) {
        let node = &mut self.nodes[r];
        let before = node.clock();
        let before_lsn = node.replica.last_lsn();
        let now = now(&node.time);
        let mut txn = node.replica.transaction();
        for &(c, k, v) in writes {
            let collection = match c % 5 {
                0 | 1 => SYNCED[0],
                2 | 3 => SYNCED[1],
                _ => LOCAL,
            };
            if v % 4 == 3 {
                txn.delete(collection, key(k));
            } else {
                txn.put(collection, key(k), Value::Int(i64::from(v / 4)));
            }
        }
        let committed = txn
            .commit()
            .unwrap_or_else(|e| panic!("a local write failed: {e}"));
        let entries = node
            .replica
            .feed_after(before_lsn, usize::MAX)
            .expect("the feed reads");
        assert_eq!(entries.len(), writes.len(), "feed entries of one write");
        let mut previous = before;
        for (i, e) in entries.iter().enumerate() {
            node.seq += 1;
            let c = &e.change;
            assert_eq!(e.lsn, before_lsn + i as u64 + 1, "feed lsn");
            assert_eq!(e.source, None, "source of a local change");
            assert_eq!(e.group_end, i + 1 == writes.len(), "group end");
            assert_eq!(
                c.id,
                ChangeId {
                    origin: node.id,
                    seq: node.seq
                },
                "local change id"
            );
            assert_eq!(c.id, committed.ids[i], "committed id");
            assert!(
                c.stamp > previous && c.stamp > node.last_issued,
                "replica {:?} issued {:?} after {previous:?} (clock) and {:?} (its last stamp)",
                node.id,
                c.stamp,
                node.last_issued
            );
            assert!(
                c.stamp.millis() >= now,
                "stamp {:?} below physical time {now}",
                c.stamp
            );
            let base = (node.known.iter())
                .map(|id| &self.all[id])
                .filter(|k| k.collection == c.collection && k.key == c.key)
                .map(|k| k.stamp)
                .max()
                .unwrap_or(Stamp::ZERO);
            assert_eq!(
                c.base, base,
                "a local change is made on top of the newest change of its record"
            );
            previous = c.stamp;
            node.last_issued = c.stamp;
            node.known.insert(c.id);
            self.all.insert(c.id, c.clone());
            if c.collection == LOCAL {
                node.local_only.push(c.clone());
            } else {
                self.synced.push(c.clone());
            }
        }
        assert_eq!(committed.stamp, previous, "committed stamp");
        assert_eq!(committed.lsn, before_lsn + writes.len() as u64);
        assert_eq!(node.clock(), previous, "clock after a local write");
    }

    /// Replica `to` applies `from`'s feed after `start` (about `limit`
    /// changes), local-only changes left out and, `as_server`, also the
    /// changes that came from `to` (as [`crate::SyncServer`] does); returns
    /// how many were new, or `None` if the batch was refused for a stamp too
    /// far ahead.
    fn deliver(
        &mut self,
        from: usize,
        to: usize,
        start: u64,
        limit: usize,
        as_server: bool,
    ) -> Option<usize> {
        let to_id = self.nodes[to].id;
        let entries = self.nodes[from]
            .replica
            .feed_after(start, limit)
            .expect("the feed reads");
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.lsn, start + i as u64 + 1, "the feed has a gap");
            assert!(
                self.nodes[from].known.contains(&e.change.id),
                "feed entry {} of replica {from} is a change it never got",
                e.lsn
            );
        }
        if let Some(last) = entries.last() {
            assert!(last.group_end, "a feed slice ended inside a group");
        }
        if entries.len() < limit {
            assert_eq!(
                entries.last().map_or(start, |e| e.lsn),
                self.nodes[from].replica.last_lsn().max(start),
                "a feed slice stopped short of the limit before the end"
            );
        }
        let changes: Vec<Change> = entries
            .iter()
            .filter(|e| e.change.collection != LOCAL)
            .filter(|e| !as_server || (e.change.id.origin != to_id && e.source != Some(to_id)))
            .map(|e| e.change.clone())
            .collect();
        let cursor = &mut self.cursors[to][from];
        if changes.is_empty() {
            // Nothing to send (apply_changes covers empty batches): skip a commit.
            advance(cursor, start, &entries);
            return Some(0);
        }
        let source = self.nodes[from].id;
        let node = &mut self.nodes[to];
        let now = now(&node.time);
        let refused = changes.iter().any(|c| too_far_ahead(c.stamp, now));
        let mut fresh = BTreeSet::new();
        for c in &changes {
            if !node.known.contains(&c.id) {
                fresh.insert(c.id);
            }
        }
        let before_lsn = node.replica.last_lsn();
        let before_clock = node.clock();
        match node.replica.apply_remote_from(Some(source), &changes) {
            Ok(report) => {
                assert!(
                    !refused,
                    "replica {to} at time {now} accepted a stamp beyond the drift bound"
                );
                assert_eq!(
                    (report.applied, report.duplicates),
                    (fresh.len(), changes.len() - fresh.len()),
                    "applied and duplicates"
                );
                assert_eq!(report.last_lsn, before_lsn + fresh.len() as u64);
                assert_eq!(node.replica.last_lsn(), report.last_lsn);
                let greatest = changes.iter().map(|c| c.stamp).max();
                assert_eq!(
                    node.clock(),
                    before_clock.max(greatest.unwrap_or(Stamp::ZERO)),
                    "clock after receiving"
                );
                node.known.extend(fresh.iter().copied());
                advance(cursor, start, &entries);
                Some(fresh.len())
            }
            Err(ApplyError::ClockDrift(e)) if refused => {
                assert!(too_far_ahead(e.stamp, now), "{e}");
                assert_eq!(
                    node.replica.last_lsn(),
                    before_lsn,
                    "a refused batch stored"
                );
                assert_eq!(
                    node.clock(),
                    before_clock,
                    "a refused batch moved the clock"
                );
                None
            }
            Err(e) => {
                panic!("replica {to} at time {now} refused {changes:#?} from replica {from}: {e}")
            }
        }
    }

    fn finish(mut self) {
        // Clocks agree again: no stamp is ahead of anyone now.
        for node in &self.nodes {
            node.time.set(self.max_time);
        }
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds <= 3, "the full exchange did not settle in 3 rounds");
            let mut applied = 0;
            for from in 0..3 {
                for to in 0..3 {
                    if from != to {
                        applied += self
                            .deliver(from, to, self.cursors[to][from], usize::MAX, true)
                            .expect("no stamp is ahead once every clock reads the latest time");
                    }
                }
            }
            if applied == 0 {
                break;
            }
        }

        let model = Model::of(&self.synced);
        model.check_merge_all(&self.synced);
        for name in SYNCED {
            for (i, node) in self.nodes.iter().enumerate() {
                model.check(
                    &node.replica,
                    name,
                    &format!("replica {i} after the full exchange"),
                );
            }
        }
        for (i, node) in self.nodes.iter_mut().enumerate() {
            Model::of(&node.local_only).check(&node.replica, LOCAL, &format!("replica {i}"));
            assert_eq!(
                node.replica.last_lsn(),
                (self.synced.len() + node.local_only.len()) as u64,
                "replica {i}: feed length"
            );
            let mut previous = Stamp::ZERO;
            for e in node
                .replica
                .feed_after(0, usize::MAX)
                .expect("the feed reads")
            {
                if e.change.id.origin == node.id {
                    assert!(
                        e.change.stamp > previous,
                        "replica {i} issued {:?} after {previous:?}",
                        e.change.stamp
                    );
                    previous = e.change.stamp;
                }
            }
            node.clock();
        }
    }
}
