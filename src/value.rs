//! syncline's dynamic [`Value`] and the conversion of any serde type to and from it.
//!
//! [`to_value`] runs a type's `Serialize` impl into a [`Value`]; [`from_value`] runs a
//! type's `Deserialize` impl over one. A [`Value`] itself is stored with bincode through
//! its externally tagged `Serialize`/`Deserialize` (the latter written by hand so that it
//! refuses values nested deeper than [`MAX_DEPTH`] instead of overflowing the stack).

use std::collections::{BTreeMap, btree_map};
use std::fmt;
use std::num::{IntErrorKind, ParseIntError};
use std::str::FromStr;

use serde::de::value::StringDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, Unexpected,
    VariantAccess, Visitor,
};
use serde::ser;
use serde::{Deserialize, Deserializer, Serialize};

/// The deepest nesting a [`Value`] may have, as measured by [`Value::depth`].
///
/// The depth of a scalar, or of an empty list or map, is 1; a non-empty list or map is
/// one level deeper than its deepest element. So `Int(1)` has depth 1, `List([Int(1)])`
/// depth 2, and a value within this limit has at most `MAX_DEPTH` lists and maps nested
/// inside one another along any path (the innermost of them then being empty).
///
/// Decoding a `Value` (its `Deserialize` impl), [`to_value`] and [`from_value`] refuse
/// anything deeper with an error ("value nested deeper than 64 levels",
/// [`ValueError::TooDeep`] for the latter two), so they recurse a bounded number of times
/// whatever their input. [`Value::check_depth`] applies the same limit to a value built in
/// code.
// Until lib.rs re-exports it next to `Value`, the lint sees it as unreachable.
pub const MAX_DEPTH: usize = 64;

/// syncline's own value type: the dynamic, self-describing form of a record.
///
/// Any serde type converts to a `Value` with [`to_value`] and back with [`from_value`];
/// [`to_value`] documents how serde's data model maps onto the variants.
///
/// A `Value` is persisted and sent with bincode (standard configuration) through its
/// `Serialize`/`Deserialize` impls: the derived `Serialize` and a hand-written
/// `Deserialize` that accepts exactly what the derived one would, up to [`MAX_DEPTH`].
/// They are externally tagged (variant index or name, then content), so they need no
/// `deserialize_any` and work with non-self-describing formats.
/// The flip side: `to_value(&value)` yields the *tagged* form (`Value::Int(1)` becomes
/// `{"Int": 1}`), which `from_value::<Value>` turns back into `value`. A `Value` never needs
/// converting to a `Value`.
///
/// # Equality
///
/// `PartialEq` is derived, so floats follow IEEE 754: `Float(NaN) != Float(NaN)` and
/// `Float(0.0) == Float(-0.0)`. That is why `Value` implements neither `Eq`, `Ord` nor
/// `Hash`. The store does not use this comparison: it compares values by their encoded
/// bytes, in which a float is its exact bit pattern (NaN payloads included).
///
/// # Nesting
///
/// A `Value` may be at most [`MAX_DEPTH`] levels deep ([`Value::depth`]). Decoding one,
/// [`to_value`] and [`from_value`] refuse deeper input with an error rather than recursing
/// further, so no input can exhaust the stack through them. A value built in code is not
/// limited, though, and encoding it (the derived `Serialize`), cloning, comparing and
/// dropping it all recurse once per level: check such a value with
/// [`Value::check_depth`] before storing or sending it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub enum Value {
    /// No value: `()`, `None` and unit structs.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer. Every Rust integer that fits in `i64` becomes one.
    Int(i64),
    /// A 64-bit float; an `f32` widens to it losslessly.
    Float(f64),
    /// A UTF-8 string; also chars and unit enum variants.
    String(String),
    /// Raw bytes, from `Serializer::serialize_bytes` (e.g. `serde_bytes`). A plain
    /// `Vec<u8>` field serializes as a [`Value::List`] of [`Value::Int`] instead.
    Bytes(Vec<u8>),
    /// A sequence: `Vec`s, slices, tuples and tuple structs.
    List(Vec<Value>),
    /// String-keyed entries in key order: maps, structs and enum variants with content.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The name of this value's kind, as used in [`ValueError::TypeMismatch`]: `"null"`,
    /// `"bool"`, `"int"`, `"float"`, `"string"`, `"bytes"`, `"list"` or `"map"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The boolean, if this is a [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The integer, if this is a [`Value::Int`].
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The number as `f64`: a [`Value::Float`] as it is, a [`Value::Int`] converted
    /// (rounded to the nearest float beyond ±2^53).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(f) => Some(f),
            Value::Int(i) => Some(i as f64),
            _ => None,
        }
    }

    /// The string, if this is a [`Value::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is a [`Value::Bytes`].
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, if this is a [`Value::List`].
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The entries, if this is a [`Value::Map`].
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(map) => Some(map),
            _ => None,
        }
    }

    /// How deeply this value is nested: 1 for a scalar or an empty list or map, and one
    /// more than its deepest element for a non-empty list or map (see [`MAX_DEPTH`]).
    ///
    /// Computed without recursion, so it works on a value of any depth.
    pub fn depth(&self) -> usize {
        self.depth_capped(usize::MAX)
    }

    /// Checks that this value is at most [`MAX_DEPTH`] levels deep, as every value that
    /// is decoded or converted is; do so before storing or sending a value built in code.
    /// Works without recursion and stops looking as soon as the limit is crossed.
    ///
    /// # Errors
    ///
    /// [`ValueError::TooDeep`] if [`Value::depth`] exceeds [`MAX_DEPTH`].
    pub fn check_depth(&self) -> Result<(), ValueError> {
        if self.depth_capped(MAX_DEPTH) > MAX_DEPTH {
            return Err(ValueError::TooDeep { max: MAX_DEPTH });
        }
        Ok(())
    }

    /// [`Value::depth`], except that it stops walking once the depth exceeds `cap` and
    /// then returns `cap + 1`. Walks with an explicit stack of child iterators, one per
    /// open list or map, so it needs memory proportional to the depth, not the size.
    fn depth_capped(&self, cap: usize) -> usize {
        /// The elements of one list or map still to visit.
        enum Children<'a> {
            List(std::slice::Iter<'a, Value>),
            Map(btree_map::Values<'a, String, Value>),
        }
        fn children(value: &Value) -> Option<Children<'_>> {
            match value {
                Value::List(items) => Some(Children::List(items.iter())),
                Value::Map(map) => Some(Children::Map(map.values())),
                _ => None,
            }
        }

        let mut deepest = 1;
        let mut open: Vec<Children<'_>> = children(self).into_iter().collect();
        while let Some(top) = open.last_mut() {
            let next = match top {
                Children::List(items) => items.next(),
                Children::Map(values) => values.next(),
            };
            let Some(child) = next else {
                open.pop();
                continue;
            };
            // `child` sits one level below each open container, which sit below `self`.
            deepest = deepest.max(open.len() + 1);
            if deepest > cap {
                return deepest;
            }
            open.extend(children(child));
        }
        deepest
    }
}

macro_rules! impl_from {
    ($($ty:ty => |$v:ident| $body:expr;)*) => {$(
        impl From<$ty> for Value {
            fn from($v: $ty) -> Self {
                $body
            }
        }
    )*};
}

impl_from! {
    bool => |v| Value::Bool(v);
    i8 => |v| Value::Int(v.into());
    i16 => |v| Value::Int(v.into());
    i32 => |v| Value::Int(v.into());
    i64 => |v| Value::Int(v);
    u8 => |v| Value::Int(v.into());
    u16 => |v| Value::Int(v.into());
    u32 => |v| Value::Int(v.into());
    f32 => |v| Value::Float(v.into());
    f64 => |v| Value::Float(v);
    char => |v| Value::String(v.into());
    &str => |v| Value::String(v.to_owned());
    String => |v| Value::String(v);
    &[u8] => |v| Value::Bytes(v.to_vec());
    Vec<u8> => |v| Value::Bytes(v);
    Vec<Value> => |v| Value::List(v);
    BTreeMap<String, Value> => |v| Value::Map(v);
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Why [`to_value`] or [`from_value`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// A message from a `Serialize` or `Deserialize` impl (serde's `Error::custom`),
    /// including serde's own "missing field", "unknown variant" and "invalid length".
    #[error("{0}")]
    Custom(String),
    /// An integer does not fit: a `u64`/`u128`/`i128` outside `i64` when serializing, or an
    /// `Int` (or integer map key) outside the requested type, e.g. `300` for an `i8`.
    #[error("integer out of range")]
    IntegerOutOfRange,
    /// A map key serialized to something other than a string, an integer or a bool
    /// (chars, unit enum variants and newtypes of these count).
    #[error("map key must be a string")]
    KeyMustBeString,
    /// The value is of another kind than the target type asked for.
    #[error("type mismatch: expected {expected}, found {found}")]
    TypeMismatch {
        /// What the target type asked for.
        expected: &'static str,
        /// The [`Value::kind`] that was there instead.
        found: &'static str,
    },
    /// A value nested deeper than `max` ([`MAX_DEPTH`]) levels, refused by
    /// [`Value::check_depth`], [`to_value`] or [`from_value`] before recursing further. It
    /// is also returned when a type wraps one value in too many transparent layers (`Some`,
    /// newtype structs), as a self-referential newtype would without end.
    #[error("value nested deeper than {max} levels")]
    TooDeep {
        /// The limit that was exceeded: [`MAX_DEPTH`].
        max: usize,
    },
}

impl ser::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError::Custom(msg.to_string())
    }
}

impl de::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError::Custom(msg.to_string())
    }
}

/// Converts any serializable value into a [`Value`].
///
/// | serde data model | `Value` |
/// | --- | --- |
/// | bool | `Bool` |
/// | i8 … i64, u8 … u32, and u64/i128/u128 that fit in `i64` | `Int` |
/// | f32, f64 | `Float` |
/// | char, str | `String` |
/// | bytes (`serialize_bytes`) | `Bytes` |
/// | none, unit, unit struct | `Null` |
/// | some(x), newtype struct(x) | `x` |
/// | unit variant | `String(variant)` |
/// | newtype variant(x) | `Map { variant: x }` |
/// | seq, tuple, tuple struct | `List` |
/// | tuple variant | `Map { variant: List }` |
/// | map | `Map`; keys: strings, chars and unit variants as they are, integers and bools formatted (`7`, `true`) |
/// | struct | `Map` of the serialized fields |
/// | struct variant | `Map { variant: Map }` |
///
/// `Some(None)` and `None` both become `Null`, so `Option<Option<T>>` comes back flattened.
///
/// # Errors
///
/// [`ValueError::IntegerOutOfRange`] for an integer outside `i64`,
/// [`ValueError::KeyMustBeString`] for a map key of another kind,
/// [`ValueError::TooDeep`] when the result would be nested deeper than [`MAX_DEPTH`]
/// (note that the tagged form of a `Value` is about twice as deep as the value), and
/// [`ValueError::Custom`] for an error raised by the type's own `Serialize` impl.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ValueError> {
    value.serialize(ValueSerializer(Depth::TOP))
}

/// Converts a [`Value`] into any deserializable type.
///
/// This inverts [`to_value`], and also accepts: an `Int` for a float; a `List` of
/// integers in `0..=255` for bytes; a `List` for a struct (fields in order); integer, bool
/// and char map keys from their string form; and a missing `Option` field as `None`.
/// Unknown struct fields are ignored unless the type has `#[serde(deny_unknown_fields)]`.
/// `Value` is also a `serde::Deserializer` itself, for use with `T::deserialize(value)`.
///
/// # Errors
///
/// [`ValueError::TypeMismatch`] when the value is of the wrong kind,
/// [`ValueError::IntegerOutOfRange`] when an integer does not fit the target type (there
/// is no wrapping), [`ValueError::TooDeep`] when the type reaches into the value deeper
/// than [`MAX_DEPTH`] levels, and [`ValueError::Custom`] for errors raised by the type's
/// `Deserialize` impl (missing fields, unknown variants, wrong lengths).
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ValueError> {
    T::deserialize(value)
}

// ---------------------------------------------------------------------------
// Deserialize for Value
// ---------------------------------------------------------------------------

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
            Variant::Bytes => content.newtype_variant().map(Value::Bytes),
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
enum Variant {
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
fn drop_iteratively(value: Value) {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::List(items) => pending.extend(items),
            Value::Map(map) => pending.extend(map.into_values()),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// Depth tracking for to_value and from_value
// ---------------------------------------------------------------------------

/// Shorthand for this module's results.
type Res<T = Value> = Result<T, ValueError>;

/// The most transparent wrappers (`Some`, newtype structs) [`to_value`] and [`from_value`]
/// pass through on the way to one value: two per level on average. They add no nesting
/// to the `Value` but do recurse, and a self-referential newtype could otherwise recurse
/// without end.
const MAX_WRAPPERS: usize = 2 * MAX_DEPTH;

/// Where the serializer or deserializer is: the nesting level of the value at hand (1 at
/// the top) and how many transparent wrappers lead to it. Both are bounded, so neither
/// [`to_value`] nor [`from_value`] recurses more than a fixed number of times.
#[derive(Debug, Clone, Copy)]
struct Depth {
    level: usize,
    wrappers: usize,
}

impl Depth {
    const TOP: Depth = Depth {
        level: 1,
        wrappers: 0,
    };

    /// The place of an element, entry or variant content of the value at `self`; not
    /// yet checked against [`MAX_DEPTH`].
    fn deeper(self) -> Depth {
        Depth {
            level: self.level + 1,
            ..self
        }
    }

    /// `self`, or [`ValueError::TooDeep`] if it lies beyond [`MAX_DEPTH`].
    fn check(self) -> Res<Depth> {
        if self.level > MAX_DEPTH {
            return Err(ValueError::TooDeep { max: MAX_DEPTH });
        }
        Ok(self)
    }

    /// The checked place of an element, entry or variant content of the value at `self`.
    fn child(self) -> Res<Depth> {
        self.deeper().check()
    }

    /// The same place behind one more transparent wrapper, refused past [`MAX_WRAPPERS`].
    fn wrapped(self) -> Res<Depth> {
        if self.wrappers >= MAX_WRAPPERS {
            return Err(ValueError::TooDeep { max: MAX_DEPTH });
        }
        Ok(Depth {
            wrappers: self.wrappers + 1,
            ..self
        })
    }
}

// ---------------------------------------------------------------------------
// Serializer
// ---------------------------------------------------------------------------

/// The `serde::Serializer` behind [`to_value`], producing the value at the given place.
struct ValueSerializer(Depth);

/// Upper bound on the capacity reserved from a `Serialize` impl's length hint.
const MAX_PREALLOC: usize = 4096;

fn int<T: TryInto<i64>>(v: T) -> Res {
    v.try_into()
        .map(Value::Int)
        .map_err(|_| ValueError::IntegerOutOfRange)
}

/// `{variant: content}`, the form of an enum variant with content.
fn tagged(variant: &'static str, content: Value) -> Value {
    Value::Map(BTreeMap::from([(variant.to_owned(), content)]))
}

/// A map key's string form: strings (so chars and unit variants) as they are, integers
/// and bools formatted; a key of any other kind is refused. `depth` is the entry's place.
fn map_key<T: Serialize + ?Sized>(key: &T, depth: Depth) -> Res<String> {
    match key.serialize(ValueSerializer(depth))? {
        Value::String(s) => Ok(s),
        Value::Int(i) => Ok(i.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(ValueError::KeyMustBeString),
    }
}

macro_rules! serialize_ints {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, v: $ty) -> Res {
            int(v)
        }
    )*};
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = ValueError;
    type SerializeSeq = SeqSerializer;
    type SerializeTuple = SeqSerializer;
    type SerializeTupleStruct = SeqSerializer;
    type SerializeTupleVariant = VariantSerializer<SeqSerializer>;
    type SerializeMap = MapSerializer;
    type SerializeStruct = MapSerializer;
    type SerializeStructVariant = VariantSerializer<MapSerializer>;

    serialize_ints!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128
    );
    fn serialize_bool(self, v: bool) -> Res {
        Ok(Value::Bool(v))
    }
    fn serialize_f32(self, v: f32) -> Res {
        Ok(Value::Float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Res {
        Ok(Value::Float(v))
    }
    fn serialize_char(self, v: char) -> Res {
        Ok(Value::String(v.into()))
    }
    fn serialize_str(self, v: &str) -> Res {
        Ok(Value::String(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Res {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn serialize_none(self) -> Res {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Res {
        v.serialize(ValueSerializer(self.0.wrapped()?))
    }
    fn serialize_unit(self) -> Res {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Res {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Res {
        Ok(Value::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Res {
        v.serialize(ValueSerializer(self.0.wrapped()?))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Res {
        let content = v.serialize(ValueSerializer(self.0.child()?))?;
        Ok(tagged(variant, content))
    }
    fn serialize_seq(self, len: Option<usize>) -> Res<SeqSerializer> {
        Ok(SeqSerializer::new(len.unwrap_or(0), self.0))
    }
    fn serialize_tuple(self, len: usize) -> Res<SeqSerializer> {
        Ok(SeqSerializer::new(len, self.0))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Res<SeqSerializer> {
        Ok(SeqSerializer::new(len, self.0))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Res<Self::SerializeTupleVariant> {
        let content = SeqSerializer::new(len, self.0.child()?);
        Ok(VariantSerializer(variant, content))
    }
    fn serialize_map(self, _: Option<usize>) -> Res<MapSerializer> {
        Ok(MapSerializer::new(self.0))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Res<MapSerializer> {
        Ok(MapSerializer::new(self.0))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Res<Self::SerializeStructVariant> {
        Ok(VariantSerializer(
            variant,
            MapSerializer::new(self.0.child()?),
        ))
    }
}

/// Collects the elements of a seq, tuple or tuple struct into a [`Value::List`] that
/// sits at `depth`.
struct SeqSerializer {
    items: Vec<Value>,
    depth: Depth,
}

impl SeqSerializer {
    fn new(len: usize, depth: Depth) -> Self {
        SeqSerializer {
            items: Vec::with_capacity(len.min(MAX_PREALLOC)),
            depth,
        }
    }
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Res<()> {
        let item = value.serialize(ValueSerializer(self.depth.child()?))?;
        self.items.push(item);
        Ok(())
    }
}

impl ser::SerializeSeq for SeqSerializer {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Res<()> {
        self.push(value)
    }
    fn end(self) -> Res {
        Ok(Value::List(self.items))
    }
}

impl ser::SerializeTuple for SeqSerializer {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Res<()> {
        self.push(value)
    }
    fn end(self) -> Res {
        Ok(Value::List(self.items))
    }
}

impl ser::SerializeTupleStruct for SeqSerializer {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Res<()> {
        self.push(value)
    }
    fn end(self) -> Res {
        Ok(Value::List(self.items))
    }
}

/// Collects the entries of a map or the fields of a struct into a [`Value::Map`] that
/// sits at `depth`.
struct MapSerializer {
    map: BTreeMap<String, Value>,
    /// The key passed to `serialize_key`, waiting for its value.
    key: Option<String>,
    depth: Depth,
}

impl MapSerializer {
    fn new(depth: Depth) -> Self {
        MapSerializer {
            map: BTreeMap::new(),
            key: None,
            depth,
        }
    }
    fn insert<T: Serialize + ?Sized>(&mut self, key: String, value: &T) -> Res<()> {
        let value = value.serialize(ValueSerializer(self.depth.child()?))?;
        self.map.insert(key, value);
        Ok(())
    }
}

impl ser::SerializeMap for MapSerializer {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Res<()> {
        self.key = Some(map_key(key, self.depth.child()?)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Res<()> {
        let Some(key) = self.key.take() else {
            return Err(ValueError::Custom(
                "map value serialized without a key".to_owned(),
            ));
        };
        self.insert(key, value)
    }
    fn end(self) -> Res {
        Ok(Value::Map(self.map))
    }
}

impl ser::SerializeStruct for MapSerializer {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Res<()> {
        self.insert(key.to_owned(), v)
    }
    fn end(self) -> Res {
        Ok(Value::Map(self.map))
    }
}

/// A tuple or struct variant: the variant name and the collector of its content, which
/// is wrapped as `{variant: content}` at the end.
struct VariantSerializer<S>(&'static str, S);

impl ser::SerializeTupleVariant for VariantSerializer<SeqSerializer> {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Res<()> {
        self.1.push(value)
    }
    fn end(self) -> Res {
        Ok(tagged(self.0, Value::List(self.1.items)))
    }
}

impl ser::SerializeStructVariant for VariantSerializer<MapSerializer> {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Res<()> {
        ser::SerializeStruct::serialize_field(&mut self.1, key, v)
    }
    fn end(self) -> Res {
        Ok(tagged(self.0, Value::Map(self.1.map)))
    }
}

// ---------------------------------------------------------------------------
// Deserializer
// ---------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fmt::Debug;

    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    use super::*;

    /// A stand-in for `serde_bytes`: (de)serializes a `Vec<u8>` as serde bytes.
    mod as_bytes {
        use serde::{Deserializer, Serializer, de};
        use std::fmt;

        pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }

        pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            struct Bytes;
            impl de::Visitor<'_> for Bytes {
                type Value = Vec<u8>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                    Ok(v)
                }
            }
            d.deserialize_byte_buf(Bytes)
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner {
        name: String,
        score: f32,
        tag: char,
    }

    #[derive(Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    struct Meters(u32);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Empty,
        Circle(f64),
        Point(i32, i32),
        Rect { w: u16, h: u16 },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        id: u64,
        small: i8,
        inner: Inner,
        maybe: Option<Inner>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        absent: Option<u32>,
        list: Vec<i32>,
        by_name: HashMap<String, bool>,
        by_id: BTreeMap<u32, String>,
        shapes: Vec<Shape>,
        pair: (u8, String),
        unit: (),
        #[serde(with = "as_bytes")]
        blob: Vec<u8>,
        plain_bytes: Vec<u8>,
        length: Meters,
    }

    fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
        Value::Map(entries.map(|(k, v)| (k.to_owned(), v)).into())
    }

    fn list<const N: usize>(items: [Value; N]) -> Value {
        Value::List(items.into())
    }

    /// Asserts that `t` survives `to_value` then `from_value`, and returns its `Value`.
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(t: &T) -> Value {
        let v = to_value(t).unwrap();
        assert_eq!(&from_value::<T>(v.clone()).unwrap(), t);
        v
    }

    fn error<T: DeserializeOwned + Debug>(v: Value) -> ValueError {
        from_value::<T>(v).unwrap_err()
    }

    fn type_mismatch(expected: &'static str, found: &'static str) -> ValueError {
        ValueError::TypeMismatch { expected, found }
    }

    fn encode(v: &Value) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
    }

    fn decode(bytes: &[u8]) -> Value {
        let config = bincode::config::standard();
        let (v, read) = bincode::serde::decode_from_slice(bytes, config).unwrap();
        assert_eq!(read, bytes.len());
        v
    }

    #[test]
    fn record_round_trips() {
        let inner = |name: &str, score, tag| Inner {
            name: name.into(),
            score,
            tag,
        };
        let mut rec = Record {
            id: u64::from(u32::MAX) + 1,
            small: -8,
            inner: inner("a", 0.1, 'é'),
            maybe: None,
            absent: None,
            list: vec![1, -2, 3],
            by_name: HashMap::from([("x".into(), true), ("y".into(), false)]),
            by_id: BTreeMap::from([(7, "seven".into()), (10, "ten".into())]),
            shapes: vec![Shape::Empty, Shape::Circle(1.5), Shape::Point(-1, 2)],
            pair: (255, "p".into()),
            unit: (),
            blob: vec![0, 1, 255],
            plain_bytes: vec![9, 8],
            length: Meters(12),
        };
        let v = round_trip(&rec);
        let fields = v.as_map().unwrap();
        assert!(!fields.contains_key("absent"));
        assert!(fields["unit"].is_null() && fields["maybe"].is_null());
        assert_eq!(fields["id"], Value::Int(1 << 32));
        let inner_fields = fields["inner"].as_map().unwrap();
        assert_eq!(inner_fields["tag"], Value::from("é"));
        assert_eq!(inner_fields["score"], Value::Float(0.1f32.into()));
        assert!(fields["by_id"].as_map().unwrap().contains_key("7"));
        assert_eq!(fields["blob"], Value::Bytes(vec![0, 1, 255]));
        assert_eq!(fields["plain_bytes"], list([9.into(), 8.into()]));
        assert_eq!(fields["pair"], list([255.into(), "p".into()]));
        assert_eq!(fields["length"], Value::Int(12));

        rec.maybe = Some(inner("b", -2.5, '\0'));
        rec.absent = Some(3);
        let back: Record = from_value(decode(&encode(&to_value(&rec).unwrap()))).unwrap();
        assert_eq!(back, rec);
    }

    #[test]
    fn enum_variants_of_every_kind() {
        let rect = map([("w", 3.into()), ("h", 4.into())]);
        assert_eq!(round_trip(&Shape::Empty), Value::from("Empty"));
        assert_eq!(
            round_trip(&Shape::Circle(1.5)),
            map([("Circle", 1.5.into())])
        );
        assert_eq!(
            round_trip(&Shape::Point(1, -2)),
            map([("Point", list([1.into(), (-2).into()]))])
        );
        assert_eq!(
            round_trip(&Shape::Rect { w: 3, h: 4 }),
            map([("Rect", rect)])
        );
        assert_eq!(
            from_value::<Shape>(map([("Empty", Value::Null)])),
            Ok(Shape::Empty)
        );

        #[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
        enum Color {
            Red,
            Green,
        }
        let by_color = BTreeMap::from([(Color::Red, 1), (Color::Green, 2)]);
        assert_eq!(
            round_trip(&by_color),
            map([("Red", 1.into()), ("Green", 2.into())])
        );

        let two_entries = map([("Empty", Value::Null), ("Circle", 1.0.into())]);
        let expected = "enum (a string or a single-entry map)";
        assert_eq!(error::<Shape>(two_entries), type_mismatch(expected, "map"));
        assert_eq!(
            error::<Shape>(Value::Int(0)),
            type_mismatch(expected, "int")
        );
        assert!(matches!(
            error::<Shape>("Nope".into()),
            ValueError::Custom(_)
        ));
        assert_eq!(
            error::<Shape>(map([("Empty", 1.into())])),
            type_mismatch("null", "int")
        );
    }

    #[test]
    fn scalars_tuples_and_unit() {
        assert_eq!(round_trip(&()), Value::Null);
        assert_eq!(round_trip(&'ß'), Value::from("ß"));
        assert!(from_value::<char>("ab".into()).is_err());
        assert_eq!(round_trip(&1.25f32), Value::Float(1.25));
        assert_eq!(from_value::<f64>(Value::Int(3)), Ok(3.0));
        round_trip(&(1u8, "two".to_owned(), Some(3.5f64), None::<bool>));
        assert!(from_value::<(i32, i32)>(list([1.into(), 2.into(), 3.into()])).is_err());
        assert_eq!(round_trip(&i128::from(i64::MIN)), Value::Int(i64::MIN));
        assert_eq!(
            round_trip(&u128::from(u32::MAX)),
            Value::Int(u32::MAX.into())
        );
    }

    #[test]
    fn integer_range_errors() {
        assert_eq!(to_value(&u64::MAX), Err(ValueError::IntegerOutOfRange));
        assert_eq!(to_value(&u128::MAX), Err(ValueError::IntegerOutOfRange));
        assert_eq!(round_trip(&(i64::MAX as u64)), Value::Int(i64::MAX));
        assert_eq!(error::<i8>(Value::Int(128)), ValueError::IntegerOutOfRange);
        assert_eq!(from_value::<i8>(Value::Int(-128)), Ok(-128));
        assert_eq!(error::<u8>(Value::Int(-1)), ValueError::IntegerOutOfRange);
        assert_eq!(error::<u64>(Value::Int(-1)), ValueError::IntegerOutOfRange);
        assert_eq!(
            ValueError::IntegerOutOfRange.to_string(),
            "integer out of range"
        );
    }

    #[test]
    fn type_mismatch_errors() {
        let err = error::<String>(Value::Int(1));
        assert_eq!(err, type_mismatch("string", "int"));
        assert_eq!(err.to_string(), "type mismatch: expected string, found int");
        assert_eq!(
            error::<i32>(Value::Float(1.0)),
            type_mismatch("integer", "float")
        );
        assert_eq!(
            error::<Inner>(Value::Bool(true)),
            type_mismatch("map", "bool")
        );
        assert_eq!(
            error::<Vec<i32>>(Value::Null),
            type_mismatch("list", "null")
        );
        assert_eq!(error::<()>(Value::Int(0)), type_mismatch("null", "int"));
    }

    #[test]
    fn map_keys() {
        let by_int = BTreeMap::from([(-3i64, 'a'), (40, 'b')]);
        assert_eq!(
            round_trip(&by_int),
            map([("-3", "a".into()), ("40", "b".into())])
        );
        round_trip(&BTreeMap::from([(true, 1), (false, 0)]));
        round_trip(&BTreeMap::from([('k', ())]));
        round_trip(&HashMap::from([(Meters(5), 1u8)]));

        let no_key = Err(ValueError::KeyMustBeString);
        assert_eq!(to_value(&BTreeMap::from([((1, 2), 3)])), no_key);
        assert_eq!(to_value(&HashMap::from([(vec![1u8], 3)])), no_key);
        struct FloatKeyed;
        impl Serialize for FloatKeyed {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map([(1.5f64, 0)])
            }
        }
        assert_eq!(to_value(&FloatKeyed), no_key);
        let out_of_range = map([("300", 1.into())]);
        assert_eq!(
            error::<BTreeMap<u8, i32>>(out_of_range),
            ValueError::IntegerOutOfRange
        );
        let not_int = map([("x", 1.into())]);
        assert_eq!(
            error::<BTreeMap<u8, i32>>(not_int),
            type_mismatch("integer map key", "string")
        );
    }

    #[test]
    fn struct_field_rules() {
        #[derive(Debug, PartialEq, Deserialize)]
        struct Loose {
            a: i32,
            b: Option<String>,
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Strict {
            #[allow(dead_code)]
            a: i32,
        }
        let v = map([("a", 1.into()), ("extra", Value::Null)]);
        assert_eq!(from_value(v.clone()), Ok(Loose { a: 1, b: None }));
        assert!(matches!(error::<Strict>(v), ValueError::Custom(_)));
        assert!(matches!(error::<Loose>(map([])), ValueError::Custom(_)));
        let positional = list([2.into(), "s".into()]);
        assert_eq!(
            from_value(positional),
            Ok(Loose {
                a: 2,
                b: Some("s".into())
            })
        );
    }

    #[test]
    fn self_describing_serde_attributes() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        enum Event {
            Moved { x: i32 },
            Reset,
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        #[serde(untagged)]
        enum IntOrText {
            Int(i64),
            Text(String),
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Envelope {
            event: Event,
            either: Vec<IntOrText>,
            #[serde(flatten)]
            rest: BTreeMap<String, u8>,
        }
        let v = round_trip(&Envelope {
            event: Event::Moved { x: -1 },
            either: vec![IntOrText::Int(1), IntOrText::Text("t".into())],
            rest: BTreeMap::from([("extra".into(), 7)]),
        });
        assert_eq!(v.as_map().unwrap()["extra"], Value::Int(7));
        assert_eq!(round_trip(&Event::Reset), map([("type", "Reset".into())]));
    }

    #[test]
    fn bytes_from_bytes_or_small_ints() {
        #[derive(Debug, PartialEq, Deserialize)]
        struct Blob {
            #[serde(with = "as_bytes")]
            blob: Vec<u8>,
        }
        let ints = map([("blob", list([1.into(), 255.into()]))]);
        assert_eq!(from_value(ints), Ok(Blob { blob: vec![1, 255] }));
        let big = map([("blob", list([256.into()]))]);
        assert_eq!(error::<Blob>(big), ValueError::IntegerOutOfRange);
        assert_eq!(
            from_value::<Vec<u8>>(Value::Bytes(vec![4, 5])),
            Ok(vec![4, 5])
        );
    }

    #[test]
    fn accessors_and_from() {
        assert_eq!(Value::from(Some(3u32)).as_i64(), Some(3));
        assert!(Value::from(None::<&str>).is_null());
        assert_eq!(Value::from(2i8).as_f64(), Some(2.0));
        assert_eq!(Value::from(true).as_bool(), Some(true));
        assert_eq!(Value::from("s").as_str(), Some("s"));
        assert_eq!(Value::from(&b"ab"[..]).as_bytes(), Some(&b"ab"[..]));
        assert_eq!(
            Value::from(vec![Value::Null]).as_list(),
            Some(&[Value::Null][..])
        );
        assert_eq!(
            Value::from(BTreeMap::new()).as_map(),
            Some(&BTreeMap::new())
        );
        assert_eq!(Value::Int(1).as_str(), None);
        let kinds = [Value::Null, 1.5.into(), vec![1u8].into()].map(|v| v.kind());
        assert_eq!(kinds, ["null", "float", "bytes"]);
    }

    #[test]
    fn nan_survives_bincode_bitwise() {
        let nans = [
            f64::NAN.to_bits(),
            0x7ff8_0000_0000_0001,
            0xfff0_0000_dead_beef,
        ];
        for bits in nans.into_iter().chain([(-0.0f64).to_bits()]) {
            let v = list([Value::Float(f64::from_bits(bits))]);
            let decoded = decode(&encode(&v));
            let float = decoded.as_list().and_then(|items| items[0].as_f64());
            assert_eq!(float.map(f64::to_bits), Some(bits));
        }
    }

    #[test]
    fn value_itself_converts_in_tagged_form() {
        assert_eq!(round_trip(&Value::Int(1)), map([("Int", 1.into())]));
        assert_eq!(round_trip(&Value::Null), Value::from("Null"));
    }

    /// A value of depth `levels`: `leaf` wrapped `levels - 1` times by `wrap`.
    fn nest_with(levels: usize, leaf: Value, wrap: impl Fn(Value) -> Value) -> Value {
        (1..levels).fold(leaf, |v, _| wrap(v))
    }

    /// `Int(0)` inside `levels - 1` single-element lists: a value of depth `levels`.
    fn nest(levels: usize) -> Value {
        nest_with(levels, Value::Int(0), |v| Value::List(vec![v]))
    }

    /// Runs `f` on a thread with a 256 KiB stack, where unbounded recursion would crash.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    /// Decodes as codec.rs does for peer frames.
    fn peer_decode(bytes: &[u8]) -> Result<Value, bincode::error::DecodeError> {
        let config = bincode::config::standard().with_limit::<{ 64 << 20 }>();
        bincode::serde::decode_from_slice(bytes, config).map(|(v, _)| v)
    }

    const TOO_DEEP: ValueError = ValueError::TooDeep { max: MAX_DEPTH };

    #[test]
    fn depth_is_measured_without_recursion() {
        assert_eq!(Value::Int(1).depth(), 1);
        assert_eq!(list([]).depth(), 1);
        assert_eq!(map([]).depth(), 1);
        assert_eq!(list([1.into()]).depth(), 2);
        assert_eq!(list([list([list([])]), 1.into()]).depth(), 3);
        let mixed = map([
            ("a", list([])),
            ("b", list([map([("c", Value::Null)])])),
            ("d", 1.into()),
        ]);
        assert_eq!(mixed.depth(), 4);
        assert_eq!(nest(MAX_DEPTH).depth(), MAX_DEPTH);
        assert_eq!(nest(MAX_DEPTH).check_depth(), Ok(()));
        assert_eq!(nest(MAX_DEPTH + 1).check_depth(), Err(TOO_DEEP));
        assert_eq!(TOO_DEEP.to_string(), "value nested deeper than 64 levels");
        on_small_stack(|| {
            let deep = nest_with(100_000, list([]), |v| map([("k", v)]));
            assert_eq!(deep.depth(), 100_000);
            assert_eq!(deep.check_depth(), Err(TOO_DEEP));
            drop_iteratively(deep);
        });
    }

    #[test]
    fn decoding_stops_at_max_depth() {
        let deepest = [
            nest(MAX_DEPTH),
            nest_with(MAX_DEPTH, list([]), |v| list([Value::Null, v])),
            nest_with(MAX_DEPTH, map([]), |v| map([("a", 1.into()), ("k", v)])),
        ];
        for v in deepest {
            assert_eq!(v.depth(), MAX_DEPTH);
            assert_eq!(peer_decode(&encode(&v)).unwrap(), v);
            let too_deep = list([v]);
            let err = peer_decode(&encode(&too_deep)).unwrap_err().to_string();
            assert!(err.contains("value nested deeper than 64 levels"), "{err}");
        }
    }

    #[test]
    fn hostile_deep_input_is_refused_on_a_small_stack() {
        // `List([x])` is variant index 6 then length 1; `Map({"k": x})` is 7, length 1, key.
        assert_eq!(encode(&list([Value::Null])), [6, 1, 0]);
        assert_eq!(encode(&map([("k", Value::Null)])), [7, 1, 1, b'k', 0]);
        for prefix in [&[6u8, 1][..], &[7, 1, 1, b'k'], &[7, 1, 1, b'k', 6, 1]] {
            let mut bytes = prefix.repeat(100_000);
            bytes.push(0);
            let err = on_small_stack(move || peer_decode(&bytes).unwrap_err().to_string());
            assert!(err.contains("value nested deeper than 64 levels"), "{err}");
        }
    }

    #[test]
    fn variant_identifiers_as_the_derive_reads_them() {
        use serde::de::IntoDeserializer;
        use serde::de::value::{BytesDeserializer, Error};

        let by_bytes = Variant::deserialize(BytesDeserializer::<Error>::new(b"Null"));
        assert!(matches!(by_bytes, Ok(Variant::Null)));
        let by_index = Variant::deserialize(IntoDeserializer::<Error>::into_deserializer(7u64));
        assert!(matches!(by_index, Ok(Variant::Map)));
        let bad_index = Variant::deserialize(IntoDeserializer::<Error>::into_deserializer(8u64));
        let expected = "invalid value: integer `8`, expected variant index 0 <= i < 8";
        assert_eq!(bad_index.err().unwrap().to_string(), expected);
        let bad_name = Variant::deserialize(BytesDeserializer::<Error>::new(b"Nope"));
        assert!(
            bad_name
                .err()
                .unwrap()
                .to_string()
                .contains("unknown variant `Nope`")
        );

        // The tagged form through a self-describing deserializer.
        let bytes = map([("Bytes", list([1.into(), 2.into()]))]);
        assert_eq!(from_value::<Value>(bytes), Ok(Value::Bytes(vec![1, 2])));
        let unknown = from_value::<Value>(map([("Nope", Value::Null)]));
        assert!(matches!(unknown, Err(ValueError::Custom(_))));
        assert!(peer_decode(&[8]).is_err());
    }

    /// A type whose `Serialize`/`Deserialize` recurse through transparent wrappers only.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Chain(Option<Box<Chain>>);

    /// `Vec`s nested in one another.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Nested(Vec<Nested>);

    /// A linked list: one level and one `Some` per node.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Node {
        next: Option<Box<Node>>,
    }

    #[test]
    fn options_on_every_level_fit_within_max_depth() {
        let chain = |nodes| {
            (1..nodes).fold(Node { next: None }, |n, _| Node {
                next: Some(Box::new(n)),
            })
        };
        // `n` nodes are `n + 1` levels deep: the last one holds `next: Null`.
        let v = to_value(&chain(MAX_DEPTH - 1)).unwrap();
        assert_eq!(v.depth(), MAX_DEPTH);
        assert_eq!(from_value::<Node>(v), Ok(chain(MAX_DEPTH - 1)));
        assert_eq!(to_value(&chain(MAX_DEPTH)), Err(TOO_DEEP));
    }

    #[test]
    fn to_value_refuses_deep_values() {
        // The tagged form of a value is twice as deep: `List([x])` becomes `{"List": [x]}`.
        let half = MAX_DEPTH / 2;
        let tagged = to_value(&nest(half)).unwrap();
        assert_eq!(tagged.depth(), MAX_DEPTH);
        assert_eq!(from_value::<Value>(tagged), Ok(nest(half)));
        assert_eq!(to_value(&nest(half + 1)), Err(TOO_DEEP));
        assert_eq!(to_value(&(1, [[[2]]])).unwrap().depth(), 5);

        let shallow = (0..10).fold(Chain(None), |c, _| Chain(Some(Box::new(c))));
        assert_eq!(to_value(&shallow), Ok(Value::Null));

        on_small_stack(|| {
            let deep = nest(100_000);
            assert_eq!(to_value(&deep), Err(TOO_DEEP));
            drop_iteratively(deep);

            let mut chain = (0..100_000).fold(Chain(None), |c, _| Chain(Some(Box::new(c))));
            assert_eq!(to_value(&chain), Err(TOO_DEEP));
            let mut next = chain.0.take();
            while let Some(mut link) = next {
                next = link.0.take();
            }
        });
    }

    #[test]
    fn from_value_refuses_deep_values() {
        let empty_lists = |levels| nest_with(levels, list([]), |v| list([v]));
        let nested = from_value::<Nested>(empty_lists(MAX_DEPTH)).unwrap();
        assert_eq!(to_value(&nested), Ok(empty_lists(MAX_DEPTH)));
        assert_eq!(
            from_value::<Nested>(empty_lists(MAX_DEPTH + 1)),
            Err(TOO_DEEP)
        );
        assert_eq!(from_value::<Chain>(Value::Null), Ok(Chain(None)));

        on_small_stack(move || {
            let deep = empty_lists(100_000);
            assert_eq!(from_value::<Nested>(deep), Err(TOO_DEEP));
            // `Value`'s tagged form, nested as deep.
            let tagged = nest_with(100_000, map([("Int", 0.into())]), |v| {
                map([("List", list([v]))])
            });
            assert_eq!(from_value::<Value>(tagged), Err(TOO_DEEP));
            // A non-null value for `Chain` would be read as `Some` without end.
            assert_eq!(from_value::<Chain>(Value::Int(1)), Err(TOO_DEEP));
        });
    }

    /// What `#[derive(Deserialize)]` on `Value` would produce, to compare against.
    #[derive(Debug, Serialize, Deserialize)]
    enum Derived {
        Null,
        Bool(bool),
        Int(i64),
        Float(f64),
        String(String),
        Bytes(Vec<u8>),
        List(Vec<Derived>),
        Map(BTreeMap<String, Derived>),
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<u64>().prop_map(|bits| Value::Float(f64::from_bits(bits))),
            any::<f64>().prop_map(Value::Float),
            ".{0,12}".prop_map(Value::String),
            vec(any::<u8>(), 0..12).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::List),
                btree_map(".{0,6}", inner, 0..6).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_value_round_trips(v in arb_value()) {
            let bytes = encode(&v);
            prop_assert_eq!(encode(&decode(&bytes)), bytes.clone());
            let back: Value = from_value(to_value(&v).unwrap()).unwrap();
            prop_assert_eq!(encode(&back), bytes);
        }

        #[test]
        fn arbitrary_bytes_decode_without_panicking(bytes in vec(any::<u8>(), 0..64)) {
            let config = bincode::config::standard().with_limit::<4096>();
            let _ = bincode::serde::decode_from_slice::<Value, _>(&bytes, config);
        }

        #[test]
        fn arbitrary_bytes_decode_like_the_derive(
            bytes in vec(prop_oneof![0u8..10, any::<u8>()], 0..64),
        ) {
            let config = bincode::config::standard().with_limit::<4096>();
            let ours = bincode::serde::decode_from_slice::<Value, _>(&bytes, config);
            let derived = bincode::serde::decode_from_slice::<Derived, _>(&bytes, config);
            match (ours, derived) {
                (Ok((v, read)), Ok((d, derived_read))) => {
                    prop_assert_eq!(read, derived_read);
                    let d = bincode::serde::encode_to_vec(&d, config).unwrap();
                    prop_assert_eq!(encode(&v), d);
                }
                (Err(e), Err(derived_e)) => {
                    prop_assert_eq!(format!("{e:?}"), format!("{derived_e:?}"));
                }
                (ours, derived) => prop_assert!(false, "{ours:?} vs {derived:?}"),
            }
        }
    }
}
