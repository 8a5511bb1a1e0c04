//! The `serde::Deserializer` behind [`from_value`].

use std::collections::{BTreeMap, btree_map};
use std::num::{IntErrorKind, ParseIntError};
use std::str::FromStr;

use serde::Deserializer;
use serde::de::value::StringDeserializer;
use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};

use super::decode::drop_iteratively;
use super::depth::{Depth, Res};
use super::{Value, ValueError};

#[cfg(doc)]
use super::{MAX_DEPTH, from_value};

fn mismatch<T>(expected: &'static str, found: &'static str) -> Res<T> {
    Err(ValueError::TypeMismatch { expected, found })
}

/// The `Int` in `value`, converted to `T` with a range check.
fn expect_int<T: TryFrom<i64>>(value: &Value) -> Res<T> {
    match *value {
        Value::Int(i) => T::try_from(i).map_err(|_| ValueError::IntegerOutOfRange),
        ref other => mismatch("integer", other.kind()),
    }
}

/// Visits a list whose elements sit at `depth` as a sequence, failing if the visitor
/// leaves elements unread.
fn visit_list<'de, V: Visitor<'de>>(items: Vec<Value>, depth: Depth, visitor: V) -> Res<V::Value> {
    let len = items.len();
    let mut seq = SeqDeserializer {
        items: items.into_iter(),
        depth,
    };
    let out = visitor.visit_seq(&mut seq)?;
    match seq.items.len() {
        0 => Ok(out),
        _ => Err(de::Error::invalid_length(len, &"fewer elements")),
    }
}

/// Visits a map whose entries sit at `depth`, failing if the visitor leaves entries
/// unread.
fn visit_map<'de, V: Visitor<'de>>(
    map: BTreeMap<String, Value>,
    depth: Depth,
    visitor: V,
) -> Res<V::Value> {
    let len = map.len();
    let mut access = MapDeserializer {
        entries: map.into_iter(),
        value: None,
        depth,
    };
    let out = visitor.visit_map(&mut access)?;
    match access.entries.len() {
        0 => Ok(out),
        _ => Err(de::Error::invalid_length(len, &"fewer entries")),
    }
}

macro_rules! deserialize_ints {
    ($($method:ident => $visit:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
            visitor.$visit(expect_int(&self.value)?)
        }
    )*};
}

macro_rules! forward_to_value_deserializer {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Res<V::Value> {
            ValueDeserializer::top(self).$method($($arg,)* visitor)
        }
    )*};
}

/// `Value` is a self-describing `serde::Deserializer`; [`from_value`] is built on it. It
/// refuses to hand out anything nested deeper than [`MAX_DEPTH`].
impl<'de> Deserializer<'de> for Value {
    type Error = ValueError;

    forward_to_value_deserializer! {
        deserialize_any(); deserialize_bool(); deserialize_i8(); deserialize_i16();
        deserialize_i32(); deserialize_i64(); deserialize_i128(); deserialize_u8();
        deserialize_u16(); deserialize_u32(); deserialize_u64(); deserialize_u128();
        deserialize_f32(); deserialize_f64(); deserialize_char(); deserialize_str();
        deserialize_string(); deserialize_bytes(); deserialize_byte_buf();
        deserialize_option(); deserialize_unit(); deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str); deserialize_seq();
        deserialize_tuple(len: usize); deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier(); deserialize_ignored_any();
    }
}

/// A [`Value`] being deserialized, and its place in the value handed to [`from_value`].
struct ValueDeserializer {
    value: Value,
    depth: Depth,
}

impl ValueDeserializer {
    /// The value handed to [`from_value`] (or used as a `Deserializer` directly).
    fn top(value: Value) -> Self {
        ValueDeserializer {
            value,
            depth: Depth::TOP,
        }
    }

    /// `value` at `depth`, or [`ValueError::TooDeep`] beyond [`MAX_DEPTH`]; a refused
    /// value is dropped without recursion, since it may be nested arbitrarily deep.
    fn new(value: Value, depth: Depth) -> Res<Self> {
        match depth.check() {
            Ok(depth) => Ok(ValueDeserializer { value, depth }),
            Err(e) => {
                drop_iteratively(value);
                Err(e)
            }
        }
    }

    /// The same value behind one more transparent wrapper (`Some`, a newtype struct).
    fn wrapped(self) -> Res<Self> {
        match self.depth.wrapped() {
            Ok(depth) => Ok(ValueDeserializer { depth, ..self }),
            Err(e) => {
                drop_iteratively(self.value);
                Err(e)
            }
        }
    }
}

impl<'de> Deserializer<'de> for ValueDeserializer {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        let inner = self.depth.deeper();
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Int(i) => visitor.visit_i64(i),
            Value::Float(f) => visitor.visit_f64(f),
            Value::String(s) => visitor.visit_string(s),
            Value::Bytes(b) => visitor.visit_byte_buf(b),
            Value::List(items) => visit_list(items, inner, visitor),
            Value::Map(map) => visit_map(map, inner, visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.value {
            Value::Bool(b) => visitor.visit_bool(b),
            other => mismatch("bool", other.kind()),
        }
    }

    deserialize_ints!(
        deserialize_i8 => visit_i8, deserialize_i16 => visit_i16, deserialize_i32 => visit_i32,
        deserialize_i64 => visit_i64, deserialize_i128 => visit_i128, deserialize_u8 => visit_u8,
        deserialize_u16 => visit_u16, deserialize_u32 => visit_u32, deserialize_u64 => visit_u64,
        deserialize_u128 => visit_u128
    );

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.value {
            Value::Float(f) => visitor.visit_f32(f as f32),
            Value::Int(i) => visitor.visit_f32(i as f32),
            other => mismatch("float", other.kind()),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.value {
            Value::Float(f) => visitor.visit_f64(f),
            Value::Int(i) => visitor.visit_f64(i as f64),
            other => mismatch("float", other.kind()),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        self.deserialize_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.value {
            Value::String(s) => visitor.visit_string(s),
            other => mismatch("string", other.kind()),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.value {
            Value::Bytes(b) => visitor.visit_byte_buf(b),
            Value::List(items) => {
                visitor.visit_byte_buf(items.iter().map(expect_int).collect::<Res<_>>()?)
            }
            other => mismatch("bytes", other.kind()),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.value {
            Value::Null => visitor.visit_none(),
            value => visitor.visit_some(ValueDeserializer { value, ..self }.wrapped()?),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            other => mismatch("null", other.kind()),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Res<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Res<V::Value> {
        visitor.visit_newtype_struct(self.wrapped()?)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.value {
            Value::List(items) => visit_list(items, self.depth.deeper(), visitor),
            // The integers stand for the bytes themselves, which nest no deeper.
            Value::Bytes(b) => visit_list(
                b.into_iter().map(Value::from).collect(),
                self.depth,
                visitor,
            ),
            other => mismatch("list", other.kind()),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Res<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Res<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.value {
            Value::Map(map) => visit_map(map, self.depth.deeper(), visitor),
            other => mismatch("map", other.kind()),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Res<V::Value> {
        let inner = self.depth.deeper();
        match self.value {
            Value::Map(map) => visit_map(map, inner, visitor),
            Value::List(items) => visit_list(items, inner, visitor),
            other => mismatch("map", other.kind()),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Res<V::Value> {
        const EXPECTED: &str = "enum (a string or a single-entry map)";
        let inner = self.depth.deeper();
        match self.value {
            Value::String(variant) => visitor.visit_enum(StringDeserializer::new(variant)),
            Value::Map(map) => {
                let mut entries = map.into_iter();
                match (entries.next(), entries.next()) {
                    (Some((variant, content)), None) => visitor.visit_enum(EnumDeserializer {
                        variant: MapKeyDeserializer {
                            key: variant,
                            depth: inner,
                        },
                        content: ValueDeserializer::new(content, inner)?,
                    }),
                    _ => mismatch(EXPECTED, "map"),
                }
            }
            other => mismatch(EXPECTED, other.kind()),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        self.deserialize_any(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_unit()
    }
}

/// The elements of a [`Value::List`], which sit at `depth`.
struct SeqDeserializer {
    items: std::vec::IntoIter<Value>,
    depth: Depth,
}

impl<'de> SeqAccess<'de> for SeqDeserializer {
    type Error = ValueError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Res<Option<T::Value>> {
        match self.items.next() {
            Some(item) => seed
                .deserialize(ValueDeserializer::new(item, self.depth)?)
                .map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The entries of a [`Value::Map`], which sit at `depth`, and the value of the entry
/// whose key was just read.
struct MapDeserializer {
    entries: btree_map::IntoIter<String, Value>,
    value: Option<Value>,
    depth: Depth,
}

impl<'de> MapAccess<'de> for MapDeserializer {
    type Error = ValueError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Res<Option<K::Value>> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        let depth = self.depth;
        seed.deserialize(MapKeyDeserializer { key, depth })
            .map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Res<V::Value> {
        match self.value.take() {
            Some(value) => seed.deserialize(ValueDeserializer::new(value, self.depth)?),
            None => Err(ValueError::Custom(
                "map value requested before its key".to_owned(),
            )),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// An enum variant with content, from a single-entry [`Value::Map`]: name and content.
struct EnumDeserializer {
    variant: MapKeyDeserializer,
    content: ValueDeserializer,
}

impl<'de> EnumAccess<'de> for EnumDeserializer {
    type Error = ValueError;
    type Variant = VariantDeserializer;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Res<(V::Value, Self::Variant)> {
        let variant = seed.deserialize(self.variant)?;
        Ok((variant, VariantDeserializer(self.content)))
    }
}

/// The content of an enum variant.
struct VariantDeserializer(ValueDeserializer);

impl<'de> VariantAccess<'de> for VariantDeserializer {
    type Error = ValueError;
    fn unit_variant(self) -> Res<()> {
        match self.0.value {
            Value::Null => Ok(()),
            other => mismatch("null", other.kind()),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Res<T::Value> {
        seed.deserialize(self.0)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> Res<V::Value> {
        self.0.deserialize_seq(visitor)
    }
    fn struct_variant<V: Visitor<'de>>(self, f: &'static [&'static str], v: V) -> Res<V::Value> {
        self.0.deserialize_struct("", f, v)
    }
}

/// A map key or variant name: a string, parsed when an integer or a bool is asked for.
/// `depth` is the place of its entry, tracked for the wrappers it may be read through.
struct MapKeyDeserializer {
    key: String,
    depth: Depth,
}

impl MapKeyDeserializer {
    /// The same key behind one more transparent wrapper (`Some`, a newtype struct).
    fn wrapped(self) -> Res<Self> {
        let depth = self.depth.wrapped()?;
        Ok(MapKeyDeserializer { depth, ..self })
    }
}

fn parse_key<T: FromStr<Err = ParseIntError>>(key: &str) -> Res<T> {
    key.parse().or_else(|e: ParseIntError| match e.kind() {
        IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => Err(ValueError::IntegerOutOfRange),
        _ => mismatch("integer map key", "string"),
    })
}

macro_rules! deserialize_int_keys {
    ($($method:ident => $visit:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
            visitor.$visit(parse_key(&self.key)?)
        }
    )*};
}

impl<'de> Deserializer<'de> for MapKeyDeserializer {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_string(self.key)
    }

    deserialize_int_keys!(
        deserialize_i8 => visit_i8, deserialize_i16 => visit_i16, deserialize_i32 => visit_i32,
        deserialize_i64 => visit_i64, deserialize_i128 => visit_i128, deserialize_u8 => visit_u8,
        deserialize_u16 => visit_u16, deserialize_u32 => visit_u32, deserialize_u64 => visit_u64,
        deserialize_u128 => visit_u128
    );

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        match self.key.as_str() {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            _ => mismatch("bool map key", "string"),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Res<V::Value> {
        visitor.visit_some(self.wrapped()?)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Res<V::Value> {
        visitor.visit_newtype_struct(self.wrapped()?)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Res<V::Value> {
        visitor.visit_enum(StringDeserializer::new(self.key))
    }

    serde::forward_to_deserialize_any! {
        f32 f64 char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map
        struct identifier ignored_any
    }
}
