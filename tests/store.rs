//! Guards the store's contract: every put is read back exactly, across
//! reopen, growth, clear, removal and rebuild; checked against a model.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use memo_core::{Durability, Error, Key, Store};
use memo_tests::tempdir;
use proptest::prelude::*;

/// Values from this size get a file of their own.
const INLINE: usize = 2 << 20;
/// Values from this size are stored 64-byte aligned.
const ALIGN: usize = 64 * 1024;
const PAGE: usize = 4096;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn every_size_boundary_round_trips() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let sizes = [
        0,
        1,
        7,
        8,
        47,
        48,
        49,
        PAGE - 1,
        PAGE,
        PAGE + 1,
        ALIGN - 1,
        ALIGN,
        ALIGN + 1,
        1 << 20,
        INLINE - 1,
        INLINE,
        INLINE + 1,
    ];
    for (i, &len) in sizes.iter().enumerate() {
        let k = Key::of(&("size", len));
        let v = pattern(len, i as u8);
        store.put_bytes(&k, &v).unwrap();
        let got = store.get_bytes(&k).unwrap().unwrap();
        assert_eq!(&*got, &v[..], "len {len}");
        if len >= ALIGN {
            assert_eq!(got.as_ptr() as usize % 64, 0, "len {len} is not 64-aligned");
        }
        let typed: Vec<u8> = v.clone();
        let kt = Key::of(&("typed", len));
        store.put(&kt, &typed).unwrap();
        assert_eq!(
            store.get::<Vec<u8>>(&kt).unwrap().unwrap(),
            typed,
            "typed len {len}"
        );
    }
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    for (i, &len) in sizes.iter().enumerate() {
        let v = pattern(len, i as u8);
        assert_eq!(
            &*store.get_bytes(&Key::of(&("size", len))).unwrap().unwrap(),
            &v[..]
        );
        assert_eq!(
            store
                .get::<Vec<u8>>(&Key::of(&("typed", len)))
                .unwrap()
                .unwrap(),
            v
        );
    }
    assert!(store.verify().unwrap().is_clean());
    assert_eq!(store.len(), 2 * sizes.len() as u64);
}

#[test]
fn hundred_mebibyte_value() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let v = pattern(100 << 20, 3);
    let k = Key::of("big");
    store.put_bytes(&k, &v).unwrap();
    let b = store.get_bytes(&k).unwrap().unwrap();
    assert_eq!(b.len(), v.len());
    assert!(*b == v[..]);
    assert_eq!(
        b.as_ptr() as usize % 64,
        0,
        "large payloads are 64-byte aligned"
    );
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn bytes_outlive_store_removal_and_replacement() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let (small, big) = (Key::of("small"), Key::of("big"));
    store.put_bytes(&small, b"first").unwrap();
    store.put_bytes(&big, &pattern(INLINE * 3, 1)).unwrap();
    let s = store.get_bytes(&small).unwrap().unwrap();
    let b = store.get_bytes(&big).unwrap().unwrap();
    store.put_bytes(&big, &pattern(INLINE * 2, 2)).unwrap();
    assert!(store.remove(&small).unwrap());
    assert!(!store.remove(&small).unwrap());
    store.clear().unwrap();
    drop(store);
    assert_eq!(&*s, b"first");
    assert!(*b == pattern(INLINE * 3, 1)[..]);
}

#[test]
fn replacing_large_and_small_values_reclaims_blob_files() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let k = Key::of("k");
    store.put_bytes(&k, &pattern(INLINE * 2, 1)).unwrap();
    store.put_bytes(&k, &pattern(INLINE * 3, 2)).unwrap();
    store.put_bytes(&k, b"small now").unwrap();
    assert_eq!(&*store.get_bytes(&k).unwrap().unwrap(), b"small now");
    let blobs = walk_files(&dir.path().join("blob"));
    assert!(blobs.is_empty(), "replaced blobs are unlinked: {blobs:?}");
    store.put_bytes(&k, &pattern(INLINE * 2, 4)).unwrap();
    assert!(store.remove(&k).unwrap());
    assert!(walk_files(&dir.path().join("blob")).is_empty());
    assert_eq!(store.len(), 0);
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(walk_files(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn index_grows_and_every_entry_stays() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let reader = Store::open(dir.path()).unwrap(); // a second handle, as another process would hold
    for i in 0..20_000_u32 {
        store.put(&Key::of(&i), &i).unwrap();
        if i % 997 == 0 {
            assert_eq!(reader.get::<u32>(&Key::of(&(i / 2))).unwrap(), Some(i / 2));
        }
    }
    for i in 0..20_000_u32 {
        assert_eq!(reader.get::<u32>(&Key::of(&i)).unwrap(), Some(i));
    }
    assert_eq!(reader.len(), 20_000);
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn lost_index_is_rebuilt_from_segments() {
    let dir = tempdir();
    {
        let store = Store::open(dir.path()).unwrap();
        for i in 0..3000_u32 {
            store.put(&Key::of(&i), &format!("v{i}")).unwrap();
        }
        for i in (0..3000_u32).step_by(3) {
            store.remove(&Key::of(&i)).unwrap();
        }
        store
            .put(&Key::of(&1_u32), &"replaced".to_string())
            .unwrap();
        store
            .put_bytes(&Key::of("blob"), &pattern(INLINE + 5, 9))
            .unwrap();
    }
    std::fs::remove_file(dir.path().join("index")).unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..3000_u32 {
        let want = match i {
            1 => Some("replaced".to_string()),
            _ if i % 3 == 0 => None,
            _ => Some(format!("v{i}")),
        };
        assert_eq!(store.get::<String>(&Key::of(&i)).unwrap(), want, "key {i}");
    }
    assert!(*store.get_bytes(&Key::of("blob")).unwrap().unwrap() == pattern(INLINE + 5, 9)[..]);
    assert_eq!(store.len(), 2001);
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn typed_and_raw_entries_do_not_mix() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let k = Key::of("raw");
    store.put_bytes(&k, b"abc").unwrap();
    assert!(matches!(store.get::<String>(&k), Err(Error::Codec { key, .. }) if key == k));
    store.put(&k, &12_u64).unwrap();
    assert!(matches!(store.get::<String>(&k), Err(Error::Codec { .. })));
    assert_eq!(store.get::<u64>(&k).unwrap(), Some(12));
}

/// Runs `f` on 8 threads released at the same moment; their results.
fn race<T: Send + 'static>(
    store: &Store,
    f: impl Fn(&Store) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (store, f, barrier) = (store.clone(), f.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f(&store)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn get_or_try_compute_stores_ok_once_and_never_an_error() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    // Errors: returned to every caller, never stored, so each call computes.
    let failures = AtomicUsize::new(0);
    let bad = Key::of("fails");
    for _ in 0..3 {
        let r: Result<Result<u32, String>, Error> = store.get_or_try_compute(&bad, || {
            failures.fetch_add(1, Ordering::SeqCst);
            Err("transient".to_owned())
        });
        assert_eq!(r.unwrap(), Err("transient".to_owned()));
    }
    assert_eq!(failures.load(Ordering::SeqCst), 3);
    assert!(!store.contains(&bad));
    // Ok: computed once across 8 threads asking at the same time, then loaded.
    let runs = Arc::new(AtomicUsize::new(0));
    let k = Key::of("slow ok");
    let counted = runs.clone();
    let results = race(&store, move |store| {
        store
            .get_or_try_compute(&k, || {
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(200));
                Ok::<_, String>(vec![2.5_f64; 1000])
            })
            .unwrap()
    });
    for r in results {
        assert_eq!(r, Ok(vec![2.5_f64; 1000]));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        store.get::<Vec<f64>>(&k).unwrap(),
        Some(vec![2.5_f64; 1000])
    );
    // A disabled store computes every time and stores nothing.
    let off = Store::disabled();
    let r: Result<u8, String> = off.get_or_try_compute(&k, || Ok(1)).unwrap();
    assert_eq!(r, Ok(1));
    assert!(!off.contains(&k) && off.dir().is_none());
}

#[test]
fn get_or_compute_runs_once_across_threads() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let k = Key::of("slow");
    let counted = runs.clone();
    let results = race(&store, move |store| {
        store
            .get_or_compute(&k, || {
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(200));
                vec![1.5_f64; 10_000]
            })
            .unwrap()
    });
    for r in results {
        assert_eq!(r, vec![1.5_f64; 10_000]);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let s = store.stats();
    assert_eq!(s.entries, 1);
    assert_eq!(
        (s.hits, s.misses),
        (7, 8),
        "7 waiters miss, then find the value: {s:?}"
    );
}

#[test]
fn sync_durability_round_trips() {
    let dir = tempdir();
    let store = Store::builder(dir.path())
        .durability(Durability::Sync)
        .open()
        .unwrap();
    for i in 0..50_u32 {
        store.put(&Key::of(&i), &vec![i; 100]).unwrap();
    }
    store
        .put_bytes(&Key::of("big"), &pattern(INLINE * 2, 0))
        .unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.get::<Vec<u32>>(&Key::of(&7_u32)).unwrap(),
        Some(vec![7; 100])
    );
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn stats_track_bytes_and_counts() {
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.is_empty());
    store.put_bytes(&Key::of(&1), &[0; 100]).unwrap();
    let s1 = store.stats();
    store.put_bytes(&Key::of(&1), &[1; 100]).unwrap();
    let s2 = store.stats();
    assert_eq!(s2.entries, 1);
    assert_eq!(
        s2.dead_bytes,
        s1.bytes - s1.index_bytes,
        "the replaced record is dead"
    );
    store.clear().unwrap();
    let s3 = store.stats();
    assert_eq!((s3.entries, s3.dead_bytes), (0, 0));
    assert_eq!(s3.bytes, s3.index_bytes);
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, Vec<u8>),
    PutTyped(u8, String),
    Get(u8),
    Remove(u8),
    Clear,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let value = prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..300),
        1 => (ALIGN - 2..ALIGN + 2, any::<u8>()).prop_map(|(l, s)| pattern(l, s)),
        1 => (INLINE - 2..INLINE + 2, any::<u8>()).prop_map(|(l, s)| pattern(l, s)),
    ];
    prop_oneof![
        6 => (any::<u8>(), value).prop_map(|(k, v)| Op::Put(k % 40, v)),
        2 => (any::<u8>(), ".{0,40}").prop_map(|(k, v)| Op::PutTyped(k % 40, v)),
        6 => any::<u8>().prop_map(|k| Op::Get(k % 40)),
        3 => any::<u8>().prop_map(|k| Op::Remove(k % 40)),
        1 => Just(Op::Clear),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Model {
    Raw(Vec<u8>),
    Typed(String),
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("MEMO_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn store_matches_a_hashmap(ops in proptest::collection::vec(op(), 1..120)) {
        let dir = tempdir();
        let mut store = Store::open(dir.path()).unwrap();
        let mut model: HashMap<u8, Model> = HashMap::new();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    store.put_bytes(&Key::of(&k), &v).unwrap();
                    model.insert(k, Model::Raw(v));
                }
                Op::PutTyped(k, v) => {
                    store.put(&Key::of(&k), &v).unwrap();
                    model.insert(k, Model::Typed(v));
                }
                Op::Get(k) => match model.get(&k) {
                    None => prop_assert!(store.get_bytes(&Key::of(&k)).unwrap().is_none()),
                    Some(Model::Raw(v)) => prop_assert_eq!(&*store.get_bytes(&Key::of(&k)).unwrap().unwrap(), &v[..]),
                    Some(Model::Typed(v)) => prop_assert_eq!(&store.get::<String>(&Key::of(&k)).unwrap().unwrap(), v),
                },
                Op::Remove(k) => prop_assert_eq!(store.remove(&Key::of(&k)).unwrap(), model.remove(&k).is_some()),
                Op::Clear => {
                    store.clear().unwrap();
                    model.clear();
                }
                Op::Reopen => {
                    drop(store);
                    store = Store::open(dir.path()).unwrap();
                }
            }
            prop_assert_eq!(store.len(), model.len() as u64);
        }
        for k in 0..40_u8 {
            prop_assert_eq!(store.contains(&Key::of(&k)), model.contains_key(&k));
        }
        let report = store.verify().unwrap();
        prop_assert!(report.is_clean(), "{:?}", report);
    }
}
