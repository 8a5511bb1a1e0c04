//! One-run comparison of syncline against automerge, yrs, loro and bare redb.
//!
//! `cd benches/compare && cargo run --release` runs every workload on every
//! system in this one process, prints markdown tables and writes them to
//! `RESULTS.md`. README.md beside this file explains each number.

mod alloc;
mod systems;

use std::fmt::Write as _;
use std::time::Instant;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// Sets per single-writer workload.
pub const N: u64 = 100_000;
/// Keys the overwrite workload spreads its sets over.
pub const OVERWRITE_KEYS: u64 = 1_000;
/// Writers in the many-writers workload (crdt-benchmarks B3.1).
pub const WRITERS: u64 = 1_540;
/// Conflicting writes the merge target holds before it merges.
pub const OWN_WRITES: u64 = 1_000;
/// Durable commits actually made in the commit-per-set phase; the total is
/// extrapolated from the per-set average.
pub const DURABLE_CAP: u64 = 10_000;
/// syncline's `max_batch_changes` default: the largest transaction and the
/// largest `apply_remote` batch.
pub const MAX_BATCH: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Distinct,
    Overwrite,
    ManyWriters,
}

impl Workload {
    /// The key of the `i`th set.
    pub fn key(self, i: u64) -> String {
        match self {
            Workload::Distinct => format!("k{i}"),
            Workload::Overwrite => format!("k{}", i % OVERWRITE_KEYS),
            Workload::ManyWriters => "k".to_string(),
        }
    }

    fn title(self) -> &'static str {
        match self {
            Workload::Distinct => "distinct: 100,000 sets of distinct keys (`k{i}` = i)",
            Workload::Overwrite => "overwrite: 100,000 sets spread over 1,000 keys (`k{i % 1000}` = i)",
            Workload::ManyWriters => {
                "many writers, one key: 1,540 replicas each set `k` once, all merged into one (crdt-benchmarks B3.1)"
            }
        }
    }
}

/// A measured phase: wall time and the peak heap above the phase's start.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phase {
    pub ms: f64,
    pub heap: usize,
}

/// How many times each system merges the per-set writer's changes, each
/// time into a fresh target: the median run is reported, so one noisy run
/// cannot decide a target.
pub const MERGE_RUNS: usize = 5;

/// Calls `run` [`MERGE_RUNS`] times (each sets up a fresh target, measures
/// one phase and checks the result) and returns the median phase.
pub fn median_phase(mut run: impl FnMut(usize) -> Phase) -> Phase {
    let mut phases: Vec<Phase> = (0..MERGE_RUNS).map(&mut run).collect();
    phases.sort_by(|a, b| a.ms.total_cmp(&b.ms));
    phases[MERGE_RUNS / 2]
}

/// Runs `f` as one phase.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Phase) {
    let base = alloc::current();
    alloc::reset_peak();
    let start = Instant::now();
    let out = f();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let heap = alloc::peak().saturating_sub(base);
    (out, Phase { ms, heap })
}

/// Everything measured for one system on one workload.
#[derive(Debug, Default)]
pub struct Row {
    pub system: String,
    /// All sets in one transaction (syncline: transactions of 10,000).
    pub write_txn: Option<Phase>,
    /// One commit per set (many writers: the 1,540 single-set commits).
    pub write_each: Option<Phase>,
    /// How many sets `write_each` really made (the rest is extrapolated).
    pub each_count: u64,
    /// Encoding the 1-txn writer's full state for shipping.
    pub encode: Option<Phase>,
    /// Merging the 1-txn writer's state into a replica with its own writes.
    pub merge_txn: Option<Phase>,
    /// Merging the per-set writer's state (many writers: all 1,540) likewise.
    pub merge_each: Option<Phase>,
    /// Making, encoding and applying one more set after the merge.
    pub one_more: Option<Phase>,
    pub state_txn: Option<usize>,
    pub state_each: Option<usize>,
    pub merged_state: Option<usize>,
    pub file_writer: Option<u64>,
    pub file_merged: Option<u64>,
    /// Bytes on the wire for one more set.
    pub wire_one: Option<usize>,
    /// syncline: the encoded size of that one change alone.
    pub change_one: Option<usize>,
    /// Key bytes plus syncline's encoded value bytes of that set.
    pub payload_one: usize,
    pub notes: Vec<String>,
}

impl Row {
    pub fn new(system: &str) -> Self {
        Row {
            system: system.to_string(),
            ..Row::default()
        }
    }
}

fn ms(p: Option<Phase>) -> String {
    match p {
        Some(p) if p.ms >= 100.0 => format!("{:.0}", p.ms),
        Some(p) => format!("{:.1}", p.ms),
        None => "—".into(),
    }
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn bytes(n: Option<usize>) -> String {
    n.map_or("—".into(), |n| thousands(n as u64))
}

fn heap(p: Option<Phase>) -> String {
    match p {
        None => "—".into(),
        Some(p) if p.heap >= 10 << 20 => format!("{:.0} MiB", p.heap as f64 / (1 << 20) as f64),
        Some(p) if p.heap >= 1 << 20 => format!("{:.1} MiB", p.heap as f64 / (1 << 20) as f64),
        Some(p) => format!("{:.0} KiB", p.heap as f64 / 1024.0),
    }
}

fn each_cells(row: &Row, workload: Workload) -> (String, String) {
    let Some(p) = row.write_each else {
        return ("—".into(), "—".into());
    };
    let per = p.ms * 1e3 / row.each_count as f64;
    let total_sets = if workload == Workload::ManyWriters { WRITERS } else { N };
    if row.each_count < total_sets {
        let total = per * total_sets as f64 / 1e3;
        (
            format!("{total:.0}* ({} real)", thousands(row.each_count)),
            format!("{per:.1}"),
        )
    } else {
        (ms(Some(p)), format!("{per:.1}"))
    }
}

fn table(workload: Workload, rows: &[Row]) -> String {
    let mut s = String::new();
    let many = workload == Workload::ManyWriters;
    writeln!(s, "### {}\n", workload.title()).unwrap();
    writeln!(s, "Time (ms):\n").unwrap();
    if many {
        writeln!(
            s,
            "| system | 1,540 writers, one set + commit each (total) | per writer (µs) | encode each writer's changes (total) | merge all 1,540 into a replica with 1,000 own writes | one more set: make, encode, apply |"
        )
        .unwrap();
        writeln!(s, "|---|---:|---:|---:|---:|---:|").unwrap();
        for r in rows {
            let (each, per) = each_cells(r, workload);
            writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                r.system,
                each,
                per,
                ms(r.encode),
                ms(r.merge_each),
                ms(r.one_more)
            )
            .unwrap();
        }
    } else {
        writeln!(
            s,
            "| system | write: all sets, one transaction | write: one commit per set | per set (µs) | encode full state | merge ← 1-txn writer | merge ← per-set writer | one more set: make, encode, apply |"
        )
        .unwrap();
        writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|").unwrap();
        for r in rows {
            let (each, per) = each_cells(r, workload);
            writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.system,
                ms(r.write_txn),
                each,
                per,
                ms(r.encode),
                ms(r.merge_txn),
                ms(r.merge_each),
                ms(r.one_more)
            )
            .unwrap();
        }
    }
    writeln!(s, "\nSize (bytes):\n").unwrap();
    let states = if many {
        "shipped: all 1,540 writers' changes"
    } else {
        "state of 1-txn writer | state of per-set writer"
    };
    writeln!(
        s,
        "| system | {states} | merged replica's state | redb file: writer / merged | one more set on the wire | beyond key + value |"
    )
    .unwrap();
    let cols = if many { 5 } else { 6 };
    writeln!(s, "|---{}|", "|---:".repeat(cols)).unwrap();
    for r in rows {
        let files = match (r.file_writer, r.file_merged) {
            (None, None) => "—".to_string(),
            (w, m) => format!(
                "{} / {}",
                w.map_or("—".into(), thousands),
                m.map_or("—".into(), thousands)
            ),
        };
        let beyond = r.wire_one.map_or("—".into(), |w| {
            format!("{}", w as i64 - r.payload_one as i64)
        });
        let states = if many {
            bytes(r.state_each)
        } else {
            format!("{} | {}", bytes(r.state_txn), bytes(r.state_each))
        };
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.system,
            states,
            bytes(r.merged_state),
            files,
            bytes(r.wire_one),
            beyond
        )
        .unwrap();
    }
    writeln!(s, "\nPeak heap above the phase's start:\n").unwrap();
    if many {
        writeln!(
            s,
            "| system | 1,540 writers (created, set, encoded, dropped but one) | merge all 1,540 | one more set |"
        )
        .unwrap();
        writeln!(s, "|---|---:|---:|---:|").unwrap();
        for r in rows {
            writeln!(
                s,
                "| {} | {} | {} | {} |",
                r.system,
                heap(r.write_each),
                heap(r.merge_each),
                heap(r.one_more)
            )
            .unwrap();
        }
    } else {
        writeln!(
            s,
            "| system | write: one transaction | write: commit per set | encode full state | merge ← 1-txn writer | merge ← per-set writer | one more set |"
        )
        .unwrap();
        writeln!(s, "|---|---:|---:|---:|---:|---:|---:|").unwrap();
        for r in rows {
            writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.system,
                heap(r.write_txn),
                heap(r.write_each),
                heap(r.encode),
                heap(r.merge_txn),
                heap(r.merge_each),
                heap(r.one_more)
            )
            .unwrap();
        }
    }
    let notes: Vec<String> = rows
        .iter()
        .flat_map(|r| r.notes.iter().map(move |n| format!("- {}: {n}", r.system)))
        .collect();
    if !notes.is_empty() {
        writeln!(s, "\nNotes:\n").unwrap();
        for n in notes {
            writeln!(s, "{n}").unwrap();
        }
    }
    writeln!(s).unwrap();
    s
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |s| s.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or("?".to_string(), |kb| format!("{:.0} GiB", kb / (1024.0 * 1024.0)));
    format!(
        "{cores} cores ({cpu}), {mem} RAM, {}/{}; {}; temp files in {}",
        std::env::consts::OS,
        std::env::consts::ARCH,
        env!("COMPARE_RUSTC_VERSION"),
        std::env::temp_dir().display()
    )
}

fn find<'a>(rows: &'a [Row], system: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.system == system)
        .unwrap_or_else(|| panic!("no row {system}"))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn targets(all: &[(Workload, Vec<Row>)], floor: &systems::Floor) -> String {
    let mut s = String::new();
    writeln!(s, "## Targets\n").unwrap();
    let distinct = &all.iter().find(|(w, _)| *w == Workload::Distinct).unwrap().1;
    let sd = find(distinct, systems::SYNCLINE_DURABLE);
    let am = find(distinct, systems::AUTOMERGE);
    let yrs = find(distinct, systems::YRS);
    let redb = find(distinct, systems::REDB);

    // (1) merge of 100,000 remote changes.
    let (sdm, amm, ym) = (
        sd.merge_each.unwrap().ms,
        am.merge_each.unwrap().ms,
        yrs.merge_each.unwrap().ms,
    );
    writeln!(
        s,
        "- (1a) {}: syncline durable merging 100,000 remote changes (distinct, per-set writer) {sdm:.0} ms vs automerge in memory {amm:.0} ms: ratio {:.2} (target ≤ 1.00)",
        verdict(sdm <= amm),
        sdm / amm
    )
    .unwrap();
    writeln!(
        s,
        "- (1b) {}: the same vs yrs {ym:.0} ms: ratio {:.2} (target ≤ 3.00)",
        verdict(sdm <= 3.0 * ym),
        sdm / ym
    )
    .unwrap();
    let (sdt, amt, yt) = (
        sd.merge_txn.unwrap().ms,
        am.merge_txn.unwrap().ms,
        yrs.merge_txn.unwrap().ms,
    );
    writeln!(
        s,
        "  - for information, from the 1-txn writers (automerge: one change of 100,000 ops): syncline durable {sdt:.0} ms, automerge {amt:.0} ms (ratio {:.2}), yrs {yt:.0} ms (ratio {:.2})",
        sdt / amt,
        sdt / yt
    )
    .unwrap();

    // (2a) durable single put vs bare redb single durable commit.
    let (sp, rp) = (floor.syncline_put_us, floor.redb_commit_us);
    writeln!(
        s,
        "- (2a) {}: a durable single put {sp:.0} µs vs bare redb single-row durable commit {rp:.0} µs (means over {} each, alternating in {} rounds of {} on the same disk): ratio {:.2} (target ≤ 1.50)",
        verdict(sp <= 1.5 * rp),
        thousands(floor.rounds * floor.per_round),
        floor.rounds,
        thousands(floor.per_round),
        sp / rp
    )
    .unwrap();
    let (wsp, wrp) = (
        sd.write_each.unwrap().ms * 1e3 / sd.each_count as f64,
        redb.write_each.unwrap().ms * 1e3 / redb.each_count as f64,
    );
    writeln!(
        s,
        "  - for information, the distinct workload's own commit-per-set phases ({} each, run minutes apart): {wsp:.0} µs vs {wrp:.0} µs, ratio {:.2}",
        thousands(sd.each_count),
        wsp / wrp
    )
    .unwrap();
    // (2b) 10,000 puts in one transaction vs bare redb.
    let (st, rt) = (floor.syncline_10k_ms, floor.redb_10k_ms);
    writeln!(
        s,
        "- (2b) {}: 10,000 puts in one durable transaction {st:.1} ms vs bare redb inserting the same 10,000 rows {rt:.1} ms (median of {} fresh files each): ratio {:.2} (target ≤ 4.00)",
        verdict(st <= 4.0 * rt),
        floor.runs,
        st / rt
    )
    .unwrap();

    // (3) one more set after a sync.
    let mut worst = i64::MIN;
    let mut parts = Vec::new();
    for (w, rows) in all {
        let r = find(rows, systems::SYNCLINE_DURABLE);
        let beyond = r.wire_one.unwrap() as i64 - r.payload_one as i64;
        worst = worst.max(beyond);
        let (wire, change) = (r.wire_one.unwrap(), r.change_one.unwrap());
        parts.push(format!(
            "{w:?}: {wire} bytes, {beyond} beyond key + value (the change alone encodes to {change}, the request envelope around it is {})",
            wire - change
        ));
    }
    writeln!(
        s,
        "- (3) {}: one more set after a sync, as a push request on the wire: worst {worst} bytes beyond key + value (target ≤ 64)",
        verdict(worst <= 64)
    )
    .unwrap();
    for part in parts {
        writeln!(s, "  - {part}").unwrap();
    }
    s
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

fn main() {
    let start = Instant::now();
    let load_start = loadavg();
    let built = env!("COMPARE_CRATE_VERSIONS");
    eprintln!("syncline-compare: {built}");

    let mut all = Vec::new();
    for workload in [Workload::Distinct, Workload::Overwrite, Workload::ManyWriters] {
        eprintln!("[{:>6.1}s] workload {workload:?}", start.elapsed().as_secs_f64());
        let rows = systems::run_workload(workload, &start);
        all.push((workload, rows));
    }
    eprintln!("[{:>6.1}s] floor: 10,000 puts in one transaction", start.elapsed().as_secs_f64());
    let floor = systems::floor_10k();

    let total = start.elapsed();
    let load_end = loadavg();
    let mut out = String::new();
    writeln!(out, "# syncline comparison results\n").unwrap();
    writeln!(out, "- machine: {}", machine()).unwrap();
    writeln!(out, "- crates: {built}").unwrap();
    writeln!(
        out,
        "- load average (1/5/15 min) at start: {load_start}; at end: {load_end} (other work on the machine skews the times)"
    )
    .unwrap();
    writeln!(
        out,
        "- total run time: {:.1} s (one process, one run: `cd benches/compare && cargo run --release`)",
        total.as_secs_f64()
    )
    .unwrap();
    writeln!(
        out,
        "- `*` = extrapolated: durable commit-per-set phases (syncline durable, bare redb) make {} real durable commits and scale the mean to the full count; in-memory systems make all of them.",
        thousands(DURABLE_CAP)
    )
    .unwrap();
    writeln!(
        out,
        "- \"merge ← per-set writer\" (distinct and overwrite; the merge targets use it) is the median of {MERGE_RUNS} runs, each into a fresh replica holding its own conflicting writes; the other phases run once."
    )
    .unwrap();
    writeln!(
        out,
        "- syncline transactions hold at most {} changes (`max_batch_changes`), so its \"one transaction\" is {} transactions of {} and merges are `apply_remote` calls of at most {} changes.\n",
        thousands(MAX_BATCH as u64),
        N as usize / MAX_BATCH,
        thousands(MAX_BATCH as u64),
        thousands(MAX_BATCH as u64)
    )
    .unwrap();
    out.push_str(&targets(&all, &floor));
    out.push('\n');
    writeln!(out, "## Workloads\n").unwrap();
    for (w, rows) in &all {
        out.push_str(&table(*w, rows));
    }
    print!("{out}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/RESULTS.md");
    std::fs::write(path, &out).unwrap_or_else(|e| eprintln!("could not write {path}: {e}"));
    eprintln!("wrote {path}");
}
