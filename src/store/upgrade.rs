//! Upgrades of replica files written by older formats ([`super::tables`]).

use redb::{Database, Durability, ReadableTable, TableDefinition, TableHandle, WriteTransaction};

use super::keys;
use super::tables::{
    self, CHANGES, CONFLICTS, FEED, FORMAT_VERSION, FeedGroup, FeedItem, META, RECORDS, v1,
};
use crate::clock::Stamp;
use crate::codec;
use crate::error::StorageError;
use crate::model::Key;

/// Format 1 to 2, in one durable transaction: the change log, records and
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
        .insert("format", FORMAT_VERSION.to_le_bytes().as_slice())?;
    txn.delete_table(v1::FEED)?;
    txn.delete_table(v1::CHANGES)?;
    txn.delete_table(v1::CONFLICTS)?;
    txn.delete_table(v1::RECORDS)?;
    txn.delete_table(v1::IDS)?;
    txn.commit()?;
    tracing::info!("upgraded the replica file from format 1 to {FORMAT_VERSION}");
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
            keys::log(collection, key, stamp, origin).as_slice(),
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
            log_key: Key::new(keys::log(
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
