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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use syncline_loopback::{Faults, LoopbackNetwork, LoopbackServer, NetworkStats};
use syncline_transport::Limits;

use crate::clock::{Stamp, TimeSource};
use crate::engine::{Status, SyncConfig, SyncEngine};
use crate::merge::Resolver as _;
use crate::model::{ChangeId, CollectionConfig, Key, MergePolicy, Op, Ranks, ReplicaId};
use crate::replica::{Replica, ReplicaConfig};
use crate::server::{ServerConfig, SyncServer};
use crate::value::Value;

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
    /// How many replicas, 2 to 8.
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
        Self {
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
        }
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
            56..72 => Step::Run {
                millis: rng.random_range(1..2000),
            },
            72..80 if config.clock_skew => Step::Skew {
                replica,
                millis: rng.random_range(-90_000..90_000),
            },
            80..86 => Step::Partition {
                a: replica,
                b: rng.random_range(0..n),
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

/// Runs one schedule and checks the outcome. Deterministic for a given
/// config and schedule.
pub fn run(config: &SimConfig, steps: &[Step]) -> Result<SimReport, String> {
    if !(2..=8).contains(&config.replicas) {
        return Err(format!("replicas must be 2 to 8, got {}", config.replicas));
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
        }
        sim.settle_and_check(steps.len()).await
    });
    drop(runtime);
    result
}

/// A temporary directory removed on drop (no dependency on `tempfile`).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> Result<TempDir, String> {
    let path = std::env::temp_dir().join(format!("syncline-sim-{}", ReplicaId::random()));
    std::fs::create_dir_all(&path).map_err(|e| format!("temp dir: {e}"))?;
    Ok(TempDir(path))
}

/// Wall time of one simulated replica: the paused tokio clock plus a skew.
#[derive(Debug)]
struct SimClock {
    start: tokio::time::Instant,
    skew_ms: AtomicI64,
}

/// The simulated epoch: 2026-01-01.
const BASE_MS: u64 = 1_767_225_600_000;

impl TimeSource for SimClock {
    fn now_millis(&self) -> u64 {
        let elapsed = self.start.elapsed().as_millis() as i64;
        (BASE_MS as i64 + elapsed + self.skew_ms.load(Ordering::SeqCst)).max(0) as u64
    }
}

struct Node {
    name: String,
    id: ReplicaId,
    clock: Arc<SimClock>,
    replica: Option<Replica>,
    server: Option<LoopbackServer>,
    engines: Vec<SyncEngine>,
}

struct Sim<'a> {
    config: &'a SimConfig,
    dir: Option<&'a Path>,
    net: LoopbackNetwork,
    nodes: Vec<Node>,
    /// Ids of the local writes that were acknowledged (committed).
    acked: Vec<ChangeId>,
    /// Per replica, the last stamp it issued for its own changes.
    last_own: Vec<Stamp>,
    engine_seq: u64,
}

const TODOS: &str = "todos";
const DRAFTS: &str = "drafts";

impl<'a> Sim<'a> {
    async fn new(config: &'a SimConfig, dir: Option<&'a Path>) -> Result<Self, String> {
        let net = LoopbackNetwork::new(config.seed);
        let start = tokio::time::Instant::now();
        let nodes = (0..config.replicas)
            .map(|i| Node {
                name: format!("r{i}"),
                id: replica_id(i),
                clock: Arc::new(SimClock {
                    start,
                    skew_ms: AtomicI64::new(0),
                }),
                replica: None,
                server: None,
                engines: Vec::new(),
            })
            .collect();
        let mut sim = Self {
            config,
            dir,
            net,
            nodes,
            acked: Vec::new(),
            last_own: vec![Stamp::ZERO; config.replicas],
            engine_seq: 0,
        };
        for i in 0..config.replicas {
            sim.start_node(i).await?;
        }
        Ok(sim)
    }

    /// Who node `i` syncs with (it runs an engine towards each).
    fn remotes(&self, i: usize) -> Vec<usize> {
        let n = self.config.replicas;
        match self.config.topology {
            Topology::Hub if i == 0 => Vec::new(),
            Topology::Hub => vec![0],
            Topology::Mesh => (0..n).filter(|&j| j != i).collect(),
            Topology::Chain if i + 1 < n => vec![i + 1],
            Topology::Chain => Vec::new(),
        }
    }

    fn serves(&self, i: usize) -> bool {
        (0..self.config.replicas).any(|j| self.remotes(j).contains(&i))
    }

    async fn start_node(&mut self, i: usize) -> Result<(), String> {
        let node = &self.nodes[i];
        let config = ReplicaConfig {
            replica_id: Some(node.id),
            time: node.clock.clone(),
            ..ReplicaConfig::default().with_resolver(MaxValue)
        };
        let replica = match self.dir {
            Some(dir) => {
                let path = dir.join(format!("{}.redb", node.name));
                let mut tries = 0;
                loop {
                    match Replica::open(&path, config.clone()) {
                        Ok(r) => break r,
                        // Tasks of the killed instance may still hold the file.
                        Err(e) if tries < 1000 && e.to_string().contains("already open") => {
                            tries += 1;
                            tokio::task::yield_now().await;
                        }
                        Err(e) => return Err(format!("reopen {}: {e}", node.name)),
                    }
                }
            }
            None => Replica::in_memory(config).map_err(|e| e.to_string())?,
        };
        replica
            .define_collection(
                TODOS,
                CollectionConfig::default().with_policy(self.config.policy.clone()),
            )
            .map_err(|e| e.to_string())?;
        replica
            .define_collection(DRAFTS, CollectionConfig::local_only())
            .map_err(|e| e.to_string())?;
        let server = if self.serves(i) {
            let service = SyncServer::new(replica.clone())
                .with_config(ServerConfig {
                    max_pull_changes: 5,
                    inline_store: true,
                    ..ServerConfig::default()
                })
                .into_service();
            Some(
                self.net
                    .serve(&self.nodes[i].name, service, Limits::default())
                    .map_err(|e| format!("serve: {e}"))?,
            )
        } else {
            None
        };
        let mut engines = Vec::new();
        for j in self.remotes(i) {
            self.engine_seq += 1;
            let config = SyncConfig {
                batch_size: 5,
                poll_interval: None,
                backoff_initial: Duration::from_millis(20),
                backoff_max: Duration::from_millis(1000),
                seed: Some(
                    self.config
                        .seed
                        .wrapping_mul(31)
                        .wrapping_add(self.engine_seq),
                ),
                inline_store: true,
                ..SyncConfig::default()
            };
            let connector = self.net.connector(&self.nodes[i].name, &self.nodes[j].name);
            engines.push(SyncEngine::start(replica.clone(), connector, config));
        }
        let node = &mut self.nodes[i];
        node.replica = Some(replica);
        node.server = server;
        node.engines = engines;
        Ok(())
    }

    async fn kill_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        for engine in node.engines.drain(..) {
            engine.stop().await;
        }
        if let Some(server) = node.server.take() {
            server.shutdown().await;
        }
        node.replica = None;
        // Let tasks of the killed instance run to their end and drop their handles.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    fn replica(&self, i: usize) -> Result<&Replica, String> {
        self.nodes[i]
            .replica
            .as_ref()
            .ok_or_else(|| format!("replica {i} is not open"))
    }

    async fn step(&mut self, step: &Step) -> Result<(), String> {
        match step {
            #[cfg(feature = "automerge")]
            Step::Put {
                replica,
                key,
                value,
            } if self.config.policy == MergePolicy::Automerge => {
                self.automerge_put(*replica, *key, "v", *value)?;
            }
            Step::Put {
                replica,
                key,
                value,
            } => {
                let mut txn = self.replica(*replica)?.transaction();
                txn.put(TODOS, format!("k{key}"), self.value(*value));
                self.commit(*replica, txn)?;
            }
            Step::Patch {
                replica,
                key,
                field,
                value,
            } => {
                let mut txn = self.replica(*replica)?.transaction();
                let fields = [(format!("f{field}"), Value::Int(*value))]
                    .into_iter()
                    .collect();
                txn.patch(TODOS, format!("k{key}"), fields);
                self.commit(*replica, txn)?;
            }
            Step::Delete { replica, key } => {
                let mut txn = self.replica(*replica)?.transaction();
                txn.delete(TODOS, format!("k{key}"));
                self.commit(*replica, txn)?;
            }
            #[cfg(feature = "automerge")]
            Step::Transaction {
                replica,
                puts,
                deletes,
            } if self.config.policy == MergePolicy::Automerge => {
                // Automerge writes are one record each: not atomic together.
                for (key, value) in puts {
                    self.automerge_put(*replica, *key, "v", *value)?;
                }
                for key in deletes {
                    let mut txn = self.replica(*replica)?.transaction();
                    txn.delete(TODOS, format!("k{key}"));
                    self.commit(*replica, txn)?;
                }
            }
            Step::Transaction {
                replica,
                puts,
                deletes,
            } => {
                let mut txn = self.replica(*replica)?.transaction();
                for (key, value) in puts {
                    txn.put(TODOS, format!("k{key}"), self.value(*value));
                }
                for key in deletes {
                    txn.delete(TODOS, format!("k{key}"));
                }
                self.commit(*replica, txn)?;
            }
            Step::Draft { replica } => {
                let mut txn = self.replica(*replica)?.transaction();
                txn.put(DRAFTS, "draft", Value::String(format!("from r{replica}")));
                self.commit(*replica, txn)?;
            }
            Step::Run { millis } => tokio::time::sleep(Duration::from_millis(*millis)).await,
            Step::Skew { replica, millis } => {
                self.nodes[*replica]
                    .clock
                    .skew_ms
                    .fetch_add(*millis, Ordering::SeqCst);
            }
            Step::Partition { a, b } => {
                if a != b {
                    self.net
                        .partition(&self.nodes[*a].name, &self.nodes[*b].name);
                }
            }
            Step::HealAll => self.net.heal_all(),
            Step::Offline { replica } => self.net.set_online(&self.nodes[*replica].name, false),
            Step::Faults { level } => self.net.set_faults(faults(*level)),
            Step::Restart { replica } => {
                if self.dir.is_some() {
                    self.kill_node(*replica).await;
                    self.start_node(*replica).await?;
                }
            }
        }
        Ok(())
    }

    /// A value of the right shape for the policy: field-level records are maps.
    fn value(&self, n: i64) -> Value {
        match self.config.policy {
            MergePolicy::FieldLww => Value::Map(
                [(format!("f{}", n.rem_euclid(3)), Value::Int(n))]
                    .into_iter()
                    .collect(),
            ),
            _ => Value::Int(n),
        }
    }

    /// Sets field `field` of the automerge document `k{key}` on replica `i`.
    #[cfg(feature = "automerge")]
    fn automerge_put(&mut self, i: usize, key: u8, field: &str, value: i64) -> Result<(), String> {
        use ::automerge::ROOT;
        use ::automerge::transaction::Transactable as _;
        let replica = self.replica(i)?.clone();
        let before = replica.last_lsn();
        replica
            .collection(TODOS)
            .map_err(|e| e.to_string())?
            .automerge_change(format!("k{key}"), |doc| doc.put(ROOT, field, value))
            .map_err(|e| format!("automerge write on r{i}: {e}"))?;
        // Nothing else runs during a step: the new entries are this write.
        for entry in replica
            .feed_after(before, usize::MAX)
            .map_err(|e| e.to_string())?
        {
            if entry.change.stamp <= self.last_own[i] {
                return Err(format!(
                    "r{i} issued stamp {} after {}",
                    entry.change.stamp, self.last_own[i]
                ));
            }
            self.last_own[i] = entry.change.stamp;
            self.acked.push(entry.change.id);
        }
        Ok(())
    }

    fn commit(&mut self, i: usize, txn: crate::Transaction) -> Result<(), String> {
        let committed = txn
            .commit()
            .map_err(|e| format!("local write on r{i}: {e}"))?;
        if committed.stamp <= self.last_own[i] && !committed.ids.is_empty() {
            return Err(format!(
                "r{i} issued stamp {} after {}: its clock went backwards",
                committed.stamp, self.last_own[i]
            ));
        }
        self.last_own[i] = committed.stamp;
        self.acked.extend(committed.ids);
        Ok(())
    }

    /// Heals the network, lets the engines settle, then checks everything.
    async fn settle_and_check(&mut self, steps: usize) -> Result<SimReport, String> {
        let start = tokio::time::Instant::now();
        self.net.heal_all();
        self.net.set_faults(Faults::none());
        // Clocks are corrected, as NTP would. Stamps issued while a clock ran
        // ahead stay ahead and are accepted once real time catches up with
        // them, within the drift bound: allow a few minutes for that.
        for node in &self.nodes {
            node.clock.skew_ms.store(0, Ordering::SeqCst);
        }
        let mut settled = false;
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if self.quiet()? {
                settled = true;
                break;
            }
        }
        if !settled {
            let states: Vec<usize> = (0..self.nodes.len())
                .map(|i| self.states(i).map(|s| s.len()).unwrap_or(0))
                .collect();
            let first = self.states(0)?;
            let same: Vec<bool> = (0..self.nodes.len())
                .map(|i| self.states(i).is_ok_and(|s| s == first))
                .collect();
            let engines: Vec<String> = self
                .nodes
                .iter()
                .flat_map(|n| {
                    n.engines.iter().map(move |e| {
                        let s = e.stats();
                        format!(
                            "{}: {:?} pending {} error {:?}",
                            n.name,
                            *e.status().borrow(),
                            s.pending,
                            s.last_error
                        )
                    })
                })
                .collect();
            return Err(format!(
                "replicas did not settle within 300 simulated seconds after healing \
                 (record counts {states:?}, equal to r0 {same:?}, engines {engines:?})"
            ));
        }
        let rounds_settled = self.rounds();
        tokio::time::sleep(Duration::from_secs(60)).await;
        let rounds_after = self.rounds();
        if rounds_after != rounds_settled {
            return Err(format!(
                "sync did not terminate: {} more rounds in a quiet minute",
                rounds_after - rounds_settled
            ));
        }
        self.check_model()?;
        Ok(SimReport {
            steps,
            changes: self.all_changes()?.len(),
            rounds: rounds_after,
            simulated_ms: start.elapsed().as_millis() as u64,
            network: self.net.stats(),
        })
    }

    fn rounds(&self) -> u64 {
        self.nodes
            .iter()
            .flat_map(|n| &n.engines)
            .map(|e| e.stats().rounds)
            .sum()
    }

    /// Converged, every engine idle with nothing pending.
    fn quiet(&self) -> Result<bool, String> {
        let first = self.states(0)?;
        for i in 1..self.nodes.len() {
            if self.states(i)? != first {
                return Ok(false);
            }
        }
        Ok(self
            .nodes
            .iter()
            .flat_map(|n| &n.engines)
            .all(|e| *e.status().borrow() == Status::Idle && e.stats().pending == 0))
    }

    fn states(&self, i: usize) -> Result<Vec<(Key, crate::RecordState)>, String> {
        self.replica(i)?
            .collection(TODOS)
            .and_then(|c| c.states())
            .map_err(|e| e.to_string())
    }

    /// Every change ever made, from the feeds of all replicas.
    fn all_changes(&self) -> Result<BTreeMap<ChangeId, crate::Change>, String> {
        let mut all = BTreeMap::new();
        for i in 0..self.nodes.len() {
            for entry in self
                .replica(i)?
                .feed_after(0, usize::MAX)
                .map_err(|e| e.to_string())?
            {
                all.insert(entry.change.id, entry.change);
            }
        }
        Ok(all)
    }

    fn check_model(&self) -> Result<(), String> {
        let all = self.all_changes()?;
        let rule = crate::Rule::for_policy(
            &self.config.policy,
            &[Arc::new(MaxValue) as Arc<dyn crate::Resolver>],
        )?;
        // The documented rule, folded over the union of all changes.
        let mut by_key: BTreeMap<Key, Vec<&crate::Change>> = BTreeMap::new();
        for change in all.values().filter(|c| c.collection == TODOS) {
            by_key.entry(change.key.clone()).or_default().push(change);
        }
        let model: BTreeMap<Key, crate::RecordState> = by_key
            .into_iter()
            .filter_map(|(k, cs)| crate::merge_all(&rule, cs).map(|s| (k, s)))
            .collect();
        if self.config.policy == MergePolicy::Lww {
            // And, for last writer wins, an independent oracle: the greatest
            // version decides, a delete is a tombstone.
            for (key, state) in &model {
                let best = all
                    .values()
                    .filter(|c| c.collection == TODOS && c.key == *key)
                    .max_by_key(|c| c.version())
                    .ok_or("a record without changes")?;
                let value = match &best.op {
                    Op::Put(v) => Some(v),
                    _ => None,
                };
                if state.version != best.version() || state.value.as_ref() != value {
                    return Err(format!("merge_all disagrees with plain LWW on {key}"));
                }
            }
        }
        let conflicts0 = self
            .replica(0)?
            .collection(TODOS)
            .and_then(|c| c.conflicts())
            .map_err(|e| e.to_string())?;
        for i in 0..self.nodes.len() {
            let states = self.states(i)?;
            if states.len() != model.len() {
                return Err(format!(
                    "r{i} holds {} records, the model {}",
                    states.len(),
                    model.len()
                ));
            }
            for (key, state) in &states {
                let Some(expected) = model.get(key) else {
                    return Err(format!("r{i} holds {key} which no change made"));
                };
                if state != expected {
                    return Err(format!(
                        "r{i} holds {key} = {state:?}; the rule gives {expected:?}"
                    ));
                }
            }
            let conflicts = self
                .replica(i)?
                .collection(TODOS)
                .and_then(|c| c.conflicts())
                .map_err(|e| e.to_string())?;
            if conflicts != conflicts0 {
                return Err(format!(
                    "r{i} lists conflicts {conflicts:?}, r0 {conflicts0:?}"
                ));
            }
            // Every acknowledged write reached this replica, and nothing of
            // the local-only collection arrived from elsewhere.
            let feed = self
                .replica(i)?
                .feed_after(0, usize::MAX)
                .map_err(|e| e.to_string())?;
            let ids: BTreeSet<ChangeId> = feed.iter().map(|e| e.change.id).collect();
            if let Some(missing) = self
                .acked
                .iter()
                .filter(|id| all.get(id).is_some_and(|c| c.collection == TODOS))
                .find(|id| !ids.contains(id))
            {
                return Err(format!(
                    "acknowledged change {missing:?} never reached r{i}"
                ));
            }
            if let Some(e) = feed
                .iter()
                .find(|e| e.change.collection == DRAFTS && e.change.id.origin != self.nodes[i].id)
            {
                return Err(format!("local-only change {:?} reached r{i}", e.change.id));
            }
            // Own stamps strictly increase with the sequence number, across restarts.
            let mut own: Vec<_> = feed
                .iter()
                .filter(|e| e.change.id.origin == self.nodes[i].id)
                .map(|e| (e.change.id.seq, e.change.stamp))
                .collect();
            own.sort();
            if let Some(w) = own.windows(2).find(|w| w[1].1 <= w[0].1) {
                return Err(format!(
                    "r{i} stamped seq {} at {} after seq {} at {}",
                    w[1].0, w[1].1, w[0].0, w[0].1
                ));
            }
        }
        let missing = self.acked.iter().filter(|id| !all.contains_key(id)).count();
        if missing > 0 {
            return Err(format!("{missing} acknowledged changes are stored nowhere"));
        }
        Ok(())
    }
}

/// The id of simulated replica `i`.
fn replica_id(i: usize) -> ReplicaId {
    ReplicaId::from_bytes([i as u8 + 1; 16])
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

fn faults(level: u8) -> Faults {
    match level {
        0 => Faults::none(),
        1 => Faults::none()
            .with_latency(Duration::from_millis(1), Duration::from_millis(20))
            .with_drop_rate(0.05)
            .with_duplicate_rate(0.05)
            .with_reorder(true),
        _ => Faults::none()
            .with_latency(Duration::ZERO, Duration::from_millis(200))
            .with_drop_rate(0.3)
            .with_duplicate_rate(0.2)
            .with_reorder(true),
    }
}
