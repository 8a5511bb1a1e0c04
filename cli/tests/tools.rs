//! The built `syncline` binary on files the library wrote: `inspect` (text
//! and JSON, counts as written, read-only, a file held by a writer),
//! `dump`/`import` (byte-identical round trips of every value shape, paging,
//! a bad line named and what was written before it kept), `verify` (exit
//! codes for clean, damaged and unreadable files).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use syncline::automerge::ROOT;
use syncline::automerge::transaction::Transactable;
use syncline::{
    Change, CollectionConfig, History, Key, MergePolicy, Replica, ReplicaConfig, ReplicaId, Value,
};

/// Runs the binary with `args`, feeding `stdin` if given.
fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_syncline"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run syncline");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the binary and expects exit code `code`.
fn expect(code: i32, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let out = run(args, stdin);
    assert_eq!(
        out.status.code(),
        Some(code),
        "syncline {args:?}\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn feed(r: &Replica) -> Vec<Change> {
    r.feed_after(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect()
}

fn map(pairs: &[(&str, Value)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

/// A file replica with `todos`: ten records, two deleted, one conflict
/// from a peer; and a local-only field-level `notes` keeping history.
fn write_known(p: &Path) -> ReplicaId {
    let r = Replica::open(p, ReplicaConfig::default()).unwrap();
    let todos = r
        .define_collection("todos", CollectionConfig::default())
        .unwrap();
    for i in 0..10i64 {
        todos.put(format!("k{i}"), i).unwrap();
    }
    todos.delete("k0").unwrap();
    todos.delete("k1").unwrap();
    let notes = r
        .define_collection(
            "notes",
            CollectionConfig::local_only()
                .with_policy(MergePolicy::FieldLww)
                .with_history(History::Last(3)),
        )
        .unwrap();
    notes.put("n", map(&[("a", 1i64.into())])).unwrap();
    let peer = Replica::in_memory(ReplicaConfig::default()).unwrap();
    peer.define_collection("todos", CollectionConfig::default())
        .unwrap();
    // Concurrent with ours: a conflict whichever wins.
    peer.collection("todos")
        .unwrap()
        .put("k5", "theirs")
        .unwrap();
    r.apply_remote_from(Some(peer.id()), &feed(&peer)).unwrap();
    assert_eq!(todos.conflicts().unwrap().len(), 1);
    let id = r.id();
    r.close().unwrap();
    id
}

#[test]
fn inspect_shows_what_the_library_wrote_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.redb");
    let id = write_known(&db);
    let before = std::fs::read(&db).unwrap();
    let out = expect(0, &["inspect", "--db", path(&db), "--json"], None);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["replica"], id.to_string());
    assert_eq!(json["format"], syncline::FORMAT_VERSION);
    assert_eq!(json["last_lsn"], 14);
    let collections = json["collections"].as_array().unwrap();
    let todos = collections.iter().find(|c| c["name"] == "todos").unwrap();
    assert_eq!(todos["policy"], "lww");
    assert_eq!(todos["sync"], true);
    assert_eq!(todos["history"], "merge");
    assert_eq!(todos["live"], 8);
    assert_eq!(todos["tombstones"], 2);
    assert_eq!(todos["conflicts"], 1);
    assert_eq!(todos["head"], 14);
    let notes = collections.iter().find(|c| c["name"] == "notes").unwrap();
    assert_eq!(
        (
            &notes["policy"],
            &notes["sync"],
            &notes["history"],
            &notes["live"]
        ),
        (
            &serde_json::json!("field-lww"),
            &serde_json::json!(false),
            &serde_json::json!("last 3"),
            &serde_json::json!(1)
        )
    );
    assert_eq!(json["peers"].as_array().unwrap().len(), 1);
    assert_eq!(json["refused_groups"], 0);
    assert_eq!(json["feed"]["entries"], 11);
    let tables = json["tables"].as_array().unwrap();
    let records = tables.iter().find(|t| t["name"] == "records-3").unwrap();
    assert_eq!(records["entries"], 11);
    assert!(records["stored_bytes"].as_u64().unwrap() > 0);

    let out = expect(0, &["inspect", "--db", path(&db)], None);
    let shown = text(&out.stdout);
    for want in [
        id.to_string().as_str(),
        "format",
        "last lsn   14",
        "collections",
        "todos",
        "field-lww",
        "last 3",
        "records-3",
        "peers",
        "0 groups a remote refused",
    ] {
        assert!(shown.contains(want), "{want:?} in\n{shown}");
    }
    assert_eq!(std::fs::read(&db).unwrap(), before, "inspect wrote nothing");
}

#[test]
fn a_file_held_by_a_writer_or_missing_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.redb");
    let held = Replica::open(&db, ReplicaConfig::default()).unwrap();
    for args in [
        vec!["inspect", "--db", path(&db)],
        vec!["dump", "--db", path(&db), "--collection", "x"],
        vec!["verify", "--db", path(&db)],
        vec!["import", "--db", path(&db), "--collection", "x"],
    ] {
        let out = expect(1, &args, Some(b""));
        let err = text(&out.stderr);
        assert!(
            err.contains("is open in another process (a running hub?)"),
            "{args:?}: {err}"
        );
    }
    drop(held);
    let missing = dir.path().join("none.redb");
    let out = expect(1, &["inspect", "--db", path(&missing)], None);
    assert!(text(&out.stderr).contains("no such replica file"));
    assert!(!missing.exists(), "nothing created");
    let out = expect(
        1,
        &["dump", "--db", path(&db), "--collection", "nope"],
        None,
    );
    assert!(text(&out.stderr).contains("has no collection \"nope\""));
}

/// Every value shape, keys that are not UTF-8, and deletes.
fn shapes() -> Vec<(Key, Option<Value>)> {
    let mut out: Vec<(Key, Option<Value>)> = [
        Value::Null,
        Value::Bool(false),
        Value::Int(i64::MIN),
        Value::Int(-1),
        Value::Float(0.1),
        Value::Float(-0.0),
        Value::Float(1.0),
        Value::Float(f64::NAN),
        Value::Float(f64::NEG_INFINITY),
        Value::Float(1e-310),
        Value::String("tab\t \"quoted\" é 😀 \u{0}".into()),
        Value::Bytes(vec![0, 0xff, 7]),
        Value::Bytes(vec![]),
        Value::List(vec![Value::Int(1), Value::Float(1.0), Value::Null]),
        map(&[]),
        map(&[(
            "outer",
            map(&[("inner", Value::List(vec![Value::Bytes(vec![1])]))]),
        )]),
        map(&[("$bytes", Value::from("not bytes"))]),
        map(&[("$map", map(&[("$float", Value::Int(1))]))]),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, v)| (Key::from(format!("v{i:02}")), Some(v)))
    .collect();
    out.push((Key::new(vec![0xff, 0x00, 0x01]), Some(Value::Int(1))));
    out.push((Key::new(vec![0xc3]), Some(Value::from("half a char"))));
    out.push((Key::from("line\nbreak"), Some(Value::Bool(true))));
    out.push((Key::from("gone"), None));
    out.push((Key::new(vec![0x80]), None));
    out
}

#[test]
fn dump_import_dump_is_byte_identical_for_every_shape() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.redb");
    let r = Replica::open(&first, ReplicaConfig::default()).unwrap();
    let c = r
        .define_collection("things", CollectionConfig::default())
        .unwrap();
    for (key, value) in shapes() {
        c.put(key.clone(), Value::Null).unwrap();
        match value {
            Some(v) => c.put(key, v).unwrap(),
            None => c.delete(key).unwrap(),
        };
    }
    // More than a page and a transaction.
    let mut txn = r.transaction();
    for i in 0..2500i64 {
        txn.put("things", format!("bulk{i:05}"), i);
    }
    txn.commit().unwrap();
    r.close().unwrap();

    for tombstones in [false, true] {
        let mut args = vec!["dump", "--db", path(&first), "--collection", "things"];
        if tombstones {
            args.push("--tombstones");
        }
        let dumped = expect(0, &args, None).stdout;
        let lines = text(&dumped).lines().count();
        assert_eq!(lines, 2500 + 21 + if tombstones { 2 } else { 0 });
        let second = dir.path().join(format!("second-{tombstones}.redb"));
        let out = expect(
            0,
            &["import", "--db", path(&second), "--collection", "things"],
            Some(&dumped),
        );
        assert!(
            text(&out.stdout).contains(&format!("imported {lines} records")),
            "{}",
            text(&out.stdout)
        );
        args[2] = path(&second);
        let again = expect(0, &args, None).stdout;
        assert!(again == dumped, "the second dump differs from the first");
        // The values are the same, read through the library.
        let back = Replica::open_read_only(&second, ReplicaConfig::default()).unwrap();
        let things = back.collection("things").unwrap();
        for (key, value) in shapes() {
            match value {
                Some(Value::Float(f)) => {
                    let Some(Value::Float(g)) = things.get(key).unwrap() else {
                        panic!("a float")
                    };
                    assert_eq!(f.to_bits(), g.to_bits());
                }
                Some(v) => assert_eq!(things.get(key).unwrap(), Some(v)),
                None if tombstones => {
                    assert!(things.record(key).unwrap().unwrap().is_tombstone())
                }
                None => assert_eq!(things.record(key).unwrap(), None),
            }
        }
    }
    let out = expect(0, &["dump", "--help"], None);
    assert!(
        text(&out.stdout).contains("$bytes"),
        "the help names the encoding"
    );
}

#[test]
fn field_level_and_automerge_collections_round_trip_with_their_policy() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.redb");
    let r = Replica::open(&first, ReplicaConfig::default()).unwrap();
    let cards = r
        .define_collection(
            "cards",
            CollectionConfig::default().with_policy(MergePolicy::FieldLww),
        )
        .unwrap();
    cards
        .put("c", map(&[("title", "t".into()), ("n", 1.5f64.into())]))
        .unwrap();
    cards
        .patch("c", BTreeMap::from([("more".to_string(), Value::Int(2))]))
        .unwrap();
    let docs = r
        .define_collection(
            "docs",
            CollectionConfig::default().with_policy(MergePolicy::Automerge),
        )
        .unwrap();
    docs.automerge_change("d", |doc| doc.put(ROOT, "title", "hello"))
        .unwrap();
    docs.automerge_change("d", |doc| doc.put(ROOT, "n", 3i64))
        .unwrap();
    r.close().unwrap();
    let second = dir.path().join("second.redb");
    for (collection, policy) in [("cards", "field-lww"), ("docs", "automerge")] {
        let dumped = expect(
            0,
            &["dump", "--db", path(&first), "--collection", collection],
            None,
        )
        .stdout;
        let input = dir.path().join(format!("{collection}.jsonl"));
        std::fs::write(&input, &dumped).unwrap();
        expect(
            0,
            &[
                "import",
                "--db",
                path(&second),
                "--collection",
                collection,
                "--policy",
                policy,
                "--input",
                path(&input),
            ],
            None,
        );
        let again = expect(
            0,
            &["dump", "--db", path(&second), "--collection", collection],
            None,
        )
        .stdout;
        assert!(again == dumped, "{collection}: {}", text(&again));
    }
    // Into a collection of another policy: refused before anything.
    let cards = dir.path().join("cards.jsonl");
    let out = expect(
        2,
        &[
            "import",
            "--db",
            path(&second),
            "--collection",
            "docs",
            "--policy",
            "field-lww",
            "--input",
            path(&cards),
        ],
        None,
    );
    assert!(
        text(&out.stderr).contains("has policy Automerge"),
        "{}",
        text(&out.stderr)
    );
    let out = expect(
        1,
        &[
            "import",
            "--db",
            path(&second),
            "--collection",
            "docs",
            "--input",
            path(&cards),
        ],
        None,
    );
    assert!(
        text(&out.stderr).contains("line 1: an automerge collection takes the {\"$bytes\": ...} of a dumped record, not a map"),
        "{}",
        text(&out.stderr)
    );
    let back = Replica::open_read_only(&second, ReplicaConfig::default()).unwrap();
    let doc = back
        .collection("docs")
        .unwrap()
        .automerge_doc("d")
        .unwrap()
        .unwrap();
    use syncline::automerge::ReadDoc;
    assert!(
        doc.get(ROOT, "title").unwrap().is_some(),
        "the same document"
    );
}

#[test]
fn import_names_the_bad_line_and_keeps_the_transactions_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.redb");
    let mut input = String::new();
    for i in 1..=1501 {
        input.push_str(&format!("{{\"key\":\"k{i:04}\",\"value\":{i}}}\n"));
    }
    input.push_str("{\"key\":\"bad\",\"value\":}\n");
    input.push_str("{\"key\":\"after\",\"value\":1}\n");
    let out = expect(
        1,
        &["import", "--db", path(&db), "--collection", "c"],
        Some(input.as_bytes()),
    );
    let err = text(&out.stderr);
    assert!(err.contains("line 1502: not JSON"), "{err}");
    assert!(
        err.contains("1000 records were written") && err.contains("nothing from line 1001 on"),
        "{err}"
    );
    let r = Replica::open_read_only(&db, ReplicaConfig::default()).unwrap();
    let c = r.collection("c").unwrap();
    assert_eq!(c.len().unwrap(), 1000, "the first transaction only");
    assert_eq!(c.get("k1000").unwrap(), Some(Value::Int(1000)));
    assert_eq!(c.get("k1001").unwrap(), None);
    drop((c, r));

    // A line the collection refuses (a field-level value must be a map):
    // its transaction is not written.
    let input = "{\"key\":\"a\",\"value\":{\"f\":1}}\n\n{\"key\":\"b\",\"value\":2}\n";
    let out = expect(
        1,
        &[
            "import",
            "--db",
            path(&db),
            "--collection",
            "f",
            "--policy",
            "field-lww",
        ],
        Some(input.as_bytes()),
    );
    let err = text(&out.stderr);
    assert!(err.contains("line 3: refused"), "{err}");
    assert!(err.contains("0 records were written"), "{err}");
    let r = Replica::open_read_only(&db, ReplicaConfig::default()).unwrap();
    assert_eq!(r.collection("f").unwrap().len().unwrap(), 0);
    // A key too long, from a file.
    drop(r);
    let long = dir.path().join("long.jsonl");
    std::fs::write(
        &long,
        format!("{{\"key\":\"{}\",\"value\":1}}\n", "x".repeat(2000)),
    )
    .unwrap();
    let out = expect(
        1,
        &[
            "import",
            "--db",
            path(&db),
            "--collection",
            "c",
            "--input",
            path(&long),
        ],
        None,
    );
    assert!(text(&out.stderr).contains("line 1: refused: invalid key"));
}

#[test]
fn verify_exits_0_when_clean_4_on_differences_and_1_when_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.redb");
    write_known(&db);
    let out = expect(0, &["verify", "--db", path(&db)], None);
    assert!(
        text(&out.stdout).contains(": clean"),
        "{}",
        text(&out.stdout)
    );

    // Damage: the feed entry of `k7` goes.
    let r = Replica::open_read_only(&db, ReplicaConfig::default()).unwrap();
    let lsn = r
        .feed_after(0, usize::MAX)
        .unwrap()
        .into_iter()
        .find(|e| e.change.key == Key::from("k7"))
        .unwrap()
        .lsn;
    drop(r);
    {
        let file = redb::Database::open(&db).unwrap();
        let txn = file.begin_write().unwrap();
        {
            let feed: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("feed-3");
            txn.open_table(feed).unwrap().remove(lsn).unwrap();
        }
        txn.commit().unwrap();
    }
    let out = expect(4, &["verify", "--db", path(&db)], None);
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!(
            "collection \"todos\", key \"k7\": the row's lsn {lsn} has no feed entry"
        )),
        "{shown}"
    );
    assert!(shown.contains("2 differences"), "{shown}");

    let junk = dir.path().join("junk.redb");
    std::fs::write(&junk, b"not a database at all").unwrap();
    let out = expect(1, &["verify", "--db", path(&junk)], None);
    assert!(text(&out.stderr).contains("junk.redb"));
}
