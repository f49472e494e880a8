//! The shared tier behind a local store: Redis, S3-compatible storage or a
//! directory on a shared filesystem. It is a cache of the cache (docs/design.md,
//! invariant 7): never required, never trusted, never on the hit path.
//!
//! - [`Backend`] is what an engine implements: get an object, create one
//!   unless it exists, and take, renew and drop a lease. One file each:
//!   `file.rs`, `redis.rs` (feature `redis`), `s3.rs` (feature `s3`).
//! - [`Remote`] wraps a backend with what every engine needs: the object
//!   format (`object.rs`), checks before anything is used, timeouts and a
//!   back-off after a failure, reports once per cause, and counters.

mod file;
pub(crate) mod object;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "s3")]
mod s3;

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Key;
use crate::error::{Error, Result};
use object::MacKey;

/// Whether this process writes to the remote tier.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let shared = tempfile::tempdir().unwrap();
/// use memo_core::{RemoteMode, Store};
///
/// // A laptop that reads what CI computed and writes nothing back.
/// let url = format!("file://{}", shared.path().display());
/// let store = Store::builder(dir.path())
///     .remote(&url)
///     .remote_mode(RemoteMode::ReadOnly)
///     .open()?;
/// # Ok::<(), memo_core::Error>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RemoteMode {
    /// Local misses are looked up remotely, computed values written through,
    /// and computations announced with a lease (single flight across
    /// machines).
    #[default]
    ReadWrite,
    /// Local misses are looked up remotely; nothing is ever written there.
    ReadOnly,
}

impl std::str::FromStr for RemoteMode {
    type Err = String;

    /// `read-write` or `read-only` (the values of `MEMO_REMOTE_MODE`).
    fn from_str(s: &str) -> std::result::Result<RemoteMode, String> {
        match s.trim() {
            "read-write" | "rw" => Ok(RemoteMode::ReadWrite),
            "read-only" | "ro" => Ok(RemoteMode::ReadOnly),
            other => Err(format!(
                "unknown remote mode {other:?}: expected read-write or read-only"
            )),
        }
    }
}

/// How a remote is configured: URL and mode, secret, and its time limits.
#[derive(Clone, Debug)]
pub(crate) struct RemoteConfig {
    pub url: String,
    pub mode: RemoteMode,
    pub secret: Option<MacKey>,
    /// Longest any one remote operation may take.
    pub timeout: Duration,
    /// How long a failed remote is left alone before it is tried again.
    pub backoff: Duration,
    /// How long a lease lasts without renewal: the longest a dead machine
    /// holds up the others.
    pub lease: Duration,
    /// The largest value the local store can take (its `max_bytes`, if
    /// set): a larger object is refused before it is read.
    pub max_value: u64,
}

impl Default for RemoteConfig {
    /// No remote (an empty URL) with the default limits.
    fn default() -> RemoteConfig {
        RemoteConfig::new("")
    }
}

impl RemoteConfig {
    pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);
    pub(crate) const BACKOFF: Duration = Duration::from_secs(30);
    pub(crate) const LEASE: Duration = Duration::from_secs(30);

    pub(crate) fn new(url: &str) -> RemoteConfig {
        RemoteConfig {
            url: url.to_string(),
            mode: RemoteMode::ReadWrite,
            secret: None,
            timeout: Self::TIMEOUT,
            backoff: Self::BACKOFF,
            lease: Self::LEASE,
            max_value: crate::format::VALUE_MAX,
        }
    }
}

/// What a lease request found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LeaseState {
    /// This holder has it now.
    Acquired,
    /// Another holder has it and it has not expired.
    Held,
}

/// One remote engine. Every call returns within the configured timeout,
/// or fails; none may panic on anything the server sends.
pub(crate) trait Backend: Send + Sync {
    /// The whole object `name`, or `None` if there is none. An object
    /// larger than `max` bytes is an error, found before it is read.
    fn get(&self, name: &str, max: u64) -> io::Result<Option<Vec<u8>>>;
    /// Creates `name` holding `header` then `value`, unless it exists
    /// (then `false`): objects are immutable, so racing writers agree.
    fn create(&self, name: &str, header: &[u8], value: &[u8]) -> io::Result<bool>;
    /// As `create`, for a value the local store holds: an engine that
    /// needs the value owned keeps the mapping alive instead of copying it.
    fn create_bytes(&self, name: &str, header: &[u8], value: &crate::Bytes) -> io::Result<bool> {
        self.create(name, header, value)
    }
    /// Takes the lease `name` for `holder` for `ttl`, if nobody holds it
    /// or its holder let it expire.
    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> io::Result<LeaseState>;
    /// Extends `holder`'s lease by `ttl`; `false` if it is no longer theirs.
    fn renew(&self, name: &str, holder: &str, ttl: Duration) -> io::Result<bool>;
    /// Drops `holder`'s lease, if it still is theirs.
    fn release(&self, name: &str, holder: &str) -> io::Result<()>;
    /// The largest value this engine can store, if it has a limit.
    fn max_value(&self) -> Option<u64> {
        None
    }
    /// The names of every object under `prefix` (`memo push` and `pull`);
    /// may take longer than one call's timeout on a large remote.
    fn list(&self, prefix: &str) -> io::Result<Vec<String>>;
}

/// Per-process counters of the remote tier.
#[derive(Default, Debug)]
pub(crate) struct RemoteCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub errors: AtomicU64,
    pub uploads: AtomicU64,
}

/// A configured remote tier.
pub(crate) struct Remote {
    cfg: RemoteConfig,
    backend: Box<dyn Backend>,
    /// Until when the remote is left alone after a failure.
    down_until: Mutex<Option<Instant>>,
    /// Causes already reported through `tracing`.
    reported: Mutex<HashSet<String>>,
    pub(crate) counters: RemoteCounters,
}

/// The largest value accepted from a remote: what the local store can hold.
const VALUE_MAX: u64 = crate::format::VALUE_MAX;

impl Remote {
    /// Whether its objects carry a MAC under a secret this process knows.
    pub(crate) fn authenticated(&self) -> bool {
        self.cfg.secret.is_some()
    }

    /// Parses the URL and sets up its engine; nothing is sent yet, so an
    /// unreachable remote is not an error here.
    pub(crate) fn open(cfg: RemoteConfig) -> Result<Remote> {
        let bad = |message: String| Error::Remote {
            url: redact(&cfg.url),
            message,
        };
        let (scheme, rest) = cfg
            .url
            .split_once("://")
            .ok_or_else(|| bad("not a URL: expected redis://, s3:// or file://".into()))?;
        let backend: Box<dyn Backend> = match scheme {
            "file" => Box::new(file::FileBackend::open(rest, cfg.timeout).map_err(bad)?),
            // The Redis client is built without a TLS stack (it would add
            // rustls or OpenSSL to every build with the feature).
            "rediss" => {
                return Err(bad(
                    "rediss:// (Redis over TLS) is not supported: this build of memo has no TLS \
                     client; use redis:// on a trusted network, or through a TLS tunnel"
                        .into(),
                ));
            }
            #[cfg(feature = "redis")]
            "redis" | "valkey" => {
                Box::new(redis::RedisBackend::open(&cfg.url, cfg.timeout).map_err(bad)?)
            }
            #[cfg(feature = "s3")]
            "s3" => Box::new(s3::S3Backend::open(rest, cfg.timeout).map_err(bad)?),
            #[cfg(not(feature = "redis"))]
            "redis" | "valkey" => {
                return Err(bad(
                    "this build of memo-core lacks the `redis` feature".into()
                ));
            }
            #[cfg(not(feature = "s3"))]
            "s3" => return Err(bad("this build of memo-core lacks the `s3` feature".into())),
            other => {
                return Err(bad(format!(
                    "unknown scheme {other:?}: expected redis://, s3:// or file://"
                )));
            }
        };
        Ok(Remote {
            cfg,
            backend,
            down_until: Mutex::new(None),
            reported: Mutex::new(HashSet::new()),
            counters: RemoteCounters::default(),
        })
    }

    pub(crate) fn writes(&self) -> bool {
        self.cfg.mode == RemoteMode::ReadWrite
    }

    /// Runs one remote operation unless the remote is backing off; a
    /// failure is counted, reported once per cause, and starts a back-off.
    fn call<T>(&self, op: &str, f: impl FnOnce(&dyn Backend) -> io::Result<T>) -> Option<T> {
        {
            let mut down = self
                .down_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match *down {
                Some(t) if Instant::now() < t => return None,
                Some(_) => {
                    *down = None;
                    tracing::info!(url = %redact(&self.cfg.url), "memo: trying the remote again");
                }
                None => {}
            }
        }
        match f(self.backend.as_ref()) {
            Ok(v) => Some(v),
            // The remote answered, with an object no entry can be (larger
            // than any): a miss, not a reason to leave the remote alone, or
            // one planted object would switch the tier off for everyone.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                self.report(
                    &format!("{op}: refused"),
                    &format!("memo: remote {op}: {e}; read as a miss"),
                );
                None
            }
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                *self
                    .down_until
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) =
                    Some(Instant::now() + self.cfg.backoff);
                self.report(
                    &format!("{op}: {:?}", e.kind()),
                    &format!(
                        "memo: remote {op} failed: {e}; leaving the remote alone for {:?}",
                        self.cfg.backoff
                    ),
                );
                None
            }
        }
    }

    /// Says `message` through `tracing` the first time `cause` happens.
    fn report(&self, cause: &str, message: &str) {
        let first = self
            .reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cause.to_string());
        if first {
            let url = redact(&self.cfg.url);
            tracing::warn!(url = %url, "{message}");
            // Most programs install no `tracing` subscriber: without this
            // line a remote that is configured but unusable (refused, timed
            // out, a TLS URL without TLS support) would only show as a
            // count in `memo stats`.
            crate::report::on_stderr(&format!("{message} [{url}] (MEMO_QUIET=1 hides this line)"));
        }
    }

    /// `key`'s entry on the remote, checked: its codec and cost, and the
    /// whole object (the value follows the header: not moved, as it may be
    /// gigabytes).
    /// Damaged, foreign, unsigned or oversized objects are misses, counted
    /// as errors (the remote answered, so no back-off).
    pub(crate) fn fetch(&self, key: &Key) -> Option<(object::Checked, Vec<u8>)> {
        let max = self.cfg.max_value.min(VALUE_MAX) + object::HEADER_LEN as u64;
        let got = self.call("get", |b| b.get(&object::name(key), max))?;
        let Some(obj) = got else {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        match object::check(key, &obj, self.cfg.secret.as_ref()) {
            Ok(c) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Some((c, obj))
            }
            Err(why) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                self.report(
                    &format!("refused: {why}"),
                    &format!(
                        "memo: remote object {} refused ({why}); computing instead",
                        object::name(key)
                    ),
                );
                None
            }
        }
    }

    /// Writes `key`'s entry through to the remote (read-write mode only);
    /// whether the remote answered.
    pub(crate) fn upload(&self, key: &Key, codec: u8, cost_us: u64, value: &crate::Bytes) -> bool {
        self.writes() && self.create(key, codec, cost_us, value).is_some()
    }

    /// The remote's URL, without credentials.
    pub(crate) fn url(&self) -> String {
        redact(&self.cfg.url)
    }

    /// The keys of every entry on the remote (`memo push` and `pull`).
    pub(crate) fn keys(&self) -> Result<Vec<Key>> {
        let prefix = object::prefix();
        let names = self.backend.list(&prefix).map_err(|e| Error::Remote {
            url: self.url(),
            message: format!("cannot list {prefix}: {e}"),
        })?;
        // Leases and anything not named by a key are not entries.
        Ok(names
            .iter()
            .filter_map(|n| n.strip_prefix(&prefix)?.parse().ok())
            .collect())
    }

    /// Creates `key`'s object unless it exists: `Some(true)` if this call
    /// made it, `Some(false)` if it was there, `None` if it failed (counted
    /// and reported) or the engine cannot hold a value this large.
    pub(crate) fn create(
        &self,
        key: &Key,
        codec: u8,
        cost_us: u64,
        value: &crate::Bytes,
    ) -> Option<bool> {
        if let Some(max) = self.backend.max_value()
            && value.len() as u64 > max
        {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            self.report(
                "too large",
                &format!(
                    "memo: a value of {} bytes is not uploaded: this engine stores at most {max} bytes per object",
                    value.len()
                ),
            );
            return None;
        }
        let header = object::header(key, codec, cost_us, value, self.cfg.secret.as_ref());
        let made = self.call("put", |b| {
            b.create_bytes(&object::name(key), &header, value)
        })?;
        // Counted as the write-through counted it before `create` told
        // "made" from "was there": one answered put, one upload.
        self.counters.uploads.fetch_add(1, Ordering::Relaxed);
        Some(made)
    }

    /// Takes `key`'s compute lease, waiting while another machine holds it.
    /// Returns what the wait ended with: the lease (renewed until dropped),
    /// the entry another machine stored meanwhile, or neither (the remote
    /// failed or this process does not write: compute without a lease).
    /// Without `wait`, a lease another machine holds is `Busy` at once.
    pub(crate) fn lease(self: &Arc<Self>, key: &Key, wait: bool) -> Waited {
        if !self.writes() {
            return Waited::Neither;
        }
        let name = object::lease_name(key);
        let holder = holder_id();
        let mut pause = Duration::from_millis(10);
        loop {
            match self.call("lease", |b| b.lease(&name, &holder, self.cfg.lease)) {
                Some(LeaseState::Acquired) => {
                    let lease = Lease::start(self.clone(), name, holder);
                    // The holder before may have stored the value and let
                    // go between the caller's fetch and this lease: look
                    // once more, or it would be computed twice.
                    if let Some(found) = self.fetch_quiet(key) {
                        drop(lease);
                        return Waited::Found(found);
                    }
                    return Waited::Lease(lease);
                }
                Some(LeaseState::Held) if !wait => return Waited::Busy,
                Some(LeaseState::Held) => {}
                None => return Waited::Neither,
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(250));
            if let Some(found) = self.fetch_quiet(key) {
                return Waited::Found(found);
            }
        }
    }

    /// As `fetch`, but a not-found while waiting is not a miss.
    fn fetch_quiet(&self, key: &Key) -> Option<(object::Checked, Vec<u8>)> {
        let misses = self.counters.misses.load(Ordering::Relaxed);
        let found = self.fetch(key);
        if found.is_none() {
            // Undo the count of a plain not-found: the wait asks repeatedly.
            let _ = self.counters.misses.compare_exchange(
                misses + 1,
                misses,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        found
    }
}

/// What waiting for a compute lease ended with.
pub(crate) enum Waited {
    Lease(Lease),
    Found((object::Checked, Vec<u8>)),
    Neither,
    /// Another machine holds the lease, and the caller would not wait.
    Busy,
}

/// A held compute lease: a thread renews it until it is dropped, then it
/// is released.
pub(crate) struct Lease {
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<JoinHandle<()>>,
}

impl Lease {
    fn start(remote: Arc<Remote>, name: String, holder: String) -> Lease {
        let (tx, rx) = mpsc::channel::<()>();
        let every = remote.cfg.lease / 3;
        let renewer = std::thread::Builder::new()
            .name("memo-lease".into())
            .spawn(move || {
                // Until the lease is dropped (the computation is over).
                while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                    let ttl = remote.cfg.lease;
                    if remote.call("renew", |b| b.renew(&name, &holder, ttl)) == Some(false) {
                        remote.report(
                            "lease lost",
                            "memo: a compute lease expired before it was renewed; another machine may compute the same value",
                        );
                    }
                }
                let _ = remote.call("release", |b| b.release(&name, &holder));
            });
        match renewer {
            Ok(h) => Lease {
                stop: Some(tx),
                renewer: Some(h),
            },
            // No thread: the lease simply expires on its own.
            Err(_) => Lease {
                stop: None,
                renewer: None,
            },
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.renewer.take() {
            let _ = h.join();
        }
    }
}

/// A holder id unique to this process and call: host, process, time and a
/// counter, hashed.
fn holder_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!(
        "{}/{}/{nanos}/{}",
        host.trim(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let h = blake3::hash(seed.as_bytes()).to_hex();
    format!("{}-{}", std::process::id(), &h[..24])
}

/// The URL without a password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Milliseconds since the Unix epoch (lease deadlines in files and S3).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_repeated() {
        assert_eq!(
            redact("redis://user:pw@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact("s3://bucket/prefix"), "s3://bucket/prefix");
    }
}
