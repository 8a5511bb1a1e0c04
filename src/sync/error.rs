//! How a sync round fails, and whose fault it is.

use std::sync::Arc;

use syncline_transport::{Fault, RefusalCode, ServiceError, TransportError};

use crate::clock::ClockDriftError;
use crate::codec::DecodeError;
use crate::error::{ApplyError, ReadError, StorageError};
use crate::sync::protocol::Disagreement;

/// A sync round failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The transport failed (unreachable, lost, closed, over-limit frame).
    #[error("transport: {0}")]
    Transport(TransportError),
    /// The remote refused the request as a whole; nothing of it was stored
    /// there. The code says why ([`RefusalCode::UNAUTHORIZED`],
    /// [`RefusalCode::FORBIDDEN`], [`RefusalCode::CONFLICT`] for collections
    /// that disagree, [`RefusalCode::UPGRADE_REQUIRED`] for another protocol
    /// version, ...).
    #[error("refused by the remote: {0}")]
    Refused(ServiceError),
    /// One side's clock runs too far ahead of the other's: the same error
    /// whether the remote refused this replica's clock or stamps, or this
    /// replica refused a pulled batch. Nothing of the batch was stored.
    #[error("clock drift: {0}")]
    ClockDrift(ClockDrift),
    /// The remote broke the protocol.
    #[error("protocol violation by the remote: {0}")]
    Protocol(ProtocolViolation),
    /// A pulled batch was refused here (an invalid change); nothing of it
    /// was stored.
    #[error("pulled batch refused: {0}")]
    Apply(Arc<ApplyError>),
    /// Reading or writing the local database failed.
    #[error("local storage: {0}")]
    Storage(Arc<StorageError>),
    /// A read of the local replica failed for a reason other than storage.
    #[error("local read: {0}")]
    Read(Arc<ReadError>),
    /// The engine was stopped.
    #[error("the engine is stopped")]
    Stopped,
    /// [`crate::SyncEngine::wait_synced`] gave up waiting.
    #[error("not synced within {0:?}")]
    TimedOut(std::time::Duration),
}

/// Which clock runs ahead, and by how much when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClockDrift {
    /// The remote's stamps are too far ahead of this replica's time.
    #[error(transparent)]
    RemoteAhead(ClockDriftError),
    /// This replica's clock or stamps are too far ahead of the remote's
    /// time: the remote refused them ([`RefusalCode::UNPROCESSABLE`]).
    #[error("the remote refused this replica's clock: {}", .0.reason())]
    LocalAhead(ServiceError),
}

/// How the remote broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A frame did not decode.
    #[error("undecodable {what}: {source}")]
    Undecodable {
        /// Which frame: `"response"` or `"notification"`.
        what: &'static str,
        /// Why.
        source: DecodeError,
    },
    /// A response of the wrong kind.
    #[error("expected {expected}, got {got}")]
    Unexpected {
        /// What the request calls for.
        expected: &'static str,
        /// What came.
        got: &'static str,
    },
    /// An ack through another lsn than the push covered.
    #[error("expected an ack through {expected}, got one through {got}")]
    AckMismatch {
        /// The lsn the push covered.
        expected: u64,
        /// The lsn acknowledged.
        got: u64,
    },
    /// A batch's digest does not match its changes.
    #[error("the batch digest does not match its changes")]
    DigestMismatch,
    /// A pull answer's cursor is behind the one asked after.
    #[error("the cursor went backwards from {from} to {to}")]
    CursorBackwards {
        /// The cursor asked after.
        from: u64,
        /// The cursor answered.
        to: u64,
    },
    /// A pull answer holds a change of a collection not asked for.
    #[error("a change of unrequested collection {collection:?}")]
    UnrequestedCollection {
        /// The collection.
        collection: String,
    },
    /// A pull of one scope answered with a record outside it.
    #[error("the pull of a scope answered with record {key} of {collection:?}, outside it")]
    OutsideScope {
        /// The record's collection.
        collection: String,
        /// Its key.
        key: crate::Key,
    },
    /// A push's ack names a group the push did not carry, or names one
    /// twice or out of order.
    #[error("the ack judges group {group}, which the push did not carry")]
    BadVerdict {
        /// The group index named.
        group: u32,
    },
    /// A part of a group sent in parts names another group, or a place in
    /// it where no part starts.
    #[error("no part of group {transfer} starts at change {offset}")]
    BadPart {
        /// The group named.
        transfer: u64,
        /// Where the part was to start.
        offset: u32,
    },
    /// The remote claims this replica's own id.
    #[error("the remote has this replica's own id")]
    OwnReplicaId,
    /// The welcome's collections disagree with this replica's.
    #[error("{0}")]
    Disagreement(Disagreement),
    /// The subscription stream ended.
    #[error("the subscription ended")]
    SubscriptionEnded,
}

impl SyncError {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Transport(e) => e.fault(),
            Self::Refused(r) => r.code().fault(),
            Self::ClockDrift(ClockDrift::RemoteAhead(_)) => Fault::Peer,
            Self::ClockDrift(ClockDrift::LocalAhead(_)) => Fault::Local,
            Self::Protocol(_) => Fault::Peer,
            Self::Apply(e) => e.fault(),
            Self::Storage(_) => Fault::Storage,
            Self::Read(e) => e.fault(),
            Self::Stopped => Fault::Caller,
            Self::TimedOut(_) => Fault::Network,
        }
    }

    /// The remote's refusal code, when the remote refused the request.
    pub fn refusal_code(&self) -> Option<RefusalCode> {
        match self {
            Self::Refused(r) | Self::ClockDrift(ClockDrift::LocalAhead(r)) => Some(r.code()),
            _ => None,
        }
    }
}

impl From<TransportError> for SyncError {
    /// A refusal delivered by the transport is the remote's refusal; one for
    /// a clock too far ahead is [`SyncError::ClockDrift`].
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Refused { code, reason } => ServiceError::new(code, reason).into(),
            other => Self::Transport(other),
        }
    }
}

impl From<ServiceError> for SyncError {
    fn from(refusal: ServiceError) -> Self {
        if refusal.code() == RefusalCode::UNPROCESSABLE {
            Self::ClockDrift(ClockDrift::LocalAhead(refusal))
        } else {
            Self::Refused(refusal)
        }
    }
}

impl From<ProtocolViolation> for SyncError {
    fn from(e: ProtocolViolation) -> Self {
        Self::Protocol(e)
    }
}

impl From<ApplyError> for SyncError {
    /// A pulled batch refused here: storage failures and clock drift keep
    /// their own shapes.
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Storage(s) => Self::Storage(Arc::new(s)),
            ApplyError::ClockDrift(d) => Self::ClockDrift(ClockDrift::RemoteAhead(d)),
            other => Self::Apply(Arc::new(other)),
        }
    }
}

impl From<ReadError> for SyncError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Storage(s) => Self::Storage(Arc::new(s)),
            other => Self::Read(Arc::new(other)),
        }
    }
}

impl From<StorageError> for SyncError {
    fn from(e: StorageError) -> Self {
        Self::Storage(Arc::new(e))
    }
}
