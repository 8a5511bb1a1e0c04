//! The built `syncline` binary as a process: a hub from a config file on
//! 127.0.0.1 port 0, clients through the command and through the library,
//! `/health` and `/metrics` over a real socket, a restart that keeps the
//! pinned fingerprint, and SIGTERM while a client pushes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use syncline::{
    CollectionConfig, Key, Replica, ReplicaConfig, SyncConfig, SyncEngine, SyncEvent, Value,
};

const BIN: &str = env!("CARGO_BIN_EXE_syncline");
const TOKEN: &str = "test-secret";
/// How long a hub may take to start or stop before the test fails.
const WAIT: Duration = Duration::from_secs(60);

/// A running hub process and the URLs it printed.
struct Hub {
    child: Child,
    lines: mpsc::Receiver<String>,
    quic: String,
    http: String,
}

impl Hub {
    fn start(config: &Path) -> Hub {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the hub");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let (mut quic, mut http) = (None, None);
        while quic.is_none() || http.is_none() {
            let line = lines
                .recv_timeout(WAIT)
                .expect("the hub prints its listeners");
            if let Some(url) = line.strip_prefix("listening quic://") {
                quic = Some(format!("quic://{url}"));
            } else if let Some(url) = line.strip_prefix("listening http://") {
                http = Some(format!("http://{url}"));
            }
        }
        Hub {
            child,
            lines,
            quic: quic.unwrap(),
            http: http.unwrap(),
        }
    }

    fn pin(&self) -> &str {
        self.quic.split("pin=").nth(1).unwrap()
    }

    /// Sends SIGTERM and waits for the exit; returns its success and the
    /// lines it printed since the start.
    fn terminate(mut self) -> (bool, Vec<String>) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = wait_exit(&mut self.child);
        let lines: Vec<String> = self.lines.try_iter().collect();
        (exit, lines)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a child to exit, failing after [`WAIT`].
fn wait_exit(child: &mut Child) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        assert!(std::time::Instant::now() < deadline, "the hub did not exit");
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

fn write_config(dir: &Path, quic_port: u16) -> PathBuf {
    let path = dir.join("hub.toml");
    std::fs::write(
        &path,
        format!(
            r#"database = "hub.redb"

[listen]
quic = "127.0.0.1:{quic_port}"
http = "127.0.0.1:0"

[[token]]
principal = "tester"
token = "{TOKEN}"
read = ["*"]
write = ["*"]

[[collection]]
name = "todos"

[server]
heartbeat = "1s"
shutdown_grace = "20s"
"#
        ),
    )
    .unwrap();
    path
}

/// `GET path` over a plain socket; returns the status line and the body.
fn get(http_url: &str, path: &str) -> (String, String) {
    let addr = http_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

fn sync_command(url: &str, db: &Path) -> Output {
    Command::new(BIN)
        .args([
            "sync",
            url,
            "--collection",
            "todos",
            "--progress",
            "plain",
            "--db",
        ])
        .arg(db)
        .env("SYNCLINE_TOKEN", TOKEN)
        .output()
        .unwrap()
}

fn client(path: &Path) -> Replica {
    let r = Replica::open(path, ReplicaConfig::default()).unwrap();
    r.define_collection("todos", CollectionConfig::default())
        .unwrap();
    r
}

fn keys(r: &Replica) -> Vec<Key> {
    r.collection("todos")
        .unwrap()
        .scan(syncline::Scan::all())
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_process_serves_restarts_with_its_pin_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 0);
    let hub = Hub::start(&config);

    // Health over a real socket.
    let (status, body) = get(&hub.http, "/health");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.trim(), "ok");

    // A client through the library, over QUIC with the printed pin.
    let alice = client(&dir.path().join("alice.redb"));
    for i in 0..50 {
        alice
            .collection("todos")
            .unwrap()
            .put(format!("a{i:03}"), i as i64)
            .unwrap();
    }
    let sync = SyncConfig::default().with_token(TOKEN);
    let report = syncline::sync_once(&alice, &hub.quic, sync.clone())
        .await
        .unwrap();
    assert_eq!(report.pushed, 50);

    // A client through the command, over HTTP.
    let bob_db = dir.path().join("bob.redb");
    let out = sync_command(&hub.http, &bob_db);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("caught up: pushed 0, pulled 50"),
        "{stdout}"
    );
    assert!(
        stderr.contains("pulling: 50 changes"),
        "plain progress lines: {stderr}"
    );
    // The command closed its file: it opens again here.
    assert_eq!(
        keys(&Replica::open(&bob_db, ReplicaConfig::default()).unwrap()).len(),
        50
    );

    // Metrics in Prometheus text, over the same listener.
    let (status, metrics) = get(&hub.http, "/metrics");
    assert!(status.contains("200"), "{status}");
    // Out: bob's 50, and alice's own 50 again, which her first pull (a
    // bootstrap, from cursor 0) gets back.
    for line in [
        "syncline_changes_in_total 50",
        "syncline_changes_out_total 100",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    assert!(
        metrics.contains("syncline_commit_seconds_bucket{durability=\"immediate\",le=\"0.001\"}"),
        "the commit latency histogram:\n{metrics}"
    );
    assert!(
        metrics.contains("# HELP syncline_changes_in_total"),
        "{metrics}"
    );

    // A wrong token is refused, and the exit code says so.
    let out = Command::new(BIN)
        .args([
            "sync",
            &hub.http,
            "--collection",
            "todos",
            "--progress",
            "none",
            "--db",
        ])
        .arg(dir.path().join("eve.redb"))
        .env("SYNCLINE_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (_, metrics) = get(&hub.http, "/metrics");
    assert!(
        metrics.contains("syncline_refusals_total{code=\"401\"}"),
        "the refusal is counted:\n{metrics}"
    );

    // SIGTERM while a client pushes: the hub drains and exits 0, and every
    // change it acknowledged is in its file.
    let pin = hub.pin().to_owned();
    let quic_port: u16 = hub
        .quic
        .trim_start_matches("quic://127.0.0.1:")
        .split('?')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let connector = syncline::connect(&hub.quic, &syncline::ConnectConfig::new()).unwrap();
    let engine = SyncEngine::start(
        alice.clone(),
        connector,
        SyncConfig::default().with_token(TOKEN),
    );
    let mut events = engine.events();
    let writer = {
        let alice = alice.clone();
        tokio::task::spawn_blocking(move || {
            for t in 0..40 {
                let mut txn = alice.transaction();
                for i in 0..50 {
                    txn.put("todos", format!("w{t:02}-{i:02}"), Value::from(i as i64));
                }
                txn.commit().unwrap();
            }
        })
    };
    // Wait for the first acknowledged push of the new writes.
    let acked_before_term = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(SyncEvent::Pushed { through, .. }) = events.recv().await
                && through > 50
            {
                return through;
            }
        }
    })
    .await
    .expect("a push is acknowledged");
    let (exited_ok, lines) = hub.terminate();
    assert!(exited_ok, "exit 0 after SIGTERM: {lines:?}");
    assert!(lines.iter().any(|l| l == "stopped"), "{lines:?}");
    writer.await.unwrap();
    // Everything acknowledged, up to the last ack the engine heard.
    let mut acked = acked_before_term;
    while let Ok(event) = events.try_recv() {
        if let SyncEvent::Pushed { through, .. } = event {
            acked = acked.max(through);
        }
    }
    engine.stop().await;
    {
        let hub_file = Replica::open(dir.path().join("hub.redb"), ReplicaConfig::default())
            .expect("the hub closed its file");
        let held = keys(&hub_file);
        let feed = alice.feed_after(0, 100_000).unwrap();
        for entry in feed.iter().filter(|e| e.lsn <= acked) {
            assert!(
                held.contains(&entry.change.key),
                "acknowledged change {:?} (lsn {}) is on the hub",
                entry.change.key,
                entry.lsn
            );
        }
        hub_file.close().unwrap();
    }

    // The restarted hub presents the same certificate: the old pin works.
    let config = write_config(dir.path(), quic_port);
    let hub = Hub::start(&config);
    assert_eq!(hub.pin(), pin, "the development identity is kept");
    let report = syncline::sync_once(
        &alice,
        &format!("quic://127.0.0.1:{quic_port}?pin={pin}"),
        sync,
    )
    .await
    .unwrap();
    assert!(report.pushed <= 2_000, "{report:?}");
    assert_eq!(keys(&alice).len(), 2_050);
    let carol_db = dir.path().join("carol.redb");
    let out = sync_command(&hub.quic, &carol_db);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        keys(&Replica::open(&carol_db, ReplicaConfig::default()).unwrap()),
        keys(&alice),
        "a fresh client gets everything alice wrote"
    );
    let (exited_ok, _) = hub.terminate();
    assert!(exited_ok);
}

/// A hub that serves only QUIC gives its metrics on a listener of its own,
/// and logs JSON lines when asked.
#[test]
fn a_quic_only_hub_serves_metrics_on_its_own_listener_and_logs_json() {
    let dir = tempfile::tempdir().unwrap();
    // A free port for the metrics listener (the exporter binds it itself).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "database = \"hub.redb\"\n[listen]\nquic = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:{port}\"\n[[collection]]\nname = \"todos\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut metrics_url = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("listening metrics ") {
            metrics_url = Some(url.to_owned());
            break;
        }
    }
    let url = metrics_url.expect("the hub prints its metrics listener");
    assert_eq!(url, format!("http://127.0.0.1:{port}/metrics"));
    let (status, body) = get(&format!("http://127.0.0.1:{port}"), "/metrics");
    assert!(status.contains("200"), "{status}: {body}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(wait_exit(&mut child), "exit 0 after SIGTERM");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.lines().count() >= 2
            && stderr
                .lines()
                .all(|l| l.starts_with('{') && l.ends_with('}'))
            && stderr.contains("\"message\":\"hub started\""),
        "JSON log lines: {stderr}"
    );
}

/// A config mistake names the file, the line and the key, and exits 2.
#[test]
fn a_config_error_names_the_file_the_line_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        "database = \"hub.redb\"\n[listen]\nhttp = \"127.0.0.1:0\"\n[[collection]]\nname = \"todos\"\npolicy = \"last-writer\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hub.toml") && stderr.contains("line 6") && stderr.contains("policy"),
        "{stderr}"
    );
}

/// A tenant syncs its part with `--scope`, under a token that grants it by
/// key prefix; a scope outside its grant is refused alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_syncs_its_scope_with_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        r#"database = "hub.redb"
[listen]
http = "127.0.0.1:0"
quic = "127.0.0.1:0"
[[token]]
principal = "admin"
token = "admin"
read = ["*"]
write = ["*"]
[[token]]
principal = "ws42"
token = "ws42"
read_prefixes = { todos = ["ws/42/"] }
write_prefixes = { todos = ["ws/42/"] }
[[collection]]
name = "todos"
"#,
    )
    .unwrap();
    let hub = Hub::start(&config);
    let admin = client(&dir.path().join("admin.redb"));
    for ws in [41, 42, 43] {
        for i in 0..5 {
            admin
                .collection("todos")
                .unwrap()
                .put(format!("ws/{ws}/{i}"), i as i64)
                .unwrap();
        }
    }
    syncline::sync_once(&admin, &hub.http, SyncConfig::default().with_token("admin"))
        .await
        .unwrap();

    let db = dir.path().join("tenant.redb");
    let out = Command::new(BIN)
        .args([
            "sync",
            &hub.http,
            "--collection",
            "todos",
            "--progress",
            "none",
        ])
        .args(["--scope", "todos=ws/42/", "--scope", "todos=ws/43/", "--db"])
        .arg(&db)
        .env("SYNCLINE_TOKEN", "ws42")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("refused todos/ws/43/*"), "{stderr}");
    let tenant = Replica::open(&db, ReplicaConfig::default()).unwrap();
    let held = keys(&tenant);
    assert_eq!(held.len(), 5);
    assert!(
        held.iter()
            .all(|k| k.as_str().unwrap().starts_with("ws/42/"))
    );
    let (ok, _) = hub.terminate();
    assert!(ok);
}
