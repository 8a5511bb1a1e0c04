//! Deterministic simulations: a few hundred seeded schedules of writes,
//! faults, partitions, clock skew and restarts, each checked for
//! convergence to the last-writer-wins model.
//!
//! Replay one seed: `SYNCLINE_SIM_SEED=<seed> cargo test --all-features --test simulation`.
//! Run more: `SYNCLINE_SIM_SCHEDULES=5000 cargo test --release --all-features --test simulation`.
#![cfg(feature = "testing")]

use syncline::testing::sim::{self, SimConfig, SimStorage, Topology};

fn schedules() -> u64 {
    std::env::var("SYNCLINE_SIM_SCHEDULES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400)
}

#[test]
fn seeded_schedules_converge_to_the_model() {
    let seeds: Vec<u64> = match sim::seed_from_env() {
        Some(seed) => vec![seed],
        None => (0..schedules()).collect(),
    };
    let mut changes = 0;
    let mut dropped = 0;
    for seed in seeds {
        let config = SimConfig::from_seed(seed);
        match sim::check(&config) {
            Ok(report) => {
                changes += report.changes;
                dropped += report.network.frames_dropped;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    assert!(changes > 0);
    eprintln!("simulated {changes} changes; the network dropped {dropped} frames");
}

/// A hub that refuses about one change in ten (a validator) and every
/// write of replica 1 (an access rule): each refused group is listed once
/// at its origin, nothing stays pending, and once the refusals are
/// discarded every replica holds what the hub accepted.
#[test]
fn refused_groups_converge_on_what_the_hub_accepted() {
    let mut checked = 0;
    for seed in 0..200u64 {
        let config = SimConfig {
            rejections: true,
            ..SimConfig::from_seed(5000 + seed)
        };
        if config.topology != Topology::Hub
            || !matches!(
                config.policy,
                syncline::MergePolicy::Lww | syncline::MergePolicy::FieldLww
            )
        {
            continue;
        }
        checked += 1;
        if let Err(failure) = sim::check(&config) {
            panic!("{failure}");
        }
    }
    assert!(checked >= 5, "only {checked} schedules had a hub");
}

/// A hub that collects tombstones older than a day, while schedules jump
/// every clock ahead by hours to days and cut replicas off: replicas left
/// behind the horizon are told to resync and bootstrap again, every
/// schedule settles with the same live values everywhere, equal to the
/// merge of every change made (a resync's writes included), and nothing
/// deleted and collected comes back.
#[test]
fn collected_tombstones_never_come_back_in_any_schedule() {
    let mut checked = 0;
    for seed in 0..200u64 {
        let config = SimConfig {
            collection: true,
            rejections: false,
            topology: Topology::Hub,
            policy: syncline::MergePolicy::Lww,
            steps: 60,
            ..SimConfig::from_seed(7000 + seed)
        };
        checked += 1;
        if let Err(failure) = sim::check(&config) {
            panic!("{failure}");
        }
    }
    assert!(checked >= 100);
}

/// Several hubs that peer in a mesh, and clients that fail over among
/// them (`Topology::Hubs`): partitions, offline replicas and restarts
/// included, every check of the simulation holds. 4 hubs and 12 clients
/// over 40 seeds (with every policy the seeds draw); one schedule of 4 hubs
/// and 200 clients.
#[test]
fn clients_failing_over_among_peering_hubs_converge() {
    for seed in 0..40u64 {
        let drawn = SimConfig::from_seed(9000 + seed);
        let config = SimConfig {
            replicas: 16,
            topology: Topology::Hubs(4),
            steps: 60,
            rejections: false,
            collection: false,
            ..drawn
        };
        if let Err(failure) = sim::check(&config) {
            panic!("{failure}");
        }
    }
    let config = SimConfig {
        seed: 9999,
        replicas: 204,
        topology: Topology::Hubs(4),
        steps: 400,
        ..SimConfig::default()
    };
    if let Err(failure) = sim::check(&config) {
        panic!("{failure}");
    }
}

#[test]
fn every_topology_with_eight_replicas_on_files() {
    for (seed, topology) in [
        (1001, Topology::Hub),
        (1002, Topology::Mesh),
        (1003, Topology::Chain),
    ] {
        let config = SimConfig {
            seed,
            replicas: 8,
            topology,
            steps: 60,
            storage: SimStorage::Files,
            ..SimConfig::default()
        };
        if let Err(failure) = sim::check(&config) {
            panic!("{failure}");
        }
    }
}

#[test]
fn a_seed_replays_exactly() {
    let config = SimConfig::from_seed(42);
    let steps = sim::schedule(&config);
    assert_eq!(steps, sim::schedule(&config));
    let a = sim::run(&config, &steps).unwrap();
    let b = sim::run(&config, &steps).unwrap();
    assert_eq!(
        (a.changes, a.rounds, a.simulated_ms),
        (b.changes, b.rounds, b.simulated_ms)
    );
    assert_eq!(a.network.frames_sent, b.network.frames_sent);
}
