//! The scenarios that trip real sync systems, each named for what it checks.

mod common;

use std::time::Duration;

use common::{T0, manual_config, memory_replica, open_node, quick_sync};
use syncline::{
    Change, ClockDrift, CollectionConfig, ManualTime, Op, RefusalCode, Replica, ReplicaConfig,
    ReplicaId, Stamp, SyncConfig, SyncEngine, SyncError, Value, Watch,
};

/// What a replica's feed sends a new peer: its current state.
fn feed(r: &Replica) -> Vec<Change> {
    r.feed_after(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect()
}

/// The changes made on a replica since `watch` began, superseded ones
/// included (the feed sends only what merge needs).
fn made(watch: &mut Watch, by: &Replica) -> Vec<Change> {
    std::iter::from_fn(|| watch.try_recv().unwrap())
        .filter(|e| e.source.is_none() && e.change.id.origin == by.id())
        .map(|e| e.change.clone())
        .collect()
}

/// All permutations of `items` (Heap's algorithm).
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    fn heap<T: Clone>(k: usize, a: &mut Vec<T>, out: &mut Vec<Vec<T>>) {
        if k <= 1 {
            out.push(a.clone());
            return;
        }
        for i in 0..k {
            heap(k - 1, a, out);
            let j = if k.is_multiple_of(2) { i } else { 0 };
            a.swap(j, k - 1);
        }
    }
    let mut out = Vec::new();
    heap(items.len(), &mut items.to_vec(), &mut out);
    out
}

#[test]
fn create_write_delete_write_again_in_every_order() {
    let time = ManualTime::new(T0);
    let a = memory_replica(1, &time);
    let mut watch = a.watch();
    let todos = a.collection("todos").unwrap();
    todos.put("k", "created").unwrap();
    time.advance(Duration::from_millis(1));
    todos.put("k", "written").unwrap();
    time.advance(Duration::from_millis(1));
    todos.delete("k").unwrap();
    time.advance(Duration::from_millis(1));
    todos.put("k", "written again").unwrap();
    let changes = made(&mut watch, &a);
    let orders = permutations(&changes);
    assert_eq!(orders.len(), 24);
    let expected = a.collection("todos").unwrap().states().unwrap();
    for order in orders {
        // One change per batch, in this order.
        let b = memory_replica(2, &time);
        for c in &order {
            b.apply_remote(std::slice::from_ref(c)).unwrap();
        }
        assert_eq!(b.collection("todos").unwrap().states().unwrap(), expected);
        assert_eq!(
            b.collection("todos").unwrap().get("k").unwrap(),
            Some(Value::from("written again"))
        );
    }
}

#[test]
fn delete_at_10_beats_update_at_9_from_a_slow_clock() {
    let slow = ManualTime::new(T0 + 5);
    let fast = ManualTime::new(T0 + 10);
    let writer = memory_replica(2, &slow);
    let deleter = memory_replica(1, &fast);
    let (mut writes, mut deletes) = (writer.watch(), deleter.watch());
    // The writer creates the record at t=5; the deleter sees it.
    writer
        .collection("todos")
        .unwrap()
        .put("k", "original")
        .unwrap();
    deleter.apply_remote(&feed(&writer)).unwrap();
    // Concurrently: the deleter deletes at t=10; the writer, whose clock reads
    // 9 and who has not seen the delete, updates at t=9.
    slow.set(T0 + 9);
    deleter.collection("todos").unwrap().delete("k").unwrap();
    writer
        .collection("todos")
        .unwrap()
        .put("k", "updated")
        .unwrap();
    let del: Vec<Change> = made(&mut deletes, &deleter);
    let upd: Vec<Change> = made(&mut writes, &writer);
    assert_eq!(del[0].stamp.millis(), T0 + 10);
    assert_eq!(upd[1].stamp.millis(), T0 + 9);
    deleter.apply_remote(&upd).unwrap();
    writer.apply_remote(&del).unwrap();
    for r in [&deleter, &writer] {
        let state = r.collection("todos").unwrap().record("k").unwrap().unwrap();
        assert!(state.is_tombstone(), "the later delete wins");
    }
    assert_eq!(
        deleter.collection("todos").unwrap().states().unwrap(),
        writer.collection("todos").unwrap().states().unwrap()
    );
}

#[test]
fn a_writer_that_saw_the_delete_writes_after_it_even_with_a_slow_clock() {
    let fast = ManualTime::new(T0 + 10_000);
    let slow = ManualTime::new(T0);
    let deleter = memory_replica(1, &fast);
    let writer = memory_replica(2, &slow);
    let (mut writes, mut deletes) = (writer.watch(), deleter.watch());
    deleter
        .collection("todos")
        .unwrap()
        .put("k", "original")
        .unwrap();
    deleter.collection("todos").unwrap().delete("k").unwrap();
    let deleted = made(&mut deletes, &deleter);
    writer.apply_remote(&deleted).unwrap();
    // The writer's clock is 10 s behind, but it has seen the delete's stamp:
    // its new write is stamped after it, so the record comes back.
    writer
        .collection("todos")
        .unwrap()
        .put("k", "recreated")
        .unwrap();
    let upd: Vec<Change> = made(&mut writes, &writer);
    assert!(upd[0].stamp > deleted[1].stamp);
    deleter.apply_remote(&upd).unwrap();
    for r in [&deleter, &writer] {
        assert_eq!(
            r.collection("todos").unwrap().get("k").unwrap(),
            Some(Value::from("recreated"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_a_year_ahead_is_refused_and_nobody_else_notices() {
    let dir = tempfile::tempdir().unwrap();
    let (net, hub, _server) = common::loopback_hub(dir.path(), 31).await;
    let year_ms = 365 * 24 * 3600 * 1000;
    let wall = syncline::TimeSource::now_millis(&syncline::SystemTimeSource);
    let future = ReplicaConfig {
        replica_id: Some(ReplicaId::from_bytes([9; 16])),
        ..ReplicaConfig::default().with_time(ManualTime::new(wall + year_ms))
    };
    let ahead = Replica::open(dir.path().join("ahead.redb"), future).unwrap();
    ahead
        .define_collection("todos", CollectionConfig::default())
        .unwrap();
    ahead
        .collection("todos")
        .unwrap()
        .put("from-the-future", 1i64)
        .unwrap();
    let honest = open_node(dir.path(), "honest", 1).await;
    honest
        .collection("todos")
        .unwrap()
        .put("from-now", 2i64)
        .unwrap();

    let on_demand = || SyncConfig {
        on_demand: true,
        ..quick_sync(1)
    };
    let e_ahead = SyncEngine::start(ahead.clone(), net.connector("ahead", "hub"), on_demand());
    let e_honest = SyncEngine::start(honest.clone(), net.connector("honest", "hub"), on_demand());
    match e_ahead.sync_now().await.unwrap_err() {
        SyncError::ClockDrift(ClockDrift::LocalAhead(r)) => {
            assert_eq!(r.code(), RefusalCode::UNPROCESSABLE)
        }
        other => panic!("expected a clock drift refusal, got {other}"),
    }
    e_honest.sync_now().await.unwrap();
    assert_eq!(
        hub.collection("todos").unwrap().get("from-now").unwrap(),
        Some(Value::Int(2))
    );
    assert_eq!(
        hub.collection("todos")
            .unwrap()
            .get("from-the-future")
            .unwrap(),
        None
    );
    for r in [&hub, &honest] {
        assert!(
            r.clock().millis() < wall + 3_600_000,
            "no clock jumped a year"
        );
    }
    // Even replaying its change directly is refused by the store itself.
    let err = honest.apply_remote(&feed(&ahead)).unwrap_err();
    assert!(matches!(err, syncline::ApplyError::ClockDrift(_)));
}

#[test]
fn the_same_value_written_with_different_stamps_ends_with_identical_metadata() {
    let time = ManualTime::new(T0);
    let a = memory_replica(1, &time);
    let b = memory_replica(2, &time);
    a.collection("todos").unwrap().put("k", "same").unwrap();
    time.advance(Duration::from_millis(3));
    b.collection("todos").unwrap().put("k", "same").unwrap();
    let (fa, fb) = (feed(&a), feed(&b));
    a.apply_remote(&fb).unwrap();
    b.apply_remote(&fa).unwrap();
    let sa = a.collection("todos").unwrap().record("k").unwrap().unwrap();
    let sb = b.collection("todos").unwrap().record("k").unwrap().unwrap();
    assert_eq!(sa, sb, "same value, same winning version");
    assert_eq!(
        sa.version.id.origin,
        b.id(),
        "the later stamp wins even when the value is equal"
    );
    assert_eq!(
        a.collection("todos").unwrap().history("k").unwrap(),
        b.collection("todos").unwrap().history("k").unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_is_never_seen_half_applied_on_another_replica() {
    let dir = tempfile::tempdir().unwrap();
    let (net, _hub, _server) = common::loopback_hub(dir.path(), 37).await;
    let writer = open_node(dir.path(), "writer", 1).await;
    let reader = open_node(dir.path(), "reader", 2).await;
    // Tiny batches: a 40-record transaction must still travel whole.
    let small = || SyncConfig {
        batch_size: 3,
        ..quick_sync(2)
    };
    let _ew = SyncEngine::start(writer.clone(), net.connector("writer", "hub"), small());
    let _er = SyncEngine::start(reader.clone(), net.connector("reader", "hub"), small());
    let mut seen = reader.watch();
    for round in 0..3i64 {
        let mut txn = writer.transaction();
        for k in 0..40 {
            txn.put("todos", format!("t{k}"), round);
        }
        txn.commit().unwrap();
    }
    // After every commit on the reader, the 40 records hold one round's values.
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), seen.recv())
            .await
            .unwrap()
            .unwrap();
        // One scan is one read transaction: a consistent snapshot.
        let rows = reader
            .collection("todos")
            .unwrap()
            .scan(syncline::Scan::prefix("t"))
            .unwrap();
        let values: Vec<Value> = rows.into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            values.len(),
            40,
            "after lsn {}: a half-applied transaction",
            event.lsn
        );
        assert!(
            values.windows(2).all(|w| w[0] == w[1]),
            "after lsn {}: a half-applied transaction {values:?}",
            event.lsn
        );
        if values[0] == Value::Int(2) {
            break;
        }
    }
}

#[test]
fn redelivery_after_a_crash_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualTime::new(T0);
    let source = memory_replica(1, &time);
    let mut txn = source.transaction();
    for k in 0..20 {
        txn.put("todos", format!("k{k}"), k as i64);
    }
    txn.commit().unwrap();
    source.collection("todos").unwrap().delete("k3").unwrap();
    // The feed sends current state: 20 records, `k3` as its delete.
    let batch = feed(&source);
    assert_eq!(batch.len(), 20);
    let path = dir.path().join("target.redb");
    let (states, lsn, clock) = {
        let target = Replica::open(&path, manual_config(2, &time)).unwrap();
        target
            .define_collection("todos", CollectionConfig::default())
            .unwrap();
        assert_eq!(target.apply_remote(&batch).unwrap().applied, 20);
        (
            target.collection("todos").unwrap().states().unwrap(),
            target.last_lsn(),
            target.clock(),
        )
    };
    // "Crash" and reopen; the sender did not see the ack and sends it all again.
    let target = Replica::open(&path, manual_config(2, &time)).unwrap();
    let report = target.apply_remote(&batch).unwrap();
    assert_eq!((report.applied, report.duplicates), (0, 20));
    assert_eq!(target.last_lsn(), lsn);
    assert_eq!(target.clock(), clock);
    assert_eq!(
        target.collection("todos").unwrap().states().unwrap(),
        states
    );
    let _ = (Op::Delete, Stamp::ZERO);
}
