//! `#[memoize(map)]`: a memoized function over many inputs. Results in
//! input order, stored ones loaded, the rest computed once in parallel;
//! `Result` bodies cache `Ok` only; a panic in one input does not lose the
//! others; two processes sweeping one grid split it.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use memo_core::{Store, memoize};

static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    std::env::var_os("MEMO_SWEEP_DIR").map_or_else(|| memo_tests::tempdir().keep(), PathBuf::from)
});
/// With `MEMO_SWEEP_REMOTE`, a remote tier behind it (a "machine").
static STORE: LazyLock<Store> = LazyLock::new(|| {
    let b = Store::builder(&*DIR);
    match std::env::var("MEMO_SWEEP_REMOTE") {
        Ok(url) => b.remote(&url).open().unwrap(),
        Err(_) => b.open().unwrap(),
    }
});
/// Tests share the store, and count bodies run: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

static SQUARES: AtomicU32 = AtomicU32::new(0);

#[memoize(store = STORE, map)]
fn square(x: u64) -> u64 {
    SQUARES.fetch_add(1, Ordering::Relaxed);
    x * x
}

#[test]
fn results_come_in_input_order_and_stored_ones_are_not_computed() {
    let _s = SERIAL.lock().unwrap();
    SQUARES.store(0, Ordering::Relaxed);
    // Half of them stored beforehand.
    for x in (0..200).step_by(2) {
        square(x);
    }
    assert_eq!(SQUARES.load(Ordering::Relaxed), 100);
    let inputs: Vec<(u64,)> = (0..200).rev().map(|x| (x,)).collect();
    let got = square_map(inputs);
    assert_eq!(got, (0..200).rev().map(|x| x * x).collect::<Vec<_>>());
    assert_eq!(
        SQUARES.load(Ordering::Relaxed),
        200,
        "each miss computed once"
    );
    // All stored now: nothing runs.
    assert_eq!(square_map((0..200).map(|x| (x,)))[199], 199 * 199);
    assert_eq!(SQUARES.load(Ordering::Relaxed), 200);
    // Duplicates in one sweep are computed once too.
    let dup = square_map([(1000,), (1000,), (1000,)]);
    assert_eq!(dup, vec![1_000_000; 3]);
    assert_eq!(SQUARES.load(Ordering::Relaxed), 201);
    assert!(square_map(Vec::<(u64,)>::new()).is_empty());
}

static TRIES: AtomicU32 = AtomicU32::new(0);

#[memoize(store = STORE, map)]
fn checked(x: u64, label: &str) -> Result<String, String> {
    TRIES.fetch_add(1, Ordering::Relaxed);
    if x.is_multiple_of(3) {
        Err(format!("{label}: {x} is a multiple of 3"))
    } else {
        Ok(format!("{label}-{x}"))
    }
}

#[test]
fn a_failure_is_that_inputs_result_and_is_not_stored() {
    let _s = SERIAL.lock().unwrap();
    TRIES.store(0, Ordering::Relaxed);
    let label = String::from("run");
    let inputs: Vec<(u64, &str)> = (0..30).map(|x| (x, label.as_str())).collect();
    let got = checked_map(inputs.clone());
    for (x, r) in got.iter().enumerate() {
        if x.is_multiple_of(3) {
            assert_eq!(r, &Err(format!("run: {x} is a multiple of 3")));
        } else {
            assert_eq!(r, &Ok(format!("run-{x}")));
        }
    }
    assert_eq!(TRIES.load(Ordering::Relaxed), 30);
    // Again: only the failures run again.
    checked_map(inputs);
    assert_eq!(TRIES.load(Ordering::Relaxed), 40);
}

static FRAGILE: AtomicU32 = AtomicU32::new(0);

#[memoize(store = STORE, map)]
fn fragile(x: u64) -> u64 {
    FRAGILE.fetch_add(1, Ordering::Relaxed);
    assert!(x != 13, "13 is unlucky");
    x + 1
}

#[test]
fn a_panic_in_one_input_keeps_the_others() {
    let _s = SERIAL.lock().unwrap();
    FRAGILE.store(0, Ordering::Relaxed);
    let panic = std::panic::catch_unwind(|| fragile_map((0..50).map(|x| (x,))));
    let message = panic.unwrap_err();
    assert_eq!(message.downcast_ref::<&str>(), Some(&"13 is unlucky"));
    assert_eq!(FRAGILE.load(Ordering::Relaxed), 50, "every input ran");
    // The other 49 were stored: only 13 runs again.
    let again = std::panic::catch_unwind(|| fragile_map((0..50).map(|x| (x,))));
    assert!(again.is_err());
    assert_eq!(FRAGILE.load(Ordering::Relaxed), 51);
    assert_eq!(fragile_map((14..16).map(|x| (x,))), vec![15, 16]);
    assert_eq!(FRAGILE.load(Ordering::Relaxed), 51);
}

#[derive(serde::Serialize)]
struct Grid {
    scale: u64,
}

impl Grid {
    #[memoize(store = STORE, map)]
    fn cell(&self, i: u64, j: u64) -> u64 {
        self.scale * (i * 100 + j)
    }
}

#[test]
fn methods_sweep_too() {
    let _s = SERIAL.lock().unwrap();
    let g = Grid { scale: 3 };
    let inputs: Vec<(u64, u64)> = (0..4).flat_map(|i| (0..4).map(move |j| (i, j))).collect();
    let got = g.cell_map(inputs.clone());
    let want: Vec<u64> = inputs.iter().map(|(i, j)| 3 * (i * 100 + j)).collect();
    assert_eq!(got, want);
    assert!(Grid::cell_is_cached_probe(&g));
}

impl Grid {
    /// Whether the sweep stored what a plain call finds.
    fn cell_is_cached_probe(g: &Grid) -> bool {
        let before = STORE.stats().misses;
        let _ = g.cell(3, 3);
        STORE.stats().misses == before
    }
}

/// The body of `two_processes_split_a_grid`'s children: a slow cell, each
/// computation logged with the process's id.
#[memoize(store = STORE, map)]
fn slow_cell(i: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(40));
    if let Some(log) = std::env::var_os("MEMO_SWEEP_LOG") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
            .unwrap();
        // One write of the whole line: appends of both processes interleave
        // by lines, not by pieces.
        f.write_all(format!("{} {i}\n", std::process::id()).as_bytes())
            .unwrap();
    }
    i * 7
}

#[test]
fn sweeper_role() {
    if std::env::var_os("MEMO_SWEEP_LOG").is_none() {
        return;
    }
    let got = slow_cell_map((0..60).map(|i| (i,)));
    assert_eq!(got, (0..60).map(|i| i * 7).collect::<Vec<_>>());
    let errors = STORE.stats().remote_errors;
    assert_eq!(errors, 0, "the remote tier failed {errors} times");
}

#[test]
fn two_processes_split_a_grid() {
    split_between_two(false);
}

/// The same with two "machines": each its own local store, one `file://`
/// remote tier between them, whose leases say who computes what.
#[test]
fn two_machines_split_a_grid() {
    split_between_two(true);
}

fn split_between_two(machines: bool) {
    let dir = memo_tests::tempdir();
    let log = dir.path().join("computed.log");
    let remote = format!("file://{}", dir.path().join("remote").display());
    let spawn = |name: &str| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["--exact", "sweeper_role", "--nocapture", "--test-threads=1"])
            .env("MEMO_SWEEP_LOG", &log)
            .env("RAYON_NUM_THREADS", "2")
            .stdout(std::process::Stdio::null());
        if machines {
            c.env("MEMO_SWEEP_DIR", dir.path().join(name))
                .env("MEMO_SWEEP_REMOTE", &remote);
        } else {
            c.env("MEMO_SWEEP_DIR", dir.path().join("store"));
        }
        c.spawn().unwrap()
    };
    let (mut a, mut b) = (spawn("a"), spawn("b"));
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let lines = std::fs::read_to_string(&log).unwrap();
    let mut cells = HashSet::new();
    let mut by_pid = std::collections::HashMap::<&str, u32>::new();
    for l in lines.lines() {
        let (pid, i) = l.split_once(' ').unwrap();
        assert!(
            cells.insert(i.to_owned()),
            "cell {i} computed twice:\n{lines}"
        );
        *by_pid.entry(pid).or_default() += 1;
    }
    assert_eq!(cells.len(), 60, "every cell computed once");
    assert_eq!(by_pid.len(), 2, "both processes took a share: {by_pid:?}");
    assert!(
        by_pid.values().all(|&n| n >= 10),
        "the grid was split, not taken by one: {by_pid:?}"
    );
}
