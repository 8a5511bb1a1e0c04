//! `syncline verify`: every record recomputed from its kept changes, and
//! the feed checked against the records (`Replica::verify`), on a file
//! opened read-only. Prints each difference (at most
//! `VerifyReport::LISTED`, with the total) and a summary line; exit code 0
//! when clean, 4 when differences were found, 1 when the file cannot be
//! read.

use std::path::Path;

use syncline::VerifyReport;

use crate::Failure;
use crate::inspect::open_read_only;

/// The exit code for a file with differences.
const DIFFERENCES: u8 = 4;

/// Verifies the replica at `db`.
pub(crate) fn run(db: &Path) -> Result<u8, Failure> {
    let replica = open_read_only(db)?;
    let report = replica
        .verify()
        .map_err(|e| Failure::failed(format!("{}: {e}", db.display())))?;
    print!("{}", text(db, &report));
    Ok(if report.is_clean() { 0 } else { DIFFERENCES })
}

/// The differences, one a line, then the summary.
fn text(db: &Path, report: &VerifyReport) -> String {
    let mut out = String::new();
    for d in &report.differences {
        out.push_str(&format!("{d}\n"));
    }
    let checked = format!(
        "{}: {} records, {} log entries, {} feed entries and {} markers through lsn {}",
        db.display(),
        report.records,
        report.log_entries,
        report.feed_entries,
        report.feed_markers,
        report.last_lsn
    );
    if report.is_clean() {
        out.push_str(&format!("{checked}: clean\n"));
    } else if report.total > report.differences.len() as u64 {
        out.push_str(&format!(
            "{checked}: {} differences (the first {} listed)\n",
            report.total,
            report.differences.len()
        ));
    } else {
        out.push_str(&format!("{checked}: {} differences\n", report.total));
    }
    out
}
