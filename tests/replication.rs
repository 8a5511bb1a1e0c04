//! Replication under the loopback transport's faults, on real redb files.
//! The scenarios that run over every transport (hub, mesh, chain, kills,
//! refusals) are in `transports.rs`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{converged, eventually, open_node, quick_sync, states};
use syncline::transport::loopback::LoopbackNetwork;
use syncline::transport::{
    BoxFuture, Connection, Connector, Frame, Limits, Subscription, TransportError,
};
use syncline::{
    Replica, ServerConfig, Status, SyncConfig, SyncEngine, SyncEvent, SyncServer, Value,
};

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
        let config = SyncConfig {
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
    let server_config = ServerConfig {
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
    let config = || SyncConfig {
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

/// Hands out connections whose first subscription goes silent after it
/// opens, as when a network path dies without closing the connection: no
/// frame and no error ever arrive. Later subscriptions work.
#[derive(Debug)]
struct Stalling {
    inner: Arc<dyn Connector>,
    stalled: Arc<AtomicBool>,
}

#[derive(Debug)]
struct StallingConnection {
    inner: Box<dyn Connection>,
    stalled: Arc<AtomicBool>,
    /// The real subscription and the silent stream's sender, kept open so
    /// that neither side sees the stream end.
    held: Mutex<Vec<Box<dyn std::any::Any + Send>>>,
}

impl Connector for Stalling {
    fn addr(&self) -> &str {
        self.inner.addr()
    }

    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let inner = self.inner.connect().await?;
            Ok(Box::new(StallingConnection {
                inner,
                stalled: self.stalled.clone(),
                held: Mutex::new(Vec::new()),
            }) as Box<dyn Connection>)
        })
    }
}

impl Connection for StallingConnection {
    fn exchange(&self, request: Frame) -> BoxFuture<'_, Result<Frame, TransportError>> {
        self.inner.exchange(request)
    }

    fn subscribe(&self, request: Frame) -> BoxFuture<'_, Result<Subscription, TransportError>> {
        Box::pin(async move {
            let real = self.inner.subscribe(request).await?;
            if self.stalled.swap(true, Ordering::SeqCst) {
                return Ok(real);
            }
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let mut held = self.held.lock().unwrap();
            held.push(Box::new(real));
            held.push(Box::new(tx));
            Ok(Subscription::new(rx))
        })
    }

    fn close(&self) {
        self.inner.close();
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}

/// A subscription that goes silent without an error is presumed dead after
/// `subscription_timeout` and replaced, so live changes flow again; with
/// no polling, nothing else could bring them. (That heartbeats keep a quiet
/// subscription alive, and cause no rounds, is checked by every simulation:
/// its quiet minute outlasts the default timeout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_subscription_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(5);
    let hub = open_node(dir.path(), "hub", 100).await;
    let _server = net
        .serve(
            "hub",
            SyncServer::new(hub.clone())
                .with_config(ServerConfig {
                    heartbeat: Some(Duration::from_millis(50)),
                    ..ServerConfig::default()
                })
                .into_service(),
            Limits::default(),
        )
        .unwrap();
    let client = open_node(dir.path(), "client", 1).await;
    let connector = Arc::new(Stalling {
        inner: net.connector("client", "hub"),
        stalled: Arc::default(),
    });
    let engine = SyncEngine::start(
        client.clone(),
        connector.clone(),
        SyncConfig {
            subscription_timeout: Some(Duration::from_millis(300)),
            ..quick_sync(9)
        },
    );
    let mut events = engine.events();
    // Idle after the first round: connected, the (stalled) subscription open.
    let mut status = engine.status();
    tokio::time::timeout(WAIT, status.wait_for(|s| *s == Status::Idle))
        .await
        .expect("the first round")
        .unwrap();
    assert!(connector.stalled.load(Ordering::SeqCst));
    hub.collection("todos").unwrap().put("k", 1i64).unwrap();
    eventually(&[&client], WAIT, "the write to arrive", || {
        client.collection("todos").unwrap().get("k").unwrap() == Some(Value::Int(1))
    })
    .await;
    let mut silent = false;
    while let Ok(event) = events.try_recv() {
        if let SyncEvent::Error { message, .. } = event {
            silent |= message.contains("silent");
        }
    }
    assert!(silent, "the engine reported the silent subscription");
    engine.stop().await;
}
