//! `Deserialize for Value`, written by hand to refuse values nested deeper than
//! [`MAX_DEPTH`] instead of overflowing the stack.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, Unexpected, VariantAccess, Visitor,
};
use serde::{Deserialize, Deserializer};

use super::{MAX_DEPTH, Value, ValueError};

/// The variant names of [`Value`] in declaration order; a variant's index on the wire is
/// its position here. Must match the enum, whose derived `Serialize` writes them.
const VARIANTS: &[&str] = &[
    "Null", "Bool", "Int", "Float", "String", "Bytes", "List", "Map",
];

/// The error for a value nested deeper than [`MAX_DEPTH`], in any format's error type.
fn too_deep<E: de::Error>() -> E {
    E::custom(ValueError::TooDeep { max: MAX_DEPTH })
}

/// Written by hand to accept exactly what `#[derive(Deserialize)]` would (an externally
/// tagged enum: variant index or name, then its content), but it counts the nesting level
/// as it goes and fails with "value nested deeper than 64 levels" instead of recursing
/// past [`MAX_DEPTH`], so hostile input cannot overflow the stack.
impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ValueSeed { level: 1 }.deserialize(deserializer)
    }
}

/// Deserializes a [`Value`] that sits at nesting level `level` (1 at the top).
#[derive(Clone, Copy)]
struct ValueSeed {
    level: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.level > MAX_DEPTH {
            return Err(too_deep());
        }
        deserializer.deserialize_enum("Value", VARIANTS, self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("enum Value")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let elements = ValueSeed {
            level: self.level + 1,
        };
        let (variant, content) = data.variant::<Variant>()?;
        match variant {
            Variant::Null => content.unit_variant().map(|()| Value::Null),
            Variant::Bool => content.newtype_variant().map(Value::Bool),
            Variant::Int => content.newtype_variant().map(Value::Int),
            Variant::Float => content.newtype_variant().map(Value::Float),
            Variant::String => content.newtype_variant().map(Value::String),
            Variant::Bytes => content.newtype_variant_seed(BytesSeed).map(Value::Bytes),
            Variant::List => content
                .newtype_variant_seed(ListSeed(elements))
                .map(Value::List),
            Variant::Map => content
                .newtype_variant_seed(MapSeed(elements))
                .map(Value::Map),
        }
    }
}

/// The variant of a [`Value`], as identified on the wire.
#[derive(Clone, Copy)]
pub(super) enum Variant {
    Null,
    Bool,
    Int,
    Float,
    String,
    Bytes,
    List,
    Map,
}

impl Variant {
    /// Every variant, in the order of [`VARIANTS`].
    const ALL: [Variant; 8] = [
        Variant::Null,
        Variant::Bool,
        Variant::Int,
        Variant::Float,
        Variant::String,
        Variant::Bytes,
        Variant::List,
        Variant::Map,
    ];
}

impl<'de> Deserialize<'de> for Variant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(VariantVisitor)
    }
}

/// Reads a variant identifier as the derive does: an index, a name or a name's bytes.
struct VariantVisitor;

impl Visitor<'_> for VariantVisitor {
    type Value = Variant;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("variant identifier")
    }

    fn visit_u64<E: de::Error>(self, index: u64) -> Result<Variant, E> {
        usize::try_from(index)
            .ok()
            .and_then(|i| Variant::ALL.get(i).copied())
            .ok_or_else(|| {
                E::invalid_value(Unexpected::Unsigned(index), &"variant index 0 <= i < 8")
            })
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Variant, E> {
        match VARIANTS.iter().position(|v| *v == name) {
            Some(i) => Ok(Variant::ALL[i]),
            None => Err(E::unknown_variant(name, VARIANTS)),
        }
    }

    fn visit_bytes<E: de::Error>(self, name: &[u8]) -> Result<Variant, E> {
        match VARIANTS.iter().position(|v| v.as_bytes() == name) {
            Some(i) => Ok(Variant::ALL[i]),
            None => Err(E::unknown_variant(&String::from_utf8_lossy(name), VARIANTS)),
        }
    }
}

/// Most bytes reserved up front from a format's length hint, as serde's own `Vec` does.
const MAX_PREALLOC_BYTES: usize = 1 << 20;

/// The content of [`Value::List`]: a sequence of values at the given seed's level.
struct ListSeed(ValueSeed);

impl<'de> DeserializeSeed<'de> for ListSeed {
    type Value = Vec<Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<Value>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let hint = seq.size_hint().unwrap_or(0);
        let mut items = Vec::with_capacity(hint.min(MAX_PREALLOC_BYTES / size_of::<Value>()));
        while let Some(item) = seq.next_element_seed(self.0)? {
            items.push(item);
        }
        Ok(items)
    }
}

/// The content of [`Value::Map`]: string keys and values at the given seed's level.
struct MapSeed(ValueSeed);

impl<'de> DeserializeSeed<'de> for MapSeed {
    type Value = BTreeMap<String, Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MapSeed {
    type Value = BTreeMap<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = BTreeMap::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value_seed(self.0)?;
            map.insert(key, value);
        }
        Ok(map)
    }
}

/// Drops `value` without recursion, however deeply it is nested.
pub(super) fn drop_iteratively(value: Value) {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::List(items) => pending.extend(items),
            Value::Map(map) => pending.extend(map.into_values()),
            _ => {}
        }
    }
}

/// Writes bytes in one piece (`Serializer::serialize_bytes`).
pub(super) fn serialize_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(bytes)
}

/// Reads bytes in one piece where the format allows (the codec's length
/// and bytes are the same as a sequence of `u8`), else element by element.
struct BytesSeed;

impl<'de> DeserializeSeed<'de> for BytesSeed {
    type Value = Vec<u8>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        // The length is the input's claim: preallocate only a little.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}
