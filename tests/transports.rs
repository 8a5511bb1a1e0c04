//! The replication scenarios, written once and run over every transport:
//! loopback always, QUIC and HTTP with their features (`--all-features`).

mod common;

use std::time::Duration;

use common::nets::{Kind, TestNet};
use common::{converged, eventually, open_node, open_node_on, quick_sync, states};
use syncline::protocol::{self, Batch, PROTOCOL_VERSION, Request, RequestBody, Response};
use syncline::transport::{Limits, ServerHandle, TransportError};
use syncline::{
    Change, ChangeId, Key, ManualTime, Op, Permissions, RefusalCode, Replica, ReplicaId, Stamp,
    Status, SyncConfig, SyncEngine, SyncError, SyncEvent, SyncServer, Tokens, Value,
};

const WAIT: Duration = Duration::from_secs(30);

async fn serve(net: &TestNet, name: &str, server: SyncServer) -> Box<dyn ServerHandle> {
    net.serve(name, server.into_service(), Limits::default())
        .await
}

fn start(net: &TestNet, replica: &Replica, from: &str, to: &str, config: SyncConfig) -> SyncEngine {
    SyncEngine::start(
        replica.clone(),
        net.connector(from, to, Limits::default()),
        config,
    )
}

async fn wait_status(engine: &SyncEngine, wanted: Status) {
    let mut status = engine.status();
    tokio::time::timeout(WAIT, status.wait_for(|s| *s == wanted))
        .await
        .unwrap_or_else(|_| panic!("status never became {wanted:?}"))
        .unwrap();
}

/// A hub and three clients; the hub goes down while everyone writes, comes
/// back on the same address, and all four converge; then a live write
/// travels between clients through the subscription.
async fn hub_with_clients_offline_and_back(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let net = TestNet::new(kind, 7);
    let time = ManualTime::new(common::T0);
    let hub = open_node_on(dir.path(), "hub", 100, Some(&time)).await;
    let server = serve(&net, "hub", SyncServer::new(hub.clone())).await;
    let mut clients = Vec::new();
    let mut engines = Vec::new();
    for i in 0..3u8 {
        let c = open_node_on(dir.path(), &format!("c{i}"), i + 1, Some(&time)).await;
        engines.push(start(
            &net,
            &c,
            &format!("c{i}"),
            "hub",
            quick_sync(u64::from(i)),
        ));
        clients.push(c);
    }
    for e in &engines {
        wait_status(e, Status::Idle).await;
    }

    // The hub goes away; every client notices and keeps working offline.
    server.shutdown().await;
    for e in &engines {
        wait_status(e, Status::Offline).await;
    }
    for (i, c) in clients.iter().enumerate() {
        time.advance(Duration::from_millis(1));
        let todos = c.collection("todos").unwrap();
        for k in 0..10 {
            todos.put(format!("c{i}-{k}"), k as i64).unwrap();
        }
        todos.put("shared", format!("from c{i}").as_str()).unwrap();
        todos.delete(format!("c{}-0", (i + 1) % 3)).unwrap();
    }
    hub.collection("todos")
        .unwrap()
        .put("from-hub", 1i64)
        .unwrap();

    let _server = serve(&net, "hub", SyncServer::new(hub.clone())).await;
    let all: Vec<&Replica> = std::iter::once(&hub).chain(clients.iter()).collect();
    eventually(
        &all,
        WAIT,
        "all four converge after the hub returns",
        || converged(&all, "todos"),
    )
    .await;
    let final_states = states(&hub, "todos");
    assert_eq!(final_states.len(), 32);
    let tombstones: Vec<String> = final_states
        .iter()
        .filter(|(_, s)| s.is_tombstone())
        .map(|(k, _)| k.to_string())
        .collect();
    assert_eq!(
        tombstones,
        ["c0-0"],
        "only the delete made after the put wins"
    );
    assert_eq!(
        hub.collection("todos").unwrap().get("shared").unwrap(),
        Some(Value::from("from c2"))
    );

    for e in &engines {
        wait_status(e, Status::Idle).await;
    }
    clients[0]
        .collection("todos")
        .unwrap()
        .put("live", "now")
        .unwrap();
    eventually(&[&clients[1]], WAIT, "the live write reaches c1", || {
        clients[1].collection("todos").unwrap().get("live").unwrap() == Some(Value::from("now"))
    })
    .await;
    for e in engines {
        e.stop().await;
    }
}

/// Four peers, each serving and syncing with the three others.
async fn full_mesh_of_four(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let net = TestNet::new(kind, 11);
    let mut peers = Vec::new();
    let mut servers = Vec::new();
    for i in 0..4u8 {
        let r = open_node(dir.path(), &format!("n{i}"), i + 1).await;
        servers.push(serve(&net, &format!("n{i}"), SyncServer::new(r.clone())).await);
        peers.push(r);
    }
    let mut engines = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        for j in (0..4).filter(|&j| j != i) {
            engines.push(start(
                &net,
                peer,
                &format!("n{i}"),
                &format!("n{j}"),
                quick_sync((i * 4 + j) as u64),
            ));
        }
    }
    for (i, p) in peers.iter().enumerate() {
        let mut txn = p.transaction();
        for k in 0..10 {
            txn.put("todos", format!("n{i}-{k}"), k as i64);
        }
        txn.put("todos", "contended", i as i64);
        txn.commit().unwrap();
    }
    let all: Vec<&Replica> = peers.iter().collect();
    eventually(&all, WAIT, "the mesh converges", || {
        converged(&all, "todos") && states(&peers[0], "todos").len() == 41
    })
    .await;
}

/// A -> B -> C: writes cross the middle both ways, never re-stamped.
async fn chain_through_the_middle(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let net = TestNet::new(kind, 13);
    let a = open_node(dir.path(), "a", 1).await;
    let b = open_node(dir.path(), "b", 2).await;
    let c = open_node(dir.path(), "c", 3).await;
    let _sb = serve(&net, "b", SyncServer::new(b.clone())).await;
    let _sc = serve(&net, "c", SyncServer::new(c.clone())).await;
    let _ab = start(&net, &a, "a", "b", quick_sync(1));
    let _bc = start(&net, &b, "b", "c", quick_sync(2));
    a.collection("todos")
        .unwrap()
        .put("from-a", "hello")
        .unwrap();
    c.collection("todos")
        .unwrap()
        .put("from-c", "world")
        .unwrap();
    eventually(&[&a, &b, &c], WAIT, "the chain converges", || {
        converged(&[&a, &b, &c], "todos") && states(&a, "todos").len() == 2
    })
    .await;
    let history = c.collection("todos").unwrap().history("from-a").unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].id.origin, a.id(), "relayed, not re-stamped");
    for r in [&b, &c] {
        let feed = r.feed_after(0, usize::MAX).unwrap();
        assert!(
            feed.iter().all(|e| e.change.collection != "drafts"),
            "local-only stays local"
        );
    }
}

/// A client killed after its first acknowledged batch, then the hub killed
/// mid-apply: sync resumes from the stored cursors, nothing lost or doubled.
async fn kill_client_and_hub_mid_sync(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let net = TestNet::new(kind, 17);
    let mut hub = open_node(dir.path(), "hub", 100).await;
    let mut client = open_node(dir.path(), "c1", 1).await;
    for chunk in 0..20 {
        let mut txn = client.transaction();
        for k in 0..50 {
            txn.put("todos", format!("k{}", chunk * 50 + k), k as i64);
        }
        txn.commit().unwrap();
    }
    let small = || SyncConfig {
        batch_size: 50,
        ..quick_sync(3)
    };
    let server = serve(&net, "hub", SyncServer::new(hub.clone())).await;
    let engine = start(&net, &client, "c1", "hub", small());
    let mut events = engine.events();
    loop {
        if let SyncEvent::Pushed { .. } = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            break;
        }
    }
    engine.stop().await;
    drop(client);
    client = open_node(dir.path(), "c1", 1).await;
    let acked = client.peer_state(hub.id()).unwrap().pushed;
    assert!(
        (50..1000).contains(&acked),
        "stopped mid-sync, acked {acked}"
    );

    let engine = start(&net, &client, "c1", "hub", small());
    let mut hub_watch = hub.watch();
    while hub.last_lsn() < acked + 100 {
        tokio::time::timeout(WAIT, hub_watch.recv())
            .await
            .unwrap()
            .unwrap();
    }
    server.shutdown().await;
    drop(hub_watch);
    drop(hub);
    hub = open_node(dir.path(), "hub", 100).await;
    let _server = serve(&net, "hub", SyncServer::new(hub.clone())).await;
    eventually(&[&hub, &client], WAIT, "sync resumes and completes", || {
        converged(&[&hub, &client], "todos") && states(&hub, "todos").len() == 1000
    })
    .await;
    let feed = hub.feed_after(0, usize::MAX).unwrap();
    let mut ids: Vec<_> = feed.iter().map(|e| e.change.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (feed.len(), ids.len()),
        (1000, 1000),
        "each change stored exactly once"
    );
    engine.stop().await;
}

fn raw_request(token: &str, body: RequestBody) -> Vec<u8> {
    protocol::encode(&Request {
        version: PROTOCOL_VERSION,
        from: ReplicaId::from_bytes([9; 16]),
        token: Some(token.into()),
        body,
    })
}

fn forged(stamp: Stamp, seq: u64, value: Value) -> Change {
    Change {
        id: ChangeId {
            origin: ReplicaId::from_bytes([9; 16]),
            seq,
        },
        collection: "todos".into(),
        key: Key::from(format!("forged-{seq}")),
        stamp,
        base: Stamp::ZERO,
        op: Op::Put(value),
    }
}

/// Bad tokens, denied pushes, malformed, over-limit and tampered frames and
/// stamps a year ahead are refused with a reason; nothing is stored; the hub
/// goes on serving a good client.
async fn refusals_store_nothing(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let net = TestNet::new(kind, 5);
    let hub = open_node(dir.path(), "hub", 100).await;
    let access = Tokens::new()
        .with_token("writer-token", "writer", Permissions::all())
        .with_token("reader-token", "reader", Permissions::read_only());
    let limits = Limits::default().with_max_frame_len(64 * 1024);
    let _server = net
        .serve(
            "hub",
            SyncServer::new(hub.clone())
                .with_access(access)
                .into_service(),
            limits,
        )
        .await;
    let on_demand = |token: &str| SyncConfig {
        on_demand: true,
        ..quick_sync(1).with_token(token)
    };
    let refused = |e: SyncError| {
        e.refusal_code()
            .unwrap_or_else(|| panic!("expected a refusal, got {e}"))
    };
    let client = open_node(dir.path(), "client", 1).await;
    client.collection("todos").unwrap().put("k", 1i64).unwrap();
    let engine = start(&net, &client, "client", "hub", on_demand("wrong"));
    assert_eq!(
        refused(engine.sync_now().await.unwrap_err()),
        RefusalCode::UNAUTHORIZED
    );
    engine.stop().await;
    // A reader's push: its group is refused alone, and the round goes on.
    let engine = start(&net, &client, "client", "hub", on_demand("reader-token"));
    assert_eq!(engine.sync_now().await.unwrap().pushed, 0);
    let rejected = client.rejected().unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].code, RefusalCode::FORBIDDEN);
    engine.stop().await;

    // Raw frames, with the client's frame limit above the server's.
    let conn = net
        .connector("raw", "hub", Limits::default())
        .connect()
        .await
        .unwrap();
    let ask = |frame: Vec<u8>| {
        let conn = &conn;
        async move {
            let answer = conn.exchange(frame.into()).await?;
            Ok::<_, TransportError>(
                protocol::decode::<Response>(&answer).expect("an answer in protocol"),
            )
        }
    };
    // Refusals travel as the transport's refusal, never inside a response.
    let code = |r: Result<Response, TransportError>| match r {
        Err(TransportError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let now = Stamp::new(
        syncline::TimeSource::now_millis(&syncline::SystemTimeSource),
        0,
    );
    assert_eq!(code(ask(vec![0xff; 100]).await), RefusalCode::BAD_REQUEST);
    let mut batch = Batch::new(vec![forged(now, 1, Value::Int(1))], 1);
    batch.changes[0].op = Op::Delete;
    assert_eq!(
        code(ask(raw_request("writer-token", RequestBody::Push(batch))).await),
        RefusalCode::BAD_REQUEST
    );
    let year = Stamp::new(now.millis() + 365 * 24 * 3600 * 1000, 0);
    let batch = Batch::new(
        vec![
            forged(now, 1, Value::Int(1)),
            forged(year, 2, Value::Int(2)),
        ],
        2,
    );
    assert_eq!(
        code(ask(raw_request("writer-token", RequestBody::Push(batch))).await),
        RefusalCode::UNPROCESSABLE
    );
    let big = Batch::new(vec![forged(now, 1, Value::Bytes(vec![7; 200 * 1024]))], 1);
    let err = ask(raw_request("writer-token", RequestBody::Push(big)))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::FrameTooLarge { .. }), "{err}");
    assert_eq!(
        hub.last_lsn(),
        0,
        "nothing of any refused request was stored"
    );
    assert!(hub.clock() < year);

    // The hub still serves a good client, end to end: the refused group,
    // pushed again with a writer's token, is accepted.
    assert!(client.retry_rejected(hub.id(), rejected[0].group).unwrap());
    let engine = start(&net, &client, "client", "hub", on_demand("writer-token"));
    assert_eq!(engine.sync_now().await.unwrap().pushed, 1);
    assert_eq!(
        hub.collection("todos").unwrap().get("k").unwrap(),
        Some(Value::Int(1))
    );
    engine.stop().await;
}

/// Waits for the next event that `pick` keeps.
async fn next_event<T>(
    events: &mut tokio::sync::broadcast::Receiver<SyncEvent>,
    mut pick: impl FnMut(SyncEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(t) = pick(events.recv().await.expect("the engine runs")) {
                return t;
            }
        }
    })
    .await
    .expect("the event came")
}

/// On-demand engines push only when asked; local-only writes never wake an
/// engine; `wait_synced` returns once both ways are done.
async fn engine_controls(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let net = TestNet::new(kind, 11);
    let hub = open_node(dir.path(), "hub", 100).await;
    let _server = serve(&net, "hub", SyncServer::new(hub.clone())).await;

    // On demand: a write after a sync waits for the next sync_now.
    let a = open_node(dir.path(), "a", 1).await;
    let on_demand = SyncConfig {
        on_demand: true,
        ..quick_sync(1)
    };
    let engine = start(&net, &a, "a", "hub", on_demand);
    engine.sync_now().await.unwrap();
    let mut events = engine.events();
    a.collection("todos").unwrap().put("later", 1i64).unwrap();
    next_event(&mut events, |e| {
        matches!(e, SyncEvent::Captured { .. }).then_some(())
    })
    .await;
    assert_eq!(hub.collection("todos").unwrap().get("later").unwrap(), None);
    let report = engine.sync_now().await.unwrap();
    assert_eq!(report.pushed, 1, "the write waited for this sync_now");
    engine.stop().await;

    // Local-only writes: no capture, no round. The next event after them is
    // the capture of the synced write that follows.
    let b = open_node(dir.path(), "b", 2).await;
    b.define_collection("drafts", syncline::CollectionConfig::local_only())
        .unwrap();
    let engine = start(&net, &b, "b", "hub", quick_sync(2));
    wait_status(&engine, Status::Idle).await;
    let mut events = engine.events();
    for i in 0..3 {
        b.collection("drafts")
            .unwrap()
            .put(format!("d{i}"), i as i64)
            .unwrap();
    }
    b.collection("todos")
        .unwrap()
        .put("b-synced", 1i64)
        .unwrap();
    let synced_lsn = b.last_lsn();
    let captured = next_event(&mut events, |e| match e {
        SyncEvent::Captured { lsn } => Some(lsn),
        _ => None,
    })
    .await;
    assert_eq!(
        captured, synced_lsn,
        "the local-only writes were not captured"
    );

    // wait_synced: everything local at the call is on the hub, and
    // everything the hub held at the call is here.
    for i in 0..50 {
        b.collection("todos")
            .unwrap()
            .put(format!("b{i}"), i as i64)
            .unwrap();
        hub.collection("todos")
            .unwrap()
            .put(format!("h{i}"), i as i64)
            .unwrap();
    }
    let hub_then = states(&hub, "todos");
    let local_then = states(&b, "todos");
    engine.wait_synced(WAIT).await.unwrap();
    let hub_now = states(&hub, "todos");
    let here = states(&b, "todos");
    for (key, state) in &hub_then {
        assert!(
            here.iter().any(|(k, s)| k == key && s == state),
            "pulled {key:?}"
        );
    }
    for (key, _) in &local_then {
        assert!(hub_now.iter().any(|(k, _)| k == key), "pushed {key:?}");
    }
    assert_eq!(engine.stats().pending, 0);
    engine.stop().await;
}

/// `max_retry_attempts` gives up with status `Error`; `reconnect_now`
/// comes back at once, long before the backoff would.
async fn giving_up_and_reconnecting(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let net = TestNet::new(kind, 12);
    let hub = open_node(dir.path(), "hub", 100).await;
    let server = serve(&net, "hub", SyncServer::new(hub.clone())).await;
    let c = open_node(dir.path(), "c", 1).await;
    let gives_up = SyncConfig {
        max_retry_attempts: Some(2),
        ..quick_sync(1)
    };
    let patient = SyncConfig {
        // Far longer than the test waits: only reconnect_now brings it back.
        backoff_initial: Duration::from_secs(600),
        backoff_max: Duration::from_secs(600),
        ..quick_sync(2)
    };
    let e1 = start(&net, &c, "c", "hub", gives_up);
    let e2 = start(&net, &c, "c2", "hub", patient);
    wait_status(&e1, Status::Idle).await;
    wait_status(&e2, Status::Idle).await;
    server.shutdown().await;
    wait_status(&e1, Status::Error).await;
    wait_status(&e2, Status::Offline).await;
    assert!(e1.stats().last_error.is_some());

    let _server = serve(&net, "hub", SyncServer::new(hub.clone())).await;
    c.collection("todos").unwrap().put("back", 1i64).unwrap();
    e2.reconnect_now().await.unwrap();
    wait_status(&e2, Status::Idle).await;
    eventually(&[&hub], WAIT, "the write after reconnect_now", || {
        hub.collection("todos")
            .unwrap()
            .get("back")
            .unwrap()
            .is_some()
    })
    .await;
    // The engine that gave up comes back when asked.
    e1.reconnect_now().await.unwrap();
    wait_status(&e1, Status::Idle).await;
    e1.stop().await;
    e2.stop().await;
}

/// A token provider is asked at connect and, after an unauthenticated
/// refusal, once more for a fresh token.
async fn token_provider_refreshes(kind: Kind) {
    #[derive(Debug, Default)]
    struct Expiring(std::sync::atomic::AtomicUsize);

    impl syncline::TokenProvider for Expiring {
        fn token(&self, refresh: bool) -> syncline::transport::BoxFuture<'_, Option<String>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let token = if refresh { "fresh" } else { "expired" };
            Box::pin(async move { Some(token.to_string()) })
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let net = TestNet::new(kind, 13);
    let hub = open_node(dir.path(), "hub", 100).await;
    let access = Tokens::new().with_token("fresh", "c", Permissions::all());
    let _server = serve(
        &net,
        "hub",
        SyncServer::new(hub.clone()).with_access(access),
    )
    .await;
    let c = open_node(dir.path(), "c", 1).await;
    c.collection("todos").unwrap().put("k", 1i64).unwrap();
    let provider = std::sync::Arc::new(Expiring::default());
    let config = SyncConfig {
        on_demand: true,
        token_provider: Some(provider.clone()),
        ..quick_sync(1)
    };
    let engine = start(&net, &c, "c", "hub", config);
    assert_eq!(engine.sync_now().await.unwrap().pushed, 1);
    assert_eq!(provider.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    engine.stop().await;
}

/// Refuses the value 13 while strict.
#[derive(Clone, Debug, Default)]
struct Unlucky(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl syncline::Validator for Unlucky {
    fn validate(
        &self,
        _who: &syncline::Principal,
        change: &Change,
    ) -> Result<(), syncline::Rejection> {
        let strict = !self.0.load(std::sync::atomic::Ordering::SeqCst);
        match &change.op {
            Op::Put(Value::Int(13)) if strict => Err(syncline::Rejection::new("13 is unlucky")),
            _ => Ok(()),
        }
    }
}

/// Groups the hub refuses (a validator, a collection the caller may not
/// write) move aside without holding back the others or the pull; they are
/// listed once, can be pushed again, and discarding brings the client back
/// to the hub's state.
async fn refused_groups_never_jam(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let net = TestNet::new(kind, 14);
    let hub = open_node(dir.path(), "hub", 100).await;
    let locked = syncline::CollectionConfig::default();
    hub.define_collection("locked", locked.clone()).unwrap();
    let access = Tokens::new().with_token(
        "c",
        "c",
        Permissions {
            read: syncline::Collections::All,
            write: syncline::Collections::only(["todos"]),
        },
    );
    let validator = Unlucky::default();
    let server = SyncServer::new(hub.clone())
        .with_access(access)
        .with_validator("todos", validator.clone());
    let _server = serve(&net, "hub", server).await;
    hub.collection("todos").unwrap().put("h", 1i64).unwrap();

    let c = open_node(dir.path(), "c", 1).await;
    c.define_collection("locked", locked).unwrap();
    let todos = c.collection("todos").unwrap();
    todos.put("a", 1i64).unwrap();
    todos.put("b", 13i64).unwrap();
    let b_group = c.last_lsn();
    c.collection("locked").unwrap().put("x", 1i64).unwrap();
    let x_group = c.last_lsn();
    todos.put("d", 2i64).unwrap();
    let config = SyncConfig {
        on_demand: true,
        ..quick_sync(1).with_token("c")
    };
    let engine = start(&net, &c, "c", "hub", config);
    let report = engine.sync_now().await.unwrap();
    assert_eq!((report.pushed, report.pulled), (2, 1));
    let hub_todos = hub.collection("todos").unwrap();
    assert_eq!(hub_todos.get("a").unwrap(), Some(Value::Int(1)));
    assert_eq!(hub_todos.get("d").unwrap(), Some(Value::Int(2)));
    assert_eq!(hub_todos.get("b").unwrap(), None);
    assert_eq!(hub.collection("locked").unwrap().get("x").unwrap(), None);
    assert_eq!(
        todos.get("h").unwrap(),
        Some(Value::Int(1)),
        "the pull went on"
    );
    assert_eq!(engine.stats().pending, 0);
    let rejected = c.rejected().unwrap();
    let listed: Vec<_> = rejected.iter().map(|r| (r.group, r.code)).collect();
    assert_eq!(
        listed,
        vec![
            (b_group, RefusalCode::UNPROCESSABLE),
            (x_group, RefusalCode::FORBIDDEN)
        ]
    );
    let hub_id = hub.id();
    assert!(rejected.iter().all(|r| r.remote == hub_id));
    assert_eq!(rejected[0].reason, "13 is unlucky");

    // The rule relaxes: b is pushed again and accepted.
    validator.0.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(c.retry_rejected(hub_id, b_group).unwrap());
    assert_eq!(engine.sync_now().await.unwrap().pushed, 1);
    assert_eq!(hub_todos.get("b").unwrap(), Some(Value::Int(13)));
    assert_eq!(c.rejected().unwrap().len(), 1);

    // x may never be written: discarding it brings the client back to the
    // hub's state. The compensating delete is refused too; discarding that
    // changes nothing more.
    assert!(c.discard_rejected(hub_id, x_group).unwrap());
    assert_eq!(c.collection("locked").unwrap().get("x").unwrap(), None);
    engine.sync_now().await.unwrap();
    let again = c.rejected().unwrap();
    assert_eq!(again.len(), 1, "the compensating delete was refused");
    let lsn = c.last_lsn();
    assert!(c.discard_rejected(hub_id, again[0].group).unwrap());
    assert_eq!(c.last_lsn(), lsn, "nothing more to compensate");
    assert!(c.rejected().unwrap().is_empty());
    engine.sync_now().await.unwrap();
    assert!(c.rejected().unwrap().is_empty());
    let live = c
        .collection("locked")
        .unwrap()
        .scan(syncline::Scan::all())
        .unwrap();
    assert!(
        live.is_empty(),
        "the client holds no record the hub refused"
    );
    engine.stop().await;
}

/// A transaction of 64 MiB with a 1 MiB frame limit travels both ways, in
/// parts: staged out of sight until the last, then applied atomically; a
/// push cut off halfway is invisible and resumes where it stopped.
async fn transactions_of_any_size(kind: Kind) {
    const RECORDS: usize = 1024;
    const VALUE: usize = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let net = TestNet::new(kind, 15);
    let limits = Limits::default().with_max_frame_len(1 << 20);
    let hub = open_node(dir.path(), "hub", 100).await;
    let server = SyncServer::new(hub.clone()).with_config(syncline::ServerConfig {
        max_pull_bytes: 512 * 1024,
        ..syncline::ServerConfig::default()
    });
    let _server = net.serve("hub", server.into_service(), limits).await;
    let config = SyncConfig {
        on_demand: true,
        max_batch_bytes: 512 * 1024,
        ..quick_sync(1)
    };
    let big = |replica: &Replica, prefix: &str| {
        let mut txn = replica.transaction();
        for i in 0..RECORDS {
            txn.put(
                "todos",
                format!("{prefix}{i:04}"),
                Value::Bytes(vec![i as u8; VALUE]),
            );
        }
        txn.commit().unwrap();
    };

    // Push: 64 MiB from a client to the hub, in one round.
    let a = open_node(dir.path(), "a", 1).await;
    big(&a, "a");
    let engine = SyncEngine::start(a.clone(), net.connector("a", "hub", limits), config.clone());
    assert_eq!(engine.sync_now().await.unwrap().pushed, RECORDS);
    let todos = hub.collection("todos").unwrap();
    assert_eq!(
        todos.scan(syncline::Scan::prefix("a")).unwrap().len(),
        RECORDS
    );
    let feed = hub.feed_after(0, usize::MAX).unwrap();
    assert_eq!(
        feed.iter().filter(|e| e.group_end).count(),
        1,
        "one atomic group"
    );
    engine.stop().await;

    // Pull: 64 MiB from the hub to a new client.
    big(&hub, "h");
    let b = open_node(dir.path(), "b", 2).await;
    let engine = SyncEngine::start(b.clone(), net.connector("b", "hub", limits), config.clone());
    assert_eq!(engine.sync_now().await.unwrap().pulled, 2 * RECORDS);
    assert_eq!(
        b.collection("todos")
            .unwrap()
            .scan(syncline::Scan::all())
            .unwrap()
            .len(),
        2 * RECORDS
    );
    engine.stop().await;

    // A push cut off halfway: the parts sent are staged out of sight.
    let c = open_node(dir.path(), "c", 3).await;
    big(&c, "c");
    let transfer = c.last_lsn();
    let changes: Vec<Change> = c
        .feed_after(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.change)
        .collect();
    let conn = net
        .connector("c-raw", "hub", limits)
        .connect()
        .await
        .unwrap();
    let hello = Request {
        version: PROTOCOL_VERSION,
        from: c.id(),
        token: None,
        body: RequestBody::Hello {
            clock: c.clock(),
            collections: vec![],
        },
    };
    conn.exchange(protocol::encode(&hello).into())
        .await
        .unwrap();
    // Parts of 4 changes (256 KiB) each, the first 40 changes; the engine
    // below cuts its own parts elsewhere and resumes from change 40.
    let per_part = 4;
    for (i, part) in changes.chunks(per_part).take(10).enumerate() {
        let offset = (i * per_part) as u32;
        let request = Request {
            version: PROTOCOL_VERSION,
            from: c.id(),
            token: None,
            body: RequestBody::PushPart {
                part: protocol::Part {
                    transfer,
                    offset,
                    last: false,
                },
                batch: Batch::new(part.to_vec(), transfer),
            },
        };
        let answer = conn
            .exchange(protocol::encode(&request).into())
            .await
            .unwrap();
        match protocol::decode::<Response>(&answer).unwrap() {
            Response::Staged { next, .. } => assert_eq!(next, offset + per_part as u32),
            other => panic!("expected a staged part, got {other:?}"),
        }
    }
    drop(conn);
    assert!(
        todos.scan(syncline::Scan::prefix("c")).unwrap().is_empty(),
        "a half-received group is never visible"
    );
    // The engine's push resumes: the hub names the part it needs next.
    let engine = SyncEngine::start(c.clone(), net.connector("c", "hub", limits), config);
    assert_eq!(engine.sync_now().await.unwrap().pushed, RECORDS);
    assert_eq!(
        todos.scan(syncline::Scan::prefix("c")).unwrap().len(),
        RECORDS
    );
    engine.stop().await;
}

macro_rules! over {
    ($module:ident, $kind:expr, $($scenario:ident),* $(,)?) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($kind).await;
                }
            )*
        }
    };
}

macro_rules! every_scenario {
    ($module:ident, $kind:expr) => {
        over!(
            $module,
            $kind,
            hub_with_clients_offline_and_back,
            full_mesh_of_four,
            chain_through_the_middle,
            kill_client_and_hub_mid_sync,
            refusals_store_nothing,
            engine_controls,
            giving_up_and_reconnecting,
            token_provider_refreshes,
            refused_groups_never_jam,
            transactions_of_any_size,
        );
    };
}

every_scenario!(loopback, Kind::Loopback);
#[cfg(feature = "quic")]
every_scenario!(quic, Kind::Quic);
#[cfg(feature = "http")]
every_scenario!(http, Kind::Http);
