//! Sync benchmarks over the loopback transport, on durable redb files.
//!
//! Run with `cargo bench --bench sync`. Before the timed cases it prints the
//! bytes on the wire per changed record for a one-field change.

use std::collections::BTreeMap;
use std::time::Duration;

use divan::Bencher;
use syncline::transport::Limits;
use syncline::transport::loopback::{LoopbackNetwork, LoopbackServer};
use syncline::{
    CollectionConfig, Direction, Replica, ReplicaConfig, Status, SyncConfig, SyncEngine,
    SyncServer, Value,
};
use tokio::runtime::Runtime;

const RECORDS: u64 = 100_000;

fn main() {
    bytes_per_one_field_change();
    divan::main();
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn open(dir: &std::path::Path, name: &str) -> Replica {
    let r = Replica::open(dir.join(format!("{name}.redb")), ReplicaConfig::default()).unwrap();
    r.define_collection("bench", CollectionConfig::default())
        .unwrap();
    r
}

/// A record with a 100-byte value.
fn record(i: u64) -> Value {
    Value::String(format!("{i:0>100}"))
}

/// A hub holding `n` records, serving on `net`.
fn hub_with(dir: &std::path::Path, net: &LoopbackNetwork, n: u64) -> (Replica, LoopbackServer) {
    let hub = open(dir, "hub");
    for chunk in 0..n.div_ceil(10_000) {
        let mut txn = hub.transaction();
        for i in chunk * 10_000..((chunk + 1) * 10_000).min(n) {
            txn.put("bench", format!("k{i}"), record(i));
        }
        txn.commit().unwrap();
    }
    let server = net
        .serve(
            "hub",
            SyncServer::new(hub.clone()).into_service(),
            Limits::default(),
        )
        .unwrap();
    (hub, server)
}

fn on_demand(direction: Direction) -> SyncConfig {
    SyncConfig {
        on_demand: true,
        direction,
        ..SyncConfig::default()
    }
}

/// Initial sync of 100,000 records (100-byte values) from a hub to a new client.
#[divan::bench(sample_count = 3)]
fn initial_sync_100k_records(bencher: Bencher) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(1);
    let (_hub, server) = rt.block_on(async { hub_with(dir.path(), &net, RECORDS) });
    bencher
        .with_inputs(|| tempfile::tempdir().unwrap())
        .bench_local_values(|client_dir| {
            rt.block_on(async {
                let client = open(client_dir.path(), "client");
                let engine = SyncEngine::start(
                    client.clone(),
                    net.connector("client", "hub"),
                    on_demand(Direction::Pull),
                );
                let report = engine.sync_now().await.unwrap();
                assert_eq!(report.pulled as u64, RECORDS);
                engine.stop().await;
            });
            client_dir
        });
    rt.block_on(server.shutdown());
}

/// From a write on one client to its arrival on another, through the hub's
/// subscription.
#[divan::bench(sample_count = 200)]
fn write_to_arrival_via_subscribe(bencher: Bencher) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(2);
    let (_hub, _server, a, b, _engines) = rt.block_on(async {
        let (hub, server) = hub_with(dir.path(), &net, 0);
        let a = open(dir.path(), "a");
        let b = open(dir.path(), "b");
        let live = SyncConfig {
            poll_interval: None,
            ..SyncConfig::default()
        };
        let ea = SyncEngine::start(a.clone(), net.connector("a", "hub"), live.clone());
        let eb = SyncEngine::start(b.clone(), net.connector("b", "hub"), live);
        for e in [&ea, &eb] {
            e.status().wait_for(|s| *s == Status::Idle).await.unwrap();
        }
        (hub, server, a, b, [ea, eb])
    });
    let todos = a.collection("bench").unwrap();
    let mut i = 0u64;
    bencher.bench_local(|| {
        i += 1;
        rt.block_on(async {
            let mut arrivals = b.collection("bench").unwrap().watch();
            todos.put(format!("live{i}"), record(i)).unwrap();
            tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
                .await
                .expect("arrived")
                .unwrap();
        })
    });
}

/// Prints the bytes sent over the wire for one changed field of a
/// 10-field record, pushed to the hub and pulled by another client.
fn bytes_per_one_field_change() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(3);
    rt.block_on(async {
        let (_hub, _server) = hub_with(dir.path(), &net, 0);
        let a = open(dir.path(), "a");
        let b = open(dir.path(), "b");
        let fields: BTreeMap<String, Value> =
            (0..10).map(|f| (format!("field{f}"), Value::String(format!("{f:0>10}")))).collect();
        a.collection("bench").unwrap().put("rec", Value::Map(fields)).unwrap();
        let ea = SyncEngine::start(a.clone(), net.connector("a", "hub"), on_demand(Direction::Both));
        let eb = SyncEngine::start(b.clone(), net.connector("b", "hub"), on_demand(Direction::Both));
        ea.sync_now().await.unwrap();
        eb.sync_now().await.unwrap();

        let before = net.stats();
        let mut patch = BTreeMap::new();
        patch.insert("field3".to_string(), Value::String("changed!!!".into()));
        a.collection("bench").unwrap().patch("rec", patch).unwrap();
        ea.push().await.unwrap();
        let pushed = net.stats();
        eb.pull().await.unwrap();
        let pulled = net.stats();
        let push_bytes = pushed.bytes_sent - before.bytes_sent;
        let pull_bytes = pulled.bytes_sent - pushed.bytes_sent;
        let record_len = syncline::protocol::encode(&b.collection("bench").unwrap().get("rec").unwrap()).len();
        println!(
            "one-field change of a 10-field record ({record_len} bytes encoded): \
             push exchange {push_bytes} bytes, pull exchange {pull_bytes} bytes (request + response)"
        );
    });
}
