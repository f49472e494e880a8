//! The remote tier against the raw client of each engine, in one run:
//! `file://` (`std::fs`), Redis (the `redis` crate on a real `redis-server`)
//! and S3 (`object_store` on `moto_server`, an emulator), each server
//! started on loopback by the bench.
//!
//! - remote hit of a 100 B value (a local miss answered by the remote and
//!   checked; its install in a local store already in use runs in the
//!   background) ÷ a raw GET of the same object;
//! - 64 MiB upload and download against the raw client doing the same by
//!   hand: its put plus a local put, its get plus a local put (memo installs
//!   what it fetched, so the next hit is local: the download is timed until
//!   the install is done, and the call alone, which returns before it,
//!   against the raw get);
//! - a local hit with a remote configured ÷ without;
//! - 1,000 memoized calls with the remote down: added time against the
//!   timeout.
//!
//! Knobs: `MEMO_BENCH_REMOTE_SMALL` (100 B objects, default 2000),
//! `MEMO_BENCH_REMOTE_BIG` (64 MiB values, default 5), `MEMO_BENCH_REMOTE_ENGINES`
//! (default `file,redis,s3`).

#![allow(
    clippy::unwrap_used,
    reason = "a benchmark fails loudly on the first unexpected error"
)]

use std::time::{Duration, Instant};

use memo_core::{Key, Store};
use memo_tests::servers::{BUCKET, Kind, Server, free_port};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The raw client of one engine, on the same server as memo's tier.
enum Raw {
    File(std::path::PathBuf),
    Redis(redis::Connection),
    S3(tokio::runtime::Runtime, Box<dyn object_store::ObjectStore>),
}

impl Raw {
    fn get(&mut self, name: &str) -> usize {
        match self {
            Raw::File(root) => std::fs::read(root.join(name)).unwrap().len(),
            Raw::Redis(c) => {
                let v: Vec<u8> = redis::cmd("GET").arg(name).query(c).unwrap();
                v.len()
            }
            Raw::S3(rt, s) => {
                let path = object_store::path::Path::from(format!("bench/{name}"));
                rt.block_on(async {
                    use object_store::ObjectStoreExt;
                    s.get(&path).await.unwrap().bytes().await.unwrap().len()
                })
            }
        }
    }

    fn put(&mut self, name: &str, value: &[u8]) {
        match self {
            Raw::File(root) => {
                let tmp = root.join("raw.tmp");
                std::fs::create_dir_all(root.join(name).parent().unwrap()).unwrap();
                std::fs::write(&tmp, value).unwrap();
                std::fs::rename(tmp, root.join(name)).unwrap();
            }
            Raw::Redis(c) => redis::cmd("SET").arg(name).arg(value).exec(c).unwrap(),
            Raw::S3(rt, s) => {
                let path = object_store::path::Path::from(format!("bench/{name}"));
                let payload = object_store::PutPayload::from(value.to_vec());
                rt.block_on(async {
                    use object_store::ObjectStoreExt;
                    s.put(&path, payload).await.unwrap();
                });
            }
        }
    }
}

struct Engine {
    name: &'static str,
    url: String,
    raw: Raw,
    _server: Option<Server>,
    _dir: Option<tempfile::TempDir>,
}

fn engine(name: &str) -> Option<Engine> {
    match name {
        "file" => {
            let d = tempfile::tempdir().unwrap();
            Some(Engine {
                name: "file://",
                url: format!("file://{}", d.path().display()),
                raw: Raw::File(d.path().to_path_buf()),
                _server: None,
                _dir: Some(d),
            })
        }
        "redis" => {
            let s = Server::start(Kind::Redis)?;
            let url = s.url("");
            let c = redis::Client::open(url.as_str())
                .unwrap()
                .get_connection()
                .unwrap();
            Some(Engine {
                name: "redis://",
                url,
                raw: Raw::Redis(c),
                _server: Some(s),
                _dir: None,
            })
        }
        // Run in a child that has the emulator's `AWS_*` (see `main`).
        "s3" if std::env::var_os("MEMO_BENCH_S3_CHILD").is_some() => {
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(BUCKET)
                .with_allow_http(true)
                .build()
                .unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            Some(Engine {
                name: "s3://",
                url: format!("s3://{BUCKET}/bench"),
                raw: Raw::S3(rt, Box::new(store)),
                _server: None,
                _dir: None,
            })
        }
        _ => None,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let engines =
        std::env::var("MEMO_BENCH_REMOTE_ENGINES").unwrap_or_else(|_| "file,redis,s3".into());
    let child = std::env::var_os("MEMO_BENCH_S3_CHILD").is_some();
    let mut rows = Vec::new();
    for name in engines.split(',') {
        if name == "s3" && !child {
            rows.extend(s3_in_child());
            continue;
        }
        let Some(mut e) = engine(name) else {
            eprintln!("*** {name}: server missing, skipped ***");
            continue;
        };
        rows.push(bench_engine(&mut e));
    }
    if child {
        for r in &rows {
            println!("ROW {r}");
        }
        return;
    }
    println!(
        "\n| engine | remote hit 100 B | raw GET | ratio | 64 MiB put (local + upload) | local put + raw put | throughput ratio | 64 MiB get from the remote until installed (fetch, check, install) | raw get + local put | throughput ratio | the same get, the call alone (fetch, check; install in the background) | raw get | throughput ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!("{r}");
    }
    local_hit_with_remote();
    remote_down();
}

/// The S3 rows, from this bench run again with the emulator's `AWS_*`
/// variables: memo reads them from the environment, and a process may not
/// set its own environment safely once threads run.
fn s3_in_child() -> Option<String> {
    let server = Server::start(Kind::Moto)?;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .envs(server.env())
        .env("MEMO_BENCH_S3_CHILD", "1")
        .env("MEMO_BENCH_REMOTE_ENGINES", "s3")
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "the S3 bench failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("ROW ").map(str::to_string))
}

fn mbps(len: usize, d: Duration) -> f64 {
    len as f64 / d.as_secs_f64() / 1e6
}

/// Medians of a remote hit of a 100 B value and of the raw client's GET
/// of the same object, over `small` objects.
fn small_hits(
    e: &mut Engine,
    writer: &Store,
    reader: &Store,
    small: usize,
) -> (Duration, Duration) {
    let keys: Vec<Key> = (0..small).map(|i| Key::of(&("bench-small", i))).collect();
    for k in &keys {
        writer.put_bytes(k, &[7u8; 100]).unwrap();
    }
    // Alternating blocks, so drift hits both sides alike.
    let (mut memo, mut raw) = (Vec::new(), Vec::new());
    for block in keys.chunks(100) {
        for k in block {
            let t = Instant::now();
            assert!(e.raw.get(&format!("memo/v1/{k}")) > 100);
            raw.push(t.elapsed());
        }
        for k in block {
            let t = Instant::now();
            assert_eq!(reader.get_bytes(k).unwrap().unwrap().len(), 100);
            memo.push(t.elapsed());
        }
        // The block's installs, which ran beside its calls, are finished
        // before the raw client's block: they slow memo's side only.
        let _ = reader.len();
    }
    (median(memo), median(raw))
}

fn bench_engine(e: &mut Engine) -> String {
    let small = env("MEMO_BENCH_REMOTE_SMALL", 2000);
    let big = env("MEMO_BENCH_REMOTE_BIG", 5);
    let (dir_w, dir_r, plain) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let writer = Store::builder(dir_w.path()).remote(&e.url).open().unwrap();
    let reader = Store::builder(dir_r.path()).remote(&e.url).open().unwrap();
    let local = Store::open(plain.path()).unwrap();
    // A store in use, not a new one: its first segment made and its first
    // growths behind it, as on any machine that has run for a while.
    for i in 0..20_000_u64 {
        reader
            .put_bytes(&Key::of(&("warm", i)), &[7u8; 100])
            .unwrap();
    }
    let (hit, get) = small_hits(e, &writer, &reader, small);
    // 64 MiB: the memo put is the local put plus the upload; the local put
    // alone is measured on a store without a remote.
    let len = 64 << 20;
    let mut big_value = vec![0u8; len];
    let (mut up, mut down, mut down_call, mut local_put, mut raw_put, mut raw_get) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for i in 0..big {
        big_value[0] = i as u8;
        big_value[len - 1] = (i >> 8) as u8;
        let k = Key::of(&("bench-big", i, e.name));
        let t = Instant::now();
        local.put_bytes(&k, &big_value).unwrap();
        local_put.push(t.elapsed());
        let t = Instant::now();
        writer.put_bytes(&k, &big_value).unwrap();
        up.push(t.elapsed());
        let t = Instant::now();
        e.raw.put(&format!("raw/{i}"), &big_value);
        raw_put.push(t.elapsed());
        // The call returns once the value is fetched and checked; its
        // install runs in the background, and `len` waits for it.
        let t = Instant::now();
        assert_eq!(reader.get_bytes(&k).unwrap().unwrap().len(), len);
        down_call.push(t.elapsed());
        let _ = reader.len();
        down.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(e.raw.get(&format!("raw/{i}")), len);
        raw_get.push(t.elapsed());
    }
    // The baselines do by hand what memo does: the raw client's put plus
    // a local put (upload), the raw client's get plus a local put (download:
    // memo installs what it fetched, so the next hit is local).
    let up_base = median(
        local_put
            .iter()
            .zip(&raw_put)
            .map(|(l, r)| *l + *r)
            .collect(),
    );
    let down_base = median(
        local_put
            .iter()
            .zip(&raw_get)
            .map(|(l, r)| *l + *r)
            .collect(),
    );
    let (up, down, down_call, raw_put, raw_get) = (
        median(up),
        median(down),
        median(down_call),
        median(raw_put),
        median(raw_get),
    );
    let s = reader.stats();
    eprintln!(
        "{}: reader remote_hits={} remote_errors={}; raw put {:.0} MB/s, raw get {:.0} MB/s",
        e.name,
        s.remote_hits,
        s.remote_errors,
        mbps(len, raw_put),
        mbps(len, raw_get)
    );
    format!(
        "| {} | {:.1} µs | {:.1} µs | {:.2}× | {:.0} MB/s | {:.0} MB/s | {:.2} | {:.0} MB/s | {:.0} MB/s | {:.2} | {:.0} MB/s | {:.0} MB/s | {:.2} |",
        e.name,
        hit.as_secs_f64() * 1e6,
        get.as_secs_f64() * 1e6,
        hit.as_secs_f64() / get.as_secs_f64(),
        mbps(len, up),
        mbps(len, up_base),
        up_base.as_secs_f64() / up.as_secs_f64(),
        mbps(len, down),
        mbps(len, down_base),
        down_base.as_secs_f64() / down.as_secs_f64(),
        mbps(len, down_call),
        mbps(len, raw_get),
        raw_get.as_secs_f64() / down_call.as_secs_f64(),
    )
}

/// A local hit, with a remote configured and without, alternating.
fn local_hit_with_remote() {
    let (a, b, shared) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let with = Store::builder(a.path())
        .remote(&format!("file://{}", shared.path().display()))
        .open()
        .unwrap();
    let without = Store::open(b.path()).unwrap();
    let keys: Vec<Key> = (0..10_000_u64).map(|i| Key::of(&i)).collect();
    for k in &keys {
        with.put_bytes(k, &[1u8; 100]).unwrap();
        without.put_bytes(k, &[1u8; 100]).unwrap();
    }
    let time = |s: &Store| {
        let t = Instant::now();
        for k in &keys {
            std::hint::black_box(s.get_bytes(k).unwrap());
        }
        t.elapsed() / keys.len() as u32
    };
    let (mut w, mut wo) = (Vec::new(), Vec::new());
    for _ in 0..21 {
        w.push(time(&with));
        wo.push(time(&without));
    }
    let (w, wo) = (median(w), median(wo));
    println!(
        "\nlocal hit of 100 B: with a remote {:.0} ns, without {:.0} ns: {:.3}×",
        w.as_secs_f64() * 1e9,
        wo.as_secs_f64() * 1e9,
        w.as_secs_f64() / wo.as_secs_f64()
    );
}

/// 1,000 memoized calls with the remote down (nothing listening, and a
/// server that accepts and never answers), against no remote.
fn remote_down() {
    let timeout = Duration::from_millis(500);
    let calls = |url: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = Store::builder(dir.path());
        if let Some(u) = url {
            builder = builder.remote(u).remote_timeout(timeout);
        }
        let store = builder.open().unwrap();
        let started = Instant::now();
        for i in 0..1000_u64 {
            let v: u64 = store.get_or_compute(&Key::of(&i), || i * 2).unwrap();
            assert_eq!(v, i * 2);
        }
        started.elapsed()
    };
    let base = calls(None);
    let refused = calls(Some(&format!("redis://127.0.0.1:{}", free_port())));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in listener.incoming().map_while(Result::ok).take(8) {
            conns.push(c);
        }
        std::thread::sleep(Duration::from_secs(5));
    });
    let hanging = calls(Some(&format!("redis://127.0.0.1:{port}")));
    drop(held);
    println!(
        "1000 memoized calls (timeout {timeout:?}): no remote {:.0} ms; remote refusing {:.0} ms (+{:.2} timeouts); remote hanging {:.0} ms (+{:.2} timeouts)",
        base.as_secs_f64() * 1e3,
        refused.as_secs_f64() * 1e3,
        refused.saturating_sub(base).as_secs_f64() / timeout.as_secs_f64(),
        hanging.as_secs_f64() * 1e3,
        hanging.saturating_sub(base).as_secs_f64() / timeout.as_secs_f64(),
    );
}
