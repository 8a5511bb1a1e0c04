//! The flat byte keys of `records-3` and `log-3` (and format 2's
//! `changes-2`, `records-2` and `conflicts-2`, for the upgrade).
//!
//! redb compares `&[u8]` keys with one `memcmp`, where tuple keys decode
//! their length prefixes on every comparison; flat keys made the write path
//! about a tenth faster. The layout:
//!
//! - a **name** (collection name, or record key inside a log key) is written
//!   escaped: every `0x00` byte becomes `0x00 0xff`, and `0x00 0x01` ends it.
//!   The escaping keeps byte order (`a` < `a\0` < `ab`) and no escaped name
//!   is a prefix of another, so a collection's keys and a record's changes
//!   are each one contiguous range;
//! - record key: `name(collection) ++ key bytes` (the key runs to the end);
//! - log key: `name(collection) ++ name(key) ++ stamp (u64 big-endian) ++
//!   origin number (u32 big-endian)`, so a record's changes order by stamp,
//!   then origin (format 2: the origin's 16 bytes, whose order the numbers
//!   do not keep; nothing depends on the order among equal stamps).

use crate::error::{Inconsistency, StorageError};
use crate::model::Key;

/// Ends an escaped name.
const END: [u8; 2] = [0, 1];
/// An escaped `0x00` byte.
const NUL: [u8; 2] = [0, 0xff];

/// Appends `bytes` escaped and terminated.
fn push_name(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    for part in bytes.split_inclusive(|&b| b == 0) {
        match part.split_last() {
            Some((0, head)) => {
                out.extend_from_slice(head);
                out.extend_from_slice(&NUL);
            }
            _ => out.extend_from_slice(part),
        }
    }
    out.extend_from_slice(&END);
}

/// Reads one escaped name from the start of `bytes`: the name and the rest.
fn split_name(bytes: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut name = Vec::with_capacity(bytes.len());
    let mut i = 0;
    loop {
        let at = i + bytes.get(i..)?.iter().position(|&b| b == 0)?;
        name.extend_from_slice(&bytes[i..at]);
        match bytes.get(at + 1)? {
            0xff => name.push(0),
            1 => return Some((name, &bytes[at + 2..])),
            _ => return None,
        }
        i = at + 2;
    }
}

/// The prefix of every key of `collection` in the three tables.
pub(crate) fn collection(collection: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(collection.len() + 2);
    push_name(&mut out, collection.as_bytes());
    out
}

/// Writes the record key of (collection, key) into `out`.
pub(crate) fn record_into(out: &mut Vec<u8>, collection: &str, key: &[u8]) {
    out.clear();
    push_name(out, collection.as_bytes());
    out.extend_from_slice(key);
}

/// The record key of (collection, key).
pub(crate) fn record(collection: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    record_into(&mut out, collection, key);
    out
}

/// Splits a record key into (collection, key).
pub(crate) fn split_record(
    table: &'static str,
    bytes: &[u8],
) -> Result<(String, Key), StorageError> {
    let bad = || malformed(table, bytes);
    let (collection, key) = split_name(bytes).ok_or_else(bad)?;
    let collection = String::from_utf8(collection).map_err(|_| bad())?;
    Ok((collection, Key::new(key)))
}

/// Writes the prefix of a record's log keys into `out`.
pub(crate) fn log_prefix_into(out: &mut Vec<u8>, collection: &str, key: &[u8]) {
    out.clear();
    push_name(out, collection.as_bytes());
    push_name(out, key);
}

/// Writes the log key of a change into `out`.
pub(crate) fn log_into(out: &mut Vec<u8>, collection: &str, key: &[u8], stamp: u64, origin: u32) {
    log_prefix_into(out, collection, key);
    out.extend_from_slice(&stamp.to_be_bytes());
    out.extend_from_slice(&origin.to_be_bytes());
}

/// The log key of a change.
pub(crate) fn log(collection: &str, key: &[u8], stamp: u64, origin: u32) -> Vec<u8> {
    let mut out = Vec::new();
    log_into(&mut out, collection, key, stamp, origin);
    out
}

/// The prefix of a record's log keys.
pub(crate) fn log_prefix(collection: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    log_prefix_into(&mut out, collection, key);
    out
}

/// The exclusive upper bound of the keys starting with `prefix`, an escaped
/// name (which ends in `0x00 0x01`): the same bytes ending in `0x00 0x02`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// Splits a log key, with its collection prefix `skip` bytes long, into
/// (record key, stamp, origin number).
pub(crate) fn split_log(
    table: &'static str,
    bytes: &[u8],
    skip: usize,
) -> Result<(Key, u64, u32), StorageError> {
    let (key, stamp, origin) = split_log_n::<4>(table, bytes, skip)?;
    Ok((key, stamp, u32::from_be_bytes(origin)))
}

/// [`split_log`] with an origin `N` bytes long.
fn split_log_n<const N: usize>(
    table: &'static str,
    bytes: &[u8],
    skip: usize,
) -> Result<(Key, u64, [u8; N]), StorageError> {
    let parts = bytes
        .get(skip..)
        .and_then(split_name)
        .and_then(|(key, rest)| {
            let (stamp, origin) = rest.split_first_chunk::<8>()?;
            Some((
                Key::new(key),
                u64::from_be_bytes(*stamp),
                <[u8; N]>::try_from(origin).ok()?,
            ))
        });
    parts.ok_or_else(|| malformed(table, bytes))
}

/// The error for a key of `table` that does not parse.
pub(crate) fn malformed(table: &'static str, bytes: &[u8]) -> StorageError {
    StorageError::Invalid {
        table,
        reason: Inconsistency::MalformedKey {
            key: bytes.to_vec(),
        },
    }
}

/// Splits a whole log key into (collection, record key, stamp, origin number).
pub(crate) fn parse_log(
    table: &'static str,
    bytes: &[u8],
) -> Result<(String, Key, u64, u32), StorageError> {
    let (collection, key, stamp, origin) = parse_log_n::<4>(table, bytes)?;
    Ok((collection, key, stamp, u32::from_be_bytes(origin)))
}

/// [`parse_log`] with an origin `N` bytes long.
fn parse_log_n<const N: usize>(
    table: &'static str,
    bytes: &[u8],
) -> Result<(String, Key, u64, [u8; N]), StorageError> {
    let bad = || malformed(table, bytes);
    let (collection, rest) = split_name(bytes).ok_or_else(bad)?;
    let collection = String::from_utf8(collection).map_err(|_| bad())?;
    let (key, stamp, origin) = split_log_n::<N>(table, rest, 0)?;
    Ok((collection, key, stamp, origin))
}

/// The (stamp, origin number) at the end of a log key, for callers that
/// know its record.
pub(crate) fn split_log_tail(
    table: &'static str,
    bytes: &[u8],
) -> Result<(u64, u32), StorageError> {
    let short = || malformed(table, bytes);
    let (rest, origin) = bytes.split_last_chunk::<4>().ok_or_else(short)?;
    let (_, stamp) = rest.split_last_chunk::<8>().ok_or_else(short)?;
    Ok((u64::from_be_bytes(*stamp), u32::from_be_bytes(*origin)))
}

/// Format 2's log keys, whose origin is the replica id's 16 bytes.
pub(crate) mod v2 {
    use super::{log_prefix_into, parse_log_n};
    use crate::error::StorageError;
    use crate::model::Key;

    /// A format 2 log key.
    pub(crate) fn log(collection: &str, key: &[u8], stamp: u64, origin: &[u8; 16]) -> Vec<u8> {
        let mut out = Vec::new();
        log_prefix_into(&mut out, collection, key);
        out.extend_from_slice(&stamp.to_be_bytes());
        out.extend_from_slice(origin);
        out
    }

    /// Splits a format 2 log key into (collection, record key, stamp, origin).
    pub(crate) fn parse_log(
        table: &'static str,
        bytes: &[u8],
    ) -> Result<(String, Key, u64, [u8; 16]), StorageError> {
        parse_log_n::<16>(table, bytes)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn name() -> impl Strategy<Value = Vec<u8>> {
        // Zero bytes and the escape bytes often, to hit every branch.
        proptest::collection::vec(
            prop_oneof![Just(0u8), Just(1u8), Just(0xff), any::<u8>()],
            0..6,
        )
    }

    proptest! {
        #[test]
        fn names_round_trip_and_keep_order(a in name(), b in name(), tail in name()) {
            let mut ea = Vec::new();
            push_name(&mut ea, &a);
            let mut eb = Vec::new();
            push_name(&mut eb, &b);
            prop_assert_eq!(ea.cmp(&eb), a.cmp(&b));
            if a != b {
                prop_assert!(!eb.starts_with(&ea), "no escaped name is a prefix of another");
            }
            ea.extend_from_slice(&tail);
            let (back, rest) = split_name(&ea).unwrap();
            prop_assert_eq!(back, a);
            prop_assert_eq!(rest, tail.as_slice());
        }

        #[test]
        fn log_keys_round_trip_and_order_by_record_then_stamp(
            c in "[a-z\0]{1,4}", k1 in name(), k2 in name(), s1: u64, s2: u64, o1: u32, o2: u32,
        ) {
            let a = log(&c, &k1, s1, o1);
            let b = log(&c, &k2, s2, o2);
            prop_assert_eq!(a.cmp(&b), (&k1, s1, o1).cmp(&(&k2, s2, o2)));
            let skip = collection(&c).len();
            prop_assert_eq!(split_log("t", &a, skip).unwrap(), (Key::new(k1.clone()), s1, o1));
            prop_assert_eq!(split_log_tail("t", &a).unwrap(), (s1, o1));
            prop_assert_eq!(parse_log("t", &a).unwrap(), (c.clone(), Key::new(k1.clone()), s1, o1));
            let prefix = log_prefix(&c, &k1);
            prop_assert!(a.starts_with(&prefix) && a < prefix_end(&prefix));
            prop_assert_eq!(b.starts_with(&prefix), k1 == k2);
        }

        #[test]
        fn record_keys_keep_key_order_inside_a_collection(
            c1 in "[a-z\0]{1,4}", c2 in "[a-z\0]{1,4}", k1 in name(), k2 in name(),
        ) {
            let a = record(&c1, &k1);
            let b = record(&c2, &k2);
            prop_assert_eq!(a.cmp(&b), (c1.as_bytes(), &k1).cmp(&(c2.as_bytes(), &k2)));
            let prefix = collection(&c1);
            prop_assert_eq!(b.starts_with(&prefix), c1 == c2);
            prop_assert!(a < prefix_end(&prefix));
        }
    }

    #[test]
    fn malformed_keys_are_errors() {
        assert!(split_log("t", b"ab", 0).is_err());
        assert!(split_log("t", &[b'a', 0, 7, 0, 0], 0).is_err());
        let mut short = collection("c");
        push_name(&mut short, b"k");
        short.extend_from_slice(&[1, 2, 3]);
        assert!(split_log("t", &short, 3).is_err());
        assert!(split_log_tail("t", &[1; 11]).is_err());
    }
}
