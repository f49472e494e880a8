//! Memoized hits returning vectors of numbers (8 MiB), against copying
//! the same bytes into a fresh allocation, in one run: `Vec<u8>` and
//! `Vec<f64>` results are stored as their bytes (one copy on a hit); the
//! same `Vec<f64>` inside a struct still takes serde's per-element path,
//! shown for comparison. Target: at most 1.5x the fresh copy. Medians of
//! 21 hits.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use memo_core::{Store, memoize};

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

fn median(mut f: impl FnMut() -> Duration) -> Duration {
    let mut v: Vec<Duration> = (0..21).map(|_| f()).collect();
    v.sort();
    v[v.len() / 2]
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
    let copy_b = median(|| timed(|| b.as_slice().to_owned()));
    let copy_f = median(|| timed(|| f.as_slice().to_owned()));
    let hit_b = median(|| timed(|| bytes(1)));
    let hit_f = median(|| timed(|| floats(1)));
    let hit_w = median(|| timed(|| wrapped(1)));
    println!("| workload (8 MiB) | memoized hit | baseline in the same run | ratio | target |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| `Vec<u8>` result | {hit_b:.2?} | copy into a fresh `Vec`: {copy_b:.2?} | {:.2}x | <= 1.5x |",
        hit_b.as_secs_f64() / copy_b.as_secs_f64()
    );
    println!(
        "| `Vec<f64>` result | {hit_f:.2?} | copy into a fresh `Vec`: {copy_f:.2?} | {:.2}x | <= 1.5x |",
        hit_f.as_secs_f64() / copy_f.as_secs_f64()
    );
    println!(
        "| `Vec<f64>` inside a struct (per element) | {hit_w:.2?} | copy into a fresh `Vec`: {copy_f:.2?} | {:.2}x | |",
        hit_w.as_secs_f64() / copy_f.as_secs_f64()
    );
}
