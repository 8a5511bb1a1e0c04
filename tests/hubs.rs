//! Hubs that scale out, over loopback: hubs are replicas that peer with
//! each other through the same engine, and clients fail over among them
//! (`syncline::Failover`) when their hub is unreachable. Seeded runs with
//! partitions between hubs and hubs going down: once everything heals,
//! every hub and every client holds the last-writer-wins fold of every
//! write made.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{open_node, quick_sync};
use rand::{Rng, SeedableRng};
use syncline::transport::Limits;
use syncline::transport::loopback::LoopbackNetwork;
use syncline::{
    Failover, Key, Replica, ReplicaId, Scan, Stamp, SyncConfig, SyncEngine, SyncServer, Value,
};

fn values(r: &Replica) -> BTreeMap<Key, Value> {
    r.collection("todos")
        .unwrap()
        .scan(Scan::all())
        .unwrap()
        .into_iter()
        .collect()
}

/// Syncs once; a connection a cut killed fails once, and the next round
/// reconnects.
async fn settle(engine: &SyncEngine, seed: u64) {
    let mut last = None;
    for _ in 0..3 {
        match engine.sync_now().await {
            Ok(_) => return,
            Err(e) => last = Some(e),
        }
    }
    panic!("seed {seed}: {last:?}");
}

async fn run(seed: u64, hubs: usize, clients: usize, steps: usize) {
    assert!(hubs <= 5 && clients <= 200, "replica ids are one byte");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(seed);
    let hub_name = |h: usize| format!("hub{h}");
    let mut hub_replicas = Vec::new();
    let mut servers = Vec::new();
    for h in 0..hubs {
        // Replica ids: hubs 250 and up, clients 1 to 200.
        let r = open_node(dir.path(), &hub_name(h), 250 + h as u8).await;
        servers.push(
            net.serve(
                &hub_name(h),
                SyncServer::new(r.clone()).into_service(),
                Limits::default(),
            )
            .unwrap(),
        );
        hub_replicas.push(r);
    }
    // Hubs peer in a mesh: one automatic engine per pair.
    let mut hub_engines = Vec::new();
    for (a, replica) in hub_replicas.iter().enumerate() {
        for b in a + 1..hubs {
            hub_engines.push(SyncEngine::start(
                replica.clone(),
                net.connector(&hub_name(a), &hub_name(b)),
                quick_sync(seed ^ (a * 16 + b) as u64),
            ));
        }
    }
    let mut engines = Vec::new();
    for c in 0..clients {
        let name = format!("c{c}");
        let r = open_node(dir.path(), &name, c as u8 + 1).await;
        // Each client prefers its own hub, then the others in turn.
        let first = c % hubs;
        let connectors = (0..hubs)
            .map(|k| net.connector(&name, &hub_name((first + k) % hubs)))
            .collect();
        let engine = SyncEngine::start(
            r.clone(),
            Arc::new(Failover::new(connectors)),
            SyncConfig {
                on_demand: true,
                ..quick_sync(seed + c as u64)
            },
        );
        engines.push((r, engine));
    }
    let mut model: BTreeMap<Key, (Stamp, ReplicaId, Option<i64>)> = BTreeMap::new();
    let mut offline = vec![false; hubs];
    for _ in 0..steps {
        match rng.random_range(0..10) {
            0..=4 => {
                let c = rng.random_range(0..clients);
                let key = Key::from(format!("k{}", rng.random_range(0..12)));
                let value = (!rng.random_bool(0.2)).then(|| rng.random_range(0..1000));
                let todos = engines[c].0.collection("todos").unwrap();
                let written = match value {
                    Some(v) => todos.put(key.clone(), v).unwrap(),
                    None => todos.delete(key.clone()).unwrap(),
                };
                let entry = (written.stamp, written.id.origin, value);
                let e = model.entry(key).or_insert(entry);
                if (entry.0, entry.1) > (e.0, e.1) {
                    *e = entry;
                }
            }
            5..=7 => {
                let c = rng.random_range(0..clients);
                // Fails only when every hub is out of reach.
                let _ = engines[c].1.sync_now().await;
            }
            8 => {
                let (a, b) = (rng.random_range(0..hubs), rng.random_range(0..hubs));
                if a != b {
                    net.partition(&hub_name(a), &hub_name(b));
                }
            }
            _ => {
                let h = rng.random_range(0..hubs);
                let down = rng.random_bool(0.5);
                // Never every hub down at once.
                if !down || offline.iter().filter(|o| !**o).count() > 1 {
                    offline[h] = down;
                    net.set_online(&hub_name(h), !down);
                }
            }
        }
    }
    net.heal_all();
    // Every client pushes what it has, the hubs settle among themselves,
    // then every client pulls.
    for (_, engine) in &engines {
        settle(engine, seed).await;
    }
    for engine in &hub_engines {
        engine
            .wait_synced(Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: hubs settle: {e}"));
    }
    for engine in &hub_engines {
        engine.wait_synced(Duration::from_secs(60)).await.unwrap();
    }
    for (_, engine) in &engines {
        settle(engine, seed).await;
    }
    let model_newest = model
        .values()
        .map(|(stamp, _, _)| *stamp)
        .max()
        .unwrap_or(Stamp::ZERO);
    let folded: BTreeMap<Key, Value> = model
        .into_iter()
        .filter_map(|(k, (_, _, v))| v.map(|v| (k, Value::Int(v))))
        .collect();
    for (h, r) in hub_replicas.iter().enumerate() {
        assert_eq!(values(r), folded, "seed {seed}: hub {h}");
    }
    // Beyond values: every replica holds the same states (versions,
    // tombstones and conflicts), verifies clean, and no clock ran back.
    let all: Vec<&Replica> = hub_replicas
        .iter()
        .chain(engines.iter().map(|(r, _)| r))
        .collect();
    assert!(
        common::converged(&all, "todos"),
        "seed {seed}: states differ"
    );
    let newest = model_newest;
    for r in &all {
        let report = r.verify().unwrap();
        assert!(report.is_clean(), "seed {seed}: {report:?}");
        assert!(
            r.clock() >= newest,
            "seed {seed}: a clock behind a write it holds"
        );
    }
    for (c, (r, engine)) in engines.into_iter().enumerate() {
        assert_eq!(values(&r), folded, "seed {seed}: client {c}");
        engine.stop().await;
    }
    for engine in hub_engines {
        engine.stop().await;
    }
}

/// 4 hubs in a mesh and 200 clients (`SYNCLINE_HUB_CLIENTS`), over 5
/// seeds (`SYNCLINE_HUB_SEEDS`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_fail_over_among_hubs_that_peer_and_everything_converges() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let clients = env("SYNCLINE_HUB_CLIENTS", 200);
    for seed in 0..env("SYNCLINE_HUB_SEEDS", 5) as u64 {
        run(seed, 4, clients, 150).await;
    }
}

/// A client that fails over to a hub it never synced with starts there
/// from what its old hub proved it holds (the old hub's relayed cursor of
/// the new one), not from nothing; without that, it downloads everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_failing_over_resumes_from_what_its_old_hub_relayed() {
    for relay in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let net = LoopbackNetwork::new(7);
        let a = open_node(dir.path(), "a", 250).await;
        let b = open_node(dir.path(), "b", 251).await;
        let _servers = [
            net.serve(
                "a",
                SyncServer::new(a.clone()).into_service(),
                Limits::default(),
            )
            .unwrap(),
            net.serve(
                "b",
                SyncServer::new(b.clone()).into_service(),
                Limits::default(),
            )
            .unwrap(),
        ];
        let mut txn = a.transaction();
        for i in 0..1_000 {
            txn.put("todos", format!("k{i:04}"), Value::Int(i));
        }
        txn.commit().unwrap();
        // The hubs peer: a's engine pushes to b and pulls from it.
        let peering = SyncEngine::start(a.clone(), net.connector("a", "b"), quick_sync(1));
        peering.wait_synced(Duration::from_secs(60)).await.unwrap();
        assert_eq!(values(&b).len(), 1_000);

        let client = open_node(dir.path(), "client", 1).await;
        let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Counts the changes the pull answers carry.
        let counting = |to: &str| {
            let pulled = pulled.clone();
            common::inspect::inspected(
                net.connector("client", to),
                Arc::new(move |_, answer| {
                    use syncline::protocol::Response;
                    if let Ok(Response::Changes { batch, .. } | Response::Part { batch, .. }) =
                        syncline::protocol::decode::<Response>(answer)
                    {
                        pulled.fetch_add(batch.changes.len(), std::sync::atomic::Ordering::Relaxed);
                    }
                }),
            )
        };
        let engine = SyncEngine::start(
            client.clone(),
            Arc::new(Failover::new(vec![counting("a"), counting("b")])),
            SyncConfig {
                on_demand: true,
                relay_interval: relay.then_some(Duration::ZERO),
                ..quick_sync(2)
            },
        );
        engine.sync_now().await.unwrap();
        assert_eq!(values(&client).len(), 1_000);
        assert_eq!(engine.remote(), Some(a.id()));

        // Hub a goes away; b has everything, and one more record.
        net.set_online("a", false);
        b.collection("todos").unwrap().put("from-b", 1i64).unwrap();
        let before = pulled.load(std::sync::atomic::Ordering::Relaxed);
        settle(&engine, 0).await;
        assert_eq!(engine.remote(), Some(b.id()), "failed over to b");
        assert_eq!(values(&client), values(&b));
        let after = pulled.load(std::sync::atomic::Ordering::Relaxed) - before;
        if relay {
            assert!(
                after <= 1,
                "resumed where a had pulled b: {after} changes pulled"
            );
        } else {
            assert!(after >= 1_000, "a bootstrap from b: {after} changes pulled");
        }
        engine.stop().await;
        peering.stop().await;
    }
}
