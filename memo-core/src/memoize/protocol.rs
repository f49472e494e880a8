//! The call protocol for functions of other languages: what a binding (the
//! Python package) drives instead of re-implementing memo's runtime.
//!
//! A binding gives a function's identity (its language, module, name,
//! canonical code text, `version` and tracked helpers' digest) and, per
//! call, the canonical encoding of its arguments (the type tags of
//! `docs/format.md`, "Canonical encoding", so equal values give equal
//! bytes in any language); it gets the call's [`Key`] back. A call then
//! runs through the same runtime as a `#[memoize]` function's: the same
//! key derivation, registry and per-function counts, the in-process tier,
//! `ttl` and `min_cost`, single flight across threads, processes and
//! machines, cost timing, and write-through to the remote tier. Values
//! cross the protocol as bytes the binding encoded, tagged with one of the
//! codec ids reserved for bindings ([`FOREIGN_CODECS`]); a stored value
//! comes back as a view of the mapped file when it is one.
//!
//! # Examples
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use memo_core::Store;
//! use memo_core::protocol::{Encoded, Function, Identity, Options};
//!
//! let store = Store::open(dir.path())?;
//! let f = Function::new(
//!     &Identity {
//!         language: "python",
//!         module: "lab",
//!         name: "fit",
//!         code: "def fit(x): return x * 2",
//!         version: "",
//!         helpers: None,
//!     },
//!     Options::default(),
//! );
//! let key = f.key(b"canonical bytes of (21,)");
//! let mut runs = 0;
//! for _ in 0..2 {
//!     let v = f.call(&store, &key, || {
//!         runs += 1;
//!         Ok::<_, std::io::Error>(Encoded::new(16, b"42".to_vec()))
//!     })?;
//!     assert_eq!((&*v, v.codec()), (&b"42"[..], 16));
//! }
//! assert_eq!(runs, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::convert::Infallible;
use std::ops::{Deref, RangeInclusive};
use std::time::Duration;

use super::function::Function as Runtime;
use crate::key::call::KeyBuilder;
use crate::store::{Call, Engine, Flown, Pack, Source};
use crate::{Bytes, Compression, Error, FunctionStats, Key, Result, Store};

/// Codec ids a binding may tag its values with (`docs/format.md` lists
/// them); memo's own are below. Python uses 16 (its plain-data encoding)
/// and 17 (pickle).
pub const FOREIGN_CODECS: RangeInclusive<u8> = 16..=31;

/// What identifies a function of another language.
#[derive(Clone, Copy, Debug)]
pub struct Identity<'a> {
    /// The language (`"python"`): functions of different languages never
    /// share keys.
    pub language: &'a str,
    /// Its module (`"lab.models"`).
    pub module: &'a str,
    /// Its name within the module (a qualified name: `"Ridge.fit"`).
    pub name: &'a str,
    /// Its code in a canonical form (Python: the parsed source without
    /// comments, docstrings and formatting): editing it makes new keys.
    pub code: &'a str,
    /// A version the user bumps by hand, or empty.
    pub version: &'a str,
    /// The digest of the tracked helpers it uses, if any.
    pub helpers: Option<[u8; 32]>,
}

/// How a function's results are kept.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct Options {
    /// Results older than this are computed again.
    pub ttl: Option<Duration>,
    /// Results that took less than this to compute are not stored.
    pub min_cost: Option<Duration>,
    /// Up to this many results kept decoded in this process (0: none).
    pub memory: usize,
    /// How results are stored, arrays included (`None`: the store's
    /// setting, which leaves values read as views raw).
    pub compress: Option<Compression>,
}

impl Options {
    /// The options of a function with no `ttl`, `min_cost` or memory tier.
    #[must_use]
    pub fn new() -> Options {
        Options::default()
    }

    /// Results older than `ttl` are computed again.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Options {
        self.ttl = Some(ttl);
        self
    }

    /// Results faster to compute than `min_cost` are not stored.
    #[must_use]
    pub fn min_cost(mut self, min_cost: Duration) -> Options {
        self.min_cost = Some(min_cost);
        self
    }

    /// Up to `n` results kept in this process in front of the store.
    #[must_use]
    pub fn memory(mut self, n: usize) -> Options {
        self.memory = n;
        self
    }

    /// Results are stored compressed this way where that pays, whatever
    /// the store's setting (`Compression::None`: never).
    #[must_use]
    pub fn compress(mut self, compression: Compression) -> Options {
        self.compress = Some(compression);
        self
    }
}

/// A value a binding encoded: its bytes and the id of its encoding. One
/// loaded from the store views the mapped file (no copy).
#[derive(Clone)]
pub struct Encoded {
    codec: u8,
    bytes: Held,
    /// The bytes hold arrays a load reads in place: the store's
    /// compression setting leaves them raw (`Encoded::views`).
    views: bool,
}

#[derive(Clone)]
enum Held {
    Mapped(Bytes),
    Owned(std::sync::Arc<[u8]>),
}

impl Encoded {
    /// `bytes` encoded by encoding `codec` (one of [`FOREIGN_CODECS`]).
    #[must_use]
    pub fn new(codec: u8, bytes: Vec<u8>) -> Encoded {
        Encoded {
            codec,
            bytes: Held::Owned(bytes.into()),
            views: false,
        }
    }

    /// Marks the value as holding arrays that loads view in place (numpy
    /// arrays): a store compressing by its own setting stores it raw, so
    /// hits stay views of the file. A function's own `compress` still
    /// compresses it.
    #[must_use]
    pub fn views(mut self, yes: bool) -> Encoded {
        self.views = yes;
        self
    }

    /// The id of the value's encoding.
    #[must_use]
    pub fn codec(&self) -> u8 {
        self.codec
    }

    /// The bytes as a view of the mapped file, if they were loaded from the
    /// store (they stay valid as long as this or a clone lives).
    #[must_use]
    pub fn mapped(&self) -> Option<&Bytes> {
        match &self.bytes {
            Held::Mapped(b) => Some(b),
            Held::Owned(_) => None,
        }
    }
}

impl Deref for Encoded {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.bytes {
            Held::Mapped(b) => b,
            Held::Owned(v) => v,
        }
    }
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bytes themselves may be gigabytes: their length and where
        // they live say enough.
        f.debug_struct("Encoded")
            .field("codec", &self.codec)
            .field("len", &self.len())
            .field("mapped", &self.mapped().is_some())
            .finish_non_exhaustive()
    }
}

/// A memoized function of another language. Cheap to share between
/// threads; make one per function and keep it.
pub struct Function {
    /// The same runtime a `#[memoize]` function has, over the names given
    /// (kept for the life of the process, as a Rust function's are).
    rt: &'static Runtime,
}

impl Function {
    /// The function `id` is, with `options`.
    #[must_use]
    pub fn new(id: &Identity<'_>, options: Options) -> Function {
        // A function is made once per definition (a notebook cell run
        // again makes another): its names live as long as the process,
        // like a Rust function's statics.
        let leak = |s: &str| -> &'static str { Box::leak(s.to_owned().into_boxed_str()) };
        let millis = |d: Option<Duration>| d.map_or(0, |d| (d.as_millis() as u64).max(1));
        let micros = |d: Option<Duration>| d.map_or(0, |d| d.as_micros() as u64);
        let rt = Runtime::new(
            leak(id.module),
            leak(id.name),
            leak(id.code),
            leak(id.version),
        )
        .ttl(millis(options.ttl))
        .min_cost(micros(options.min_cost))
        .memory(options.memory)
        .compressed(options.compress)
        .foreign(leak(id.language), id.helpers);
        Function {
            rt: Box::leak(Box::new(rt)),
        }
    }

    /// Starts the key of a call: feed it the canonical encoding of the
    /// arguments, in one piece or several.
    #[must_use]
    pub fn key_builder(&self) -> CallKey {
        CallKey(KeyBuilder::new(self.rt.foreign_base()))
    }

    /// The key of the call whose arguments' canonical encoding is `args`.
    #[must_use]
    pub fn key(&self, args: &[u8]) -> Key {
        let mut k = self.key_builder();
        k.feed(args);
        k.finish()
    }

    /// The stored result of `key`, or `compute` run once across threads,
    /// processes and machines and its result stored (unless it took less
    /// than `min_cost`). An `Err` of `compute` is returned and not stored.
    /// Store problems never fail the call: they are reported (once per
    /// cause) and the body runs.
    ///
    /// # Errors
    ///
    /// `compute`'s.
    pub fn call<E>(
        &self,
        store: &Store,
        key: &Key,
        compute: impl FnOnce() -> std::result::Result<Encoded, E>,
    ) -> std::result::Result<Encoded, E> {
        match self.flight(store, key, true, compute) {
            Flown::Done(v, _) => v,
            Flown::Busy(compute) => compute(),
        }
    }

    /// As [`Function::call`], except that when another thread or process
    /// is computing `key` right now this returns `None` at once instead of
    /// waiting for it: what a sweep does first, so that processes sweeping
    /// the same inputs share them out, then waits for the rest.
    ///
    /// # Errors
    ///
    /// `compute`'s.
    pub fn try_call<E>(
        &self,
        store: &Store,
        key: &Key,
        compute: impl FnOnce() -> std::result::Result<Encoded, E>,
    ) -> Option<std::result::Result<Encoded, E>> {
        match self.flight(store, key, false, compute) {
            Flown::Done(v, _) => Some(v),
            Flown::Busy(_) => None,
        }
    }

    /// The flight of [`Function::call`] (`wait`) and [`Function::try_call`]
    /// (`Busy` when another computes `key` now): the in-process tier, the
    /// registry, then the engine's single flight; a result is kept in the
    /// in-process tier.
    fn flight<E, F: FnOnce() -> std::result::Result<Encoded, E>>(
        &self,
        store: &Store,
        key: &Key,
        wait: bool,
        compute: F,
    ) -> Flown<std::result::Result<Encoded, E>, F> {
        let Some(engine) = store.engine() else {
            return Flown::Done(compute(), Source::Computed);
        };
        if crate::key::call::uncacheable(key) {
            return Flown::Done(compute(), Source::Computed);
        }
        let memory = self.memory();
        if let Some(v) = memory.and_then(|m| m.get::<Encoded>("", key.as_bytes())) {
            return Flown::Done(Ok(v), Source::Stored);
        }
        self.rt.register(engine, key);
        let call = Foreign::<E> {
            f: self,
            engine,
            key,
            err: std::marker::PhantomData,
        };
        let flown = match engine.compute_flight(key, &call, wait, compute) {
            Ok(f) => f,
            Err(never) => match never {},
        };
        if let (Flown::Done(Ok(v), _), Some(m)) = (&flown, memory) {
            m.put("", key.as_bytes(), v.clone());
        }
        flown
    }

    /// The stored result of `key`, if there is one that counts (a `ttl`
    /// may have passed), without computing anything; counted as a hit or
    /// a miss of the store.
    #[must_use]
    pub fn get(&self, store: &Store, key: &Key) -> Option<Encoded> {
        let engine = store.engine()?;
        let call = Foreign::<Infallible> {
            f: self,
            engine,
            key,
            err: std::marker::PhantomData,
        };
        match call.load(engine, key, true) {
            Ok(Some(Ok(v))) => Some(v),
            Ok(_) => None,
            Err(e) => {
                self.rt.report(key, &e);
                None
            }
        }
    }

    /// Stores `value` as the result of `key` in place of any stored one
    /// (`recompute`), with `took` as its cost.
    pub fn put(&self, store: &Store, key: &Key, value: &Encoded, took: Duration) {
        let Some(engine) = store.engine() else { return };
        if crate::key::call::uncacheable(key) {
            return;
        }
        let call = Foreign::<Infallible> {
            f: self,
            engine,
            key,
            err: std::marker::PhantomData,
        };
        engine.store_computed(key, &call, &Ok(value.clone()), took);
        if let Some(m) = self.memory() {
            m.put("", key.as_bytes(), value.clone());
        }
    }

    /// The in-process tier (`Options::memory`), looked up by key: a hit
    /// skips the store's lookup. Not with a `ttl`, whose freshness the
    /// stored stamp decides.
    fn memory(&self) -> Option<&super::memory::Memory> {
        (self.rt.ttl_ms() == 0)
            .then(|| self.rt.memory_tier())
            .flatten()
    }

    /// Whether `key`'s result is stored, and still fresh under the
    /// function's `ttl` (an expired one is computed again by the next call,
    /// so it is not cached). Counts as neither hit nor miss.
    #[must_use]
    pub fn is_cached(&self, store: &Store, key: &Key) -> bool {
        let Some(engine) = store.engine() else {
            return false;
        };
        if self.rt.ttl_ms() == 0 {
            return store.contains(key);
        }
        let call = Foreign::<Infallible> {
            f: self,
            engine,
            key,
            err: std::marker::PhantomData,
        };
        matches!(call.load(engine, key, false), Ok(Some(Ok(_))))
    }

    /// Removes every stored result of this function, of every version of
    /// its code; returns how many there were.
    ///
    /// # Errors
    ///
    /// As [`Store::remove`].
    pub fn clear(&self, store: &Store) -> Result<u64> {
        self.rt.forget();
        let tag = self.rt.foreign_base().tag();
        match store.engine() {
            Some(e) => e.remove_matching(|k| crate::key::call::has_tag(k, tag)),
            None => Ok(0),
        }
    }

    /// The figures of this function's results in `store`.
    #[must_use]
    pub fn stats(&self, store: &Store) -> FunctionStats {
        let base = self.rt.foreign_base();
        store.engine().map_or_else(FunctionStats::default, |e| {
            e.function_stats(base.tag(), base.code())
        })
    }
}

/// The key of one call, being fed its arguments' canonical encoding.
pub struct CallKey(KeyBuilder);

impl CallKey {
    /// Feeds the next bytes of the encoding (large ones are hashed on
    /// several threads with the `sweep` feature).
    pub fn feed(&mut self, bytes: &[u8]) {
        self.0.encoded(bytes);
    }

    /// The key.
    #[must_use]
    pub fn finish(self) -> Key {
        self.0.finish()
    }
}

/// The key of one value, being fed its canonical encoding: what
/// [`Key::of`] gives for a Rust value with the same encoding, so a binding's
/// `key(value)` (Python's `memo.key`) names the same key as Rust's.
///
/// # Examples
///
/// ```
/// use memo_core::Key;
/// use memo_core::protocol::ValueKey;
///
/// // 7_i64 is tag 5 followed by its 8 little-endian bytes.
/// let mut k = ValueKey::new();
/// k.feed(&[5]);
/// k.feed(&7_i64.to_le_bytes());
/// assert_eq!(k.finish(), Key::of(&7_i64));
/// ```
pub struct ValueKey(crate::key::canon::Hasher);

impl ValueKey {
    /// An empty value's key, ready to be fed.
    #[must_use]
    pub fn new() -> ValueKey {
        ValueKey(crate::key::canon::Hasher::new())
    }

    /// Feeds the next bytes of the encoding.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// The key.
    #[must_use]
    pub fn finish(self) -> Key {
        let key = self.0.finish();
        crate::key::call::key_of_made();
        key
    }
}

impl Default for ValueKey {
    fn default() -> ValueKey {
        ValueKey::new()
    }
}

/// Bytes a value with a `ttl` starts with: the Unix milliseconds it was
/// computed at.
const STAMP: usize = 8;

/// A foreign call as the engine's single flight sees it: values are the
/// binding's bytes, or the body's error `E` (returned, not stored).
struct Foreign<'a, E> {
    f: &'a Function,
    engine: &'a Engine,
    key: &'a Key,
    err: std::marker::PhantomData<fn() -> E>,
}

impl<E> Call for Foreign<'_, E> {
    type Out = std::result::Result<Encoded, E>;
    type Stop = Infallible;

    fn load(&self, engine: &Engine, key: &Key, count: bool) -> Result<Option<Self::Out>> {
        // A binding's value (a Rust function's under the same key cannot
        // be one: the language is in the key), as `Direct` loads it.
        let Some(Ok(v)) = Direct::<E>::default().load(engine, key, count)? else {
            return Ok(None);
        };
        let ttl = self.f.rt.ttl_ms();
        if ttl == 0 {
            return Ok(Some(Ok(v)));
        }
        let Held::Mapped(bytes) = v.bytes else {
            return Ok(None);
        };
        let Some(at) = bytes.get(..STAMP) else {
            return Ok(None);
        };
        let mut word = [0; STAMP];
        word.copy_from_slice(at);
        let age = crate::time::unix_now_ms().saturating_sub(u64::from_le_bytes(word));
        Ok((age < ttl).then(|| bytes.skip(STAMP)).flatten().map(|b| {
            Ok(Encoded {
                codec: v.codec,
                bytes: Held::Mapped(b),
                views: false,
            })
        }))
    }

    fn store(&self, engine: &Engine, key: &Key, out: &Self::Out, cost: u32) -> Result<bool> {
        let direct = Direct::<E>::with(self.f.rt.compression());
        if self.f.rt.ttl_ms() == 0 {
            return direct.store(engine, key, out, cost);
        }
        let Ok(v) = out else { return Ok(false) };
        let mut stamped = Vec::with_capacity(STAMP + v.len());
        stamped.extend_from_slice(&crate::time::unix_now_ms().to_le_bytes());
        stamped.extend_from_slice(v);
        let stamped = Encoded::new(v.codec, stamped).views(v.views);
        direct.store(engine, key, &Ok(stamped), cost)
    }

    fn min_cost_us(&self) -> u64 {
        self.f.rt.min_cost_us()
    }

    fn computing(&self) {
        self.f.rt.missed(self.engine, self.key);
    }

    fn lookup_failed(&self, e: Error) -> std::result::Result<(), Infallible> {
        self.f.rt.report(self.key, &e);
        Ok(())
    }

    fn store_failed(&self, e: &Error) {
        self.f.rt.report(self.key, e);
    }
}

/// The value a binding stored under `key` itself (not as a function's
/// result: Python's `Store.get`), if there is one; a value of memo's own
/// codecs (a Rust program's) is not one. As [`Store::get`], a local miss
/// asks the remote tier.
///
/// # Errors
///
/// A file of the store could not be read.
pub fn load(store: &Store, key: &Key) -> Result<Option<Encoded>> {
    let Some(engine) = store.engine() else {
        return Ok(None);
    };
    Ok(engine
        .find(key, true)?
        .filter(|(_, codec)| FOREIGN_CODECS.contains(codec))
        .map(|(bytes, codec)| Encoded {
            codec,
            bytes: Held::Mapped(bytes),
            views: false,
        }))
}

/// Installs in the local store every value fetched from a remote tier and
/// still waiting to be installed, in every store of this process. A remote
/// hit installs its value in the background, and a process's normal exit
/// installs what is left; a binding whose processes can end without
/// `exit` calls this first (Python's `multiprocessing` children end with
/// `os._exit`).
///
/// # Examples
///
/// ```
/// // Nothing queued: returns at once.
/// memo_core::protocol::settle_installs();
/// ```
pub fn settle_installs() {
    crate::store::settle_all_installs();
}

/// Stores `value` under `key` (Python's `Store.put`); as [`Store::put`],
/// written through to the remote tier.
///
/// # Errors
///
/// As [`Store::put`]; a codec id outside [`FOREIGN_CODECS`].
pub fn save(store: &Store, key: &Key, value: &Encoded) -> Result<()> {
    let Some(engine) = store.engine() else {
        return Ok(());
    };
    Direct::<Infallible>::default().store(engine, key, &Ok(value.clone()), 0)?;
    engine.write_through(key, 0);
    Ok(())
}

/// The value stored under `key`, or `compute`'s, run once across threads,
/// processes and machines and stored (Python's `Store.get_or_compute`).
/// An `Err` of `compute` is returned and not stored.
///
/// # Errors
///
/// The outer error: the store could not be read (nothing was computed);
/// the inner one: `compute`'s.
pub fn load_or_compute<E>(
    store: &Store,
    key: &Key,
    compute: impl FnOnce() -> std::result::Result<Encoded, E>,
) -> Result<std::result::Result<Encoded, E>> {
    let Some(engine) = store.engine() else {
        return Ok(compute());
    };
    match engine.compute_flight(key, &Direct::<E>::default(), true, compute)? {
        Flown::Done(v, _) => Ok(v),
        Flown::Busy(compute) => Ok(compute()),
    }
}

/// A binding's value stored under a key of its own: no function, no ttl;
/// compressed as a function asked (`with`), else as the store says.
struct Direct<E>(std::marker::PhantomData<fn() -> E>, Option<Compression>);

impl<E> Default for Direct<E> {
    fn default() -> Self {
        Direct(std::marker::PhantomData, None)
    }
}

impl<E> Direct<E> {
    fn with(compress: Option<Compression>) -> Self {
        Direct(std::marker::PhantomData, compress)
    }
}

impl<E> Call for Direct<E> {
    type Out = std::result::Result<Encoded, E>;
    type Stop = Error;

    fn load(&self, engine: &Engine, key: &Key, count: bool) -> Result<Option<Self::Out>> {
        Ok(engine
            .lookup(key, count)?
            .filter(|(_, codec)| FOREIGN_CODECS.contains(codec))
            .map(|(bytes, codec)| {
                Ok(Encoded {
                    codec,
                    bytes: Held::Mapped(bytes),
                    views: false,
                })
            }))
    }

    fn store(&self, engine: &Engine, key: &Key, out: &Self::Out, cost: u32) -> Result<bool> {
        let Ok(v) = out else { return Ok(false) };
        check_codec(key, v.codec)?;
        let pack = self
            .1
            .map_or(Pack::Store { views: v.views }, Pack::Explicit);
        engine.put_encoded(key, v.codec, v, cost, pack)?;
        Ok(true)
    }

    fn lookup_failed(&self, e: Error) -> Result<()> {
        Err(e)
    }

    fn store_failed(&self, e: &Error) {
        tracing::warn!(error = %e, "memo: computed value could not be stored");
    }
}

/// A codec id a binding may store under.
fn check_codec(key: &Key, codec: u8) -> Result<()> {
    if FOREIGN_CODECS.contains(&codec) {
        return Ok(());
    }
    Err(Error::Codec {
        key: *key,
        message: format!(
            "codec id {codec} is not one of those reserved for bindings ({FOREIGN_CODECS:?})"
        ),
    })
}
