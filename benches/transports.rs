//! Initial sync of 100,000 records (100-byte values) from a hub to a new
//! client over loopback, QUIC and HTTP, in one run.
//!
//! Run with `cargo bench --bench transports --features quic,http`. Prints,
//! per transport, the median of three runs: records per second and the
//! frame bytes on the wire per record (request and response frames, before
//! TLS and transport framing).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use syncline::transport::http::{HttpClient, HttpClientConfig, HttpServer, HttpServerConfig};
use syncline::transport::loopback::LoopbackNetwork;
use syncline::transport::quic::{
    QuicClientConfig, QuicConnector, QuicServer, QuicServerConfig, SelfSigned, ServerTrust,
};
use syncline::transport::{
    BoxFuture, Connection, Connector, Frame, Limits, Subscription, TransportError,
};
use syncline::{
    CollectionConfig, Direction, Replica, ReplicaConfig, SyncConfig, SyncEngine, SyncServer, Value,
};

const RECORDS: u64 = 100_000;
const RUNS: usize = 3;

/// Counts the bytes of every frame exchanged through the connections it opens.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Connector>,
    bytes: Arc<AtomicU64>,
}

#[derive(Debug)]
struct CountingConnection {
    inner: Box<dyn Connection>,
    bytes: Arc<AtomicU64>,
}

impl Connector for Counting {
    fn addr(&self) -> &str {
        self.inner.addr()
    }

    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let inner = self.inner.connect().await?;
            Ok(Box::new(CountingConnection {
                inner,
                bytes: self.bytes.clone(),
            }) as Box<dyn Connection>)
        })
    }
}

impl Connection for CountingConnection {
    fn exchange(&self, request: Frame) -> BoxFuture<'_, Result<Frame, TransportError>> {
        Box::pin(async move {
            let sent = request.len() as u64;
            let answer = self.inner.exchange(request).await?;
            self.bytes
                .fetch_add(sent + answer.len() as u64, Ordering::Relaxed);
            Ok(answer)
        })
    }

    fn subscribe(&self, request: Frame) -> BoxFuture<'_, Result<Subscription, TransportError>> {
        self.inner.subscribe(request)
    }

    fn close(&self) {
        self.inner.close();
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}

fn open(dir: &std::path::Path, name: &str) -> Replica {
    let r = Replica::open(dir.join(format!("{name}.redb")), ReplicaConfig::default()).unwrap();
    r.define_collection("bench", CollectionConfig::default())
        .unwrap();
    r
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open(dir.path(), "hub");
    for chunk in 0..RECORDS / 10_000 {
        let mut txn = hub.transaction();
        for i in chunk * 10_000..(chunk + 1) * 10_000 {
            txn.put(
                "bench",
                format!("k{i}"),
                Value::String(format!("{i:0>100}")),
            );
        }
        txn.commit().unwrap();
    }
    let service = SyncServer::new(hub.clone()).into_service();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();

    let net = LoopbackNetwork::new(1);
    let _loopback = net
        .serve("hub", service.clone(), Limits::default())
        .unwrap();
    let cert = SelfSigned::generate(vec!["localhost".to_string()]).unwrap();
    let quic =
        QuicServer::bind(any, service.clone(), QuicServerConfig::new(cert.identity())).unwrap();
    let http = HttpServer::bind(any, service, HttpServerConfig::new())
        .await
        .unwrap();

    let transports: Vec<(&str, Arc<dyn Connector>)> = vec![
        ("loopback", net.connector("client", "hub")),
        (
            "quic",
            Arc::new(
                QuicConnector::new(
                    quic.local_addr(),
                    "localhost",
                    QuicClientConfig::new(ServerTrust::pinned(cert.fingerprint())),
                )
                .unwrap(),
            ),
        ),
        (
            "http",
            Arc::new(HttpClient::new(&http.url(), HttpClientConfig::new()).unwrap()),
        ),
    ];
    println!(
        "initial sync of {RECORDS} records (100-byte values), durable redb files, median of {RUNS}"
    );
    println!(
        "{:<10} {:>12} {:>14} {:>16}",
        "transport", "seconds", "records/s", "bytes/record"
    );
    for (name, connector) in transports {
        let mut runs = Vec::new();
        for run in 0..RUNS {
            let bytes = Arc::new(AtomicU64::new(0));
            let counting = Arc::new(Counting {
                inner: connector.clone(),
                bytes: bytes.clone(),
            });
            let client_dir = tempfile::tempdir().unwrap();
            let client = open(client_dir.path(), &format!("client-{run}"));
            let config = SyncConfig {
                on_demand: true,
                direction: Direction::Pull,
                ..SyncConfig::default()
            };
            let engine = SyncEngine::start(client, counting, config);
            let start = Instant::now();
            let report = engine.sync_now().await.unwrap();
            let took = start.elapsed();
            assert_eq!(report.pulled as u64, RECORDS);
            engine.stop().await;
            runs.push((took, bytes.load(Ordering::Relaxed)));
        }
        runs.sort();
        let (took, bytes): (Duration, u64) = runs[RUNS / 2];
        println!(
            "{name:<10} {:>12.3} {:>14.0} {:>16.1}",
            took.as_secs_f64(),
            RECORDS as f64 / took.as_secs_f64(),
            bytes as f64 / RECORDS as f64
        );
    }
    quic.shutdown().await;
    http.shutdown().await;
}
