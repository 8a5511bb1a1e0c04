//! A hub and two clients in one process, over the loopback transport.
//!
//! Both clients edit the same records while offline, come back online,
//! and converge with the hub. Run with `cargo run --example quickstart`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use syncline::transport::Limits;
use syncline::transport::loopback::LoopbackNetwork;
use syncline::{
    CollectionConfig, Replica, ReplicaConfig, Scan, Status, SyncConfig, SyncEngine, SyncServer,
};

#[derive(Debug, Serialize, Deserialize)]
struct Todo {
    title: String,
    done: bool,
}

fn open(dir: &std::path::Path, name: &str) -> Result<Replica, Box<dyn std::error::Error>> {
    let replica = Replica::open(dir.join(format!("{name}.redb")), ReplicaConfig::default())?;
    replica.define_collection("todos", CollectionConfig::default())?;
    Ok(replica)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let hub = open(dir.path(), "hub")?;
    let laptop = open(dir.path(), "laptop")?;
    let phone = open(dir.path(), "phone")?;

    // The hub serves; each client runs a sync engine towards it.
    let net = LoopbackNetwork::new(42);
    let _server = net.serve(
        "hub",
        SyncServer::new(hub.clone()).into_service(),
        Limits::default(),
    )?;
    let sync = SyncConfig {
        backoff_max: Duration::from_millis(200),
        ..SyncConfig::default()
    };
    let engines = [
        (
            "laptop",
            SyncEngine::start(laptop.clone(), net.connector("laptop", "hub"), sync.clone()),
        ),
        (
            "phone",
            SyncEngine::start(phone.clone(), net.connector("phone", "hub"), sync),
        ),
    ];

    // Both clients go offline and edit the same records.
    net.set_online("laptop", false);
    net.set_online("phone", false);
    let todos = laptop.collection("todos")?;
    todos.put_typed(
        "milk",
        &Todo {
            title: "buy milk".into(),
            done: false,
        },
    )?;
    todos.put_typed(
        "bread",
        &Todo {
            title: "buy bread".into(),
            done: false,
        },
    )?;
    let mut txn = phone.transaction();
    txn.put_typed(
        "todos",
        "milk",
        &Todo {
            title: "buy oat milk".into(),
            done: true,
        },
    )?;
    txn.put_typed(
        "todos",
        "eggs",
        &Todo {
            title: "buy eggs".into(),
            done: false,
        },
    )?;
    txn.commit()?;
    phone.collection("todos")?.delete("bread")?;
    println!("offline edits made on both clients");

    // Back online: the engines reconnect, push, pull, and settle.
    net.set_online("laptop", true);
    net.set_online("phone", true);
    for (_, engine) in &engines {
        engine.sync_now().await?;
    }
    for (_, engine) in &engines {
        engine.sync_now().await?;
        engine.status().wait_for(|s| *s == Status::Idle).await?;
    }

    for (name, replica) in [("hub", &hub), ("laptop", &laptop), ("phone", &phone)] {
        println!("{name}:");
        let todos = replica.collection("todos")?;
        for (key, _) in todos.scan(Scan::all())? {
            let todo: Option<Todo> = todos.get_typed(key.clone())?;
            println!("  {key}: {todo:?}");
        }
    }
    let reference = hub.collection("todos")?.states()?;
    assert_eq!(laptop.collection("todos")?.states()?, reference);
    assert_eq!(phone.collection("todos")?.states()?, reference);
    println!("converged: identical records, tombstones and winning stamps included");
    for (name, engine) in engines {
        let s = engine.stats();
        println!(
            "{name}: pushed {} pulled {} pending {} last error {:?}",
            s.pushed, s.pulled, s.pending, s.last_error
        );
        engine.stop().await;
    }
    Ok(())
}
