//! Guards the call protocol another language's binding drives
//! (`memo_core::protocol`): one runtime for both languages. Keys follow the
//! identity and the canonical argument bytes and never meet a Rust
//! function's; a call computes once across threads and processes; `ttl`,
//! `min_cost` and the memory tier behave as the attribute's; values come
//! back as views of the mapped file; the registry names the function as its
//! language does; errors of the body are returned and not stored.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use memo_core::protocol::{Encoded, FOREIGN_CODECS, Function, Identity, Options};
use memo_core::{Store, memoize};
use memo_tests::tempdir;

fn id(code: &str) -> Identity<'_> {
    Identity {
        language: "python",
        module: "lab.models",
        name: "fit",
        code,
        version: "",
        helpers: None,
    }
}

const CODE: &str = "def fit(x):\n    return x * 2";

#[test]
fn keys_follow_identity_and_argument_bytes() {
    let f = Function::new(&id(CODE), Options::new());
    let again = Function::new(&id(CODE), Options::new());
    assert_eq!(f.key(b"\x0a1"), again.key(b"\x0a1"), "same call, same key");
    let mut streamed = f.key_builder();
    streamed.feed(b"\x0a");
    streamed.feed(b"1");
    assert_eq!(streamed.finish(), f.key(b"\x0a1"), "fed in pieces");
    assert_ne!(f.key(b"\x0a1"), f.key(b"\x0a2"));
    let edited = Function::new(&id("def fit(x):\n    return x * 3"), Options::new());
    assert_ne!(f.key(b"\x0a1"), edited.key(b"\x0a1"), "new code, new keys");
    let bumped = Function::new(
        &Identity {
            version: "2",
            ..id(CODE)
        },
        Options::new(),
    );
    assert_ne!(f.key(b"\x0a1"), bumped.key(b"\x0a1"));
    let helped = Function::new(
        &Identity {
            helpers: Some([7; 32]),
            ..id(CODE)
        },
        Options::new(),
    );
    assert_ne!(f.key(b"\x0a1"), helped.key(b"\x0a1"));
    // The same names in another language are another function.
    let rust = Function::new(
        &Identity {
            language: "rust-ish",
            ..id(CODE)
        },
        Options::new(),
    );
    assert_ne!(f.key(b"\x0a1"), rust.key(b"\x0a1"));
}

static STORE: std::sync::LazyLock<Store> =
    std::sync::LazyLock::new(|| Store::open(tempdir().keep()).unwrap());

/// A Rust function with the same module path and name as the foreign one.
mod lab {
    #[super::memoize(store = super::STORE)]
    pub fn fit(x: u64) -> u64 {
        x * 2
    }
}

#[test]
fn values_round_trip_as_mapped_views_and_compute_once_across_threads() {
    let t = tempdir();
    let store = Store::open(t.path()).unwrap();
    let f = Function::new(&id(CODE), Options::new());
    let runs = AtomicUsize::new(0);
    let big: Vec<u8> = (0..3_000_000_u32).map(|i| (i % 251) as u8).collect();
    for (n, value) in [b"small".to_vec(), big.clone(), Vec::new()]
        .into_iter()
        .enumerate()
    {
        let key = f.key(&[n as u8]);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let v = f
                        .call(&store, &key, || {
                            runs.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(30));
                            Ok::<_, ()>(Encoded::new(17, value.clone()))
                        })
                        .unwrap();
                    assert_eq!((&*v, v.codec()), (&value[..], 17));
                });
            }
        });
        let hit = f.get(&store, &key).unwrap();
        assert!(hit.mapped().is_some(), "a hit views the mapped file");
        assert_eq!(&*hit, &value[..]);
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "once per call across 8 threads"
    );
    let s = f.stats(&store);
    assert_eq!((s.entries, s.misses), (3, 3));
    assert!(s.hits >= 3, "the three lookups after: {s:?}");
    // Named as Python names it, beside Rust functions.
    lab::fit(4);
    let listed: Vec<String> = STORE
        .functions()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert!(listed.iter().any(|n| n.ends_with("lab::fit")), "{listed:?}");
    let listed: Vec<String> = store
        .functions()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(listed, ["lab.models.fit"]);
    assert_eq!(f.clear(&store).unwrap(), 3);
    assert_eq!(store.len(), 0);
}

#[test]
fn errors_are_returned_not_stored_and_bad_codecs_refused() {
    let t = tempdir();
    let store = Store::open(t.path()).unwrap();
    let f = Function::new(&id(CODE), Options::new());
    let key = f.key(b"x");
    let e = f.call(&store, &key, || Err::<Encoded, _>("diverged"));
    assert_eq!(e.unwrap_err(), "diverged");
    assert!(!f.is_cached(&store, &key));
    // A codec id outside the bindings' range is not stored (reported), and
    // the value is still returned.
    assert!(!FOREIGN_CODECS.contains(&1));
    let v = f
        .call(&store, &key, || Ok::<_, ()>(Encoded::new(1, b"v".to_vec())))
        .unwrap();
    assert_eq!(&*v, b"v");
    assert!(!f.is_cached(&store, &key));
}

#[test]
fn ttl_min_cost_and_the_memory_tier() {
    let t = tempdir();
    let store = Store::open(t.path()).unwrap();
    let ttl = Function::new(&id(CODE), Options::new().ttl(Duration::from_millis(300)));
    let key = ttl.key(b"t");
    let runs = AtomicUsize::new(0);
    let call = || {
        ttl.call(&store, &key, || {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(Encoded::new(16, b"stamped".to_vec()))
        })
        .unwrap()
    };
    assert_eq!(&*call(), b"stamped");
    assert_eq!(&*call(), b"stamped");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "young: a hit");
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(&*call(), b"stamped");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "past the ttl: computed again"
    );

    let cheap = Function::new(
        &Identity {
            name: "cheap",
            ..id(CODE)
        },
        Options::new().min_cost(Duration::from_millis(200)),
    );
    let key = cheap.key(b"c");
    cheap
        .call(&store, &key, || {
            Ok::<_, ()>(Encoded::new(16, b"c".to_vec()))
        })
        .unwrap();
    assert!(!cheap.is_cached(&store, &key), "cheaper than min_cost");

    let kept = Function::new(
        &Identity {
            name: "kept",
            ..id(CODE)
        },
        Options::new().memory(10),
    );
    let key = kept.key(b"m");
    kept.call(&store, &key, || {
        Ok::<_, ()>(Encoded::new(16, b"m".to_vec()))
    })
    .unwrap();
    // Gone from the store, still in memory: the tier answers first.
    store.remove(&key).unwrap();
    let v = kept
        .call(&store, &key, || {
            Ok::<_, ()>(Encoded::new(16, b"recomputed".to_vec()))
        })
        .unwrap();
    assert_eq!(&*v, b"m");
    assert_eq!(kept.clear(&store).unwrap(), 0);
    let v = kept
        .call(&store, &key, || {
            Ok::<_, ()>(Encoded::new(16, b"recomputed".to_vec()))
        })
        .unwrap();
    assert_eq!(&*v, b"recomputed", "clear empties the memory tier too");
}

/// Not a test of its own: a process calling the slow foreign function.
#[test]
fn child_protocol_role() {
    let Some(dir) = std::env::var_os("MEMO_PROTOCOL_DIR") else {
        return;
    };
    let store = Store::open(dir).unwrap();
    let f = Function::new(&id(CODE), Options::new());
    let v = f
        .call(&store, &f.key(b"slow"), || {
            memo_tests::log_line("computed");
            std::thread::sleep(Duration::from_millis(500));
            Ok::<_, ()>(Encoded::new(16, b"slow value".to_vec()))
        })
        .unwrap();
    assert_eq!(&*v, b"slow value");
}

#[test]
fn four_processes_compute_once() {
    let t = tempdir();
    let log = t.path().join("log");
    let kids: Vec<_> = (0..4)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "child_protocol_role", "--nocapture"])
                .env("MEMO_PROTOCOL_DIR", t.path().join("store"))
                .env("MEMO_TEST_LOG", &log)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    let computed = std::fs::read_to_string(&log).unwrap().lines().count();
    assert_eq!(computed, 1, "one computation across 4 processes");
}
