//! Guards docs/design.md invariant 6 against the user's other files: a store directory in
//! which memo's own names are symbolic links (or of the wrong type), and
//! foreign directories opened as stores. memo never follows a link inside a
//! store, never adopts a directory that is not empty and not a store, and
//! never removes a file it did not name — checked by decoys, some named
//! the way memo names its own files, that must come out byte for byte as
//! they went in, with nothing written beside them. A second process does
//! the same through this test binary re-run as a child.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use memo_core::{Error, Key, Store};
use memo_tests::tempdir;

/// A directory of decoys: the user's files, and files named as memo names
/// its own (a segment, tmp files, a compute lock, a blob, an index).
fn decoys(at: &Path) -> PathBuf {
    std::fs::create_dir_all(at).unwrap();
    let key = Key::of("decoy").to_string();
    let names = [
        "important.txt".to_owned(),
        "000001".to_owned(),
        "000002".to_owned(),
        format!("blob-{}.0123456789abcdef", &key[..16]),
        "seg-000001".to_owned(),
        "index.1.0".to_owned(),
        "index.rebuild.1".to_owned(),
        key.clone(),
        format!("{key}.0123456789abcdef"),
        "index".to_owned(),
        "LOCK".to_owned(),
    ];
    for (i, n) in names.iter().enumerate() {
        std::fs::write(at.join(n), format!("decoy {i}: the user's bytes")).unwrap();
    }
    at.to_path_buf()
}

/// Every file below `dir` with its bytes (links recorded, not followed).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_symlink() {
                let to = std::fs::read_link(&p).unwrap();
                out.insert(p, to.into_os_string().into_encoded_bytes());
            } else if meta.is_dir() {
                out.insert(p.clone(), b"<dir>".to_vec());
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn small(i: u32) -> Vec<u8> {
    vec![i as u8; 100 + i as usize]
}

/// Mid-size values (aligned, in segments) and, every fourth, a blob.
fn large(i: u32) -> Vec<u8> {
    let len = if i.is_multiple_of(4) { 2 << 20 } else { 70_000 };
    vec![i as u8; len + i as usize]
}

/// A store with small and large values, closed.
fn filled_store(dir: &Path) {
    let s = Store::open(dir).unwrap();
    for i in 0..40 {
        s.put_bytes(&Key::of(&i), &small(i)).unwrap();
        s.put_bytes(&Key::of(&(i, "large")), &large(i)).unwrap();
    }
}

/// Everything a user does with a store; errors are allowed (memo refuses),
/// wrong bytes and touched decoys are not.
fn exercise(dir: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    let mut note = |r: Result<(), Error>| {
        if let Err(e) = r {
            errors.push(e.to_string());
        }
    };
    let store = match Store::open(dir) {
        Ok(s) => s,
        Err(e) => return vec![e.to_string()],
    };
    for i in 0..40 {
        note(store.put_bytes(&Key::of(&(i, "new")), &small(i)));
        note(store.put_bytes(&Key::of(&(i, "new large")), &large(i)));
    }
    for i in 0..40 {
        for (k, v) in [
            (Key::of(&i), small(i)),
            (Key::of(&(i, "large")), large(i)),
            (Key::of(&(i, "new")), small(i)),
            (Key::of(&(i, "new large")), large(i)),
        ] {
            match store.get_bytes(&k) {
                Ok(Some(b)) => assert!(*b == v[..], "wrong bytes"),
                Ok(None) => {}
                Err(e) => note(Err(e)),
            }
        }
    }
    let v: Result<u32, _> = store.get_or_compute(&Key::of("computed"), || 7);
    note(v.map(|v| assert_eq!(v, 7)));
    note(store.verify().map(drop));
    note(store.remove(&Key::of(&(3, "large"))).map(drop));
    note(store.trim());
    note(store.clear());
    note(store.put_bytes(&Key::of("after clear"), &large(1)));
    errors
}

/// The child process: `exercise` on `MEMO_TEST_DIR`.
#[test]
fn child_role() {
    if std::env::var("MEMO_TEST_ROLE").as_deref() == Ok("exercise") {
        exercise(Path::new(&std::env::var("MEMO_TEST_DIR").unwrap()));
    }
}

fn exercise_in_child(dir: &Path) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env("MEMO_TEST_ROLE", "exercise")
        .env("MEMO_TEST_DIR", dir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the child failed (wrong bytes or a panic)"
    );
}

/// Replaces `name` in the store by a link to `to`.
fn replace_with_link(store: &Path, name: &str, to: &Path) {
    let p = store.join(name);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p).unwrap(),
        Ok(_) => std::fs::remove_file(&p).unwrap(),
        Err(_) => {}
    }
    symlink(to, &p).unwrap();
}

#[test]
fn links_inside_a_store_are_never_followed() {
    // Each of memo's names replaced by a link to a directory of decoys, or
    // to a decoy file; every fan-out directory of `blob/` at once, too.
    let cases: Vec<(Vec<String>, bool)> =
        ["tmp", "locks", "seg", "blob", "LOCK", "index", "blob/xx"]
            .iter()
            .map(|n| match *n {
                "blob/xx" => ((0..256).map(|i| format!("blob/{i:02x}")).collect(), false),
                "LOCK" | "index" => (vec![(*n).to_owned()], true),
                _ => (vec![(*n).to_owned()], false),
            })
            .collect();
    for (names, to_file) in cases {
        for fresh in [false, true] {
            let t = tempdir();
            let store = t.path().join("store");
            let decoy_dir = decoys(&t.path().join("decoys"));
            if fresh {
                // A directory that has never been a store: only the link.
                std::fs::create_dir(&store).unwrap();
                if names.len() > 1 || names[0].contains('/') {
                    continue;
                }
            } else {
                filled_store(&store);
            }
            for name in &names {
                let to = if to_file {
                    decoy_dir.join(name)
                } else {
                    decoy_dir.clone()
                };
                replace_with_link(&store, name, &to);
            }
            let before = snapshot(&decoy_dir);
            let errors = exercise(&store);
            exercise_in_child(&store);
            assert_eq!(
                snapshot(&decoy_dir),
                before,
                "{names:?} (fresh: {fresh}): a decoy was changed, removed or added to"
            );
            // What memo says names the link; whole-store names refuse the open.
            assert!(!errors.is_empty(), "{names:?}: nothing was refused");
            let first = &names[0];
            assert!(
                errors.iter().any(|e| e.contains(first.as_str())
                    || e.contains("symbolic link")
                    || e.contains("neither empty nor a memo store")),
                "{names:?}: {errors:?}"
            );
        }
    }
}

#[test]
fn a_link_to_the_store_directory_itself_is_followed() {
    // Users point MEMO_DIR at a bigger disk through a link.
    let t = tempdir();
    let real = t.path().join("big-disk");
    symlink(&real, t.path().join("cache")).unwrap();
    std::fs::create_dir(&real).unwrap();
    let s = Store::open(t.path().join("cache")).unwrap();
    s.put_bytes(&Key::of(&1), &large(1)).unwrap();
    drop(s);
    let s = Store::open(&real).unwrap();
    assert_eq!(&*s.get_bytes(&Key::of(&1)).unwrap().unwrap(), &large(1)[..]);
}

#[test]
fn a_foreign_directory_is_refused_and_left_as_it_was() {
    // MEMO_DIR=$HOME, `dir = "."`, a typo: a directory of the user's own,
    // with names memo uses.
    let t = tempdir();
    let home = t.path().join("home");
    for (f, body) in [
        ("tmp/notes.txt", "notes"),
        ("locks/ssh.key", "secret"),
        ("seg/results.csv", "a,b\n1,2\n"),
        ("README", "mine"),
    ] {
        std::fs::create_dir_all(home.join(f).parent().unwrap()).unwrap();
        std::fs::write(home.join(f), body).unwrap();
    }
    let before = snapshot(&home);
    for _ in 0..3 {
        let e = Store::open(&home).unwrap_err();
        assert!(
            matches!(e, Error::Refused { ref path, .. } if path == &home),
            "{e}"
        );
        let msg = e.to_string();
        assert!(msg.contains("neither empty nor a memo store"), "{msg}");
        assert!(msg.contains("README") && msg.contains("tmp"), "{msg}");
    }
    exercise_in_child(&home);
    assert_eq!(
        snapshot(&home),
        before,
        "nothing created, changed or removed"
    );

    // A single file is enough to refuse; a foreign LOCK too.
    let one = t.path().join("one");
    std::fs::create_dir(&one).unwrap();
    std::fs::write(one.join("LOCK"), "someone else's lock").unwrap();
    let e = Store::open(&one).unwrap_err();
    assert!(
        matches!(e, Error::Refused { ref path, .. } if path.ends_with("LOCK")),
        "{e}"
    );
    assert_eq!(
        std::fs::read(one.join("LOCK")).unwrap(),
        b"someone else's lock"
    );
    assert_eq!(std::fs::read_dir(&one).unwrap().count(), 1);
}

#[test]
fn empty_directories_and_stores_are_adopted() {
    let t = tempdir();
    // Missing: created. Empty: adopted. A store: reopened.
    for dir in [t.path().join("a/b/c"), {
        let d = t.path().join("empty");
        std::fs::create_dir(&d).unwrap();
        d
    }] {
        Store::open(&dir)
            .unwrap()
            .put(&Key::of(&1), &1_u32)
            .unwrap();
        let s = Store::open(&dir).unwrap();
        assert_eq!(s.get::<u32>(&Key::of(&1)).unwrap(), Some(1));
        let marker = std::fs::read(dir.join("LOCK")).unwrap();
        assert!(marker.starts_with(b"memo-dir"), "{marker:?}");
    }
    // An empty LOCK alone: a maker that died before writing the marker.
    let d = t.path().join("half-made");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("LOCK"), b"").unwrap();
    Store::open(&d).unwrap();
    // A store whose LOCK is empty but whose index is memo's (made before
    // the marker existed) keeps its entries.
    let d = t.path().join("older");
    Store::open(&d).unwrap().put(&Key::of(&2), &2_u32).unwrap();
    std::fs::write(d.join("LOCK"), b"").unwrap();
    assert_eq!(
        Store::open(&d).unwrap().get::<u32>(&Key::of(&2)).unwrap(),
        Some(2)
    );
}

#[test]
fn many_processes_make_one_store_in_an_empty_directory() {
    for round in 0..5 {
        let t = tempdir();
        let dir = t.path().join(format!("race-{round}"));
        std::fs::create_dir(&dir).unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
                    .env("MEMO_TEST_ROLE", "exercise")
                    .env("MEMO_TEST_DIR", &dir)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // This process joins the race as well: nobody may be refused.
        let s = Store::open(&dir).unwrap();
        s.put_bytes(&Key::of("parent"), b"here").unwrap();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        assert!(
            Store::open(&dir)
                .unwrap()
                .verify()
                .unwrap()
                .problems
                .is_empty()
        );
    }
}

#[test]
fn threads_racing_to_make_one_store_are_never_refused() {
    // Tighter than processes: 8 threads released at once on an empty
    // directory, many rounds. Found in CI: an opener that saw no `LOCK`,
    // then listed the directory after another made it, refused the store.
    let rounds: u32 = std::env::var("MEMO_ADOPT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let t = tempdir();
    for round in 0..rounds {
        let dir = t.path().join(format!("r{round}"));
        std::fs::create_dir(&dir).unwrap();
        let barrier = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    barrier.wait();
                    Store::open(&dir).unwrap();
                });
            }
        });
    }
}

#[test]
fn swapping_tmp_for_a_link_while_writing_touches_no_decoy() {
    let t = tempdir();
    let store = t.path().join("store");
    filled_store(&store);
    let decoy_dir = decoys(&t.path().join("decoys"));
    let before = snapshot(&decoy_dir);
    let stop = AtomicBool::new(false);
    let run_for = Duration::from_millis(
        std::env::var("MEMO_LINK_RACE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500),
    );
    let (tmp, link) = (store.join("tmp"), t.path().join("tmp-link"));
    symlink(&decoy_dir, &link).unwrap();
    let opened = Store::open(&store).unwrap();
    let exchange = || {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &tmp,
            rustix::fs::CWD,
            &link,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .unwrap();
    };
    let mut swaps = 0;
    std::thread::scope(|s| {
        // The attacker: `tmp` is the real directory, then (atomically) a
        // link to the decoys, then the real directory again, and so on.
        s.spawn(|| {
            let start = Instant::now();
            while start.elapsed() < run_for {
                exchange();
                std::thread::sleep(Duration::from_micros(300));
                exchange();
                std::thread::sleep(Duration::from_micros(300));
                swaps += 1;
            }
            stop.store(true, Ordering::Relaxed);
        });
        // Writers through a store opened before (its handles stay on the
        // real directory), and new openers, whose sweeps read tmp.
        s.spawn(|| {
            let mut i = 0_u32;
            while !stop.load(Ordering::Relaxed) {
                let k = Key::of(&(i, "race"));
                opened.put_bytes(&k, &large(i % 50)).unwrap();
                assert_eq!(&*opened.get_bytes(&k).unwrap().unwrap(), &large(i % 50)[..]);
                i += 1;
            }
        });
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(other) = Store::open(&store) {
                    let _ = other.put_bytes(&Key::of("opener"), &large(3));
                }
            }
        });
    });
    assert!(swaps > 10, "the race ran ({swaps} swaps)");
    assert!(std::fs::symlink_metadata(&tmp).unwrap().is_dir());
    assert_eq!(snapshot(&decoy_dir), before, "a decoy was touched");
    assert!(opened.verify().unwrap().problems.is_empty());
}
