//! What invalidation costs, each against its baseline in the same run:
//!
//! - `DataFile` of an unchanged file (1 GiB by default,
//!   `MEMO_BENCH_DATA_MB`): its first key, which reads and hashes it, vs
//!   reading and hashing the file with blake3 directly; then the key of
//!   each later call vs a bare `stat` of the file (target: at most 10 µs);
//! - a memoized hit of a function with `ttl` and tracked helpers vs a
//!   plain memoized hit (target: within noise);
//! - tracing the serde shape of a result type (nested structs and enums),
//!   once per process and type, vs the key of one small call.
//!
//! Medians.

use std::io::Read;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use memo_core::__private::{Pick, Schema, ViaWhole as _};
use memo_core::{DataFile, Key, Store, memoize, track};

static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().expect("dir"));
static STORE: LazyLock<Store> =
    LazyLock::new(|| Store::open(DIR.path().join("store")).expect("store"));

#[track]
fn scale(x: u64) -> u64 {
    x * 3
}

#[memoize(store = STORE)]
fn plain(x: u64) -> u64 {
    x * 3
}

#[memoize(store = STORE, ttl = "1h", uses(scale))]
fn timed(x: u64) -> u64 {
    scale(x)
}

/// A result type of the shape science code returns: nested structs,
/// enums, options, maps.
#[derive(serde::Serialize, serde::Deserialize)]
struct Report {
    name: String,
    fits: Vec<Fit>,
    notes: Option<std::collections::BTreeMap<String, Vec<f64>>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Fit {
    method: Method,
    coefficients: Vec<f64>,
    residual: f64,
    converged: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
enum Method {
    Exact,
    Ridge { lambda: f64 },
    Lasso(f64, u32),
    Nested(Option<Box<Method>>),
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median time per call of `f` over `rounds` rounds of `n` calls.
fn per_call(rounds: usize, n: u32, mut f: impl FnMut(u32)) -> Duration {
    median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                for i in 0..n {
                    f(i);
                }
                t.elapsed() / n
            })
            .collect(),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mb: usize = std::env::var("MEMO_BENCH_DATA_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let path = DIR.path().join("data.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        for _ in 0..mb {
            f.write_all(&chunk).expect("write");
        }
    }
    // Settled (its change is older than a kernel tick), so its digest is kept.
    std::thread::sleep(Duration::from_millis(1100));

    let t = Instant::now();
    let mut h = blake3::Hasher::new();
    let mut file = std::fs::File::open(&path).expect("open");
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    std::hint::black_box(h.finalize());
    let raw = t.elapsed();

    let t = Instant::now();
    std::hint::black_box(Key::of(&DataFile::new(&path)));
    let first = t.elapsed();

    let later = per_call(5, 10_000, |_| {
        std::hint::black_box(Key::of(&DataFile::new(&path)));
    });
    let stat = per_call(5, 10_000, |_| {
        std::hint::black_box(std::fs::metadata(&path).expect("stat"));
    });

    println!("| workload | memo | baseline in the same run | ratio | target |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| `DataFile` of a {mb} MiB file, first key | {first:.2?} | read + blake3 of the file: {raw:.2?} | {:.2}x the time | |",
        first.as_secs_f64() / raw.as_secs_f64()
    );
    println!(
        "| `DataFile`, unchanged, each later key | {later:.2?} | `stat` of the file: {stat:.2?} | {:.2}x the time | <= 10 µs |",
        later.as_secs_f64() / stat.as_secs_f64()
    );

    for i in 0..1000_u64 {
        plain(i);
        timed(i);
    }
    let plain_hit = per_call(7, 1000, |i| {
        std::hint::black_box(plain(u64::from(i)));
    });
    let timed_hit = per_call(7, 1000, |i| {
        std::hint::black_box(timed(u64::from(i)));
    });
    println!(
        "| memoized hit with `ttl` and `uses` | {timed_hit:.2?} | plain memoized hit: {plain_hit:.2?} | {:.2}x the time | within noise |",
        timed_hit.as_secs_f64() / plain_hit.as_secs_f64()
    );

    let t = Instant::now();
    let mut s = Schema::new();
    s.stored(Pick::<Report>::new().stored());
    std::hint::black_box(s.finish());
    let traced = t.elapsed();
    let key = per_call(5, 10_000, |i| {
        std::hint::black_box(Key::of(&(i, "fit")));
    });
    println!(
        "| schema of `Report` (3 structs, a 4-variant enum), first call only | {traced:.2?} | `Key::of` of a small call: {key:.2?} | {:.0}x, once per process | |",
        traced.as_secs_f64() / key.as_secs_f64()
    );
}
