//! The public face: [`Store`], its builder and options. The engine behind
//! it lives in `store/`, one file per job, along the path the data takes:
//! `engine` (opening; `adopt` decides what may be opened), `read` (the
//! lock-free lookup), `compute` (single flight), `write` (publishing),
//! `account` (the crash protocol and counters of every change), `trim`
//! (limits and eviction), `compact`, `recover` (repair and rebuild),
//! `verify`, `functions` (the function registry, per-function statistics and selections),
//! `tier` (the remote tier seen from the engine) and `install` (remote hits
//! installed off the call path).

mod account;
mod adopt;
mod compact;
mod compute;
mod durable;
mod engine;
mod flight_async;
mod functions;
mod grow;
mod install;
mod options;
mod read;
mod recover;
mod tier;
mod trim;
mod verify;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) use compute::{Call, Flown, Source};
pub(crate) use engine::Engine;
pub(crate) use flight_async::{FlightGuard, Led};
pub(crate) use install::settle_all as settle_all_installs;
pub(crate) use options::Options;
pub use options::{Durability, StoreBuilder};
pub(crate) use write::Pack;

use crate::error::{Error, Result};
use crate::{Bytes, FunctionInfo, FunctionStats, Key, Selection, Stats, Transfer, VerifyReport};

/// A store directory, opened by one process: a persistent key-value cache
/// shared by every thread and process that opens the same directory.
///
/// Cheap to clone (clones share one opened store); `Send + Sync`.
///
/// Reads take no lock: a lookup is a probe of the shared, memory-mapped index
/// and a checksummed read of a mapped file. Writers serialise on the store's
/// `LOCK` file only while they publish.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use memo_core::{Key, Store};
///
/// let store = Store::open(dir.path())?;
/// let key = Key::of(&("simulate", 42_u64));
/// let v: Vec<f64> = store.get_or_compute(&key, || vec![0.5; 1000])?;
/// assert_eq!(store.get::<Vec<f64>>(&key)?, Some(v));
/// # Ok::<(), memo_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Store {
    /// `None` only for a [`Store::global`] that could not be opened.
    engine: Option<Arc<Engine>>,
}

impl Store {
    /// Opens the store at `dir` with default options, creating it if missing.
    ///
    /// # Errors
    ///
    /// As [`StoreBuilder::open`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::builder(dir).open()
    }

    /// Options for opening the store at `dir`.
    pub fn builder(dir: impl AsRef<Path>) -> StoreBuilder {
        StoreBuilder::new(dir.as_ref())
    }

    /// The default store of `#[memoize]`, at [`Store::default_dir`] (in
    /// short: `$MEMO_DIR`, else the project's `.memo` found from the
    /// working directory, else `.memo` in the working directory), opened
    /// on first use, with the limits of `MEMO_MAX_BYTES`, `MEMO_MAX_ENTRIES`
    /// and `MEMO_MAX_AGE` and the remote tier of `MEMO_REMOTE`.
    ///
    /// A directory the process cannot write is opened read-only: hits are
    /// served and misses computed without being stored (said once on
    /// stderr).
    ///
    /// If that cannot be opened, this is a store that caches nothing (every
    /// lookup misses, every `put` is dropped) and the reason is reported
    /// once through `tracing`, so a read-only or full disk never stops the
    /// program.
    pub fn global() -> &'static Store {
        static GLOBAL: OnceLock<&'static Store> = OnceLock::new();
        GLOBAL.get_or_init(|| Store::open_shared(&Store::default_dir()))
    }

    /// The store at `dir` as the default and `dir =` stores open it: limits
    /// and remote tier from the environment; a bad remote setting costs the
    /// remote, not the cache; a store that cannot be opened caches nothing.
    /// Each problem is said once on stderr. Bindings (the Python package)
    /// open their default stores through this, so both languages treat the
    /// environment alike.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use memo_core::Store;
    ///
    /// let store = Store::open_from_env(&dir.path().join("cache"));
    /// assert!(store.dir().is_some());
    /// ```
    #[must_use]
    pub fn open_from_env(dir: &Path) -> Store {
        Store::builder(dir)
            .remote_from_env()
            .limits_from_env()
            .open()
            .or_else(|e| match e {
                Error::Remote { .. } => {
                    crate::report::remote_off(&e);
                    Store::builder(dir).limits_from_env().open()
                }
                e => Err(e),
            })
            .unwrap_or_else(|e| {
                crate::report::caching_off(dir, &e);
                Store::disabled()
            })
    }

    /// The store at `dir` as [`Store::open_from_env`] opens it, once per
    /// directory and process: the default, `dir =` and [`Store::global`]
    /// stores share it (each open store has its own mappings and locks).
    pub(crate) fn open_shared(dir: &Path) -> &'static Store {
        static OPEN: LazyLock<Mutex<HashMap<PathBuf, &'static Store>>> =
            LazyLock::new(Mutex::default);
        let path = std::path::absolute(dir).unwrap_or_else(|_| PathBuf::from(dir));
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = open.get(&path) {
            return s;
        }
        let store = Store::open_from_env(&path);
        // Kept for the life of the process, like a function's statics.
        let store: &'static Store = Box::leak(Box::new(store));
        open.insert(path, store);
        store
    }

    /// Where [`Store::global`] (and the `memo` command without `--dir`)
    /// finds its store: [`Store::default_dir_for`] with no program project.
    ///
    /// # Examples
    ///
    /// ```
    /// use memo_core::Store;
    ///
    /// println!("#[memoize] stores results in {}", Store::default_dir().display());
    /// ```
    #[must_use]
    pub fn default_dir() -> PathBuf {
        Store::default_dir_for(None)
    }

    /// Where the default store of a program whose own project is rooted at
    /// `program` lives, whatever directory it is started from:
    ///
    /// 1. `$MEMO_DIR`, if set and not empty;
    /// 2. else the nearest `.memo` that is a store, looked for in the
    ///    working directory and its parents up to the project's root (the
    ///    nearest directory holding `.git`, `Cargo.lock`, `pyproject.toml`
    ///    or `setup.py`), so a program started from a subdirectory of its
    ///    project uses the project's cache;
    /// 3. else `.memo` in `program`, the root of the program's own project
    ///    (the Python package passes the project of the script or module
    ///    defining the function), if it still exists;
    /// 4. else `.memo` at the root of the working directory's project;
    /// 5. else a per-user cache directory: `$XDG_CACHE_HOME/memo`, else
    ///    `~/.cache/memo` — never a bare working directory outside any
    ///    project, where a program started from `/tmp` would recompute
    ///    everything into a cache nobody finds again.
    ///
    /// The search of step 2 stops at the project's root so that an
    /// unrelated `.memo` higher up (in a home directory, in `/tmp`) is never
    /// picked up.
    ///
    /// # Examples
    ///
    /// ```
    /// use memo_core::Store;
    ///
    /// let here = std::env::current_dir()?;
    /// println!("a program of {} caches in {}", here.display(),
    ///          Store::default_dir_for(Some(&here)).display());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[must_use]
    pub fn default_dir_for(program: Option<&Path>) -> PathBuf {
        if let Some(d) = std::env::var_os("MEMO_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        let here = PathBuf::from(".memo");
        let cwd = std::env::current_dir().ok();
        let cwd_root = cwd.as_deref().and_then(project_root);
        if let (Some(cwd), Some(root)) = (&cwd, &cwd_root) {
            for d in cwd.ancestors() {
                let candidate = d.join(".memo");
                if candidate.join(crate::format::LOCK_FILE).is_file() {
                    // Relative when it is the working directory's own, as
                    // before, so messages read `.memo`.
                    return if d == cwd { here } else { candidate };
                }
                if d == root.as_path() {
                    break;
                }
            }
        }
        if let Some(p) = program.filter(|p| p.is_dir()) {
            return p.join(".memo");
        }
        if let (Some(cwd), Some(root)) = (&cwd, cwd_root) {
            return if &root == cwd {
                here
            } else {
                root.join(".memo")
            };
        }
        user_cache_dir().unwrap_or(here)
    }

    /// A store that caches nothing: every lookup misses, every `put` is
    /// dropped, `get_or_compute` always computes. It is what
    /// [`Store::global`] and `#[memoize(dir = ...)]` fall back to when their
    /// directory cannot be opened, and what a test can hand to
    /// `#[memoize(store = ...)]` to run functions uncached.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::LazyLock;
    /// use memo_core::{memoize, Store};
    ///
    /// static UNCACHED: LazyLock<Store> = LazyLock::new(Store::disabled);
    ///
    /// #[memoize(store = UNCACHED)]
    /// fn roll(seed: u64) -> u64 {
    ///     seed.wrapping_mul(6_364_136_223_846_793_005)
    /// }
    ///
    /// assert_eq!(roll(1), roll(1)); // computed both times
    /// assert!(UNCACHED.dir().is_none());
    /// assert_eq!(UNCACHED.len(), 0);
    /// ```
    #[must_use]
    pub fn disabled() -> Store {
        Store { engine: None }
    }

    /// Whether the store has a remote tier, and if so whether its objects
    /// are authenticated by a secret (`MEMO_REMOTE_SECRET`,
    /// [`StoreBuilder::remote_secret`]): `None` without a remote tier.
    /// A binding that loads code-running values (Python's pickles) trusts
    /// what came from a remote only when it is authenticated.
    #[must_use]
    pub fn remote_authenticated(&self) -> Option<bool> {
        let remote = self.engine.as_deref()?.remote.as_deref()?;
        Some(remote.authenticated())
    }

    /// The opened store, if this is not a disabled one.
    pub(crate) fn engine(&self) -> Option<&Engine> {
        self.engine.as_deref()
    }

    /// The opened store, shared (for work that outlives a borrow).
    pub(crate) fn engine_arc(&self) -> Option<&Arc<Engine>> {
        self.engine.as_ref()
    }

    /// The store's directory; `None` for a global store that could not be
    /// opened.
    #[must_use]
    pub fn dir(&self) -> Option<&Path> {
        self.engine.as_deref().map(|e| e.files.dir.as_path())
    }

    /// Whether the store is open read-only: this process cannot write to
    /// its directory (a read-only mount, another user's cache), or
    /// [`StoreBuilder::read_only`] asked for it. A read-only store serves
    /// hits; puts, removals and trims fail with [`Error::ReadOnly`]; misses
    /// of `get_or_compute` and `#[memoize]` functions are computed and not
    /// stored. A disabled store is not read-only.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use memo_core::{Key, Store};
    ///
    /// Store::open(dir.path())?.put(&Key::of("answer"), &42)?;
    /// let published = Store::builder(dir.path()).read_only(true).open()?;
    /// assert!(published.is_read_only());
    /// assert_eq!(published.get::<i32>(&Key::of("answer"))?, Some(42));
    /// assert!(published.put(&Key::of("other"), &1).is_err());
    /// # Ok::<(), memo_core::Error>(())
    /// ```
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        self.engine.as_deref().is_some_and(Engine::read_only)
    }

    /// The value stored under `key`, decoded as `V`.
    ///
    /// A damaged entry is a miss (and is reported through `tracing`), never
    /// wrong bytes. With a remote tier, a local miss asks the remote and
    /// installs what it verified.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`](crate::Error::Codec) if the stored bytes are not a `V` (or were stored raw
    /// by [`Store::put_bytes`]); [`Error::Io`](crate::Error::Io) if a file cannot be read.
    pub fn get<V: DeserializeOwned>(&self, key: &Key) -> Result<Option<V>> {
        match &self.engine {
            Some(e) => e.get(key, true),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key`, replacing any previous value.
    ///
    /// Once this returns `Ok`, every process that looks sees the value. With
    /// a remote tier in read-write mode, the value is then written through
    /// (create-only: a key already on the remote keeps its object); a
    /// remote failure is counted, not returned.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`](crate::Error::Codec) if `V`'s `Serialize` fails, [`Error::TooLarge`](crate::Error::TooLarge),
    /// [`Error::Io`](crate::Error::Io) (a full disk among others: nothing committed is lost).
    pub fn put<V: Serialize + ?Sized>(&self, key: &Key, value: &V) -> Result<()> {
        match &self.engine {
            Some(e) => {
                e.put_value(key, value, 0)?;
                e.write_through(key, 0);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Stores `value` under `key` with the time computing it took, which
    /// [`Policy::CostAware`](crate::Policy::CostAware) weighs against its size when choosing what to
    /// evict (`get_or_compute` and `#[memoize]` record it themselves).
    ///
    /// # Errors
    ///
    /// As [`Store::put`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use std::time::{Duration, Instant};
    /// use memo_core::{Key, Store};
    ///
    /// let store = Store::open(dir.path())?;
    /// let t = Instant::now();
    /// let fit: Vec<f64> = (0..1000).map(|i| f64::from(i).ln_1p()).collect();
    /// store.put_with_cost(&Key::of("fit"), &fit, t.elapsed())?;
    /// # Ok::<(), memo_core::Error>(())
    /// ```
    pub fn put_with_cost<V: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &V,
        cost: Duration,
    ) -> Result<()> {
        match &self.engine {
            Some(e) => {
                let cost =
                    crate::format::cost_word(u64::try_from(cost.as_micros()).unwrap_or(u64::MAX));
                e.put_value(key, value, cost)?;
                e.write_through(key, cost);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The stored bytes of `key`, as a zero-copy view of the mapped file.
    ///
    /// For an entry stored with [`Store::put`], these are the encoded bytes.
    /// A large value's checksum is verified the first time this process maps
    /// it; later calls are O(1) whatever the size.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a file cannot be read.
    pub fn get_bytes(&self, key: &Key) -> Result<Option<Bytes>> {
        match &self.engine {
            Some(e) => Ok(e.find(key, true)?.map(|(b, _)| b)),
            None => Ok(None),
        }
    }

    /// Stores raw bytes under `key`.
    ///
    /// # Errors
    ///
    /// As [`Store::put`].
    pub fn put_bytes(&self, key: &Key, value: &[u8]) -> Result<()> {
        match &self.engine {
            Some(e) => {
                e.put_raw(key, value, 0)?;
                e.write_through(key, 0);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Whether an entry for `key` exists in the local store (counts as
    /// neither hit nor miss; a damaged entry does not exist; a remote tier
    /// is not asked).
    #[must_use]
    pub fn contains(&self, key: &Key) -> bool {
        self.engine
            .as_ref()
            .is_some_and(|e| matches!(e.lookup(key, false), Ok(Some(_))))
    }

    /// Removes `key`'s entry; `true` if there was one. A remote tier keeps
    /// its object (remote objects are immutable; the remote bounds itself).
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if the removal cannot be recorded.
    pub fn remove(&self, key: &Key) -> Result<bool> {
        match &self.engine {
            Some(e) => e.remove(key),
            None => Ok(false),
        }
    }

    /// Returns the stored value, or runs `compute` once and stores its result.
    ///
    /// Threads and processes that ask for the same `key` at the same time
    /// wait for the one computation instead of repeating it (across
    /// processes through a lock file in `locks/`). If the computing process
    /// dies, its lock is released and a waiter computes instead. The time
    /// `compute` took is stored with the value for cost-aware eviction.
    ///
    /// Failing to *store* the result does not fail the call: the computed
    /// value is returned and the problem reported through `tracing`.
    ///
    /// # Errors
    ///
    /// The lookup's errors, before anything is computed.
    pub fn get_or_compute<V, F>(&self, key: &Key, compute: F) -> Result<V>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> V,
    {
        match &self.engine {
            Some(e) => e.compute_once(key, &compute::Whole(std::marker::PhantomData), compute),
            None => Ok(compute()),
        }
    }

    /// Returns the stored value, or runs the fallible `compute` once —
    /// across threads and processes, as [`Store::get_or_compute`] does —
    /// and stores its `Ok` value. An `Err` is returned and not stored, so
    /// the next call computes again (the same rule as a `#[memoize]`
    /// function returning `Result`).
    ///
    /// The outer `Result` is the lookup's, before anything is computed;
    /// the inner one is `compute`'s.
    ///
    /// # Errors
    ///
    /// The lookup's errors, before anything is computed.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use memo_core::{Key, Store};
    ///
    /// let store = Store::open(dir.path())?;
    /// let key = Key::of(&("parse", "42"));
    /// let n: Result<u32, std::num::ParseIntError> =
    ///     store.get_or_try_compute(&key, || "42".parse())?;
    /// assert_eq!(n, Ok(42));
    /// let bad = Key::of(&("parse", "x"));
    /// let e: Result<u32, _> = store.get_or_try_compute(&bad, || "x".parse::<u32>())?;
    /// assert!(e.is_err() && !store.contains(&bad)); // errors are not stored
    /// # Ok::<(), memo_core::Error>(())
    /// ```
    pub fn get_or_try_compute<V, E, F>(
        &self,
        key: &Key,
        compute: F,
    ) -> Result<std::result::Result<V, E>>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> std::result::Result<V, E>,
    {
        match &self.engine {
            Some(e) => e.compute_once(key, &compute::OkOnly(std::marker::PhantomData), compute),
            None => Ok(compute()),
        }
    }

    /// Live entries, store-wide.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.stats().entries
    }

    /// Whether the store has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Store-wide statistics, shared by all processes.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.engine
            .as_ref()
            .map_or_else(Stats::default, |e| e.stats())
    }

    /// Removes every entry.
    ///
    /// `Bytes` handed out earlier stay valid.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if files cannot be created or removed.
    pub fn clear(&self) -> Result<()> {
        match &self.engine {
            Some(e) => e.clear(),
            None => Ok(()),
        }
    }

    /// Evicts down to the configured limits now: expires entries past
    /// `max_age`, evicts to the low-water marks (80% of `max_bytes` and
    /// `max_entries`) and compacts segments with dead records.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if an entry cannot be removed.
    pub fn trim(&self) -> Result<()> {
        match &self.engine {
            Some(e) => e.trim(),
            None => Ok(()),
        }
    }

    /// The memoized functions that have run with this store (its function
    /// registry), each with the figures of its entries: count, bytes, hits,
    /// misses, compute time stored and saved, entries of code that no longer
    /// runs (stale), last use. Sorted by name.
    ///
    /// One lock-free pass over the entries; what writers change meanwhile
    /// may or may not be counted. Entries that belong to no registered
    /// function (keys made with [`Key::of`], or functions that have not run
    /// since the store began keeping a registry) are in [`Store::stats`]
    /// only.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use std::sync::LazyLock;
    /// use memo_core::{memoize, Store};
    ///
    /// # static DIR: LazyLock<std::path::PathBuf> = LazyLock::new(|| tempfile::tempdir().unwrap().keep());
    /// static STORE: LazyLock<Store> = LazyLock::new(|| Store::open(&*DIR).unwrap());
    ///
    /// #[memoize(store = STORE)]
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// square(3);
    /// square(3);
    /// let f = &STORE.functions()?[0];
    /// assert!(f.name.ends_with("::square"));
    /// assert_eq!((f.stats.entries, f.stats.hits, f.stats.misses), (1, 1, 1));
    /// # Ok::<(), memo_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if the registry cannot be listed.
    pub fn functions(&self) -> Result<Vec<FunctionInfo>> {
        match self.engine() {
            Some(e) => e.functions().map(|(f, _)| f),
            None => Ok(Vec::new()),
        }
    }

    /// What [`Store::remove_selected`] would remove now: the count, bytes,
    /// hits, compute time stored and saved, and stale entries among those
    /// `selection` takes. Reads only: one lock-free pass over the table.
    ///
    /// # Errors
    ///
    /// [`Error::Function`](crate::Error::Function) if the selection names a
    /// function the store does not know, or a suffix that fits several.
    pub fn select(&self, selection: &Selection) -> Result<FunctionStats> {
        match self.engine() {
            Some(e) => e.selected(selection, false).map(|(_, s)| s),
            None => Ok(FunctionStats::default()),
        }
    }

    /// Removes the entries `selection` takes, as [`Store::remove`] removes
    /// one; returns what they held. An entry stored again under the same
    /// key while this runs may be removed too (it is then a miss, never a
    /// wrong value).
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use memo_core::{Selection, Store};
    ///
    /// let store = Store::open(dir.path())?;
    /// // Entries of code that no longer runs: none yet.
    /// assert_eq!(store.remove_selected(&Selection::all().stale())?.entries, 0);
    /// # Ok::<(), memo_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Store::select`], and [`Error::Io`](crate::Error::Io) if an
    /// entry cannot be removed.
    pub fn remove_selected(&self, selection: &Selection) -> Result<FunctionStats> {
        let Some(e) = self.engine() else {
            return Ok(FunctionStats::default());
        };
        let (keys, mut stats) = e.selected(selection, true)?;
        if keys.is_empty() {
            return Ok(stats);
        }
        let keys: std::collections::HashSet<Key> = keys.into_iter().collect();
        stats.entries = e.remove_matching(|k| keys.contains(k))?;
        Ok(stats)
    }

    /// Copies to the remote tier every local entry it lacks (entries
    /// there are never replaced: objects are immutable). `progress` is
    /// called after each entry.
    ///
    /// # Examples
    ///
    /// ```
    /// # let t = tempfile::tempdir().unwrap();
    /// use memo_core::{Key, Store};
    ///
    /// let shared = format!("file://{}", t.path().join("shared").display());
    /// let laptop = Store::builder(t.path().join("laptop")).remote(&shared).open()?;
    /// laptop.put_bytes(&Key::of("a"), b"computed on the laptop")?;
    /// // (a put writes through already; push copies what predates the remote)
    /// let pushed = laptop.push(|_| {})?;
    /// assert_eq!(pushed.copied + pushed.present, 1);
    ///
    /// let cluster = Store::builder(t.path().join("cluster")).remote(&shared).open()?;
    /// assert_eq!(cluster.pull(|_| {})?.copied, 1);
    /// assert!(cluster.contains(&Key::of("a")));
    /// # Ok::<(), memo_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Remote`](crate::Error::Remote) if no remote tier is
    /// configured, it is read-only, or it cannot be listed; entries that
    /// fail one by one are counted in [`Transfer::failed`].
    pub fn push(&self, mut progress: impl FnMut(&Transfer)) -> Result<Transfer> {
        match self.engine() {
            Some(e) => e.push(&mut progress),
            None => Ok(Transfer::default()),
        }
    }

    /// Copies from the remote tier every entry the local store lacks,
    /// checked as a remote hit is (a damaged, foreign or unsigned object
    /// is counted in [`Transfer::failed`], never stored).
    ///
    /// # Errors
    ///
    /// [`Error::Remote`](crate::Error::Remote) if no remote tier is
    /// configured or it cannot be listed.
    pub fn pull(&self, mut progress: impl FnMut(&Transfer)) -> Result<Transfer> {
        match self.engine() {
            Some(e) => e.pull(&mut progress),
            None => Ok(Transfer::default()),
        }
    }

    /// Checks every entry's checksum and every structure of the store.
    ///
    /// Reads as readers do, without the writer lock, so writers go on
    /// meanwhile; whatever looks wrong is checked again under the lock
    /// (held as briefly as a put holds it), so a racing writer is never
    /// reported as damage.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if a file cannot be read; damage is reported in the
    /// [`VerifyReport`], not as an error.
    pub fn verify(&self) -> Result<VerifyReport> {
        match &self.engine {
            Some(e) => e.verify(),
            None => Ok(VerifyReport::default()),
        }
    }
}

/// Values fetched from the remote tier and still waiting to be installed
/// locally are installed before the store lets go of them.
impl Drop for Store {
    fn drop(&mut self) {
        if let Some(e) = &self.engine {
            e.settle_installs();
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.engine {
            Some(e) => f
                .debug_struct("Store")
                .field("dir", &e.files.dir)
                .finish_non_exhaustive(),
            None => f.write_str("Store(disabled)"),
        }
    }
}

/// Files and directories that mark a project's root.
const PROJECT_MARKERS: [&str; 4] = [".git", "Cargo.lock", "pyproject.toml", "setup.py"];

/// The root of the project `dir` is in: the nearest of it and its
/// ancestors holding one of [`PROJECT_MARKERS`].
fn project_root(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| PROJECT_MARKERS.iter().any(|m| d.join(m).exists()))
        .map(Path::to_path_buf)
}

/// `$XDG_CACHE_HOME/memo`, else `~/.cache/memo`.
fn user_cache_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .filter(|d| d.is_absolute());
    let base = xdg.or_else(|| {
        std::env::var_os("HOME")
            .filter(|d| !d.is_empty())
            .map(|h| PathBuf::from(h).join(".cache"))
    })?;
    Some(base.join("memo"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::Store;
    use crate::memoize::function::tests::Count;

    #[test]
    fn a_store_anyone_can_write_is_reported_once() {
        let warnings = |mode: u32| {
            let t = tempfile::tempdir().unwrap();
            std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            let counts: Arc<[AtomicUsize; 2]> = Arc::default();
            tracing::subscriber::with_default(Count(counts.clone()), || {
                for _ in 0..3 {
                    Store::open(t.path()).unwrap();
                }
            });
            counts[0].load(Ordering::Relaxed)
        };
        assert_eq!(warnings(0o777), 1, "once per directory and process");
        assert_eq!(warnings(0o1777), 1, "sticky or not, anyone can add entries");
        assert_eq!(warnings(0o775), 0, "a group-shared store is a choice");
        assert_eq!(warnings(0o700), 0);
    }
}
