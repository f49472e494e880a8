//! The `memo` command on big stores: `stats` and `functions` on a store of
//! 1M memoized entries (target: 0.5 s each), and `verify` on a store of
//! large values against a plain read of the same bytes from the same disk
//! (target: 80% of its throughput), both with the page cache dropped for
//! the store's files first.
//!
//! Runs the release binary (`cargo build --release -p memo-cli` first).
//! Knobs: `MEMO_BENCH_CLI_ENTRIES` (1000000), `MEMO_BENCH_CLI_VERIFY_MIB`
//! (2048, in 64 MiB values), `MEMO_BENCH_CLI_DIR` (a directory on the disk
//! to measure; default: the system temp dir).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use memo_core::{Key, Store, memoize};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

static ROOT: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    let base =
        std::env::var_os("MEMO_BENCH_CLI_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    tempfile::tempdir_in(base).expect("bench dir")
});
static STORE: LazyLock<Store> =
    LazyLock::new(|| Store::open(ROOT.path().join("functions")).expect("store"));

#[memoize(store = STORE)]
fn simulate(seed: u64) -> Vec<u8> {
    vec![seed as u8; 100]
}

#[memoize(store = STORE)]
fn fit(seed: u64) -> Vec<u8> {
    vec![seed as u8; 100]
}

#[memoize(store = STORE)]
fn extract(seed: u64) -> Vec<u8> {
    vec![seed as u8; 100]
}

#[memoize(store = STORE)]
fn evaluate(seed: u64) -> Vec<u8> {
    vec![seed as u8; 100]
}

fn binary() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/memo");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release -p memo-cli` first",
        bin.display()
    );
    bin
}

/// Drops the page cache's copy of every file under `dir`.
fn drop_cache(dir: &Path) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            drop_cache(&p);
        } else if let Ok(f) = std::fs::File::open(&p) {
            let _ = f.sync_all();
            let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
        }
    }
}

/// Median wall time of `runs` runs of `memo <args>` on `dir`.
fn time_memo(dir: &Path, args: &[&str], runs: usize, cold: bool) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            if cold {
                drop_cache(dir);
            }
            let t = Instant::now();
            let out = Command::new(binary())
                .arg("--dir")
                .arg(dir)
                .args(args)
                .output()
                .expect("run memo");
            let took = t.elapsed();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            took
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn functions_bench() {
    let n = knob("MEMO_BENCH_CLI_ENTRIES", 1_000_000);
    if n == 0 {
        return;
    }
    let t = Instant::now();
    let fns: [fn(u64) -> Vec<u8>; 4] = [simulate, fit, extract, evaluate];
    for i in 0..n {
        fns[(i % 4) as usize](i);
    }
    for i in 0..n / 10 {
        fns[(i % 4) as usize](i); // a tenth hit once
    }
    println!("filled {n} memoized entries in {:.1?}", t.elapsed());
    let dir = STORE.dir().expect("dir").to_path_buf();
    assert_eq!(STORE.len(), n);
    let t = Instant::now();
    let list = STORE.functions().expect("functions");
    let api = t.elapsed();
    assert_eq!(list.iter().map(|f| f.stats.entries).sum::<u64>(), n);
    let t = Instant::now();
    let mut bytes = 0_u64;
    for e in std::fs::read_dir(dir.join("seg")).expect("seg").flatten() {
        let mut buf = Vec::new();
        std::fs::File::open(e.path())
            .expect("open")
            .read_to_end(&mut buf)
            .expect("read");
        bytes += buf.len() as u64;
    }
    let read_all = t.elapsed();
    println!(
        "\n{n} entries, 4 functions; median of 5 runs of the binary (process start and open included):"
    );
    println!("| command | warm | page cache dropped |");
    println!("|---|---:|---:|");
    for args in [&["stats", "--json"][..], &["functions", "--json"][..]] {
        let warm = time_memo(&dir, args, 5, false);
        let cold = time_memo(&dir, args, 5, true);
        println!("| memo {} | {:.0?} | {:.0?} |", args[0], warm, cold);
    }
    println!(
        "in-process Store::functions(): {api:.0?}; reading every segment ({:.0} MB) with read(): {read_all:.0?}",
        bytes as f64 / 1e6
    );
}

fn verify_bench() {
    let mib = knob("MEMO_BENCH_CLI_VERIFY_MIB", 2048);
    if mib < 64 {
        return;
    }
    let dir = ROOT.path().join("large");
    let store = Store::open(&dir).expect("store");
    let value: Vec<u8> = (0..64 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for i in 0..mib / 64 {
        let mut v = value.clone();
        v[..8].copy_from_slice(&i.to_le_bytes());
        store.put_bytes(&Key::of(&i), &v).expect("put");
    }
    drop(store);
    let total = u64::try_from(value.len()).unwrap_or(0) * (mib / 64);
    // The baseline: every blob file read once with read(), cold.
    let mut plain = Vec::new();
    for _ in 0..3 {
        drop_cache(&dir);
        let t = Instant::now();
        let mut buf = vec![0_u8; 1 << 20];
        read_tree(&dir.join("blob"), &mut buf);
        plain.push(t.elapsed());
    }
    plain.sort();
    let plain = plain[1];
    let verify = time_memo(&dir, &["verify"], 3, true);
    let warm = time_memo(&dir, &["verify"], 3, false);
    let gbs = |d: Duration| total as f64 / d.as_secs_f64() / 1e9;
    println!(
        "\nverify, {} x 64 MiB values ({:.1} GB), median of 3:",
        mib / 64,
        total as f64 / 1e9
    );
    println!("| | time | GB/s | vs plain read |");
    println!("|---|---:|---:|---:|");
    println!(
        "| plain read() of the blob files, cold | {plain:.0?} | {:.2} | 1.00 |",
        gbs(plain)
    );
    println!(
        "| memo verify, cold | {verify:.0?} | {:.2} | {:.2} |",
        gbs(verify),
        plain.as_secs_f64() / verify.as_secs_f64()
    );
    println!("| memo verify, warm | {warm:.0?} | {:.2} | |", gbs(warm));
}

fn read_tree(dir: &Path, buf: &mut [u8]) {
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            read_tree(&p, buf);
        } else {
            let mut f = std::fs::File::open(&p).expect("open");
            while f.read(buf).expect("read") > 0 {}
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    verify_bench();
    functions_bench();
}
