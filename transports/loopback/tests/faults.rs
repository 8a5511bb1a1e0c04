//! Each injected fault, named in its test, and what survives it.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use syncline_loopback::{Faults, LoopbackNetwork, LoopbackServer};
use syncline_transport::conformance::{TestRequest, TestService};
use syncline_transport::{
    BoxFuture, Connection, Fault, Frame, Limits, PeerInfo, Service, ServiceError, Side,
    TransportError,
};

/// Answers each request with itself and remembers what arrived, in order.
#[derive(Debug, Default)]
struct Recorder {
    seen: Mutex<Vec<Frame>>,
}

impl Recorder {
    fn seen(&self) -> Vec<Frame> {
        self.seen
            .lock()
            .map(|seen| seen.clone())
            .unwrap_or_default()
    }
}

impl Service for Recorder {
    fn exchange<'a>(
        &'a self,
        _peer: &'a PeerInfo,
        request: Frame,
    ) -> BoxFuture<'a, Result<Frame, ServiceError>> {
        Box::pin(async move {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(request.clone());
            }
            Ok(request)
        })
    }
}

/// A network with a recorder serving as "hub" and a connection from "alice".
async fn hub(
    seed: u64,
) -> (
    LoopbackNetwork,
    Arc<Recorder>,
    LoopbackServer,
    Box<dyn Connection>,
) {
    let network = LoopbackNetwork::new(seed);
    let recorder = Arc::new(Recorder::default());
    let server = network
        .serve("hub", recorder.clone(), Limits::default())
        .expect("a fresh network has no server on hub");
    let conn = network
        .connector("alice", "hub")
        .connect()
        .await
        .expect("no faults are set yet");
    (network, recorder, server, conn)
}

/// Fails a test that would otherwise hang; with a paused clock it fires as
/// soon as nothing else can make progress.
async fn within<F: Future>(body: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(10), body).await {
        Ok(output) => output,
        Err(_) => panic!("the test hung for 10 s"),
    }
}

fn tag(i: u32) -> Frame {
    Frame::from(i.to_be_bytes().to_vec())
}

/// Polls every future to completion, all at once; the futures were created
/// (and so sent) in order.
async fn join_all<T>(mut futures: Vec<BoxFuture<'_, T>>) -> Vec<T> {
    let mut done: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (future, slot) in futures.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                match Pin::as_mut(future).poll(cx) {
                    Poll::Ready(value) => *slot = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

#[tokio::test]
async fn drop_rate_1_fails_every_exchange() {
    within(async {
    let (network, recorder, _server, conn) = hub(1).await;
    network.set_faults(Faults::none().with_drop_rate(1.0));
    for i in 0..20 {
        let result = conn.exchange(tag(i)).await;
        assert!(
            matches!(&result, Err(error @ TransportError::Network(_)) if error.fault() == Fault::Network),
            "{result:?}"
        );
    }
    assert!(
        recorder.seen().is_empty(),
        "a dropped request must not reach the service"
    );
    assert_eq!(network.stats().frames_dropped, 20);
    let connect = network.connector("alice", "hub").connect().await;
    assert!(
        matches!(connect, Err(TransportError::Connect { .. })),
        "{connect:?}"
    );
    // The connection itself survives lost messages.
    network.set_faults(Faults::none());
    assert!(matches!(conn.exchange(tag(99)).await, Ok(f) if f == tag(99)));
    })
    .await;
}

#[tokio::test]
async fn drop_loses_both_requests_and_responses() {
    within(async {
        let (network, recorder, _server, conn) = hub(2).await;
        network.set_faults(Faults::none().with_drop_rate(0.5));
        let mut answered: usize = 0;
        for i in 0..400 {
            if conn.exchange(tag(i)).await.is_ok() {
                answered += 1;
            }
        }
        let reached = recorder.seen().len();
        // Lost requests never reached the service; lost responses did, after it ran.
        assert!(
            reached < 400,
            "some requests must be lost before the service"
        );
        assert!(
            answered < reached,
            "some responses must be lost after the service ran"
        );
        assert!(answered > 0);
        assert_eq!(network.stats().frames_dropped, 400 - answered as u64);
    })
    .await;
}

#[tokio::test]
async fn duplicate_delivers_twice_to_service() {
    within(async {
        let (network, recorder, _server, conn) = hub(3).await;
        network.set_faults(Faults::none().with_duplicate_rate(1.0));
        for i in 0..10 {
            let response = conn.exchange(tag(i)).await;
            assert!(matches!(response, Ok(f) if f == tag(i)));
        }
        let seen = recorder.seen();
        let expected: Vec<Frame> = (0..10).flat_map(|i| [tag(i), tag(i)]).collect();
        assert_eq!(
            seen, expected,
            "each request twice, the copy right after the original"
        );
        assert_eq!(network.stats().frames_duplicated, 10);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn latency_delays_each_message() {
    within(async {
        let (network, _recorder, _server, conn) = hub(4).await;
        let delay = Duration::from_millis(40);
        network.set_faults(Faults::none().with_latency(delay, delay));
        let start = tokio::time::Instant::now();
        assert!(conn.exchange(tag(1)).await.is_ok());
        // The paused clock advances exactly to each timer: request plus response.
        assert_eq!(start.elapsed(), 2 * delay);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn without_reorder_requests_arrive_in_send_order() {
    within(async {
        let (network, recorder, _server, conn) = hub(5).await;
        network.set_faults(
            Faults::none()
                .with_latency(Duration::ZERO, Duration::from_millis(50))
                .with_reorder(false),
        );
        let sent: Vec<_> = (0..30).map(|i| conn.exchange(tag(i))).collect();
        assert!(join_all(sent).await.iter().all(Result::is_ok));
        let expected: Vec<Frame> = (0..30).map(tag).collect();
        assert_eq!(recorder.seen(), expected);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn reorder_lets_later_requests_overtake() {
    within(async {
        let (network, recorder, _server, conn) = hub(5).await;
        network.set_faults(
            Faults::none()
                .with_latency(Duration::ZERO, Duration::from_millis(50))
                .with_reorder(true),
        );
        let sent: Vec<_> = (0..30).map(|i| conn.exchange(tag(i))).collect();
        assert!(join_all(sent).await.iter().all(Result::is_ok));
        let seen = recorder.seen();
        let expected: Vec<Frame> = (0..30).map(tag).collect();
        assert_ne!(
            seen, expected,
            "random latencies must reorder some requests"
        );
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(sorted, expected, "every request arrives once");
    })
    .await;
}

#[tokio::test]
async fn partition_then_heal_restores_exchanges() {
    within(async {
        let (network, _recorder, _server, conn) = hub(6).await;
        let connector = network.connector("alice", "hub");
        network.partition("alice", "hub");
        assert!(!network.is_reachable("alice", "hub"));
        let cut = conn.exchange(tag(1)).await;
        assert!(
            matches!(&cut, Err(e) if e.fault() == Fault::Network),
            "{cut:?}"
        );
        assert!(conn.is_closed(), "a partition kills the connection");
        let connect = connector.connect().await;
        assert!(
            matches!(&connect, Err(e) if e.fault() == Fault::Network),
            "{connect:?}"
        );

        network.heal("alice", "hub");
        assert!(network.is_reachable("alice", "hub"));
        assert!(
            conn.exchange(tag(2)).await.is_err(),
            "the old connection stays dead"
        );
        let conn = connector.connect().await.expect("healed");
        assert!(matches!(conn.exchange(tag(3)).await, Ok(f) if f == tag(3)));
    })
    .await;
}

#[tokio::test]
async fn partition_of_other_nodes_leaves_a_link_alone() {
    within(async {
        let (network, _recorder, _server, conn) = hub(7).await;
        network.partition("bob", "hub");
        network.partition("alice", "carol");
        assert!(matches!(conn.exchange(tag(1)).await, Ok(f) if f == tag(1)));
        let bob = network.connector("bob", "hub").connect().await;
        assert!(bob.is_err());
        network.heal_all();
        assert!(network.connector("bob", "hub").connect().await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn set_online_false_cuts_node_from_everyone() {
    within(async {
        let (network, _recorder, _server, alice) = hub(8).await;
        let bob = network
            .connector("bob", "hub")
            .connect()
            .await
            .expect("online");
        network.set_online("hub", false);
        for conn in [&alice, &bob] {
            let result = conn.exchange(tag(1)).await;
            assert!(
                matches!(&result, Err(e) if e.fault() == Fault::Network),
                "{result:?}"
            );
        }
        assert!(network.connector("carol", "hub").connect().await.is_err());

        network.set_online("hub", true);
        let alice = network
            .connector("alice", "hub")
            .connect()
            .await
            .expect("back online");
        assert!(alice.exchange(tag(2)).await.is_ok());

        // Taking a client offline cuts only that client.
        network.set_online("alice", false);
        assert!(alice.exchange(tag(3)).await.is_err());
        let bob = network
            .connector("bob", "hub")
            .connect()
            .await
            .expect("bob is online");
        assert!(bob.exchange(tag(4)).await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn partition_ends_open_subscriptions_with_error() {
    within(async {
        let network = LoopbackNetwork::new(9);
        let service = Arc::new(TestService::new());
        let _server = network
            .serve("hub", service.clone(), Limits::default())
            .expect("free name");
        let conn = network
            .connector("alice", "hub")
            .connect()
            .await
            .expect("reachable");
        let mut sub = conn.subscribe(TestRequest::live()).await.expect("live");
        assert_eq!(service.push(Frame::from_static(b"before")).await, 1);
        assert!(matches!(sub.next().await, Some(Ok(f)) if f == "before"));

        network.partition("hub", "alice");
        let ended = sub.next().await;
        assert!(
            matches!(&ended, Some(Err(e)) if e.fault() == Fault::Network),
            "{ended:?}"
        );
        assert!(sub.next().await.is_none());
        // The service's sender is released, so it stops pushing into the void.
        let mut pushes = 0;
        while service.push(Frame::from_static(b"after")).await > 0 && pushes < 1000 {
            pushes += 1;
            tokio::task::yield_now().await;
        }
        assert_eq!(service.live_subscriptions(), 0);
    })
    .await;
}

#[tokio::test]
async fn server_shutdown_ends_subscriptions_with_closed_by_peer() {
    within(async {
        let network = LoopbackNetwork::new(10);
        let service = Arc::new(TestService::new());
        let server = network
            .serve("hub", service, Limits::default())
            .expect("free name");
        let conn = network
            .connector("alice", "hub")
            .connect()
            .await
            .expect("reachable");
        let mut sub = conn.subscribe(TestRequest::live()).await.expect("live");
        server.shutdown().await;
        let ended = sub.next().await;
        assert!(
            matches!(ended, Some(Err(TransportError::Closed { by: Side::Peer }))),
            "{ended:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn dropping_a_connection_closes_its_subscriptions() {
    within(async {
        let network = LoopbackNetwork::new(11);
        let service = Arc::new(TestService::new());
        let _server = network
            .serve("hub", service, Limits::default())
            .expect("free name");
        let conn = network
            .connector("alice", "hub")
            .connect()
            .await
            .expect("reachable");
        let mut sub = conn.subscribe(TestRequest::live()).await.expect("live");
        drop(conn);
        let ended = sub.next().await;
        assert!(
            matches!(ended, Some(Err(TransportError::Closed { by: Side::Local }))),
            "{ended:?}"
        );
    })
    .await;
}

/// What a client saw for each of 100 exchanges under loss and duplicates, and
/// what the service saw.
async fn fault_run(seed: u64) -> (Vec<bool>, Vec<Frame>) {
    let (network, recorder, _server, conn) = hub(seed).await;
    network.set_faults(Faults::none().with_drop_rate(0.3).with_duplicate_rate(0.3));
    let mut outcomes = Vec::new();
    for i in 0..100 {
        outcomes.push(conn.exchange(tag(i)).await.is_ok());
    }
    (outcomes, recorder.seen())
}

#[tokio::test]
async fn same_seed_same_fault_sequence() {
    within(async {
        let first = fault_run(12).await;
        let again = fault_run(12).await;
        assert_eq!(first, again);
        let other = fault_run(13).await;
        assert_ne!(first, other, "another seed gives other faults");
        assert!(first.0.contains(&true) && first.0.contains(&false));
    })
    .await;
}

#[tokio::test]
async fn stats_count_frames_and_bytes() {
    within(async {
        let network = LoopbackNetwork::new(14);
        let service = Arc::new(TestService::new());
        let _server = network
            .serve("hub", service.clone(), Limits::default())
            .expect("free name");
        let conn = network
            .connector("alice", "hub")
            .connect()
            .await
            .expect("reachable");
        for _ in 0..3 {
            // 10-byte request, 10-byte echo.
            assert!(conn.exchange(TestRequest::echo(&[0; 9])).await.is_ok());
        }
        let mut sub = conn.subscribe(TestRequest::live()).await.expect("live");
        service.push(Frame::from_static(b"12345")).await;
        assert!(sub.next().await.is_some());
        let stats = network.stats();
        // 6 exchange frames, the 1-byte subscribe request, 1 pushed frame.
        assert_eq!((stats.frames_sent, stats.bytes_sent), (8, 66));
        assert_eq!((stats.frames_received, stats.bytes_received), (8, 66));
        assert_eq!((stats.frames_dropped, stats.frames_duplicated), (0, 0));
        assert_eq!(stats.connections, 1);
    })
    .await;
}

#[tokio::test]
async fn over_limit_request_is_refused_before_the_network() {
    within(async {
        let network = LoopbackNetwork::new(15);
        let _server = network
            .serve("hub", Arc::new(Recorder::default()), Limits::default())
            .expect("free name");
        let limits = Limits::default().with_max_frame_len(8);
        let conn = network
            .connector_with_limits("alice", "hub", limits)
            .connect()
            .await
            .expect("reachable");
        let refused = conn.exchange(Frame::from(vec![0; 9])).await;
        assert!(matches!(
            refused,
            Err(TransportError::FrameTooLarge {
                len: 9,
                max: 8,
                sender: Side::Local
            })
        ));
        assert_eq!(
            network.stats().frames_sent,
            0,
            "nothing entered the network"
        );
    })
    .await;
}

#[tokio::test]
async fn peer_info_names_the_client_node() {
    within(async {
        let network = LoopbackNetwork::new(16);
        let service = Arc::new(TestService::new());
        let _server = network
            .serve("hub", service.clone(), Limits::default())
            .expect("free name");
        let conn = network
            .connector("alice", "hub")
            .connect()
            .await
            .expect("reachable");
        assert!(conn.exchange(TestRequest::echo(b"hi")).await.is_ok());
        assert_eq!(
            service.last_peer().map(|peer| peer.remote),
            Some("alice".to_owned())
        );
    })
    .await;
}

#[tokio::test]
async fn a_name_serves_once_and_shutdown_frees_it() {
    within(async {
        let network = LoopbackNetwork::new(17);
        let first = network.serve("hub", Arc::new(Recorder::default()), Limits::default());
        let first = first.expect("free name");
        let taken = network.serve("hub", Arc::new(Recorder::default()), Limits::default());
        assert!(
            matches!(taken, Err(TransportError::Local { .. })),
            "{taken:?}"
        );
        let unknown = network.connector("alice", "nobody").connect().await;
        assert!(
            matches!(unknown, Err(TransportError::Connect { .. })),
            "{unknown:?}"
        );

        let old = network
            .connector("alice", "hub")
            .connect()
            .await
            .expect("listening");
        first.shutdown().await;
        let second = network.serve("hub", Arc::new(Recorder::default()), Limits::default());
        let _second = second.expect("freed by shutdown");
        let stale = old.exchange(tag(1)).await;
        assert!(
            matches!(stale, Err(TransportError::Closed { by: Side::Peer })),
            "a connection to the old server stays dead: {stale:?}"
        );
        let fresh = network
            .connector("alice", "hub")
            .connect()
            .await
            .expect("listening");
        assert!(fresh.exchange(tag(2)).await.is_ok());
    })
    .await;
}

#[test]
fn faults_are_clamped() {
    let faults = Faults::none()
        .with_drop_rate(2.0)
        .with_duplicate_rate(f64::NAN)
        .with_latency(Duration::from_millis(9), Duration::from_millis(1));
    assert_eq!(faults.drop_rate, 1.0);
    assert_eq!(faults.duplicate_rate, 0.0);
    assert_eq!(
        faults.latency,
        (Duration::from_millis(1), Duration::from_millis(9))
    );
    let network = LoopbackNetwork::new(18);
    network.set_faults(faults);
    assert_eq!(network.faults(), faults);
    let slow = Faults::none().with_latency(Duration::ZERO, Duration::MAX);
    assert_eq!(slow.latency.1, Duration::from_secs(24 * 60 * 60));
}
