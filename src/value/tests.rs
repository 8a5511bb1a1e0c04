use std::collections::HashMap;
use std::fmt::Debug;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde::{Deserialize, ser};

use super::decode::{Variant, drop_iteratively};
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
                // The same kind of error; bytes read in one piece may miss
                // by a different count than byte by byte, and claim a
                // length over the limit where the derive runs out of input
                // element by element first (both refuse the length).
                let kind = |s: String| {
                    let k = s.split([' ', '(']).next().unwrap_or_default();
                    if k == "LimitExceeded" { "UnexpectedEnd".to_owned() } else { k.to_owned() }
                };
                prop_assert_eq!(kind(format!("{e:?}")), kind(format!("{derived_e:?}")));
            }
            (ours, derived) => prop_assert!(false, "{ours:?} vs {derived:?}"),
        }
    }
}
