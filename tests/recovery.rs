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
