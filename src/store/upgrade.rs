//! Upgrades of replica files written by older formats ([`super::tables`]).

use std::collections::{BTreeMap, HashMap};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
    WriteTransaction,
};

use super::keys;
use super::rows::Origins;
use super::tables::v2::{CHANGES, CONFLICTS, FEED, FeedGroup, FeedItem, RECORDS};
use super::tables::{
    self, COLLECTIONS, FeedRow, GroupInfo, Kept, LOG, LogBody, META, ORIGINS, REJECTED, RecordRow,
    RejectedBody, StoredVersion, v1, v2,
};
use crate::clock::Stamp;
use crate::codec;
use crate::error::StorageError;
use crate::merge::RecordState;
use crate::model::{
    Change, ChangeId, CollectionConfig, History, Key, MergePolicy, ReplicaId, Version,
};

/// Format 1 to 2, in one durable transaction (opening goes on to format 3): the change log, records and
/// conflicts move to flat keys (the values are the same bytes), the feed to
/// one entry per group, and the id index goes.
pub(crate) fn from_1(db: &Database) -> Result<(), StorageError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    rekey_log(&txn, v1::CHANGES, CHANGES)?;
    rekey_log(&txn, v1::CONFLICTS, CONFLICTS)?;
    {
        let old = txn.open_table(v1::RECORDS)?;
        let mut new = txn.open_table(RECORDS)?;
        for entry in old.iter()? {
            let (k, v) = entry?;
            let (collection, key) = k.value();
            new.insert(keys::record(collection, key).as_slice(), v.value())?;
        }
    }
    regroup_feed(&txn)?;
    txn.open_table(META)?
        .insert("format", 2u32.to_le_bytes().as_slice())?;
    txn.delete_table(v1::FEED)?;
    txn.delete_table(v1::CHANGES)?;
    txn.delete_table(v1::CONFLICTS)?;
    txn.delete_table(v1::RECORDS)?;
    txn.delete_table(v1::IDS)?;
    txn.commit()?;
    tracing::info!("upgraded the replica file from format 1 to 2");
    Ok(())
}

/// Copies a table keyed by format 1 log keys into one keyed by flat log keys.
fn rekey_log(
    txn: &WriteTransaction,
    old: TableDefinition<'_, v1::LogKey, &[u8]>,
    new: TableDefinition<'_, &[u8], &[u8]>,
) -> Result<(), StorageError> {
    let old = txn.open_table(old)?;
    let mut new = txn.open_table(new)?;
    for entry in old.iter()? {
        let (k, v) = entry?;
        let (collection, key, stamp, origin) = k.value();
        new.insert(
            keys::v2::log(collection, key, stamp, origin).as_slice(),
            v.value(),
        )?;
    }
    Ok(())
}

/// One `feed-1` entry per change becomes one `feed-2` entry per group. A
/// group is cut where `group_end` says, where its source changes (never the
/// case in files format 1 wrote), and after the last entry. Format 1 kept
/// the counters in meta only, and they stay there; a migrated group carries
/// the greatest stamp so far.
fn regroup_feed(txn: &WriteTransaction) -> Result<(), StorageError> {
    let old = txn.open_table(v1::FEED)?;
    let mut new = txn.open_table(FEED)?;
    let mut group = FeedGroup {
        clock: Stamp::ZERO,
        seq: 0,
        source: None,
        entries: Vec::new(),
    };
    let mut last = 0;
    let mut flush = |group: &mut FeedGroup, last: u64| -> Result<(), StorageError> {
        if !group.entries.is_empty() {
            new.insert(last, codec::encode(&*group).as_slice())?;
            group.entries.clear();
        }
        Ok(())
    };
    for entry in old.iter()? {
        let (lsn, bytes) = entry?;
        let rec: v1::FeedRecord = tables::decode(v1::FEED.name(), bytes.value())?;
        if rec.source != group.source {
            flush(&mut group, last)?;
            group.source = rec.source;
        }
        last = lsn.value();
        group.clock = group.clock.max(rec.stamp);
        group.entries.push(FeedItem {
            log_key: Key::new(keys::v2::log(
                &rec.collection,
                rec.key.as_bytes(),
                rec.stamp.as_u64(),
                rec.id.origin.as_bytes(),
            )),
        });
        if rec.group_end {
            flush(&mut group, last)?;
        }
    }
    flush(&mut group, last)
}

/// How a policy keeps its changes in format 3 (see the writer).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// The row holds the winner; the log, conflicts and the `seen` setter.
    Record,
    /// The log holds the greatest version, field winners, the newest
    /// delete and the `seen` setter.
    Field,
    /// The log holds every change.
    All,
}

/// A format 2 change read back, with the peer it came from.
struct Old {
    version: Version,
    base: Stamp,
    op: crate::model::Op,
    source: Option<ReplicaId>,
}

/// Format 2 to 3, in one durable transaction: records keep their merged
/// state and take their winning change into the row; the log keeps what
/// merge needs (the same changes a format 3 replica would keep); the feed
/// keeps one entry per record at its latest lsn, inside its old group, with
/// markers for the rest of a group that still has an entry; origins get
/// numbers; refused groups keep their changes. Lsns do not change, so every
/// peer's cursor stays exact.
pub(crate) fn from_2(db: &Database) -> Result<(), StorageError> {
    let id = {
        let read = db.begin_read()?;
        let meta = read.open_table(META)?;
        let bytes = meta
            .get("replica")?
            .and_then(|g| <[u8; 16]>::try_from(g.value()).ok())
            .ok_or(StorageError::Invalid {
                table: META.name(),
                reason: crate::error::Inconsistency::MetaEntryLength { name: "replica" },
            })?;
        ReplicaId::from_bytes(bytes)
    };
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    let mut origins = Origins::default();
    origins.push(id);
    let number = |origins: &mut Origins, id: ReplicaId| match origins.number(id) {
        Some(n) => n,
        None => {
            origins.push(id);
            origins.len() - 1
        }
    };
    // Collections: the new config, and how each keeps its changes.
    let mut kinds: HashMap<String, Keep> = HashMap::new();
    {
        let old = txn.open_table(v2::COLLECTIONS)?;
        let mut new = txn.open_table(COLLECTIONS)?;
        for entry in old.iter()? {
            let (name, bytes) = entry?;
            let c: v2::CollectionConfig = tables::decode(v2::COLLECTIONS.name(), bytes.value())?;
            let kind = match c.policy {
                MergePolicy::FieldLww => Keep::Field,
                MergePolicy::Automerge => Keep::All,
                _ => Keep::Record,
            };
            kinds.insert(name.value().to_string(), kind);
            let config = CollectionConfig {
                policy: c.policy,
                sync: c.sync,
                history: History::Merge,
            };
            new.insert(name.value(), codec::encode(&config).as_slice())?;
        }
    }
    // The old feed: each record's latest lsn, each change's source, and the
    // groups.
    let mut latest: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut sources: HashMap<Vec<u8>, ReplicaId> = HashMap::new();
    // Each old lsn's change: its origin and source (for markers).
    let mut items: HashMap<u64, (Vec<u8>, ReplicaId, Option<ReplicaId>)> = HashMap::new();
    let mut groups: Vec<(u64, u64, Stamp, u64)> = Vec::new();
    {
        let feed = txn.open_table(FEED)?;
        for entry in feed.iter()? {
            let (last, bytes) = entry?;
            let last = last.value();
            let group: FeedGroup = tables::decode(FEED.name(), bytes.value())?;
            let len = group.entries.len() as u64;
            let first = (last + 1).saturating_sub(len);
            for (lsn, FeedItem { log_key }) in (first..).zip(group.entries) {
                let (collection, key, _, origin) =
                    keys::v2::parse_log(FEED.name(), log_key.as_bytes())?;
                let rk = keys::record(&collection, key.as_bytes());
                items.insert(
                    lsn,
                    (rk.clone(), ReplicaId::from_bytes(origin), group.source),
                );
                latest.insert(rk, lsn);
                if let Some(source) = group.source {
                    sources.insert(log_key.as_bytes().to_vec(), source);
                }
            }
            groups.push((first, last, group.clock, group.seq));
        }
    }
    // Records, and the log of what merge needs.
    {
        let old_records = txn.open_table(RECORDS)?;
        let changes = txn.open_table(CHANGES)?;
        let mut records = txn.open_table(tables::RECORDS)?;
        let mut log = txn.open_table(LOG)?;
        for entry in old_records.iter()? {
            let (rk, bytes) = entry?;
            let rk = rk.value().to_vec();
            let state: RecordState = tables::decode(RECORDS.name(), bytes.value())?;
            let (collection, key) = keys::split_record(RECORDS.name(), &rk)?;
            let kind = kinds.get(&collection).copied().unwrap_or(Keep::Record);
            let prefix = keys::log_prefix(&collection, key.as_bytes());
            let end = keys::prefix_end(&prefix);
            let mut held = Vec::new();
            for c in changes.range(prefix.as_slice()..end.as_slice())? {
                let (k, v) = c?;
                let (_, _, stamp, origin) = keys::v2::parse_log(CHANGES.name(), k.value())?;
                let body: v2::ChangeBody = tables::decode(CHANGES.name(), v.value())?;
                held.push(Old {
                    version: Version {
                        stamp: Stamp::from_u64(stamp),
                        id: ChangeId {
                            origin: ReplicaId::from_bytes(origin),
                            seq: body.seq,
                        },
                    },
                    base: body.base,
                    op: body.op,
                    source: sources.get(k.value()).copied(),
                });
            }
            let at_version = held.iter().find(|o| o.version == state.version);
            let version_base = at_version.map_or(Stamp::ZERO, |o| o.base);
            let version_source = at_version.and_then(|o| o.source);
            let seen_by = if state.seen == Stamp::ZERO || version_base == state.seen {
                None
            } else {
                held.iter()
                    .find(|o| o.base == state.seen)
                    .map(|o| o.version)
            };
            let keep = |o: &Old| match kind {
                Keep::All => true,
                Keep::Record => {
                    o.version != state.version
                        && (o.version.stamp > state.seen || Some(o.version) == seen_by)
                }
                Keep::Field => {
                    o.version == state.version
                        || Some(o.version) == seen_by
                        || state.tombstone == Some(o.version)
                        || state.fields.values().any(|v| *v == o.version)
                }
            };
            let mut logged = 0u32;
            for o in held.iter().filter(|o| keep(o)) {
                let origin = number(&mut origins, o.version.id.origin);
                let source = o.source.map(|s| number(&mut origins, s));
                let body = LogBody {
                    seq: o.version.id.seq,
                    base: o.base,
                    op: o.op.clone(),
                    source,
                    kept: Kept::Merge,
                };
                let k = keys::log(
                    &collection,
                    key.as_bytes(),
                    o.version.stamp.as_u64(),
                    origin,
                );
                log.insert(k.as_slice(), codec::encode(&body).as_slice())?;
                logged += 1;
            }
            let mut stored = |v: Version| StoredVersion {
                stamp: v.stamp,
                origin: number(&mut origins, v.id.origin),
                seq: v.id.seq,
            };
            let row = RecordRow {
                lsn: latest.get(&rk).copied().unwrap_or(0),
                version: stored(state.version),
                base: version_base,
                source: None,
                value: state.value.clone(),
                fields: state
                    .fields
                    .iter()
                    .map(|(f, v)| (f.clone(), stored(*v)))
                    .collect(),
                tombstone: state.tombstone.map(&mut stored),
                seen: state.seen,
                seen_by: seen_by.map(&mut stored),
                winner: kind == Keep::Record,
                logged,
                pending: false,
                purged: false,
            };
            let row = RecordRow {
                source: version_source.map(|s| number(&mut origins, s)),
                ..row
            };
            records.insert(rk.as_slice(), codec::encode(&row).as_slice())?;
        }
    }
    // The feed: one entry per record, in its old group.
    {
        let alive: BTreeMap<u64, Vec<u8>> = latest.into_iter().map(|(rk, lsn)| (lsn, rk)).collect();
        let mut feed = txn.open_table(tables::FEED)?;
        for (first, last, clock, seq) in groups {
            let members: Vec<(u64, &Vec<u8>)> =
                alive.range(first..=last).map(|(l, rk)| (*l, rk)).collect();
            if members.is_empty() {
                continue;
            }
            let info = GroupInfo {
                span: last + 1 - first,
                alive: members.len() as u64,
                clock,
                seq,
            };
            for lsn in first..=last {
                // An lsn whose record moved on holds its place as a marker
                // of the one change it sent.
                let moved = match alive.get(&lsn) {
                    Some(_) => None,
                    None => Some(
                        items
                            .get(&lsn)
                            .map(|(_, origin, source)| {
                                (
                                    number(&mut origins, *origin),
                                    source.map(|s| number(&mut origins, s)),
                                )
                            })
                            .into_iter()
                            .collect(),
                    ),
                };
                let record = match alive.get(&lsn) {
                    Some(rk) => rk.clone(),
                    None => items
                        .get(&lsn)
                        .map(|(rk, _, _)| rk.clone())
                        .unwrap_or_default(),
                };
                let row = FeedRow {
                    record: Key::new(record),
                    end: last - lsn,
                    group: (lsn == last).then_some(info),
                    moved,
                };
                feed.insert(lsn, codec::encode(&row).as_slice())?;
            }
        }
    }
    // Refused groups keep their changes, not their old keys.
    if let Ok(old) = txn.open_table(v2::REJECTED) {
        let changes = txn.open_table(CHANGES)?;
        let mut new = txn.open_table(REJECTED)?;
        for entry in old.iter()? {
            let (k, v) = entry?;
            let body: v2::RejectedBody = tables::decode(v2::REJECTED.name(), v.value())?;
            let mut out = Vec::with_capacity(body.log_keys.len());
            for lk in &body.log_keys {
                let Some(b) = changes.get(lk.as_bytes())? else {
                    continue;
                };
                let (collection, key, stamp, origin) =
                    keys::v2::parse_log(CHANGES.name(), lk.as_bytes())?;
                let cb: v2::ChangeBody = tables::decode(CHANGES.name(), b.value())?;
                out.push(Change {
                    id: ChangeId {
                        origin: ReplicaId::from_bytes(origin),
                        seq: cb.seq,
                    },
                    collection,
                    key,
                    stamp: Stamp::from_u64(stamp),
                    base: cb.base,
                    op: cb.op,
                });
            }
            let body = RejectedBody {
                code: body.code,
                reason: body.reason,
                at_ms: body.at_ms,
                changes: out,
                discarded: body.discarded,
            };
            new.insert(k.value(), codec::encode(&body).as_slice())?;
        }
    }
    {
        let mut table = txn.open_table(ORIGINS)?;
        for n in 0..origins.len() {
            if let Some(id) = origins.id(n) {
                table.insert(n, id.as_bytes())?;
            }
        }
    }
    txn.open_table(META)?
        .insert("format", tables::FORMAT_VERSION.to_le_bytes().as_slice())?;
    for gone in [CHANGES, RECORDS, CONFLICTS, v2::REJECTED] {
        txn.delete_table(gone)?;
    }
    txn.delete_table(FEED)?;
    txn.delete_table(v2::COLLECTIONS)?;
    txn.commit()?;
    tracing::info!("upgraded the replica file from format 2 to 3");
    Ok(())
}
