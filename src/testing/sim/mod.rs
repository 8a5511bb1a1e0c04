//! A deterministic simulation of replicas syncing over a faulty network.
//!
//! Everything flows from one seed: the schedule of operations, the loopback
//! network's faults, the engines' jitter. The simulation runs on a
//! current-thread tokio runtime with a paused clock, with store work inline,
//! so a seed replays exactly. After the schedule the network heals, the
//! clocks are corrected (skews back to zero, as NTP would), the engines
//! settle, and [`run`] checks that:
//!
//! - every replica holds the same records, byte for byte, tombstones and
//!   winning versions included;
//! - that state is what last-writer-wins gives over every change ever made;
//! - every acknowledged write reached every replica;
//! - no replica ever issued a stamp smaller than an earlier one of its own;
//! - local-only collections never left their replica;
//! - sync terminates: once settled, engines stop doing rounds.
//!
//! [`check`] runs a seed and, on failure, shrinks the schedule to a short
//! one that still fails and reports both with the replay command.
//!
//! ```
//! use syncline::testing::sim::{SimConfig, Topology, check};
//!
//! let config = SimConfig { seed: 7, replicas: 3, topology: Topology::Hub, ..SimConfig::default() };
//! let report = check(&config).unwrap_or_else(|failure| panic!("{failure}"));
//! assert!(report.changes > 0);
//! ```

use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use syncline_loopback::NetworkStats;

use crate::merge::Resolver as _;
use crate::model::{MergePolicy, Ranks, ReplicaId};
use crate::value::Value;

use world::{Sim, tempfile_dir};

/// The environment variable that replays one seed.
pub const SEED_ENV: &str = "SYNCLINE_SIM_SEED";

/// How the replicas connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topology {
    /// Replica 0 serves; every other replica syncs with it.
    Hub,
    /// Every replica serves and syncs with every other.
    Mesh,
    /// Replica i syncs with replica i + 1 only.
    Chain,
    /// The first `n` replicas are hubs that peer in a mesh; every other
    /// replica is a client with one engine that fails over among the hubs
    /// ([`crate::Failover`]), preferring hub `i % n`.
    Hubs(usize),
}

/// Where the replicas keep their data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimStorage {
    /// redb's in-memory backend: fast; no restarts.
    Memory,
    /// redb files in a fresh temporary directory: replicas can be killed and
    /// reopened mid-sync.
    Files,
}

/// One simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed everything flows from.
    pub seed: u64,
    /// How many replicas, 2 to 8 (to 250 with [`Topology::Hubs`]).
    pub replicas: usize,
    /// How they connect.
    pub topology: Topology,
    /// How many random steps the schedule has.
    pub steps: usize,
    /// Where data lives.
    pub storage: SimStorage,
    /// Whether the network drops, duplicates, delays and reorders.
    pub faults: bool,
    /// Whether clocks are skewed and stepped backwards.
    pub clock_skew: bool,
    /// The merge policy of the synced collection. [`MergePolicy::Custom`]
    /// may name [`MaxValue`], which every simulated replica registers.
    pub policy: MergePolicy,
    /// Whether the hub refuses some groups (hub topology, `Lww` or
    /// `FieldLww`): a validator rejects about one change in ten (chosen by
    /// its id, from the seed), and replica 1 may not write the synced
    /// collection at all. Settling then checks that each refused group is
    /// listed once at its origin, discards every refusal, and checks that
    /// all replicas converge on the changes the hub accepted.
    pub rejections: bool,
    /// Whether the hub collects tombstones (hub topology): its server's
    /// horizon is a day and a pass may run every second, and schedules
    /// jump every clock ahead by hours to days (`Step::Jump`) and purge
    /// records (`Step::Purge`), so replicas
    /// cut off for longer than the horizon come back behind it, are told
    /// to resync and bootstrap again. Settling compares live values: no
    /// collected record comes back, and no write is lost but by the
    /// documented resync rule (a replica's unpushed writes are written
    /// again, as new writes).
    pub collection: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            replicas: 3,
            topology: Topology::Hub,
            steps: 40,
            storage: SimStorage::Memory,
            faults: true,
            clock_skew: true,
            policy: MergePolicy::Lww,
            rejections: false,
            collection: false,
        }
    }
}

impl SimConfig {
    /// A config drawn from `seed`: 2 to 5 replicas, any topology, files for
    /// one seed in four.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let topology = match rng.random_range(0..3) {
            0 => Topology::Hub,
            1 => Topology::Mesh,
            _ => Topology::Chain,
        };
        let mut config = Self {
            seed,
            replicas: rng.random_range(2..=5),
            topology,
            steps: rng.random_range(10..=50),
            storage: if rng.random_ratio(1, 4) {
                SimStorage::Files
            } else {
                SimStorage::Memory
            },
            faults: rng.random_ratio(3, 4),
            clock_skew: rng.random_ratio(3, 4),
            policy: match rng.random_range(0..20) {
                #[cfg(feature = "automerge")]
                0..2 => MergePolicy::Automerge,
                0..10 => MergePolicy::Lww,
                10..14 => MergePolicy::FieldLww,
                14..17 => MergePolicy::Ranked(Ranks::hub_wins(replica_id(0))),
                _ => MergePolicy::Custom(MaxValue.name().to_string()),
            },
            rejections: false,
            collection: false,
        };
        // Drawn last, so that the fields above stay what older builds drew.
        config.rejections = config.topology == Topology::Hub
            && matches!(config.policy, MergePolicy::Lww | MergePolicy::FieldLww)
            && rng.random_ratio(1, 2);
        config
    }
}

/// One step of a schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Sets key `k{key}` to `value` on a replica.
    Put {
        /// The replica.
        replica: usize,
        /// The key number.
        key: u8,
        /// The value.
        value: i64,
    },
    /// Deletes key `k{key}` on a replica.
    Delete {
        /// The replica.
        replica: usize,
        /// The key number.
        key: u8,
    },
    /// A multi-record transaction on a replica: puts, then deletes.
    Transaction {
        /// The replica.
        replica: usize,
        /// Keys and values to set.
        puts: Vec<(u8, i64)>,
        /// Keys to delete.
        deletes: Vec<u8>,
    },
    /// Sets one field of key `k{key}` (field-level policy only).
    Patch {
        /// The replica.
        replica: usize,
        /// The key number.
        key: u8,
        /// The field number.
        field: u8,
        /// The value.
        value: i64,
    },
    /// A write to the local-only collection, which must never leave.
    Draft {
        /// The replica.
        replica: usize,
    },
    /// Lets the network and the engines run for a while.
    Run {
        /// Simulated milliseconds.
        millis: u64,
    },
    /// Steps a replica's wall clock (negative: backwards).
    Skew {
        /// The replica.
        replica: usize,
        /// Milliseconds to add.
        millis: i64,
    },
    /// Cuts the link between two replicas.
    Partition {
        /// One end.
        a: usize,
        /// The other.
        b: usize,
    },
    /// Heals every partition and brings every replica online.
    HealAll,
    /// Cuts a replica off from everyone.
    Offline {
        /// The replica.
        replica: usize,
    },
    /// Changes the network's faults: 0 none, 1 mild, 2 harsh.
    Faults {
        /// The level.
        level: u8,
    },
    /// Kills a replica (engines, server, database) and reopens it from its file.
    Restart {
        /// The replica.
        replica: usize,
    },
    /// Purges key `k{key}` on a replica (tombstone collection only).
    Purge {
        /// The replica.
        replica: usize,
        /// The key number.
        key: u8,
    },
    /// Moves every replica's wall clock ahead (tombstone collection only).
    Jump {
        /// Hours to add.
        hours: u64,
    },
}

/// Draws the schedule of `config.steps` steps from `config.seed`.
pub fn schedule(config: &SimConfig) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let n = config.replicas;
    let keys = 6u8;
    let mut steps = Vec::with_capacity(config.steps);
    while steps.len() < config.steps {
        let replica = rng.random_range(0..n);
        let step = match rng.random_range(0..100) {
            0..30 => Step::Put {
                replica,
                key: rng.random_range(0..keys),
                value: rng.random_range(-100..100),
            },
            30..33 if config.collection => Step::Purge {
                replica,
                key: rng.random_range(0..keys),
            },
            30..40 => Step::Delete {
                replica,
                key: rng.random_range(0..keys),
            },
            40..48 => Step::Transaction {
                replica,
                puts: (0..rng.random_range(1..4))
                    .map(|_| (rng.random_range(0..keys), rng.random_range(-100..100)))
                    .collect(),
                deletes: (0..rng.random_range(0..2))
                    .map(|_| rng.random_range(0..keys))
                    .collect(),
            },
            48..51 => Step::Draft { replica },
            51..56 if config.policy == MergePolicy::FieldLww => Step::Patch {
                replica,
                key: rng.random_range(0..keys),
                field: rng.random_range(0..3),
                value: rng.random_range(-100..100),
            },
            56..60 if config.collection => Step::Jump {
                hours: rng.random_range(6..60),
            },
            56..72 => Step::Run {
                millis: rng.random_range(1..2000),
            },
            72..80 if config.clock_skew => Step::Skew {
                replica,
                millis: rng.random_range(-90_000..90_000),
            },
            // With several hubs, most cuts fall between two hubs.
            80..86 => match config.topology {
                Topology::Hubs(hubs) if rng.random_ratio(2, 3) => Step::Partition {
                    a: rng.random_range(0..hubs),
                    b: rng.random_range(0..hubs),
                },
                _ => Step::Partition {
                    a: replica,
                    b: rng.random_range(0..n),
                },
            },
            86..89 => Step::Offline { replica },
            89..93 => Step::HealAll,
            93..97 if config.faults => Step::Faults {
                level: rng.random_range(0..3),
            },
            97..100 if config.storage == SimStorage::Files => Step::Restart { replica },
            _ => continue,
        };
        steps.push(step);
    }
    steps
}

/// What a successful run did.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// Steps executed.
    pub steps: usize,
    /// Distinct changes made across all replicas.
    pub changes: usize,
    /// Sync rounds completed across all engines.
    pub rounds: u64,
    /// Simulated milliseconds, settling included.
    pub simulated_ms: u64,
    /// What the network carried and lost.
    pub network: NetworkStats,
}

/// A failed run, shrunk.
#[derive(Clone, Debug)]
pub struct SimFailure {
    /// The config (and seed) that failed.
    pub config: SimConfig,
    /// What went wrong.
    pub message: String,
    /// The full schedule.
    pub schedule: Vec<Step>,
    /// The shortest schedule found that still fails.
    pub shrunk: Vec<Step>,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulation failed with seed {}: {}",
            self.config.seed, self.message
        )?;
        writeln!(f, "config: {:?}", self.config)?;
        writeln!(
            f,
            "shrunk schedule ({} of {} steps):",
            self.shrunk.len(),
            self.schedule.len()
        )?;
        for step in &self.shrunk {
            writeln!(f, "  {step:?}")?;
        }
        write!(
            f,
            "replay: {SEED_ENV}={} cargo test --all-features --test simulation",
            self.config.seed
        )
    }
}

impl std::error::Error for SimFailure {}

/// Runs the schedule drawn from `config.seed`; on failure, shrinks it.
pub fn check(config: &SimConfig) -> Result<SimReport, Box<SimFailure>> {
    let steps = schedule(config);
    match run(config, &steps) {
        Ok(report) => Ok(report),
        Err(message) => {
            let (shrunk, message) = shrink(config, steps.clone(), message);
            Err(Box::new(SimFailure {
                config: config.clone(),
                message,
                schedule: steps,
                shrunk,
            }))
        }
    }
}

/// The seed in [`SEED_ENV`], if set.
pub fn seed_from_env() -> Option<u64> {
    std::env::var(SEED_ENV).ok()?.trim().parse().ok()
}

/// Runs one schedule and checks the outcome. Deterministic for a given
/// config and schedule.
pub fn run(config: &SimConfig, steps: &[Step]) -> Result<SimReport, String> {
    // Clients of several hubs may be many; the other topologies stay small.
    let most = match config.topology {
        Topology::Hubs(hubs) if (1..config.replicas).contains(&hubs) => 250,
        Topology::Hubs(hubs) => {
            return Err(format!(
                "{hubs} hubs need at least one client among {} replicas",
                config.replicas
            ));
        }
        _ => 8,
    };
    if !(2..=most).contains(&config.replicas) {
        return Err(format!(
            "replicas must be 2 to {most}, got {}",
            config.replicas
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let dir = match config.storage {
        SimStorage::Files => Some(tempfile_dir()?),
        SimStorage::Memory => None,
    };
    let result = runtime.block_on(async {
        let mut sim = Sim::new(config, dir.as_ref().map(|d| d.0.as_path())).await?;
        for (i, step) in steps.iter().enumerate() {
            sim.step(step)
                .await
                .map_err(|e| format!("step {i} {step:?}: {e}"))?;
            sim.drain_watches()?;
        }
        sim.settle_and_check(steps.len()).await
    });
    drop(runtime);
    result
}

/// A custom resolver for simulations: the greatest integer wins; anything
/// that is not an integer (a delete included) loses to one.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxValue;

impl crate::Resolver for MaxValue {
    fn name(&self) -> &str {
        "sim-max-value"
    }

    fn compare(&self, a: crate::Candidate<'_>, b: crate::Candidate<'_>) -> std::cmp::Ordering {
        let n = |c: crate::Candidate<'_>| c.value.and_then(Value::as_i64);
        n(a).cmp(&n(b))
    }
}

/// Removes chunks of steps while the run still fails, up to a budget of runs.
fn shrink(config: &SimConfig, mut steps: Vec<Step>, mut message: String) -> (Vec<Step>, String) {
    let mut budget = 150;
    let mut chunk = (steps.len() / 2).max(1);
    loop {
        let mut i = 0;
        while i < steps.len() && budget > 0 {
            let end = (i + chunk).min(steps.len());
            let candidate: Vec<Step> = steps[..i].iter().chain(&steps[end..]).cloned().collect();
            budget -= 1;
            match run(config, &candidate) {
                Err(m) => {
                    steps = candidate;
                    message = m;
                }
                Ok(_) => i += chunk,
            }
        }
        if chunk == 1 || budget == 0 {
            return (steps, message);
        }
        chunk /= 2;
    }
}

/// Whether the simulated hub's validator rejects a change: about one in
/// ten, by its id and the seed, so the same change gets the same verdict
/// every time it is pushed.
fn unlucky(seed: u64, id: crate::ChangeId) -> bool {
    let mut z = seed
        ^ u64::from_le_bytes(id.origin.as_bytes()[..8].try_into().unwrap_or_default())
        ^ id.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).is_multiple_of(10)
}

/// The simulated hub's validator ([`unlucky`] changes).
#[derive(Debug, Clone, Copy)]
struct Unlucky(u64);

impl crate::Validator for Unlucky {
    fn validate(
        &self,
        _who: &crate::Principal,
        change: &crate::Change,
    ) -> Result<(), crate::Rejection> {
        if unlucky(self.0, change.id) {
            Err(crate::Rejection::new("unlucky"))
        } else {
            Ok(())
        }
    }
}

/// The id of simulated replica `i`.
fn replica_id(i: usize) -> ReplicaId {
    ReplicaId::from_bytes([i as u8 + 1; 16])
}

mod checks;
mod world;
