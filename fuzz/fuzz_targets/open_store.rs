//! Opens a store directory whose files the fuzzer has damaged, reads every
//! key the undamaged store held and runs `verify`: nothing may panic, and a
//! value read must be exactly the one stored (invariants 1 and 6).
//!
//! The input is a list of edits to a real store (built once per process):
//! `[file u8][op u8][offset u32 le][len u8][bytes ...]`, where op 0
//! overwrites, 1 truncates, 2 replaces the file with the bytes, 3 appends,
//! 4 replaces the file by a symbolic link to a decoy file outside the store,
//! and 5 replaces the file's directory by a link to a directory of decoys.
//! The decoys, named as memo names its files, must come out unchanged
//! (docs/design.md, invariant 6: memo never follows a link inside a store).

#![no_main]

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use memo_core::{Compression, Key, Policy, Store};

const KEYS: u32 = 24;

fn value(i: u32) -> Vec<u8> {
    let len = match i % 6 {
        0 => 70_000 + i as usize,
        1 => 65_535,
        2 if i % 4 == 2 => (2 << 20) + i as usize,
        _ => (i * 37) as usize % 300,
    };
    (0..len).map(|j| (j as u32 ^ i.wrapping_mul(131)) as u8).collect()
}

/// The seed store's files: (path inside the store, bytes).
fn seed() -> &'static Vec<(PathBuf, Vec<u8>)> {
    static SEED: OnceLock<Vec<(PathBuf, Vec<u8>)>> = OnceLock::new();
    SEED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("seed store");
        // Odd keys are stored compressed (their values repeat, so they
        // pay): frames inline, and their length prefixes, are fuzzed too.
        let packed = Store::builder(dir.path())
            .compress(Compression::Zstd { level: 3 })
            .open()
            .expect("seed store");
        for i in 0..KEYS {
            let to = if i % 2 == 1 { &packed } else { &store };
            to.put_bytes(&Key::of(&i), &value(i)).expect("put");
        }
        drop(packed);
        store.remove(&Key::of(&3_u32)).expect("remove");
        store.put_bytes(&Key::of(&4_u32), &value(4)).expect("put again");
        drop(store);
        let mut files = Vec::new();
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("read dir").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(dir.path()).expect("inside").to_path_buf();
                    files.push((rel, std::fs::read(&p).expect("read")));
                }
            }
        }
        files.sort();
        files
    })
}

/// Every file below `dir` with its bytes.
fn snapshot(dir: &std::path::Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("read decoys")
        .flatten()
        .map(|e| (e.path(), std::fs::read(e.path()).expect("read decoy")))
        .collect();
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let files = seed();
    let dir = tempfile::tempdir().expect("temp dir");
    let decoys = tempfile::tempdir().expect("temp dir");
    for (rel, _) in files {
        if let Some(name) = rel.file_name() {
            std::fs::write(decoys.path().join(name), b"the user's bytes").expect("decoy");
        }
    }
    let before = snapshot(decoys.path());
    for (rel, bytes) in files {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, bytes).expect("write");
    }
    let mut rest = data;
    while rest.len() >= 7 {
        let (file, op) = (rest[0] as usize % files.len(), rest[1] % 6);
        let off = u64::from(u32::from_le_bytes([rest[2], rest[3], rest[4], rest[5]]));
        let len = (rest[6] as usize).min(rest.len() - 7);
        let bytes = &rest[7..7 + len];
        rest = &rest[7 + len..];
        let p = dir.path().join(&files[file].0);
        let size = files[file].1.len() as u64;
        if op >= 4 {
            let target = if op == 4 { p.clone() } else { p.parent().expect("parent").to_path_buf() };
            if target == dir.path() {
                continue;
            }
            let name = target.file_name().expect("name");
            let _ = std::fs::remove_dir_all(&target).or_else(|_| std::fs::remove_file(&target));
            let to = if op == 4 { decoys.path().join(name) } else { decoys.path().to_path_buf() };
            let _ = std::os::unix::fs::symlink(to, &target);
            continue;
        }
        // The harness itself must not write through the links it made.
        let through_link = p
            .ancestors()
            .take_while(|a| *a != dir.path())
            .any(|a| std::fs::symlink_metadata(a).is_ok_and(|m| m.is_symlink()));
        if through_link {
            continue;
        }
        let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open(&p) else { continue };
        let _ = match op {
            0 => f.write_all_at(bytes, off % size.max(1)),
            1 => f.set_len(off % size.max(1)),
            2 => f.set_len(0).and_then(|()| f.write_all_at(bytes, 0)),
            _ => f.write_all_at(bytes, size),
        };
    }
    let decoys_unchanged = || assert!(snapshot(decoys.path()) == before, "a decoy was touched");
    let Ok(store) = Store::open(dir.path()) else {
        decoys_unchanged();
        return;
    };
    for i in 0..KEYS {
        if let Ok(Some(b)) = store.get_bytes(&Key::of(&i)) {
            assert!(*b == value(i)[..], "wrong bytes for key {i}");
        }
    }
    let _ = store.verify();
    // A write after the damage must not break what reads found.
    let _ = store.put_bytes(&Key::of("fuzz"), b"after");
    for i in 0..KEYS {
        if let Ok(Some(b)) = store.get_bytes(&Key::of(&i)) {
            assert!(*b == value(i)[..], "wrong bytes for key {i} after a write");
        }
    }
    // Eviction, expiry and compaction read the header's counters, clocks
    // and rings, all from disk: run them all on what the damage left.
    let Ok(bounded) = Store::builder(dir.path())
        .max_bytes(150_000)
        .max_entries(10)
        .max_age(std::time::Duration::from_secs(1))
        .policy(Policy::CostAware)
        .open()
    else {
        decoys_unchanged();
        return;
    };
    let _ = bounded.trim();
    let _ = bounded.put_bytes(&Key::of("fuzz2"), &[7; 1000]);
    for i in 0..KEYS {
        if let Ok(Some(b)) = bounded.get_bytes(&Key::of(&i)) {
            assert!(*b == value(i)[..], "wrong bytes for key {i} after eviction");
        }
    }
    let _ = bounded.clear();
    decoys_unchanged();
});
