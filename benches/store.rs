//! Local store benchmarks, with bare redb doing the same inserts as the floor.
//!
//! Run with `cargo bench --bench store`. Every syncline case has a `redb_*`
//! twin that inserts the same keys and value bytes into one table, so the
//! ratio is the cost of the change log, feed, index and merged record.

use std::sync::atomic::{AtomicU64, Ordering};

use divan::Bencher;
use redb::{Database, Durability, TableDefinition};
use syncline::{Change, CollectionConfig, Replica, ReplicaConfig, Value};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bench");

fn main() {
    divan::main();
}

fn replica(dir: &tempfile::TempDir) -> Replica {
    let r = Replica::open(dir.path().join("r.redb"), ReplicaConfig::default()).unwrap();
    r.define_collection("bench", CollectionConfig::default())
        .unwrap();
    r
}

fn bare(dir: &tempfile::TempDir) -> Database {
    let db = Database::create(dir.path().join("bare.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(TABLE).unwrap();
    txn.commit().unwrap();
    db
}

fn value(i: u64) -> Value {
    Value::String(format!("{i:0>32}"))
}

static NEXT: AtomicU64 = AtomicU64::new(0);

fn next_key() -> String {
    format!("k{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// One put, durably committed.
#[divan::bench(sample_count = 200)]
fn single_put_durable(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let todos = replica(&dir).collection("bench").unwrap();
    bencher.bench_local(|| todos.put(next_key(), value(1)).unwrap());
}

/// Bare redb: one insert, durably committed.
#[divan::bench(sample_count = 200)]
fn redb_single_insert_durable(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let db = bare(&dir);
    let v = format!("{:0>32}", 1);
    bencher.bench_local(|| {
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(Durability::Immediate).unwrap();
        txn.open_table(TABLE)
            .unwrap()
            .insert(next_key().as_bytes(), v.as_bytes())
            .unwrap();
        txn.commit().unwrap();
    });
}

/// 10,000 puts in one transaction.
#[divan::bench(sample_count = 10)]
fn put_10k_in_one_transaction(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let r = replica(&dir);
    bencher.bench_local(|| {
        let mut txn = r.transaction();
        for i in 0..10_000 {
            txn.put("bench", next_key(), value(i));
        }
        txn.commit().unwrap();
    });
}

/// Bare redb: 10,000 inserts in one transaction.
#[divan::bench(sample_count = 10)]
fn redb_insert_10k_in_one_transaction(bencher: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let db = bare(&dir);
    bencher.bench_local(|| {
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(TABLE).unwrap();
            for i in 0..10_000u64 {
                t.insert(next_key().as_bytes(), format!("{i:0>32}").as_bytes())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
    });
}

/// 100,000 changes made elsewhere, over `keys` records, each as made (a
/// watch sees every change; the feed would send current state only).
fn remote_changes_over(keys: u64) -> Vec<Change> {
    let source = Replica::in_memory(ReplicaConfig::default()).unwrap();
    source
        .define_collection("bench", CollectionConfig::default())
        .unwrap();
    let mut watch = source.watch();
    let mut out = Vec::with_capacity(100_000);
    for chunk in 0..100u64 {
        let mut txn = source.transaction();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            txn.put("bench", format!("k{}", i % keys), value(i));
        }
        txn.commit().unwrap();
        while let Some(e) = watch.try_recv().unwrap() {
            out.push(e.change.clone());
        }
    }
    out
}

/// 100,000 changes made elsewhere, each to its own record.
fn remote_changes() -> Vec<Change> {
    remote_changes_over(100_000)
}

/// `apply_remote` of 100,000 changes over 1,000 records (100 each), in
/// batches of 1,000 as made, into a new file: what live sync of a hot data
/// set costs per change (a new replica's pull sends current state only).
#[divan::bench(sample_count = 5)]
fn apply_remote_100k_over_1k_hot_keys_in_batches_of_1k(bencher: Bencher) {
    apply_in_batches_of_1k(bencher, remote_changes_over(1000));
}

/// Applies `changes` with `apply_remote` in batches of 1,000 into a new file.
fn apply_in_batches_of_1k(bencher: Bencher, changes: Vec<Change>) {
    bencher
        .with_inputs(|| tempfile::tempdir().unwrap())
        .bench_local_values(|dir| {
            let r = replica(&dir);
            for batch in changes.chunks(1000) {
                r.apply_remote(batch).unwrap();
            }
            dir
        });
}

/// `apply_remote` of 100,000 changes in batches of 1,000 into a new file.
#[divan::bench(sample_count = 5)]
fn apply_remote_100k_in_batches_of_1k(bencher: Bencher) {
    apply_in_batches_of_1k(bencher, remote_changes());
}

/// Bare redb: 100,000 inserts in transactions of 1,000 into a new file.
#[divan::bench(sample_count = 5)]
fn redb_insert_100k_in_batches_of_1k(bencher: Bencher) {
    let rows: Vec<(String, String)> = (0..100_000u64)
        .map(|i| (format!("k{i}"), format!("{i:0>32}")))
        .collect();
    bencher
        .with_inputs(|| tempfile::tempdir().unwrap())
        .bench_local_values(|dir| {
            let db = bare(&dir);
            for batch in rows.chunks(1000) {
                let mut txn = db.begin_write().unwrap();
                txn.set_durability(Durability::Immediate).unwrap();
                {
                    let mut t = txn.open_table(TABLE).unwrap();
                    for (k, v) in batch {
                        t.insert(k.as_bytes(), v.as_bytes()).unwrap();
                    }
                }
                txn.commit().unwrap();
            }
            dir
        });
}

/// One put on redb's in-memory backend: the store's own cost, without fsync.
#[divan::bench(sample_count = 200)]
fn single_put_in_memory(bencher: Bencher) {
    let r = Replica::in_memory(ReplicaConfig::default()).unwrap();
    let todos = r
        .define_collection("bench", CollectionConfig::default())
        .unwrap();
    bencher.bench_local(|| todos.put(next_key(), value(1)).unwrap());
}

/// Bare redb: one insert committed on the in-memory backend.
#[divan::bench(sample_count = 200)]
fn redb_single_insert_in_memory(bencher: Bencher) {
    let db = Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .unwrap();
    let v = format!("{:0>32}", 1);
    bencher.bench_local(|| {
        let txn = db.begin_write().unwrap();
        txn.open_table(TABLE)
            .unwrap()
            .insert(next_key().as_bytes(), v.as_bytes())
            .unwrap();
        txn.commit().unwrap();
    });
}
