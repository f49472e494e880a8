//! Many processes on one store: aggregate put throughput with 1, 2 and 4
//! writer processes (100 B and 1 MiB values), and hit latency p50/p99 with
//! and without another process writing. Writers are this binary re-run with
//! `MEMO_BENCH_ROLE`. Prints a table.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use memo_core::{Durability, Key, Store};
use rand::{Rng, SeedableRng, rngs::StdRng};

const HIT_ENTRIES: u32 = 100_000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Ok(role) = std::env::var("MEMO_BENCH_ROLE") {
        return child(&role);
    }
    println!("aggregate put throughput (Durability::Flush), wall time from spawn to last exit:");
    for (size, per_proc) in [(100_usize, 100_000_u32), (1 << 20, 300)] {
        let mut one = 0.0;
        for procs in [1_u32, 2, 4] {
            let dir = tempfile::tempdir().expect("dir");
            Store::open(dir.path()).expect("store");
            let t = Instant::now();
            let kids: Vec<Child> = (0..procs)
                .map(|p| {
                    spawn("writer", dir.path())
                        .env("MEMO_BENCH_ME", p.to_string())
                        .env("MEMO_BENCH_SIZE", size.to_string())
                        .env("MEMO_BENCH_N", per_proc.to_string())
                        .spawn()
                        .expect("spawn")
                })
                .collect();
            for mut k in kids {
                assert!(k.wait().expect("wait").success());
            }
            let secs = t.elapsed().as_secs_f64();
            let puts = f64::from(procs * per_proc) / secs;
            if procs == 1 {
                one = puts;
            }
            println!(
                "  {:>7} B x {procs} process(es): {:>9.0} puts/s  {:>7.1} MB/s  ({:.2}x one process)",
                size,
                puts,
                puts * size as f64 / 1e6,
                puts / one
            );
        }
    }

    durable();

    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).expect("store");
    for i in 0..HIT_ENTRIES {
        store.put_bytes(&Key::of(&i), &[i as u8; 100]).expect("put");
    }
    let keys: Vec<Key> = (0..HIT_ENTRIES).map(|i| Key::of(&i)).collect();
    println!("hit latency, 100 B values, random keys over {HIT_ENTRIES} entries:");
    let quiet = latencies(&store, &keys);
    println!(
        "  no writer:                  p50 {:>6.0} ns  p99 {:>6.0} ns",
        quiet.0, quiet.1
    );
    let mut writer = spawn("busy-writer", dir.path()).spawn().expect("spawn");
    std::thread::sleep(Duration::from_millis(200));
    let busy = latencies(&store, &keys);
    std::fs::write(dir.path().join("STOP"), b"").expect("stop");
    writer.wait().expect("wait");
    println!(
        "  another process writing:    p50 {:>6.0} ns  p99 {:>6.0} ns  ({:.2}x, {:.2}x)",
        busy.0,
        busy.1,
        busy.0 / quiet.0,
        busy.1 / quiet.1
    );
}

/// Durable 100 B puts from 1 and 4 threads of one process (which share
/// syncs), and from 4 processes.
fn durable() {
    const SECS: f64 = 3.0;
    println!("durable put throughput (Durability::Sync, 100 B), {SECS} s each:");
    let mut one = 0.0;
    for threads in [1_u64, 4] {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::builder(dir.path())
            .durability(Durability::Sync)
            .open()
            .expect("store");
        let t = Instant::now();
        let done: u64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|me| {
                    let store = &store;
                    s.spawn(move || {
                        let mut n = 0_u64;
                        while t.elapsed().as_secs_f64() < SECS {
                            store
                                .put_bytes(&Key::of(&(me, n)), &[1u8; 100])
                                .expect("put");
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("join")).sum()
        });
        let rate = done as f64 / t.elapsed().as_secs_f64();
        if threads == 1 {
            one = rate;
        }
        println!(
            "  {threads} thread(s):   {rate:>8.0} puts/s  ({:.2}x one thread)",
            rate / one
        );
    }
    let dir = tempfile::tempdir().expect("dir");
    Store::open(dir.path()).expect("store");
    let t = Instant::now();
    let kids: Vec<Child> = (0..4)
        .map(|p| {
            spawn("durable-writer", dir.path())
                .env("MEMO_BENCH_ME", p.to_string())
                .env("MEMO_BENCH_SECS", SECS.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut done = 0_u64;
    for k in kids {
        let out = k.wait_with_output().expect("wait");
        done += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
    }
    let rate = done as f64 / t.elapsed().as_secs_f64();
    println!(
        "  4 processes: {rate:>8.0} puts/s  ({:.2}x one thread)",
        rate / one
    );
}

/// p50 and p99 of single lookups, in nanoseconds.
fn latencies(store: &Store, keys: &[Key]) -> (f64, f64) {
    let mut rng = StdRng::seed_from_u64(3);
    let mut ns: Vec<f64> = (0..300_000)
        .map(|_| {
            let k = &keys[rng.gen_range(0..keys.len())];
            let t = Instant::now();
            let hit = store.get_bytes(k).expect("get").is_some();
            let e = t.elapsed().as_nanos() as f64;
            assert!(hit);
            e
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    (ns[ns.len() / 2], ns[ns.len() * 99 / 100])
}

fn spawn(role: &str, dir: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("exe"));
    c.env("MEMO_BENCH_ROLE", role)
        .env("MEMO_BENCH_DIR", dir)
        .stdout(Stdio::null());
    c
}

fn child(role: &str) {
    let dir = std::env::var("MEMO_BENCH_DIR").expect("dir");
    let store = Store::open(&dir).expect("store");
    let var = |n: &str| {
        std::env::var(n)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    match role {
        "writer" => {
            let (me, size, n) = (
                var("MEMO_BENCH_ME"),
                var("MEMO_BENCH_SIZE") as usize,
                var("MEMO_BENCH_N"),
            );
            let value = vec![me as u8; size];
            for i in 0..n {
                store.put_bytes(&Key::of(&(me, i)), &value).expect("put");
            }
        }
        "durable-writer" => {
            let store = Store::builder(&dir)
                .durability(Durability::Sync)
                .open()
                .expect("store");
            let me = var("MEMO_BENCH_ME");
            let secs: f64 = std::env::var("MEMO_BENCH_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(3.0);
            let t = Instant::now();
            let mut n = 0_u64;
            while t.elapsed().as_secs_f64() < secs {
                store
                    .put_bytes(&Key::of(&("p", me, n)), &[1u8; 100])
                    .expect("put");
                n += 1;
            }
            println!("{n}");
        }
        "busy-writer" => {
            let stop = Path::new(&dir).join("STOP");
            let value = [1u8; 100];
            let mut i = 0_u64;
            while !stop.exists() {
                for _ in 0..1000 {
                    i += 1;
                    store
                        .put_bytes(&Key::of(&("busy", i)), &value)
                        .expect("put");
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}
