//! The session driven by hand: canned answers, no runtime, no sockets, no
//! clock but the one these tests move.

use std::time::{Duration, Instant};

use syncline_transport::{Fault, RefusalCode, ServiceError, TransportError};

use super::*;
use crate::clock::Stamp;
use crate::codec;
use crate::error::ApplyError;
use crate::model::{Change, ChangeId, Key, MergePolicy, Op};
use crate::store::{ApplyReport, Refused};
use crate::sync::config::Direction;
use crate::sync::error::ClockDrift;
use crate::sync::protocol::{Batch, Verdict};
use crate::value::Value;

const T0: u64 = 1_700_000_000_000;
const LOCAL: ReplicaId = ReplicaId::from_bytes([1; 16]);
const REMOTE: ReplicaId = ReplicaId::from_bytes([2; 16]);

/// A test's clock: an instant it never reads again, moved by hand.
struct Clock {
    base: Instant,
    ms: u64,
}

impl Clock {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            ms: 0,
        }
    }

    fn now(&self) -> Now {
        Now {
            at: self.base + Duration::from_millis(self.ms),
            millis: T0 + self.ms,
        }
    }

    fn advance(&mut self, ms: u64) -> Now {
        self.ms += ms;
        self.now()
    }
}

fn config() -> SyncConfig {
    SyncConfig {
        // Asking for relayed cursors ends a round with one more exchange;
        // `relayed_cursors_are_asked_after_a_pull_and_their_failure_is_no_error`
        // drives it.
        relay_interval: None,
        batch_size: 2,
        subscription_timeout: Some(Duration::from_secs(45)),
        poll_interval: Some(Duration::from_secs(30)),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(30),
        ..SyncConfig::default()
    }
}

fn lww(name: &str) -> CollectionSpec {
    CollectionSpec {
        name: name.into(),
        policy: MergePolicy::Lww,
    }
}

fn local() -> Local {
    Local {
        clock: Stamp::new(T0, 0),
        collections: vec![lww("todos")],
        token: Some("t1".into()),
    }
}

fn change(seq: u64, collection: &str) -> Change {
    Change {
        id: ChangeId {
            origin: REMOTE,
            seq,
        },
        collection: collection.into(),
        key: Key::from(format!("k{seq}")),
        stamp: Stamp::new(T0, seq as u16),
        base: Stamp::ZERO,
        op: Op::Put(Value::Int(seq as i64)),
    }
}

fn welcome(collections: Vec<CollectionSpec>) -> Vec<u8> {
    protocol::encode(&Response::Welcome {
        replica: REMOTE,
        clock: Stamp::new(T0, 0),
        collections,
        last_lsn: 0,
    })
}

fn changes(batch: Batch, has_more: bool) -> Vec<u8> {
    protocol::encode(&Response::Changes { batch, has_more })
}

fn refused(code: RefusalCode) -> TransportError {
    ServiceError::new(code, "no").into()
}

/// The next action, which must exist.
fn action(s: &mut Session) -> Action {
    s.poll_action().expect("an action")
}

fn expect_exchange(s: &mut Session) -> RequestBody {
    match action(s) {
        Action::Exchange(request) => {
            assert_eq!(request.version, PROTOCOL_VERSION);
            assert_eq!(request.from, LOCAL);
            request.body
        }
        other => panic!("expected an exchange, got {other:?}"),
    }
}

/// The round's end: a disconnect first when it failed.
fn expect_finished(s: &mut Session) -> Result<SyncReport, SyncError> {
    loop {
        match action(s) {
            Action::Disconnect => {}
            Action::Finished(result) => {
                assert!(s.poll_action().is_none(), "nothing after the end");
                assert!(!s.is_busy());
                return result;
            }
            other => panic!("expected the end of the round, got {other:?}"),
        }
    }
}

fn events(s: &mut Session) -> Vec<SyncEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// A session that connected and subscribed (or not, when not live), with
/// the round stopped right after the handshake: at its first push read.
fn connected(config: SyncConfig, clock: &Clock) -> Session {
    let mut s = Session::new(LOCAL, config, 7, clock.now().at);
    s.handle_command(true, true, clock.now());
    assert!(matches!(action(&mut s), Action::Connect { .. }));
    s.handle_connected(Ok(local()), clock.now());
    let RequestBody::Hello { collections, .. } = expect_exchange(&mut s) else {
        panic!("a hello first");
    };
    assert_eq!(collections, vec![lww("todos")]);
    s.handle_response(Ok(&welcome(vec![lww("todos"), lww("other")])), clock.now());
    if s.config.live && !s.config.on_demand && s.config.direction.pulls() {
        assert!(matches!(
            action(&mut s),
            Action::ReadPullCursor { remote: REMOTE, .. }
        ));
        s.handle_pull_cursor(Ok(5), clock.now());
        match action(&mut s) {
            Action::Subscribe(request) => {
                assert_eq!(request.body, RequestBody::Subscribe { after: 5 })
            }
            other => panic!("expected a subscribe, got {other:?}"),
        }
        s.handle_subscribed(Ok(()), clock.now());
    }
    assert_eq!(s.remote(), Some(REMOTE));
    s
}

/// Answers a push stage that has nothing to send.
fn nothing_to_push(s: &mut Session, clock: &Clock) {
    assert!(matches!(action(s), Action::ReadOutbox { .. }));
    s.handle_outbox(
        Ok(Outbox {
            acked: 3,
            changes: vec![],
            through: 3,
            has_more: false,
            groups: vec![],
            oversized: false,
        }),
        clock.now(),
    );
}

/// Answers the rest of a round that has nothing to push or pull, with the
/// pull cursor at 5, and checks that it succeeds.
fn quiet_round(s: &mut Session, clock: &Clock) {
    nothing_to_push(s, clock);
    assert!(matches!(action(s), Action::ReadPullCursor { .. }));
    s.handle_pull_cursor(Ok(5), clock.now());
    expect_exchange(s);
    s.handle_response(Ok(&changes(Batch::new(vec![], 5), false)), clock.now());
    assert!(matches!(action(s), Action::Apply { .. }));
    s.handle_applied(Ok(Default::default()), clock.now());
    expect_finished(s).unwrap();
}

/// A pulled batch that moved records keeping older changes (say, this
/// replica's own change that became a conflict) makes the round push once
/// more, and only once.
#[test]
fn a_pull_that_carried_older_changes_pushes_once_more() {
    let clock = Clock::new();
    let mut s = connected(config(), &clock);
    nothing_to_push(&mut s, &clock);
    assert!(matches!(action(&mut s), Action::ReadPullCursor { .. }));
    s.handle_pull_cursor(Ok(5), clock.now());
    expect_exchange(&mut s);
    let batch = Batch::new(vec![change(6, "todos")], 6);
    s.handle_response(Ok(&changes(batch, false)), clock.now());
    assert!(matches!(action(&mut s), Action::Apply { .. }));
    s.handle_applied(
        Ok(ApplyReport {
            applied: 1,
            conflicts: 1,
            carried: 1,
            ..Default::default()
        }),
        clock.now(),
    );
    // The push once more: its outbox has the conflict to send back.
    assert!(matches!(action(&mut s), Action::ReadOutbox { .. }));
    let mine = vec![change(3, "todos")];
    s.handle_outbox(
        Ok(Outbox {
            acked: 3,
            changes: mine.clone(),
            through: 4,
            has_more: false,
            groups: vec![(1, 4)],
            oversized: false,
        }),
        clock.now(),
    );
    let RequestBody::Push(batch) = expect_exchange(&mut s) else {
        panic!("a push");
    };
    assert_eq!(batch.changes, mine);
    s.handle_response(
        Ok(&protocol::encode(&Response::Ack {
            through: 4,
            applied: 0,
            refused: vec![],
        })),
        clock.now(),
    );
    assert!(matches!(
        action(&mut s),
        Action::RecordPushed { through: 4, .. }
    ));
    s.handle_pushed(Ok(()), clock.now());
    // And then the round ends: no second pull, no third push.
    expect_finished(&mut s).expect("a good round");
}

#[test]
fn a_round_connects_pushes_and_pulls_until_caught_up() {
    let clock = Clock::new();
    let mut s = connected(config(), &clock);
    // Push: two changes, acked, recorded.
    match action(&mut s) {
        Action::ReadOutbox {
            remote,
            limit,
            collections,
            ..
        } => {
            assert_eq!((remote, limit), (REMOTE, 2));
            assert_eq!(collections, vec!["todos".to_string()]);
        }
        other => panic!("expected an outbox read, got {other:?}"),
    }
    let mine = vec![change(1, "todos"), change(2, "todos")];
    s.handle_outbox(
        Ok(Outbox {
            acked: 0,
            changes: mine.clone(),
            through: 2,
            has_more: false,
            groups: vec![(2, 2)],
            oversized: false,
        }),
        clock.now(),
    );
    let RequestBody::Push(batch) = expect_exchange(&mut s) else {
        panic!("a push");
    };
    assert!(batch.verify());
    assert_eq!((batch.changes, batch.through), (mine, 2));
    s.handle_response(
        Ok(&protocol::encode(&Response::Ack {
            through: 2,
            applied: 2,
            refused: vec![],
        })),
        clock.now(),
    );
    assert!(matches!(
        action(&mut s),
        Action::RecordPushed { through: 2, .. }
    ));
    s.handle_pushed(Ok(()), clock.now());
    // Pull: a first batch with more to come, then the rest.
    for (after, through, has_more) in [(5, 7, true), (7, 8, false)] {
        if after == 5 {
            // The first pull reads the cursor; the next one is asked for
            // with the first batch's apply.
            assert!(matches!(action(&mut s), Action::ReadPullCursor { .. }));
            s.handle_pull_cursor(Ok(after), clock.now());
            assert_eq!(
                expect_exchange(&mut s),
                RequestBody::Pull {
                    after,
                    limit: 2,
                    collections: vec!["todos".into()],
                }
            );
        }
        let batch = Batch::new(vec![change(through, "todos")], through);
        s.handle_response(Ok(&changes(batch, has_more)), clock.now());
        match action(&mut s) {
            Action::Apply {
                remote, through: t, ..
            } => assert_eq!((remote, t), (REMOTE, through)),
            other => panic!("expected an apply, got {other:?}"),
        }
        if has_more {
            assert_eq!(
                expect_exchange(&mut s),
                RequestBody::Pull {
                    after: through,
                    limit: 2,
                    collections: vec!["todos".into()],
                }
            );
        }
        s.handle_applied(
            Ok(ApplyReport {
                applied: 1,
                conflicts: usize::from(has_more),
                ..Default::default()
            }),
            clock.now(),
        );
    }
    let report = expect_finished(&mut s).expect("a good round");
    assert_eq!(
        report,
        SyncReport {
            pushed: 2,
            pulled: 2
        }
    );
    assert_eq!(s.status(), Status::Idle);
    let stats = s.stats();
    assert_eq!(
        (stats.pushed, stats.pulled, stats.conflicts, stats.rounds),
        (2, 2, 1, 1)
    );
    assert_eq!(stats.last_sync_ms, Some(T0));
    let events = events(&mut s);
    assert!(events.contains(&SyncEvent::Pushed {
        count: 2,
        through: 2
    }));
    assert!(events.contains(&SyncEvent::Pulled {
        count: 1,
        through: 8
    }));
    assert_eq!(events.last(), Some(&SyncEvent::StatusChanged(Status::Idle)));
    // Idle: the next poll is due in 30 s, and the silence deadline in 45.
    assert_eq!(
        s.poll_timeout(),
        Some(clock.now().at + Duration::from_secs(30))
    );
}

#[test]
fn a_refusal_ends_the_round_with_its_code_and_backs_off() {
    for (code, status) in [
        (RefusalCode::UNAUTHORIZED, Status::Error),
        (RefusalCode::FORBIDDEN, Status::Error),
        (RefusalCode::UPGRADE_REQUIRED, Status::Error),
        (RefusalCode::INTERNAL, Status::Error),
    ] {
        let clock = Clock::new();
        let mut s = Session::new(LOCAL, config(), 7, clock.now().at);
        s.handle_command(true, true, clock.now());
        assert!(matches!(action(&mut s), Action::Connect { .. }));
        s.handle_connected(Ok(local()), clock.now());
        expect_exchange(&mut s);
        s.handle_response(Err(refused(code)), clock.now());
        let e = expect_finished(&mut s).unwrap_err();
        assert_eq!(e.refusal_code(), Some(code), "{e}");
        assert!(matches!(e, SyncError::Refused(_)), "{e}");
        assert_eq!(s.status(), status);
        assert_eq!(s.stats().last_error, Some(e.to_string()));
        // The retry comes after the first backoff, jittered into its upper half.
        let retry = s.poll_timeout().expect("a retry") - clock.now().at;
        assert!(retry >= Duration::from_millis(50) && retry <= Duration::from_millis(100));
    }
}

#[test]
fn a_clock_too_far_ahead_has_one_shape_on_either_side() {
    let clock = Clock::new();
    // The remote refuses this replica's clock at the handshake.
    let mut s = Session::new(LOCAL, config(), 7, clock.now().at);
    s.handle_command(true, true, clock.now());
    action(&mut s);
    s.handle_connected(Ok(local()), clock.now());
    expect_exchange(&mut s);
    s.handle_response(Err(refused(RefusalCode::UNPROCESSABLE)), clock.now());
    let e = expect_finished(&mut s).unwrap_err();
    assert!(
        matches!(e, SyncError::ClockDrift(ClockDrift::LocalAhead(_))),
        "{e}"
    );
    assert_eq!(e.fault(), Fault::Local);
    // This replica refuses a pulled batch whose stamps run ahead.
    let mut s = connected(config().with_direction(Direction::Pull), &clock);
    assert!(matches!(action(&mut s), Action::ReadPullCursor { .. }));
    s.handle_pull_cursor(Ok(5), clock.now());
    expect_exchange(&mut s);
    let batch = Batch::new(vec![change(6, "todos")], 6);
    s.handle_response(Ok(&changes(batch, false)), clock.now());
    action(&mut s);
    let drift = crate::clock::ClockDriftError {
        stamp: Stamp::new(T0 + 3_600_000, 0),
        ahead_ms: 3_600_000,
        max_ms: 60_000,
    };
    s.handle_applied(Err(ApplyError::ClockDrift(drift)), clock.now());
    let e = expect_finished(&mut s).unwrap_err();
    assert!(
        matches!(e, SyncError::ClockDrift(ClockDrift::RemoteAhead(d)) if d == drift),
        "{e}"
    );
    assert_eq!(e.fault(), Fault::Peer);
}

#[test]
fn a_welcome_with_another_policy_is_a_protocol_violation() {
    let clock = Clock::new();
    let mut s = Session::new(LOCAL, config(), 7, clock.now().at);
    s.handle_command(true, true, clock.now());
    action(&mut s);
    s.handle_connected(Ok(local()), clock.now());
    expect_exchange(&mut s);
    let theirs = vec![CollectionSpec {
        name: "todos".into(),
        policy: MergePolicy::FieldLww,
    }];
    s.handle_response(Ok(&welcome(theirs)), clock.now());
    let e = expect_finished(&mut s).unwrap_err();
    assert!(
        matches!(
            &e,
            SyncError::Protocol(ProtocolViolation::Disagreement(
                protocol::Disagreement::Policy { .. }
            ))
        ),
        "{e}"
    );
    assert_eq!(s.remote(), None, "no handshake succeeded");
    // A welcome from a remote with this replica's own id.
    s.handle_command(true, true, clock.now());
    action(&mut s);
    s.handle_connected(Ok(local()), clock.now());
    expect_exchange(&mut s);
    let own = protocol::encode(&Response::Welcome {
        replica: LOCAL,
        clock: Stamp::new(T0, 0),
        collections: vec![lww("todos")],
        last_lsn: 0,
    });
    s.handle_response(Ok(&own), clock.now());
    assert!(matches!(
        expect_finished(&mut s),
        Err(SyncError::Protocol(ProtocolViolation::OwnReplicaId))
    ));
}

/// A pull answered with `response`, after cursor 5: the round's error.
fn pull_answered(response: Result<Vec<u8>, TransportError>) -> SyncError {
    let clock = Clock::new();
    let mut s = connected(config().with_direction(Direction::Pull), &clock);
    assert!(matches!(action(&mut s), Action::ReadPullCursor { .. }));
    s.handle_pull_cursor(Ok(5), clock.now());
    expect_exchange(&mut s);
    match &response {
        Ok(bytes) => s.handle_response(Ok(bytes), clock.now()),
        Err(e) => s.handle_response(Err(e.clone()), clock.now()),
    }
    let e = expect_finished(&mut s).unwrap_err();
    assert_eq!(s.stats().pulled, 0);
    e
}

#[test]
fn bad_pull_answers_are_protocol_violations() {
    let backwards = changes(Batch::new(vec![], 4), false);
    assert!(matches!(
        pull_answered(Ok(backwards)),
        SyncError::Protocol(ProtocolViolation::CursorBackwards { from: 5, to: 4 })
    ));
    let mut tampered = Batch::new(vec![change(6, "todos")], 6);
    tampered.changes[0].op = Op::Delete;
    assert!(matches!(
        pull_answered(Ok(changes(tampered, false))),
        SyncError::Protocol(ProtocolViolation::DigestMismatch)
    ));
    let foreign = Batch::new(vec![change(6, "secret")], 6);
    assert!(matches!(
        pull_answered(Ok(changes(foreign, false))),
        SyncError::Protocol(ProtocolViolation::UnrequestedCollection { .. })
    ));
    let ack = protocol::encode(&Response::Ack {
        through: 1,
        applied: 1,
        refused: vec![],
    });
    assert!(matches!(
        pull_answered(Ok(ack)),
        SyncError::Protocol(ProtocolViolation::Unexpected {
            expected: "changes",
            got: "an ack"
        })
    ));
    assert!(matches!(
        pull_answered(Ok(vec![0xff; 9])),
        SyncError::Protocol(ProtocolViolation::Undecodable { .. })
    ));
    let e = pull_answered(Err(TransportError::network("reset")));
    assert_eq!(e.fault(), Fault::Network);
}

#[test]
fn an_old_servers_refusal_is_read_as_a_refusal() {
    // Protocol 1's in-band `Response::Refused(Version, reason)`.
    let old = codec::encode(&(3u32, 0u32, "this server speaks 1".to_string()));
    let e = pull_answered(Ok(old));
    assert_eq!(e.refusal_code(), Some(RefusalCode::UPGRADE_REQUIRED), "{e}");
    assert!(e.to_string().contains("this server speaks 1"), "{e}");
}

#[test]
fn an_ack_through_another_lsn_is_refused() {
    let clock = Clock::new();
    let mut s = connected(config().with_direction(Direction::Push), &clock);
    action(&mut s);
    s.handle_outbox(
        Ok(Outbox {
            acked: 0,
            changes: vec![change(1, "todos")],
            through: 1,
            has_more: false,
            groups: vec![(1, 1)],
            oversized: false,
        }),
        clock.now(),
    );
    expect_exchange(&mut s);
    let ack = protocol::encode(&Response::Ack {
        through: 9,
        applied: 1,
        refused: vec![],
    });
    s.handle_response(Ok(&ack), clock.now());
    assert!(matches!(
        expect_finished(&mut s),
        Err(SyncError::Protocol(ProtocolViolation::AckMismatch {
            expected: 1,
            got: 9
        }))
    ));
    assert_eq!(s.stats().pushed, 0);
}

#[test]
fn heartbeats_keep_the_subscription_alive_and_news_pull() {
    let mut clock = Clock::new();
    let mut s = connected(config(), &clock);
    quiet_round(&mut s, &clock);
    assert!(s.wants_notifications());
    // Heartbeats (the lsn subscribed after, then unchanged) every 15 s:
    // nothing to do, and the 45 s silence never comes.
    for _ in 0..10 {
        let now = clock.advance(15_000);
        // The poll timer (30 s) fires in between; answer its round.
        if s.poll_timeout().is_some_and(|t| t <= now.at) {
            s.handle_timeout(now);
            quiet_round(&mut s, &clock);
        }
        let beat = protocol::encode(&Notify { last_lsn: 5 });
        s.handle_notification(Some(Ok(&beat)), now);
        assert!(!s.is_busy(), "a heartbeat starts no round");
        assert!(s.poll_action().is_none());
    }
    assert_eq!(s.status(), Status::Idle);
    // News: a pull round.
    let news = protocol::encode(&Notify { last_lsn: 9 });
    s.handle_notification(Some(Ok(&news)), clock.now());
    assert!(s.is_busy());
    assert!(matches!(action(&mut s), Action::ReadPullCursor { .. }));
}

#[test]
fn a_silent_subscription_is_replaced() {
    let mut clock = Clock::new();
    let config = SyncConfig {
        poll_interval: None,
        ..config()
    };
    let mut s = connected(config, &clock);
    quiet_round(&mut s, &clock);
    let deadline = s.poll_timeout().expect("the silence deadline");
    assert_eq!(deadline, clock.now().at + Duration::from_secs(45));
    s.handle_timeout(clock.advance(44_999));
    assert!(s.poll_action().is_none(), "not silent for long enough yet");
    s.handle_timeout(clock.advance(1));
    assert!(matches!(action(&mut s), Action::Disconnect));
    assert_eq!(s.status(), Status::Offline);
    assert!(!s.wants_notifications());
    assert!(s.poll_timeout().is_some(), "a reconnect is scheduled");
}

#[test]
fn on_demand_sessions_never_act_by_themselves() {
    let clock = Clock::new();
    let config = SyncConfig {
        on_demand: true,
        ..config()
    };
    let mut s = connected(config, &clock);
    quiet_round(&mut s, &clock);
    // No subscription, no poll timer, and local writes wait for a command.
    assert!(!s.wants_notifications());
    assert_eq!(s.poll_timeout(), None);
    s.handle_local_commit(
        Commit::Change {
            lsn: 4,
            source: None,
            synced: true,
            carried: false,
        },
        clock.now(),
    );
    assert!(!s.is_busy());
    assert_eq!(events(&mut s).last(), Some(&SyncEvent::Captured { lsn: 4 }));
}

#[test]
fn local_commits_push_but_changes_from_the_remote_do_not() {
    let clock = Clock::new();
    let mut s = connected(config(), &clock);
    quiet_round(&mut s, &clock);
    s.handle_local_commit(
        Commit::Change {
            lsn: 9,
            source: Some(REMOTE),
            synced: true,
            carried: false,
        },
        clock.now(),
    );
    assert!(!s.is_busy(), "no push back of the remote's own changes");
    events(&mut s);
    // Unless they moved records that keep changes from before (conflicts),
    // which the remote may lack: then the engine pushes once more.
    s.handle_local_commit(
        Commit::Change {
            lsn: 10,
            source: Some(REMOTE),
            synced: true,
            carried: true,
        },
        clock.now(),
    );
    nothing_to_push(&mut s, &clock);
    assert_eq!(expect_finished(&mut s).unwrap(), SyncReport::default());
    events(&mut s);
    s.handle_local_commit(
        Commit::Change {
            lsn: 10,
            source: None,
            synced: false,
            carried: false,
        },
        clock.now(),
    );
    assert!(!s.is_busy(), "a local-only change never wakes the engine");
    assert!(events(&mut s).is_empty(), "nor is it captured");
    s.handle_local_commit(
        Commit::Change {
            lsn: 11,
            source: None,
            synced: true,
            carried: false,
        },
        clock.now(),
    );
    // A push-only round (the outbox read), with no pull after it.
    nothing_to_push(&mut s, &clock);
    assert_eq!(expect_finished(&mut s).unwrap(), SyncReport::default());
}

#[test]
fn backoff_doubles_up_to_its_maximum() {
    let mut clock = Clock::new();
    let mut s = Session::new(LOCAL, config(), 7, clock.now().at);
    let mut delays = Vec::new();
    for _ in 0..12 {
        let now = clock.now();
        s.handle_command(true, true, now);
        action(&mut s);
        s.handle_connected(Err(TransportError::network("unreachable")), now);
        expect_finished(&mut s).unwrap_err();
        let delay = s.poll_timeout().expect("a retry") - now.at;
        delays.push(delay);
        clock.advance(delay.as_millis() as u64);
    }
    for (i, d) in delays.iter().enumerate() {
        let base = Duration::from_millis(100 << i.min(20)).min(Duration::from_secs(30));
        assert!(
            *d >= base / 2 && *d <= base,
            "retry {i}: {d:?} for {base:?}"
        );
    }
    assert_eq!(s.status(), Status::Offline);
}

#[test]
fn inputs_out_of_turn_are_ignored() {
    let clock = Clock::new();
    let mut s = Session::new(LOCAL, config(), 7, clock.now().at);
    // Results nobody asked for.
    s.handle_response(Ok(&[1, 2, 3]), clock.now());
    s.handle_applied(Ok(Default::default()), clock.now());
    s.handle_pushed(Ok(()), clock.now());
    s.handle_pull_cursor(Ok(3), clock.now());
    s.handle_subscribed(Ok(()), clock.now());
    s.handle_connected(Ok(local()), clock.now());
    s.handle_outbox(Err(SyncError::Stopped), clock.now());
    assert!(s.poll_action().is_none());
    assert!(!s.is_busy());
    // A notification without a subscription.
    s.handle_notification(None, clock.now());
    assert!(s.poll_action().is_none());
}

#[cfg(feature = "testing")]
mod arbitrary {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary answers, store results, notifications and timings
        /// never panic the session, and every round ends once.
        #[test]
        fn arbitrary_inputs_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
            crate::testing::fuzz::drive_session(&data);
        }
    }
}

mod controls;
mod durable;
mod parts;
mod verdicts;

/// After a round that pulled, at most once per interval, the session asks
/// the remote for its relayed cursors and hands them to the store; a
/// remote that refuses (an older server) does not fail the round.
#[test]
fn relayed_cursors_are_asked_after_a_pull_and_their_failure_is_no_error() {
    let mut clock = Clock::new();
    let config = SyncConfig {
        relay_interval: Some(Duration::from_secs(60)),
        ..config()
    };
    let mut s = connected(config, &clock);
    fn pull(s: &mut Session, clock: &Clock) {
        nothing_to_push(s, clock);
        assert!(matches!(action(s), Action::ReadPullCursor { .. }));
        s.handle_pull_cursor(Ok(5), clock.now());
        expect_exchange(s);
        s.handle_response(Ok(&changes(Batch::new(vec![], 5), false)), clock.now());
        assert!(matches!(action(s), Action::Apply { .. }));
        s.handle_applied(Ok(Default::default()), clock.now());
    }
    pull(&mut s, &clock);
    assert_eq!(expect_exchange(&mut s), RequestBody::Relayed);
    let other = ReplicaId::from_bytes([9; 16]);
    let answer = protocol::encode(&Response::Relayed {
        remotes: vec![protocol::Relayed {
            remote: other,
            pulled: 40,
            at: 5,
        }],
    });
    s.handle_response(Ok(&answer), clock.now());
    match action(&mut s) {
        Action::AdoptRelayed {
            remote, relayed, ..
        } => {
            assert_eq!(remote, REMOTE);
            assert_eq!(relayed[0].remote, other);
        }
        other => panic!("expected the store to adopt them, got {other:?}"),
    }
    s.handle_adopted(Ok(1), clock.now());
    expect_finished(&mut s).unwrap();

    // Within the interval: not asked again.
    s.handle_command(true, true, clock.advance(1_000));
    pull(&mut s, &clock);
    expect_finished(&mut s).unwrap();

    // After it: asked; a refusal ends the round well all the same.
    s.handle_command(true, true, clock.advance(60_000));
    pull(&mut s, &clock);
    assert_eq!(expect_exchange(&mut s), RequestBody::Relayed);
    s.handle_response(
        Err(ServiceError::bad_request("unknown request").into()),
        clock.now(),
    );
    expect_finished(&mut s).unwrap();
}
