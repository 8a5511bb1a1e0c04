//! The [`drive_session`] target: the client's sync state machine fed
//! arbitrary answers, store results, notifications and timings.

use std::time::{Duration, Instant};

use syncline_transport::{RefusalCode, ServiceError, Side, TransportError};

use super::T0;
use super::input::Input;
use crate::clock::{ClockDriftError, Stamp};
use crate::codec;
use crate::error::{ApplyError, StorageError};
use crate::model::{Change, ChangeId, Key, MergePolicy, Op, ReplicaId, Scope};
use crate::sync::config::{Direction, SyncConfig};
use crate::sync::protocol::{self, Batch, CollectionSpec, Notify, RequestBody, Response};
use crate::sync::session::{Action, Commit, Local, Now, Outbox, Session};
use crate::sync::status::Status;
use crate::value::Value;
use crate::{ApplyReport, SyncError};

/// The most inputs one run feeds the session.
const MAX_INPUTS: usize = 256;

/// Drives the client's sync state machine (`src/sync/session/`) with inputs read from `data`
/// and checks, after every input:
///
/// - it never panics, whatever the answers;
/// - an action that needs an answer is asked for only during a round;
/// - a round ends with exactly one `Finished`, after which the session is
///   idle, with status `Idle` after success and `Offline` or `Error` after
///   a failure (`Offline` exactly when the fault is the network's);
/// - between rounds, an automatic session that failed has a retry timer.
pub fn drive_session(data: &[u8]) {
    let mut input = Input::new(data);
    let local = ReplicaId::from_bytes([1; 16]);
    let remote = ReplicaId::from_bytes([2; 16]);
    let flags = input.byte();
    let config = SyncConfig {
        direction: match flags % 3 {
            0 => Direction::Both,
            1 => Direction::Push,
            _ => Direction::Pull,
        },
        live: flags & 4 == 0,
        on_demand: flags & 8 != 0,
        token: (flags & 16 != 0).then(|| "t".to_string()),
        batch_size: 1 + usize::from(input.byte() % 4),
        subscription_timeout: Some(Duration::from_millis(500)),
        poll_interval: (flags & 32 == 0).then_some(Duration::from_millis(2000)),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(1000),
        // Scopes: pulled one by one, each from its own cursor; a refused
        // one is dropped alone.
        scopes: if flags & 64 != 0 {
            vec![Scope::prefix("a", "k"), Scope::collection("b")]
        } else {
            Vec::new()
        },
        ..SyncConfig::default()
    };
    let on_demand = config.on_demand;
    let base = Instant::now();
    let mut t = 0u64;
    let now = |t: u64| Now {
        at: base + Duration::from_millis(t),
        millis: T0 + t,
    };
    let mut session = Session::new(local, config, u64::from(flags), now(0).at);
    let mut in_round = false;
    // An action taken early, to see whether an idle input started a round.
    let mut next: Option<Action> = None;
    let mut steps = 0;
    while !input.is_empty() && steps < MAX_INPUTS {
        steps += 1;
        t += u64::from(input.byte()) * 7;
        let at = now(t);
        match next.take().or_else(|| session.poll_action()) {
            Some(action) => {
                let needs_answer = !matches!(action, Action::Disconnect | Action::Finished(_));
                assert!(
                    !needs_answer || session.is_busy(),
                    "{action:?} asked for outside a round"
                );
                answer(
                    &mut session,
                    &mut input,
                    action,
                    local,
                    remote,
                    at,
                    &mut in_round,
                );
            }
            None => {
                assert!(!session.is_busy(), "a round waits with nothing to do");
                if !on_demand && session.stats().last_error.is_some() {
                    assert!(
                        session.poll_timeout().is_some(),
                        "a failed automatic session has no retry timer"
                    );
                }
                idle(&mut session, &mut input, remote, at);
                next = session.poll_action();
                // A round started if the session is busy, or if it ended at
                // once (a round with nothing to do on a live connection).
                in_round = session.is_busy() || matches!(next, Some(Action::Finished(_)));
            }
        }
        while session.poll_event().is_some() {}
    }
}

/// Feeds the session the answer to `action`, chosen by the input.
fn answer(
    session: &mut Session,
    input: &mut Input<'_>,
    action: Action,
    local: ReplicaId,
    remote: ReplicaId,
    now: Now,
    in_round: &mut bool,
) {
    let choice = input.byte();
    match action {
        Action::Connect { .. } => {
            let result = match choice % 4 {
                0 => Err(TransportError::network("unreachable")),
                _ => Ok(Local {
                    clock: Stamp::new(T0, 0),
                    collections: specs(choice),
                    token: None,
                }),
            };
            session.handle_connected(result, now);
        }
        Action::Exchange(request) => {
            let frame = match transport_error(choice) {
                Some(e) => Err(e),
                None => Ok(response(input, &request.body, local, remote)),
            };
            match &frame {
                Ok(bytes) => session.handle_response(Ok(bytes), now),
                Err(e) => session.handle_response(Err(e.clone()), now),
            }
        }
        Action::Subscribe(_) => {
            let result = match transport_error(choice) {
                Some(e) => Err(e),
                None => Ok(()),
            };
            session.handle_subscribed(result, now);
        }
        Action::ReadPullCursor { .. } => {
            let result = match choice % 8 {
                0 => Err(storage()),
                n => Ok(u64::from(n) * u64::from(input.byte())),
            };
            session.handle_pull_cursor(result, now);
        }
        Action::ReadOutbox { .. } => {
            let result = match choice % 8 {
                0 => Err(storage()),
                _ => {
                    let acked = u64::from(input.byte());
                    let through = acked.saturating_add(u64::from(input.byte() % 4));
                    let changes: Vec<Change> =
                        (0..input.byte() % 3).map(|i| change(i.into())).collect();
                    // Groups that add up, or (sometimes) that do not.
                    let groups = if input.byte().is_multiple_of(6) {
                        vec![(1, through), (5, through + 1)]
                    } else {
                        changes
                            .iter()
                            .enumerate()
                            .map(|(i, _)| (1, acked + i as u64 + 1))
                            .collect()
                    };
                    Ok(Outbox {
                        acked,
                        changes,
                        through,
                        has_more: input.byte().is_multiple_of(2),
                        groups,
                        oversized: input.byte().is_multiple_of(5),
                    })
                }
            };
            session.handle_outbox(result, now);
        }
        Action::RecordPushed { .. } => {
            let result = if choice.is_multiple_of(8) {
                Err(storage())
            } else {
                Ok(())
            };
            session.handle_pushed(result, now);
        }
        Action::Resync { .. } => {
            let result = match choice % 4 {
                0 => Err(storage()),
                1 => Ok(vec![("todos".to_string(), Key::from("k"))]),
                _ => Ok(Vec::new()),
            };
            session.handle_resynced(result, now);
        }
        Action::AdoptRelayed { .. } => {
            let result = match choice % 4 {
                0 => Err(storage()),
                n => Ok(usize::from(n - 1)),
            };
            session.handle_adopted(result, now);
        }
        Action::PruneScopes { .. } => {
            let result = match choice % 4 {
                0 => Err(storage()),
                1 => Ok(vec![(Scope::collection("c"), 2)]),
                _ => Ok(Vec::new()),
            };
            session.handle_pruned(result, now);
        }
        Action::DropScope { .. } => {
            let result = match choice % 4 {
                0 => Err(storage()),
                n => Ok(u64::from(n - 1)),
            };
            session.handle_scope_dropped(result, now);
        }
        Action::StagePart {
            offset, changes, ..
        } => {
            let result = match choice % 6 {
                0 => Err(storage()),
                1 => Ok(u32::from(input.byte() % 4)),
                _ => Ok(offset.saturating_add(changes.len() as u32)),
            };
            session.handle_staged(result, now);
        }
        Action::Apply { changes, .. } | Action::ApplyStaged { changes, .. } => {
            let result = match choice % 6 {
                0 => Err(ApplyError::Storage(StorageError::TaskFailed)),
                1 => Err(ApplyError::ClockDrift(ClockDriftError {
                    stamp: Stamp::new(T0 + 3_600_000, 0),
                    ahead_ms: 3_600_000,
                    max_ms: 60_000,
                })),
                2 => Err(ApplyError::BatchTooLarge { len: 2, max: 1 }),
                _ => Ok(ApplyReport {
                    applied: changes.len(),
                    superseded: 0,
                    duplicates: 0,
                    carried: 0,
                    conflicts: usize::from(input.byte() % 2),
                    last_lsn: 0,
                }),
            };
            session.handle_applied(result, now);
        }
        Action::Disconnect => {}
        Action::Finished(result) => {
            assert!(*in_round, "a round finished that never started");
            *in_round = false;
            assert!(
                !session.is_busy(),
                "the session goes on after finishing a round"
            );
            match &result {
                Ok(_) => assert_eq!(session.status(), Status::Idle),
                Err(e) => assert_eq!(
                    session.status() == Status::Offline,
                    e.fault() == crate::Fault::Network,
                    "status {:?} after {e}",
                    session.status()
                ),
            }
        }
    }
}

/// An input between rounds, chosen by the input.
fn idle(session: &mut Session, input: &mut Input<'_>, remote: ReplicaId, now: Now) {
    match input.byte() % 7 {
        0 => {
            let b = input.byte();
            session.handle_command(b & 1 != 0, b & 2 != 0, now);
        }
        1 => {
            let source = match input.byte() % 3 {
                0 => None,
                1 => Some(remote),
                _ => Some(ReplicaId::from_bytes([3; 16])),
            };
            let lsn = u64::from(input.byte());
            let synced = !input.byte().is_multiple_of(4);
            session.handle_local_commit(
                Commit::Change {
                    lsn,
                    source,
                    synced,
                    carried: input.byte().is_multiple_of(5),
                },
                now,
            );
        }
        2 => session.handle_local_commit(Commit::Lagged, now),
        5 if input.byte().is_multiple_of(2) => session.handle_reconnect(now),
        3 => {
            let frame = match input.byte() % 5 {
                0 => None,
                1 => Some(Err(TransportError::network("lost"))),
                2 => Some(Ok(bytes(input))),
                _ => Some(Ok(protocol::encode(&Notify {
                    last_lsn: u64::from(input.byte()),
                }))),
            };
            session.handle_notification(
                frame.as_ref().map(|r| match r {
                    Ok(b) => Ok(&b[..]),
                    Err(e) => Err(e.clone()),
                }),
                now,
            );
        }
        _ => session.handle_timeout(now),
    }
}

/// A response frame to `body`: garbage, an old server's refusal, or a
/// response of any kind with fields right or wrong.
fn response(
    input: &mut Input<'_>,
    body: &RequestBody,
    local: ReplicaId,
    remote: ReplicaId,
) -> Vec<u8> {
    let choice = input.byte();
    let response = match choice % 10 {
        8 => {
            // A part of a split group: of the group asked for, or another.
            let transfer = match body {
                RequestBody::PullPart { transfer, .. } if !input.byte().is_multiple_of(3) => {
                    *transfer
                }
                RequestBody::PullScope {
                    part: Some((transfer, _)),
                    ..
                } if !input.byte().is_multiple_of(3) => *transfer,
                _ => u64::from(input.byte()),
            };
            let changes: Vec<Change> = (0..input.byte() % 3).map(|i| change(i.into())).collect();
            Response::Part {
                part: protocol::Part {
                    transfer,
                    offset: u32::from(input.byte() % 4),
                    last: input.byte().is_multiple_of(2),
                },
                batch: Batch::new(changes, transfer),
                has_more: input.byte().is_multiple_of(2),
            }
        }
        9 => {
            let transfer = match body {
                RequestBody::PushPart { part, .. } if !input.byte().is_multiple_of(3) => {
                    part.transfer
                }
                _ => u64::from(input.byte()),
            };
            Response::Staged {
                transfer,
                next: u32::from(input.byte() % 5),
            }
        }
        0 => return bytes(input),
        1 => return codec::encode(&(3u32, u32::from(input.byte() % 8), "old".to_string())),
        2 => Response::Welcome {
            replica: if input.byte().is_multiple_of(4) {
                local
            } else {
                remote
            },
            clock: Stamp::new(T0, 0),
            collections: specs(input.byte()),
            last_lsn: u64::from(input.byte()),
        },
        3 | 4 => {
            let after = match body {
                RequestBody::Pull { after, .. } | RequestBody::PullScope { after, .. } => *after,
                _ => 0,
            };
            let through = match input.byte() % 4 {
                0 => after.saturating_sub(1),
                1 => after,
                _ => after + u64::from(input.byte()),
            };
            let mut changes: Vec<Change> =
                (0..input.byte() % 3).map(|i| change(i.into())).collect();
            if input.byte().is_multiple_of(5)
                && let Some(c) = changes.first_mut()
            {
                c.collection = "elsewhere".into();
            }
            let mut batch = Batch::new(changes, through);
            if input.byte().is_multiple_of(7) {
                batch.digest[0] ^= 1;
            }
            Response::Changes {
                batch,
                has_more: input.byte().is_multiple_of(2),
            }
        }
        _ => {
            let through = match body {
                RequestBody::Push(batch) if !input.byte().is_multiple_of(5) => batch.through,
                _ => u64::from(input.byte()),
            };
            // Verdicts on groups pushed or not, in order or not.
            let refused = (0..input.byte() % 3)
                .map(|_| protocol::Verdict {
                    group: u32::from(input.byte() % 4),
                    code: 403,
                    reason: "no".into(),
                })
                .collect();
            Response::Ack {
                through,
                applied: 1,
                refused,
            }
        }
    };
    protocol::encode(&response)
}

/// A transport failure, or `None` for an answer, chosen by `choice`.
fn transport_error(choice: u8) -> Option<TransportError> {
    let refused = |code| Some(ServiceError::new(code, "no").into());
    match choice % 16 {
        0 => Some(TransportError::network("reset")),
        1 => Some(TransportError::Closed { by: Side::Peer }),
        2 => refused(RefusalCode::UNAUTHORIZED),
        3 => refused(RefusalCode::FORBIDDEN),
        4 => refused(RefusalCode::UNPROCESSABLE),
        5 => refused(RefusalCode::UPGRADE_REQUIRED),
        6 => refused(RefusalCode::INTERNAL),
        7 => refused(RefusalCode::CONFLICT),
        _ => None,
    }
}

/// Collections for a hello or a welcome: agreeing or not.
fn specs(choice: u8) -> Vec<CollectionSpec> {
    let policy = if choice & 64 == 0 {
        MergePolicy::Lww
    } else {
        MergePolicy::FieldLww
    };
    vec![CollectionSpec {
        name: "a".into(),
        policy,
    }]
}

fn change(seq: u64) -> Change {
    Change {
        id: ChangeId {
            origin: ReplicaId::from_bytes([2; 16]),
            seq: seq + 1,
        },
        collection: "a".into(),
        key: Key::from("k"),
        stamp: Stamp::new(T0, seq as u16),
        base: Stamp::ZERO,
        op: Op::Put(Value::Int(seq as i64)),
    }
}

fn bytes(input: &mut Input<'_>) -> Vec<u8> {
    let len = input.byte() % 32;
    (0..len).map(|_| input.byte()).collect()
}

fn storage() -> SyncError {
    SyncError::Storage(std::sync::Arc::new(StorageError::TaskFailed))
}
