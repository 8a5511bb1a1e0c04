//! The pull stage of a round: the pull's answer checked, applied with its
//! cursor.

use super::{Action, Now, Phase, Prefetch, Session, Stage};
use crate::error::ApplyError;
use crate::store::ApplyReport;
use crate::sync::error::{ProtocolViolation, SyncError};
use crate::sync::protocol::{Batch, Part};
use crate::sync::status::SyncEvent;
use syncline_transport::RefusalCode;

impl Session {
    /// The result of [`Action::Apply`].
    pub(crate) fn handle_applied(&mut self, result: Result<ApplyReport, ApplyError>, now: Now) {
        let Phase::Applying {
            after,
            through,
            has_more,
            ..
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
        if report.carried > 0 {
            self.repush = self.config.direction.pushes();
        }
        if report.applied > 0 {
            self.stats.pulled += report.applied as u64;
            self.events.push_back(SyncEvent::Pulled {
                count: report.applied,
                through,
            });
        }
        let scope_done = (!has_more || through == after) && self.next_target();
        if scope_done {
            // The next scope's pull, from its own cursor.
            self.phase = Phase::Idle;
            return self.next(now);
        }
        if !has_more || through == after {
            self.stage = if std::mem::take(&mut self.repush) {
                // Once more, and then the round ends.
                self.pulls = false;
                Stage::Push
            } else {
                Stage::Done
            };
        }
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            // The next pull is on its way: wait for its answer (or take the
            // one that came first) with the cursor this apply stored.
            Phase::Applying {
                prefetch: Some(prefetch),
                ..
            } if self.stage == Stage::Pull => {
                self.phase = Phase::Pulling { after: through };
                if let Prefetch::Answered(answer) = prefetch {
                    self.handle_response(answer.as_deref().map_err(Clone::clone), now);
                }
            }
            _ => self.next(now),
        }
    }

    /// Checks a pull's answer and asks for it to be applied.
    pub(super) fn changes(
        &mut self,
        after: u64,
        batch: Batch,
        has_more: bool,
        now: Now,
    ) -> Result<(), SyncError> {
        self.check_pulled(after, &batch)?;
        let remote = self.link.as_ref().ok_or(SyncError::Stopped)?.remote;
        self.stats.remote_lsn = self.stats.remote_lsn.max(batch.through);
        let last = !has_more || batch.through == after;
        let durable = self.durable_pull(last, now);
        let through = batch.through;
        self.actions.push_back(Action::Apply {
            remote,
            changes: batch.changes,
            through,
            durable,
            scope: self.target(),
        });
        // More follows: ask for it now, so that the remote reads the next
        // batch while this one is applied (the driver runs both at once).
        // Its cursor is this batch's end, which the apply stores.
        let prefetch = (!last).then(|| {
            let request = self.pull_request(through, None);
            self.actions.push_back(Action::Exchange(request));
            Prefetch::Asked
        });
        self.phase = Phase::Applying {
            after,
            through,
            has_more,
            prefetch,
        };
        Ok(())
    }

    /// Whether a pulled batch commits durably: the `last` of the pull (the
    /// one [`Session::handle_applied`] ends it with), or the first once
    /// `durable_interval` passed since the last durable one or the round's
    /// start. The others are deferred: a crash undoes them with their
    /// cursor, and the next pull fetches them again.
    fn durable_pull(&mut self, last: bool, now: Now) -> bool {
        let due = now.at.saturating_duration_since(self.durable_at) >= self.config.durable_interval;
        if last || due {
            self.durable_at = now.at;
        }
        last || due
    }

    /// Checks a part of a group pulled in parts: stages it, asks for the
    /// one the store needs next, or, with the last, asks for the whole
    /// group to be applied.
    pub(super) fn part(
        &mut self,
        after: u64,
        part: Part,
        batch: Batch,
        has_more: bool,
        now: Now,
    ) -> Result<(), SyncError> {
        self.check_pulled(after, &batch)?;
        if batch.through != part.transfer {
            return Err(ProtocolViolation::BadPart {
                transfer: part.transfer,
                offset: part.offset,
            }
            .into());
        }
        let link = self.link.as_ref().ok_or(SyncError::Stopped)?;
        let remote = link.remote;
        let expected = match self.pull_staged {
            Some((t, n)) if t == part.transfer => n,
            _ => 0,
        };
        if part.offset != expected {
            // Not the part the store can take next: ask for that one.
            let request = self.pull_request(after, Some((part.transfer, expected)));
            self.phase = Phase::Pulling { after };
            self.actions.push_back(Action::Exchange(request));
            return Ok(());
        }
        if part.last {
            self.pull_staged = None;
            let durable = self.durable_pull(!has_more || batch.through == after, now);
            self.phase = Phase::Applying {
                after,
                through: batch.through,
                has_more,
                prefetch: None,
            };
            self.actions.push_back(Action::ApplyStaged {
                remote,
                transfer: part.transfer,
                changes: batch.changes,
                through: batch.through,
                durable,
                scope: self.target(),
            });
        } else {
            self.phase = Phase::StagingPart {
                after,
                transfer: part.transfer,
            };
            self.actions.push_back(Action::StagePart {
                remote,
                transfer: part.transfer,
                offset: part.offset,
                changes: batch.changes,
            });
        }
        Ok(())
    }

    /// The result of [`Action::StagePart`]: how many parts are staged.
    pub(crate) fn handle_staged(&mut self, result: Result<u32, SyncError>, now: Now) {
        let Phase::StagingPart { after, transfer } = self.phase else {
            return;
        };
        let next = match result {
            Ok(next) => next,
            Err(e) => return self.finish(Err(e), now),
        };
        self.pull_staged = Some((transfer, next));
        let request = self.pull_request(after, Some((transfer, next)));
        self.phase = Phase::Pulling { after };
        self.actions.push_back(Action::Exchange(request));
    }

    /// The checks every pulled batch passes: digest, cursor, collections.
    fn check_pulled(&self, after: u64, batch: &Batch) -> Result<(), SyncError> {
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
        // Nothing outside the scope asked for is taken.
        if let Some(scope) = self.target()
            && let Some(c) = batch
                .changes
                .iter()
                .find(|c| !scope.contains(&c.collection, &c.key))
        {
            return Err(ProtocolViolation::OutsideScope {
                collection: c.collection.clone(),
                key: c.key.clone(),
            }
            .into());
        }
        Ok(())
    }

    /// Moves the pull stage to the next scope, if the engine syncs scopes
    /// and one is left: true when it did.
    fn next_target(&mut self) -> bool {
        if self.config.scopes.is_empty() {
            return false;
        }
        let count = self.link.as_ref().map_or(0, |l| l.scopes.len());
        if self.target + 1 < count {
            self.target += 1;
            self.pull_staged = None;
            true
        } else {
            false
        }
    }

    /// The remote refused the current scope: it lacks the collection
    /// (`CONFLICT`) or the grant does not cover the scope (`FORBIDDEN`).
    /// Reported; a scope no longer granted has its records dropped here
    /// (when it was pulled before); then the next scope.
    pub(super) fn scope_refused(&mut self, code: RefusalCode, reason: String, now: Now) {
        let (Some(scope), Some(link)) = (self.target(), self.link.as_ref()) else {
            return;
        };
        tracing::warn!(%scope, %code, reason, "the remote refused a scope");
        self.events.push_back(SyncEvent::ScopeRefused {
            scope: scope.clone(),
            code,
            reason,
        });
        if code == RefusalCode::FORBIDDEN {
            let keep = self
                .config
                .scopes
                .iter()
                .filter(|s| **s != scope)
                .cloned()
                .collect();
            self.phase = Phase::DroppingScope;
            self.actions.push_back(Action::DropScope {
                remote: link.remote,
                scope,
                keep,
            });
        } else {
            self.phase = Phase::Idle;
            self.after_scope(now);
        }
    }

    /// The result of [`Action::DropScope`]: how many records went.
    pub(crate) fn handle_scope_dropped(&mut self, result: Result<u64, SyncError>, now: Now) {
        if self.phase != Phase::DroppingScope {
            return;
        }
        self.phase = Phase::Idle;
        match result {
            Ok(dropped) => {
                if let Some(scope) = self.target()
                    && dropped > 0
                {
                    self.events
                        .push_back(SyncEvent::ScopeDropped { scope, dropped });
                }
                self.after_scope(now);
            }
            Err(e) => self.finish(Err(e), now),
        }
    }

    /// Goes on after a scope refused: the next scope, or the round's end.
    fn after_scope(&mut self, now: Now) {
        if !self.next_target() {
            self.target = usize::MAX;
        }
        self.next(now);
    }
}
