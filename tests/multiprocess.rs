//! Guards sharing between processes: what one process commits, another
//! sees, including while it is still writing. Children are this test binary
//! re-run with a role in `MEMO_TEST_ROLE`.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::process::Command;

use memo_core::{Key, Store};
use memo_tests::tempdir;

const N: u32 = 3000;

fn value(i: u32) -> Vec<u8> {
    let len = if i.is_multiple_of(500) {
        (2 << 20) + 100
    } else if i.is_multiple_of(250) {
        100_000
    } else {
        (i % 300) as usize
    };
    (0..len).map(|j| (j as u32).wrapping_mul(i) as u8).collect()
}

fn child(role: &str, dir: &std::path::Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env("MEMO_TEST_ROLE", role)
        .env("MEMO_TEST_DIR", dir)
        // The child's own test-harness lines would read as this run's.
        .stdout(std::process::Stdio::null());
    c
}

/// Not a test of its own: the body of the child processes.
#[test]
fn child_role() {
    let Ok(role) = std::env::var("MEMO_TEST_ROLE") else {
        return;
    };
    // Single flight by a lock file per key (the fallback) when asked.
    let store = Store::builder(std::env::var("MEMO_TEST_DIR").unwrap())
        .lock_files(std::env::var_os("MEMO_TEST_LOCK_FILES").is_some())
        .open()
        .unwrap();
    match role.as_str() {
        "put-get" => put_get(&store),
        "writer" => {
            for i in 0..N {
                store.put_bytes(&Key::of(&i), &value(i)).unwrap();
            }
        }
        "writer-of" => {
            // One of several concurrent writers: its own keys, sizes 0 to
            // 200 KiB, some replaced, some removed.
            let me: u32 = std::env::var("MEMO_TEST_WRITER").unwrap().parse().unwrap();
            for i in 0..puts_per_writer() {
                let k = Key::of(&(me, i));
                store.put_bytes(&k, &mixed(me, i)).unwrap();
                if i % 10 == 9 {
                    assert!(store.remove(&Key::of(&(me, i - 5))).unwrap());
                }
            }
        }
        "mixed-reader" => {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            let stop = std::path::Path::new(&std::env::var("MEMO_TEST_DIR").unwrap()).join("STOP");
            let mut hits = 0_u64;
            while !stop.exists() && std::time::Instant::now() < deadline {
                for me in 0..WRITERS {
                    for i in (0..puts_per_writer()).step_by(7) {
                        if let Some(b) = store.get_bytes(&Key::of(&(me, i))).unwrap() {
                            assert!(
                                *b == mixed(me, i)[..],
                                "wrong bytes for writer {me} entry {i}"
                            );
                            hits += 1;
                        }
                    }
                }
            }
            assert!(hits > 0, "the reader never saw an entry");
        }
        "computer" => {
            // Asks for one slow value; logs when it computes and when it has it.
            let log = std::env::var("MEMO_TEST_LOG").unwrap();
            // One write per line (atomic with O_APPEND): processes share the log.
            let append = |line: &str| {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap();
                f.write_all(format!("{line} {}\n", std::process::id()).as_bytes())
                    .unwrap();
            };
            let compute_ms: u64 = std::env::var("MEMO_TEST_COMPUTE_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            append("start");
            let v: Vec<u64> = store
                .get_or_compute(&Key::of("slow"), || {
                    append("computing");
                    std::thread::sleep(std::time::Duration::from_millis(compute_ms));
                    (0..1000).collect()
                })
                .unwrap();
            assert_eq!(v, (0..1000).collect::<Vec<u64>>());
            append("got");
        }
        "grower" => {
            // Grows the index (and so replaces the table every other
            // process maps) many times over.
            for i in 0..grower_puts() {
                store.put(&Key::of(&("grow", i)), &i).unwrap();
            }
        }
        "reader" => {
            // Reads while the writer writes: every hit must be exact.
            let mut seen = 0;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while seen < N && std::time::Instant::now() < deadline {
                seen = 0;
                for i in 0..N {
                    if let Some(b) = store.get_bytes(&Key::of(&i)).unwrap() {
                        assert!(*b == value(i)[..], "wrong bytes for {i}");
                        seen += 1;
                    }
                }
            }
            assert_eq!(seen, N, "the reader saw every committed entry");
        }
        other => panic!("unknown role {other}"),
    }
}

const WRITERS: u32 = 4;

/// Puts per concurrent writer: `MEMO_MP_PUTS`, default 1500 (CI-sized).
fn puts_per_writer() -> u32 {
    std::env::var("MEMO_MP_PUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

/// Deterministic values from 0 B to 200 KiB, most small.
fn mixed(me: u32, i: u32) -> Vec<u8> {
    let k = Key::of(&(me, i, "v"));
    let b = k.as_bytes();
    let len = match b[0] % 16 {
        0 => usize::from(b[1]) * 800,
        1 => 65_530 + usize::from(b[1] % 12),
        _ => usize::from(b[1]),
    };
    (0..len).map(|j| b[j % 32].wrapping_add(j as u8)).collect()
}

#[test]
fn four_writers_and_two_readers_share_one_store() {
    let dir = tempdir();
    let readers: Vec<_> = (0..2)
        .map(|_| child("mixed-reader", dir.path()).spawn().unwrap())
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            child("writer-of", dir.path())
                .env("MEMO_TEST_WRITER", w.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut w in writers {
        assert!(w.wait().unwrap().success(), "a writer failed");
    }
    std::fs::write(dir.path().join("STOP"), b"").unwrap();
    for mut r in readers {
        assert!(
            r.wait().unwrap().success(),
            "a reader saw wrong bytes or nothing"
        );
    }
    let store = Store::open(dir.path()).unwrap();
    let n = puts_per_writer();
    let mut live = 0;
    for me in 0..WRITERS {
        for i in 0..n {
            let removed = i % 10 == 4 && i + 5 < n;
            let got = store.get_bytes(&Key::of(&(me, i))).unwrap();
            if removed {
                assert!(got.is_none(), "writer {me} entry {i} was removed");
            } else {
                assert!(*got.unwrap() == mixed(me, i)[..], "writer {me} entry {i}");
                live += 1;
            }
        }
    }
    assert_eq!(store.len(), live);
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:#?}");
}

fn log_lines(log: &std::path::Path, what: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(what))
        .count()
}

#[test]
fn four_processes_compute_one_slow_value_once() {
    compute_once_among(4, false);
}

#[test]
fn four_processes_compute_one_slow_value_once_with_lock_files() {
    compute_once_among(4, true);
}

/// Sixteen processes racing one call (of 1 s): one computes, and all have
/// the value about when it is done.
#[test]
fn sixteen_processes_race_one_call() {
    let t = std::time::Instant::now();
    compute_once_among(16, false);
    let took = t.elapsed();
    eprintln!("16 processes, one 1 s computation: all done in {took:.2?}");
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");
}

fn compute_once_among(n: usize, lock_files: bool) {
    let dir = tempdir();
    let log = dir.path().join("compute.log");
    let kids: Vec<_> = (0..n)
        .map(|_| {
            let mut c = child("computer", dir.path());
            c.env("MEMO_TEST_LOG", &log);
            if lock_files {
                c.env("MEMO_TEST_LOCK_FILES", "1");
            }
            c.spawn().unwrap()
        })
        .collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    assert_eq!(log_lines(&log, "got"), n);
    assert_eq!(
        log_lines(&log, "computing"),
        1,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let locks: Vec<_> = std::fs::read_dir(dir.path().join("locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "flight")
        .collect();
    assert!(
        locks.is_empty(),
        "compute lock files do not pile up: {locks:?}"
    );
}

#[test]
fn a_waiter_computes_when_the_computing_process_is_killed() {
    waiter_takes_over(false);
}

#[test]
fn a_waiter_computes_when_the_computing_process_is_killed_with_lock_files() {
    waiter_takes_over(true);
}

fn waiter_takes_over(lock_files: bool) {
    let dir = tempdir();
    let log = dir.path().join("compute.log");
    let computer = |dir: &std::path::Path, log: &std::path::Path| {
        let mut c = child("computer", dir);
        c.env("MEMO_TEST_LOG", log);
        if lock_files {
            c.env("MEMO_TEST_LOCK_FILES", "1");
        }
        c
    };
    // The first computes until it is killed, however slow the machine.
    let mut first = computer(dir.path(), &log)
        .env("MEMO_TEST_COMPUTE_MS", "600000")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while log_lines(&log, "computing") == 0 {
        assert!(std::time::Instant::now() < deadline, "nobody computed");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let waiters: Vec<_> = (0..3)
        .map(|_| computer(dir.path(), &log).spawn().unwrap())
        .collect();
    while log_lines(&log, "start") < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the waiters did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(100)); // waiters are blocked on the lock
    first.kill().unwrap();
    first.wait().unwrap();
    for mut w in waiters {
        assert!(w.wait().unwrap().success());
    }
    assert_eq!(log_lines(&log, "got"), 3);
    assert_eq!(
        log_lines(&log, "computing"),
        2,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

/// Two threads, each putting its keys and reading each back at once; a
/// miss there is a lost put.
fn put_get(store: &Store) {
    let me: u64 = std::env::var("MEMO_TEST_WRITER").unwrap().parse().unwrap();
    std::thread::scope(|s| {
        for t in 0..2_u64 {
            s.spawn(move || {
                for i in 0..300_u64 {
                    let k = Key::of(&(me, t, i));
                    store.put(&k, &i).unwrap();
                    assert_eq!(
                        store.get::<u64>(&k).unwrap(),
                        Some(i),
                        "process {me} thread {t}: put {i} not read back"
                    );
                }
            });
        }
    });
}

/// Found by the sweep tests: a thread whose read raced another thread's
/// look at a segment's length took a record just written for damage, and
/// the next write dropped its slot. Fresh stores, two processes of two
/// threads each, every put read back at once.
#[test]
fn every_put_is_read_back_at_once_under_threads_and_processes() {
    let rounds: u32 = std::env::var("MEMO_PUTGET_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for round in 0..rounds {
        let dir = tempdir();
        let kids: Vec<_> = (0..2)
            .map(|id| {
                child("put-get", dir.path())
                    .env("MEMO_TEST_WRITER", id.to_string())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut k in kids {
            assert!(k.wait().unwrap().success(), "round {round}");
        }
        assert_eq!(Store::open(dir.path()).unwrap().len(), 2 * 2 * 300);
    }
}

#[test]
fn a_second_process_reads_what_the_first_wrote() {
    let dir = tempdir();
    let mut reader = child("reader", dir.path()).spawn().unwrap();
    let status = child("writer", dir.path()).status().unwrap();
    assert!(status.success());
    assert!(reader.wait().unwrap().success());
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.len(), u64::from(N));
    for i in 0..N {
        assert!(*store.get_bytes(&Key::of(&i)).unwrap().unwrap() == value(i)[..]);
    }
    assert!(store.verify().unwrap().is_clean());
}

/// Puts of the growing process in the index-reload test:
/// `MEMO_RELOAD_PUTS`, default 150,000 (the figure that hung within seconds
/// before the fix).
fn grower_puts() -> u64 {
    std::env::var("MEMO_RELOAD_PUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150_000)
}

/// Issue 25: eight threads reading and writing while another process grows
/// the index. Every growth replaces the table, and every thread that
/// notices reloads it; before the fix the second thread to notice the same
/// replacement waited on a lock it held, for ever. A watchdog turns a hang
/// into a failure that names the stalled thread's last call.
#[test]
fn threads_reload_the_index_while_another_process_grows_it() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let mut grower = child("grower", dir.path()).spawn().unwrap();
    let done = AtomicBool::new(false);
    // Per thread: calls made, and when the last one returned (ms since start).
    let progress: Vec<(AtomicU64, AtomicU64)> = (0..8)
        .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
        .collect();
    let start = Instant::now();
    let limit = Duration::from_secs(60);
    std::thread::scope(|s| {
        for (t, (calls, last)) in progress.iter().enumerate() {
            let (store, done) = (&store, &done);
            s.spawn(move || {
                let mut i = 0_u64;
                while !done.load(Ordering::Relaxed) {
                    let k = Key::of(&("reload", t, i % 2000));
                    if i.is_multiple_of(4) {
                        store.put(&k, &i).unwrap();
                    } else {
                        let _ = store.get::<u64>(&k).unwrap();
                    }
                    let _ = store.get::<u64>(&Key::of(&("grow", i))).unwrap();
                    i += 1;
                    calls.store(i, Ordering::Relaxed);
                    last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                }
            });
        }
        // The watchdog: the grower finishing ends the run; a thread whose
        // last call returned more than `limit` ago fails it.
        loop {
            std::thread::sleep(Duration::from_millis(100));
            if let Some(status) = grower.try_wait().unwrap() {
                assert!(status.success(), "the growing process failed");
                break;
            }
            let now = start.elapsed().as_millis() as u64;
            for (t, (calls, last)) in progress.iter().enumerate() {
                let idle = now.saturating_sub(last.load(Ordering::Relaxed));
                if idle > limit.as_millis() as u64 {
                    let _ = grower.kill();
                    eprintln!(
                        "thread {t} made no progress for {idle} ms after {} calls: \
                         a get or put hung (issue 25)",
                        calls.load(Ordering::Relaxed)
                    );
                    // The stalled threads never return: end the process
                    // rather than join them.
                    std::process::exit(101);
                }
            }
        }
        done.store(true, Ordering::Relaxed);
    });
    for (t, (calls, _)) in progress.iter().enumerate() {
        assert!(calls.load(Ordering::Relaxed) > 0, "thread {t} made no call");
    }
    assert!(store.len() >= grower_puts());
}
