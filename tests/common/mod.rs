//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod inspect;
pub mod nets;

use std::time::Duration;

use syncline::{CollectionConfig, ManualTime, Replica, ReplicaConfig, ReplicaId};

/// A replica in memory on a manual clock reading `millis`.
pub fn memory_replica(id: u8, time: &ManualTime) -> Replica {
    let config = ReplicaConfig {
        replica_id: Some(ReplicaId::from_bytes([id; 16])),
        ..ReplicaConfig::default().with_time(time.clone())
    };
    let r = Replica::in_memory(config).expect("open in-memory replica");
    r.define_collection("todos", CollectionConfig::default())
        .expect("define todos");
    r
}

/// A config on a manual clock with a fixed replica id.
pub fn manual_config(id: u8, time: &ManualTime) -> ReplicaConfig {
    ReplicaConfig {
        replica_id: Some(ReplicaId::from_bytes([id; 16])),
        max_clock_drift: Duration::from_secs(60),
        ..ReplicaConfig::default().with_time(time.clone())
    }
}

/// A point in time far from zero, so steps back stay positive.
pub const T0: u64 = 1_700_000_000_000;

/// Waits until `cond` holds, re-checking after every commit on any of
/// `replicas`; panics after `timeout` (a safety net, not a pass condition).
pub async fn eventually(
    replicas: &[&Replica],
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) {
    let mut watches: Vec<_> = replicas.iter().map(|r| r.watch()).collect();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        // Wake on the next commit anywhere (or a lag, which also means news).
        let next = futures_any(&mut watches);
        if tokio::time::timeout_at(deadline, next).await.is_err() {
            assert!(cond(), "timed out after {timeout:?} waiting for {what}");
            return;
        }
    }
}

async fn futures_any(watches: &mut [syncline::Watch]) {
    join_first(
        watches
            .iter_mut()
            .map(|w| async move {
                let _ = w.recv().await;
            })
            .collect(),
    )
    .await
}

/// Completes when the first of `futs` completes.
async fn join_first<F: Future<Output = ()>>(futs: Vec<F>) {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        for f in futs.iter_mut() {
            if f.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// All records (tombstones and versions included) of `collection`.
pub fn states(r: &Replica, collection: &str) -> Vec<(syncline::Key, syncline::RecordState)> {
    r.collection(collection).unwrap().states().unwrap()
}

/// Whether every replica holds the same records of `collection`.
pub fn converged(replicas: &[&Replica], collection: &str) -> bool {
    let first = states(replicas[0], collection);
    replicas[1..].iter().all(|r| states(r, collection) == first)
}

/// A sync config for tests: quick retries, no polling (so live delivery is
/// what moves changes), a fixed jitter seed.
pub fn quick_sync(seed: u64) -> syncline::SyncConfig {
    syncline::SyncConfig {
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        poll_interval: None,
        seed: Some(seed),
        ..syncline::SyncConfig::default()
    }
}

/// Opens (or reopens) the replica `name` in `dir` with the `todos` collection.
/// Retries while a just-dropped handle of the same file is still being
/// released by background tasks.
pub async fn open_node(dir: &std::path::Path, name: &str, id: u8) -> Replica {
    open_node_on(dir, name, id, None).await
}

/// [`open_node`] on a manual clock.
pub async fn open_node_on(
    dir: &std::path::Path,
    name: &str,
    id: u8,
    time: Option<&ManualTime>,
) -> Replica {
    let path = dir.join(format!("{name}.redb"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut config = ReplicaConfig {
            replica_id: Some(ReplicaId::from_bytes([id; 16])),
            ..ReplicaConfig::default()
        };
        if let Some(time) = time {
            config = config.with_time(time.clone());
        }
        match Replica::open(&path, config) {
            Ok(r) => {
                r.define_collection("todos", CollectionConfig::default())
                    .unwrap();
                return r;
            }
            Err(e)
                if tokio::time::Instant::now() < deadline
                    && e.to_string().contains("already open") =>
            {
                tokio::task::yield_now().await;
            }
            Err(e) => panic!("open {name}: {e}"),
        }
    }
}

/// A hub on a real file in `dir`, serving every caller over a new loopback
/// network drawn from `seed`.
pub async fn loopback_hub(
    dir: &std::path::Path,
    seed: u64,
) -> (
    syncline::transport::loopback::LoopbackNetwork,
    Replica,
    syncline::transport::loopback::LoopbackServer,
) {
    let net = syncline::transport::loopback::LoopbackNetwork::new(seed);
    let hub = open_node(dir, "hub", 100).await;
    let service = syncline::SyncServer::new(hub.clone()).into_service();
    let server = net
        .serve("hub", service, syncline::transport::Limits::default())
        .unwrap();
    (net, hub, server)
}
