//! `syncline inspect`: what a replica file holds.

use std::path::Path;

use crate::Failure;

/// Prints a description of the replica at `db`.
pub(crate) fn run(db: &Path, json: bool) -> Result<u8, Failure> {
    let _ = (db, json);
    Err(Failure::failed("inspect is not built yet"))
}
