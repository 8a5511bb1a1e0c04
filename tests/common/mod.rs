//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use syncline::{CollectionConfig, ManualTime, Replica, ReplicaConfig, ReplicaId};

/// A replica in memory on a manual clock reading `millis`.
pub fn memory_replica(id: u8, time: &ManualTime) -> Replica {
    let config = ReplicaConfig {
        replica_id: Some(ReplicaId::from_bytes([id; 16])),
        ..ReplicaConfig::default().with_time(time.clone())
    };
    let r = Replica::in_memory(config).expect("open in-memory replica");
    r.define_collection("todos", CollectionConfig::default())
        .expect("define todos");
    r
}

/// A config on a manual clock with a fixed replica id.
pub fn manual_config(id: u8, time: &ManualTime) -> ReplicaConfig {
    ReplicaConfig {
        replica_id: Some(ReplicaId::from_bytes([id; 16])),
        max_clock_drift: Duration::from_secs(60),
        ..ReplicaConfig::default().with_time(time.clone())
    }
}

/// A point in time far from zero, so steps back stay positive.
pub const T0: u64 = 1_700_000_000_000;
