//! The JSON lines of `syncline dump` and `syncline import`: keys and values
//! as JSON, in an encoding that round-trips exactly.
//!
//! - A key is a JSON string when it is UTF-8, else `{"hex": "..."}`
//!   (lowercase on output, either case on input).
//! - `null`, `true`/`false` and strings are themselves; a list is an array;
//!   a map is an object.
//! - An `Int` is a JSON integer; a `Float` is a JSON number that always has
//!   a fraction or an exponent (`1.0`, `0.1`, `-0.0`, `1e300`), written with
//!   the fewest digits that read back to the same bits. A number without
//!   either is an `Int`, so `1` and `1.0` stay apart. Floats that JSON has
//!   no number for are `{"$float": "NaN"}`, `{"$float": "inf"}` and
//!   `{"$float": "-inf"}`; a NaN with another bit pattern is
//!   `{"$float": "0x<its 16 hex digits>"}`.
//! - Bytes are `{"$bytes": "<base64>"}` (standard alphabet, padded).
//! - An object with exactly one entry whose name starts with `$` is one of
//!   these tags; a map that would look like one (a single entry, its name
//!   starting with `$`) is written `{"$map": {...}}`. Any other `$` tag is
//!   refused on input.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value as Json};
use syncline::{Key, Value};

/// Why a line of `syncline import` input is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LineError {
    /// The line is not JSON.
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The line is JSON but not an object of `key` and `value`, or `key`
    /// and `"deleted": true`.
    #[error("expected {{\"key\": ..., \"value\": ...}} or {{\"key\": ..., \"deleted\": true}}")]
    Shape,
    /// The key is neither a string nor `{"hex": "..."}`.
    #[error("a key is a string or {{\"hex\": \"...\"}}")]
    Key,
    /// Hex or base64 that does not decode.
    #[error("malformed {0}")]
    Encoding(&'static str),
    /// An integer outside the signed 64-bit range.
    #[error("integer {0} is out of range (a signed 64-bit integer)")]
    IntegerOutOfRange(Number),
    /// An object that looks like a tag (one entry, its name starting with
    /// `$`) but is none of `$bytes`, `$float`, `$map`, or holds the wrong
    /// kind of JSON.
    #[error("unknown or malformed tag {0:?} (maps like it are written {{\"$map\": ...}})")]
    Tag(String),
}

/// One input line: a record's key and its value, `None` for a delete.
#[derive(Debug, PartialEq)]
pub(crate) struct Line {
    pub(crate) key: Key,
    pub(crate) value: Option<Value>,
}

/// A dump line of a live record.
pub(crate) fn live_line(key: &Key, value: &Value) -> String {
    let mut line = Map::new();
    line.insert("key".into(), key_to_json(key));
    line.insert("value".into(), to_json(value));
    ordered(line, "value")
}

/// A dump line of a deleted record.
pub(crate) fn deleted_line(key: &Key) -> String {
    let mut line = Map::new();
    line.insert("key".into(), key_to_json(key));
    line.insert("deleted".into(), Json::Bool(true));
    ordered(line, "deleted")
}

/// `{"key": ..., "<second>": ...}`: the key first, whatever order the JSON
/// map keeps.
fn ordered(mut line: Map<String, Json>, second: &str) -> String {
    let key = line.remove("key").unwrap_or(Json::Null);
    let other = line.remove(second).unwrap_or(Json::Null);
    format!("{{\"key\":{key},\"{second}\":{other}}}")
}

/// Reads one input line.
pub(crate) fn parse_line(text: &str) -> Result<Line, LineError> {
    let Json::Object(mut object) = serde_json::from_str::<Json>(text)? else {
        return Err(LineError::Shape);
    };
    let key = object.remove("key").ok_or(LineError::Shape)?;
    let key = key_from_json(key)?;
    let value = match (object.remove("value"), object.remove("deleted")) {
        (Some(value), None) => Some(from_json(value)?),
        (None, Some(Json::Bool(true))) => None,
        _ => return Err(LineError::Shape),
    };
    if !object.is_empty() {
        return Err(LineError::Shape);
    }
    Ok(Line { key, value })
}

/// A key as JSON: a string when UTF-8, else `{"hex": ...}`.
pub(crate) fn key_to_json(key: &Key) -> Json {
    match key.as_str() {
        Some(s) => Json::String(s.to_string()),
        None => {
            let mut m = Map::new();
            m.insert("hex".into(), Json::String(hex(key.as_bytes())));
            Json::Object(m)
        }
    }
}

fn key_from_json(json: Json) -> Result<Key, LineError> {
    match json {
        Json::String(s) => Ok(Key::from(s)),
        Json::Object(mut m) if m.len() == 1 => match m.remove("hex") {
            Some(Json::String(h)) => Ok(Key::new(unhex(&h).ok_or(LineError::Encoding("hex"))?)),
            _ => Err(LineError::Key),
        },
        _ => Err(LineError::Key),
    }
}

/// A value as JSON (see the module docs).
pub(crate) fn to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::Number((*i).into()),
        Value::Float(f) => match Number::from_f64(*f) {
            Some(n) => Json::Number(n),
            None => tag("$float", Json::String(special_float(*f))),
        },
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => tag("$bytes", Json::String(base64(b))),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(map) => {
            let object: Map<String, Json> =
                map.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
            if looks_like_tag(&object) {
                tag("$map", Json::Object(object))
            } else {
                Json::Object(object)
            }
        }
    }
}

/// The name of a float JSON has no number for.
fn special_float(f: f64) -> String {
    if f == f64::INFINITY {
        "inf".into()
    } else if f == f64::NEG_INFINITY {
        "-inf".into()
    } else if f.to_bits() == f64::NAN.to_bits() {
        "NaN".into()
    } else {
        // Another NaN: its bits, so that the payload survives.
        format!("0x{:016x}", f.to_bits())
    }
}

/// A value from JSON (see the module docs).
pub(crate) fn from_json(json: Json) -> Result<Value, LineError> {
    Ok(match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if n.is_f64() {
                // Always `Some` for a number that is not an integer.
                Value::Float(n.as_f64().ok_or(LineError::IntegerOutOfRange(n))?)
            } else {
                return Err(LineError::IntegerOutOfRange(n));
            }
        }
        Json::String(s) => Value::String(s),
        Json::Array(items) => {
            Value::List(items.into_iter().map(from_json).collect::<Result<_, _>>()?)
        }
        Json::Object(object) if looks_like_tag(&object) => untag(object)?,
        Json::Object(object) => Value::Map(map_from_json(object)?),
    })
}

fn map_from_json(object: Map<String, Json>) -> Result<BTreeMap<String, Value>, LineError> {
    object
        .into_iter()
        .map(|(k, v)| Ok((k, from_json(v)?)))
        .collect()
}

/// Whether an object reads as a tag: one entry, its name starting with `$`.
fn looks_like_tag(object: &Map<String, Json>) -> bool {
    object.len() == 1 && object.keys().all(|k| k.starts_with('$'))
}

fn tag(name: &str, inner: Json) -> Json {
    let mut m = Map::new();
    m.insert(name.into(), inner);
    Json::Object(m)
}

fn untag(object: Map<String, Json>) -> Result<Value, LineError> {
    let Some((name, inner)) = object.into_iter().next() else {
        return Err(LineError::Tag(String::new()));
    };
    match (name.as_str(), inner) {
        ("$bytes", Json::String(b)) => Ok(Value::Bytes(
            unbase64(&b).ok_or(LineError::Encoding("base64"))?,
        )),
        ("$float", Json::String(f)) => match f.as_str() {
            "NaN" => Ok(Value::Float(f64::NAN)),
            "inf" => Ok(Value::Float(f64::INFINITY)),
            "-inf" => Ok(Value::Float(f64::NEG_INFINITY)),
            bits => match bits.strip_prefix("0x").map(|h| u64::from_str_radix(h, 16)) {
                Some(Ok(bits)) if f64::from_bits(bits).is_nan() => {
                    Ok(Value::Float(f64::from_bits(bits)))
                }
                _ => Err(LineError::Tag(name)),
            },
        },
        ("$map", Json::Object(m)) => Ok(Value::Map(map_from_json(m)?)),
        _ => Err(LineError::Tag(name)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64, padded.
fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64, padded, canonical (unused bits zero), or `None`.
fn unbase64(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let quads = text.chunks(4);
    let last = quads.len().saturating_sub(1);
    for (q, quad) in quads.enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && q != last) {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in quad[..4 - pad].iter().enumerate() {
            let v = ALPHABET.iter().position(|&a| a == c)? as u32;
            n |= v << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let keep = 3 - pad;
        if bytes[keep..].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend_from_slice(&bytes[..keep]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(value: Value) {
        let json = serde_json::to_string(&to_json(&value)).unwrap();
        let back = from_json(serde_json::from_str(&json).unwrap()).unwrap();
        let bits = |v: &Value| format!("{v:?}");
        match (&value, &back) {
            (Value::Float(a), Value::Float(b)) => assert_eq!(a.to_bits(), b.to_bits(), "{json}"),
            _ => assert_eq!(bits(&back), bits(&value), "{json}"),
        }
        // And the text is stable.
        assert_eq!(serde_json::to_string(&to_json(&back)).unwrap(), json);
    }

    #[test]
    fn every_shape_round_trips() {
        let map = |pairs: &[(&str, Value)]| {
            Value::Map(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            )
        };
        for v in [
            Value::Null,
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Int(0),
            Value::Float(0.1),
            Value::Float(-0.0),
            Value::Float(1.0),
            Value::Float(1e300),
            Value::Float(f64::MIN_POSITIVE),
            Value::Float(5e-324),
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
            Value::String("é \" \\ \u{0} \n 😀".into()),
            Value::Bytes(vec![]),
            Value::Bytes(vec![0, 1, 2, 0xff, 0xfe]),
            Value::List(vec![Value::Int(1), Value::Float(1.0), Value::List(vec![])]),
            map(&[]),
            map(&[("$bytes", Value::Int(1))]),
            map(&[("$map", map(&[("$x", Value::Null)]))]),
            map(&[("$a", Value::Null), ("$b", Value::Null)]),
            map(&[("a", map(&[("b", Value::Bytes(vec![9]))]))]),
        ] {
            round_trip(v);
        }
    }

    #[test]
    fn floats_read_back_to_the_same_bits() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let f = f64::from_bits(seed);
            round_trip(Value::Float(f));
            let json = serde_json::to_string(&to_json(&Value::Float(f))).unwrap();
            if f.is_finite() {
                assert!(json.contains(['.', 'e', 'E']), "{json} reads as a float");
            }
        }
    }

    #[test]
    fn base64_and_hex_round_trip_and_refuse_junk() {
        for n in 0..40u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(unbase64(&base64(&bytes)).unwrap(), bytes);
            assert_eq!(unhex(&hex(&bytes)).unwrap(), bytes);
        }
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fo"), "Zm8=");
        for bad in ["Zm8", "Zm9=", "Z===", "Zm=8", "Zm8=Zm8=", "Zm*="] {
            assert_eq!(unbase64(bad), None, "{bad}");
        }
        assert_eq!(unhex("ABcd"), Some(vec![0xab, 0xcd]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn lines_read_back_and_bad_ones_say_why() {
        let key = Key::new(vec![0xff, 0]);
        let line = live_line(&key, &Value::Int(1));
        assert_eq!(line, r#"{"key":{"hex":"ff00"},"value":1}"#);
        assert_eq!(
            parse_line(&line).unwrap(),
            Line {
                key,
                value: Some(Value::Int(1))
            }
        );
        let line = deleted_line(&Key::from("k"));
        assert_eq!(line, r#"{"key":"k","deleted":true}"#);
        assert_eq!(parse_line(&line).unwrap().value, None);
        for (bad, why) in [
            ("nope", "not JSON"),
            ("[1]", "expected"),
            (r#"{"key":"k"}"#, "expected"),
            (r#"{"key":"k","value":1,"deleted":true}"#, "expected"),
            (r#"{"key":"k","deleted":false}"#, "expected"),
            (r#"{"key":"k","value":1,"x":2}"#, "expected"),
            (r#"{"key":1,"value":1}"#, "a key is"),
            (r#"{"key":{"hex":"f"},"value":1}"#, "malformed hex"),
            (
                r#"{"key":"k","value":18446744073709551615}"#,
                "out of range",
            ),
            (r#"{"key":"k","value":{"$bytes":"!"}}"#, "malformed base64"),
            (
                r#"{"key":"k","value":{"$nope":1}}"#,
                "unknown or malformed tag",
            ),
            (
                r#"{"key":"k","value":{"$float":"1"}}"#,
                "unknown or malformed tag",
            ),
        ] {
            let err = parse_line(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
