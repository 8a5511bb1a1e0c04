//! Groups larger than a batch, in parts: pushed part by part as the remote
//! stages them, pulled part by part into local staging, resumed anywhere.

use super::*;
use crate::sync::protocol::Part;

/// Changes of about 100 bytes each.
fn big_group(n: u64) -> Vec<Change> {
    (1..=n)
        .map(|i| Change {
            op: Op::Put(Value::Bytes(vec![i as u8; 100])),
            ..change(i, "todos")
        })
        .collect()
}

/// An outbox of one group of ten changes, larger than a batch.
fn oversized_outbox() -> Outbox {
    Outbox {
        acked: 0,
        changes: big_group(10),
        through: 10,
        has_more: false,
        groups: vec![(10, 10)],
        oversized: true,
    }
}

/// A push-only session with batches of 300 bytes, connected.
fn small_batches(clock: &Clock) -> Session {
    let config = SyncConfig {
        max_batch_bytes: 300,
        ..config().with_direction(Direction::Push)
    };
    connected(config, clock)
}

#[test]
fn a_group_larger_than_a_batch_is_pushed_in_parts() {
    let clock = Clock::new();
    let mut s = small_batches(&clock);
    action(&mut s);
    s.handle_outbox(Ok(oversized_outbox()), clock.now());
    let part_of = |body: RequestBody| match body {
        RequestBody::PushPart { part, batch } => {
            assert!(batch.verify());
            assert_eq!(batch.through, 10);
            (part, batch.changes.len())
        }
        other => panic!("expected a part, got {other:?}"),
    };
    let (part, len) = part_of(expect_exchange(&mut s));
    assert_eq!((part.transfer, part.offset, part.last), (10, 0, false));
    assert!((1..10).contains(&len), "a part, not the group: {len}");
    // The remote asks for the part after the staged ones.
    let staged = |next| protocol::encode(&Response::Staged { transfer: 10, next });
    s.handle_response(Ok(&staged(len as u32)), clock.now());
    let (part, _) = part_of(expect_exchange(&mut s));
    assert_eq!(part.offset, len as u32);
    // After a reconnect it may name any change: the part starts there.
    s.handle_response(Ok(&staged(8)), clock.now());
    let (part, rest) = part_of(expect_exchange(&mut s));
    assert_eq!((part.offset, part.last, rest), (8, true, 2));
    // Everything staged but the last part lost: an empty last part.
    s.handle_response(Ok(&staged(10)), clock.now());
    let (part, none) = part_of(expect_exchange(&mut s));
    assert_eq!((part.offset, part.last, none), (10, true, 0));
    let ack = protocol::encode(&Response::Ack {
        through: 10,
        applied: 10,
        refused: vec![],
    });
    s.handle_response(Ok(&ack), clock.now());
    assert!(matches!(
        action(&mut s),
        Action::RecordPushed { through: 10, .. }
    ));
    s.handle_pushed(Ok(()), clock.now());
    assert_eq!(expect_finished(&mut s).unwrap().pushed, 10);
}

#[test]
fn a_staged_answer_for_another_group_is_a_violation() {
    let clock = Clock::new();
    for (transfer, next) in [(9, 1), (10, 11)] {
        let mut t = small_batches(&clock);
        action(&mut t);
        t.handle_outbox(Ok(oversized_outbox()), clock.now());
        expect_exchange(&mut t);
        let answer = protocol::encode(&Response::Staged { transfer, next });
        t.handle_response(Ok(&answer), clock.now());
        assert!(matches!(
            expect_finished(&mut t),
            Err(SyncError::Protocol(ProtocolViolation::BadPart { .. }))
        ));
    }
}

#[test]
fn a_group_pulled_in_parts_is_staged_then_applied_whole() {
    let clock = Clock::new();
    let mut s = connected(config().with_direction(Direction::Pull), &clock);
    assert!(matches!(action(&mut s), Action::ReadPullCursor { .. }));
    s.handle_pull_cursor(Ok(5), clock.now());
    expect_exchange(&mut s);
    let part = |offset, last, changes: Vec<Change>| {
        protocol::encode(&Response::Part {
            part: Part {
                transfer: 20,
                offset,
                last,
            },
            batch: Batch::new(changes, 20),
            has_more: false,
        })
    };
    let group = big_group(6);
    s.handle_response(Ok(&part(0, false, group[..3].to_vec())), clock.now());
    match action(&mut s) {
        Action::StagePart {
            transfer, offset, ..
        } => assert_eq!((transfer, offset), (20, 0)),
        other => panic!("expected a part staged, got {other:?}"),
    }
    s.handle_staged(Ok(3), clock.now());
    match expect_exchange(&mut s) {
        RequestBody::PullPart {
            after,
            transfer,
            next,
            ..
        } => assert_eq!((after, transfer, next), (5, 20, 3)),
        other => panic!("expected the next part asked for, got {other:?}"),
    }
    // A part that does not start where the staged ones end is not taken.
    s.handle_response(Ok(&part(4, true, group[4..].to_vec())), clock.now());
    match expect_exchange(&mut s) {
        RequestBody::PullPart { next, .. } => assert_eq!(next, 3),
        other => panic!("expected part 3 asked for again, got {other:?}"),
    }
    s.handle_response(Ok(&part(3, true, group[3..].to_vec())), clock.now());
    match action(&mut s) {
        Action::ApplyStaged {
            transfer,
            changes,
            through,
            ..
        } => assert_eq!((transfer, changes.len(), through), (20, 3, 20)),
        other => panic!("expected the group applied, got {other:?}"),
    }
    s.handle_applied(
        Ok(ApplyReport {
            applied: 6,
            ..Default::default()
        }),
        clock.now(),
    );
    assert_eq!(expect_finished(&mut s).unwrap().pulled, 6);
}

#[test]
fn a_pull_resumes_a_group_staged_before_a_restart() {
    let clock = Clock::new();
    let mut s = connected(config().with_direction(Direction::Pull), &clock);
    action(&mut s);
    s.handle_pull_cursor(
        Ok(PullCursor {
            after: 5,
            staged: Some((20, 4)),
        }),
        clock.now(),
    );
    match expect_exchange(&mut s) {
        RequestBody::PullPart {
            after,
            transfer,
            next,
            ..
        } => assert_eq!((after, transfer, next), (5, 20, 4)),
        other => panic!("expected a resumed part, got {other:?}"),
    }
}
