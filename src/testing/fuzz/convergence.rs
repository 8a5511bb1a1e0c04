//! The steps, replicas and run behind [`converge`].

use std::collections::BTreeSet;

use crate::{
    ApplyError, Change, ChangeId, FeedEntry, ManualTime, Op, Replica, ReplicaId, Stamp, Value,
    Watch,
};

#[cfg(doc)]
use super::converge;
use super::input::Input;
use super::keep::{Kept, Outcome, Record, drain, record_of};
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
    /// Its events: one per change stored.
    watch: Watch,
    time: ManualTime,
    id: ReplicaId,
    /// The last stamp it issued.
    last_issued: Stamp,
    /// The last clock reading taken: it must never go down.
    last_clock: Stamp,
    /// What it merged and holds, and where its feed entries are.
    kept: Kept,
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

    /// Its records and conflicts equal the model over every change it merged.
    fn check_state(&self, what: &str) {
        let model = Model::of(self.kept.changes());
        for name in SYNCED.into_iter().chain([LOCAL]) {
            model.check(&self.replica, name, what);
        }
    }

    /// A fresh replica that applies this one's whole feed (local-only
    /// changes left out, as the server does) ends with the same records and
    /// conflicts: a pull reads current state.
    fn check_pull(&self, what: &str) {
        let feed = self
            .replica
            .feed_after(0, usize::MAX)
            .expect("the feed reads");
        let changes: Vec<Change> = (feed.into_iter())
            .map(|e| e.change)
            .filter(|c| c.collection != LOCAL)
            .collect();
        if changes.is_empty() {
            return;
        }
        let latest = changes.iter().map(|c| c.stamp.millis()).max().unwrap_or(T0);
        let fresh = in_memory(replica_id(3), &ManualTime::new(latest));
        fresh
            .apply_remote_from(Some(self.id), &changes)
            .unwrap_or_else(|e| panic!("{what}: a fresh replica refused the feed: {e}"));
        let model = Model::of(self.kept.changes());
        for name in SYNCED {
            model.check(
                &fresh,
                name,
                &format!("{what}: a fresh replica fed the feed"),
            );
        }
    }
}

struct ConvergeRun {
    nodes: Vec<Node>,
    /// `cursors[to][from]`: `to` holds everything of `from`'s feed through it.
    cursors: [[u64; 3]; 3],
    /// Every change made to a synced collection.
    synced: Vec<Change>,
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
                watch: replica.watch(),
                replica,
                time,
                id,
                last_issued: Stamp::ZERO,
                kept: Kept::default(),
                local_only: Vec::new(),
                seq: 0,
            }
        })
        .collect();
    let mut run = ConvergeRun {
        nodes,
        cursors: [[0; 3]; 3],
        synced: Vec::new(),
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
        let mut queued = Vec::new();
        for &(c, k, v) in writes {
            let collection = match c % 5 {
                0 | 1 => SYNCED[0],
                2 | 3 => SYNCED[1],
                _ => LOCAL,
            };
            let op = if v % 4 == 3 {
                txn.delete(collection, key(k));
                Op::Delete
            } else {
                let value = Value::Int(i64::from(v / 4));
                txn.put(collection, key(k), value.clone());
                Op::Put(value)
            };
            queued.push((collection, key(k), op));
        }
        let committed = txn
            .commit()
            .unwrap_or_else(|e| panic!("a local write failed: {e}"));
        let what = format!("replica {r}'s write of {writes:?}");
        let events = drain(&mut node.watch);
        assert_eq!(events.len(), writes.len(), "{what}: every change is stored");
        assert_eq!(committed.ids.len(), writes.len(), "{what}: ids");
        assert_eq!(
            committed.lsn,
            before_lsn + writes.len() as u64,
            "{what}: lsn"
        );
        assert_eq!(node.replica.last_lsn(), committed.lsn, "{what}: last_lsn");
        let mut previous = before;
        let mut records = BTreeSet::new();
        for (i, (e, (collection, key, op))) in events.iter().zip(queued).enumerate() {
            node.seq += 1;
            let c = &e.change;
            let id = ChangeId {
                origin: node.id,
                seq: node.seq,
            };
            assert_eq!(c.id, id, "{what}: local change id");
            assert_eq!(c.id, committed.ids[i], "{what}: committed id");
            assert_eq!(
                (c.collection.as_str(), &c.key, &c.op),
                (collection, &key, &op),
                "{what}: change {i}"
            );
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
            assert_eq!(
                c.base,
                node.kept.newest_stamp(collection, &key),
                "{what}: a local change is made on top of the newest change of its record"
            );
            previous = c.stamp;
            node.last_issued = c.stamp;
            if c.collection == LOCAL {
                node.local_only.push(c.clone());
            } else {
                self.synced.push(c.clone());
            }
            let tally = node.kept.replay(
                std::slice::from_ref(c),
                None,
                std::slice::from_ref(e),
                e.lsn - 1,
                &what,
            );
            assert_eq!(tally.applied, 1, "{what}: a local change is stored");
            records.insert(record_of(c));
        }
        assert_eq!(committed.stamp, previous, "{what}: committed stamp");
        assert_eq!(node.clock(), previous, "{what}: clock after a local write");
        let moved = (events.iter())
            .map(|e| (record_of(&e.change), e.lsn))
            .collect();
        node.kept.sync(&node.replica, &records, &what);
        node.kept
            .check_commit(&node.replica, before_lsn, &moved, &what);
        node.check_state(&what);
    }

    /// Replica `to` applies `from`'s feed after `start` (about `limit`
    /// changes), local-only changes left out and, `as_server`, also the
    /// changes that came from `to` (as [`crate::SyncServer`] does); returns
    /// how many changes it stored, or `None` if the batch was refused for a
    /// stamp too far ahead.
    fn deliver(
        &mut self,
        from: usize,
        to: usize,
        start: u64,
        limit: usize,
        as_server: bool,
    ) -> Option<usize> {
        let to_id = self.nodes[to].id;
        let what = format!("delivery from replica {from} to {to} after {start}");
        let sender = &self.nodes[from];
        let entries = sender
            .replica
            .feed_after(start, limit)
            .expect("the feed reads");
        // Each record's entry sends all it holds, the sources with them.
        sender.kept.check_entries(&entries, &what);
        if let Some(first) = entries.first() {
            assert!(first.lsn > start, "{what}: an entry at or before the start");
        }
        if let Some(last) = entries.last() {
            assert!(last.group_end, "{what}: a feed slice ended inside a group");
            assert!(
                last.lsn <= sender.replica.last_lsn(),
                "{what}: an entry after last_lsn"
            );
            // Whole groups: what comes before the last one is under the limit.
            let before_last = (entries
                .iter()
                .rposition(|e| e.group_end && e.lsn != last.lsn))
            .map_or(0, |i| i + 1);
            assert!(
                before_last < limit,
                "{what}: the slice went on past {limit} changes"
            );
        }
        if entries.len() < limit {
            let after = entries.last().map_or(start, |e| e.lsn);
            assert!(
                (sender.replica.feed_after(after, usize::MAX))
                    .expect("the feed reads")
                    .is_empty(),
                "{what}: a feed slice stopped short of the limit before the end"
            );
        }
        for e in entries.iter().filter(|e| e.change.collection == LOCAL) {
            assert!(
                e.change.id.origin == sender.id && e.source.is_none(),
                "{what}: the feed holds a local-only change from elsewhere: {e:?}"
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
        let source = Some(sender.id);
        let node = &mut self.nodes[to];
        let now = now(&node.time);
        let refused = changes.iter().any(|c| too_far_ahead(c.stamp, now));
        for c in &changes {
            assert!(
                !node.kept.judge(c).outcomes.contains(&Outcome::Conflicting),
                "{what}: the model takes {c:?} for a forged duplicate"
            );
        }
        let before_lsn = node.replica.last_lsn();
        let before_clock = node.clock();
        let result = node.replica.apply_remote_from(source, &changes);
        let events = drain(&mut node.watch);
        if debug_enabled() {
            eprintln!("{what}, {} changes: {result:?}", changes.len());
        }
        let records: BTreeSet<Record> = changes.iter().map(record_of).collect();
        match result {
            Ok(report) => {
                assert!(
                    !refused,
                    "replica {to} at time {now} accepted a stamp beyond the drift bound"
                );
                let tally = node
                    .kept
                    .replay(&changes, source, &events, before_lsn, &what);
                tally.check(&report, &what);
                assert_eq!(
                    report.last_lsn,
                    before_lsn + tally.applied as u64,
                    "{what}: last_lsn"
                );
                assert_eq!(node.replica.last_lsn(), report.last_lsn);
                let greatest = changes.iter().map(|c| c.stamp).max();
                assert_eq!(
                    node.clock(),
                    before_clock.max(greatest.unwrap_or(Stamp::ZERO)),
                    "clock after receiving"
                );
                node.kept.sync(&node.replica, &records, &what);
                node.kept
                    .check_commit(&node.replica, before_lsn, &tally.moved, &what);
                node.check_state(&what);
                advance(cursor, start, &entries);
                Some(tally.applied)
            }
            Err(ApplyError::ClockDrift(e)) if refused => {
                assert!(too_far_ahead(e.stamp, now), "{e}");
                assert!(events.is_empty(), "{what}: refused, yet stored {events:#?}");
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
                node.kept.sync(&node.replica, &records, &what);
                None
            }
            Err(e) => {
                panic!("replica {to} at time {now} refused {changes:#?} from replica {from}: {e}")
            }
        }
    }

    fn finish(mut self) {
        for (i, node) in self.nodes.iter().enumerate() {
            node.check_pull(&format!("replica {i} before the full exchange"));
        }
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
            let what = format!("replica {i} after the full exchange");
            Model::of(&node.local_only).check(&node.replica, LOCAL, &what);
            node.kept.check_feed(&node.replica, &what);
            node.check_pull(&what);
            node.clock();
        }
    }
}
