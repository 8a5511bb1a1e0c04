//! Partial replication: one tenant of a hub that holds 1,000 tenants of
//! 1,000 records each, against a hub that holds that tenant alone.
//!
//! For each hub: a fresh client on a redb file asks for the tenant's scope
//! (`SyncConfig::scopes`, engine defaults otherwise, over the in-process
//! loopback transport) and its initial sync is timed until `wait_synced`
//! returns; then, with that engine live (subscribed), one write at the hub
//! is timed until it is committed at the client, 200 times.
//!
//! Run with `cargo bench --bench scopes` (`SYNCLINE_SCOPE_TENANTS` changes
//! the 1,000 tenants).

use std::path::Path;
use std::time::{Duration, Instant};

use syncline::transport::Limits;
use syncline::transport::loopback::LoopbackNetwork;
use syncline::{
    CollectionConfig, Collections, Direction, Permissions, Replica, ReplicaConfig, Scope,
    SyncConfig, SyncEngine, SyncServer, Tokens, Value,
};

const RECORDS: usize = 1_000;
const SYNCS: usize = 5;
const WRITES: usize = 200;

fn open(path: &Path) -> Replica {
    let r = Replica::open(path, ReplicaConfig::default()).unwrap();
    r.define_collection("notes", CollectionConfig::default())
        .unwrap();
    r
}

fn note(t: usize, i: usize) -> Value {
    Value::String(format!(
        "note {i} of workspace {t}: buy milk, call the plumber"
    ))
}

/// Fills `hub` with `tenants` (numbered from `first`), each one transaction
/// of [`RECORDS`] records.
fn fill(hub: &Replica, tenants: std::ops::Range<usize>) {
    for t in tenants {
        let mut txn = hub.transaction();
        for i in 0..RECORDS {
            txn.put("notes", format!("ws/{t}/n{i:04}"), note(t, i));
        }
        txn.commit().unwrap();
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn p99(v: &mut [Duration]) -> Duration {
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// Times the initial sync of tenant `t` of `hub` (median of [`SYNCS`]
/// fresh clients), then the delivery of one write to a live client
/// (median and p99 of [`WRITES`]).
async fn measure(
    hub: &Replica,
    t: usize,
    dir: &Path,
    label: &str,
) -> (Duration, Duration, Duration) {
    let net = LoopbackNetwork::new(1);
    let _server = net
        .serve(
            "hub",
            SyncServer::new(hub.clone()).into_service(),
            Limits::default(),
        )
        .unwrap();
    let scope = Scope::prefix("notes", format!("ws/{t}/"));
    let mut syncs = Vec::new();
    let mut live = None;
    for n in 0..SYNCS {
        let client = open(&dir.join(format!("{label}-client-{n}.redb")));
        let started = Instant::now();
        let engine = SyncEngine::start(
            client.clone(),
            net.connector("client", "hub"),
            SyncConfig::default().with_scopes([scope.clone()]),
        );
        engine.wait_synced(Duration::from_secs(600)).await.unwrap();
        syncs.push(started.elapsed());
        assert_eq!(
            client.collection("notes").unwrap().len().unwrap(),
            RECORDS as u64
        );
        if n + 1 == SYNCS {
            live = Some((client, engine));
        } else {
            engine.stop().await;
        }
    }
    let (client, engine) = live.unwrap();
    let mut watch = client.collection("notes").unwrap().watch();
    let mut deliveries = Vec::new();
    for w in 0..WRITES {
        let key = format!("ws/{t}/live{w}");
        let started = Instant::now();
        hub.collection("notes")
            .unwrap()
            .put(key.as_str(), w as i64)
            .unwrap();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(60), watch.recv())
                .await
                .expect("the write arrives")
                .expect("no lag");
            if event.change.key.as_str() == Some(key.as_str()) {
                break;
            }
        }
        deliveries.push(started.elapsed());
    }
    engine.stop().await;
    (
        median(&mut syncs),
        median(&mut deliveries.clone()),
        p99(&mut deliveries),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let tenants: usize = std::env::var("SYNCLINE_SCOPE_TENANTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    let dir = tempfile::tempdir().unwrap();
    let t = tenants / 2;

    let alone = open(&dir.path().join("alone.redb"));
    fill(&alone, t..t + 1);
    let (sync_alone, p50_alone, p99_alone) = measure(&alone, t, dir.path(), "alone").await;

    let started = Instant::now();
    let big = open(&dir.path().join("big.redb"));
    fill(&big, 0..tenants);
    println!(
        "filled a hub with {tenants} tenants x {RECORDS} records in {:.1?}",
        started.elapsed()
    );
    let (sync_big, p50_big, p99_big) = measure(&big, t, dir.path(), "big").await;

    println!();
    println!(
        "| one tenant of {RECORDS} records | hub with that tenant alone | hub with {tenants} tenants | ratio |"
    );
    println!("| --- | ---: | ---: | ---: |");
    let row = |name: &str, a: Duration, b: Duration| {
        println!(
            "| {name} | {:.2?} | {:.2?} | {:.2}x |",
            a,
            b,
            b.as_secs_f64() / a.as_secs_f64()
        );
    };
    row(
        "initial sync (median of 5 fresh clients)",
        sync_alone,
        sync_big,
    );
    row("one write delivered, median of 200", p50_alone, p50_big);
    row("one write delivered, p99 of 200", p99_alone, p99_big);

    // Extra row: an engine that asks for no scope, under a grant of the
    // tenant alone. The server filters the whole feed by the grant.
    let unscoped = |hub: Replica, label: &'static str| {
        let dir = dir.path().to_owned();
        async move {
            let net = LoopbackNetwork::new(2);
            let access = Tokens::new().with_token(
                "t",
                "tenant",
                Permissions {
                    read: Collections::scopes([Scope::prefix("notes", format!("ws/{t}/"))]),
                    write: Collections::none(),
                },
            );
            let _server = net
                .serve(
                    "hub",
                    SyncServer::new(hub).with_access(access).into_service(),
                    Limits::default(),
                )
                .unwrap();
            let client = open(&dir.join(format!("{label}-unscoped.redb")));
            let started = Instant::now();
            let engine = SyncEngine::start(
                client.clone(),
                net.connector("client", "hub"),
                SyncConfig {
                    direction: Direction::Pull,
                    ..SyncConfig::default().with_token("t")
                },
            );
            engine.wait_synced(Duration::from_secs(600)).await.unwrap();
            let took = started.elapsed();
            assert!(client.collection("notes").unwrap().len().unwrap() >= RECORDS as u64);
            engine.stop().await;
            took
        }
    };
    let a = unscoped(alone.clone(), "alone").await;
    let b = unscoped(big.clone(), "big").await;
    row(
        "extra: initial sync without scopes, under a grant of the tenant",
        a,
        b,
    );
}
