//! syncline (in progress)
#![warn(missing_docs)]

mod clock;
mod codec;
mod collection;
mod error;
mod merge;
mod model;
mod replica;
mod tables;
mod txn;
mod value;
mod watch;

pub use clock::{ClockDriftError, ManualTime, Stamp, SystemTimeSource, TimeSource};
pub use codec::DecodeError;
pub use collection::{Collection, Scan};
pub use error::{
    ApplyError, Error, Fault, KeyError, OpenError, ReadError, StorageError, WriteError,
};
pub use merge::{RecordState, merge_all, merge_one};
pub use model::{Change, ChangeId, CollectionConfig, Key, MergePolicy, Op, ReplicaId, Version};
pub use replica::{
    ApplyReport, FeedEntry, MAX_COLLECTION_NAME_LEN, MAX_VALUE_LEN_LIMIT, Replica, ReplicaConfig,
};
pub use txn::{Committed, Transaction};
pub use value::{Value, ValueError, from_value, to_value};
pub use watch::{ChangeEvent, Watch, WatchError};
