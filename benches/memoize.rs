//! `#[memoize]` against its floors and peers, measured in one run:
//!
//! - a hit through the attribute vs `Store::get` of a precomputed key (the
//!   attribute's overhead: hashing the function and arguments, the call
//!   machinery), vs `Key::of` + `Store::get` (what a hand-written lookup
//!   costs), vs the `cached` crate's in-memory `#[cached]` (what persistence
//!   costs against not having it);
//! - a hit whose argument is 64 MiB of `f64` (a slice, and an `Array`
//!   hashed on rayon's threads), vs raw single-threaded blake3 of its bytes;
//! - a miss whose body is trivial (what memo adds to a computation: the
//!   lookup, single flight across threads and processes, the put) vs a
//!   `Store::put` of the same value, on ext4 and on tmpfs.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use std::hint::black_box;
use std::sync::LazyLock;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use memo_core::{Array, Key, Store, memoize};

static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().expect("dir"));
static STORE: LazyLock<Store> = LazyLock::new(|| Store::open(DIR.path()).expect("store"));

/// Small arguments and value, as in the target.
#[memoize(store = STORE)]
fn small(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A large argument and a small value.
#[memoize(store = STORE)]
fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// A large `Array` argument: hashed as its bytes, on rayon's threads.
#[memoize(store = STORE)]
fn array_mean(xs: Array<f64>) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The same with the in-process tier in front of the store.
#[memoize(store = STORE, memory = 4096)]
fn small_hot(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cached::proc_macro::cached(max_size = 4096)]
fn small_in_memory(x: u64) -> u64 {
    x.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

const N: u64 = 1024;

fn hits(c: &mut Criterion) {
    let mut g = c.benchmark_group("memoize_hit_small");
    let plain_dir = tempfile::tempdir().expect("dir");
    let plain = Store::open(plain_dir.path()).expect("store");
    let keys: Vec<Key> = (0..N).map(|x| Key::of(&x)).collect();
    for x in 0..N {
        small(x);
        small_hot(x);
        small_in_memory(x);
        plain
            .put(&keys[x as usize], &x.wrapping_mul(3))
            .expect("put");
    }
    let mut i = 0;
    let mut next = move || {
        i = (i + 1) % N;
        i
    };
    g.bench_function("memo #[memoize] hit", |b| {
        b.iter(|| black_box(small(next())));
    });
    g.bench_function("memo #[memoize(memory = 4096)] hit", |b| {
        b.iter(|| black_box(small_hot(next())));
    });
    g.bench_function("memo Store::get, key precomputed", |b| {
        b.iter(|| black_box(plain.get::<u64>(&keys[next() as usize]).expect("get")));
    });
    g.bench_function("memo Key::of + Store::get", |b| {
        b.iter(|| black_box(plain.get::<u64>(&Key::of(&next())).expect("get")));
    });
    g.bench_function("cached #[cached] hit (in memory, not persistent)", |b| {
        b.iter(|| black_box(small_in_memory(next())));
    });
    g.finish();
}

fn large_argument(c: &mut Criterion) {
    let mut g = c.benchmark_group("memoize_arg_64MiB");
    g.sample_size(20);
    let floats: Vec<f64> = (0..(64 << 20) / 8).map(|i| f64::from(i) * 0.5).collect();
    let _ = mean(&floats);
    g.bench_function("memo #[memoize] hit, &[f64] argument", |b| {
        b.iter(|| black_box(mean(&floats)));
    });
    g.bench_function("Key::of(Vec<f64>)", |b| {
        b.iter(|| black_box(Key::of(&floats)));
    });
    let raw: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
    g.bench_function("floor: blake3 of the Vec<f64>'s bytes", |b| {
        b.iter(|| black_box(blake3::hash(&raw)));
    });
    let array = Array::from(floats.clone());
    let _ = array_mean(array.clone());
    g.bench_function("memo #[memoize] hit, Array<f64> argument", |b| {
        b.iter(|| black_box(array_mean(array.clone())));
    });
    g.bench_function("Key::of(Array<f64>)", |b| {
        b.iter(|| black_box(Key::of(&array)));
    });
    g.finish();
}

/// A store on the disk of the temp dir (ext4 on the CI machine), and one on
/// tmpfs where `/dev/shm` exists.
static DISK: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().expect("dir"));
static ON_DISK: LazyLock<Store> = LazyLock::new(|| Store::open(DISK.path()).expect("store"));
static SHM: LazyLock<Option<tempfile::TempDir>> =
    LazyLock::new(|| tempfile::tempdir_in("/dev/shm").ok());
static ON_SHM: LazyLock<Option<Store>> =
    LazyLock::new(|| SHM.as_ref().map(|d| Store::open(d.path()).expect("store")));

#[memoize(store = ON_DISK)]
fn inc_disk(x: u64) -> u64 {
    x + 1
}

/// The single flight memo used before byte-range locks: a lock file per
/// key (`StoreBuilder::lock_files`), measured in the same run.
static DISK_FILES: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("dir"));
static ON_DISK_FILES: LazyLock<Store> = LazyLock::new(|| {
    Store::builder(DISK_FILES.path())
        .lock_files(true)
        .open()
        .expect("store")
});

#[memoize(store = ON_DISK_FILES)]
fn inc_disk_files(x: u64) -> u64 {
    x + 1
}

#[memoize(store = ON_SHM.as_ref().expect("tmpfs store"))]
fn inc_shm(x: u64) -> u64 {
    x + 1
}

/// A file system's name, its store, and the memoized function on it.
type Target<'a> = (&'a str, &'a Store, fn(u64) -> u64);

fn misses(c: &mut Criterion) {
    let mut g = c.benchmark_group("memoize_miss_u64");
    let n = std::sync::atomic::AtomicU64::new(1 << 40);
    let next = || n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let fs: [Target<'_>; 3] = [
        ("ext4", &ON_DISK, inc_disk),
        (
            "ext4, lock file per key (before)",
            &ON_DISK_FILES,
            inc_disk_files,
        ),
        ("tmpfs", ON_SHM.as_ref().unwrap_or(&ON_DISK), inc_shm),
    ];
    for (fs, store, memoized) in fs {
        if fs == "tmpfs" && ON_SHM.is_none() {
            continue;
        }
        g.bench_function(format!("{fs}: memoized miss"), |b| {
            b.iter(|| black_box(memoized(next())));
        });
        g.bench_function(format!("{fs}: get_or_compute miss"), |b| {
            b.iter(|| {
                let x = next();
                black_box(store.get_or_compute(&Key::of(&x), || x + 1).expect("miss"))
            });
        });
        g.bench_function(format!("{fs}: Store::put of the same value"), |b| {
            b.iter(|| {
                let x = next();
                store.put(&Key::of(&x), &(x + 1)).expect("put");
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = hits, large_argument, misses
}
criterion_main!(benches);
