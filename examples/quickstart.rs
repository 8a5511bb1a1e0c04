//! Two replicas edit offline, then exchange their feeds and converge.
//!
//! Run with `cargo run --example quickstart`.

use serde::{Deserialize, Serialize};
use syncline::{CollectionConfig, Replica, ReplicaConfig, Scan};

#[derive(Debug, Serialize, Deserialize)]
struct Todo {
    title: String,
    done: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let laptop = Replica::open(dir.path().join("laptop.redb"), ReplicaConfig::default())?;
    let phone = Replica::open(dir.path().join("phone.redb"), ReplicaConfig::default())?;
    for replica in [&laptop, &phone] {
        replica.define_collection("todos", CollectionConfig::default())?;
    }

    // Both write while offline; each write is durable when it returns.
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

    // Back online: each applies the other's feed (the sync engine automates this).
    let from_laptop: Vec<_> = laptop
        .feed_after(0, 1000)?
        .into_iter()
        .map(|e| e.change)
        .collect();
    let from_phone: Vec<_> = phone
        .feed_after(0, 1000)?
        .into_iter()
        .map(|e| e.change)
        .collect();
    phone.apply_remote_from(Some(laptop.id()), &from_laptop)?;
    laptop.apply_remote_from(Some(phone.id()), &from_phone)?;

    for (name, replica) in [("laptop", &laptop), ("phone", &phone)] {
        println!("{name} ({}):", replica.id());
        for (key, _) in replica.collection("todos")?.scan(Scan::all())? {
            let todo: Todo = replica
                .collection("todos")?
                .get_typed(key.clone())?
                .unwrap();
            println!("  {key}: {todo:?}");
        }
    }
    assert_eq!(
        laptop.collection("todos")?.states()?,
        phone.collection("todos")?.states()?,
        "replicas converge"
    );
    println!("converged: identical records, tombstones and winning stamps included");
    Ok(())
}
