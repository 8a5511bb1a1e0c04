//! Fuzz targets, callable from cargo-fuzz and from ordinary tests.
//!
//! Each target takes arbitrary bytes and never panics on any input, except to
//! report a bug: every panic is a failed invariant. The targets are
//! deterministic, read at most [`MAX_STEPS`] steps from their input, and take
//! well under a few milliseconds per input in a release build.
//!
//! - [`decode_frame`]: the protocol decoder against hostile bytes.
//! - [`apply_changes`]: [`Replica::apply_remote`] against a model of
//!   last-writer-wins, refusals included.
//! - [`converge`]: three replicas under an arbitrary schedule of local
//!   writes, clock moves and partial, reordered, duplicated deliveries.
//! - [`drive_session`]: the client's sync state machine fed arbitrary
//!   answers, store results, notifications and timings.
//!
//! The repository's `fuzz/` directory is the cargo-fuzz crate that runs them
//! (see its README), and `tests/fuzz_corpus.rs` replays its corpus, the saved
//! regressions and [`seed_corpus`] through them on every `cargo test`.
//!
//! ```
//! use syncline::testing::fuzz;
//!
//! // Each target on its first seed; a panic would be a bug.
//! for (name, target) in fuzz::TARGETS {
//!     let (_label, input) = &fuzz::seed_corpus(name)[0];
//!     target(input);
//! }
//! ```

mod apply;
mod convergence;
mod frame;
mod input;
mod keep;
mod model;
mod seeds;
mod session;
mod setup;
#[cfg(test)]
mod tests;

use crate::protocol::{Notify, Request, RequestBody, Response};
#[cfg(doc)]
use crate::{ManualTime, Replica, merge_all, protocol};

use frame::{check_digest, round_trip};
pub use session::drive_session;

/// The most steps [`apply_changes`] and [`converge`] read from one input;
/// the bytes after them are ignored.
pub const MAX_STEPS: usize = 64;

/// A fuzz target: takes any bytes, panics only to report a bug.
pub type Target = fn(&[u8]);

/// Every target by name, as the cargo-fuzz crate and the corpus replay name
/// them (`fuzz/corpus/<name>/`).
pub const TARGETS: [(&str, Target); 4] = [
    ("decode_frame", decode_frame),
    ("apply_changes", apply_changes),
    ("converge", converge),
    ("drive_session", drive_session),
];

/// The physical time the replicas start at, in milliseconds since the epoch.
const T0: u64 = 1_700_000_000_000;
/// The default `max_clock_drift`, which the targets keep.
const DRIFT_MS: u64 = 60_000;
/// The synced collections.
const SYNCED: [&str; 2] = ["a", "b"];
/// A local-only collection: remote changes to it are refused.
const LOCAL: &str = "l";
/// A collection no replica defines.
const UNKNOWN: &str = "u";

/// Decodes `data` as a [`Request`], a [`Response`] and a [`Notify`] with
/// [`protocol::decode`], the bounded decoder every peer frame goes through.
///
/// Checks, for each type that `data` decodes as: the value encodes, the
/// encoding decodes again, to an equal value (compared as values, and as
/// encodings so that NaN floats compare too), and re-encoding that gives the
/// same bytes. A batch's digest is recomputed. Allocation is bounded by the
/// codec (64 MiB per frame); libFuzzer's `-rss_limit_mb` catches regressions.
pub fn decode_frame(data: &[u8]) {
    if let Some(request) = round_trip::<Request>(data)
        && let RequestBody::Push(batch) = &request.body
    {
        check_digest(batch);
    }
    if let Some(Response::Changes { batch, .. }) = round_trip::<Response>(data) {
        check_digest(&batch);
    }
    round_trip::<Notify>(data);
}

/// Applies a fuzzer-chosen sequence of remote changes to one replica and
/// checks it against a model of the documented rules.
///
/// The input is read as up to [`MAX_STEPS`] small steps (see the private
/// `ApplyStep`): new changes from 3 origins (the third is the receiver's
/// own id, coming back) to 2 synced collections, a local-only one and an
/// unknown one, 4 keys, stamps from a 4 ms range so that ties are common and
/// occasionally far in the future, bases from the same range, puts of small
/// integers and deletes; exact duplicates; forged duplicates (an id reused
/// with other content, or a record, stamp and origin reused under another
/// id); moves of the receiver's [`ManualTime`] clock; and cuts, where the
/// pending changes go to [`Replica::apply_remote`] (or `apply_remote_from`)
/// as one batch.
///
/// The model follows the documented rules of format 3 (see the private
/// `keep` module): a replica keeps of each record only what merge needs (the
/// winner, the conflicts, the change that set `seen`), a change that arrives
/// superseded is merged and dropped, and duplicates are found among the
/// changes held. One way the store departs from those rules is allowed,
/// behind a constant that names it (`keep::TIED_SEEN_SETTERS_KEPT`: a
/// hostile peer's changes stamped equal to their base may all be kept). Checks after every batch: it is refused exactly when the
/// model says, for the reason it says (the first change that fails
/// validation, then the drift bound, then a forged duplicate of a held
/// slot; a forgery of a slot whose change may have been dropped may be
/// refused or merged, and is then one of the changes merged); a refused
/// batch stores nothing and leaves the clock and `last_lsn` alone; in an
/// accepted one, the replica's events (one per change stored, at
/// consecutive lsns) are the changes the model allows to be stored, the
/// report's applied, superseded, duplicates and conflicts are what the model
/// allows, and the clock moves to the batch's greatest stamp; each record
/// holds (`Collection::history`) all merge needs and nothing it does not;
/// the records and conflicts equal a `BTreeMap` model over every change ever
/// merged (the greatest (stamp, origin, seq) wins, a delete leaves a
/// tombstone, `seen` is the greatest `base`, and the conflicts are the
/// losers stamped after it); the commit's feed group holds exactly the
/// records it moved, each once with all it holds and their sources. At the
/// end: a local write gets a fresh sequence number, a stamp above
/// everything seen and the newest stamp of its record as its base; the
/// whole feed holds each record once, at the lsn of its last move, with
/// group ends on each commit's last change, and reads the same a change at
/// a time; a fresh replica that applies the whole feed ends with the same
/// records and conflicts; the records equal [`merge_all`].
pub fn apply_changes(data: &[u8]) {
    apply::run(data);
}

/// Runs three in-memory replicas (ids 1, 2 and 3) through a fuzzer-chosen
/// schedule and checks that they converge.
///
/// The first 3 bytes set each replica's clock skew (±64 s around a common
/// start); then up to [`MAX_STEPS`] steps (see the private `ConvergeStep`):
/// local puts and deletes and two-record transactions on two synced
/// collections and a local-only one; clock moves forward or back (a clock
/// per replica, on [`ManualTime`]); and deliveries, where one replica
/// applies a slice of another's feed through `apply_remote_from`: from its
/// cursor, re-delivered from earlier, or skipping ahead, so that changes
/// arrive partially, out of order and more than once (a replica's own
/// changes come back to it too). Local-only changes are left out, as the
/// server does.
///
/// Checks on the way: every stamp a replica issues is greater than its
/// clock before the write (so greater than everything it has seen) and than
/// its previous stamp, and not below its physical time; a local change's
/// `base` is the newest stamp of its record the replica merged; every change
/// of a write is stored, at consecutive lsns; the clock never goes back; a
/// feed slice sends each record once, with everything it holds, never ends
/// inside a group, stops at the limit only at a group's end, and holds no
/// local-only change from elsewhere; a delivery is refused only for a stamp
/// beyond the drift bound, and then stores nothing and leaves the clock
/// alone; otherwise what it stores, supersedes and finds held is what the
/// `apply_changes` model allows, and afterwards the receiver holds what
/// merge needs and its records equal the model over every change it merged.
/// At the end a fresh replica fed each replica's whole feed (local-only
/// changes left out) gets its records; every clock is set to the latest
/// time any of them read, and a full exchange between all pairs runs until
/// nothing changes, which takes at most 3 rounds; then all replicas hold
/// identical records and conflicts, equal to the model over every synced
/// change ever made (the greatest (stamp, origin, seq) wins, `seen` is the
/// greatest `base`, and the conflicts are the losers stamped after it; a
/// change superseded before it travelled changes nothing) and to
/// [`merge_all`]; each local-only collection holds its own replica's writes
/// alone; and each feed holds each record once, with its group ends, and
/// again rebuilds the records on a fresh replica.
pub fn converge(data: &[u8]) {
    convergence::run(data);
}

/// Meaningful starting inputs for the target `name`, each with a label:
/// real encoded protocol frames for `decode_frame`, and for the others
/// schedules that exercise each kind of step (ties, duplicates, forgeries,
/// refusals, clock moves, partial and repeated deliveries), plus a few
/// pseudo-random ones. Empty for an unknown name.
///
/// The committed corpus under `fuzz/corpus/<name>/` is these, written by
/// `cargo test --features testing --test fuzz_corpus -- --ignored`.
pub fn seed_corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    seeds::corpus(name)
}
