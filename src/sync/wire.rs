//! The compact serde forms of [`Change`], [`Batch`] and [`Request`].
//!
//! A change is a 7-tuple `(origin, seq, collection, key, stamp, base_delta,
//! op)`:
//!
//! - `origin` is an `Option<ReplicaId>`, `None` when the change was made by
//!   the sender of the request that carries it (most pushed changes), which
//!   saves 15 bytes a change;
//! - `base_delta` is `0` for [`Stamp::ZERO`], else `stamp - base + 1`, so a
//!   recent base costs a few bytes instead of nine. A change whose base is
//!   after its stamp is invalid (refused on receipt) and encodes as
//!   `base == stamp`.
//!
//! Outside a request the origin is always present, so the encoding of a
//! change on its own (its hash, batch digests, pull answers) is canonical.

use std::fmt;

use serde::de::{self, DeserializeSeed, EnumAccess, SeqAccess, VariantAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::Stamp;
use crate::model::{Change, ChangeId, Key, Op, ReplicaId};
use crate::sync::protocol::{Batch, CollectionSpec, Part, Request, RequestBody};

/// The most elements preallocated for a sequence whose length a peer claims.
const MAX_PREALLOC: usize = 1024;

/// A change as sent by `sender`.
struct WireChange<'a> {
    change: &'a Change,
    sender: Option<ReplicaId>,
}

impl Serialize for WireChange<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.change;
        let origin = (Some(c.id.origin) != self.sender).then_some(c.id.origin);
        let base_delta = if c.base == Stamp::ZERO {
            0
        } else {
            c.stamp
                .as_u64()
                .saturating_sub(c.base.as_u64())
                .saturating_add(1)
        };
        let mut t = s.serialize_tuple(7)?;
        t.serialize_element(&origin)?;
        t.serialize_element(&c.id.seq)?;
        t.serialize_element(&c.collection)?;
        t.serialize_element(&c.key)?;
        t.serialize_element(&c.stamp)?;
        t.serialize_element(&base_delta)?;
        t.serialize_element(&c.op)?;
        t.end()
    }
}

impl Serialize for Change {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireChange {
            change: self,
            sender: None,
        }
        .serialize(s)
    }
}

/// Reads a change sent by `sender`.
#[derive(Clone, Copy)]
struct ChangeSeed {
    sender: Option<ReplicaId>,
}

impl<'de> DeserializeSeed<'de> for ChangeSeed {
    type Value = Change;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Change, D::Error> {
        d.deserialize_tuple(7, self)
    }
}

fn missing<E: de::Error>(what: &str) -> E {
    E::custom(format_args!("missing {what}"))
}

impl<'de> Visitor<'de> for ChangeSeed {
    type Value = Change;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a change")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Change, A::Error> {
        let origin: Option<ReplicaId> = seq.next_element()?.ok_or_else(|| missing("origin"))?;
        let seq_no: u64 = seq.next_element()?.ok_or_else(|| missing("seq"))?;
        let collection: String = seq.next_element()?.ok_or_else(|| missing("collection"))?;
        let key: Key = seq.next_element()?.ok_or_else(|| missing("key"))?;
        let stamp: Stamp = seq.next_element()?.ok_or_else(|| missing("stamp"))?;
        let base_delta: u64 = seq.next_element()?.ok_or_else(|| missing("base"))?;
        let op: Op = seq.next_element()?.ok_or_else(|| missing("op"))?;
        let origin = origin
            .or(self.sender)
            .ok_or_else(|| de::Error::custom("a change without an origin outside a request"))?;
        let base = match base_delta {
            0 => Stamp::ZERO,
            d => Stamp::from_u64(
                stamp
                    .as_u64()
                    .checked_sub(d - 1)
                    .ok_or_else(|| de::Error::custom("a change's base before the epoch"))?,
            ),
        };
        Ok(Change {
            id: ChangeId {
                origin,
                seq: seq_no,
            },
            collection,
            key,
            stamp,
            base,
            op,
        })
    }
}

impl<'de> Deserialize<'de> for Change {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ChangeSeed { sender: None }.deserialize(d)
    }
}

/// A batch as sent by `sender`: `(changes, through, digest, groups)`.
struct WireBatch<'a> {
    batch: &'a Batch,
    sender: Option<ReplicaId>,
}

impl Serialize for WireBatch<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Changes<'a>(&'a [Change], Option<ReplicaId>);
        impl Serialize for Changes<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|change| WireChange {
                    change,
                    sender: self.1,
                }))
            }
        }
        let mut t = s.serialize_tuple(4)?;
        t.serialize_element(&Changes(&self.batch.changes, self.sender))?;
        t.serialize_element(&self.batch.through)?;
        t.serialize_element(&self.batch.digest)?;
        t.serialize_element(&self.batch.groups)?;
        t.end()
    }
}

impl Serialize for Batch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireBatch {
            batch: self,
            sender: None,
        }
        .serialize(s)
    }
}

/// Reads a batch sent by `sender`.
#[derive(Clone, Copy)]
struct BatchSeed {
    sender: Option<ReplicaId>,
}

impl<'de> DeserializeSeed<'de> for BatchSeed {
    type Value = Batch;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Batch, D::Error> {
        d.deserialize_tuple(4, self)
    }
}

impl<'de> Visitor<'de> for BatchSeed {
    type Value = Batch;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a batch")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Batch, A::Error> {
        let changes = seq
            .next_element_seed(ChangesSeed(self.sender))?
            .ok_or_else(|| missing("changes"))?;
        let through = seq.next_element()?.ok_or_else(|| missing("through"))?;
        let digest = seq.next_element()?.ok_or_else(|| missing("digest"))?;
        let groups = seq
            .next_element_seed(GroupsSeed)?
            .ok_or_else(|| missing("groups"))?;
        Ok(Batch {
            changes,
            through,
            digest,
            groups,
        })
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BatchSeed { sender: None }.deserialize(d)
    }
}

/// Reads group sizes, preallocating only a little whatever the peer claims.
struct GroupsSeed;

impl<'de> DeserializeSeed<'de> for GroupsSeed {
    type Value = Vec<u32>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<u32>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for GroupsSeed {
    type Value = Vec<u32>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of group sizes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u32>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_PREALLOC));
        while let Some(len) = seq.next_element()? {
            out.push(len);
        }
        Ok(out)
    }
}

struct ChangesSeed(Option<ReplicaId>);

impl<'de> DeserializeSeed<'de> for ChangesSeed {
    type Value = Vec<Change>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Change>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ChangesSeed {
    type Value = Vec<Change>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of changes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Change>, A::Error> {
        // The length is the peer's claim: preallocate only a little.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_PREALLOC));
        while let Some(change) = seq.next_element_seed(ChangeSeed { sender: self.0 })? {
            out.push(change);
        }
        Ok(out)
    }
}

const BODY_VARIANTS: &[&str] = &[
    "Hello",
    "Pull",
    "Push",
    "Subscribe",
    "PushPart",
    "PullPart",
    "PullScope",
    "Relayed",
    "SubscribeScopes",
];

/// A request body whose pushed changes leave out the sender's id.
struct WireBody<'a> {
    body: &'a RequestBody,
    sender: ReplicaId,
}

impl Serialize for WireBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const NAME: &str = "RequestBody";
        match self.body {
            RequestBody::Hello { clock, collections } => {
                s.serialize_newtype_variant(NAME, 0, BODY_VARIANTS[0], &(clock, collections))
            }
            RequestBody::Pull {
                after,
                limit,
                collections,
            } => {
                s.serialize_newtype_variant(NAME, 1, BODY_VARIANTS[1], &(after, limit, collections))
            }
            RequestBody::Push(batch) => s.serialize_newtype_variant(
                NAME,
                2,
                BODY_VARIANTS[2],
                &WireBatch {
                    batch,
                    sender: Some(self.sender),
                },
            ),
            RequestBody::Subscribe { after } => {
                s.serialize_newtype_variant(NAME, 3, BODY_VARIANTS[3], after)
            }
            RequestBody::PushPart { part, batch } => s.serialize_newtype_variant(
                NAME,
                4,
                BODY_VARIANTS[4],
                &(
                    part,
                    WireBatch {
                        batch,
                        sender: Some(self.sender),
                    },
                ),
            ),
            RequestBody::PullPart {
                after,
                transfer,
                next,
                collections,
            } => s.serialize_newtype_variant(
                NAME,
                5,
                BODY_VARIANTS[5],
                &(after, transfer, next, collections),
            ),
            RequestBody::PullScope {
                scope,
                after,
                limit,
                part,
            } => {
                s.serialize_newtype_variant(NAME, 6, BODY_VARIANTS[6], &(scope, after, limit, part))
            }
            RequestBody::Relayed => s.serialize_newtype_variant(NAME, 7, BODY_VARIANTS[7], &()),
            RequestBody::SubscribeScopes { after, scopes } => {
                s.serialize_newtype_variant(NAME, 8, BODY_VARIANTS[8], &(after, scopes))
            }
        }
    }
}

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(4)?;
        t.serialize_element(&self.version)?;
        t.serialize_element(&self.from)?;
        t.serialize_element(&self.token)?;
        t.serialize_element(&WireBody {
            body: &self.body,
            sender: self.from,
        })?;
        t.end()
    }
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = Request;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Request, A::Error> {
        let version = seq.next_element()?.ok_or_else(|| missing("version"))?;
        let from: ReplicaId = seq.next_element()?.ok_or_else(|| missing("from"))?;
        let token = seq.next_element()?.ok_or_else(|| missing("token"))?;
        let body = seq
            .next_element_seed(BodySeed(from))?
            .ok_or_else(|| missing("body"))?;
        Ok(Request {
            version,
            from,
            token,
            body,
        })
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_tuple(4, RequestVisitor)
    }
}

/// Reads a request body whose pushed changes may leave out `.0` as origin.
struct BodySeed(ReplicaId);

impl<'de> DeserializeSeed<'de> for BodySeed {
    type Value = RequestBody;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RequestBody, D::Error> {
        d.deserialize_enum("RequestBody", BODY_VARIANTS, self)
    }
}

impl<'de> Visitor<'de> for BodySeed {
    type Value = RequestBody;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request body")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<RequestBody, A::Error> {
        let (tag, variant): (Tag, _) = data.variant()?;
        Ok(match tag.0 {
            0 => {
                let (clock, collections): (Stamp, Vec<CollectionSpec>) =
                    variant.newtype_variant()?;
                RequestBody::Hello { clock, collections }
            }
            1 => {
                let (after, limit, collections) = variant.newtype_variant()?;
                RequestBody::Pull {
                    after,
                    limit,
                    collections,
                }
            }
            2 => RequestBody::Push(variant.newtype_variant_seed(BatchSeed {
                sender: Some(self.0),
            })?),
            3 => RequestBody::Subscribe {
                after: variant.newtype_variant()?,
            },
            4 => {
                let (part, batch) = variant.newtype_variant_seed(PushPartSeed(self.0))?;
                RequestBody::PushPart { part, batch }
            }
            5 => {
                let (after, transfer, next, collections) = variant.newtype_variant()?;
                RequestBody::PullPart {
                    after,
                    transfer,
                    next,
                    collections,
                }
            }
            6 => {
                let (scope, after, limit, part) = variant.newtype_variant()?;
                RequestBody::PullScope {
                    scope,
                    after,
                    limit,
                    part,
                }
            }
            7 => {
                variant.newtype_variant::<()>()?;
                RequestBody::Relayed
            }
            8 => {
                let (after, scopes) = variant.newtype_variant()?;
                RequestBody::SubscribeScopes { after, scopes }
            }
            other => {
                return Err(de::Error::invalid_value(
                    de::Unexpected::Unsigned(other.into()),
                    &"a request body variant 0 to 8",
                ));
            }
        })
    }
}

/// Reads a pushed part: `(part, batch)`, the batch's changes sent by `.0`.
struct PushPartSeed(ReplicaId);

impl<'de> DeserializeSeed<'de> for PushPartSeed {
    type Value = (Part, Batch);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(Part, Batch), D::Error> {
        d.deserialize_tuple(2, self)
    }
}

impl<'de> Visitor<'de> for PushPartSeed {
    type Value = (Part, Batch);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a pushed part")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(Part, Batch), A::Error> {
        let part = seq.next_element()?.ok_or_else(|| missing("part"))?;
        let batch = seq
            .next_element_seed(BatchSeed {
                sender: Some(self.0),
            })?
            .ok_or_else(|| missing("batch"))?;
        Ok((part, batch))
    }
}

/// A variant identifier, by index or by name.
struct Tag(u32);

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TagVisitor;
        impl Visitor<'_> for TagVisitor {
            type Value = Tag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a variant")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tag, E> {
                u32::try_from(v)
                    .map(Tag)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Tag, E> {
                BODY_VARIANTS
                    .iter()
                    .position(|n| *n == v)
                    .map(|i| Tag(i as u32))
                    .ok_or_else(|| E::unknown_variant(v, BODY_VARIANTS))
            }
        }
        d.deserialize_identifier(TagVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::sync::protocol::PROTOCOL_VERSION;
    use crate::value::Value;

    fn change(origin: u8, base: Stamp) -> Change {
        Change {
            id: ChangeId {
                origin: ReplicaId::from_bytes([origin; 16]),
                seq: 3,
            },
            collection: "c".into(),
            key: "k".into(),
            stamp: Stamp::new(1_767_225_600_000, 2),
            base,
            op: Op::Put(Value::Int(1)),
        }
    }

    #[test]
    fn changes_round_trip_with_any_base() {
        for base in [
            Stamp::ZERO,
            Stamp::new(1_767_225_599_000, 9),
            change(1, Stamp::ZERO).stamp,
        ] {
            let c = change(1, base);
            assert_eq!(
                codec::decode_stored::<Change>(&codec::encode(&c)).unwrap(),
                c
            );
        }
    }

    #[test]
    fn pushed_changes_leave_out_the_senders_id() {
        let sender = ReplicaId::from_bytes([1; 16]);
        let mine = change(1, Stamp::ZERO);
        let relayed = change(2, Stamp::ZERO);
        let request = |changes: Vec<Change>| Request {
            version: PROTOCOL_VERSION,
            from: sender,
            token: None,
            body: RequestBody::Push(Batch::new(changes, 1)),
        };
        let own = codec::encode(&request(vec![mine.clone()]));
        let other = codec::encode(&request(vec![relayed.clone()]));
        assert_eq!(
            other.len() - own.len(),
            16,
            "a relayed change carries its origin"
        );
        for (bytes, c) in [(own, mine), (other, relayed)] {
            let back: Request = codec::decode_peer(&bytes).unwrap();
            let RequestBody::Push(batch) = back.body else {
                panic!("a push")
            };
            assert_eq!(batch.changes, vec![c]);
            assert!(batch.verify());
        }
    }

    #[test]
    fn a_base_before_the_epoch_is_refused() {
        let mut bytes = codec::encode(&change(1, Stamp::ZERO));
        // Rewrite base_delta (0, one byte before the op) to 251 + u64::MAX.
        let at = bytes.len() - codec::encode(&Op::Put(Value::Int(1))).len() - 1;
        bytes.splice(
            at..=at,
            [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        );
        assert!(codec::decode_peer::<Change>(&bytes).is_err());
    }
}
