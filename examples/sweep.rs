//! A parameter sweep: a grid of simulations run with `<name>_map`, which
//! loads what is stored and computes the rest in parallel, each cell once
//! across threads and processes.
//!
//! ```text
//! cargo run --release --example sweep            # computes the grid
//! cargo run --release --example sweep            # loads all of it
//! cargo run --release --example sweep -- --race  # a fresh grid, and a second
//!                                                # process started halfway
//!                                                # takes half of what is left
//!                                                # (each process on half the
//!                                                # cores, as on two machines)
//! ```
//!
//! The store is `target/memo-sweep`. A progress bar shows on a terminal
//! (`MEMO_PROGRESS=0` hides it).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use memo_core::memoize;

/// Cells this process computed (the rest it loaded, or another process
/// computed).
static COMPUTED: AtomicU32 = AtomicU32::new(0);

/// A toy epidemic: the share of a population of 200,000 ever infected,
/// for an infection rate and a seed (reproducible), simulated for 400
/// days. About 0.1 s per cell.
#[memoize(dir = "target/memo-sweep", map, helpers)]
fn simulate(rate_pct: u32, seed: u64, round: u32) -> f64 {
    let _ = round; // which grid: `--race` sweeps a fresh one each time
    COMPUTED.fetch_add(1, Ordering::Relaxed);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1_u64 << 53) as f64
    };
    let n = 200_000_u32;
    let (mut infected, mut ever) = (10_u32, 10_u32);
    for _day in 0..400 {
        let susceptible = n - ever;
        let p = f64::from(rate_pct) / 100.0 * f64::from(infected) / f64::from(n);
        let new = (0..susceptible).filter(|_| next() < p).count() as u32;
        let recovered = (0..infected).filter(|_| next() < 0.1).count() as u32;
        infected = infected + new - recovered;
        ever += new;
    }
    f64::from(ever) / f64::from(n)
}

fn grid(round: u32) -> Vec<(u32, u64, u32)> {
    (1..=8)
        .flat_map(|r| (0..8).map(move |s| (r * 5, s, round)))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let round = args
        .iter()
        .position(|a| a == "--round")
        .and_then(|i| args.get(i + 1))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    if args.iter().any(|a| a == "--race") {
        race();
        return;
    }
    let cells = grid(round);
    let t = Instant::now();
    let shares = simulate_map(cells.clone());
    let took = t.elapsed();
    if round == 0 {
        for (row, chunk) in shares.chunks(8).enumerate() {
            let mean = chunk.iter().sum::<f64>() / chunk.len() as f64;
            println!(
                "rate {:>2}%  ever infected {:>5.1}%",
                (row + 1) * 5,
                100.0 * mean
            );
        }
    }
    println!(
        "{} cells in {took:.2?}: {} computed by this process (pid {}), the rest loaded",
        cells.len(),
        COMPUTED.load(Ordering::Relaxed),
        std::process::id()
    );
}

/// A fresh grid swept by this process, and by a second one started once
/// this one is about halfway.
fn race() {
    let round = u32::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() % 1_000_000),
    )
    .unwrap_or(1)
    .max(1);
    let me = std::env::current_exe().expect("this example's path");
    // Each process gets half of the machine's cores, as two machines of a
    // cluster would each have their own.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = (cores / 2).max(1);
    let start = || {
        Command::new(&me)
            .args(["--round", &round.to_string()])
            .env("RAYON_NUM_THREADS", threads.to_string())
            .spawn()
            .expect("start")
    };
    let t = Instant::now();
    let first = start();
    // A cell takes about 0.09 s of a core: halfway is 64 x 0.09 / 2
    // seconds in, on the first process's cores.
    std::thread::sleep(Duration::from_secs_f64(64.0 * 0.09 / threads as f64 / 2.0));
    println!("a second process starts after {:.1?}", t.elapsed());
    let second = start();
    for mut p in [first, second] {
        let _ = p.wait();
    }
}
