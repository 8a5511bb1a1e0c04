//! Initial sync of 100,000 records between separate processes, as users run
//! it: a hub process serving QUIC (pinned self-signed certificate) and plain
//! HTTP on 127.0.0.1, and a new client process with an empty durable replica
//! and `SyncConfig::default()`.
//!
//! Run with `cargo bench --bench initial_sync --features quic,http`. The
//! bench binary plays three roles, chosen by the `SYNCLINE_BENCH_ROLE`
//! environment variable: without it, it is the driver, which starts itself
//! again as the hub (written in transactions of 1,000, 100-byte values) and
//! then, once per run, as a client. A client times its `SyncEngine` from
//! `start` until `wait_synced` returns and reads its own peak resident
//! memory (`VmHWM` in `/proc/self/status`) at the end. The driver prints the
//! median of three runs per transport with the spread, alternating the
//! transports run by run so that both see the same machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncline::transport::Connector;
use syncline::transport::http::{HttpClient, HttpClientConfig, HttpServer, HttpServerConfig};
use syncline::transport::quic::{
    Fingerprint, QuicClientConfig, QuicConnector, QuicServer, QuicServerConfig, SelfSigned,
    ServerTrust,
};
use syncline::{
    CollectionConfig, Replica, ReplicaConfig, SyncConfig, SyncEngine, SyncServer, Value,
};

/// Which role this process plays: `hub`, `client`, or (unset) the driver.
const ROLE: &str = "SYNCLINE_BENCH_ROLE";
/// The directory of the role's database.
const DIR: &str = "SYNCLINE_BENCH_DIR";
/// A client's transport: `quic` or `http`.
const TRANSPORT: &str = "SYNCLINE_BENCH_TRANSPORT";
/// A client's server address: a socket address (QUIC) or a URL (HTTP).
const ADDR: &str = "SYNCLINE_BENCH_ADDR";
/// A QUIC client's pinned certificate fingerprint.
const PIN: &str = "SYNCLINE_BENCH_PIN";

const RECORDS: u64 = 100_000;
/// The hub is written in transactions of this many records.
const HUB_TXN: u64 = 1_000;
const RUNS: usize = 3;
const COLLECTION: &str = "bench";
/// How long one initial sync may take before the run fails.
const SYNC_TIMEOUT: Duration = Duration::from_secs(600);

/// Targets from issue 13.
const TARGET_RECORDS_PER_S: f64 = 150_000.0;
const TARGET_PEAK_KIB: u64 = 64 * 1024;

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("hub") => hub(),
        Ok("client") => client(),
        _ => driver(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    // What `#[tokio::main]` builds: one worker per core.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn open(path: &Path) -> Replica {
    let r = Replica::open(path, ReplicaConfig::default()).unwrap();
    r.define_collection(COLLECTION, CollectionConfig::default())
        .unwrap();
    r
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// This process's peak resident set size in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The hub: writes the records, serves QUIC and HTTP, prints where, and
/// serves until its standard input closes.
fn hub() {
    let rt = runtime();
    let dir = env(DIR);
    let hub = open(&Path::new(&dir).join("hub.redb"));
    let start = Instant::now();
    for chunk in 0..RECORDS.div_ceil(HUB_TXN) {
        let mut txn = hub.transaction();
        for i in chunk * HUB_TXN..((chunk + 1) * HUB_TXN).min(RECORDS) {
            txn.put(
                COLLECTION,
                format!("k{i}"),
                Value::String(format!("{i:0>100}")),
            );
        }
        txn.commit().unwrap();
    }
    let written = start.elapsed();
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
        "ready {} {} {} {:.3}",
        quic.local_addr(),
        http.url(),
        cert.fingerprint(),
        written.as_secs_f64()
    );
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    rt.block_on(async {
        quic.shutdown().await;
        http.shutdown().await;
    });
    println!("hub-peak {}", peak_rss_kib());
}

/// A new client: an empty durable replica syncing with the engine's
/// defaults until `wait_synced` returns.
fn client() {
    let rt = runtime();
    let dir = env(DIR);
    let addr = env(ADDR);
    let connector: Arc<dyn Connector> = match env(TRANSPORT).as_str() {
        "quic" => {
            let pin: Fingerprint = env(PIN).parse().unwrap();
            Arc::new(
                QuicConnector::new(
                    addr.parse().unwrap(),
                    "localhost",
                    QuicClientConfig::new(ServerTrust::pinned(pin)),
                )
                .unwrap(),
            )
        }
        "http" => Arc::new(HttpClient::new(&addr, HttpClientConfig::new()).unwrap()),
        other => panic!("unknown transport {other}"),
    };
    let replica = open(&Path::new(&dir).join("client.redb"));
    let (took, pulled) = rt.block_on(async {
        let start = Instant::now();
        let engine = SyncEngine::start(replica.clone(), connector, SyncConfig::default());
        engine.wait_synced(SYNC_TIMEOUT).await.unwrap();
        let took = start.elapsed();
        let pulled = engine.stats().pulled;
        engine.stop().await;
        (took, pulled)
    });
    let peak = peak_rss_kib();
    assert_eq!(pulled, RECORDS, "pulled every record");
    let coll = replica.collection(COLLECTION).unwrap();
    let last = RECORDS - 1;
    assert_eq!(
        coll.get(format!("k{last}")).unwrap(),
        Some(Value::String(format!("{last:0>100}")))
    );
    println!("result {:.6} {peak}", took.as_secs_f64());
}

/// One client run, as the driver saw it.
struct Run {
    /// From the engine's start until `wait_synced` returned, in seconds.
    sync_s: f64,
    /// The client's peak resident memory, KiB.
    peak_kib: u64,
    /// The client process from spawn to exit, in seconds.
    process_s: f64,
}

fn driver() {
    let hub_dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut hub = Command::new(&exe)
        .env(ROLE, "hub")
        .env(DIR, hub_dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut hub_out = BufReader::new(hub.stdout.take().unwrap()).lines();
    let ready = hub_out.next().expect("hub ended early").unwrap();
    let fields: Vec<&str> = ready.split_whitespace().collect();
    let ["ready", quic_addr, http_url, pin, written] = fields[..] else {
        panic!("hub said {ready:?}");
    };
    println!(
        "initial sync of {RECORDS} records (100-byte values) between separate processes on \
         127.0.0.1; hub written in {} transactions of {HUB_TXN} ({written} s); new client: an \
         empty durable replica, SyncConfig::default(); median of {RUNS} (min-max)",
        RECORDS / HUB_TXN
    );

    let transports = [("quic", quic_addr), ("http", http_url)];
    let mut runs: Vec<Vec<Run>> = transports.iter().map(|_| Vec::new()).collect();
    for run in 0..RUNS {
        for (t, (name, addr)) in transports.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let start = Instant::now();
            let out = Command::new(&exe)
                .env(ROLE, "client")
                .env(DIR, dir.path())
                .env(TRANSPORT, name)
                .env(ADDR, addr)
                .env(PIN, pin)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .unwrap();
            let process_s = start.elapsed().as_secs_f64();
            assert!(out.status.success(), "{name} client run {run} failed");
            let stdout = String::from_utf8(out.stdout).unwrap();
            let line = stdout
                .lines()
                .find_map(|l| l.strip_prefix("result "))
                .unwrap_or_else(|| panic!("{name} client said {stdout:?}"));
            let (sync_s, peak_kib) = line.split_once(' ').unwrap();
            runs[t].push(Run {
                sync_s: sync_s.parse().unwrap(),
                peak_kib: peak_kib.parse().unwrap(),
                process_s,
            });
        }
    }

    println!(
        "{:<6} {:>10} {:>22} {:>26} {:>20}",
        "", "seconds", "records/s", "client peak RSS (MiB)", "process wall (s)"
    );
    let mut verdicts = Vec::new();
    for (t, (name, _)) in transports.iter().enumerate() {
        let mut secs: Vec<f64> = runs[t].iter().map(|r| r.sync_s).collect();
        secs.sort_by(f64::total_cmp);
        let median_s = secs[RUNS / 2];
        let rate = |s: f64| RECORDS as f64 / s;
        let mut peaks: Vec<u64> = runs[t].iter().map(|r| r.peak_kib).collect();
        peaks.sort();
        let mib = |kib: u64| kib as f64 / 1024.0;
        let mut walls: Vec<f64> = runs[t].iter().map(|r| r.process_s).collect();
        walls.sort_by(f64::total_cmp);
        println!(
            "{name:<6} {median_s:>10.3} {:>22} {:>26} {:>20.3}",
            format!(
                "{:.0} ({:.0}-{:.0})",
                rate(median_s),
                rate(secs[RUNS - 1]),
                rate(secs[0])
            ),
            format!(
                "{:.1} ({:.1}-{:.1})",
                mib(peaks[RUNS / 2]),
                mib(peaks[0]),
                mib(peaks[RUNS - 1])
            ),
            walls[RUNS / 2]
        );
        verdicts.push(format!(
            "{name}: {} records/s {:.0} (target >= {TARGET_RECORDS_PER_S:.0}); {} client peak {:.1} MiB, worst run (target < {} MiB)",
            verdict(rate(median_s) >= TARGET_RECORDS_PER_S),
            rate(median_s),
            verdict(peaks[RUNS - 1] < TARGET_PEAK_KIB),
            mib(peaks[RUNS - 1]),
            TARGET_PEAK_KIB / 1024
        ));
    }
    for v in verdicts {
        println!("{v}");
    }

    drop(hub.stdin.take());
    let hub_peak = hub_out
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("hub-peak ").map(str::to_string));
    assert!(hub.wait().unwrap().success(), "hub failed");
    if let Some(kib) = hub_peak.and_then(|k| k.parse::<u64>().ok()) {
        println!(
            "hub peak RSS {:.1} MiB (writing and serving every run)",
            kib as f64 / 1024.0
        );
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}
