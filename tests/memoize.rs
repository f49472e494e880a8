//! Guards `#[memoize]`: each distinct call computed once, in this process
//! and the next; `return`, `?`, `Err`, generics, methods, `async` and
//! patterns keep their meaning; a broken store never fails a call.

#![allow(
    clippy::unwrap_used,
    clippy::needless_pass_by_value,
    reason = "tests: fail loudly; memoized arguments are taken as users write them"
)]

use std::process::Command;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use memo_core::{Store, memoize};
use serde::Serialize;

/// A store in a fresh directory that lives as long as the test binary.
fn fresh() -> Store {
    Store::open(memo_tests::tempdir().keep()).unwrap()
}

static RUNS: AtomicUsize = AtomicUsize::new(0);
static BASIC: LazyLock<Store> = LazyLock::new(fresh);

#[memoize(store = BASIC)]
fn square(x: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    x * x
}

#[test]
fn each_call_is_computed_once() {
    let before = RUNS.load(Ordering::SeqCst);
    assert_eq!(square(3), 9);
    assert_eq!(square(3), 9);
    assert_eq!(square(4), 16);
    assert_eq!(square(4), 16);
    assert_eq!(RUNS.load(Ordering::SeqCst) - before, 2);
    assert_eq!(BASIC.len(), 2);
    let s = BASIC.stats();
    assert_eq!((s.hits, s.misses), (2, 2));
}

static EARLY: LazyLock<Store> = LazyLock::new(fresh);
static EARLY_RUNS: AtomicUsize = AtomicUsize::new(0);

/// `return` inside the body returns from the body: the result is still
/// stored.
#[memoize(store = EARLY)]
fn classify(x: i32) -> String {
    EARLY_RUNS.fetch_add(1, Ordering::SeqCst);
    if x < 0 {
        return "negative".to_owned();
    }
    format!("{x} is not negative")
}

#[test]
fn early_return_is_cached() {
    assert_eq!(classify(-5), "negative");
    assert_eq!(classify(-5), "negative");
    assert_eq!(classify(5), "5 is not negative");
    assert_eq!(classify(5), "5 is not negative");
    assert_eq!(EARLY_RUNS.load(Ordering::SeqCst), 2);
}

/// An error type with no serde at all.
#[derive(Debug, PartialEq)]
struct ParseFailure(String);

static RESULTS: LazyLock<Store> = LazyLock::new(fresh);
static PARSES: AtomicUsize = AtomicUsize::new(0);

#[memoize(store = RESULTS)]
fn parse_sum(text: &str) -> Result<i64, ParseFailure> {
    PARSES.fetch_add(1, Ordering::SeqCst);
    let mut sum = 0;
    for part in text.split(',') {
        // `?` leaves the body, not the memoization.
        sum += part
            .trim()
            .parse::<i64>()
            .map_err(|e| ParseFailure(e.to_string()))?;
    }
    Ok(sum)
}

#[test]
fn results_cache_ok_only() {
    assert_eq!(parse_sum("1, 2, 3"), Ok(6));
    assert_eq!(parse_sum("1, 2, 3"), Ok(6));
    assert_eq!(PARSES.load(Ordering::SeqCst), 1);
    assert!(parse_sum("1, x").is_err());
    assert!(parse_sum("1, x").is_err());
    // Errors are computed every time: they may be transient.
    assert_eq!(PARSES.load(Ordering::SeqCst), 3);
    assert_eq!(RESULTS.len(), 1);
}

/// An alias of `Result`, as crates write them.
type Fallible<T> = Result<T, String>;

static ALIASED: LazyLock<Store> = LazyLock::new(fresh);
static ALIASED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(store = ALIASED)]
fn aliased(x: u32) -> Fallible<u32> {
    ALIASED_RUNS.fetch_add(1, Ordering::SeqCst);
    if x == 0 { Err("zero".into()) } else { Ok(x) }
}

#[memoize(store = ALIASED)]
fn io_result(x: u32) -> std::io::Result<u32> {
    ALIASED_RUNS.fetch_add(1, Ordering::SeqCst);
    if x == 0 {
        Err(std::io::Error::other("zero"))
    } else {
        Ok(x)
    }
}

#[memoize(store = ALIASED)]
async fn aliased_async(x: u32) -> Fallible<u32> {
    ALIASED_RUNS.fetch_add(1, Ordering::SeqCst);
    if x == 0 { Err("zero".into()) } else { Ok(x) }
}

/// Ok-only caching is decided by the type, not by how it is spelled: an
/// alias of `Result` and `io::Result` do not store their errors either.
#[test]
fn results_behind_aliases_cache_ok_only() {
    for _ in 0..2 {
        assert_eq!(aliased(0), Err("zero".to_owned()));
        assert_eq!(aliased(1), Ok(1));
        assert!(io_result(0).is_err());
        assert_eq!(io_result(1).unwrap(), 1);
        assert_eq!(pollster::block_on(aliased_async(0)), Err("zero".to_owned()));
        assert_eq!(pollster::block_on(aliased_async(1)), Ok(1));
    }
    // Each Ok computed once, each Err twice.
    assert_eq!(ALIASED_RUNS.load(Ordering::SeqCst), 3 + 3 * 2);
    assert_eq!(ALIASED.len(), 3);
}

static IGNORING: LazyLock<Store> = LazyLock::new(fresh);
static IGNORED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(store = IGNORING, ignore(verbose, progress))]
fn fit(data: Vec<f64>, verbose: bool, progress: Option<String>) -> f64 {
    IGNORED_RUNS.fetch_add(1, Ordering::SeqCst);
    if verbose {
        eprintln!("fitting {} points ({progress:?})", data.len());
    }
    data.iter().sum::<f64>() / data.len() as f64
}

#[test]
fn ignored_arguments_stay_out_of_the_key() {
    assert!((fit(vec![1.0, 2.0, 3.0], false, None) - 2.0).abs() < 1e-12);
    assert!((fit(vec![1.0, 2.0, 3.0], true, Some("50%".into())) - 2.0).abs() < 1e-12);
    assert_eq!(IGNORED_RUNS.load(Ordering::SeqCst), 1);
    fit(vec![1.0, 2.0], false, None);
    assert_eq!(IGNORED_RUNS.load(Ordering::SeqCst), 2);
}

static GENERIC: LazyLock<Store> = LazyLock::new(fresh);

/// The type parameter is part of the key even though no argument names it.
#[memoize(store = GENERIC)]
fn size_of_default<T>() -> usize
where
    T: Default + Serialize,
{
    std::mem::size_of_val(&T::default())
}

#[memoize(store = GENERIC)]
fn repeat<T, const N: usize>(item: T) -> Vec<String>
where
    T: Serialize + Clone + std::fmt::Debug,
{
    vec![format!("{item:?}"); N]
}

#[test]
fn generics_are_part_of_the_key() {
    assert_eq!(size_of_default::<u8>(), 1);
    assert_eq!(size_of_default::<u64>(), 8);
    assert_eq!(size_of_default::<u8>(), 1);
    assert_eq!(repeat::<_, 2>(7_u8), vec!["7", "7"]);
    assert_eq!(repeat::<_, 3>(7_u8), vec!["7", "7", "7"]);
    assert_eq!(repeat::<_, 3>("a"), vec!["\"a\""; 3]);
}

static METHODS: LazyLock<Store> = LazyLock::new(fresh);
static PREDICTIONS: AtomicUsize = AtomicUsize::new(0);

#[derive(Serialize)]
struct Linear {
    slope: f64,
    intercept: f64,
}

#[derive(Serialize)]
struct Constant(f64);

impl Linear {
    #[memoize(store = METHODS)]
    fn predict(&self, x: f64) -> f64 {
        PREDICTIONS.fetch_add(1, Ordering::SeqCst);
        self.slope * x + self.intercept
    }
}

impl Constant {
    // Same name, same module: the `Self` type keeps them apart.
    #[memoize(store = METHODS, helpers)]
    fn predict(&self, _x: f64) -> f64 {
        PREDICTIONS.fetch_add(1, Ordering::SeqCst);
        self.0
    }
}

#[test]
fn methods_hash_self() {
    let a = Linear {
        slope: 2.0,
        intercept: 1.0,
    };
    let b = Linear {
        slope: 3.0,
        intercept: 1.0,
    };
    assert!((a.predict(1.0) - 3.0).abs() < 1e-12);
    assert!((a.predict(1.0) - 3.0).abs() < 1e-12);
    assert!((b.predict(1.0) - 4.0).abs() < 1e-12);
    assert!((Constant(5.0).predict(1.0) - 5.0).abs() < 1e-12);
    assert_eq!(PREDICTIONS.load(Ordering::SeqCst), 3);
    // Per-function helpers see only their own type's entries.
    assert_eq!(Constant::predict_stats().entries, 1);
    assert_eq!(Constant::predict_clear().unwrap(), 1);
    assert_eq!(METHODS.len(), 2);
}

static PATTERNS: LazyLock<Store> = LazyLock::new(fresh);
static PATTERN_RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Serialize, Clone, Copy)]
struct Point {
    x: i32,
    y: i32,
}

#[memoize(store = PATTERNS)]
fn manhattan((a, b): (i32, i32), Point { x, y }: Point, _: &str, mut scale: i32) -> i32 {
    PATTERN_RUNS.fetch_add(1, Ordering::SeqCst);
    scale += 0;
    ((a - x).abs() + (b - y).abs()) * scale
}

#[test]
fn patterns_in_argument_position() {
    let p = Point { x: 1, y: 1 };
    assert_eq!(manhattan((4, 5), p, "first", 1), 7);
    // `_` binds nothing, so the body cannot depend on it: not in the key.
    assert_eq!(manhattan((4, 5), p, "second", 1), 7);
    assert_eq!(manhattan((4, 5), p, "first", 2), 14);
    assert_eq!(manhattan((4, 6), p, "first", 1), 8);
    assert_eq!(PATTERN_RUNS.load(Ordering::SeqCst), 3);
}

static ASYNC: LazyLock<Store> = LazyLock::new(fresh);
static ASYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(store = ASYNC)]
async fn fetch(id: u32) -> Result<Vec<u32>, String> {
    ASYNC_RUNS.fetch_add(1, Ordering::SeqCst);
    if id == 0 {
        return Err("no such id".into());
    }
    let base = std::future::ready(id).await;
    Ok((0..base).collect())
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[test]
fn async_functions_stay_send_and_cache() {
    let f = assert_send(fetch(3));
    assert_eq!(pollster::block_on(f), Ok(vec![0, 1, 2]));
    assert_eq!(pollster::block_on(fetch(3)), Ok(vec![0, 1, 2]));
    assert!(pollster::block_on(fetch(0)).is_err());
    assert!(pollster::block_on(fetch(0)).is_err());
    assert_eq!(ASYNC_RUNS.load(Ordering::SeqCst), 3);
}

static HELPED: LazyLock<Store> = LazyLock::new(fresh);
static HELPED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(store = HELPED, helpers, ignore(note))]
fn cube(x: u64, note: &str) -> u64 {
    HELPED_RUNS.fetch_add(1, Ordering::SeqCst);
    let _ = note;
    x * x * x
}

#[memoize(store = HELPED)]
fn other(x: u64) -> u64 {
    x + 1
}

#[test]
fn helpers_bypass_recompute_inspect_and_clear() {
    let runs = || HELPED_RUNS.load(Ordering::SeqCst);
    assert!(!cube_is_cached(2, "a"));
    assert_eq!(runs(), 0, "is_cached never computes");
    assert_eq!(cube(2, "a"), 8);
    assert!(cube_is_cached(2, "b"));
    assert_eq!(cube(2, "a"), 8);
    assert_eq!(runs(), 1);
    assert_eq!(cube_uncached(2, "a"), 8);
    assert_eq!(runs(), 2);
    assert_eq!(cube_recompute(2, "a"), 8);
    assert_eq!(runs(), 3);
    assert_eq!(cube(2, "a"), 8);
    assert_eq!(runs(), 3);
    cube(3, "a");
    other(1);
    let s = cube_stats();
    assert_eq!(s.entries, 2);
    assert!(s.bytes > 0);
    // One hit before `recompute` replaced the entry and one since: hits
    // count over the same span as misses, replaced entries' included.
    assert_eq!(s.hits, 2);
    assert_eq!(cube_clear().unwrap(), 2);
    assert!(!cube_is_cached(2, "a"));
    assert_eq!(cube_stats().entries, 0);
    // Other functions' entries stay.
    assert_eq!(HELPED.len(), 1);
    cube(2, "a");
    assert_eq!(runs(), 5);
}

static SLOW_RUNS: AtomicUsize = AtomicUsize::new(0);
static FLIGHT: LazyLock<Store> = LazyLock::new(fresh);

#[memoize(store = FLIGHT)]
fn slow(x: u32) -> u32 {
    SLOW_RUNS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(300));
    x + 1
}

#[test]
fn concurrent_callers_share_one_computation() {
    let threads: Vec<_> = (0..8).map(|_| std::thread::spawn(|| slow(41))).collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 42);
    }
    assert_eq!(SLOW_RUNS.load(Ordering::SeqCst), 1);
}

static BROKEN_RUNS: AtomicUsize = AtomicUsize::new(0);

/// `/dev/null` is not a directory: the store cannot be opened.
#[memoize(dir = "/dev/null/memo")]
fn on_broken_store(x: u32) -> u32 {
    BROKEN_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 2
}

#[test]
fn a_broken_store_never_fails_a_call() {
    assert_eq!(on_broken_store(1), 2);
    assert_eq!(on_broken_store(1), 2);
    assert_eq!(BROKEN_RUNS.load(Ordering::SeqCst), 2);
}

static DIR_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Relative to the package directory, where tests run.
#[memoize(dir = "../target/memo-test-dir-option", helpers)]
fn in_dir(x: u32) -> u32 {
    DIR_RUNS.fetch_add(1, Ordering::SeqCst);
    x + 100
}

#[test]
fn dir_opens_a_store_there() {
    in_dir_clear().unwrap();
    assert_eq!(in_dir(1), 101);
    assert_eq!(in_dir(1), 101);
    assert_eq!(DIR_RUNS.load(Ordering::SeqCst), 1);
    let store = Store::open("../target/memo-test-dir-option").unwrap();
    assert!(!store.is_empty());
}

static VERSIONED: LazyLock<Store> = LazyLock::new(fresh);

mod v1 {
    use super::{VERSIONED, memoize_alias};
    #[memoize_alias::memoize(store = VERSIONED)]
    pub fn answer() -> u32 {
        1
    }
}

mod v2 {
    use super::{VERSIONED, memoize_alias};
    // The same function with a version bump: its own entries.
    #[memoize_alias::memoize(store = VERSIONED, version = "2")]
    pub fn answer() -> u32 {
        2
    }
}

/// The attribute works under another path, as generated code must.
mod memoize_alias {
    pub use memo_core::memoize;
}

#[test]
fn modules_and_versions_keep_functions_apart() {
    assert_eq!(v1::answer(), 1);
    assert_eq!(v2::answer(), 2);
    assert_eq!(v1::answer(), 1);
    assert_eq!(VERSIONED.len(), 2);
}

/// Computes once per store, whichever process asks.
#[memoize]
fn global_square(x: u64) -> u64 {
    println!("COMPUTED");
    x * x
}

/// Not a test of its own: the body of the child processes.
#[test]
fn child_role() {
    match std::env::var("MEMO_TEST_ROLE").as_deref() {
        Ok("many") => {
            for x in 0..10 {
                assert_eq!(global_square(x), x * x);
            }
        }
        Ok(_) => assert_eq!(global_square(12), 144),
        Err(_) => {}
    }
}

/// Runs the child role with `env` set; its exit status and stderr.
fn child_with(role: &str, env: &[(&str, &std::ffi::OsStr)]) -> (bool, String) {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env("MEMO_TEST_ROLE", role)
        .env_remove("MEMO_QUIET")
        .env_remove("MEMO_STRICT")
        .env_remove("MEMO_REMOTE");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn caching_off_says_so_once_on_stderr() {
    let t = tempfile::tempdir().unwrap();
    // A regular file where the store should be: it cannot be opened.
    let file = t.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let (ok, err) = child_with("many", &[("MEMO_DIR", file.as_os_str())]);
    assert!(ok, "the calls still run: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("caching is off"))
        .collect();
    assert_eq!(lines.len(), 1, "one line for ten calls: {err}");
    assert!(
        lines[0].contains(&file.display().to_string()),
        "{}",
        lines[0]
    );
    // Quiet when asked.
    let (ok, err) = child_with(
        "many",
        &[("MEMO_DIR", file.as_os_str()), ("MEMO_QUIET", "1".as_ref())],
    );
    assert!(ok && !err.contains("caching is off"), "{err}");
    // Strict: the call fails instead of running uncached.
    let (ok, err) = child_with(
        "many",
        &[
            ("MEMO_DIR", file.as_os_str()),
            ("MEMO_STRICT", "1".as_ref()),
        ],
    );
    assert!(!ok, "MEMO_STRICT fails the call");
    assert!(err.contains("MEMO_STRICT"), "{err}");
}

#[test]
fn the_default_store_takes_limits_from_the_environment() {
    let t = tempfile::tempdir().unwrap();
    let (ok, err) = child_with(
        "many",
        &[
            ("MEMO_DIR", t.path().as_os_str()),
            ("MEMO_MAX_ENTRIES", "4".as_ref()),
        ],
    );
    assert!(ok, "{err}");
    let n = Store::open(t.path()).unwrap().len();
    assert!(n <= 4, "MEMO_MAX_ENTRIES=4 kept {n} entries");
}

#[test]
fn the_next_process_loads_instead_of_computing() {
    let dir = memo_tests::tempdir();
    let run = || {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
            .env("MEMO_TEST_ROLE", "global")
            .env("MEMO_DIR", dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).contains("COMPUTED")
    };
    assert!(run(), "the first process computes");
    assert!(!run(), "the second process loads");
    assert_eq!(Store::open(dir.path()).unwrap().len(), 1);
}

static BULK: LazyLock<Store> = LazyLock::new(fresh);
static BULK_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(store = BULK)]
fn samples(n: usize, seed: u8) -> Vec<u8> {
    BULK_RUNS.fetch_add(1, Ordering::SeqCst);
    (0..n).map(|i| (i as u8).wrapping_mul(seed)).collect()
}

#[memoize(store = BULK)]
fn series(n: u32) -> Vec<f64> {
    BULK_RUNS.fetch_add(1, Ordering::SeqCst);
    (0..n).map(|i| f64::from(i).sqrt()).collect()
}

#[memoize(store = BULK)]
fn signed(n: i64) -> Vec<i64> {
    BULK_RUNS.fetch_add(1, Ordering::SeqCst);
    (-n..n).collect()
}

#[memoize(store = BULK, ttl = "1h")]
fn timed_series(n: u32) -> Vec<f32> {
    BULK_RUNS.fetch_add(1, Ordering::SeqCst);
    (0..n).map(|i| i as f32 / 3.0).collect()
}

#[memoize(store = BULK)]
fn generic_series<T: Clone + serde::Serialize + serde::de::DeserializeOwned>(
    x: T,
    n: usize,
) -> Vec<T> {
    BULK_RUNS.fetch_add(1, Ordering::SeqCst);
    vec![x; n]
}

/// Vectors of numbers (stored as their bytes) come back exactly, at every
/// length including empty and odd ones; with a ttl and through a generic
/// function they take the per-element path, and come back exactly too.
#[test]
fn vectors_of_numbers_round_trip() {
    for n in [0, 1, 7, 8, 63, 64, 65, 4095, 70_000, 3 << 20] {
        let before = BULK_RUNS.load(Ordering::SeqCst);
        let first = samples(n, 3);
        assert_eq!(first.len(), n);
        assert_eq!(samples(n, 3), first);
        assert_eq!(BULK_RUNS.load(Ordering::SeqCst), before + 1, "{n}: a hit");
    }
    for n in [0, 1, 1000, 300_000] {
        let first = series(n);
        assert_eq!(series(n), first);
        assert!(
            first
                .iter()
                .zip(0..)
                .all(|(v, i)| v.to_bits() == f64::from(i).sqrt().to_bits())
        );
    }
    assert_eq!(signed(3), vec![-3, -2, -1, 0, 1, 2]);
    assert_eq!(signed(3), vec![-3, -2, -1, 0, 1, 2]);
    assert_eq!(timed_series(4), timed_series(4));
    assert_eq!(generic_series(2.5_f64, 3), vec![2.5; 3]);
    assert_eq!(generic_series(2.5_f64, 3), vec![2.5; 3]);
}

#[memoize(store = BULK)]
fn parsed(text: String) -> Result<Vec<f32>, std::num::ParseFloatError> {
    BULK_RUNS.fetch_add(1, Ordering::SeqCst);
    text.split(',').map(str::parse).collect()
}

/// A `Result` of a vector of numbers keeps `Ok` only, stored as bytes.
#[test]
fn a_result_of_numbers_keeps_ok_only() {
    let before = BULK_RUNS.load(Ordering::SeqCst);
    assert_eq!(parsed("1.5,2".into()), Ok(vec![1.5, 2.0]));
    assert_eq!(parsed("1.5,2".into()), Ok(vec![1.5, 2.0]));
    assert!(parsed("x".into()).is_err());
    assert!(parsed("x".into()).is_err());
    assert_eq!(
        BULK_RUNS.load(Ordering::SeqCst),
        before + 3,
        "Ok stored, Err not"
    );
}

static HOT: LazyLock<Store> = LazyLock::new(fresh);
static HOT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(store = HOT, memory = 4, helpers)]
fn hot(x: u64) -> u64 {
    HOT_RUNS.fetch_add(1, Ordering::SeqCst) as u64 * 1000 + x
}

/// `memory = N`: repeated calls are answered in the process without
/// touching the store (its hit count stays), at most N are kept, and
/// `_recompute` and `_clear` leave nothing older than the store behind.
#[test]
fn the_memory_tier_is_bounded_and_coherent() {
    let first = hot(1);
    let hits = HOT.stats().hits;
    for _ in 0..10 {
        assert_eq!(hot(1), first);
    }
    assert_eq!(HOT.stats().hits, hits, "answered from memory");
    // Eight distinct calls through a tier of four: the first ones come
    // from the store again.
    for x in 10..18 {
        hot(x);
    }
    let hits = HOT.stats().hits;
    assert_eq!(hot(10), hot(10));
    assert!(
        HOT.stats().hits > hits,
        "evicted from memory, read from the store"
    );
    // A recomputed value replaces the kept one.
    let again = hot_recompute(1);
    assert_ne!(again, first);
    assert_eq!(hot(1), again);
    // Cleared: computed anew.
    let runs = HOT_RUNS.load(Ordering::SeqCst);
    hot_clear().unwrap();
    hot(1);
    assert_eq!(HOT_RUNS.load(Ordering::SeqCst), runs + 1);
}

static NESTED: LazyLock<Store> = LazyLock::new(fresh);
static NESTED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(store = NESTED, memory = 16)]
fn inner_hot(x: u64) -> u64 {
    NESTED_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 3
}

/// An argument whose `Serialize` makes a memoized call of its own while
/// the outer call's key is being fed.
struct Reentrant(u64);

impl Serialize for Reentrant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(inner_hot(self.0))
    }
}

#[memoize(store = NESTED, memory = 16)]
fn outer_hot(r: Reentrant, y: u64) -> u64 {
    NESTED_RUNS.fetch_add(1, Ordering::SeqCst);
    r.0 + y
}

/// `memory = N` keeps one key builder per thread; a call made while it is
/// in use (from an argument's `Serialize`) gets one of its own, and both
/// calls keep their keys apart, on every thread.
#[test]
fn a_memory_call_inside_another_keeps_both_keys() {
    let runs = || NESTED_RUNS.load(Ordering::SeqCst);
    assert_eq!(outer_hot(Reentrant(2), 5), 7);
    assert_eq!(runs(), 2, "outer and inner each ran once");
    assert_eq!(outer_hot(Reentrant(2), 5), 7);
    assert_eq!(outer_hot(Reentrant(3), 5), 8);
    assert_eq!(runs(), 4);
    std::thread::scope(|s| {
        for t in 0..4_u64 {
            s.spawn(move || {
                for i in 0..50 {
                    assert_eq!(outer_hot(Reentrant(i % 5), t), i % 5 + t);
                    assert_eq!(inner_hot(i), i * 3);
                }
            });
        }
    });
}

static OFF: LazyLock<Store> = LazyLock::new(Store::disabled);
static OFF_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(store = OFF, memory = 8)]
fn off(x: u64) -> u64 {
    OFF_RUNS.fetch_add(1, Ordering::SeqCst);
    x
}

/// A disabled store caches nothing, in memory neither.
#[test]
fn a_disabled_store_keeps_nothing_in_memory_either() {
    off(1);
    off(1);
    assert_eq!(OFF_RUNS.load(Ordering::SeqCst), 2);
}
