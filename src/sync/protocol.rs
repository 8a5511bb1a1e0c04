//! The sync protocol: versioned messages, their encoding, and the rules
//! both sides check in the handshake.
//!
//! The messages are public so that tools, tests and fuzzers can speak the
//! protocol; the sync engine and [`crate::SyncServer`] are its normal users.
//! `docs/design.md` describes the exchanges.
//!
//! Every request is a [`Request`] envelope carrying the protocol version, the
//! caller's replica id and its token, so a server can check each exchange on
//! its own (HTTP has no connection state). A request refused as a whole gets
//! the transport's refusal ([`ServiceError`]), never a [`Response`]. Frames
//! are encoded by the crate's codec module (bincode 2, compact forms in
//! `wire.rs`) and decoded with a bounded allocation.

use serde::{Deserialize, Serialize};
use syncline_transport::{RefusalCode, ServiceError};

use crate::clock::Stamp;
use crate::codec;
use crate::model::{Change, CollectionConfig, MergePolicy, ReplicaId, Scope};

/// The protocol version this build speaks.
///
/// - 1: the first version; refusals travelled inside a `Response`.
/// - 2: refusals travel as the transport's refusal ([`ServiceError`]) with
///   one [`RefusalCode`] vocabulary, on exchanges and subscriptions alike.
pub const PROTOCOL_VERSION: u32 = 2;

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
    /// One part of one group of mine too large for one batch: the server
    /// stages parts, out of sight, and applies the group with the last.
    PushPart {
        /// Which part.
        part: Part,
        /// Its changes; `through` is the lsn that ends the group.
        batch: Batch,
    },
    /// Go on with the group split into parts that a pull answered with:
    /// send the part of the group ending at `transfer` that starts at its
    /// change `next`.
    PullPart {
        /// The cursor: the server lsn the caller has pulled through.
        after: u64,
        /// The server lsn that ends the group.
        transfer: u64,
        /// Where the part wanted starts (the changes staged so far).
        next: u32,
        /// The collections wanted.
        collections: Vec<String>,
    },
    /// Send me the changes of one scope after its own cursor `after`: at
    /// most about `limit` changes, whole groups (their part inside the
    /// scope). With `part` (`transfer`, `next`): go on with the group
    /// ending at `transfer` that a previous answer split into parts, from
    /// its change `next`. The server serves a scope only when the caller's
    /// read grant covers all of it.
    PullScope {
        /// The scope.
        scope: Scope,
        /// The scope's cursor: the server lsn pulled through.
        after: u64,
        /// The most changes wanted (whole groups may exceed it).
        limit: u32,
        /// The group being pulled in parts, and where its next part starts.
        part: Option<(u64, u32)>,
    },
    /// Notify me whenever your feed moves past `after` inside one of these
    /// scopes (a stream, like `Subscribe`): a commit outside them wakes
    /// nothing. Served only when the read grant covers every scope.
    SubscribeScopes {
        /// The caller's cursor on the server feed.
        after: u64,
        /// The scopes.
        scopes: Vec<Scope>,
    },
    /// Tell me how far you have pulled each of your own remotes (other
    /// hubs), and as of which of your lsns: a caller that has pulled you
    /// past that lsn holds everything that remote had through that
    /// cursor, and may start there when it fails over to it.
    Relayed,
}

/// One part of a group too large for one batch. Parts are sent in order;
/// the group is applied, atomically, only with its last part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The transfer: the sender's lsn that ends the group.
    pub transfer: u64,
    /// Where the part starts: the position of its first change among the
    /// group's changes (as sent to this receiver), from 0.
    pub offset: u32,
    /// Whether it is the group's last part.
    pub last: bool,
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
    /// The changes, whole groups only.
    pub changes: Vec<Change>,
    /// The sender's feed lsn this batch covers through (push: the sender's
    /// own lsn; pull: the server's lsn).
    pub through: u64,
    /// blake3 over the encodings of the changes, in order, cut to 64 bits.
    pub digest: [u8; 8],
    /// The sizes of the batch's atomic groups, in order; empty when the
    /// whole batch is one group. A server judges each group of a push on
    /// its own ([`Verdict`]).
    pub groups: Vec<u32>,
}

impl Batch {
    /// A batch of `changes` covering the sender's feed through `through`,
    /// as one group, with its digest.
    pub fn new(changes: Vec<Change>, through: u64) -> Self {
        Self::with_groups(changes, Vec::new(), through)
    }

    /// A batch of `changes` in groups of the given sizes (which sum to the
    /// number of changes; empty: one group).
    pub fn with_groups(changes: Vec<Change>, groups: Vec<u32>, through: u64) -> Self {
        let digest = digest(&changes);
        Self {
            changes,
            through,
            digest,
            groups,
        }
    }

    /// Whether the digest matches the changes and the group sizes add up.
    pub fn verify(&self) -> bool {
        digest(&self.changes) == self.digest && self.group_ranges().is_some()
    }

    /// The index ranges of the groups in `changes`, or `None` when the
    /// sizes do not add up (or a group is empty).
    pub fn group_ranges(&self) -> Option<Vec<std::ops::Range<usize>>> {
        if self.groups.is_empty() {
            return Some(if self.changes.is_empty() {
                Vec::new()
            } else {
                std::iter::once(0..self.changes.len()).collect()
            });
        }
        let mut out = Vec::with_capacity(self.groups.len());
        let mut at = 0usize;
        for &len in &self.groups {
            let len = usize::try_from(len).ok().filter(|&l| l > 0)?;
            let end = at.checked_add(len)?;
            out.push(at..end);
            at = end;
        }
        (at == self.changes.len()).then_some(out)
    }
}

/// A server's verdict on one refused group of a push: the group's index in
/// [`Batch::groups`], and why. Nothing of a refused group was stored; the
/// other groups were.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The group's index in the push.
    pub group: u32,
    /// Why, as a [`RefusalCode`] number (403: may not write the
    /// collection; 409: the collection is not synced there; 422: a
    /// validator or the change's checks refused it).
    pub code: u16,
    /// The reason, for people.
    pub reason: String,
}

impl Verdict {
    /// The refusal code.
    pub fn code(&self) -> RefusalCode {
        RefusalCode::new(self.code)
    }
}

/// About how many bytes a change takes on the wire, for splitting a group
/// into parts.
pub(crate) fn change_len(change: &Change) -> usize {
    codec::encoded_len(change)
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

/// A response. A request refused as a whole never gets one: the server
/// answers with the transport's refusal instead (a [`ServiceError`] with a
/// [`RefusalCode`], an HTTP status on HTTP), so exchanges and subscriptions
/// refuse the same way.
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
    /// A part of a pushed group was staged; send the part that starts at
    /// change `next` (which may repeat or skip ahead of what was sent, after
    /// a reconnect).
    Staged {
        /// The transfer: the caller's lsn that ends the group.
        transfer: u64,
        /// Where the part the server needs next starts.
        next: u32,
    },
    /// The answer to a pull whose next group is too large for one batch:
    /// one part of it. The caller stages parts and applies the group, with
    /// the cursor `batch.through`, only with the last.
    Part {
        /// Which part.
        part: Part,
        /// Its changes; `through` is the lsn that ends the group.
        batch: Batch,
        /// Whether more changes follow the group.
        has_more: bool,
    },
    /// A push was judged group by group, and the groups accepted durably
    /// committed: the caller's feed is done with through `through`.
    Ack {
        /// The caller's lsn the push covered through.
        through: u64,
        /// How many changes were new to the server.
        applied: u64,
        /// The groups refused, in order; empty when all were accepted.
        refused: Vec<Verdict>,
    },
    /// The answer to [`RequestBody::Relayed`].
    Relayed {
        /// One entry per remote the server pulls from.
        remotes: Vec<Relayed>,
    },
}

/// How far a server has pulled one of its remotes, as of one of its own
/// lsns ([`RequestBody::Relayed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relayed {
    /// The remote (another hub).
    pub remote: ReplicaId,
    /// The remote's lsn the server has pulled through.
    pub pulled: u64,
    /// The server's own lsn after the commit that pulled through it.
    pub at: u64,
}

impl Response {
    /// The variant's name, for error messages that must not print a whole batch.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Welcome { .. } => "a welcome",
            Self::Changes { .. } => "changes",
            Self::Ack { .. } => "an ack",
            Self::Staged { .. } => "a staged part",
            Self::Part { .. } => "a part of a group",
            Self::Relayed { .. } => "relayed cursors",
        }
    }
}

/// A frame on a subscription: the server's feed has moved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notify {
    /// The server's last lsn.
    pub last_lsn: u64,
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

/// The protocol version a request frame claims: its first field, read
/// without decoding the rest, so that a server can name it when a caller of
/// another version shaped the rest of its envelope otherwise.
pub(crate) fn request_version(frame: &[u8]) -> Option<u32> {
    codec::decode_peer_prefix::<u32>(frame).ok()
}

/// The refusal a server of protocol version 1 sent inside its answer
/// (`Response::Refused { code, reason }`, variant 3 of that version's
/// `Response`), read so that this build can say why an old server refused it.
pub(crate) fn legacy_refusal(frame: &[u8]) -> Option<ServiceError> {
    let (tag, code, reason): (u32, u32, String) = codec::decode_peer(frame).ok()?;
    if tag != 3 {
        return None;
    }
    // Version 1's refusal kinds, in their order.
    let code = match code {
        0 => RefusalCode::UPGRADE_REQUIRED,
        1 => RefusalCode::UNAUTHORIZED,
        2 => RefusalCode::FORBIDDEN,
        3 => RefusalCode::CONFLICT,
        4 => RefusalCode::UNPROCESSABLE,
        5 => RefusalCode::BAD_REQUEST,
        _ => RefusalCode::INTERNAL,
    };
    Some(ServiceError::new(
        code,
        format!("the remote speaks an older protocol: {reason}"),
    ))
}

/// The synced collections among `collections`, with their policies: what a
/// replica announces in the handshake.
pub(crate) fn synced_specs(collections: Vec<(String, CollectionConfig)>) -> Vec<CollectionSpec> {
    collections
        .into_iter()
        .filter(|(_, c)| c.sync)
        .map(|(name, c)| CollectionSpec {
            name,
            policy: c.policy,
        })
        .collect()
}

/// Why two replicas cannot sync a collection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Disagreement {
    /// One side syncs a collection the other does not.
    #[error("collection {collection:?} is not synced on the server")]
    Missing {
        /// The collection.
        collection: String,
    },
    /// Both sync the collection, with different merge policies.
    #[error(
        "collection {collection:?} merges by {server:?} on the server and by {caller:?} on the caller"
    )]
    Policy {
        /// The collection.
        collection: String,
        /// The server's policy.
        server: MergePolicy,
        /// The caller's policy.
        caller: MergePolicy,
    },
}

/// Every collection both sides sync must merge by the same policy. Both
/// sides check it: the server on the caller's hello, the caller on the
/// server's welcome. A collection only one side syncs is not an error
/// here: the caller leaves it out (and reports it), the others sync.
pub(crate) fn check_collections(
    caller: &[CollectionSpec],
    server: &[CollectionSpec],
) -> Result<(), Disagreement> {
    for spec in caller {
        match server.iter().find(|o| o.name == spec.name) {
            None => {}
            Some(o) if o.policy != spec.policy => {
                return Err(Disagreement::Policy {
                    collection: spec.name.clone(),
                    server: o.policy.clone(),
                    caller: spec.policy.clone(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
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
    fn a_version_1_refusal_is_read() {
        // Response::Refused(Refusal { code: Version, reason }) as version 1 encoded it.
        let frame = codec::encode(&(3u32, 0u32, "this server speaks 1".to_string()));
        let refusal = legacy_refusal(&frame).expect("read");
        assert_eq!(refusal.code(), RefusalCode::UPGRADE_REQUIRED);
        assert!(refusal.reason().contains("this server speaks 1"));
        assert_eq!(legacy_refusal(&encode(&Notify { last_lsn: 3 })), None);
    }

    #[test]
    fn the_version_is_read_from_any_envelope() {
        let req = Request {
            version: 77_000,
            from: ReplicaId::from_bytes([2; 16]),
            token: None,
            body: RequestBody::Subscribe { after: 1 },
        };
        assert_eq!(request_version(&encode(&req)), Some(77_000));
        assert_eq!(request_version(&[]), None);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode::<Request>(&[0xff; 64]).is_err());
        assert!(decode::<Response>(&[]).is_err());
    }
}
