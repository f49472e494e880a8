//! Guards read-only stores: a cache on a read-only mount (a published
//! result set, a container layer, a cluster's read-only area) serves its
//! hits, computes its misses without storing them, says so once, and
//! changes nothing. Children are this test binary re-run with a role.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::path::Path;
use std::process::{Command, Output};

use memo_core::{Error, Key, Store, memoize};
use memo_tests::{Mount, tempdir};

/// The memoized function of the children: logs each computation.
#[memoize]
fn square(x: u64) -> u64 {
    memo_tests::log_line(&format!("computing {x}"));
    x * x
}

/// Not a test of its own: the body of the child processes, which call
/// `square` on `0..MEMO_TEST_N` through the default store (`MEMO_DIR`).
#[test]
fn child_role() {
    let Ok(n) = std::env::var("MEMO_TEST_N") else {
        return;
    };
    for x in 0..n.parse::<u64>().unwrap() {
        assert_eq!(square(x), x * x);
    }
}

/// Runs a child calling `square(0..n)` with the store at `dir`; its output,
/// and how many values it computed.
fn run(dir: &Path, n: u64, log: &Path) -> (Output, usize) {
    let _ = std::fs::remove_file(log);
    let out = memo_tests::succeed(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
            .env("MEMO_DIR", dir)
            .env("MEMO_TEST_N", n.to_string())
            .env("MEMO_TEST_LOG", log)
            .env_remove("MEMO_QUIET")
            .env_remove("MEMO_STRICT"),
    );
    let computed = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .count();
    (out, computed)
}

/// Every file under `dir` with its length and modification time.
fn snapshot(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            all.push((
                e.path().display().to_string(),
                m.len(),
                m.modified().unwrap(),
            ));
        }
    }
    all.sort();
    all
}

#[test]
fn a_store_on_a_read_only_mount_serves_hits_and_computes_misses_uncached() {
    let Some(mount) = Mount::tmpfs() else {
        return;
    };
    let cache = mount.path().join("cache");
    let logs = tempdir();
    let log = logs.path().join("computed");
    let (_, computed) = run(&cache, 10, &log);
    assert_eq!(computed, 10, "the first run computes everything");
    mount.read_only();
    let before = snapshot(&cache);

    // Hits from the read-only cache; the two new inputs computed, twice
    // (nothing can be stored), each run saying so once on stderr.
    for _ in 0..2 {
        let (out, computed) = run(&cache, 12, &log);
        assert_eq!(computed, 2, "only the misses are computed");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said: Vec<_> = stderr.lines().filter(|l| l.contains("memo:")).collect();
        assert_eq!(said.len(), 1, "one message per run: {stderr}");
        assert!(
            said[0].contains("read-only") && said[0].contains(&cache.display().to_string()),
            "the message names the store and why: {}",
            said[0]
        );
    }
    // A run that only hits says nothing.
    let (out, computed) = run(&cache, 10, &log);
    assert_eq!(computed, 0);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("memo:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The library: open by itself as read-only, reads, verifies; every
    // write is refused with an error naming the store.
    let store = Store::open(&cache).unwrap();
    assert!(store.is_read_only());
    assert_eq!(store.len(), 10);
    assert_eq!(store.stats().entries, 10);
    assert!(store.verify().unwrap().is_clean());
    let err = store.put(&Key::of("new"), &1).unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err}");
    assert!(
        err.to_string().contains(&cache.display().to_string()),
        "{err}"
    );
    for err in [
        store.remove(&Key::of("new")).unwrap_err(),
        store.clear().unwrap_err(),
        store.trim().unwrap_err(),
    ] {
        assert!(matches!(err, Error::ReadOnly { .. }), "{err}");
    }
    let computed: u64 = store.get_or_compute(&Key::of("new"), || 7).unwrap();
    assert_eq!(computed, 7);
    assert!(!store.contains(&Key::of("new")));
    assert_eq!(snapshot(&cache), before, "nothing changed on the mount");
}

#[test]
fn a_read_only_mount_without_a_store_is_a_clear_error() {
    let Some(mount) = Mount::tmpfs() else {
        return;
    };
    std::fs::create_dir(mount.path().join("empty")).unwrap();
    mount.read_only();
    let empty = mount.path().join("empty");
    let err = Store::open(&empty).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&empty.display().to_string()) && msg.contains("not a memo store"),
        "{msg}"
    );
    let missing = mount.path().join("missing");
    let err = Store::open(&missing).unwrap_err();
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

/// Every file under `dir` with its bytes.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    snapshot(dir)
        .into_iter()
        .filter(|(p, ..)| Path::new(p).is_file())
        .map(|(p, ..)| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

/// `StoreBuilder::read_only` on a directory that could be written: hits,
/// misses, counters and refused writes leave every byte as it was (no hit
/// counts, no access times, no registry, no lock files).
#[test]
fn asking_for_read_only_changes_no_byte() {
    let t = tempdir();
    let dir = t.path().join("store");
    let w = Store::open(&dir).unwrap();
    for i in 0..100_u32 {
        w.put(&Key::of(&i), &vec![i; (i as usize) * 50]).unwrap();
    }
    w.put_bytes(&Key::of("big"), &vec![7; 3 << 20]).unwrap();
    drop(w);
    let before = contents(&dir);

    let r = Store::builder(&dir).read_only(true).open().unwrap();
    assert!(r.is_read_only());
    let hits = r.stats().hits;
    for i in 0..100_u32 {
        assert_eq!(
            r.get::<Vec<u32>>(&Key::of(&i)).unwrap().unwrap(),
            vec![i; (i as usize) * 50]
        );
    }
    assert_eq!(
        r.get_bytes(&Key::of("big")).unwrap().unwrap().len(),
        3 << 20
    );
    assert!(r.get::<u32>(&Key::of("absent")).unwrap().is_none());
    let mut runs = 0;
    for _ in 0..2 {
        let v: u32 = r
            .get_or_compute(&Key::of("absent"), || {
                runs += 1;
                5
            })
            .unwrap();
        assert_eq!(v, 5);
    }
    assert_eq!(runs, 2, "nothing is stored, so each miss computes");
    assert!(matches!(
        r.put_bytes(&Key::of("x"), b"x"),
        Err(Error::ReadOnly { .. })
    ));
    assert_eq!(r.stats().hits, hits, "a read-only store keeps no counters");
    assert!(r.verify().unwrap().is_clean());
    drop(r);
    assert!(contents(&dir) == before, "a byte changed");

    // A writer opened later finds the store as it was.
    let w = Store::open(&dir).unwrap();
    assert_eq!(w.len(), 101);
}

/// Read-only needs a finished store: an empty directory, or a store whose
/// index was deleted, is refused with the reason, and nothing is created.
#[test]
fn read_only_refuses_what_it_would_have_to_write() {
    let t = tempdir();
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = Store::builder(&empty).read_only(true).open().unwrap_err();
    assert!(err.to_string().contains("not a memo store"), "{err}");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

    let dir = t.path().join("store");
    Store::open(&dir).unwrap().put(&Key::of(&1), &1).unwrap();
    std::fs::remove_file(dir.join("index")).unwrap();
    let err = Store::builder(&dir).read_only(true).open().unwrap_err();
    assert!(err.to_string().contains("no index"), "{err}");
    assert!(!dir.join("index").exists());
    // A writable open rebuilds it, as always.
    assert_eq!(Store::open(&dir).unwrap().len(), 1);
}

/// A read-only store with a remote tier: a remote hit returns the checked
/// value without installing it (nothing can be written), and every byte
/// of the store stays as it was.
#[test]
fn a_read_only_store_serves_remote_hits_without_installing() {
    let t = tempdir();
    let url = format!("file://{}", t.path().join("shared").display());
    let w = Store::builder(t.path().join("writer"))
        .remote(&url)
        .open()
        .unwrap();
    w.put(&Key::of("shared"), &vec![3_u64; 1000]).unwrap();
    let dir = t.path().join("store");
    Store::open(&dir)
        .unwrap()
        .put(&Key::of("own"), &1_u32)
        .unwrap();
    let before = contents(&dir);
    let r = Store::builder(&dir)
        .read_only(true)
        .remote(&url)
        .open()
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            r.get::<Vec<u64>>(&Key::of("shared")).unwrap(),
            Some(vec![3_u64; 1000])
        );
    }
    assert_eq!(r.stats().remote_hits, 2, "not installed: each get asks");
    drop(r);
    assert!(contents(&dir) == before, "a byte changed");
}
