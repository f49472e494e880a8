//! memo against the stores a user would otherwise pick (LMDB through heed,
//! the `cached` crate's redb disk store, cacache) and against the floors
//! (memcpy, blake3, plain file write, plain mmap read), in one run.

#![allow(
    unsafe_code,
    reason = "opening LMDB and mapping the baseline file are unsafe calls"
)]
#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]

use std::hint::black_box;
use std::time::Duration;

use cached::ConcurrentCached;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use memo_core::{Durability, Key, Store};
use rand::{Rng, SeedableRng, rngs::StdRng};

const ENTRIES: u32 = 100_000;
const SMALL: usize = 100;
const LARGE: usize = 64 << 20;

fn small_value(i: u32) -> Vec<u8> {
    let mut v = vec![0u8; SMALL];
    v[..4].copy_from_slice(&i.to_le_bytes());
    v
}

fn keys() -> Vec<Key> {
    (0..ENTRIES).map(|i| Key::of(&i)).collect()
}

fn random_order(n: usize) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..1 << 16).map(|_| rng.gen_range(0..n)).collect()
}

fn lmdb(
    dir: &std::path::Path,
) -> (
    heed::Env,
    heed::Database<heed::types::Bytes, heed::types::Bytes>,
) {
    let mut opts = heed::EnvOpenOptions::new();
    opts.map_size(8 << 30).max_dbs(1);
    // SAFETY: the directory is fresh and only this process opens it; NO_SYNC
    // matches memo's default durability (a crash of the process loses nothing,
    // power loss may).
    let env = unsafe { opts.flags(heed::EnvFlags::NO_SYNC).open(dir) }.expect("lmdb");
    let mut wtxn = env.write_txn().expect("txn");
    let db = env.create_database(&mut wtxn, None).expect("db");
    wtxn.commit().expect("commit");
    (env, db)
}

fn redb(dir: &std::path::Path) -> cached::stores::RedbCache<String, Vec<u8>> {
    cached::stores::RedbCache::builder("bench")
        .disk_dir(dir)
        .durable(false)
        .build()
        .expect("redb")
}

fn hits(c: &mut Criterion) {
    let keys = keys();
    let order = random_order(keys.len());
    let mut g = c.benchmark_group("hit_100B");

    let memo_dir = tempfile::tempdir().expect("dir");
    let store = Store::open(memo_dir.path()).expect("store");
    for (i, k) in keys.iter().enumerate() {
        store.put_bytes(k, &small_value(i as u32)).expect("put");
    }
    let typed_dir = tempfile::tempdir().expect("dir");
    let typed = Store::open(typed_dir.path()).expect("store");
    for (i, k) in keys.iter().enumerate() {
        typed.put(k, &small_value(i as u32)).expect("put");
    }
    let lmdb_dir = tempfile::tempdir().expect("dir");
    let (env, db) = lmdb(lmdb_dir.path());
    let mut wtxn = env.write_txn().expect("txn");
    for (i, k) in keys.iter().enumerate() {
        db.put(&mut wtxn, k.as_bytes(), &small_value(i as u32))
            .expect("put");
    }
    wtxn.commit().expect("commit");
    let redb_dir = tempfile::tempdir().expect("dir");
    let rc = redb(redb_dir.path());
    let cacache_dir = tempfile::tempdir().expect("dir");
    for (i, k) in keys.iter().enumerate() {
        let _ = rc
            .cache_set(k.to_string(), small_value(i as u32))
            .expect("put");
        if i < 20_000 {
            cacache::write_sync(cacache_dir.path(), k.to_string(), small_value(i as u32))
                .expect("put");
        }
    }

    let mut n = 0;
    let mut next = move || {
        n = (n + 1) & 0xffff;
        order[n]
    };
    g.bench_function("memo get_bytes", |b| {
        b.iter(|| black_box(store.get_bytes(&keys[next()]).expect("get").expect("hit")[0]));
    });
    g.bench_function("memo get (decoded Vec<u8>)", |b| {
        b.iter(|| {
            black_box(
                typed
                    .get::<Vec<u8>>(&keys[next()])
                    .expect("get")
                    .expect("hit"),
            )
        });
    });
    g.bench_function("lmdb (heed) get", |b| {
        b.iter(|| {
            let rtxn = env.read_txn().expect("txn");
            black_box(
                db.get(&rtxn, keys[next()].as_bytes())
                    .expect("get")
                    .expect("hit")[0],
            )
        });
    });
    g.bench_function("cached RedbCache get", |b| {
        b.iter(|| {
            black_box(
                rc.cache_get(&keys[next()].to_string())
                    .expect("get")
                    .expect("hit"),
            )
        });
    });
    g.bench_function("cacache read_sync", |b| {
        b.iter(|| {
            black_box(
                cacache::read_sync(cacache_dir.path(), keys[next() % 20_000].to_string())
                    .expect("get"),
            )
        });
    });
    g.finish();
}

fn puts(c: &mut Criterion) {
    let mut g = c.benchmark_group("put_100B");
    g.throughput(Throughput::Elements(1));
    let value = small_value(1);
    let mut i = 0_u64;
    let memo_dir = tempfile::tempdir().expect("dir");
    let store = Store::open(memo_dir.path()).expect("store");
    g.bench_function("memo put_bytes (Flush)", |b| {
        b.iter(|| {
            i += 1;
            store.put_bytes(&Key::of(&i), &value).expect("put");
        });
    });
    let lmdb_dir = tempfile::tempdir().expect("dir");
    let (env, db) = lmdb(lmdb_dir.path());
    g.bench_function("lmdb (heed) put, NO_SYNC, txn each", |b| {
        b.iter(|| {
            i += 1;
            let mut w = env.write_txn().expect("txn");
            db.put(&mut w, Key::of(&i).as_bytes(), &value).expect("put");
            w.commit().expect("commit");
        });
    });
    let redb_dir = tempfile::tempdir().expect("dir");
    let rc = redb(redb_dir.path());
    g.bench_function("cached RedbCache set (not durable)", |b| {
        b.iter(|| {
            i += 1;
            let _ = rc
                .cache_set(Key::of(&i).to_string(), value.clone())
                .expect("put");
        });
    });
    let cacache_dir = tempfile::tempdir().expect("dir");
    g.sample_size(20);
    g.bench_function("cacache write_sync", |b| {
        b.iter(|| {
            i += 1;
            cacache::write_sync(cacache_dir.path(), Key::of(&i).to_string(), &value).expect("put");
        });
    });
    g.finish();
}

fn large(c: &mut Criterion) {
    let mut g = c.benchmark_group("value_64MiB");
    g.sample_size(15).measurement_time(Duration::from_secs(6));
    let payload: Vec<u8> = (0..LARGE).map(|i| (i * 7) as u8).collect();
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).expect("store");
    let key = Key::of("large");
    store.put_bytes(&key, &payload).expect("put");
    drop(store.get_bytes(&key).expect("get")); // first map verifies the checksum

    g.bench_function("memo get_bytes (zero-copy)", |b| {
        b.iter(|| black_box(store.get_bytes(&key).expect("get").expect("hit").len()));
    });

    g.throughput(Throughput::Bytes(LARGE as u64));
    let plain = dir.path().join("plain");
    std::fs::write(&plain, &payload).expect("write");
    let file = std::fs::File::open(&plain).expect("open");
    // SAFETY: the file is private to this benchmark and not modified while mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.expect("map");
    g.bench_function("baseline: read every byte of a plain mmap", |b| {
        b.iter(|| black_box(sum(&map)));
    });
    g.bench_function("memo get_bytes + read every byte", |b| {
        b.iter(|| black_box(sum(&store.get_bytes(&key).expect("get").expect("hit"))));
    });

    let mut n = 0_u64;
    // Each side writes a new file and removes it, so neither builds up dirty
    // pages that the kernel would make the other wait for.
    g.bench_function("baseline: plain file write (new file, then removed)", |b| {
        b.iter(|| {
            n += 1;
            let p = dir.path().join(format!("w{n}"));
            std::fs::write(&p, &payload).expect("write");
            std::fs::remove_file(&p).expect("remove");
        });
    });
    g.bench_function("memo put_bytes (Flush)", |b| {
        b.iter(|| {
            n += 1;
            store.put_bytes(&Key::of(&n), &payload).expect("put");
            // Keep the disk from filling: the bench measures the put.
            store.remove(&Key::of(&n)).expect("remove");
        });
    });
    let mut dst = vec![0u8; LARGE];
    g.bench_function("floor: memcpy", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&payload)));
    });
    g.bench_function("floor: blake3", |b| {
        b.iter(|| black_box(blake3::hash(&payload)));
    });

    let floats: Vec<f64> = (0..LARGE / 8).map(|i| i as f64 * 0.5).collect();
    g.bench_function("Key::of(Vec<f64>)", |b| {
        b.iter(|| black_box(Key::of(&floats)));
    });
    // The same bytes, as raw blake3 sees them.
    let raw: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
    g.bench_function("floor: blake3 of the Vec<f64>'s bytes", |b| {
        b.iter(|| black_box(blake3::hash(&raw)));
    });
    g.finish();
}

/// Puts `n` values of `size` bytes into a fresh store of each kind (timed
/// from the first put to the last), then reads them back in random order,
/// every byte of each. Issue 10's "values between small and huge".
fn mid(c: &mut Criterion) {
    for (size, n) in [(64_usize << 10, 2_000_u32), (1 << 20, 500)] {
        let label = if size < 1 << 20 { "64KiB" } else { "1MiB" };
        let keys: Vec<Key> = (0..n).map(|i| Key::of(&(label, i))).collect();
        let value = |i: u32| -> Vec<u8> { (0..size).map(|j| (j as u32 ^ i) as u8).collect() };
        let values: Vec<Vec<u8>> = (0..n).map(value).collect();
        let bytes = (size as u64) * u64::from(n);

        let mut g = c.benchmark_group(format!("put_{n}x{label}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(4))
            .throughput(Throughput::Bytes(bytes));
        let pairs: Vec<(&Key, &[u8])> = keys.iter().zip(values.iter().map(Vec::as_slice)).collect();
        fill(
            &mut g,
            "memo put_bytes (Flush)",
            &pairs,
            |d| Store::open(d).expect("store"),
            |s, k, v| {
                s.put_bytes(k, v).expect("put");
            },
        );
        fill(
            &mut g,
            "lmdb (heed) put, NO_SYNC, txn each",
            &pairs,
            lmdb,
            |(env, db), k, v| {
                let mut w = env.write_txn().expect("txn");
                db.put(&mut w, k.as_bytes(), v).expect("put");
                w.commit().expect("commit");
            },
        );
        fill(
            &mut g,
            "cached RedbCache set (not durable)",
            &pairs,
            redb,
            |rc, k, v| {
                let _ = rc.cache_set(k.to_string(), v.to_vec()).expect("put");
            },
        );
        g.finish();
        mid_gets(c, label, size, &keys, &values);
    }
}

/// Benchmarks putting every pair into a fresh store made by `open`, timed
/// from the first put to the last; making and removing the directory is
/// outside the timing.
fn fill<S>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    pairs: &[(&Key, &[u8])],
    open: impl Fn(&std::path::Path) -> S,
    put: impl Fn(&S, &Key, &[u8]),
) {
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let dir = tempfile::tempdir().expect("dir");
                    let store = open(dir.path());
                    let t = std::time::Instant::now();
                    for (k, v) in pairs {
                        put(&store, k, v);
                    }
                    t.elapsed()
                })
                .sum::<Duration>()
        });
    });
}

/// Random gets of the values `mid` put, every byte read.
fn mid_gets(c: &mut Criterion, label: &str, size: usize, keys: &[Key], values: &[Vec<u8>]) {
    let n = keys.len();
    {
        let mut g = c.benchmark_group(format!("get_{n}x{label}"));
        g.sample_size(20)
            .measurement_time(Duration::from_secs(3))
            .throughput(Throughput::Bytes(size as u64));
        let order = random_order(keys.len());
        let memo_dir = tempfile::tempdir().expect("dir");
        let store = Store::open(memo_dir.path()).expect("store");
        let lmdb_dir = tempfile::tempdir().expect("dir");
        let (env, db) = lmdb(lmdb_dir.path());
        let redb_dir = tempfile::tempdir().expect("dir");
        let rc = redb(redb_dir.path());
        for (k, v) in keys.iter().zip(values) {
            store.put_bytes(k, v).expect("put");
            let mut w = env.write_txn().expect("txn");
            db.put(&mut w, k.as_bytes(), v).expect("put");
            w.commit().expect("commit");
            let _ = rc.cache_set(k.to_string(), v.clone()).expect("put");
        }
        let mut i = 0;
        let mut next = move || {
            i = (i + 1) & 0xffff;
            order[i]
        };
        g.bench_function("memo get_bytes + read every byte", |b| {
            b.iter(|| {
                black_box(sum(&store
                    .get_bytes(&keys[next()])
                    .expect("get")
                    .expect("hit")))
            });
        });
        g.bench_function("lmdb (heed) get + read every byte", |b| {
            b.iter(|| {
                let rtxn = env.read_txn().expect("txn");
                black_box(sum(db
                    .get(&rtxn, keys[next()].as_bytes())
                    .expect("get")
                    .expect("hit")))
            });
        });
        g.bench_function("cached RedbCache get + read every byte", |b| {
            b.iter(|| {
                black_box(sum(&rc
                    .cache_get(&keys[next()].to_string())
                    .expect("get")
                    .expect("hit")))
            });
        });
        g.finish();
    }
}

/// Puts that must survive power loss, one at a time: each store with its
/// fsync-per-commit durability.
fn durable(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable_put_100B");
    g.sample_size(20).throughput(Throughput::Elements(1));
    let value = small_value(1);
    let mut i = 0_u64;
    let memo_dir = tempfile::tempdir().expect("dir");
    let store = Store::builder(memo_dir.path())
        .durability(Durability::Sync)
        .open()
        .expect("store");
    g.bench_function("memo put_bytes (Sync)", |b| {
        b.iter(|| {
            i += 1;
            store.put_bytes(&Key::of(&i), &value).expect("put");
        });
    });
    let lmdb_dir = tempfile::tempdir().expect("dir");
    let mut opts = heed::EnvOpenOptions::new();
    opts.map_size(1 << 30).max_dbs(1);
    // SAFETY: the directory is fresh and only this process opens it.
    let env = unsafe { opts.open(lmdb_dir.path()) }.expect("lmdb");
    let mut w = env.write_txn().expect("txn");
    let db: heed::Database<heed::types::Bytes, heed::types::Bytes> =
        env.create_database(&mut w, None).expect("db");
    w.commit().expect("commit");
    g.bench_function("lmdb (heed) put, default (synced) commit", |b| {
        b.iter(|| {
            i += 1;
            let mut w = env.write_txn().expect("txn");
            db.put(&mut w, Key::of(&i).as_bytes(), &value).expect("put");
            w.commit().expect("commit");
        });
    });
    let redb_dir = tempfile::tempdir().expect("dir");
    let rc = cached::stores::RedbCache::<String, Vec<u8>>::builder("bench")
        .disk_dir(redb_dir.path())
        .durable(true)
        .build()
        .expect("redb");
    g.bench_function("cached RedbCache set (durable)", |b| {
        b.iter(|| {
            i += 1;
            let _ = rc
                .cache_set(Key::of(&i).to_string(), value.clone())
                .expect("put");
        });
    });
    g.finish();
}

fn sum(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .fold(0, u64::wrapping_add)
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = hits, puts, large, mid, durable
}
criterion_main!(benches);
