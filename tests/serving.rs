//! The serving side refuses what it must, with a typed reason, stores
//! nothing, and goes on serving others.

mod common;

use common::{open_node, quick_sync};
use syncline::protocol::{self, Batch, PROTOCOL_VERSION, Request, RequestBody, Response};
use syncline::transport::loopback::LoopbackNetwork;
use syncline::transport::{Limits, TransportError};
use syncline::{
    Change, ChangeId, Collections, Key, ManualTime, Op, Permissions, RefusalCode, Replica,
    ReplicaId, Stamp, SyncConfig, SyncEngine, SyncError, SyncServer, Tokens, Value,
};

/// The wall clock, as the hub sees it.
fn wall_ms() -> u64 {
    syncline::TimeSource::now_millis(&syncline::SystemTimeSource)
}

fn access() -> Tokens {
    Tokens::new()
        .with_token("writer-token", "writer", Permissions::all())
        .with_token("reader-token", "reader", Permissions::read_only())
        .with_token(
            "todo-bot",
            "bot",
            Permissions {
                read: Collections::All,
                write: Collections::only(["other"]),
            },
        )
}

fn on_demand(token: &str) -> SyncConfig {
    SyncConfig {
        on_demand: true,
        ..quick_sync(1).with_token(token)
    }
}

async fn setup(
    dir: &std::path::Path,
) -> (
    LoopbackNetwork,
    Replica,
    syncline::transport::loopback::LoopbackServer,
) {
    let net = LoopbackNetwork::new(5);
    let hub = open_node(dir, "hub", 100).await;
    let limits = Limits::default().with_max_frame_len(64 * 1024);
    let server = net
        .serve(
            "hub",
            SyncServer::new(hub.clone())
                .with_access(access())
                .into_service(),
            limits,
        )
        .unwrap();
    (net, hub, server)
}

fn refusal(e: &SyncError) -> RefusalCode {
    e.refusal_code()
        .unwrap_or_else(|| panic!("expected a refusal, got {e}"))
}

/// The hub still serves a well-behaved client, end to end.
async fn hub_still_serves(net: &LoopbackNetwork, hub: &Replica, dir: &std::path::Path, key: &str) {
    let good = open_node(dir, &format!("good-{key}"), 50).await;
    good.collection("todos").unwrap().put(key, "ok").unwrap();
    let engine = SyncEngine::start(
        good.clone(),
        net.connector("good", "hub"),
        on_demand("writer-token"),
    );
    engine.sync_now().await.unwrap();
    assert_eq!(
        hub.collection("todos").unwrap().get(key).unwrap(),
        Some(Value::from("ok"))
    );
    engine.stop().await;
}

#[tokio::test]
async fn bad_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (net, hub, _server) = setup(dir.path()).await;
    let client = open_node(dir.path(), "c", 1).await;
    client.collection("todos").unwrap().put("k", 1i64).unwrap();
    for token in ["wrong", ""] {
        let engine = SyncEngine::start(client.clone(), net.connector("c", "hub"), on_demand(token));
        let err = engine.sync_now().await.unwrap_err();
        assert_eq!(refusal(&err), RefusalCode::UNAUTHORIZED);
        engine.stop().await;
    }
    let engine = SyncEngine::start(
        client.clone(),
        net.connector("c", "hub"),
        SyncConfig {
            on_demand: true,
            ..quick_sync(1)
        },
    );
    assert_eq!(
        refusal(&engine.sync_now().await.unwrap_err()),
        RefusalCode::UNAUTHORIZED
    );
    assert_eq!(hub.last_lsn(), 0);
    hub_still_serves(&net, &hub, dir.path(), "after-bad-token").await;
}

#[tokio::test]
async fn denied_push_stores_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (net, hub, _server) = setup(dir.path()).await;
    for (name, token) in [("reader", "reader-token"), ("bot", "todo-bot")] {
        let client = open_node(dir.path(), name, 2).await;
        client.collection("todos").unwrap().put("k", 1i64).unwrap();
        let engine =
            SyncEngine::start(client.clone(), net.connector(name, "hub"), on_demand(token));
        let mut events = engine.events();
        // The refused group moves aside: the round succeeds, nothing stays
        // pending, and the refusal is listed and announced.
        engine.sync_now().await.unwrap();
        assert_eq!(engine.stats().pending, 0, "nothing stays pending");
        assert_eq!(engine.stats().rejected, 1);
        let rejected = client.rejected().unwrap();
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].code, RefusalCode::FORBIDDEN);
        assert!(rejected[0].reason.contains("may not write"), "{rejected:?}");
        assert_eq!(rejected[0].changes.len(), 1);
        assert_eq!(rejected[0].changes[0].key, Key::from("k"));
        let announced = loop {
            if let syncline::SyncEvent::Rejected { code, .. } = events.recv().await.unwrap() {
                break code;
            }
        };
        assert_eq!(announced, RefusalCode::FORBIDDEN);
        // The next round does not push it again.
        assert_eq!(engine.sync_now().await.unwrap().pushed, 0);
        assert_eq!(client.rejected().unwrap().len(), 1, "listed exactly once");
        engine.stop().await;
        drop(client);
    }
    assert_eq!(hub.last_lsn(), 0);
    // A reader may still pull.
    hub.collection("todos").unwrap().put("hub-k", 2i64).unwrap();
    let reader = open_node(dir.path(), "reader2", 3).await;
    let engine = SyncEngine::start(
        reader.clone(),
        net.connector("reader2", "hub"),
        on_demand("reader-token").with_direction(syncline::Direction::Pull),
    );
    assert_eq!(engine.sync_now().await.unwrap().pulled, 1);
    hub_still_serves(&net, &hub, dir.path(), "after-denied-push").await;
}

/// Sends one raw request frame to the hub and decodes the answer.
async fn raw(net: &LoopbackNetwork, frame: Vec<u8>) -> Result<Response, TransportError> {
    let conn = net
        .connector_with_limits("raw", "hub", Limits::default())
        .connect()
        .await?;
    let answer = conn.exchange(frame.into()).await?;
    Ok(protocol::decode::<Response>(&answer).expect("the server answers in protocol"))
}

fn request(body: RequestBody) -> Vec<u8> {
    protocol::encode(&Request {
        version: PROTOCOL_VERSION,
        from: ReplicaId::from_bytes([9; 16]),
        token: Some("writer-token".into()),
        body,
    })
}

fn change(stamp: Stamp, seq: u64) -> Change {
    Change {
        id: ChangeId {
            origin: ReplicaId::from_bytes([9; 16]),
            seq,
        },
        collection: "todos".into(),
        key: Key::from(format!("forged-{seq}")),
        stamp,
        base: Stamp::ZERO,
        op: Op::Put(Value::Int(1)),
    }
}

/// The refusal code of a raw exchange's answer: refusals travel as the
/// transport's refusal, never inside a response.
fn refused_with(answer: Result<Response, TransportError>) -> RefusalCode {
    match answer {
        Err(TransportError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_frames_and_bad_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (net, hub, _server) = setup(dir.path()).await;
    let now = Stamp::new(wall_ms(), 0);

    // Garbage, an empty frame, a truncated request, a hostile length prefix.
    let valid = request(RequestBody::Push(Batch::new(vec![change(now, 1)], 1)));
    for frame in [
        vec![0xff; 100],
        vec![],
        valid[..valid.len() / 2].to_vec(),
        vec![0x26, 0xfc, 0x6f, 0x30, 0x2f, 0xfd],
    ] {
        assert_eq!(
            refused_with(raw(&net, frame).await),
            RefusalCode::BAD_REQUEST
        );
    }
    // A wrong protocol version.
    let mut old = Request {
        version: PROTOCOL_VERSION + 1,
        from: ReplicaId::from_bytes([9; 16]),
        token: Some("writer-token".into()),
        body: RequestBody::Pull {
            after: 0,
            limit: 10,
            collections: vec!["todos".into()],
        },
    };
    assert_eq!(
        refused_with(raw(&net, protocol::encode(&old)).await),
        RefusalCode::UPGRADE_REQUIRED
    );
    // A caller of protocol 1 is told, by the transport's refusal that every
    // version reads, which version this server speaks.
    old.version = 1;
    match raw(&net, protocol::encode(&old)).await {
        Err(TransportError::Refused { code, reason }) => {
            assert_eq!(code, RefusalCode::UPGRADE_REQUIRED);
            assert!(reason.contains("this server speaks 2"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    old.version = PROTOCOL_VERSION;
    // A pull of a collection the hub does not have.
    old.body = RequestBody::Pull {
        after: 0,
        limit: 10,
        collections: vec!["nope".into()],
    };
    assert_eq!(
        refused_with(raw(&net, protocol::encode(&old)).await),
        RefusalCode::CONFLICT
    );

    // A digest that does not match the changes.
    let mut batch = Batch::new(vec![change(now, 1)], 1);
    batch.changes[0].op = Op::Delete;
    assert_eq!(
        refused_with(raw(&net, request(RequestBody::Push(batch))).await),
        RefusalCode::BAD_REQUEST
    );

    // A stamp a year ahead, in an otherwise valid batch: the whole push is
    // refused for now (the sender retries once time caught up).
    let year = Stamp::new(now.millis() + 365 * 24 * 3600 * 1000, 0);
    let batch = Batch::new(vec![change(now, 1), change(year, 2)], 2);
    assert_eq!(
        refused_with(raw(&net, request(RequestBody::Push(batch))).await),
        RefusalCode::UNPROCESSABLE
    );
    // Group sizes that do not add up are a bad request.
    let mut batch = Batch::new(vec![change(now, 1)], 1);
    batch.groups = vec![2];
    assert_eq!(
        refused_with(raw(&net, request(RequestBody::Push(batch))).await),
        RefusalCode::BAD_REQUEST
    );

    // An over-limit frame is refused by the transport on receipt.
    let big = Change {
        op: Op::Put(Value::Bytes(vec![7; 200 * 1024])),
        ..change(now, 1)
    };
    let err = raw(&net, request(RequestBody::Push(Batch::new(vec![big], 1))))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::FrameTooLarge { .. }), "{err}");

    assert_eq!(
        hub.last_lsn(),
        0,
        "nothing of any refused request was stored"
    );
    assert!(hub.clock() < year);
    hub_still_serves(&net, &hub, dir.path(), "after-bad-frames").await;
}

#[tokio::test]
async fn a_client_whose_clock_is_a_year_ahead_is_refused_at_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let (net, hub, _server) = setup(dir.path()).await;
    let future = ManualTime::new(wall_ms() + 365 * 24 * 3600 * 1000);
    let config = syncline::ReplicaConfig {
        replica_id: Some(ReplicaId::from_bytes([4; 16])),
        ..syncline::ReplicaConfig::default().with_time(future)
    };
    let client = Replica::open(dir.path().join("future.redb"), config).unwrap();
    client
        .define_collection("todos", Default::default())
        .unwrap();
    client.collection("todos").unwrap().put("k", 1i64).unwrap();
    let engine = SyncEngine::start(
        client,
        net.connector("future", "hub"),
        on_demand("writer-token"),
    );
    assert_eq!(
        refusal(&engine.sync_now().await.unwrap_err()),
        RefusalCode::UNPROCESSABLE
    );
    let clock = hub.clock();
    assert!(
        clock.millis() < wall_ms() + 3600 * 1000,
        "the hub's clock did not jump"
    );
    assert_eq!(hub.last_lsn(), 0);
    hub_still_serves(&net, &hub, dir.path(), "after-future-client").await;
}

#[tokio::test]
async fn a_caller_that_may_read_nothing_cannot_subscribe() {
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(6);
    let hub = open_node(dir.path(), "hub", 100).await;
    let access = Tokens::new()
        .with_token("reader-token", "reader", Permissions::read_only())
        .with_token(
            "blind-token",
            "blind",
            Permissions {
                read: Collections::none(),
                write: Collections::All,
            },
        );
    let _server = net
        .serve(
            "hub",
            SyncServer::new(hub.clone())
                .with_access(access)
                .into_service(),
            Limits::default(),
        )
        .unwrap();
    let conn = net.connector("raw", "hub").connect().await.unwrap();
    let subscribe = |token: &str| Request {
        version: PROTOCOL_VERSION,
        from: ReplicaId::from_bytes([9; 16]),
        token: Some(token.into()),
        body: RequestBody::Subscribe { after: 0 },
    };
    let err = conn
        .subscribe(protocol::encode(&subscribe("blind-token")).into())
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Refused { .. }), "{err}");
    assert!(
        conn.subscribe(protocol::encode(&subscribe("reader-token")).into())
            .await
            .is_ok()
    );
}

/// A part of a group sent in parts is judged as it comes: a refused one
/// refuses the group at once, and nothing of it stays staged.
#[tokio::test]
async fn a_refused_part_refuses_its_group_and_stages_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (net, hub, _server) = setup(dir.path()).await;
    let now = Stamp::new(wall_ms(), 0);
    let part = |offset: u32, changes: Vec<Change>, token: &str| {
        protocol::encode(&Request {
            version: PROTOCOL_VERSION,
            from: ReplicaId::from_bytes([9; 16]),
            token: Some(token.into()),
            body: RequestBody::PushPart {
                part: protocol::Part {
                    transfer: 50,
                    offset,
                    last: false,
                },
                batch: Batch::new(changes, 50),
            },
        })
    };
    // A writer stages a first part.
    match raw(&net, part(0, vec![change(now, 1)], "writer-token")).await {
        Ok(Response::Staged { next, .. }) => assert_eq!(next, 1),
        other => panic!("expected a staged part, got {other:?}"),
    }
    // The same peer, as a reader, sends the next one: the group is refused
    // and its staged part dropped.
    match raw(&net, part(1, vec![change(now, 2)], "reader-token")).await {
        Ok(Response::Ack {
            applied, refused, ..
        }) => {
            assert_eq!(applied, 0);
            assert_eq!(refused.len(), 1);
            assert_eq!(refused[0].code(), RefusalCode::FORBIDDEN);
        }
        other => panic!("expected a refusal of the group, got {other:?}"),
    }
    match raw(&net, part(1, vec![change(now, 2)], "writer-token")).await {
        Ok(Response::Staged { next, .. }) => assert_eq!(next, 0, "nothing stayed staged"),
        other => panic!("expected a staged part, got {other:?}"),
    }
    assert_eq!(hub.last_lsn(), 0);
}

/// After a tombstone collection, a pull from a cursor below the last lsn
/// collected is refused (410: the caller may have missed a delete that is
/// gone), a new replica (cursor 0) is served, and a push of an old change
/// for a collected record is refused the same way: no resurrection.
#[tokio::test]
async fn after_collection_a_cursor_behind_the_horizon_must_resync() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualTime::new(common::T0);
    let net = LoopbackNetwork::new(6);
    let hub = common::open_node_on(dir.path(), "hub", 100, Some(&time)).await;
    let _server = net
        .serve(
            "hub",
            SyncServer::new(hub.clone())
                .with_access(access())
                .into_service(),
            Limits::default(),
        )
        .unwrap();
    let todos = hub.collection("todos").unwrap();
    for i in 0..5 {
        todos.put(format!("k{i}"), i).unwrap();
    }
    let early = hub.last_lsn();
    // An old write, made before the deletes, that arrives only later.
    let old = Change {
        key: Key::from("k1"),
        ..change(Stamp::new(common::T0, 0), 1)
    };
    time.advance(std::time::Duration::from_secs(1));
    for i in 0..3 {
        todos.delete(format!("k{i}")).unwrap();
    }
    time.advance(std::time::Duration::from_secs(1));
    let collected = hub.collect_tombstones(std::time::Duration::ZERO).unwrap();
    assert_eq!(collected, 3);
    let (_, collected_lsn) = hub.collected();
    assert!(collected_lsn > early);
    let pull = |after| {
        request(RequestBody::Pull {
            after,
            limit: 100,
            collections: vec!["todos".into()],
        })
    };
    assert_eq!(
        refused_with(raw(&net, pull(early)).await),
        RefusalCode::RESYNC_REQUIRED
    );
    match raw(&net, pull(0)).await.unwrap() {
        Response::Changes { batch, .. } => {
            let keys: Vec<Key> = batch.changes.iter().map(|c| c.key.clone()).collect();
            assert_eq!(keys, [Key::from("k3"), Key::from("k4")], "current state");
        }
        other => panic!("expected changes, got {other:?}"),
    }
    // The old write of a collected record would bring it back: refused.
    let push = request(RequestBody::Push(Batch::new(vec![old], 1)));
    assert_eq!(
        refused_with(raw(&net, push).await),
        RefusalCode::RESYNC_REQUIRED
    );
    assert_eq!(todos.get("k1").unwrap(), None, "not resurrected");
}

/// A validator that holds the push it judges until the test lets it go.
#[derive(Debug)]
struct Gate {
    entered: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl syncline::Validator for Gate {
    fn validate(&self, _: &syncline::Principal, _: &Change) -> Result<(), syncline::Rejection> {
        if let Some(entered) = self.entered.lock().unwrap().take() {
            let _ = entered.send(());
            let _ = self
                .release
                .lock()
                .unwrap()
                .recv_timeout(std::time::Duration::from_secs(60));
        }
        Ok(())
    }
}

/// A drain lets the exchange in flight finish and commit, ends the
/// subscriptions, and refuses what comes after with `UNAVAILABLE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_finishes_exchanges_in_flight_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(8);
    let hub = open_node(dir.path(), "hub", 100).await;
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let gate = Gate {
        entered: std::sync::Mutex::new(Some(entered_tx)),
        release: std::sync::Mutex::new(release_rx),
    };
    let server = SyncServer::new(hub.clone()).with_validator("todos", gate);
    let _listener = net
        .serve("hub", server.clone().into_service(), Limits::default())
        .unwrap();

    // A subscription, open before the drain.
    let conn = net.connector("raw", "hub").connect().await.unwrap();
    let subscribe = Request {
        version: PROTOCOL_VERSION,
        from: ReplicaId::from_bytes([9; 16]),
        token: None,
        body: RequestBody::Subscribe { after: 0 },
    };
    let mut subscription = conn
        .subscribe(protocol::encode(&subscribe).into())
        .await
        .unwrap();

    let client = open_node(dir.path(), "client", 1).await;
    client
        .collection("todos")
        .unwrap()
        .put("held", 1i64)
        .unwrap();
    let engine = SyncEngine::start(
        client.clone(),
        net.connector("client", "hub"),
        SyncConfig {
            on_demand: true,
            ..quick_sync(1)
        },
    );
    let push = tokio::spawn(async move {
        let report = engine.push().await;
        (engine, report)
    });
    // The push is in the validator, mid-exchange.
    tokio::task::spawn_blocking(move || entered.recv_timeout(std::time::Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("the push reaches the validator");

    let drain = tokio::spawn(server.drain());
    assert!(server.is_draining());
    // The subscription ends (its frames so far may come first).
    let ended = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(frame) = subscription.next().await {
            if frame.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the subscription ends when the drain starts");
    assert!(
        !drain.is_finished(),
        "the drain waits for the exchange in flight"
    );

    release.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(60), drain)
        .await
        .expect("the drain ends once the exchange is answered")
        .unwrap();
    let (engine, report) = push.await.unwrap();
    assert_eq!(
        report.unwrap().pushed,
        1,
        "the exchange in flight was answered"
    );
    assert_eq!(
        hub.collection("todos").unwrap().get("held").unwrap(),
        Some(Value::Int(1))
    );

    // Later requests are refused as unavailable, which engines retry.
    client
        .collection("todos")
        .unwrap()
        .put("late", 2i64)
        .unwrap();
    let err = engine.push().await.unwrap_err();
    assert_eq!(refusal(&err), RefusalCode::UNAVAILABLE, "{err}");
    assert_eq!(hub.collection("todos").unwrap().get("late").unwrap(), None);
    engine.stop().await;
}
