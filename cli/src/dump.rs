//! `syncline dump` and `syncline import`: records as JSON lines.

use std::path::PathBuf;

use crate::Failure;

/// The arguments of `syncline dump`.
#[derive(Debug, clap::Args)]
pub(crate) struct DumpArgs {
    /// The replica file.
    #[arg(long)]
    pub(crate) db: PathBuf,
    /// The collection to dump.
    #[arg(long)]
    pub(crate) collection: String,
}

/// The arguments of `syncline import`.
#[derive(Debug, clap::Args)]
pub(crate) struct ImportArgs {
    /// The replica file (created if missing).
    #[arg(long)]
    pub(crate) db: PathBuf,
    /// The collection to write into.
    #[arg(long)]
    pub(crate) collection: String,
}

/// Dumps a collection.
pub(crate) fn dump(args: DumpArgs) -> Result<u8, Failure> {
    let _ = args;
    Err(Failure::failed("dump is not built yet"))
}

/// Imports JSON lines into a collection.
pub(crate) fn import(args: ImportArgs) -> Result<u8, Failure> {
    let _ = args;
    Err(Failure::failed("import is not built yet"))
}
