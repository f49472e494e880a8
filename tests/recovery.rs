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

use memo_core::{Compression, Key, Store};
use memo_tests::{KillLog, XorShift, tempdir};

/// Entries a killed writer attempts per round: enough to be mid-write when
/// the kill lands, few enough that 200 rounds stay small on disk.
const PER_ROUND: u32 = 400;

fn key(round: u32, i: u32) -> Key {
    Key::of(&("kill", round, i))
}

/// Deterministic from the key, so any hit can be checked: mostly small
/// values, some around the alignment threshold (64 KiB) and the inline
/// limit (2 MiB), some blobs.
fn value(round: u32, i: u32) -> Vec<u8> {
    let h = key(round, i);
    let b = h.as_bytes();
    let len = match b[0] % 64 {
        0 => 65_536 + usize::from(b[1]) * 600,
        1 => 65_530 + usize::from(b[1] % 12),
        2 => (2 << 20) - 6 + usize::from(b[1] % 12),
        3 if b[1].is_multiple_of(4) => (2 << 20) + usize::from(b[1]) * 600,
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
    // Odd rounds store their values compressed (they repeat every 256
    // bytes, so every one of 512 bytes or more is): frames are killed
    // mid-write too, inline and in blobs.
    let compress = if round % 2 == 1 {
        Compression::Zstd { level: 3 }
    } else {
        Compression::None
    };
    let store = Store::builder(&dir).compress(compress).open().unwrap();
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
    let mut rng = XorShift::new(0x2545_f491_4f6c_dd1d);
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
        std::thread::sleep(Duration::from_micros(rng.below(1500)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = Store::open(dir.path())
            .unwrap_or_else(|e| panic!("round {round}: store does not open: {e}"));
        // After put i % 7 == 6 the writer removes i - 3.
        let KillLog { put, removed, .. } = KillLog::read(&log, |i| (i % 7 == 6).then(|| i - 3));
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
        if let Some((r, put, removed)) = history.get(rng.below(history.len() as u64 + 1) as usize) {
            for &i in put {
                check(&store, *r, i, removed.contains(&i), "a later round");
            }
        }
        history.push((round, put, removed));
    }
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
    // The test is only worth its name if many kills land mid-run: about 90%
    // at 200 rounds. Over thousands of rounds the store grows, a round's
    // first put takes longer, and more kills land before it.
    println!("{cut_short} of {rounds} writers were killed before they finished");
    if rounds <= 1000 {
        assert!(
            cut_short * 4 >= rounds,
            "only {cut_short} of {rounds} kills landed mid-run"
        );
    }
}

#[test]
fn a_damaged_entry_is_a_miss_and_the_next_writer_removes_it() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let (bad, good) = (Key::of("bad"), Key::of("good"));
    store.put_bytes(&bad, &[0xAB; 100]).unwrap();
    store.put_bytes(&good, &[0xCD; 100]).unwrap();
    // Flip a payload byte of the first record (segment header 64, record header 48).
    let seg = dir.path().join("seg/000001");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut b = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, 64 + 48 + 10).unwrap();
    assert_eq!(b[0], 0xAB);
    std::os::unix::fs::FileExt::write_all_at(&f, &[b[0] ^ 0x10], 64 + 48 + 10).unwrap();

    assert_eq!(
        store.get_bytes(&bad).unwrap(),
        None,
        "damage reads as a miss"
    );
    assert_eq!(store.verify().unwrap().corrupt, 1);
    store.put_bytes(&Key::of("next"), b"a write").unwrap();
    assert_eq!(store.len(), 2, "the damaged entry was removed");
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(
        report.damaged_dead_records, 1,
        "its bytes wait for compaction, and say the disk is failing"
    );
    assert_eq!(&*store.get_bytes(&good).unwrap().unwrap(), &[0xCD; 100][..]);
    // The key can be stored again.
    store.put_bytes(&bad, b"fresh").unwrap();
    assert_eq!(&*store.get_bytes(&bad).unwrap().unwrap(), b"fresh");
}

#[test]
fn a_damaged_index_is_rebuilt_and_kept_aside() {
    let dir = tempdir();
    {
        let store = Store::open(dir.path()).unwrap();
        for i in 0..500_u32 {
            store.put(&Key::of(&i), &i).unwrap();
        }
    }
    // Magic intact, capacity nonsense.
    let idx = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("index"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&idx, &3_u64.to_le_bytes(), 16).unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..500_u32 {
        assert_eq!(store.get::<u32>(&Key::of(&i)).unwrap(), Some(i));
    }
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("index.damaged-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "the damaged index is kept for inspection");
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn dead_writers_tmp_files_are_swept_live_ones_are_not() {
    let dir = tempdir();
    drop(Store::open(dir.path()).unwrap());
    let tmp = dir.path().join("tmp");
    let dead = "blob-0123456789abcdef.00000000000000a1";
    let live_name = "blob-0123456789abcdef.00000000000000a2";
    std::fs::write(tmp.join(dead), b"left by a killed writer").unwrap();
    std::fs::write(tmp.join("seg-000009"), b"half a segment").unwrap();
    std::fs::write(tmp.join("index.77.3"), b"half an index").unwrap();
    // Not a name memo gives a file: not memo's, never swept.
    std::fs::write(tmp.join("notes.txt"), b"someone else's").unwrap();
    let live = std::fs::File::create(tmp.join(live_name)).unwrap();
    live.lock().unwrap(); // a writer still writing it
    let store = Store::open(dir.path()).unwrap();
    let mut left: Vec<String> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec![live_name.to_string(), "notes.txt".to_string()]);
    drop(live);
    drop(store);
    drop(Store::open(dir.path()).unwrap());
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert_eq!(left.len(), 1);
    assert_eq!(
        std::fs::read(tmp.join("notes.txt")).unwrap(),
        b"someone else's"
    );
}

/// Unmounts the test's tmpfs however the test ends.
struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

/// A full disk: a store on a small tmpfs (mounted when the test runs as
/// root, as CI does). `put` fails with an error naming the file, nothing
/// committed is lost, and the store works again once space is freed.
#[test]
fn a_full_disk_fails_puts_and_loses_nothing() {
    let mnt = tempdir();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(mnt.path())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!(
            "a_full_disk_fails_puts_and_loses_nothing: cannot mount a tmpfs here (not root); not run"
        );
        return;
    }
    let _unmount = Unmount(mnt.path());
    let dir = mnt.path().join("store");
    let ballast = mnt.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 1 << 20]).unwrap();
    let store = Store::open(&dir).unwrap();
    let mut committed = Vec::new();
    let mut failure = None;
    for i in 0..10_000_u32 {
        let len = match i % 6 {
            0 => (2 << 20) + 100,
            3 => 100_000,
            _ => 3000,
        };
        let v = vec![i as u8; len];
        match store.put_bytes(&Key::of(&i), &v) {
            Ok(()) => committed.push((i, v)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let e = failure.expect("the disk filled up");
    assert!(matches!(e, memo_core::Error::Io { .. }), "{e}");
    assert!(
        e.to_string().contains(&*mnt.path().to_string_lossy()),
        "names the file: {e}"
    );
    // Failed puts leave the store readable and exact, in this process and a new one.
    for _ in 0..20 {
        assert!(
            store
                .put_bytes(&Key::of("more"), &vec![7; (2 << 20) + 100])
                .is_err()
        );
    }
    let reopened = Store::open(&dir).unwrap();
    for (i, v) in &committed {
        assert!(
            *reopened.get_bytes(&Key::of(i)).unwrap().unwrap() == v[..],
            "entry {i}"
        );
    }
    let report = reopened.verify().unwrap();
    assert!(report.is_clean(), "{report:#?}");
    // Space back: puts work again.
    std::fs::remove_file(&ballast).unwrap();
    store
        .put_bytes(&Key::of("after"), &vec![9; 100_000])
        .unwrap();
    assert_eq!(
        &*reopened.get_bytes(&Key::of("after")).unwrap().unwrap(),
        &vec![9; 100_000][..]
    );
    assert_eq!(reopened.len(), committed.len() as u64 + 1);
}
