//! `Replica::verify` and `Replica::open_read_only`: replicas written every
//! way verify clean (puts, deletes, purges, transactions, conflicts from
//! concurrent remote changes, field-level merges, history and undo entries,
//! collected tombstones, automerge, upgraded files, a random exchange among
//! three replicas); files damaged on purpose with redb are reported with
//! the damaged record's key; a read-only open writes nothing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{T0, manual_config, memory_replica};
use redb::{ReadableTable, TableDefinition};
use syncline::{
    Change, CollectionConfig, DifferenceKind, History, Key, ManualTime, MergePolicy, OpenError,
    Replica, StorageError, Value, VerifyReport, WriteError,
};

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records-3");
const LOG: TableDefinition<&[u8], &[u8]> = TableDefinition::new("log-3");
const FEED: TableDefinition<u64, &[u8]> = TableDefinition::new("feed-3");

/// Every change `r` sends, in feed order.
fn feed(r: &Replica) -> Vec<Change> {
    r.feed_after(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect()
}

/// The changes of `collection` that `r` sends, in feed order.
fn feed_of(r: &Replica, collection: &str) -> Vec<Change> {
    feed(r)
        .into_iter()
        .filter(|c| c.collection == collection)
        .collect()
}

fn fields(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(f, v)| (f.to_string(), v.clone()))
        .collect()
}

fn assert_clean(report: &VerifyReport) {
    assert!(
        report.is_clean(),
        "{} differences: {:#?}",
        report.total,
        report.differences
    );
}

/// The record key of `key` in `collection` (no zero bytes in the name).
fn record_key(collection: &str, key: &[u8]) -> Vec<u8> {
    let mut out = collection.as_bytes().to_vec();
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(key);
    out
}

/// Writes on a file replica in every way the store knows, with two
/// in-memory peers making concurrent changes.
fn write_everything(r: &Replica, time: &ManualTime) {
    let todos = r
        .define_collection("todos", CollectionConfig::default())
        .unwrap();
    let notes = r
        .define_collection(
            "notes",
            CollectionConfig::default().with_history(History::Last(2)),
        )
        .unwrap();
    let cards = r
        .define_collection(
            "cards",
            CollectionConfig::default().with_policy(MergePolicy::FieldLww),
        )
        .unwrap();
    let a = memory_replica(2, time);
    let b = memory_replica(3, time);
    for p in [&a, &b] {
        p.define_collection(
            "cards",
            CollectionConfig::default().with_policy(MergePolicy::FieldLww),
        )
        .unwrap();
    }
    for i in 0..20i64 {
        todos.put(format!("k{i}"), i).unwrap();
        time.advance(Duration::from_millis(1));
    }
    todos.delete("k3").unwrap();
    todos.purge("k4").unwrap();
    let mut txn = r.transaction();
    txn.put("todos", "t1", 1i64)
        .put("todos", "t2", 2i64)
        .delete("todos", "k5")
        .put(
            "todos",
            Key::new(vec![0xff, 0, 7]),
            Value::Bytes(vec![1, 2]),
        );
    txn.commit().unwrap();
    for i in 0..5i64 {
        notes.put("n", i).unwrap();
        time.advance(Duration::from_millis(1));
    }
    // Concurrent remote changes: conflicts, some resolved by a local write.
    for (peer, who) in [(&a, "a"), (&b, "b")] {
        let t = peer.collection("todos").unwrap();
        for k in ["k6", "k7", "k8", "new"] {
            t.put(k, format!("{who}'s {k}")).unwrap();
        }
        t.delete("k9").unwrap();
        time.advance(Duration::from_millis(1));
    }
    r.apply_remote_from(Some(a.id()), &feed(&a)).unwrap();
    r.apply_remote_from(Some(b.id()), &feed(&b)).unwrap();
    assert!(!todos.conflicts().unwrap().is_empty(), "conflicts recorded");
    todos.resolve("k7", Some(Value::from("settled"))).unwrap();
    todos.put("new", "mine").unwrap();
    // Field-level: concurrent patches, a delete, fields after it.
    cards
        .put(
            "c1",
            Value::Map(fields(&[("title", "one".into()), ("n", 1i64.into())])),
        )
        .unwrap();
    a.apply_remote(&feed_of(r, "cards")).unwrap();
    b.apply_remote(&feed_of(r, "cards")).unwrap();
    time.advance(Duration::from_millis(1));
    a.collection("cards")
        .unwrap()
        .patch("c1", fields(&[("title", "a's".into())]))
        .unwrap();
    b.collection("cards")
        .unwrap()
        .patch("c1", fields(&[("n", 2i64.into())]))
        .unwrap();
    b.collection("cards")
        .unwrap()
        .patch("c2", fields(&[("x", Value::Null)]))
        .unwrap();
    r.apply_remote_from(Some(a.id()), &feed(&a)).unwrap();
    r.apply_remote_from(Some(b.id()), &feed(&b)).unwrap();
    time.advance(Duration::from_millis(1));
    cards.delete("c2").unwrap();
    time.advance(Duration::from_millis(1));
    cards.patch("c2", fields(&[("y", 1.5f64.into())])).unwrap();
    cards.purge("c3").unwrap();
    // Tombstones collected.
    time.advance(Duration::from_secs(3600));
    r.collect_tombstones(Duration::from_secs(60)).unwrap();
    todos.put("after", "collection").unwrap();
    #[cfg(feature = "automerge")]
    write_automerge(r, time);
}

#[cfg(feature = "automerge")]
fn write_automerge(r: &Replica, time: &ManualTime) {
    use syncline::automerge::ROOT;
    use syncline::automerge::transaction::Transactable;
    let config = CollectionConfig::default().with_policy(MergePolicy::Automerge);
    let docs = r.define_collection("docs", config.clone()).unwrap();
    let other = memory_replica(4, time);
    other.define_collection("docs", config).unwrap();
    docs.automerge_change("d", |doc| doc.put(ROOT, "title", "mine"))
        .unwrap();
    other.apply_remote(&feed_of(r, "docs")).unwrap();
    other
        .collection("docs")
        .unwrap()
        .automerge_change("d", |doc| doc.put(ROOT, "body", "theirs"))
        .unwrap();
    docs.automerge_change("e", |doc| doc.put(ROOT, "n", 1i64))
        .unwrap();
    r.apply_remote_from(Some(other.id()), &feed(&other))
        .unwrap();
    time.advance(Duration::from_millis(1));
    docs.delete("e").unwrap();
}

#[test]
fn a_replica_written_every_way_verifies_clean_open_and_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let time = ManualTime::new(T0);
    let r = Replica::open(&path, manual_config(1, &time)).unwrap();
    write_everything(&r, &time);
    let report = r.verify().unwrap();
    assert_clean(&report);
    let stats = r.storage_stats().unwrap();
    let records: u64 = stats
        .collections
        .values()
        .map(|c| c.live + c.tombstones)
        .sum();
    assert_eq!(report.records, records);
    assert_eq!(report.feed_entries, records);
    assert_eq!(report.feed_markers, stats.feed_markers);
    assert_eq!(report.last_lsn, r.last_lsn());
    assert!(report.log_entries > 0, "conflicts, history, undo entries");
    r.close().unwrap();
    let ro = Replica::open_read_only(&path, manual_config(1, &time)).unwrap();
    assert_eq!(ro.verify().unwrap(), report);
}

/// Three replicas make random writes and exchange feeds in random order
/// and random slices; every replica verifies clean all along.
#[test]
fn replicas_exchanging_at_random_verify_clean() {
    let time = ManualTime::new(T0);
    let replicas: Vec<Replica> = (1..=3).map(|id| memory_replica(id, &time)).collect();
    for r in &replicas {
        r.define_collection(
            "cards",
            CollectionConfig::default().with_policy(MergePolicy::FieldLww),
        )
        .unwrap();
        r.define_collection(
            "notes",
            CollectionConfig::default().with_history(History::Last(1)),
        )
        .unwrap();
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for step in 0..600u64 {
        let r = &replicas[next(3) as usize];
        let key = format!("k{}", next(6));
        match next(10) {
            0..=2 => {
                let c = ["todos", "notes"][next(2) as usize];
                r.collection(c).unwrap().put(key, step as i64).unwrap();
            }
            3 => {
                r.collection("todos").unwrap().delete(key).unwrap();
            }
            4 => {
                let f = ["a", "b", "c"][next(3) as usize];
                r.collection("cards")
                    .unwrap()
                    .patch(key, fields(&[(f, (step as i64).into())]))
                    .unwrap();
            }
            5 => {
                r.collection("cards").unwrap().delete(key).unwrap();
            }
            6 if next(4) == 0 => {
                r.collection("todos").unwrap().purge(key).unwrap();
            }
            _ => {
                let from = &replicas[next(3) as usize];
                if from.id() != r.id() {
                    let all = feed(from);
                    let start = next(all.len() as u64 + 1) as usize;
                    r.apply_remote_from(Some(from.id()), &all[start..]).unwrap();
                }
            }
        }
        if next(3) == 0 {
            time.advance(Duration::from_millis(next(3)));
        }
        if step % 50 == 0 {
            for r in &replicas {
                assert_clean(&r.verify().unwrap());
            }
        }
    }
    // Full exchange: the same states, and clean.
    for _ in 0..2 {
        for from in &replicas {
            for to in &replicas {
                if from.id() != to.id() {
                    to.apply_remote_from(Some(from.id()), &feed(from)).unwrap();
                }
            }
        }
    }
    for r in &replicas {
        assert_clean(&r.verify().unwrap());
        for c in ["todos", "notes", "cards"] {
            assert_eq!(
                r.collection(c).unwrap().states().unwrap(),
                replicas[0].collection(c).unwrap().states().unwrap()
            );
        }
    }
}

#[test]
fn upgraded_files_verify_clean() {
    for fixture in ["format-1", "format-2"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        std::fs::copy(format!("tests/fixtures/{fixture}.redb"), &path).unwrap();
        let time = ManualTime::new(T0);
        // Read-only: the upgrade would write, so it is refused.
        let before = std::fs::read(&path).unwrap();
        let err = Replica::open_read_only(&path, manual_config(9, &time)).unwrap_err();
        assert!(
            matches!(err, OpenError::NeedsUpgrade { found } if fixture.ends_with(&found.to_string())),
            "{err:?}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before, "nothing written");
        let r = Replica::open(&path, manual_config(9, &time)).unwrap();
        assert_clean(&r.verify().unwrap());
    }
}

/// Writes a closed replica `path` with the field-level `cards`
/// (`a`, `b`, `c`, each `{name}`) and LWW `todos` (`k0`..`k4`); returns
/// the lsn of each `todos` record.
fn damage_subject(path: &Path) -> Vec<u64> {
    let time = ManualTime::new(T0);
    let r = Replica::open(path, manual_config(1, &time)).unwrap();
    let cards = r
        .define_collection(
            "cards",
            CollectionConfig::default().with_policy(MergePolicy::FieldLww),
        )
        .unwrap();
    for (k, name) in [("a", "bread"), ("b", "milk"), ("c", "eggs")] {
        cards
            .put(k, Value::Map(fields(&[("name", name.into())])))
            .unwrap();
    }
    let todos = r
        .define_collection("todos", CollectionConfig::default())
        .unwrap();
    let lsns = (0..5i64)
        .map(|i| todos.put(format!("k{i}"), i).unwrap().lsn)
        .collect();
    assert_clean(&r.verify().unwrap());
    r.close().unwrap();
    lsns
}

/// Changes a closed file with redb directly, then verifies it read-only.
fn damage(path: &Path, f: impl FnOnce(&redb::WriteTransaction)) -> VerifyReport {
    let db = redb::Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    f(&txn);
    txn.commit().unwrap();
    drop(db);
    let time = ManualTime::new(T0);
    Replica::open_read_only(path, manual_config(1, &time))
        .unwrap()
        .verify()
        .unwrap()
}

/// The only differences are about `key` in `collection`.
fn only_about<'a>(
    report: &'a VerifyReport,
    collection: &str,
    key: &str,
) -> Vec<&'a DifferenceKind> {
    assert!(!report.is_clean());
    assert_eq!(report.total as usize, report.differences.len());
    report
        .differences
        .iter()
        .map(|d| {
            if d.collection.is_some() {
                assert_eq!(d.collection.as_deref(), Some(collection), "{d}");
                assert_eq!(d.key, Some(Key::from(key)), "{d}");
            }
            &d.kind
        })
        .collect()
}

#[test]
fn a_field_value_altered_in_place_is_reported_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    damage_subject(&path);
    let report = damage(&path, |txn| {
        let mut records = txn.open_table(RECORDS).unwrap();
        let key = record_key("cards", b"b");
        let mut row = records
            .get(key.as_slice())
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        let at = row.windows(4).position(|w| w == b"milk").unwrap();
        row[at] = b's';
        records.insert(key.as_slice(), row.as_slice()).unwrap();
    });
    let kinds = only_about(&report, "cards", "b");
    assert_eq!(kinds.len(), 1, "{kinds:?}");
    let DifferenceKind::Value { stored, recomputed } = kinds[0] else {
        panic!("{kinds:?}")
    };
    let name = |v: &Option<Value>| v.as_ref().unwrap().as_map().unwrap()["name"].clone();
    assert_eq!(name(stored), Value::from("silk"));
    assert_eq!(name(recomputed), Value::from("milk"));
    let text = report.differences[0].to_string();
    assert!(
        text.contains("\"cards\"") && text.contains("\"b\""),
        "{text}"
    );
}

#[test]
fn a_missing_feed_entry_is_reported_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let lsns = damage_subject(&path);
    let report = damage(&path, |txn| {
        txn.open_table(FEED).unwrap().remove(lsns[2]).unwrap();
    });
    let kinds = only_about(&report, "todos", "k2");
    assert!(
        kinds.contains(&&DifferenceKind::NoFeedEntry { lsn: lsns[2] }),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&&DifferenceKind::Counts {
            records: 8,
            feed_entries: 7
        }),
        "{kinds:?}"
    );
}

#[test]
fn a_row_that_does_not_decode_is_reported_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    damage_subject(&path);
    let report = damage(&path, |txn| {
        let key = record_key("todos", b"k1");
        txn.open_table(RECORDS)
            .unwrap()
            .insert(key.as_slice(), [8u8, 0xff].as_slice())
            .unwrap();
    });
    let kinds = only_about(&report, "todos", "k1");
    assert!(
        matches!(
            kinds.as_slice(),
            [DifferenceKind::Undecodable {
                table: "records-3",
                ..
            }]
        ),
        "{kinds:?}"
    );
}

#[test]
fn a_removed_log_entry_and_an_orphan_are_reported_with_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let time = ManualTime::new(T0);
    let r = Replica::open(&path, manual_config(1, &time)).unwrap();
    let todos = r
        .define_collection("todos", CollectionConfig::default())
        .unwrap();
    let other = memory_replica(2, &time);
    todos.put("c", "mine").unwrap();
    other
        .collection("todos")
        .unwrap()
        .put("c", "theirs")
        .unwrap();
    r.apply_remote(&feed(&other)).unwrap();
    assert_eq!(todos.conflicts().unwrap().len(), 1);
    r.close().unwrap();
    let report = damage(&path, |txn| {
        let mut log = txn.open_table(LOG).unwrap();
        let (k, v) = {
            let first = log.first().unwrap().unwrap();
            (first.0.value().to_vec(), first.1.value().to_vec())
        };
        log.remove(k.as_slice()).unwrap();
        // The same entry under a record that does not exist.
        let mut orphan = record_key("todos", b"");
        orphan.extend_from_slice(b"gone\0\x01");
        orphan.extend_from_slice(&k[k.len() - 12..]);
        log.insert(orphan.as_slice(), v.as_slice()).unwrap();
    });
    let mut about: Vec<(Option<Key>, &DifferenceKind)> = report
        .differences
        .iter()
        .map(|d| (d.key.clone(), &d.kind))
        .collect();
    about.sort_by_key(|(k, _)| k.clone());
    assert!(
        matches!(
            about.as_slice(),
            [
                (Some(c), DifferenceKind::LoggedCount { stored: 1, found: 0 }),
                (Some(g), DifferenceKind::OrphanLog { .. }),
            ] if c == &Key::from("c") && g == &Key::from("gone")
        ),
        "{about:?}"
    );
}

#[test]
fn a_read_only_replica_writes_nothing_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.redb");
    let time = ManualTime::new(T0);
    damage_subject(&path);
    let before = std::fs::read(&path).unwrap();
    let r = Replica::open_read_only(&path, manual_config(7, &time)).unwrap();
    assert_eq!(r.id(), syncline::ReplicaId::from_bytes([1; 16]));
    assert_eq!(r.collection("todos").unwrap().len().unwrap(), 5);
    let err = r.collection("todos").unwrap().put("x", 1i64).unwrap_err();
    assert!(
        matches!(err, WriteError::Storage(StorageError::ReadOnly)),
        "{err:?}"
    );
    assert_eq!(err.fault(), syncline::Fault::Caller);
    assert!(
        r.define_collection("new", CollectionConfig::default())
            .is_err()
    );
    // Another read-only open shares the file; a writer may not open it.
    let again = Replica::open_read_only(&path, manual_config(7, &time)).unwrap();
    assert!(Replica::open(&path, manual_config(7, &time)).is_err());
    assert_clean(&again.verify().unwrap());
    drop((r, again));
    assert_eq!(std::fs::read(&path).unwrap(), before, "not a byte written");
    // A writer holding it: a read-only open is refused.
    let w = Replica::open(&path, manual_config(7, &time)).unwrap();
    assert!(Replica::open_read_only(&path, manual_config(7, &time)).is_err());
    drop(w);
    // No file, no replica.
    assert!(
        Replica::open_read_only(dir.path().join("none.redb"), manual_config(7, &time)).is_err()
    );
    let empty = dir.path().join("empty.redb");
    drop(redb::Database::create(&empty).unwrap());
    let err = Replica::open_read_only(&empty, manual_config(7, &time)).unwrap_err();
    assert!(matches!(err, OpenError::Foreign(_)), "{err:?}");
}
