//! Eviction policies on synthetic memoization traces, against exact
//! offline simulations, in one run.
//!
//! Traces: Zipf(s) popularity over 100k keys (s = 0.8, 1.0, 1.2); each key
//! has a log-normal value size (median 1 KiB) and a log-normal compute cost
//! (median 10 ms) independent of its size: the mixed-cost trace. Each
//! request is `get`; a miss "computes" (costs its key's cost) and puts.
//! Budgets: 1%, 5% and 20% of the working set's bytes.
//!
//! For each policy, the real store (`max_bytes` = budget) is replayed and
//! compared with an exact in-memory simulation of the same policy, at the
//! same nominal budget and at the store's mean live value bytes (what its
//! record headers, index, dead bytes and low-water mark leave for values),
//! and with Belady's optimum (furthest next use first). Reported: hit ratio,
//! and compute time saved (the cost of every hit).
//!
//! Then: a 100 B put with eviction active vs without.
//!
//! `MEMO_TRACE_LEN` sets the requests per trace (default 300k).

#![allow(
    missing_docs,
    clippy::cast_possible_wrap,
    clippy::many_single_char_names,
    reason = "a benchmark binary; counts fit; the simulation reads as the paper's formulas"
)]

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use memo_core::{Key, Policy, Store};

const KEYS: usize = 100_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1_u64 << 53) as f64
    }
    /// Log-normal with this median and sigma.
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        let z = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
        median * (sigma * z).exp()
    }
}

struct Trace {
    requests: Vec<u32>,
    size: Vec<u32>,
    /// Microseconds.
    cost: Vec<u32>,
}

impl Trace {
    fn new(s: f64, len: usize, seed: u64) -> Trace {
        let mut rng = Rng(seed | 1);
        let size: Vec<u32> = (0..KEYS)
            .map(|_| rng.lognormal(1024.0, 1.0).clamp(16.0, 60_000.0) as u32)
            .collect();
        let cost: Vec<u32> = (0..KEYS)
            .map(|_| rng.lognormal(10_000.0, 1.5).clamp(10.0, 1e8) as u32)
            .collect();
        // Popularity rank -> key, shuffled so rank and key are unrelated.
        let mut perm: Vec<u32> = (0..KEYS as u32).collect();
        for i in (1..KEYS).rev() {
            perm.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        let mut cdf = Vec::with_capacity(KEYS);
        let mut total = 0.0;
        for r in 1..=KEYS {
            total += 1.0 / (r as f64).powf(s);
            cdf.push(total);
        }
        let requests = (0..len)
            .map(|_| {
                let x = rng.unit() * total;
                let r = cdf.partition_point(|&c| c < x).min(KEYS - 1);
                perm[r]
            })
            .collect();
        Trace {
            requests,
            size,
            cost,
        }
    }

    fn working_set(&self) -> u64 {
        self.size.iter().map(|&s| u64::from(s)).sum()
    }
}

#[derive(Default, Clone, Copy)]
struct Outcome {
    hits: u64,
    saved_us: u64,
    mean_live: u64,
}

impl Outcome {
    fn ratio(&self, n: usize) -> f64 {
        self.hits as f64 / n as f64 * 100.0
    }
}

/// An exact simulation: priority order in a `BTreeSet`, byte capacity.
#[derive(Clone, Copy, PartialEq)]
enum Sim {
    Lru,
    Lfu,
    Gdsf,
    Belady,
}

fn simulate(t: &Trace, sim: Sim, capacity: u64) -> Outcome {
    // Next use of each request, for Belady.
    let next: Vec<usize> = if sim == Sim::Belady {
        let mut next = vec![usize::MAX; t.requests.len()];
        let mut seen: HashMap<u32, usize> = HashMap::new();
        for (i, &k) in t.requests.iter().enumerate().rev() {
            next[i] = seen.insert(k, i).unwrap_or(usize::MAX);
        }
        next
    } else {
        Vec::new()
    };
    // key -> its current priority tuple
    let mut cached: HashMap<u32, (u64, u64)> = HashMap::new();
    let mut order: BTreeSet<(u64, u64, u32)> = BTreeSet::new();
    let mut freq: HashMap<u32, u64> = HashMap::new();
    let (mut used, mut l) = (0_u64, 0.0_f64);
    let mut out = Outcome::default();
    for (i, &k) in t.requests.iter().enumerate() {
        let size = u64::from(t.size[k as usize]);
        let cost = u64::from(t.cost[k as usize]);
        let f = {
            let f = freq.entry(k).or_insert(0);
            *f += 1;
            *f
        };
        let hit = cached.contains_key(&k);
        if hit {
            out.hits += 1;
            out.saved_us += cost;
        }
        if let Some(p) = cached.remove(&k) {
            order.remove(&(p.0, p.1, k));
        } else {
            used += size;
        }
        let p = match sim {
            Sim::Lru => (i as u64, 0),
            // In-cache frequency, ties by recency.
            Sim::Lfu => (if hit { f } else { 1 }, i as u64),
            Sim::Gdsf => {
                let in_cache = if hit { f } else { 1 };
                let h = l + in_cache as f64 * cost as f64 / size as f64;
                (h.to_bits(), i as u64)
            }
            Sim::Belady => (u64::MAX - next[i] as u64, 0),
        };
        if matches!(sim, Sim::Lfu | Sim::Gdsf) && !hit {
            freq.insert(k, 1);
        }
        cached.insert(k, p);
        order.insert((p.0, p.1, k));
        while used > capacity {
            let Some(&(a, b, victim)) = order.iter().next() else {
                break;
            };
            order.remove(&(a, b, victim));
            cached.remove(&victim);
            used -= u64::from(t.size[victim as usize]);
            if sim == Sim::Gdsf {
                l = f64::from_bits(a);
            }
        }
    }
    out.mean_live = capacity;
    out
}

fn replay(t: &Trace, policy: Policy, budget: u64) -> Outcome {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::builder(dir.path())
        .max_bytes(budget)
        .policy(policy)
        .open()
        .expect("store");
    let mut out = Outcome::default();
    let (mut live_sum, mut samples) = (0_u64, 0_u64);
    let payload = vec![0x5a_u8; 60_000];
    for (i, &k) in t.requests.iter().enumerate() {
        let key = Key::of(&k);
        let cost = t.cost[k as usize];
        if store.get_bytes(&key).expect("get").is_some() {
            out.hits += 1;
            out.saved_us += u64::from(cost);
        } else {
            let size = t.size[k as usize] as usize;
            store
                .put_with_cost(
                    &key,
                    &payload[..size],
                    Duration::from_micros(u64::from(cost)),
                )
                .ok();
        }
        if i % 1000 == 999 {
            let s = store.stats();
            // Live value bytes: live bytes less a record header each.
            let live = s.bytes.saturating_sub(s.dead_bytes + s.index_bytes);
            live_sum += live.saturating_sub(s.entries * 48);
            samples += 1;
        }
    }
    out.mean_live = live_sum / samples.max(1);
    out
}

fn put_cost() {
    let n = 100_000_u32;
    let value = [7_u8; 100];
    let run = |limit: Option<u64>| {
        let dir = tempfile::tempdir().expect("dir");
        let mut b = Store::builder(dir.path());
        if let Some(m) = limit {
            b = b.max_bytes(m);
        }
        let store = b.open().expect("store");
        let t = Instant::now();
        for i in 0..n {
            store.put_bytes(&Key::of(&i), &value).expect("put");
        }
        let took = t.elapsed();
        (took, store.stats())
    };
    for _ in 0..2 {
        let (free, _) = run(None);
        // 2 MiB holds about 13k of these: eviction runs all the time.
        let (bounded, s) = run(Some(2 << 20));
        println!(
            "put 100 B x {n}: no limit {:.0}k/s, max_bytes 2 MiB {:.0}k/s ({} evictions): {:.2}x the time",
            f64::from(n) / free.as_secs_f64() / 1e3,
            f64::from(n) / bounded.as_secs_f64() / 1e3,
            s.evictions,
            bounded.as_secs_f64() / free.as_secs_f64()
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let len =
        std::env::var("MEMO_TRACE_LEN").map_or(300_000, |v| v.parse().expect("MEMO_TRACE_LEN"));
    println!("trace: {len} requests over {KEYS} keys; hit ratio % (compute saved, s)");
    println!(
        "{:<5} {:>6} | {:<28} | {:<40} | {:<40} | {:<28}",
        "zipf",
        "budget",
        "LRU: store / exact / at live",
        "LFU: store / exact / at live",
        "CostAware: store / exact GDSF / at live",
        "Belady"
    );
    for s in [0.8, 1.0, 1.2] {
        let t = Trace::new(s, len, 42);
        let ws = t.working_set();
        for pct in [1_u64, 5, 20] {
            let budget = ws * pct / 100;
            let cell =
                |o: Outcome| format!("{:5.1} ({:6.0})", o.ratio(len), o.saved_us as f64 / 1e6);
            let row = |policy: Policy, sim: Sim| {
                let store = replay(&t, policy, budget);
                let exact = simulate(&t, sim, budget);
                let at_live = simulate(&t, sim, store.mean_live);
                format!(
                    "{} / {:5.1} / {:5.1}",
                    cell(store),
                    exact.ratio(len),
                    at_live.ratio(len)
                )
            };
            let lru = row(Policy::Lru, Sim::Lru);
            let lfu = row(Policy::Lfu, Sim::Lfu);
            let gdsf = row(Policy::CostAware, Sim::Gdsf);
            let belady = simulate(&t, Sim::Belady, budget);
            println!(
                "{s:<5} {pct:>5}% | {lru} | {lfu} | {gdsf} | {}",
                cell(belady)
            );
        }
        // What an unbounded cache would save: every repeat request.
        let mut seen = vec![false; KEYS];
        let ceiling: u64 = t
            .requests
            .iter()
            .map(|&k| {
                let repeat = std::mem::replace(&mut seen[k as usize], true);
                if repeat {
                    u64::from(t.cost[k as usize])
                } else {
                    0
                }
            })
            .sum();
        println!(
            "{s:<5}  any   | an unbounded cache saves {:.0} s",
            ceiling as f64 / 1e6
        );
    }
    put_cost();
}
