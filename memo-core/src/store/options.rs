//! How a store is opened: [`StoreBuilder`], the limits, policy and
//! durability it carries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{Engine, Store};
use crate::Compression;
use crate::error::Result;
use crate::evict::Policy;
use crate::remote::object::MacKey;
use crate::remote::{RemoteConfig, RemoteMode};

/// What a successful `put` promises to survive.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// The entry survives the crash of any process (the data is in the
    /// operating system's page cache before `put` returns), not power loss.
    #[default]
    Flush,
    /// The entry also survives power loss: the segment holding its record is
    /// synced before `put` returns (one `fdatasync`, shared by threads that
    /// put at the same moment). The index is not synced per put: after a
    /// restart, the first process to open the store replays what the index
    /// may have lost from the segments (`docs/format.md`).
    Sync,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    pub max_bytes: Option<u64>,
    pub max_entries: Option<u64>,
    pub max_age: Option<Duration>,
    pub policy: Policy,
    pub durability: Durability,
    pub compress: Compression,
    /// The remote tier; an empty URL for none.
    pub remote: RemoteConfig,
    /// A bad `MEMO_REMOTE_*` variable, reported by `open`.
    pub env_error: Option<String>,
    /// Refuse a directory that is not yet a store instead of making one.
    pub existing: bool,
    /// Single flight by a lock file per key (`lock.rs`, `KeyLock`).
    pub lock_files: bool,
    pub read_only: bool,
}

/// Options for opening a [`Store`]; made by [`Store::builder`].
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use memo_core::{Durability, Policy, Store};
///
/// let store = Store::builder(dir.path())
///     .max_bytes(10 << 30)
///     .policy(Policy::CostAware)
///     .durability(Durability::Sync)
///     .open()?;
/// # Ok::<(), memo_core::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct StoreBuilder {
    dir: PathBuf,
    opts: Options,
}

impl StoreBuilder {
    pub(super) fn new(dir: &Path) -> StoreBuilder {
        StoreBuilder {
            dir: dir.to_path_buf(),
            opts: Options::default(),
        }
    }

    /// Opens only a directory that already is a store: a missing
    /// directory, an empty one or one without memo's `LOCK` marker is an
    /// error, and nothing is created. What tools that read a store use
    /// (the `memo` command), so a mistyped path does not leave a new,
    /// empty store behind.
    pub fn existing(mut self) -> Self {
        self.opts.existing = true;
        self
    }

    /// Single flight across processes by a lock file per key
    /// (`locks/<key>`), as memo before 2026-12 did, instead of a byte-range
    /// lock per key on one file (`locks/flight`, a create and an unlink
    /// cheaper per miss). For a store that processes of an older memo use
    /// at the same time: the two kinds of lock do not see each other, so
    /// both would compute a key they race for (never a wrong value). A file
    /// system without open-file-description locks gets lock files anyway.
    pub fn lock_files(mut self, yes: bool) -> Self {
        self.opts.lock_files = yes;
        self
    }

    /// Opens the store read-only, as happens anyway when the process cannot
    /// write to its directory (a read-only mount, a published result set,
    /// another user's cache): hits are served; puts, removals and
    /// trims fail with [`Error::ReadOnly`](crate::Error::ReadOnly); a
    /// memoized call or `get_or_compute` that misses computes its value and
    /// returns it without storing it (said once per process on stderr, see
    /// [`Store::global`](crate::Store::global)). Nothing is created,
    /// locked or changed in the directory, which must already be a store
    /// with an index; hit counters and access times are not kept.
    pub fn read_only(mut self, yes: bool) -> Self {
        self.opts.read_only = yes;
        self
    }

    /// Limit on the bytes the store takes on disk: records, blob files and
    /// the index.
    ///
    /// A put that takes the store past the limit evicts (by the
    /// [`Policy`](crate::Policy)) until live data fits in 80% of it, then compacts the
    /// oldest segments until everything fits in 90%; so after any put
    /// returns, the store is within the limit plus what one compaction
    /// could not reclaim. An entry larger than the limit is refused with
    /// [`Error::TooLarge`](crate::Error::TooLarge). Processes that open the store with different
    /// limits each enforce their own on their puts.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.opts.max_bytes = Some(bytes);
        self
    }

    /// Limit on the number of entries: a put past it evicts down to 80%.
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.opts.max_entries = Some(entries);
        self
    }

    /// Entries not used (read or written) for this long are expired: by
    /// puts, at most every eighth of `age`, and by [`Store::trim`]. Last use
    /// is known to within 1/64 of the store's age.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.opts.max_age = Some(age);
        self
    }

    /// Which entries go first when a limit is reached (default [`Policy::Lru`](crate::Policy::Lru)).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.opts.policy = policy;
        self
    }

    /// What a successful `put` survives (default [`Durability::Flush`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.opts.durability = durability;
        self
    }

    /// Compresses the values this store writes where that pays (see
    /// [`Compression`]); values holding an [`Array`](crate::Array) stay
    /// uncompressed views unless their function asks itself. Any store
    /// reads compressed values whatever it was opened with. Default:
    /// [`Compression::None`], or `MEMO_COMPRESS` for the stores that read
    /// the environment ([`limits_from_env`](Self::limits_from_env)).
    pub fn compress(mut self, compression: Compression) -> Self {
        self.opts.compress = compression;
        self
    }

    /// A shared tier behind the local store, so that other machines reuse
    /// what this one computed (`README.md`, "Sharing across machines"):
    ///
    /// - `redis://host:port[/db]`: Redis or Valkey (feature `redis`);
    /// - `s3://bucket[/prefix]`: S3-compatible storage (feature `s3`), with
    ///   endpoint, region and credentials from the `AWS_*` variables
    ///   (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, `AWS_REGION`,
    ///   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`);
    /// - `file:///path`: a directory on a shared filesystem (NFS, Lustre).
    ///
    /// A local miss asks the remote once and installs what it verified; a
    /// computed value is committed locally, then written through; while
    /// one machine computes a key, others asking for it wait for its result
    /// (a lease that expires if that machine dies). A local hit never
    /// touches the network. The remote is never required: every operation
    /// has a timeout ([`StoreBuilder::remote_timeout`]), a failed remote is
    /// left alone for a while ([`StoreBuilder::remote_backoff`]), and no
    /// remote problem fails a call.
    ///
    /// # Examples
    ///
    /// ```
    /// # let (a, b, shared) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    /// use memo_core::{Key, Store};
    ///
    /// let url = format!("file://{}", shared.path().display());
    /// let machine_a = Store::builder(a.path()).remote(&url).open()?;
    /// let machine_b = Store::builder(b.path()).remote(&url).open()?;
    /// let key = Key::of(&("simulate", 7));
    /// let v: u64 = machine_a.get_or_compute(&key, || 42)?;
    /// // B finds it on the remote: not computed again.
    /// let w: u64 = machine_b.get_or_compute(&key, || unreachable!())?;
    /// assert_eq!(v, w);
    /// # Ok::<(), memo_core::Error>(())
    /// ```
    pub fn remote(mut self, url: &str) -> Self {
        self.opts.remote.url = url.to_string();
        self
    }

    /// Whether this process writes to the remote (default
    /// [`RemoteMode::ReadWrite`]); [`RemoteMode::ReadOnly`] only reads.
    pub fn remote_mode(mut self, mode: RemoteMode) -> Self {
        self.opts.remote.mode = mode;
        self
    }

    /// Signs every object this process uploads with a keyed MAC (blake3's
    /// keyed mode over the object's header and value) and rejects, as a
    /// miss, every object without a valid one: whoever can write to the
    /// remote but lacks the secret cannot plant results.
    pub fn remote_secret(mut self, secret: &[u8]) -> Self {
        self.opts.remote.secret = Some(MacKey::new(secret));
        self
    }

    /// The longest one remote operation may take (default 5 s; transfers
    /// of large values get a second more per 16 MiB).
    pub fn remote_timeout(mut self, timeout: Duration) -> Self {
        self.opts.remote.timeout = timeout;
        self
    }

    /// How long a remote that failed is left alone before it is tried again
    /// (default 30 s): a dead remote costs one timeout per period, not one
    /// per call.
    pub fn remote_backoff(mut self, backoff: Duration) -> Self {
        self.opts.remote.backoff = backoff;
        self
    }

    /// How long a compute lease lasts unless renewed (default 30 s; the
    /// holder renews it every third of that): the longest a machine that
    /// died mid-computation holds up the others.
    pub fn remote_lease(mut self, lease: Duration) -> Self {
        self.opts.remote.lease = lease;
        self
    }

    /// Takes the remote tier from the environment, where set:
    /// `MEMO_REMOTE` (the URL), `MEMO_REMOTE_MODE` (`read-write` or
    /// `read-only`) and `MEMO_REMOTE_SECRET`. [`Store::global`] and
    /// `#[memoize(dir = ...)]` stores do this.
    pub fn remote_from_env(mut self) -> Self {
        if let Some(url) = std::env::var("MEMO_REMOTE").ok().filter(|u| !u.is_empty()) {
            self.opts.remote.url = url;
        }
        if let Ok(mode) = std::env::var("MEMO_REMOTE_MODE") {
            match mode.parse() {
                Ok(m) => self.opts.remote.mode = m,
                Err(e) => self.opts.env_error = Some(format!("MEMO_REMOTE_MODE: {e}")),
            }
        }
        if let Some(secret) = std::env::var_os("MEMO_REMOTE_SECRET").filter(|s| !s.is_empty()) {
            self.opts.remote.secret = Some(MacKey::new(secret.as_encoded_bytes()));
        }
        self
    }

    /// Takes limits from the environment, where set: `MEMO_MAX_BYTES` (a
    /// size: `10GiB`, `500M`, bytes), `MEMO_MAX_ENTRIES` and `MEMO_MAX_AGE`
    /// (a duration: `30d`, `12h`, `1h 30m`, `1.5h`, seconds), in the
    /// grammar of [`units`](crate::units), and the compression of
    /// `MEMO_COMPRESS` (`none`, `zstd`, `zstd:LEVEL`). A value that does not
    /// parse is reported through `tracing` and that setting left unset.
    /// [`Store::global`] and `#[memoize(dir = ...)]` stores do this, so
    /// the default store need not grow forever.
    pub fn limits_from_env(mut self) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(v) = var("MEMO_MAX_BYTES") {
            match crate::units::parse_size(&v) {
                Ok(b) => self.opts.max_bytes = Some(b),
                Err(e) => {
                    tracing::warn!(value = %v, "memo: MEMO_MAX_BYTES: {e}; ignored");
                }
            }
        }
        if let Some(v) = var("MEMO_MAX_ENTRIES") {
            match v.trim().parse() {
                Ok(n) => self.opts.max_entries = Some(n),
                Err(_) => {
                    tracing::warn!(value = %v, "memo: MEMO_MAX_ENTRIES is not a count; ignored");
                }
            }
        }
        if let Some(v) = var("MEMO_COMPRESS") {
            match v.parse() {
                Ok(c) => self.opts.compress = c,
                Err(e) => tracing::warn!("memo: MEMO_COMPRESS: {e}; ignored"),
            }
        }
        if let Some(v) = var("MEMO_MAX_AGE") {
            match crate::units::parse_duration(&v) {
                Ok(d) => self.opts.max_age = Some(d),
                Err(e) => {
                    tracing::warn!(value = %v, "memo: MEMO_MAX_AGE: {e}; ignored");
                }
            }
        }
        self
    }

    /// Opens the store, creating the directory if it is missing.
    ///
    /// memo adopts only an empty directory or an existing store (whose
    /// `LOCK` file carries memo's marker): any other directory is refused
    /// before anything is created in it, so a mistyped `MEMO_DIR` never
    /// mixes memo's files with yours. Nothing inside a store is ever
    /// reached through a symbolic link (the store directory itself may be
    /// one).
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if the directory cannot be created or opened (naming the
    /// path), [`Error::Refused`](crate::Error::Refused) for a directory that is neither empty nor a
    /// store, or a store with a link or a file of the wrong type under one
    /// of memo's names, [`Error::Corrupt`](crate::Error::Corrupt) if its index is damaged,
    /// [`Error::IncompatibleFormat`](crate::Error::IncompatibleFormat) if it was written by another format
    /// version, [`Error::Remote`](crate::Error::Remote) for a remote URL that
    /// cannot be used (an unreachable remote is not an error here).
    pub fn open(self) -> Result<Store> {
        if let Some(message) = self.opts.env_error {
            return Err(crate::Error::Remote {
                url: crate::remote::redact(&self.opts.remote.url),
                message,
            });
        }
        let engine = Arc::new(Engine::open(&self.dir, self.opts)?);
        super::install::Installs::bind(&engine);
        Ok(Store {
            engine: Some(engine),
        })
    }
}
