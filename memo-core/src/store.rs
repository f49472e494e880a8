//! The public face: [`Store`], its builder and options.

mod read;
mod scan;
mod trim;
mod verify;
mod write;

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::blob::Blobs;
use crate::dir::Dir;
use crate::error::{Error, IoContext, Result};
use crate::format::{
    self, BLOB_DIR, INDEX_FILE, LOCK_FILE, LOCKS_DIR, MARKER_LEN, Marker, SEG_DIR, TMP_DIR,
};
use crate::index::Index;
use crate::lock::{self, Inflight, KeyLock, WriterLock};
use crate::segment::{Appender, Segments};
use crate::{Bytes, Key, Stats, VerifyReport};

/// Which entries eviction removes first when a limit is reached.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// Least recently used first. Recency is counted in accesses (every
    /// hit and put, from every process), not rounded to a time unit.
    #[default]
    Lru,
    /// Least frequently used first (ties: least recent), with ageing: each
    /// eviction round halves every entry's hit count, so past favourites
    /// fade.
    Lfu,
    /// Greedy-Dual-Size-Frequency: lowest `L + (hits + 1) × compute cost ÷
    /// size` first, where `L` is an inflation clock raised to each evicted
    /// entry's priority. What is expensive to recompute per byte stays;
    /// what was valuable once ages out. Costs come from `get_or_compute`,
    /// `#[memoize]` and [`Store::put_with_cost`].
    CostAware,
    /// Never evict: `max_bytes` and `max_entries` are not enforced (dead
    /// records are still compacted, `max_age` still expires).
    None,
}

/// What a successful `put` promises to survive.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// The entry survives the crash of any process (the data is in the
    /// operating system's page cache before `put` returns), not power loss.
    #[default]
    Flush,
    /// The entry also survives power loss: value, directory entries and index
    /// are fsynced, in that order, before `put` returns.
    Sync,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    pub max_bytes: Option<u64>,
    pub max_entries: Option<u64>,
    pub max_age: Option<Duration>,
    pub policy: Policy,
    pub durability: Durability,
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
    /// Limit on the bytes the store takes on disk: records, blob files and
    /// the index.
    ///
    /// A put that takes the store past the limit evicts (by the
    /// [`Policy`]) until live data fits in 80% of it, then compacts the
    /// oldest segments until everything fits in 90%; so after any put
    /// returns, the store is within the limit plus what one compaction
    /// could not reclaim. An entry larger than the limit is refused with
    /// [`Error::TooLarge`]. Processes that open the store with different
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

    /// Which entries go first when a limit is reached (default [`Policy::Lru`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.opts.policy = policy;
        self
    }

    /// What a successful `put` survives (default [`Durability::Flush`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.opts.durability = durability;
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
    /// [`Error::Io`] if the directory cannot be created or opened (naming the
    /// path), [`Error::Refused`] for a directory that is neither empty nor a
    /// store, or a store with a link or a file of the wrong type under one
    /// of memo's names, [`Error::Corrupt`] if its index is damaged,
    /// [`Error::IncompatibleFormat`] if it was written by another format
    /// version.
    pub fn open(self) -> Result<Store> {
        Ok(Store {
            engine: Some(Arc::new(Engine::open(&self.dir, self.opts)?)),
        })
    }
}

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

/// The opened store behind a [`Store`].
pub(crate) struct Engine {
    dir: PathBuf,
    /// Handles of the store directory and its subdirectories: every file is
    /// reached through one, never through a path (see `dir.rs`).
    root: Dir,
    tmp: Dir,
    locks: Dir,
    opts: Options,
    index: RwLock<Arc<Index>>,
    segs: Segments,
    blobs: Blobs,
    writer: WriterLock<Appender>,
    inflight: Inflight,
    /// Damaged entries this process read, for its next write to remove.
    damaged: std::sync::Mutex<Vec<read::Damage>>,
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
        StoreBuilder {
            dir: dir.as_ref().to_path_buf(),
            opts: Options::default(),
        }
    }

    /// The default store of `#[memoize]`: `$MEMO_DIR`, else `.memo` in the
    /// working directory, opened on first use.
    ///
    /// If that cannot be opened, this is a store that caches nothing (every
    /// lookup misses, every `put` is dropped) and the reason is reported
    /// once through `tracing`, so a read-only or full disk never stops the
    /// program.
    pub fn global() -> &'static Store {
        static GLOBAL: OnceLock<Store> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let dir = std::env::var_os("MEMO_DIR").map_or_else(|| PathBuf::from(".memo"), PathBuf::from);
            Store::open(&dir).unwrap_or_else(|e| {
                tracing::error!(dir = %dir.display(), error = %e, "memo: the global store cannot be opened; caching is off");
                Store::disabled()
            })
        })
    }

    /// A store that caches nothing: what `global` and `#[memoize(dir)]`
    /// fall back to when their directory cannot be opened.
    pub(crate) fn disabled() -> Store {
        Store { engine: None }
    }

    /// The opened store, if this is not a disabled one.
    pub(crate) fn engine(&self) -> Option<&Engine> {
        self.engine.as_deref()
    }

    /// The store's directory; `None` for a global store that could not be
    /// opened.
    #[must_use]
    pub fn dir(&self) -> Option<&Path> {
        self.engine.as_deref().map(|e| e.dir.as_path())
    }

    /// The value stored under `key`, decoded as `V`.
    ///
    /// A damaged entry is a miss (and is reported through `tracing`), never
    /// wrong bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if the stored bytes are not a `V` (or were stored raw
    /// by [`Store::put_bytes`]); [`Error::Io`] if a file cannot be read.
    pub fn get<V: DeserializeOwned>(&self, key: &Key) -> Result<Option<V>> {
        match &self.engine {
            Some(e) => e.get(key, true),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key`, replacing any previous value.
    ///
    /// Once this returns `Ok`, every process that looks sees the value.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if `V`'s `Serialize` fails, [`Error::TooLarge`],
    /// [`Error::Io`] (a full disk among others: nothing committed is lost).
    pub fn put<V: Serialize + ?Sized>(&self, key: &Key, value: &V) -> Result<()> {
        match &self.engine {
            Some(e) => e.put_value(key, value, 0),
            None => Ok(()),
        }
    }

    /// Stores `value` under `key` with the time computing it took, which
    /// [`Policy::CostAware`] weighs against its size when choosing what to
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
            Some(e) => e.put_value(
                key,
                value,
                u32::try_from(cost.as_micros()).unwrap_or(u32::MAX),
            ),
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
    /// [`Error::Io`] if a file cannot be read.
    pub fn get_bytes(&self, key: &Key) -> Result<Option<Bytes>> {
        match &self.engine {
            Some(e) => Ok(e.lookup(key, true)?.map(|(b, _)| b)),
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
            Some(e) => e.put_raw(key, value, 0),
            None => Ok(()),
        }
    }

    /// Whether an entry for `key` exists (counts as neither hit nor miss; a
    /// damaged entry does not exist).
    #[must_use]
    pub fn contains(&self, key: &Key) -> bool {
        self.engine
            .as_ref()
            .is_some_and(|e| matches!(e.lookup(key, false), Ok(Some(_))))
    }

    /// Removes `key`'s entry; `true` if there was one.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the removal cannot be recorded.
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
            Some(e) => e.compute_once(
                key,
                compute,
                |v: &V| Some(v),
                |v| v,
                Err,
                |err| {
                    tracing::warn!(%key, error = %err, "memo: computed value could not be stored");
                },
            ),
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
    /// [`Error::Io`] if files cannot be created or removed.
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
    /// [`Error::Io`] if an entry cannot be removed.
    pub fn trim(&self) -> Result<()> {
        match &self.engine {
            Some(e) => e.trim(),
            None => Ok(()),
        }
    }

    /// Checks every entry's checksum and every structure of the store.
    ///
    /// Holds the writer lock while it runs, so writers wait.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a file cannot be read; damage is reported in the
    /// [`VerifyReport`], not as an error.
    pub fn verify(&self) -> Result<VerifyReport> {
        match &self.engine {
            Some(e) => e.verify(),
            None => Ok(VerifyReport::default()),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.engine {
            Some(e) => f
                .debug_struct("Store")
                .field("dir", &e.dir)
                .finish_non_exhaustive(),
            None => f.write_str("Store(disabled)"),
        }
    }
}

impl Engine {
    fn open(dir: &Path, opts: Options) -> Result<Engine> {
        let root = Dir::open_root(dir)?;
        let lock_file = adopt(&root, opts.durability == Durability::Sync)?;
        warn_if_world_writable(&root);
        let sub = |name: &str| {
            root.open_dir(name, true)?
                .ok_or_else(|| Error::io(root.child(name), std::io::ErrorKind::NotFound.into()))
        };
        let (seg, blob, locks, tmp) = (
            sub(SEG_DIR)?,
            sub(BLOB_DIR)?,
            sub(LOCKS_DIR)?,
            sub(TMP_DIR)?,
        );
        let writer = WriterLock::new(
            lock_file,
            root.child(LOCK_FILE),
            Appender::new(segment_limit(&opts)),
        );
        let segs = Segments::new(seg);
        let blobs = Blobs::new(blob);
        let sync = opts.durability == Durability::Sync;
        let index = match Index::open(&root, INDEX_FILE) {
            Ok(Some(i)) => i,
            // First open, a deleted index, or a damaged one: build it from
            // the segments under the writer lock, so concurrent openers
            // build it once.
            Ok(None) | Err(Error::Corrupt { .. }) => {
                let _w = writer.lock()?;
                match Index::open(&root, INDEX_FILE) {
                    Ok(Some(i)) => i,
                    Ok(None) => write::rebuild(&segs, &tmp, &root, sync)?,
                    // Only a memo index (by its magic) is set aside: a foreign
                    // file that happens to be called `index` is not touched.
                    Err(e @ Error::Corrupt { .. }) if Index::has_magic(&root, INDEX_FILE) => {
                        write::set_aside_damaged_index(&root, &e)?;
                        write::rebuild(&segs, &tmp, &root, sync)?
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        // Leftovers of processes that died: compute locks nobody holds, and
        // tmp files (the latter only under the writer lock, see
        // `sweep_unlocked`). Both are usually empty: one directory read each.
        lock::sweep_unlocked(&locks, format::is_lock_name);
        if !tmp.own_files(format::is_tmp_name)?.is_empty() {
            let _w = writer.lock()?;
            lock::sweep_unlocked(&tmp, format::is_tmp_name);
        }
        Ok(Engine {
            dir: dir.to_path_buf(),
            root,
            tmp,
            locks,
            opts,
            index: RwLock::new(Arc::new(index)),
            segs,
            blobs,
            writer,
            inflight: Inflight::default(),
            damaged: std::sync::Mutex::new(Vec::new()),
        })
    }
}

/// Makes sure `root` is a memo store before anything is created in it, and
/// returns its `LOCK` file, which carries the store's marker.
///
/// An empty directory becomes a store: `LOCK` is created with the marker
/// before anything else, so a directory holding more than `LOCK` always has
/// its marker written. An empty `LOCK` is a store being made by another
/// process (it writes the same bytes), one whose maker died before writing
/// them, or a store made before the marker existed (it has an index):
/// those are adopted. Anything else is not memo's, and is refused.
fn adopt(root: &Dir, sync: bool) -> Result<File> {
    let path = root.child(LOCK_FILE);
    let marker = |f: &File| {
        let mut b = [0u8; MARKER_LEN + 1];
        let n = f.read_at(&mut b, 0).at(&path)?;
        Ok::<Marker, Error>(format::check_marker(&b[..n]))
    };
    let mark = |f: &File| {
        f.write_all_at(&format::encode_marker(), 0).at(&path)?;
        if sync {
            f.sync_all().at(&path)?;
            root.sync()?;
        }
        Ok::<(), Error>(())
    };
    // Twice at most: a second pass only follows another process's create.
    for _ in 0..2 {
        let Some(f) = root.open_file(LOCK_FILE, true)? else {
            let entries = root.entries()?;
            if !entries.is_empty() {
                return Err(foreign(root, &entries));
            }
            match root.create_new(LOCK_FILE) {
                Ok(f) => {
                    mark(&f)?;
                    return Ok(f);
                }
                Err(Error::Io { ref source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        return match marker(&f)? {
            Marker::Ok => Ok(f),
            Marker::Version(found) => Err(Error::IncompatibleFormat {
                path,
                found,
                supported: format::FORMAT_VERSION,
            }),
            Marker::Foreign => Err(Error::refused(
                &path,
                "this file is not memo's store marker, so the directory is not a memo store; \
                 memo adopts only an empty directory or an existing store",
            )),
            Marker::Empty => {
                let entries = root.entries()?;
                if marker(&f)? == Marker::Ok {
                    return Ok(f);
                }
                let only_lock = entries.iter().all(|(n, _)| n == LOCK_FILE);
                if only_lock || Index::has_magic(root, INDEX_FILE) {
                    mark(&f)?;
                    Ok(f)
                } else {
                    Err(foreign(root, &entries))
                }
            }
        };
    }
    Err(Error::refused(
        &path,
        "it keeps changing under memo while the store is being made",
    ))
}

/// The refusal of a directory that is neither empty nor a store.
fn foreign(root: &Dir, entries: &[(std::ffi::OsString, crate::dir::Kind)]) -> Error {
    let mut names: Vec<String> = entries
        .iter()
        .map(|(n, _)| n.to_string_lossy().into_owned())
        .collect();
    names.sort();
    let shown = names.iter().take(6).cloned().collect::<Vec<_>>().join(", ");
    let more = if names.len() > 6 { ", …" } else { "" };
    Error::refused(
        root.path(),
        format!(
            "the directory is neither empty nor a memo store (it holds {shown}{more}); \
             memo adopts only an empty directory or an existing store, so that it never \
             touches files that are not its own: choose a new or empty directory"
        ),
    )
}

/// Warns once per directory and process when other users may write into
/// the store: they could plant values there (checksums stop accidents, not
/// forgers).
fn warn_if_world_writable(root: &Dir) {
    static WARNED: LazyLock<Mutex<HashSet<PathBuf>>> = LazyLock::new(Mutex::default);
    if root.world_writable()
        && WARNED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(root.path().to_path_buf())
    {
        tracing::warn!(
            dir = %root.path().display(),
            "memo: the store directory is writable by every user; anyone on this machine \
             can change its results (chmod o-w it, or keep it in a private directory)"
        );
    }
}

/// Segment size for a store with these options. Compaction rewrites a
/// segment's live records before unlinking it, so for a moment the store
/// holds both: under a byte limit, segments of an eighth of it keep that
/// overshoot to an eighth (whole 64 MiB segments in a 3 MiB store let a
/// compaction double its files, measured from another process).
fn segment_limit(opts: &Options) -> u64 {
    const FLOOR: u64 = 256 * 1024;
    opts.max_bytes
        .map_or(crate::format::SEGMENT_SIZE, |m| (m / 8).max(FLOOR))
}

impl Engine {
    /// `get_or_compute`, generalised for the macro: `kept` says what of a
    /// computed result is stored (all of it, or a `Result`'s `Ok`), `from`
    /// turns a stored value back into a result. A lookup error goes to
    /// `lookup_failed`, which returns it (`get_or_compute`) or reports it and
    /// lets the value be computed (the macro, with `X = Infallible`); a
    /// failure to store the result goes to `store_failed`.
    pub(crate) fn compute_once<V, R, X>(
        &self,
        key: &Key,
        compute: impl FnOnce() -> R,
        kept: impl FnOnce(&R) -> Option<&V>,
        from: impl FnOnce(V) -> R,
        lookup_failed: impl Fn(Error) -> std::result::Result<(), X>,
        store_failed: impl FnOnce(&Error),
    ) -> std::result::Result<R, X>
    where
        V: Serialize + DeserializeOwned,
    {
        let found = |count: bool| match self.get::<V>(key, count) {
            Ok(v) => Ok(v),
            Err(e) => lookup_failed(e).map(|()| None),
        };
        if let Some(v) = found(true)? {
            return Ok(from(v));
        }
        let out = self.inflight.run(key, || {
            // Another thread may have computed it while this one waited.
            if let Some(v) = found(false)? {
                self.count_hit();
                return Ok(Ok(v));
            }
            // Then one computation across processes: whoever holds the key's
            // lock file computes, the others wait and find the value. If the
            // lock cannot be had (a read-only directory), compute anyway.
            let flight = KeyLock::acquire(&self.locks, key)
                .inspect_err(|err| tracing::warn!(%key, error = %err, "memo: no compute lock; computing without"))
                .ok();
            if flight.is_some()
                && let Some(v) = found(false)?
            {
                self.count_hit();
                return Ok(Ok(v));
            }
            let t = Instant::now();
            let r = compute();
            let cost = u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX);
            if let Some(v) = kept(&r)
                && let Err(err) = self.put_value(key, v, cost)
            {
                store_failed(&err);
            }
            Ok(Err(r))
        })?;
        Ok(match out {
            Ok(v) => from(v),
            Err(r) => r,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::Store;
    use crate::private::tests::Count;

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
