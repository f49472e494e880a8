//! Growth without stalls: 100-byte puts into one store up to 10M entries
//! (`MEMO_BENCH_GROWTH_ENTRIES`), timing every put while another process
//! reads the store (`MEMO_BENCH_GROWTH_READERS`, default 1: random keys
//! among those put so far); the store's disk use at
//! 5M entries; and the cost of a hit while the index grows, against a hit
//! in a quiet store, measured in the same run.
//!
//! Prints a report; run with `cargo bench --bench growth`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use memo_core::{Key, Store};

const LEN: usize = 100;
/// Lookups timed together in the hit measurement.
const BATCH: u64 = 256;
/// Where disk use is measured (the point of comparison).
const DISK_AT: u64 = 5_000_000;

fn value(i: u64) -> [u8; LEN] {
    let mut v = [0x5a; LEN];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

fn du(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    let own = m.blocks() * 512;
    if m.is_dir() {
        own + std::fs::read_dir(p).map_or(0, |rd| rd.flatten().map(|e| du(&e.path())).sum())
    } else {
        own
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1e3
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes benches this way
    }
    if let Some(dir) = std::env::var_os(READER) {
        read_forever(Path::new(&dir));
        return;
    }
    puts();
    hits_during_growth();
}

/// Set in a reader process of `puts` to the store's directory.
const READER: &str = "MEMO_BENCH_GROWTH_READER_DIR";

/// Another process reading the store `puts` grows: random keys among
/// those put so far (`len`, looked at every 1024 reads), until killed.
fn read_forever(dir: &Path) {
    let store = Store::open(dir).expect("reader's store");
    let (mut seed, mut count, mut hits) = (11_u64, 1_u64, 0_u64);
    loop {
        for _ in 0..1024 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let k = (seed >> 33) % count;
            if store.get_bytes(&Key::of(&k)).expect("get").is_some() {
                hits += 1;
            }
        }
        count = store.len().max(1);
        std::hint::black_box(hits);
    }
}

/// Reader processes of the growing store (`MEMO_BENCH_GROWTH_READERS`,
/// default 1), killed when dropped.
struct Readers(Vec<std::process::Child>);

impl Readers {
    fn start(dir: &Path) -> Readers {
        let n = env("MEMO_BENCH_GROWTH_READERS", 1);
        Readers(
            (0..n)
                .map(|_| {
                    std::process::Command::new(std::env::current_exe().expect("exe"))
                        .env(READER, dir)
                        .spawn()
                        .expect("reader process")
                })
                .collect(),
        )
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every put timed, from an empty store to `MEMO_BENCH_GROWTH_ENTRIES`.
fn puts() {
    let n = env("MEMO_BENCH_GROWTH_ENTRIES", 10_000_000);
    let d = tempfile::tempdir().expect("dir");
    let store = Store::open(d.path()).expect("store");
    let readers = Readers::start(d.path());
    let mut lat = Vec::with_capacity(n as usize);
    let mut slow = Vec::new();
    let mut disk = None;
    // Disk use over key + value bytes every 250k entries past 1M, and
    // whether a growth was moving its old table then.
    let mut samples = Vec::new();
    let start = Instant::now();
    let mut paused = Duration::ZERO;
    for i in 0..n {
        if i >= 1_000_000 && i.is_multiple_of(250_000) {
            let t = Instant::now();
            let bytes = du(d.path());
            let ratio = bytes as f64 / (i as f64 * (LEN + 32) as f64);
            samples.push((ratio, d.path().join("index.prev").exists()));
            if i == DISK_AT {
                disk = Some((bytes, store.stats().index_bytes));
            }
            paused += t.elapsed();
        }
        let key = Key::of(&i);
        let v = value(i);
        let t = Instant::now();
        store.put_bytes(&key, &v).expect("put");
        let ns = t.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32;
        if ns > 10_000_000 {
            slow.push((i, ns));
        }
        lat.push(ns);
    }
    let secs = start.elapsed().saturating_sub(paused).as_secs_f64();
    let reading = readers.0.len();
    drop(readers);
    let mut sorted = lat.clone();
    sorted.sort_unstable();
    let over = |us: u32| lat.iter().filter(|&&l| l > us * 1000).count();
    println!(
        "puts of {LEN} B into one store, 0 -> {n} entries, {reading} other process(es) reading it:"
    );
    println!(
        "  rate {:.0}k puts/s; median {:.2} us, p99 {:.2} us, p99.9 {:.2} us, p99.99 {:.1} us, worst {:.2} ms",
        n as f64 / secs / 1e3,
        pct(&sorted, 0.5),
        pct(&sorted, 0.99),
        pct(&sorted, 0.999),
        pct(&sorted, 0.9999),
        f64::from(sorted[sorted.len() - 1]) / 1e6,
    );
    println!(
        "  puts over 100 us: {}, over 1 ms: {}, over 10 ms: {} {:?}",
        over(100),
        over(1000),
        over(10_000),
        slow.iter()
            .take(8)
            .map(|&(i, ns)| format!("#{i} {:.1} ms", f64::from(ns) / 1e6))
            .collect::<Vec<_>>()
    );
    if !samples.is_empty() {
        let quiet: Vec<f64> = samples.iter().filter(|s| !s.1).map(|s| s.0).collect();
        let moving: Vec<f64> = samples.iter().filter(|s| s.1).map(|s| s.0).collect();
        let range = |v: &[f64]| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(0.0, f64::max);
            format!("{lo:.3}x-{hi:.3}x")
        };
        println!(
            "  disk use every 250k entries from 1M: {} between growths ({} samples), {} while a growth moved its old table ({} samples)",
            range(&quiet),
            quiet.len(),
            range(&moving),
            moving.len()
        );
    }
    if let Some((bytes, index)) = disk {
        let payload = DISK_AT as f64 * (LEN + 32) as f64;
        println!(
            "  disk use at {DISK_AT} entries: {:.1} MB = {:.3}x payload (key + value, {:.0} MB), \
             {:.2}x the values alone; index {:.1} B per entry",
            bytes as f64 / 1e6,
            bytes as f64 / payload,
            payload / 1e6,
            bytes as f64 / (DISK_AT as f64 * LEN as f64),
            index as f64 / DISK_AT as f64,
        );
    }
}

/// Hits on a store of `MEMO_BENCH_GROWTH_HIT_ENTRIES` entries: quiet, then
/// while a writer adds entries through at least one growth of the index.
/// A growth is the span in which the index's size is changing (the old and
/// the new table both exist), as `Stats::index_bytes` shows it.
fn hits_during_growth() {
    let base = env("MEMO_BENCH_GROWTH_HIT_ENTRIES", 800_000);
    let dir = tempfile::tempdir().expect("dir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    for i in 0..base {
        store.put_bytes(&Key::of(&i), &value(i)).expect("put");
    }
    // Per-hit nanoseconds of one batch of lookups, stamped with its end.
    let batch = |s: &Store, seed: &mut u64| -> f64 {
        let t = Instant::now();
        for _ in 0..BATCH {
            *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let k = (*seed >> 33) % base;
            let v = s.get_bytes(&Key::of(&k)).expect("get").expect("hit");
            assert_eq!(v[0], k.to_le_bytes()[0]);
        }
        t.elapsed().as_nanos() as f64 / BATCH as f64
    };
    let mut seed = 7;
    let quiet_until = Instant::now() + Duration::from_secs(2);
    let mut quiet = Vec::new();
    while Instant::now() < quiet_until {
        quiet.push(batch(&store, &mut seed));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            // (time of the sample before, time seen, index bytes) whenever
            // the index size changes; samples every 64 puts.
            let mut changes = vec![(0.0, 0.0, store.stats().index_bytes)];
            let mut last = 0.0;
            let mut i = base;
            while !stop.load(Ordering::Relaxed) {
                store.put_bytes(&Key::of(&i), &value(i)).expect("put");
                i += 1;
                if i.is_multiple_of(64) {
                    let now = epoch.elapsed().as_secs_f64();
                    let b = store.stats().index_bytes;
                    if b != changes[changes.len() - 1].2 {
                        changes.push((last, now, b));
                    }
                    last = now;
                }
            }
            (i - base, changes)
        })
    };
    let mut busy = Vec::new();
    let until = Instant::now() + Duration::from_secs(env("MEMO_BENCH_GROWTH_HIT_SECS", 8));
    while Instant::now() < until {
        let t0 = epoch.elapsed().as_secs_f64();
        let b = batch(&store, &mut seed);
        busy.push((t0, epoch.elapsed().as_secs_f64(), b));
    }
    stop.store(true, Ordering::Relaxed);
    let (added, changes) = writer.join().expect("writer");
    // A growth: from the sample before the index grew to the sample that
    // saw it settle, the old table gone (for a table replaced in one step,
    // the same change).
    let mut windows = Vec::new();
    let mut at = 1;
    while at < changes.len() {
        let from = changes[at].0;
        let mut end = at;
        // Sizes rise while both tables exist and fall when the old one goes.
        if end + 1 < changes.len() && changes[end + 1].2 < changes[end].2 {
            end += 1;
        }
        windows.push((from, changes[end].1));
        at = end + 1;
    }
    // A batch counts as during a growth if it overlaps one.
    let in_growth = |a: f64, b: f64| windows.iter().any(|&(s, e)| a <= e && b >= s);
    let median = |mut v: Vec<f64>| {
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let growing: Vec<f64> = busy
        .iter()
        .filter(|b| in_growth(b.0, b.1))
        .map(|b| b.2)
        .collect();
    let steady: Vec<f64> = busy
        .iter()
        .filter(|b| !in_growth(b.0, b.1))
        .map(|b| b.2)
        .collect();
    let (g, s, q) = (growing.len(), steady.len(), quiet.len());
    let (mg, ms, mq) = (median(growing), median(steady), median(quiet));
    println!(
        "hits on a store of {base} entries (batches of {BATCH} random keys; a writer added {added} entries, {} growths):",
        windows.len()
    );
    println!("  quiet store:              median {mq:.0} ns per hit ({q} batches)");
    println!(
        "  writer busy, no growth:   median {ms:.0} ns per hit ({s} batches), {:.2}x quiet",
        ms / mq
    );
    println!(
        "  during a growth:          median {mg:.0} ns per hit ({g} batches), {:.2}x quiet",
        mg / mq
    );
}
