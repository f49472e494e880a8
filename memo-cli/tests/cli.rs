//! The `memo` binary, run as a subprocess on stores filled by memoized
//! functions of this test program.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{LazyLock, Mutex};

use memo_core::{Key, Store, memoize};
use serde_json::Value;

/// The store the memoized functions below use: each test points it at a
/// directory of its own, one test at a time.
static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
static STORE: LazyLock<Mutex<Option<Store>>> = LazyLock::new(|| Mutex::new(None));
static SERIAL: Mutex<()> = Mutex::new(());

fn store() -> Store {
    STORE
        .lock()
        .unwrap()
        .clone()
        .expect("a test opened the store")
}

/// Runs `f` with the memoized functions writing to a fresh store; returns
/// the store directory (kept for the test's life by the `TempDir`).
fn with_store(f: impl FnOnce()) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    *STORE.lock().unwrap() = Some(Store::open(&dir).unwrap());
    *DIR.lock().unwrap() = Some(dir.clone());
    f();
    // Dropped so that the next test's store is another.
    *STORE.lock().unwrap() = None;
    (t, dir)
}

mod model {
    use super::*;

    #[memoize(store = super::store())]
    pub fn fit(x: u64) -> u64 {
        x * 2
    }

    #[derive(serde::Serialize)]
    pub struct Ridge;

    impl Ridge {
        #[memoize(store = super::store())]
        pub fn predict(&self, x: u64) -> Vec<u64> {
            vec![x; 100]
        }
    }
}

mod generic {
    use super::*;

    #[derive(serde::Serialize)]
    pub struct Model<T>(pub std::marker::PhantomData<T>);

    impl<T: 'static> Model<T> {
        #[memoize(store = super::store())]
        pub fn score(&self, x: u64) -> u64 {
            x + 1
        }
    }
}

mod features {
    use super::*;

    #[memoize(store = super::store())]
    pub fn extract(x: u64) -> String {
        format!("features of {x}")
    }
}

/// Fills a store: `fit` 10 entries hit once each, `predict` 4 entries not
/// hit, `extract` 3 entries hit twice, and 2 entries made with `Key::of`.
fn filled() -> (tempfile::TempDir, PathBuf) {
    with_store(|| {
        for x in 0..10 {
            model::fit(x);
            model::fit(x);
        }
        for x in 0..4 {
            model::Ridge.predict(x);
        }
        for x in 0..3 {
            for _ in 0..3 {
                features::extract(x);
            }
        }
        store().put(&Key::of("a"), &1_u32).unwrap();
        store().put(&Key::of("b"), &2_u32).unwrap();
    })
}

fn memo(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memo"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("MEMO_REMOTE")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "memo failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(&memo(dir, &all))).unwrap()
}

fn function<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|f| f["function"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list:#}"))
}

#[test]
fn functions_are_named_as_written_with_their_figures() {
    let _s = SERIAL.lock().unwrap();
    let (_t, dir) = filled();
    let list = json(&dir, &["functions"]);
    assert_eq!(list.as_array().unwrap().len(), 3, "{list:#}");
    let fit = function(&list, "cli::model::fit");
    assert_eq!(fit["entries"], 10);
    assert_eq!(fit["hits"], 10);
    assert_eq!(fit["misses"], 10);
    assert_eq!(fit["stale_entries"], 0);
    assert!(fit["bytes"].as_u64().unwrap() > 0);
    assert!(fit["last_used_unix"].as_u64().unwrap() > 1_700_000_000);
    let predict = function(&list, "cli::model::Ridge::predict");
    assert_eq!(
        (predict["entries"].as_u64(), predict["hits"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(predict["misses"], 4);
    let extract = function(&list, "cli::features::extract");
    assert_eq!(
        (extract["entries"].as_u64(), extract["hits"].as_u64()),
        (Some(3), Some(6))
    );
    // Saved compute is hits x cost: never more than hits times the
    // largest cost, and zero without hits.
    assert_eq!(predict["compute_saved_secs"], 0.0);

    let human = ok(&memo(&dir, &["functions"]));
    for name in [
        "cli::model::fit",
        "cli::model::Ridge::predict",
        "cli::features::extract",
    ] {
        assert!(human.contains(name), "{human}");
    }
    assert!(
        human.contains("2 more entries belong to no registered function"),
        "{human}"
    );
}

#[test]
fn each_self_type_of_a_method_is_a_function() {
    let _s = SERIAL.lock().unwrap();
    let (_t, dir) = with_store(|| {
        let (a, b) = (
            generic::Model::<f32>(std::marker::PhantomData),
            generic::Model::<f64>(std::marker::PhantomData),
        );
        // In turn, so each call's type differs from the last one's.
        for x in 0..3 {
            a.score(x);
            b.score(x);
        }
    });
    let list = json(&dir, &["functions"]);
    assert_eq!(
        function(&list, "cli::generic::Model<f32>::score")["entries"],
        3
    );
    assert_eq!(
        function(&list, "cli::generic::Model<f64>::score")["entries"],
        3
    );
}

mod packed {
    #[memoize(store = super::store(), compress = "zstd")]
    pub fn labels(n: u32) -> Vec<u32> {
        (0..n).map(|i| i % 7).collect()
    }

    #[memoize(store = super::store())]
    pub fn noise(n: u64) -> Vec<u64> {
        (0..n)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect()
    }

    use super::memoize;
}

#[test]
fn stats_and_functions_show_what_compression_saves() {
    let _s = SERIAL.lock().unwrap();
    let (_t, dir) = with_store(|| {
        for n in [10_000, 20_000] {
            packed::labels(n);
            packed::noise(u64::from(n));
        }
    });
    let list = json(&dir, &["functions"]);
    let labels = function(&list, "cli::packed::labels");
    assert!(
        labels["compression_ratio"].as_f64().unwrap() > 20.0,
        "{labels:#}"
    );
    assert!(labels["raw_bytes"].as_u64().unwrap() > 120_000);
    let noise = function(&list, "cli::packed::noise");
    assert_eq!(noise["compression_ratio"], 1.0, "{noise:#}");
    assert_eq!(noise["raw_bytes"], noise["bytes"]);
    let s = json(&dir, &["stats"]);
    assert!(s["raw_bytes"].as_u64().unwrap() > s["bytes"].as_u64().unwrap() + 100_000);
    let human = ok(&memo(&dir, &["stats"]));
    assert!(human.contains("compressed     "), "{human}");
    let table = ok(&memo(&dir, &["functions"]));
    assert!(
        table.contains("ratio") && table.contains("1.00x"),
        "{table}"
    );
}

#[test]
fn stats_counts_the_whole_store() {
    let _s = SERIAL.lock().unwrap();
    let (_t, dir) = filled();
    let s = json(&dir, &["stats"]);
    assert_eq!(s["entries"], 10 + 4 + 3 + 2);
    assert_eq!(s["hits"], 10 + 6);
    assert_eq!(s["misses"], 10 + 4 + 3);
    assert_eq!(s["evictions"], 0);
    assert_eq!(s["stale_entries"], 0);
    assert!(s["bytes"].as_u64().unwrap() > 0);
    assert!(s["compute_saved_secs"].as_f64().unwrap() >= 0.0);
    let human = ok(&memo(&dir, &["stats"]));
    assert!(human.contains("entries        19"), "{human}");
    assert!(human.contains("16 hits, 17 misses"), "{human}");
}

#[test]
fn clear_function_removes_exactly_that_functions_entries() {
    let _s = SERIAL.lock().unwrap();
    let (_t, dir) = filled();
    let out = json(&dir, &["clear", "--function", "fit", "--yes"]);
    assert_eq!(out["removed"], 10);
    let list = json(&dir, &["functions"]);
    assert_eq!(function(&list, "cli::model::fit")["entries"], 0);
    assert_eq!(function(&list, "cli::model::Ridge::predict")["entries"], 4);
    assert_eq!(function(&list, "cli::features::extract")["entries"], 3);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.len(), 4 + 3 + 2);
    assert_eq!(store.get::<u32>(&Key::of("a")).unwrap(), Some(1));

    // A full path works too; a name that fits nothing, or several, is an
    // error naming the functions, and removes nothing.
    assert_eq!(
        json(
            &dir,
            &["clear", "--function", "cli::features::extract", "--yes"]
        )["removed"],
        3
    );
    let out = memo(&dir, &["clear", "--function", "nope", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`nope`") && err.contains("cli::model::Ridge::predict"),
        "{err}"
    );
    assert_eq!(Store::open(&dir).unwrap().len(), 4 + 2);
}

#[test]
fn clear_without_yes_says_what_and_refuses_off_a_terminal() {
    let _s = SERIAL.lock().unwrap();
    let (_t, dir) = filled();
    let out = memo(&dir, &["clear", "--function", "model::fit"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("would remove 10 entries"), "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(Store::open(&dir).unwrap().len(), 19, "nothing removed");
    // Everything, with --yes: Key::of entries too.
    assert_eq!(json(&dir, &["clear", "--yes"])["removed"], 19);
    assert_eq!(Store::open(&dir).unwrap().len(), 0);
}

#[test]
fn clear_older_than_keeps_what_was_used_since() {
    let _s = SERIAL.lock().unwrap();
    let (_t, dir) = filled();
    assert_eq!(
        json(&dir, &["clear", "--older-than", "30d", "--yes"])["removed"],
        0
    );
    assert_eq!(Store::open(&dir).unwrap().len(), 19);
    let out = memo(&dir, &["clear", "--older-than", "soon", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad duration is a usage error"
    );
}

#[test]
fn verify_exits_1_on_damage_naming_it() {
    let _s = SERIAL.lock().unwrap();
    let (_t, dir) = filled();
    let r = json(&dir, &["verify"]);
    assert_eq!(r["entries_checked"], 19);
    assert_eq!(r["corrupt"], 0);
    // Flip the first payload byte of `Key::of("a")`'s record (its key sits
    // at header offset 8, its payload at 48).
    let seg = dir.join("seg/000001");
    let mut bytes = std::fs::read(&seg).unwrap();
    let key = Key::of("a");
    let at = bytes.windows(32).position(|w| w == key.as_bytes()).unwrap();
    bytes[at + 40] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let out = memo(&dir, &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["corrupt"], 1, "{r:#}");
    let problems = r["problems"].to_string();
    assert!(
        problems.contains("seg/000001") && problems.contains("checksum"),
        "{problems}"
    );
    let human = memo(&dir, &["verify"]);
    assert_eq!(human.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&human.stdout).contains("problem:"));
}

#[test]
fn bad_directories_exit_2_and_nothing_is_created() {
    let t = tempfile::tempdir().unwrap();
    let check = |dir: &Path, says: &str| {
        for cmd in ["stats", "functions", "verify"] {
            let out = memo(dir, &[cmd]);
            assert_eq!(out.status.code(), Some(2), "{cmd} on {}", dir.display());
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(
                err.contains(&dir.display().to_string()) && err.contains(says),
                "{err}"
            );
        }
    };
    let missing = t.path().join("missing");
    check(&missing, "no such directory");
    assert!(!missing.exists(), "a missing store is not created");

    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    check(&empty, "not a memo store");
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "nothing made in it"
    );

    let file = t.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    check(&file, "not a directory");

    let foreign = t.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"mine").unwrap();
    check(&foreign, "not a memo store");

    // A store of a future format version.
    let future = t.path().join("future");
    drop(Store::open(&future).unwrap());
    let mut lock = std::fs::read(future.join("LOCK")).unwrap();
    lock[8..12].copy_from_slice(&99_u32.to_le_bytes());
    std::fs::write(future.join("LOCK"), &lock).unwrap();
    check(&future, "format version 99");
}

/// A store on a read-only mount: the reading commands work on it as on
/// any store; the writing ones say it is read-only, and change nothing.
#[test]
fn reading_commands_work_on_a_read_only_mount() {
    let _s = SERIAL.lock().unwrap();
    let Some(mount) = memo_tests::Mount::tmpfs() else {
        return;
    };
    let (_t, filled) = filled();
    let dir = mount.path().join("store");
    memo_tests::copy_tree(&filled, &dir);
    mount.read_only();
    let s = json(&dir, &["stats"]);
    assert_eq!(s["entries"], 19);
    assert_eq!(s["hits"], 16);
    let list = json(&dir, &["functions"]);
    assert_eq!(function(&list, "cli::model::fit")["entries"], 10);
    assert!(ok(&memo(&dir, &["verify"])).contains("19"));
    for args in [
        &["clear", "--yes"][..],
        &["clear", "--function", "fit", "--yes"],
        &["trim", "--max-entries", "1"],
    ] {
        let out = memo(&dir, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("read-only"), "{args:?}: {err}");
    }
    assert_eq!(json(&dir, &["stats"])["entries"], 19);
}

#[test]
fn trim_brings_the_store_down_to_limits() {
    let _s = SERIAL.lock().unwrap();
    let (_t, dir) = filled();
    let out = json(&dir, &["trim", "--max-entries", "10", "--policy", "lfu"]);
    assert_eq!(out["entries_before"], 19);
    assert!(out["entries_after"].as_u64().unwrap() <= 10, "{out:#}");
    assert!(Store::open(&dir).unwrap().len() <= 10);
    let out = json(&dir, &["trim", "--max-bytes", "1KiB"]);
    assert!(
        out["bytes_after"].as_u64().unwrap() < out["bytes_before"].as_u64().unwrap(),
        "{out:#}"
    );
    let bad = memo(&dir, &["trim", "--max-bytes", "lots"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn push_and_pull_copy_what_the_other_side_lacks() {
    let _s = SERIAL.lock().unwrap();
    let (t, dir) = filled();
    let remote = format!("file://{}", t.path().join("remote").display());
    let out = json(&dir, &["push", "--remote", &remote]);
    assert_eq!(
        (out["copied"].as_u64(), out["present"].as_u64()),
        (Some(19), Some(0)),
        "{out:#}"
    );
    let again = json(&dir, &["push", "--remote", &remote]);
    assert_eq!(
        (again["copied"].as_u64(), again["present"].as_u64()),
        (Some(0), Some(19))
    );

    let other = t.path().join("other");
    let b = Store::open(&other).unwrap();
    b.put(&Key::of("b"), &2_u32).unwrap();
    drop(b);
    let out = json(&other, &["pull", "--remote", &remote]);
    assert_eq!(
        (out["copied"].as_u64(), out["present"].as_u64()),
        (Some(18), Some(1)),
        "{out:#}"
    );
    let b = Store::open(&other).unwrap();
    assert_eq!(b.len(), 19);
    assert_eq!(b.get::<u32>(&Key::of("a")).unwrap(), Some(1));
    // The memoized results came along and are named on the other side
    // once their functions run there; their bytes are the same.
    assert_eq!(json(&other, &["verify"])["corrupt"], 0);

    // No remote at all: a usage error naming what to set, and the store.
    let out = memo(&other, &["push"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MEMO_REMOTE") && err.contains(&other.display().to_string()),
        "{err}"
    );
    assert!(!err.contains("remote :"), "no empty URL: {err}");

    // A new machine: pull into a directory that does not exist yet, and
    // into an empty one.
    for fresh in [t.path().join("new/cache"), t.path().join("empty")] {
        if fresh.ends_with("empty") {
            std::fs::create_dir(&fresh).unwrap();
        }
        let out = json(&fresh, &["pull", "--remote", &remote]);
        assert_eq!(out["copied"].as_u64(), Some(19), "{out:#}");
        assert_eq!(Store::open(&fresh).unwrap().len(), 19);
    }
    // A folder of someone else's files is still refused.
    let foreign = t.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"mine").unwrap();
    let out = memo(&foreign, &["pull", "--remote", &remote]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);
}

/// Issue 30: a command in a pipe whose reader stops early exits quietly
/// (it used to panic with "failed printing to stdout: Broken pipe").
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let _s = SERIAL.lock().unwrap();
    let (_t, dir) = filled();
    for cmd in ["stats", "functions"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_memo"))
            .arg("--dir")
            .arg(&dir)
            .arg(cmd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // `| head -0`: the reader is gone before the first line.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{cmd}: {} {err}", out.status);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{err}"
        );
    }
}

/// Issue 30: with --json every answer is one JSON document on stdout,
/// refusals and errors included; and the words agree with their numbers.
#[test]
fn json_answers_refusals_too_and_messages_read_right() {
    let _s = SERIAL.lock().unwrap();
    let (t, dir) = filled();
    let out = memo(&dir, &["--json", "clear", "--function", "model::fit"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["removed"].as_u64(), v["would_remove"].as_u64()),
        (Some(0), Some(10))
    );
    assert!(v["error"].as_str().unwrap().contains("--yes"), "{v:#}");
    assert_eq!(Store::open(&dir).unwrap().len(), 19, "nothing removed");

    let missing = t.path().join("missing");
    let out = memo(&missing, &["--json", "stats"]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("no such directory"),
        "{v:#}"
    );
    assert_eq!(v["exit_code"], 2);

    let out = memo(&dir, &["trim", "--max-bytes", "GiB"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a size") && !err.contains("float"),
        "{err}"
    );

    let out = ok(&memo(&dir, &["clear", "--yes", "--function", "extract"]));
    assert!(out.starts_with("removed 3 entries ("), "{out}");
    let out = ok(&memo(&dir, &["trim", "--max-entries", "14"]));
    // Eviction goes below the limit (to its low-water mark): the figures
    // vary, the words do not.
    let after = Store::open(&dir).unwrap().len();
    assert!(
        out.contains(&format!(": 16 entries -> {after} entries,"))
            && out.contains(&format!("(removed {} entries)", 16 - after)),
        "{out}"
    );
}

/// The child role of `stats_while_four_processes_write`: puts until told
/// to stop.
#[test]
fn writer_role() {
    let Some(dir) = std::env::var_os("MEMO_CLI_WRITER") else {
        return;
    };
    let id: u64 = std::env::var("MEMO_CLI_ID").unwrap().parse().unwrap();
    let store = Store::open(&dir).unwrap();
    for i in 0..20_000_u64 {
        store.put(&Key::of(&(id, i)), &vec![i; 50]).unwrap();
        if i % 3 == 0 {
            store.remove(&Key::of(&(id, i / 2))).unwrap();
        }
    }
}

#[test]
fn stats_while_four_processes_write() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("store");
    drop(Store::open(&dir).unwrap());
    let writers: Vec<_> = (0..4)
        .map(|id| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "writer_role", "--test-threads=1"])
                .env("MEMO_CLI_WRITER", &dir)
                .env("MEMO_CLI_ID", id.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut runs = 0;
    let mut writers = writers;
    loop {
        let done = writers.iter_mut().all(|w| w.try_wait().unwrap().is_some());
        let s = json(&dir, &["stats"]);
        assert!(s["entries"].as_u64().is_some());
        let v = json(&dir, &["verify"]);
        assert_eq!(v["corrupt"], 0, "a racing writer is never damage: {v:#}");
        assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v:#}");
        runs += 1;
        if done {
            break;
        }
    }
    for mut w in writers {
        assert!(w.wait().unwrap().success());
    }
    assert!(runs >= 2, "the commands ran while the writers wrote");
    let s = json(&dir, &["stats"]);
    assert_eq!(
        s["entries"].as_u64(),
        Some(Store::open(&dir).unwrap().len())
    );
}
