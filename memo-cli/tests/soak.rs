//! Guards "no call ever hangs" (issue 25): processes of several threads
//! each put, get, `get_or_compute`, remove, sweep, grow, evict, compact,
//! trim, verify and clear one store, while the parent kills workers with
//! SIGKILL at random moments and runs `memo stats` and `memo verify`
//! against the same directory. Every call is watched: one that makes no
//! progress for `MEMO_SOAK_STALL_SECS` (default 30) fails the run, naming
//! the process, thread and call, with every thread's stack when gdb is
//! there to print it. Every value read must be the exact one written for
//! its key.
//!
//! `MEMO_SOAK_SECS` sets the length (default 45: CI-sized, long enough for
//! dozens of kills, growths and evictions); `MEMO_SOAK_SECS=1800` is the
//! long run.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memo_core::{Key, Policy, Store, memoize};
use memo_tests::XorShift;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const PROCESSES: usize = 3;
const THREADS: usize = 4;
/// The size limit of the soaked store: small enough that eviction (and so
/// compaction of the segments it empties) runs all the time.
const MAX_BYTES: u64 = 24 << 20;

fn open(dir: &Path) -> Store {
    Store::builder(dir)
        .max_bytes(MAX_BYTES)
        .policy(Policy::Lru)
        .open()
        .unwrap()
}

/// The value of key number `i`: its length and bytes follow from `i`, so a
/// reader can check any hit exactly. Mostly small, some mid-size, a few
/// blobs (larger than a segment record can be).
fn value(i: u64) -> Vec<u8> {
    let len = match i % 97 {
        0 => (2 << 20) + (i % 1000) as usize,
        1..=4 => 20_000 + (i % 5000) as usize,
        _ => (i % 200) as usize,
    };
    let seed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|j| (seed >> (j % 57)) as u8 ^ j as u8)
        .collect()
}

static SOAK_STORE: LazyLock<Store> =
    LazyLock::new(|| open(Path::new(&std::env::var_os("MEMO_SOAK_DIR").unwrap())));

/// The sweep's function: its result follows from its input.
#[memoize(store = SOAK_STORE, map)]
fn swept(x: u64) -> Vec<u64> {
    std::thread::sleep(Duration::from_micros(200));
    vec![x; (x % 50) as usize]
}

/// What a worker thread is doing now: the call's number (0: none) and
/// when it started (ms since the worker started).
struct Watch {
    call: AtomicU64,
    since: AtomicU64,
    calls: AtomicU64,
    longest_ms: AtomicU64,
    /// The call (its number in `CALLS`) that took `longest_ms`.
    longest_op: AtomicU64,
}

const CALLS: [&str; 11] = [
    "put",
    "get",
    "get_bytes",
    "get_or_compute",
    "remove",
    "sweep",
    "trim",
    "verify",
    "stats",
    "clear",
    "contains",
];

/// The body of a worker process (this test binary re-run).
#[test]
fn soak_worker() {
    if std::env::var_os("MEMO_SOAK_DIR").is_none() {
        return;
    }
    let me = env_u64("MEMO_SOAK_WORKER", 0);
    let stall = Duration::from_secs(env_u64("MEMO_SOAK_STALL_SECS", 30));
    let status = PathBuf::from(std::env::var_os("MEMO_SOAK_STATUS").unwrap());
    let store = &*SOAK_STORE;
    let start = Instant::now();
    let watches: Vec<Watch> = (0..THREADS)
        .map(|_| Watch {
            call: AtomicU64::new(0),
            since: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            longest_ms: AtomicU64::new(0),
            longest_op: AtomicU64::new(0),
        })
        .collect();
    let ms = || start.elapsed().as_millis() as u64;
    std::thread::scope(|s| {
        for (t, w) in watches.iter().enumerate() {
            let ms = &ms;
            s.spawn(move || {
                let mut rng = XorShift::new(me * 1000 + t as u64 + u64::from(std::process::id()));
                loop {
                    let op = pick(&mut rng);
                    w.since.store(ms(), Ordering::Relaxed);
                    w.call.store(op + 1, Ordering::Relaxed);
                    one_call(store, op, &mut rng);
                    let took = ms().saturating_sub(w.since.load(Ordering::Relaxed));
                    if took > w.longest_ms.fetch_max(took, Ordering::Relaxed) {
                        w.longest_op.store(op, Ordering::Relaxed);
                    }
                    w.calls.fetch_add(1, Ordering::Relaxed);
                    w.call.store(0, Ordering::Relaxed);
                }
            });
        }
        // The watchdog: status for the parent every 200 ms; a stalled call
        // ends the process with a report.
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = ms();
            let calls: u64 = watches
                .iter()
                .map(|w| w.calls.load(Ordering::Relaxed))
                .sum();
            let (longest, op) = watches
                .iter()
                .map(|w| {
                    (
                        w.longest_ms.load(Ordering::Relaxed),
                        w.longest_op.load(Ordering::Relaxed),
                    )
                })
                .max()
                .unwrap_or((0, 0));
            let _ = std::fs::write(&status, format!("{calls} {longest} {op}\n"));
            for (t, w) in watches.iter().enumerate() {
                let call = w.call.load(Ordering::Relaxed);
                let idle = now.saturating_sub(w.since.load(Ordering::Relaxed));
                if call != 0 && idle > stall.as_millis() as u64 {
                    let what = CALLS[call as usize - 1];
                    let mut err = std::io::stderr().lock();
                    let _ = writeln!(
                        err,
                        "STALLED: worker {me} (pid {}) thread {t}: `{what}` made no progress for {idle} ms",
                        std::process::id()
                    );
                    let _ = writeln!(err, "{}", stacks());
                    std::process::exit(3);
                }
            }
        }
    });
}

/// The next call, by its number in `CALLS`: mostly puts and gets, now and
/// then the maintenance that contends with them.
fn pick(rng: &mut XorShift) -> u64 {
    match rng.below(1000) {
        0..=349 => 0,
        350..=599 => 1,
        600..=749 => 2,
        750..=899 => 3,
        900..=969 => 4,
        970..=984 => 10,
        985..=990 => 5,
        991..=994 => 8,
        995..=997 => 6,
        998 => 7,
        _ => 9,
    }
}

/// Makes call `op` (a number in `CALLS`) on `store`, checking what it reads.
fn one_call(store: &Store, op: u64, rng: &mut XorShift) {
    // Keys over a wide range, so the index keeps growing
    // between evictions and clears.
    let i = rng.below(200_000);
    let k = Key::of(&("soak", i));
    match op {
        0 => store.put_bytes(&k, &value(i)).unwrap(),
        1 | 2 => {
            if let Some(b) = store.get_bytes(&k).unwrap() {
                assert!(*b == value(i)[..], "wrong bytes for key {i}");
            }
        }
        3 => {
            // A few keys, so processes race for them.
            let j = rng.below(64);
            let got: Vec<u64> = store
                .get_or_compute(&Key::of(&("flight", j)), || {
                    std::thread::sleep(Duration::from_millis(2));
                    vec![j; 100]
                })
                .unwrap();
            assert_eq!(got, vec![j; 100]);
        }
        4 => {
            store.remove(&k).unwrap();
        }
        5 => {
            let base = rng.below(10_000);
            let out = swept_map((base..base + 40).map(|x| (x,)));
            for (x, v) in (base..).zip(out) {
                assert_eq!(v, vec![x; (x % 50) as usize]);
            }
        }
        6 => store.trim().unwrap(),
        // Its findings mid-run may include what a killed
        // writer left for the next writer to repair: the
        // parent checks the store clean at the end.
        7 => {
            let _ = store.verify().unwrap();
        }
        8 => {
            let _ = store.stats();
            let _ = store.len();
        }
        // Rare, so the index grows between clears.
        9 if rng.below(40) == 0 => store.clear().unwrap(),
        9 => {
            let _ = store.len();
        }
        _ => {
            let _ = store.contains(&k);
        }
    }
}

/// Every thread's stack of this process, if gdb is there to print them.
fn stacks() -> String {
    let pid = std::process::id().to_string();
    match Command::new("gdb")
        .args(["-p", &pid, "-batch", "-ex", "thread apply all bt"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => format!("(no stacks: gdb could not be run: {e})"),
    }
}

struct Worker {
    child: Child,
    status: PathBuf,
    /// Calls and the longest call of the worker's earlier lives.
    calls: u64,
}

fn spawn(dir: &Path, status: &Path, n: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "soak_worker", "--nocapture", "--test-threads=1"])
        .env("MEMO_SOAK_DIR", dir)
        .env("MEMO_SOAK_WORKER", n.to_string())
        .env("MEMO_SOAK_STATUS", status)
        .env("MEMO_PROGRESS", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A worker's calls, its longest call (ms) and which call that was.
fn read_status(path: &Path) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut it = text.split_whitespace().map(|w| w.parse().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// A worker that ended on its own failed: its stderr says why.
fn fail_with(child: Child, n: usize) -> ! {
    let out = child.wait_with_output().unwrap();
    panic!(
        "worker {n} exited on its own ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn no_call_stalls_under_threads_processes_kills_and_maintenance() {
    if std::env::var_os("MEMO_SOAK_DIR").is_some() {
        return;
    }
    let secs = env_u64("MEMO_SOAK_SECS", 45);
    let t = memo_tests::tempdir();
    let dir = t.path().join("store");
    // Opened here first, so every worker adopts the same limits.
    let parent = open(&dir);
    let memo = env!("CARGO_BIN_EXE_memo");
    let mut rng = XorShift::new(env_u64("MEMO_SOAK_SEED", 0x5eed));
    let mut workers: Vec<Worker> = (0..PROCESSES)
        .map(|n| {
            let status = t.path().join(format!("status-{n}"));
            Worker {
                child: spawn(&dir, &status, n),
                status,
                calls: 0,
            }
        })
        .collect();
    let start = Instant::now();
    let (mut kills, mut cli_runs, mut longest_ms, mut longest_op) = (0_u64, 0_u64, 0_u64, 0_u64);
    let mut grew_to = 0_u64;
    let mut longest_cli = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(100 + rng.below(900)));
        for (n, w) in workers.iter_mut().enumerate() {
            if w.child.try_wait().unwrap().is_some() {
                let child = std::mem::replace(&mut w.child, spawn(&dir, &w.status, n));
                fail_with(child, n);
            }
        }
        // Kill one at random (SIGKILL: mid-put, mid-growth, mid-flight,
        // whatever it was doing), and start another in its place.
        let n = rng.below(PROCESSES as u64) as usize;
        let w = &mut workers[n];
        let (calls, longest, op) = read_status(&w.status);
        w.calls += calls;
        if longest > longest_ms {
            (longest_ms, longest_op) = (longest, op);
        }
        let _ = std::fs::remove_file(&w.status);
        w.child.kill().unwrap();
        let _ = w.child.wait();
        kills += 1;
        w.child = spawn(&dir, &w.status, n);
        // The command against the same store, and this process's own view.
        let cmd = if rng.below(2) == 0 { "stats" } else { "verify" };
        let t0 = Instant::now();
        let out = Command::new(memo)
            .args(["--dir", dir.to_str().unwrap(), cmd])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        longest_cli = longest_cli.max(t0.elapsed());
        assert!(
            out.status.success() || cmd == "verify",
            "memo {cmd} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cli_runs += 1;
        grew_to = grew_to.max(parent.stats().index_bytes);
    }
    for (n, w) in workers.iter_mut().enumerate() {
        if w.child.try_wait().unwrap().is_some() {
            let child = std::mem::replace(&mut w.child, spawn(&dir, &w.status, n));
            fail_with(child, n);
        }
        let (calls, longest, op) = read_status(&w.status);
        w.calls += calls;
        if longest > longest_ms {
            (longest_ms, longest_op) = (longest, op);
        }
        w.child.kill().unwrap();
        let _ = w.child.wait();
    }
    let calls: u64 = workers.iter().map(|w| w.calls).sum();
    // A write repairs what the last killed writer left half done.
    parent.put_bytes(&Key::of("after"), b"soak").unwrap();
    let stats = parent.stats();
    let report = parent.verify().unwrap();
    println!(
        "soak: {secs} s, {PROCESSES} processes x {THREADS} threads: {calls} calls, {kills} kills, \
         {cli_runs} memo stats/verify runs (longest {} ms), longest call {longest_ms} ms (`{}`), \
         largest index {grew_to} bytes, {} evictions, {} entries at the end",
        longest_cli.as_millis(),
        CALLS[usize::try_from(longest_op)
            .unwrap_or(0)
            .min(CALLS.len() - 1)],
        stats.evictions,
        stats.entries,
    );
    assert!(calls > 0 && kills > 0);
    assert!(
        report.is_clean(),
        "the store is damaged after the soak: {report:?}"
    );
}
