//! Compressed values (`Compression`, docs/format.md "Compressed values"):
//! exact or miss still holds, with frames inline and in blobs, stores
//! written compressed read by processes that did not ask, arrays kept as
//! views unless a function asks, forged frames refused before their claim
//! is allocated, and the saved-bytes counter kept through replace, remove,
//! eviction, clear and repair.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use memo_core::{Array, Compression, Key, Store, memoize};
use memo_tests::{XorShift, tempdir};

const ZSTD: Compression = Compression::Zstd { level: 3 };

/// `len` bytes of 4 bits of entropy each (`compressible`), or of 8.
fn bytes(seed: u64, len: usize, compressible: bool) -> Vec<u8> {
    let mut rng = XorShift::new(seed | 1);
    let m = if compressible { 16 } else { 256 };
    (0..len).map(|_| rng.below(m) as u8).collect()
}

/// Every size class memo stores differently: short records, records
/// around the compression floor, aligned long records, blobs, and values
/// large enough to be sampled before they are compressed.
const SIZES: [usize; 11] = [
    0,
    100,
    511,
    512,
    4096,
    70_000,
    1 << 20,
    (2 << 20) - 1,
    (2 << 20) + 5,
    5 << 20,
    9 << 20,
];

#[test]
fn every_size_class_round_trips_compressed_and_not_in_one_store() {
    let dir = tempdir();
    let on = Store::builder(dir.path()).compress(ZSTD).open().unwrap();
    let off = Store::open(dir.path()).unwrap();
    let mut values = Vec::new();
    for (i, &len) in SIZES.iter().enumerate() {
        for compressible in [true, false] {
            for (w, writer) in [&on, &off].into_iter().enumerate() {
                let key = Key::of(&(i, compressible, w));
                let v = bytes(key.as_bytes()[0].into(), len, compressible);
                writer.put_bytes(&key, &v).unwrap();
                // Through the codec too: a Vec<u32> of small numbers.
                let nums: Vec<u32> = v.iter().map(|&b| u32::from(b)).collect();
                let nkey = Key::of(&(i, compressible, w, "nums"));
                writer.put(&nkey, &nums).unwrap();
                values.push((key, v, nkey, nums));
            }
        }
    }
    for reader in [&on, &off] {
        for (key, v, nkey, nums) in &values {
            assert_eq!(&*reader.get_bytes(key).unwrap().unwrap(), &v[..]);
            assert_eq!(reader.get::<Vec<u32>>(nkey).unwrap().as_ref(), Some(nums));
        }
    }
    let s = on.stats();
    assert!(s.raw_bytes > s.bytes + (12 << 20), "{s:?}");
    assert!(on.verify().unwrap().is_clean());
}

/// What each stored value of the size classes is, for a reader in another
/// process to check: (key, seed, len, compressible).
fn plan() -> Vec<(Key, u64, usize, bool)> {
    SIZES
        .iter()
        .enumerate()
        .flat_map(|(i, &len)| {
            [true, false].map(|c| (Key::of(&("xproc", i, c)), i as u64 * 31 + 7, len, c))
        })
        .collect()
}

#[test]
fn a_process_that_did_not_ask_reads_a_compressed_store() {
    let dir = tempdir();
    {
        let store = Store::builder(dir.path()).compress(ZSTD).open().unwrap();
        for (key, seed, len, c) in plan() {
            store.put_bytes(&key, &bytes(seed, len, c)).unwrap();
        }
        let s = store.stats();
        assert!(s.raw_bytes > s.bytes + (8 << 20), "{s:?}");
    }
    child("reader_in_a_child_process", dir.path(), &[]);
}

/// Runs test `name` of this binary again, alone, in a process of its own
/// with `MEMO_TEST_READ_DIR` set to `dir` and `env`; it must pass.
fn child(name: &str, dir: &Path, env: &[(&str, &str)]) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--ignored", "--nocapture"])
        .env("MEMO_TEST_READ_DIR", dir)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 passed"), "{text}");
}

/// Run by the test above in a process of its own: opens the store with
/// no compression asked and reads every value back.
#[test]
#[ignore = "run by a_process_that_did_not_ask_reads_a_compressed_store"]
fn reader_in_a_child_process() {
    let dir = std::env::var_os("MEMO_TEST_READ_DIR").expect("run by its parent test");
    let store = Store::open(Path::new(&dir)).unwrap();
    for (key, seed, len, c) in plan() {
        let got = store.get_bytes(&key).unwrap().expect("present");
        assert!(
            *got == bytes(seed, len, c)[..],
            "{len} bytes, compressible {c}"
        );
    }
    let s = store.stats();
    assert!(s.raw_bytes > s.bytes, "{s:?}");
}

#[test]
fn incompressible_values_are_stored_as_they_are() {
    let dir = tempdir();
    let store = Store::builder(dir.path()).compress(ZSTD).open().unwrap();
    for (i, len) in [600, 100_000, 3 << 20, 8 << 20].into_iter().enumerate() {
        store
            .put_bytes(&Key::of(&i), &bytes(i as u64, len, false))
            .unwrap();
    }
    let s = store.stats();
    assert_eq!(s.raw_bytes, s.bytes, "{s:?}");
}

/// A store's setting leaves values holding an `Array` as views; a
/// function's own `compress` compresses them.
#[memoize(store = ARRAYS.get().unwrap())]
fn zeros_as_stored(n: usize) -> Array<f64> {
    Array::from(vec![0.0; n])
}

#[memoize(store = ARRAYS.get().unwrap(), compress = "zstd:1")]
fn zeros_compressed(n: usize) -> Array<f64> {
    Array::from(vec![0.0; n])
}

#[memoize(store = ARRAYS.get().unwrap(), compress = "none")]
fn labels_never_compressed(n: u32) -> Vec<u32> {
    (0..n).map(|i| i % 10).collect()
}

static ARRAYS: std::sync::OnceLock<Store> = std::sync::OnceLock::new();

#[test]
fn arrays_stay_views_unless_the_function_asks() {
    let dir = tempdir();
    let store = Store::builder(dir.path()).compress(ZSTD).open().unwrap();
    assert!(ARRAYS.set(store).is_ok());
    let store = ARRAYS.get().unwrap();
    let n = 200_000;
    assert_eq!(zeros_as_stored(n).len(), n);
    let s = store.stats();
    assert_eq!(
        s.raw_bytes, s.bytes,
        "an array under the store's setting: {s:?}"
    );
    let hit = zeros_as_stored(n);
    assert!(hit.is_mapped(), "a hit views the file");
    assert_eq!(labels_never_compressed(100_000).len(), 100_000);
    let s = store.stats();
    assert_eq!(s.raw_bytes, s.bytes, "compress = \"none\": {s:?}");
    assert_eq!(zeros_compressed(n).len(), n);
    let hit = zeros_compressed(n);
    assert!(hit.iter().all(|&x| x == 0.0));
    let s = store.stats();
    assert!(
        s.raw_bytes > s.bytes + 1_500_000,
        "compress = \"zstd:1\": {s:?}"
    );
    let info = store.functions().unwrap();
    let f = info
        .iter()
        .find(|f| f.name.ends_with("zeros_compressed"))
        .unwrap();
    assert!(f.stats.raw_bytes > 50 * f.stats.bytes, "{:?}", f.stats);
}

/// Offset of `key`'s record in the only segment of `root`, and that file.
fn record_of(root: &Path, key: &Key) -> (std::path::PathBuf, u64) {
    let seg = root.join("seg/000001");
    let all = std::fs::read(&seg).unwrap();
    let at = all.windows(32).position(|w| w == key.as_bytes()).unwrap();
    (seg, at as u64 - 8)
}

/// Rewrites the 8-byte length prefix of the compressed record at `off`
/// and its checksum, as a hostile writer would.
fn forge_prefix(seg: &Path, off: u64, claim: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(seg)
        .unwrap();
    let mut head = [0u8; 48];
    f.read_exact_at(&mut head, off).unwrap();
    assert_eq!(&head[..2], b"mr");
    assert_eq!(head[2] & 0x80, 0x80, "stored compressed");
    let len = u32::from_le_bytes(head[4..8].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    f.read_exact_at(&mut payload, off + 48).unwrap();
    payload[..8].copy_from_slice(&claim.to_le_bytes());
    let sum =
        xxhash_rust::xxh3::xxh3_64_with_seed(&payload, xxhash_rust::xxh3::xxh3_64(&head[..40]));
    f.write_all_at(&payload[..8], off + 48).unwrap();
    f.write_all_at(&sum.to_le_bytes(), off + 40).unwrap();
}

/// The peak of this process's virtual memory, in KiB.
fn vm_peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmPeak:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_frame_claiming_16_gib_is_a_miss_without_the_allocation() {
    let dir = tempdir();
    let store = Store::builder(dir.path()).compress(ZSTD).open().unwrap();
    let (bomb, short) = (Key::of("bomb"), Key::of("short"));
    store.put_bytes(&bomb, &bytes(1, 50_000, true)).unwrap();
    store.put_bytes(&short, &bytes(2, 50_000, true)).unwrap();
    drop(store);
    let (seg, at) = record_of(dir.path(), &bomb);
    forge_prefix(&seg, at, 16 << 30);
    let (seg, at) = record_of(dir.path(), &short);
    // Within what zstd could produce from the frame, but not what it holds.
    forge_prefix(&seg, at, 60_000);
    let before = vm_peak_kib();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.get_bytes(&bomb).unwrap().is_none());
    assert!(store.get_bytes(&short).unwrap().is_none());
    let grew = vm_peak_kib() - before;
    assert!(grew < 1 << 20, "virtual memory grew by {grew} KiB");
    let report = store.verify().unwrap();
    let said = format!("{report:?}");
    assert!(said.contains("more than zstd can produce"), "{said}");
    assert!(said.contains("decodes to 50000 bytes"), "{said}");
    // The next put replaces the entry, and it reads again.
    store.put_bytes(&bomb, b"fresh").unwrap();
    assert_eq!(&*store.get_bytes(&bomb).unwrap().unwrap(), b"fresh");
}

/// `Stats::raw_bytes` follows the live entries: compressed values added,
/// replaced by raw ones, removed, evicted, cleared; and a repair after a
/// writer died recounts it.
#[test]
fn saved_bytes_follow_the_live_entries() {
    let dir = tempdir();
    let store = Store::builder(dir.path())
        .compress(ZSTD)
        .max_bytes(64 << 20)
        .open()
        .unwrap();
    let saved = |s: &Store| {
        let st = s.stats();
        st.raw_bytes - st.bytes
    };
    let (a, b, blob) = (Key::of("a"), Key::of("b"), Key::of("blob"));
    store.put_bytes(&a, &bytes(1, 100_000, true)).unwrap();
    store.put_bytes(&b, &bytes(2, 100_000, true)).unwrap();
    store.put_bytes(&blob, &bytes(3, 8 << 20, true)).unwrap();
    let full = saved(&store);
    assert!(full > (3 << 20), "{full}");
    store.put_bytes(&a, &bytes(1, 100_000, false)).unwrap();
    let after_replace = saved(&store);
    assert!(after_replace < full && after_replace > (3 << 20));
    store.remove(&blob).unwrap();
    let one = saved(&store);
    assert!(one > 40_000 && one < 100_000, "{one}");
    // A reopened store counts the same (the counter is in the index).
    drop(store);
    let store = Store::builder(dir.path())
        .compress(ZSTD)
        .max_bytes(64 << 20)
        .open()
        .unwrap();
    assert_eq!(saved(&store), one);
    // Eviction: fill past the limit with compressible values.
    for i in 0..200_u32 {
        store
            .put_bytes(&Key::of(&i), &bytes(i.into(), 1 << 20, true))
            .unwrap();
    }
    let live = store.stats();
    assert!(live.evictions > 0);
    let mut expect = 0;
    for i in 0..200_u32 {
        if store.get_bytes(&Key::of(&i)).unwrap().is_some() {
            expect += 1;
        }
    }
    // Each live 1 MiB value saves about half of itself.
    let per = (live.raw_bytes - live.bytes) / expect;
    assert!((400_000..600_000).contains(&per), "{per} saved per entry");
    store.clear().unwrap();
    assert_eq!(saved(&store), 0);
}

#[test]
fn a_damaged_counter_is_recounted_by_the_repair() {
    let dir = tempdir();
    {
        let store = Store::builder(dir.path()).compress(ZSTD).open().unwrap();
        store
            .put_bytes(&Key::of(&1), &bytes(1, 100_000, true))
            .unwrap();
        store
            .put_bytes(&Key::of(&2), &bytes(2, 3 << 20, true))
            .unwrap();
    }
    let right = Store::open(dir.path()).unwrap().stats();
    // A writer that died mid-publish leaves DIRTY set (header word 16);
    // the counter of saved bytes (word 53) is then not trusted.
    let index = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join("index"))
        .unwrap();
    index.write_all_at(&1_u64.to_le_bytes(), 16 * 8).unwrap();
    index.write_all_at(&7_u64.to_le_bytes(), 53 * 8).unwrap();
    drop(index);
    let store = Store::open(dir.path()).unwrap();
    store.put_bytes(&Key::of(&3), b"x").unwrap();
    let now = store.stats();
    assert_eq!(now.raw_bytes - now.bytes, right.raw_bytes - right.bytes);
    // And a rebuild from the segments counts it too.
    drop(store);
    std::fs::remove_file(dir.path().join("index")).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let rebuilt = store.stats();
    assert_eq!(
        rebuilt.raw_bytes - rebuilt.bytes,
        right.raw_bytes - right.bytes
    );
}

#[test]
fn memo_compress_sets_the_default_stores() {
    let dir = tempdir();
    child(
        "env_writer_in_a_child_process",
        dir.path(),
        &[("MEMO_COMPRESS", "zstd:5")],
    );
    let s = Store::open(dir.path()).unwrap().stats();
    assert!(s.raw_bytes > s.bytes + 30_000, "{s:?}");
}

#[test]
#[ignore = "run by memo_compress_sets_the_default_stores"]
fn env_writer_in_a_child_process() {
    let dir = std::env::var_os("MEMO_TEST_READ_DIR").expect("run by its parent test");
    let store = Store::open_from_env(Path::new(&dir));
    store
        .put_bytes(&Key::of(&1), &bytes(1, 100_000, true))
        .unwrap();
}
