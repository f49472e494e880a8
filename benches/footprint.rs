//! Disk use of 100k x 100 B entries in memo and the stores a user would
//! otherwise pick, and the time to open a store of 1M entries. Prints a
//! table; sizes are allocated blocks (what `du` reports), so sparse space
//! does not count.

#![allow(unsafe_code, reason = "opening LMDB is an unsafe call")]
#![allow(
    clippy::many_single_char_names,
    reason = "one short-lived binding per store"
)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use cached::ConcurrentCached;
use memo_core::{Key, Store};

const N: u32 = 100_000;
const LEN: usize = 100;

fn du(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if m.is_dir() {
        std::fs::read_dir(p).map_or(0, |rd| rd.flatten().map(|e| du(&e.path())).sum::<u64>())
            + m.blocks() * 512
    } else {
        m.blocks() * 512
    }
}

fn value(i: u32) -> Vec<u8> {
    let mut v = vec![0x5a; LEN];
    v[..4].copy_from_slice(&i.to_le_bytes());
    v
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches` probe benches this way
    }
    let payload = f64::from(N) * LEN as f64;
    println!("disk use, {N} x {LEN} B (payload {:.1} MB):", payload / 1e6);

    let d = tempfile::tempdir().expect("dir");
    let t = Instant::now();
    let store = Store::open(d.path()).expect("store");
    for i in 0..N {
        store.put_bytes(&Key::of(&i), &value(i)).expect("put");
    }
    report("memo", du(d.path()), payload, t);
    drop(store);

    let d = tempfile::tempdir().expect("dir");
    let t = Instant::now();
    let mut opts = heed::EnvOpenOptions::new();
    opts.map_size(4 << 30);
    // SAFETY: a fresh directory that only this process opens.
    let env = unsafe { opts.flags(heed::EnvFlags::NO_SYNC).open(d.path()) }.expect("lmdb");
    let mut w = env.write_txn().expect("txn");
    let db: heed::Database<heed::types::Bytes, heed::types::Bytes> =
        env.create_database(&mut w, None).expect("db");
    for i in 0..N {
        db.put(&mut w, Key::of(&i).as_bytes(), &value(i))
            .expect("put");
    }
    w.commit().expect("commit");
    env.force_sync().expect("sync");
    report("lmdb (heed)", du(d.path()), payload, t);

    let d = tempfile::tempdir().expect("dir");
    let t = Instant::now();
    let rc: cached::stores::RedbCache<String, Vec<u8>> = cached::stores::RedbCache::builder("fp")
        .disk_dir(d.path())
        .durable(false)
        .build()
        .expect("redb");
    for i in 0..N {
        let _ = rc
            .cache_set(Key::of(&i).to_string(), value(i))
            .expect("put");
    }
    rc.flush().expect("flush");
    report("cached RedbCache", du(d.path()), payload, t);

    let d = tempfile::tempdir().expect("dir");
    let t = Instant::now();
    for i in 0..N {
        cacache::write_sync(d.path(), Key::of(&i).to_string(), value(i)).expect("put");
    }
    report("cacache", du(d.path()), payload, t);

    let entries: u32 = std::env::var("MEMO_BENCH_OPEN_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let d = tempfile::tempdir().expect("dir");
    {
        let store = Store::open(d.path()).expect("store");
        for i in 0..entries {
            store
                .put_bytes(&Key::of(&i), &i.to_le_bytes())
                .expect("put");
        }
    }
    let mut times: Vec<f64> = (0..31)
        .map(|_| {
            let t = Instant::now();
            let s = Store::open(d.path()).expect("open");
            let found = s.contains(&Key::of(&(entries / 2)));
            let e = t.elapsed().as_secs_f64() * 1e6;
            assert!(found);
            e
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "open a store of {entries} entries and look one up: median {:.0} us, max {:.0} us",
        times[15], times[30]
    );
}

fn report(name: &str, bytes: u64, payload: f64, t: Instant) {
    println!(
        "  {name:<18} {:>8.1} MB  {:>5.2}x payload  (filled in {:.2} s)",
        bytes as f64 / 1e6,
        bytes as f64 / payload,
        t.elapsed().as_secs_f64()
    );
}
