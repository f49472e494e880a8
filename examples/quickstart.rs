//! An expensive Monte Carlo estimate, memoized with `#[memoize]`.
//!
//! The first run computes each estimate (about a second each); every later
//! call, in this run or the next, loads it in microseconds. Run it twice:
//!
//! ```text
//! cargo run --release --example quickstart
//! cargo run --release --example quickstart
//! ```
//!
//! The store is the global one: `$MEMO_DIR`, else `.memo` in the working
//! directory; with `MEMO_REMOTE=file:///shared/dir` it shares results with
//! every machine pointing there (`fetched` marks one another computed).
//! Edit `estimate_pi` and its old results are no longer used.

use std::time::Instant;

use memo_core::{Store, memoize};

/// Estimates pi from `samples` random points in the unit square (a
/// xorshift generator seeded with `seed`, so the result is reproducible).
#[memoize(helpers)]
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

fn main() {
    let samples = 150_000_000_u64;
    for seed in [1_u64, 2, 3] {
        // Only to say which it was: the call below needs no check.
        let local = estimate_pi_is_cached(samples, seed);
        let fetched_before = Store::global().stats().remote_hits;
        let t = Instant::now();
        let pi = estimate_pi(samples, seed);
        let how = if local {
            "loaded  "
        } else if Store::global().stats().remote_hits > fetched_before {
            // From the remote tier (`MEMO_REMOTE`): another machine's result.
            "fetched "
        } else {
            "computed"
        };
        println!("seed {seed}: pi ~ {pi:.6}  {how} in {:>10.2?}", t.elapsed());
    }
    let f = estimate_pi_stats();
    println!(
        "estimate_pi: {} results stored, {:.1?} of computing saved per full reload",
        f.entries, f.compute_time
    );
    let store = Store::global();
    if let Some(dir) = store.dir() {
        let s = store.stats();
        println!(
            "store {}: {} entries, {} hits, {} misses, {} bytes on disk",
            dir.display(),
            s.entries,
            s.hits,
            s.misses,
            s.bytes
        );
    }
}
