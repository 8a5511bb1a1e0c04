//! How a round ends: success, or a failure with its backoff, its status
//! and its events; the two ways a failing round goes on instead (a fresh
//! token, a pull despite a refused push); giving up.

use std::time::Duration;

use rand::Rng;
use syncline_transport::{Fault, RefusalCode};

use super::{Action, Now, Phase, Session, Stage};
use crate::sync::error::{ClockDrift, SyncError};
use crate::sync::status::{Status, SyncEvent, SyncReport};

impl Session {
    /// Ends the round.
    pub(super) fn finish(&mut self, result: Result<SyncReport, SyncError>, now: Now) {
        if matches!(
            self.phase,
            Phase::Applying {
                prefetch: Some(_),
                ..
            }
        ) {
            // The next pull asked for ahead goes with the round, asked or
            // not yet (its answer, if any, is dropped with the phase).
            self.actions.retain(|a| !matches!(a, Action::Exchange(_)));
        }
        if let Err(e) = &result
            && (self.refresh_token(e) || self.resync(e) || self.pull_despite(e, now))
        {
            return;
        }
        // A round whose push was refused fails once its pull is done.
        let result = match (result, self.push_error.take()) {
            (Ok(_), Some(e)) => Err(e),
            (result, _) => result,
        };
        self.phase = Phase::Idle;
        self.stage = Stage::Done;
        match &result {
            Ok(_) => {
                self.stats.last_sync_ms = Some(now.millis);
                self.stats.rounds += 1;
                self.stats.last_error = None;
                self.failures = 0;
                self.synced = self.begun;
                self.retry_at = None;
                self.poll_at = self
                    .config
                    .poll_interval
                    .filter(|_| !self.config.on_demand)
                    .map(|p| now.at + p);
                self.set_status(Status::Idle);
            }
            Err(e) => {
                self.disconnect();
                self.failed(e);
                if !self.config.on_demand {
                    self.schedule_retry(now);
                }
            }
        }
        self.actions.push_back(Action::Finished(result));
    }

    /// A refusal of the whole push (the remote answered, and said no) ends
    /// the push, not the round: a pull the round makes still runs, and the
    /// round then fails with the push's error. True when it goes on.
    fn pull_despite(&mut self, e: &SyncError, now: Now) -> bool {
        let refused = matches!(
            e,
            SyncError::Refused(_) | SyncError::ClockDrift(ClockDrift::LocalAhead(_))
        );
        if !refused || self.stage != Stage::Push || !self.pulls || self.link.is_none() {
            return false;
        }
        self.push_error = Some(e.clone());
        self.stage = Stage::Pull;
        self.phase = Phase::Idle;
        self.next(now);
        true
    }

    /// After a `RESYNC_REQUIRED` refusal, once a round: bootstrap the
    /// shared collections again, then go on with the round from its start
    /// (push, then pull from 0). True when it did.
    fn resync(&mut self, e: &SyncError) -> bool {
        if self.resynced || e.refusal_code() != Some(RefusalCode::RESYNC_REQUIRED) {
            return false;
        }
        let Some(link) = &self.link else {
            return false;
        };
        self.resynced = true;
        let remote = link.remote;
        let collections = link.collections.clone();
        self.phase = Phase::Resyncing;
        self.actions.push_back(Action::Resync {
            remote,
            collections,
        });
        true
    }

    /// The result of [`Action::Resync`].
    pub(crate) fn handle_resynced(
        &mut self,
        result: Result<Vec<(String, crate::Key)>, SyncError>,
        now: Now,
    ) {
        if self.phase != Phase::Resyncing {
            return;
        }
        self.phase = Phase::Idle;
        match result {
            Ok(reapplied) => {
                self.events.push_back(SyncEvent::Resynced { reapplied });
                self.pull_staged = None;
                self.push_error = None;
                self.stage = if self.config.direction.pushes() {
                    Stage::Push
                } else {
                    Stage::Pull
                };
                self.pulls = self.config.direction.pulls();
                self.next(now);
            }
            Err(e) => self.finish(Err(e), now),
        }
    }

    /// After a refusal as unauthenticated, once a round: reconnect with a
    /// fresh token from the provider, and go on with the round from where
    /// it was (its cursors are durable). True when it did.
    fn refresh_token(&mut self, e: &SyncError) -> bool {
        if self.refreshed
            || self.config.token_provider.is_none()
            || e.refusal_code() != Some(RefusalCode::UNAUTHORIZED)
        {
            return false;
        }
        self.refreshed = true;
        self.link = None;
        self.actions.push_back(Action::Disconnect);
        self.phase = Phase::Connecting;
        self.actions.push_back(Action::Connect { refresh: true });
        true
    }

    /// The subscription failed between rounds: reconnect after a backoff.
    pub(super) fn lost(&mut self, e: SyncError, now: Now) {
        self.disconnect();
        self.failed(&e);
        self.schedule_retry(now);
    }

    /// After a failure: retry after the backoff, or give up after
    /// `max_retry_attempts` failures in a row (status `Error` until a
    /// command or a reconnect).
    fn schedule_retry(&mut self, now: Now) {
        self.poll_at = None;
        if self
            .config
            .max_retry_attempts
            .is_some_and(|max| self.failures > max)
        {
            self.retry_at = None;
            self.set_status(Status::Error);
        } else {
            self.retry_at = Some(now.at + self.backoff());
        }
    }

    pub(super) fn disconnect(&mut self) {
        self.link = None;
        self.actions.push_back(Action::Disconnect);
    }

    fn failed(&mut self, e: &SyncError) {
        self.failures = self.failures.saturating_add(1);
        tracing::debug!(error = %e, failures = self.failures, "sync round failed");
        self.stats.last_error = Some(e.to_string());
        self.events.push_back(SyncEvent::Error {
            fault: e.fault(),
            message: e.to_string(),
        });
        self.set_status(match e.fault() {
            Fault::Network => Status::Offline,
            _ => Status::Error,
        });
    }

    pub(super) fn set_status(&mut self, status: Status) {
        if self.status != status {
            self.status = status;
            self.events.push_back(SyncEvent::StatusChanged(status));
        }
    }

    /// The next retry delay: doubling from `backoff_initial` up to
    /// `backoff_max`, with jitter in its upper half.
    fn backoff(&mut self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(20);
        let base = self
            .config
            .backoff_initial
            .saturating_mul(1u32 << exp)
            .min(self.config.backoff_max);
        base.mul_f64(0.5 + self.rng.random::<f64>() * 0.5)
    }
}
