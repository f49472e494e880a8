//! An expensive Monte Carlo estimate, memoized in a store on disk.
//!
//! The first run computes each estimate (about a second each); every later
//! call, in this run or the next, loads it in microseconds. Run it twice:
//!
//! ```text
//! cargo run --release --example quickstart
//! cargo run --release --example quickstart
//! ```
//!
//! The store lives in `$MEMO_DIR`, else `target/memo-quickstart`.

use std::time::Instant;

use memo_core::{Key, Store};

/// Estimates pi from `samples` random points in the unit square (a
/// xorshift generator seeded with `seed`, so the result is reproducible).
fn estimate_pi(samples: u64, seed: u64) -> f64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1_u64 << 53) as f64
    };
    let inside = (0..samples).filter(|_| {
        let (a, b) = (next(), next());
        a * a + b * b <= 1.0
    });
    4.0 * inside.count() as f64 / samples as f64
}

fn main() -> memo_core::Result<()> {
    let dir = std::env::var_os("MEMO_DIR")
        .map_or_else(|| "target/memo-quickstart".into(), std::path::PathBuf::from);
    let store = Store::open(&dir)?;
    println!("store: {}", dir.display());
    for seed in [1_u64, 2, 3] {
        let samples = 150_000_000_u64;
        // The key names the function and its arguments.
        let key = Key::of(&("estimate_pi", samples, seed));
        let cached = store.contains(&key);
        let t = Instant::now();
        let pi = store.get_or_compute(&key, || estimate_pi(samples, seed))?;
        let took = t.elapsed();
        let how = if cached { "loaded  " } else { "computed" };
        println!("seed {seed}: pi ~ {pi:.6}  {how} in {took:>10.2?}");
    }
    let s = store.stats();
    println!(
        "store: {} entries, {} hits, {} misses, {} bytes on disk",
        s.entries, s.hits, s.misses, s.bytes
    );
    Ok(())
}
