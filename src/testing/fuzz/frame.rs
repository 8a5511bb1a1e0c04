//! The checks behind [`decode_frame`]: round trips and batch digests.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::{self, Batch};

#[cfg(doc)]
use super::decode_frame;

/// Decodes `data` as a `T`; if it decodes, checks the round trip and returns it.
pub(super) fn round_trip<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let first: T = protocol::decode(data).ok()?;
    let bytes = protocol::encode(&first);
    let second: T = match protocol::decode(&bytes) {
        Ok(second) => second,
        Err(e) => panic!(
            "{} decoded from {data:02x?} as {first:?}, but its encoding {bytes:02x?} does not decode: {e}",
            std::any::type_name::<T>()
        ),
    };
    let again = protocol::encode(&second);
    assert_eq!(
        bytes,
        again,
        "{}: re-encoding a decoded frame changed its bytes",
        std::any::type_name::<T>()
    );
    // Equal encodings mean equal bits; only a NaN float makes the values
    // differ, and then their debug forms still agree.
    assert!(
        first == second || format!("{first:?}") == format!("{second:?}"),
        "{}: {first:?} came back as {second:?}",
        std::any::type_name::<T>()
    );
    Some(first)
}

/// A batch rebuilt from its changes verifies, and the received one verifies
/// exactly when it carries that digest and group sizes that add up.
pub(super) fn check_digest(batch: &Batch) {
    let rebuilt = Batch::new(batch.changes.clone(), batch.through);
    assert!(rebuilt.verify(), "a freshly built batch does not verify");
    assert_eq!(
        batch.verify(),
        batch.digest == rebuilt.digest && batch.group_ranges().is_some(),
        "verify disagrees with the digest of the changes and the group sizes"
    );
}
