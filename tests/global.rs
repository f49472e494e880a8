//! Guards the default store (`Store::global`, `Store::default_dir`): a
//! program finds its project's cache from any working directory inside the
//! project, and never an unrelated `.memo` outside it. Children are this
//! test binary re-run from another working directory.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::path::Path;
use std::process::Command;

use memo_core::memoize;
use memo_tests::tempdir;

/// The children's memoized function: logs each computation.
#[memoize]
fn slow_square(x: u64) -> u64 {
    memo_tests::log_line(&format!("computing {x}"));
    x * x
}

/// Not a test of its own: the body of the children.
#[test]
fn child_role() {
    if std::env::var_os("MEMO_TEST_LOG").is_none() {
        return;
    }
    for x in 0..5 {
        assert_eq!(slow_square(x), x * x);
    }
}

/// Runs a child from `cwd` without `MEMO_DIR`; how many values it computed.
/// Its per-user cache directory (`XDG_CACHE_HOME`) is `log`'s directory.
fn computed_from(cwd: &Path, log: &Path) -> usize {
    let _ = std::fs::remove_file(log);
    memo_tests::succeed(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
            .current_dir(cwd)
            .env_remove("MEMO_DIR")
            .env("XDG_CACHE_HOME", log.parent().unwrap())
            .env("MEMO_TEST_LOG", log),
    );
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn a_program_finds_its_projects_cache_from_any_subdirectory() {
    let t = tempdir();
    let logs = tempdir();
    let log = logs.path().join("log");
    let project = t.path().join("lab");
    let deep = project.join("src").join("deep");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(project.join("Cargo.lock"), "").unwrap();

    assert_eq!(computed_from(&project, &log), 5);
    assert!(project.join(".memo").is_dir());
    assert_eq!(
        computed_from(&deep, &log),
        0,
        "the project's cache is found"
    );
    assert_eq!(computed_from(&project.join("src"), &log), 0);
    assert!(!deep.join(".memo").exists(), "no second cache is made");
    assert!(!project.join("src").join(".memo").exists());

    // A repository root (`.git`) bounds the search as `Cargo.lock` does.
    let repo = t.path().join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("a")).unwrap();
    assert_eq!(computed_from(&repo, &log), 5);
    assert_eq!(computed_from(&repo.join("a"), &log), 0);
}

#[test]
fn a_cache_outside_the_project_is_never_used() {
    let t = tempdir();
    let logs = tempdir();
    let log = logs.path().join("log");
    // A `.memo` above the project (as in a home directory) ...
    memo_core::Store::open(t.path().join(".memo")).unwrap();
    // ... is not the project's: it gets its own.
    let project = t.path().join("lab");
    std::fs::create_dir_all(project.join(".git")).unwrap();
    assert_eq!(computed_from(&project, &log), 5);
    assert!(project.join(".memo").is_dir());
    // Outside any project, the per-user cache directory: never a bare
    // working directory, where nobody would find the cache again.
    let loose = t.path().join("loose");
    std::fs::create_dir_all(&loose).unwrap();
    assert_eq!(computed_from(&loose, &log), 5);
    assert!(!loose.join(".memo").exists());
    assert!(logs.path().join("memo").is_dir());
    let elsewhere = t.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    assert_eq!(computed_from(&elsewhere, &log), 0, "found from anywhere");
}
