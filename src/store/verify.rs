//! Verification (`Replica::verify`): every record recomputed from the
//! changes it keeps, and the feed checked against the records, in one read
//! snapshot. Nothing is written.
//!
//! What is stored wrongly is a [`Difference`] in the report, never an
//! error: the walk goes on past bytes that do not decode, so that one
//! damaged row does not hide the rest. Only a failure to read the file at
//! all is an error.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use redb::{ReadableTable, TableHandle};

use super::Store;
use super::keys;
use super::rows::{self, Resolve};
use super::tables::{self, FEED, FeedRow, Kept, LOG, LogBody, RECORDS, RecordRow, StoredVersion};
use crate::clock::Stamp;
use crate::codec::DecodeError;
use crate::error::{Inconsistency, StorageError};
use crate::merge::{RecordState, Rule, merge_all};
use crate::model::{Change, Key, Version};
use crate::value::Value;

/// What [`crate::Replica::verify`] found.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Records checked (rows of `records-3`).
    pub records: u64,
    /// Entries of the change log (`log-3`) read.
    pub log_entries: u64,
    /// Live feed entries (one per record when all is well).
    pub feed_entries: u64,
    /// Feed markers: entries whose record moved on, kept for their group.
    pub feed_markers: u64,
    /// The last lsn the replica gave.
    pub last_lsn: u64,
    /// The differences found, in the order met (records in key order,
    /// then the log, then the feed), at most [`VerifyReport::LISTED`].
    pub differences: Vec<Difference>,
    /// How many differences were found in all (beyond those listed too).
    pub total: u64,
}

impl VerifyReport {
    /// The most differences a report lists; [`VerifyReport::total`] counts
    /// them all.
    pub const LISTED: usize = 1000;

    /// Whether nothing differs.
    pub fn is_clean(&self) -> bool {
        self.total == 0
    }

    fn push(&mut self, difference: Difference) {
        self.total += 1;
        if self.differences.len() < Self::LISTED {
            self.differences.push(difference);
        }
    }
}

/// One thing stored that is not what it should be: where, and what.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Difference {
    /// The collection, when the difference belongs to a record (or a log
    /// entry) whose key parses.
    pub collection: Option<String>,
    /// The record's key, likewise.
    pub key: Option<Key>,
    /// The feed lsn, when the difference is about a feed entry.
    pub lsn: Option<u64>,
    /// What differs.
    pub kind: DifferenceKind,
}

/// What differs ([`Difference::kind`]). "Stored" is what the record's row
/// says; "recomputed" what merging its kept changes again gives.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum DifferenceKind {
    /// Stored bytes do not decode.
    Undecodable {
        /// The table holding them.
        table: &'static str,
        /// What is wrong with them.
        error: DecodeError,
    },
    /// A key of `records-3` or `log-3` does not parse.
    MalformedKey {
        /// The table.
        table: &'static str,
        /// The key's bytes.
        key: Vec<u8>,
    },
    /// A record of a collection that is not defined (no `collections-3`
    /// entry): it cannot be recomputed.
    UnknownCollection,
    /// An origin number with no replica id in `origins-3`.
    UnknownOrigin {
        /// The number.
        number: u32,
    },
    /// The record keeps no change that travels: nothing to recompute it
    /// from.
    NoChanges,
    /// The row holds its winning change under a policy that keeps it in the
    /// log (field-level, automerge), or the reverse.
    WinnerPlacement {
        /// Whether the row says it holds the winner.
        in_row: bool,
    },
    /// The record's version.
    Version {
        /// Stored.
        stored: Version,
        /// Recomputed.
        recomputed: Version,
    },
    /// The record's value (`None`: a tombstone).
    Value {
        /// Stored.
        stored: Option<Value>,
        /// Recomputed.
        recomputed: Option<Value>,
    },
    /// The winning version of each field (field-level records).
    Fields {
        /// Stored.
        stored: BTreeMap<String, Version>,
        /// Recomputed.
        recomputed: BTreeMap<String, Version>,
    },
    /// The newest delete (field-level and automerge records).
    Tombstone {
        /// Stored.
        stored: Option<Version>,
        /// Recomputed.
        recomputed: Option<Version>,
    },
    /// The greatest base among the record's changes.
    Seen {
        /// Stored.
        stored: Stamp,
        /// Recomputed.
        recomputed: Stamp,
    },
    /// The record's conflicts (record-level policies), by version.
    Conflicts {
        /// Listed by `Collection::conflicts`.
        stored: Vec<Version>,
        /// Recomputed: the kept losing changes nothing saw.
        recomputed: Vec<Version>,
    },
    /// The row's count of log entries is not the log's.
    LoggedCount {
        /// The row's count.
        stored: u32,
        /// The entries in the log.
        found: u32,
    },
    /// A log entry whose record has no row.
    OrphanLog {
        /// The entry's stamp.
        stamp: Stamp,
    },
    /// An lsn past the replica's last one.
    LsnAhead {
        /// The lsn.
        lsn: u64,
        /// The last lsn.
        last: u64,
    },
    /// The record's row points at an lsn with no feed entry.
    NoFeedEntry {
        /// The row's lsn.
        lsn: u64,
    },
    /// The feed entry at the record's lsn is a marker, or names another
    /// record.
    FeedEntryNotThis {
        /// The row's lsn.
        lsn: u64,
    },
    /// A live feed entry names a record that has no row.
    DanglingFeedEntry,
    /// A live feed entry names a record whose row is at another lsn: the
    /// record has two entries.
    StaleFeedEntry {
        /// The lsn the record's row names.
        row_lsn: u64,
    },
    /// Feed entries belong to a group (their lsn plus `end`) whose last
    /// entry is missing or carries no group shape.
    GroupWithoutEnd {
        /// The lsn that should end the group.
        end: u64,
    },
    /// A group's last entry counts its live entries wrong.
    GroupAlive {
        /// The count stored.
        stored: u64,
        /// The live entries found.
        found: u64,
    },
    /// A group's entry lies before the span its last entry gives.
    GroupSpan {
        /// The span stored.
        span: u64,
    },
    /// The live feed entries are not one per record.
    Counts {
        /// Records.
        records: u64,
        /// Live feed entries.
        feed_entries: u64,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut place = Vec::new();
        if let Some(c) = &self.collection {
            place.push(format!("collection {c:?}"));
        }
        if let Some(k) = &self.key {
            place.push(format!("key {k:?}"));
        }
        if let Some(lsn) = self.lsn {
            place.push(format!("lsn {lsn}"));
        }
        if place.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", place.join(", "), self.kind)
        }
    }
}

impl fmt::Display for DifferenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Undecodable { table, error } => write!(f, "{table} bytes do not decode: {error}"),
            Self::MalformedKey { table, key } => write!(f, "malformed {table} key {key:02x?}"),
            Self::UnknownCollection => f.write_str("the collection is not defined"),
            Self::UnknownOrigin { number } => write!(f, "origin number {number} is unknown"),
            Self::NoChanges => f.write_str("no kept change to recompute the record from"),
            Self::WinnerPlacement { in_row: true } => {
                f.write_str("the row holds a winner, but the policy keeps changes in the log")
            }
            Self::WinnerPlacement { in_row: false } => {
                f.write_str("the row holds no winner, but the policy keeps it there")
            }
            Self::Version { stored, recomputed } => write!(
                f,
                "version: stored {}, recomputed {}",
                version(stored),
                version(recomputed)
            ),
            Self::Value { stored, recomputed } => {
                write!(f, "value: stored {stored:?}, recomputed {recomputed:?}")
            }
            Self::Fields { stored, recomputed } => write!(
                f,
                "field winners: stored {}, recomputed {}",
                fields(stored),
                fields(recomputed)
            ),
            Self::Tombstone { stored, recomputed } => write!(
                f,
                "newest delete: stored {}, recomputed {}",
                maybe(stored),
                maybe(recomputed)
            ),
            Self::Seen { stored, recomputed } => {
                write!(f, "seen: stored {stored}, recomputed {recomputed}")
            }
            Self::Conflicts { stored, recomputed } => write!(
                f,
                "conflicts: stored [{}], recomputed [{}]",
                list(stored),
                list(recomputed)
            ),
            Self::LoggedCount { stored, found } => write!(
                f,
                "the row counts {stored} log entries, the log holds {found}"
            ),
            Self::OrphanLog { stamp } => {
                write!(f, "log entry stamped {stamp} of a record that has no row")
            }
            Self::LsnAhead { lsn, last } => write!(f, "lsn {lsn} is past the last lsn {last}"),
            Self::NoFeedEntry { lsn } => write!(f, "the row's lsn {lsn} has no feed entry"),
            Self::FeedEntryNotThis { lsn } => write!(
                f,
                "the feed entry at the row's lsn {lsn} is a marker or names another record"
            ),
            Self::DanglingFeedEntry => f.write_str("feed entry of a record that has no row"),
            Self::StaleFeedEntry { row_lsn } => {
                write!(f, "feed entry of a record whose row is at lsn {row_lsn}")
            }
            Self::GroupWithoutEnd { end } => {
                write!(f, "feed group ending at {end} has no last entry")
            }
            Self::GroupAlive { stored, found } => {
                write!(f, "feed group counts {stored} live entries, {found} found")
            }
            Self::GroupSpan { span } => write!(f, "feed entry outside its group's span {span}"),
            Self::Counts {
                records,
                feed_entries,
            } => write!(f, "{records} records but {feed_entries} live feed entries"),
        }
    }
}

/// A version as `stamp/origin#seq`.
fn version(v: &Version) -> String {
    format!("{}/{}#{}", v.stamp, v.id.origin, v.id.seq)
}

fn maybe(v: &Option<Version>) -> String {
    v.as_ref().map_or_else(|| "none".to_string(), version)
}

fn list(vs: &[Version]) -> String {
    vs.iter().map(version).collect::<Vec<_>>().join(", ")
}

fn fields(map: &BTreeMap<String, Version>) -> String {
    let inner: Vec<String> = map
        .iter()
        .map(|(f, v)| format!("{f:?}: {}", version(v)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

impl Store {
    /// Verifies the store (see `Replica::verify`), with each defined
    /// collection's rule.
    pub(crate) fn verify(
        &self,
        rules: &HashMap<String, Rule>,
    ) -> Result<VerifyReport, StorageError> {
        let read = self.begin_read()?;
        // Read after the snapshot: every lsn in it is at most this.
        let last = self.lock().lsn;
        let origins = self.read_origins(&read)?;
        let records = read.open_table(RECORDS)?;
        let log = read.open_table(LOG)?;
        let feed = read.open_table(FEED)?;
        let mut report = VerifyReport {
            last_lsn: last,
            ..VerifyReport::default()
        };
        let check = Check {
            rules,
            origins: &origins,
            log: &log,
            feed: &feed,
            last,
        };
        for entry in records.iter()? {
            let (k, v) = entry?;
            report.records += 1;
            check.record(k.value(), v.value(), &mut report)?;
        }
        check.orphans(&records, &mut report)?;
        check.feed(&records, &mut report)?;
        if report.records != report.feed_entries {
            report.push(Difference {
                collection: None,
                key: None,
                lsn: None,
                kind: DifferenceKind::Counts {
                    records: report.records,
                    feed_entries: report.feed_entries,
                },
            });
        }
        Ok(report)
    }
}

/// What a check reads, in one snapshot.
struct Check<'a, R, T, F> {
    rules: &'a HashMap<String, Rule>,
    origins: &'a R,
    log: &'a T,
    feed: &'a F,
    last: u64,
}

type Bytes = &'static [u8];

impl<R, T, F> Check<'_, R, T, F>
where
    R: Resolve,
    T: ReadableTable<Bytes, Bytes>,
    F: ReadableTable<u64, Bytes>,
{
    /// Checks one record: recomputed from its kept changes, its log count,
    /// its feed entry.
    fn record(
        &self,
        record: &[u8],
        bytes: &[u8],
        report: &mut VerifyReport,
    ) -> Result<(), StorageError> {
        let Ok((collection, key)) = keys::split_record(RECORDS.name(), record) else {
            report.push(Difference {
                collection: None,
                key: None,
                lsn: None,
                kind: DifferenceKind::MalformedKey {
                    table: RECORDS.name(),
                    key: record.to_vec(),
                },
            });
            return Ok(());
        };
        let here = |kind| Difference {
            collection: Some(collection.clone()),
            key: Some(key.clone()),
            lsn: None,
            kind,
        };
        let row: RecordRow = match tables::decode(RECORDS.name(), bytes) {
            Ok(row) => row,
            Err(StorageError::Corrupted { table, source }) => {
                report.push(here(DifferenceKind::Undecodable {
                    table,
                    error: source,
                }));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.row_feed_entry(record, &row, report, &here)?;
        // The log: every entry counts; those kept for merge travel and
        // recompute the record.
        let prefix = keys::log_prefix(&collection, key.as_bytes());
        let end = keys::prefix_end(&prefix);
        let mut found = 0u32;
        let mut logged: Vec<(StoredVersion, LogBody)> = Vec::new();
        let mut readable = true;
        for entry in self.log.range(prefix.as_slice()..end.as_slice())? {
            let (k, v) = entry?;
            found = found.saturating_add(1);
            let Ok((stamp, origin)) = keys::split_log_tail(LOG.name(), k.value()) else {
                report.push(here(DifferenceKind::MalformedKey {
                    table: LOG.name(),
                    key: k.value().to_vec(),
                }));
                readable = false;
                continue;
            };
            match tables::decode::<LogBody>(LOG.name(), v.value()) {
                Ok(body) if body.kept == Kept::Merge => {
                    let version = StoredVersion {
                        stamp: Stamp::from_u64(stamp),
                        origin,
                        seq: body.seq,
                    };
                    logged.push((version, body));
                }
                Ok(_) => {}
                Err(StorageError::Corrupted { table, source }) => {
                    report.push(here(DifferenceKind::Undecodable {
                        table,
                        error: source,
                    }));
                    readable = false;
                }
                Err(e) => return Err(e),
            }
        }
        if found != row.logged {
            report.push(here(DifferenceKind::LoggedCount {
                stored: row.logged,
                found,
            }));
        }
        let Some(rule) = self.rules.get(&collection) else {
            report.push(here(DifferenceKind::UnknownCollection));
            return Ok(());
        };
        if row.winner != rule.is_record_level() {
            report.push(here(DifferenceKind::WinnerPlacement { in_row: row.winner }));
        }
        if !readable {
            return Ok(());
        }
        let resolved = self.recompute(&collection, &key, &row, logged, rule);
        match resolved {
            Ok(found) => {
                for kind in found {
                    report.push(here(kind));
                }
            }
            Err(number) => report.push(here(DifferenceKind::UnknownOrigin { number })),
        }
        Ok(())
    }

    /// The differences between the row and the merge of its kept changes;
    /// `Err` with an origin number nobody gave.
    fn recompute(
        &self,
        collection: &str,
        key: &Key,
        row: &RecordRow,
        logged: Vec<(StoredVersion, LogBody)>,
        rule: &Rule,
    ) -> Result<Vec<DifferenceKind>, u32> {
        let version = |v: StoredVersion| -> Result<Version, u32> {
            self.origins.version(v).map_err(|_| v.origin)
        };
        let change = |v: StoredVersion, base: Stamp, op| -> Result<Change, u32> {
            Ok(Change {
                id: version(v)?.id,
                collection: collection.to_string(),
                key: key.clone(),
                stamp: v.stamp,
                base,
                op,
            })
        };
        let mut changes = Vec::with_capacity(1 + logged.len());
        if row.winner {
            changes.push(change(row.version, row.base, rows::winner_op(row))?);
        }
        // What `Collection::conflicts` lists: the log's merge entries above
        // the row's `seen`, on record-level rows.
        let mut stored_conflicts = Vec::new();
        for (v, body) in logged {
            if row.winner && v.stamp > row.seen {
                stored_conflicts.push(version(v)?);
            }
            changes.push(change(v, body.base, body.op)?);
        }
        let stored = rows::state_of(row, self.origins).map_err(|e| match e {
            StorageError::Invalid {
                reason: Inconsistency::UnknownOrigin { index },
                ..
            } => index,
            _ => u32::MAX,
        })?;
        let Some(recomputed) = merge_all(rule, &changes) else {
            return Ok(vec![DifferenceKind::NoChanges]);
        };
        let mut out = Vec::new();
        let RecordState {
            version: v,
            value,
            fields,
            tombstone,
            seen,
        } = recomputed;
        if stored.version != v {
            out.push(DifferenceKind::Version {
                stored: stored.version,
                recomputed: v,
            });
        }
        if !same_value(stored.value.as_ref(), value.as_ref()) {
            out.push(DifferenceKind::Value {
                stored: stored.value,
                recomputed: value,
            });
        }
        if stored.fields != fields {
            out.push(DifferenceKind::Fields {
                stored: stored.fields,
                recomputed: fields,
            });
        }
        if stored.tombstone != tombstone {
            out.push(DifferenceKind::Tombstone {
                stored: stored.tombstone,
                recomputed: tombstone,
            });
        }
        if stored.seen != seen {
            out.push(DifferenceKind::Seen {
                stored: stored.seen,
                recomputed: seen,
            });
        }
        if rule.is_record_level() {
            let mut recomputed: Vec<Version> = changes
                .iter()
                .map(Change::version)
                .filter(|c| *c != v && c.stamp > seen)
                .collect();
            recomputed.sort();
            recomputed.dedup();
            stored_conflicts.sort();
            if stored_conflicts != recomputed {
                out.push(DifferenceKind::Conflicts {
                    stored: stored_conflicts,
                    recomputed,
                });
            }
        }
        Ok(out)
    }

    /// The record's feed entry: at its row's lsn, live, naming it.
    fn row_feed_entry(
        &self,
        record: &[u8],
        row: &RecordRow,
        report: &mut VerifyReport,
        here: &dyn Fn(DifferenceKind) -> Difference,
    ) -> Result<(), StorageError> {
        let lsn = row.lsn;
        if lsn > self.last {
            report.push(here(DifferenceKind::LsnAhead {
                lsn,
                last: self.last,
            }));
        }
        match self.feed.get(lsn)? {
            None => report.push(here(DifferenceKind::NoFeedEntry { lsn })),
            Some(bytes) => {
                // An entry that does not decode is the feed walk's to report.
                if let Ok(entry) = tables::decode::<FeedRow>(FEED.name(), bytes.value())
                    && (entry.is_marker() || entry.record.as_bytes() != record)
                {
                    report.push(here(DifferenceKind::FeedEntryNotThis { lsn }));
                }
            }
        }
        Ok(())
    }

    /// Log entries whose record has no row.
    fn orphans(
        &self,
        records: &impl ReadableTable<Bytes, Bytes>,
        report: &mut VerifyReport,
    ) -> Result<(), StorageError> {
        // A record's entries are contiguous: look its row up once.
        let mut last: Option<(Vec<u8>, bool)> = None;
        for entry in self.log.iter()? {
            let (k, _) = entry?;
            report.log_entries += 1;
            let Ok((collection, key, stamp, _)) = keys::parse_log(LOG.name(), k.value()) else {
                report.push(Difference {
                    collection: None,
                    key: None,
                    lsn: None,
                    kind: DifferenceKind::MalformedKey {
                        table: LOG.name(),
                        key: k.value().to_vec(),
                    },
                });
                continue;
            };
            let record = keys::record(&collection, key.as_bytes());
            let held = match &last {
                Some((r, held)) if *r == record => *held,
                _ => {
                    let held = records.get(record.as_slice())?.is_some();
                    last = Some((record, held));
                    held
                }
            };
            if !held {
                report.push(Difference {
                    collection: Some(collection),
                    key: Some(key),
                    lsn: None,
                    kind: DifferenceKind::OrphanLog {
                        stamp: Stamp::from_u64(stamp),
                    },
                });
            }
        }
        Ok(())
    }

    /// The feed walk: each live entry's record points back at it; groups
    /// end with an entry that carries their shape and counts them right.
    fn feed(
        &self,
        records: &impl ReadableTable<Bytes, Bytes>,
        report: &mut VerifyReport,
    ) -> Result<(), StorageError> {
        // The group being walked: its end, first lsn, live entries, and
        // whether its last entry was met.
        let mut group: Option<Group> = None;
        for entry in self.feed.iter()? {
            let (k, v) = entry?;
            let lsn = k.value();
            let at = |kind, record: Option<&Key>| {
                let parsed =
                    record.and_then(|r| keys::split_record(FEED.name(), r.as_bytes()).ok());
                let (collection, key) = match parsed {
                    Some((c, k)) => (Some(c), Some(k)),
                    None => (None, None),
                };
                Difference {
                    collection,
                    key,
                    lsn: Some(lsn),
                    kind,
                }
            };
            let row: FeedRow = match tables::decode(FEED.name(), v.value()) {
                Ok(row) => row,
                Err(StorageError::Corrupted { table, source }) => {
                    report.push(at(
                        DifferenceKind::Undecodable {
                            table,
                            error: source,
                        },
                        None,
                    ));
                    continue;
                }
                Err(e) => return Err(e),
            };
            if lsn > self.last {
                report.push(at(
                    DifferenceKind::LsnAhead {
                        lsn,
                        last: self.last,
                    },
                    Some(&row.record),
                ));
            }
            let end = lsn.saturating_add(row.end);
            if group.as_ref().is_none_or(|g| g.end != end) {
                if let Some(g) = group.take() {
                    g.finish(report);
                }
                group = Some(Group {
                    end,
                    first: lsn,
                    alive: 0,
                    closed: false,
                });
            }
            let Some(g) = group.as_mut() else {
                continue;
            };
            if row.is_marker() {
                report.feed_markers += 1;
            } else {
                report.feed_entries += 1;
                g.alive += 1;
                match records.get(row.record.as_bytes())? {
                    None => report.push(at(DifferenceKind::DanglingFeedEntry, Some(&row.record))),
                    Some(bytes) => {
                        // A row that does not decode was reported with its record.
                        if let Ok(r) = tables::decode::<RecordRow>(RECORDS.name(), bytes.value())
                            && r.lsn != lsn
                        {
                            report.push(at(
                                DifferenceKind::StaleFeedEntry { row_lsn: r.lsn },
                                Some(&row.record),
                            ));
                        }
                    }
                }
            }
            if row.end == 0 {
                let Some(info) = row.group else {
                    // Reported when the group finishes, as having no end.
                    continue;
                };
                g.closed = true;
                if info.alive != g.alive {
                    report.push(at(
                        DifferenceKind::GroupAlive {
                            stored: info.alive,
                            found: g.alive,
                        },
                        None,
                    ));
                }
                if g.first < lsn.saturating_add(1).saturating_sub(info.span) {
                    report.push(at(DifferenceKind::GroupSpan { span: info.span }, None));
                }
            }
        }
        if let Some(g) = group {
            g.finish(report);
        }
        Ok(())
    }
}

/// A feed group met by the walk.
struct Group {
    end: u64,
    first: u64,
    alive: u64,
    closed: bool,
}

impl Group {
    fn finish(self, report: &mut VerifyReport) {
        if !self.closed {
            report.push(Difference {
                collection: None,
                key: None,
                lsn: Some(self.first),
                kind: DifferenceKind::GroupWithoutEnd { end: self.end },
            });
        }
    }
}

/// Values compared as stored: a float by its bits, so that `-0.0` and
/// `0.0` differ and a NaN equals itself.
fn same_value(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => crate::codec::encode(a) == crate::codec::encode(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_say_where_and_what() {
        let d = Difference {
            collection: Some("todos".into()),
            key: Some(Key::from("milk")),
            lsn: Some(7),
            kind: DifferenceKind::NoFeedEntry { lsn: 7 },
        };
        assert_eq!(
            d.to_string(),
            "collection \"todos\", key \"milk\", lsn 7: the row's lsn 7 has no feed entry"
        );
        let mut report = VerifyReport::default();
        for _ in 0..VerifyReport::LISTED + 5 {
            report.push(d.clone());
        }
        assert_eq!(report.total, VerifyReport::LISTED as u64 + 5);
        assert_eq!(report.differences.len(), VerifyReport::LISTED);
        assert!(!report.is_clean());
    }
}
