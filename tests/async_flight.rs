//! Guards single flight of `async` memoized calls: tasks of one process
//! and tasks of another, missing the same call at once, compute it once;
//! waiting never blocks an executor thread (a single-threaded runtime keeps
//! running its other tasks while its tasks wait, on this process's leader
//! or on another process). Children are this test binary re-run with a
//! role.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::process::Command;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use memo_core::{Store, memoize};

static STORE: LazyLock<Store> =
    LazyLock::new(|| Store::open(std::env::var("MEMO_TEST_DIR").unwrap()).unwrap());

fn log(line: &str) {
    memo_tests::log_line(&format!("{line} {}", std::process::id()));
}

#[memoize(store = STORE)]
async fn slow(x: u64) -> Vec<u64> {
    log("computing");
    tokio::time::sleep(Duration::from_millis(800)).await;
    vec![x; 100]
}

/// Ticks of a task that runs beside the waiting ones: it only advances if
/// waiting leaves the executor's thread free.
static TICKS: AtomicU64 = AtomicU64::new(0);

async fn race() {
    let ticker = tokio::spawn(async {
        for _ in 0..200 {
            TICKS.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async {
                let v = slow(7).await;
                assert_eq!(v, vec![7; 100]);
                log("got");
            })
        })
        .collect();
    let before = TICKS.load(Ordering::Relaxed);
    let started = std::time::Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let ran = TICKS.load(Ordering::Relaxed) - before;
    let waited = started.elapsed();
    // A tick per 5 ms while the tasks waited (about 800 ms, unless the
    // other process had already stored the value): far more than a few,
    // unless the thread was blocked.
    if waited >= Duration::from_millis(200) {
        let want = u64::try_from(waited.as_millis() / 40).unwrap();
        assert!(
            ran >= want,
            "the executor was blocked: {ran} ticks in {waited:?}"
        );
    }
    ticker.abort();
}

/// Not a test of its own: the body of the children.
#[test]
fn child_role() {
    let Ok(role) = std::env::var("MEMO_TEST_ROLE") else {
        return;
    };
    let rt = match role.as_str() {
        "multi" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    };
    rt.block_on(race());
}

#[test]
fn tasks_and_processes_missing_one_async_call_compute_it_once() {
    let dir = memo_tests::tempdir();
    let log = dir.path().join("log");
    let kids: Vec<_> = ["multi", "single"]
        .iter()
        .map(|role| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
                .env("MEMO_TEST_ROLE", role)
                .env("MEMO_TEST_DIR", dir.path().join("store"))
                .env("MEMO_TEST_LOG", &log)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success(), "a child failed");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let count = |what: &str| text.lines().filter(|l| l.starts_with(what)).count();
    assert_eq!(count("got"), 16, "{text}");
    assert_eq!(count("computing"), 1, "computed once in all: {text}");
}

static LOCAL: LazyLock<Store> =
    LazyLock::new(|| Store::open(memo_tests::tempdir().keep()).unwrap());
static LOCAL_RUNS: AtomicU64 = AtomicU64::new(0);

#[memoize(store = LOCAL)]
async fn abandoned(x: u64) -> u64 {
    LOCAL_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    x
}

/// A leader cancelled mid-computation does not strand the tasks waiting
/// on it: the next one computes.
#[test]
fn a_cancelled_leader_lets_a_waiter_compute() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let leader = tokio::spawn(abandoned(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiter = tokio::spawn(abandoned(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
        leader.abort();
        let got = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the waiter went on")
            .unwrap();
        assert_eq!(got, 5);
        assert_eq!(LOCAL_RUNS.load(Ordering::SeqCst), 2, "the waiter computed");
        assert_eq!(abandoned(5).await, 5);
        assert_eq!(LOCAL_RUNS.load(Ordering::SeqCst), 2, "and stored");
    });
}
