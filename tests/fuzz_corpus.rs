//! The fuzz targets as ordinary tests, on stable and without cargo-fuzz.
//!
//! For each target of `syncline::testing::fuzz`: every file of
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` (saved crash
//! inputs), the generated seeds, and `SYNCLINE_FUZZ_ITERS` (default 200)
//! pseudo-random inputs from a fixed seed: half random bytes, half mutated
//! corpus files. A panic names the input that caused it.
//!
//! ```sh
//! SYNCLINE_FUZZ_ITERS=5000 cargo test --release --features testing --test fuzz_corpus
//! # rewrite fuzz/corpus/<target>/seed-* from `seed_corpus`:
//! cargo test --features testing --test fuzz_corpus -- --ignored write_seed_corpus
//! ```
#![cfg(feature = "testing")]

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use syncline::testing::fuzz::{self, TARGETS, Target};

/// Random inputs per target unless `SYNCLINE_FUZZ_ITERS` says otherwise.
const DEFAULT_ITERS: usize = 200;

/// Each target's random inputs are split over this many tests, so that the
/// harness runs them on all cores.
const SHARDS: usize = 2;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.expect("a corpus directory entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (p.display().to_string(), bytes)
        })
        .collect();
    out.sort();
    out
}

/// SplitMix64: deterministic, and no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A few byte flips, insertions, deletions or splices of `base`.
fn mutate(rng: &mut Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(out.len() + 1);
                out.insert(i, rng.next() as u8);
            }
            3 if !out.is_empty() => {
                let i = rng.below(out.len());
                out.remove(i);
            }
            _ => {
                let cut = rng.below(out.len() + 1);
                out.truncate(cut);
                let from = rng.below(other.len() + 1);
                out.extend_from_slice(&other[from..]);
            }
        }
    }
    out
}

fn iters() -> usize {
    match std::env::var("SYNCLINE_FUZZ_ITERS") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("SYNCLINE_FUZZ_ITERS={s:?} is not a number")),
        Err(_) => DEFAULT_ITERS,
    }
}

/// Runs `target` on `input`, naming the input if it panics.
fn run(name: &str, target: Target, label: &str, input: &[u8]) {
    if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(|| target(input))) {
        eprintln!(
            "fuzz target {name} failed on {label} ({} bytes): {input:02x?}",
            input.len()
        );
        panic::resume_unwind(panic);
    }
}

fn target(name: &str) -> Target {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .expect("a known target")
}

/// The committed corpus, the saved regressions and the generated seeds.
fn inputs(name: &str) -> Vec<(String, Vec<u8>)> {
    let mut inputs = files(&fuzz_dir().join("corpus").join(name));
    assert!(
        !inputs.is_empty(),
        "fuzz/corpus/{name} is empty; write it with --ignored write_seed_corpus"
    );
    inputs.extend(files(&fuzz_dir().join("regressions").join(name)));
    inputs.extend(
        fuzz::seed_corpus(name)
            .into_iter()
            .map(|(label, bytes)| (format!("seed {label}"), bytes)),
    );
    inputs
}

fn replay(name: &str) {
    let target = target(name);
    for (label, input) in &inputs(name) {
        run(name, target, label, input);
    }
}

/// Random inputs `i` with `i % SHARDS == shard`: the same sequence whatever
/// the sharding.
fn random(name: &str, shard: usize) {
    let target = target(name);
    let inputs = inputs(name);
    let mut rng = Rng(0x5eed ^ name.len() as u64);
    for i in 0..iters() {
        let input = if i % 2 == 0 {
            let len = rng.below(256);
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let base = &inputs[rng.below(inputs.len())].1;
            let other = &inputs[rng.below(inputs.len())].1;
            mutate(&mut rng, base, other)
        };
        if i % SHARDS == shard {
            run(name, target, &format!("random input {i}"), &input);
        }
    }
}

// One test per target and kind of input (random ones in shards), so that
// the harness spreads them over the cores.

#[test]
fn decode_frame_corpus() {
    replay("decode_frame");
}

#[test]
fn decode_frame_random_0() {
    random("decode_frame", 0);
}

#[test]
fn decode_frame_random_1() {
    random("decode_frame", 1);
}

#[test]
fn apply_changes_corpus() {
    replay("apply_changes");
}

#[test]
fn apply_changes_random_0() {
    random("apply_changes", 0);
}

#[test]
fn apply_changes_random_1() {
    random("apply_changes", 1);
}

#[test]
fn converge_corpus() {
    replay("converge");
}

#[test]
fn converge_random_0() {
    random("converge", 0);
}

#[test]
fn converge_random_1() {
    random("converge", 1);
}

/// Rewrites `fuzz/corpus/<target>/seed-*` from `seed_corpus`; other corpus
/// files are left alone.
#[test]
#[ignore = "writes the seed corpus into the source tree"]
fn write_seed_corpus() {
    for (name, _) in TARGETS {
        let dir = fuzz_dir().join("corpus").join(name);
        fs::create_dir_all(&dir).expect("create the corpus directory");
        for (path, _) in files(&dir) {
            if Path::new(&path)
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("seed-"))
            {
                fs::remove_file(&path).expect("remove an old seed");
            }
        }
        for (i, (label, bytes)) in fuzz::seed_corpus(name).into_iter().enumerate() {
            fs::write(dir.join(format!("seed-{i:02}-{label}")), bytes).expect("write a seed");
        }
    }
}
