//! What a replica keeps of each record (format 3), as the model follows it
//! change by change, and the checks of what the replica holds and sends.
//!
//! Merge is a function of the full set of changes a replica ever merged
//! ([`Kept::changes`], which [`super::model::Model::of`] reads); what the
//! replica keeps of that set is smaller. For a record under last-writer-wins
//! with winner `w` and `seen` (the greatest base):
//!
//! - `w` is held, and so is every loser stamped after `seen` (a conflict);
//! - when `seen` is above zero and neither `w` nor a conflict has it as its
//!   base, the change whose base set it is held too: merge needs it to give
//!   `seen` to a replica that pulls the record. Such a change loses, is
//!   stamped at or below `seen` and has `seen` as its base, so it is stamped
//!   exactly at its own base (only a hostile peer sends one); when several
//!   tie, which one is held is the replica's choice;
//! - nothing else.
//!
//! A change that arrives is a duplicate when its slot (record, stamp,
//! origin) holds the same change, a forged duplicate (the batch is refused)
//! when the slot holds another, and is merged otherwise: applied (kept: it
//! wins, is a conflict or raises `seen`, and its record's feed entry moves
//! to a new lsn) or superseded (nothing changes, nothing is kept).
//!
//! Where the model cannot tell (a slot that may or may not be held, a tie
//! for `seen`), it allows each outcome, and learns what happened from the
//! replica's events and [`crate::Collection::history`] after every commit.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::{ApplyReport, Change, ChangeEvent, FeedEntry, Key, Replica, ReplicaId, Stamp, Watch};

use super::model::rank;

/// The store keeps a change that ties for `seen` (a loser stamped at its
/// base, which is the record's `seen`) as the new change that set it, and
/// keeps the one that set it before too: it reports such a change applied
/// and moves its record's feed entry, although it changes nothing and is no
/// conflict, and the record holds more than merge needs until `seen` rises.
/// The documented rule is that such a change is superseded; set this to
/// `false` to check that rule once the store follows it.
pub(super) const TIED_SEEN_SETTERS_KEPT: bool = true;

/// A record: (collection, key).
pub(super) type Record = (String, Key);

/// Where a change is held: (collection, key, stamp, origin). A replica holds
/// at most one change per slot.
pub(super) type Slot = (String, Key, Stamp, ReplicaId);

pub(super) fn slot(c: &Change) -> Slot {
    (c.collection.clone(), c.key.clone(), c.stamp, c.id.origin)
}

pub(super) fn record_of(c: &Change) -> Record {
    (c.collection.clone(), c.key.clone())
}

/// What storing one change of an accepted batch does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Outcome {
    Applied,
    Superseded,
    Duplicate,
    /// A forged duplicate: the whole batch is refused.
    Conflicting,
}

/// What the model says storing one change may do.
#[derive(Clone, Debug)]
pub(super) struct Judged {
    /// Every outcome the rules allow.
    pub(super) outcomes: BTreeSet<Outcome>,
    /// Conflicts recorded if it is applied: the change itself when it loses
    /// and is stamped after `seen`, or the winner it beats, likewise.
    pub(super) conflicts: usize,
}

impl Judged {
    /// A forged duplicate of a change the replica certainly holds.
    pub(super) fn refused(&self) -> bool {
        self.outcomes.len() == 1 && self.outcomes.contains(&Outcome::Conflicting)
    }
}

/// A change the replica holds, or may hold.
#[derive(Clone, Debug)]
struct Holding {
    change: Change,
    /// Whether the replica holds it for certain.
    sure: bool,
    /// The peers it may have been stored from (`None`: made here, or sent
    /// without naming a source).
    sources: BTreeSet<Option<ReplicaId>>,
}

/// A record's merged state, as far as keeping goes.
struct Summary<'a> {
    winner: &'a Change,
    seen: Stamp,
}

fn summary(changes: &[Change]) -> Option<Summary<'_>> {
    let winner = changes.iter().max_by_key(|c| rank(c))?;
    let seen = changes.iter().map(|c| c.base).max().unwrap_or(Stamp::ZERO);
    Some(Summary { winner, seen })
}

/// What a replica merged and holds, and where its feed entries are.
#[derive(Clone, Debug, Default)]
pub(super) struct Kept {
    /// Every change merged, per record: the full set merge is a function of.
    merged: BTreeMap<Record, Vec<Change>>,
    /// What the replica holds (or may hold, within a batch), by slot.
    held: BTreeMap<Slot, Holding>,
    /// Each record's feed entry: its lsn and the commit (group) that put it
    /// there, counted from 0.
    entries: BTreeMap<Record, (u64, usize)>,
    /// The groups written so far.
    groups: usize,
}

/// The counts the model allows for an accepted batch.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Changes stored, as the events say.
    pub(super) applied: usize,
    /// For superseded and duplicates: how many certainly, how many at most.
    pub(super) superseded: (usize, usize),
    pub(super) duplicates: (usize, usize),
    pub(super) conflicts: usize,
    /// The records whose feed entries moved, with their new lsns.
    pub(super) moved: BTreeMap<Record, u64>,
}

impl Tally {
    pub(super) fn check(&self, report: &ApplyReport, what: &str) {
        assert_eq!(report.applied, self.applied, "{what}: applied");
        let within = |n: usize, (lo, hi): (usize, usize)| lo <= n && n <= hi;
        assert!(
            within(report.superseded, self.superseded)
                && within(report.duplicates, self.duplicates),
            "{what}: {report:?}, the model allows superseded in {:?} and duplicates in {:?}",
            self.superseded,
            self.duplicates
        );
        assert_eq!(
            report.conflicts, self.conflicts,
            "{what}: conflicts recorded"
        );
    }
}

/// Every event waiting on `watch`.
pub(super) fn drain(watch: &mut Watch) -> Vec<ChangeEvent> {
    let mut out = Vec::new();
    while let Some(e) = watch.try_recv().expect("the watch keeps up") {
        out.push((*e).clone());
    }
    out
}

impl Kept {
    /// Every change merged: the set the records are a function of.
    pub(super) fn changes(&self) -> impl Iterator<Item = &Change> {
        self.merged.values().flatten()
    }

    /// The newest stamp among a record's changes (zero for none): under
    /// last-writer-wins, the winner's, which the replica holds.
    pub(super) fn newest_stamp(&self, collection: &str, key: &Key) -> Stamp {
        (self
            .merged
            .get(&(collection.to_string(), key.clone()))
            .into_iter())
        .flatten()
        .map(|c| c.stamp)
        .max()
        .unwrap_or(Stamp::ZERO)
    }

    fn holdings(&self, record: &Record) -> Vec<Slot> {
        (self.held.keys())
            .filter(|(c, k, _, _)| *c == record.0 && *k == record.1)
            .cloned()
            .collect()
    }

    /// What storing `c` next may do, in the branch where the batch is
    /// accepted (a forged duplicate of a slot that may be held is merged).
    pub(super) fn judge(&self, c: &Change) -> Judged {
        let mut outcomes = BTreeSet::new();
        if let Some(h) = self.held.get(&slot(c)) {
            outcomes.insert(if h.change == *c {
                Outcome::Duplicate
            } else {
                Outcome::Conflicting
            });
            if h.sure {
                return Judged {
                    outcomes,
                    conflicts: 0,
                };
            }
        }
        let mut changes = self.merged.get(&record_of(c)).cloned().unwrap_or_default();
        let before = summary(&changes).map(|s| (s.winner.clone(), s.seen));
        if !changes.contains(c) {
            changes.push(c.clone());
        }
        let after = summary(&changes).expect("a change was just added");
        let mut conflicts = 0;
        let merged: &[Outcome] = match &before {
            None => &[Outcome::Applied],
            Some((winner, _)) if rank(c) > rank(winner) => {
                // The old winner loses: a conflict unless `seen` covers it.
                conflicts += usize::from(winner.stamp > after.seen);
                &[Outcome::Applied]
            }
            Some(_) if c.stamp > after.seen => {
                conflicts += 1;
                &[Outcome::Applied]
            }
            Some((_, seen)) if c.base > *seen => &[Outcome::Applied],
            Some(_) if TIED_SEEN_SETTERS_KEPT && c.base == after.seen => {
                &[Outcome::Applied, Outcome::Superseded]
            }
            Some(_) => &[Outcome::Superseded],
        };
        outcomes.extend(merged);
        Judged {
            outcomes,
            conflicts,
        }
    }

    /// Stores `c` from `source` in the model: `applied` says whether the
    /// replica stored it, when known (`None`: it may have, as
    /// [`Kept::judge`] allows). A change whose slot is certainly held
    /// changes nothing.
    pub(super) fn store(&mut self, c: &Change, source: Option<ReplicaId>, applied: Option<bool>) {
        let judged = self.judge(c);
        let s = slot(c);
        let prior = self.held.get(&s).cloned();
        if prior.as_ref().is_some_and(|h| h.sure) {
            return;
        }
        let record = record_of(c);
        let changes = self.merged.entry(record.clone()).or_default();
        if !changes.contains(c) {
            changes.push(c.clone());
        }
        let same = prior.filter(|h| h.change == *c);
        let holding = match applied {
            Some(true) => Some(Holding {
                change: c.clone(),
                sure: true,
                sources: BTreeSet::from([source]),
            }),
            Some(false) => same,
            None if judged.outcomes.contains(&Outcome::Applied) => {
                let mut sources = same.map(|h| h.sources).unwrap_or_default();
                sources.insert(source);
                Some(Holding {
                    change: c.clone(),
                    sure: !judged.outcomes.contains(&Outcome::Superseded)
                        && !judged.outcomes.contains(&Outcome::Duplicate),
                    sources,
                })
            }
            None => same,
        };
        match holding {
            Some(h) => self.held.insert(s, h),
            None => self.held.remove(&s),
        };
        self.settle(&record);
    }

    /// Keeps what merge needs of a record after a change: the winner and
    /// the conflicts for certain, the changes that may have set `seen`.
    fn settle(&mut self, record: &Record) {
        let Some(sum) = self.merged.get(record).and_then(|c| summary(c)) else {
            return;
        };
        let (winner, seen) = (sum.winner.clone(), sum.seen);
        let mut setter_held = winner.base == seen;
        let mut candidates = Vec::new();
        for s in self.holdings(record) {
            let h = self.held.get_mut(&s).expect("listed");
            if h.change == winner {
                h.sure = true;
            } else if h.change.stamp > seen {
                h.sure = true;
                setter_held |= h.change.base == seen;
            } else if h.change.base == seen {
                candidates.push(s);
            } else {
                self.held.remove(&s);
            }
        }
        let needed = seen > Stamp::ZERO && !setter_held;
        for s in &candidates {
            if needed && candidates.len() == 1 {
                self.held.get_mut(s).expect("listed").sure = true;
            } else if !needed && !TIED_SEEN_SETTERS_KEPT {
                self.held.remove(s);
            } else {
                self.held.get_mut(s).expect("listed").sure = false;
            }
        }
    }

    /// Follows an accepted batch through the model with the events the
    /// replica published for it (one per change stored, in order, from lsn
    /// `before_lsn + 1`), checking each against what the model allows.
    pub(super) fn replay(
        &mut self,
        batch: &[Change],
        source: Option<ReplicaId>,
        events: &[ChangeEvent],
        before_lsn: u64,
        what: &str,
    ) -> Tally {
        let mut tally = Tally::default();
        let mut events = events.iter().peekable();
        for (i, c) in batch.iter().enumerate() {
            let judged = self.judge(c);
            let applied = judged.outcomes.contains(&Outcome::Applied)
                && events.peek().is_some_and(|e| e.change == *c);
            let mut others: Vec<Outcome> = (judged.outcomes.iter().copied())
                .filter(|o| !matches!(o, Outcome::Applied | Outcome::Conflicting))
                .collect();
            if applied {
                let e = events.next().expect("peeked");
                tally.applied += 1;
                tally.conflicts += judged.conflicts;
                let lsn = before_lsn + tally.applied as u64;
                assert_eq!(e.lsn, lsn, "{what}: lsn of stored change {i}");
                assert_eq!(e.source, source, "{what}: source of stored change {i}");
                tally.moved.insert(record_of(c), lsn);
            } else {
                assert!(
                    !others.is_empty(),
                    "{what}: change {i} of the accepted batch must be {:?}, yet it was not \
                     stored: {c:?}",
                    judged.outcomes
                );
                others.sort();
                for o in &others {
                    let count = match o {
                        Outcome::Superseded => &mut tally.superseded,
                        _ => &mut tally.duplicates,
                    };
                    count.1 += 1;
                    count.0 += usize::from(others.len() == 1);
                }
            }
            self.store(c, source, Some(applied));
        }
        let rest: Vec<_> = events.collect();
        assert!(
            rest.is_empty(),
            "{what}: stored changes the model says are not stored (or out of order): {rest:#?}"
        );
        tally
    }

    /// Checks the records `records` of `replica` hold what the model says
    /// they may, and all they must; then takes what they hold as known.
    pub(super) fn sync<'a>(
        &mut self,
        replica: &Replica,
        records: impl IntoIterator<Item = &'a Record>,
        what: &str,
    ) {
        for record in records {
            let history = replica
                .collection(&record.0)
                .and_then(|c| c.history(record.1.clone()))
                .unwrap_or_else(|e| panic!("{what}: history of {record:?}: {e}"));
            let slots = self.holdings(record);
            for c in &history {
                assert!(
                    self.held.get(&slot(c)).is_some_and(|h| h.change == *c),
                    "{what}: {record:?} holds {c:?}, which merge does not need (or never \
                     got){}",
                    self.describe(record)
                );
            }
            for s in &slots {
                let h = &self.held[s];
                assert!(
                    !h.sure || history.contains(&h.change),
                    "{what}: {record:?} lost {:?}, which merge needs; it holds {history:#?}{}",
                    h.change,
                    self.describe(record)
                );
            }
            if let Some(sum) = self.merged.get(record).and_then(|c| summary(c)) {
                let extras = (history.iter())
                    .filter(|c| **c != *sum.winner && c.stamp <= sum.seen)
                    .count();
                let needed = sum.seen > Stamp::ZERO
                    && !history
                        .iter()
                        .any(|c| c.base == sum.seen && c.stamp > sum.seen)
                    && sum.winner.base != sum.seen;
                assert!(
                    !needed || extras > 0,
                    "{what}: {record:?} holds no change that set its seen {:?}: {history:#?}",
                    sum.seen
                );
                assert!(
                    TIED_SEEN_SETTERS_KEPT || extras <= usize::from(needed),
                    "{what}: {record:?} holds more than merge needs: {history:#?}"
                );
            }
            for s in slots {
                let h = self.held.get_mut(&s).expect("listed");
                if history.contains(&h.change) {
                    h.sure = true;
                } else {
                    self.held.remove(&s);
                }
            }
        }
    }

    /// The model's view of a record, for failure messages.
    fn describe(&self, record: &Record) -> String {
        let mut out = String::from("\nmerged:");
        for c in self.merged.get(record).into_iter().flatten() {
            let _ = write!(out, "\n  {c:?}");
        }
        out.push_str("\nheld or maybe held:");
        for s in self.holdings(record) {
            let h = &self.held[&s];
            let _ = write!(out, "\n  {:?} (sure: {})", h.change, h.sure);
        }
        out
    }

    /// Checks feed entries against what the records hold: one lsn per
    /// record, rising, each carrying all of its record's held changes (in
    /// any order) with the sources they were stored with. Returns each
    /// record with its lsn, in feed order.
    pub(super) fn check_entries(&self, entries: &[FeedEntry], what: &str) -> Vec<(Record, u64)> {
        let mut out: Vec<(Record, u64)> = Vec::new();
        for run in entries.chunk_by(|a, b| a.lsn == b.lsn) {
            let lsn = run[0].lsn;
            let record = record_of(&run[0].change);
            assert!(
                out.last().is_none_or(|(_, l)| *l < lsn),
                "{what}: feed lsns do not rise at {lsn}"
            );
            assert!(
                out.iter().all(|(r, _)| *r != record),
                "{what}: {record:?} has two feed entries"
            );
            let mut sent: Vec<&Change> = run.iter().map(|e| &e.change).collect();
            assert!(
                sent.iter().all(|c| record_of(c) == record),
                "{what}: feed entry {lsn} mixes records: {run:#?}"
            );
            sent.sort_by_key(|c| c.version());
            let mut held: Vec<&Change> = (self.holdings(&record).iter())
                .map(|s| &self.held[s].change)
                .collect();
            held.sort_by_key(|c| c.version());
            assert_eq!(sent, held, "{what}: the changes feed entry {lsn} sends");
            for e in run {
                let sources = &self.held[&slot(&e.change)].sources;
                assert!(
                    sources.contains(&e.source),
                    "{what}: feed entry {lsn} gives {:?} the source {:?}; it came from {sources:?}",
                    e.change,
                    e.source
                );
            }
            out.push((record, lsn));
        }
        out
    }

    /// Checks the commit that moved `moved` (from lsn `before_lsn` on): the
    /// feed after `before_lsn` is one group, holding exactly those records at
    /// their new lsns. Call after [`Kept::sync`].
    pub(super) fn check_commit(
        &mut self,
        replica: &Replica,
        before_lsn: u64,
        moved: &BTreeMap<Record, u64>,
        what: &str,
    ) {
        let entries = replica
            .feed_after(before_lsn, usize::MAX)
            .expect("the feed reads");
        let records = self.check_entries(&entries, what);
        let mut expected: Vec<(Record, u64)> = moved.iter().map(|(r, l)| (r.clone(), *l)).collect();
        expected.sort_by_key(|(_, l)| *l);
        assert_eq!(records, expected, "{what}: the records the commit moved");
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                e.group_end,
                i + 1 == entries.len(),
                "{what}: group end of feed entry {}",
                e.lsn
            );
        }
        if moved.is_empty() {
            return;
        }
        for (record, lsn) in records {
            self.entries.insert(record, (lsn, self.groups));
        }
        self.groups += 1;
    }

    /// Checks a replica's whole feed: every record once, at the lsn of its
    /// last move, with all its held changes; group ends on the last change
    /// of each commit's entries. Returns the feed.
    pub(super) fn check_feed(&self, replica: &Replica, what: &str) -> Vec<FeedEntry> {
        let feed = replica.feed_after(0, usize::MAX).expect("the feed reads");
        let records = self.check_entries(&feed, what);
        let mut expected: Vec<(Record, u64)> = (self.entries.iter())
            .map(|(r, (l, _))| (r.clone(), *l))
            .collect();
        expected.sort_by_key(|(_, l)| *l);
        assert_eq!(
            records, expected,
            "{what}: the records of the feed and their lsns"
        );
        assert!(
            feed.last().is_none_or(|e| e.lsn <= replica.last_lsn()),
            "{what}: a feed entry after last_lsn"
        );
        let group = |e: &FeedEntry| self.entries[&record_of(&e.change)].1;
        for (i, e) in feed.iter().enumerate() {
            let end = feed.get(i + 1).is_none_or(|next| group(next) != group(e));
            assert_eq!(
                e.group_end, end,
                "{what}: group end of feed entry {}",
                e.lsn
            );
        }
        // Read in slices of one change: whole groups, one at a time.
        let mut read = Vec::new();
        let mut after = 0;
        loop {
            let slice = replica.feed_after(after, 1).expect("the feed reads");
            let Some(last) = slice.last() else { break };
            assert!(last.group_end, "{what}: a feed slice ended inside a group");
            assert!(
                slice.iter().all(|e| group(e) == group(last)),
                "{what}: a slice of one change read more than one group"
            );
            after = last.lsn;
            read.extend(slice);
        }
        assert_eq!(read, feed, "{what}: the feed read in slices");
        feed
    }
}
