//! Fuzz targets, callable from cargo-fuzz and from ordinary tests.
//!
//! Each target takes arbitrary bytes and never panics on any input, except to
//! report a bug: every panic is a failed invariant. The targets are
//! deterministic, read at most [`MAX_STEPS`] steps from their input, and take
//! well under a few milliseconds per input in a release build.
//!
//! - [`decode_frame`]: the protocol decoder against hostile bytes.
//! - [`apply_changes`]: [`Replica::apply_remote`] against a model of
//!   last-writer-wins, refusals included.
//! - [`converge`]: three replicas under an arbitrary schedule of local
//!   writes, clock moves and partial, reordered, duplicated deliveries.
//!
//! The repository's `fuzz/` directory is the cargo-fuzz crate that runs them
//! (see its README), and `tests/fuzz_corpus.rs` replays its corpus, the saved
//! regressions and [`seed_corpus`] through them on every `cargo test`.
//!
//! ```
//! use syncline::testing::fuzz;
//!
//! // Each target on its first seed; a panic would be a bug.
//! for (name, target) in fuzz::TARGETS {
//!     let (_label, input) = &fuzz::seed_corpus(name)[0];
//!     target(input);
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::{
    self, Batch, CollectionSpec, Notify, PROTOCOL_VERSION, Request, RequestBody, Response,
};
use crate::{
    ApplyError, Change, ChangeId, CollectionConfig, Conflict, Fault, FeedEntry, Key, ManualTime,
    MergePolicy, Op, Ranks, RecordState, Refusal, RefusalCode, Replica, ReplicaConfig, ReplicaId,
    Rule, Stamp, Value, merge_all,
};

/// The most steps [`apply_changes`] and [`converge`] read from one input;
/// the bytes after them are ignored.
pub const MAX_STEPS: usize = 64;

/// A fuzz target: takes any bytes, panics only to report a bug.
pub type Target = fn(&[u8]);

/// Every target by name, as the cargo-fuzz crate and the corpus replay name
/// them (`fuzz/corpus/<name>/`).
pub const TARGETS: [(&str, Target); 3] = [
    ("decode_frame", decode_frame),
    ("apply_changes", apply_changes),
    ("converge", converge),
];

/// The physical time the replicas start at, in milliseconds since the epoch.
const T0: u64 = 1_700_000_000_000;
/// The default `max_clock_drift`, which the targets keep.
const DRIFT_MS: u64 = 60_000;
/// The synced collections.
const SYNCED: [&str; 2] = ["a", "b"];
/// A local-only collection: remote changes to it are refused.
const LOCAL: &str = "l";
/// A collection no replica defines.
const UNKNOWN: &str = "u";

// ---------------------------------------------------------------------------
// decode_frame
// ---------------------------------------------------------------------------

/// Decodes `data` as a [`Request`], a [`Response`] and a [`Notify`] with
/// [`protocol::decode`], the bounded decoder every peer frame goes through.
///
/// Checks, for each type that `data` decodes as: the value encodes, the
/// encoding decodes again, to an equal value (compared as values, and as
/// encodings so that NaN floats compare too), and re-encoding that gives the
/// same bytes. A batch's digest is recomputed. Allocation is bounded by the
/// codec (64 MiB per frame); libFuzzer's `-rss_limit_mb` catches regressions.
pub fn decode_frame(data: &[u8]) {
    if let Some(request) = round_trip::<Request>(data)
        && let RequestBody::Push(batch) = &request.body
    {
        check_digest(batch);
    }
    if let Some(Response::Changes { batch, .. }) = round_trip::<Response>(data) {
        check_digest(&batch);
    }
    round_trip::<Notify>(data);
}

/// Decodes `data` as a `T`; if it decodes, checks the round trip and returns it.
fn round_trip<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let first: T = protocol::decode(data).ok()?;
    let bytes = protocol::encode(&first);
    let second: T = match protocol::decode(&bytes) {
        Ok(second) => second,
        Err(e) => panic!(
            "{} decoded from {data:02x?} as {first:?}, but its encoding {bytes:02x?} does not decode: {e}",
            std::any::type_name::<T>()
        ),
    };
    let again = protocol::encode(&second);
    assert_eq!(
        bytes,
        again,
        "{}: re-encoding a decoded frame changed its bytes",
        std::any::type_name::<T>()
    );
    // Equal encodings mean equal bits; only a NaN float makes the values
    // differ, and then their debug forms still agree.
    assert!(
        first == second || format!("{first:?}") == format!("{second:?}"),
        "{}: {first:?} came back as {second:?}",
        std::any::type_name::<T>()
    );
    Some(first)
}

/// A batch rebuilt from its changes verifies, and the received one verifies
/// exactly when it carries that digest.
fn check_digest(batch: &Batch) {
    let rebuilt = Batch::new(batch.changes.clone(), batch.through);
    assert!(rebuilt.verify(), "a freshly built batch does not verify");
    assert_eq!(
        batch.verify(),
        batch.digest == rebuilt.digest,
        "verify disagrees with the digest of the changes"
    );
}

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// The bytes of an input, read front to back; zeros once they run out.
struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((b, rest)) => {
                self.bytes = rest;
                *b
            }
            None => 0,
        }
    }
}

/// Replica ids 1, 2 and 3 (`[n; 16]`).
fn replica_id(index: usize) -> ReplicaId {
    ReplicaId::from_bytes([index as u8 + 1; 16])
}

/// A key `k0` to `k3`.
fn key(byte: u8) -> Key {
    Key::from(format!("k{}", byte % 4))
}

/// Moves a clock: `by < 128` advances it by `by` seconds, larger values step
/// it back by `by - 128` seconds. Returns the new reading.
fn move_time(time: &ManualTime, by: u8) -> u64 {
    if by < 128 {
        time.advance(Duration::from_secs(u64::from(by)));
    } else {
        time.step_back(Duration::from_secs(u64::from(by - 128)));
    }
    crate::TimeSource::now_millis(time)
}

fn now(time: &ManualTime) -> u64 {
    crate::TimeSource::now_millis(time)
}

/// Whether a receiver at `now` refuses `stamp` as too far ahead.
fn too_far_ahead(stamp: Stamp, now: u64) -> bool {
    stamp.millis().saturating_sub(now) > DRIFT_MS
}

/// The merge order, spelled out: stamp, then origin, then sequence number.
type Rank = (u64, [u8; 16], u64);

fn rank(c: &Change) -> Rank {
    (c.stamp.as_u64(), *c.id.origin.as_bytes(), c.id.seq)
}

/// The value a change gives its record under last-writer-wins.
fn op_value(op: &Op) -> Option<Value> {
    match op {
        Op::Put(v) => Some(v.clone()),
        Op::Patch(fields) => Some(Value::Map(fields.clone())),
        Op::Automerge(bytes) => Some(Value::Bytes(bytes.clone())),
        Op::Delete => None,
    }
}

/// What the documented rules say a set of changes (no two with one id)
/// holds, written as plainly as possible.
#[derive(Debug, Default, PartialEq)]
struct Model {
    /// Per record: the change with the greatest (stamp, origin, seq) decides
    /// (a delete leaves a tombstone), and `seen` is the greatest `base`.
    records: BTreeMap<(String, Key), RecordState>,
    /// Per collection, in (key, stamp, origin) order: the changes that lost
    /// and that no change of their record was made on top of (stamp above
    /// the record's `seen`).
    conflicts: BTreeMap<String, Vec<Conflict>>,
}

impl Model {
    fn of<'a>(changes: impl IntoIterator<Item = &'a Change>) -> Self {
        let mut by_record: BTreeMap<(String, Key), Vec<&Change>> = BTreeMap::new();
        for c in changes {
            by_record
                .entry((c.collection.clone(), c.key.clone()))
                .or_default()
                .push(c);
        }
        let mut model = Self::default();
        for ((collection, key), changes) in by_record {
            let winner = changes
                .iter()
                .copied()
                .max_by_key(|c| rank(c))
                .expect("a record has changes");
            let seen = changes.iter().map(|c| c.base).max().unwrap_or(Stamp::ZERO);
            let mut losers: Vec<&Change> = changes
                .iter()
                .copied()
                .filter(|c| c.id != winner.id && c.stamp > seen)
                .collect();
            losers.sort_by_key(|c| (c.stamp, c.id.origin));
            let conflicts = model.conflicts.entry(collection.clone()).or_default();
            conflicts.extend(losers.into_iter().map(|c| Conflict {
                key: key.clone(),
                loser: c.version(),
                value: op_value(&c.op),
            }));
            model.records.insert(
                (collection, key),
                RecordState {
                    version: winner.version(),
                    value: op_value(&winner.op),
                    fields: BTreeMap::new(),
                    tombstone: None,
                    seen,
                },
            );
        }
        model
    }

    /// The records of one collection, in key order, as
    /// [`crate::Collection::states`] lists them.
    fn states(&self, collection: &str) -> Vec<(Key, RecordState)> {
        self.records
            .iter()
            .filter(|((c, _), _)| c == collection)
            .map(|((_, k), s)| (k.clone(), s.clone()))
            .collect()
    }

    /// The conflicts of one collection, as [`crate::Collection::conflicts`] lists them.
    fn conflicts(&self, collection: &str) -> Vec<Conflict> {
        self.conflicts.get(collection).cloned().unwrap_or_default()
    }

    /// [`merge_all`] over each record's changes (in reverse order) agrees.
    fn check_merge_all(&self, changes: &[Change]) {
        let mut by_record: BTreeMap<(String, Key), Vec<&Change>> = BTreeMap::new();
        for c in changes {
            by_record
                .entry((c.collection.clone(), c.key.clone()))
                .or_default()
                .push(c);
        }
        assert_eq!(by_record.len(), self.records.len());
        for (slot, changes) in by_record {
            let merged = merge_all(&Rule::Lww, changes.into_iter().rev());
            assert_eq!(
                merged.as_ref(),
                self.records.get(&slot),
                "merge_all disagrees with the model on {slot:?}"
            );
        }
    }

    /// `replica` holds exactly these records and conflicts in `collection`.
    fn check(&self, replica: &Replica, collection: &str, what: &str) {
        let handle = replica
            .collection(collection)
            .unwrap_or_else(|e| panic!("{what}: collection {collection:?}: {e}"));
        assert_eq!(
            handle.states().expect("records read"),
            self.states(collection),
            "{what}: records of {collection:?}"
        );
        assert_eq!(
            handle.conflicts().expect("conflicts read"),
            self.conflicts(collection),
            "{what}: conflicts of {collection:?}"
        );
    }
}

fn in_memory(id: ReplicaId, time: &ManualTime) -> Replica {
    let mut config = ReplicaConfig::default().with_time(time.clone());
    config.replica_id = Some(id);
    config.max_clock_drift = Duration::from_millis(DRIFT_MS);
    let replica = Replica::in_memory(config).expect("an in-memory replica opens");
    for name in SYNCED {
        replica
            .define_collection(name, CollectionConfig::default())
            .expect("define a synced collection");
    }
    replica
        .define_collection(LOCAL, CollectionConfig::local_only())
        .expect("define a local-only collection");
    replica
}

fn debug_enabled() -> bool {
    std::env::var_os("SYNCLINE_FUZZ_DEBUG").is_some()
}

// ---------------------------------------------------------------------------
// apply_changes
// ---------------------------------------------------------------------------

/// One step of [`apply_changes`], as read from the input.
///
/// The first byte of a step picks its kind (`byte % 8`); each field is one
/// more byte. [`ApplyStep::encode`] is the inverse, for writing seeds.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ApplyStep {
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
    fn parse(data: &[u8]) -> Vec<Self> {
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

    fn encode(steps: &[Self]) -> Vec<u8> {
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

/// The receiver as the model sees it: the changes it accepted, and so on.
#[derive(Debug, Default)]
struct StoreModel {
    by_id: BTreeMap<ChangeId, Change>,
    slots: BTreeSet<(String, Key, Stamp, ReplicaId)>,
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
        let mut ids = BTreeMap::new();
        let mut slots = BTreeSet::new();
        let mut fresh = Vec::new();
        let mut duplicates = 0;
        for c in batch {
            if let Some(stored) = self.by_id.get(&c.id).or_else(|| ids.get(&c.id)) {
                if stored != c {
                    reasons.insert(Reason::Conflict);
                    break;
                }
                duplicates += 1;
                continue;
            }
            let slot = (c.collection.clone(), c.key.clone(), c.stamp, c.id.origin);
            if self.slots.contains(&slot) || slots.contains(&slot) {
                reasons.insert(Reason::Conflict);
                break;
            }
            ids.insert(c.id, c.clone());
            slots.insert(slot);
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
            self.by_id.insert(c.id, c.clone());
            self.slots
                .insert((c.collection.clone(), c.key.clone(), c.stamp, c.id.origin));
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

/// Applies a fuzzer-chosen sequence of remote changes to one replica and
/// checks it against a model of the documented rules.
///
/// The input is read as up to [`MAX_STEPS`] small steps (see the private
/// `ApplyStep`): new changes from 3 origins (the third is the receiver's
/// own id, coming back) to 2 synced collections, a local-only one and an
/// unknown one, 4 keys, stamps from a 4 ms range so that ties are common and
/// occasionally far in the future, bases from the same range, puts of small
/// integers and deletes; exact duplicates; forged duplicates (an id reused
/// with other content, or a record, stamp and origin reused under another
/// id); moves of the receiver's [`ManualTime`] clock; and cuts, where the
/// pending changes go to [`Replica::apply_remote`] (or `apply_remote_from`)
/// as one batch.
///
/// Checks after every batch: it is accepted or refused exactly as the model
/// predicts (a refusal for one of the reasons that apply); the report counts
/// the new changes and duplicates; a refused batch stores nothing and leaves
/// the clock where it was; an accepted one moves the clock to its greatest
/// stamp; the records and conflicts equal a `BTreeMap` model over exactly
/// the accepted changes (the greatest (stamp, origin, seq) wins, a delete
/// leaves a tombstone, `seen` is the greatest `base`, and the conflicts are
/// the losers stamped after it). At the end: the feed is the accepted
/// changes in order, with their source and group ends; a local write gets a
/// fresh sequence number, a stamp above everything seen and the newest stamp
/// of its record as its base; the records equal [`merge_all`] of each
/// record's changes.
pub fn apply_changes(data: &[u8]) {
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

// ---------------------------------------------------------------------------
// converge
// ---------------------------------------------------------------------------

/// One step of [`converge`], as read from the input (after 3 bytes of clock
/// skew, one per replica). The first byte of a step picks its kind
/// (`byte % 8`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum ConvergeStep {
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
    fn parse(data: &[u8]) -> ([u8; 3], Vec<Self>) {
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

    fn encode(skews: [u8; 3], steps: &[Self]) -> Vec<u8> {
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

/// Runs three in-memory replicas (ids 1, 2 and 3) through a fuzzer-chosen
/// schedule and checks that they converge.
///
/// The first 3 bytes set each replica's clock skew (±64 s around a common
/// start); then up to [`MAX_STEPS`] steps (see the private `ConvergeStep`):
/// local puts and deletes and two-record transactions on two synced
/// collections and a local-only one; clock moves forward or back (a clock
/// per replica, on [`ManualTime`]); and deliveries, where one replica
/// applies a slice of another's feed through `apply_remote_from`: from its
/// cursor, re-delivered from earlier, or skipping ahead, so that changes
/// arrive partially, out of order and more than once (a replica's own
/// changes come back to it too). Local-only changes are left out, as the
/// server does.
///
/// Checks on the way: every stamp a replica issues is greater than its
/// clock before the write (so greater than everything it has seen) and than
/// its previous stamp, and not below its physical time; a local change's
/// `base` is the newest stamp of its record the replica holds; the clock
/// never goes back; the feed is gap-free and a slice never ends inside a
/// group; a delivery is refused only for a stamp beyond the drift bound, and
/// then stores nothing and leaves the clock alone; otherwise it stores
/// exactly the changes new to the receiver. At the end every clock is set to
/// the latest time any of them read, and a full exchange between all pairs
/// runs until nothing changes, which takes at most 3 rounds; then all
/// replicas hold identical records and conflicts, equal to the model over
/// every synced change (the greatest (stamp, origin, seq) wins, `seen` is the
/// greatest `base`, and the conflicts are the losers stamped after it) and to
/// [`merge_all`]; each local-only collection holds its own replica's writes
/// alone; and each feed holds each change once.
pub fn converge(data: &[u8]) {
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

// ---------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------

/// A small deterministic generator (SplitMix64) for the seeds.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Meaningful starting inputs for the target `name`, each with a label:
/// real encoded protocol frames for `decode_frame`, and for the others
/// schedules that exercise each kind of step (ties, duplicates, forgeries,
/// refusals, clock moves, partial and repeated deliveries), plus a few
/// pseudo-random ones. Empty for an unknown name.
///
/// The committed corpus under `fuzz/corpus/<name>/` is these, written by
/// `cargo test --features testing --test fuzz_corpus -- --ignored`.
pub fn seed_corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let mut seeds = match name {
        "decode_frame" => frame_seeds(),
        "apply_changes" => apply_seeds(),
        "converge" => converge_seeds(),
        _ => return Vec::new(),
    };
    let mut rng = SplitMix(name.len() as u64);
    for i in 0..8 {
        let len = 8 + (rng.next() % 120) as usize;
        seeds.push((format!("random-{i}"), rng.bytes(len)));
    }
    seeds
}

fn sample_change(seq: u64, op: Op) -> Change {
    Change {
        id: ChangeId {
            origin: replica_id(0),
            seq,
        },
        collection: "todos".into(),
        key: Key::from(format!("key-{seq}")),
        stamp: Stamp::new(T0 + seq, seq as u16),
        base: Stamp::ZERO,
        op,
    }
}

fn nested(depth: usize) -> Value {
    let mut v = Value::Null;
    for _ in 1..depth {
        v = Value::List(vec![v]);
    }
    v
}

fn frame_seeds() -> Vec<(String, Vec<u8>)> {
    let values = vec![
        Value::Null,
        Value::Bool(true),
        Value::Int(i64::MIN),
        Value::Float(f64::NAN),
        Value::Float(-0.0),
        Value::String("héllo".into()),
        Value::Bytes(vec![0, 1, 0xff]),
        Value::List(vec![Value::Int(1), Value::String("x".into())]),
        Value::Map(BTreeMap::from([
            ("title".to_string(), Value::String("buy milk".into())),
            ("done".to_string(), Value::Bool(false)),
            ("tags".to_string(), Value::List(vec![Value::Null])),
        ])),
    ];
    let mut changes: Vec<Change> = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| sample_change(i as u64 + 1, Op::Put(v)))
        .collect();
    changes.push(sample_change(20, Op::Delete));
    changes.push(sample_change(
        21,
        Op::Patch(BTreeMap::from([("done".to_string(), Value::Bool(true))])),
    ));
    changes.push(sample_change(
        22,
        Op::Automerge(vec![0x85, 0x6f, 0x4a, 0x83]),
    ));
    changes[1].base = changes[0].stamp;
    let spec = |name: &str, policy: MergePolicy| CollectionSpec {
        name: name.into(),
        policy,
    };
    let specs = vec![
        spec("todos", MergePolicy::Lww),
        spec("notes", MergePolicy::FieldLww),
        spec(
            "ranked",
            MergePolicy::Ranked(Ranks::hub_wins(replica_id(2)).with(replica_id(0), -1)),
        ),
        spec("custom", MergePolicy::Custom("max-wins".into())),
        spec("docs", MergePolicy::Automerge),
    ];
    let request = |token: Option<&str>, body: RequestBody| Request {
        version: PROTOCOL_VERSION,
        from: replica_id(1),
        token: token.map(String::from),
        body,
    };
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |label: &str, bytes: Vec<u8>| seeds.push((label.to_string(), bytes));

    add(
        "hello",
        protocol::encode(&request(
            Some("secret"),
            RequestBody::Hello {
                clock: Stamp::new(T0, 3),
                collections: specs.clone(),
            },
        )),
    );
    add(
        "hello-no-token",
        protocol::encode(&request(
            None,
            RequestBody::Hello {
                clock: Stamp::ZERO,
                collections: vec![],
            },
        )),
    );
    add(
        "pull",
        protocol::encode(&request(
            Some("t"),
            RequestBody::Pull {
                after: 12_345,
                limit: 1000,
                collections: vec!["todos".into(), "notes".into()],
            },
        )),
    );
    add(
        "pull-max",
        protocol::encode(&request(
            None,
            RequestBody::Pull {
                after: u64::MAX,
                limit: u32::MAX,
                collections: vec![],
            },
        )),
    );
    add(
        "push",
        protocol::encode(&request(
            Some("t"),
            RequestBody::Push(Batch::new(changes.clone(), 42)),
        )),
    );
    add(
        "push-one",
        protocol::encode(&request(
            None,
            RequestBody::Push(Batch::new(vec![changes[2].clone()], 1)),
        )),
    );
    let mut bad_digest = Batch::new(changes[..3].to_vec(), 3);
    bad_digest.digest[0] ^= 1;
    add(
        "push-bad-digest",
        protocol::encode(&request(None, RequestBody::Push(bad_digest))),
    );
    for (label, depth) in [("push-depth-64", 64), ("push-depth-65", 65)] {
        let deep = sample_change(1, Op::Put(nested(depth)));
        add(
            label,
            protocol::encode(&request(None, RequestBody::Push(Batch::new(vec![deep], 1)))),
        );
    }
    add(
        "subscribe",
        protocol::encode(&request(None, RequestBody::Subscribe { after: 7 })),
    );
    let mut future = request(None, RequestBody::Subscribe { after: 0 });
    future.version = PROTOCOL_VERSION + 1;
    add("version-2", protocol::encode(&future));

    add(
        "welcome",
        protocol::encode(&Response::Welcome {
            replica: replica_id(2),
            clock: Stamp::new(T0, 0),
            collections: specs,
            last_lsn: 99,
        }),
    );
    add(
        "changes",
        protocol::encode(&Response::Changes {
            batch: Batch::new(changes[..5].to_vec(), 5),
            has_more: true,
        }),
    );
    add(
        "changes-empty",
        protocol::encode(&Response::Changes {
            batch: Batch::new(vec![], 0),
            has_more: false,
        }),
    );
    add(
        "ack",
        protocol::encode(&Response::Ack {
            through: 42,
            applied: 11,
        }),
    );
    for (i, code) in [
        RefusalCode::Version,
        RefusalCode::Unauthenticated,
        RefusalCode::Forbidden,
        RefusalCode::CollectionMismatch,
        RefusalCode::ClockDrift,
        RefusalCode::BadRequest,
        RefusalCode::ServerError,
    ]
    .into_iter()
    .enumerate()
    {
        add(
            &format!("refused-{i}"),
            protocol::encode(&Response::Refused(Refusal::new(code, "no"))),
        );
    }
    for (label, lsn) in [("notify-0", 0), ("notify-1", 1), ("notify-max", u64::MAX)] {
        add(label, protocol::encode(&Notify { last_lsn: lsn }));
    }
    // Hostile frames: a length of about 4 GB, a truncated push, nothing.
    add("huge-length", vec![0x26, 0xfc, 0x6f, 0x30, 0x2f, 0xfd]);
    let mut truncated = protocol::encode(&request(
        None,
        RequestBody::Push(Batch::new(changes[..2].to_vec(), 2)),
    ));
    truncated.pop();
    add("push-truncated", truncated);
    add("empty", vec![]);
    seeds
}

/// A new change made on top of nothing (base zero).
fn fresh(origin: u8, collection: u8, key: u8, stamp: u8, op: u8) -> ApplyStep {
    fresh_on(origin, collection, key, stamp, op, 0)
}

fn fresh_on(origin: u8, collection: u8, key: u8, stamp: u8, op: u8, base: u8) -> ApplyStep {
    ApplyStep::Fresh {
        origin,
        collection,
        key,
        stamp,
        op,
        base,
    }
}

fn apply_seeds() -> Vec<(String, Vec<u8>)> {
    use ApplyStep::{Cut, Duplicate, Forge, SameSlot, Time};
    let scenarios: Vec<(&str, Vec<ApplyStep>)> = vec![
        (
            "one-batch",
            vec![
                fresh(0, 0, 0, 0, 8),
                fresh(1, 1, 1, 5, 16),
                fresh(2, 0, 2, 9, 7),
            ],
        ),
        (
            "ties",
            vec![
                fresh(0, 0, 0, 4, 8),
                fresh(1, 0, 0, 4, 16),
                Cut { source: 0 },
                fresh(2, 0, 0, 4, 24),
                Cut { source: 2 },
            ],
        ),
        (
            "delete-wins",
            vec![
                fresh(0, 0, 1, 1, 8),
                fresh(1, 0, 1, 6, 7),
                Cut { source: 3 },
                fresh(2, 0, 1, 3, 40),
            ],
        ),
        (
            "replay",
            vec![
                fresh(0, 0, 0, 0, 8),
                fresh(1, 1, 0, 1, 16),
                Cut { source: 0 },
                Duplicate { of: 0 },
                Duplicate { of: 1 },
                Duplicate { of: 1 },
            ],
        ),
        (
            "forged-later",
            vec![
                fresh(0, 0, 0, 0, 8),
                Cut { source: 0 },
                Forge { of: 0, how: 0 },
                Cut { source: 0 },
                Forge { of: 0, how: 1 },
                Cut { source: 0 },
                Forge { of: 0, how: 2 },
                Cut { source: 0 },
                Forge { of: 0, how: 3 },
                Cut { source: 0 },
                Forge { of: 0, how: 4 },
            ],
        ),
        (
            "conflicts-then-seen",
            vec![
                fresh(0, 0, 0, 0, 8),
                fresh(1, 0, 0, 1, 16),
                Cut { source: 0 },
                fresh(0, 0, 0, 2, 7),
                Cut { source: 0 },
                // Made on top of the newest stamp: clears the conflicts.
                fresh_on(2, 0, 0, 8, 24, 0x1f),
                Cut { source: 0 },
                // An old change arriving late is no conflict either.
                fresh(1, 0, 0, 3, 32),
            ],
        ),
        (
            "base-ahead",
            vec![
                // A base at the change's own stamp is fine...
                fresh_on(0, 1, 1, 0, 8, 0x1f),
                fresh(1, 1, 1, 5, 16),
                Cut { source: 0 },
                // ...one after it is refused.
                fresh_on(2, 1, 1, 4, 24, 0xf1),
            ],
        ),
        (
            "forged-same-batch",
            vec![fresh(1, 0, 2, 8, 8), Forge { of: 0, how: 0 }],
        ),
        (
            "same-slot",
            vec![
                fresh(0, 1, 3, 12, 8),
                Cut { source: 0 },
                SameSlot { of: 0, op: 16 },
                Cut { source: 0 },
                fresh(0, 1, 3, 13, 8),
            ],
        ),
        (
            "unknown-and-local",
            vec![
                fresh(0, 0, 0, 0, 8),
                fresh(1, 31, 0, 0, 8),
                Cut { source: 0 },
                fresh(0, 30, 0, 0, 8),
                Cut { source: 0 },
                fresh(0, 0, 0, 2, 8),
            ],
        ),
        (
            "invalid",
            vec![
                fresh(0xfc, 0, 0, 0, 8),
                Cut { source: 0 },
                fresh(0, 0, 31, 0, 8),
                Cut { source: 0 },
                fresh(0, 0, 0, 0, 8),
            ],
        ),
        (
            "drift-bound",
            vec![
                fresh(0, 0, 0, 0xf0, 8),
                Cut { source: 0 },
                fresh(1, 0, 0, 0xf1, 16),
                Cut { source: 0 },
                Time { by: 10 },
                Duplicate { of: 1 },
                Cut { source: 0 },
                fresh(2, 1, 0, 0xff, 8),
            ],
        ),
        (
            "clock-back",
            vec![
                Time { by: 128 + 100 },
                fresh(0, 0, 0, 0, 8),
                Cut { source: 0 },
                Time { by: 100 },
                Duplicate { of: 0 },
            ],
        ),
        (
            "own-changes",
            vec![
                fresh(2, 0, 0, 0, 8),
                fresh(2, 0, 1, 1, 8),
                fresh(2, 0, 2, 2, 8),
                Cut { source: 2 },
            ],
        ),
        (
            "duplicate-last",
            vec![
                fresh(0, 0, 0, 0, 8),
                Cut { source: 0 },
                fresh(1, 0, 1, 0, 8),
                Duplicate { of: 0 },
            ],
        ),
    ];
    let mut seeds: Vec<(String, Vec<u8>)> = scenarios
        .into_iter()
        .map(|(label, steps)| (label.to_string(), ApplyStep::encode(&steps)))
        .collect();
    // Longer mixes, weighted towards new changes and cuts.
    let mut rng = SplitMix(7);
    for i in 0..8 {
        let steps: Vec<ApplyStep> = (0..24 + rng.next() % 40)
            .map(|_| {
                let r = rng.bytes(6);
                match rng.next() % 10 {
                    0..=4 => fresh_on(r[0] % 3, r[1] % 30, r[2] % 4, r[3] % 0xf0, r[4], r[5]),
                    5 => Duplicate { of: r[0] },
                    6 => Forge {
                        of: r[0],
                        how: r[1],
                    },
                    7 => SameSlot { of: r[0], op: r[1] },
                    8 => Cut { source: r[0] },
                    _ => Time { by: r[0] % 8 },
                }
            })
            .collect();
        seeds.push((format!("mix-{i}"), ApplyStep::encode(&steps)));
    }
    seeds
}

fn converge_seeds() -> Vec<(String, Vec<u8>)> {
    use ConvergeStep::{Deliver, DeliverAll, Time, Write};
    let w = |replica: u8, c: u8, k: u8, v: u8| Write {
        replica,
        writes: vec![(c, k, v)],
    };
    let deliver = |pair: u8, mode: u8, at: u8, limit: u8| Deliver {
        pair,
        mode,
        at,
        limit,
    };
    let scenarios: Vec<(&str, [u8; 3], Vec<ConvergeStep>)> = vec![
        (
            "write-each-then-sync",
            [128; 3],
            vec![w(0, 0, 0, 4), w(1, 0, 0, 8), w(2, 2, 1, 12)],
        ),
        (
            "concurrent-same-key",
            [128, 130, 126],
            vec![
                w(0, 0, 0, 4),
                w(1, 0, 0, 8),
                w(2, 0, 0, 3),
                DeliverAll { pair: 0 },
                w(1, 0, 0, 16),
            ],
        ),
        (
            "delete-after-seeing",
            [128; 3],
            vec![
                w(0, 0, 1, 4),
                DeliverAll { pair: 0 },
                w(1, 0, 1, 3),
                DeliverAll { pair: 1 },
            ],
        ),
        (
            "transactions-partial",
            [100, 128, 160],
            vec![
                Write {
                    replica: 0,
                    writes: vec![(0, 0, 4), (2, 1, 8)],
                },
                Write {
                    replica: 0,
                    writes: vec![(0, 2, 4), (4, 1, 8)],
                },
                deliver(0, 0, 0, 0),
                deliver(0, 0, 0, 0),
                deliver(0, 2, 0, 7),
                deliver(0, 3, 1, 0),
            ],
        ),
        (
            "clock-steps-back",
            [128; 3],
            vec![
                w(0, 0, 0, 4),
                Time {
                    replica: 0,
                    by: 128 + 90,
                },
                w(0, 0, 0, 8),
                DeliverAll { pair: 0 },
                w(1, 0, 0, 12),
            ],
        ),
        (
            "drift-refused",
            [0, 128, 255],
            vec![
                w(2, 0, 0, 4),
                DeliverAll { pair: 2 },
                DeliverAll { pair: 5 },
                Time {
                    replica: 0,
                    by: 127,
                },
                DeliverAll { pair: 2 },
            ],
        ),
        (
            "relay-chain",
            [128; 3],
            vec![
                w(0, 0, 0, 4),
                DeliverAll { pair: 0 },
                w(1, 2, 1, 8),
                DeliverAll { pair: 1 },
                deliver(2, 0, 0, 7),
                deliver(2, 2, 0, 7),
            ],
        ),
        (
            "local-only",
            [128; 3],
            vec![w(0, 4, 0, 4), w(1, 4, 0, 8), DeliverAll { pair: 0 }],
        ),
    ];
    let mut seeds: Vec<(String, Vec<u8>)> = scenarios
        .into_iter()
        .map(|(label, skews, steps)| (label.to_string(), ConvergeStep::encode(skews, &steps)))
        .collect();
    let mut rng = SplitMix(11);
    for i in 0..8 {
        let skews = [
            118 + (rng.next() % 20) as u8,
            118 + (rng.next() % 20) as u8,
            118 + (rng.next() % 20) as u8,
        ];
        let steps: Vec<ConvergeStep> = (0..16 + rng.next() % 48)
            .map(|_| {
                let r = rng.bytes(7);
                match rng.next() % 10 {
                    0..=3 => w(r[0], r[1], r[2], r[3]),
                    4 => Write {
                        replica: r[0],
                        writes: vec![(r[1], r[2], r[3]), (r[4], r[5], r[6])],
                    },
                    5 => Time {
                        replica: r[0],
                        by: r[1] % 4 + if r[2].is_multiple_of(2) { 0 } else { 128 },
                    },
                    6..=8 => deliver(r[0], r[1], r[2], r[3]),
                    _ => DeliverAll { pair: r[0] },
                }
            })
            .collect();
        seeds.push((format!("mix-{i}"), ConvergeStep::encode(skews, &steps)));
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_through_their_encoding() {
        for (_, bytes) in apply_seeds() {
            let steps = ApplyStep::parse(&bytes);
            assert_eq!(ApplyStep::encode(&steps), bytes);
        }
        for (_, bytes) in converge_seeds() {
            let (skews, steps) = ConvergeStep::parse(&bytes);
            assert_eq!(ConvergeStep::encode(skews, &steps), bytes);
        }
    }
}
