//! The workloads on each system.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ROOT, ReadDoc};
use loro::{ExportMode, LoroDoc};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use syncline::protocol::{self, Batch, PROTOCOL_VERSION, Request, RequestBody};
use syncline::transport::Limits;
use syncline::transport::loopback::{LoopbackNetwork, LoopbackServer};
use syncline::{
    Change, CollectionConfig, FeedEntry, Replica, ReplicaConfig, ReplicaId, Scan, SyncConfig,
    SyncEngine, SyncServer, Value,
};
use tokio::runtime::Runtime;
use yrs::updates::decoder::Decode;
use yrs::{Any, Doc, Map, MapRef, Number, ReadTxn, StateVector, Transact, Update};

use crate::{
    DURABLE_CAP, FileSize, HUB_TXN, MAX_BATCH, MERGE_RUNS, N, OVERWRITE_KEYS, OWN_WRITES, Phase,
    Row, WRITERS, Workload, measure,
};

pub const SYNCLINE_DURABLE: &str = "syncline, redb file";
pub const SYNCLINE_MEMORY: &str = "syncline, in-memory redb";
pub const AUTOMERGE: &str = "automerge (AutoCommit map)";
pub const YRS: &str = "yrs (MapRef)";
pub const LORO: &str = "loro (LoroMap)";
pub const REDB: &str = "bare redb file (floor)";

const COLL: &str = "bench";
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bench");

/// The value of the merge target's own `i`th write.
fn own_value(i: u64) -> i64 {
    1_000_000 + i as i64
}

/// How many keys the merged replica holds.
fn expected_keys(w: Workload) -> usize {
    match w {
        Workload::Distinct => N as usize,
        Workload::Overwrite => OVERWRITE_KEYS as usize,
        Workload::ManyWriters => 1,
    }
}

/// Key bytes plus syncline's encoded value bytes of the one more set.
fn payload_one(w: Workload) -> usize {
    w.key(N).len() + protocol::encode(&Value::Int(N as i64)).len()
}

/// Distinct 16-byte ids (and actor ids) from small numbers.
fn id_bytes(id: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&id.to_be_bytes());
    b[15] = 0x5c;
    b
}

fn log(start: &Instant, what: &str) {
    eprintln!("[{:>6.1}s]   {what}", start.elapsed().as_secs_f64());
}

pub fn run_workload(w: Workload, start: &Instant, rt: &Runtime) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut shared = SynclineShared::default();
    log(start, SYNCLINE_MEMORY);
    rows.push(syncline_run(w, false, &mut shared, rt, start));
    log(start, SYNCLINE_DURABLE);
    rows.push(syncline_run(w, true, &mut shared, rt, start));
    drop(shared);
    log(start, AUTOMERGE);
    rows.push(automerge_run(w));
    log(start, YRS);
    rows.push(yrs_run(w));
    log(start, LORO);
    rows.push(loro_run(w));
    log(start, REDB);
    rows.push(redb_run(w));
    rows
}

// ---------------------------------------------------------------- syncline

/// What the in-memory syncline run hands to the durable one.
#[derive(Default)]
struct SynclineShared {
    /// The per-set writer's push frames (the durable per-set run is capped).
    each_frames: Vec<Vec<u8>>,
    each_state: Option<usize>,
    /// The per-set writer itself (in memory), served as a hub to an extra
    /// row of the durable run.
    each_writer: Option<Replica>,
    /// The 1,540 in-memory writers.
    writers: Option<SynclineWriters>,
}

struct SynclineWriters {
    frames: Vec<Vec<u8>>,
    writer0: Replica,
    write: Phase,
    encode: Phase,
    shipped: usize,
}

fn config(id: u64) -> ReplicaConfig {
    ReplicaConfig {
        replica_id: Some(ReplicaId::from_bytes(id_bytes(id))),
        ..ReplicaConfig::default()
    }
}

struct Store {
    dir: tempfile::TempDir,
    durable: bool,
}

impl Store {
    fn new(durable: bool) -> Self {
        Store {
            dir: tempfile::tempdir().expect("tempdir"),
            durable,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.redb"))
    }

    fn open(&self, name: &str, id: u64) -> Replica {
        let r = if self.durable {
            Replica::open(self.path(name), config(id))
        } else {
            Replica::in_memory(config(id))
        }
        .expect("open replica");
        r.define_collection(COLL, CollectionConfig::default())
            .expect("define collection");
        r
    }

    fn size(&self, name: &str) -> Option<FileSize> {
        self.durable.then(|| FileSize::of(&self.path(name)))
    }
}

/// A push request exactly as the engine sends it.
fn push_frame(from: ReplicaId, changes: Vec<Change>, through: u64) -> Vec<u8> {
    protocol::encode(&Request {
        version: PROTOCOL_VERSION,
        from,
        token: None,
        body: RequestBody::Push(Batch::new(changes, through)),
    })
}

/// The feed as push frames of at most `MAX_BATCH` changes, whole groups.
fn frames(from: ReplicaId, entries: Vec<FeedEntry>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut through = 0;
    for e in entries {
        through = e.lsn;
        let end = e.group_end;
        batch.push(e.change);
        if batch.len() == MAX_BATCH {
            assert!(end, "a group crosses a batch boundary");
            out.push(push_frame(from, std::mem::take(&mut batch), through));
        }
    }
    if !batch.is_empty() {
        out.push(push_frame(from, batch, through));
    }
    out
}

/// Decodes a push frame as a server does: version and digest checked.
fn decode_push(frame: &[u8]) -> (ReplicaId, Vec<Change>) {
    let req: Request = protocol::decode(frame).expect("decode");
    assert_eq!(req.version, PROTOCOL_VERSION);
    let RequestBody::Push(batch) = req.body else {
        panic!("not a push")
    };
    assert!(batch.verify(), "digest");
    (req.from, batch.changes)
}

fn apply_frames(b: &Replica, frames: &[Vec<u8>]) {
    for f in frames {
        let (from, changes) = decode_push(f);
        b.apply_remote_from(Some(from), &changes).expect("apply");
    }
}

fn changes_of(r: &Replica) -> Vec<Change> {
    r.feed_after(0, usize::MAX)
        .expect("feed")
        .into_iter()
        .map(|e| e.change)
        .collect()
}

/// Writes the workload's sets in transactions of `per_txn`.
fn syncline_write(r: &Replica, w: Workload, per_txn: u64) {
    let mut i = 0;
    while i < N {
        let mut txn = r.transaction();
        for j in i..(i + per_txn).min(N) {
            txn.put(COLL, w.key(j), Value::Int(j as i64));
        }
        txn.commit().expect("commit");
        i += per_txn;
    }
}

fn syncline_own_writes(b: &Replica, w: Workload) {
    let mut txn = b.transaction();
    for i in 0..OWN_WRITES {
        txn.put(COLL, w.key(i), Value::Int(own_value(i)));
    }
    txn.commit().expect("own writes");
}

fn syncline_check(b: &Replica, w: Workload) {
    let coll = b.collection(COLL).expect("collection");
    let keys = coll.scan(Scan::all()).expect("scan").len();
    assert_eq!(keys, expected_keys(w), "syncline key count");
    let last = N - 1;
    assert_eq!(
        coll.get(w.key(last)).expect("get"),
        Some(Value::Int(last as i64))
    );
}

/// Serves `hub` as `name` on `net`, as a hub serves its clients.
fn serve(rt: &Runtime, net: &LoopbackNetwork, name: &str, hub: &Replica) -> LoopbackServer {
    let _enter = rt.enter();
    net.serve(
        name,
        SyncServer::new(hub.clone()).into_service(),
        Limits::default(),
    )
    .expect("serve")
}

/// How long a merge through the engine may take before the run fails.
const SYNC_TIMEOUT: Duration = Duration::from_secs(3600);

/// Pulls everything the hub `hub` holds into `target` as an app does: a
/// `SyncEngine` with `SyncConfig::default()` over the in-process loopback
/// transport, timed from its start until `wait_synced` returns.
fn engine_pull(
    rt: &Runtime,
    net: &LoopbackNetwork,
    hub: &str,
    client: &str,
    target: &Replica,
) -> Phase {
    let (engine, p) = measure(|| {
        rt.block_on(async {
            let engine = SyncEngine::start(
                target.clone(),
                net.connector(client, hub),
                SyncConfig::default(),
            );
            engine.wait_synced(SYNC_TIMEOUT).await.expect("synced");
            engine
        })
    });
    rt.block_on(engine.stop());
    p
}

/// One more set on `writer`, shipped to `b` as a push; returns the frame size.
fn syncline_one_more(writer: &Replica, b: &Replica, w: Workload) -> (usize, usize) {
    let before = writer.last_lsn();
    writer
        .collection(COLL)
        .expect("collection")
        .put(w.key(N), Value::Int(N as i64))
        .expect("put");
    let entries = writer.feed_after(before, usize::MAX).expect("feed");
    assert_eq!(entries.len(), 1);
    let through = entries[0].lsn;
    let changes: Vec<Change> = entries.into_iter().map(|e| e.change).collect();
    let change_len = protocol::encode(&changes[0]).len();
    let frame = push_frame(writer.id(), changes, through);
    apply_frames(b, std::slice::from_ref(&frame));
    (frame.len(), change_len)
}

fn syncline_run(
    w: Workload,
    durable: bool,
    shared: &mut SynclineShared,
    rt: &Runtime,
    start: &Instant,
) -> Row {
    let store = Store::new(durable);
    let mut row = Row::new(if durable {
        SYNCLINE_DURABLE
    } else {
        SYNCLINE_MEMORY
    });
    row.payload_one = payload_one(w);
    if w == Workload::ManyWriters {
        return syncline_many(&store, row, shared);
    }

    // (a) all sets in transactions of MAX_BATCH.
    let a = store.open("writer", 1);
    let ((), p) = measure(|| syncline_write(&a, w, MAX_BATCH as u64));
    row.write_txn = Some(p);

    // (b) one commit per set.
    let count = if durable { DURABLE_CAP } else { N };
    let a_each = store.open("writer-each", 2);
    let coll = a_each.collection(COLL).expect("collection");
    let ((), p) = measure(|| {
        for i in 0..count {
            coll.put(w.key(i), Value::Int(i as i64)).expect("put");
        }
    });
    row.write_each = Some(p);
    row.each_count = count;
    drop(coll);

    // The full state, as push frames.
    let (_, p) = measure(|| frames(a.id(), a.feed_after(0, usize::MAX).expect("feed")));
    row.encode = Some(p);
    row.state_txn = Some(protocol::encode(&changes_of(&a)).len());
    if !durable {
        shared.each_state = Some(protocol::encode(&changes_of(&a_each)).len());
        shared.each_frames = frames(a_each.id(), a_each.feed_after(0, usize::MAX).expect("feed"));
        shared.each_writer = Some(a_each);
    } else {
        row.notes.push(format!(
            "the per-set writer made {} durable commits; its state size is the in-memory run's (100,000 per-set changes, same encoding)",
            crate::thousands(DURABLE_CAP)
        ));
        drop(a_each);
    }
    row.state_each = shared.each_state;

    // The hub of the main rows, written in transactions of HUB_TXN.
    let hub = store.open("hub", 5);
    syncline_write(&hub, w, HUB_TXN);
    if let Some(size) = store.size("hub") {
        row.disk.push((
            format!(
                "the hub, written in durable transactions of {}",
                crate::thousands(HUB_TXN)
            ),
            size,
        ));
    }
    let net = LoopbackNetwork::new(1);
    let mut servers = vec![serve(rt, &net, "hub", &hub), serve(rt, &net, "hub-10k", &a)];

    // Main: the engine, with its defaults, fills an empty replica.
    let mut kept = None;
    let mut runs = Vec::new();
    for i in 0..MERGE_RUNS {
        let b = store.open(&format!("pulled-{i}"), 10 + i as u64);
        runs.push(engine_pull(rt, &net, "hub", &format!("client-{i}"), &b));
        syncline_check(&b, w);
        if i == 0 {
            if let Some(size) = store.size("pulled-0") {
                row.disk.insert(
                    0,
                    (
                        "a client after the engine's pull into an empty replica (main merge row)"
                            .to_string(),
                        size,
                    ),
                );
            }
            kept = Some(b);
        }
    }
    let target = if durable {
        "an empty durable replica"
    } else {
        "an empty in-memory replica"
    };
    row.merge(
        true,
        format!(
            "`SyncEngine`, `SyncConfig::default()`, pulling over loopback into {target} from a hub written in transactions of {}",
            crate::thousands(HUB_TXN)
        ),
        runs,
    );
    log(start, "  main merge done");

    if durable {
        let runs = (0..MERGE_RUNS)
            .map(|i| {
                let b = store.open(&format!("pulled-10k-{i}"), 20 + i as u64);
                let p = engine_pull(rt, &net, "hub-10k", &format!("client-10k-{i}"), &b);
                syncline_check(&b, w);
                p
            })
            .collect();
        row.merge(
            false,
            format!(
                "the same engine pull from a hub written in transactions of {} (a pulled batch carries one whole transaction)",
                crate::thousands(MAX_BATCH as u64)
            ),
            runs,
        );

        let each_writer = shared.each_writer.as_ref().expect("per-set writer");
        servers.push(serve(rt, &net, "hub-each", each_writer));
        let runs = (0..MERGE_RUNS)
            .map(|i| {
                let b = store.open(&format!("pulled-each-{i}"), 30 + i as u64);
                let p = engine_pull(rt, &net, "hub-each", &format!("client-each-{i}"), &b);
                syncline_check(&b, w);
                p
            })
            .collect();
        row.merge(
            false,
            "the same engine pull from a hub written one commit per set (an in-memory hub, the in-memory row's per-set writer)",
            runs,
        );

        // The earlier setup, kept as a labelled extra row.
        let runs = (0..MERGE_RUNS)
            .map(|i| {
                let name = format!("applied-{i}");
                let b2 = store.open(&name, 40 + i as u64);
                syncline_own_writes(&b2, w);
                let ((), p) = measure(|| apply_frames(&b2, &shared.each_frames));
                syncline_check_own(&b2, w);
                if i == 0
                    && let Some(size) = store.size(&name)
                {
                    row.disk.push((
                        format!(
                            "*extra:* a target holding {} own writes after `apply_remote` in batches of {}",
                            crate::thousands(OWN_WRITES),
                            crate::thousands(MAX_BATCH as u64)
                        ),
                        size,
                    ));
                }
                p
            })
            .collect();
        row.merge(
            false,
            format!(
                "the earlier setup: the per-set writer's push frames decoded and verified, then `apply_remote` in batches of {} into a durable replica holding {} conflicting writes",
                crate::thousands(MAX_BATCH as u64),
                crate::thousands(OWN_WRITES)
            ),
            runs,
        );
    }
    for server in servers {
        rt.block_on(server.shutdown());
    }

    let b = kept.expect("main target");
    row.merged_state = Some(protocol::encode(&changes_of(&b)).len());
    let ((wire, change), p) = measure(|| syncline_one_more(&hub, &b, w));
    row.one_more = Some(p);
    row.wire_one = Some(wire);
    row.change_one = Some(change);
    row
}

/// [`syncline_check`] for a target whose own writes may win (the earlier
/// setup's target wrote later than the writer for its first keys).
fn syncline_check_own(b: &Replica, w: Workload) {
    let coll = b.collection(COLL).expect("collection");
    let keys = coll.scan(Scan::all()).expect("scan").len();
    assert_eq!(keys, expected_keys(w), "syncline key count");
}

fn syncline_many(store: &Store, mut row: Row, shared: &mut SynclineShared) -> Row {
    let w = Workload::ManyWriters;
    if shared.writers.is_none() {
        let mut out_frames = Vec::with_capacity(WRITERS as usize);
        let mut write_ms = 0.0;
        let mut encode_ms = 0.0;
        let mut shipped = 0;
        let mut writer0 = None;
        let ((), p) = measure(|| {
            for i in 0..WRITERS {
                let r = Replica::in_memory(config(100 + i)).expect("replica");
                r.define_collection(COLL, CollectionConfig::default())
                    .expect("define");
                let coll = r.collection(COLL).expect("collection");
                let t = Instant::now();
                coll.put("k", Value::Int(i as i64)).expect("put");
                write_ms += t.elapsed().as_secs_f64() * 1e3;
                let t = Instant::now();
                let frame = frames(r.id(), r.feed_after(0, usize::MAX).expect("feed"))
                    .pop()
                    .expect("one frame");
                encode_ms += t.elapsed().as_secs_f64() * 1e3;
                shipped += protocol::encode(&changes_of(&r)).len();
                out_frames.push(frame);
                if i == 0 {
                    writer0 = Some(r);
                }
            }
        });
        shared.writers = Some(SynclineWriters {
            frames: out_frames,
            writer0: writer0.expect("writer 0"),
            write: Phase {
                ms: write_ms,
                heap: p.heap,
            },
            encode: Phase {
                ms: encode_ms,
                heap: 0,
            },
            shipped,
        });
        row.notes.push(
            "each writer is its own in-memory replica (one put = one commit); the heap column covers creating them, and all but writer 0 are dropped after encoding".into(),
        );
    } else {
        row.notes.push(
            "the writers are the in-memory replicas of the row above (its write and encode figures); this row merges them into a durable file".into(),
        );
    }
    let writers = shared.writers.as_ref().expect("writers");
    if !store.durable {
        row.write_each = Some(writers.write);
        row.each_count = WRITERS;
        row.encode = Some(writers.encode);
    }
    row.state_each = Some(writers.shipped);

    let b = store.open("merged", 3);
    syncline_own_writes(&b, w);
    let ((), p) = measure(|| {
        let mut changes = Vec::with_capacity(WRITERS as usize);
        for f in &writers.frames {
            changes.extend(decode_push(f).1);
        }
        b.apply_remote(&changes).expect("apply");
    });
    row.merge_many = Some(p);
    syncline_check_own(&b, w);
    row.merged_state = Some(protocol::encode(&changes_of(&b)).len());
    if let Some(size) = store.size("merged") {
        row.disk.push(("merged".into(), size));
    }
    row.notes.push(
        "merge = decode and verify the 1,540 push frames, then one `apply_remote` of their 1,540 changes (one commit)".into(),
    );

    let ((wire, change), p) = measure(|| syncline_one_more(&writers.writer0, &b, w));
    row.one_more = Some(p);
    row.wire_one = Some(wire);
    row.change_one = Some(change);
    row
}

// --------------------------------------------------------------- automerge

fn am_doc(id: u64) -> AutoCommit {
    AutoCommit::new().with_actor(ActorId::from(id_bytes(id)))
}

fn am_own_writes(b: &mut AutoCommit, w: Workload) {
    for i in 0..OWN_WRITES {
        b.put(ROOT, w.key(i), own_value(i)).expect("put");
    }
    b.commit();
}

fn am_check(b: &AutoCommit, w: Workload) {
    assert_eq!(b.length(ROOT), expected_keys(w), "automerge key count");
    if w == Workload::Distinct {
        let (v, _) = b.get(ROOT, "k99999").expect("get").expect("present");
        assert_eq!(v.as_i64(), Some(99_999));
    }
}

fn am_one_more(a: &mut AutoCommit, b: &mut AutoCommit, w: Workload) -> usize {
    let heads = a.get_heads();
    a.put(ROOT, w.key(N), N as i64).expect("put");
    a.commit();
    let bytes = a.save_after(&heads);
    b.load_incremental(&bytes).expect("load");
    bytes.len()
}

fn automerge_run(w: Workload) -> Row {
    let mut row = Row::new(AUTOMERGE);
    row.payload_one = payload_one(w);
    if w == Workload::ManyWriters {
        let mut payloads = Vec::with_capacity(WRITERS as usize);
        let (mut write_ms, mut encode_ms) = (0.0, 0.0);
        let mut writer0 = None;
        let ((), p) = measure(|| {
            for i in 0..WRITERS {
                let mut d = am_doc(100 + i);
                let t = Instant::now();
                d.put(ROOT, "k", i as i64).expect("put");
                d.commit();
                write_ms += t.elapsed().as_secs_f64() * 1e3;
                let t = Instant::now();
                payloads.push(d.save_incremental());
                encode_ms += t.elapsed().as_secs_f64() * 1e3;
                if i == 0 {
                    writer0 = Some(d);
                }
            }
        });
        row.write_each = Some(Phase {
            ms: write_ms,
            heap: p.heap,
        });
        row.each_count = WRITERS;
        row.encode = Some(Phase {
            ms: encode_ms,
            heap: 0,
        });
        row.state_each = Some(payloads.iter().map(Vec::len).sum());
        let mut b = am_doc(3);
        am_own_writes(&mut b, w);
        let ((), p) = measure(|| {
            b.load_incremental(&payloads.concat()).expect("load");
        });
        row.merge_many = Some(p);
        am_check(&b, w);
        row.merged_state = Some(b.save().len());
        let mut a = writer0.expect("writer 0");
        let (wire, p) = measure(|| am_one_more(&mut a, &mut b, w));
        row.one_more = Some(p);
        row.wire_one = Some(wire);
        row.notes.push(
            "writers ship `save_incremental()` (their one change); the merge is one `load_incremental` of all 1,540 concatenated".into(),
        );
        return row;
    }

    let mut a = am_doc(1);
    let ((), p) = measure(|| {
        for i in 0..N {
            a.put(ROOT, w.key(i), i as i64).expect("put");
        }
        a.commit();
    });
    row.write_txn = Some(p);
    let mut a_each = am_doc(2);
    let ((), p) = measure(|| {
        for i in 0..N {
            a_each.put(ROOT, w.key(i), i as i64).expect("put");
            a_each.commit();
        }
    });
    row.write_each = Some(p);
    row.each_count = N;
    let (saved, p) = measure(|| a.save());
    row.encode = Some(p);
    row.state_txn = Some(saved.len());
    let saved_each = a_each.save();
    row.state_each = Some(saved_each.len());
    drop(a);

    let merge = |bytes: &[u8], own: bool, id: u64| {
        let mut b = am_doc(id);
        if own {
            am_own_writes(&mut b, w);
        }
        let ((), p) = measure(|| {
            b.load_incremental(bytes).expect("load");
        });
        am_check(&b, w);
        (b, p)
    };
    let kept = peer_merge_rows(
        &mut row,
        |bytes, own, id| merge(bytes, own, id),
        &saved_each,
        &saved,
        "`load_incremental(save())` of the per-set writer (100,000 changes) into an empty document",
        "the 1-txn writer's `save()` (one change of 100,000 ops) into an empty document",
    );
    drop((saved, saved_each));
    let mut b = kept;
    row.merged_state = Some(b.save().len());
    let (wire, p) = measure(|| am_one_more(&mut a_each, &mut b, w));
    row.one_more = Some(p);
    row.wire_one = Some(wire);
    row.notes.push(
        "state = `save()`; merge = `load_incremental(save())`; one more set = `save_after(heads)` of the per-set writer, into the main merge target".into(),
    );
    row
}

// --------------------------------------------------------------------- yrs

fn yint(i: i64) -> Any {
    Any::Number(Number::Int(i))
}

fn y_doc(id: u64) -> (Doc, MapRef) {
    let d = Doc::with_client_id(id);
    let m = d.get_or_insert_map("m");
    (d, m)
}

fn y_full(d: &Doc) -> Vec<u8> {
    d.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

fn y_apply(b: &Doc, bytes: &[u8]) {
    let u = Update::decode_v1(bytes).expect("decode");
    b.transact_mut().apply_update(u).expect("apply");
}

fn y_own_writes(b: &Doc, m: &MapRef, w: Workload) {
    let mut t = b.transact_mut();
    for i in 0..OWN_WRITES {
        m.insert(&mut t, w.key(i), yint(own_value(i)));
    }
}

fn y_check(b: &Doc, m: &MapRef, w: Workload) {
    let t = b.transact();
    assert_eq!(m.len(&t) as usize, expected_keys(w), "yrs key count");
    if w == Workload::Distinct {
        let v = m.get(&t, "k99999").expect("present");
        assert!(
            matches!(v, yrs::Out::Any(Any::Number(Number::Int(99_999)))),
            "{v:?}"
        );
    }
}

fn y_one_more(a: &Doc, am: &MapRef, b: &Doc, w: Workload) -> usize {
    let sv = a.transact().state_vector();
    {
        let mut t = a.transact_mut();
        am.insert(&mut t, w.key(N), yint(N as i64));
    }
    let bytes = a.transact().encode_state_as_update_v1(&sv);
    y_apply(b, &bytes);
    bytes.len()
}

fn yrs_run(w: Workload) -> Row {
    let mut row = Row::new(YRS);
    row.payload_one = payload_one(w);
    if w == Workload::ManyWriters {
        let mut payloads = Vec::with_capacity(WRITERS as usize);
        let (mut write_ms, mut encode_ms) = (0.0, 0.0);
        let mut writer0 = None;
        let ((), p) = measure(|| {
            for i in 0..WRITERS {
                let (d, m) = y_doc(100 + i);
                let t = Instant::now();
                {
                    let mut txn = d.transact_mut();
                    m.insert(&mut txn, "k", yint(i as i64));
                }
                write_ms += t.elapsed().as_secs_f64() * 1e3;
                let t = Instant::now();
                payloads.push(y_full(&d));
                encode_ms += t.elapsed().as_secs_f64() * 1e3;
                if i == 0 {
                    writer0 = Some((d, m));
                }
            }
        });
        row.write_each = Some(Phase {
            ms: write_ms,
            heap: p.heap,
        });
        row.each_count = WRITERS;
        row.encode = Some(Phase {
            ms: encode_ms,
            heap: 0,
        });
        row.state_each = Some(payloads.iter().map(Vec::len).sum());
        let (b, bm) = y_doc(3);
        y_own_writes(&b, &bm, w);
        let ((), p) = measure(|| {
            let mut t = b.transact_mut();
            for bytes in &payloads {
                t.apply_update(Update::decode_v1(bytes).expect("decode"))
                    .expect("apply");
            }
        });
        row.merge_many = Some(p);
        y_check(&b, &bm, w);
        row.merged_state = Some(y_full(&b).len());
        let (a, am) = writer0.expect("writer 0");
        let (wire, p) = measure(|| y_one_more(&a, &am, &b, w));
        row.one_more = Some(p);
        row.wire_one = Some(wire);
        row.notes.push(
            "writers ship `encode_state_as_update_v1` from an empty state vector; the merge applies all 1,540 in one transaction".into(),
        );
        return row;
    }

    let (a, am) = y_doc(1);
    let ((), p) = measure(|| {
        let mut t = a.transact_mut();
        for i in 0..N {
            am.insert(&mut t, w.key(i), yint(i as i64));
        }
    });
    row.write_txn = Some(p);
    let (a_each, am_each) = y_doc(2);
    let ((), p) = measure(|| {
        for i in 0..N {
            let mut t = a_each.transact_mut();
            am_each.insert(&mut t, w.key(i), yint(i as i64));
        }
    });
    row.write_each = Some(p);
    row.each_count = N;
    let (full, p) = measure(|| y_full(&a));
    row.encode = Some(p);
    row.state_txn = Some(full.len());
    let full_each = y_full(&a_each);
    row.state_each = Some(full_each.len());
    drop((a, am));

    let merge = |bytes: &[u8], own: bool, id: u64| {
        let (b, bm) = y_doc(id);
        if own {
            y_own_writes(&b, &bm, w);
        }
        let ((), p) = measure(|| y_apply(&b, bytes));
        y_check(&b, &bm, w);
        ((b, bm), p)
    };
    let kept = peer_merge_rows(
        &mut row,
        |bytes, own, id| merge(bytes, own, id),
        &full_each,
        &full,
        "decode + `apply_update` of the per-set writer's full update (100,000 transactions) into an empty document",
        "the 1-txn writer's full update into an empty document",
    );
    drop((full, full_each));
    let (b, _) = kept;
    row.merged_state = Some(y_full(&b).len());
    let (wire, p) = measure(|| y_one_more(&a_each, &am_each, &b, w));
    row.one_more = Some(p);
    row.wire_one = Some(wire);
    row.notes.push(
        "state = `encode_state_as_update_v1(empty)`; merge = decode + `apply_update`; one more set = the per-set writer's update since its state vector, into the main merge target".into(),
    );
    row
}

// -------------------------------------------------------------------- loro

fn l_doc(id: u64) -> LoroDoc {
    let d = LoroDoc::new();
    d.set_peer_id(id).expect("peer id");
    d
}

fn l_own_writes(b: &LoroDoc, w: Workload) {
    let m = b.get_map("m");
    for i in 0..OWN_WRITES {
        m.insert(&w.key(i), own_value(i)).expect("insert");
    }
    b.commit();
}

fn l_check(b: &LoroDoc, w: Workload) {
    let m = b.get_map("m");
    assert_eq!(m.len(), expected_keys(w), "loro key count");
    if w == Workload::Distinct {
        let v = m.get("k99999").expect("present");
        let v = v.into_value().expect("a value");
        assert_eq!(v, loro::LoroValue::I64(99_999));
    }
}

fn l_one_more(a: &LoroDoc, b: &LoroDoc, w: Workload) -> usize {
    let vv = a.oplog_vv();
    a.get_map("m").insert(&w.key(N), N as i64).expect("insert");
    a.commit();
    let bytes = a.export(ExportMode::updates(&vv)).expect("export");
    b.import(&bytes).expect("import");
    bytes.len()
}

fn loro_run(w: Workload) -> Row {
    let mut row = Row::new(LORO);
    row.payload_one = payload_one(w);
    if w == Workload::ManyWriters {
        let mut payloads = Vec::with_capacity(WRITERS as usize);
        let (mut write_ms, mut encode_ms) = (0.0, 0.0);
        let mut writer0 = None;
        let ((), p) = measure(|| {
            for i in 0..WRITERS {
                let d = l_doc(100 + i);
                let m = d.get_map("m");
                let t = Instant::now();
                m.insert("k", i as i64).expect("insert");
                d.commit();
                write_ms += t.elapsed().as_secs_f64() * 1e3;
                let t = Instant::now();
                payloads.push(d.export(ExportMode::all_updates()).expect("export"));
                encode_ms += t.elapsed().as_secs_f64() * 1e3;
                if i == 0 {
                    writer0 = Some(d);
                }
            }
        });
        row.write_each = Some(Phase {
            ms: write_ms,
            heap: p.heap,
        });
        row.each_count = WRITERS;
        row.encode = Some(Phase {
            ms: encode_ms,
            heap: 0,
        });
        row.state_each = Some(payloads.iter().map(Vec::len).sum());
        let b = l_doc(3);
        l_own_writes(&b, w);
        let ((), p) = measure(|| {
            b.import_batch(&payloads).expect("import");
        });
        row.merge_many = Some(p);
        l_check(&b, w);
        row.merged_state = Some(b.export(ExportMode::Snapshot).expect("export").len());
        let a = writer0.expect("writer 0");
        let (wire, p) = measure(|| l_one_more(&a, &b, w));
        row.one_more = Some(p);
        row.wire_one = Some(wire);
        row.notes.push(
            "writers ship `export(all_updates)`; the merge is one `import_batch` of all 1,540"
                .into(),
        );
        return row;
    }

    let a = l_doc(1);
    let am = a.get_map("m");
    let ((), p) = measure(|| {
        for i in 0..N {
            am.insert(&w.key(i), i as i64).expect("insert");
        }
        a.commit();
    });
    row.write_txn = Some(p);
    let a_each = l_doc(2);
    let am_each = a_each.get_map("m");
    let ((), p) = measure(|| {
        for i in 0..N {
            am_each.insert(&w.key(i), i as i64).expect("insert");
            a_each.commit();
        }
    });
    row.write_each = Some(p);
    row.each_count = N;
    let (snap, p) = measure(|| a.export(ExportMode::Snapshot).expect("export"));
    row.encode = Some(p);
    row.state_txn = Some(snap.len());
    let snap_each = a_each.export(ExportMode::Snapshot).expect("export");
    row.state_each = Some(snap_each.len());
    drop((am, a, am_each));

    // loro decodes an imported snapshot lazily, when a container is first
    // read: the merge reads the last key, which loads the map's state.
    let merge = |bytes: &[u8], id: u64| {
        let b = l_doc(id);
        let ((), p) = measure(|| {
            b.import(bytes).expect("import");
            assert!(b.get_map("m").get(&w.key(N - 1)).is_some());
        });
        l_check(&b, w);
        (b, p)
    };
    let mut kept = None;
    let mut runs = Vec::new();
    for i in 0..MERGE_RUNS {
        let (b, p) = merge(&snap_each, 3);
        runs.push(p);
        if i == 0 {
            kept = Some(b);
        }
    }
    row.merge(
        true,
        "`import` of the per-set writer's snapshot (100,000 commits) into an empty document, then one read (loro decodes a snapshot lazily: the read loads the map)",
        runs,
    );
    let runs = (0..MERGE_RUNS).map(|_| merge(&snap, 4).1).collect();
    row.merge(
        false,
        "the 1-txn writer's snapshot into an empty document",
        runs,
    );
    drop((snap, snap_each));
    let b = kept.expect("main target");
    row.merged_state = Some(b.export(ExportMode::Snapshot).expect("export").len());
    let (wire, p) = measure(|| l_one_more(&a_each, &b, w));
    row.one_more = Some(p);
    row.wire_one = Some(wire);
    row.notes.push(
        "state = `export(Snapshot)`; merge = `import(snapshot)` and a read of the last key (the snapshot is decoded lazily; the history stays encoded until needed, so the first update imported after it pays for decoding it); one more set = `export(updates(vv))` of the per-set writer, into the main merge target".into(),
    );
    row
}

/// A peer's merge rows: the main one (the per-set writer's state into an
/// empty document, `MERGE_RUNS` times; the first run's target is
/// returned for the checks after), the 1-txn writer's, and the earlier
/// setup (into a document holding `OWN_WRITES` conflicting writes).
fn peer_merge_rows<T>(
    row: &mut Row,
    mut merge: impl FnMut(&[u8], bool, u64) -> (T, Phase),
    each: &[u8],
    one: &[u8],
    main: &str,
    one_txn: &str,
) -> T {
    let mut kept = None;
    let mut runs = Vec::new();
    for i in 0..MERGE_RUNS {
        let (b, p) = merge(each, false, 3);
        runs.push(p);
        if i == 0 {
            kept = Some(b);
        }
    }
    row.merge(true, main, runs);
    let runs = (0..MERGE_RUNS).map(|_| merge(one, false, 4).1).collect();
    row.merge(false, one_txn, runs);
    let runs = (0..MERGE_RUNS).map(|_| merge(each, true, 4).1).collect();
    row.merge(
        false,
        format!(
            "the earlier setup: the per-set writer into a document holding {} conflicting writes",
            crate::thousands(OWN_WRITES)
        ),
        runs,
    );
    kept.expect("main target")
}

// -------------------------------------------------------------- bare redb

fn bare(path: &std::path::Path) -> Database {
    let db = Database::create(path).expect("create");
    let txn = db.begin_write().expect("begin");
    txn.open_table(TABLE).expect("table");
    txn.commit().expect("commit");
    db
}

fn bare_insert(db: &Database, rows: &[(Vec<u8>, Vec<u8>)]) {
    let mut txn = db.begin_write().expect("begin");
    txn.set_durability(Durability::Immediate)
        .expect("durability");
    {
        let mut t = txn.open_table(TABLE).expect("table");
        for (k, v) in rows {
            t.insert(k.as_slice(), v.as_slice()).expect("insert");
        }
    }
    txn.commit().expect("commit");
}

fn bare_count(db: &Database) -> usize {
    let txn = db.begin_read().expect("read");
    let t = txn.open_table(TABLE).expect("table");
    t.len().expect("len") as usize
}

fn row_of(k: String, v: i64) -> (Vec<u8>, Vec<u8>) {
    (k.into_bytes(), v.to_le_bytes().to_vec())
}

fn redb_run(w: Workload) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str| dir.path().join(format!("{name}.redb"));
    let mut row = Row::new(REDB);
    row.payload_one = payload_one(w);
    if w == Workload::ManyWriters {
        let b = bare(&file("merged"));
        bare_insert(&b, &[row_of("k".into(), own_value(0))]);
        let rows: Vec<_> = (0..WRITERS).map(|i| row_of("k".into(), i as i64)).collect();
        let ((), p) = measure(|| bare_insert(&b, &rows));
        row.merge_many = Some(p);
        assert_eq!(bare_count(&b), 1);
        row.state_each = Some(rows.iter().map(|(k, v)| k.len() + v.len()).sum());
        row.merged_state = Some(1 + 8);
        row.disk
            .push(("merged".into(), FileSize::of(&file("merged"))));
        let one = row_of(w.key(N), N as i64);
        let ((), p) = measure(|| bare_insert(&b, std::slice::from_ref(&one)));
        row.one_more = Some(p);
        row.wire_one = Some(one.0.len() + one.1.len());
        row.notes.push(
            "no writers to model: the merge inserts the 1,540 (key, value) rows into one table in one durable transaction; sizes are the raw key + value bytes".into(),
        );
        return row;
    }

    // (a) one durable transaction.
    let a = bare(&file("writer"));
    let ((), p) = measure(|| {
        let mut txn = a.begin_write().expect("begin");
        txn.set_durability(Durability::Immediate)
            .expect("durability");
        {
            let mut t = txn.open_table(TABLE).expect("table");
            for i in 0..N {
                t.insert(w.key(i).as_bytes(), (i as i64).to_le_bytes().as_slice())
                    .expect("insert");
            }
        }
        txn.commit().expect("commit");
    });
    row.write_txn = Some(p);
    let writer_size = FileSize::of(&file("writer"));

    // (b) one durable commit per set, capped.
    {
        let a_each = bare(&file("writer-each"));
        let ((), p) = measure(|| {
            for i in 0..DURABLE_CAP {
                let mut txn = a_each.begin_write().expect("begin");
                txn.set_durability(Durability::Immediate)
                    .expect("durability");
                txn.open_table(TABLE)
                    .expect("table")
                    .insert(w.key(i).as_bytes(), (i as i64).to_le_bytes().as_slice())
                    .expect("insert");
                txn.commit().expect("commit");
            }
        });
        row.write_each = Some(p);
        row.each_count = DURABLE_CAP;
    }

    // The state is the live rows.
    let (live, p) = measure(|| {
        let txn = a.begin_read().expect("read");
        let t = txn.open_table(TABLE).expect("table");
        t.iter()
            .expect("iter")
            .map(|r| {
                let (k, v) = r.expect("row");
                (k.value().to_vec(), v.value().to_vec())
            })
            .collect::<Vec<_>>()
    });
    row.encode = Some(p);
    let live_bytes: usize = live.iter().map(|(k, v)| k.len() + v.len()).sum();
    row.state_txn = Some(live_bytes);

    // Main: the live rows into an empty file, in durable transactions of
    // HUB_TXN (the engine's batch).
    let mut runs = Vec::new();
    for i in 0..MERGE_RUNS {
        let name = format!("merged-{i}");
        let b = bare(&file(&name));
        let ((), p) = measure(|| {
            for chunk in live.chunks(HUB_TXN as usize) {
                bare_insert(&b, chunk);
            }
        });
        assert_eq!(bare_count(&b), expected_keys(w));
        runs.push(p);
        if i == 0 {
            row.disk.push((
                format!(
                    "the same (key, value) pairs inserted in durable transactions of {} into an empty file (main merge row)",
                    crate::thousands(HUB_TXN)
                ),
                FileSize::of(&file(&name)),
            ));
        }
    }
    // The same pairs in the writer's order (as syncline's hub writes them
    // and its client receives them), in durable transactions of HUB_TXN:
    // B-tree pages fill as the insertion order lets them, so this is the
    // like-for-like floor for syncline's files; the sorted one above is the
    // densest bare redb can be.
    {
        let name = "merged-writer-order";
        let b = bare(&file(name));
        let ordered: Vec<(Vec<u8>, Vec<u8>)> = {
            let by_key: std::collections::HashMap<&[u8], &[u8]> = live
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_slice()))
                .collect();
            let mut seen = std::collections::HashSet::new();
            (0..N)
                .rev()
                .map(|i| w.key(i))
                .filter(|k| seen.insert(k.clone()))
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .filter_map(|k| {
                    by_key
                        .get(k.as_bytes())
                        .map(|v| (k.into_bytes(), v.to_vec()))
                })
                .collect()
        };
        for chunk in ordered.chunks(HUB_TXN as usize) {
            bare_insert(&b, chunk);
        }
        assert_eq!(bare_count(&b), expected_keys(w));
        row.disk.insert(
            1,
            (
                format!(
                    "the same pairs in the writer's order (each key at its last write), in durable transactions of {}",
                    crate::thousands(HUB_TXN)
                ),
                FileSize::of(&file(name)),
            ),
        );
    }
    row.merge(
        true,
        format!(
            "the live (key, value) rows inserted into an empty file in durable transactions of {} (no history, no merge rule)",
            crate::thousands(HUB_TXN)
        ),
        runs,
    );
    row.disk.push((
        "all pairs in one durable transaction (the writer)".into(),
        writer_size,
    ));

    let own: Vec<_> = (0..OWN_WRITES)
        .map(|i| row_of(w.key(i), own_value(i)))
        .collect();
    let runs = (0..MERGE_RUNS)
        .map(|i| {
            let b = bare(&file(&format!("merged-own-{i}")));
            bare_insert(&b, &own);
            let ((), p) = measure(|| {
                for chunk in live.chunks(MAX_BATCH) {
                    bare_insert(&b, chunk);
                }
            });
            assert_eq!(bare_count(&b), expected_keys(w));
            p
        })
        .collect();
    row.merge(
        false,
        format!(
            "the earlier setup: durable transactions of {} into a file holding {} own rows",
            crate::thousands(MAX_BATCH as u64),
            crate::thousands(OWN_WRITES)
        ),
        runs,
    );
    row.merged_state = Some(live_bytes);
    let b = bare(&file("merged-one-more"));
    for chunk in live.chunks(HUB_TXN as usize) {
        bare_insert(&b, chunk);
    }
    let one = row_of(w.key(N), N as i64);
    let ((), p) = measure(|| {
        bare_insert(&a, std::slice::from_ref(&one));
        bare_insert(&b, std::slice::from_ref(&one));
    });
    row.one_more = Some(p);
    row.wire_one = Some(one.0.len() + one.1.len());
    row.notes.push(
        "state = the live (key, value) rows, 8-byte values; merge = insert them durably (no history, so no per-set-writer variant); one more set = the raw key + value".into(),
    );
    row
}

// ------------------------------------------------------------------ floor

/// Target (2b): 10,000 puts in one transaction against bare redb.
pub struct Floor {
    pub syncline_10k_ms: f64,
    pub redb_10k_ms: f64,
    pub runs: usize,
    /// Target (4): per round, the mean µs of a durable single put and of a
    /// bare redb single-row durable commit, measured in alternating rounds.
    pub syncline_put_us: Vec<f64>,
    pub redb_commit_us: Vec<f64>,
    pub per_round: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn floor_10k() -> Floor {
    let runs = 5;
    let (mut s, mut r) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let store = Store::new(true);
        let replica = store.open("floor", 1000 + run as u64);
        let ((), p) = measure(|| {
            let mut txn = replica.transaction();
            for i in 0..MAX_BATCH as u64 {
                txn.put(COLL, format!("k{i}"), Value::Int(i as i64));
            }
            txn.commit().expect("commit");
        });
        s.push(p.ms);
        drop(replica);

        let db = bare(&store.path("bare"));
        let ((), p) = measure(|| {
            let mut txn = db.begin_write().expect("begin");
            txn.set_durability(Durability::Immediate)
                .expect("durability");
            {
                let mut t = txn.open_table(TABLE).expect("table");
                for i in 0..MAX_BATCH as u64 {
                    t.insert(
                        format!("k{i}").as_bytes(),
                        (i as i64).to_le_bytes().as_slice(),
                    )
                    .expect("insert");
                }
            }
            txn.commit().expect("commit");
        });
        r.push(p.ms);
    }

    // Single durable puts against single durable commits, one of each in
    // turn, so that both see the same disk (an fsync on a shared disk
    // varies a lot from one second to the next); a round's figure is the
    // mean of its 1,000 of each.
    let (rounds, per_round) = (5u64, 1_000u64);
    let store = Store::new(true);
    let replica = store.open("single", 2000);
    let coll = replica.collection(COLL).expect("collection");
    let db = bare(&store.path("bare-single"));
    let (mut s_us, mut r_us) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (mut s_total, mut r_total) = (Duration::ZERO, Duration::ZERO);
        for i in round * per_round..(round + 1) * per_round {
            let (key, row) = (format!("k{i}"), row_of(format!("k{i}"), i as i64));
            let t = Instant::now();
            coll.put(key, Value::Int(i as i64)).expect("put");
            s_total += t.elapsed();
            let t = Instant::now();
            bare_insert(&db, std::slice::from_ref(&row));
            r_total += t.elapsed();
        }
        s_us.push(s_total.as_secs_f64() * 1e6 / per_round as f64);
        r_us.push(r_total.as_secs_f64() * 1e6 / per_round as f64);
    }
    Floor {
        syncline_10k_ms: median(s),
        redb_10k_ms: median(r),
        runs,
        syncline_put_us: s_us,
        redb_commit_us: r_us,
        per_round,
    }
}
