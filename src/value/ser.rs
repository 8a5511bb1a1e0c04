//! The `serde::Serializer` behind [`to_value`].

use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser;

use super::depth::{Depth, Res};
use super::{Value, ValueError};

#[cfg(doc)]
use super::to_value;

/// The `serde::Serializer` behind [`to_value`], producing the value at the given place.
pub(super) struct ValueSerializer(pub(super) Depth);

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
pub(super) struct SeqSerializer {
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
pub(super) struct MapSerializer {
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
pub(super) struct VariantSerializer<S>(&'static str, S);

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
