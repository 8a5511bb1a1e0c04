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
/// Conflicting writes the merge target of the many-writers workload (and
/// of the labelled extra rows that keep the earlier setup) holds before it
/// merges.
pub const OWN_WRITES: u64 = 1_000;
/// Durable commits actually made in the commit-per-set phase; the total is
/// extrapolated from the per-set average.
pub const DURABLE_CAP: u64 = 10_000;
/// syncline's `max_batch_changes` default: the largest transaction a
/// server takes in one push, and the batch of the earlier `apply_remote`
/// setup (an extra row).
pub const MAX_BATCH: usize = 10_000;
/// The transactions the hub (and bare redb's floor) is written in for the
/// main merge rows.
pub const HUB_TXN: u64 = 1_000;

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
            Workload::Overwrite => {
                "overwrite: 100,000 sets spread over 1,000 keys (`k{i % 1000}` = i)"
            }
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

/// How many times each merge runs, each time into a fresh target: the
/// median run is reported with the spread, so one noisy run cannot decide
/// a target.
pub const MERGE_RUNS: usize = 5;

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

/// Repeated runs of one phase.
#[derive(Clone, Debug)]
pub struct Runs(pub Vec<Phase>);

impl Runs {
    fn sorted(&self) -> Vec<Phase> {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.ms.total_cmp(&b.ms));
        v
    }

    /// The median run (by time).
    pub fn median(&self) -> Phase {
        let v = self.sorted();
        v[v.len() / 2]
    }

    pub fn min_ms(&self) -> f64 {
        self.sorted()[0].ms
    }

    pub fn max_ms(&self) -> f64 {
        self.sorted().last().expect("runs").ms
    }
}

/// One way of merging a workload's 100,000 changes into a replica.
#[derive(Debug)]
pub struct Merge {
    /// How the changes arrive and what the target holds.
    pub how: String,
    /// A main row (the one the targets use) or an extra row, kept for
    /// comparison with earlier setups and labelled as such.
    pub main: bool,
    pub runs: Runs,
}

/// A file's length and the bytes the file system allocated to it.
#[derive(Clone, Copy, Debug)]
pub struct FileSize {
    pub len: u64,
    pub allocated: u64,
}

impl FileSize {
    pub fn of(path: &std::path::Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).expect("file metadata");
        FileSize {
            len: m.len(),
            allocated: m.blocks() * 512,
        }
    }
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
    /// Many writers: merging all 1,540 into a replica with its own writes.
    pub merge_many: Option<Phase>,
    /// Distinct and overwrite: the merges, main rows first.
    pub merges: Vec<Merge>,
    /// Making, encoding and applying one more set after the merge.
    pub one_more: Option<Phase>,
    pub state_txn: Option<usize>,
    pub state_each: Option<usize>,
    pub merged_state: Option<usize>,
    /// Durable files holding the workload's pairs: what each is, its size.
    pub disk: Vec<(String, FileSize)>,
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

    /// Adds a merge row.
    pub fn merge(&mut self, main: bool, how: impl Into<String>, runs: Vec<Phase>) {
        self.merges.push(Merge {
            how: how.into(),
            main,
            runs: Runs(runs),
        });
    }

    /// The main merge row.
    pub fn main_merge(&self) -> &Merge {
        self.merges
            .iter()
            .find(|m| m.main)
            .unwrap_or_else(|| panic!("{}: no main merge", self.system))
    }
}

fn ms_value(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

fn ms(p: Option<Phase>) -> String {
    p.map_or("—".into(), |p| ms_value(p.ms))
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

fn mb(n: u64) -> String {
    format!("{:.1} MB", n as f64 / 1e6)
}

fn heap_value(h: usize) -> String {
    if h >= 10 << 20 {
        format!("{:.0} MiB", h as f64 / (1 << 20) as f64)
    } else if h >= 1 << 20 {
        format!("{:.1} MiB", h as f64 / (1 << 20) as f64)
    } else {
        format!("{:.0} KiB", h as f64 / 1024.0)
    }
}

fn heap(p: Option<Phase>) -> String {
    p.map_or("—".into(), |p| heap_value(p.heap))
}

fn each_cells(row: &Row, workload: Workload) -> (String, String) {
    let Some(p) = row.write_each else {
        return ("—".into(), "—".into());
    };
    let per = p.ms * 1e3 / row.each_count as f64;
    let total_sets = if workload == Workload::ManyWriters {
        WRITERS
    } else {
        N
    };
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

fn many_table(rows: &[Row]) -> String {
    let mut s = String::new();
    writeln!(s, "### {}\n", Workload::ManyWriters.title()).unwrap();
    writeln!(s, "Time (ms):\n").unwrap();
    writeln!(
        s,
        "| system | 1,540 writers, one set + commit each (total) | per writer (µs) | encode each writer's changes (total) | merge all 1,540 into a replica with 1,000 own writes | one more set: make, encode, apply |"
    )
    .unwrap();
    writeln!(s, "|---|---:|---:|---:|---:|---:|").unwrap();
    for r in rows {
        let (each, per) = each_cells(r, Workload::ManyWriters);
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.system,
            each,
            per,
            ms(r.encode),
            ms(r.merge_many),
            ms(r.one_more)
        )
        .unwrap();
    }
    writeln!(s, "\nSize (bytes):\n").unwrap();
    writeln!(
        s,
        "| system | shipped: all 1,540 writers' changes | merged replica's state | redb file: length / allocated | one more set on the wire | beyond key + value |"
    )
    .unwrap();
    writeln!(s, "|---|---:|---:|---:|---:|---:|").unwrap();
    for r in rows {
        let file = r.disk.first().map_or("—".into(), |(_, f)| {
            format!("{} / {}", thousands(f.len), thousands(f.allocated))
        });
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.system,
            bytes(r.state_each),
            bytes(r.merged_state),
            file,
            bytes(r.wire_one),
            beyond(r)
        )
        .unwrap();
    }
    writeln!(s, "\nPeak heap above the phase's start:\n").unwrap();
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
            heap(r.merge_many),
            heap(r.one_more)
        )
        .unwrap();
    }
    notes(&mut s, rows);
    s
}

fn beyond(r: &Row) -> String {
    r.wire_one.map_or("—".into(), |w| {
        format!("{}", w as i64 - r.payload_one as i64)
    })
}

fn notes(s: &mut String, rows: &[Row]) {
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
}

fn table(workload: Workload, rows: &[Row]) -> String {
    if workload == Workload::ManyWriters {
        return many_table(rows);
    }
    let mut s = String::new();
    writeln!(s, "### {}\n", workload.title()).unwrap();

    writeln!(
        s,
        "Merge of the workload's 100,000 changes (ms, median of {MERGE_RUNS} runs each into a fresh target, and the spread; peak heap of the median run above its start). Main rows merge into an empty replica; rows marked *extra* keep other setups for comparison:\n"
    )
    .unwrap();
    writeln!(
        s,
        "| system | how the changes arrive | median | min–max | peak heap |"
    )
    .unwrap();
    writeln!(s, "|---|---|---:|---:|---:|").unwrap();
    for r in rows {
        let mut merges: Vec<&Merge> = r.merges.iter().filter(|m| m.main).collect();
        merges.extend(r.merges.iter().filter(|m| !m.main));
        for m in merges {
            let label = if m.main {
                m.how.clone()
            } else {
                format!("*extra:* {}", m.how)
            };
            writeln!(
                s,
                "| {} | {label} | {} | {}–{} | {} |",
                r.system,
                ms_value(m.runs.median().ms),
                ms_value(m.runs.min_ms()),
                ms_value(m.runs.max_ms()),
                heap_value(m.runs.median().heap)
            )
            .unwrap();
        }
    }

    writeln!(
        s,
        "\nDisk: durable files holding the workload's pairs, measured after their last commit (allocated = `st_blocks` × 512):\n"
    )
    .unwrap();
    writeln!(
        s,
        "| system | file | length | allocated | allocated vs bare redb |"
    )
    .unwrap();
    writeln!(s, "|---|---|---:|---:|---:|").unwrap();
    let floor = rows
        .iter()
        .find(|r| r.system == systems::REDB)
        .and_then(|r| r.disk.first())
        .map(|(_, f)| f.allocated);
    for r in rows {
        for (what, f) in &r.disk {
            // Only the distinct workload's pairs are the same: over hot keys
            // bare redb keeps the 1,000 live pairs and no history.
            let ratio = match floor {
                Some(b) if workload == Workload::Distinct => {
                    format!("{:.2}x", f.allocated as f64 / b as f64)
                }
                _ => "—".into(),
            };
            writeln!(
                s,
                "| {} | {what} | {} ({}) | {} ({}) | {ratio} |",
                r.system,
                thousands(f.len),
                mb(f.len),
                thousands(f.allocated),
                mb(f.allocated)
            )
            .unwrap();
        }
    }

    writeln!(s, "\nOther phases, time (ms), one run each:\n").unwrap();
    writeln!(
        s,
        "| system | write: all sets, one transaction | write: one commit per set | per set (µs) | encode full state | one more set: make, encode, apply |"
    )
    .unwrap();
    writeln!(s, "|---|---:|---:|---:|---:|---:|").unwrap();
    for r in rows {
        let (each, per) = each_cells(r, workload);
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.system,
            ms(r.write_txn),
            each,
            per,
            ms(r.encode),
            ms(r.one_more)
        )
        .unwrap();
    }

    writeln!(s, "\nSize (bytes):\n").unwrap();
    writeln!(
        s,
        "| system | state of 1-txn writer | state of per-set writer | main merge target's state | one more set on the wire | beyond key + value |"
    )
    .unwrap();
    writeln!(s, "|---|---:|---:|---:|---:|---:|").unwrap();
    for r in rows {
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.system,
            bytes(r.state_txn),
            bytes(r.state_each),
            bytes(r.merged_state),
            bytes(r.wire_one),
            beyond(r)
        )
        .unwrap();
    }

    writeln!(s, "\nPeak heap above the phase's start:\n").unwrap();
    writeln!(
        s,
        "| system | write: one transaction | write: commit per set | encode full state | one more set |"
    )
    .unwrap();
    writeln!(s, "|---|---:|---:|---:|---:|").unwrap();
    for r in rows {
        writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            r.system,
            heap(r.write_txn),
            heap(r.write_each),
            heap(r.encode),
            heap(r.one_more)
        )
        .unwrap();
    }
    notes(&mut s, rows);
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
        .map_or("?".to_string(), |kb| {
            format!("{:.0} GiB", kb / (1024.0 * 1024.0))
        });
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

/// "median (min–max)" of a merge, in ms.
fn spread(m: &Merge) -> String {
    format!(
        "{} ms ({}–{})",
        ms_value(m.runs.median().ms),
        ms_value(m.runs.min_ms()),
        ms_value(m.runs.max_ms())
    )
}

/// The ratio of two merges' medians, with the widest range their runs allow.
fn ratio(a: &Merge, b: &Merge) -> (f64, String) {
    let r = a.runs.median().ms / b.runs.median().ms;
    let lo = a.runs.min_ms() / b.runs.max_ms();
    let hi = a.runs.max_ms() / b.runs.min_ms();
    (r, format!("{r:.2}x (runs allow {lo:.2}x to {hi:.2}x)"))
}

fn merge_target(s: &mut String, n: &str, title: &str, rows: &[Row], yrs_max: f64, am_max: f64) {
    let sd = find(rows, systems::SYNCLINE_DURABLE).main_merge();
    let yrs = find(rows, systems::YRS).main_merge();
    let am = find(rows, systems::AUTOMERGE).main_merge();
    let (ry, ry_text) = ratio(sd, yrs);
    let (ra, ra_text) = ratio(sd, am);
    writeln!(
        s,
        "- ({n}a) {}: {title}: syncline durable, engine defaults, {} vs yrs {}: {ry_text} (target ≤ {yrs_max:.1}x)",
        verdict(ry <= yrs_max),
        spread(sd),
        spread(yrs)
    )
    .unwrap();
    writeln!(
        s,
        "- ({n}b) {}: the same vs automerge {}: {ra_text} (target ≤ {am_max:.1}x)",
        verdict(ra <= am_max),
        spread(am)
    )
    .unwrap();
}

fn targets(all: &[(Workload, Vec<Row>)], floor: &systems::Floor) -> String {
    let mut s = String::new();
    writeln!(s, "## Targets (issue 13)\n").unwrap();
    let rows_of = |w: Workload| &all.iter().find(|(x, _)| *x == w).expect("workload").1;
    let distinct = rows_of(Workload::Distinct);
    let overwrite = rows_of(Workload::Overwrite);

    // (1) disk after 100,000 distinct small records.
    let sd = find(distinct, systems::SYNCLINE_DURABLE);
    let redb = find(distinct, systems::REDB);
    let (floor_what, floor_file) = redb.disk.first().expect("bare redb file");
    for (i, (what, f)) in sd.disk.iter().take(2).enumerate() {
        let r = f.allocated as f64 / floor_file.allocated as f64;
        writeln!(
            s,
            "- (1{}) {}: disk after 100,000 distinct small records, {what}: {} allocated (file {}) vs bare redb, {floor_what}: {} allocated (file {}): {r:.2}x (target ≤ 3.0x)",
            ["a", "b"][i],
            verdict(r <= 3.0),
            mb(f.allocated),
            mb(f.len),
            mb(floor_file.allocated),
            mb(floor_file.len)
        )
        .unwrap();
    }
    // The like-for-like floor: the same pairs written in the same order.
    if let Some((same_what, same_file)) = redb.disk.get(1) {
        for (i, (what, f)) in sd.disk.iter().take(2).enumerate() {
            let r = f.allocated as f64 / same_file.allocated as f64;
            writeln!(
                s,
                "- (1{}) {}: the same, {what}, vs bare redb, {same_what}: {} allocated (file {}): {r:.2}x (target ≤ 3.0x)",
                ["c", "d"][i],
                verdict(r <= 3.0),
                mb(same_file.allocated),
                mb(same_file.len)
            )
            .unwrap();
        }
    }

    // (2), (3) merges with the engine's defaults into an empty replica.
    merge_target(
        &mut s,
        "2",
        "merge of 100,000 separate changes (distinct keys) into an empty replica",
        distinct,
        2.5,
        0.5,
    );
    merge_target(
        &mut s,
        "3",
        "merge of 100,000 changes over 1,000 hot keys (100 each) into an empty replica",
        overwrite,
        5.0,
        0.5,
    );

    // (4) durable single put vs bare redb single durable commit.
    let (sp, rp) = (
        median(&floor.syncline_put_us),
        median(&floor.redb_commit_us),
    );
    let ratios: Vec<f64> = floor
        .syncline_put_us
        .iter()
        .zip(&floor.redb_commit_us)
        .map(|(a, b)| a / b)
        .collect();
    let (lo, hi) = min_max(&ratios);
    let (slo, shi) = min_max(&floor.syncline_put_us);
    let (rlo, rhi) = min_max(&floor.redb_commit_us);
    writeln!(
        s,
        "- (4) {}: a durable single put {sp:.0} µs ({slo:.0}–{shi:.0}) vs bare redb single-row durable commit {rp:.0} µs ({rlo:.0}–{rhi:.0}): {:.2}x (rounds {lo:.2}x to {hi:.2}x) (target ≤ 1.3x). Medians of {} rounds of {} puts and {} commits, one of each in turn.",
        verdict(sp <= 1.3 * rp),
        sp / rp,
        floor.syncline_put_us.len(),
        thousands(floor.per_round),
        thousands(floor.per_round)
    )
    .unwrap();
    writeln!(
        s,
        "- (5) initial sync between separate processes over QUIC and HTTP: `cargo bench --bench initial_sync --features quic,http` in the root workspace (not part of this run)."
    )
    .unwrap();

    writeln!(s, "\nFor information (earlier targets, not issue 13's):\n").unwrap();
    let (st, rt) = (floor.syncline_10k_ms, floor.redb_10k_ms);
    writeln!(
        s,
        "- 10,000 puts in one durable transaction {st:.1} ms vs bare redb inserting the same 10,000 rows {rt:.1} ms (median of {} fresh files each): {:.2}x (earlier target ≤ 4x)",
        floor.runs,
        st / rt
    )
    .unwrap();
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
        "- one more set after a sync, as a push request on the wire: worst {worst} bytes beyond key + value (earlier target ≤ 64)"
    )
    .unwrap();
    for part in parts {
        writeln!(s, "  - {part}").unwrap();
    }
    s
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
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

    // The engine and its hub run here, as in an app: a multi-threaded
    // runtime with one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut all = Vec::new();
    for workload in [
        Workload::Distinct,
        Workload::Overwrite,
        Workload::ManyWriters,
    ] {
        eprintln!(
            "[{:>6.1}s] workload {workload:?}",
            start.elapsed().as_secs_f64()
        );
        let rows = systems::run_workload(workload, &start, &rt);
        all.push((workload, rows));
    }
    eprintln!(
        "[{:>6.1}s] floor: 10,000 puts in one transaction",
        start.elapsed().as_secs_f64()
    );
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
        "- merges run {MERGE_RUNS} times, each into a fresh target, and report the median run and the spread (min–max); the other phases run once."
    )
    .unwrap();
    writeln!(
        out,
        "- syncline's main merge rows are what an app gets: an empty replica whose `SyncEngine` (`SyncConfig::default()`: batches of {} changes, each pulled batch committed as the engine commits it) pulls over the in-process loopback transport from a hub written in transactions of {}, until `wait_synced` returns. The peers' main rows merge their per-set writer's state (100,000 separate changes) into an empty document. Rows marked *extra* keep other setups, labelled.",
        thousands(syncline::SyncConfig::default().batch_size as u64),
        thousands(HUB_TXN)
    )
    .unwrap();
    writeln!(
        out,
        "- syncline transactions hold at most {} changes (`max_batch_changes`), so its \"one transaction\" is {} transactions of {}.\n",
        thousands(MAX_BATCH as u64),
        N as usize / MAX_BATCH,
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
