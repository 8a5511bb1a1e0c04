//! Durability: a writer killed with SIGKILL mid-stream loses no write it
//! acknowledged.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use syncline::{CollectionConfig, Replica, ReplicaConfig, Value};

const CHILD_ENV: &str = "SYNCLINE_RECOVERY_CHILD_DB";

/// Run as a child process by `sigkill_loses_no_acknowledged_write`: writes
/// records one by one forever, printing each key once its write returned.
/// Without the environment variable it does nothing.
#[test]
#[ignore = "child process of sigkill_loses_no_acknowledged_write"]
fn recovery_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let r = Replica::open(&path, ReplicaConfig::default()).unwrap();
    let todos = r
        .define_collection("todos", CollectionConfig::default())
        .unwrap();
    let mut txn_round = 0u64;
    for i in 0u64.. {
        if i % 10 == 9 {
            // Every tenth acknowledgement is a two-record transaction.
            txn_round += 1;
            let mut txn = r.transaction();
            txn.put("todos", format!("t{txn_round}a"), i as i64).put(
                "todos",
                format!("t{txn_round}b"),
                i as i64,
            );
            txn.commit().unwrap();
            println!("ack t{txn_round}a {i}");
            println!("ack t{txn_round}b {i}");
        } else {
            todos.put(format!("k{i}"), i as i64).unwrap();
            println!("ack k{i} {i}");
        }
    }
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "recovery_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < 200 {
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(rest) = line.strip_prefix("ack ") {
            acked.push(rest.to_string());
        }
    }
    // SIGKILL: no destructors, no flush, mid-write.
    child.kill().unwrap();
    child.wait().unwrap();
    // Whatever the child printed before it died was acknowledged too.
    for line in lines.map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("ack ") {
            acked.push(rest.to_string());
        }
    }

    let r = Replica::open(&path, ReplicaConfig::default()).unwrap();
    let todos = r.collection("todos").unwrap();
    for ack in &acked {
        let (key, value) = ack.split_once(' ').unwrap();
        let value: i64 = value.parse().unwrap();
        assert_eq!(
            todos.get(key).unwrap(),
            Some(Value::Int(value)),
            "acknowledged {key} lost"
        );
    }
    // The feed holds every stored change exactly once, gap-free.
    let feed = r.feed_after(0, usize::MAX).unwrap();
    assert!(feed.len() >= acked.len());
    assert!(feed.iter().enumerate().all(|(i, e)| e.lsn == i as u64 + 1));
    assert!(
        feed.last().unwrap().group_end,
        "no half-written transaction at the end"
    );
}

/// Kills across processes over HTTP: a client mid-pull, and a hub that
/// acknowledged pushes.
#[cfg(feature = "http")]
mod over_http {
    use std::collections::{BTreeMap, BTreeSet};
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::Duration;

    use syncline::transport::Connector;
    use syncline::transport::http::{HttpClient, HttpClientConfig, HttpServer, HttpServerConfig};
    use syncline::{
        CollectionConfig, Direction, Key, Replica, ReplicaConfig, ReplicaId, Scan, SyncConfig,
        SyncEngine, SyncEvent, SyncServer, Value,
    };

    const DB_ENV: &str = "SYNCLINE_RECOVERY_HTTP_DB";
    const HUB_ENV: &str = "SYNCLINE_RECOVERY_HTTP_HUB";
    /// Records on the hub, in transactions of `GROUP`.
    const RECORDS: u64 = 100_000;
    const GROUP: u64 = 250;
    /// How long one awaited line or sync may take before the test fails
    /// (a safety net, not a pass condition).
    const PATIENCE: Duration = Duration::from_secs(300);

    /// Runs test `name` of this binary as a child process with `envs`; its
    /// stdout lines arrive on the receiver.
    fn spawn_child(name: &str, envs: &[(&str, String)]) -> (Child, mpsc::Receiver<String>) {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                &format!("over_http::{name}"),
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        (child, rx)
    }

    /// The first line the child prints that `pick` accepts.
    fn wait_line<T>(lines: &mpsc::Receiver<String>, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        loop {
            let line = lines
                .recv_timeout(PATIENCE)
                .expect("the child printed nothing in time, or ended");
            if let Some(found) = pick(&line) {
                return found;
            }
        }
    }

    /// What follows `marker` in `line` (the test harness may print its
    /// own words before the child's first line).
    fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
        line.split_once(marker).map(|(_, rest)| rest)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn http(url: &str) -> Arc<dyn Connector> {
        Arc::new(HttpClient::new(url, HttpClientConfig::new()).unwrap())
    }

    fn key(group: u64, i: u64) -> String {
        format!("g{group:04}-{i:03}")
    }

    /// Run as a child by `sigkill_mid_pull_keeps_the_cursor_and_the_records_together`:
    /// pulls everything from the hub into a file, printing the remote lsn
    /// after each applied batch. Without the environment it does nothing.
    #[test]
    #[ignore = "child process of sigkill_mid_pull_keeps_the_cursor_and_the_records_together"]
    fn child_puller() {
        let (Ok(path), Ok(hub)) = (std::env::var(DB_ENV), std::env::var(HUB_ENV)) else {
            return;
        };
        runtime().block_on(async {
            let r = Replica::open(&path, ReplicaConfig::default()).unwrap();
            r.define_collection("todos", CollectionConfig::default())
                .unwrap();
            let config = SyncConfig {
                on_demand: true,
                // Short, so that the kill finds durable and deferred
                // batches alike.
                durable_interval: Duration::from_millis(100),
                ..SyncConfig::default().with_direction(Direction::Pull)
            };
            let engine = SyncEngine::start(r, http(&hub), config);
            let mut events = engine.events();
            tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(SyncEvent::Pulled { through, .. }) => println!("pulled {through}"),
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    }
                }
            });
            engine.pull().await.unwrap();
            println!("done");
            std::future::pending::<()>().await;
        });
    }

    /// A client pulling 100,000 records (transactions of 250) over HTTP is
    /// SIGKILLed mid-pull. Reopened, it holds exactly the hub's changes up
    /// to its pull cursor, whole transactions only; a resumed pull ends
    /// with exactly the hub's records.
    #[test]
    fn sigkill_mid_pull_keeps_the_cursor_and_the_records_together() {
        let rt = runtime();
        let hub = Replica::in_memory(ReplicaConfig {
            replica_id: Some(ReplicaId::from_bytes([7; 16])),
            ..ReplicaConfig::default()
        })
        .unwrap();
        hub.define_collection("todos", CollectionConfig::default())
            .unwrap();
        for group in 0..RECORDS / GROUP {
            let mut txn = hub.transaction();
            for i in 0..GROUP {
                txn.put("todos", key(group, i), (group * GROUP + i) as i64);
            }
            txn.commit().unwrap();
        }
        let server = rt
            .block_on(HttpServer::bind(
                "127.0.0.1:0".parse().unwrap(),
                SyncServer::new(hub.clone()).into_service(),
                HttpServerConfig::new(),
            ))
            .unwrap();
        let url = server.url();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("puller.redb");
        let (mut child, lines) = spawn_child(
            "child_puller",
            &[(DB_ENV, path.display().to_string()), (HUB_ENV, url.clone())],
        );
        // Mid-pull: once about a third has been applied.
        let seen = wait_line(&lines, |line| {
            let through: u64 = after(line, "pulled ")?.parse().ok()?;
            (through >= RECORDS / 3).then_some(through)
        });
        child.kill().unwrap();
        child.wait().unwrap();
        let finished = lines.try_iter().any(|l| l.ends_with("done"));

        // The hub's lsn of every key.
        let lsn_of: BTreeMap<Key, u64> = hub
            .feed_after(0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| (e.change.key, e.lsn))
            .collect();
        let client = Replica::open(&path, ReplicaConfig::default()).unwrap();
        let cursor = client.peer_state(hub.id()).unwrap().pulled;
        let held: BTreeMap<Key, Value> = client
            .collection("todos")
            .unwrap()
            .scan(Scan::all())
            .unwrap()
            .into_iter()
            .collect();
        let expected: BTreeSet<&Key> = lsn_of
            .iter()
            .filter(|(_, lsn)| **lsn <= cursor)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            held.keys().collect::<BTreeSet<_>>(),
            expected,
            "the records are the hub's changes through the cursor {cursor} \
             (killed after batch {seen}, finished: {finished})"
        );
        // Whole transactions only.
        let mut per_group = BTreeMap::<&str, u64>::new();
        for k in held.keys() {
            let k = std::str::from_utf8(k.as_bytes()).unwrap();
            *per_group.entry(&k[..5]).or_default() += 1;
        }
        assert!(
            per_group.values().all(|n| *n == GROUP),
            "a half transaction"
        );
        for (k, v) in &held {
            assert_eq!(
                hub.collection("todos")
                    .unwrap()
                    .get(k.clone())
                    .unwrap()
                    .as_ref(),
                Some(v)
            );
        }

        // Resumed: exactly the hub's records.
        rt.block_on(async {
            let engine = SyncEngine::start(
                client.clone(),
                http(&url),
                SyncConfig {
                    on_demand: true,
                    ..SyncConfig::default().with_direction(Direction::Pull)
                },
            );
            engine.wait_synced(PATIENCE).await.unwrap();
            engine.stop().await;
        });
        let all = |r: &Replica| r.collection("todos").unwrap().scan(Scan::all()).unwrap();
        let held = all(&client);
        assert_eq!(held.len() as u64, RECORDS);
        assert_eq!(held, all(&hub));
        assert_eq!(client.peer_state(hub.id()).unwrap().pulled, hub.last_lsn());
        rt.block_on(server.shutdown());
    }

    /// Run as a child by `sigkill_hub_keeps_every_acknowledged_push`: serves
    /// a file replica over HTTP and prints its address. Without the
    /// environment it does nothing.
    #[test]
    #[ignore = "child process of sigkill_hub_keeps_every_acknowledged_push"]
    fn child_hub() {
        let Ok(path) = std::env::var(DB_ENV) else {
            return;
        };
        runtime().block_on(async {
            let hub = Replica::open(&path, ReplicaConfig::default()).unwrap();
            hub.define_collection("todos", CollectionConfig::default())
                .unwrap();
            let server = HttpServer::bind(
                "127.0.0.1:0".parse().unwrap(),
                SyncServer::new(hub).into_service(),
                HttpServerConfig::new(),
            )
            .await
            .unwrap();
            println!("listening {}", server.url());
            std::future::pending::<()>().await;
        });
    }

    /// A hub that acknowledged pushes is SIGKILLed while a client keeps
    /// pushing: every push the client saw acknowledged is in the reopened
    /// hub file.
    #[test]
    fn sigkill_hub_keeps_every_acknowledged_push() {
        let rt = runtime();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.redb");
        let (mut child, lines) = spawn_child("child_hub", &[(DB_ENV, path.display().to_string())]);
        let url = wait_line(&lines, |line| after(line, "listening ").map(str::to_string));

        let client = Replica::in_memory(ReplicaConfig::default()).unwrap();
        let todos = client
            .define_collection("todos", CollectionConfig::default())
            .unwrap();
        let engine = rt.block_on(async {
            SyncEngine::start(
                client.clone(),
                http(&url),
                SyncConfig {
                    on_demand: true,
                    ..SyncConfig::default().with_direction(Direction::Push)
                },
            )
        });
        // Rounds of ten writes, each pushed; the keys of each acknowledged
        // round go to the test, which kills the hub after 30 rounds while
        // the pushes go on.
        let (acked_tx, acked_rx) = mpsc::channel::<Vec<String>>();
        let pusher = rt.spawn(async move {
            for round in 0u64.. {
                let keys: Vec<String> = (0..10).map(|i| format!("r{round}-{i}")).collect();
                if round % 2 == 0 {
                    let mut txn = client.transaction();
                    for k in &keys {
                        txn.put("todos", k.as_str(), round as i64);
                    }
                    txn.commit().unwrap();
                } else {
                    for k in &keys {
                        todos.put(k.as_str(), round as i64).unwrap();
                    }
                }
                match engine.push().await {
                    Ok(report) => {
                        assert_eq!(report.pushed, keys.len());
                        if acked_tx.send(keys).is_err() {
                            return;
                        }
                    }
                    // The hub is gone.
                    Err(_) => return,
                }
            }
        });
        let mut acked = Vec::new();
        while acked.len() < 30 {
            acked.push(
                acked_rx
                    .recv_timeout(PATIENCE)
                    .expect("an acknowledged push"),
            );
        }
        child.kill().unwrap();
        child.wait().unwrap();
        rt.block_on(pusher).unwrap();
        acked.extend(acked_rx.try_iter());

        let hub = Replica::open(&path, ReplicaConfig::default()).unwrap();
        let todos = hub.collection("todos").unwrap();
        for k in acked.iter().flatten() {
            assert!(
                todos.get(k.as_str()).unwrap().is_some(),
                "acknowledged {k} lost"
            );
        }
    }
}
