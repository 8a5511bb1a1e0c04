//! The push stage of a round: the outbox, the push and its ack with the
//! verdicts on its groups, and the ack recorded.

use syncline_transport::RefusalCode;

use super::{Action, Now, Outbox, Phase, Session, Stage};
use crate::store::Refused;
use crate::sync::error::{ProtocolViolation, SyncError};
use crate::sync::protocol::{Batch, RequestBody, Verdict};
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
    pub(super) fn acked(
        &mut self,
        through: u64,
        acked: u64,
        has_more: bool,
        groups: &[(u32, u64)],
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
            refused.push(Refused {
                lsn,
                code: v.code,
                reason: v.reason,
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
        });
    }
}
