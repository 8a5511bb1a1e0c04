//! The hybrid logical clock through the store: monotonic across reopens with
//! the wall clock stepped back, drift rejection that moves nothing.

mod common;

use std::time::Duration;

use common::{T0, manual_config, memory_replica};
use syncline::{ApplyError, Change, CollectionConfig, ManualTime, Replica, Stamp};

#[test]
fn stamps_increase_across_reopen_with_clock_stepped_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let time = ManualTime::new(T0);
    let mut last = Stamp::ZERO;
    for round in 0..4 {
        let r = Replica::open(&path, manual_config(1, &time)).unwrap();
        let todos = r
            .define_collection("todos", CollectionConfig::default())
            .unwrap();
        for i in 0..5 {
            todos.put(format!("k{round}-{i}"), i as i64).unwrap();
            let stamp = r.clock();
            assert!(stamp > last, "round {round}: {stamp:?} after {last:?}");
            last = stamp;
        }
        drop(todos);
        drop(r);
        // The wall clock jumps back an hour before every reopen.
        time.step_back(Duration::from_secs(3600));
    }
    // Every stamp in the history is distinct and increasing in lsn order.
    let r = Replica::open(&path, manual_config(1, &time)).unwrap();
    let feed = r.feed_after(0, 1000).unwrap();
    assert_eq!(feed.len(), 20);
    assert!(
        feed.windows(2)
            .all(|w| w[0].change.stamp < w[1].change.stamp)
    );
}

/// The counters a restart resumes from are saved with each commit's feed
/// group: a remote batch's stamps and the sequence number must survive it,
/// even when the last commit applied only duplicates.
#[test]
fn clock_and_sequence_survive_a_reopen_after_remote_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let time = ManualTime::new(T0);
    let ahead = ManualTime::new(T0 + 30_000);
    let remote = memory_replica(2, &ahead);
    remote
        .collection("todos")
        .unwrap()
        .put("theirs", 1i64)
        .unwrap();
    let theirs: Vec<Change> = remote
        .feed_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect();

    let r = Replica::open(&path, manual_config(1, &time)).unwrap();
    let todos = r
        .define_collection("todos", CollectionConfig::default())
        .unwrap();
    let first = todos.put("mine", 1i64).unwrap();
    assert_eq!(r.apply_remote(&theirs).unwrap().applied, 1);
    assert_eq!(r.apply_remote(&theirs).unwrap().duplicates, 1);
    let clock = r.clock();
    assert!(clock >= theirs[0].stamp);
    drop((todos, r));

    let r = Replica::open(&path, manual_config(1, &time)).unwrap();
    assert_eq!(r.clock(), clock, "the clock resumes where it was");
    let todos = r.collection("todos").unwrap();
    let second = todos.put("mine", 2i64).unwrap();
    assert_eq!(
        second.id.seq,
        first.id.seq + 1,
        "the sequence resumes where it was"
    );
    assert!(todos.record("mine").unwrap().unwrap().version.stamp > theirs[0].stamp);
}

#[test]
fn remote_stamp_too_far_ahead_moves_neither_clock_nor_data() {
    let time = ManualTime::new(T0);
    let a = memory_replica(1, &time);
    let b = memory_replica(2, &time);
    // A's clock runs two minutes fast.
    let fast = ManualTime::new(T0 + 120_000);
    let a_fast = memory_replica(3, &fast);
    a.collection("todos").unwrap().put("ok", 1i64).unwrap();
    a_fast
        .collection("todos")
        .unwrap()
        .put("future", 2i64)
        .unwrap();
    let mut batch: Vec<Change> = a
        .feed_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect();
    batch.extend(
        a_fast
            .feed_after(0, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.change),
    );

    b.collection("todos").unwrap().put("mine", 0i64).unwrap();
    let clock_before = b.clock();
    let lsn_before = b.last_lsn();
    let err = b.apply_remote(&batch).unwrap_err();
    match err {
        ApplyError::ClockDrift(e) => {
            assert_eq!(e.ahead_ms, 120_000);
            assert_eq!(e.max_ms, 60_000);
        }
        other => panic!("expected clock drift, got {other}"),
    }
    assert_eq!(b.clock(), clock_before, "the clock did not move");
    assert_eq!(b.last_lsn(), lsn_before, "nothing of the batch was stored");
    assert_eq!(b.collection("todos").unwrap().get("ok").unwrap(), None);

    // Within the bound, the same change is accepted and the clock follows it.
    time.advance(Duration::from_secs(61));
    b.apply_remote(&batch).unwrap();
    assert_eq!(b.clock(), batch[1].stamp);
    let next = b.collection("todos").unwrap().put("after", 3i64).unwrap();
    let stamp = b.collection("todos").unwrap().history("after").unwrap()[0].stamp;
    assert!(
        stamp > batch[1].stamp,
        "{next:?}: local stamps pass every stamp seen"
    );
}

#[test]
fn past_stamps_are_always_accepted() {
    let old = ManualTime::new(1_000);
    let a = memory_replica(1, &old);
    a.collection("todos").unwrap().put("ancient", 1i64).unwrap();
    let time = ManualTime::new(T0);
    let b = memory_replica(2, &time);
    let batch: Vec<Change> = a
        .feed_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect();
    b.apply_remote(&batch).unwrap();
    assert!(
        b.collection("todos")
            .unwrap()
            .get("ancient")
            .unwrap()
            .is_some()
    );
}
