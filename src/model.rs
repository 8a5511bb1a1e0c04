//! The data model: replica ids, keys, changes, collections.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::Stamp;
use crate::value::Value;

/// The identity of a replica: 16 random bytes made when its database is created.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct ReplicaId([u8; 16]);

impl ReplicaId {
    /// A replica id from its bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// A new random replica id.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The bytes of this id.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why a string is not a replica id ([`ReplicaId`]'s `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaIdError {
    /// Not 32 characters long.
    #[error("a replica id is 32 hex digits, not {len} characters")]
    Length {
        /// The length found.
        len: usize,
    },
    /// A character that is not a hex digit.
    #[error("{found:?} at {at} is not a hex digit")]
    NotHex {
        /// Where.
        at: usize,
        /// What.
        found: char,
    },
}

/// Parses the form [`ReplicaId`]'s `Display` writes: 32 hex digits
/// (either case).
impl std::str::FromStr for ReplicaId {
    type Err = ReplicaIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 {
            return Err(ReplicaIdError::Length {
                len: s.chars().count(),
            });
        }
        let mut out = [0u8; 16];
        for (at, c) in s.char_indices() {
            let digit = c
                .to_digit(16)
                .ok_or(ReplicaIdError::NotHex { at, found: c })?;
            out[at / 2] |= (digit as u8) << if at % 2 == 0 { 4 } else { 0 };
        }
        Ok(Self(out))
    }
}

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The first 4 bytes are enough to tell replicas apart in logs.
        write!(f, "ReplicaId(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

/// The identity of a change: the replica it was made on and that replica's
/// gap-free sequence number for it. Applying a change whose id is already
/// stored does nothing, which makes redelivery harmless.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct ChangeId {
    /// The replica that made the change.
    pub origin: ReplicaId,
    /// The origin's sequence number for the change, starting at 1.
    pub seq: u64,
}

/// The position of a change in the merge order of its record.
///
/// Ordered by stamp, then by origin replica id, then by origin sequence
/// number. A replica never issues the same stamp twice, so the first two
/// fields already decide between honest changes; the sequence number keeps
/// the order total whatever a peer sends.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Version {
    /// The change's stamp.
    pub stamp: Stamp,
    /// The change's id.
    pub id: ChangeId,
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.stamp
            .cmp(&other.stamp)
            .then_with(|| self.id.origin.cmp(&other.id.origin))
            .then_with(|| self.id.seq.cmp(&other.id.seq))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A record key: bytes, with a string convenience API.
///
/// Keys order bytewise. Empty keys and keys longer than the configured
/// maximum (1024 bytes by default) are refused.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Key(Vec<u8>);

impl Key {
    /// A key from bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key as a string, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The key's bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The key's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key is empty (never valid for a record).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A part of a collection: the records whose key starts with `prefix`
/// (an empty prefix: the whole collection). What an engine asks to sync
/// ([`crate::SyncConfig::scopes`]) and what access control grants
/// ([`crate::Grant`]).
///
/// ```
/// use syncline::Scope;
///
/// let tenant = Scope::prefix("notes", "ws/42/");
/// assert!(tenant.contains("notes", &"ws/42/n1".into()));
/// assert!(!tenant.contains("notes", &"ws/43/n1".into()));
/// assert!(Scope::collection("notes").covers(&tenant));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scope {
    /// The collection.
    pub collection: String,
    /// The key prefix; empty for the whole collection.
    pub prefix: Key,
}

impl Scope {
    /// A whole collection.
    pub fn collection(name: impl Into<String>) -> Self {
        Self {
            collection: name.into(),
            prefix: Key::default(),
        }
    }

    /// The records of `collection` whose key starts with `prefix`.
    pub fn prefix(collection: impl Into<String>, prefix: impl Into<Key>) -> Self {
        Self {
            collection: collection.into(),
            prefix: prefix.into(),
        }
    }

    /// Whether the record (`collection`, `key`) is in this scope.
    pub fn contains(&self, collection: &str, key: &Key) -> bool {
        self.collection == collection && key.as_bytes().starts_with(self.prefix.as_bytes())
    }

    /// Whether every record of `other` is in this scope.
    pub fn covers(&self, other: &Scope) -> bool {
        self.collection == other.collection
            && other.prefix.as_bytes().starts_with(self.prefix.as_bytes())
    }

    /// Whether the scope is a whole collection.
    pub fn is_whole(&self) -> bool {
        self.prefix.is_empty()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "{}", self.collection)
        } else {
            write!(f, "{}/{}*", self.collection, self.prefix)
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => write!(f, "{s:?}"),
            None => write!(f, "0x{}", hex(&self.0)),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => f.write_str(s),
            None => write!(f, "0x{}", hex(&self.0)),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Self(s.as_bytes().to_vec())
    }
}

impl From<String> for Key {
    fn from(s: String) -> Self {
        Self(s.into_bytes())
    }
}

impl From<&String> for Key {
    fn from(s: &String) -> Self {
        Self(s.as_bytes().to_vec())
    }
}

impl From<&[u8]> for Key {
    fn from(b: &[u8]) -> Self {
        Self(b.to_vec())
    }
}

impl From<Vec<u8>> for Key {
    fn from(b: Vec<u8>) -> Self {
        Self(b)
    }
}

impl From<&Key> for Key {
    fn from(k: &Key) -> Self {
        k.clone()
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("key bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Key, E> {
                Ok(Key(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Key, E> {
                Ok(Key(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Key, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Key(out))
            }
        }
        d.deserialize_byte_buf(KeyVisitor)
    }
}

/// What a change does to its record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Sets the whole record. On a field-level collection, sets the fields
    /// of the map it holds.
    Put(Value),
    /// Sets some fields of a record (field-level policy). On a record-level
    /// collection a patch is turned into a `Put` of the whole record before
    /// it is stored, so no stored change of such a collection is a patch.
    Patch(BTreeMap<String, Value>),
    /// Deletes the record, leaving a tombstone.
    Delete,
    /// Automerge changes to the record's document, as uncompressed change
    /// chunks in automerge's binary format, concatenated; automerge
    /// collections only, validated before they are stored.
    Automerge(Vec<u8>),
    /// Deletes the record and erases its history: every replica it reaches
    /// drops the record's earlier changes (values kept as history, as
    /// conflicts, or to undo a write included), and keeps a tombstone that
    /// a collection removes after its horizon. A purge is made on top of
    /// everything up to its own stamp (its `base` is its stamp), so nothing
    /// earlier is a conflict. Record-level and field-level collections.
    Purge,
}

/// One change to one record: the unit that is stored, merged and synced.
/// Its compact encoding is described in `docs/design.md`.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Unique id: origin replica and its sequence number.
    pub id: ChangeId,
    /// The collection of the record.
    pub collection: String,
    /// The key of the record.
    pub key: Key,
    /// The hybrid logical clock stamp given by the origin; never re-stamped.
    pub stamp: Stamp,
    /// The stamp of the record's winning version on the origin when it made
    /// this change ([`Stamp::ZERO`] for a new record): what the change was
    /// made on top of. A change whose stamp is at most another's `base` was
    /// seen by it; conflicts are losing changes nobody saw.
    pub base: Stamp,
    /// What the change does.
    pub op: Op,
}

impl Change {
    /// The change's position in its record's merge order.
    pub fn version(&self) -> Version {
        Version {
            stamp: self.stamp,
            id: self.id,
        }
    }

    /// A blake3 hash of the change's canonical encoding, for integrity checks and digests.
    pub fn hash(&self) -> blake3::Hash {
        blake3::hash(&crate::codec::encode(self))
    }
}

/// How the changes of one record are merged.
///
/// Every policy is a deterministic, total function of the set of a record's
/// changes: replicas that hold the same changes hold the same state. Two
/// replicas sync a collection only if they agree on its policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MergePolicy {
    /// Last writer wins: the change with the greatest [`Version`] decides the
    /// record; a winning delete leaves a tombstone.
    #[default]
    Lww,
    /// Field-level last writer wins: the value is a map, and each field has
    /// its own winner. A delete at stamp t masks every field written at or
    /// before t (also ones that arrive later); a field written after t brings
    /// the record back with only the fields written after t.
    FieldLww,
    /// Last writer wins after an origin rank: a change from a higher-ranked
    /// replica beats any change from a lower-ranked one, whatever the stamps
    /// (server-wins or client-wins); equal ranks fall back to [`Version`].
    Ranked(Ranks),
    /// A [`crate::Resolver`] registered under this name in
    /// [`crate::ReplicaConfig::resolvers`] picks the winner.
    Custom(String),
    /// The value is an automerge document merged by automerge (text, lists,
    /// counters); needs the `automerge` feature.
    Automerge,
}

impl MergePolicy {
    /// Whether the policy picks one change as the winner of the record
    /// (and so can record the losers as conflicts).
    pub fn is_record_level(&self) -> bool {
        matches!(self, Self::Lww | Self::Ranked(_) | Self::Custom(_))
    }
}

/// Origin ranks for [`MergePolicy::Ranked`]: replicas not listed rank 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ranks(Vec<(ReplicaId, i32)>);

impl Ranks {
    /// No ranks: every replica ranks 0 (plain last writer wins).
    pub fn new() -> Self {
        Self::default()
    }

    /// These ranks with `replica` at `rank`.
    pub fn with(mut self, replica: ReplicaId, rank: i32) -> Self {
        match self.0.binary_search_by_key(&replica, |(r, _)| *r) {
            Ok(i) => self.0[i].1 = rank,
            Err(i) => self.0.insert(i, (replica, rank)),
        }
        self
    }

    /// The hub wins: `hub` outranks everyone.
    pub fn hub_wins(hub: ReplicaId) -> Self {
        Self::new().with(hub, 1)
    }

    /// The clients win: `hub` ranks below everyone.
    pub fn clients_win(hub: ReplicaId) -> Self {
        Self::new().with(hub, -1)
    }

    /// The rank of `replica`.
    pub fn rank(&self, replica: ReplicaId) -> i32 {
        self.0
            .binary_search_by_key(&replica, |(r, _)| *r)
            .map_or(0, |i| self.0[i].1)
    }
}

/// The settings of a collection, fixed when it is first defined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionConfig {
    /// How the record's changes merge.
    pub policy: MergePolicy,
    /// Whether the collection is synced with other replicas; a local-only
    /// collection never leaves this replica.
    pub sync: bool,
    /// Which superseded changes this replica keeps in a record's history.
    /// Local to the replica: history never travels, and replicas that
    /// differ on it sync as usual.
    pub history: History,
}

impl Default for CollectionConfig {
    fn default() -> Self {
        Self {
            policy: MergePolicy::Lww,
            sync: true,
            history: History::Merge,
        }
    }
}

/// How much of a record's change history a replica keeps
/// ([`crate::Collection::history`]).
///
/// Whatever the setting, a replica keeps every change its merge policy
/// still needs: the winning change, the losing changes that are conflicts,
/// the change that set the record's `seen` mark, and, field-level, each
/// field's winning change and the newest delete (automerge: every change).
/// Changes superseded beyond that are dropped unless this asks for them.
/// Kept history is local: pulls send a record's current state (the changes
/// merge needs), never its history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum History {
    /// Only what merge needs (the default).
    #[default]
    Merge,
    /// Also the last `n` superseded changes of each record.
    Last(u32),
    /// Also the superseded changes stamped within this long of now (the
    /// replica's clock), trimmed when the record is next written.
    For(std::time::Duration),
}

impl CollectionConfig {
    /// A collection that never leaves this replica.
    pub fn local_only() -> Self {
        Self {
            sync: false,
            ..Self::default()
        }
    }

    /// This config with another merge policy.
    pub fn with_policy(mut self, policy: MergePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// This config keeping `history` (see [`History`]).
    pub fn with_history(mut self, history: History) -> Self {
        self.history = history;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_orders_stamp_then_origin_then_seq() {
        let a = ReplicaId::from_bytes([1; 16]);
        let b = ReplicaId::from_bytes([2; 16]);
        let v = |s, o, q| Version {
            stamp: Stamp::from_u64(s),
            id: ChangeId { origin: o, seq: q },
        };
        assert!(v(1, b, 9) < v(2, a, 1));
        assert!(v(2, a, 9) < v(2, b, 1));
        assert!(v(2, a, 1) < v(2, a, 2));
    }

    #[test]
    fn replica_ids_parse_back_from_their_display() {
        let id = ReplicaId::from_bytes([0xab, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0xff]);
        let text = id.to_string();
        assert_eq!(text.parse::<ReplicaId>(), Ok(id));
        assert_eq!(text.to_uppercase().parse::<ReplicaId>(), Ok(id));
        assert_eq!(
            "abc".parse::<ReplicaId>(),
            Err(ReplicaIdError::Length { len: 3 })
        );
        assert!(matches!(
            "zz".repeat(16).parse::<ReplicaId>(),
            Err(ReplicaIdError::NotHex { at: 0, found: 'z' })
        ));
        assert!("é".repeat(16).parse::<ReplicaId>().is_err());
    }

    #[test]
    fn key_round_trips_through_codec() {
        let k = Key::from(vec![0u8, 255, 7]);
        let bytes = crate::codec::encode(&k);
        let back: Key = crate::codec::decode_stored(&bytes).unwrap();
        assert_eq!(back, k);
        assert_eq!(format!("{:?}", Key::from("a")), "\"a\"");
        assert_eq!(format!("{}", Key::from(vec![0xff])), "0xff");
    }
}
