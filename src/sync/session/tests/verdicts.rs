//! Pushes judged group by group: refused groups move aside, bad verdicts
//! are violations, and a refused push still lets the round pull.

use super::*;

#[test]
fn a_refused_group_moves_aside_and_the_push_goes_on() {
    let clock = Clock::new();
    let mut s = connected(config(), &clock);
    action(&mut s);
    // Three groups: two changes ending at lsn 2, one at 3, one at 5.
    let changes: Vec<Change> = (1..=4).map(|i| change(i, "todos")).collect();
    let third = changes[2].clone();
    s.handle_outbox(
        Ok(Outbox {
            acked: 0,
            changes,
            through: 5,
            has_more: false,
            groups: vec![(2, 2), (1, 3), (1, 5)],
            oversized: false,
        }),
        clock.now(),
    );
    let RequestBody::Push(batch) = expect_exchange(&mut s) else {
        panic!("a push");
    };
    assert_eq!(batch.groups, vec![2, 1, 1]);
    assert_eq!(batch.group_ranges().unwrap(), vec![0..2, 2..3, 3..4]);
    let verdict = Verdict {
        group: 1,
        code: 403,
        reason: "may not write".into(),
    };
    let ack = protocol::encode(&Response::Ack {
        through: 5,
        applied: 3,
        refused: vec![verdict],
    });
    s.handle_response(Ok(&ack), clock.now());
    match action(&mut s) {
        Action::RecordPushed {
            through, refused, ..
        } => {
            assert_eq!(through, 5, "the cursor moves past the refused group");
            assert_eq!(
                refused,
                vec![Refused {
                    lsn: 3,
                    code: 403,
                    reason: "may not write".into(),
                    changes: vec![third],
                }]
            );
        }
        other => panic!("expected the ack recorded, got {other:?}"),
    }
    s.handle_pushed(Ok(()), clock.now());
    // The pull goes on.
    assert!(matches!(action(&mut s), Action::ReadPullCursor { .. }));
    assert_eq!(s.stats().pushed, 3);
    assert_eq!(s.stats().rejected, 1);
    assert!(events(&mut s).contains(&SyncEvent::Rejected {
        group: 3,
        code: RefusalCode::FORBIDDEN,
        reason: "may not write".into(),
    }));
}

#[test]
fn verdicts_on_groups_not_pushed_are_protocol_violations() {
    for groups in [vec![3u32], vec![1, 1], vec![0, 0]] {
        let clock = Clock::new();
        let mut s = connected(config().with_direction(Direction::Push), &clock);
        action(&mut s);
        s.handle_outbox(
            Ok(Outbox {
                acked: 0,
                changes: vec![change(1, "todos"), change(2, "todos")],
                through: 2,
                has_more: false,
                groups: vec![(1, 1), (1, 2)],
                oversized: false,
            }),
            clock.now(),
        );
        expect_exchange(&mut s);
        let refused = groups
            .iter()
            .map(|&group| Verdict {
                group,
                code: 403,
                reason: String::new(),
            })
            .collect();
        let ack = protocol::encode(&Response::Ack {
            through: 2,
            applied: 0,
            refused,
        });
        s.handle_response(Ok(&ack), clock.now());
        assert!(
            matches!(
                expect_finished(&mut s),
                Err(SyncError::Protocol(ProtocolViolation::BadVerdict { .. }))
            ),
            "{groups:?}"
        );
    }
}

#[test]
fn a_refused_push_still_lets_the_round_pull() {
    let clock = Clock::new();
    let mut s = connected(config(), &clock);
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
    s.handle_response(Err(refused(RefusalCode::FORBIDDEN)), clock.now());
    // The pull runs; then the round fails with the push's refusal.
    assert!(matches!(action(&mut s), Action::ReadPullCursor { .. }));
    s.handle_pull_cursor(Ok(5), clock.now());
    expect_exchange(&mut s);
    let batch = Batch::new(vec![change(6, "todos")], 6);
    s.handle_response(Ok(&changes(batch, false)), clock.now());
    assert!(matches!(action(&mut s), Action::Apply { .. }));
    s.handle_applied(
        Ok(ApplyReport {
            applied: 1,
            ..Default::default()
        }),
        clock.now(),
    );
    let e = expect_finished(&mut s).unwrap_err();
    assert_eq!(e.refusal_code(), Some(RefusalCode::FORBIDDEN));
    assert_eq!(s.stats().pulled, 1);
}

/// A `RESYNC_REQUIRED` refusal makes the session bootstrap again once per
/// round (the store empties the shared collections and writes the
/// unsettled local writes again), then the round starts over; a second
/// one in the same round fails it.
#[test]
fn resync_required_bootstraps_again_once_per_round() {
    let clock = Clock::new();
    let mut s = connected(config(), &clock);
    nothing_to_push(&mut s, &clock);
    assert!(matches!(action(&mut s), Action::ReadPullCursor { .. }));
    s.handle_pull_cursor(Ok(5), clock.now());
    expect_exchange(&mut s);
    s.handle_response(Err(refused(RefusalCode::RESYNC_REQUIRED)), clock.now());
    match action(&mut s) {
        Action::Resync {
            remote,
            collections,
        } => assert_eq!((remote, collections), (REMOTE, vec!["todos".to_string()])),
        other => panic!("expected a resync, got {other:?}"),
    }
    let again = vec![("todos".to_string(), Key::from("mine"))];
    s.handle_resynced(Ok(again.clone()), clock.now());
    assert!(events(&mut s).contains(&SyncEvent::Resynced { reapplied: again }));
    // The round starts over: push, then pull from the reset cursor.
    nothing_to_push(&mut s, &clock);
    assert!(matches!(action(&mut s), Action::ReadPullCursor { .. }));
    s.handle_pull_cursor(Ok(0), clock.now());
    expect_exchange(&mut s);
    // Told again in the same round: it fails.
    s.handle_response(Err(refused(RefusalCode::RESYNC_REQUIRED)), clock.now());
    let e = expect_finished(&mut s).unwrap_err();
    assert_eq!(e.refusal_code(), Some(RefusalCode::RESYNC_REQUIRED));
}
