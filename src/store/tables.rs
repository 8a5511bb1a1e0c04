//! redb table definitions, the layout of what they hold, and the stored
//! body types.
//!
//! Every table name carries a version; a layout change makes a new name and
//! bumps [`FORMAT_VERSION`]. Values are encoded by [`crate::codec`] unless a
//! table says otherwise. `docs/design.md` repeats this layout.

use redb::{ReadableTable, TableDefinition, TableHandle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::clock::Stamp;
use crate::codec;
use crate::error::{Inconsistency, StorageError};
use crate::model::{Change, Key, Op, ReplicaId};
use crate::value::Value;

/// The on-disk format this build reads and writes (`syncline inspect`
/// shows it).
///
/// - 1: the first layout: tuple keys, and an `ids-1` index from change id
///   to lsn.
/// - 2: flat byte keys (`store/keys.rs`); a change's slot in `changes-2`
///   identifies it; one feed entry per commit listing every change (`tables::v2`).
/// - 3: a record's row holds its winning change, so a value is stored once;
///   the log keeps only the changes merge still needs (and the history a
///   collection asks for); origins are interned to small numbers; the feed
///   holds one entry per record, at its latest lsn, so a pull reads current
///   state. Opening a format 1 or 2 file upgrades it (`store/upgrade.rs`).
pub const FORMAT_VERSION: u32 = 3;

/// `meta-1`: name -> raw bytes.
///
/// - `"format"`: u32 little-endian, [`FORMAT_VERSION`].
/// - `"replica"`: the 16 bytes of this replica's id.
/// - `"clock"`: u64 little-endian, the clock's high-water mark (the greatest
///   stamp issued or received) as of creation or the last upgrade; later
///   marks are in the feed's last group ([`GroupInfo`]), and opening takes
///   the greater.
/// - `"seq"`: u64 little-endian, the last sequence number this replica gave
///   one of its own changes, kept the same way.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta-1");

/// `collections-3`: collection name -> encoded [`crate::CollectionConfig`]
/// (policy, sync flag, history).
pub(crate) const COLLECTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("collections-3");

/// `origins-3`: origin number -> the replica id it stands for. Every change
/// stored names its origin by number; 0 is this replica. Numbers are given
/// in the commit that first stores a change from that origin.
pub(crate) const ORIGINS: TableDefinition<u32, &[u8; 16]> = TableDefinition::new("origins-3");

/// `records-3`: record key of (collection, key) ([`keys::record`]) ->
/// encoded [`RecordRow`]: the merged state, its feed position and, for
/// record-level policies, the winning change itself.
pub(crate) const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records-3");

/// `log-3`: log key of (collection, key, stamp, origin number)
/// ([`keys::log`]) -> encoded [`LogBody`]: the record's changes other than
/// the one its row holds, that merge still needs (conflicts, the change
/// that set `seen`, field winners and the newest delete, every automerge
/// change) or that the collection's [`crate::History`] keeps.
pub(crate) const LOG: TableDefinition<&[u8], &[u8]> = TableDefinition::new("log-3");

/// `feed-3`: lsn -> encoded [`FeedRow`]. One entry per record, at the lsn
/// of its latest change (CouchDB's by-sequence index): when a record
/// changes, its entry moves to the next lsn. The entries a commit writes are
/// one atomic group; a group's entries stay in place as markers while any
/// of them is alive, so a group read in parts keeps its shape, and go when
/// the last one moves.
pub(crate) const FEED: TableDefinition<u64, &[u8]> = TableDefinition::new("feed-3");

/// `peers-1`: peer replica id -> encoded [`PeerState`] (cursors, last
/// seen). Filled by the sync engine.
pub(crate) const PEERS: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("peers-1");

/// `rejected-3`: peer replica id (16 bytes) ++ the lsn that ends the
/// refused group in this replica's feed (u64 big-endian) -> encoded
/// [`RejectedBody`]: the groups a peer refused when this replica pushed
/// them, written in the commit that moves the push cursor past them.
pub(crate) const REJECTED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rejected-3");

/// `scopes-3`: peer replica id (16 bytes) ++ `name(collection)` ++ key
/// prefix -> the peer's lsn this replica has pulled that scope through
/// (`SyncConfig::scopes`; a whole collection has an empty prefix). Written
/// in the commit that applies the scope's changes; created on first use.
pub(crate) const SCOPES: TableDefinition<&[u8], u64> = TableDefinition::new("scopes-3");

/// `relayed-3`: peer replica id -> its lsn this replica has pulled through
/// (u64 LE) ++ this replica's lsn after the commit that pulled through it
/// (u64 LE): what a server tells callers that may fail over to that peer
/// (`RequestBody::Relayed`). Moved with `peers-1`'s pull cursor, for whole
/// links only; created on first use.
pub(crate) const RELAYED: TableDefinition<&[u8; 16], [u8; 16]> = TableDefinition::new("relayed-3");

/// The key of a `scopes-3` entry: `peer` ++ the scope's record-key prefix.
pub(crate) fn scope_key(peer: ReplicaId, scope: &crate::model::Scope) -> Vec<u8> {
    let mut key = peer.as_bytes().to_vec();
    key.extend_from_slice(&crate::store::keys::collection(&scope.collection));
    key.extend_from_slice(scope.prefix.as_bytes());
    key
}

/// `served-3`: peer replica id -> encoded [`ServedState`]: where each
/// caller of this replica's server last pulled from, and when. Written by
/// the server every `collect_every` (from memory); created on first use.
pub(crate) const SERVED: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("served-3");

/// The value of a `served-3` entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedState {
    /// The cursor the caller last pulled from (the lsn it held through).
    pub cursor: u64,
    /// When, in milliseconds since the epoch.
    pub at_ms: u64,
}

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

/// A version with its origin as a number ([`ORIGINS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct StoredVersion {
    /// The change's stamp.
    pub(crate) stamp: Stamp,
    /// Its origin's number.
    pub(crate) origin: u32,
    /// The origin's sequence number.
    pub(crate) seq: u64,
}

/// The value of a `records-3` entry. Encoded compactly (see
/// [`RowRepr`]): most rows are a record-level winner with nothing else to
/// say, and they pay for nothing else.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(from = "RowRepr")]
pub(crate) struct RecordRow {
    /// The lsn of the record's feed entry.
    pub(crate) lsn: u64,
    /// [`crate::RecordState::version`].
    pub(crate) version: StoredVersion,
    /// The base of the change at `version`.
    pub(crate) base: Stamp,
    /// The origin number of the peer the change at `version` came from;
    /// `None` when it was made here.
    pub(crate) source: Option<u32>,
    /// [`crate::RecordState::value`]. Record-level policies: the winning
    /// change's value (`None`: it was a delete).
    pub(crate) value: Option<Value>,
    /// [`crate::RecordState::fields`].
    pub(crate) fields: Vec<(String, StoredVersion)>,
    /// [`crate::RecordState::tombstone`].
    pub(crate) tombstone: Option<StoredVersion>,
    /// [`crate::RecordState::seen`].
    pub(crate) seen: Stamp,
    /// The change whose base set `seen`, when it is not the change at
    /// `version` and `seen` is above zero: merge keeps it.
    pub(crate) seen_by: Option<StoredVersion>,
    /// Whether this row is the change at `version` (record-level policies:
    /// a put of `value`, or a delete); otherwise that change is in the log.
    pub(crate) winner: bool,
    /// How many `log-3` entries the record has.
    pub(crate) logged: u32,
    /// Whether the record has a local write that no push has settled yet
    /// (acknowledged; a refused one stays unsettled until it is retried or
    /// discarded); meanwhile the log keeps [`Kept::Undo`] entries for it.
    pub(crate) pending: bool,
    /// Whether the winning change is a purge ([`crate::Op::Purge`]): the
    /// row's `None` value is a purge, not a delete, and nothing older than
    /// it is kept, not even as history.
    pub(crate) purged: bool,
}

/// How a [`RecordRow`] is encoded: the fields every row has, then the
/// rest only when any of it differs from a plain record-level winner (base
/// zero, no fields, no tombstone, `seen` zero, no `seen_by`, no log
/// entries).
#[derive(Deserialize)]
struct RowRepr {
    /// Bit 0: `pending`; bit 1: the winner is in the log; bit 2: `purged`;
    /// bit 3: the record has a value (not a tombstone). First, so that
    /// counting live records reads one byte per row ([`row_is_live`]).
    flags: u8,
    lsn: u64,
    version: StoredVersion,
    source: Option<u32>,
    value: Option<Value>,
    more: Option<RowMore>,
}

/// Whether an encoded `records-3` row holds a value: its first byte, the
/// flags, says so without decoding the rest.
pub(crate) fn row_is_live(bytes: &[u8]) -> bool {
    bytes.first().is_some_and(|flags| flags & 8 != 0)
}

/// The lsn of an encoded `records-3` row (its feed entry's), read from
/// its leading fields without decoding the rest.
pub(crate) fn row_lsn(bytes: &[u8]) -> Result<u64, StorageError> {
    let (_flags, lsn): (u8, u64) =
        codec::decode_stored_prefix(bytes).map_err(|source| StorageError::Corrupted {
            table: RECORDS.name(),
            source,
        })?;
    Ok(lsn)
}

/// The less common fields of a [`RecordRow`].
#[derive(Serialize, Deserialize)]
struct RowMore {
    base: Stamp,
    fields: Vec<(String, StoredVersion)>,
    tombstone: Option<StoredVersion>,
    seen: Stamp,
    seen_by: Option<StoredVersion>,
    logged: u32,
}

/// [`RowMore`] borrowing the fields.
#[derive(Serialize)]
struct RowMoreRef<'a> {
    base: Stamp,
    fields: &'a Vec<(String, StoredVersion)>,
    tombstone: Option<StoredVersion>,
    seen: Stamp,
    seen_by: Option<StoredVersion>,
    logged: u32,
}

impl From<RowRepr> for RecordRow {
    fn from(r: RowRepr) -> Self {
        let more = r.more.unwrap_or(RowMore {
            base: Stamp::ZERO,
            fields: Vec::new(),
            tombstone: None,
            seen: Stamp::ZERO,
            seen_by: None,
            logged: 0,
        });
        Self {
            lsn: r.lsn,
            version: r.version,
            base: more.base,
            source: r.source,
            value: r.value,
            fields: more.fields,
            tombstone: more.tombstone,
            seen: more.seen,
            seen_by: more.seen_by,
            winner: r.flags & 2 == 0,
            logged: more.logged,
            pending: r.flags & 1 != 0,
            purged: r.flags & 4 != 0,
        }
    }
}

impl Serialize for RecordRow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let plain = self.base == Stamp::ZERO
            && self.fields.is_empty()
            && self.tombstone.is_none()
            && self.seen == Stamp::ZERO
            && self.seen_by.is_none()
            && self.logged == 0;
        let more = (!plain).then_some(RowMoreRef {
            base: self.base,
            fields: &self.fields,
            tombstone: self.tombstone,
            seen: self.seen,
            seen_by: self.seen_by,
            logged: self.logged,
        });
        let flags = u8::from(self.pending)
            | (u8::from(!self.winner) << 1)
            | (u8::from(self.purged) << 2)
            | (u8::from(self.value.is_some()) << 3);
        // The same shape as `RowRepr`, field by field (bincode encodes a
        // struct as the tuple of its fields).
        let mut t = s.serialize_tuple(6)?;
        t.serialize_element(&flags)?;
        t.serialize_element(&self.lsn)?;
        t.serialize_element(&self.version)?;
        t.serialize_element(&self.source)?;
        t.serialize_element(&self.value)?;
        t.serialize_element(&more)?;
        t.end()
    }
}

/// Why a `log-3` entry is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kept {
    /// Merge needs it: it travels with its record.
    Merge,
    /// The collection's [`crate::History`] keeps it; it never travels.
    History,
    /// A local write replaced it and no peer has acknowledged that write
    /// yet: if a peer refuses the write, discarding the refusal rebuilds
    /// the record from what it replaced. Dropped when a push of the record
    /// is acknowledged; never travels.
    Undo,
}

/// The value of a `log-3` entry; the key holds the change's collection,
/// key, stamp and origin number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct LogBody {
    /// The origin's sequence number.
    pub(crate) seq: u64,
    /// The stamp the change was made on top of ([`crate::Change::base`]).
    pub(crate) base: Stamp,
    /// What the change does.
    pub(crate) op: Op,
    /// The origin number of the peer it came from; `None` when made here.
    pub(crate) source: Option<u32>,
    /// Why it is kept.
    pub(crate) kept: Kept,
}

/// [`LogBody`] borrowing its op: encodes to the same bytes without a copy.
#[derive(Serialize)]
pub(crate) struct LogBodyRef<'a> {
    /// [`LogBody::seq`].
    pub(crate) seq: u64,
    /// [`LogBody::base`].
    pub(crate) base: Stamp,
    /// [`LogBody::op`].
    pub(crate) op: &'a Op,
    /// [`LogBody::source`].
    pub(crate) source: Option<u32>,
    /// [`LogBody::kept`].
    pub(crate) kept: Kept,
}

/// The value of a `feed-3` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct FeedRow {
    /// The record key of the entry's record.
    pub(crate) record: Key,
    /// The group's last lsn minus this one: entries with the same
    /// `lsn + end` are one group.
    pub(crate) end: u64,
    /// On the group's last entry: the group's shape and the counters.
    pub(crate) group: Option<GroupInfo>,
    /// A marker: the record moved on, and the entry holds its place in its
    /// group. It lists the (origin number, source number) of each change
    /// the entry sent, so that a group read in parts counts the positions
    /// it held for each peer, and no part skips a change (see
    /// `Store::group_part`).
    pub(crate) moved: Option<Vec<(u32, Option<u32>)>>,
}

impl FeedRow {
    /// Whether the entry is a marker.
    pub(crate) fn is_marker(&self) -> bool {
        self.moved.is_some()
    }
}

/// What the last entry of a feed group says about the group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupInfo {
    /// The lsns the group spans, ending at its last entry.
    pub(crate) span: u64,
    /// How many of its entries are alive (not markers).
    pub(crate) alive: u64,
    /// The clock's high-water mark (the greatest stamp issued or received)
    /// when the group was committed. With `seq`, what a restart resumes
    /// from: the feed's last entry ends the last group.
    pub(crate) clock: Stamp,
    /// The last sequence number this replica gave one of its own changes
    /// when the group was committed.
    pub(crate) seq: u64,
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

/// The value of a `rejected-3` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RejectedBody {
    /// The peer's refusal code (a `RefusalCode` number).
    pub(crate) code: u16,
    /// The peer's reason.
    pub(crate) reason: String,
    /// When the refusal arrived, in ms since the epoch.
    pub(crate) at_ms: u64,
    /// The changes the group carried to the peer.
    pub(crate) changes: Vec<Change>,
    /// Whether the app discarded the group (kept so that a later discard
    /// leaves its changes out too).
    pub(crate) discarded: bool,
}

/// The key of a `rejected-3` entry.
pub(crate) fn rejected_key(peer: ReplicaId, lsn: u64) -> [u8; 24] {
    let mut key = [0; 24];
    key[..16].copy_from_slice(peer.as_bytes());
    key[16..].copy_from_slice(&lsn.to_be_bytes());
    key
}

/// Format 2's tables, for the upgrade to format 3 (and the format 1
/// upgrade, which goes through format 2). Keys are flat ([`keys::v2`]).
pub(crate) mod v2 {
    use redb::TableDefinition;
    use serde::{Deserialize, Serialize};

    use crate::clock::Stamp;
    use crate::model::{Key, MergePolicy, Op, ReplicaId};

    /// `collections-1`: name -> encoded [`CollectionConfig`].
    pub(crate) const COLLECTIONS: TableDefinition<&str, &[u8]> =
        TableDefinition::new("collections-1");
    /// `changes-2`: log key (origin as 16 bytes) -> [`ChangeBody`].
    pub(crate) const CHANGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("changes-2");
    /// `records-2`: record key -> encoded `RecordState`.
    pub(crate) const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records-2");
    /// `feed-2`: the last lsn of a group -> [`FeedGroup`].
    pub(crate) const FEED: TableDefinition<u64, &[u8]> = TableDefinition::new("feed-2");
    /// `conflicts-2`: log key -> [`ConflictBody`].
    pub(crate) const CONFLICTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("conflicts-2");
    /// `rejected-1`: as `rejected-3`, with [`RejectedBody`].
    pub(crate) const REJECTED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rejected-1");

    /// A format 2 collection definition.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct CollectionConfig {
        pub(crate) policy: MergePolicy,
        pub(crate) sync: bool,
    }

    /// A `changes-2` value.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct ChangeBody {
        pub(crate) seq: u64,
        pub(crate) base: Stamp,
        pub(crate) op: Op,
    }

    /// A `feed-2` value.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct FeedGroup {
        pub(crate) clock: Stamp,
        pub(crate) seq: u64,
        pub(crate) source: Option<ReplicaId>,
        pub(crate) entries: Vec<FeedItem>,
    }

    /// One change of a [`FeedGroup`]: its `changes-2` key.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct FeedItem {
        pub(crate) log_key: Key,
    }

    /// A `rejected-1` value.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub(crate) struct RejectedBody {
        pub(crate) code: u16,
        pub(crate) reason: String,
        pub(crate) at_ms: u64,
        pub(crate) log_keys: Vec<Key>,
        pub(crate) discarded: bool,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(plain: bool) -> RecordRow {
        RecordRow {
            lsn: 70_000,
            version: StoredVersion {
                stamp: Stamp::from_u64(1 << 57),
                origin: 3,
                seq: 9,
            },
            base: if plain {
                Stamp::ZERO
            } else {
                Stamp::from_u64(5)
            },
            source: Some(1),
            value: Some(Value::Int(-4)),
            fields: if plain {
                Vec::new()
            } else {
                vec![(
                    "f".into(),
                    StoredVersion {
                        stamp: Stamp::from_u64(2),
                        origin: 0,
                        seq: 1,
                    },
                )]
            },
            tombstone: None,
            seen: if plain {
                Stamp::ZERO
            } else {
                Stamp::from_u64(5)
            },
            seen_by: None,
            winner: plain,
            logged: u32::from(!plain),
            pending: true,
            purged: !plain,
        }
    }

    #[test]
    fn rows_round_trip_and_plain_ones_are_small() {
        for plain in [true, false] {
            let r = row(plain);
            let bytes = codec::encode(&r);
            let back: RecordRow = decode("records-3", &bytes).unwrap();
            assert_eq!(back, r);
            assert!(row_is_live(&bytes), "the flags come first");
            let dead = RecordRow {
                value: None,
                ..r.clone()
            };
            assert!(!row_is_live(&codec::encode(&dead)));
            if plain {
                // flags 1, lsn 5, version 9 + 1 + 1, source 2, value 1 + 2,
                // no more 1.
                assert_eq!(bytes.len(), 23);
            }
        }
    }
}
