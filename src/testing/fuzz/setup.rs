//! What the targets share: replica ids, keys, clocks and in-memory replicas.

use std::time::Duration;

use crate::{CollectionConfig, Key, ManualTime, Replica, ReplicaConfig, ReplicaId, Stamp};

use super::{DRIFT_MS, LOCAL, SYNCED};

/// Replica ids 1, 2 and 3 (`[n; 16]`).
pub(super) fn replica_id(index: usize) -> ReplicaId {
    ReplicaId::from_bytes([index as u8 + 1; 16])
}

/// A key `k0` to `k3`.
pub(super) fn key(byte: u8) -> Key {
    Key::from(format!("k{}", byte % 4))
}

/// Moves a clock: `by < 128` advances it by `by` seconds, larger values step
/// it back by `by - 128` seconds. Returns the new reading.
pub(super) fn move_time(time: &ManualTime, by: u8) -> u64 {
    if by < 128 {
        time.advance(Duration::from_secs(u64::from(by)));
    } else {
        time.step_back(Duration::from_secs(u64::from(by - 128)));
    }
    crate::TimeSource::now_millis(time)
}

pub(super) fn now(time: &ManualTime) -> u64 {
    crate::TimeSource::now_millis(time)
}

/// Whether a receiver at `now` refuses `stamp` as too far ahead.
pub(super) fn too_far_ahead(stamp: Stamp, now: u64) -> bool {
    stamp.millis().saturating_sub(now) > DRIFT_MS
}
pub(super) fn in_memory(id: ReplicaId, time: &ManualTime) -> Replica {
    let mut config = ReplicaConfig::default().with_time(time.clone());
    config.replica_id = Some(id);
    config.max_clock_drift = Duration::from_millis(DRIFT_MS);
    let replica = Replica::in_memory(config).expect("an in-memory replica opens");
    for name in SYNCED {
        replica
            .define_collection(name, CollectionConfig::default())
            .expect("define a synced collection");
    }
    replica
        .define_collection(LOCAL, CollectionConfig::local_only())
        .expect("define a local-only collection");
    replica
}

pub(super) fn debug_enabled() -> bool {
    std::env::var_os("SYNCLINE_FUZZ_DEBUG").is_some()
}
