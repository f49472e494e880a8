//! Guards the index's growth without stalls (`index/grow.rs`): while a
//! growth moves the old table into the new one, every committed entry stays
//! visible to every process, a writer killed at any moment leaves a store
//! that opens with every entry it saw committed, and damage to either table
//! costs misses or a rebuild, never a wrong value.
//!
//! A store is mid-growth while `index.prev` exists. `MEMO_GROWTH_KILL_ROUNDS`
//! sets the number of kills (default 30).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memo_core::{Key, Store};
use memo_tests::{KillLog, XorShift, copy_tree, tempdir};

fn key(round: u32, i: u32) -> Key {
    Key::of(&("grow", round, i))
}

/// 60-140 bytes, deterministic from the key.
fn value(round: u32, i: u32) -> Vec<u8> {
    let k = key(round, i);
    let b = k.as_bytes();
    (0..60 + usize::from(b[0] % 81))
        .map(|j| b[j % 32] ^ (j as u8))
        .collect()
}

fn growing(dir: &Path) -> bool {
    dir.join("index.prev").exists()
}

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The bodies of the child processes: this test binary re-run with a role.
#[test]
fn child_role() {
    let Ok(role) = std::env::var("MEMO_TEST_ROLE") else {
        return;
    };
    let dir = std::env::var("MEMO_TEST_DIR").unwrap();
    match role.as_str() {
        // Puts (and some removes), logging each after it returned, and
        // "growing" once a growth has begun.
        "killed-writer" => {
            let round: u32 = std::env::var("MEMO_TEST_ROUND").unwrap().parse().unwrap();
            let store = Store::open(&dir).unwrap();
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(std::env::var("MEMO_TEST_LOG").unwrap())
                .unwrap();
            writeln!(log, "ready").unwrap();
            let mut said = false;
            for i in 0.. {
                store.put_bytes(&key(round, i), &value(round, i)).unwrap();
                writeln!(log, "+{i}").unwrap();
                if i % 5 == 4 {
                    store.remove(&key(round, i - 2)).unwrap();
                    writeln!(log, "-{}", i - 2).unwrap();
                }
                if !said && growing(Path::new(&dir)) {
                    writeln!(log, "growing").unwrap();
                    said = true;
                }
            }
        }
        // Checks committed entries (the writer publishes how many) until
        // told to stop; prints how many checks it made and how many of
        // them ran while a growth was in progress.
        "reader" => {
            let progress = std::env::var("MEMO_TEST_PROGRESS").unwrap();
            let store = Store::open(&dir).unwrap();
            let mut rng = XorShift::new(u64::from(std::process::id()));
            let (mut checks, mut during) = (0_u64, 0_u64);
            loop {
                let text = std::fs::read_to_string(&progress).unwrap_or_default();
                if text == "done" {
                    break;
                }
                let Ok(n) = text.parse::<u32>() else {
                    continue;
                };
                let mid = growing(Path::new(&dir));
                for _ in 0..200 {
                    let i = rng.below(u64::from(n.max(1))) as u32;
                    if n == 0 {
                        break;
                    }
                    let got = store.get_bytes(&key(0, i)).unwrap();
                    let got =
                        got.unwrap_or_else(|| panic!("entry {i} of {n} committed is missing"));
                    assert!(*got == value(0, i)[..], "entry {i}: wrong bytes");
                    checks += 1;
                    during += u64::from(mid);
                }
            }
            println!("checks {checks} {during}");
        }
        other => panic!("unknown role {other}"),
    }
}

fn child(role: &str, dir: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env("MEMO_TEST_ROLE", role)
        .env("MEMO_TEST_DIR", dir);
    c
}

fn check(store: &Store, round: u32, i: u32, removed: bool, what: &str) {
    let got = store.get_bytes(&key(round, i)).unwrap();
    if removed {
        assert!(
            got.is_none(),
            "{what}: round {round} entry {i} was removed but is back"
        );
    } else {
        let got =
            got.unwrap_or_else(|| panic!("{what}: round {round} entry {i} committed but gone"));
        assert!(
            *got == value(round, i)[..],
            "{what}: round {round} entry {i}: wrong bytes"
        );
    }
}

/// Each round a writer fills the store until a growth begins and is killed
/// at a random moment of the move (the store grows from round to round, so
/// later moves are longer); the store must open with every committed entry,
/// and the next writer repairs and carries on.
#[test]
fn writer_killed_during_growth() {
    let rounds = env("MEMO_GROWTH_KILL_ROUNDS", 30);
    let dir = tempdir();
    let logs = tempdir();
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15);
    let mut history: Vec<(u32, Vec<u32>, HashSet<u32>)> = Vec::new();
    let mut mid_move = 0;
    for round in 0..rounds {
        let log = logs.path().join(format!("{round}.log"));
        let mut c = child("killed-writer", dir.path())
            .env("MEMO_TEST_ROUND", round.to_string())
            .env("MEMO_TEST_LOG", &log)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("growing") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "round {round}: no growth began"
            );
            std::thread::sleep(Duration::from_micros(100));
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        let was_moving = growing(dir.path());
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
        mid_move += u32::from(was_moving && growing(dir.path()));

        let store = Store::open(dir.path())
            .unwrap_or_else(|e| panic!("round {round}: store does not open: {e}"));
        // After put i % 5 == 4 the writer removes i - 2.
        let KillLog {
            put,
            removed,
            other,
        } = KillLog::read(&log, |i| (i % 5 == 4).then(|| i - 2));
        assert!(other.iter().any(|l| l == "growing"));
        for &i in &put {
            check(
                &store,
                round,
                i,
                removed.contains(&i),
                "just after the kill",
            );
        }
        if let Some((r, put, removed)) = history.get(rng.below(history.len() as u64 + 1) as usize) {
            for &i in put.iter().step_by(7) {
                check(&store, *r, i, removed.contains(&i), "a later round");
            }
        }
        history.push((round, put, removed));
    }
    let store = Store::open(dir.path()).unwrap();
    store.put_bytes(&Key::of("after"), b"repair").unwrap();
    for (r, put, removed) in &history {
        for &i in put {
            check(&store, *r, i, removed.contains(&i), "at the end");
        }
    }
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:#?}");
    println!("{mid_move} of {rounds} kills landed while the old table was being moved");
    assert!(
        mid_move * 3 >= rounds,
        "only {mid_move} of {rounds} kills landed mid-move"
    );
}

/// Two reader processes check random committed entries byte for byte while
/// this process writes through many growths.
#[test]
fn readers_in_other_processes_see_every_entry_while_the_index_grows() {
    let n = env("MEMO_GROWTH_ENTRIES", 200_000);
    let dir = tempdir();
    let progress = dir.path().join("..").join(format!(
        "progress-{}",
        dir.path().file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&progress, "0").unwrap();
    let store = Store::open(dir.path()).unwrap();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            child("reader", dir.path())
                .env("MEMO_TEST_PROGRESS", &progress)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut growths = 0;
    let mut was = false;
    for i in 0..n {
        store.put_bytes(&key(0, i), &value(0, i)).unwrap();
        if i % 500 == 499 {
            // Written aside and renamed: a reader never sees half a number.
            let tmp = progress.with_extension("tmp");
            std::fs::write(&tmp, (i + 1).to_string()).unwrap();
            std::fs::rename(&tmp, &progress).unwrap();
            let now = growing(dir.path());
            growths += u32::from(now && !was);
            was = now;
        }
    }
    std::fs::write(&progress, "done").unwrap();
    let mut during = 0;
    for r in readers {
        let out = r.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "a reader failed:\n{text}");
        // The harness may print its own words before it on the line.
        let at = text
            .find("checks ")
            .unwrap_or_else(|| panic!("no count from a reader:\n{text}"));
        let line = text[at + 7..].lines().next().unwrap();
        let counts: Vec<u64> = line
            .split(' ')
            .take(2)
            .map(|x| x.parse().unwrap())
            .collect();
        assert!(
            counts[0] > 10_000,
            "a reader made only {} checks",
            counts[0]
        );
        during += counts[1];
    }
    let _ = std::fs::remove_file(&progress);
    println!("{growths} growths seen; {during} checks made mid-growth");
    assert!(growths >= 5, "only {growths} growths seen");
    assert!(during > 1000, "only {during} checks mid-growth");
}

/// Random puts, overwrites and removes against a map, across many growths,
/// with a second handle (as another process would open it) opened afresh
/// now and then, often mid-growth; then the same with an entry limit, whose
/// evictions fill tables with tombstones and make growths that shrink.
#[test]
fn growths_agree_with_a_model() {
    for limit in [None, Some(3_000_u64)] {
        let dir = tempdir();
        let open = || match limit {
            None => Store::open(dir.path()).unwrap(),
            Some(n) => Store::builder(dir.path()).max_entries(n).open().unwrap(),
        };
        let store = open();
        let mut model: HashMap<u32, u32> = HashMap::new();
        let mut rng = XorShift::new(42);
        let (mut growths, mut opened_mid) = (0, 0);
        let mut was = false;
        for step in 0..60_000_u32 {
            let i = rng.below(20_000) as u32;
            if rng.below(10) == 0 {
                store.remove(&key(1, i)).unwrap();
                model.remove(&i);
            } else {
                // The value's round field says which write it was.
                store.put_bytes(&key(1, i), &value(step, i)).unwrap();
                model.insert(i, step);
            }
            let now = growing(dir.path());
            growths += u32::from(now && !was);
            was = now;
            if step % 4000 == 0 || (now && rng.below(300) == 0) {
                opened_mid += u32::from(now);
                let other = open();
                for j in 0..20_000 {
                    let got = other.get_bytes(&key(1, j)).unwrap();
                    match (model.get(&j), got) {
                        (Some(&v), Some(b)) => assert!(*b == value(v, j)[..], "entry {j} wrong"),
                        (Some(_), None) if limit.is_some() => {} // evicted
                        (Some(_), None) => panic!("step {step}: entry {j} missing"),
                        (None, Some(_)) => panic!("step {step}: entry {j} was removed"),
                        (None, None) => {}
                    }
                }
            }
        }
        let report = store.verify().unwrap();
        assert!(report.is_clean(), "{report:#?}");
        if limit.is_none() {
            assert_eq!(store.len() as usize, model.len());
        }
        println!("limit {limit:?}: {growths} growths, {opened_mid} opens mid-growth");
        assert!(growths >= 4, "only {growths} growths");
    }
}

/// A store stopped mid-growth, then damaged in either table: it opens, and
/// every entry is exact or (where its slot was damaged) a miss; a lost or
/// foreign old table means a rebuild that keeps every entry.
#[test]
fn damage_to_a_half_grown_index() {
    let base = tempdir();
    let mut n = 0;
    {
        let store = Store::open(base.path()).unwrap();
        // Past a few growths, then to the middle of the next move.
        while n < 30_000 || !growing(base.path()) {
            store.put_bytes(&key(2, n), &value(2, n)).unwrap();
            n += 1;
        }
        // A few puts into the move, not to its end.
        for _ in 0..20 {
            store.put_bytes(&key(2, n), &value(2, n)).unwrap();
            n += 1;
        }
        assert!(growing(base.path()));
    }
    let all_exact = |dir: &Path, what: &str| {
        let store = Store::open(dir).unwrap_or_else(|e| panic!("{what}: does not open: {e}"));
        for i in 0..n {
            check(&store, 2, i, false, what);
        }
    };
    let no_wrong = |dir: &Path, what: &str| {
        let store = Store::open(dir).unwrap_or_else(|e| panic!("{what}: does not open: {e}"));
        let mut missing = 0;
        for i in 0..n {
            match store.get_bytes(&key(2, i)).unwrap() {
                Some(b) => assert!(*b == value(2, i)[..], "{what}: entry {i} wrong"),
                None => missing += 1,
            }
        }
        // A writer then repairs what it can, and the store checks out.
        store.put_bytes(&Key::of("after"), b"x").unwrap();
        assert!(store.get_bytes(&Key::of("after")).unwrap().is_some());
        missing
    };
    let case = |name: &str, damage: &dyn Fn(&Path)| {
        let d = tempdir();
        copy_tree(base.path(), d.path());
        damage(d.path());
        (d, name.to_owned())
    };

    // The copy itself, undamaged.
    let (d, what) = case("undamaged", &|_| {});
    all_exact(d.path(), &what);
    // The old table gone, or another table in its place: rebuilt.
    let (d, what) = case("old table deleted", &|p| {
        std::fs::remove_file(p.join("index.prev")).unwrap();
    });
    all_exact(d.path(), &what);
    let (d, what) = case("old table replaced", &|p| {
        std::fs::copy(p.join("index"), p.join("index.prev")).unwrap();
    });
    all_exact(d.path(), &what);
    let (d, what) = case("old table truncated", &|p| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(p.join("index.prev"))
            .unwrap();
        f.set_len(4096 + 1000).unwrap();
    });
    all_exact(d.path(), &what);
    // Bytes flipped in either table's slots, or the growth's header words.
    let mut rng = XorShift::new(7);
    for file in ["index", "index.prev"] {
        for _ in 0..3 {
            let seed = rng.below(u64::MAX);
            let (d, what) = case(&format!("{file} slots flipped ({seed:x})"), &|p| {
                let mut r = XorShift::new(seed);
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(p.join(file))
                    .unwrap();
                let len = f.metadata().unwrap().len();
                for _ in 0..200 {
                    let at = 4096 + r.below(len - 4096);
                    f.write_all_at(&[r.below(256) as u8], at).unwrap();
                }
            });
            no_wrong(d.path(), &what);
        }
    }
    for (word, val) in [
        (9_u64, 5_u64),
        (11, u64::MAX),
        (12, 3),
        (12, u64::MAX),
        (13, u64::MAX),
    ] {
        let (d, what) = case(&format!("header word {word} = {val}"), &|p| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(p.join("index"))
                .unwrap();
            f.write_all_at(&val.to_le_bytes(), word * 8).unwrap();
        });
        no_wrong(d.path(), &what);
    }
}
