//! Guards the default store (`#[memoize]` with no store option,
//! `Store::default_dir_for`): a program finds its project's cache from any
//! working directory, inside its project or outside it, and never an
//! unrelated `.memo`; outside any project and with its own project gone,
//! the per-user cache directory, never a bare working directory.
//!
//! The program is a crate of its own in a temporary project
//! (`memo_tests::build_program`): its project is known from where it was
//! built, as a user's program's is.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

const MAIN: &str = r#"
use memo_core::memoize;

#[memoize]
fn slow_square(x: u64) -> u64 {
    println!("computing {x}");
    x * x
}

fn main() {
    for x in 0..5 {
        assert_eq!(slow_square(x), x * x);
    }
}
"#;

/// Builds the program in `project` as the crate `name`.
fn build(project: &Path, name: &str) -> PathBuf {
    let bin = memo_tests::build_program(project, name, "", MAIN);
    // A copy outside the build directory, so a test can remove the project.
    let copy = project.parent().unwrap().join("lab-bin");
    std::fs::copy(&bin, &copy).unwrap();
    copy
}

/// Runs the program from `cwd` without `MEMO_DIR`, with `xdg` as its
/// per-user cache directory; how many values it computed.
fn computed_from(bin: &Path, cwd: &Path, xdg: &Path) -> usize {
    let out = Command::new(bin)
        .current_dir(cwd)
        .env_remove("MEMO_DIR")
        .env("XDG_CACHE_HOME", xdg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("computing"))
        .count()
}

#[test]
fn a_program_finds_its_projects_cache_from_anywhere_and_nothing_else() {
    let t = memo_tests::tempdir();
    let xdg = t.path().join("xdg");
    let project = t.path().join("lab");
    let bin = build(&project, "memo-global-scratch");

    // `MEMO_DIR` wins.
    let mine = t.path().join("mine");
    let out = Command::new(&bin)
        .current_dir(&project)
        .env("MEMO_DIR", &mine)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(mine.is_dir() && !project.join(".memo").exists());

    // Started from outside any project: the program's own project's cache.
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    assert_eq!(computed_from(&bin, &elsewhere, &xdg), 5);
    assert!(project.join(".memo").is_dir());
    assert!(
        !elsewhere.join(".memo").exists(),
        "never a bare working directory"
    );
    // From inside the project, and from another directory: the same cache.
    assert_eq!(computed_from(&bin, &project.join("src"), &xdg), 0);
    assert_eq!(computed_from(&bin, t.path(), &xdg), 0);
    assert!(!project.join("src").join(".memo").exists());

    // An existing store of the working directory's project comes first
    // (today's rule: a program run inside another project uses its cache).
    let repo = t.path().join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("a")).unwrap();
    memo_core::Store::open(repo.join(".memo")).unwrap();
    assert_eq!(computed_from(&bin, &repo.join("a"), &xdg), 5);
    assert_eq!(computed_from(&bin, &repo, &xdg), 0);

    // A `.memo` above the project (as in a home directory) is not found
    // from a project below it that has none.
    memo_core::Store::open(t.path().join(".memo")).unwrap();
    let other = t.path().join("other");
    std::fs::create_dir_all(other.join(".git")).unwrap();
    assert_eq!(
        computed_from(&bin, &other, &xdg),
        0,
        "the program's project's cache"
    );

    // With the program's project gone: outside any project, the per-user
    // cache directory; inside another project, that project's root.
    std::fs::remove_dir_all(&project).unwrap();
    assert_eq!(computed_from(&bin, &elsewhere, &xdg), 5);
    assert!(xdg.join("memo").is_dir());
    assert!(!elsewhere.join(".memo").exists());
    assert_eq!(computed_from(&bin, &elsewhere, &xdg), 0, "found again");
    assert_eq!(computed_from(&bin, &other, &xdg), 5);
    assert!(other.join(".memo").is_dir());
}
