//! The one place that knows the binary encoding (bincode 2, serde mode).
//!
//! Everything stored or sent is encoded here, so the codec can be swapped by
//! changing this file alone. Decoding is always bounded: bincode trusts the
//! lengths in its input and would otherwise try to allocate whatever the
//! bytes claim.

use bincode::config::{self, Config};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The most bytes a decode of stored data may allocate. Stored values are
/// bounded far below this by [`crate::ReplicaConfig`]; the bound only stops a
/// corrupted file from exhausting memory.
const STORED_LIMIT: usize = 256 << 20;

/// The most bytes a decode of one peer frame may allocate.
pub(crate) const PEER_LIMIT: usize = 64 << 20;

/// A byte string that does not decode as the expected type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed encoding: {reason}")]
pub struct DecodeError {
    reason: String,
}

impl DecodeError {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Encodes one of syncline's own types.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // bincode's serde encoder fails only for sequences of unknown length and
    // custom errors of hand-written `Serialize` impls. syncline's types have
    // neither (the hand-written ones in `wire.rs` serialize slices, whose
    // length is known, and raise no errors), so a failure is a bug in this
    // crate, not bad input.
    bincode::serde::encode_to_vec(value, config::standard()).expect("syncline types always encode")
}

/// Encodes one of syncline's own types at the end of `buf`, so a hot path
/// can reuse one buffer instead of allocating per value.
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) {
    // Infallible for the same reasons as `encode`, and writing to a `Vec`
    // cannot fail.
    bincode::serde::encode_into_std_write(value, buf, config::standard())
        .expect("syncline types always encode");
}

/// The length of `value`'s encoding, counted without building it.
pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, config::standard())
        .expect("syncline types always encode");
    size.bytes_written
}

/// Decodes data this crate stored, bounded by [`STORED_LIMIT`].
pub(crate) fn decode_stored<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_with(bytes, config::standard().with_limit::<STORED_LIMIT>())
}

/// Decodes a value from the start of stored bytes, ignoring what follows
/// it: for reading a row's leading fields without the rest.
pub(crate) fn decode_stored_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    bincode::serde::decode_from_slice::<T, _>(
        bytes,
        config::standard().with_limit::<STORED_LIMIT>(),
    )
    .map(|(value, _)| value)
    .map_err(|e| DecodeError::new(e.to_string()))
}

/// Decodes bytes from a peer, bounded by [`PEER_LIMIT`].
pub(crate) fn decode_peer<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_with(bytes, config::standard().with_limit::<PEER_LIMIT>())
}

/// Decodes a value from the start of bytes from a peer, ignoring what
/// follows it: for reading a message's leading field on its own.
pub(crate) fn decode_peer_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    bincode::serde::decode_from_slice::<T, _>(bytes, config::standard().with_limit::<PEER_LIMIT>())
        .map(|(value, _)| value)
        .map_err(|e| DecodeError::new(e.to_string()))
}

fn decode_with<T: DeserializeOwned>(bytes: &[u8], config: impl Config) -> Result<T, DecodeError> {
    let (value, read) = bincode::serde::decode_from_slice::<T, _>(bytes, config)
        .map_err(|e| DecodeError::new(e.to_string()))?;
    if read != bytes.len() {
        return Err(DecodeError::new(format!(
            "{} trailing bytes",
            bytes.len() - read
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_length_is_refused_not_allocated() {
        // Six bytes known to make an unbounded bincode decode try to
        // allocate about 4 GB (`0xfc` starts a u32 varint length): bounded,
        // they must be an error.
        let bytes = [0x26, 0xfc, 0x6f, 0x30, 0x2f, 0xfd];
        assert!(decode_peer::<Vec<u8>>(&bytes).is_err());
        assert!(decode_stored::<String>(&bytes).is_err());
    }

    #[test]
    fn every_encoder_writes_the_same_bytes() {
        let value = (7u64, "seven", vec![1u8, 2, 3]);
        let whole = encode(&value);
        let mut buf = vec![9];
        encode_into(&value, &mut buf);
        assert_eq!(&buf[1..], whole.as_slice());
        assert_eq!(encoded_len(&value), whole.len());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&7u32);
        bytes.push(0);
        assert!(decode_stored::<u32>(&bytes).is_err());
    }
}
