//! The load harness: one hub and N clients on real transports on 127.0.0.1.
//!
//! Run with `cargo bench --bench load --features quic,http`. The bench
//! binary plays two roles, chosen by `SYNCLINE_LOAD_ROLE`: unset, it is the
//! driver, which starts itself again as the hub (a process of its own, so
//! that its memory and CPU are its own) serving QUIC and HTTP, then for
//! each transport and each N runs N clients in its own process: real
//! `SyncEngine`s with `SyncConfig::default()` (live subscription) on
//! in-memory replicas. It reports:
//!
//! - connection setup: N engines started at once until every one finished
//!   its first round (handshake, subscription, push, pull), as clients/s;
//! - the hub's memory per idle subscribed client: the hub's resident set
//!   (`VmRSS`) with the N clients idle, minus before they came, over N;
//! - one write reaching all N: a client writes one record; the time until
//!   each other client committed it (p50, p99, max), ten writes;
//! - the hub's CPU per change delivered in that phase (`utime + stime`).
//!
//! QUIC runs twice: each client with its own UDP socket (`quic`, as
//! clients in processes of their own), and every client of the driver on
//! one shared `QuicClientEndpoint` (`quic-shared`).
//!
//! Then, in-process over the loopback transport, N raw subscriptions
//! (10,000 by default): the process's memory per subscription (an upper
//! bound of the hub's: it counts the client ends too) and the time for one
//! write's notification to reach all of them.
//!
//! And, with `SYNCLINE_LOAD_SUSTAINED=SECONDS` (60 in the issue), W writers
//! (`SYNCLINE_LOAD_WRITERS`, default 100) each write 100 changes a second
//! through the hub over QUIC, every writer also subscribed: it reports the
//! changes per second the hub took in, and the backlog (changes written and
//! not yet at every subscriber) at the end of each 10 s. With
//! `SYNCLINE_LOAD_SUBSCRIBERS=K` the writers only push and K other engines
//! only pull: what the hub takes in and fans out without every client
//! applying every change.
//!
//! `SYNCLINE_LOAD_N=10,100,1000` chooses the N of the first part,
//! `SYNCLINE_LOAD_LOOPBACK=10000` the second.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use syncline::protocol::{self, PROTOCOL_VERSION, Request, RequestBody};
use syncline::transport::Limits;
use syncline::transport::http::{HttpServer, HttpServerConfig};
use syncline::transport::loopback::LoopbackNetwork;
use syncline::transport::quic::{QuicClientEndpoint, QuicServer, QuicServerConfig, SelfSigned};
use syncline::{
    CollectionConfig, ConnectConfig, Replica, ReplicaConfig, ReplicaId, Status, SyncConfig,
    SyncEngine, SyncServer, Value,
};

const ROLE: &str = "SYNCLINE_LOAD_ROLE";
const DIR: &str = "SYNCLINE_LOAD_DIR";
/// How many subscriptions the `loopback` role opens.
const SUBSCRIPTIONS: &str = "SYNCLINE_LOAD_SUBSCRIPTIONS";
const COLLECTION: &str = "load";
/// How long any phase may take before the run fails.
const PHASE: Duration = Duration::from_secs(600);
const WRITES: usize = 10;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    match std::env::var(ROLE).as_deref() {
        Ok("hub") => hub(),
        Ok("loopback") => {
            let n = std::env::var(SUBSCRIPTIONS).unwrap().parse().unwrap();
            let (per, p50, max) = runtime().block_on(loopback_subscriptions(n));
            println!(
                "loopback, {n} subscriptions in one process: {per:.1} KiB per subscription (both ends), one write's notification to all: p50 {p50:.2?}, max {max:.2?}"
            );
        }
        _ => driver(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn define(r: &Replica) {
    r.define_collection(COLLECTION, CollectionConfig::default())
        .unwrap();
}

/// The hub: a replica on a file, serving QUIC and HTTP until its standard
/// input closes.
fn hub() {
    let rt = runtime();
    let dir = std::env::var(DIR).unwrap();
    let hub = Replica::open(Path::new(&dir).join("hub.redb"), ReplicaConfig::default()).unwrap();
    define(&hub);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let cert = SelfSigned::generate(vec!["localhost".to_string()]).unwrap();
    let service = SyncServer::new(hub.clone()).into_service();
    let (quic, http) = rt.block_on(async {
        let quic =
            QuicServer::bind(any, service.clone(), QuicServerConfig::new(cert.identity())).unwrap();
        let http = HttpServer::bind(any, service, HttpServerConfig::new())
            .await
            .unwrap();
        (quic, http)
    });
    println!(
        "ready quic://{}?pin={} {}",
        quic.local_addr(),
        cert.fingerprint(),
        http.url()
    );
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    rt.block_on(async {
        quic.shutdown().await;
        http.shutdown().await;
    });
}

/// A field of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A process's CPU time (user + system), in seconds.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

struct Hub {
    child: Child,
    quic: String,
    http: String,
}

fn start_hub(dir: &Path) -> Hub {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "hub")
        .env(DIR, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut words = line.split_whitespace().skip(1);
    let quic = words.next().unwrap().to_owned();
    let http = words.next().unwrap().to_owned();
    Hub { child, quic, http }
}

/// One row of the first part.
struct Row {
    transport: &'static str,
    n: usize,
    setup_per_s: f64,
    kib_per_client: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    cpu_us_per_change: f64,
}

/// N engines against the hub at `url`.
async fn clients(url: &str, transport: &'static str, n: usize, hub_pid: u32) -> Row {
    let before = status_kib(hub_pid, "VmRSS:");
    // "quic": a UDP socket per client, as clients in processes of their
    // own have; "quic-shared": every client of this process on one.
    let mut connect = ConnectConfig::new();
    if transport == "quic-shared" {
        let addr: SocketAddr = url
            .trim_start_matches("quic://")
            .split('?')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        connect = connect.with_quic_endpoint(QuicClientEndpoint::for_server(addr).unwrap());
    }
    let started = Instant::now();
    let mut engines = Vec::with_capacity(n);
    for _ in 0..n {
        let replica = Replica::in_memory(ReplicaConfig::default()).unwrap();
        define(&replica);
        let connector = syncline::connect(url, &connect).unwrap();
        let engine = SyncEngine::start(replica.clone(), connector, SyncConfig::default());
        engines.push((replica, engine));
    }
    for (_, engine) in &engines {
        let mut status = engine.status();
        tokio::time::timeout(PHASE, status.wait_for(|s| *s == Status::Idle))
            .await
            .expect("every client connects")
            .unwrap();
    }
    let setup = started.elapsed();
    // Idle and subscribed: what the hub holds per client.
    let after = status_kib(hub_pid, "VmRSS:");
    let kib_per_client = after.saturating_sub(before) as f64 / n as f64;

    let cpu_before = cpu_s(hub_pid);
    let mut latencies = Vec::new();
    for w in 0..WRITES {
        let key = format!("w{transport}{n}-{w}");
        let mut waiters = Vec::new();
        for (replica, _) in engines.iter().skip(1) {
            let mut watch = replica.collection(COLLECTION).unwrap().watch();
            let key = key.clone();
            waiters.push(tokio::spawn(async move {
                loop {
                    let event = watch.recv().await.expect("no lag");
                    if event.change.key.as_str() == Some(key.as_str()) {
                        return Instant::now();
                    }
                }
            }));
        }
        let written = Instant::now();
        engines[0]
            .0
            .collection(COLLECTION)
            .unwrap()
            .put(key.as_str(), w as i64)
            .unwrap();
        for waiter in waiters {
            let at = tokio::time::timeout(PHASE, waiter)
                .await
                .expect("the write reaches every client")
                .unwrap();
            latencies.push(at - written);
        }
    }
    let cpu = cpu_s(hub_pid) - cpu_before;
    latencies.sort();
    for (_, engine) in engines {
        engine.stop().await;
    }
    let delivered = (WRITES * (n - 1)) as f64;
    Row {
        transport,
        n,
        setup_per_s: n as f64 / setup.as_secs_f64(),
        kib_per_client,
        p50: percentile(&latencies, 50),
        p99: percentile(&latencies, 99),
        max: *latencies.last().unwrap(),
        cpu_us_per_change: cpu * 1e6 / delivered,
    }
}

/// N raw subscriptions in-process over loopback: memory per subscription
/// and one write's notification to all of them.
async fn loopback_subscriptions(n: usize) -> (f64, Duration, Duration) {
    let net = LoopbackNetwork::new(1);
    let hub = Replica::in_memory(ReplicaConfig::default()).unwrap();
    define(&hub);
    let _server = net
        .serve(
            "hub",
            SyncServer::new(hub.clone()).into_service(),
            Limits::default(),
        )
        .unwrap();
    let me = std::process::id();
    let before = status_kib(me, "VmRSS:");
    let mut subs = Vec::with_capacity(n);
    for i in 0..n {
        let conn = net
            .connector(&format!("c{i}"), "hub")
            .connect()
            .await
            .unwrap();
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        let request = Request {
            version: PROTOCOL_VERSION,
            from: ReplicaId::from_bytes(id),
            token: None,
            body: RequestBody::Subscribe { after: 0 },
        };
        let sub = conn
            .subscribe(protocol::encode(&request).into())
            .await
            .unwrap();
        subs.push((conn, sub));
    }
    let after = status_kib(me, "VmRSS:");
    let per = after.saturating_sub(before) as f64 / n as f64;
    let written = Instant::now();
    hub.collection(COLLECTION).unwrap().put("x", 1i64).unwrap();
    let mut latencies = Vec::with_capacity(n);
    for (_, sub) in &mut subs {
        tokio::time::timeout(PHASE, sub.next())
            .await
            .expect("the notification arrives")
            .expect("a frame")
            .unwrap();
        latencies.push(written.elapsed());
    }
    latencies.sort();
    (per, percentile(&latencies, 50), *latencies.last().unwrap())
}

/// W writers, each writing 100 changes a second for `secs` through the hub
/// at `url`, each subscribed: changes per second in, and the backlog.
async fn sustained(url: &str, writers: usize, subscribers: Option<usize>, secs: u64) {
    let mut engines = Vec::new();
    // Writers that also subscribe (the run), or writers that only
    // push and a few subscribers that only pull.
    let writer_config = match subscribers {
        Some(_) => SyncConfig {
            direction: syncline::Direction::Push,
            ..SyncConfig::default()
        },
        None => SyncConfig::default(),
    };
    for _ in 0..writers {
        let replica = Replica::in_memory(ReplicaConfig::default()).unwrap();
        define(&replica);
        let connector = syncline::connect(url, &ConnectConfig::new()).unwrap();
        let engine = SyncEngine::start(replica.clone(), connector, writer_config.clone());
        engines.push((replica, engine));
    }
    let mut watchers = Vec::new();
    for _ in 0..subscribers.unwrap_or(0) {
        let replica = Replica::in_memory(ReplicaConfig::default()).unwrap();
        define(&replica);
        let connector = syncline::connect(url, &ConnectConfig::new()).unwrap();
        let config = SyncConfig {
            direction: syncline::Direction::Pull,
            ..SyncConfig::default()
        };
        let engine = SyncEngine::start(replica.clone(), connector, config);
        watchers.push((replica, engine));
    }
    for (_, engine) in &engines {
        let mut status = engine.status();
        tokio::time::timeout(PHASE, status.wait_for(|s| *s == Status::Idle))
            .await
            .unwrap()
            .unwrap();
    }
    for (_, engine) in &watchers {
        let mut status = engine.status();
        tokio::time::timeout(PHASE, status.wait_for(|s| *s == Status::Idle))
            .await
            .unwrap()
            .unwrap();
    }
    let replicas: Vec<Replica> = engines.iter().map(|(r, _)| r.clone()).collect();
    // Who must receive every change: the writers, or the subscribers.
    let receivers: Vec<Replica> = if subscribers.is_some() {
        watchers.iter().map(|(r, _)| r.clone()).collect()
    } else {
        replicas.clone()
    };
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut written = 0u64;
    let mut n = 0u64;
    println!();
    println!(
        "{writers} writers{}",
        match subscribers {
            Some(k) => format!(" pushing only, {k} subscribers pulling only"),
            None => " each also subscribed".to_owned(),
        }
    );
    println!("| after | written | changes/s in | backlog (written, not yet at every receiver) |");
    println!("| ---: | ---: | ---: | ---: |");
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        // 10 changes per writer per tick: 100 a second each.
        for (w, r) in replicas.iter().enumerate() {
            let mut txn = r.transaction();
            for i in 0..10 {
                txn.put(COLLECTION, format!("w{w}-{n}-{i}"), Value::Int(i));
            }
            txn.commit().unwrap();
            written += 10;
        }
        n += 1;
        if n.is_multiple_of(100) {
            let least = receivers
                .iter()
                .map(|r| r.collection(COLLECTION).unwrap().len().unwrap())
                .min()
                .unwrap_or(0);
            println!(
                "| {:.0} s | {written} | {:.0} | {} |",
                started.elapsed().as_secs_f64(),
                written as f64 / started.elapsed().as_secs_f64(),
                written - least
            );
        }
    }
    let drained = Instant::now();
    for r in &receivers {
        loop {
            if r.collection(COLLECTION).unwrap().len().unwrap() >= written {
                break;
            }
            let mut watch = r.watch();
            let _ = tokio::time::timeout(Duration::from_secs(1), watch.recv()).await;
            assert!(drained.elapsed() < PHASE, "the backlog drains");
        }
    }
    println!(
        "every change at every receiver {:.2?} after the last write",
        drained.elapsed()
    );
    for (_, engine) in engines.into_iter().chain(watchers) {
        engine.stop().await;
    }
}

fn list(var: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(var)
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn driver() {
    let rt = runtime();
    let ns = list("SYNCLINE_LOAD_N", &[10, 100, 1000]);
    let mut rows = Vec::new();
    for transport in ["quic", "quic-shared", "http"] {
        for &n in &ns {
            // A fresh hub per row, so that each row's memory is its own.
            let dir = tempfile::tempdir().unwrap();
            let mut hub = start_hub(dir.path());
            let url = if transport.starts_with("quic") {
                hub.quic.clone()
            } else {
                hub.http.clone()
            };
            let pid = hub.child.id();
            rows.push(rt.block_on(clients(&url, transport, n, pid)));
            drop(hub.child.stdin.take());
            hub.child.wait().unwrap();
        }
    }
    println!(
        "| transport | N | setup (clients/s) | hub KiB per idle client | one write to all: p50 | p99 | max | hub CPU per change delivered |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.2?} | {:.2?} | {:.2?} | {:.1} µs |",
            r.transport,
            r.n,
            r.setup_per_s,
            r.kib_per_client,
            r.p50,
            r.p99,
            r.max,
            r.cpu_us_per_change
        );
    }
    for n in list("SYNCLINE_LOAD_LOOPBACK", &[10_000]) {
        // A process of its own: memory the engines above freed would be
        // reused and hide what the subscriptions take.
        println!();
        let status = Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "loopback")
            .env(SUBSCRIPTIONS, n.to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
    if let Some(secs) = std::env::var("SYNCLINE_LOAD_SUSTAINED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        let writers = list("SYNCLINE_LOAD_WRITERS", &[100])[0];
        let dir = tempfile::tempdir().unwrap();
        let mut hub = start_hub(dir.path());
        let url = hub.quic.clone();
        let subscribers = std::env::var("SYNCLINE_LOAD_SUBSCRIBERS")
            .ok()
            .and_then(|s| s.parse().ok());
        rt.block_on(sustained(&url, writers, subscribers, secs));
        drop(hub.child.stdin.take());
        hub.child.wait().unwrap();
    }
}
