//! The runtime of `#[memoize]`: what the expanded code calls.
//!
//! Not a public API. memo-core pins memo-macros at an exact version, so this
//! module changes with the macro and nothing else may use it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError, RwLock};
pub use std::time::Instant;

/// What `<name>_lazy` returns: `key`, and how to load or compute its value.
pub fn lazy<T>(key: crate::Key, make: impl FnOnce() -> T + Send + 'static) -> crate::Lazy<T> {
    crate::Lazy::new(key, make)
}

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::codec::{Number, PodVec};
pub use crate::data_file::bytes_read as data_file_bytes_read;
pub use crate::key::call::KeyBuilder;
use crate::key::call::{Base, Identity, has_tag, tag_of};
pub use crate::schema::{ArgShape, Schema, ViaTraced, ViaValue, cached as schema_cached};
use crate::store::{Engine, FlightGuard, Flown, Led};
use crate::{Error, FunctionStats, Key, Result, Store};

/// One memoized function, as the macro saw it. `static` in the expansion.
pub struct Function {
    module: &'static str,
    name: &'static str,
    /// The function's tokens in a canonical text form (no comments, no
    /// formatting), made by the macro: its fingerprint.
    tokens: &'static str,
    version: &'static str,
    /// `#[memoize(ttl = ...)]` in milliseconds: older results are computed
    /// again; 0 for none.
    ttl: u64,
    /// `#[memoize(min_cost = ...)]` in microseconds: results that took
    /// less to compute are not stored; 0 for none.
    min_cost: u64,
    /// `#[memoize(uses(...))]`: the tracked helpers whose code the keys
    /// cover.
    uses: &'static [fn() -> &'static Track],
    /// `#[memoize(memory = N)]`: N, or 0.
    memory_cap: usize,
    memory: OnceLock<std::sync::Arc<crate::memory::Memory>>,
    /// The function's identity digest and tag, hashed once per process: for
    /// a free function here (one atomic load per call), for a method per
    /// `Self` type below.
    free: OnceLock<Base>,
    methods: RwLock<Vec<(&'static str, Base)>>,
    /// `Engine::serial` of the store, and the tag (as a number) of the
    /// function or method type, last registered in this process: the hit
    /// path checks them with two loads (`register`).
    registered: AtomicU64,
    registered_tag: AtomicU64,
}

impl Function {
    /// A function named `name` in `module` (`module_path!()`).
    #[must_use]
    pub const fn new(
        module: &'static str,
        name: &'static str,
        tokens: &'static str,
        version: &'static str,
    ) -> Function {
        Function {
            module,
            name,
            tokens,
            version,
            ttl: 0,
            min_cost: 0,
            uses: &[],
            memory_cap: 0,
            memory: OnceLock::new(),
            free: OnceLock::new(),
            methods: RwLock::new(Vec::new()),
            registered: AtomicU64::new(0),
            registered_tag: AtomicU64::new(0),
        }
    }

    /// `#[memoize(ttl = ...)]`: results older than `millis` milliseconds
    /// (since they were computed) are computed again and replaced. Such a
    /// function stores each result with its time, so its keys differ from
    /// the same function's without a ttl.
    #[must_use]
    pub const fn ttl(mut self, millis: u64) -> Function {
        self.ttl = millis;
        self
    }

    /// `#[memoize(min_cost = ...)]`: results that took less than `micros`
    /// microseconds to compute are returned and not stored.
    #[must_use]
    pub const fn min_cost(mut self, micros: u64) -> Function {
        self.min_cost = micros;
        self
    }

    /// `#[memoize(uses(...))]`: the code of these tracked helpers, and of
    /// the helpers they use in turn, goes into the keys.
    #[must_use]
    pub const fn uses(mut self, helpers: &'static [fn() -> &'static Track]) -> Function {
        self.uses = helpers;
        self
    }

    /// Empties this function's in-process tier, if it has one (the
    /// function's own `Function` made it; a helper's reaches it by name).
    fn forget(&self) {
        if self.memory_cap > 0 {
            crate::memory::of(self.module, self.name, self.memory_cap).clear();
        }
    }

    /// `#[memoize(memory = N)]`: up to `n` results kept decoded in this
    /// process, looked up by their calls' canonical bytes before any key
    /// is hashed (`memory.rs`).
    #[must_use]
    pub const fn memory(mut self, n: usize) -> Function {
        self.memory_cap = n;
        self
    }

    /// The first half of a synchronous call with the in-process tier in
    /// front (`#[memoize(memory = N)]`): the kept result of the call whose
    /// arguments `feed` gives, found by their canonical bytes without
    /// hashing them; else the [`Miss`] that [`Function::call_missed`]
    /// completes. Two halves, so the arguments are only borrowed here and
    /// the body (which may own them) is made only on a miss.
    ///
    /// The key builder is kept per thread and restarted: taking a fresh
    /// one's buffer from the thread and giving it back cost a quarter of a
    /// hit.
    pub fn remembered<O>(
        &self,
        store: &Store,
        self_ty: &'static str,
        schema: impl FnOnce() -> [u8; 32],
        feed: impl FnOnce(&mut KeyBuilder),
    ) -> core::result::Result<O, Miss>
    where
        O: Outcome,
        O::Stored: Clone + Send + Sync + 'static,
    {
        if store.engine().is_none() {
            // A disabled store caches nothing, in memory neither.
            return Err(Miss(None));
        }
        let memory = self
            .memory
            .get_or_init(|| crate::memory::of(self.module, self.name, self.memory_cap));
        let look = |b: &mut KeyBuilder| -> core::result::Result<O, Miss> {
            let call = b.fed(crate::memory::MAX_ARGS);
            if let Some(c) = call
                && let Some(v) = memory.get::<O::Stored>(self_ty, c)
                && self.fresh::<O>(&v)
            {
                return Ok(O::from_stored(v));
            }
            let call = call.map(<[u8]>::to_vec);
            Err(Miss(Some(Box::new((b.take_key(), call)))))
        };
        thread_local! {
            static BUILDER: std::cell::RefCell<Option<KeyBuilder>> =
                const { std::cell::RefCell::new(None) };
        }
        // By reference where it is kept (a free function's): copied
        // through the stack, its bytes stalled the restart on store
        // forwarding.
        let kept;
        let base = if self_ty.is_empty()
            && let Some(b) = self.free.get()
        {
            b
        } else {
            kept = self.base(self_ty, schema);
            &kept
        };
        let mut feed = Some(feed);
        let reused = BUILDER.try_with(|slot| {
            // Taken already: a `Serialize` impl of an argument made a
            // memoized call. That call gets a builder of its own.
            let mut slot = slot.try_borrow_mut().ok()?;
            let feed = feed.take()?;
            let b = match &mut *slot {
                Some(b) => {
                    b.restart(base);
                    b
                }
                None => slot.insert(KeyBuilder::new(*base)),
            };
            feed(b);
            Some(look(b))
        });
        if let Ok(Some(found)) = reused {
            return found;
        }
        // The thread's builder is in use (or gone, as the thread exits).
        let mut b = KeyBuilder::new(*base);
        if let Some(feed) = feed.take() {
            feed(&mut b);
        }
        look(&mut b)
    }

    /// The second half of a call with the in-process tier (see
    /// [`Function::remembered`]): [`Function::call`], whose stored result
    /// is then kept in memory.
    pub fn call_missed<O>(
        &self,
        store: &Store,
        self_ty: &'static str,
        miss: Miss,
        compute: impl FnOnce() -> O,
    ) -> O
    where
        O: Outcome,
        O::Stored: Clone + Send + Sync + 'static,
    {
        let Miss(Some(miss)) = miss else {
            return compute();
        };
        let (key, call) = *miss;
        if crate::data_file::uncacheable(&key) {
            return compute();
        }
        let out = self.call(store, &key, compute);
        if let (Some(c), Some(v), Some(memory)) = (call, out.stored(), self.memory.get()) {
            memory.put(self_ty, &c, v.clone());
        }
        out
    }

    fn identity<'a>(&'a self, self_ty: &'a str) -> Identity<'a> {
        Identity {
            module: self.module,
            self_ty,
            name: self.name,
            tokens: self.tokens,
            version: self.version,
            timed: self.ttl != 0,
            helpers: (!self.uses.is_empty()).then(|| helpers_digest(self.uses)),
            schema: None,
        }
    }

    /// Whether a stored value is still good: always, unless the function
    /// has a ttl and the value is older.
    fn fresh<O: Outcome>(&self, stored: &O::Stored) -> bool {
        self.ttl == 0
            || O::computed_at(stored)
                .is_none_or(|at| crate::clock::unix_now_ms().saturating_sub(at) < self.ttl)
    }

    /// The base of this function's calls (of `Self` type `self_ty` for a
    /// method); `schema` gives the digest of its types' shapes, and runs
    /// only when the base is first made in this process.
    #[inline]
    fn base(&self, self_ty: &'static str, schema: impl FnOnce() -> [u8; 32]) -> Base {
        if self_ty.is_empty()
            && let Some(b) = self.free.get()
        {
            return *b;
        }
        self.first_base(self_ty, schema)
    }

    /// `base` when it is not yet made, or of a method.
    #[inline(never)]
    fn first_base(&self, self_ty: &'static str, schema: impl FnOnce() -> [u8; 32]) -> Base {
        let with_schema = |self_ty| {
            Identity {
                schema: Some(schema()),
                ..self.identity(self_ty)
            }
            .base()
        };
        if self_ty.is_empty() {
            return *self.free.get_or_init(|| with_schema(""));
        }
        {
            let bases = self.methods.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, b)) = bases.iter().find(|(t, _)| *t == self_ty) {
                return *b;
            }
        }
        let base = with_schema(self_ty);
        let mut bases = self.methods.write().unwrap_or_else(PoisonError::into_inner);
        if !bases.iter().any(|(t, _)| *t == self_ty) {
            bases.push((self_ty, base));
        }
        base
    }

    /// Registers this function with `engine`'s registry, once per process
    /// per store and `Self` type (the engine keeps the set; the atomic
    /// keeps the common case to one load).
    fn register(&self, engine: &Engine, key: &Key) {
        let serial = engine.serial();
        let tag = tag_of(key);
        let tag_word = u64::from_le_bytes(tag);
        if self.registered.load(Ordering::Relaxed) == serial
            && self.registered_tag.load(Ordering::Relaxed) == tag_word
        {
            return;
        }
        let found = if let Some(b) = self.free.get().filter(|b| b.tag() == tag) {
            Some(("", *b))
        } else {
            let bases = self.methods.read().unwrap_or_else(PoisonError::into_inner);
            bases.iter().find(|(_, b)| b.tag() == tag).copied()
        };
        let Some((self_ty, base)) = found else {
            return;
        };
        let name = if self_ty.is_empty() {
            format!("{}::{}", self.module, self.name)
        } else {
            format!("{}::{}::{}", self.module, short_type(self_ty), self.name)
        };
        // Once per process and store for each tag: the engine keeps the
        // set, so a method called on several `Self` types in turn pays a
        // lookup in it, not a registration.
        engine.register(tag, base.code(), &name, self.version);
        self.registered_tag.store(tag_word, Ordering::Relaxed);
        self.registered.store(serial, Ordering::Relaxed);
    }

    /// The tag of this function's entries (see `key::call`).
    fn tag(&self, self_ty: &str) -> [u8; 8] {
        self.identity(self_ty).tag()
    }

    /// Starts the key of a call; `self_ty` is `type_name::<Self>()` for a
    /// method, else empty; `schema` the digest of the function's types'
    /// shapes (`Schema`), asked for once per process.
    #[must_use]
    #[inline]
    pub fn key(&self, self_ty: &'static str, schema: impl FnOnce() -> [u8; 32]) -> KeyBuilder {
        KeyBuilder::new(self.base(self_ty, schema))
    }

    /// A synchronous call: the stored result, or `compute` run once across
    /// threads and processes and its result stored. Never fails: store
    /// problems are reported and the body runs.
    pub fn call<O: Outcome>(&self, store: &Store, key: &Key, compute: impl FnOnce() -> O) -> O {
        let Some(engine) = store.engine() else {
            return compute();
        };
        if crate::data_file::uncacheable(key) {
            return compute();
        }
        self.register(engine, key);
        match self.flight(engine, key, true, compute) {
            Flown::Done(o, computed) => {
                if !computed {
                    tracing::debug!(function = self.name, module = self.module, %key, "memo: hit");
                }
                o
            }
            // A waiting flight is never busy; should one be, compute.
            Flown::Busy(compute) => compute(),
        }
    }

    /// One call's flight through the store: its lookup, its computation
    /// once across threads, processes and machines (without `wait`, a key
    /// another process computes comes back unrun), its store; store
    /// problems are reported and the body runs.
    fn flight<O: Outcome, F: FnOnce() -> O>(
        &self,
        engine: &Engine,
        key: &Key,
        wait: bool,
        compute: F,
    ) -> Flown<O, F> {
        let flown = engine.compute_flight(
            key,
            wait,
            compute,
            || self.missed(engine, key),
            &crate::store::Keep {
                fresh: |v: &O::Stored| self.fresh::<O>(v),
                min_cost_us: self.min_cost,
            },
            O::stored,
            O::from_stored,
            |e| {
                self.report(key, &e);
                Ok::<(), std::convert::Infallible>(())
            },
            |e| self.report(key, e),
        );
        match flown {
            Ok(f) => f,
            Err(never) => match never {},
        }
    }

    /// `<name>_map`: every call of `calls` (its key, and its body as a
    /// closure), answered in input order: stored results first, then the
    /// rest computed in parallel, each once across threads, processes and
    /// machines (`sweep.rs`). A body that panics does not stop the others:
    /// they are computed and stored, then the first panic goes on.
    pub fn sweep<O, F>(&self, store: &Store, calls: impl IntoIterator<Item = (Key, F)>) -> Vec<O>
    where
        O: Outcome + Send,
        F: FnOnce() -> O + Send,
    {
        let calls: Vec<(Key, F)> = calls.into_iter().collect();
        let Some(engine) = store.engine() else {
            return calls.into_iter().map(|(_, f)| f()).collect();
        };
        if let Some((key, _)) = calls.first() {
            self.register(engine, key);
        }
        let progress = crate::sweep::Progress::new(calls.len(), self.name);
        let mut keys = Vec::with_capacity(calls.len());
        let mut slots = Vec::with_capacity(calls.len());
        for (key, f) in calls {
            if crate::data_file::uncacheable(&key) {
                // Run, not stored (an unreadable data file).
                slots.push(crate::sweep::Slot::Done(f()));
                progress.done(true);
                keys.push(key);
                continue;
            }
            // Stored results first, from this machine: no waiting.
            let found = match engine.get_local::<O::Stored>(&key, true) {
                Ok(v) => v.filter(|v| self.fresh::<O>(v)),
                Err(e) => {
                    self.report(&key, &e);
                    None
                }
            };
            slots.push(match found {
                Some(v) => {
                    progress.done(false);
                    crate::sweep::Slot::Done(O::from_stored(v))
                }
                None => crate::sweep::Slot::Pending(f),
            });
            keys.push(key);
        }
        let flight = |i: usize, wait: bool, f: F| match self.flight(engine, &keys[i], wait, f) {
            done @ Flown::Done(_, computed) => {
                progress.done(computed);
                done
            }
            busy => busy,
        };
        crate::sweep::run(slots, &progress, &flight)
    }

    /// Counts a miss of this function (a computation) and says why it
    /// missed in the `memo: miss` debug event.
    fn missed(&self, engine: &Engine, key: &Key) {
        engine.count_miss(key);
        tracing::debug!(
            function = self.name,
            module = self.module,
            %key,
            reason = %engine.miss_reason(key),
            "memo: miss"
        );
    }

    /// An `async` call's lookup and single flight: `Ok` with the stored
    /// result, found at once or after waiting — without blocking the
    /// task's thread — for another task or process computing it; else
    /// `Err` with this task's [`Turn`] to compute it, held until the
    /// result is stored. `pick` is never called: it names the outcome type.
    pub async fn lead<R, O: Outcome>(
        &self,
        store: &Store,
        key: &Key,
        pick: impl FnOnce(R) -> O,
    ) -> core::result::Result<O, Turn> {
        let _ = pick;
        let Some(engine) = store.engine_arc() else {
            return Err(Turn(None));
        };
        if crate::data_file::uncacheable(key) {
            return Err(Turn(None));
        }
        self.register(engine, key);
        // The first look counts a hit or a miss; a value found after
        // waiting counts as a hit.
        let first = std::sync::atomic::AtomicBool::new(true);
        let look = || {
            let count = first.swap(false, Ordering::Relaxed);
            match engine.get::<O::Stored>(key, count) {
                Ok(Some(v)) if self.fresh::<O>(&v) => {
                    if !count {
                        engine.count_hit();
                    }
                    Some(v)
                }
                Ok(_) => None,
                Err(e) => {
                    self.report(key, &e);
                    None
                }
            }
        };
        match engine.async_flight(key, look).await {
            Led::Found(v) => {
                tracing::debug!(function = self.name, module = self.module, %key, "memo: hit");
                Ok(O::from_stored(v))
            }
            Led::Compute(guard) => {
                self.missed(engine, key);
                Err(Turn(Some(guard)))
            }
        }
    }

    /// Stores what an `async` call computed since `started`.
    pub fn save<O: Outcome>(&self, store: &Store, key: &Key, out: &O, started: Instant) {
        let (Some(engine), Some(v)) = (store.engine(), out.stored()) else {
            return;
        };
        if crate::data_file::uncacheable(key) {
            return;
        }
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if took < self.min_cost {
            return;
        }
        let cost = crate::format::cost_word(took);
        match engine.put_value(key, v, cost) {
            Ok(()) => engine.write_through(key, cost),
            Err(e) => self.report(key, &e),
        }
    }

    /// Runs `compute` whatever is stored, and stores its result in place of
    /// the old one.
    pub fn recompute<O: Outcome>(
        &self,
        store: &Store,
        key: &Key,
        compute: impl FnOnce() -> O,
    ) -> O {
        let started = Instant::now();
        let out = compute();
        self.save(store, key, &out, started);
        // The kept results are found by their calls' bytes, which this
        // call's key does not give back: all go, so none is older than the
        // store's.
        self.forget();
        out
    }

    /// Whether this call's result is stored.
    #[must_use]
    pub fn is_cached(&self, store: &Store, key: &Key) -> bool {
        store.contains(key)
    }

    /// Removes every stored result of this function, of every version of
    /// its code; returns how many there were.
    ///
    /// # Errors
    ///
    /// As [`Store::remove`].
    pub fn clear(&self, store: &Store, self_ty: &'static str) -> Result<u64> {
        self.forget();
        let tag = self.tag(self_ty);
        match store.engine() {
            Some(e) => e.remove_matching(|k| has_tag(k, tag)),
            None => Ok(0),
        }
    }

    /// Statistics of this function's stored results.
    #[must_use]
    pub fn stats(
        &self,
        store: &Store,
        self_ty: &'static str,
        schema: impl FnOnce() -> [u8; 32],
    ) -> FunctionStats {
        let base = self.base(self_ty, schema);
        store.engine().map_or_else(FunctionStats::default, |e| {
            e.function_stats(base.tag(), base.code())
        })
    }

    /// Reports a store problem through `tracing`: a warning the first time
    /// for each function and cause, a debug event after, so a broken store
    /// does not flood the log with a line per call.
    fn report(&self, key: &Key, e: &Error) {
        static SEEN: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);
        let cause = format!("{}::{}: {}", self.module, self.name, cause(e));
        let first = SEEN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cause);
        if first {
            tracing::warn!(
                function = self.name,
                module = self.module,
                %key,
                error = %e,
                "memo: store problem; the function is computed instead (reported once per cause)"
            );
        } else {
            tracing::debug!(function = self.name, module = self.module, %key, error = %e, "memo: store problem");
        }
    }
}

/// An `async` call's turn to compute (`Function::lead`): while it is held,
/// other tasks and processes asking for the same call wait; dropping it
/// (after the result is stored, or when the task fails or is cancelled)
/// lets them go on.
pub struct Turn(#[allow(dead_code, reason = "held for its drop")] Option<FlightGuard>);

/// A `#[track]` helper: its path, its code's canonical text, and the
/// tracked helpers it uses. A `static` in the expansion of `#[track]`.
pub struct Track {
    /// `module_path!()::name`.
    pub name: &'static str,
    /// The helper's tokens in the macro's canonical text form.
    pub tokens: &'static str,
    /// `#[track(uses(...))]`.
    pub uses: &'static [fn() -> &'static Track],
}

/// Implemented by `#[track]` for the empty enum it names after the helper,
/// which `uses(helper)` names.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a #[memo_core::track] function",
    label = "`uses` names functions marked #[memo_core::track]",
    note = "put #[memo_core::track] on the helper, so its code goes into the keys of the functions that use it"
)]
pub trait Tracked {
    /// The helper's record.
    fn track() -> &'static Track;
}

/// The digest of every helper `uses` reaches (each once, in name order, so
/// neither the order of `uses` nor cycles among helpers matter).
fn helpers_digest(uses: &[fn() -> &'static Track]) -> [u8; 32] {
    let mut seen = std::collections::BTreeMap::new();
    let mut todo: Vec<&'static Track> = uses.iter().map(|f| f()).collect();
    while let Some(t) = todo.pop() {
        if seen.insert(t.name, t.tokens).is_none() {
            todo.extend(t.uses.iter().map(|f| f()));
        }
    }
    let mut h = blake3::Hasher::new_derive_key("memo 2026-12 #[track] helpers v1");
    for (name, tokens) in seen {
        for part in [name, tokens] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    *h.finalize().as_bytes()
}

/// A type's name without its path: `Ridge<f64>` for `lab::model::Ridge<f64>`.
fn short_type(t: &str) -> &str {
    let head = t.find('<').map_or(t, |i| &t[..i]);
    head.rfind("::").map_or(t, |i| &t[i + 2..])
}

/// What makes two store errors "the same problem" for reporting: the kind
/// and the file, not the key.
fn cause(e: &Error) -> String {
    match e {
        Error::Io { path, source } => format!("io {:?} at {}", source.kind(), path.display()),
        Error::Corrupt { path, .. } => format!("corrupt {}", path.display()),
        Error::IncompatibleFormat { path, .. } => format!("format {}", path.display()),
        Error::Codec { .. } => "codec".to_owned(),
        Error::TooLarge { .. } => "too large".to_owned(),
        Error::Refused { path, .. } => format!("refused {}", path.display()),
        Error::Remote { url, .. } => format!("remote {url}"),
        Error::NoRemote { dir, .. } => format!("no remote {}", dir.display()),
        Error::Function { name, .. } => format!("function {name}"),
        Error::ReadOnly { dir } => format!("read-only {}", dir.display()),
    }
}

/// A call the in-process tier did not have: its key and the canonical
/// bytes of its arguments (when short enough to keep), or nothing when the
/// store caches nothing.
///
/// Boxed: a hit's `Result<O, Miss>` is then as small as its value (two
/// registers for a number), where an inline miss made every hit copy the
/// whole result through the stack, stalling on store forwarding.
pub struct Miss(Option<Box<(Key, Option<Vec<u8>>)>>);

/// What of a function's result is cached.
#[diagnostic::on_unimplemented(
    message = "the result of a #[memoize] function must be Serialize + DeserializeOwned",
    note = "for a `Result<T, E>`, only `T` needs to be"
)]
pub trait Outcome: Sized {
    /// The stored type.
    type Stored: Serialize + DeserializeOwned;
    /// What the function returns.
    type Value;
    /// What to store, if anything.
    fn stored(&self) -> Option<&Self::Stored>;
    /// A result from what was stored.
    fn from_stored(v: Self::Stored) -> Self;
    /// What the function returns.
    fn value(self) -> Self::Value;
    /// When a stored value was computed (Unix milliseconds), for outcomes
    /// that record it (`#[memoize(ttl = ...)]`).
    fn computed_at(_stored: &Self::Stored) -> Option<u64> {
        None
    }
}

/// A value with the time it was computed (Unix milliseconds): what a
/// function with `#[memoize(ttl = ...)]` stores, encoded as the pair
/// `(at, value)`.
#[derive(Clone)]
pub struct Stamped<V> {
    at: u64,
    value: V,
}

impl<V> Stamped<V> {
    fn now(value: V) -> Stamped<V> {
        Stamped {
            at: crate::clock::unix_now_ms(),
            value,
        }
    }
}

impl<V: Serialize> Serialize for Stamped<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (self.at, &self.value).serialize(s)
    }
}

impl<'de, V: serde::Deserialize<'de>> serde::Deserialize<'de> for Stamped<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (at, value) = <(u64, V)>::deserialize(d)?;
        Ok(Stamped { at, value })
    }
}

/// The whole return value is cached, with when it was computed.
pub struct Timed<V>(Stamped<V>);

impl<V: Serialize + DeserializeOwned> Outcome for Timed<V> {
    type Stored = Stamped<V>;
    type Value = V;
    fn stored(&self) -> Option<&Stamped<V>> {
        Some(&self.0)
    }
    fn from_stored(v: Stamped<V>) -> Self {
        Timed(v)
    }
    fn value(self) -> V {
        self.0.value
    }
    fn computed_at(stored: &Stamped<V>) -> Option<u64> {
        Some(stored.at)
    }
}

/// A `Result`'s `Ok` is cached with when it was computed.
pub struct TimedOk<T, E>(core::result::Result<Stamped<T>, E>);

impl<T: Serialize + DeserializeOwned, E> Outcome for TimedOk<T, E> {
    type Stored = Stamped<T>;
    type Value = core::result::Result<T, E>;
    fn stored(&self) -> Option<&Stamped<T>> {
        self.0.as_ref().ok()
    }
    fn from_stored(v: Stamped<T>) -> Self {
        TimedOk(Ok(v))
    }
    fn value(self) -> core::result::Result<T, E> {
        self.0.map(|s| s.value)
    }
    fn computed_at(stored: &Stamped<T>) -> Option<u64> {
        Some(stored.at)
    }
}

/// Chooses what of a result is cached by its type, however it is written
/// (`Result<T, E>`, `io::Result<T>`, `anyhow::Result<T>`, an alias): the
/// expansion calls `(&&&Pick::<R>::new()).wrap(value)`, and method lookup
/// finds [`ViaBulk`] (implemented for `&&Pick<Vec<P>>` of numbers `P`),
/// then [`ViaOk`] (for `&Pick<Result<T, E>>`, one reference nearer than
/// the last), then [`ViaWhole`] (for every `Pick<R>`). A generic `R` that
/// is only later a `Result` or a `Vec` of numbers is cached whole.
pub struct Pick<R>(core::marker::PhantomData<fn() -> R>);

impl<R> Default for Pick<R> {
    fn default() -> Pick<R> {
        Pick::new()
    }
}

impl<R> Pick<R> {
    /// The chooser for results of type `R`.
    #[must_use]
    pub const fn new() -> Pick<R> {
        Pick(core::marker::PhantomData)
    }
}

/// What a result of some type stores, as a type: `Pick::stored` gives it
/// to `Storable::check` (the expansion's check of the result type).
pub struct StoredAs<T>(core::marker::PhantomData<fn() -> T>);

/// A vector of numbers is stored as its bytes (`codec::PodVec`): a hit is
/// one copy instead of a decode per element. Nearest of the three (the
/// expansion calls `(&&&Pick::<R>::new())`), so it wins for `Vec<u8>`,
/// `Vec<f64>`, ... With a ttl, it is stored whole.
pub trait ViaBulk<P: Number> {
    /// `r`, to be stored as bytes.
    fn wrap(&self, r: Vec<P>) -> Bulk<P>;
    /// `r`, to be cached whole with when it was computed.
    fn wrap_timed(&self, r: Vec<P>) -> Timed<Vec<P>>;
    /// What is stored: the bytes of the vector.
    fn stored(&self) -> StoredAs<PodVec<P>> {
        StoredAs(core::marker::PhantomData)
    }
}

impl<P: Number> ViaBulk<P> for &&Pick<Vec<P>> {
    fn wrap(&self, r: Vec<P>) -> Bulk<P> {
        Bulk(PodVec(r))
    }
    fn wrap_timed(&self, r: Vec<P>) -> Timed<Vec<P>> {
        Timed(Stamped::now(r))
    }
}

/// A `Result` whose `Ok` is a vector of numbers: `Ok` only, stored as its
/// bytes (as [`ViaBulk`]).
pub trait ViaBulkOk<P: Number, E> {
    /// `r`, to be cached `Ok`-only, as bytes.
    fn wrap(&self, r: core::result::Result<Vec<P>, E>) -> BulkOk<P, E>;
    /// `r`, to be cached `Ok`-only with when it was computed.
    fn wrap_timed(&self, r: core::result::Result<Vec<P>, E>) -> TimedOk<Vec<P>, E>;
    /// What is stored: the bytes of the `Ok` vector.
    fn stored(&self) -> StoredAs<PodVec<P>> {
        StoredAs(core::marker::PhantomData)
    }
}

impl<P: Number, E> ViaBulkOk<P, E> for &&Pick<core::result::Result<Vec<P>, E>> {
    fn wrap(&self, r: core::result::Result<Vec<P>, E>) -> BulkOk<P, E> {
        BulkOk(r.map(PodVec))
    }
    fn wrap_timed(&self, r: core::result::Result<Vec<P>, E>) -> TimedOk<Vec<P>, E> {
        TimedOk(r.map(Stamped::now))
    }
}

/// A `Result`'s `Ok` vector of numbers, stored as its bytes.
pub struct BulkOk<P, E>(core::result::Result<PodVec<P>, E>);

impl<P: Number, E> Outcome for BulkOk<P, E> {
    type Stored = PodVec<P>;
    type Value = core::result::Result<Vec<P>, E>;
    fn stored(&self) -> Option<&PodVec<P>> {
        self.0.as_ref().ok()
    }
    fn from_stored(v: PodVec<P>) -> Self {
        BulkOk(Ok(v))
    }
    fn value(self) -> core::result::Result<Vec<P>, E> {
        self.0.map(|v| v.0)
    }
}

/// A vector of numbers, stored as its bytes.
pub struct Bulk<P>(PodVec<P>);

impl<P: Number> Outcome for Bulk<P> {
    type Stored = PodVec<P>;
    type Value = Vec<P>;
    fn stored(&self) -> Option<&PodVec<P>> {
        Some(&self.0)
    }
    fn from_stored(v: PodVec<P>) -> Self {
        Bulk(v)
    }
    fn value(self) -> Vec<P> {
        self.0.0
    }
}

/// A `Result` caches its `Ok` only (see [`Pick`]).
pub trait ViaOk<R> {
    /// The `Ok` type.
    type Ok;
    /// The error type.
    type Err;
    /// `r`, to be cached `Ok`-only.
    fn wrap(&self, r: R) -> OkOnly<R>;
    /// `r`, to be cached `Ok`-only with when it was computed.
    fn wrap_timed(&self, r: R) -> TimedOk<Self::Ok, Self::Err>;
    /// What is stored: the `Ok` type.
    fn stored(&self) -> StoredAs<Self::Ok> {
        StoredAs(core::marker::PhantomData)
    }
}

impl<T, E> ViaOk<core::result::Result<T, E>> for &Pick<core::result::Result<T, E>> {
    type Ok = T;
    type Err = E;
    fn wrap(&self, r: core::result::Result<T, E>) -> OkOnly<core::result::Result<T, E>> {
        OkOnly(r)
    }
    fn wrap_timed(&self, r: core::result::Result<T, E>) -> TimedOk<T, E> {
        TimedOk(r.map(Stamped::now))
    }
}

/// Any other result is cached whole (see [`Pick`]).
pub trait ViaWhole<R> {
    /// `r`, to be cached whole.
    fn wrap(&self, r: R) -> Whole<R>;
    /// `r`, to be cached whole with when it was computed.
    fn wrap_timed(&self, r: R) -> Timed<R>;
    /// What is stored: all of `R`.
    fn stored(&self) -> StoredAs<R> {
        StoredAs(core::marker::PhantomData)
    }
}

impl<R> ViaWhole<R> for Pick<R> {
    fn wrap(&self, r: R) -> Whole<R> {
        Whole(r)
    }
    fn wrap_timed(&self, r: R) -> Timed<R> {
        Timed(Stamped::now(r))
    }
}

/// The whole return value is cached.
pub struct Whole<V>(pub V);

impl<V: Serialize + DeserializeOwned> Outcome for Whole<V> {
    type Stored = V;
    type Value = V;
    fn stored(&self) -> Option<&V> {
        Some(&self.0)
    }
    fn from_stored(v: V) -> Self {
        Whole(v)
    }
    fn value(self) -> V {
        self.0
    }
}

/// A `Result`'s `Ok` is cached; an `Err` is returned and not stored.
pub struct OkOnly<R>(pub R);

impl<T: Serialize + DeserializeOwned, E> Outcome for OkOnly<core::result::Result<T, E>> {
    type Stored = T;
    type Value = core::result::Result<T, E>;
    fn stored(&self) -> Option<&T> {
        self.0.as_ref().ok()
    }
    fn from_stored(v: T) -> Self {
        OkOnly(Ok(v))
    }
    fn value(self) -> core::result::Result<T, E> {
        self.0
    }
}

/// Calls a body closure as `FnOnce`.
#[inline]
pub fn run<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// Fixes the output type of the `async` block that holds a body, so `?`
/// and `return` inside it are typed as in the function.
pub fn typed_future<R, F: core::future::Future<Output = R>>(f: F) -> F {
    f
}

/// The store of `#[memoize(dir = "...")]`: opened on first use, once per
/// directory and process whichever functions name it. If it cannot be
/// opened, it caches nothing and says why once.
pub struct StoreAt {
    dir: &'static str,
    store: OnceLock<&'static Store>,
}

impl StoreAt {
    /// The store at `dir` (relative to the working directory at first use).
    #[must_use]
    pub const fn new(dir: &'static str) -> StoreAt {
        StoreAt {
            dir,
            store: OnceLock::new(),
        }
    }

    /// The opened store.
    pub fn get(&self) -> &'static Store {
        self.store.get_or_init(|| open_shared(self.dir))
    }
}

fn open_shared(dir: &str) -> &'static Store {
    static OPEN: LazyLock<Mutex<HashMap<PathBuf, &'static Store>>> = LazyLock::new(Mutex::default);
    let path = std::path::absolute(dir).unwrap_or_else(|_| PathBuf::from(dir));
    let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(s) = open.get(&path) {
        return s;
    }
    let store = Store::builder(&path)
        .remote_from_env()
        .limits_from_env()
        .open()
        .or_else(|e| match e {
            // A bad remote setting costs the remote, not the cache.
            crate::Error::Remote { .. } => {
                crate::store::remote_off(&e);
                Store::builder(&path).limits_from_env().open()
            }
            e => Err(e),
        })
        .unwrap_or_else(|e| {
            crate::store::caching_off(&path, &e);
            Store::disabled()
        });
    // One per directory for the life of the process, like `Store::global`.
    let store: &'static Store = Box::leak(Box::new(store));
    open.insert(path, store);
    store
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::cell::Cell;

    use super::{Function, OkOnly, Whole};
    use crate::key::call::TAG_AT;
    use crate::{Key, Store};

    fn key(f: &Function, self_ty: &'static str, arg: u32) -> Key {
        let mut k = f.key(self_ty, || [0; 32]);
        k.arg(&arg);
        k.finish()
    }

    #[test]
    fn keys_carry_their_function_tag() {
        let f = Function::new("m", "f", "fn f ( x : u32 ) { }", "");
        let edited = Function::new("m", "f", "fn f ( x : u32 ) { x }", "");
        let bumped = Function::new("m", "f", "fn f ( x : u32 ) { }", "2");
        let other = Function::new("m", "g", "fn f ( x : u32 ) { }", "");
        let (a, b) = (key(&f, "", 1), key(&f, "", 2));
        assert_ne!(a, b);
        assert_eq!(a, key(&f, "", 1), "cached bases give the same key");
        assert_eq!(a.as_bytes()[TAG_AT..], b.as_bytes()[TAG_AT..]);
        for k in [key(&edited, "", 1), key(&bumped, "", 1)] {
            assert_ne!(k, a);
            assert_eq!(
                k.as_bytes()[TAG_AT..],
                a.as_bytes()[TAG_AT..],
                "same function, new code"
            );
        }
        for k in [key(&other, "", 1), key(&f, "m::Model", 1)] {
            assert_ne!(k.as_bytes()[TAG_AT..], a.as_bytes()[TAG_AT..]);
        }
        assert_ne!(a, Key::of(&1_u32));
    }

    #[test]
    fn an_undecodable_entry_is_recomputed_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let f = Function::new("m", "f", "", "");
        let k = key(&f, "", 1);
        // What an older build of the function stored, of another type
        // (bytes that are not UTF-8, so not a `String`).
        store.put(&k, &vec![0xff_u8, 0xfe, 0xfd]).unwrap();
        let runs = Cell::new(0);
        let compute = || {
            runs.set(runs.get() + 1);
            Whole(String::from("fresh"))
        };
        assert_eq!(f.call(&store, &k, compute).0, "fresh");
        assert_eq!(f.call(&store, &k, compute).0, "fresh");
        assert_eq!(runs.get(), 1);
    }

    /// Counts warnings, and other events (for tests of what memo reports).
    pub(crate) struct Count(pub(crate) std::sync::Arc<[std::sync::atomic::AtomicUsize; 2]>);

    impl tracing::Subscriber for Count {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, e: &tracing::Event<'_>) {
            let i = usize::from(*e.metadata().level() != tracing::Level::WARN);
            self.0[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn a_problem_is_reported_once_per_cause() {
        let counts: std::sync::Arc<[std::sync::atomic::AtomicUsize; 2]> = std::sync::Arc::default();
        let f = Function::new("m", "reported", "", "");
        let k = key(&f, "", 1);
        let io = |p: &str| crate::Error::io(p, std::io::Error::other("disk on fire"));
        tracing::subscriber::with_default(Count(counts.clone()), || {
            for _ in 0..5 {
                f.report(&k, &io("/a"));
            }
            f.report(&k, &io("/b"));
        });
        let [warn, other] = &*counts;
        let load =
            |c: &std::sync::atomic::AtomicUsize| c.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            (load(warn), load(other)),
            (2, 4),
            "one warning per file, debug after"
        );
    }

    #[test]
    fn errors_are_not_stored_and_disabled_stores_compute() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let f = Function::new("m", "f", "", "");
        let k = key(&f, "", 1);
        let failing = || OkOnly(Err::<u32, &str>("transient"));
        assert!(f.call(&store, &k, failing).0.is_err());
        assert!(!f.is_cached(&store, &k));
        assert_eq!(f.call(&store, &k, || OkOnly(Ok::<u32, &str>(5))).0, Ok(5));
        assert!(f.is_cached(&store, &k));
        assert_eq!(f.stats(&store, "", || [0; 32]).entries, 1);
        let off = Store::disabled();
        assert_eq!(f.call(&off, &k, || Whole(9_u8)).0, 9);
        assert_eq!(f.clear(&off, "").unwrap(), 0);
    }
}
