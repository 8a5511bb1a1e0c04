//! The seed corpus: real frames and hand-written schedules for each target.

use std::collections::BTreeMap;

use crate::protocol::{
    self, Batch, CollectionSpec, Notify, PROTOCOL_VERSION, Request, RequestBody, Response,
};
use crate::{Change, ChangeId, Key, MergePolicy, Op, Ranks, Stamp, Value};

use super::T0;
use super::apply::ApplyStep;
use super::convergence::ConvergeStep;
#[cfg(doc)]
use super::seed_corpus;
use super::setup::replica_id;

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

/// The seeds of [`seed_corpus`] for the target `name`.
pub(super) fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let mut seeds = match name {
        "decode_frame" => frame_seeds(),
        "apply_changes" => apply_seeds(),
        "converge" => converge_seeds(),
        "drive_session" => session_seeds(),
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
    let part = protocol::Part {
        transfer: 42,
        offset: 3,
        last: false,
    };
    add(
        "push-part",
        protocol::encode(&request(
            None,
            RequestBody::PushPart {
                part,
                batch: Batch::new(changes[..2].to_vec(), 42),
            },
        )),
    );
    add(
        "pull-part",
        protocol::encode(&request(
            None,
            RequestBody::PullPart {
                after: 7,
                transfer: 42,
                next: 3,
                collections: vec!["todos".into()],
            },
        )),
    );
    add(
        "staged",
        protocol::encode(&Response::Staged {
            transfer: 42,
            next: 5,
        }),
    );
    add(
        "part",
        protocol::encode(&Response::Part {
            part,
            batch: Batch::new(changes[..2].to_vec(), 42),
            has_more: true,
        }),
    );
    let mut future = request(None, RequestBody::Subscribe { after: 0 });
    future.version = PROTOCOL_VERSION + 1;
    add("version-next", protocol::encode(&future));

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
            refused: vec![protocol::Verdict {
                group: 1,
                code: 403,
                reason: "no".into(),
            }],
        }),
    );
    // A protocol 1 server's refusal, which this build still reads.
    add(
        "refused-v1",
        crate::codec::encode(&(3u32, 0u32, "this server speaks 1".to_string())),
    );
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

pub(super) fn apply_seeds() -> Vec<(String, Vec<u8>)> {
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
        (
            // A change made on top of another supersedes it: the older one is
            // dropped, so a forgery of its slot is merged (and superseded),
            // not refused, and so is the original arriving again.
            "forged-dropped",
            vec![
                fresh(0, 0, 0, 0x08, 8),
                fresh_on(1, 0, 0, 0x0c, 16, 0x11),
                Cut { source: 0 },
                Forge { of: 0, how: 0 },
                Cut { source: 2 },
                Duplicate { of: 0 },
                SameSlot { of: 0, op: 24 },
                Cut { source: 3 },
                Forge { of: 1, how: 0 },
            ],
        ),
        (
            // A loser stamped at its own base raises `seen`: it is kept as
            // the change that set it; another one tying for it changes
            // nothing; a forgery of the kept one is refused.
            "seen-setter",
            vec![
                fresh(0, 1, 2, 0x0c, 8),
                Cut { source: 0 },
                fresh_on(1, 1, 2, 0x08, 16, 0x11),
                Cut { source: 2 },
                fresh_on(0, 1, 2, 0x08, 24, 0x11),
                Cut { source: 0 },
                Forge { of: 1, how: 0 },
                Cut { source: 0 },
                fresh_on(1, 1, 2, 0x0d, 32, 0x19),
            ],
        ),
        (
            // Records' feed entries move to new lsns as they change: the
            // first group is left with markers, then goes.
            "entries-move",
            vec![
                fresh(0, 0, 0, 0, 8),
                fresh(0, 0, 1, 0, 8),
                fresh(0, 0, 2, 0, 8),
                Cut { source: 2 },
                fresh(1, 0, 1, 4, 16),
                Cut { source: 3 },
                fresh(1, 0, 0, 4, 16),
                fresh(1, 0, 2, 4, 16),
                fresh(1, 0, 2, 5, 24),
                Cut { source: 0 },
                Duplicate { of: 1 },
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

pub(super) fn converge_seeds() -> Vec<(String, Vec<u8>)> {
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
        (
            // Only a record's latest change travels: the first write of the
            // transaction is superseded by the second before any delivery.
            "superseded-before-delivery",
            [128; 3],
            vec![
                Write {
                    replica: 0,
                    writes: vec![(0, 0, 4), (0, 0, 8)],
                },
                w(0, 0, 0, 12),
                deliver(0, 0, 0, 0),
                w(1, 0, 0, 16),
                deliver(1, 0, 0, 7),
            ],
        ),
        (
            // Entries move while a peer reads the feed a change at a time.
            "entries-move-under-a-reader",
            [128; 3],
            vec![
                Write {
                    replica: 1,
                    writes: vec![(0, 0, 4), (0, 1, 4)],
                },
                w(1, 2, 2, 4),
                deliver(1, 0, 0, 0),
                w(1, 0, 0, 8),
                deliver(1, 0, 0, 0),
                deliver(1, 0, 0, 0),
                deliver(1, 2, 0, 0),
                w(1, 0, 1, 8),
                deliver(1, 0, 0, 7),
            ],
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

/// Seeds of the session target: answers that mostly succeed (choice bytes
/// of 7 and up are answers, not failures), then patterns that fail often.
pub(super) fn session_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (label, flags) in [("both", 0u8), ("push", 1), ("pull", 2), ("on-demand", 8)] {
        let mut bytes = vec![flags, 1];
        for i in 0..120u8 {
            bytes.push(1);
            bytes.push(7 + i % 9);
            bytes.push(2 + i % 5);
        }
        out.push((format!("mostly-ok-{label}"), bytes));
    }
    out.push(("zeros".into(), vec![0; 200]));
    out.push(("ones".into(), vec![1; 200]));
    out
}
