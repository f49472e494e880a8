//! `#[memoize(map)]` sweeps, timed against their floors in one run:
//!
//! - 10,000 stored inputs through `<name>_map` vs 10,000 memoized hits one
//!   after the other (target: at most 2x);
//! - 200 misses whose body sleeps 20 ms, on 4 worker threads vs 1 (target:
//!   at least 3.5x faster);
//! - 64 misses of a CPU-bound body (about 10 ms each), on 2 threads vs 1,
//!   on the 2-core CI machine (target: at least 1.8x).
//!
//! Medians of 5 runs for the first, 3 for the others. No progress bar
//! (`MEMO_PROGRESS` is irrelevant: stderr is not a terminal under cargo
//! bench's capture... and the bench sets none).

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use memo_core::{Store, memoize};

static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().expect("dir"));
static STORE: LazyLock<Store> = LazyLock::new(|| Store::open(DIR.path()).expect("store"));

#[memoize(store = STORE, map)]
fn cell(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[memoize(store = STORE, map)]
fn sleepy(i: u64, round: u32) -> u64 {
    let _ = round;
    std::thread::sleep(Duration::from_millis(20));
    i
}

#[memoize(store = STORE, map)]
fn busy(i: u64, round: u32) -> u64 {
    let _ = round;
    let mut x = i | 1;
    for _ in 0..6_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // Stored inputs.
    let n = 10_000_u64;
    for i in 0..n {
        cell(i);
    }
    let sweep = median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let out = cell_map((0..n).map(|i| (i,)));
                assert_eq!(out.len(), n as usize);
                t.elapsed()
            })
            .collect(),
    );
    let hits = median(
        (0..5)
            .map(|_| {
                let t = Instant::now();
                for i in 0..n {
                    std::hint::black_box(cell(i));
                }
                t.elapsed()
            })
            .collect(),
    );
    println!("| workload | sweep | baseline in the same run | ratio | target |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| 10,000 stored inputs: `cell_map` | {sweep:.2?} | 10,000 memoized hits in a loop: {hits:.2?} | {:.2}x the time | <= 2x |",
        sweep.as_secs_f64() / hits.as_secs_f64()
    );

    // Sleeping bodies: fresh keys per run (`round`).
    let mut round = 0;
    let mut time_on = |threads: usize, f: &(dyn Fn(u32) -> usize + Sync)| {
        median(
            (0..3)
                .map(|_| {
                    round += 1;
                    let r = round;
                    let t = Instant::now();
                    let len = pool(threads).install(|| f(r));
                    assert!(len > 0);
                    t.elapsed()
                })
                .collect(),
        )
    };
    let sleeping = |r: u32| sleepy_map((0..200).map(|i| (i, r))).len();
    let one = time_on(1, &sleeping);
    let four = time_on(4, &sleeping);
    println!(
        "| 200 misses sleeping 20 ms, 4 threads | {four:.2?} | 1 thread: {one:.2?} | {:.2}x faster | >= 3.5x |",
        one.as_secs_f64() / four.as_secs_f64()
    );
    let cpu = |r: u32| busy_map((0..64).map(|i| (i, r))).len();
    let one = time_on(1, &cpu);
    let two = time_on(2, &cpu);
    println!(
        "| 64 CPU-bound misses, 2 threads (2 cores) | {two:.2?} | 1 thread: {one:.2?} | {:.2}x faster | >= 1.8x |",
        one.as_secs_f64() / two.as_secs_f64()
    );
}
