//! Guards docs/design.md invariant 6 at open and read time: directories that are not
//! stores, junk files under our names, damaged files and future format
//! versions give a clear error naming the file, or a miss — never a panic
//! and never wrong bytes.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use memo_core::{Compression, Error, Key, Policy, Store};
use memo_tests::{XorShift, tempdir};

fn message(e: &Error) -> String {
    e.to_string()
}

#[test]
fn a_regular_file_is_not_a_store() {
    let dir = tempdir();
    let f = dir.path().join("file");
    fs::write(&f, b"hello").unwrap();
    let e = Store::open(&f).unwrap_err();
    assert!(matches!(e, Error::Io { ref path, .. } if path == &f), "{e}");
    assert!(message(&e).contains("not a directory"), "{e}");
}

#[test]
fn junk_files_with_our_names() {
    for name in ["index", "seg", "blob", "LOCK", "tmp", "locks"] {
        // In a directory that is not a store, and in a store: a directory
        // where a file belongs, or a file where a directory does.
        for in_store in [false, true] {
            let dir = tempdir();
            if in_store {
                drop(Store::open(dir.path()).unwrap());
                let p = dir.path().join(name);
                if p.is_dir() {
                    fs::remove_dir_all(&p).unwrap();
                } else {
                    fs::remove_file(&p).unwrap();
                }
            }
            if name == "index" || name == "LOCK" {
                fs::create_dir(dir.path().join(name)).unwrap();
            } else {
                fs::write(dir.path().join(name), b"junk").unwrap();
            }
            let e = Store::open(dir.path()).unwrap_err();
            assert!(matches!(e, Error::Refused { .. }), "{name}: {e}");
            assert!(message(&e).contains(name), "{name}: {e}");
        }
    }
    for junk in [
        vec![],
        b"garbage".to_vec(),
        vec![0xff; 4096],
        vec![0; 40_000],
    ] {
        let dir = tempdir();
        drop(Store::open(dir.path()).unwrap());
        fs::write(dir.path().join("index"), junk).unwrap();
        let e = Store::open(dir.path()).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert!(message(&e).contains("index"), "{e}");
    }
}

#[test]
fn future_format_versions_are_refused() {
    let dir = tempdir();
    Store::open(dir.path())
        .unwrap()
        .put(&Key::of(&1), &1)
        .unwrap();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("index"))
        .unwrap();
    f.write_all_at(&7_u32.to_le_bytes(), 8).unwrap();
    let e = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::IncompatibleFormat {
                found: 7,
                supported: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(message(&e).contains("version 7"), "{e}");
}

#[test]
fn a_future_segment_is_an_error_not_a_value() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    store.put(&Key::of(&1), &1_u32).unwrap();
    let seg = dir.path().join("seg/000001");
    let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&9_u32.to_le_bytes(), 8).unwrap();
    let other = Store::open(dir.path()).unwrap(); // maps the segment afresh
    assert!(matches!(
        other.get::<u32>(&Key::of(&1)),
        Ok(None) | Err(Error::IncompatibleFormat { .. })
    ));
}

/// Flips bits and truncates at many offsets of every file of a small store;
/// each damaged copy must open or fail cleanly, and every value read must be
/// the one stored.
#[test]
fn damaged_files_never_return_wrong_values() {
    let trials: usize = std::env::var("MEMO_DAMAGE_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1200);
    let values: Vec<(Key, Vec<u8>)> = (0..40_u32)
        .map(|i| {
            // Blobs, aligned mid-size records (with pads) and small ones.
            // (One blob: each trial copies the store.)
            let len = if i == 0 {
                (2 << 20) + 3
            } else if i % 10 == 0 || i % 10 == 5 {
                70_000 + i as usize
            } else {
                i as usize * 13
            };
            (
                Key::of(&i),
                (0..len).map(|j| (j as u32 ^ i) as u8).collect(),
            )
        })
        .collect();
    damage_trials(Compression::None, &values, trials);
}

/// The same with values stored compressed: frames inline and in a blob,
/// their length prefixes and the records around them damaged. A frame that
/// decodes to other bytes must still never be a hit (the checksum covers
/// the stored bytes).
#[test]
fn damaged_compressed_values_never_return_wrong_values() {
    let trials: usize = std::env::var("MEMO_DAMAGE_TRIALS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(600, |t| t / 2);
    let mut rng = XorShift::new(7);
    let values: Vec<(Key, Vec<u8>)> = (0..30_u32)
        .map(|i| {
            // A blob that stays one compressed (4 bits of entropy a
            // byte), records that compress to below and above 64 KiB,
            // small ones, and a few too short or too random to compress.
            let len = match i {
                0 => 6 << 20,
                1..=3 => 300_000 + i as usize,
                _ if i % 7 == 0 => 100 + i as usize,
                _ => 2_000 + i as usize * 997,
            };
            let noise = if i % 9 == 8 { 256 } else { 16 };
            (
                Key::of(&i),
                (0..len).map(|_| rng.below(noise) as u8).collect(),
            )
        })
        .collect();
    damage_trials(Compression::Zstd { level: 3 }, &values, trials);
}

fn damage_trials(compress: Compression, values: &[(Key, Vec<u8>)], trials: usize) {
    let src = tempdir();
    {
        let store = Store::builder(src.path())
            .compress(compress)
            .open()
            .unwrap();
        for (k, v) in values {
            store.put_bytes(k, v).unwrap();
        }
        store.remove(&values[1].0).unwrap();
        let s = store.stats();
        if compress != Compression::None {
            assert!(s.raw_bytes > s.bytes / 2 * 3, "{s:?}");
        }
    }
    let files = store_files(src.path());
    let image = snapshot(src.path(), &files);
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15);
    for trial in 0..trials {
        let dir = tempdir();
        restore(&image, dir.path());
        let victim = dir.path().join(&files[trial % files.len()]);
        let len = fs::metadata(&victim).unwrap().len();
        // Half the time aim at a segment's head, where the small records
        // are; the rest of it is mostly the long ones.
        let span = if victim.to_string_lossy().contains("seg/") && trial % 2 == 0 {
            len.min(8192)
        } else {
            len
        };
        if span == 0 {
            continue;
        }
        let off = rng.below(span);
        if trial % 4 == 3 {
            fs::OpenOptions::new()
                .write(true)
                .open(&victim)
                .unwrap()
                .set_len(off)
                .unwrap();
        } else {
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&victim)
                .unwrap();
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, off).unwrap();
            b[0] ^= 1 << rng.below(8);
            f.write_all_at(&b, off).unwrap();
        }
        let Ok(store) = Store::open(dir.path()) else {
            continue;
        };
        for (i, (k, v)) in values.iter().enumerate() {
            // A miss or an error is fine; a hit must be exact.
            if let Ok(Some(b)) = store.get_bytes(k) {
                assert!(
                    i != 1 && *b == v[..],
                    "trial {trial}: wrong bytes for key {i} after damaging {}",
                    victim.display()
                );
            }
        }
        let _ = store.verify();
    }
}

fn store_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.ends_with("LOCK") {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Each file's written head (its trailing zeros cut) and full length: a
/// sparse 64 MiB segment is kept as the few KiB actually written.
fn snapshot(root: &Path, files: &[std::path::PathBuf]) -> Vec<(std::path::PathBuf, Vec<u8>, u64)> {
    files
        .iter()
        .map(|rel| {
            let data = fs::read(root.join(rel)).unwrap();
            let end = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            (rel.clone(), data[..end].to_vec(), data.len() as u64)
        })
        .collect()
}

fn restore(image: &[(std::path::PathBuf, Vec<u8>, u64)], to: &Path) {
    for (rel, head, len) in image {
        let dst = to.join(rel);
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        let f = fs::File::create(&dst).unwrap();
        f.write_all_at(head, 0).unwrap();
        f.set_len(*len).unwrap();
    }
    for sub in ["seg", "blob", "tmp", "locks"] {
        fs::create_dir_all(to.join(sub)).unwrap();
    }
    fs::File::create(to.join("LOCK")).unwrap();
}

/// Found by the fuzzer: header counters are read from disk, so absurd ones
/// must neither overflow nor make the writer grow the index without end.
#[test]
fn absurd_header_counters_are_survived() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    store.put(&Key::of(&1_u32), &1_u32).unwrap();
    drop(store);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("index"))
        .unwrap();
    // ENTRIES, TOMBSTONES, LIVE_BYTES, DEAD_BYTES (docs/format.md).
    for off in [168_u64, 176, 184, 192] {
        f.write_all_at(&(u64::MAX - 3).to_le_bytes(), off).unwrap();
    }
    f.write_all_at(&u64::MAX.to_le_bytes(), 144).unwrap(); // CUR_OFF
    let store = Store::open(dir.path()).unwrap();
    let _ = store.stats();
    assert_eq!(
        store.get::<u32>(&Key::of(&1_u32)).unwrap(),
        Some(1),
        "before any write"
    );
    store.put(&Key::of(&2_u32), &2_u32).unwrap();
    assert_eq!(
        store.get::<u32>(&Key::of(&1_u32)).unwrap(),
        Some(1),
        "after one write"
    );
    for i in 2..50_u32 {
        store.put(&Key::of(&i), &i).unwrap();
    }
    for i in 1..50_u32 {
        assert_eq!(store.get::<u32>(&Key::of(&i)).unwrap(), Some(i), "key {i}");
    }
    assert_eq!(store.len(), 49, "the counts were recomputed");
    let index_len = fs::metadata(dir.path().join("index")).unwrap().len();
    assert!(
        index_len < 1 << 20,
        "the index did not balloon: {index_len} bytes"
    );
}

/// Found by the fuzzer: eviction reads the byte counters, clocks and rings
/// from the header, so absurd ones must not overflow there either; a
/// bounded store then evicts what it must and reads nothing wrong.
#[test]
fn absurd_eviction_state_is_survived() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..20_u32 {
        store.put(&Key::of(&i), &vec![i; 100]).unwrap();
    }
    drop(store);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("index"))
        .unwrap();
    // Every header word past DIRTY up to the end of the rings, except the
    // segment cursor (docs/format.md): all ones. DIRTY stays 0, so no
    // repair recounts them first.
    for word in (20..512_u64).filter(|w| *w != 32 && *w != 40) {
        f.write_all_at(&u64::MAX.to_le_bytes(), word * 8).unwrap();
    }
    for policy in [Policy::Lru, Policy::Lfu, Policy::CostAware] {
        let bounded = Store::builder(dir.path())
            .max_bytes(20_000)
            .max_entries(10)
            .max_age(Duration::from_secs(1))
            .policy(policy)
            .open()
            .unwrap();
        bounded.trim().unwrap();
        bounded.put(&Key::of("new"), &vec![7_u32; 10]).unwrap();
        for i in 0..20_u32 {
            if let Some(v) = bounded.get::<Vec<u32>>(&Key::of(&i)).unwrap() {
                assert_eq!(v, vec![i; 100], "key {i}");
            }
        }
        assert!(bounded.len() <= 10, "{policy:?}: {} entries", bounded.len());
    }
}

/// `rm -rf` of a store while a process uses it: the process neither
/// panics nor serves wrong bytes; what it reads is exact or a miss, a put
/// succeeds or fails with an error naming a file; a store opened there
/// afterwards is a fresh, working one.
#[test]
fn a_store_deleted_under_a_running_process() {
    let t = tempdir();
    let dir = t.path().join("store");
    let store = Store::open(&dir).unwrap();
    for i in 0..200_u32 {
        store
            .put(&Key::of(&i), &vec![i; 100 + (i as usize % 7) * 3000])
            .unwrap();
    }
    store.put_bytes(&Key::of("big"), &vec![3; 1 << 20]).unwrap();
    fs::remove_dir_all(&dir).unwrap();
    for i in 0..200_u32 {
        if let Some(v) = store.get::<Vec<u32>>(&Key::of(&i)).unwrap() {
            assert_eq!(v, vec![i; 100 + (i as usize % 7) * 3000]);
        }
    }
    if let Some(b) = store.get_bytes(&Key::of("big")).unwrap() {
        assert!(b.iter().all(|&x| x == 3));
    }
    for i in 200..2000_u32 {
        match store.put(&Key::of(&i), &vec![i; 2000]) {
            Ok(()) => {
                if let Some(v) = store.get::<Vec<u32>>(&Key::of(&i)).unwrap() {
                    assert_eq!(v, vec![i; 2000]);
                }
            }
            Err(e) => assert!(matches!(e, Error::Io { .. }), "{e}"),
        }
    }
    let v: u32 = store.get_or_compute(&Key::of("late"), || 9).unwrap();
    assert_eq!(v, 9);
    let fresh = Store::open(&dir).unwrap();
    assert_eq!(fresh.len(), 0);
    fresh.put(&Key::of(&1_u32), &1_u32).unwrap();
    assert_eq!(fresh.get::<u32>(&Key::of(&1_u32)).unwrap(), Some(1));
}
