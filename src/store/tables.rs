//! redb table definitions, the layout of what they hold, and the stored
//! body types.
//!
//! Every table name carries a version; a layout change makes a new name and
//! bumps [`FORMAT_VERSION`]. Values are encoded by [`crate::codec`] unless a
//! table says otherwise. `docs/design.md` repeats this layout.

use redb::{ReadableTable, TableDefinition, TableHandle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::keys;
use crate::clock::Stamp;
use crate::codec;
use crate::error::{Inconsistency, StorageError};
use crate::model::{Change, ChangeId, Key, Op, ReplicaId};
use crate::value::Value;

/// The on-disk format this build reads and writes.
///
/// - 1: the first layout: tuple keys, and an `ids-1` index from change id
///   to lsn.
/// - 2: flat byte keys ([`super::keys`]) in `changes-2`, `records-2` and
///   `conflicts-2`; `ids-1` is gone, because a change's slot in `changes-2`
///   (record, stamp, origin) identifies it. Opening a format 1 file rewrites
///   it to format 2 ([`v1`]).
pub(crate) const FORMAT_VERSION: u32 = 2;

/// `meta-1`: name -> raw bytes.
///
/// - `"format"`: u32 little-endian, [`FORMAT_VERSION`].
/// - `"replica"`: the 16 bytes of this replica's id.
/// - `"clock"`: u64 little-endian, the clock's high-water mark (the greatest
///   stamp issued or received) as of creation or the format 1 upgrade; later
///   marks are in the last [`FeedGroup`], and opening takes the greater.
/// - `"seq"`: u64 little-endian, the last sequence number this replica gave
///   one of its own changes, kept the same way.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta-1");

/// `collections-1`: collection name -> encoded [`crate::CollectionConfig`].
pub(crate) const COLLECTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("collections-1");

/// `changes-2`: log key of (collection, key, stamp, origin) ([`keys::log`])
/// -> encoded [`ChangeBody`]. Each record's change log, in merge order of
/// stamp and origin. Never rewritten once stored. An origin never stamps two
/// changes alike, so this slot identifies a change: storing one whose slot is
/// taken is a duplicate when the bodies are equal, and refused otherwise.
pub(crate) const CHANGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("changes-2");

/// `records-2`: record key of (collection, key) ([`keys::record`]) ->
/// encoded [`crate::RecordState`]: the merged state, a value or a tombstone,
/// with the winning version.
pub(crate) const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records-2");

/// `feed-2`: the last lsn of an atomic group -> encoded [`FeedGroup`].
/// Every change stored here, local or received, gets the next local
/// sequence number (lsn, gap-free from 1) in the transaction that stores it.
/// The changes of one commit (a local transaction, or a remote batch) are
/// one group, written as one entry: a commit writes the feed once, whatever
/// its size. A group of n changes under key `last` holds lsns
/// `last - n + 1 ..= last`. The outbox and the change stream.
pub(crate) const FEED: TableDefinition<u64, &[u8]> = TableDefinition::new("feed-2");

/// `peers-1`: peer replica id -> encoded [`PeerState`] (cursors, last
/// seen). Filled by the sync engine.
pub(crate) const PEERS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("peers-1");

/// `rejected-1`: peer replica id (16 bytes) ++ the lsn that ends the
/// refused group in this replica's feed (u64 big-endian) -> encoded
/// [`RejectedBody`]: the groups a peer refused when this replica pushed
/// them, written in the commit that moves the push cursor past them.
/// Created on first use; a file without it has none.
pub(crate) const REJECTED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rejected-1");

/// `staged-1`: role (1 byte: [`STAGED_PUSHED`] or [`STAGED_PULLED`]) ++
/// peer replica id (16 bytes) ++ transfer (the lsn that ends the group in
/// the sender's feed, u64 big-endian) ++ the position of the part's first
/// change in the group (u32 big-endian) ->
/// encoded `Vec<Change>`: the parts of a group too large for one batch,
/// received so far. Out of sight: nothing reads them but the commit that
/// applies the whole group with its last part and removes them. Created on
/// first use.
pub(crate) const STAGED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("staged-1");

/// The role of `staged-1` entries a peer pushed to this replica.
pub(crate) const STAGED_PUSHED: u8 = 0;
/// The role of `staged-1` entries this replica pulled from a peer.
pub(crate) const STAGED_PULLED: u8 = 1;

/// The key of a `staged-1` entry, or with `index` `None` the prefix of a
/// (role, peer)'s entries... with `transfer` `None` too, of all of them.
pub(crate) fn staged_key(
    role: u8,
    peer: ReplicaId,
    transfer: Option<u64>,
    index: Option<u32>,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(29);
    key.push(role);
    key.extend_from_slice(peer.as_bytes());
    if let Some(t) = transfer {
        key.extend_from_slice(&t.to_be_bytes());
        if let Some(i) = index {
            key.extend_from_slice(&i.to_be_bytes());
        }
    }
    key
}

/// `conflicts-2`: log key of the losing change ([`keys::log`]) ->
/// encoded [`ConflictBody`]. Record-level policies keep here the losing
/// changes that no other change has seen.
pub(crate) const CONFLICTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("conflicts-2");

/// Format 1's tables that format 2 replaced, for the upgrade. The values of
/// the change log, records and conflicts are the same encodings as in format
/// 2; only the keys differ. The feed had an entry per change.
pub(crate) mod v1 {
    use redb::TableDefinition;
    use serde::Deserialize;

    use crate::clock::Stamp;
    use crate::model::{ChangeId, Key, ReplicaId};

    /// `feed-1`: lsn -> encoded [`FeedRecord`].
    pub(crate) const FEED: TableDefinition<u64, &[u8]> = TableDefinition::new("feed-1");

    /// A `feed-1` entry.
    #[derive(Debug, Deserialize)]
    pub(crate) struct FeedRecord {
        pub(crate) id: ChangeId,
        pub(crate) collection: String,
        pub(crate) key: Key,
        pub(crate) stamp: Stamp,
        pub(crate) source: Option<ReplicaId>,
        pub(crate) group_end: bool,
    }

    /// A format 1 log key: (collection, key, stamp, origin).
    pub(crate) type LogKey = (&'static str, &'static [u8], u64, &'static [u8; 16]);

    /// `changes-1`.
    pub(crate) const CHANGES: TableDefinition<LogKey, &[u8]> = TableDefinition::new("changes-1");
    /// `records-1`: (collection, key).
    pub(crate) const RECORDS: TableDefinition<(&str, &[u8]), &[u8]> =
        TableDefinition::new("records-1");
    /// `conflicts-1`.
    pub(crate) const CONFLICTS: TableDefinition<LogKey, &[u8]> =
        TableDefinition::new("conflicts-1");
    /// `ids-1`: (origin, seq) -> lsn, dropped.
    pub(crate) const IDS: TableDefinition<(&[u8; 16], u64), u64> = TableDefinition::new("ids-1");
}

/// The value of a `changes-2` entry; the key holds the rest of the change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ChangeBody {
    /// The origin's sequence number.
    pub(crate) seq: u64,
    /// The stamp the change was made on top of ([`crate::Change::base`]).
    pub(crate) base: Stamp,
    /// What the change does.
    pub(crate) op: Op,
}

/// [`ChangeBody`] borrowing its op: encodes to the same bytes without a copy.
#[derive(Serialize)]
pub(crate) struct ChangeBodyRef<'a> {
    /// [`ChangeBody::seq`].
    pub(crate) seq: u64,
    /// [`ChangeBody::base`].
    pub(crate) base: Stamp,
    /// [`ChangeBody::op`].
    pub(crate) op: &'a Op,
}

/// The value of a `peers-1` entry: the sync cursors kept for one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    /// The peer's lsn that this replica has pulled and applied through.
    pub pulled: u64,
    /// This replica's lsn that the peer has acknowledged holding through.
    pub pushed: u64,
    /// When the peer was last heard from, in milliseconds since the epoch.
    pub last_seen_ms: u64,
}

/// The value of a `rejected-1` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RejectedBody {
    /// The peer's refusal code (a `RefusalCode` number).
    pub(crate) code: u16,
    /// The peer's reason.
    pub(crate) reason: String,
    /// When the refusal arrived, in ms since the epoch.
    pub(crate) at_ms: u64,
    /// The `changes-2` keys of the changes the group carried to the peer.
    pub(crate) log_keys: Vec<Key>,
    /// Whether the app discarded the group (kept so that a later discard
    /// leaves its changes out too).
    pub(crate) discarded: bool,
}

/// The key of a `rejected-1` entry.
pub(crate) fn rejected_key(peer: ReplicaId, lsn: u64) -> [u8; 24] {
    let mut key = [0; 24];
    key[..16].copy_from_slice(peer.as_bytes());
    key[16..].copy_from_slice(&lsn.to_be_bytes());
    key
}

/// The value of a `conflicts-2` entry; the key holds the losing change's
/// collection, key, stamp and origin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ConflictBody {
    /// The losing change's sequence number.
    pub(crate) seq: u64,
    /// Its value; `None` when a delete lost.
    pub(crate) value: Option<Value>,
}

/// The value of a `feed-2` entry: one atomic group (a local transaction or
/// a remote batch), in lsn order. Readers of the feed never split a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FeedGroup {
    /// The clock's high-water mark (the greatest stamp issued or received)
    /// when the group was committed. With `seq`, what a restart resumes from:
    /// every commit that stores a change writes a group, so the counters
    /// cost no extra write.
    pub(crate) clock: Stamp,
    /// The last sequence number this replica gave one of its own changes
    /// when the group was committed.
    pub(crate) seq: u64,
    /// The peer the group was received from, `None` when made here.
    pub(crate) source: Option<ReplicaId>,
    /// Its changes: which, and where each is stored.
    pub(crate) entries: Vec<FeedItem>,
}

/// One change of a [`FeedGroup`]: its `changes-2` key, which names the
/// change's collection, record key, stamp and origin, and finds its body.
/// (A [`Key`] only for its compact byte-string encoding.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FeedItem {
    /// The change's `changes-2` key.
    pub(crate) log_key: Key,
}

impl FeedItem {
    /// The origin replica of the change.
    pub(crate) fn origin(&self) -> Result<ReplicaId, StorageError> {
        let (_, origin) = keys::split_log_tail(FEED.name(), self.log_key.as_bytes())?;
        Ok(ReplicaId::from_bytes(origin))
    }

    /// The whole change, from this entry and its `changes-2` body.
    pub(crate) fn into_change(self, body: ChangeBody) -> Result<Change, StorageError> {
        let (collection, key, stamp, origin) =
            keys::parse_log(FEED.name(), self.log_key.as_bytes())?;
        Ok(Change {
            id: ChangeId {
                origin: ReplicaId::from_bytes(origin),
                seq: body.seq,
            },
            collection,
            key,
            stamp: Stamp::from_u64(stamp),
            base: body.base,
            op: body.op,
        })
    }
}

/// Calls `visit` with each change in the feed after `after`, in lsn order:
/// (lsn, source, the change's entry, whether it ends its group). `visit`
/// returns false to stop.
pub(crate) fn walk_feed(
    feed: &impl ReadableTable<u64, &'static [u8]>,
    after: u64,
    mut visit: impl FnMut(u64, Option<ReplicaId>, FeedItem, bool) -> Result<bool, StorageError>,
) -> Result<(), StorageError> {
    // The group holding lsn `after + 1` is the first whose last lsn is at
    // least that.
    for group in feed.range(after.saturating_add(1)..)? {
        let (last, bytes) = group?;
        let last = last.value();
        let group: FeedGroup = decode(FEED.name(), bytes.value())?;
        let len = group.entries.len() as u64;
        let first =
            (last + 1)
                .checked_sub(len)
                .filter(|_| len > 0)
                .ok_or(StorageError::Invalid {
                    table: FEED.name(),
                    reason: Inconsistency::FeedGroup { last, len },
                })?;
        for (lsn, item) in (first..=last).zip(group.entries) {
            if lsn > after && !visit(lsn, group.source, item, lsn == last)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Decodes a stored value, naming the table in the error.
pub(crate) fn decode<T: DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, StorageError> {
    codec::decode_stored(bytes).map_err(|source| StorageError::Corrupted { table, source })
}

/// Reads a u64 meta entry.
pub(crate) fn meta_u64(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &'static str,
) -> Result<Option<u64>, StorageError> {
    let Some(guard) = table.get(name)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = guard
        .value()
        .try_into()
        .map_err(|_| StorageError::Invalid {
            table: META.name(),
            reason: Inconsistency::MetaEntryLength { name },
        })?;
    Ok(Some(u64::from_le_bytes(bytes)))
}
