//! The sync protocol: versioned messages and their encoding.
//!
//! Public so that tools, tests and fuzzers can speak it; the sync engine and
//! [`crate::SyncServer`] are its normal users. `docs/design.md` describes the
//! exchanges.
//!
//! Every request is a [`Request`] envelope carrying the protocol version, the
//! caller's replica id and its token, so a server can check each exchange on
//! its own (HTTP has no connection state). Frames are encoded by
//! the crate's codec module (bincode 2) and decoded with a bounded allocation.

use serde::{Deserialize, Serialize};

use crate::clock::Stamp;
use crate::codec;
use crate::model::{Change, MergePolicy, ReplicaId};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// A request envelope. Its encoding leaves out the origin of pushed
/// changes made by the sender (see `docs/design.md`).
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The caller's protocol version.
    pub version: u32,
    /// The caller's replica id.
    pub from: ReplicaId,
    /// The caller's credentials, if any.
    pub token: Option<String>,
    /// What it asks.
    pub body: RequestBody,
}

/// What a request asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RequestBody {
    /// The handshake: the caller's clock and synced collections.
    Hello {
        /// The caller's clock reading.
        clock: Stamp,
        /// The caller's synced collections and their policies.
        collections: Vec<CollectionSpec>,
    },
    /// Send me your feed after `after`, at most about `limit` changes, of
    /// these collections.
    Pull {
        /// The cursor: the server lsn the caller has pulled through.
        after: u64,
        /// The most changes wanted (whole groups may exceed it).
        limit: u32,
        /// The collections wanted.
        collections: Vec<String>,
    },
    /// Apply these changes of mine.
    Push(Batch),
    /// Notify me whenever your feed moves past `after`.
    Subscribe {
        /// The caller's cursor on the server feed.
        after: u64,
    },
}

/// A collection and its merge policy, as compared in the handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionSpec {
    /// The collection's name.
    pub name: String,
    /// Its merge policy.
    pub policy: MergePolicy,
}

/// A batch of changes with the digest that lets the receiver check it.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The changes, whole groups only; applied in one commit.
    pub changes: Vec<Change>,
    /// The sender's feed lsn this batch covers through (push: the sender's
    /// own lsn; pull: the server's lsn).
    pub through: u64,
    /// blake3 over the encodings of the changes, in order, cut to 64 bits.
    pub digest: [u8; 8],
}

impl Batch {
    /// A batch of `changes` covering the sender's feed through `through`, with its digest.
    pub fn new(changes: Vec<Change>, through: u64) -> Self {
        let digest = digest(&changes);
        Self {
            changes,
            through,
            digest,
        }
    }

    /// Whether the digest matches the changes.
    pub fn verify(&self) -> bool {
        digest(&self.changes) == self.digest
    }
}

/// How many encoded bytes [`digest`] gathers per hasher update.
const CHUNK: usize = 64 << 10;

/// blake3 over the canonical encodings of `changes`, in order, cut to 64
/// bits: a check against corruption and bugs on the way, not a signature
/// (anyone can compute it), so 64 bits are plenty.
pub fn digest(changes: &[Change]) -> [u8; 8] {
    let mut hasher = blake3::Hasher::new();
    // The encodings, concatenated, go to the hasher in chunks: blake3 is
    // fastest on long inputs, and bincode writes many tiny pieces.
    let mut chunk = Vec::with_capacity(CHUNK + 1024);
    for change in changes {
        codec::encode_into(change, &mut chunk);
        if chunk.len() >= CHUNK {
            hasher.update(&chunk);
            chunk.clear();
        }
    }
    hasher.update(&chunk);
    let mut out = [0; 8];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    out
}

/// A response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The handshake was accepted.
    Welcome {
        /// The server's replica id.
        replica: ReplicaId,
        /// The server's clock reading.
        clock: Stamp,
        /// The server's synced collections.
        collections: Vec<CollectionSpec>,
        /// The server's last lsn.
        last_lsn: u64,
    },
    /// The answer to a pull.
    Changes {
        /// The changes after the cursor (possibly none when everything was
        /// filtered out), through the `next` cursor.
        batch: Batch,
        /// Whether more changes follow `batch.through`.
        has_more: bool,
    },
    /// A push was applied and durably committed through `through`.
    Ack {
        /// The caller's lsn the server now holds everything through.
        through: u64,
        /// How many changes were new to the server.
        applied: u64,
    },
    /// The request was refused; nothing was stored.
    Refused(Refusal),
}

/// A frame on a subscription: the server's feed has moved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notify {
    /// The server's last lsn.
    pub last_lsn: u64,
}

/// Why a server refused a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {reason}")]
pub struct Refusal {
    /// What kind of refusal.
    pub code: RefusalCode,
    /// A human-readable reason.
    pub reason: String,
}

/// The kinds of refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RefusalCode {
    /// The protocol versions differ.
    Version,
    /// The token is missing or wrong.
    Unauthenticated,
    /// The principal may not read or write a collection.
    Forbidden,
    /// The collections or their policies differ.
    CollectionMismatch,
    /// A clock or a stamp is too far ahead.
    ClockDrift,
    /// The request was malformed, over a limit, or its digest did not match.
    BadRequest,
    /// The server failed to store or read.
    ServerError,
}

impl Refusal {
    /// A refusal with a code and a reason.
    pub fn new(code: RefusalCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// Encodes a protocol message ([`Request`], [`Response`], [`Notify`]).
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    codec::encode(message)
}

/// Decodes a protocol message from a peer. Allocation is bounded, so
/// hostile bytes give an error, never a panic or an out-of-memory abort.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, codec::DecodeError> {
    codec::decode_peer(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChangeId, Op};
    use crate::value::Value;

    fn change(seq: u64) -> Change {
        Change {
            id: ChangeId {
                origin: ReplicaId::from_bytes([1; 16]),
                seq,
            },
            collection: "c".into(),
            key: "k".into(),
            stamp: Stamp::new(10, seq as u16),
            base: Stamp::ZERO,
            op: Op::Put(Value::Int(seq as i64)),
        }
    }

    #[test]
    fn messages_round_trip() {
        let req = Request {
            version: PROTOCOL_VERSION,
            from: ReplicaId::from_bytes([2; 16]),
            token: Some("t".into()),
            body: RequestBody::Push(Batch::new(vec![change(1), change(2)], 2)),
        };
        let back: Request = decode(&encode(&req)).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn digest_detects_tampering() {
        let mut batch = Batch::new(vec![change(1), change(2)], 2);
        assert!(batch.verify());
        batch.changes[1].op = Op::Delete;
        assert!(!batch.verify());
        let mut batch = Batch::new(vec![change(1), change(2)], 2);
        batch.changes.swap(0, 1);
        assert!(!batch.verify());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode::<Request>(&[0xff; 64]).is_err());
        assert!(decode::<Response>(&[]).is_err());
    }
}
