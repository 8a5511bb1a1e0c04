//! The pull stage of a round: the pull's answer checked, applied with its
//! cursor.

use super::{Action, Now, Phase, Session, Stage};
use crate::error::ApplyError;
use crate::store::ApplyReport;
use crate::sync::error::{ProtocolViolation, SyncError};
use crate::sync::protocol::Batch;
use crate::sync::status::SyncEvent;

impl Session {
    /// The result of [`Action::Apply`].
    pub(crate) fn handle_applied(&mut self, result: Result<ApplyReport, ApplyError>, now: Now) {
        let Phase::Applying {
            after,
            through,
            has_more,
        } = self.phase
        else {
            return;
        };
        let report = match result {
            Ok(report) => report,
            Err(e) => return self.finish(Err(e.into()), now),
        };
        self.report.pulled += report.applied;
        if report.conflicts > 0 {
            self.stats.conflicts += report.conflicts as u64;
            self.events.push_back(SyncEvent::Conflict {
                count: report.conflicts,
            });
        }
        if report.applied > 0 {
            self.stats.pulled += report.applied as u64;
            self.events.push_back(SyncEvent::Pulled {
                count: report.applied,
                through,
            });
        }
        if !has_more || through == after {
            self.stage = Stage::Done;
        }
        self.phase = Phase::Idle;
        self.next(now);
    }

    /// Checks a pull's answer and asks for it to be applied.
    pub(super) fn changes(
        &mut self,
        after: u64,
        batch: Batch,
        has_more: bool,
    ) -> Result<(), SyncError> {
        if !batch.verify() {
            return Err(ProtocolViolation::DigestMismatch.into());
        }
        if batch.through < after {
            return Err(ProtocolViolation::CursorBackwards {
                from: after,
                to: batch.through,
            }
            .into());
        }
        let link = self.link.as_ref().ok_or(SyncError::Stopped)?;
        if let Some(c) = batch
            .changes
            .iter()
            .find(|c| !link.collections.contains(&c.collection))
        {
            return Err(ProtocolViolation::UnrequestedCollection {
                collection: c.collection.clone(),
            }
            .into());
        }
        self.phase = Phase::Applying {
            after,
            through: batch.through,
            has_more,
        };
        self.actions.push_back(Action::Apply {
            remote: link.remote,
            changes: batch.changes,
            through: batch.through,
        });
        Ok(())
    }
}
