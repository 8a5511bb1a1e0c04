//! Replication over the loopback transport, on real redb files: a hub with
//! clients, a mesh, a chain, kills and restarts.

mod common;

use std::time::Duration;

use common::{converged, eventually, open_node, open_node_on, quick_sync, states};
use syncline::transport::Limits;
use syncline::transport::loopback::LoopbackNetwork;
use syncline::{ManualTime, Replica, Status, SyncEngine, SyncServer, Value};

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
async fn hub_and_three_clients_converge_after_offline_writes() {
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(7);
    // One manual clock for all, stepped between clients, so that which
    // offline write is later is decided by the test, not by timing.
    let time = ManualTime::new(common::T0);
    let hub = open_node_on(dir.path(), "hub", 100, Some(&time)).await;
    let _server = serve(&net, "hub", &hub);
    let names = ["c1", "c2", "c3"];
    let mut clients = Vec::new();
    for (i, name) in names.iter().enumerate() {
        net.set_online(name, false);
        clients.push(open_node_on(dir.path(), name, i as u8 + 1, Some(&time)).await);
    }
    let engines: Vec<SyncEngine> = clients
        .iter()
        .zip(names)
        .enumerate()
        .map(|(i, (c, name))| {
            SyncEngine::start(c.clone(), net.connector(name, "hub"), quick_sync(i as u64))
        })
        .collect();

    // Everyone writes while cut off: own keys, a shared key, and deletes.
    for (i, c) in clients.iter().enumerate() {
        time.advance(Duration::from_millis(1));
        let todos = c.collection("todos").unwrap();
        for k in 0..20 {
            todos.put(format!("c{i}-{k}"), k as i64).unwrap();
        }
        todos.put("shared", format!("from c{i}").as_str()).unwrap();
        todos.delete(format!("c{}-0", (i + 1) % 3)).unwrap();
    }
    hub.collection("todos")
        .unwrap()
        .put("from-hub", 1i64)
        .unwrap();
    for e in &engines {
        assert_ne!(
            *e.status().borrow(),
            Status::Idle,
            "offline clients are not idle"
        );
    }

    for name in names {
        net.set_online(name, true);
    }
    let all: Vec<&Replica> = std::iter::once(&hub).chain(clients.iter()).collect();
    eventually(&all, WAIT, "all four replicas converge", || {
        converged(&all, "todos")
    })
    .await;

    let final_states = states(&hub, "todos");
    // 60 own keys + shared + from-hub. Clients wrote in order c0, c1, c2:
    // c2's delete of c0-0 came after c0's put and wins; c0's delete of c1-0
    // and c1's of c2-0 came before those puts and lose.
    assert_eq!(final_states.len(), 62);
    let tombstones: Vec<String> = final_states
        .iter()
        .filter(|(_, s)| s.is_tombstone())
        .map(|(k, _)| k.to_string())
        .collect();
    assert_eq!(tombstones, ["c0-0"]);
    assert_eq!(
        hub.collection("todos").unwrap().get("shared").unwrap(),
        Some(Value::from("from c2")),
        "the last offline write wins"
    );
    for e in &engines {
        let mut status = e.status();
        tokio::time::timeout(WAIT, status.wait_for(|s| *s == Status::Idle))
            .await
            .unwrap()
            .unwrap();
        let stats = e.stats();
        assert!(stats.pushed >= 22, "{stats:?}");
        assert!(stats.pulled >= 40, "{stats:?}");
        assert_eq!(stats.last_error, None);
    }

    // Live: a write on c1 reaches c2 through the subscription, with polling off.
    clients[0]
        .collection("todos")
        .unwrap()
        .put("live", "now")
        .unwrap();
    eventually(&[&clients[1]], WAIT, "the live write reaches c2", || {
        clients[1].collection("todos").unwrap().get("live").unwrap() == Some(Value::from("now"))
    })
    .await;
    for e in engines {
        e.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_mesh_of_four_peers_converges() {
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(11);
    let mut peers = Vec::new();
    let mut servers = Vec::new();
    for i in 0..4u8 {
        let r = open_node(dir.path(), &format!("n{i}"), i + 1).await;
        servers.push(serve(&net, &format!("n{i}"), &r));
        peers.push(r);
    }
    let mut engines = Vec::new();
    for i in 0..4 {
        for j in 0..4 {
            if i != j {
                engines.push(SyncEngine::start(
                    peers[i].clone(),
                    net.connector(&format!("n{i}"), &format!("n{j}")),
                    quick_sync((i * 4 + j) as u64),
                ));
            }
        }
    }
    for (i, p) in peers.iter().enumerate() {
        let mut txn = p.transaction();
        for k in 0..10 {
            txn.put("todos", format!("n{i}-{k}"), k as i64);
        }
        txn.put("todos", "contended", i as i64);
        txn.commit().unwrap();
    }
    let all: Vec<&Replica> = peers.iter().collect();
    eventually(&all, WAIT, "the mesh converges", || {
        converged(&all, "todos") && states(&peers[0], "todos").len() == 41
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_carries_writes_through_the_middle() {
    // A -> B -> C: A syncs with B only, B with C only.
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(13);
    let a = open_node(dir.path(), "a", 1).await;
    let b = open_node(dir.path(), "b", 2).await;
    let c = open_node(dir.path(), "c", 3).await;
    let _sb = serve(&net, "b", &b);
    let _sc = serve(&net, "c", &c);
    let _ab = SyncEngine::start(a.clone(), net.connector("a", "b"), quick_sync(1));
    let _bc = SyncEngine::start(b.clone(), net.connector("b", "c"), quick_sync(2));

    a.collection("todos")
        .unwrap()
        .put("from-a", "hello")
        .unwrap();
    c.collection("todos")
        .unwrap()
        .put("from-c", "world")
        .unwrap();
    eventually(
        &[&a, &b, &c],
        WAIT,
        "writes cross the chain both ways",
        || {
            c.collection("todos")
                .unwrap()
                .get("from-a")
                .unwrap()
                .is_some()
                && a.collection("todos")
                    .unwrap()
                    .get("from-c")
                    .unwrap()
                    .is_some()
        },
    )
    .await;
    eventually(&[&a, &b, &c], WAIT, "the chain converges", || {
        converged(&[&a, &b, &c], "todos")
    })
    .await;
    // The local-only collection never left A.
    for r in [&b, &c] {
        assert!(
            r.feed_after(0, usize::MAX)
                .unwrap()
                .iter()
                .all(|e| e.change.collection != "drafts")
        );
    }
    // B relayed A's change: C got it with A as origin, not re-stamped.
    let history = c.collection("todos").unwrap().history("from-a").unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].id.origin, a.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_client_and_hub_mid_sync_loses_nothing_and_applies_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(17);
    let mut hub = open_node(dir.path(), "hub", 100).await;
    let mut client = open_node(dir.path(), "c1", 1).await;
    {
        let todos = client.collection("todos").unwrap();
        for chunk in 0..20 {
            let mut txn = client.transaction();
            for k in 0..50 {
                txn.put("todos", format!("k{}", chunk * 50 + k), k as i64);
            }
            txn.commit().unwrap();
        }
        drop(todos);
    }
    let small_batches = || syncline::SyncConfig {
        batch_size: 50,
        ..quick_sync(3)
    };

    // Round 1: kill the client after its first acknowledged batch.
    let server = serve(&net, "hub", &hub);
    let engine = SyncEngine::start(client.clone(), net.connector("c1", "hub"), small_batches());
    let mut events = engine.events();
    loop {
        match tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            syncline::SyncEvent::Pushed { .. } => break,
            _ => continue,
        }
    }
    engine.stop().await;
    drop(client);
    client = open_node(dir.path(), "c1", 1).await;
    let acked = client.peer_state(hub.id()).unwrap().pushed;
    assert!(
        acked >= 50 && acked < 1000,
        "stopped mid-sync, acked {acked}"
    );

    // Round 2: kill the hub after it has applied part of the rest.
    let engine = SyncEngine::start(client.clone(), net.connector("c1", "hub"), small_batches());
    let mut hub_watch = hub.watch();
    while hub.last_lsn() < acked + 100 {
        tokio::time::timeout(WAIT, hub_watch.recv())
            .await
            .unwrap()
            .unwrap();
    }
    server.shutdown().await;
    drop(hub_watch);
    drop(hub);
    hub = open_node(dir.path(), "hub", 100).await;
    let _server = serve(&net, "hub", &hub);

    eventually(&[&hub, &client], WAIT, "sync resumes and completes", || {
        converged(&[&hub, &client], "todos") && states(&hub, "todos").len() == 1000
    })
    .await;
    // Nothing applied twice: the hub's feed holds each of the client's
    // 1,000 changes exactly once.
    let feed = hub.feed_after(0, usize::MAX).unwrap();
    assert_eq!(feed.len(), 1000);
    let mut ids: Vec<_> = feed.iter().map(|e| e.change.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000);
    engine.stop().await;
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
