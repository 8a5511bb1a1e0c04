//! The metrics a server, an engine and the store record, read back from a
//! recorder installed for this test binary alone (servers answer on tokio's
//! blocking pool, so a thread-local recorder would miss them).
//!
//! The recorder is global to the binary: the tests take one lock, so each
//! sees only its own increments, and compare values before and after.

use std::sync::{LazyLock, Once};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use syncline::metrics::{
    CHANGES_IN, CHANGES_OUT, COMMIT_SECONDS, CONNECTED_PEERS, ENGINE_ERRORS, ENGINE_PULLED,
    ENGINE_PUSHED, ENGINE_REJECTED, ENGINE_ROUNDS, RECEIVED_BYTES, REFUSALS, REQUEST_SECONDS,
    REQUESTS, SENT_BYTES, SUBSCRIPTIONS,
};
use syncline::protocol::{self, PROTOCOL_VERSION, Request, RequestBody};
use syncline::transport::Limits;
use syncline::transport::loopback::{LoopbackNetwork, LoopbackServer};
use syncline::{
    CollectionConfig, Permissions, Replica, ReplicaConfig, ReplicaId, SyncConfig, SyncEngine,
    SyncServer, Tokens,
};

const WAIT: Duration = Duration::from_secs(30);

/// Every metric recorded in this binary, kept where tests can read it
/// without resetting it.
static RECORDED: LazyLock<Registry<Key, AtomicStorage>> = LazyLock::new(Registry::atomic);

/// Records into [`RECORDED`].
struct Recording;

impl Recorder for Recording {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        RECORDED.get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        RECORDED.get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        RECORDED.get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

/// Installs the recorder (once) and serialises the tests.
async fn recording() -> tokio::sync::MutexGuard<'static, ()> {
    static INSTALL: Once = Once::new();
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    INSTALL.call_once(|| {
        metrics::set_global_recorder(Recording).expect("no other recorder in this binary");
        syncline::describe_metrics();
    });
    ONE_AT_A_TIME.lock().await
}

/// Whether `key` is `name` with exactly `labels`.
fn is(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    key.name() == name
        && key.labels().count() == labels.len()
        && labels
            .iter()
            .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
}

/// A counter's value (0 if never recorded).
fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    RECORDED
        .get_counter_handles()
        .into_iter()
        .find(|(key, _)| is(key, name, labels))
        .map_or(0, |(_, c)| c.load(std::sync::atomic::Ordering::SeqCst))
}

/// A gauge's value (0 if never recorded).
fn gauge(name: &str) -> f64 {
    RECORDED
        .get_gauge_handles()
        .into_iter()
        .find(|(key, _)| is(key, name, &[]))
        .map_or(0.0, |(_, g)| {
            f64::from_bits(g.load(std::sync::atomic::Ordering::SeqCst))
        })
}

/// A histogram's samples so far.
fn samples(name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    RECORDED
        .get_histogram_handles()
        .into_iter()
        .find(|(key, _)| is(key, name, labels))
        .map_or_else(Vec::new, |(_, h)| h.data())
}

fn replica() -> Replica {
    let r = Replica::in_memory(ReplicaConfig::default()).expect("a replica in memory");
    r.define_collection("todos", CollectionConfig::default())
        .expect("todos defined");
    r
}

/// A hub on a new loopback network, serving with `access`.
fn hub(seed: u64, access: Tokens) -> (LoopbackNetwork, Replica, LoopbackServer) {
    let net = LoopbackNetwork::new(seed);
    let hub = replica();
    let server = net
        .serve(
            "hub",
            SyncServer::new(hub.clone())
                .with_access(access)
                .into_service(),
            Limits::default(),
        )
        .expect("the hub serves");
    (net, hub, server)
}

fn access() -> Tokens {
    Tokens::new()
        .with_token("writer-token", "writer", Permissions::all())
        .with_token("reader-token", "reader", Permissions::read_only())
}

/// An engine that syncs only when told to, with `token`.
fn on_demand(token: &str) -> SyncConfig {
    SyncConfig {
        on_demand: true,
        seed: Some(1),
        ..SyncConfig::default().with_token(token)
    }
}

/// Waits until `cond` holds, polling what a background task records;
/// panics after [`WAIT`] (a safety net, not a pass condition).
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_push_counts_changes_in_and_a_pull_changes_out() {
    let _one = recording().await;
    let (net, hub, _server) = hub(1, access());
    let client = replica();
    let commits = samples(COMMIT_SECONDS, &[("durability", "immediate")]).len();
    for key in ["a", "b", "c"] {
        client.collection("todos").unwrap().put(key, 1i64).unwrap();
    }
    // Three local transactions, each a durable commit.
    let committed = samples(COMMIT_SECONDS, &[("durability", "immediate")]);
    assert!(committed.len() >= commits + 3, "{committed:?}");
    assert!(committed.iter().all(|s| *s >= 0.0 && *s < 60.0));

    let unauthorized = counter(REFUSALS, &[("code", "401")]);
    let changes_in = counter(CHANGES_IN, &[]);
    let pushes = counter(REQUESTS, &[("kind", "push")]);
    let received = counter(RECEIVED_BYTES, &[]);
    let sent = counter(SENT_BYTES, &[]);
    let rounds = counter(ENGINE_ROUNDS, &[]);
    let pushed = counter(ENGINE_PUSHED, &[]);
    let engine = SyncEngine::start(
        client.clone(),
        net.connector("client", "hub"),
        on_demand("writer-token"),
    );
    let report = engine.push().await.expect("the push succeeds");
    assert_eq!(report.pushed, 3);
    assert_eq!(counter(CHANGES_IN, &[]) - changes_in, 3);
    assert_eq!(counter(REQUESTS, &[("kind", "push")]) - pushes, 1);
    assert!(!samples(REQUEST_SECONDS, &[("kind", "push")]).is_empty());
    assert!(counter(RECEIVED_BYTES, &[]) > received);
    assert!(counter(SENT_BYTES, &[]) > sent);
    assert_eq!(counter(ENGINE_ROUNDS, &[]) - rounds, 1);
    assert_eq!(counter(ENGINE_PUSHED, &[]) - pushed, 3);
    engine.stop().await;

    // A new replica pulls everything the hub holds: the three pushed and
    // two of the hub's own.
    for key in ["d", "e"] {
        hub.collection("todos").unwrap().put(key, 2i64).unwrap();
    }
    let changes_out = counter(CHANGES_OUT, &[]);
    let pulled = counter(ENGINE_PULLED, &[]);
    let reader = replica();
    let engine = SyncEngine::start(
        reader.clone(),
        net.connector("reader", "hub"),
        on_demand("reader-token"),
    );
    let report = engine.pull().await.expect("the pull succeeds");
    assert_eq!(report.pulled, 5);
    assert_eq!(counter(CHANGES_OUT, &[]) - changes_out, 5);
    assert_eq!(counter(ENGINE_PULLED, &[]) - pulled, 5);
    engine.stop().await;
    // Nothing was refused.
    assert_eq!(counter(REFUSALS, &[("code", "401")]), unauthorized);
}

#[tokio::test]
async fn refusals_count_by_code() {
    let _one = recording().await;
    let (net, hub, _server) = hub(2, access());
    let client = replica();
    client.collection("todos").unwrap().put("k", 1i64).unwrap();

    // A stranger's handshake is refused whole: 401.
    let unauthorized = counter(REFUSALS, &[("code", "401")]);
    let caller_errors = counter(ENGINE_ERRORS, &[("fault", "caller")]);
    let engine = SyncEngine::start(
        client.clone(),
        net.connector("client", "hub"),
        on_demand("wrong-token"),
    );
    let refused = engine.push().await.expect_err("a stranger is refused");
    assert_eq!(
        refused.refusal_code(),
        Some(syncline::RefusalCode::UNAUTHORIZED)
    );
    assert_eq!(counter(REFUSALS, &[("code", "401")]) - unauthorized, 1);
    assert_eq!(
        counter(ENGINE_ERRORS, &[("fault", "caller")]) - caller_errors,
        1
    );
    engine.stop().await;

    // A reader's push is answered, its one group refused: 403.
    let forbidden = counter(REFUSALS, &[("code", "403")]);
    let rejected = counter(ENGINE_REJECTED, &[]);
    let changes_in = counter(CHANGES_IN, &[]);
    let engine = SyncEngine::start(
        client.clone(),
        net.connector("client", "hub"),
        on_demand("reader-token"),
    );
    let _ = engine.push().await;
    assert_eq!(counter(REFUSALS, &[("code", "403")]) - forbidden, 1);
    assert_eq!(counter(ENGINE_REJECTED, &[]) - rejected, 1);
    assert_eq!(counter(CHANGES_IN, &[]), changes_in, "nothing was accepted");
    assert_eq!(hub.last_lsn(), 0);
    engine.stop().await;
}

#[tokio::test]
async fn subscriptions_and_their_callers_are_counted_while_open() {
    let _one = recording().await;
    let (net, _hub, _server) = hub(3, access());
    assert_eq!(gauge(SUBSCRIPTIONS), 0.0);
    assert_eq!(gauge(CONNECTED_PEERS), 0.0);
    let subscribe = || -> syncline::transport::Frame {
        protocol::encode(&Request {
            version: PROTOCOL_VERSION,
            from: ReplicaId::from_bytes([7; 16]),
            token: Some("reader-token".into()),
            body: RequestBody::Subscribe { after: 0 },
        })
        .into()
    };
    let conn = net
        .connector("caller", "hub")
        .connect()
        .await
        .expect("a connection");
    // Two subscriptions of one caller: two subscriptions, one peer.
    let first = conn.subscribe(subscribe()).await.expect("subscribed");
    let second = conn.subscribe(subscribe()).await.expect("subscribed");
    assert_eq!(gauge(SUBSCRIPTIONS), 2.0);
    assert_eq!(gauge(CONNECTED_PEERS), 1.0);
    drop(first);
    wait_until("one subscription to end", || gauge(SUBSCRIPTIONS) == 1.0).await;
    assert_eq!(gauge(CONNECTED_PEERS), 1.0);
    drop(second);
    wait_until("the other to end", || gauge(SUBSCRIPTIONS) == 0.0).await;
    assert_eq!(gauge(CONNECTED_PEERS), 0.0);

    // A refused subscription counts as a refusal, not a subscription.
    let unauthorized = counter(REFUSALS, &[("code", "401")]);
    let stranger = protocol::encode(&Request {
        version: PROTOCOL_VERSION,
        from: ReplicaId::from_bytes([8; 16]),
        token: Some("wrong-token".into()),
        body: RequestBody::Subscribe { after: 0 },
    });
    assert!(conn.subscribe(stranger.into()).await.is_err());
    assert_eq!(counter(REFUSALS, &[("code", "401")]) - unauthorized, 1);
    assert_eq!(gauge(SUBSCRIPTIONS), 0.0);
}
