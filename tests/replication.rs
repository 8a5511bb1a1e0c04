//! Replication under the loopback transport's faults, on real redb files.
//! The scenarios that run over every transport (hub, mesh, chain, kills,
//! refusals) are in `transports.rs`.

mod common;

use std::time::Duration;

use common::{converged, eventually, open_node, quick_sync, states};
use syncline::transport::Limits;
use syncline::transport::loopback::LoopbackNetwork;
use syncline::{Replica, SyncEngine, SyncServer, Value};

const WAIT: Duration = Duration::from_secs(30);

fn serve(
    net: &LoopbackNetwork,
    name: &str,
    replica: &Replica,
) -> syncline::transport::loopback::LoopbackServer {
    net.serve(
        name,
        SyncServer::new(replica.clone()).into_service(),
        Limits::default(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_duplicating_reordering_network_still_converges() {
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(23);
    net.set_faults(
        syncline::transport::loopback::Faults::none()
            .with_latency(Duration::ZERO, Duration::from_millis(2))
            .with_drop_rate(0.15)
            .with_duplicate_rate(0.2)
            .with_reorder(true),
    );
    let hub = open_node(dir.path(), "hub", 100).await;
    let _server = serve(&net, "hub", &hub);
    let mut clients = Vec::new();
    let mut engines = Vec::new();
    for i in 0..3u8 {
        let c = open_node(dir.path(), &format!("c{i}"), i + 1).await;
        let config = syncline::SyncConfig {
            batch_size: 7,
            poll_interval: Some(Duration::from_millis(50)),
            ..quick_sync(u64::from(i))
        };
        engines.push(SyncEngine::start(
            c.clone(),
            net.connector(&format!("c{i}"), "hub"),
            config,
        ));
        clients.push(c);
    }
    for round in 0..5 {
        for (i, c) in clients.iter().enumerate() {
            let mut txn = c.transaction();
            for k in 0..6 {
                txn.put("todos", format!("c{i}-{round}-{k}"), k as i64);
            }
            txn.put("todos", "contended", format!("c{i} round {round}").as_str());
            txn.commit().unwrap();
            if round % 2 == 1 {
                c.collection("todos")
                    .unwrap()
                    .delete(format!("c{i}-0-0"))
                    .unwrap();
            }
        }
    }
    let all: Vec<&Replica> = std::iter::once(&hub).chain(clients.iter()).collect();
    eventually(
        &all,
        WAIT,
        "convergence despite drops, duplicates and reordering",
        || converged(&all, "todos") && states(&hub, "todos").len() == 3 * 5 * 6 + 1,
    )
    .await;
    let stats = net.stats();
    assert!(
        stats.frames_dropped > 0 && stats.frames_duplicated > 0,
        "faults happened: {stats:?}"
    );
    // Every change is stored once on the hub, however often it was delivered.
    let feed = hub.feed_after(0, usize::MAX).unwrap();
    let mut ids: Vec<_> = feed.iter().map(|e| e.change.id).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_stay_under_the_frame_limit_by_bytes() {
    // 40 records of 100 KiB each through frames of at most 1 MiB.
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(29);
    let hub = open_node(dir.path(), "hub", 100).await;
    let limits = Limits::default().with_max_frame_len(1 << 20);
    let server_config = syncline::ServerConfig {
        max_pull_bytes: 512 << 10,
        ..Default::default()
    };
    let _server = net
        .serve(
            "hub",
            SyncServer::new(hub.clone())
                .with_config(server_config)
                .into_service(),
            limits,
        )
        .unwrap();
    let config = || syncline::SyncConfig {
        on_demand: true,
        max_batch_bytes: 512 << 10,
        ..quick_sync(5)
    };
    let a = open_node(dir.path(), "a", 1).await;
    let b = open_node(dir.path(), "b", 2).await;
    for i in 0..40u8 {
        a.collection("todos")
            .unwrap()
            .put(format!("big{i}"), Value::Bytes(vec![i; 100 << 10]))
            .unwrap();
    }
    let ea = SyncEngine::start(
        a.clone(),
        net.connector_with_limits("a", "hub", limits),
        config(),
    );
    let eb = SyncEngine::start(
        b.clone(),
        net.connector_with_limits("b", "hub", limits),
        config(),
    );
    assert_eq!(ea.sync_now().await.unwrap().pushed, 40);
    assert_eq!(eb.sync_now().await.unwrap().pulled, 40);
    assert!(converged(&[&a, &b, &hub], "todos"));
}
