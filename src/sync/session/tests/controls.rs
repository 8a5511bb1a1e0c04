//! The engine controls, driven by hand: giving up, reconnecting, progress
//! and token refresh.

use super::*;

#[test]
fn retries_stop_after_max_retry_attempts_until_a_command() {
    let mut clock = Clock::new();
    let config = SyncConfig {
        max_retry_attempts: Some(2),
        ..config()
    };
    let mut s = Session::new(LOCAL, config, 7, clock.now().at);
    // The first attempt and two retries fail; then the session gives up.
    for attempt in 0..3 {
        let now = clock.now();
        s.handle_timeout(now);
        assert!(
            matches!(action(&mut s), Action::Connect { .. }),
            "attempt {attempt}"
        );
        s.handle_connected(Err(TransportError::network("unreachable")), now);
        expect_finished(&mut s).unwrap_err();
        if attempt < 2 {
            let retry = s.poll_timeout().expect("a retry");
            // Whole milliseconds, rounded up past the jittered deadline.
            clock.advance((retry - now.at).as_millis() as u64 + 1);
            assert_eq!(s.status(), Status::Offline);
        }
    }
    assert_eq!(s.poll_timeout(), None, "no more retries");
    assert_eq!(s.status(), Status::Error);
    s.handle_timeout(clock.advance(3_600_000));
    assert!(s.poll_action().is_none());
    // A command tries again, and a success starts over.
    s.handle_command(true, true, clock.now());
    assert!(matches!(action(&mut s), Action::Connect { .. }));
}

#[test]
fn reconnect_now_forgets_the_backoff_and_reconnects() {
    let mut clock = Clock::new();
    let mut s = Session::new(LOCAL, config(), 7, clock.now().at);
    for _ in 0..8 {
        let now = clock.now();
        s.handle_command(true, true, now);
        action(&mut s);
        s.handle_connected(Err(TransportError::network("unreachable")), now);
        expect_finished(&mut s).unwrap_err();
    }
    let far = s.poll_timeout().expect("a retry") - clock.now().at;
    assert!(far >= Duration::from_millis(6_400), "{far:?}");
    // The network is back: connect at once, and the next failure backs off
    // from the start again.
    s.handle_reconnect(clock.advance(10));
    assert!(matches!(action(&mut s), Action::Connect { .. }));
    let now = clock.now();
    s.handle_connected(Err(TransportError::network("unreachable")), now);
    expect_finished(&mut s).unwrap_err();
    let next = s.poll_timeout().expect("a retry") - now.at;
    assert!(next <= Duration::from_millis(100), "{next:?}");
    // Connected: a reconnect drops the connection and makes a new one.
    let mut s = connected(config(), &clock);
    quiet_round(&mut s, &clock);
    s.handle_reconnect(clock.now());
    assert!(matches!(action(&mut s), Action::Disconnect));
    assert!(matches!(action(&mut s), Action::Connect { .. }));
}

#[test]
fn progress_counts_rounds_begun_and_the_last_that_succeeded() {
    let clock = Clock::new();
    let mut s = connected(config(), &clock);
    assert_eq!(s.progress().begun, 1);
    assert_eq!(s.progress().synced, 0, "the first round is not over");
    quiet_round(&mut s, &clock);
    assert_eq!(
        s.progress(),
        Progress {
            begun: 1,
            synced: 1
        }
    );
    s.handle_command(false, true, clock.now());
    assert!(matches!(action(&mut s), Action::ReadPullCursor { .. }));
    s.handle_pull_cursor(Err::<u64, _>(SyncError::Stopped), clock.now());
    expect_finished(&mut s).unwrap_err();
    assert_eq!(
        s.progress(),
        Progress {
            begun: 2,
            synced: 1
        }
    );
}

#[derive(Debug)]
struct Rotating;

impl crate::sync::config::TokenProvider for Rotating {
    fn token(&self, _refresh: bool) -> syncline_transport::BoxFuture<'_, Option<String>> {
        Box::pin(async { None })
    }
}

#[test]
fn an_unauthenticated_refusal_asks_the_provider_once_more() {
    let clock = Clock::new();
    let mut s = Session::new(
        LOCAL,
        config().with_token_provider(Rotating),
        7,
        clock.now().at,
    );
    s.handle_command(true, true, clock.now());
    assert!(matches!(action(&mut s), Action::Connect { refresh: false }));
    s.handle_connected(Ok(local()), clock.now());
    match action(&mut s) {
        Action::Exchange(request) => assert_eq!(request.token.as_deref(), Some("t1")),
        other => panic!("expected a hello, got {other:?}"),
    }
    s.handle_response(Err(refused(RefusalCode::UNAUTHORIZED)), clock.now());
    // Not the end of the round: a new connection with a fresh token.
    assert!(matches!(action(&mut s), Action::Disconnect));
    assert!(matches!(action(&mut s), Action::Connect { refresh: true }));
    s.handle_connected(
        Ok(Local {
            token: Some("t2".into()),
            ..local()
        }),
        clock.now(),
    );
    match action(&mut s) {
        Action::Exchange(request) => assert_eq!(request.token.as_deref(), Some("t2")),
        other => panic!("expected a hello, got {other:?}"),
    }
    // Refused again: the round fails.
    s.handle_response(Err(refused(RefusalCode::UNAUTHORIZED)), clock.now());
    let e = expect_finished(&mut s).unwrap_err();
    assert_eq!(e.refusal_code(), Some(RefusalCode::UNAUTHORIZED));
    // Without a provider, the first refusal ends the round.
    let mut s = Session::new(LOCAL, config(), 7, clock.now().at);
    s.handle_command(true, true, clock.now());
    action(&mut s);
    s.handle_connected(Ok(local()), clock.now());
    expect_exchange(&mut s);
    s.handle_response(Err(refused(RefusalCode::UNAUTHORIZED)), clock.now());
    expect_finished(&mut s).unwrap_err();
}
