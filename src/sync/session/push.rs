//! The push stage of a round: the outbox, the push and its ack with the
//! verdicts on its groups, and the ack recorded.

use syncline_transport::RefusalCode;

use super::{Action, Now, Outbox, Phase, Session, Stage};
use crate::model::Change;
use crate::store::Refused;
use crate::sync::error::{ProtocolViolation, SyncError};
use crate::sync::protocol::{Batch, Part, RequestBody, Verdict, change_len};
use crate::sync::status::SyncEvent;

impl Session {
    /// The result of [`Action::ReadOutbox`].
    pub(crate) fn handle_outbox(&mut self, result: Result<Outbox, SyncError>, now: Now) {
        if self.phase != Phase::Outbox {
            return;
        }
        let outbox = match result {
            Ok(outbox) => outbox,
            Err(e) => return self.finish(Err(e), now),
        };
        if outbox.through <= outbox.acked {
            self.stage = self.after_push();
            return self.next(now);
        }
        if outbox.changes.is_empty() {
            // Nothing to send, only entries to step over (say, changes that
            // came from the remote itself).
            return self.record_push(outbox.through, 0, outbox.has_more, Vec::new(), now);
        }
        if outbox.oversized {
            // One group larger than a batch: in parts, staged by the remote
            // until the last.
            let len = u32::try_from(outbox.changes.len()).unwrap_or(u32::MAX);
            self.phase = Phase::PushingParts {
                through: outbox.through,
                has_more: outbox.has_more,
                groups: vec![(len, outbox.through)],
                changes: outbox.changes,
            };
            self.send_part(0);
            return;
        }
        // One group is the whole batch; more are named by their sizes.
        let sizes = if outbox.groups.len() > 1 {
            outbox.groups.iter().map(|(len, _)| *len).collect()
        } else {
            Vec::new()
        };
        let groups = if outbox.groups.is_empty() {
            // A slice always ends on a group; name it by its last lsn.
            vec![(
                u32::try_from(outbox.changes.len()).unwrap_or(u32::MAX),
                outbox.through,
            )]
        } else {
            outbox.groups
        };
        self.phase = Phase::Pushing {
            through: outbox.through,
            has_more: outbox.has_more,
            groups,
            changes: outbox.changes.clone(),
        };
        let batch = Batch::with_groups(outbox.changes, sizes, outbox.through);
        let request = self.request(RequestBody::Push(batch));
        self.actions.push_back(Action::Exchange(request));
    }

    /// The result of [`Action::RecordPushed`].
    pub(crate) fn handle_pushed(&mut self, result: Result<(), SyncError>, now: Now) {
        let Phase::RecordingPush {
            through,
            count,
            has_more,
            ref mut refused,
        } = self.phase
        else {
            return;
        };
        let refused = std::mem::take(refused);
        if let Err(e) = result {
            return self.finish(Err(e), now);
        }
        self.report.pushed += count;
        if count > 0 {
            self.stats.pushed += count as u64;
            self.events.push_back(SyncEvent::Pushed { count, through });
        }
        for r in refused {
            self.stats.rejected += 1;
            self.events.push_back(SyncEvent::Rejected {
                group: r.lsn,
                code: RefusalCode::new(r.code),
                reason: r.reason,
            });
        }
        if !has_more {
            self.stage = self.after_push();
        }
        self.phase = Phase::Idle;
        self.next(now);
    }

    /// The stage after pushing: pulling, if the round pulls.
    pub(super) fn after_push(&self) -> Stage {
        if self.pulls { Stage::Pull } else { Stage::Done }
    }

    /// Checks a push's ack and its verdicts, then asks for it to be
    /// recorded with the refused groups.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn acked(
        &mut self,
        through: u64,
        acked: u64,
        has_more: bool,
        groups: &[(u32, u64)],
        changes: &[Change],
        verdicts: Vec<Verdict>,
        now: Now,
    ) -> Result<(), SyncError> {
        if acked != through {
            return Err(ProtocolViolation::AckMismatch {
                expected: through,
                got: acked,
            }
            .into());
        }
        let mut refused = Vec::with_capacity(verdicts.len());
        let mut rejected_changes = 0usize;
        let mut last = None;
        for v in verdicts {
            // Verdicts name pushed groups, each once, in order.
            let index = usize::try_from(v.group).unwrap_or(usize::MAX);
            let Some(&(len, lsn)) = groups.get(index).filter(|_| last < Some(index)) else {
                return Err(ProtocolViolation::BadVerdict { group: v.group }.into());
            };
            last = Some(index);
            rejected_changes += len as usize;
            let start: usize = groups[..index].iter().map(|(l, _)| *l as usize).sum();
            let group = changes
                .get(start..start.saturating_add(len as usize))
                .unwrap_or_default();
            refused.push(Refused {
                lsn,
                code: v.code,
                reason: v.reason,
                changes: group.to_vec(),
            });
        }
        let total: usize = groups.iter().map(|(len, _)| *len as usize).sum();
        let accepted = total.saturating_sub(rejected_changes);
        self.record_push(through, accepted, has_more, refused, now);
        Ok(())
    }

    /// Asks for an ack to be recorded.
    pub(super) fn record_push(
        &mut self,
        through: u64,
        count: usize,
        has_more: bool,
        refused: Vec<Refused>,
        now: Now,
    ) {
        let Some(link) = &self.link else {
            return self.finish(Err(SyncError::Stopped), now);
        };
        let collections = link.collections.clone();
        let remote = link.remote;
        self.phase = Phase::RecordingPush {
            through,
            count,
            has_more,
            refused: refused.clone(),
        };
        self.actions.push_back(Action::RecordPushed {
            remote,
            through,
            now_ms: now.millis,
            refused,
            collections,
            scopes: self.config.scopes.clone(),
        });
    }

    /// Sends the part of the group being pushed in parts that starts at
    /// change `offset`: about `max_batch_bytes` of changes. False when the
    /// group has no change there.
    fn send_part(&mut self, offset: u32) -> bool {
        let Phase::PushingParts {
            through, changes, ..
        } = &self.phase
        else {
            return false;
        };
        let start = offset as usize;
        // Past the end only when the remote staged every change but never
        // got the last part: an empty last part completes the group.
        let Some(rest) = changes.get(start..) else {
            return false;
        };
        let part = first_part(rest, self.config.max_batch_bytes);
        let last = start + part.len() == changes.len();
        let batch = Batch::new(part.to_vec(), *through);
        let part = Part {
            transfer: *through,
            offset,
            last,
        };
        let request = self.request(RequestBody::PushPart { part, batch });
        self.actions.push_back(Action::Exchange(request));
        true
    }

    /// The remote staged a part and asks for the one starting at `next`.
    pub(super) fn staged(
        &mut self,
        through: u64,
        has_more: bool,
        groups: Vec<(u32, u64)>,
        changes: Vec<Change>,
        transfer: u64,
        next: u32,
    ) -> Result<(), SyncError> {
        self.phase = Phase::PushingParts {
            through,
            has_more,
            groups,
            changes,
        };
        if transfer != through || !self.send_part(next) {
            return Err(ProtocolViolation::BadPart {
                transfer,
                offset: next,
            }
            .into());
        }
        Ok(())
    }
}

/// The first part of `changes`: about `max_bytes` of them, at least one.
fn first_part(changes: &[Change], max_bytes: usize) -> &[Change] {
    let mut bytes = 0usize;
    for (i, change) in changes.iter().enumerate() {
        bytes = bytes.saturating_add(change_len(change));
        if i > 0 && bytes > max_bytes {
            return &changes[..i];
        }
    }
    changes
}
