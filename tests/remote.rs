//! The remote tier against real engines: a shared directory (`file://`), a
//! real `redis-server` and an S3 emulator (`moto_server`), each started on
//! a free loopback port by the test. Every "machine" is a separate process
//! (`tests/machine.rs`) with its own local store.
//!
//! Per engine: A computes and B loads without computing, then hits
//! locally; A and B ask for the same slow computation at once and it runs
//! once; a lease holder killed with `kill -9` is replaced by a waiter within
//! the lease; objects overwritten with garbage, truncated, or written
//! without the secret are recomputed, never returned; objects larger than
//! the local store can take are refused unread, and the remote stays on; read-only writes
//! nothing; a large value round trip (`MEMO_REMOTE_BIG_MIB`, default 256);
//! remote hits installed in the background (changes right after them
//! stand, a `static` store installs at exit, a machine killed mid-install
//! leaves a clean store); a `#[memoize]` function inside a tokio task. Redis and S3 also: the
//! server down at start, killed mid-run and restarted, and a server that
//! accepts connections and never answers; `file://` on a mount that hangs.
//!
//! Without `redis-server` or `moto_server`, those tests skip loudly outside
//! CI and fail with `CI=true`.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on the first unexpected error"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use memo_core::Key;
use memo_tests::servers::{Kind, Server, free_port, s3_env};
use memo_tests::tempdir;

/// Where a test's remote lives: a shared directory or a server.
struct Remote {
    server: Option<Server>,
    dir: Option<tempfile::TempDir>,
    /// S3 prefix: each test its own.
    prefix: String,
}

impl Remote {
    fn new(kind: Option<Kind>, prefix: &str) -> Option<Remote> {
        Some(match kind {
            None => Remote {
                server: None,
                dir: Some(tempdir()),
                prefix: String::new(),
            },
            Some(k) => Remote {
                server: Some(Server::start(k)?),
                dir: None,
                prefix: prefix.to_string(),
            },
        })
    }

    fn url(&self) -> String {
        match (&self.server, &self.dir) {
            (Some(s), _) => s.url(&self.prefix),
            (None, Some(d)) => format!("file://{}", d.path().display()),
            (None, None) => unreachable!(),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        self.server.as_ref().map_or_else(Vec::new, Server::env)
    }

    fn read(&self, name: &str) -> Option<Vec<u8>> {
        match (&self.server, &self.dir) {
            (Some(s), _) => s.read_object(&self.prefix, name),
            (None, Some(d)) => std::fs::read(d.path().join(name)).ok(),
            (None, None) => unreachable!(),
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        match (&self.server, &self.dir) {
            (Some(s), _) => s.write_object(&self.prefix, name, bytes),
            (None, Some(d)) => {
                // Replaced as a hostile writer would: a new file, renamed in.
                let path = d.path().join(name);
                let tmp = path.with_extension("evil");
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&tmp, bytes).unwrap();
                std::fs::rename(tmp, path).unwrap();
            }
            (None, None) => unreachable!(),
        }
    }
}

/// What one machine run printed.
#[derive(Debug, Default)]
struct Run {
    computed: Vec<u64>,
    loaded: Vec<u64>,
    stats: String,
}

impl Run {
    fn stat(&self, name: &str) -> u64 {
        self.stats
            .split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.stats))
    }
}

fn machine(remote: &Remote, dir: &Path, args: &[&str], opts: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_machine"));
    c.arg("compute")
        .arg(dir)
        .arg(remote.url())
        .args(args)
        .args(opts)
        .envs(remote.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    c
}

fn parse(out: &str) -> Run {
    let mut r = Run::default();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [i, "computed"] => r.computed.push(i.parse().unwrap()),
            [i, "loaded"] => r.loaded.push(i.parse().unwrap()),
            ["stats", ..] => r.stats = line.to_string(),
            _ => {}
        }
    }
    r
}

/// Runs a machine to the end; what it printed.
fn run(remote: &Remote, dir: &Path, args: &[&str], opts: &[&str]) -> Run {
    let out = machine(remote, dir, args, opts).output().unwrap();
    assert!(out.status.success(), "machine failed: {:?}", out.status);
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// A machine started in the background.
fn spawn(remote: &Remote, dir: &Path, args: &[&str], opts: &[&str]) -> Child {
    machine(remote, dir, args, opts).spawn().unwrap()
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "machine failed: {:?}", out.status);
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn object_name(i: u64, len: usize) -> String {
    format!("memo/v1/{}", Key::of(&("remote-test", i, len)))
}

// --- Scenarios, each run per engine -------------------------------------

fn shares(kind: Option<Kind>) {
    let Some(remote) = Remote::new(kind, "shares") else {
        return;
    };
    let (a, b) = (tempdir(), tempdir());
    let ra = run(&remote, a.path(), &["0", "20", "0", "1000"], &[]);
    assert_eq!(ra.computed.len(), 20, "{ra:?}");
    assert_eq!(ra.stat("uploads"), 20);
    assert!(remote.read(&object_name(3, 1000)).is_some());
    let rb = run(&remote, b.path(), &["0", "20", "0", "1000"], &[]);
    assert!(rb.computed.is_empty(), "B computed {:?}", rb.computed);
    assert_eq!(rb.stat("remote_hits"), 20);
    assert_eq!(rb.stat("uploads"), 0);
    // B's second run: every hit local, the remote not asked.
    let rb2 = run(&remote, b.path(), &["0", "20", "0", "1000"], &[]);
    assert_eq!(rb2.loaded.len(), 20);
    assert_eq!(rb2.stat("remote_hits") + rb2.stat("remote_misses"), 0);
    assert!(rb2.stats.contains("remote_errors=0"), "{}", rb2.stats);
    // Store-wide, every process's (what `memo stats` shows).
    let (sa, sb) = (
        memo_core::Store::open(a.path()).unwrap().stats(),
        memo_core::Store::open(b.path()).unwrap().stats(),
    );
    assert_eq!((sa.store_uploads, sa.store_remote_misses), (20, 20));
    assert_eq!((sb.store_remote_hits, sb.store_uploads), (20, 0));
}

fn computes_once_across_machines(kind: Option<Kind>) {
    let Some(remote) = Remote::new(kind, "once") else {
        return;
    };
    let (a, b) = (tempdir(), tempdir());
    let args = ["100", "1", "1000", "5000"];
    let ca = spawn(&remote, a.path(), &args, &[]);
    let cb = spawn(&remote, b.path(), &args, &[]);
    let (ra, rb) = (finish(ca), finish(cb));
    assert_eq!(
        ra.computed.len() + rb.computed.len(),
        1,
        "computed twice: {ra:?} {rb:?}"
    );
    assert_eq!(ra.loaded.len() + rb.loaded.len(), 1);
}

fn dead_lease_holder_is_replaced(kind: Option<Kind>) {
    let Some(remote) = Remote::new(kind, "lease") else {
        return;
    };
    let (a, b) = (tempdir(), tempdir());
    let lease = ["lease_ms=1500"];
    let mut ca = spawn(&remote, a.path(), &["200", "1", "600000", "100"], &lease);
    // Wait until A has the lease and computes, then kill it.
    let mut lines = BufReader::new(ca.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert_eq!(first, "computing 200");
    ca.kill().unwrap();
    ca.wait().unwrap();
    let t = Instant::now();
    let rb = run(&remote, b.path(), &["200", "1", "0", "100"], &lease);
    let took = t.elapsed();
    assert_eq!(rb.computed, vec![200], "{rb:?}");
    assert!(
        took < Duration::from_millis(1500 + 3000),
        "the waiter took {took:?} to replace a dead holder (lease 1.5 s)"
    );
}

fn damage_is_a_miss(kind: Option<Kind>) {
    let Some(remote) = Remote::new(kind, "damage") else {
        return;
    };
    let a = tempdir();
    run(&remote, a.path(), &["0", "4", "0", "3000"], &[]);
    let good = remote.read(&object_name(0, 3000)).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    remote.write(&object_name(0, 3000), &flipped);
    remote.write(&object_name(1, 3000), &good[..good.len() - 7]);
    remote.write(&object_name(2, 3000), b"garbage, not an object");
    // 3 gets 0's valid object: written for another key.
    remote.write(&object_name(3, 3000), &good);
    let b = tempdir();
    let rb = run(&remote, b.path(), &["0", "4", "0", "3000"], &[]);
    // Every value came out right (the machine checks), damaged ones computed.
    assert_eq!(rb.computed, vec![0, 1, 2, 3], "{rb:?}");
    assert!(rb.stat("remote_errors") >= 4, "{}", rb.stats);
}

/// An object larger than the local store can take is refused before it
/// is read, as a miss: it does not switch the remote off for the calls
/// after it.
fn oversized_is_a_miss(kind: Option<Kind>) {
    let Some(remote) = Remote::new(kind, "oversized") else {
        return;
    };
    let a = tempdir();
    run(&remote, a.path(), &["0", "4", "0", "100"], &[]);
    let mut big = remote.read(&object_name(0, 100)).unwrap();
    big.resize(4 << 20, 0);
    remote.write(&object_name(0, 100), &big);
    let b = tempdir();
    let limit = ["max_bytes=2000000"];
    let rb = run(&remote, b.path(), &["0", "4", "0", "100"], &limit);
    assert_eq!(rb.computed, vec![0], "{rb:?}");
    assert_eq!(rb.loaded, vec![1, 2, 3], "{rb:?}");
    assert!(rb.stat("remote_errors") >= 1, "{}", rb.stats);
}

fn secret_rejects_unsigned(kind: Option<Kind>) {
    let Some(remote) = Remote::new(kind, "secret") else {
        return;
    };
    let (a, b, c) = (tempdir(), tempdir(), tempdir());
    // Written without the secret: refused by readers that have it.
    run(&remote, a.path(), &["0", "3", "0", "100"], &[]);
    let rb = run(
        &remote,
        b.path(),
        &["0", "3", "0", "100"],
        &["secret=s3cret"],
    );
    assert_eq!(rb.computed.len(), 3, "{rb:?}");
    // Signed by B (create-only: 0..3 stay A's), read by C with the secret.
    let rb = run(
        &remote,
        b.path(),
        &["10", "3", "0", "100"],
        &["secret=s3cret"],
    );
    assert_eq!(rb.computed.len(), 3);
    let rc = run(
        &remote,
        c.path(),
        &["10", "3", "0", "100"],
        &["secret=s3cret"],
    );
    assert_eq!(rc.loaded.len(), 3, "{rc:?}");
    let d = tempdir();
    let rd = run(
        &remote,
        d.path(),
        &["10", "3", "0", "100"],
        &["secret=guess"],
    );
    assert_eq!(rd.computed.len(), 3, "{rd:?}");
}

fn read_only_writes_nothing(kind: Option<Kind>) {
    let Some(remote) = Remote::new(kind, "ro") else {
        return;
    };
    let (a, b) = (tempdir(), tempdir());
    let ra = run(&remote, a.path(), &["0", "5", "0", "100"], &["mode=ro"]);
    assert_eq!(ra.computed.len(), 5);
    assert_eq!(ra.stat("uploads"), 0);
    assert!(remote.read(&object_name(0, 100)).is_none());
    let rb = run(&remote, b.path(), &["0", "5", "0", "100"], &[]);
    assert_eq!(rb.computed.len(), 5, "{rb:?}");
    // And it reads what others wrote.
    let c = tempdir();
    let rc = run(&remote, c.path(), &["0", "5", "0", "100"], &["mode=ro"]);
    assert_eq!(rc.loaded.len(), 5);
}

fn big_value_round_trip(kind: Option<Kind>) {
    let Some(remote) = Remote::new(kind, "big") else {
        return;
    };
    let mib: usize = std::env::var("MEMO_REMOTE_BIG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let len = (mib << 20).to_string();
    let (a, b) = (tempdir(), tempdir());
    let opts = ["timeout_ms=20000"];
    let ra = run(&remote, a.path(), &["0", "1", "0", &len], &opts);
    assert_eq!(ra.stat("uploads"), 1, "{}", ra.stats);
    let rb = run(&remote, b.path(), &["0", "1", "0", &len], &opts);
    assert_eq!(rb.loaded, vec![0], "{rb:?}");
}

/// A value stored compressed is uploaded compressed, as stored, and a
/// machine that did not ask for compression reads it (checked by the
/// machine against the value it would compute), installed compressed.
fn compressed_round_trip(kind: Option<Kind>) {
    let Some(remote) = Remote::new(kind, "compressed") else {
        return;
    };
    for len in [300_000_usize, 6 << 20] {
        let (a, b) = (tempdir(), tempdir());
        let n = len.to_string();
        let ra = run(
            &remote,
            a.path(),
            &["0", "2", "0", &n],
            &["low=1", "compress=zstd:3", "timeout_ms=20000"],
        );
        assert_eq!(ra.stat("uploads"), 2, "{}", ra.stats);
        let object = remote.read(&object_name(1, len)).expect("uploaded");
        assert!(
            object.len() < len * 6 / 10,
            "{len}-byte value uploaded as {} bytes",
            object.len()
        );
        let rb = run(
            &remote,
            b.path(),
            &["0", "2", "0", &n],
            &["low=1", "timeout_ms=20000"],
        );
        assert_eq!(rb.loaded, vec![0, 1], "{rb:?}");
        assert_eq!(rb.stat("remote_hits"), 2);
        let sb = memo_core::Store::open(b.path()).unwrap().stats();
        assert!(
            sb.raw_bytes > sb.bytes / 2 * 3,
            "installed compressed: {sb:?}"
        );
    }
}

/// A machine running `machine installs` in `mode` on `dir`.
fn installs(remote: &Remote, dir: &Path, count: u64, mode: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_machine"));
    c.arg("installs")
        .arg(dir)
        .arg(remote.url())
        .args([count.to_string(), "100".into(), mode.into()])
        .envs(remote.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    c
}

/// Remote hits are installed locally off the call path: hit again at once,
/// they are local; a put or a remove right after one stands; a `static`
/// store installs at exit; a machine killed mid-install leaves a store that
/// verifies clean, with every value right.
fn installs_in_the_background(kind: Option<Kind>) {
    let Some(remote) = Remote::new(kind, "installs") else {
        return;
    };
    // The emulator takes milliseconds an object.
    let count = if kind == Some(Kind::Moto) { 100 } else { 300 };
    let a = tempdir();
    let ra = run(
        &remote,
        a.path(),
        &["0", &count.to_string(), "0", "100"],
        &[],
    );
    assert_eq!(ra.stat("uploads"), count);
    let local_values = |dir: &Path| {
        let store = memo_core::Store::open(dir).unwrap();
        assert!(store.verify().unwrap().is_clean(), "{:?}", store.verify());
        (0..count)
            .filter(|&i| {
                let v: Option<Vec<u8>> =
                    store.get(&Key::of(&("remote-test", i, 100_usize))).unwrap();
                v.is_some_and(|v| {
                    assert_eq!(v.len(), 100, "entry {i}");
                    true
                })
            })
            .count() as u64
    };
    // Changes right after the hits stand, whatever the installs' timing.
    for _ in 0..3 {
        let b = tempdir();
        let out = installs(&remote, b.path(), count, "order")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("order ok"));
    }
    // A store never dropped: the exit hook installs what is queued.
    let b = tempdir();
    let out = installs(&remote, b.path(), count, "exit").output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("exit loaded"),
        "{out:?}"
    );
    assert_eq!(local_values(b.path()), count, "installs lost at exit");
    // Killed at a random moment of its loads and installs.
    for round in 0..3_u64 {
        let b = tempdir();
        let mut child = installs(&remote, b.path(), count, "kill").spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap());
        let stop_after = (round * 97 + 31) % count;
        for line in lines.lines() {
            if line.unwrap().split_whitespace().next() == Some(&stop_after.to_string()) {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let kept = local_values(b.path());
        assert!(kept <= count);
        // The rest come from the remote again; nothing is computed.
        let rb = run(
            &remote,
            b.path(),
            &["0", &count.to_string(), "0", "100"],
            &[],
        );
        assert!(rb.computed.is_empty(), "computed {:?}", rb.computed);
        assert_eq!(rb.stat("remote_hits"), count - kept);
        assert_eq!(local_values(b.path()), count);
    }
}

fn memoize_inside_tokio(kind: Option<Kind>) {
    let Some(remote) = Remote::new(kind, "tokio") else {
        return;
    };
    let call = |dir: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_machine"))
            .arg("tokio")
            .env("MEMO_DIR", dir)
            .env("MEMO_REMOTE", remote.url())
            .envs(remote.env())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let (a, b) = (tempdir(), tempdir());
    let out = call(a.path());
    assert!(
        out.contains("computing square 12") && out.contains("square 144"),
        "{out}"
    );
    let out = call(b.path());
    assert!(
        !out.contains("computing") && out.contains("square 144"),
        "{out}"
    );
}

/// The server down at start, killed mid-run, restarted: every value right,
/// a dead remote costs bounded time, and the remote is used again once back.
fn server_outages(kind: Kind) {
    if !Server::available(kind) {
        return;
    }
    let port = free_port();
    let down = match kind {
        Kind::Redis => format!("redis://127.0.0.1:{port}/0"),
        Kind::Moto => format!("s3://{}/outage", memo_tests::servers::BUCKET),
    };
    let env = match kind {
        Kind::Redis => Vec::new(),
        Kind::Moto => s3_env(port),
    };
    let machine = |dir: &Path, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_machine"))
            .arg("compute")
            .arg(dir)
            .arg(&down)
            .args(args)
            .args(["timeout_ms=1000", "backoff_ms=2000"])
            .envs(env.clone())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        parse(&String::from_utf8_lossy(&out.stdout))
    };
    // Down at start: 1000 calls, every value right, at most two timeouts
    // (of 1 s) added, and a second for the calls themselves.
    let first = tempdir();
    let started = Instant::now();
    let run1 = machine(first.path(), &["0", "1000", "0", "100"]);
    let took = started.elapsed();
    assert_eq!(run1.computed.len(), 1000);
    assert!(run1.stat("remote_errors") >= 1, "{}", run1.stats);
    assert!(
        took < Duration::from_secs(2 + 1 + 2),
        "1000 calls with the remote down took {took:?}"
    );
    // Up: the values go there.
    let Some(mut server) = Server::start_on(kind, port) else {
        panic!("could not start {kind:?} on port {port}");
    };
    let second = tempdir();
    let run2 = machine(second.path(), &["0", "10", "0", "100"]);
    assert_eq!(run2.stat("uploads"), 10, "{}", run2.stats);
    // Killed: local hits still work, new calls compute, time stays bounded.
    server.kill();
    let started = Instant::now();
    let run3 = machine(second.path(), &["0", "20", "0", "100"]);
    assert_eq!(
        (run3.loaded.len(), run3.computed.len()),
        (10, 10),
        "{run3:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    // Restarted (empty): used again.
    let _server = Server::start_on(kind, port).expect("restart");
    let third = tempdir();
    let run4 = machine(third.path(), &["0", "3", "0", "100"]);
    assert_eq!(run4.stat("uploads"), 3, "{}", run4.stats);
}

/// A server that accepts connections and never answers: every call still
/// returns the right value, and the whole run pays about one timeout.
fn hanging_server(kind: Kind) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepted and held open, never read or answered.
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for c in listener.incoming().map_while(Result::ok) {
            keep.lock().unwrap().push(c);
        }
    });
    let (url, env) = match kind {
        Kind::Redis => (format!("redis://127.0.0.1:{port}/0"), Vec::new()),
        Kind::Moto => (
            format!("s3://{}/hang", memo_tests::servers::BUCKET),
            s3_env(port),
        ),
    };
    calls_on_a_hanging_remote(&url, env, &format!("a hanging {kind:?}"));
    drop(held);
}

/// `file://` on a mount that hangs: every object a FIFO, whose `open`
/// blocks until a writer comes (as a call on an NFS mount that lost its
/// server blocks). 1000 calls return the right values in about one timeout.
#[test]
fn file_on_a_hanging_mount() {
    let shared = tempdir();
    let dir = shared.path().join("memo/v1");
    std::fs::create_dir_all(&dir).unwrap();
    let fifos: Vec<String> = (0..1000)
        .map(|i| dir.join(&object_name(i, 100)[8..]).display().to_string())
        .collect();
    assert!(
        Command::new("mkfifo")
            .args(&fifos)
            .status()
            .unwrap()
            .success(),
        "mkfifo"
    );
    let url = format!("file://{}", shared.path().display());
    calls_on_a_hanging_remote(&url, Vec::new(), "a hanging mount");
}

/// 1000 calls through a remote that never answers (timeout 0.5 s, back-off
/// 60 s): every value computed and right, the failure counted, and about
/// one timeout in all, not one per call.
fn calls_on_a_hanging_remote(url: &str, env: Vec<(String, String)>, what: &str) {
    let dir = tempdir();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_machine"))
        .arg("compute")
        .arg(dir.path())
        .arg(url)
        .args([
            "0",
            "1000",
            "0",
            "100",
            "timeout_ms=500",
            "backoff_ms=60000",
        ])
        .envs(env)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    let r = parse(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(r.computed.len(), 1000);
    assert!(r.stat("remote_errors") >= 1, "{}", r.stats);
    eprintln!("1000 calls with {what}: {took:?}");
    // Two timeouts of 0.5 s, and two seconds for the calls themselves (the
    // other tests run beside this one); without the back-off they would
    // take 500 s.
    assert!(
        took < Duration::from_secs(3),
        "1000 calls with {what} took {took:?}"
    );
}

macro_rules! per_engine {
    ($($name:ident),* $(,)?) => {
        mod file {
            $(#[test] fn $name() { super::$name(None) })*
        }
        mod redis {
            use memo_tests::servers::Kind;
            $(#[test] fn $name() { super::$name(Some(Kind::Redis)) })*
            #[test] fn server_outages() { super::server_outages(Kind::Redis) }
            #[test] fn hanging_server() { super::hanging_server(Kind::Redis) }
        }
        mod s3 {
            use memo_tests::servers::Kind;
            $(#[test] fn $name() { super::$name(Some(Kind::Moto)) })*
            #[test] fn server_outages() { super::server_outages(Kind::Moto) }
            #[test] fn hanging_server() { super::hanging_server(Kind::Moto) }
        }
    };
}

per_engine!(
    shares,
    computes_once_across_machines,
    dead_lease_holder_is_replaced,
    damage_is_a_miss,
    oversized_is_a_miss,
    secret_rejects_unsigned,
    read_only_writes_nothing,
    big_value_round_trip,
    compressed_round_trip,
    installs_in_the_background,
    memoize_inside_tokio,
);

/// More than the install queue holds (64 MiB): a value larger than that
/// is installed on the call path, between values that are queued. Every
/// value is right, and every one is in the local store once the store is
/// dropped.
#[test]
fn hits_beyond_a_full_install_queue_install_on_the_call_path() {
    let (shared, writer, reader) = (tempdir(), tempdir(), tempdir());
    let url = format!("file://{}", shared.path().display());
    let len = |i: u8| if i == 2 { 65 << 20 } else { 1000 };
    let value = |i: u8| vec![i; len(i)];
    let count = 5_u8;
    let up = memo_core::Store::builder(writer.path())
        .remote(&url)
        .open()
        .unwrap();
    for i in 0..count {
        up.put_bytes(&Key::of(&("full", i)), &value(i)).unwrap();
    }
    let down = memo_core::Store::builder(reader.path())
        .remote(&url)
        .open()
        .unwrap();
    for i in 0..count {
        let got = down.get_bytes(&Key::of(&("full", i))).unwrap().unwrap();
        assert!(*got == value(i)[..], "entry {i}");
    }
    assert_eq!(down.stats().remote_hits, u64::from(count));
    drop(down);
    let local = memo_core::Store::open(reader.path()).unwrap();
    assert_eq!(local.len(), u64::from(count));
    for i in 0..count {
        let got = local.get_bytes(&Key::of(&("full", i))).unwrap().unwrap();
        assert!(*got == value(i)[..], "entry {i} installed wrong");
    }
}

#[test]
fn a_bad_url_is_a_clear_error_at_open() {
    let dir = tempdir();
    for (url, says) in [
        ("nonsense", "not a URL"),
        ("ftp://host/x", "unknown scheme"),
        ("file://relative/path", "absolute path"),
        ("redis://", "Redis URL"),
    ] {
        let err = memo_core::Store::builder(dir.path())
            .remote(url)
            .open()
            .err()
            .unwrap_or_else(|| panic!("{url} opened"));
        let msg = err.to_string();
        assert!(msg.contains(url) && msg.contains(says), "{url}: {msg}");
    }
    // Unreachable is not an error at open.
    let port = free_port();
    memo_core::Store::builder(dir.path())
        .remote(&format!("redis://127.0.0.1:{port}"))
        .open()
        .unwrap();
}

/// Issue 30: a remote tier that is configured but unusable says so on
/// stderr, once, with the URL (its password hidden) and the reason; the
/// call still runs and is stored locally.
#[test]
fn a_misconfigured_remote_says_so_once() {
    let port = free_port();
    for (url, says) in [
        ("ftp://host/x", "unknown scheme"),
        ("redis://", "Redis URL"),
        (
            &*format!("redis://user:hunter2@127.0.0.1:{port}"),
            "remote get failed",
        ),
        (&*format!("rediss://127.0.0.1:{port}"), "no TLS client"),
    ] {
        let dir = tempdir();
        let out = Command::new(env!("CARGO_BIN_EXE_machine"))
            .arg("tokio")
            .env("MEMO_DIR", dir.path())
            .env("MEMO_REMOTE", url)
            .env_remove("MEMO_QUIET")
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{url}: {stderr}");
        assert!(stdout.contains("square 144"), "{url}: {stdout}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(says)).collect();
        assert_eq!(lines.len(), 1, "{url}: said once: {stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "the password is hidden: {stderr}"
        );
        let host = url.rsplit('@').next().unwrap().split('/').next().unwrap();
        assert!(
            lines[0].contains(
                host.trim_start_matches("ftp:")
                    .trim_start_matches("redis:")
                    .trim_start_matches("rediss:")
            ),
            "{url}: names the URL: {}",
            lines[0]
        );
        // The local store still works.
        assert_eq!(
            memo_core::Store::open(dir.path()).unwrap().len(),
            1,
            "{url}"
        );
    }
}
