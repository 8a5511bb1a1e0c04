//! `syncline inspect`: what a replica file holds.
//!
//! The file is opened read-only (`Replica::open_read_only`): nothing is
//! written, not even a format upgrade, and a file another process holds
//! for writing (a running hub) is refused with a message that says so.
//! Text for people, or with `--json` one JSON object:
//!
//! ```json
//! {"file": "...", "file_bytes": 0, "replica": "<hex id>", "format": 3,
//!  "last_lsn": 0, "clock": {"stamp": "<ms>.<counter>", "ms": 0},
//!  "collected": {"below": "<ms>.<counter>", "lsn": 0},
//!  "feed": {"entries": 0, "markers": 0},
//!  "collections": [{"name": "", "policy": "lww", "sync": true,
//!    "history": "merge", "live": 0, "tombstones": 0, "conflicts": 0,
//!    "changes": 0, "history_entries": 0, "head": 0}],
//!  "peers": [{"id": "", "pulled": 0, "pushed": 0, "last_seen_ms": 0}],
//!  "served": [{"id": "", "cursor": 0, "at_ms": 0}],
//!  "refused_groups": 0,
//!  "tables": [{"name": "", "entries": 0, "stored_bytes": 0,
//!    "metadata_bytes": 0, "fragmented_bytes": 0}]}
//! ```

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value as Json, json};
use syncline::{
    FORMAT_VERSION, History, MergePolicy, OpenError, Replica, ReplicaConfig, StorageError,
};

use crate::Failure;

/// Prints a description of the replica at `db`.
pub(crate) fn run(db: &Path, json: bool) -> Result<u8, Failure> {
    let replica = open_read_only(db)?;
    let report =
        describe(db, &replica).map_err(|e| Failure::failed(format!("{}: {e}", db.display())))?;
    if json {
        println!("{report}");
    } else {
        print!("{}", text(&report));
    }
    Ok(0)
}

/// Opens a replica file read-only, with a message that says what to do
/// when it cannot be.
pub(crate) fn open_read_only(db: &Path) -> Result<Replica, Failure> {
    if !db.is_file() {
        return Err(Failure::failed(format!(
            "{}: no such replica file",
            db.display()
        )));
    }
    Replica::open_read_only(db, ReplicaConfig::default()).map_err(|e| open_failure(db, &e))
}

/// The failure for a file that does not open.
pub(crate) fn open_failure(db: &Path, e: &OpenError) -> Failure {
    let name = db.display();
    match e {
        OpenError::Storage(StorageError::Database(redb::Error::DatabaseAlreadyOpen)) => {
            Failure::failed(format!(
                "{name} is open in another process (a running hub?)"
            ))
        }
        OpenError::Storage(StorageError::Database(redb::Error::RepairAborted)) => {
            Failure::failed(format!(
                "{name} was not closed cleanly: it needs a repair, which a read-only open \
                 does not make (opening it for writing once, as `syncline sync` or `serve` \
                 does, repairs it)"
            ))
        }
        OpenError::NeedsUpgrade { found } => Failure::failed(format!(
            "{name} is in format {found}: opening it for writing once (`syncline sync` or \
             `serve`) upgrades it to format {FORMAT_VERSION}"
        )),
        _ => Failure::failed(format!("{name}: {e}")),
    }
}

/// Everything `inspect` shows, as JSON.
fn describe(db: &Path, replica: &Replica) -> Result<Json, syncline::ReadError> {
    let stats = replica.storage_stats()?;
    let clock = replica.clock();
    let (collected, collected_lsn) = stats.collected;
    let collections: Vec<Json> = replica
        .collections()
        .into_iter()
        .map(|(name, config)| {
            let c = stats.collections.get(&name).copied().unwrap_or_default();
            json!({
                "name": name,
                "policy": policy(&config.policy),
                "sync": config.sync,
                "history": history(config.history),
                "live": c.live,
                "tombstones": c.tombstones,
                "conflicts": c.conflicts,
                "changes": c.changes,
                "history_entries": c.history,
                "head": c.head,
            })
        })
        .collect();
    let peers: Vec<Json> = stats
        .peers
        .iter()
        .map(|(id, p)| {
            json!({
                "id": id.to_string(),
                "pulled": p.pulled,
                "pushed": p.pushed,
                "last_seen_ms": p.last_seen_ms,
            })
        })
        .collect();
    let served: Vec<Json> = stats
        .served
        .iter()
        .map(|(id, s)| json!({"id": id.to_string(), "cursor": s.cursor, "at_ms": s.at_ms}))
        .collect();
    let tables: Vec<Json> = stats
        .tables
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "entries": t.entries,
                "stored_bytes": t.stored_bytes,
                "metadata_bytes": t.metadata_bytes,
                "fragmented_bytes": t.fragmented_bytes,
            })
        })
        .collect();
    Ok(json!({
        "file": db.display().to_string(),
        "file_bytes": std::fs::metadata(db).map(|m| m.len()).unwrap_or(0),
        "replica": replica.id().to_string(),
        "format": FORMAT_VERSION,
        "last_lsn": replica.last_lsn(),
        "clock": {"stamp": clock.to_string(), "ms": clock.millis()},
        "collected": {"below": collected.to_string(), "lsn": collected_lsn},
        "feed": {"entries": stats.feed_entries, "markers": stats.feed_markers},
        "collections": collections,
        "peers": peers,
        "served": served,
        "refused_groups": replica.rejected()?.len(),
        "tables": tables,
    }))
}

/// A policy's name, as `import --policy` spells the ones it takes.
fn policy(policy: &MergePolicy) -> String {
    match policy {
        MergePolicy::Lww => "lww".into(),
        MergePolicy::FieldLww => "field-lww".into(),
        MergePolicy::Ranked(_) => "ranked".into(),
        MergePolicy::Custom(name) => format!("custom:{name}"),
        MergePolicy::Automerge => "automerge".into(),
        other => format!("{other:?}"),
    }
}

fn history(history: History) -> String {
    match history {
        History::Merge => "merge".into(),
        History::Last(n) => format!("last {n}"),
        History::For(d) => format!("for {}s", d.as_secs()),
        other => format!("{other:?}"),
    }
}

/// The text form of [`describe`]'s report.
fn text(r: &Json) -> String {
    let s = |v: &Json| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    let n = |v: &Json| v.as_u64().unwrap_or(0);
    let mut out = String::new();
    let clock_ms = n(&r["clock"]["ms"]);
    let fields = [
        ("replica", s(&r["replica"])),
        (
            "file",
            format!("{} ({} bytes)", s(&r["file"]), group(n(&r["file_bytes"]))),
        ),
        ("format", s(&r["format"])),
        ("last lsn", s(&r["last_lsn"])),
        (
            "clock",
            if clock_ms == 0 {
                "0 (no change yet)".into()
            } else {
                format!("{} ({})", s(&r["clock"]["stamp"]), utc(clock_ms))
            },
        ),
        (
            "feed",
            format!(
                "{} entries, {} markers",
                n(&r["feed"]["entries"]),
                n(&r["feed"]["markers"])
            ),
        ),
        (
            "collected",
            if n(&r["collected"]["lsn"]) == 0 && s(&r["collected"]["below"]) == "0.0" {
                "never".into()
            } else {
                format!(
                    "tombstones below {} (lsns up to {})",
                    s(&r["collected"]["below"]),
                    n(&r["collected"]["lsn"])
                )
            },
        ),
        (
            "refused",
            format!("{} groups a remote refused", n(&r["refused_groups"])),
        ),
    ];
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in fields {
        let _ = writeln!(out, "{k:<width$}  {v}");
    }
    let list = |key: &str| r[key].as_array().cloned().unwrap_or_default();
    let collections = list("collections");
    section(
        &mut out,
        "collections",
        &[
            "name",
            "policy",
            "sync",
            "history",
            "live",
            "tombstones",
            "conflicts",
            "head",
        ],
        &[false, false, false, false, true, true, true, true],
        collections
            .iter()
            .map(|c| {
                vec![
                    s(&c["name"]),
                    s(&c["policy"]),
                    if c["sync"] == Json::Bool(true) {
                        "yes".into()
                    } else {
                        "local".into()
                    },
                    s(&c["history"]),
                    group(n(&c["live"])),
                    group(n(&c["tombstones"])),
                    group(n(&c["conflicts"])),
                    s(&c["head"]),
                ]
            })
            .collect(),
    );
    section(
        &mut out,
        "peers",
        &["id", "pulled", "pushed", "last contact"],
        &[false, true, true, false],
        list("peers")
            .iter()
            .map(|p| {
                vec![
                    s(&p["id"]),
                    s(&p["pulled"]),
                    s(&p["pushed"]),
                    when(n(&p["last_seen_ms"])),
                ]
            })
            .collect(),
    );
    section(
        &mut out,
        "callers served",
        &["id", "cursor", "last pull"],
        &[false, true, false],
        list("served")
            .iter()
            .map(|p| vec![s(&p["id"]), s(&p["cursor"]), when(n(&p["at_ms"]))])
            .collect(),
    );
    section(
        &mut out,
        "tables",
        &["name", "entries", "stored", "metadata", "fragmented"],
        &[false, true, true, true, true],
        list("tables")
            .iter()
            .map(|t| {
                vec![
                    s(&t["name"]),
                    group(n(&t["entries"])),
                    group(n(&t["stored_bytes"])),
                    group(n(&t["metadata_bytes"])),
                    group(n(&t["fragmented_bytes"])),
                ]
            })
            .collect(),
    );
    out
}

/// Appends a titled table with aligned columns (`numeric` ones to the
/// right), or "none".
fn section(out: &mut String, title: &str, head: &[&str], numeric: &[bool], rows: Vec<Vec<String>>) {
    let _ = writeln!(out, "\n{title}");
    if rows.is_empty() {
        let _ = writeln!(out, "  none");
        return;
    }
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .zip(numeric)
            .map(|((c, w), num)| {
                if *num {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        format!("  {}", parts.join("  ").trim_end())
    };
    let _ = writeln!(
        out,
        "{}",
        line(head.iter().map(|h| h.to_string()).collect())
    );
    for row in rows {
        let _ = writeln!(out, "{}", line(row));
    }
}

/// A count with thousands separated: `12,345`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A time in ms since the epoch, or "never" for 0.
fn when(ms: u64) -> String {
    if ms == 0 { "never".into() } else { utc(ms) }
}

/// Milliseconds since the epoch as `YYYY-MM-DD hh:mm:ss.mmm UTC`.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_counts_read_well() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20.123 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00.000 UTC");
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(when(0), "never");
    }

    #[test]
    fn sections_align_their_columns() {
        let mut out = String::new();
        section(
            &mut out,
            "t",
            &["name", "n"],
            &[false, true],
            vec![
                vec!["a".into(), "1".into()],
                vec!["long name".into(), "1,000".into()],
            ],
        );
        assert_eq!(
            out,
            "\nt\n  name           n\n  a              1\n  long name  1,000\n"
        );
    }
}
