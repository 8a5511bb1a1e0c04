//! syncline replicates collections of records between replicas: peer to
//! peer, or clients around a hub. Every replica writes locally first, into a
//! redb database where each record is a change log stamped by a hybrid
//! logical clock; replicas that have seen the same changes hold the same
//! records, byte for byte, whatever order the changes arrived in.
//!
//! ```
//! use syncline::{CollectionConfig, Replica, ReplicaConfig, Value};
//!
//! # fn main() -> Result<(), syncline::Error> {
//! let a = Replica::in_memory(ReplicaConfig::default())?;
//! let b = Replica::in_memory(ReplicaConfig::default())?;
//! for r in [&a, &b] {
//!     r.define_collection("todos", CollectionConfig::default())?;
//! }
//! a.collection("todos")?.put("milk", "buy milk")?;
//! a.collection("todos")?.put("bread", "buy bread")?;
//!
//! // Exchange feeds (the sync engine does this over a transport).
//! let feed = |r: &Replica| -> Result<Vec<_>, syncline::Error> {
//!     Ok(r.feed_after(0, 100)?.into_iter().map(|e| e.change).collect())
//! };
//! b.apply_remote(&feed(&a)?)?;
//! b.collection("todos")?.delete("milk")?; // after seeing the put: the delete wins
//! a.apply_remote(&feed(&b)?)?;
//!
//! assert_eq!(a.collection("todos")?.get("milk")?, None);
//! assert_eq!(a.collection("todos")?.get("bread")?, Some(Value::from("buy bread")));
//! assert_eq!(a.collection("todos")?.get("milk")?, None);
//! assert_eq!(a.collection("todos")?.states()?, b.collection("todos")?.states()?);
//! # Ok(()) }
//! ```
//!
//! # Model
//!
//! - A [`Replica`] is one redb file (or redb's in-memory backend) with a
//!   random [`ReplicaId`], a hybrid logical clock and a feed.
//! - A [`Collection`] is a named set of records with a [`MergePolicy`] and a
//!   sync flag. Keys are bytes ([`Key`]); values are [`Value`]s, and any serde
//!   type converts to and from one ([`to_value`], [`from_value`]).
//! - Every write becomes a [`Change`] with a unique [`ChangeId`] and a
//!   [`Stamp`]. Last writer wins by (stamp, origin); a delete leaves a
//!   tombstone that older writes cannot undo.
//! - A local write, its change-log entry and its feed entry commit in one
//!   durable redb transaction; [`Replica::apply_remote`] merges a batch of
//!   remote changes in one commit, idempotently.
//!
//! # Sync
//!
//! [`SyncServer`] serves a replica through any transport (a hub is a
//! replica that serves many clients); [`SyncEngine`] syncs a replica with
//! one remote: push, pull and a live subscription, offline first, with
//! backoff, cursors stored with the data, status, statistics and events.
//! Policies beyond last writer wins ([`MergePolicy`]): field-level, ranked
//! origins, custom [`Resolver`]s and automerge documents; concurrent losing
//! changes are kept as [`Conflict`]s until resolved.
//!
//! # Cargo features
//!
//! - `loopback` (default): [`transport::loopback`], the in-process transport
//!   with seeded fault injection.
//! - `quic`: `transport::quic`, quinn over rustls (ring).
//! - `http`: `transport::http`, an HTTP/1.1 and HTTP/2 server and client.
//! - `automerge`: the [`MergePolicy::Automerge`] policy.
//! - `testing`: `testing`, the deterministic simulation, the merge-law
//!   checker and the fuzz targets.
#![warn(missing_docs)]

mod access;
mod clock;
mod codec;
mod collection;
mod connect;
mod error;
mod merge;
pub mod metrics;
mod model;
mod rejected;
mod replica;
mod store;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transport;
mod txn;
mod value;
mod watch;

/// The automerge crate, re-exported for [`Collection::automerge_change`]
/// (feature `automerge`).
#[cfg(feature = "automerge")]
pub use ::automerge;
pub use access::{
    Access, AccessControl, AllowAll, AuthError, Collections, Credentials, Grant, Permissions,
    Principal, Rejection, Tokens, Validator,
};
pub use clock::{ClockDriftError, ManualTime, Stamp, SystemTimeSource, TimeSource};
pub use codec::DecodeError;
pub use collection::{Collection, RecordCounts, Scan};
pub use connect::{
    ConnectConfig, ConnectError, Failover, SyncOnceError, connect, connect_any, sync_once,
    sync_once_with,
};
pub use error::{
    ApplyError, CollectionNameError, ConfigError, Error, ForeignReason, Inconsistency,
    InvalidReason, KeyError, OpenError, ReadError, StorageError, WriteError,
};
#[cfg(feature = "automerge")]
pub use merge::AutomergeOpError;
pub use merge::{
    Candidate, OpError, OpKind, PolicyError, RecordState, Resolver, Rule, merge_all, merge_one,
};
pub use metrics::describe_metrics;
pub use model::{
    Change, ChangeId, CollectionConfig, History, Key, MergePolicy, Op, Ranks, ReplicaId,
    ReplicaIdError, Scope, Version,
};
pub use rejected::Rejected;
pub use replica::{MAX_COLLECTION_NAME_LEN, MAX_VALUE_LEN_LIMIT, Replica, ReplicaConfig};
pub use store::{
    ApplyReport, CollectionStats, Conflict, Difference, DifferenceKind, FORMAT_VERSION, FeedEntry,
    PeerState, ServedState, StorageStats, TableStats, VerifyReport,
};
pub use sync::config::{Direction, SyncConfig, TokenProvider};
pub use sync::engine::SyncEngine;
pub use sync::error::{ClockDrift, ProtocolViolation, SyncError};
pub use sync::protocol;
pub use sync::server::{DEFAULT_TOMBSTONE_HORIZON, ServerConfig, SyncServer};
pub use sync::status::{Status, SyncEvent, SyncReport, SyncStats};
/// Whose fault an error is, and how a remote refuses a request: one
/// vocabulary shared with the transport crates.
pub use syncline_transport::{Fault, RefusalCode, ServiceError};
pub use txn::{Committed, Transaction, Written};
pub use value::{MAX_DEPTH, Value, ValueError, from_value, to_value};
pub use watch::{ChangeEvent, Watch, WatchError};
