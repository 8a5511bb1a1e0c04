//! Merge policies beyond LWW: field-level, ranked origins, custom resolvers,
//! conflict records, and policy agreement in the handshake.

mod common;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use common::{T0, eventually, open_node, quick_sync};
use serde::{Deserialize, Serialize};
use syncline::transport::Limits;
use syncline::transport::loopback::LoopbackNetwork;
use syncline::{
    Candidate, Change, CollectionConfig, ManualTime, MergePolicy, OpenError, Ranks, RefusalCode,
    Replica, ReplicaConfig, ReplicaId, Resolver, SyncConfig, SyncEngine, SyncError, SyncServer,
    Value,
};

fn replica(id: u8, time: &ManualTime, policy: MergePolicy) -> Replica {
    let config = ReplicaConfig {
        replica_id: Some(ReplicaId::from_bytes([id; 16])),
        ..ReplicaConfig::default()
            .with_time(time.clone())
            .with_resolver(MaxWins)
    };
    let r = Replica::in_memory(config).unwrap();
    r.define_collection("docs", CollectionConfig::default().with_policy(policy))
        .unwrap();
    r
}

fn feed(r: &Replica) -> Vec<Change> {
    r.feed_after(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect()
}

/// Each applies the other's feed.
fn exchange(a: &Replica, b: &Replica) {
    let (fa, fb) = (feed(a), feed(b));
    a.apply_remote(&fb).unwrap();
    b.apply_remote(&fa).unwrap();
}

fn fields(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(f, v)| (f.to_string(), v.clone()))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Task {
    title: String,
    done: bool,
    owner: Option<String>,
}

#[test]
fn field_level_concurrent_edits_of_different_fields_both_survive() {
    let time = ManualTime::new(T0);
    let a = replica(1, &time, MergePolicy::FieldLww);
    let b = replica(2, &time, MergePolicy::FieldLww);
    let task = Task {
        title: "write docs".into(),
        done: false,
        owner: None,
    };
    a.collection("docs")
        .unwrap()
        .put_typed("t1", &task)
        .unwrap();
    exchange(&a, &b);
    // Offline, concurrently: A renames, B completes.
    time.advance(Duration::from_millis(5));
    a.collection("docs")
        .unwrap()
        .patch("t1", fields(&[("title", Value::from("write better docs"))]))
        .unwrap();
    b.collection("docs")
        .unwrap()
        .patch("t1", fields(&[("done", Value::Bool(true))]))
        .unwrap();
    exchange(&a, &b);
    for r in [&a, &b] {
        let got: Task = r
            .collection("docs")
            .unwrap()
            .get_typed("t1")
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            Task {
                title: "write better docs".into(),
                done: true,
                owner: None
            }
        );
    }
    assert_eq!(
        a.collection("docs").unwrap().states().unwrap(),
        b.collection("docs").unwrap().states().unwrap()
    );
    // A patch stays a patch on a field-level collection.
    assert!(
        feed(&b)
            .iter()
            .any(|c| matches!(c.op, syncline::Op::Patch(_)))
    );
}

#[test]
fn field_level_delete_masks_older_fields_and_newer_fields_come_back_alone() {
    let time = ManualTime::new(T0);
    let a = replica(1, &time, MergePolicy::FieldLww);
    let b = replica(2, &time, MergePolicy::FieldLww);
    a.collection("docs")
        .unwrap()
        .put(
            "r",
            Value::Map(fields(&[("x", Value::Int(1)), ("y", Value::Int(1))])),
        )
        .unwrap();
    exchange(&a, &b);
    time.advance(Duration::from_millis(10));
    a.collection("docs").unwrap().delete("r").unwrap();
    // B, with a slow clock, writes a field "before" the delete without seeing it.
    let slow = ManualTime::new(T0 + 5);
    let c = replica(3, &slow, MergePolicy::FieldLww);
    c.apply_remote(&feed(&b)).unwrap();
    let slow_write: Vec<Change> = {
        let before = c.last_lsn();
        slow.set(T0 + 1);
        c.collection("docs")
            .unwrap()
            .patch("r", fields(&[("z", Value::Int(9))]))
            .unwrap();
        c.feed_after(before, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| e.change)
            .collect()
    };
    exchange(&a, &b);
    b.apply_remote(&slow_write).unwrap();
    a.apply_remote(&slow_write).unwrap();
    for r in [&a, &b] {
        assert_eq!(
            r.collection("docs").unwrap().get("r").unwrap(),
            None,
            "masked by the delete"
        );
    }
    // A field written after the delete brings the record back with that field only.
    time.advance(Duration::from_millis(10));
    b.collection("docs")
        .unwrap()
        .patch("r", fields(&[("y", Value::Int(2))]))
        .unwrap();
    exchange(&a, &b);
    for r in [&a, &b] {
        assert_eq!(
            r.collection("docs").unwrap().get("r").unwrap(),
            Some(Value::Map(fields(&[("y", Value::Int(2))])))
        );
    }
    assert!(matches!(
        a.collection("docs").unwrap().put("r", 5i64),
        Err(syncline::WriteError::NotAMap)
    ));
}

#[test]
fn ranked_hub_wins_and_clients_win() {
    let time = ManualTime::new(T0);
    let hub_id = ReplicaId::from_bytes([1; 16]);
    for (ranks, expected) in [
        (Ranks::hub_wins(hub_id), "hub"),
        (Ranks::clients_win(hub_id), "client"),
    ] {
        let hub = replica(1, &time, MergePolicy::Ranked(ranks.clone()));
        let client = replica(2, &time, MergePolicy::Ranked(ranks));
        hub.collection("docs").unwrap().put("k", "hub").unwrap();
        // The client writes later, without having seen the hub's write.
        time.advance(Duration::from_secs(1));
        client
            .collection("docs")
            .unwrap()
            .put("k", "client")
            .unwrap();
        exchange(&hub, &client);
        for r in [&hub, &client] {
            assert_eq!(
                r.collection("docs").unwrap().get("k").unwrap(),
                Some(Value::from(expected))
            );
        }
        // The loser is a conflict, the same on both.
        let conflicts = hub.collection("docs").unwrap().conflicts().unwrap();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(
            conflicts,
            client.collection("docs").unwrap().conflicts().unwrap()
        );
    }
}

/// The greatest number wins.
#[derive(Debug)]
struct MaxWins;

impl Resolver for MaxWins {
    fn name(&self) -> &str {
        "max-wins"
    }

    fn compare(&self, a: Candidate<'_>, b: Candidate<'_>) -> Ordering {
        let n = |c: Candidate<'_>| c.value.and_then(Value::as_i64);
        n(a).cmp(&n(b))
    }
}

#[test]
fn a_custom_resolver_decides_and_replicas_converge() {
    let time = ManualTime::new(T0);
    let policy = MergePolicy::Custom("max-wins".into());
    let a = replica(1, &time, policy.clone());
    let b = replica(2, &time, policy);
    a.collection("docs").unwrap().put("score", 40i64).unwrap();
    time.advance(Duration::from_millis(1));
    b.collection("docs").unwrap().put("score", 7i64).unwrap();
    exchange(&a, &b);
    for r in [&a, &b] {
        assert_eq!(
            r.collection("docs").unwrap().get("score").unwrap(),
            Some(Value::Int(40)),
            "40 beats the later 7"
        );
    }
}

#[test]
fn a_missing_resolver_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    {
        let r = Replica::open(&path, ReplicaConfig::default().with_resolver(MaxWins)).unwrap();
        r.define_collection(
            "docs",
            CollectionConfig::default().with_policy(MergePolicy::Custom("max-wins".into())),
        )
        .unwrap();
    }
    let err = Replica::open(&path, ReplicaConfig::default()).unwrap_err();
    assert!(
        matches!(
            &err,
            OpenError::Config(syncline::ConfigError::Policy {
                collection,
                source: syncline::PolicyError::UnknownResolver { name },
            }) if collection == "docs" && name == "max-wins"
        ),
        "{err}"
    );
    let r = Replica::in_memory(ReplicaConfig::default()).unwrap();
    let err = r
        .define_collection(
            "docs",
            CollectionConfig::default().with_policy(MergePolicy::Custom("nope".into())),
        )
        .unwrap_err();
    assert!(
        matches!(
            &err,
            syncline::WriteError::Policy(syncline::PolicyError::UnknownResolver { name }) if name == "nope"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_of_one_record_give_the_same_winner_and_conflict_everywhere_until_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let (net, hub, _server) = common::loopback_hub(dir.path(), 41).await;
    let a = open_node(dir.path(), "a", 1).await;
    let b = open_node(dir.path(), "b", 2).await;
    let on_demand = |seed| SyncConfig {
        on_demand: true,
        ..quick_sync(seed)
    };
    let ea = SyncEngine::start(a.clone(), net.connector("a", "hub"), on_demand(1));
    let eb = SyncEngine::start(b.clone(), net.connector("b", "hub"), on_demand(2));
    a.collection("todos").unwrap().put("t", "original").unwrap();
    ea.sync_now().await.unwrap();
    eb.sync_now().await.unwrap();

    // Both edit the same record offline.
    a.collection("todos").unwrap().put("t", "a's edit").unwrap();
    b.collection("todos").unwrap().put("t", "b's edit").unwrap();
    let mut events = eb.events();
    ea.sync_now().await.unwrap();
    eb.sync_now().await.unwrap();
    ea.sync_now().await.unwrap();
    let all = [&hub, &a, &b];
    let winner = hub.collection("todos").unwrap().get("t").unwrap();
    let conflicts = hub.collection("todos").unwrap().conflicts().unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    for r in all {
        assert_eq!(r.collection("todos").unwrap().get("t").unwrap(), winner);
        assert_eq!(
            r.collection("todos").unwrap().conflicts().unwrap(),
            conflicts
        );
    }
    assert_ne!(
        conflicts[0].value, winner,
        "the conflict keeps the losing version"
    );
    assert!(ea.stats().conflicts + eb.stats().conflicts >= 1);
    let saw_event = std::iter::from_fn(|| events.try_recv().ok())
        .any(|e| matches!(e, syncline::SyncEvent::Conflict { .. }));
    assert!(
        saw_event || ea.stats().conflicts == 1,
        "a conflict event or a count on the other side"
    );

    // Resolving on one client clears the conflict everywhere.
    a.collection("todos")
        .unwrap()
        .resolve("t", Some(Value::from("merged by hand")))
        .unwrap();
    ea.sync_now().await.unwrap();
    eb.sync_now().await.unwrap();
    eventually(
        &all,
        Duration::from_secs(10),
        "the resolution reaches everyone",
        || {
            all.iter().all(|r| {
                r.collection("todos").unwrap().get("t").unwrap()
                    == Some(Value::from("merged by hand"))
                    && r.collection("todos")
                        .unwrap()
                        .conflicts()
                        .unwrap()
                        .is_empty()
            })
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_refuses_a_collection_whose_policy_differs() {
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(43);
    let hub = open_node(dir.path(), "hub", 100).await;
    hub.define_collection(
        "notes",
        CollectionConfig::default().with_policy(MergePolicy::FieldLww),
    )
    .unwrap();
    let _server = net
        .serve(
            "hub",
            SyncServer::new(hub.clone()).into_service(),
            Limits::default(),
        )
        .unwrap();
    let client = open_node(dir.path(), "c", 1).await;
    client
        .define_collection("notes", CollectionConfig::default())
        .unwrap();
    let engine = SyncEngine::start(
        client,
        net.connector("c", "hub"),
        SyncConfig {
            on_demand: true,
            ..quick_sync(1)
        },
    );
    match engine.sync_now().await.unwrap_err() {
        SyncError::Refused(r) => {
            assert_eq!(r.code(), RefusalCode::CONFLICT);
            assert!(
                r.reason().contains("notes") && r.reason().contains("FieldLww"),
                "{}",
                r.reason()
            );
        }
        other => panic!("expected a refusal, got {other}"),
    }
}
