//! Memoized hits returning vectors of numbers (8 MiB), against copying
//! the same bytes into a fresh allocation, in one run: `Vec<u8>` and
//! `Vec<f64>` results are stored as their bytes (one copy on a hit); the
//! same `Vec<f64>` inside a struct still takes serde's per-element path,
//! shown for comparison. Target: at most 1.5x the fresh copy. Then an
//! 8 MiB `Array<f64>` result, a view of the mapped file (target: a hit in
//! at most 5 µs), and the `cached` crate's in-memory `#[cached]` returning
//! the same `Vec<f64>` (a clone per hit). Medians of 21 hits (201 for the
//! microsecond ones); each `Vec` hit alternates with its copy, 41 rounds.
//!
//! Results also go to `target/memo-bench/bulk.json`, for `benches/chart.py`.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use memo_core::{Array, Key, Store, memoize};

static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().expect("dir"));
static STORE: LazyLock<Store> = LazyLock::new(|| Store::open(DIR.path()).expect("store"));

const LEN: usize = 8 << 20;

#[memoize(store = STORE)]
fn bytes(seed: u8) -> Vec<u8> {
    (0..LEN).map(|i| (i as u8).wrapping_add(seed)).collect()
}

#[memoize(store = STORE)]
fn floats(seed: u32) -> Vec<f64> {
    (0..LEN / 8).map(|i| i as f64 * f64::from(seed)).collect()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Wrapped {
    values: Vec<f64>,
}

#[memoize(store = STORE)]
fn wrapped(seed: u32) -> Wrapped {
    Wrapped {
        values: (0..LEN / 8).map(|i| i as f64 * f64::from(seed)).collect(),
    }
}

#[memoize(store = STORE)]
fn array(seed: u32) -> Array<f64> {
    (0..LEN / 8).map(|i| i as f64 * f64::from(seed)).collect()
}

#[cached::proc_macro::cached]
fn in_memory(seed: u32) -> Vec<f64> {
    (0..LEN / 8).map(|i| i as f64 * f64::from(seed)).collect()
}

fn median(f: impl FnMut() -> Duration) -> Duration {
    median_of(21, f)
}

fn median_of(n: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let mut v: Vec<Duration> = (0..n).map(|_| f()).collect();
    v.sort();
    v[v.len() / 2]
}

/// Medians of `a` and `b` over 41 rounds, each round timing one of each.
fn paired(
    mut a: impl FnMut() -> Duration,
    mut b: impl FnMut() -> Duration,
) -> (Duration, Duration) {
    let (mut xs, mut ys): (Vec<Duration>, Vec<Duration>) = (0..41).map(|_| (a(), b())).unzip();
    xs.sort();
    ys.sort();
    (xs[xs.len() / 2], ys[ys.len() / 2])
}

fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    std::hint::black_box(f());
    t.elapsed()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let b = bytes(1);
    let f = floats(1);
    wrapped(1);
    // Each hit and its baseline alternate, round by round, so that both
    // see the same machine: a fresh 8 MiB allocation faults its pages in,
    // and on this shared machine that alone moved medians 2x between runs.
    let (hit_b, copy_b) = paired(|| timed(|| bytes(1)), || timed(|| b.as_slice().to_owned()));
    // The floor issue 31 names: a memcpy into a buffer reused (no
    // allocation, no page faults).
    let mut reused = vec![0_u8; LEN];
    let memcpy = median_of(41, || timed(|| reused.copy_from_slice(&b)));
    std::hint::black_box(&reused);
    let (hit_f, copy_f) = paired(|| timed(|| floats(1)), || timed(|| f.as_slice().to_owned()));
    let hit_w = median(|| timed(|| wrapped(1)));
    array(1);
    in_memory(1);
    let hit_a = median_of(201, || timed(|| array(1)));
    let hit_c = median(|| timed(|| in_memory(1)));
    // The first hit in a process checksums the value's file once (a fresh
    // `Store` maps it anew): what a new process pays, once per value.
    let key = Key::of("bulk array");
    STORE.put(&key, &array(1)).expect("put");
    let first_a = median(|| {
        let fresh = Store::open(DIR.path()).expect("store");
        timed(|| fresh.get::<Array<f64>>(&key).expect("get"))
    });
    println!("| workload (8 MiB) | memoized hit | baseline in the same run | ratio | target |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| `Vec<u8>` result | {hit_b:.2?} | copy into a fresh `Vec`: {copy_b:.2?} | {:.2}x | <= 1.5x |",
        hit_b.as_secs_f64() / copy_b.as_secs_f64()
    );
    println!(
        "| `Vec<u8>` result | {hit_b:.2?} | memcpy into a reused buffer: {memcpy:.2?} | {:.2}x | <= 1.2x (issue 31) |",
        hit_b.as_secs_f64() / memcpy.as_secs_f64()
    );
    println!(
        "| `Vec<f64>` result | {hit_f:.2?} | copy into a fresh `Vec`: {copy_f:.2?} | {:.2}x | <= 1.5x |",
        hit_f.as_secs_f64() / copy_f.as_secs_f64()
    );
    println!(
        "| `Vec<f64>` inside a struct (per element) | {hit_w:.2?} | copy into a fresh `Vec`: {copy_f:.2?} | {:.2}x | |",
        hit_w.as_secs_f64() / copy_f.as_secs_f64()
    );
    println!(
        "| `Array<f64>` result (a view) | {hit_a:.2?} | `cached` `#[cached]` hit (in memory, a clone): {hit_c:.2?} | {:.4}x | <= 5 µs |",
        hit_a.as_secs_f64() / hit_c.as_secs_f64()
    );
    println!(
        "| `Array<f64>`, first hit in a process (checksums the file once) | {first_a:.2?} | copy into a fresh `Vec`: {copy_f:.2?} | {:.2}x | |",
        first_a.as_secs_f64() / copy_f.as_secs_f64()
    );
    let rows = [
        ("memo #[memoize] hit, Vec<u8>", hit_b),
        ("memo #[memoize] hit, Vec<f64>", hit_f),
        ("memo #[memoize] hit, struct of Vec<f64>", hit_w),
        ("memo #[memoize] hit, Array<f64>", hit_a),
        ("memo Array<f64>, first hit in a process", first_a),
        ("cached #[cached] hit, Vec<f64> (in memory)", hit_c),
        ("floor: copy 8 MiB into a fresh Vec", copy_f),
        ("floor: memcpy 8 MiB into a reused buffer", memcpy),
    ];
    write_json("bulk", "hit_8MiB", &rows);
}

/// Writes `rows` (name, median) as `target/memo-bench/<file>.json`:
/// `{"group": ..., "results": [{"name": ..., "ns": ...}, ...]}`.
fn write_json(file: &str, group: &str, rows: &[(&str, Duration)]) {
    let results: Vec<String> = rows
        .iter()
        .map(|(name, d)| format!("{{\"name\": {name:?}, \"ns\": {}}}", d.as_nanos()))
        .collect();
    let json = format!(
        "{{\"group\": {group:?}, \"results\": [{}]}}\n",
        results.join(", ")
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/memo-bench");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join(format!("{file}.json")), json));
    if let Err(e) = written {
        eprintln!("bulk: could not write {}: {e}", dir.display());
    }
}
