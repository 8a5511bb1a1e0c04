//! `syncline dump` and `syncline import`: a collection's records as JSON
//! lines, one record a line, in an encoding that round-trips exactly.
//!
//! ```sh
//! syncline dump --db phone.redb --collection todos > todos.jsonl
//! syncline import --db fresh.redb --collection todos < todos.jsonl
//! ```
//!
//! `dump` opens the file read-only (a running hub holding it is refused)
//! and writes each live record in key order as `{"key": K, "value": V}`;
//! with `--tombstones`, deleted records too, as `{"key": K, "deleted":
//! true}`. It pages through the collection, a thousand records at a time,
//! so a large collection is never held in memory whole.
//!
//! The encoding:
//!
//! - a key is a JSON string when it is UTF-8, else `{"hex": "..."}`;
//! - `null`, booleans and strings are themselves, a list is an array, a map
//!   an object;
//! - an integer is a JSON integer; a float always has a fraction or an
//!   exponent (`1.0`, `0.1`, `-0.0`), written with the fewest digits that
//!   read back to the same bits, so `1` and `1.0` stay apart; a float JSON
//!   has no number for is `{"$float": "NaN"}`, `"inf"`, `"-inf"`, or for a
//!   NaN with another bit pattern `"0x<16 hex digits>"`;
//! - bytes are `{"$bytes": "<base64, standard alphabet, padded>"}`;
//! - an object with exactly one entry whose name starts with `$` is one of
//!   these tags: a map that would look like one is written
//!   `{"$map": {...}}`, and any other `$` tag is refused on input.
//!
//! `import` reads such lines (standard input, or `--input FILE`; blank
//! lines are skipped) and writes each as a local put, or a delete for a
//! `"deleted": true` line, in transactions of 1,000 lines. It creates the
//! file and the collection if missing (`--policy`, default `lww`). Into an
//! automerge collection, a value must be the `{"$bytes": ...}` a dump of
//! one gives (the record's automerge changes): it is written as those
//! changes, so the record holds the same document. A bad line (not JSON,
//! not of that shape, a key or value the collection refuses) stops the
//! import with an error naming the line: the transactions before it stay
//! written, nothing of its transaction or after it is. Dumping what was
//! imported gives the same lines, byte for byte (stamps, versions,
//! conflicts and history are not carried: the records are new local
//! writes).

mod json;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::ops::Bound;
use std::path::PathBuf;

use syncline::{
    Collection, CollectionConfig, Key, MergePolicy, Replica, ReplicaConfig, Scan, Transaction,
    Value, WriteError,
};

use crate::Failure;
use crate::inspect::{open_failure, open_read_only};
use json::{Line, LineError};

/// How many records `dump` reads at a time, and `import` writes in one
/// transaction.
const BATCH: usize = 1000;

/// The encoding, for `--help`.
const ENCODING: &str = "\
Each line is {\"key\": K, \"value\": V}, or {\"key\": K, \"deleted\": true} for a \
deleted record. A key is a JSON string when it is UTF-8, else {\"hex\": \"...\"}. \
null, booleans, strings, lists (arrays) and maps (objects) are themselves; an \
integer is a JSON integer; a float always has a fraction or an exponent (1.0, \
-0.0, 0.1), or is {\"$float\": \"NaN\" | \"inf\" | \"-inf\" | \"0x<bits>\"}; bytes \
are {\"$bytes\": \"<base64>\"}; a map whose only entry's name starts with $ is \
written {\"$map\": {...}}. Dump, import into a fresh file and dump again: the \
same bytes.";

/// The arguments of `syncline dump`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = ENCODING)]
pub(crate) struct DumpArgs {
    /// The replica file (opened read-only).
    #[arg(long)]
    pub(crate) db: PathBuf,
    /// The collection to dump.
    #[arg(long)]
    pub(crate) collection: String,
    /// Also write deleted records, as {"key": K, "deleted": true}.
    #[arg(long)]
    pub(crate) tombstones: bool,
}

/// The arguments of `syncline import`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = ENCODING)]
pub(crate) struct ImportArgs {
    /// The replica file (created if missing).
    #[arg(long)]
    pub(crate) db: PathBuf,
    /// The collection to write into (created if missing).
    #[arg(long)]
    pub(crate) collection: String,
    /// Read the lines from this file instead of standard input.
    #[arg(long)]
    pub(crate) input: Option<PathBuf>,
    /// The policy of the collection if it is created (default lww); an
    /// existing collection must have this policy.
    #[arg(long, value_enum)]
    pub(crate) policy: Option<PolicyArg>,
}

/// The policies `import` can create a collection with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PolicyArg {
    /// Last writer wins.
    Lww,
    /// Field-level last writer wins (values are maps).
    FieldLww,
    /// Automerge documents.
    Automerge,
}

impl PolicyArg {
    fn policy(self) -> MergePolicy {
        match self {
            Self::Lww => MergePolicy::Lww,
            Self::FieldLww => MergePolicy::FieldLww,
            Self::Automerge => MergePolicy::Automerge,
        }
    }
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportError {
    /// A line does not read.
    #[error("line {line}: {error}")]
    Line {
        /// Its number, from 1.
        line: u64,
        /// What is wrong.
        error: LineError,
    },
    /// An automerge collection takes a dumped record's changes only.
    #[error(
        "line {line}: an automerge collection takes the {{\"$bytes\": ...}} of a dumped record, not a {kind}"
    )]
    NotAutomergeChanges {
        /// The line.
        line: u64,
        /// What the value was.
        kind: &'static str,
    },
    /// The collection refuses the line's write.
    #[error("line {line}: refused: {source}")]
    Refused {
        /// The line.
        line: u64,
        /// Why.
        source: Box<WriteError>,
    },
    /// The input could not be read.
    #[error("line {line}: reading the input: {source}")]
    Read {
        /// The line being read.
        line: u64,
        /// The error.
        source: std::io::Error,
    },
    /// A transaction's commit failed.
    #[error("lines {first} to {last}: the commit failed: {source}")]
    Commit {
        /// Its first line.
        first: u64,
        /// Its last line.
        last: u64,
        /// The error.
        source: Box<WriteError>,
    },
}

/// Dumps a collection.
pub(crate) fn dump(args: DumpArgs) -> Result<u8, Failure> {
    let replica = open_read_only(&args.db)?;
    let collection = existing(&replica, &args.db, &args.collection)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match write_lines(&collection, args.tombstones, &mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(0),
        // The reader went away (`| head`): nothing more to say.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(Failure::failed(format!(
            "dump of {:?} from {}: {e}",
            args.collection,
            args.db.display()
        ))),
    }
}

/// A defined collection, or a failure that lists the ones there are.
fn existing(replica: &Replica, db: &std::path::Path, name: &str) -> Result<Collection, Failure> {
    replica.collection(name).map_err(|_| {
        let names: Vec<String> = replica.collections().into_iter().map(|(n, _)| n).collect();
        Failure::failed(format!(
            "{} has no collection {name:?} (it has: {})",
            db.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ))
    })
}

/// Writes the collection's lines, a page of [`BATCH`] records at a time.
fn write_lines(
    collection: &Collection,
    tombstones: bool,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let mut after: Option<Key> = None;
    loop {
        let start = after.take().map_or(Bound::Unbounded, Bound::Excluded);
        let page = collection
            .records(Scan::range((start, Bound::Unbounded)).limit(BATCH))
            .map_err(std::io::Error::other)?;
        let full = page.len() == BATCH;
        for (key, state) in &page {
            match &state.value {
                Some(value) => writeln!(out, "{}", json::live_line(key, value))?,
                None if tombstones => writeln!(out, "{}", json::deleted_line(key))?,
                None => {}
            }
        }
        match page.into_iter().next_back() {
            Some((key, _)) if full => after = Some(key),
            _ => return Ok(()),
        }
    }
}

/// Imports JSON lines into a collection.
pub(crate) fn import(args: ImportArgs) -> Result<u8, Failure> {
    let mut input: Box<dyn BufRead> = match &args.input {
        Some(path) => {
            Box::new(BufReader::new(File::open(path).map_err(|e| {
                Failure::failed(format!("{}: {e}", path.display()))
            })?))
        }
        None => Box::new(std::io::stdin().lock()),
    };
    let replica = Replica::open(&args.db, ReplicaConfig::default())
        .map_err(|e| open_failure(&args.db, &e))?;
    let collection = target(&replica, &args)?;
    let mut import = Import {
        txn: replica.transaction(),
        replica,
        collection: args.collection.clone(),
        automerge: collection.config().policy == MergePolicy::Automerge,
        batch: Vec::new(),
        batch_deletes: 0,
        written: 0,
        deletes: 0,
        through: 0,
    };
    let outcome = import.run(&mut input);
    let into = format!("{:?} in {}", args.collection, args.db.display());
    match outcome {
        Ok(()) => {
            println!(
                "imported {} records into {into} ({} of them deletes)",
                import.written, import.deletes
            );
            Ok(0)
        }
        Err(e) => Err(Failure::failed(format!(
            "{e}\n{} records were written into {into} (lines 1 to {}); nothing from line {} on was",
            import.written,
            import.through,
            import.through + 1
        ))),
    }
}

/// The collection to import into: defined with the asked policy if
/// missing, checked against it if not.
fn target(replica: &Replica, args: &ImportArgs) -> Result<Collection, Failure> {
    let asked = args.policy.map(PolicyArg::policy);
    if let Ok(collection) = replica.collection(&args.collection) {
        let policy = collection.config().policy;
        return match asked {
            Some(asked) if asked != policy => Err(Failure::usage(format!(
                "collection {:?} in {} has policy {policy:?}, not {asked:?}",
                args.collection,
                args.db.display()
            ))),
            _ => Ok(collection),
        };
    }
    let config = CollectionConfig::default().with_policy(asked.unwrap_or(MergePolicy::Lww));
    replica
        .define_collection(&args.collection, config)
        .map_err(|e| Failure::failed(format!("{}: {e}", args.db.display())))
}

/// An import in progress.
struct Import {
    replica: Replica,
    collection: String,
    automerge: bool,
    /// The transaction being filled.
    txn: Transaction,
    /// Its lines: number and text, to find the one at fault if the
    /// transaction is refused.
    batch: Vec<(u64, String)>,
    /// Of the batch's lines, deletes.
    batch_deletes: u64,
    /// Records written so far.
    written: u64,
    /// Of them, deletes.
    deletes: u64,
    /// The last line of the last committed transaction.
    through: u64,
}

impl Import {
    fn run(&mut self, input: &mut dyn BufRead) -> Result<(), ImportError> {
        let mut number = 0u64;
        loop {
            let mut text = String::new();
            let read = input
                .read_line(&mut text)
                .map_err(|source| ImportError::Read {
                    line: number + 1,
                    source,
                })?;
            if read == 0 {
                break;
            }
            number += 1;
            if text.trim().is_empty() {
                continue;
            }
            let line = json::parse_line(text.trim_end_matches(['\n', '\r'])).map_err(|error| {
                ImportError::Line {
                    line: number,
                    error,
                }
            })?;
            self.batch_deletes += u64::from(line.value.is_none());
            queue(
                &mut self.txn,
                &self.collection,
                self.automerge,
                number,
                line,
            )?;
            self.batch.push((number, text));
            if self.batch.len() == BATCH {
                self.commit(number)?;
            }
        }
        self.commit(number)
    }

    /// Commits the transaction, whose last line is `last`.
    fn commit(&mut self, last: u64) -> Result<(), ImportError> {
        let txn = std::mem::replace(&mut self.txn, self.replica.transaction());
        let batch = std::mem::take(&mut self.batch);
        if txn.is_empty() {
            self.through = last;
            return Ok(());
        }
        if let Err(source) = txn.check() {
            return Err(self.at_fault(&batch).unwrap_or(ImportError::Refused {
                line: batch.first().map_or(last, |(n, _)| *n),
                source: Box::new(source),
            }));
        }
        let first = batch.first().map_or(last, |(n, _)| *n);
        txn.commit().map_err(|source| ImportError::Commit {
            first,
            last,
            source: Box::new(source),
        })?;
        self.written += batch.len() as u64;
        self.deletes += std::mem::take(&mut self.batch_deletes);
        self.through = last;
        Ok(())
    }

    /// The first line of a refused transaction that is refused alone.
    fn at_fault(&self, batch: &[(u64, String)]) -> Option<ImportError> {
        batch.iter().find_map(|(number, text)| {
            let line = json::parse_line(text.trim_end()).ok()?;
            let mut one = self.replica.transaction();
            if let Err(e) = queue(&mut one, &self.collection, self.automerge, *number, line) {
                return Some(e);
            }
            one.check().err().map(|source| ImportError::Refused {
                line: *number,
                source: Box::new(source),
            })
        })
    }
}

/// Queues a line's write: a put, a delete, or an automerge collection's
/// changes.
fn queue(
    txn: &mut Transaction,
    collection: &str,
    automerge: bool,
    number: u64,
    line: Line,
) -> Result<(), ImportError> {
    match (line.value, automerge) {
        (None, _) => {
            txn.delete(collection, line.key);
        }
        (Some(Value::Bytes(changes)), true) => {
            txn.automerge(collection, line.key, changes);
        }
        (Some(other), true) => {
            return Err(ImportError::NotAutomergeChanges {
                line: number,
                kind: other.kind(),
            });
        }
        (Some(value), false) => {
            txn.put(collection, line.key, value);
        }
    }
    Ok(())
}
