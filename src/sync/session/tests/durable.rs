//! Which pulled batches wait for the disk: the last of each pull, and one
//! per `durable_interval`; the others are deferred.

use super::*;

/// A pull-only session, connected, its round at the pull cursor.
fn pulling(interval: Duration, clock: &Clock) -> Session {
    let config = SyncConfig {
        durable_interval: interval,
        live: false,
        ..config().with_direction(Direction::Pull)
    };
    connected(config, clock)
}

/// Answers one pull with a batch of one change through `through`, and
/// returns whether its apply is durable.
fn pull_one(s: &mut Session, clock: &Clock, after: u64, through: u64, has_more: bool) -> bool {
    assert!(matches!(action(s), Action::ReadPullCursor { .. }));
    s.handle_pull_cursor(Ok(after), clock.now());
    expect_exchange(s);
    let batch = Batch::new(vec![change(through, "todos")], through);
    s.handle_response(Ok(&changes(batch, has_more)), clock.now());
    let durable = match action(s) {
        Action::Apply { durable, .. } => durable,
        other => panic!("expected an apply, got {other:?}"),
    };
    s.handle_applied(
        Ok(ApplyReport {
            applied: 1,
            ..Default::default()
        }),
        clock.now(),
    );
    durable
}

#[test]
fn pulled_batches_are_deferred_until_the_interval_or_the_last() {
    let mut clock = Clock::new();
    let mut s = pulling(Duration::from_secs(1), &clock);
    let mut durable = Vec::new();
    // Ten batches, 300 ms apart: durable once the second since the round's
    // start (or the last durable batch) is over, and the last.
    for i in 0..10 {
        let last = i == 9;
        durable.push(pull_one(&mut s, &clock, i, i + 1, !last));
        clock.advance(300);
    }
    expect_finished(&mut s).unwrap();
    assert_eq!(
        durable,
        [
            false, false, false, false, true, false, false, false, true, true
        ],
        "deferred batches in between, durable at 1.2 s, 2.4 s and the end"
    );
}

#[test]
fn a_zero_interval_makes_every_pulled_batch_durable() {
    let clock = Clock::new();
    let mut s = pulling(Duration::ZERO, &clock);
    for i in 0..3 {
        assert!(pull_one(&mut s, &clock, i, i + 1, i < 2));
    }
    expect_finished(&mut s).unwrap();
}

#[test]
fn a_pull_that_makes_no_progress_ends_durably() {
    let clock = Clock::new();
    let mut s = pulling(Duration::from_secs(60), &clock);
    assert!(!pull_one(&mut s, &clock, 0, 1, true));
    // The remote says more follows but sends nothing new: the pull ends
    // here, so this apply is its last.
    assert!(matches!(action(&mut s), Action::ReadPullCursor { .. }));
    s.handle_pull_cursor(Ok(1), clock.now());
    expect_exchange(&mut s);
    s.handle_response(Ok(&changes(Batch::new(vec![], 1), true)), clock.now());
    assert!(matches!(
        action(&mut s),
        Action::Apply { durable: true, .. }
    ));
    s.handle_applied(Ok(Default::default()), clock.now());
    expect_finished(&mut s).unwrap();
}
