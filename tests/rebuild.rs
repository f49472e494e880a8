//! What the key covers, checked by editing real source and building it
//! again: a small program memoizing through `#[memoize]` is written, built,
//! run, edited, built and run against the same store, and the runs count
//! what was computed.
//!
//! The program is a crate of its own (`memo_tests::build_program`).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds `main` (the source of `src/main.rs`) in `krate`; the binary.
fn build(krate: &Path, main: &str) -> PathBuf {
    memo_tests::build_program(
        krate,
        "memo-rebuild-scratch",
        r#"serde = { version = "1", features = ["derive"] }"#,
        main,
    )
}

/// Runs the program on `store`; its output lines.
fn run(bin: &Path, store: &Path) -> Vec<String> {
    let out = memo_tests::succeed(
        Command::new(bin)
            .env("MEMO_DIR", store)
            .env("MEMO_QUIET", "1")
            .env_remove("MEMO_REMOTE"),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// How many lines of `out` say a body ran.
fn computed(out: &[String]) -> usize {
    out.iter().filter(|l| l.starts_with("computing")).count()
}

/// One program, edited step by step: `(what changed, source, bodies that
/// must run)`, each built and run against the same store. One program at a
/// time: they share the build directory and the binary's path.
fn steps(steps: &[(&str, String, usize)]) {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let t = memo_tests::tempdir();
    let krate = t.path().join("scratch");
    let store = t.path().join("store");
    for (what, source, want) in steps {
        let bin = build(&krate, source);
        let out = run(&bin, &store);
        assert_eq!(computed(&out), *want, "{what}: {out:?}\n{source}");
        // Built once more and run: everything is a hit now.
        let again = run(&bin, &store);
        assert_eq!(computed(&again), 0, "{what}, second run: {again:?}");
        assert_eq!(
            out.iter()
                .filter(|l| !l.starts_with("computing"))
                .collect::<Vec<_>>(),
            again
                .iter()
                .filter(|l| !l.starts_with("computing"))
                .collect::<Vec<_>>(),
            "{what}: a hit returns what the computation did"
        );
    }
}

const HELPERS: &str = r#"
use memo_core::{memoize, track};

#[track]
fn scale() -> f64 {
    SCALE
}

#[track(uses(scale))]
fn normalize(x: f64) -> f64 {
    x / NORM * scale()
}

mod stats {
    #[memo_core::track]
    pub fn mean(xs: &[f64]) -> f64 {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

#[memoize(uses(normalize, stats::mean))]
fn feature(x: u32) -> f64 {
    println!("computing feature {x}");
    normalize(f64::from(x)) + stats::mean(&[1.0, 2.0])
}

#[memoize]
fn untracked(x: u32) -> u32 {
    println!("computing untracked {x}");
    x + 1
}

fn main() {
    for x in 0..3 {
        println!("{} {}", feature(x), untracked(x));
    }
}
"#;

/// A tracked helper's code is in its users' keys, transitively; its
/// comments and formatting are not; functions that do not use it keep
/// their results.
#[test]
fn editing_a_tracked_helper_recomputes_its_users() {
    let src = |norm: &str, scale: &str| HELPERS.replace("NORM", norm).replace("SCALE", scale);
    steps(&[
        ("first build", src("2.0", "1.0"), 6),
        (
            "a comment and new formatting in a helper",
            src("2.0", "1.0").replace(
                "fn normalize(x: f64) -> f64 {\n    x / 2.0 * scale()",
                "fn normalize(x: f64) -> f64 {\n    // halves it\n    x / 2.0\n        * scale()",
            ),
            0,
        ),
        ("the helper's body", src("4.0", "1.0"), 3),
        ("the helper's helper", src("4.0", "3.0"), 3),
        ("back to a build seen before", src("2.0", "1.0"), 0),
    ]);
}

const TYPES: &str = r#"
use memo_core::memoize;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug)]
struct Fit {
    FIELDS
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
enum Method {
    VARIANTS
}

#[memoize]
fn fit(points: u32, method: Method) -> Fit {
    println!("computing fit {points} {method:?}");
    let _ = method;
    Fit { slope: points.into(), offset: 7 }
}

fn main() {
    for n in 0..2 {
        println!("{:?}", fit(n, Method::Exact));
    }
}
"#;

/// The serde shape of the result and argument types is in the key: a
/// field retyped or reordered in the returned struct, a variant added to
/// an argument's enum, each recompute (old bytes could decode into wrong
/// values, or the argument's meaning may have changed); comments and
/// formatting in the types do not.
#[test]
fn changing_a_types_shape_recomputes() {
    let src = |fields: &str, variants: &str| {
        TYPES
            .replace("FIELDS", fields)
            .replace("VARIANTS", variants)
    };
    let fields = "slope: i64,\n    offset: i64,";
    steps(&[
        ("first build", src(fields, "Exact, Approx"), 2),
        (
            "comments and formatting in the types",
            src(
                "// the fitted slope\n    slope:   i64,\n\n    offset : i64,",
                "Exact, /* default */ Approx,",
            ),
            0,
        ),
        (
            "a field of the result retyped i64 -> u64",
            src("slope: u64,\n    offset: i64,", "Exact, Approx"),
            2,
        ),
        (
            "two fields of the same type swapped",
            src("offset: i64,\n    slope: u64,", "Exact, Approx"),
            2,
        ),
        (
            "a variant added to an argument's enum",
            src("offset: i64,\n    slope: u64,", "Exact, Approx, Robust"),
            2,
        ),
    ]);
}
