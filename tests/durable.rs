//! `Durability::Sync` and restarts.
//!
//! - A real power loss, simulated faithfully (`power_loss_keeps_every_acknowledged_durable_put`,
//!   needs root for a loop device): the store lives on ext4 on a loop
//!   device, a writer process with several threads is killed mid-stream and
//!   the device's backing file is copied at that moment. The copy holds
//!   exactly what had reached the "disk": writes still waiting in the page
//!   cache above the loop device (everything not synced) are not in it, as
//!   after a power cut. ext4 is mounted with a long journal commit interval,
//!   so nothing but memo's own syncs pushes data down while the test runs.
//!   The copy is mounted (ext4 replays its journal, as at boot) and the boot
//!   id the index recorded is changed, as a restart changes it. Every put
//!   and remove acknowledged before the kill must be there, byte for byte.
//! - The replay itself, without root: an index put back to an older state
//!   (what a power loss can leave) plus a changed boot id.
//!
//! Knob: `MEMO_POWERLOSS_ROUNDS` (default 4).

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use memo_core::{Durability, Key, Store};
use memo_tests::{XorShift, tempdir};

/// Where the index header keeps the boot id (`format::hdr::BOOT_ID`, in
/// words): what a restart changes.
const BOOT_ID_AT: u64 = 48 * 8;

fn value(t: u64, i: u64) -> Vec<u8> {
    // Small, aligned mid-size, large inline and blob values.
    let len = match i % 8 {
        0..=4 => 100,
        5 => 70 << 10,
        6 => 1_500 << 10,
        _ => 3 << 20,
    };
    let seed = t.wrapping_mul(1_000_003) ^ i;
    (0..len)
        .map(|j| (j as u64 ^ seed).wrapping_mul(0x9e37) as u8)
        .collect()
}

fn key(t: u64, i: u64) -> Key {
    Key::of(&("durable", t, i))
}

/// Changes the boot id the index recorded, as a restart does.
fn pretend_restart(store: &Path, seed: u64) {
    let path = store.join("index");
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    else {
        return;
    };
    let mut magic = [0u8; 8];
    if f.read_exact_at(&mut magic, 0).is_err() || &magic != b"memo-idx" {
        return;
    }
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&seed.to_le_bytes());
    id[8..].copy_from_slice(&(!seed).to_le_bytes());
    f.write_all_at(&id, BOOT_ID_AT).unwrap();
}

#[test]
fn restart_with_a_stale_index_replays_durable_puts() {
    let dir = tempdir();
    let open = || {
        Store::builder(dir.path())
            .durability(Durability::Sync)
            .open()
            .unwrap()
    };
    let store = open();
    let mut model: HashMap<Key, Option<Vec<u8>>> = HashMap::new();
    for i in 0..40 {
        store.put_bytes(&key(0, i), &value(0, i)).unwrap();
        model.insert(key(0, i), Some(value(0, i)));
    }
    // What a power loss can leave of the mapped index: an older state.
    let stale = std::fs::read(dir.path().join("index")).unwrap();
    for i in 0..60 {
        store.put_bytes(&key(1, i), &value(1, i)).unwrap();
        model.insert(key(1, i), Some(value(1, i)));
    }
    for i in (0..40).step_by(3) {
        // Replaced and removed after the stale copy: the log says so.
        store.put_bytes(&key(0, i), &value(2, i)).unwrap();
        model.insert(key(0, i), Some(value(2, i)));
    }
    for i in (1..40).step_by(5) {
        assert!(store.remove(&key(0, i)).unwrap());
        model.insert(key(0, i), None);
    }
    drop(store);
    std::fs::write(dir.path().join("index"), &stale).unwrap();
    pretend_restart(dir.path(), 7);

    let store = open();
    for (k, v) in &model {
        let got = store.get_bytes(k).unwrap();
        assert_eq!(got.as_deref(), v.as_deref(), "{k} after the replay");
    }
    assert_eq!(
        store.len(),
        model.values().filter(|v| v.is_some()).count() as u64
    );
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    // And it goes on: new puts land after the replayed log, not over it.
    store.put_bytes(&key(3, 0), b"after").unwrap();
    drop(store);
    let store = open();
    assert_eq!(&*store.get_bytes(&key(3, 0)).unwrap().unwrap(), b"after");
    for (k, v) in &model {
        assert_eq!(store.get_bytes(k).unwrap().as_deref(), v.as_deref());
    }
}

#[test]
fn restart_of_a_flushing_store_finds_the_end_of_its_log() {
    // No durable writer: nothing is promised across a power loss, but the
    // store must not append over records its stale header no longer knows.
    let dir = tempdir();
    let store = Store::open(dir.path()).unwrap();
    store.put_bytes(&key(0, 0), b"old").unwrap();
    let stale = std::fs::read(dir.path().join("index")).unwrap();
    for i in 1..50 {
        store.put_bytes(&key(0, i), &value(0, i)).unwrap();
    }
    drop(store);
    std::fs::write(dir.path().join("index"), &stale).unwrap();
    pretend_restart(dir.path(), 9);
    let store = Store::open(dir.path()).unwrap();
    for i in 50..80 {
        store.put_bytes(&key(0, i), &value(0, i)).unwrap();
    }
    for i in 0..80 {
        if let Some(got) = store.get_bytes(&key(0, i)).unwrap() {
            let want = if i == 0 { b"old".to_vec() } else { value(0, i) };
            assert!(*got == want[..], "entry {i} has other bytes");
        } else {
            assert!(i < 50, "entry {i}, put after the restart, is missing");
        }
    }
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn concurrent_durable_puts_share_syncs_and_all_land() {
    let dir = tempdir();
    let store = Arc::new(
        Store::builder(dir.path())
            .durability(Durability::Sync)
            .open()
            .unwrap(),
    );
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = store.clone();
            s.spawn(move || {
                for i in 0..50 {
                    store.put_bytes(&key(t, i), &value(t, i % 5)).unwrap();
                }
            });
        }
    });
    for t in 0..4 {
        for i in 0..50 {
            assert!(*store.get_bytes(&key(t, i)).unwrap().unwrap() == value(t, i % 5)[..]);
        }
    }
}

// ------------------------------------------------------------ power loss ----

/// The writer, run as this test binary with `MEMO_POWERLOSS_CHILD` set:
/// three threads putting (and now and then removing) durably, each line on
/// stdout an acknowledgement sent only after the call returned.
fn child(dir: &str) {
    let durability = match std::env::var("MEMO_POWERLOSS_DURABILITY").as_deref() {
        Ok("flush") => Durability::Flush,
        _ => Durability::Sync,
    };
    let store = Store::builder(dir).durability(durability).open().unwrap();
    let out = Mutex::new(std::io::stdout());
    let say = |line: String| {
        let mut o = out.lock().unwrap();
        writeln!(o, "{line}").unwrap();
        o.flush().unwrap();
    };
    std::thread::scope(|s| {
        for t in 0..3_u64 {
            let (store, say) = (&store, &say);
            s.spawn(move || {
                for i in 0.. {
                    store.put_bytes(&key(t, i), &value(t, i)).unwrap();
                    say(format!("put {t} {i}"));
                    if i % 7 == 6 {
                        assert!(store.remove(&key(t, i - 3)).unwrap());
                        say(format!("rm {t} {}", i - 3));
                    }
                }
            });
        }
    });
}

fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Unmounts on drop, so a failing round leaves no mount behind.
struct Mounted(PathBuf);

impl Mounted {
    fn new(image: &Path, at: &Path) -> Mounted {
        std::fs::create_dir_all(at).unwrap();
        let ok = run(
            "mount",
            &[
                "-t",
                "ext4",
                "-o",
                "loop,commit=600",
                image.to_str().unwrap(),
                at.to_str().unwrap(),
            ],
        );
        assert!(ok, "mounting {} failed", image.display());
        Mounted(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = run("umount", &[self.0.to_str().unwrap()]);
    }
}

/// Whether this machine lets the test make and mount file systems.
fn can_mount(work: &Path) -> bool {
    let image = work.join("probe.img");
    let made = std::fs::File::create(&image)
        .and_then(|f| f.set_len(64 << 20))
        .is_ok()
        && run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
    let at = work.join("probe");
    made && std::fs::create_dir_all(&at).is_ok()
        && run(
            "mount",
            &["-o", "loop", image.to_str().unwrap(), at.to_str().unwrap()],
        )
        && run("umount", &[at.to_str().unwrap()])
}

#[test]
fn power_loss_keeps_every_acknowledged_durable_put() {
    if let Ok(dir) = std::env::var("MEMO_POWERLOSS_CHILD") {
        return child(&dir);
    }
    let work = tempdir();
    if !can_mount(work.path()) {
        let msg =
            "power-loss test needs root, loop devices and mkfs.ext4 (it mounts a file system)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("\n*** SKIPPED: {msg} ***\n");
        return;
    }
    let rounds: u64 = std::env::var("MEMO_POWERLOSS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let flush = std::env::var("MEMO_POWERLOSS_DURABILITY").as_deref() == Ok("flush");
    let mut rng = XorShift::new(0x5eed ^ u64::from(std::process::id()));
    for round in 0..rounds {
        let image = work.path().join("disk.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(512 << 20)
            .unwrap();
        assert!(run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]));
        let mnt = work.path().join("mnt");
        let mounted = Mounted::new(&image, &mnt);
        let store = mnt.join("store");
        std::fs::create_dir(&store).unwrap();
        assert!(run("sync", &[]));

        let mut kid = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "power_loss_keeps_every_acknowledged_durable_put",
                "--nocapture",
            ])
            .env("MEMO_POWERLOSS_CHILD", &store)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = BufReader::new(kid.stdout.take().unwrap());
        let acked = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let acked = acked.clone();
            std::thread::spawn(move || {
                for line in lines.lines().map_while(Result::ok) {
                    acked.lock().unwrap().push(line);
                }
            })
        };
        // Let it get going, then cut the power at a random moment.
        let wait = 300 + rng.below(900);
        std::thread::sleep(Duration::from_millis(wait));
        kid.kill().unwrap();
        kid.wait().unwrap();
        reader.join().unwrap();
        // The disk as it is now: only what reached the loop device.
        let snapshot = work.path().join("after.img");
        std::fs::copy(&image, &snapshot).unwrap();
        drop(mounted);

        let mnt2 = work.path().join("mnt2");
        let _m2 = Mounted::new(&snapshot, &mnt2);
        let store = mnt2.join("store");
        pretend_restart(&store, round + 1);
        let acked = acked.lock().unwrap();
        check_after_power_loss(&store, &acked, round, wait, flush);
        let _ = std::fs::remove_file(&snapshot);
    }
}

/// Every acknowledged put is there byte for byte, every acknowledged
/// remove stays removed, and the store is clean and writable.
fn check_after_power_loss(store: &Path, acked: &[String], round: u64, wait: u64, flush: bool) {
    let reopened = Store::open(store).unwrap();
    let mut model: HashMap<(u64, u64), bool> = HashMap::new();
    let mut last_put: HashMap<u64, u64> = HashMap::new();
    // Other lines are the test harness's own.
    for line in acked
        .iter()
        .filter(|l| l.starts_with("put ") || l.starts_with("rm "))
    {
        let f: Vec<&str> = line.split(' ').collect();
        let (t, i) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        model.insert((t, i), f[0] == "put");
        if f[0] == "put" {
            last_put.insert(t, i);
        }
    }
    // Each thread may have been killed inside the call after its last
    // acknowledged one. When that call was a remove, it may have reached
    // the disk without being acknowledged: its key may be either way.
    let in_flight: Vec<(u64, u64)> = last_put
        .iter()
        .filter(|&(&t, &i)| i % 7 == 6 && model.get(&(t, i - 3)) == Some(&true))
        .map(|(&t, &i)| (t, i - 3))
        .collect();
    let mut lost = Vec::new();
    for (&(t, i), &present) in &model {
        let got = reopened.get_bytes(&key(t, i)).unwrap();
        let present = present && !(got.is_none() && in_flight.contains(&(t, i)));
        match (present, got) {
            (true, Some(b)) => assert!(
                *b == value(t, i)[..],
                "round {round}: ({t}, {i}) has other bytes"
            ),
            (true, None) => lost.push((t, i)),
            (false, Some(_)) if !flush => panic!("round {round}: removed ({t}, {i}) is back"),
            (false, _) => {}
        }
    }
    let puts = model.values().filter(|p| **p).count();
    eprintln!(
        "round {round}: killed after {wait} ms, {} acknowledged calls, {puts} entries, {} lost, {} removes in flight",
        acked.len(),
        lost.len(),
        in_flight.len()
    );
    if flush {
        return;
    }
    lost.sort_unstable();
    assert!(
        lost.is_empty(),
        "round {round}: acknowledged durable puts lost (thread, index): {lost:?}"
    );
    assert!(puts > 0, "round {round}: the writer acknowledged nothing");
    let report = reopened.verify().unwrap();
    assert!(report.is_clean(), "round {round}: {report:?}");
    reopened
        .put_bytes(&Key::of("after"), b"power is back")
        .unwrap();
}
