//! The conformance checks. Each starts its own server, asserts with panics that
//! name the check, and bounds every wait by [`SAFETY_TIMEOUT`].

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::service::{TestRequest, TestService, burst_frame, pattern};
use super::{Harness, SAFETY_TIMEOUT};
use crate::client::{Connection, Connector, Subscription};
use crate::error::{Fault, RefusalCode, Side, TransportError};
use crate::frame::{Frame, Limits};
use crate::server::ServerHandle;

/// Frame lengths of the round-trip check: tiny frames, the edges of common
/// buffer sizes, and 1 MiB.
const ROUND_TRIP_LENS: [usize; 13] = [
    1,
    2,
    3,
    4,
    5,
    100,
    4095,
    4096,
    4097,
    65_535,
    65_536,
    65_537,
    1 << 20,
];
/// The frame limit of the at-the-limit check: larger than common buffers.
const AT_LIMIT_MAX: usize = 256 * 1024;
/// The frame limit of the over-limit checks.
const SMALL_MAX: usize = 64 * 1024;
/// How many exchanges the concurrency check runs at once on one connection.
const CONCURRENT: u32 = 48;
/// How many frames the burst subscription check asks for.
const BURST: u32 = 100;

/// Exchanges of many sizes, the empty frame included, come back intact, each
/// reaching the service exactly once.
pub async fn round_trips(harness: &dyn Harness) {
    const CHECK: &str = "round_trips";
    let started = start(harness, CHECK, Limits::new(), Limits::new()).await;
    let conn = started.connect(CHECK).await;

    let empty = exchange_ok(CHECK, &*conn, Frame::new(), "an empty request").await;
    assert!(
        empty.is_empty(),
        "{CHECK}: an empty request must get an empty response, got {} bytes",
        empty.len()
    );
    let mut sent = 1;
    for len in ROUND_TRIP_LENS {
        let request = TestRequest::echo_of_len(len);
        let response = exchange_ok(CHECK, &*conn, request.clone(), "an echo").await;
        assert!(
            response == TestRequest::echo_reply(&request),
            "{CHECK}: the echo of a {len}-byte request came back wrong ({} bytes)",
            response.len()
        );
        let response = exchange_ok(CHECK, &*conn, TestRequest::sized(len as u64), "sized").await;
        assert!(
            response[..] == pattern(len)[..],
            "{CHECK}: a {len}-byte response came back wrong ({} bytes)",
            response.len()
        );
        sent += 2;
    }
    assert_eq!(
        started.service.exchanges(),
        sent,
        "{CHECK}: the service must see each request exactly once"
    );
    started.stop(CHECK).await;
}

/// A request and a response of exactly `max_frame_len` bytes both pass.
pub async fn frame_at_limit_both_ways(harness: &dyn Harness) {
    const CHECK: &str = "frame_at_limit_both_ways";
    let limits = Limits::new().with_max_frame_len(AT_LIMIT_MAX);
    let started = start(harness, CHECK, limits, limits).await;
    let conn = started.connect(CHECK).await;

    let request = TestRequest::echo_of_len(AT_LIMIT_MAX);
    assert_eq!(request.len(), AT_LIMIT_MAX, "{CHECK}: test request length");
    let response = exchange_ok(CHECK, &*conn, request.clone(), "an at-limit echo").await;
    assert!(
        response.len() == AT_LIMIT_MAX && response == TestRequest::echo_reply(&request),
        "{CHECK}: an at-limit echo came back wrong ({} bytes)",
        response.len()
    );
    let sized = TestRequest::sized(AT_LIMIT_MAX as u64);
    let response = exchange_ok(CHECK, &*conn, sized, "an at-limit response").await;
    assert!(
        response[..] == pattern(AT_LIMIT_MAX)[..],
        "{CHECK}: an at-limit response came back wrong ({} bytes)",
        response.len()
    );
    started.stop(CHECK).await;
}

/// A client with a smaller limit than its server refuses to send an
/// over-limit request (exchange or subscribe) with `FrameTooLarge` sent by the
/// local side; the service never sees it and the connection keeps working.
pub async fn oversized_request_refused_by_client(harness: &dyn Harness) {
    const CHECK: &str = "oversized_request_refused_by_client";
    // Only the client's limit refuses this request.
    let server = Limits::new().with_max_frame_len(2 * SMALL_MAX);
    let client = Limits::new().with_max_frame_len(SMALL_MAX);
    let started = start(harness, CHECK, server, client).await;
    let conn = started.connect(CHECK).await;

    let request = TestRequest::echo_of_len(SMALL_MAX + 1);
    let result = within(
        CHECK,
        "an over-limit exchange",
        conn.exchange(request.clone()),
    )
    .await;
    expect_too_large(CHECK, result, SMALL_MAX + 1, SMALL_MAX, Side::Local);
    let result = within(CHECK, "an over-limit subscribe", conn.subscribe(request)).await;
    expect_too_large(CHECK, result, SMALL_MAX + 1, SMALL_MAX, Side::Local);
    assert_eq!(
        started.service.exchanges(),
        0,
        "{CHECK}: an over-limit request must not reach the service"
    );
    expect_still_serving(CHECK, &*conn).await;
    started.stop(CHECK).await;
}

/// A server with a smaller limit than its client refuses an over-limit request
/// with `FrameTooLarge` (sent by the local side, the server's limit); the
/// service never sees it and the connection keeps working.
pub async fn oversized_request_refused_by_server(harness: &dyn Harness) {
    const CHECK: &str = "oversized_request_refused_by_server";
    let server = Limits::new().with_max_frame_len(SMALL_MAX);
    let client = Limits::new().with_max_frame_len(2 * SMALL_MAX);
    let started = start(harness, CHECK, server, client).await;
    let conn = started.connect(CHECK).await;

    let request = TestRequest::echo_of_len(SMALL_MAX + 1);
    let result = within(CHECK, "an over-limit exchange", conn.exchange(request)).await;
    expect_too_large(CHECK, result, SMALL_MAX + 1, SMALL_MAX, Side::Local);
    assert_eq!(
        started.service.exchanges(),
        0,
        "{CHECK}: an over-limit request must not reach the service"
    );
    expect_still_serving(CHECK, &*conn).await;
    started.stop(CHECK).await;
}

/// A server with a smaller limit than its client refuses to send a service's
/// over-limit response; the client gets `FrameTooLarge` sent by the peer, and
/// the connection keeps working.
pub async fn oversized_response_refused_by_server(harness: &dyn Harness) {
    const CHECK: &str = "oversized_response_refused_by_server";
    // Only the server's limit refuses this response.
    let server = Limits::new().with_max_frame_len(SMALL_MAX);
    let client = Limits::new().with_max_frame_len(2 * SMALL_MAX);
    let started = start(harness, CHECK, server, client).await;
    let conn = started.connect(CHECK).await;

    let request = TestRequest::sized(SMALL_MAX as u64 + 1);
    let result = within(CHECK, "an over-limit response", conn.exchange(request)).await;
    expect_too_large(CHECK, result, SMALL_MAX + 1, SMALL_MAX, Side::Peer);
    expect_still_serving(CHECK, &*conn).await;
    started.stop(CHECK).await;
}

/// A client with a smaller limit than its server refuses an over-limit
/// response with `FrameTooLarge` sent by the peer, and keeps working.
pub async fn oversized_response_refused_by_client(harness: &dyn Harness) {
    const CHECK: &str = "oversized_response_refused_by_client";
    let server = Limits::new().with_max_frame_len(2 * SMALL_MAX);
    let client = Limits::new().with_max_frame_len(SMALL_MAX);
    let started = start(harness, CHECK, server, client).await;
    let conn = started.connect(CHECK).await;

    let request = TestRequest::sized(SMALL_MAX as u64 + 1);
    let result = within(CHECK, "an over-limit response", conn.exchange(request)).await;
    expect_too_large(CHECK, result, SMALL_MAX + 1, SMALL_MAX, Side::Peer);
    expect_still_serving(CHECK, &*conn).await;
    started.stop(CHECK).await;
}

/// Many exchanges run at once on one connection, each gets its own answer. The
/// service answers none until all have arrived, so a transport that runs them
/// one at a time times out.
pub async fn concurrent_exchanges(harness: &dyn Harness) {
    const CHECK: &str = "concurrent_exchanges";
    let started = start(harness, CHECK, Limits::new(), Limits::new()).await;
    let conn = started.connect(CHECK).await;

    let mut tasks = JoinSet::new();
    for tag in 0..CONCURRENT {
        let conn = conn.clone();
        tasks.spawn(async move {
            (
                tag,
                conn.exchange(TestRequest::gather(CONCURRENT, tag)).await,
            )
        });
    }
    let mut answered = vec![false; CONCURRENT as usize];
    for _ in 0..CONCURRENT {
        let joined = within(
            CHECK,
            "concurrent exchanges (run one at a time?)",
            tasks.join_next(),
        )
        .await;
        let (tag, result) = match joined {
            Some(Ok(done)) => done,
            Some(Err(error)) => panic!("{CHECK}: an exchange task failed: {error}"),
            None => panic!("{CHECK}: an exchange task went missing"),
        };
        match result {
            Ok(response) => assert!(
                response == TestRequest::gather_reply(tag),
                "{CHECK}: exchange {tag} got another exchange's answer: {response:?}"
            ),
            Err(error) => panic!("{CHECK}: exchange {tag} failed: {error}"),
        }
        answered[tag as usize] = true;
    }
    assert!(
        answered.iter().all(|a| *a),
        "{CHECK}: every exchange must be answered once"
    );
    started.stop(CHECK).await;
}

/// A subscription delivers every pushed frame (empty ones included) in order,
/// then ends with `None` when the service drops its sender.
pub async fn subscription_burst_in_order(harness: &dyn Harness) {
    const CHECK: &str = "subscription_burst_in_order";
    let started = start(harness, CHECK, Limits::new(), Limits::new()).await;
    let conn = started.connect(CHECK).await;

    let mut sub = subscribe_ok(CHECK, &*conn, TestRequest::burst(BURST)).await;
    for k in 0..BURST {
        match within(CHECK, "a pushed frame", sub.next()).await {
            Some(Ok(frame)) => assert!(
                frame == burst_frame(k),
                "{CHECK}: pushed frame {k} is wrong or out of order: {frame:?}"
            ),
            other => panic!("{CHECK}: expected pushed frame {k}, got {other:?}"),
        }
    }
    expect_clean_end(CHECK, &mut sub).await;
    started.stop(CHECK).await;
}

/// Frames pushed one at a time while the subscription is open arrive as they
/// are pushed; exchanges keep working beside the subscription; dropping the
/// service's sender ends the subscription cleanly.
pub async fn subscription_live_push_and_end(harness: &dyn Harness) {
    const CHECK: &str = "subscription_live_push_and_end";
    let started = start(harness, CHECK, Limits::new(), Limits::new()).await;
    let conn = started.connect(CHECK).await;

    let mut sub = subscribe_ok(CHECK, &*conn, TestRequest::live()).await;
    for k in 0..10u32 {
        let frame = Frame::from(k.to_be_bytes().to_vec());
        let taken = within(
            CHECK,
            "the service to push",
            started.service.push(frame.clone()),
        )
        .await;
        assert_eq!(
            taken, 1,
            "{CHECK}: the live subscription must take push {k}"
        );
        match within(CHECK, "a live frame", sub.next()).await {
            Some(Ok(got)) => assert!(got == frame, "{CHECK}: push {k} arrived as {got:?}"),
            other => panic!("{CHECK}: expected push {k}, got {other:?}"),
        }
        if k == 4 {
            expect_still_serving(CHECK, &*conn).await;
        }
    }
    started.service.end_live();
    expect_clean_end(CHECK, &mut sub).await;
    started.stop(CHECK).await;
}

/// A pushed frame at the limit arrives; one over it ends the subscription with
/// `FrameTooLarge` sent by the peer, whichever side's limit refuses it (run
/// once with the server's limit smaller, once with the client's); the
/// connection keeps working.
pub async fn oversized_push_ends_subscription(harness: &dyn Harness) {
    const CHECK: &str = "oversized_push_ends_subscription";
    let small = Limits::new().with_max_frame_len(SMALL_MAX);
    let large = Limits::new().with_max_frame_len(2 * SMALL_MAX);
    oversized_push(harness, CHECK, small, large).await;
    oversized_push(harness, CHECK, large, small).await;
}

async fn oversized_push(harness: &dyn Harness, check: &str, server: Limits, client: Limits) {
    let started = start(harness, check, server, client).await;
    let conn = started.connect(check).await;

    let mut sub = subscribe_ok(check, &*conn, TestRequest::live()).await;
    let at_limit = Frame::from(pattern(SMALL_MAX));
    within(
        check,
        "the service to push",
        started.service.push(at_limit.clone()),
    )
    .await;
    match within(check, "an at-limit push", sub.next()).await {
        Some(Ok(got)) => assert!(got == at_limit, "{check}: an at-limit push came back wrong"),
        other => panic!("{check}: expected an at-limit push, got {other:?}"),
    }
    let over = Frame::from(pattern(SMALL_MAX + 1));
    within(check, "the service to push", started.service.push(over)).await;
    match within(check, "the over-limit push to fail", sub.next()).await {
        Some(result) => expect_too_large(check, result, SMALL_MAX + 1, SMALL_MAX, Side::Peer),
        None => panic!("{check}: an over-limit push must end the subscription with an error"),
    }
    let after = within(check, "the subscription to stay ended", sub.next()).await;
    assert!(
        after.is_none(),
        "{check}: nothing may follow the error, got {after:?}"
    );
    expect_still_serving(check, &*conn).await;
    started.stop(check).await;
}

/// When the client drops a subscription, the transport drops the service's
/// receiver, so the service's pushes start failing instead of piling up.
pub async fn dropped_subscription_releases_service(harness: &dyn Harness) {
    const CHECK: &str = "dropped_subscription_releases_service";
    let started = start(harness, CHECK, Limits::new(), Limits::new()).await;
    let conn = started.connect(CHECK).await;

    let sub = subscribe_ok(CHECK, &*conn, TestRequest::live()).await;
    assert_eq!(
        started.service.live_subscriptions(),
        1,
        "{CHECK}: one live subscription"
    );
    drop(sub);
    let released = within(CHECK, "the service's sender to be released", async {
        // Bounded: a transport that swallows frames forever fails here too.
        for _ in 0..100_000 {
            if started.service.push(Frame::from_static(b"x")).await == 0 {
                return true;
            }
            tokio::task::yield_now().await;
        }
        false
    })
    .await;
    assert!(
        released,
        "{CHECK}: pushes to a dropped subscription must start failing"
    );
    expect_still_serving(CHECK, &*conn).await;
    started.stop(CHECK).await;
}

/// A service's refusal reaches the client as `Refused` with its code and
/// reason, for exchanges and subscriptions, and the connection keeps working.
pub async fn refusal_reaches_client(harness: &dyn Harness) {
    const CHECK: &str = "refusal_reaches_client";
    let started = start(harness, CHECK, Limits::new(), Limits::new()).await;
    let conn = started.connect(CHECK).await;

    let result = within(
        CHECK,
        "a refused exchange",
        conn.exchange(TestRequest::refuse("no entry")),
    )
    .await;
    expect_refused(CHECK, result, RefusalCode::FORBIDDEN, "no entry");
    let result = within(
        CHECK,
        "a refused subscribe",
        conn.subscribe(TestRequest::refuse("not here")),
    )
    .await;
    expect_refused(CHECK, result, RefusalCode::FORBIDDEN, "not here");
    let unknown = Frame::from_static(b"?");
    let result = within(CHECK, "an unknown subscribe", conn.subscribe(unknown)).await;
    expect_refused(
        CHECK,
        result,
        RefusalCode::BAD_REQUEST,
        "unknown test subscription",
    );
    expect_still_serving(CHECK, &*conn).await;
    started.stop(CHECK).await;
}

/// The service learns who the peer is, and both ends can name their address.
pub async fn peer_info_reaches_service(harness: &dyn Harness) {
    const CHECK: &str = "peer_info_reaches_service";
    let started = start(harness, CHECK, Limits::new(), Limits::new()).await;
    assert!(
        !started.connector.addr().is_empty(),
        "{CHECK}: the connector's address is empty"
    );
    assert!(
        !started.server.local_addr().is_empty(),
        "{CHECK}: the server's address is empty"
    );
    let conn = started.connect(CHECK).await;

    exchange_ok(CHECK, &*conn, TestRequest::echo(b"who"), "an echo").await;
    match started.service.last_peer() {
        Some(peer) => assert!(
            !peer.remote.is_empty(),
            "{CHECK}: the peer's remote is empty"
        ),
        None => panic!("{CHECK}: the service was given no peer"),
    }
    started.stop(CHECK).await;
}

/// A closed connection reports it, fails exchanges with `Closed` by the local
/// side, ends its subscriptions; connecting again works.
pub async fn close_and_reconnect(harness: &dyn Harness) {
    const CHECK: &str = "close_and_reconnect";
    let started = start(harness, CHECK, Limits::new(), Limits::new()).await;
    let conn = started.connect(CHECK).await;
    exchange_ok(CHECK, &*conn, TestRequest::echo(b"one"), "an echo").await;
    let mut sub = subscribe_ok(CHECK, &*conn, TestRequest::live()).await;
    assert!(
        !conn.is_closed(),
        "{CHECK}: a fresh connection reports closed"
    );

    conn.close();
    assert!(
        conn.is_closed(),
        "{CHECK}: a closed connection must report it"
    );
    let result = within(
        CHECK,
        "an exchange on a closed connection",
        conn.exchange(TestRequest::echo(b"x")),
    )
    .await;
    match result {
        Err(TransportError::Closed { by: Side::Local }) => {}
        other => panic!(
            "{CHECK}: an exchange after close must fail with Closed by the local side, got {other:?}"
        ),
    }
    within(
        CHECK,
        "the subscription to end after close",
        expect_end(CHECK, &mut sub),
    )
    .await;

    let again = started.connect(CHECK).await;
    exchange_ok(
        CHECK,
        &*again,
        TestRequest::echo(b"two"),
        "an echo after reconnecting",
    )
    .await;
    assert!(
        !again.is_closed(),
        "{CHECK}: the new connection reports closed"
    );
    started.stop(CHECK).await;
}

/// Shutting the server down fails its clients promptly: the exchange in flight,
/// later exchanges and new connections fail with network-side errors, and open
/// subscriptions end. Nothing hangs.
pub async fn server_shutdown_fails_clients(harness: &dyn Harness) {
    const CHECK: &str = "server_shutdown_fails_clients";
    let started = start(harness, CHECK, Limits::new(), Limits::new()).await;
    let conn = started.connect(CHECK).await;
    exchange_ok(CHECK, &*conn, TestRequest::echo(b"up"), "an echo").await;
    let mut sub = subscribe_ok(CHECK, &*conn, TestRequest::live()).await;

    let in_flight = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.exchange(TestRequest::hang()).await })
    };
    within(
        CHECK,
        "the hanging request to reach the service",
        started.service.wait_for_exchanges(2),
    )
    .await;

    let Started {
        server, connector, ..
    } = started;
    within(CHECK, "the server to shut down", server.shutdown()).await;

    match within(CHECK, "the in-flight exchange to fail", in_flight).await {
        Ok(result) => expect_network_side(CHECK, "the in-flight exchange", result),
        Err(error) => panic!("{CHECK}: the in-flight exchange task failed: {error}"),
    }
    within(
        CHECK,
        "the subscription to end",
        expect_end(CHECK, &mut sub),
    )
    .await;
    let result = within(
        CHECK,
        "an exchange after shutdown",
        conn.exchange(TestRequest::echo(b"x")),
    )
    .await;
    expect_network_side(CHECK, "an exchange after shutdown", result);
    match within(CHECK, "a connect after shutdown", connector.connect()).await {
        Err(_) => {}
        Ok(late) => {
            let result = within(
                CHECK,
                "an exchange on a late connection",
                late.exchange(TestRequest::echo(b"x")),
            )
            .await;
            assert!(
                result.is_err(),
                "{CHECK}: a server that was shut down answered"
            );
        }
    }
}

/// A server started for a check, its service, and a connector to it.
struct Started {
    service: Arc<TestService>,
    server: Box<dyn ServerHandle>,
    connector: Arc<dyn Connector>,
}

impl Started {
    async fn connect(&self, check: &str) -> Arc<dyn Connection> {
        match within(check, "a connection", self.connector.connect()).await {
            Ok(conn) => Arc::from(conn),
            Err(error) => panic!("{check}: connecting failed: {error}"),
        }
    }

    async fn stop(self, check: &str) {
        within(check, "the server to shut down", self.server.shutdown()).await;
    }
}

async fn start(harness: &dyn Harness, check: &str, server: Limits, client: Limits) -> Started {
    let service = Arc::new(TestService::new());
    let started = within(
        check,
        "the harness to start",
        harness.start(service.clone(), server, client),
    )
    .await;
    match started {
        Ok(endpoints) => Started {
            service,
            server: endpoints.server,
            connector: endpoints.connector,
        },
        Err(error) => panic!("{check}: the harness failed to start a server: {error}"),
    }
}

/// Awaits `future`, failing the check if it takes longer than [`SAFETY_TIMEOUT`].
async fn within<F: Future>(check: &str, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(SAFETY_TIMEOUT, future).await {
        Ok(output) => output,
        Err(_) => panic!("{check}: gave up after {SAFETY_TIMEOUT:?} waiting for {what}"),
    }
}

async fn exchange_ok(check: &str, conn: &dyn Connection, request: Frame, what: &str) -> Frame {
    match within(check, what, conn.exchange(request)).await {
        Ok(response) => response,
        Err(error) => panic!("{check}: {what} failed: {error}"),
    }
}

async fn subscribe_ok(check: &str, conn: &dyn Connection, request: Frame) -> Subscription {
    match within(check, "a subscription", conn.subscribe(request)).await {
        Ok(sub) => sub,
        Err(error) => panic!("{check}: subscribing failed: {error}"),
    }
}

async fn expect_still_serving(check: &str, conn: &dyn Connection) {
    let request = TestRequest::echo(b"still there?");
    let response = exchange_ok(check, conn, request.clone(), "a follow-up exchange").await;
    assert!(
        response == TestRequest::echo_reply(&request),
        "{check}: a follow-up exchange was answered wrongly"
    );
}

/// The subscription ends cleanly: `None`, not an error.
async fn expect_clean_end(check: &str, sub: &mut Subscription) {
    match within(check, "the subscription to end", sub.next()).await {
        None => {}
        Some(other) => panic!("{check}: the subscription must end cleanly, got {other:?}"),
    }
}

/// The subscription ends, with `None` or an error, delivering no more frames.
async fn expect_end(check: &str, sub: &mut Subscription) {
    match sub.next().await {
        None | Some(Err(_)) => {}
        Some(Ok(frame)) => panic!("{check}: a frame arrived on a dead subscription: {frame:?}"),
    }
}

fn expect_too_large<T: std::fmt::Debug>(
    check: &str,
    result: Result<T, TransportError>,
    len: usize,
    max: usize,
    sender: Side,
) {
    match result {
        Err(TransportError::FrameTooLarge {
            len: l,
            max: m,
            sender: s,
        }) => {
            assert!(
                (l, m, s) == (len, max, sender),
                "{check}: expected FrameTooLarge {{ len: {len}, max: {max}, sender: {sender} }}, \
                 got {{ len: {l}, max: {m}, sender: {s} }}"
            );
        }
        other => panic!("{check}: expected FrameTooLarge sent by the {sender} side, got {other:?}"),
    }
}

fn expect_refused<T: std::fmt::Debug>(
    check: &str,
    result: Result<T, TransportError>,
    code: RefusalCode,
    reason: &str,
) {
    match result {
        Err(TransportError::Refused { code: c, reason: r }) => assert!(
            c == code && r == reason,
            "{check}: expected refusal ({code}) {reason:?}, got ({c}) {r:?}"
        ),
        other => panic!("{check}: expected a refusal ({code}) {reason:?}, got {other:?}"),
    }
}

/// The operation failed, and the error puts the blame on the network side (the
/// server went away), not on the caller or a protocol violation.
fn expect_network_side<T: std::fmt::Debug>(
    check: &str,
    what: &str,
    result: Result<T, TransportError>,
) {
    match result {
        Err(error) => assert_eq!(
            error.fault(),
            Fault::Network,
            "{check}: {what} must fail as a network-side error, got {error}"
        ),
        Ok(value) => panic!("{check}: {what} succeeded after shutdown: {value:?}"),
    }
}
