//! The simulated world: replicas with skewable clocks on a loopback network,
//! started, killed and driven through the steps of a schedule.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use syncline_loopback::{Faults, LoopbackNetwork, LoopbackServer};
use syncline_transport::{Connector, Limits};

use super::{MaxValue, SimConfig, Step, Topology, Unlucky, replica_id};
use crate::access::{Collections, Permissions, Tokens};
use crate::clock::{Stamp, TimeSource};
use crate::model::{ChangeId, CollectionConfig, MergePolicy, ReplicaId};
use crate::replica::{Replica, ReplicaConfig};
use crate::sync::config::SyncConfig;
use crate::sync::engine::SyncEngine;
use crate::sync::server::{ServerConfig, SyncServer};
use crate::value::Value;

/// A temporary directory removed on drop (no dependency on `tempfile`).
pub(super) struct TempDir(pub(super) PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn tempfile_dir() -> Result<TempDir, String> {
    let path = std::env::temp_dir().join(format!("syncline-sim-{}", ReplicaId::random()));
    std::fs::create_dir_all(&path).map_err(|e| format!("temp dir: {e}"))?;
    Ok(TempDir(path))
}

/// Wall time of one simulated replica: the paused tokio clock plus a skew.
#[derive(Debug)]
pub(super) struct SimClock {
    start: tokio::time::Instant,
    pub(super) skew_ms: AtomicI64,
    /// Jumps ahead every clock made (`Step::Jump`); never undone.
    pub(super) jump_ms: AtomicI64,
}

/// The simulated epoch: 2026-01-01.
const BASE_MS: u64 = 1_767_225_600_000;

impl TimeSource for SimClock {
    fn now_millis(&self) -> u64 {
        let elapsed = self.start.elapsed().as_millis() as i64;
        (BASE_MS as i64
            + elapsed
            + self.skew_ms.load(Ordering::SeqCst)
            + self.jump_ms.load(Ordering::SeqCst))
        .max(0) as u64
    }
}

pub(super) struct Node {
    pub(super) name: String,
    pub(super) id: ReplicaId,
    pub(super) clock: Arc<SimClock>,
    replica: Option<Replica>,
    server: Option<LoopbackServer>,
    pub(super) engines: Vec<SyncEngine>,
    /// Every change committed on the replica, engines' included (a resync
    /// writes local changes): tombstone collection runs only.
    watch: Option<crate::Watch>,
}

pub(super) struct Sim<'a> {
    pub(super) config: &'a SimConfig,
    dir: Option<&'a Path>,
    pub(super) net: LoopbackNetwork,
    pub(super) nodes: Vec<Node>,
    /// Ids of the local writes that were acknowledged (committed).
    pub(super) acked: Vec<ChangeId>,
    /// Every change made, as made: replicas keep only what merge needs,
    /// so the model keeps the rest.
    pub(super) made: std::collections::BTreeMap<ChangeId, crate::Change>,
    /// Every change a replica listed as refused by the hub.
    pub(super) listed_refused: std::collections::BTreeSet<ChangeId>,
    /// Every local commit.
    pub(super) commits: Vec<SimCommit>,
    /// Per replica, the last stamp it issued for its own changes.
    last_own: Vec<Stamp>,
    engine_seq: u64,
}

/// A local commit of the schedule.
pub(super) struct SimCommit {
    /// The replica.
    pub(super) replica: usize,
    /// The lsn that ends its group.
    pub(super) lsn: u64,
    /// Its changes, with their collections.
    pub(super) changes: Vec<(ChangeId, String)>,
}

pub(super) const TODOS: &str = "todos";
pub(super) const DRAFTS: &str = "drafts";

impl<'a> Sim<'a> {
    pub(super) async fn new(config: &'a SimConfig, dir: Option<&'a Path>) -> Result<Self, String> {
        let net = LoopbackNetwork::new(config.seed);
        let start = tokio::time::Instant::now();
        let nodes = (0..config.replicas)
            .map(|i| Node {
                name: format!("r{i}"),
                id: replica_id(i),
                clock: Arc::new(SimClock {
                    start,
                    skew_ms: AtomicI64::new(0),
                    jump_ms: AtomicI64::new(0),
                }),
                replica: None,
                server: None,
                engines: Vec::new(),
                watch: None,
            })
            .collect();
        let mut sim = Self {
            config,
            dir,
            net,
            nodes,
            acked: Vec::new(),
            made: std::collections::BTreeMap::new(),
            listed_refused: std::collections::BTreeSet::new(),
            commits: Vec::new(),
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
            Topology::Hubs(h) if i < h => (i + 1..h.min(n)).collect(),
            // A client reaches every hub, through one failover engine.
            Topology::Hubs(h) => (0..h.min(n)).collect(),
        }
    }

    /// Whether node `i` is a client that fails over among hubs.
    fn fails_over(&self, i: usize) -> bool {
        matches!(self.config.topology, Topology::Hubs(h) if i >= h)
    }

    fn serves(&self, i: usize) -> bool {
        (0..self.config.replicas).any(|j| self.remotes(j).contains(&i))
    }

    async fn start_node(&mut self, i: usize) -> Result<(), String> {
        let node = &self.nodes[i];
        let config = ReplicaConfig {
            replica_id: Some(node.id),
            time: node.clock.clone(),
            // Large enough that the events of a step never lag (the watch
            // of a tombstone collection run reads them after each step).
            watch_capacity: 1 << 16,
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
            let mut server = SyncServer::new(replica.clone())
                .with_config(ServerConfig {
                    max_pull_changes: 5,
                    tombstone_horizon: if self.config.collection {
                        Some(Duration::from_secs(24 * 3600))
                    } else {
                        None
                    },
                    collect_every: Duration::from_secs(1),
                    ..ServerConfig::default()
                })
                .inline();
            if self.config.rejections {
                // Replica 1 may read everything and write nothing.
                let mut tokens = Tokens::new();
                for j in 0..self.config.replicas {
                    let permissions = if j == 1 {
                        Permissions {
                            read: Collections::All,
                            write: Collections::none(),
                        }
                    } else {
                        Permissions::all()
                    };
                    tokens = tokens.with_token(format!("r{j}"), format!("r{j}"), permissions);
                }
                server = server
                    .with_access(tokens)
                    .with_validator(TODOS, Unlucky(self.config.seed));
            }
            let service = server.into_service();
            Some(
                self.net
                    .serve(&self.nodes[i].name, service, Limits::default())
                    .map_err(|e| format!("serve: {e}"))?,
            )
        } else {
            None
        };
        let mut engines = Vec::new();
        let remotes = self.remotes(i);
        let failover = self.fails_over(i) && !remotes.is_empty();
        let targets = if failover {
            vec![remotes[0]]
        } else {
            remotes.clone()
        };
        for j in targets {
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
                token: self.config.rejections.then(|| format!("r{i}")),
                ..SyncConfig::default()
            };
            let connector: Arc<dyn Connector> = if failover {
                // Its own hub first, then the others in turn.
                let first = i % remotes.len();
                let connectors = (0..remotes.len())
                    .map(|k| {
                        let hub = remotes[(first + k) % remotes.len()];
                        self.net
                            .connector(&self.nodes[i].name, &self.nodes[hub].name)
                    })
                    .collect();
                Arc::new(crate::Failover::new(connectors))
            } else {
                self.net.connector(&self.nodes[i].name, &self.nodes[j].name)
            };
            engines.push(SyncEngine::start_inline(replica.clone(), connector, config));
        }
        let node = &mut self.nodes[i];
        node.watch = self.config.collection.then(|| replica.watch());
        node.replica = Some(replica);
        node.server = server;
        node.engines = engines;
        Ok(())
    }

    /// Records every local change the replicas' watches saw (tombstone
    /// collection runs: a resync writes local changes inside an engine).
    pub(super) fn drain_watches(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            let id = self.nodes[i].id;
            let Some(watch) = self.nodes[i].watch.as_mut() else {
                continue;
            };
            while let Some(event) = watch.try_recv().map_err(|e| format!("r{i}: {e}"))? {
                if event.source.is_none() && event.change.id.origin == id {
                    self.made.insert(event.change.id, event.change.clone());
                }
            }
        }
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
        let _ = self.drain_watches();
        let node = &mut self.nodes[i];
        node.watch = None;
        node.replica = None;
        // Let tasks of the killed instance run to their end and drop their handles.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    pub(super) fn replica(&self, i: usize) -> Result<&Replica, String> {
        self.nodes[i]
            .replica
            .as_ref()
            .ok_or_else(|| format!("replica {i} is not open"))
    }

    pub(super) async fn step(&mut self, step: &Step) -> Result<(), String> {
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
            Step::Purge { replica, key } => {
                let mut txn = self.replica(*replica)?.transaction();
                txn.purge(TODOS, format!("k{key}"));
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
            Step::Jump { hours } => {
                for node in &self.nodes {
                    node.clock
                        .jump_ms
                        .fetch_add((*hours * 3600 * 1000) as i64, Ordering::SeqCst);
                }
            }
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
        let mut watch = replica.watch();
        replica
            .collection(TODOS)
            .map_err(|e| e.to_string())?
            .automerge_change(format!("k{key}"), |doc| doc.put(ROOT, field, value))
            .map_err(|e| format!("automerge write on r{i}: {e}"))?;
        // Nothing else runs during a step: the new events are this write.
        for change in self.drain_local(i, &mut watch)? {
            if change.stamp <= self.last_own[i] {
                return Err(format!(
                    "r{i} issued stamp {} after {}",
                    change.stamp, self.last_own[i]
                ));
            }
            self.last_own[i] = change.stamp;
            self.acked.push(change.id);
        }
        Ok(())
    }

    /// The changes replica `i` made since `watch` began, recorded in `made`.
    pub(super) fn drain_local(
        &mut self,
        i: usize,
        watch: &mut crate::Watch,
    ) -> Result<Vec<crate::Change>, String> {
        let id = self.nodes[i].id;
        let mut out = Vec::new();
        while let Some(event) = watch.try_recv().map_err(|e| e.to_string())? {
            if event.source.is_none() && event.change.id.origin == id {
                self.made.insert(event.change.id, event.change.clone());
                out.push(event.change.clone());
            }
        }
        Ok(out)
    }

    fn commit(&mut self, i: usize, txn: crate::Transaction) -> Result<(), String> {
        let collections = txn.collections();
        let mut watch = self.replica(i)?.watch();
        let committed = txn
            .commit()
            .map_err(|e| format!("local write on r{i}: {e}"))?;
        self.drain_local(i, &mut watch)?;
        self.commits.push(SimCommit {
            replica: i,
            lsn: committed.lsn,
            changes: committed.ids.iter().copied().zip(collections).collect(),
        });
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
