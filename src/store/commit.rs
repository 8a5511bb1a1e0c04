//! The one commit path, and the commits made through it: local
//! transactions, remote batches, peer cursors, collection definitions.

use std::collections::BTreeMap;

use super::tables::{self, PeerState, RejectedBody};
use super::writer::{Outcome, Writer, next_id};
use super::{Limits, Store, WriteState, check_value};
use crate::clock::{Stamp, TimeSource};
use crate::error::{ApplyError, StorageError, WriteError};
use crate::merge::Rule;
use crate::model::{Change, ChangeId, CollectionConfig, Key, Op, ReplicaId};
use crate::value::Value;
use crate::watch::ChangeEvent;

/// One queued local write: an op on a record.
#[derive(Clone, Debug)]
pub(crate) struct LocalOp {
    /// The collection.
    pub(crate) collection: String,
    /// The record's key.
    pub(crate) key: Key,
    /// What to do; a patch on a record-level collection becomes a put.
    pub(crate) op: Op,
}

/// What [`crate::Replica::apply_remote`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Changes kept: each changed its record's state, or is a conflict.
    pub applied: usize,
    /// Changes merged that what the replica holds already supersedes (a
    /// newer write of the record saw them): nothing changed, and nothing
    /// keeps them but a collection's [`crate::History`].
    pub superseded: usize,
    /// Changes already held, skipped.
    pub duplicates: usize,
    /// Conflicts recorded: concurrent changes that lost.
    pub conflicts: usize,
    /// Records whose feed entry moved with changes held from before the
    /// batch (a winner that stayed, conflicts): the sender may lack some,
    /// so a sync engine pushes once more after such a batch.
    pub carried: usize,
    /// The lsn of the last change stored, or the previous last lsn if none was.
    pub last_lsn: u64,
}

/// Where a remote batch comes from, and what its commit does besides.
#[derive(Clone, Debug, Default)]
pub(crate) struct Received {
    /// The peer it came from.
    pub(crate) source: Option<ReplicaId>,
    /// The pull cursor to move for `source`, in the same commit.
    pub(crate) pulled: Option<Cursor>,
    /// The staged parts of `source` to drop, in the same commit (the batch
    /// completes a group sent in parts): their role.
    pub(crate) clear_staged: Option<u8>,
    /// Whether the commit must be on disk when it returns.
    pub(crate) durability: Durability,
}

/// A pull cursor a commit moves: of the whole link with a peer (`scope`
/// `None`, in `peers-1`), or of one scope (`scopes-3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// The peer's lsn pulled through.
    pub(crate) through: u64,
    /// The scope it is the cursor of.
    pub(crate) scope: Option<crate::model::Scope>,
}

impl Cursor {
    /// The cursor of the whole link.
    #[cfg(test)]
    pub(crate) fn whole(through: u64) -> Self {
        Self {
            through,
            scope: None,
        }
    }
}

/// When a commit reaches the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Before the commit returns (an fsync): local writes, pushes a
    /// server acknowledges, cursors and definitions.
    #[default]
    Immediate,
    /// With the next durable commit. Only for batches that can be fetched
    /// again: pulled batches, whose cursor commits with them, so a crash
    /// loses the batch and its cursor together and the pull repeats it.
    /// redb keeps such commits atomic and in order. Their feed entries
    /// are served to no peer before a durable commit ([`Store::ensure_durable`]).
    Deferred,
}

/// A group a peer refused, as a push's ack named it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Refused {
    /// The lsn that ends the group in this replica's feed.
    pub(crate) lsn: u64,
    /// The refusal code (a `RefusalCode` number).
    pub(crate) code: u16,
    /// The peer's reason.
    pub(crate) reason: String,
    /// The group's changes, as pushed.
    pub(crate) changes: Vec<Change>,
}

/// What a commit stored: the body's answer, the events to publish (built
/// only when someone listened), and the counters after it.
#[derive(Debug)]
pub(crate) struct Stored<T> {
    /// What the body returned.
    pub(crate) value: T,
    /// One event per change stored, in lsn order; empty when nobody listened.
    pub(crate) events: Vec<ChangeEvent>,
    /// The clock's high-water mark after the commit.
    pub(crate) clock: Stamp,
    /// The last lsn after the commit.
    pub(crate) lsn: u64,
}

/// The inside of one commit, handed to its body.
pub(crate) struct Commit<'txn> {
    /// The writer over the commit's transaction.
    pub(crate) writer: Writer<'txn>,
    /// The counters as the commit moves them; swapped in only if it succeeds.
    pub(crate) state: WriteState,
    /// Whether anyone listens for change events, asked under the write lock.
    pub(crate) listened: bool,
    /// The events of the changes stored, when someone listens.
    pub(crate) events: Vec<ChangeEvent>,
}

impl Store {
    /// The one commit path: locks the counters, clones them, begins a
    /// write transaction with `durability`, runs `body` through its
    /// [`Writer`], writes the commit's feed group, moves the cursors of
    /// `source` (when a peer sent the batch; `pulled` is its feed position
    /// the batch reaches), commits, and only then swaps the counters in
    /// (a durable commit also moves `durable` to the last lsn). Any error before the
    /// commit drops the transaction: nothing is stored and the counters do
    /// not move.
    ///
    /// `listening` is asked under the lock, which subscribing to events
    /// takes too: a commit either builds events for a new listener or is
    /// already visible to it (events are published after the commit).
    pub(crate) fn commit<T, E>(
        &self,
        source: Option<ReplicaId>,
        pulled: Option<&Cursor>,
        durability: Durability,
        listening: &dyn Fn() -> bool,
        body: impl FnOnce(&mut Commit<'_>) -> Result<T, E>,
    ) -> Result<Stored<T>, E>
    where
        E: From<StorageError>,
    {
        let started = std::time::Instant::now();
        let mut guard = self.lock();
        let before = guard.lsn;
        let txn = self.begin_write(durability)?;
        let origins = self.origins.read().unwrap_or_else(|p| p.into_inner());
        let (value, state, events, added) = {
            let mut commit = Commit {
                writer: Writer::open(&txn, &origins, guard.lsn)?,
                state: guard.clone(),
                listened: listening(),
                events: Vec::new(),
            };
            let value = body(&mut commit)?;
            let Commit {
                mut writer,
                state,
                events,
                ..
            } = commit;
            // The records that moved are one group.
            writer.finish(&state)?;
            if let Some(peer) = source {
                let after = state.lsn;
                if let Some(Cursor {
                    through,
                    scope: Some(scope),
                }) = pulled
                {
                    writer.move_scope_cursor(peer, scope, *through)?;
                }
                if let Some(Cursor {
                    through,
                    scope: None,
                }) = pulled
                {
                    writer.relay(peer, *through, after)?;
                }
                writer.update_peer(peer, |p| {
                    if let Some(Cursor {
                        through,
                        scope: None,
                    }) = pulled
                    {
                        p.pulled = p.pulled.max(*through);
                    }
                    // Everything this batch added came from `peer` and never
                    // needs pushing back: if nothing was pending for it
                    // before, nothing is now.
                    if p.pushed >= before {
                        p.pushed = after;
                    }
                })?;
            }
            let added = writer.take_added();
            (value, state, events, added)
        };
        drop(origins);
        commit_txn(txn)?;
        crate::metrics::committed(started, durability == Durability::Immediate);
        if !added.is_empty() {
            let mut origins = self.origins.write().unwrap_or_else(|p| p.into_inner());
            for id in added {
                origins.push(id);
            }
        }
        let mut state = state;
        if durability == Durability::Immediate {
            // On disk, and with it every deferred commit before it.
            state.durable = state.lsn;
        }
        let stored = Stored {
            value,
            events,
            clock: state.hlc.last(),
            lsn: state.lsn,
        };
        *guard = state;
        Ok(stored)
    }

    /// Makes every commit so far durable: an empty write transaction
    /// committed with [`Durability::Immediate`], which redb writes out with
    /// the deferred commits before it.
    pub(crate) fn flush(&self) -> Result<(), StorageError> {
        self.commit(None, None, Durability::Immediate, &|| false, |_| {
            Ok::<_, StorageError>(())
        })
        .map(drop)
    }

    /// Flushes when the feed holds entries a crash could still take back
    /// (stored by deferred commits): called before the feed is served to
    /// a peer, which must never see an lsn that could later name another
    /// change.
    pub(crate) fn ensure_durable(&self) -> Result<(), StorageError> {
        let pending = {
            let state = self.lock();
            state.lsn > state.durable
        };
        if pending { self.flush() } else { Ok(()) }
    }

    /// Stores a validated local transaction (`rules` from
    /// [`super::validate::check_local`]): each write gets its own change,
    /// id and stamp, made on top of the newest change of its record held
    /// here. Returns the ids in order and the conflicts recorded.
    pub(crate) fn write_local(
        &self,
        limits: &Limits,
        time: &dyn TimeSource,
        ops: Vec<LocalOp>,
        rules: Vec<Rule>,
        listening: &dyn Fn() -> bool,
    ) -> Result<Stored<(Vec<ChangeId>, usize)>, WriteError> {
        if ops.is_empty() {
            // Nothing to store: no transaction, no fsync.
            let state = self.lock();
            return Ok(Stored {
                value: (Vec::new(), 0),
                events: Vec::new(),
                clock: state.hlc.last(),
                lsn: state.lsn,
            });
        }
        self.commit(None, None, Durability::Immediate, listening, |c| {
            let now = time.now_millis();
            if c.listened {
                c.events.reserve(ops.len());
            }
            let mut ids = Vec::with_capacity(ops.len());
            let mut conflict_count = 0;
            for (
                LocalOp {
                    collection,
                    key,
                    op,
                },
                rule,
            ) in ops.into_iter().zip(rules)
            {
                let row = c.writer.row(&collection, &key)?;
                let current = row.as_ref().map(|r| c.writer.state_of(r)).transpose()?;
                let op = match op {
                    // A patch on a record-level collection is a
                    // read-modify-write that stores a put of the whole map.
                    Op::Patch(fields) if rule.is_record_level() => {
                        let mut map = match current.as_ref().and_then(|r| r.value.clone()) {
                            Some(Value::Map(map)) => map,
                            None => BTreeMap::new(),
                            Some(_) => return Err(WriteError::NotAMap),
                        };
                        map.extend(fields);
                        let op = Op::Put(Value::Map(map));
                        check_value::<WriteError>(limits, &op)?;
                        op
                    }
                    op => op,
                };
                // Made on top of the newest change of the record held here:
                // the row's version under last-writer-wins policies, where
                // it has the greatest stamp; a lookup otherwise.
                let base = match (&rule, &row) {
                    (_, None) => Stamp::ZERO,
                    (Rule::Lww | Rule::FieldLww, Some(r)) => r.version.stamp,
                    (_, Some(r)) => c.writer.latest_stamp(&collection, &key, r)?,
                };
                let stamp = c.state.hlc.tick(now);
                // A purge is made on top of everything up to itself.
                let base = if matches!(op, Op::Purge) { stamp } else { base };
                let change = Change {
                    id: next_id(self.id, &mut c.state),
                    collection,
                    key,
                    stamp,
                    base,
                    op,
                };
                let Outcome::Stored { lsn, conflicts, .. } =
                    c.writer
                        .store_fresh(&mut c.state, &rule, &change, row, now)?
                else {
                    // Only a stamp issued twice could get here: a clock bug.
                    return Err(StorageError::Invalid {
                        table: "records-3",
                        reason: crate::error::Inconsistency::StampReused,
                    }
                    .into());
                };
                conflict_count += conflicts;
                ids.push(change.id);
                if c.listened {
                    c.events.push(ChangeEvent {
                        lsn,
                        change,
                        source: None,
                    });
                }
            }
            Ok((ids, conflict_count))
        })
    }

    /// Stores a validated remote batch (`rules` from
    /// [`super::validate::check_remote`]) from `source`, as one group,
    /// moving the cursors kept for `source` in the same commit. Every stamp
    /// is checked against the drift bound first, under the lock; duplicates
    /// are skipped; a forged duplicate refuses the batch. The report's
    /// `last_lsn` is the lsn after the commit.
    pub(crate) fn apply_remote(
        &self,
        time: &dyn TimeSource,
        received: Received,
        changes: &[Change],
        rules: Vec<Rule>,
        listening: &dyn Fn() -> bool,
    ) -> Result<Stored<ApplyReport>, ApplyError> {
        let Received {
            source,
            pulled,
            clear_staged,
            durability,
        } = received;
        let mut stored = self.commit(source, pulled.as_ref(), durability, listening, |c| {
            // A group applied whole with its last part: its staged parts go
            // in the same commit.
            if let (Some(role), Some(peer)) = (clear_staged, source) {
                c.writer.clear_staged(role, peer)?;
            }
            let now = time.now_millis();
            for change in changes {
                c.state.hlc.check(change.stamp, now)?;
            }
            let mut report = ApplyReport::default();
            for (change, rule) in changes.iter().zip(&rules) {
                match c.writer.store(&mut c.state, rule, change, source, now)? {
                    Outcome::Stored {
                        lsn,
                        conflicts,
                        carried,
                    } => {
                        report.applied += 1;
                        report.conflicts += conflicts;
                        report.carried += usize::from(carried);
                        if c.listened {
                            c.events.push(ChangeEvent {
                                lsn,
                                change: change.clone(),
                                source,
                            });
                        }
                    }
                    Outcome::Superseded => report.superseded += 1,
                    Outcome::Duplicate => report.duplicates += 1,
                    Outcome::Conflicting => {
                        return Err(ApplyError::ConflictingDuplicate { id: change.id });
                    }
                    Outcome::BeyondHorizon => {
                        return Err(ApplyError::BeyondHorizon { id: change.id });
                    }
                }
                c.state.hlc.observe(change.stamp);
                if change.id.origin == self.id {
                    // Our own change coming back (say, after a restore from an
                    // old backup): never reuse its sequence number.
                    c.state.seq = c.state.seq.max(change.id.seq);
                }
            }
            Ok(report)
        })?;
        stored.value.last_lsn = stored.lsn;
        Ok(stored)
    }

    /// Stages part `index` of `transfer` from (`role`, `peer`), durably, if
    /// it is the next one; returns how many parts are staged.
    pub(crate) fn stage(
        &self,
        role: u8,
        peer: ReplicaId,
        transfer: u64,
        index: u32,
        changes: &[Change],
    ) -> Result<u32, StorageError> {
        self.commit(None, None, Durability::Immediate, &|| false, |c| {
            c.writer.stage(role, peer, transfer, index, changes)
        })
        .map(|stored| stored.value)
    }

    /// Drops every staged part of (`role`, `peer`).
    pub(crate) fn clear_staged(&self, role: u8, peer: ReplicaId) -> Result<(), StorageError> {
        self.commit(None, None, Durability::Immediate, &|| false, |c| {
            c.writer.clear_staged(role, peer)
        })
        .map(drop)
    }

    /// Records that `peer` acknowledged holding this replica's feed through
    /// `pushed`, heard from at `now_ms`.
    pub(crate) fn record_pushed(
        &self,
        peer: ReplicaId,
        pushed: u64,
        now_ms: u64,
        refused: &[Refused],
        wanted: &dyn Fn(&str, &Key) -> bool,
    ) -> Result<(), StorageError> {
        self.commit(None, None, Durability::Immediate, &|| false, |c| {
            // The refused groups move aside in the same commit as the
            // cursor that goes past them.
            for r in refused {
                let changes = r
                    .changes
                    .iter()
                    .filter(|c| wanted(&c.collection, &c.key))
                    .cloned()
                    .collect();
                let body = RejectedBody {
                    code: r.code,
                    reason: r.reason.clone(),
                    at_ms: now_ms,
                    changes,
                    discarded: false,
                };
                c.writer.put_rejected(peer, r.lsn, &body)?;
            }
            // Entries right after the acknowledged ones that came from the
            // peer itself never need pushing: step over them too, so that
            // nothing counts as pending when nothing is.
            let through = c.writer.pushed_through(peer, pushed)?;
            // What the acknowledged local writes replaced is no longer
            // needed to undo them (refused ones keep it for a discard).
            let refused_records: std::collections::BTreeSet<Vec<u8>> = refused
                .iter()
                .flat_map(|r| &r.changes)
                .map(|c| super::keys::record(&c.collection, c.key.as_bytes()))
                .collect();
            let before = c.writer.peer(peer)?.pushed;
            c.writer.settle(before, through, &refused_records)?;
            c.writer.update_peer(peer, |p: &mut PeerState| {
                p.pushed = p.pushed.max(through);
                p.last_seen_ms = now_ms;
            })
        })
        .map(drop)
    }

    /// Puts the changes of a group `peer` refused back in the feed, so that
    /// they are pushed again, and forgets the refusal. False when there is
    /// no such refusal (or it was discarded).
    pub(crate) fn retry_rejected(&self, peer: ReplicaId, lsn: u64) -> Result<bool, StorageError> {
        self.commit(None, None, Durability::Immediate, &|| false, |c| {
            let Some(body) = c.writer.take_rejected(peer, lsn)? else {
                return Ok(false);
            };
            if body.discarded {
                c.writer.put_rejected(peer, lsn, &body)?;
                return Ok(false);
            }
            c.writer.refeed(&mut c.state, &body.changes)?;
            Ok(true)
        })
        .map(|stored| stored.value)
    }

    /// Marks a group `peer` refused as discarded. False when there is no
    /// such refusal.
    pub(crate) fn mark_discarded(&self, peer: ReplicaId, lsn: u64) -> Result<bool, StorageError> {
        self.commit(None, None, Durability::Immediate, &|| false, |c| {
            let Some(mut body) = c.writer.take_rejected(peer, lsn)? else {
                return Ok(false);
            };
            body.discarded = true;
            c.writer.put_rejected(peer, lsn, &body)?;
            Ok(true)
        })
        .map(|stored| stored.value)
    }

    /// Bootstraps the synced `collections` again from `remote`, in one
    /// durable commit: notes the records whose local write no push has
    /// settled, empties the collections, writes each noted record again as
    /// a new local write (a put of its value, or a delete), and sets the
    /// pull cursor kept for `remote` to 0. Returns the records written
    /// again, in order.
    pub(crate) fn resync(
        &self,
        time: &dyn TimeSource,
        remote: ReplicaId,
        collections: &[(String, Rule)],
        listening: &dyn Fn() -> bool,
    ) -> Result<Stored<Vec<(String, Key)>>, StorageError> {
        self.commit(None, None, Durability::Immediate, listening, |c| {
            let now = time.now_millis();
            let mut again = Vec::new();
            for (collection, rule) in collections {
                for (key, value) in c.writer.wipe(collection)? {
                    again.push((collection.clone(), rule.clone(), key, value));
                }
            }
            let mut out = Vec::with_capacity(again.len());
            for (collection, rule, key, value) in again {
                let op = match value {
                    // An automerge record's value is its changes: written
                    // again as one change that carries them all.
                    #[cfg(feature = "automerge")]
                    Some(Value::Bytes(bytes)) if matches!(rule, Rule::Automerge) => {
                        Op::Automerge(bytes)
                    }
                    Some(value) => Op::Put(value),
                    None => Op::Delete,
                };
                let change = Change {
                    id: next_id(self.id, &mut c.state),
                    collection,
                    key,
                    stamp: c.state.hlc.tick(now),
                    base: Stamp::ZERO,
                    op,
                };
                if let Outcome::Stored { lsn, .. } =
                    c.writer
                        .store_fresh(&mut c.state, &rule, &change, None, now)?
                    && c.listened
                {
                    c.events.push(ChangeEvent {
                        lsn,
                        change: change.clone(),
                        source: None,
                    });
                }
                out.push((change.collection, change.key));
            }
            c.writer.update_peer(remote, |p| p.pulled = 0)?;
            c.writer.drop_scope_cursors(remote)?;
            Ok(out)
        })
    }

    /// Drops `scope` for `remote` (see `Writer::evict`), durably, if its
    /// cursor is stored: the records in it that no scope of `keep` covers,
    /// and the cursor. Returns how many records went (0 for a scope never
    /// pulled: nothing of it came from `remote`).
    pub(crate) fn drop_scope(
        &self,
        remote: ReplicaId,
        scope: &crate::model::Scope,
        keep: &[crate::model::Scope],
    ) -> Result<u64, StorageError> {
        self.commit(None, None, Durability::Immediate, &|| false, |c| {
            if c.writer.scope_cursor(remote, scope)?.is_none() {
                return Ok(0);
            }
            let kept = |key: &Key| keep.iter().any(|k| k.contains(&scope.collection, key));
            let dropped = c.writer.evict(&scope.collection, &scope.prefix, &kept)?;
            c.writer.drop_scope_cursor(remote, scope)?;
            Ok(dropped)
        })
        .map(|stored| stored.value)
    }

    /// Takes the pull cursors `via`'s relayed cursors prove (see
    /// `Writer::adopt_relayed`), durably. Returns how many moved.
    pub(crate) fn adopt_relayed(
        &self,
        via: ReplicaId,
        relayed: &[(ReplicaId, u64, u64)],
        scopes: &[crate::model::Scope],
    ) -> Result<usize, StorageError> {
        self.commit(None, None, Durability::Immediate, &|| false, |c| {
            c.writer.adopt_relayed(self.id, via, relayed, scopes)
        })
        .map(|stored| stored.value)
    }

    /// Collects the tombstones stamped below `cutoff` (see
    /// [`Writer::collect`]), durably. Returns how many records went.
    pub(crate) fn collect_tombstones(&self, cutoff: Stamp) -> Result<u64, StorageError> {
        self.commit(None, None, Durability::Immediate, &|| false, |c| {
            c.writer.collect(&mut c.state, cutoff)
        })
        .map(|stored| stored.value)
    }

    /// Records where callers of this replica's server pulled from, and
    /// when (each entry replaces the caller's earlier one).
    pub(crate) fn record_served(
        &self,
        served: &[(ReplicaId, tables::ServedState)],
    ) -> Result<(), StorageError> {
        self.commit(None, None, Durability::Immediate, &|| false, |c| {
            c.writer.record_served(served)
        })
        .map(drop)
    }

    /// The collection marks: the stamp below which tombstones are
    /// collected, and the greatest lsn a collection removed.
    pub(crate) fn collected(&self) -> (Stamp, u64) {
        let state = self.lock();
        (state.collected, state.collected_lsn)
    }

    /// Stores a collection's definition.
    pub(crate) fn define_collection(
        &self,
        name: &str,
        config: &CollectionConfig,
    ) -> Result<(), StorageError> {
        self.commit(None, None, Durability::Immediate, &|| false, |c| {
            c.writer.define_collection(name, config)
        })
        .map(drop)
    }
}

/// Commits a write transaction (with the durability [`Store::commit`] began it with).
fn commit_txn(txn: redb::WriteTransaction) -> Result<(), StorageError> {
    Ok(txn.commit()?)
}
