//! Errors, one type per operation, each able to say whose fault it is.

use crate::clock::ClockDriftError;
use crate::codec::DecodeError;
use crate::merge::{OpError, PolicyError};
use crate::model::ChangeId;
use crate::value::ValueError;
use syncline_transport::Fault;

/// The local database failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// redb reported an error (I/O, corruption, lock).
    #[error("database error: {0}")]
    Database(#[from] redb::Error),
    /// Stored bytes did not decode: the file is corrupted or was written by
    /// an incompatible build.
    #[error("corrupted data in table {table}: {source}")]
    Corrupted {
        /// The table holding the bad bytes.
        table: &'static str,
        /// What was wrong with them.
        source: DecodeError,
    },
    /// The stored state contradicts itself.
    #[error("inconsistent table {table}: {reason}")]
    Invalid {
        /// The table where the contradiction showed.
        table: &'static str,
        /// What contradicts what.
        reason: Inconsistency,
    },
    /// A task running store work for the sync engine or server panicked or
    /// was cancelled; whatever it was writing was not committed.
    #[error("a store task failed before it finished")]
    TaskFailed,
    /// The replica was closed ([`crate::Replica::close`]).
    #[error("the replica is closed")]
    Closed,
    /// The replica was opened read-only ([`crate::Replica::open_read_only`])
    /// and a write was asked of it.
    #[error("the replica is open read-only")]
    ReadOnly,
}

/// How the stored state contradicts itself ([`StorageError::Invalid`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Inconsistency {
    /// A flat key does not parse (`src/store/keys.rs` has the layout).
    #[error("malformed key {key:?}")]
    MalformedKey {
        /// The key's bytes.
        key: Vec<u8>,
    },
    /// A `meta-1` counter is not 8 bytes long.
    #[error("meta entry {name:?} is not 8 bytes")]
    MetaEntryLength {
        /// The entry's name.
        name: &'static str,
    },
    /// A feed group is empty, or holds more changes than lsns below it.
    #[error("feed group at {last} holds {len} changes")]
    FeedGroup {
        /// The group's key: its last lsn.
        last: u64,
        /// The number of changes it holds.
        len: u64,
    },
    /// A feed entry names a change the change log does not hold.
    #[error("feed entry {lsn} has no change")]
    MissingChange {
        /// The entry's lsn.
        lsn: u64,
    },
    /// A refused group names a change the change log does not hold.
    #[error("a refused group names a change the log does not hold")]
    MissingRejectedChange,
    /// Merging a change into an empty record gave no state.
    #[error("a first change made no state")]
    NoFirstState,
    /// A change made here just now found its slot taken: the clock issued a
    /// stamp twice.
    #[error("a fresh change found its slot taken")]
    StampReused,
    /// A one-write transaction committed no change.
    #[error("a single write committed nothing")]
    EmptyCommit,
    /// A stored origin number has no replica id in `origins-3`.
    #[error("origin number {index} is not in the origin table")]
    UnknownOrigin {
        /// The origin number.
        index: u32,
    },
    /// A feed entry names a record that is missing, or whose row points at
    /// another lsn.
    #[error("feed entry {lsn} does not match its record")]
    FeedRecord {
        /// The entry's lsn.
        lsn: u64,
    },
}

/// `From` each of redb's error types for an error that holds a
/// [`StorageError`], so that `?` works wherever redb's errors enter.
macro_rules! from_redb {
    ($target:ident: $($ty:ty),* $(,)?) => {$(
        impl From<$ty> for $target {
            fn from(e: $ty) -> Self {
                Self::from(StorageError::Database(e.into()))
            }
        }
    )*};
}
from_redb!(
    StorageError: redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    redb::CompactionError,
);
from_redb!(
    OpenError: redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
);

/// A key the store refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Keys must not be empty.
    #[error("empty key")]
    Empty,
    /// The key is longer than the configured maximum.
    #[error("key of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// The key's length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
}

/// A collection name the store refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CollectionNameError {
    /// Collection names must not be empty.
    #[error("empty collection name")]
    Empty,
    /// The name is longer than [`crate::MAX_COLLECTION_NAME_LEN`].
    #[error("collection name of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// The name's length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
}

/// A [`crate::ReplicaConfig`] (or what it must provide) is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A limit is zero where at least 1 is needed.
    #[error("{field} must be at least 1")]
    Zero {
        /// The configuration field.
        field: &'static str,
    },
    /// A limit is above what the store can carry.
    #[error("{field} {value} exceeds the limit of {limit}")]
    TooLarge {
        /// The configuration field.
        field: &'static str,
        /// The configured value.
        value: usize,
        /// The largest value allowed.
        limit: usize,
    },
    /// A stored collection's policy has no rule with this configuration
    /// (a custom resolver not registered, a feature not enabled).
    #[error("collection {collection:?}: {source}")]
    Policy {
        /// The collection.
        collection: String,
        /// What is missing.
        source: PolicyError,
    },
}

/// Why a file is a database but not one of syncline's ([`OpenError::Foreign`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForeignReason {
    /// The file holds tables, but no `meta-1`.
    #[error("the file holds tables {tables:?} but no \"meta-1\"")]
    NoMeta {
        /// The names of the tables it holds.
        tables: Vec<String>,
    },
    /// `meta-1` has no readable format version.
    #[error("no readable format version")]
    NoFormat,
    /// `meta-1` has no replica id.
    #[error("no replica id")]
    NoReplicaId,
    /// `meta-1`'s replica id is not 16 bytes.
    #[error("malformed replica id")]
    MalformedReplicaId,
}

/// Opening a replica failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The database could not be opened or read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The file is a database, but not one of syncline's.
    #[error("not a syncline database: {0}")]
    Foreign(ForeignReason),
    /// The file is in an older format that opening for writing upgrades
    /// in place; a read-only open ([`crate::Replica::open_read_only`])
    /// writes nothing, so it cannot.
    #[error("format version {found} needs an upgrade, which a read-only open does not make")]
    NeedsUpgrade {
        /// The version in the file.
        found: u32,
    },
    /// The file was written by a newer or unknown format version.
    #[error("unsupported format version {found}; this build reads version {supported}")]
    UnsupportedFormat {
        /// The version in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
}

impl OpenError {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Config(_) => Fault::Caller,
            _ => Fault::Storage,
        }
    }
}

/// A local write (put, patch, delete, transaction, collection definition) failed.
/// Nothing of the failed write was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// No collection of that name is defined on this replica.
    #[error("unknown collection {0:?}")]
    UnknownCollection(String),
    /// The collection exists with another configuration.
    #[error("collection {0:?} is already defined with another configuration")]
    CollectionMismatch(String),
    /// The collection name is empty or too long.
    #[error("invalid collection name: {0}")]
    InvalidCollectionName(#[from] CollectionNameError),
    /// The key is invalid.
    #[error("invalid key: {0}")]
    Key(#[from] KeyError),
    /// The encoded value is larger than the configured maximum.
    #[error("value of {len} bytes exceeds the maximum of {max}")]
    ValueTooLarge {
        /// The encoded length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A patch needs the record's value to be a map, and a field-level
    /// collection holds maps only.
    #[error("the record's value must be a map")]
    NotAMap,
    /// The collection's merge policy is not available (a custom resolver not
    /// registered, a feature not enabled).
    #[error("policy unavailable: {0}")]
    Policy(#[from] PolicyError),
    /// The collection's merge policy does not allow this op, or the op is
    /// malformed for it.
    #[error("not supported: {0}")]
    Op(#[from] OpError),
    /// The closure given to [`crate::Collection::automerge_change`] failed.
    #[cfg(feature = "automerge")]
    #[error("automerge: {0}")]
    Automerge(#[source] ::automerge::AutomergeError),
    /// A transaction holds more changes than one batch may carry.
    #[error("transaction of {len} changes exceeds the maximum of {max}")]
    TransactionTooLarge {
        /// The number of changes.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A typed value did not convert.
    #[error("value conversion: {0}")]
    Value(#[from] ValueError),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl WriteError {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Storage(StorageError::Closed | StorageError::ReadOnly) => Fault::Caller,
            Self::Storage(_) => Fault::Storage,
            _ => Fault::Caller,
        }
    }
}

/// A read (get, scan, history, feed) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// No collection of that name is defined on this replica.
    #[error("unknown collection {0:?}")]
    UnknownCollection(String),
    /// The key is invalid.
    #[error("invalid key: {0}")]
    Key(#[from] KeyError),
    /// The stored value did not convert to the requested type.
    #[error("value conversion: {0}")]
    Value(#[from] ValueError),
    /// The collection's merge policy does not offer this read (an automerge
    /// document of a collection of another policy).
    #[error("not supported: {0}")]
    Op(#[from] OpError),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ReadError {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Storage(StorageError::Closed) => Fault::Caller,
            Self::Storage(_) => Fault::Storage,
            _ => Fault::Caller,
        }
    }
}

/// Why a remote change is malformed ([`ApplyError::InvalidChange`]); local
/// writes fail with the matching [`WriteError`] variants instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidReason {
    /// Sequence numbers start at 1.
    #[error("sequence numbers start at 1")]
    ZeroSeq,
    /// The change claims to be made on top of a change stamped after it.
    #[error("made on top of a later change")]
    BaseAfterStamp,
    /// The key is empty or too long.
    #[error("invalid key: {0}")]
    Key(#[from] KeyError),
    /// The encoded value is larger than the configured maximum.
    #[error("value of {len} bytes exceeds the maximum of {max}")]
    ValueTooLarge {
        /// The encoded length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The value nests too deep.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// The collection's policy does not allow the op, or the op is malformed.
    #[error(transparent)]
    Op(#[from] OpError),
}

/// Applying a batch of remote changes failed; nothing of the batch was
/// stored and the clock did not move.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// A change's stamp is too far ahead of local time.
    #[error(transparent)]
    ClockDrift(#[from] ClockDriftError),
    /// A change names a collection this replica does not have.
    #[error("change {id:?} names unknown collection {collection:?}")]
    UnknownCollection {
        /// The change.
        id: ChangeId,
        /// The collection it named.
        collection: String,
    },
    /// A change names a collection that never leaves its replica.
    #[error("change {id:?} names local-only collection {collection:?}")]
    LocalOnlyCollection {
        /// The change.
        id: ChangeId,
        /// The collection it named.
        collection: String,
    },
    /// A change is malformed (bad key, oversized value, wrong op for the policy).
    #[error("invalid change {id:?}: {reason}")]
    InvalidChange {
        /// The change.
        id: ChangeId,
        /// What is wrong with it.
        reason: InvalidReason,
    },
    /// A change takes the slot (record, stamp and origin) of a different
    /// change already stored: an origin never stamps two changes alike, so
    /// one of them is forged or broken.
    #[error(
        "change {id:?} differs from the change already stored in its slot (same record, stamp and origin)"
    )]
    ConflictingDuplicate {
        /// The change.
        id: ChangeId,
    },
    /// A change is stamped below this replica's tombstone collection mark
    /// and its record is not held: it could bring back a record deleted
    /// and collected. Its sender fell behind the horizon and must resync.
    #[error(
        "change {id:?} is older than the tombstone horizon and its record is not held: the sender must resync"
    )]
    BeyondHorizon {
        /// The change.
        id: ChangeId,
    },
    /// The batch holds more changes than allowed.
    #[error("batch of {len} changes exceeds the maximum of {max}")]
    BatchTooLarge {
        /// The number of changes.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ApplyError {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Storage(_) => Fault::Storage,
            _ => Fault::Peer,
        }
    }
}

/// Any error of syncline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Opening a replica failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A local write failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A read failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Applying remote changes failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl Error {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Open(e) => e.fault(),
            Self::Write(e) => e.fault(),
            Self::Read(e) => e.fault(),
            Self::Apply(e) => e.fault(),
        }
    }
}
