//! Guards what decides whether a stored result still counts: `ttl` (age
//! since it was computed) and `min_cost` (cheap results are not stored).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use memo_core::{Store, memoize};

fn fresh() -> Store {
    Store::open(memo_tests::tempdir().keep()).unwrap()
}

static TTL: LazyLock<Store> = LazyLock::new(fresh);
static TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(store = TTL, ttl = "400ms")]
fn quote(symbol: &str) -> String {
    TTL_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("{symbol}: {}", TTL_RUNS.load(Ordering::SeqCst))
}

/// A result older than the ttl is computed again and replaces the old one;
/// younger, it is a hit.
#[test]
fn a_result_older_than_its_ttl_is_computed_again() {
    let first = quote("ACME");
    let at = Instant::now();
    assert_eq!(quote("ACME"), first, "young: a hit");
    assert_eq!(TTL_RUNS.load(Ordering::SeqCst), 1);
    std::thread::sleep(Duration::from_millis(450).saturating_sub(at.elapsed()));
    let second = quote("ACME");
    assert_ne!(second, first, "past the ttl: computed again");
    assert_eq!(TTL_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(quote("ACME"), second, "the new result replaced the old");
    assert_eq!(TTL_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(TTL.len(), 1, "replaced, not added");
}

static TTL_OK: LazyLock<Store> = LazyLock::new(fresh);
static TTL_OK_RUNS: AtomicUsize = AtomicUsize::new(0);

/// A `Result` with a ttl: `Ok` stored with its time, `Err` not stored.
#[memoize(store = TTL_OK, ttl = "300ms")]
fn fetch(id: u32) -> Result<u32, String> {
    TTL_OK_RUNS.fetch_add(1, Ordering::SeqCst);
    if id == 0 {
        Err("no such id".into())
    } else {
        Ok(id * 10)
    }
}

#[test]
fn a_result_with_a_ttl_keeps_ok_only() {
    assert_eq!(fetch(0), Err("no such id".into()));
    assert_eq!(fetch(0), Err("no such id".into()));
    assert_eq!(TTL_OK_RUNS.load(Ordering::SeqCst), 2, "Err is not stored");
    assert_eq!(fetch(4), Ok(40));
    assert_eq!(fetch(4), Ok(40));
    assert_eq!(TTL_OK_RUNS.load(Ordering::SeqCst), 3);
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(fetch(4), Ok(40));
    assert_eq!(
        TTL_OK_RUNS.load(Ordering::SeqCst),
        4,
        "expired: computed again"
    );
}

static COST: LazyLock<Store> = LazyLock::new(fresh);
static COST_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Sleeps `ms` milliseconds: above `min_cost` it is stored, below not.
#[memoize(store = COST, min_cost = "200ms")]
fn work(ms: u64) -> u64 {
    COST_RUNS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn results_cheaper_than_min_cost_are_not_stored() {
    assert_eq!(work(1), 1);
    assert_eq!(work(1), 1);
    assert_eq!(
        COST_RUNS.load(Ordering::SeqCst),
        2,
        "1 ms < 200 ms: not stored"
    );
    assert_eq!(work(300), 300);
    assert_eq!(work(300), 300);
    assert_eq!(COST_RUNS.load(Ordering::SeqCst), 3, "300 ms: stored");
    assert_eq!(COST.len(), 1);
}

static ASYNC_TTL: LazyLock<Store> = LazyLock::new(fresh);
static ASYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(store = ASYNC_TTL, ttl = "300ms", min_cost = "1ms")]
async fn remote_size(url: String) -> usize {
    ASYNC_RUNS.fetch_add(1, Ordering::SeqCst);
    // Long enough to be worth storing.
    tokio::time::sleep(Duration::from_millis(3)).await;
    url.len()
}

#[test]
fn async_functions_keep_ttl_too() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(remote_size("a/b".into()).await, 3);
        assert_eq!(remote_size("a/b".into()).await, 3);
        assert_eq!(ASYNC_RUNS.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(remote_size("a/b".into()).await, 3);
        assert_eq!(ASYNC_RUNS.load(Ordering::SeqCst), 2);
    });
}

static DATA: LazyLock<Store> = LazyLock::new(fresh);
static DATA_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(store = DATA)]
fn checksum(input: memo_core::DataFile) -> u64 {
    DATA_RUNS.fetch_add(1, Ordering::SeqCst);
    std::fs::read(input.path())
        .unwrap()
        .iter()
        .map(|&b| u64::from(b))
        .sum()
}

/// The contents decide, not the metadata: a file rewritten with the same
/// size and its old modification time restored is a new call; an unchanged
/// file is not read again.
#[test]
fn a_data_file_is_keyed_by_its_contents() {
    use memo_core::DataFile;
    let t = memo_tests::tempdir();
    let path = t.path().join("input.bin");
    std::fs::write(&path, vec![1_u8; 100_000]).unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    // Older than a kernel tick and then some, so its digest is kept.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(checksum(DataFile::new(&path)), 100_000);
    let runs = DATA_RUNS.load(Ordering::SeqCst);
    let read = memo_core::__private::data_file_bytes_read();
    for _ in 0..5 {
        assert_eq!(checksum(DataFile::new(&path)), 100_000);
    }
    assert_eq!(DATA_RUNS.load(Ordering::SeqCst), runs, "hits");
    assert_eq!(
        memo_core::__private::data_file_bytes_read(),
        read,
        "an unchanged file is not read again"
    );

    // Same size, old modification time: only the contents changed.
    std::fs::write(&path, vec![2_u8; 100_000]).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(modified).unwrap();
    drop(f);
    let m = std::fs::metadata(&path).unwrap();
    assert_eq!((m.len(), m.modified().unwrap()), (100_000, modified));
    assert_eq!(checksum(DataFile::new(&path)), 200_000);
    assert_eq!(DATA_RUNS.load(Ordering::SeqCst), runs + 1, "computed again");

    // A missing file is a call of its own, not an error of the key.
    let gone = DataFile::new(t.path().join("missing"));
    assert!(gone.digest().is_err());
    assert_ne!(
        memo_core::Key::of(&gone),
        memo_core::Key::of(&DataFile::new(&path))
    );
}

static REL: LazyLock<Store> = LazyLock::new(|| {
    Store::open(
        std::env::var_os("MEMO_TEST_DIR")
            .map_or_else(|| memo_tests::tempdir().keep(), std::path::PathBuf::from),
    )
    .unwrap()
});

/// Counts its lines, and zero for a file it cannot read: the case that
/// hid a wrong cached result (issue 30).
#[memoize(store = REL)]
fn line_count(input: memo_core::DataFile) -> usize {
    log_run();
    std::fs::read_to_string(input.path()).map_or(0, |t| t.lines().count())
}

fn log_run() {
    memo_tests::log_line("ran");
}

/// Not a test of its own: a program run from some working directory,
/// calling `line_count` on a relative path three times.
#[test]
fn child_relative_data_file() {
    if std::env::var_os("MEMO_TEST_DIR").is_none() {
        return;
    }
    for _ in 0..3 {
        println!(
            "count {}",
            line_count(memo_core::DataFile::new("data/points.csv"))
        );
    }
}

/// A new user's mistake: run from `sub/deeper`, a path relative to the
/// project cannot be read. The call runs every time, nothing is stored,
/// and stderr says once which path (as resolved) and why. Run from the
/// project root, the same call is computed once and then loaded.
#[test]
fn an_unreadable_data_file_is_never_a_cached_result() {
    let t = memo_tests::tempdir();
    let project = t.path().join("project");
    std::fs::create_dir_all(project.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(project.join("data")).unwrap();
    std::fs::write(project.join("data/points.csv"), "x,y\n1,2\n3,4\n").unwrap();
    let store = t.path().join("store");
    let log = t.path().join("runs");
    let run_in = |cwd: &std::path::Path| {
        let out = memo_tests::succeed(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "child_relative_data_file", "--nocapture"])
                .current_dir(cwd)
                .env("MEMO_TEST_DIR", &store)
                .env("MEMO_TEST_LOG", &log)
                .env_remove("MEMO_QUIET"),
        );
        let runs = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count();
        let _ = std::fs::remove_file(&log);
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            runs,
        )
    };

    let (stdout, stderr, runs) = run_in(&project.join("sub/deeper"));
    assert_eq!(stdout.matches("count 0").count(), 3, "{stdout}");
    assert_eq!(runs, 3, "never a hit: each call ran");
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cannot be read"))
        .collect();
    assert_eq!(said.len(), 1, "said once: {stderr}");
    assert!(
        said[0].contains("data/points.csv (relative to the working directory")
            && said[0].contains("sub/deeper")
            && said[0].contains("not stored"),
        "{}",
        said[0]
    );
    assert_eq!(Store::open(&store).unwrap().len(), 0, "nothing was stored");

    let (stdout, stderr, runs) = run_in(&project);
    assert_eq!(stdout.matches("count 3").count(), 3, "{stdout}");
    assert_eq!(runs, 1, "readable: computed once, then loaded");
    assert!(!stderr.contains("cannot be read"), "{stderr}");
}
