//! The automerge merge policy on real redb files: concurrent offline edits of
//! text, counters and lists converge byte for byte in any delivery order,
//! over feeds and over the loopback transport; deletes and resurrection;
//! malformed automerge bytes from a peer are refused whole.
#![cfg(feature = "automerge")]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, open_node, quick_sync};
use syncline::automerge::transaction::Transactable;
use syncline::automerge::{AutoCommit, ObjType, ROOT, ReadDoc, ScalarValue};
use syncline::transport::Limits;
use syncline::transport::loopback::LoopbackNetwork;
use syncline::{
    ApplyError, Change, ChangeId, Collection, CollectionConfig, Fault, InvalidReason, ManualTime,
    MergePolicy, Op, OpError, OpKind, ReadError, Replica, ReplicaConfig, ReplicaId, Stamp,
    SyncEngine, SyncServer, Value, WriteError,
};

const DOCS: &str = "docs";

fn docs_config() -> CollectionConfig {
    CollectionConfig::default().with_policy(MergePolicy::Automerge)
}

/// A replica on a redb file in `dir` with the automerge collection `docs`.
fn open(dir: &Path, name: &str, id: u8, time: Option<&ManualTime>) -> Replica {
    let mut config = ReplicaConfig {
        replica_id: Some(ReplicaId::from_bytes([id; 16])),
        ..ReplicaConfig::default()
    };
    if let Some(time) = time {
        config = config.with_time(time.clone());
    }
    let r = Replica::open(dir.join(format!("{name}.redb")), config).unwrap();
    r.define_collection(DOCS, docs_config()).unwrap();
    r
}

fn docs(r: &Replica) -> Collection {
    r.collection(DOCS).unwrap()
}

/// Every change in `r`'s feed, in feed order.
fn feed(r: &Replica) -> Vec<Change> {
    r.feed_after(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect()
}

/// Sends every change `from` holds to `to`.
fn send(from: &Replica, to: &Replica) {
    to.apply_remote(&feed(from)).unwrap();
}

fn doc(r: &Replica, key: &str) -> AutoCommit {
    docs(r)
        .automerge_doc(key)
        .unwrap()
        .unwrap_or_else(|| panic!("{key} missing on {:?}", r.id()))
}

fn text(r: &Replica, key: &str) -> String {
    let doc = doc(r, key);
    let (_, text) = doc.get(ROOT, "text").unwrap().expect("a text");
    doc.text(&text).unwrap()
}

fn counter(r: &Replica, key: &str) -> i64 {
    let doc = doc(r, key);
    let (value, _) = doc.get(ROOT, "count").unwrap().expect("a counter");
    value.as_i64().unwrap()
}

fn list(r: &Replica, key: &str) -> Vec<String> {
    let doc = doc(r, key);
    let (_, list) = doc.get(ROOT, "items").unwrap().expect("a list");
    doc.values(&list)
        .map(|(v, _)| v.as_str().unwrap().to_string())
        .collect()
}

/// Creates `key` on `r`: the text "syncline", a counter at 0, the list ["first"].
fn create(r: &Replica, key: &str) {
    docs(r)
        .automerge_change(key, |doc| {
            let text = doc.put_object(ROOT, "text", ObjType::Text)?;
            doc.splice_text(&text, 0, 0, "syncline")?;
            doc.put(ROOT, "count", ScalarValue::counter(0))?;
            let items = doc.put_object(ROOT, "items", ObjType::List)?;
            doc.insert(&items, 0, "first")
        })
        .unwrap();
}

/// One side's offline edits: text spliced at `at` (`None`: appended), the
/// counter incremented by `by`, `item` inserted at the end of the list.
fn edit(r: &Replica, key: &str, at: Option<usize>, insert: &str, by: i64, item: &str) {
    docs(r)
        .automerge_change(key, |doc| {
            let (_, text) = doc.get(ROOT, "text")?.expect("a text");
            let at = at.unwrap_or_else(|| doc.length(&text));
            doc.splice_text(&text, at, 0, insert)?;
            doc.increment(ROOT, "count", by)?;
            let (_, items) = doc.get(ROOT, "items")?.expect("a list");
            let end = doc.length(&items);
            doc.insert(&items, end, item)
        })
        .unwrap();
}

#[test]
fn concurrent_offline_edits_merge_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "a", 1, None);
    let b = open(dir.path(), "b", 2, None);
    create(&a, "note");
    send(&a, &b);
    assert_eq!(text(&b, "note"), "syncline");

    // Offline: each side edits the same text, counter and list.
    edit(&a, "note", Some(0), "Hello ", 2, "from a");
    edit(&b, "note", None, " world", 3, "from b");
    assert_eq!(text(&a, "note"), "Hello syncline");
    assert_eq!(text(&b, "note"), "syncline world");

    let (from_a, from_b) = (feed(&a), feed(&b));
    b.apply_remote(&from_a).unwrap();
    a.apply_remote(&from_b).unwrap();
    for r in [&a, &b] {
        assert_eq!(text(r, "note"), "Hello syncline world");
        assert_eq!(counter(r, "note"), 5);
        let items = list(r, "note");
        assert_eq!(items.len(), 3, "{items:?}");
        assert_eq!(items[0], "first");
        assert!(items.contains(&"from a".to_string()) && items.contains(&"from b".to_string()));
    }
    assert_eq!(list(&a, "note"), list(&b, "note"));
    let state = docs(&a).states().unwrap();
    assert_eq!(state, docs(&b).states().unwrap());

    // A third replica gets every change in reverse order, one per batch,
    // each twice: the same bytes.
    let c = open(dir.path(), "c", 3, None);
    let mut all = feed(&a);
    all.reverse();
    for change in all.iter().chain(&all) {
        c.apply_remote(std::slice::from_ref(change)).unwrap();
    }
    assert_eq!(docs(&c).states().unwrap(), state);
    assert_eq!(text(&c, "note"), "Hello syncline world");

    // The stored value is the set of automerge changes, which automerge
    // loads as it is.
    let Some(Value::Bytes(bytes)) = docs(&a).get("note").unwrap() else {
        panic!("an automerge record's value is bytes");
    };
    let loaded = AutoCommit::load(&bytes).unwrap();
    let (_, t) = loaded.get(ROOT, "text").unwrap().unwrap();
    assert_eq!(loaded.text(&t).unwrap(), "Hello syncline world");

    // The state survives a reopen.
    drop((a, b, c));
    let a = open(dir.path(), "a", 1, None);
    assert_eq!(docs(&a).states().unwrap(), state);
}

#[test]
fn a_delete_hides_the_doc_and_a_newer_edit_brings_it_back_with_history() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualTime::new(common::T0);
    let a = open(dir.path(), "a", 1, Some(&time));
    let b = open(dir.path(), "b", 2, Some(&time));
    create(&a, "note");
    send(&a, &b);

    // b edits offline; a, later, deletes: the delete is newer than every
    // edit, so the record is a tombstone everywhere, edit included.
    time.advance(Duration::from_millis(5));
    edit(&b, "note", None, " (b)", 1, "b");
    time.advance(Duration::from_millis(5));
    docs(&a).delete("note").unwrap();
    a.apply_remote(&feed(&b)).unwrap();
    b.apply_remote(&feed(&a)).unwrap();
    for r in [&a, &b] {
        assert_eq!(docs(r).get("note").unwrap(), None);
        assert!(docs(r).automerge_doc("note").unwrap().is_none());
        assert!(docs(r).record("note").unwrap().unwrap().is_tombstone());
    }
    assert_eq!(docs(&a).states().unwrap(), docs(&b).states().unwrap());

    // A newer edit brings it back with all of its history, b's offline
    // edit included.
    time.advance(Duration::from_millis(5));
    edit(&b, "note", Some(0), "Back: ", 10, "again");
    a.apply_remote(&feed(&b)).unwrap();
    for r in [&a, &b] {
        assert_eq!(text(r, "note"), "Back: syncline (b)");
        assert_eq!(counter(r, "note"), 11);
        assert_eq!(list(r, "note"), ["first", "b", "again"]);
    }
    assert_eq!(docs(&a).states().unwrap(), docs(&b).states().unwrap());

    // The same changes in reverse order on a third replica.
    let c = open(dir.path(), "c", 3, Some(&time));
    let mut all = feed(&b);
    all.reverse();
    for change in &all {
        c.apply_remote(std::slice::from_ref(change)).unwrap();
    }
    assert_eq!(docs(&c).states().unwrap(), docs(&a).states().unwrap());
}

/// A raw automerge change made on top of `base` (empty: a new document).
fn raw_change(base: &[u8], actor: u8) -> Vec<u8> {
    let mut doc = if base.is_empty() {
        AutoCommit::new()
    } else {
        AutoCommit::load(base).unwrap()
    };
    doc.set_actor(automerge::ActorId::from(&[actor; 16][..]));
    let heads = doc.get_heads();
    doc.put(ROOT, "x", 1).unwrap();
    doc.commit();
    doc.get_changes(&heads)
        .iter()
        .flat_map(|c| c.raw_bytes().to_vec())
        .collect()
}

#[test]
fn malformed_automerge_bytes_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(dir.path(), "r", 1, None);
    let now = syncline::TimeSource::now_millis(&syncline::SystemTimeSource);
    let peer = ReplicaId::from_bytes([7; 16]);
    let change = |seq: u64, op: Op| Change {
        id: ChangeId { origin: peer, seq },
        collection: DOCS.into(),
        key: format!("k{seq}").into(),
        stamp: Stamp::new(now, seq as u16),
        base: Stamp::ZERO,
        op,
    };
    let good = raw_change(&[], 7);
    let mut bad_checksum = good.clone();
    bad_checksum[5] ^= 1;
    let mut compressed_doc = AutoCommit::new();
    let text = compressed_doc.put_object(ROOT, "t", ObjType::Text).unwrap();
    compressed_doc
        .splice_text(&text, 0, 0, &"compressible ".repeat(100))
        .unwrap();
    compressed_doc.commit();
    let compressed = compressed_doc
        .get_last_local_change()
        .unwrap()
        .bytes()
        .to_vec();
    let mut whole_doc = AutoCommit::new();
    whole_doc.put(ROOT, "x", 1).unwrap();
    let malformed: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("garbage", b"not automerge at all".to_vec()),
        ("magic only", vec![0x85, 0x6f, 0x4a, 0x83]),
        ("truncated", good[..good.len() - 2].to_vec()),
        ("trailing byte", [good.as_slice(), &[0]].concat()),
        ("bad checksum", bad_checksum),
        ("compressed", compressed),
        ("a whole document", whole_doc.save()),
    ];
    let before = (r.last_lsn(), r.clock());
    for (what, bytes) in malformed {
        // A good change first: the batch is refused whole.
        let batch = [
            change(1, Op::Automerge(good.clone())),
            change(2, Op::Automerge(bytes)),
        ];
        match r.apply_remote(&batch) {
            Err(e @ ApplyError::InvalidChange { id, .. }) => {
                assert_eq!(id, batch[1].id, "{what}");
                assert!(
                    matches!(
                        &e,
                        ApplyError::InvalidChange {
                            reason: InvalidReason::Op(OpError::Automerge(_)),
                            ..
                        }
                    ),
                    "{what}: {e}"
                );
                assert_eq!(e.fault(), Fault::Peer);
            }
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
        assert_eq!((r.last_lsn(), r.clock()), before, "{what}");
        assert!(docs(&r).states().unwrap().is_empty(), "{what}");
    }

    // The good change alone is stored; other ops are refused on automerge
    // collections, locally too.
    r.apply_remote(&[change(1, Op::Automerge(good))]).unwrap();
    let doc = docs(&r).automerge_doc("k1").unwrap().unwrap();
    assert_eq!(doc.get(ROOT, "x").unwrap().unwrap().0.as_i64(), Some(1));
    let put = r.apply_remote(&[change(2, Op::Put(Value::Int(1)))]);
    assert!(
        matches!(put, Err(ApplyError::InvalidChange { .. })),
        "{put:?}"
    );
    assert!(matches!(
        docs(&r).put("k1", 1i64),
        Err(WriteError::Op(OpError::NotAllowed {
            op: OpKind::PutOther,
            policy: MergePolicy::Automerge,
        }))
    ));

    // The automerge API refuses other collections; a failing closure stores nothing.
    let todos = r
        .define_collection("todos", CollectionConfig::default())
        .unwrap();
    assert!(matches!(
        todos.automerge_change("k", |_| Ok(())),
        Err(WriteError::Op(OpError::NotAllowed {
            op: OpKind::Automerge,
            policy: MergePolicy::Lww,
        }))
    ));
    assert!(matches!(
        todos.automerge_doc("k"),
        Err(ReadError::Op(OpError::NotAllowed { .. }))
    ));
    let lsn = r.last_lsn();
    let failed = docs(&r).automerge_change("k9", |doc| {
        doc.put(ROOT, "y", 1)?;
        // The root is a map, not a text: automerge refuses.
        doc.splice_text(ROOT, 0, 0, "text")
    });
    assert!(
        matches!(failed, Err(WriteError::Automerge(_))),
        "{failed:?}"
    );
    assert_eq!(r.last_lsn(), lsn);
    assert!(docs(&r).automerge_doc("k9").unwrap().is_none());
    // A closure that changes nothing stores nothing.
    docs(&r).automerge_change("k1", |_| Ok(())).unwrap();
    assert_eq!(r.last_lsn(), lsn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sync_concurrent_edits_through_a_hub() {
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(41);
    let hub = open_node(dir.path(), "hub", 100).await;
    let c1 = open_node(dir.path(), "c1", 1).await;
    let c2 = open_node(dir.path(), "c2", 2).await;
    for r in [&hub, &c1, &c2] {
        r.define_collection(DOCS, docs_config()).unwrap();
    }
    // Both clients start from the same document, then edit offline.
    create(&c1, "note");
    send(&c1, &c2);
    edit(&c1, "note", Some(0), "Hello ", 2, "from c1");
    edit(&c2, "note", None, " world", 3, "from c2");

    let _server = net
        .serve(
            "hub",
            SyncServer::new(hub.clone()).into_service(),
            Limits::default(),
        )
        .unwrap();
    let _e1 = SyncEngine::start(c1.clone(), net.connector("c1", "hub"), quick_sync(1));
    let _e2 = SyncEngine::start(c2.clone(), net.connector("c2", "hub"), quick_sync(2));
    let all = [&hub, &c1, &c2];
    let done = || {
        let first = docs(&hub).states().unwrap();
        !first.is_empty()
            && [&c1, &c2]
                .iter()
                .all(|r| docs(r).states().unwrap() == first)
            && docs(&hub)
                .automerge_doc("note")
                .unwrap()
                .is_some_and(|mut d| d.get_heads().len() == 2)
    };
    eventually(&all, Duration::from_secs(30), "the edits to converge", done).await;
    for r in all {
        assert_eq!(text(r, "note"), "Hello syncline world");
        assert_eq!(counter(r, "note"), 5);
        assert_eq!(list(r, "note").len(), 3);
    }

    // A live edit travels through the hub's subscription.
    edit(&c2, "note", Some(0), ">> ", 1, "live");
    eventually(&all, Duration::from_secs(30), "the live edit", || {
        docs(&c1).automerge_doc("note").unwrap().is_some_and(|d| {
            let (_, t) = d.get(ROOT, "text").unwrap().unwrap();
            d.text(&t).unwrap().starts_with(">> ")
        })
    })
    .await;
    eventually(&all, Duration::from_secs(30), "the same states", || {
        let first = docs(&hub).states().unwrap();
        [&c1, &c2]
            .iter()
            .all(|r| docs(r).states().unwrap() == first)
    })
    .await;
    assert_eq!(counter(&hub, "note"), 6);
}
