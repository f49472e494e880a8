//! Guards invariants 1-3 against `kill -9`: a writer killed at a random
//! moment leaves a store that opens, holds every entry the writer saw
//! committed (and none it saw removed), and never returns wrong bytes. The
//! killed writers are this test binary re-run with a role.
//!
//! `MEMO_KILL_ROUNDS` sets the number of kills (default 200).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memo_core::{Key, Store};
use memo_tests::tempdir;

/// Entries a killed writer attempts per round: enough to be mid-write when
/// the kill lands, few enough that 200 rounds stay small on disk.
const PER_ROUND: u32 = 400;

fn key(round: u32, i: u32) -> Key {
    Key::of(&("kill", round, i))
}

/// Deterministic from the key, so any hit can be checked: mostly small
/// values, some around the inline limit, some blobs.
fn value(round: u32, i: u32) -> Vec<u8> {
    let h = key(round, i);
    let b = h.as_bytes();
    let len = match b[0] % 64 {
        0 => 65_536 + usize::from(b[1]) * 600,
        1 => 65_530 + usize::from(b[1] % 12),
        _ => usize::from(b[1]) * 2,
    };
    (0..len).map(|j| b[j % 32] ^ (j as u8)).collect()
}

/// The body of a killed writer: puts, and removes of its own earlier keys,
/// logging each one after it returned.
#[test]
fn child_role() {
    let Ok(role) = std::env::var("MEMO_TEST_ROLE") else {
        return;
    };
    assert_eq!(role, "killed-writer");
    let dir = std::env::var("MEMO_TEST_DIR").unwrap();
    let round: u32 = std::env::var("MEMO_TEST_ROUND").unwrap().parse().unwrap();
    let store = Store::open(&dir).unwrap();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(std::env::var("MEMO_TEST_LOG").unwrap())
        .unwrap();
    writeln!(log, "ready").unwrap();
    for i in 0..PER_ROUND {
        store.put_bytes(&key(round, i), &value(round, i)).unwrap();
        writeln!(log, "+{i}").unwrap();
        if i % 7 == 6 {
            store.remove(&key(round, i - 3)).unwrap();
            writeln!(log, "-{}", i - 3).unwrap();
        }
    }
}

fn spawn(dir: &Path, round: u32, log: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env("MEMO_TEST_ROLE", "killed-writer")
        .env("MEMO_TEST_DIR", dir)
        .env("MEMO_TEST_ROUND", round.to_string())
        .env("MEMO_TEST_LOG", log)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// What the writer of one round reported: committed puts, and removes that
/// returned or may have been in flight at the kill (either outcome is
/// correct for those: the call never returned).
fn read_log(log: &Path) -> (Vec<u32>, HashSet<u32>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let (mut put, mut removed) = (Vec::new(), HashSet::new());
    let mut last = None;
    // The last line may be torn by the kill: only whole lines count.
    for line in text.lines().take(text.matches('\n').count()) {
        if let Some(i) = line.strip_prefix('+') {
            let i: u32 = i.parse().unwrap();
            put.push(i);
            last = Some(i);
        } else if let Some(i) = line.strip_prefix('-') {
            removed.insert(i.parse().unwrap());
            last = None;
        }
    }
    // The put after which a remove follows was the last thing logged: that
    // remove may have been under way.
    if let Some(i) = last.filter(|i| i % 7 == 6) {
        removed.insert(i - 3);
        put.retain(|&p| p != i - 3);
    }
    (put, removed)
}

/// `removed` entries must be absent, others present; both exact if there.
fn check(store: &Store, round: u32, i: u32, removed: bool, what: &str) {
    let got = store.get_bytes(&key(round, i)).unwrap();
    if removed {
        assert!(
            got.is_none(),
            "{what}: round {round} entry {i} was removed but is back"
        );
    } else {
        let got = got
            .unwrap_or_else(|| panic!("{what}: round {round} entry {i} was committed but is gone"));
        assert!(
            *got == value(round, i)[..],
            "{what}: round {round} entry {i} has wrong bytes"
        );
    }
}

#[test]
fn writer_killed_at_random_moments() {
    let rounds: u32 = std::env::var("MEMO_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempdir();
    let logs = tempdir();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut history: Vec<(u32, Vec<u32>, HashSet<u32>)> = Vec::new();
    let mut cut_short = 0;
    for round in 0..rounds {
        let log = logs.path().join(format!("{round}.log"));
        let mut child = spawn(dir.path(), round, &log);
        // Kill once the writer is writing, at a random point of its run.
        let start = Instant::now();
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .starts_with("ready")
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "writer never started"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_micros(next(1500)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = Store::open(dir.path())
            .unwrap_or_else(|e| panic!("round {round}: store does not open: {e}"));
        let (put, removed) = read_log(&log);
        // Mid-run: after some puts returned, before the last one did.
        if !put.is_empty() && !put.contains(&(PER_ROUND - 1)) {
            cut_short += 1;
        }
        for &i in &put {
            check(
                &store,
                round,
                i,
                removed.contains(&i),
                "just after the kill",
            );
        }
        // Entries the writer attempted but did not report are either
        // absent or exact.
        for i in 0..PER_ROUND {
            if let Some(b) = store.get_bytes(&key(round, i)).unwrap() {
                assert!(
                    *b == value(round, i)[..],
                    "round {round} entry {i}: wrong bytes"
                );
            }
        }
        // A sample of earlier rounds stays intact.
        if let Some((r, put, removed)) = history.get(next(history.len() as u64 + 1) as usize) {
            for &i in put {
                check(&store, *r, i, removed.contains(&i), "a later round");
            }
        }
        history.push((round, put, removed));
    }
    // The test is only worth its name if many kills land mid-run (about 90%
    // at 200 rounds; fewer as the store grows over thousands).
    println!("{cut_short} of {rounds} writers were killed before they finished");
    assert!(
        cut_short * 4 >= rounds,
        "only {cut_short} of {rounds} kills landed mid-run"
    );
    // A write repairs whatever the last kill left half done; then every
    // structure must check out.
    let store = Store::open(dir.path()).unwrap();
    store.put_bytes(&Key::of("after"), b"repair").unwrap();
    for (r, put, removed) in &history {
        for &i in put {
            check(&store, *r, i, removed.contains(&i), "at the end");
        }
    }
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:#?}");
}
