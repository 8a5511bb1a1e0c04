//! Settling and the checks run once a schedule is done: convergence,
//! agreement with the merge rule, acknowledged writes, own stamps,
//! local-only collections and termination.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use syncline_loopback::Faults;

use super::world::{DRAFTS, Sim, TODOS};
use super::{MaxValue, SimReport};
use crate::model::{ChangeId, Key, MergePolicy, Op};
use crate::sync::status::Status;

impl Sim<'_> {
    /// Heals the network, lets the engines settle, then checks everything.
    pub(super) async fn settle_and_check(&mut self, steps: usize) -> Result<SimReport, String> {
        let start = tokio::time::Instant::now();
        self.net.heal_all();
        self.net.set_faults(Faults::none());
        // Clocks are corrected, as NTP would. Stamps issued while a clock ran
        // ahead stay ahead and are accepted once real time catches up with
        // them, within the drift bound: allow a few minutes for that.
        for node in &self.nodes {
            node.clock.skew_ms.store(0, Ordering::SeqCst);
        }
        if self.config.rejections {
            self.check_and_discard_rejections().await?;
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
            let values: Vec<String> = (0..self.nodes.len())
                .map(|i| format!("r{i} {:?}", self.values(i)))
                .collect();
            if std::env::var_os("SYNCLINE_SIM_VALUES").is_some() {
                eprintln!("live values: {values:?}");
                for i in 0..self.nodes.len() {
                    let r = self.replica(i)?;
                    eprintln!("r{i} states {:?}", self.states(i));
                    eprintln!(
                        "r{i} collected {:?} stats {:?}",
                        r.collected(),
                        r.storage_stats().map(|s| s.peers)
                    );
                }
                for c in self.made.values() {
                    eprintln!("made {:?} {} {:?} {:?}", c.id, c.key, c.stamp, c.op);
                }
            }
            return Err(format!(
                "replicas did not settle within 300 simulated seconds after healing \
                 (record counts {states:?}, equal to r0 {same:?}, engines {engines:?})"
            ));
        }
        self.drain_watches()?;
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
        self.check_verify()?;
        Ok(SimReport {
            steps,
            changes: self.all_changes()?.len(),
            rounds: rounds_after,
            simulated_ms: start.elapsed().as_millis() as u64,
            network: self.net.stats(),
        })
    }

    /// Every engine idle with nothing pending, and the hub's feed still,
    /// twice in a row: all pushes judged, their refusals recorded.
    async fn wait_idle(&self) -> Result<(), String> {
        let mut last = None;
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let idle = self
                .nodes
                .iter()
                .flat_map(|n| &n.engines)
                .all(|e| *e.status().borrow() == Status::Idle && e.stats().pending == 0);
            let head = Some(self.replica(0)?.last_lsn());
            if idle && head == last {
                return Ok(());
            }
            last = if idle { head } else { None };
        }
        Err("engines did not go idle within 300 simulated seconds after healing".into())
    }

    /// The changes the hub refuses: every synced change of replica 1, and
    /// the validator's unlucky ones.
    pub(super) fn refused_ids(&self) -> BTreeSet<ChangeId> {
        let hub = self.nodes[0].id;
        let first = self.nodes.get(1).map(|n| n.id);
        // The hub refuses whole groups: what the replicas listed as
        // refused, besides each unlucky change itself.
        let mut out: BTreeSet<ChangeId> = self
            .made
            .values()
            .filter(|c| c.collection == TODOS && c.id.origin != hub)
            .filter(|c| Some(c.id.origin) == first || super::unlucky(self.config.seed, c.id))
            .map(|c| c.id)
            .collect();
        out.extend(self.listed_refused.iter().copied());
        out
    }

    /// Each refused group is listed once at its origin, and nothing else
    /// is; then every refusal is discarded (refusals of the compensating
    /// changes too) until none is left.
    async fn check_and_discard_rejections(&mut self) -> Result<(), String> {
        self.wait_idle().await?;
        let refused = self.refused_ids();
        let hub = self.replica(0)?.id();
        for i in 1..self.nodes.len() {
            let expected: BTreeSet<u64> = self
                .commits
                .iter()
                .filter(|c| c.replica == i && c.changes.iter().any(|(id, _)| refused.contains(id)))
                .map(|c| c.lsn)
                .collect();
            let listed: Vec<u64> = self
                .replica(i)?
                .rejected()
                .map_err(|e| e.to_string())?
                .iter()
                .map(|r| {
                    if r.remote == hub {
                        Ok(r.group)
                    } else {
                        Err(format!("r{i} lists a refusal by {}", r.remote))
                    }
                })
                .collect::<Result<_, String>>()?;
            let unique: BTreeSet<u64> = listed.iter().copied().collect();
            // A group whose refused changes a later local write superseded
            // before it was pushed (or before its verdict arrived) is gone
            // from the feed: the later write carries the record, and its
            // own refusal is listed.
            let replica = self.replica(i)?.clone();
            let todos = replica.collection(TODOS).map_err(|e| e.to_string())?;
            let mut superseded = BTreeSet::new();
            for c in self.commits.iter().filter(|c| c.replica == i) {
                if !expected.contains(&c.lsn) || unique.contains(&c.lsn) {
                    continue;
                }
                let mut all = true;
                for (id, _) in c.changes.iter().filter(|(id, _)| refused.contains(id)) {
                    let Some(change) = self.made.get(id) else {
                        all = false;
                        break;
                    };
                    let state = todos
                        .record(change.key.clone())
                        .map_err(|e| e.to_string())?;
                    all &= state.is_some_and(|s| s.version > change.version());
                }
                if all {
                    superseded.insert(c.lsn);
                }
            }
            let expected: BTreeSet<u64> = expected.difference(&superseded).copied().collect();
            if unique.len() != listed.len() || unique != expected {
                return Err(format!(
                    "r{i} lists refused groups {listed:?}; the hub refused {expected:?}"
                ));
            }
        }
        for round in 0.. {
            let mut any = false;
            for i in 1..self.nodes.len() {
                let replica = self.replica(i)?.clone();
                for r in replica.rejected().map_err(|e| e.to_string())? {
                    self.listed_refused.extend(r.changes.iter().map(|c| c.id));
                    // Compensating writes are changes too, for the model.
                    let mut watch = replica.watch();
                    replica
                        .discard_rejected(r.remote, r.group)
                        .map_err(|e| format!("discard on r{i}: {e}"))?;
                    self.drain_local(i, &mut watch)?;
                    any = true;
                }
            }
            if !any {
                return Ok(());
            }
            if round == 10 {
                return Err("refusals kept coming after ten rounds of discards".into());
            }
            // Push the compensating changes and collect their verdicts.
            for node in &self.nodes {
                for engine in &node.engines {
                    let _ = engine.sync_now().await;
                }
            }
            self.wait_idle().await?;
        }
        Ok(())
    }

    fn rounds(&self) -> u64 {
        self.nodes
            .iter()
            .flat_map(|n| &n.engines)
            .map(|e| e.stats().rounds)
            .sum()
    }

    /// Converged, every engine idle with nothing pending. With refusals,
    /// converged means the same live values: a compensating change the hub
    /// refused too (replica 1 writes nothing there) stays local, so the
    /// origin may hold other versions, and tombstones, of the same values.
    fn quiet(&self) -> Result<bool, String> {
        // With refusals or collection, replicas may differ in tombstones
        // (refused writes compensated, tombstones collected on the hub):
        // live values must agree.
        if self.config.rejections || self.config.collection {
            let first = self.values(0)?;
            for i in 1..self.nodes.len() {
                if self.values(i)? != first {
                    return Ok(false);
                }
            }
        } else {
            let first = self.states(0)?;
            for i in 1..self.nodes.len() {
                if self.states(i)? != first {
                    return Ok(false);
                }
            }
        }
        Ok(self
            .nodes
            .iter()
            .flat_map(|n| &n.engines)
            .all(|e| *e.status().borrow() == Status::Idle && e.stats().pending == 0))
    }

    /// The live records of replica `i`: key and value, no tombstones.
    fn values(&self, i: usize) -> Result<Vec<(Key, crate::Value)>, String> {
        self.replica(i)?
            .collection(TODOS)
            .and_then(|c| c.scan(crate::Scan::all()))
            .map_err(|e| e.to_string())
    }

    fn states(&self, i: usize) -> Result<Vec<(Key, crate::RecordState)>, String> {
        self.replica(i)?
            .collection(TODOS)
            .and_then(|c| c.states())
            .map_err(|e| e.to_string())
    }

    /// Every change ever made, as the replicas made them.
    fn all_changes(&self) -> Result<BTreeMap<ChangeId, crate::Change>, String> {
        Ok(self.made.clone())
    }

    /// Every open replica's records recompute from the changes they keep,
    /// and its feed matches them ([`crate::Replica::verify`]).
    fn check_verify(&self) -> Result<(), String> {
        for (i, node) in self.nodes.iter().enumerate() {
            let Ok(r) = self.replica(i) else { continue };
            let report = r.verify().map_err(|e| e.to_string())?;
            if let Some(first) = report.differences.first() {
                return Err(format!(
                    "{} does not verify: {} differences, the first: {first}",
                    node.name, report.total
                ));
            }
        }
        Ok(())
    }

    fn check_model(&self) -> Result<(), String> {
        let everything = self.all_changes()?;
        let mut all = everything.clone();
        let refused = if self.config.rejections {
            self.refused_ids()
        } else {
            BTreeSet::new()
        };
        if self.config.rejections {
            // The model is the changes the hub accepted; a refused change
            // lives only at its origin and never reached the hub.
            let hub: BTreeSet<ChangeId> = self
                .replica(0)?
                .feed_after(0, usize::MAX)
                .map_err(|e| e.to_string())?
                .iter()
                .map(|e| e.change.id)
                .collect();
            if let Some(id) = refused.iter().find(|id| hub.contains(id)) {
                return Err(format!("refused change {id:?} reached the hub"));
            }
            // The hub keeps what merge needs of what it accepted, which
            // merges to the same states as all it accepted.
            all.retain(|id, _| hub.contains(id));
        }
        let rule = crate::Rule::for_policy(
            &self.config.policy,
            &[Arc::new(MaxValue) as Arc<dyn crate::Resolver>],
        )
        .map_err(|e| e.to_string())?;
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
            if (self.config.rejections && i != 0) || self.config.collection {
                // The origin of refused changes holds them, and their
                // compensations, beside the hub's: compare live values.
                let values = self.values(i)?;
                let expected: Vec<(Key, crate::Value)> = model
                    .iter()
                    .filter_map(|(k, s)| s.value.clone().map(|v| (k.clone(), v)))
                    .collect();
                if values != expected {
                    return Err(format!(
                        "r{i} holds values {values:?}; the hub's changes give {expected:?}"
                    ));
                }
            } else {
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
            }
            // Every acknowledged write that decides its record reached this
            // replica (the rest are superseded there, which the state check
            // above covers), and nothing of the local-only collection
            // arrived from elsewhere.
            let feed = self
                .replica(i)?
                .feed_after(0, usize::MAX)
                .map_err(|e| e.to_string())?;
            let ids: BTreeSet<ChangeId> = feed.iter().map(|e| e.change.id).collect();
            if let Some(missing) = self
                .acked
                .iter()
                .filter(|id| !refused.contains(id))
                .filter_map(|id| all.get(id))
                .filter(|c| c.collection == TODOS)
                .filter(|c| model.get(&c.key).is_some_and(|s| s.version == c.version()))
                // With refusals, a replica whose write was refused writes
                // the accepted value back as its own change (the values
                // are compared above).
                .filter(|_| (!self.config.rejections || i == 0) && !self.config.collection)
                .map(|c| c.id)
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
        let missing = self
            .acked
            .iter()
            .filter(|id| !everything.contains_key(id))
            .count();
        if missing > 0 {
            return Err(format!("{missing} acknowledged changes are stored nowhere"));
        }
        Ok(())
    }
}
