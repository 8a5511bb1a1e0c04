//! syncline's dynamic [`Value`] and the conversion of any serde type to and from it.
//!
//! [`to_value`] runs a type's `Serialize` impl into a [`Value`]; [`from_value`] runs a
//! type's `Deserialize` impl over one. A [`Value`] itself is stored with bincode through
//! its externally tagged `Serialize`/`Deserialize` (the latter written by hand so that it
//! refuses values nested deeper than [`MAX_DEPTH`] instead of overflowing the stack).

use std::collections::{BTreeMap, btree_map};
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use self::depth::Depth;
use self::ser::ValueSerializer;

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
    // Written with `serialize_bytes`: in the codec the same bytes as a
    // sequence of `u8`, written and read in one piece instead of byte by byte.
    Bytes(#[serde(serialize_with = "decode::serialize_bytes")] Vec<u8>),
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

impl serde::ser::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError::Custom(msg.to_string())
    }
}

impl serde::de::Error for ValueError {
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

mod de;
mod decode;
mod depth;
mod ser;

#[cfg(test)]
mod tests;
