//! Staleness across a real code change: a small program memoizing through
//! `#[memoize]` is built, run, edited and built again, and `memo` tells
//! the entries of the old code from the new ones, and removes them.
//!
//! The program is a crate of its own (`memo_tests::build_program`).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const MAIN: &str = r#"
use memo_core::memoize;

#[memoize]
fn fit(x: u64) -> u64 {
    x + BODY
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("memo_core=debug"))
        .with_writer(std::io::stderr)
        .init();
    let n: u64 = std::env::args().nth(1).unwrap().parse().unwrap();
    for x in 0..n {
        println!("{}", fit(x));
    }
}
"#;

/// Writes the program with `body` in `fit`, builds it and returns the
/// binary's path.
fn build(krate: &Path, body: &str) -> PathBuf {
    memo_tests::build_program(
        krate,
        "memo-cli-scratch",
        r#"tracing-subscriber = { version = "0.3", default-features = false, features = ["fmt", "env-filter"] }"#,
        &MAIN.replace("BODY", body),
    )
}

/// Runs `cmd`, which must succeed (else the test fails with its stderr).
fn succeed(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn run(bin: &Path, store: &Path, n: u64) -> String {
    let out = succeed(
        Command::new(bin)
            .arg(n.to_string())
            .env("MEMO_DIR", store)
            .env_remove("MEMO_REMOTE"),
        "the scratch program",
    );
    String::from_utf8(out.stderr).unwrap()
}

fn memo(store: &Path, args: &[&str]) -> Value {
    let out = succeed(
        Command::new(env!("CARGO_BIN_EXE_memo"))
            .arg("--dir")
            .arg(store)
            .args(args)
            .arg("--json"),
        "memo",
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn stale_entries_after_a_code_change_are_counted_and_cleared() {
    let t = tempfile::tempdir().unwrap();
    let krate = t.path().join("scratch");
    let store = t.path().join("store");

    let v1 = build(&krate, "1");
    let log = run(&v1, &store, 5);
    assert!(
        log.contains("the function has not run with this store before"),
        "{log}"
    );
    let fit = &memo(&store, &["functions"])[0];
    assert_eq!(fit["function"], "memo_cli_scratch::fit");
    assert_eq!(
        (fit["entries"].as_u64(), fit["stale_entries"].as_u64()),
        (Some(5), Some(0))
    );
    // A run of the same build: hits, and nothing is stale.
    run(&v1, &store, 5);
    assert_eq!(memo(&store, &["functions"])[0]["hits"], 5);

    // The body changes: the old results are not served, and each miss
    // says why.
    let v2 = build(&krate, "2");
    let log = run(&v2, &store, 3);
    assert!(
        log.contains("code or `version` changed since its entries were stored"),
        "{log}"
    );
    let fit = &memo(&store, &["functions"])[0];
    assert_eq!(
        (fit["entries"].as_u64(), fit["stale_entries"].as_u64()),
        (Some(8), Some(5))
    );
    assert_eq!(fit["misses"], 8);

    assert_eq!(memo(&store, &["clear", "--stale", "--yes"])["removed"], 5);
    let fit = &memo(&store, &["functions"])[0];
    assert_eq!(
        (fit["entries"].as_u64(), fit["stale_entries"].as_u64()),
        (Some(3), Some(0))
    );
    // What is left is the new code's, and hits.
    let log = run(&v2, &store, 3);
    assert!(!log.contains("memo: miss"), "{log}");

    // Back to the first code: its entries were cleared, and now the second
    // code's are the stale ones.
    let v1 = build(&krate, "1");
    run(&v1, &store, 1);
    let fit = &memo(&store, &["functions"])[0];
    assert_eq!(
        (fit["entries"].as_u64(), fit["stale_entries"].as_u64()),
        (Some(4), Some(3))
    );
}
