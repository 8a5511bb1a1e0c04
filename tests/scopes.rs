//! Partial replication over loopback: engines sync scopes (a collection,
//! or the records under a key prefix), each with its own cursor; grants
//! per prefix decide what a caller may read and write; a grant or a
//! request that grows bootstraps the new part, one that shrinks drops it
//! locally; a collection the hub lacks is refused alone.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use common::{open_node, quick_sync};
use syncline::transport::Limits;
use syncline::transport::loopback::LoopbackNetwork;
use syncline::{
    Access, AccessControl, AuthError, CollectionConfig, Collections, Credentials, Grant, Key,
    Permissions, Principal, RefusalCode, Replica, Scan, Scope, SyncConfig, SyncEngine, SyncEvent,
    SyncServer, Tokens, Value,
};

/// Grants that a test changes while the hub runs: principal (the token)
/// -> (read, write) prefixes of `todos`.
#[derive(Debug, Default, Clone)]
struct Grants(Arc<Mutex<HashMap<String, ReadWrite>>>);

/// The read and the write prefixes of one principal.
type ReadWrite = (Vec<Key>, Vec<Key>);

impl Grants {
    fn set(&self, who: &str, read: &[&str], write: &[&str]) {
        let keys = |p: &[&str]| p.iter().map(|p| Key::from(*p)).collect();
        self.0
            .lock()
            .unwrap()
            .insert(who.to_owned(), (keys(read), keys(write)));
    }
}

impl AccessControl for Grants {
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Principal, AuthError> {
        let token = credentials.token.ok_or(AuthError::MissingToken)?;
        if self.0.lock().unwrap().contains_key(token) {
            Ok(Principal(token.to_owned()))
        } else {
            Err(AuthError::UnknownToken)
        }
    }

    fn authorize(&self, principal: &Principal, collection: &str, access: Access) -> bool {
        !self.grant(principal, collection, access).is_none()
    }

    fn grant(&self, principal: &Principal, collection: &str, access: Access) -> Grant {
        let grants = self.0.lock().unwrap();
        match (collection, grants.get(&principal.0)) {
            ("todos", Some((read, write))) => Grant::Prefixes(match access {
                Access::Read => read.clone(),
                Access::Write => write.clone(),
            }),
            _ => Grant::none(),
        }
    }
}

/// Serves `server` as "hub" on `net`.
fn serve(
    net: &LoopbackNetwork,
    server: SyncServer,
) -> syncline::transport::loopback::LoopbackServer {
    net.serve("hub", server.into_service(), Limits::default())
        .unwrap()
}

fn on_demand(token: &str, scopes: &[Scope]) -> SyncConfig {
    SyncConfig {
        on_demand: true,
        ..quick_sync(1)
            .with_token(token)
            .with_scopes(scopes.iter().cloned())
    }
}

fn tenant(t: u32) -> Scope {
    Scope::prefix("todos", format!("t{t}/"))
}

/// The live values of `todos`.
fn values(r: &Replica) -> BTreeMap<Key, Value> {
    r.collection("todos")
        .unwrap()
        .scan(Scan::all())
        .unwrap()
        .into_iter()
        .collect()
}

/// The hub's live values inside `scopes`.
fn restricted(hub: &Replica, scopes: &[Scope]) -> BTreeMap<Key, Value> {
    values(hub)
        .into_iter()
        .filter(|(k, _)| scopes.iter().any(|s| s.contains("todos", k)))
        .collect()
}

fn events(rx: &mut tokio::sync::broadcast::Receiver<SyncEvent>) -> Vec<SyncEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

/// Writes `n` records under each tenant prefix of `tenants` on `r`.
fn fill(r: &Replica, tenants: &[u32], n: u32) {
    for &t in tenants {
        let mut txn = r.transaction();
        for i in 0..n {
            txn.put("todos", format!("t{t}/{i:03}"), Value::Int(i64::from(i)));
        }
        txn.commit().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_its_scope_only_and_pushes_only_inside_its_grant() {
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(1);
    let hub = open_node(dir.path(), "hub", 100).await;
    fill(&hub, &[1, 2, 3], 20);
    let access = Tokens::new()
        .with_token(
            "alice",
            "alice",
            Permissions {
                read: Collections::scopes([tenant(1), tenant(2)]),
                write: Collections::scopes([tenant(1)]),
            },
        )
        .with_token("admin", "admin", Permissions::all());
    let _server = serve(&net, SyncServer::new(hub.clone()).with_access(access));

    let alice = open_node(dir.path(), "alice", 1).await;
    let engine = SyncEngine::start(
        alice.clone(),
        net.connector("alice", "hub"),
        on_demand("alice", &[tenant(1)]),
    );
    engine.sync_now().await.unwrap();
    assert_eq!(values(&alice), restricted(&hub, &[tenant(1)]));
    assert_eq!(values(&alice).len(), 20);

    // Writes inside the write grant travel; one outside is refused for its
    // transaction, with a verdict, and never reaches the hub.
    let todos = alice.collection("todos").unwrap();
    todos.put("t1/new", "mine").unwrap();
    let mut txn = alice.transaction();
    txn.put("todos", "t1/also", 1i64)
        .put("todos", "t2/intruder", 2i64);
    txn.commit().unwrap();
    drop(engine);
    let engine = SyncEngine::start(
        alice.clone(),
        net.connector("alice", "hub"),
        on_demand("alice", &[tenant(1), tenant(2)]),
    );
    let mut rx = engine.events();
    engine.sync_now().await.unwrap();
    let hub_todos = hub.collection("todos").unwrap();
    assert_eq!(hub_todos.get("t1/new").unwrap(), Some(Value::from("mine")));
    assert_eq!(
        hub_todos.get("t1/also").unwrap(),
        None,
        "refused with its group"
    );
    assert_eq!(hub_todos.get("t2/intruder").unwrap(), None);
    let rejected = alice.rejected().unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].code, RefusalCode::FORBIDDEN);
    assert!(
        events(&mut rx).iter().any(
            |e| matches!(e, SyncEvent::Rejected { code, .. } if *code == RefusalCode::FORBIDDEN)
        )
    );
    // The second scope came by a bootstrap of that part alone.
    let mut expected = restricted(&hub, &[tenant(1), tenant(2)]);
    // Alice still holds her refused writes locally until she discards them.
    expected.insert(Key::from("t1/also"), Value::Int(1));
    expected.insert(Key::from("t2/intruder"), Value::Int(2));
    assert_eq!(values(&alice), expected);
    assert!(
        values(&alice)
            .keys()
            .all(|k| !k.as_str().unwrap().starts_with("t3/"))
    );
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_that_grow_bootstrap_and_grants_that_shrink_drop_locally() {
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(2);
    let hub = open_node(dir.path(), "hub", 100).await;
    fill(&hub, &[1, 2, 3], 10);
    let grants = Grants::default();
    grants.set("alice", &["t1/"], &["t1/"]);
    grants.set("bob", &["t1/", "t2/", "t3/"], &[]);
    let _server = serve(
        &net,
        SyncServer::new(hub.clone()).with_access(grants.clone()),
    );
    let alice = open_node(dir.path(), "alice", 1).await;
    let bob = open_node(dir.path(), "bob", 2).await;
    let scopes = [tenant(1), tenant(2)];
    let alice_engine = SyncEngine::start(
        alice.clone(),
        net.connector("alice", "hub"),
        on_demand("alice", &scopes),
    );
    let bob_engine = SyncEngine::start(
        bob.clone(),
        net.connector("bob", "hub"),
        on_demand("bob", &[tenant(1), tenant(2), tenant(3)]),
    );
    let mut rx = alice_engine.events();
    // t2 is not granted yet: refused alone, t1 syncs.
    alice_engine.sync_now().await.unwrap();
    assert_eq!(values(&alice), restricted(&hub, &[tenant(1)]));
    let seen = events(&mut rx);
    assert!(seen.iter().any(|e| matches!(
        e,
        SyncEvent::ScopeRefused { scope, code, .. } if *scope == tenant(2) && *code == RefusalCode::FORBIDDEN
    )), "{seen:?}");
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, SyncEvent::ScopeDropped { .. })),
        "a scope never pulled drops nothing"
    );

    // The grant grows: t2 arrives by a bootstrap of that part, old records
    // included.
    grants.set("alice", &["t1/", "t2/"], &["t1/"]);
    alice_engine.sync_now().await.unwrap();
    assert_eq!(values(&alice), restricted(&hub, &scopes));
    assert_eq!(values(&alice).len(), 20);

    // The grant shrinks: t1's records go here, locally, and nowhere else.
    alice
        .collection("todos")
        .unwrap()
        .put("t1/local", 7i64)
        .unwrap();
    alice_engine.push().await.unwrap();
    grants.set("alice", &["t2/"], &["t1/"]);
    alice_engine.sync_now().await.unwrap();
    assert_eq!(values(&alice), restricted(&hub, &[tenant(2)]));
    let seen = events(&mut rx);
    assert!(
        seen.iter().any(|e| matches!(
            e,
            SyncEvent::ScopeDropped { scope, dropped } if *scope == tenant(1) && *dropped == 11
        )),
        "{seen:?}"
    );
    assert_eq!(
        hub.collection("todos").unwrap().get("t1/local").unwrap(),
        Some(Value::Int(7)),
        "dropping is local: the hub keeps every record"
    );
    bob_engine.sync_now().await.unwrap();
    assert_eq!(values(&bob), values(&hub), "other replicas are untouched");
    assert_eq!(values(&bob).len(), 31);
    // And it stays dropped: nothing of t1 comes back while not granted.
    alice_engine.sync_now().await.unwrap();
    assert_eq!(values(&alice), restricted(&hub, &[tenant(2)]));
    alice_engine.stop().await;
    bob_engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scope_no_longer_asked_for_is_dropped_and_one_added_is_bootstrapped() {
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(3);
    let hub = open_node(dir.path(), "hub", 100).await;
    fill(&hub, &[1, 2, 3], 10);
    let _server = serve(&net, SyncServer::new(hub.clone()));
    let client = open_node(dir.path(), "client", 1).await;
    // Overlapping scopes: t1 and everything under "t" (t1, t2, t3).
    let engine = SyncEngine::start(
        client.clone(),
        net.connector("client", "hub"),
        on_demand("x", &[tenant(1), Scope::prefix("todos", "t2")]),
    );
    engine.sync_now().await.unwrap();
    assert_eq!(values(&client).len(), 20);
    engine.stop().await;

    // Asked for t2 and t3 now: t1 goes, t3 comes.
    let engine = SyncEngine::start(
        client.clone(),
        net.connector("client", "hub"),
        on_demand("x", &[Scope::prefix("todos", "t2"), tenant(3)]),
    );
    let mut rx = engine.events();
    engine.sync_now().await.unwrap();
    assert_eq!(values(&client), restricted(&hub, &[tenant(2), tenant(3)]));
    assert!(events(&mut rx).iter().any(|e| matches!(
        e,
        SyncEvent::ScopeDropped { scope, dropped: 10 } if *scope == tenant(1)
    )));
    engine.stop().await;

    // Overlap: a scope dropped keeps what another still covers.
    let engine = SyncEngine::start(
        client.clone(),
        net.connector("client", "hub"),
        on_demand("x", &[Scope::prefix("todos", "t")]),
    );
    engine.sync_now().await.unwrap();
    assert_eq!(values(&client), values(&hub));
    engine.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_the_hub_lacks_is_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(4);
    let hub = open_node(dir.path(), "hub", 100).await;
    fill(&hub, &[1], 5);
    let _server = serve(&net, SyncServer::new(hub.clone()));
    let client = open_node(dir.path(), "client", 1).await;
    client
        .define_collection("drafts", CollectionConfig::default())
        .unwrap();
    client.collection("drafts").unwrap().put("d", 1i64).unwrap();
    client
        .collection("todos")
        .unwrap()
        .put("t1/mine", 1i64)
        .unwrap();
    // Whole collections, and scopes: both go on without the missing one.
    for scopes in [
        vec![],
        vec![Scope::collection("todos"), Scope::collection("drafts")],
    ] {
        let engine = SyncEngine::start(
            client.clone(),
            net.connector("client", "hub"),
            SyncConfig {
                on_demand: true,
                ..quick_sync(1).with_scopes(scopes)
            },
        );
        let mut rx = engine.events();
        engine.sync_now().await.unwrap();
        assert!(events(&mut rx).iter().any(|e| matches!(
            e,
            SyncEvent::ScopeRefused { scope, code, .. }
                if *scope == Scope::collection("drafts") && *code == RefusalCode::CONFLICT
        )));
        assert_eq!(values(&client), values(&hub));
        assert_eq!(values(&hub).len(), 6);
        assert!(
            client
                .collection("drafts")
                .unwrap()
                .get("d")
                .unwrap()
                .is_some()
        );
        engine.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_transaction_in_a_scope_travels_in_parts() {
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(5);
    let hub = open_node(dir.path(), "hub", 100).await;
    // Other tenants' groups before and after, and one big mixed group.
    fill(&hub, &[2], 50);
    let mut txn = hub.transaction();
    for i in 0..300 {
        txn.put("todos", format!("t1/{i:03}"), Value::from("x".repeat(200)));
        txn.put(
            "todos",
            format!("t2/big{i:03}"),
            Value::from("y".repeat(200)),
        );
    }
    txn.commit().unwrap();
    fill(&hub, &[3], 50);
    let config = syncline::ServerConfig {
        max_pull_bytes: 16 * 1024,
        ..syncline::ServerConfig::default()
    };
    let _server = serve(&net, SyncServer::new(hub.clone()).with_config(config));
    let client = open_node(dir.path(), "client", 1).await;
    // What the client may read, for the frame checks (the hub allows all).
    let grants = Grants::default();
    grants.set("client", &["t1/"], &[]);
    let parts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let engine = SyncEngine::start(
        client.clone(),
        checked(
            net.connector("client", "hub"),
            "client",
            grants,
            parts.clone(),
        ),
        on_demand("x", &[tenant(1)]),
    );
    engine.sync_now().await.unwrap();
    assert_eq!(values(&client), restricted(&hub, &[tenant(1)]));
    assert_eq!(values(&client).len(), 300);
    assert!(
        parts.load(std::sync::atomic::Ordering::Relaxed) >= 4,
        "the group came in parts"
    );
    // Applied whole: the scope's part of the transaction is one group here.
    let feed = client.feed_after(0, 10_000).unwrap();
    assert_eq!(feed.len(), 300);
    assert_eq!(feed.iter().filter(|e| e.group_end).count(), 1);
    engine.stop().await;
}

/// A connector that checks every frame a client receives: each change of
/// a pull's answer lies inside what the request asked for and inside the
/// client's read grant. Counts the answers that were parts of a group.
fn checked(
    inner: Arc<dyn syncline::transport::Connector>,
    who: &str,
    grants: Grants,
    parts: Arc<std::sync::atomic::AtomicUsize>,
) -> Arc<dyn syncline::transport::Connector> {
    use syncline::protocol::{Request, RequestBody, Response};
    let who = who.to_owned();
    common::inspect::inspected(
        inner,
        Arc::new(move |request, answer| {
            let asked: Request = syncline::protocol::decode(request).unwrap();
            let changes = match syncline::protocol::decode::<Response>(answer) {
                Ok(Response::Changes { batch, .. }) => batch.changes,
                Ok(Response::Part { batch, .. }) => {
                    parts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    batch.changes
                }
                _ => Vec::new(),
            };
            let read = grants
                .0
                .lock()
                .unwrap()
                .get(&who)
                .map(|g| g.0.clone())
                .unwrap_or_default();
            for c in &changes {
                let inside_request = match &asked.body {
                    RequestBody::PullScope { scope, .. } => scope.contains(&c.collection, &c.key),
                    RequestBody::Pull { collections, .. }
                    | RequestBody::PullPart { collections, .. } => {
                        collections.contains(&c.collection)
                    }
                    other => panic!("changes in answer to {other:?}"),
                };
                assert!(inside_request, "{who}: {c:?} outside its request");
                assert!(
                    Grant::Prefixes(read.clone()).allows(&c.key),
                    "{who}: {c:?} outside its read grant {read:?}"
                );
            }
        }),
    )
}

/// One seeded run: a hub and four clients on a lossy network. Tenant t0 is
/// shared (everyone writes it), tenant ti is client i's own; each client
/// asks for t0, its own tenant and some others, and read grants change
/// between rounds. Every frame is checked against the request and the
/// grant; at the end every replica equals the last-writer-wins fold of
/// every write made, restricted to what it asks for and may read.
async fn tenants_run(seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(seed);
    net.set_faults(
        syncline::transport::loopback::Faults::none()
            .with_drop_rate(0.05)
            .with_duplicate_rate(0.05),
    );
    let hub = open_node(dir.path(), "hub", 100).await;
    let grants = Grants::default();
    let server = SyncServer::new(hub.clone()).with_config(syncline::ServerConfig {
        max_pull_changes: 7,
        max_pull_bytes: 2048,
        ..syncline::ServerConfig::default()
    });
    let _server = serve(&net, server.with_access(grants.clone()));
    let prefix = |t: u32| format!("t{t}/");
    let mut clients = Vec::new();
    for i in 1..=4u32 {
        let who = format!("c{i}");
        let mut read = vec![prefix(0), prefix(i)];
        let mut scopes = vec![tenant(0), tenant(i)];
        for t in 1..=4 {
            if t != i && rng.random_bool(0.4) {
                scopes.push(tenant(t));
            }
            if t != i && rng.random_bool(0.5) {
                read.push(prefix(t));
            }
        }
        let read_refs: Vec<&str> = read.iter().map(String::as_str).collect();
        grants.set(&who, &read_refs, &[&prefix(0), &prefix(i)]);
        let replica = open_node(dir.path(), &who, i as u8).await;
        let connector = checked(
            net.connector(&who, "hub"),
            &who,
            grants.clone(),
            Arc::default(),
        );
        let engine = SyncEngine::start(
            replica.clone(),
            connector,
            SyncConfig {
                batch_size: 5,
                max_batch_bytes: 1024,
                ..on_demand(&who, &scopes)
            },
        );
        clients.push((who, replica, engine, scopes, read));
    }
    // The last-writer-wins fold of every write: key -> (stamp, origin, value).
    let mut model: BTreeMap<Key, (syncline::Stamp, syncline::ReplicaId, Option<i64>)> =
        BTreeMap::new();
    let write = |r: &Replica, key: Key, value: Option<i64>, model: &mut BTreeMap<_, _>| {
        let todos = r.collection("todos").unwrap();
        let written = match value {
            Some(v) => todos.put(key.clone(), v).unwrap(),
            None => todos.delete(key.clone()).unwrap(),
        };
        let entry = (written.stamp, written.id.origin, value);
        let e = model.entry(key).or_insert(entry);
        if (entry.0, entry.1) > (e.0, e.1) {
            *e = entry;
        }
    };
    for _ in 0..60 {
        let i = rng.random_range(0..clients.len());
        match rng.random_range(0..10) {
            0..=4 => {
                let t = if rng.random_bool(0.5) {
                    0
                } else {
                    i as u32 + 1
                };
                let key = Key::from(format!("t{t}/k{}", rng.random_range(0..6)));
                let value = (!rng.random_bool(0.2)).then(|| rng.random_range(0..1000));
                write(&clients[i].1, key, value, &mut model);
            }
            5..=8 => {
                // A round may fail on a lost message: the next one resumes.
                let _ = clients[i].2.sync_now().await;
            }
            _ => {
                // The read grant changes (never below t0 and its own).
                let (who, _, _, _, read) = &mut clients[i];
                let own = who[1..].parse::<u32>().unwrap();
                *read = vec![prefix(0), prefix(own)];
                for t in 1..=4 {
                    if t != own && rng.random_bool(0.5) {
                        read.push(prefix(t));
                    }
                }
                let read_refs: Vec<&str> = read.iter().map(String::as_str).collect();
                grants.set(who, &read_refs, &[&prefix(0), &prefix(own)]);
            }
        }
    }
    // Heal, and sync everyone twice: pushes first, then what they pushed.
    net.set_faults(syncline::transport::loopback::Faults::none());
    for _ in 0..2 {
        for (who, _, engine, _, _) in &clients {
            engine
                .sync_now()
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: {who}: {e}"));
        }
    }
    let folded: BTreeMap<Key, Value> = model
        .into_iter()
        .filter_map(|(k, (_, _, v))| v.map(|v| (k, Value::Int(v))))
        .collect();
    assert_eq!(
        values(&hub),
        folded,
        "seed {seed}: the hub holds every write"
    );
    for (who, replica, engine, scopes, read) in clients {
        let visible: BTreeMap<Key, Value> = folded
            .iter()
            .filter(|(k, _)| {
                scopes.iter().any(|s| s.contains("todos", k))
                    && read.iter().any(|p| k.as_bytes().starts_with(p.as_bytes()))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            values(&replica),
            visible,
            "seed {seed}: {who} (scopes {scopes:?}, read {read:?})"
        );
        // What is kept after drops and bootstraps still recomputes.
        let report = replica.verify().unwrap();
        assert!(
            report.is_clean(),
            "seed {seed}: {who}: {:?}",
            report.differences
        );
        engine.stop().await;
    }
    let report = hub.verify().unwrap();
    assert!(
        report.is_clean(),
        "seed {seed}: hub: {:?}",
        report.differences
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_with_overlapping_scopes_and_changing_grants_converge_on_their_part() {
    let seeds: u64 = std::env::var("SYNCLINE_SCOPE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    for seed in 0..seeds {
        tenants_run(seed).await;
    }
}

/// A scoped subscription hears of commits inside its scopes only: a write
/// of another tenant wakes nothing (its heartbeat repeats what it was
/// told), a write inside wakes it with the new head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_subscription_hears_only_of_its_scopes() {
    use syncline::protocol::{Notify, PROTOCOL_VERSION, Request, RequestBody};
    let dir = tempfile::tempdir().unwrap();
    let net = LoopbackNetwork::new(9);
    let hub = open_node(dir.path(), "hub", 100).await;
    fill(&hub, &[1, 2], 3);
    let _server = serve(
        &net,
        SyncServer::new(hub.clone()).with_config(syncline::ServerConfig {
            heartbeat: Some(std::time::Duration::from_millis(50)),
            ..syncline::ServerConfig::default()
        }),
    );
    let conn = net.connector("raw", "hub").connect().await.unwrap();
    let after = hub.last_lsn();
    let request = Request {
        version: PROTOCOL_VERSION,
        from: syncline::ReplicaId::from_bytes([9; 16]),
        token: None,
        body: RequestBody::SubscribeScopes {
            after,
            scopes: vec![tenant(1)],
        },
    };
    let mut sub = conn
        .subscribe(syncline::protocol::encode(&request).into())
        .await
        .unwrap();
    let mut next = async || -> u64 {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(30), sub.next())
            .await
            .expect("a frame within 30 s")
            .expect("the stream is open")
            .unwrap();
        syncline::protocol::decode::<Notify>(&frame)
            .unwrap()
            .last_lsn
    };
    let other = hub
        .collection("todos")
        .unwrap()
        .put("t2/new", 1i64)
        .unwrap();
    // Heartbeats until the subscription has seen the other tenant's write:
    // each repeats the head it was told, never the other tenant's lsn.
    for _ in 0..3 {
        assert_eq!(
            next().await,
            after,
            "a write outside the scope wakes nothing"
        );
    }
    assert!(other.lsn > after);
    let mine = hub
        .collection("todos")
        .unwrap()
        .put("t1/new", 1i64)
        .unwrap();
    loop {
        let told = next().await;
        if told != after {
            assert_eq!(told, mine.lsn, "a write inside the scope wakes it");
            break;
        }
    }
}
