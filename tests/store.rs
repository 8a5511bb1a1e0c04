//! The local replica API on real redb files: writes, reads, scans,
//! transactions, watches, bad input, reopening.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{T0, manual_config, memory_replica};
use serde::{Deserialize, Serialize};
use syncline::{
    ApplyError, Change, CollectionConfig, Fault, History, Key, KeyError, ManualTime, Op, OpenError,
    ReadError, Replica, ReplicaConfig, ReplicaId, Scan, Stamp, Value, WriteError,
};

fn file_replica(dir: &tempfile::TempDir, time: &ManualTime) -> Replica {
    let r = Replica::open(dir.path().join("replica.redb"), manual_config(1, time)).unwrap();
    r.define_collection("todos", CollectionConfig::default())
        .unwrap();
    r
}

#[test]
fn put_get_delete_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualTime::new(T0);
    let r = file_replica(&dir, &time);
    let todos = r.collection("todos").unwrap();
    todos.put("a", "milk").unwrap();
    assert_eq!(todos.get("a").unwrap(), Some(Value::from("milk")));
    todos.delete("a").unwrap();
    assert_eq!(todos.get("a").unwrap(), None);
    let state = todos.record("a").unwrap().expect("tombstone kept");
    assert!(state.is_tombstone());
    // The delete saw the put, and no peer ever held it: merge keeps the
    // delete alone.
    let history = todos.history("a").unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].op, Op::Delete);
    assert_eq!(r.last_lsn(), 2);
}

#[test]
fn reopen_keeps_records_id_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualTime::new(T0);
    let (id, stamp) = {
        let r = file_replica(&dir, &time);
        let todos = r.collection("todos").unwrap();
        todos.put("a", 1i64).unwrap();
        todos.put("b", 2i64).unwrap();
        (r.id(), r.clock())
    };
    let r = Replica::open(dir.path().join("replica.redb"), manual_config(9, &time)).unwrap();
    assert_eq!(r.id(), id, "the stored id wins over the config's");
    assert_eq!(r.clock(), stamp);
    assert_eq!(r.last_lsn(), 2);
    let todos = r.collection("todos").unwrap();
    assert_eq!(todos.get("b").unwrap(), Some(Value::Int(2)));
    let next = todos.put("c", 3i64).unwrap();
    assert_eq!(next.id.seq, 3, "sequence numbers continue after a reopen");
    assert_eq!(next.lsn, r.last_lsn(), "a write returns its lsn");
    assert_eq!(
        todos.record("c").unwrap().unwrap().version.stamp,
        next.stamp,
        "a write returns the stamp the record carries"
    );
}

#[test]
fn scan_ranges_prefixes_limits_and_reverse() {
    let time = ManualTime::new(T0);
    let r = memory_replica(1, &time);
    r.define_collection("other", CollectionConfig::default())
        .unwrap();
    let todos = r.collection("todos").unwrap();
    for k in ["a1", "a2", "a3", "b1", "b2", "c"] {
        todos.put(k, k).unwrap();
    }
    r.collection("other").unwrap().put("a0", "x").unwrap();
    todos.delete("a2").unwrap();
    let keys = |rows: Vec<(Key, Value)>| -> Vec<String> {
        rows.into_iter().map(|(k, _)| k.to_string()).collect()
    };
    assert_eq!(
        keys(todos.scan(Scan::all()).unwrap()),
        ["a1", "a3", "b1", "b2", "c"]
    );
    assert_eq!(keys(todos.scan(Scan::prefix("a")).unwrap()), ["a1", "a3"]);
    assert_eq!(
        keys(todos.scan(Scan::prefix("b").reverse()).unwrap()),
        ["b2", "b1"]
    );
    assert_eq!(
        keys(todos.scan(Scan::range("a3".."b2")).unwrap()),
        ["a3", "b1"]
    );
    assert_eq!(
        keys(todos.scan(Scan::range("a3"..="b2")).unwrap()),
        ["a3", "b1", "b2"]
    );
    assert_eq!(
        keys(todos.scan(Scan::all().reverse().limit(2)).unwrap()),
        ["c", "b2"]
    );
    assert_eq!(
        keys(todos.scan(Scan::all().limit(0)).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        keys(todos.scan(Scan::range("z".."a")).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        keys(todos.scan(Scan::prefix(vec![0xffu8])).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        todos.states().unwrap().len(),
        6,
        "states include the tombstone"
    );
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Todo {
    title: String,
    done: bool,
    tags: Vec<String>,
    due: Option<u32>,
}

#[test]
fn typed_put_get_and_patch() {
    let time = ManualTime::new(T0);
    let r = memory_replica(1, &time);
    let todos = r.collection("todos").unwrap();
    let t = Todo {
        title: "milk".into(),
        done: false,
        tags: vec!["shop".into()],
        due: None,
    };
    todos.put_typed("t1", &t).unwrap();
    assert_eq!(todos.get_typed::<Todo>("t1").unwrap(), Some(t.clone()));
    let mut fields = BTreeMap::new();
    fields.insert("done".to_string(), Value::Bool(true));
    todos.patch("t1", fields).unwrap();
    let got: Todo = todos.get_typed("t1").unwrap().unwrap();
    assert!(got.done);
    assert_eq!(got.title, "milk");
    // On an LWW collection the patch was stored as a put of the whole record.
    let history = todos.history("t1").unwrap();
    assert!(history.iter().all(|c| matches!(c.op, Op::Put(_))));
    todos.put("n", 5i64).unwrap();
    assert!(matches!(
        todos.patch("n", BTreeMap::new()),
        Err(WriteError::NotAMap)
    ));
}

#[test]
fn transaction_commits_all_or_nothing() {
    let time = ManualTime::new(T0);
    let r = memory_replica(1, &time);
    let todos = r.collection("todos").unwrap();
    let mut txn = r.transaction();
    txn.put("todos", "a", 1i64)
        .put("todos", "b", 2i64)
        .delete("todos", "c");
    let committed = txn.commit().unwrap();
    assert_eq!(committed.ids.len(), 3);
    assert_eq!(committed.lsn, 3);
    let feed = r.feed_after(0, 100).unwrap();
    assert_eq!(
        feed.iter().map(|e| e.group_end).collect::<Vec<_>>(),
        [false, false, true]
    );

    // One bad write refuses the whole transaction.
    let mut txn = r.transaction();
    txn.put("todos", "d", 4i64).put("nope", "e", 5i64);
    assert!(matches!(txn.commit(), Err(WriteError::UnknownCollection(c)) if c == "nope"));
    let mut txn = r.transaction();
    txn.put("todos", "d", 4i64).put("todos", "", 5i64);
    assert!(matches!(
        txn.commit(),
        Err(WriteError::Key(KeyError::Empty))
    ));
    assert_eq!(todos.get("d").unwrap(), None);
    assert_eq!(r.last_lsn(), 3);
}

#[test]
fn feed_reads_never_split_a_group() {
    let time = ManualTime::new(T0);
    let r = memory_replica(1, &time);
    let mut txn = r.transaction();
    for i in 0..5i64 {
        txn.put("todos", format!("k{i}"), i);
    }
    txn.commit().unwrap();
    r.collection("todos").unwrap().put("x", 1i64).unwrap();
    let first = r.feed_after(0, 2).unwrap();
    assert_eq!(
        first.len(),
        5,
        "the limit stops at the end of the group it falls in"
    );
    let rest = r.feed_after(first.last().unwrap().lsn, 2).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].change.key, Key::from("x"));

    // A cursor inside a group (a peer's acknowledgement can leave one
    // there) reads the rest of that group, with gap-free lsns.
    let tail = r.feed_after(2, 100).unwrap();
    let lsns: Vec<u64> = tail.iter().map(|e| e.lsn).collect();
    assert_eq!(lsns, vec![3, 4, 5, 6]);
    let keys: Vec<Key> = tail.iter().map(|e| e.change.key.clone()).collect();
    assert_eq!(keys, ["k2", "k3", "k4", "x"].map(Key::from));
    let ends: Vec<bool> = tail.iter().map(|e| e.group_end).collect();
    assert_eq!(ends, vec![false, false, true, true]);
    assert!(r.feed_after(6, 100).unwrap().is_empty());
}

#[test]
fn bad_input_is_typed_and_stores_nothing() {
    let time = ManualTime::new(T0);
    let r = memory_replica(1, &time);
    let todos = r.collection("todos").unwrap();
    let err = todos.put("", 1i64).unwrap_err();
    assert!(matches!(err, WriteError::Key(KeyError::Empty)));
    assert_eq!(err.fault(), Fault::Caller);
    let long = "k".repeat(r.config().max_key_len + 1);
    assert!(matches!(
        todos.put(long.as_str(), 1i64),
        Err(WriteError::Key(KeyError::TooLong { .. }))
    ));
    let big = Value::Bytes(vec![0; r.config().max_value_len + 1]);
    assert!(matches!(
        todos.put("big", big),
        Err(WriteError::ValueTooLarge { .. })
    ));
    assert!(matches!(
        r.collection("missing"),
        Err(ReadError::UnknownCollection(_))
    ));
    assert!(matches!(
        r.define_collection("todos", CollectionConfig::local_only()),
        Err(WriteError::CollectionMismatch(_))
    ));
    assert!(
        r.define_collection("", CollectionConfig::default())
            .is_err()
    );
    assert_eq!(r.last_lsn(), 0);
    assert!(todos.scan(Scan::all()).unwrap().is_empty());
}

#[test]
fn remote_changes_for_unknown_or_local_collections_are_refused() {
    let time = ManualTime::new(T0);
    let a = memory_replica(1, &time);
    let b = memory_replica(2, &time);
    a.define_collection("secret", CollectionConfig::local_only())
        .unwrap();
    b.define_collection("secret", CollectionConfig::local_only())
        .unwrap();
    a.collection("secret").unwrap().put("k", 1i64).unwrap();
    a.define_collection("extra", CollectionConfig::default())
        .unwrap();
    a.collection("extra").unwrap().put("k", 1i64).unwrap();
    let changes: Vec<_> = a
        .feed_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect();
    let err = b.apply_remote(&changes[..1]).unwrap_err();
    assert!(matches!(err, ApplyError::LocalOnlyCollection { .. }));
    assert_eq!(err.fault(), Fault::Peer);
    assert!(matches!(
        b.apply_remote(&changes[1..]),
        Err(ApplyError::UnknownCollection { .. })
    ));
    assert_eq!(b.last_lsn(), 0);
}

/// Remote last-writer-wins changes write the record speculatively and read
/// the old state back from the same insert: a change that loses must leave
/// the record exactly as it was, and one that wins must replace it.
#[test]
fn remote_changes_that_lose_leave_the_record_as_it_was() {
    let time = ManualTime::new(T0);
    let a = memory_replica(1, &time);
    let b = memory_replica(2, &time);
    let todos = a.collection("todos").unwrap();
    todos.put("k", 1i64).unwrap();
    let mut changes = todos.history("k").unwrap();
    time.advance(Duration::from_millis(5));
    todos.put("k", 2i64).unwrap();
    changes.extend(todos.history("k").unwrap());
    assert_eq!(changes.len(), 2, "each put, as made");
    // Newest first: the older change arrives second and loses.
    assert_eq!(b.apply_remote(&changes[1..]).unwrap().applied, 1);
    let after_newest = b.collection("todos").unwrap().record("k").unwrap();
    let report = b.apply_remote(&changes[..1]).unwrap();
    assert_eq!(
        (report.applied, report.superseded),
        (0, 1),
        "the newer change saw it: merged, superseded, not kept"
    );
    let bt = b.collection("todos").unwrap();
    assert_eq!(bt.record("k").unwrap(), after_newest);
    assert_eq!(bt.get("k").unwrap(), Some(Value::Int(2)));
    assert_eq!(bt.history("k").unwrap(), changes[1..]);
    assert_eq!(
        bt.record("k").unwrap(),
        todos.record("k").unwrap(),
        "same state as the origin"
    );
    assert!(bt.conflicts().unwrap().is_empty());
}

#[test]
fn forged_duplicate_is_refused() {
    let time = ManualTime::new(T0);
    let a = memory_replica(1, &time);
    let b = memory_replica(2, &time);
    a.collection("todos").unwrap().put("k", 1i64).unwrap();
    let mut changes: Vec<_> = a
        .feed_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect();
    assert_eq!(b.apply_remote(&changes).unwrap().applied, 1);
    assert_eq!(
        b.apply_remote(&changes).unwrap().duplicates,
        1,
        "replays are harmless"
    );
    changes[0].op = Op::Put(Value::Int(666));
    assert!(matches!(
        b.apply_remote(&changes),
        Err(ApplyError::ConflictingDuplicate { .. })
    ));
    let mut other_id = changes[0].clone();
    other_id.id.seq = 77;
    assert!(matches!(
        b.apply_remote(&[other_id]),
        Err(ApplyError::ConflictingDuplicate { .. })
    ));
    assert_eq!(
        b.collection("todos").unwrap().get("k").unwrap(),
        Some(Value::Int(1))
    );
    assert_eq!(b.last_lsn(), 1);

    // A change is identified by its slot (record, stamp, origin), not by its
    // sequence number alone: an id reused at another stamp is another change,
    // stored and merged like any other (every replica does the same).
    let mut later = changes[0].clone();
    later.stamp = Stamp::from_u64(later.stamp.as_u64() + 1);
    later.op = Op::Put(Value::Int(2));
    assert_eq!(b.apply_remote(&[later]).unwrap().applied, 1);
    assert_eq!(
        b.collection("todos").unwrap().get("k").unwrap(),
        Some(Value::Int(2))
    );
}

#[test]
fn a_foreign_redb_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let def: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("theirs");
        txn.open_table(def).unwrap().insert("x", 1).unwrap();
        txn.commit().unwrap();
    }
    let time = ManualTime::new(T0);
    let err = Replica::open(&path, manual_config(1, &time)).unwrap_err();
    assert!(matches!(err, OpenError::Foreign(_)), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.redb");
    std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
    let time = ManualTime::new(T0);
    let err = Replica::open(&path, manual_config(1, &time)).unwrap_err();
    assert!(matches!(err, OpenError::Storage(_)), "{err}");
}

#[test]
fn a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replica.redb");
    let time = ManualTime::new(T0);
    drop(Replica::open(&path, manual_config(1, &time)).unwrap());
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta-1");
        txn.open_table(def)
            .unwrap()
            .insert("format", 99u32.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Replica::open(&path, manual_config(1, &time)).unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::UnsupportedFormat {
                found: 99,
                supported: 3
            }
        ),
        "{err}"
    );
}

/// `tests/fixtures/format-1.redb` was written by the last format 1 build
/// (commit b847e76) and compacted: replica 0x01.., collection `todos` with
/// `a` put twice (1, then 2), `b\0x` put and deleted, `c` put and beaten by a
/// remote change from 0x02.. with the same stamp (a conflict), and a
/// field-LWW collection `notes` with `n1` = {title: "t"}. Seven changes.
#[test]
fn a_format_1_file_is_upgraded_in_place_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replica.redb");
    std::fs::copy("tests/fixtures/format-1.redb", &path).unwrap();
    let check = |r: &Replica| {
        assert_eq!(r.id().as_bytes(), &[1; 16]);
        let todos = r.collection("todos").unwrap();
        assert_eq!(todos.get("a").unwrap(), Some(Value::Int(2)));
        // Format 3 keeps what merge needs: the second put saw the first.
        assert_eq!(todos.history("a").unwrap().len(), 1);
        let b = todos
            .record("b\0x")
            .unwrap()
            .expect("the tombstone is kept");
        assert_eq!(b.value, None);
        let live: Vec<Key> = todos
            .scan(Scan::all())
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            live[..2],
            [Key::from("a"), Key::from("c")],
            "b\\0x is deleted"
        );
        assert_eq!(todos.get("c").unwrap(), Some(Value::Bool(false)));
        let conflicts = todos.conflicts().unwrap();
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(conflicts[0].key, Key::from("c"));
        assert_eq!(conflicts[0].value, Some(Value::Bool(true)));
        assert_eq!(todos.conflicts_of("c").unwrap(), conflicts);
        let notes = r.collection("notes").unwrap();
        let n1 = notes.get("n1").unwrap().unwrap();
        let Value::Map(fields) = n1 else {
            panic!("n1 is {n1:?}")
        };
        assert_eq!(fields.get("title"), Some(&Value::String("t".into())));
        // One feed entry per record, at its latest lsn; `c` sends its
        // winner (from 0x02..) and the conflict.
        let feed = r.feed_after(0, 100).unwrap();
        let c: Vec<_> = feed
            .iter()
            .filter(|e| e.change.key == Key::from("c"))
            .collect();
        assert_eq!(c.len(), 2, "{feed:?}");
        assert!(c.iter().any(|e| e.change.id.origin.as_bytes() == &[2; 16]));
        let mut lsns: Vec<u64> = feed
            .iter()
            .filter(|e| e.change.key != Key::from("d"))
            .map(|e| e.lsn)
            .collect();
        lsns.dedup();
        assert_eq!(lsns.len(), 4, "a, b\\0x, c and n1: {feed:?}");
    };
    let r = Replica::open(&path, ReplicaConfig::default()).unwrap();
    check(&r);
    r.collection("todos").unwrap().put("d", 4i64).unwrap();
    assert_eq!(r.last_lsn(), 8);
    drop(r);

    let db = redb::Database::create(&path).unwrap();
    let read = redb::ReadableDatabase::begin_read(&db).unwrap();
    let names: Vec<String> = read
        .list_tables()
        .unwrap()
        .map(|t| redb::TableHandle::name(&t).to_string())
        .collect();
    for gone in [
        "ids-1",
        "changes-1",
        "records-1",
        "conflicts-1",
        "feed-1",
        "changes-2",
        "records-2",
        "conflicts-2",
        "feed-2",
        "collections-1",
    ] {
        assert!(
            !names.iter().any(|n| n == gone),
            "{gone} is left: {names:?}"
        );
    }
    let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta-1");
    let format = read
        .open_table(meta)
        .unwrap()
        .get("format")
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    assert_eq!(format, 3u32.to_le_bytes());
    drop((read, db));

    let r = Replica::open(&path, ReplicaConfig::default()).unwrap();
    check(&r);
    assert_eq!(
        r.collection("todos").unwrap().get("d").unwrap(),
        Some(Value::Int(4))
    );
}

#[tokio::test]
async fn watch_sees_local_and_remote_commits_in_order() {
    let time = ManualTime::new(T0);
    let a = memory_replica(1, &time);
    let b = memory_replica(2, &time);
    b.define_collection("other", CollectionConfig::default())
        .unwrap();
    let mut all = b.watch();
    let mut todos = b.collection("todos").unwrap().watch();
    b.collection("other").unwrap().put("o", 1i64).unwrap();
    b.collection("todos").unwrap().put("local", 1i64).unwrap();
    a.collection("todos").unwrap().put("remote", 2i64).unwrap();
    let changes: Vec<_> = a
        .feed_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect();
    b.apply_remote_from(Some(a.id()), &changes).unwrap();

    let e = todos.recv().await.unwrap();
    assert_eq!(
        (e.change.key.to_string(), e.source),
        ("local".to_string(), None)
    );
    let e = todos.recv().await.unwrap();
    assert_eq!(
        (e.change.key.to_string(), e.source),
        ("remote".to_string(), Some(a.id()))
    );
    assert!(todos.try_recv().unwrap().is_none());
    let lsns: Vec<u64> = (0..3)
        .map(|_| all.try_recv().unwrap().unwrap().lsn)
        .collect();
    assert_eq!(lsns, [1, 2, 3]);
}

#[test]
fn a_batch_ending_in_a_duplicate_of_its_own_change_still_ends_its_group() {
    let time = ManualTime::new(T0);
    let a = memory_replica(1, &time);
    let b = memory_replica(2, &time);
    a.collection("todos").unwrap().put("x", 1i64).unwrap();
    a.collection("todos").unwrap().put("y", 2i64).unwrap();
    let changes: Vec<_> = a
        .feed_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect();
    // [x, y, y]: the last change repeats one stored earlier in the same batch.
    let batch = [changes[0].clone(), changes[1].clone(), changes[1].clone()];
    let report = b.apply_remote(&batch).unwrap();
    assert_eq!((report.applied, report.duplicates), (2, 1));
    let feed = b.feed_after(0, 10).unwrap();
    assert_eq!(
        feed.iter().map(|e| e.group_end).collect::<Vec<_>>(),
        [false, true]
    );
}

/// `tests/fixtures/format-2.redb` was written by the last format 2 build
/// (commit 65b0fa5) and compacted: replica 0x03.., collection `todos` with
/// `a` put twice (1, then 2), `b\0x` put and deleted, `c` put (true) and
/// beaten by a later concurrent change from 0x02.. (false: a conflict), `p`
/// received from 0x02.., `t1` and `t2` written in one transaction; the
/// local-only `local` with `l`; a field-LWW `notes` with `n1` put
/// ({title}) and patched ({body}). Twelve changes, lsns 1 to 12.
#[test]
fn a_format_2_file_is_upgraded_in_place_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replica.redb");
    std::fs::copy("tests/fixtures/format-2.redb", &path).unwrap();
    let peer = ReplicaId::from_bytes([2; 16]);
    let check = |r: &Replica| {
        assert_eq!(r.id().as_bytes(), &[3; 16]);
        assert_eq!(r.collections().len(), 3);
        let todos = r.collection("todos").unwrap();
        assert_eq!(todos.get("a").unwrap(), Some(Value::Int(2)));
        assert_eq!(
            todos.history("a").unwrap().len(),
            1,
            "the first put was seen"
        );
        assert!(todos.record("b\0x").unwrap().unwrap().is_tombstone());
        assert_eq!(todos.get("c").unwrap(), Some(Value::Bool(false)));
        let conflicts = todos.conflicts().unwrap();
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(conflicts[0].value, Some(Value::Bool(true)));
        assert_eq!(todos.get("p").unwrap(), Some(Value::from("from peer")));
        assert_eq!(todos.get("t1").unwrap(), Some(Value::Int(10)));
        assert_eq!(todos.get("t2").unwrap(), Some(Value::Int(20)));
        let local = r.collection("local").unwrap();
        assert_eq!(local.get("l").unwrap(), Some(Value::Int(1)));
        let n1 = r.collection("notes").unwrap().get("n1").unwrap().unwrap();
        let Value::Map(fields) = n1 else {
            panic!("n1 is {n1:?}")
        };
        assert_eq!(fields.len(), 2, "{fields:?}");
        // The feed: one entry per record at its latest lsn, in the old
        // groups (t1 and t2 still end together), sources kept.
        let feed = r.feed_after(0, 100).unwrap();
        let lsn_of = |k: &str| {
            feed.iter()
                .find(|e| e.change.key == Key::from(k))
                .map(|e| e.lsn)
        };
        assert_eq!(lsn_of("a"), Some(3));
        assert_eq!(lsn_of("t1"), Some(9));
        assert_eq!(lsn_of("t2"), Some(10));
        let t1 = feed
            .iter()
            .find(|e| e.change.key == Key::from("t1"))
            .unwrap();
        assert!(!t1.group_end, "t1 and t2 are one group");
        let p = feed
            .iter()
            .find(|e| e.change.key == Key::from("p"))
            .unwrap();
        assert_eq!(p.source, Some(peer));
        // A peer's pull from zero gets current state only: nothing from 0x02
        // goes back to it, and `a` once.
        assert_eq!(
            feed.iter()
                .filter(|e| e.change.key == Key::from("a"))
                .count(),
            1
        );
    };
    let r = Replica::open(&path, ReplicaConfig::default()).unwrap();
    check(&r);
    assert_eq!(r.last_lsn(), 12);
    r.collection("todos").unwrap().put("d", 4i64).unwrap();
    assert_eq!(r.last_lsn(), 13);
    // A second, fresh replica pulls everything and ends equal.
    let fresh = Replica::in_memory(ReplicaConfig::default()).unwrap();
    for (name, config) in r.collections() {
        fresh.define_collection(&name, config).unwrap();
    }
    let changes: Vec<Change> = r
        .feed_after(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.change.collection != "local")
        .map(|e| e.change)
        .collect();
    fresh.apply_remote(&changes).unwrap();
    for name in ["todos", "notes"] {
        assert_eq!(
            fresh.collection(name).unwrap().states().unwrap(),
            r.collection(name).unwrap().states().unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        fresh.collection("todos").unwrap().conflicts().unwrap(),
        r.collection("todos").unwrap().conflicts().unwrap()
    );
    drop(r);
    let r = Replica::open(&path, ReplicaConfig::default()).unwrap();
    check(&r);
    assert_eq!(
        r.collection("todos").unwrap().get("d").unwrap(),
        Some(Value::Int(4))
    );
}

/// A collection's history setting: by default a record keeps what merge
/// needs; `Last(n)` keeps the last n superseded changes too, `For(d)` those
/// stamped within d of now. History never travels, and the setting may
/// change on a defined collection.
#[test]
fn history_keeps_what_the_collection_asks_for() {
    let time = ManualTime::new(T0);
    let r = memory_replica(1, &time);
    let merge = r.collection("todos").unwrap();
    let last = r
        .define_collection(
            "last",
            CollectionConfig::default().with_history(History::Last(2)),
        )
        .unwrap();
    let recent = r
        .define_collection(
            "recent",
            CollectionConfig::default().with_history(History::For(Duration::from_secs(10))),
        )
        .unwrap();
    for i in 0..5i64 {
        for c in [&merge, &last, &recent] {
            c.put("k", i).unwrap();
        }
        time.advance(Duration::from_secs(4));
    }
    let values = |c: &syncline::Collection| -> Vec<Value> {
        c.history("k")
            .unwrap()
            .into_iter()
            .map(|c| match c.op {
                Op::Put(v) => v,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(
        values(&merge),
        [Value::Int(4)],
        "merge needs the winner only"
    );
    assert_eq!(
        values(&last),
        [Value::Int(2), Value::Int(3), Value::Int(4)],
        "the winner and the last two superseded"
    );
    // Written at 0, 4, 8, 12 and 16 s; the last write, at 16 s, kept those
    // stamped within 10 s of it.
    assert_eq!(
        values(&recent),
        [Value::Int(2), Value::Int(3), Value::Int(4)],
        "the winner and those of the last 10 s"
    );
    // History stays here: the feed sends the winner only.
    let sent: Vec<_> = r
        .feed_after(0, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.change.collection == "last")
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    // The setting may change; it applies from the record's next write.
    let last = r
        .define_collection("last", CollectionConfig::default())
        .unwrap();
    assert_eq!(values(&last).len(), 3);
    last.put("k", 5i64).unwrap();
    assert_eq!(values(&last), [Value::Int(5)]);
    assert!(matches!(
        r.define_collection("last", CollectionConfig::local_only()),
        Err(WriteError::CollectionMismatch(_))
    ));
}

/// `storage_stats` counts what the file holds; `compact_file` compacts a
/// file nobody has open, and refuses one that is open.
#[test]
fn storage_stats_count_and_a_closed_file_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualTime::new(T0);
    let path = dir.path().join("stats.redb");
    let r = Replica::open(&path, manual_config(1, &time)).unwrap();
    let todos = r
        .define_collection("todos", CollectionConfig::default())
        .unwrap();
    let notes = r
        .define_collection(
            "notes",
            CollectionConfig::default().with_history(History::Last(5)),
        )
        .unwrap();
    for i in 0..100i64 {
        todos.put(format!("k{i}"), i).unwrap();
    }
    for i in 0..10 {
        todos.delete(format!("k{i}")).unwrap();
    }
    for i in 0..3i64 {
        notes.put("n", i).unwrap();
    }
    // A concurrent change from another replica: one conflict.
    let other = memory_replica(2, &time);
    other
        .collection("todos")
        .unwrap()
        .put("k50", "theirs")
        .unwrap();
    let theirs: Vec<Change> = other
        .feed_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect();
    r.apply_remote_from(Some(other.id()), &theirs).unwrap();
    let stats = r.storage_stats().unwrap();
    let t = stats.collections["todos"];
    assert_eq!((t.live, t.tombstones, t.conflicts), (90, 10, 1), "{t:?}");
    // Counting without decoding a value says the same.
    assert_eq!(todos.len().unwrap(), 90);
    let counts = todos.counts().unwrap();
    assert_eq!((counts.live, counts.tombstones), (90, 10));
    assert!(!todos.is_empty().unwrap());
    let peers = r.peers().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].0, other.id());
    assert_eq!(peers[0].0.to_string().parse::<ReplicaId>(), Ok(other.id()));
    assert_eq!(t.changes, 101, "100 winners and the conflict");
    let n = stats.collections["notes"];
    assert_eq!((n.live, n.changes, n.history), (1, 1, 2), "{n:?}");
    assert_eq!(stats.feed_entries, 101);
    assert_eq!(stats.peers.len(), 1);
    assert_eq!(stats.peers[0].0, other.id());
    let records = stats.tables.iter().find(|t| t.name == "records-3").unwrap();
    assert_eq!(records.entries, 101);
    assert!(records.stored_bytes > 0);
    // Open here: compaction refuses.
    assert!(Replica::compact_file(&path).is_err());
    drop((todos, notes, r));
    Replica::compact_file(&path).unwrap();
    let r = Replica::open(&path, manual_config(1, &time)).unwrap();
    assert_eq!(r.storage_stats().unwrap().collections["todos"], t);
}

/// Tombstones older than the horizon go, with their feed entries; a change
/// older than the horizon for a collected record refuses its batch (no
/// resurrection), while one for a live record merges as usual and a new
/// write recreates a record; the marks and the lsn survive a reopen.
#[test]
fn collected_tombstones_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualTime::new(T0);
    let path = dir.path().join("hub.redb");
    let hub = Replica::open(&path, manual_config(1, &time)).unwrap();
    hub.define_collection("todos", CollectionConfig::default())
        .unwrap();
    let writer = memory_replica(2, &time);
    let mut made = writer.watch();
    let w = writer.collection("todos").unwrap();
    for i in 0..6i64 {
        w.put(format!("k{i}"), i).unwrap();
    }
    let stale: Vec<Change> = std::iter::from_fn(|| made.try_recv().unwrap())
        .map(|e| e.change.clone())
        .collect();
    time.advance(Duration::from_secs(1));
    for i in 0..3 {
        w.delete(format!("k{i}")).unwrap();
    }
    let current: Vec<Change> = writer
        .feed_after(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect();
    hub.apply_remote_from(Some(writer.id()), &current).unwrap();
    assert_eq!(
        hub.storage_stats().unwrap().collections["todos"].tombstones,
        3
    );
    // 31 days later, with a 30-day horizon.
    time.advance(Duration::from_secs(31 * 24 * 3600));
    let lsn = hub.last_lsn();
    assert_eq!(
        hub.collect_tombstones(Duration::from_secs(30 * 24 * 3600))
            .unwrap(),
        3
    );
    let stats = hub.storage_stats().unwrap();
    assert_eq!(
        (
            stats.collections["todos"].live,
            stats.collections["todos"].tombstones
        ),
        (3, 0)
    );
    assert_eq!(stats.feed_entries, 3);
    // The put of k0 made before its delete, arriving late: refused whole.
    let err = hub
        .apply_remote_from(Some(writer.id()), &stale[..1])
        .unwrap_err();
    assert!(matches!(err, ApplyError::BeyondHorizon { .. }), "{err}");
    assert_eq!(hub.collection("todos").unwrap().record("k0").unwrap(), None);
    // An old change of a live record merges: it is superseded.
    let report = hub
        .apply_remote_from(Some(writer.id()), &stale[4..5])
        .unwrap();
    assert_eq!(report.duplicates + report.superseded, 1);
    // A new write recreates a collected record.
    w.put("k0", "again").unwrap();
    let again: Vec<Change> = writer
        .feed_after(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .filter(|c| c.key == Key::from("k0"))
        .collect();
    hub.apply_remote_from(Some(writer.id()), &again).unwrap();
    assert_eq!(
        hub.collection("todos").unwrap().get("k0").unwrap(),
        Some(Value::from("again"))
    );
    let marks = hub.collected();
    let after = hub.last_lsn();
    assert!(after > lsn);
    drop(hub);
    let hub = Replica::open(&path, manual_config(1, &time)).unwrap();
    assert_eq!(hub.collected(), marks, "the marks are kept");
    assert_eq!(hub.last_lsn(), after, "no lsn is given twice");
    assert!(matches!(
        hub.apply_remote_from(Some(writer.id()), &stale[1..2]),
        Err(ApplyError::BeyondHorizon { .. })
    ));
}

/// A purge deletes a record and erases its history: conflicts, history
/// kept by the collection's setting and undo entries go; a change older
/// than the purge that arrives later is not kept, even as history; another
/// replica that receives the purge erases the same; a newer write brings
/// the record back as after a delete.
#[test]
fn a_purge_erases_a_record_everywhere_it_goes() {
    let time = ManualTime::new(T0);
    let config = CollectionConfig::default().with_history(History::Last(10));
    let a = memory_replica(1, &time);
    let b = memory_replica(2, &time);
    let other = memory_replica(3, &time);
    for r in [&a, &b] {
        r.define_collection("notes", config.clone()).unwrap();
    }
    other
        .define_collection("notes", CollectionConfig::default())
        .unwrap();
    let notes = a.collection("notes").unwrap();
    let mut made = a.watch();
    for i in 0..3i64 {
        notes.put("secret", format!("version {i}")).unwrap();
        time.advance(Duration::from_millis(5));
    }
    // A concurrent change from elsewhere: a conflict.
    let mut theirs = other.watch();
    other
        .collection("notes")
        .unwrap()
        .put("secret", "theirs")
        .unwrap();
    let theirs: Vec<Change> = std::iter::from_fn(|| theirs.try_recv().unwrap())
        .map(|e| e.change.clone())
        .collect();
    a.apply_remote(&theirs).unwrap();
    let all: Vec<Change> = std::iter::from_fn(|| made.try_recv().unwrap())
        .map(|e| e.change.clone())
        .chain(theirs.clone())
        .collect();
    b.apply_remote(&all).unwrap();
    assert!(notes.history("secret").unwrap().len() >= 3);
    assert_eq!(notes.conflicts().unwrap().len(), 1);

    time.advance(Duration::from_millis(5));
    notes.purge("secret").unwrap();
    let kept = notes.history("secret").unwrap();
    assert_eq!(kept.len(), 1, "only the purge: {kept:?}");
    assert_eq!(kept[0].op, Op::Purge);
    assert_eq!(kept[0].base, kept[0].stamp, "it saw everything before it");
    assert_eq!(notes.get("secret").unwrap(), None);
    assert!(notes.conflicts().unwrap().is_empty());
    let stats = a.storage_stats().unwrap().collections["notes"];
    assert_eq!((stats.history, stats.tombstones), (0, 1), "{stats:?}");

    // The purge travels as current state, and erases the same there.
    let sent: Vec<Change> = a
        .feed_after(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .filter(|c| c.collection == "notes")
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].op, Op::Purge);
    b.apply_remote(&sent).unwrap();
    let on_b = b.collection("notes").unwrap();
    assert_eq!(on_b.history("secret").unwrap(), kept);
    assert!(on_b.conflicts().unwrap().is_empty());
    // An old change arriving later changes nothing and is not kept.
    let report = b.apply_remote(&all[..1]).unwrap();
    assert_eq!(report.superseded, 1);
    assert_eq!(on_b.history("secret").unwrap(), kept);
    // A newer write brings the record back.
    time.advance(Duration::from_millis(5));
    notes.put("secret", "new").unwrap();
    assert_eq!(notes.get("secret").unwrap(), Some(Value::from("new")));
    // Not on automerge collections.
    #[cfg(feature = "automerge")]
    {
        let docs = a
            .define_collection(
                "docs",
                CollectionConfig::default().with_policy(syncline::MergePolicy::Automerge),
            )
            .unwrap();
        assert!(matches!(
            docs.purge("d"),
            Err(WriteError::Op(syncline::OpError::NotAllowed { .. }))
        ));
    }
}

#[test]
fn close_releases_the_file_for_a_reopen_in_the_same_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replica.redb");
    let r = Replica::open(&path, ReplicaConfig::default()).unwrap();
    let todos = r
        .define_collection("todos", CollectionConfig::default())
        .unwrap();
    let written = todos.put("a", "milk").unwrap();
    let clone = r.clone();
    assert!(
        matches!(
            Replica::open(&path, ReplicaConfig::default()),
            Err(OpenError::Storage(_))
        ),
        "open twice while open"
    );

    r.close().unwrap();
    // Clones and collections fail with a typed error, and change nothing.
    assert!(matches!(
        todos.get("a"),
        Err(ReadError::Storage(syncline::StorageError::Closed))
    ));
    let refused = todos.put("b", "bread").unwrap_err();
    assert!(matches!(
        refused,
        WriteError::Storage(syncline::StorageError::Closed)
    ));
    assert_eq!(refused.fault(), Fault::Caller);
    clone.clone().close().unwrap(); // closing again does nothing

    let again = Replica::open(&path, ReplicaConfig::default()).unwrap();
    let todos = again.collection("todos").unwrap();
    assert_eq!(todos.get("a").unwrap(), Some(Value::from("milk")));
    assert_eq!(todos.get("b").unwrap(), None);
    assert_eq!(again.last_lsn(), written.lsn);
}
