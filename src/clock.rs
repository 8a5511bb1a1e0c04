//! The hybrid logical clock.
//!
//! A [`Stamp`] is 64 bits: 48 bits of milliseconds since the Unix epoch and a
//! 16-bit logical counter below them, so stamps order as plain integers. The
//! clock follows Kulkarni et al.: a local event takes `max(last + 1, now)`,
//! which bumps the counter when physical time did not move (and carries into
//! the millisecond bits if the counter overflows); receiving a remote stamp
//! moves the clock to at least that stamp, so every later local stamp is
//! greater than everything this replica has seen.
//!
//! Physical time comes through the [`TimeSource`] trait so tests can drive a
//! [`ManualTime`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Bits of the logical counter at the bottom of a [`Stamp`].
const COUNTER_BITS: u32 = 16;
/// The largest millisecond value that fits the 48 physical bits.
const MAX_MILLIS: u64 = (1 << 48) - 1;

/// A hybrid logical clock reading: milliseconds since the Unix epoch in the
/// high 48 bits, a logical counter in the low 16.
///
/// Stamps order as integers. Merge rules break ties between equal stamps with
/// the origin replica id (see [`crate::ChangeId`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Stamp(u64);

impl Stamp {
    /// The zero stamp, smaller than every stamp a clock issues.
    pub const ZERO: Self = Self(0);
    /// The largest stamp.
    pub const MAX: Self = Self(u64::MAX);

    /// A stamp from its raw 64-bit form.
    pub const fn from_u64(raw: u64) -> Self {
        Self(raw)
    }

    /// A stamp from milliseconds and a counter; milliseconds beyond 48 bits saturate.
    pub const fn new(millis: u64, counter: u16) -> Self {
        let millis = if millis > MAX_MILLIS {
            MAX_MILLIS
        } else {
            millis
        };
        Self((millis << COUNTER_BITS) | counter as u64)
    }

    /// The raw 64-bit form.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Milliseconds since the Unix epoch.
    pub const fn millis(self) -> u64 {
        self.0 >> COUNTER_BITS
    }

    /// The logical counter.
    pub const fn counter(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

impl fmt::Debug for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Stamp({}.{})", self.millis(), self.counter())
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.millis(), self.counter())
    }
}

/// A source of physical time in milliseconds since the Unix epoch.
pub trait TimeSource: Send + Sync + fmt::Debug {
    /// The current physical time in milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemTimeSource;

impl TimeSource for SystemTimeSource {
    fn now_millis(&self) -> u64 {
        // A wall clock before 1970 reads as 0; the HLC still only moves forward.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis().min(u128::from(MAX_MILLIS)) as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to; for tests and simulations.
///
/// Clones share the same reading.
#[derive(Debug, Clone, Default)]
pub struct ManualTime(Arc<AtomicU64>);

impl ManualTime {
    /// A manual clock reading `millis`.
    pub fn new(millis: u64) -> Self {
        Self(Arc::new(AtomicU64::new(millis)))
    }

    /// Sets the reading, forwards or backwards.
    pub fn set(&self, millis: u64) {
        self.0.store(millis, Ordering::SeqCst);
    }

    /// Moves the reading forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// Moves the reading backward by `by`, stopping at zero.
    pub fn step_back(&self, by: Duration) {
        let by = by.as_millis() as u64;
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |m| {
                Some(m.saturating_sub(by))
            });
    }
}

impl TimeSource for ManualTime {
    fn now_millis(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A remote stamp was too far ahead of local physical time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "remote stamp {stamp} is {ahead_ms} ms ahead of local time, more than the {max_ms} ms allowed"
)]
pub struct ClockDriftError {
    /// The offending stamp.
    pub stamp: Stamp,
    /// How far ahead of local physical time it was, in milliseconds.
    pub ahead_ms: u64,
    /// The configured bound.
    pub max_ms: u64,
}

/// The hybrid logical clock state of one replica: the last stamp issued or seen.
///
/// Pure state: the store persists [`Hlc::last`] with every commit and restores it on open.
#[derive(Debug, Clone)]
pub(crate) struct Hlc {
    last: Stamp,
    max_drift_ms: u64,
}

impl Hlc {
    pub(crate) fn new(last: Stamp, max_drift: Duration) -> Self {
        Self {
            last,
            max_drift_ms: max_drift.as_millis().min(u128::from(u64::MAX)) as u64,
        }
    }

    /// The high-water mark: the greatest stamp issued or received.
    pub(crate) fn last(&self) -> Stamp {
        self.last
    }

    /// Issues a stamp for a local event, strictly greater than every stamp before it.
    pub(crate) fn tick(&mut self, now_millis: u64) -> Stamp {
        let physical = Stamp::new(now_millis, 0);
        // `last + 1` bumps the counter, carrying into the milliseconds on overflow.
        let next = Stamp(self.last.0.saturating_add(1)).max(physical);
        self.last = next;
        next
    }

    /// Checks a remote stamp against the drift bound without moving the clock.
    pub(crate) fn check(&self, remote: Stamp, now_millis: u64) -> Result<(), ClockDriftError> {
        let ahead_ms = remote.millis().saturating_sub(now_millis);
        if ahead_ms > self.max_drift_ms {
            return Err(ClockDriftError {
                stamp: remote,
                ahead_ms,
                max_ms: self.max_drift_ms,
            });
        }
        Ok(())
    }

    /// Receives a remote stamp that passed [`Hlc::check`]: every later local
    /// stamp will be greater than it.
    pub(crate) fn observe(&mut self, remote: Stamp) {
        self.last = self.last.max(remote);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_layout_orders_millis_before_counter() {
        let a = Stamp::new(10, u16::MAX);
        let b = Stamp::new(11, 0);
        assert!(a < b);
        assert_eq!(a.millis(), 10);
        assert_eq!(a.counter(), u16::MAX);
        assert_eq!(Stamp::new(u64::MAX, 0).millis(), MAX_MILLIS);
    }

    #[test]
    fn tick_bumps_counter_when_time_stands_still() {
        let mut hlc = Hlc::new(Stamp::ZERO, Duration::from_secs(60));
        let a = hlc.tick(1000);
        let b = hlc.tick(1000);
        assert_eq!(a, Stamp::new(1000, 0));
        assert_eq!(b, Stamp::new(1000, 1));
        let c = hlc.tick(999);
        assert_eq!(
            c,
            Stamp::new(1000, 2),
            "time going back never lowers a stamp"
        );
        assert_eq!(hlc.tick(2000), Stamp::new(2000, 0));
    }

    #[test]
    fn counter_overflow_carries_into_millis() {
        let mut hlc = Hlc::new(Stamp::new(5, u16::MAX), Duration::from_secs(60));
        assert_eq!(hlc.tick(5), Stamp::new(6, 0));
    }

    #[test]
    fn observe_moves_past_remote() {
        let mut hlc = Hlc::new(Stamp::ZERO, Duration::from_secs(60));
        hlc.tick(1000);
        let remote = Stamp::new(5000, 7);
        hlc.check(remote, 1000).unwrap();
        hlc.observe(remote);
        assert_eq!(hlc.tick(1000), Stamp::new(5000, 8));
    }

    #[test]
    fn drift_bound_rejects_far_future_and_accepts_past() {
        let hlc = Hlc::new(Stamp::ZERO, Duration::from_secs(60));
        let now = 1_000_000;
        assert!(hlc.check(Stamp::new(now + 60_000, 0), now).is_ok());
        let err = hlc.check(Stamp::new(now + 60_001, 0), now).unwrap_err();
        assert_eq!(err.ahead_ms, 60_001);
        assert!(hlc.check(Stamp::new(1, 0), now).is_ok());
    }

    #[test]
    fn manual_time_steps() {
        let t = ManualTime::new(100);
        t.advance(Duration::from_millis(50));
        assert_eq!(t.now_millis(), 150);
        t.step_back(Duration::from_millis(500));
        assert_eq!(t.now_millis(), 0);
    }
}
