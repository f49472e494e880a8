//! `#[memoize]` against its floors and peers, measured in one run:
//!
//! - a hit through the attribute vs `Store::get` of a precomputed key (the
//!   attribute's overhead: hashing the function and arguments, the call
//!   machinery), vs `Key::of` + `Store::get` (what a hand-written lookup
//!   costs), vs the `cached` crate's in-memory `#[cached]` (what persistence
//!   costs against not having it);
//! - a hit whose argument is 64 MiB of `f64`, vs raw blake3 of its bytes.

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use std::hint::black_box;
use std::sync::LazyLock;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use memo_core::{Key, Store, memoize};

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
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = hits, large_argument
}
criterion_main!(benches);
