//! Errors, one type per operation, each able to say whose fault it is.

use crate::clock::ClockDriftError;
use crate::codec::DecodeError;
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
    #[error("inconsistent database: {0}")]
    Inconsistent(String),
}

macro_rules! storage_from_redb {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for StorageError {
            fn from(e: $ty) -> Self {
                Self::Database(e.into())
            }
        }
    )*};
}
storage_from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
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

/// Opening a replica failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The database could not be opened or read.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The file is a database, but not one of syncline's.
    #[error("not a syncline database: {0}")]
    Foreign(String),
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
    Config(String),
}

impl From<redb::DatabaseError> for OpenError {
    fn from(e: redb::DatabaseError) -> Self {
        Self::Storage(e.into())
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
    InvalidCollectionName(String),
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
    /// The collection's merge policy does not allow this, or is not
    /// available (a custom resolver not registered, a feature not enabled).
    #[error("not supported: {0}")]
    Unsupported(String),
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
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ReadError {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Storage(_) => Fault::Storage,
            _ => Fault::Caller,
        }
    }
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
        reason: String,
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
            Self::Open(OpenError::Storage(_)) => Fault::Storage,
            Self::Open(OpenError::Config(_)) => Fault::Caller,
            Self::Open(_) => Fault::Storage,
            Self::Write(e) => e.fault(),
            Self::Read(e) => e.fault(),
            Self::Apply(e) => e.fault(),
        }
    }
}
