//! One "machine" of the remote-tier tests: a process with its own local
//! store and a shared remote, run by `tests/remote.rs`.
//!
//! `machine compute <dir> <url> <first> <count> <sleep_ms> <len> [opt=value...]`
//! computes (or loads) entries `first..first+count`, each a `len`-byte value
//! that takes `sleep_ms` to compute, and prints a line per entry
//! (`<i> computed` or `<i> loaded`; `computing <i>` when a computation
//! starts), checks every value, then prints its remote counters.
//! Values of 1 MiB and more are raw bytes (`put_bytes`, `get_bytes`).
//! Options: `secret=S`, `mode=ro`, `lease_ms=N`, `timeout_ms=N`,
//! `backoff_ms=N`, `max_bytes=N`, `compress=zstd[:N]`, `low=1` (values of
//! 4 bits of entropy a byte, which compress to about half).
//!
//! `machine installs <dir> <url> <count> <len> order|exit|kill` loads
//! entries `0..count` (put on the remote by an earlier `compute` run):
//! `order` then changes them right away, while their installs run in the
//! background, and checks that every change stands (`order ok`); `exit`
//! leaks its store and returns from `main` with the installs queued (the
//! exit hook installs them); `kill` prints `<i> loaded` per entry and
//! waits to be killed.
//!
//! `machine tokio` calls a `#[memoize]` function inside a tokio task (the
//! store and remote from `MEMO_DIR` and `MEMO_REMOTE`).

#![allow(
    clippy::unwrap_used,
    reason = "a test program fails loudly on the first unexpected error"
)]

use std::io::Write;
use std::time::{Duration, Instant};

use memo_core::{Key, RemoteMode, Store, memoize};

/// Bits of each value byte kept (`low=1`: the low four).
static MASK: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0xff);

fn mask() -> u8 {
    MASK.load(std::sync::atomic::Ordering::Relaxed)
}

/// The value of entry `i`, `len` bytes.
fn value(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let m = mask();
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8 & m
        })
        .collect()
}

/// Values this large go through `put_bytes`/`get_bytes`.
const BIG: usize = 1 << 20;

/// A large value, made at memory speed (blake3's output stream).
fn big_value(i: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    blake3::Hasher::new()
        .update(&i.to_le_bytes())
        .finalize_xof()
        .fill(&mut v);
    let m = mask();
    if m != 0xff {
        for b in &mut v {
            *b &= m;
        }
    }
    v
}

#[memoize]
fn slow_square(x: u64) -> u64 {
    println!("computing square {x}");
    std::thread::sleep(Duration::from_millis(50));
    x * x
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("tokio") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let v = rt.block_on(async { tokio::spawn(async { slow_square(12) }).await.unwrap() });
        say(&format!("square {v}"));
        return;
    }
    if args.first().map(String::as_str) == Some("installs") {
        installs(&args[1..]);
        return;
    }
    let [op, dir, url, first, count, sleep_ms, len, opts @ ..] = &args[..] else {
        panic!(
            "usage: machine compute <dir> <url> <first> <count> <sleep_ms> <len> [opt=value...]"
        );
    };
    assert_eq!(op, "compute");
    let (first, count): (u64, u64) = (first.parse().unwrap(), count.parse().unwrap());
    let sleep = Duration::from_millis(sleep_ms.parse().unwrap());
    let len: usize = len.parse().unwrap();
    let mut b = Store::builder(dir).remote(url);
    for o in opts {
        let (k, v) = o.split_once('=').unwrap();
        let ms = || Duration::from_millis(v.parse().unwrap());
        b = match k {
            "secret" => b.remote_secret(v.as_bytes()),
            "mode" => b.remote_mode(if v == "ro" {
                RemoteMode::ReadOnly
            } else {
                RemoteMode::ReadWrite
            }),
            "lease_ms" => b.remote_lease(ms()),
            "timeout_ms" => b.remote_timeout(ms()),
            "backoff_ms" => b.remote_backoff(ms()),
            "max_bytes" => b.max_bytes(v.parse().unwrap()),
            "compress" => b.compress(v.parse().unwrap()),
            "low" => {
                MASK.store(0x0f, std::sync::atomic::Ordering::Relaxed);
                b
            }
            _ => panic!("unknown option {k}"),
        };
    }
    let store = b.open().unwrap();
    let t = Instant::now();
    for i in first..first + count {
        let key = Key::of(&("remote-test", i, len));
        if len >= BIG {
            // Raw bytes: a debug build would spend minutes in serde on a
            // byte-by-byte Vec<u8>, not in memo.
            let v = big_value(i, len);
            if let Some(b) = store.get_bytes(&key).unwrap() {
                assert!(*b == v[..], "entry {i}: wrong bytes");
                say(&format!("{i} loaded"));
            } else {
                store.put_bytes(&key, &v).unwrap();
                say(&format!("{i} computed"));
            }
            continue;
        }
        let mut computed = false;
        let v: Vec<u8> = store
            .get_or_compute(&key, || {
                computed = true;
                say(&format!("computing {i}"));
                std::thread::sleep(sleep);
                value(i, len)
            })
            .unwrap();
        assert!(v == value(i, len), "entry {i}: wrong bytes");
        say(&format!(
            "{i} {}",
            if computed { "computed" } else { "loaded" }
        ));
    }
    let s = store.stats();
    say(&format!(
        "stats remote_hits={} remote_misses={} remote_errors={} uploads={} elapsed_ms={}",
        s.remote_hits,
        s.remote_misses,
        s.remote_errors,
        s.uploads,
        t.elapsed().as_millis()
    ));
}

/// `machine installs`: remote hits whose local installs run in the
/// background, and what must hold whatever their timing.
fn installs(args: &[String]) {
    let [dir, url, count, len, mode] = args else {
        panic!("usage: machine installs <dir> <url> <count> <len> order|exit|kill");
    };
    let (count, len): (u64, usize) = (count.parse().unwrap(), len.parse().unwrap());
    let key = |i: u64| Key::of(&("remote-test", i, len));
    let store = Store::builder(dir).remote(url).open().unwrap();
    let load = |store: &Store, i: u64| {
        let v: Vec<u8> = store.get(&key(i)).unwrap().expect("on the remote");
        assert!(v == value(i, len), "entry {i}: wrong bytes");
    };
    match mode.as_str() {
        "order" => {
            // Each entry hit, hit again at once (found whether installed
            // yet or not, without asking the remote), then changed while
            // its install is most likely still queued: a third replaced,
            // a third removed.
            let newer = |i: u64| value(i + 1_000_000, len);
            for i in 0..count {
                load(&store, i);
                load(&store, i);
                match i % 3 {
                    0 => store.put(&key(i), &newer(i)).unwrap(),
                    1 => assert!(
                        store.remove(&key(i)).unwrap(),
                        "entry {i} not there to remove"
                    ),
                    _ => {}
                }
            }
            let hits = store.stats().remote_hits;
            assert_eq!(hits, count, "the second hits asked the remote");
            drop(store);
            // Every change stands in the local store alone.
            let local = Store::open(dir).unwrap();
            for i in 0..count {
                let v: Option<Vec<u8>> = local.get(&key(i)).unwrap();
                match i % 3 {
                    0 => assert!(
                        v == Some(newer(i)),
                        "entry {i}: a put was overwritten by an install"
                    ),
                    1 => assert!(v.is_none(), "entry {i}: a removed entry came back"),
                    _ => assert!(v == Some(value(i, len)), "entry {i}: not installed"),
                }
            }
            say("order ok");
        }
        "exit" => {
            // Never dropped, as a `static` store: only the exit hook can
            // install what is queued when `main` returns.
            let store: &'static Store = Box::leak(Box::new(store));
            for i in 0..count {
                load(store, i);
            }
            say("exit loaded");
        }
        "kill" => {
            for i in 0..count {
                load(&store, i);
                say(&format!("{i} loaded"));
            }
            std::thread::sleep(Duration::from_secs(60));
        }
        _ => panic!("unknown mode {mode}"),
    }
}
