//! Tombstone collection with a horizon, end to end: a client that stayed
//! away longer than the horizon is told to resync, bootstraps again from
//! the hub's current state, and writes its unpushed changes again on top;
//! nothing collected comes back.

mod common;

use std::time::Duration;

use common::{open_node_on, quick_sync};
use syncline::transport::Limits;
use syncline::transport::loopback::{LoopbackNetwork, LoopbackServer};
use syncline::{Key, ManualTime, SyncConfig, SyncEngine, SyncEvent, SyncServer, Value};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A hub on a manual clock, served on a loopback network of its own (the
/// server's defaults: a 30-day horizon).
async fn serving_hub(
    dir: &std::path::Path,
    time: &ManualTime,
    seed: u64,
) -> (LoopbackNetwork, syncline::Replica, LoopbackServer) {
    let net = LoopbackNetwork::new(seed);
    let hub = open_node_on(dir, "hub", 100, Some(time)).await;
    let server = net
        .serve(
            "hub",
            SyncServer::new(hub.clone()).into_service(),
            Limits::default(),
        )
        .unwrap();
    (net, hub, server)
}

fn on_demand() -> SyncConfig {
    SyncConfig {
        on_demand: true,
        live: false,
        ..quick_sync(3)
    }
}

#[tokio::test]
async fn a_client_behind_the_horizon_resyncs_and_keeps_its_unpushed_writes() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualTime::new(common::T0);
    let (net, hub, _server) = serving_hub(dir.path(), &time, 11).await;
    let todos = hub.collection("todos").unwrap();
    for i in 0..5 {
        todos.put(format!("k{i}"), i).unwrap();
    }
    let client = open_node_on(dir.path(), "client", 1, Some(&time)).await;
    let engine = SyncEngine::start(client.clone(), net.connector("client", "hub"), on_demand());
    let mut events = engine.events();
    engine.sync_now().await.unwrap();
    let mine = client.collection("todos").unwrap();
    assert_eq!(mine.get("k0").unwrap(), Some(Value::Int(0)));

    // Offline: the client writes; the hub deletes three records.
    time.advance(Duration::from_secs(1));
    mine.put("mine", "offline").unwrap();
    mine.put("k4", "edited offline").unwrap();
    for i in 0..3 {
        todos.delete(format!("k{i}")).unwrap();
    }
    // A month later the hub collects tombstones older than 30 days.
    time.advance(31 * DAY);
    assert_eq!(hub.collect_tombstones(30 * DAY).unwrap(), 3);

    // The client's next round: its push carries writes older than the
    // horizon, the hub says resync; it bootstraps again and goes on.
    let report = engine.sync_now().await.unwrap();
    assert_eq!(report.pushed, 2, "the two writes, written again");
    let mut reapplied = None;
    while let Ok(event) = events.try_recv() {
        if let SyncEvent::Resynced { reapplied: r } = event {
            reapplied = Some(r);
        }
    }
    let mut reapplied = reapplied.expect("a Resynced event");
    reapplied.sort();
    assert_eq!(
        reapplied,
        [
            ("todos".to_string(), Key::from("k4")),
            ("todos".to_string(), Key::from("mine")),
        ]
    );
    // Both hold the hub's current state with the client's writes on top;
    // the records deleted and collected are gone everywhere.
    let scan = |r: &syncline::Replica| {
        r.collection("todos")
            .unwrap()
            .scan(syncline::Scan::all())
            .unwrap()
    };
    assert_eq!(scan(&client), scan(&hub));
    assert_eq!(
        scan(&hub),
        [
            (Key::from("k3"), Value::Int(3)),
            (Key::from("k4"), Value::from("edited offline")),
            (Key::from("mine"), Value::from("offline")),
        ]
    );
    // A second round is quiet.
    let report = engine.sync_now().await.unwrap();
    assert_eq!((report.pushed, report.pulled), (0, 0));
    engine.stop().await;
}

/// A client with nothing to push, whose pull cursor lies behind the last
/// lsn the hub collected, is refused, bootstraps again, and no longer
/// holds the records deleted (and collected) on the hub.
#[tokio::test]
async fn a_pull_behind_the_horizon_bootstraps_again() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualTime::new(common::T0);
    let (net, hub, _server) = serving_hub(dir.path(), &time, 12).await;
    let todos = hub.collection("todos").unwrap();
    for i in 0..4 {
        todos.put(format!("k{i}"), i).unwrap();
    }
    let client = open_node_on(dir.path(), "reader", 2, Some(&time)).await;
    let engine = SyncEngine::start(client.clone(), net.connector("reader", "hub"), on_demand());
    engine.sync_now().await.unwrap();
    time.advance(Duration::from_secs(1));
    todos.delete("k0").unwrap();
    todos.put("k1", "later").unwrap();
    time.advance(31 * DAY);
    assert_eq!(hub.collect_tombstones(30 * DAY).unwrap(), 1);
    let report = engine.sync_now().await.unwrap();
    assert_eq!(report.pulled, 3, "current state: k1, k2, k3");
    let reader = client.collection("todos").unwrap();
    assert_eq!(
        reader.record("k0").unwrap(),
        None,
        "the delete is not missed"
    );
    assert_eq!(reader.get("k1").unwrap(), Some(Value::from("later")));
    assert_eq!(
        client
            .collection("todos")
            .unwrap()
            .scan(syncline::Scan::all())
            .unwrap(),
        hub.collection("todos")
            .unwrap()
            .scan(syncline::Scan::all())
            .unwrap()
    );
    engine.stop().await;
}

/// A server collects tombstones older than its horizon by itself while it
/// serves (30 days by default), at most once per `collect_every`.
#[tokio::test]
async fn a_server_collects_by_itself_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualTime::new(common::T0);
    let (net, hub, _server) = serving_hub(dir.path(), &time, 13).await;
    let todos = hub.collection("todos").unwrap();
    todos.put("gone", 1).unwrap();
    todos.delete("gone").unwrap();
    todos.put("kept", 2).unwrap();
    let client = open_node_on(dir.path(), "c", 3, Some(&time)).await;
    let engine = SyncEngine::start(client.clone(), net.connector("c", "hub"), on_demand());
    engine.sync_now().await.unwrap();
    // A pass ran with the first exchanges; nothing was old enough.
    assert_eq!(hub.collected().1, 0, "nothing collected yet");
    assert!(
        hub.collection("todos")
            .unwrap()
            .record("gone")
            .unwrap()
            .is_some()
    );
    time.advance(31 * DAY);
    // Any exchange runs the pass (on the blocking pool, after answering).
    engine.sync_now().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while hub.collected().1 == 0 {
        assert!(std::time::Instant::now() < deadline, "no collection ran");
        tokio::task::yield_now().await;
    }
    assert_eq!(
        hub.collection("todos").unwrap().record("gone").unwrap(),
        None
    );
    engine.stop().await;
}
