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
/// returns whether its apply is durable. The first pull of a round reads
/// the cursor; after a batch with more to come, the next pull was asked
/// for with its apply.
fn pull_one(s: &mut Session, clock: &Clock, after: u64, through: u64, has_more: bool) -> bool {
    if after == 0 {
        assert!(matches!(action(s), Action::ReadPullCursor { .. }));
        s.handle_pull_cursor(Ok(after), clock.now());
        expect_exchange(s);
    }
    let batch = Batch::new(vec![change(through, "todos")], through);
    s.handle_response(Ok(&changes(batch, has_more)), clock.now());
    let durable = match action(s) {
        Action::Apply { durable, .. } => durable,
        other => panic!("expected an apply, got {other:?}"),
    };
    if has_more {
        assert_eq!(
            expect_exchange(s),
            RequestBody::Pull {
                after: through,
                limit: 2,
                collections: vec!["todos".into()],
            },
            "the next pull, asked for with the apply"
        );
    }
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
    s.handle_response(Ok(&changes(Batch::new(vec![], 1), true)), clock.now());
    assert!(matches!(
        action(&mut s),
        Action::Apply { durable: true, .. }
    ));
    s.handle_applied(Ok(Default::default()), clock.now());
    expect_finished(&mut s).unwrap();
}

/// The next pull is asked for with the current batch's apply; its answer
/// may come first (a driver may answer in either order) and waits for the
/// apply; a failed apply ends the round and drops it.
#[test]
fn the_next_pull_is_asked_ahead_and_waits_for_the_apply() {
    let clock = Clock::new();
    let mut s = pulling(Duration::from_secs(60), &clock);
    assert!(!pull_one(&mut s, &clock, 0, 1, true));
    // Batch 2 of 3, then its answer before its apply's result.
    s.handle_response(
        Ok(&changes(Batch::new(vec![change(2, "todos")], 2), true)),
        clock.now(),
    );
    assert!(matches!(action(&mut s), Action::Apply { through: 2, .. }));
    assert!(matches!(
        expect_exchange(&mut s),
        RequestBody::Pull { after: 2, .. }
    ));
    s.handle_response(
        Ok(&changes(Batch::new(vec![change(3, "todos")], 3), false)),
        clock.now(),
    );
    assert!(s.poll_action().is_none(), "the answer waits for the apply");
    s.handle_applied(Ok(Default::default()), clock.now());
    assert!(
        matches!(
            action(&mut s),
            Action::Apply {
                through: 3,
                durable: true,
                ..
            }
        ),
        "then it is applied, the last of the pull"
    );
    s.handle_applied(Ok(Default::default()), clock.now());
    expect_finished(&mut s).unwrap();

    // A failed apply ends the round; the pull asked ahead goes with it.
    let mut s = pulling(Duration::from_secs(60), &clock);
    assert!(matches!(action(&mut s), Action::ReadPullCursor { .. }));
    s.handle_pull_cursor(Ok(0), clock.now());
    expect_exchange(&mut s);
    s.handle_response(
        Ok(&changes(Batch::new(vec![change(1, "todos")], 1), true)),
        clock.now(),
    );
    assert!(matches!(action(&mut s), Action::Apply { .. }));
    s.handle_applied(
        Err(ApplyError::BatchTooLarge { len: 2, max: 1 }),
        clock.now(),
    );
    assert!(
        expect_finished(&mut s).is_err(),
        "the round fails, and no pull is left to send"
    );
}
