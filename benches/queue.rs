//! A queue over a simulated month, with tombstone collection off and on:
//! 100,000 items created and each deleted a day later, in transactions of
//! 10, one simulated day at a time. Reports the hub file's allocated bytes
//! and a fresh client's initial sync (bytes on the wire, time, its file),
//! against a hub that only ever held the items live at the end.
//!
//! Run with `cargo bench --bench queue`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use syncline::transport::Limits;
use syncline::transport::loopback::LoopbackNetwork;
use syncline::{
    CollectionConfig, Direction, ManualTime, Replica, ReplicaConfig, SyncConfig, SyncEngine,
    SyncServer, Value,
};

const ITEMS: u64 = 100_000;
const DAYS: u64 = 30;
const DAY: Duration = Duration::from_secs(24 * 3600);
const TXN: u64 = 10;
const T0: u64 = 1_700_000_000_000;

fn open(path: &Path, time: &ManualTime) -> Replica {
    let r = Replica::open(path, ReplicaConfig::default().with_time(time.clone())).unwrap();
    r.define_collection("queue", CollectionConfig::default())
        .unwrap();
    r
}

fn item(i: u64) -> Value {
    Value::String(format!("job {i:0>60}"))
}

fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// Writes the month: each day creates its share of the items and deletes
/// the previous day's; with a horizon, a collection pass runs at the end of
/// each day.
fn month(hub: &Replica, time: &ManualTime, horizon: Option<Duration>) -> u64 {
    let per_day = ITEMS.div_ceil(DAYS);
    let mut live = Vec::new();
    for day in 0..DAYS {
        let created: Vec<u64> = (day * per_day..((day + 1) * per_day).min(ITEMS)).collect();
        for chunk in created.chunks(TXN as usize) {
            let mut txn = hub.transaction();
            for i in chunk {
                txn.put("queue", format!("job-{i}"), item(*i));
            }
            txn.commit().unwrap();
        }
        for chunk in live.chunks(TXN as usize) {
            let mut txn = hub.transaction();
            for i in chunk {
                txn.delete("queue", format!("job-{i}"));
            }
            txn.commit().unwrap();
        }
        live = created;
        time.advance(DAY);
        if let Some(horizon) = horizon {
            hub.collect_tombstones(horizon).unwrap();
        }
    }
    live.len() as u64
}

struct Row {
    what: &'static str,
    hub_bytes: u64,
    sync_bytes: u64,
    sync_ms: f64,
    client_bytes: u64,
    records: u64,
}

async fn measure(what: &'static str, dir: &Path, hub: &Replica, hub_path: &Path) -> Row {
    let net = LoopbackNetwork::new(7);
    let server = net
        .serve(
            "hub",
            SyncServer::new(hub.clone()).into_service(),
            Limits::default(),
        )
        .unwrap();
    let client_path = dir.join(format!("client-{}.redb", what.replace(' ', "-")));
    let client = Replica::open(&client_path, ReplicaConfig::default()).unwrap();
    client
        .define_collection("queue", CollectionConfig::default())
        .unwrap();
    let start = Instant::now();
    let engine = SyncEngine::start(
        client.clone(),
        net.connector("client", "hub"),
        SyncConfig {
            on_demand: true,
            direction: Direction::Pull,
            ..SyncConfig::default()
        },
    );
    engine.sync_now().await.unwrap();
    let sync_ms = start.elapsed().as_secs_f64() * 1000.0;
    engine.stop().await;
    let records = client
        .storage_stats()
        .unwrap()
        .collections
        .get("queue")
        .map_or(0, |c| c.live + c.tombstones);
    drop(client);
    server.shutdown().await;
    Row {
        what,
        hub_bytes: allocated(hub_path),
        sync_bytes: net.stats().bytes_sent,
        sync_ms,
        client_bytes: allocated(&client_path),
        records,
    }
}

fn mb(b: u64) -> String {
    format!("{:.2} MB", b as f64 / 1e6)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    let mut live_count = 0;
    let cases: [(&'static str, Option<Duration>, bool); 4] = [
        ("collection off", None, false),
        ("collection on, 7-day horizon", Some(7 * DAY), false),
        ("collection on, 1-day horizon", Some(DAY), false),
        (
            "collection on, 1-day horizon, file compacted",
            Some(DAY),
            true,
        ),
    ];
    for (i, (what, horizon, compact)) in cases.into_iter().enumerate() {
        let time = ManualTime::new(T0);
        let path = dir.path().join(format!("hub-{i}.redb"));
        let mut hub = open(&path, &time);
        let started = Instant::now();
        live_count = month(&hub, &time, horizon);
        eprintln!(
            "{what}: month written in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        if compact {
            drop(hub);
            Replica::compact_file(&path).unwrap();
            hub = open(&path, &time);
        }
        rows.push(measure(what, dir.path(), &hub, &path).await);
    }
    {
        let time = ManualTime::new(T0);
        let path = dir.path().join("hub-live.redb");
        let hub = open(&path, &time);
        let first = ITEMS - live_count;
        for chunk in (first..ITEMS).collect::<Vec<_>>().chunks(TXN as usize) {
            let mut txn = hub.transaction();
            for i in chunk {
                txn.put("queue", format!("job-{i}"), item(*i));
            }
            txn.commit().unwrap();
        }
        rows.push(measure("live items only (the floor)", dir.path(), &hub, &path).await);
    }
    let floor = rows.last().map(|r| (r.hub_bytes, r.sync_bytes)).unwrap();
    println!(
        "queue: {ITEMS} items over {DAYS} simulated days, each deleted a day after it was made, transactions of {TXN}; {live_count} live at the end"
    );
    println!(
        "| hub | hub file (allocated) | vs floor | a new client's sync: bytes | vs floor | time | records it holds | its file |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {} | {:.2}x | {} | {:.2}x | {:.0} ms | {} | {} |",
            r.what,
            mb(r.hub_bytes),
            r.hub_bytes as f64 / floor.0 as f64,
            mb(r.sync_bytes),
            r.sync_bytes as f64 / floor.1 as f64,
            r.sync_ms,
            r.records,
            mb(r.client_bytes),
        );
    }
}
