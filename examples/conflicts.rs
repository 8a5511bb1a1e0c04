//! Two clients edit the same record offline; after sync both see the same
//! winner and the same conflict, and resolving it on one client clears it
//! everywhere.
//!
//! Run with `cargo run --example conflicts`.

use syncline::transport::Limits;
use syncline::transport::loopback::LoopbackNetwork;
use syncline::{
    CollectionConfig, Replica, ReplicaConfig, SyncConfig, SyncEngine, SyncServer, Value,
};

fn open(dir: &std::path::Path, name: &str) -> Result<Replica, Box<dyn std::error::Error>> {
    let replica = Replica::open(dir.join(format!("{name}.redb")), ReplicaConfig::default())?;
    replica.define_collection("notes", CollectionConfig::default())?;
    Ok(replica)
}

fn show(name: &str, replica: &Replica) -> Result<(), Box<dyn std::error::Error>> {
    let notes = replica.collection("notes")?;
    println!("  {name}: value {:?}", notes.get("plan")?);
    for c in notes.conflicts_of("plan")? {
        println!(
            "  {name}:   conflict: {:?} (from {}, stamp {})",
            c.value, c.loser.id.origin, c.loser.stamp
        );
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (hub, alice, bob) = (
        open(dir.path(), "hub")?,
        open(dir.path(), "alice")?,
        open(dir.path(), "bob")?,
    );
    let net = LoopbackNetwork::new(7);
    let _server = net.serve(
        "hub",
        SyncServer::new(hub.clone()).into_service(),
        Limits::default(),
    )?;
    let on_demand = SyncConfig {
        on_demand: true,
        ..SyncConfig::default()
    };
    let ea = SyncEngine::start(
        alice.clone(),
        net.connector("alice", "hub"),
        on_demand.clone(),
    );
    let eb = SyncEngine::start(bob.clone(), net.connector("bob", "hub"), on_demand);

    alice
        .collection("notes")?
        .put("plan", "picnic on saturday")?;
    ea.sync_now().await?;
    eb.sync_now().await?;

    println!("offline, both edit the plan:");
    alice.collection("notes")?.put("plan", "picnic on sunday")?;
    bob.collection("notes")?.put("plan", "museum on saturday")?;
    for engine in [&ea, &eb, &ea] {
        engine.sync_now().await?;
    }
    println!("after sync, everyone has the same winner and the same conflict:");
    for (name, r) in [("hub", &hub), ("alice", &alice), ("bob", &bob)] {
        show(name, r)?;
    }

    println!("alice resolves it:");
    alice.collection("notes")?.resolve(
        "plan",
        Some(Value::from("picnic on sunday, museum on saturday")),
    )?;
    for engine in [&ea, &eb] {
        engine.sync_now().await?;
    }
    for (name, r) in [("hub", &hub), ("alice", &alice), ("bob", &bob)] {
        show(name, r)?;
    }
    println!(
        "alice: {} conflicts counted by sync, bob: {}",
        ea.stats().conflicts,
        eb.stats().conflicts
    );
    Ok(())
}
