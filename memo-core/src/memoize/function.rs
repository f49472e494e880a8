//! One memoized function at run time: its identity and key base, the
//! call (lookup, memory tier, single flight, store), sweeps, `async`
//! calls, and its per-function helpers (`recompute`, `clear`, `stats`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Instant;

use super::call::Typed;
use super::outcome::Outcome;
use super::track::{Track, helpers_digest};
use crate::key::call::{Base, Identity, KeyBuilder, has_tag, tag_of};
use crate::store::{Engine, FlightGuard, Flown, Led, Source};
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
    /// `#[memoize(compress = ...)]`: how its results are stored, arrays
    /// too; `None` for the store's setting.
    compress: Option<crate::Compression>,
    memory: OnceLock<std::sync::Arc<super::memory::Memory>>,
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
    /// The language of a function a binding memoizes (`protocol.rs`), or
    /// empty for Rust; with it, the helpers' digest the binding computed.
    language: &'static str,
    foreign_helpers: Option<[u8; 32]>,
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
            compress: None,
            memory: OnceLock::new(),
            free: OnceLock::new(),
            methods: RwLock::new(Vec::new()),
            registered: AtomicU64::new(0),
            registered_tag: AtomicU64::new(0),
            language: "",
            foreign_helpers: None,
        }
    }

    /// A function of another language (`protocol.rs`), whose tracked
    /// helpers' digest the binding computed.
    #[must_use]
    pub(crate) const fn foreign(
        mut self,
        language: &'static str,
        helpers: Option<[u8; 32]>,
    ) -> Function {
        self.language = language;
        self.foreign_helpers = helpers;
        self
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

    /// `#[memoize(compress = ...)]`: results are stored compressed this
    /// way where that pays (arrays included), whatever the store's setting.
    #[must_use]
    pub const fn compress(mut self, compression: crate::Compression) -> Function {
        self.compress = Some(compression);
        self
    }

    /// As `compress`, or the store's setting for `None` (a binding's
    /// options).
    #[must_use]
    pub(crate) const fn compressed(mut self, compression: Option<crate::Compression>) -> Function {
        self.compress = compression;
        self
    }

    /// The compression the function asked for, if it did.
    pub(crate) fn compression(&self) -> Option<crate::Compression> {
        self.compress
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
    pub(crate) fn forget(&self) {
        if self.memory_cap > 0 {
            super::memory::of(self.module, self.name, self.memory_cap).clear();
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
            .get_or_init(|| super::memory::of(self.module, self.name, self.memory_cap));
        let look = |b: &mut KeyBuilder| -> core::result::Result<O, Miss> {
            let call = b.fed(super::memory::MAX_ARGS);
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
        if crate::key::call::uncacheable(&key) {
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
            helpers: self
                .foreign_helpers
                .or_else(|| (!self.uses.is_empty()).then(|| helpers_digest(self.uses))),
            schema: None,
            language: self.language,
        }
    }

    /// Whether a stored value is still good: always, unless the function
    /// has a ttl and the value is older.
    pub(crate) fn fresh<O: Outcome>(&self, stored: &O::Stored) -> bool {
        self.ttl == 0
            || O::computed_at(stored)
                .is_none_or(|at| crate::time::unix_now_ms().saturating_sub(at) < self.ttl)
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
    pub(crate) fn register(&self, engine: &Engine, key: &Key) {
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
        let name = if !self.language.is_empty() {
            // Named as its own language names it: `lab.models.fit`.
            format!("{}.{}", self.module, self.name)
        } else if self_ty.is_empty() {
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

    /// `ttl` in milliseconds (0: none).
    pub(crate) fn ttl_ms(&self) -> u64 {
        self.ttl
    }

    /// `min_cost` in microseconds (0: none).
    pub(crate) fn min_cost_us(&self) -> u64 {
        self.min_cost
    }

    /// The in-process tier, if the function has one.
    pub(crate) fn memory_tier(&self) -> Option<&super::memory::Memory> {
        (self.memory_cap > 0).then(|| {
            &**self
                .memory
                .get_or_init(|| super::memory::of(self.module, self.name, self.memory_cap))
        })
    }

    /// The base of a function of another language (`protocol.rs`): its
    /// identity says which language, so it never shares keys or a tag with
    /// a Rust function of the same name.
    pub(crate) fn foreign_base(&self) -> Base {
        *self.free.get_or_init(|| self.identity("").base())
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
        if crate::key::call::uncacheable(key) {
            return compute();
        }
        self.register(engine, key);
        match self.flight(engine, key, true, compute) {
            Flown::Done(o, from) => {
                if from == Source::Stored {
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
        let call = Typed {
            f: self,
            engine,
            key,
            out: std::marker::PhantomData,
        };
        match engine.compute_flight(key, &call, wait, compute) {
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
        let progress = super::sweep::Progress::new(calls.len(), self.name);
        let mut keys = Vec::with_capacity(calls.len());
        let mut slots = Vec::with_capacity(calls.len());
        for (key, f) in calls {
            if crate::key::call::uncacheable(&key) {
                // Run, not stored (an unreadable data file).
                slots.push(super::sweep::Slot::Done(f()));
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
                    super::sweep::Slot::Done(O::from_stored(v))
                }
                None => super::sweep::Slot::Pending(f),
            });
            keys.push(key);
        }
        let flight = |i: usize, wait: bool, f: F| match self.flight(engine, &keys[i], wait, f) {
            done @ Flown::Done(_, from) => {
                progress.done(from == Source::Computed);
                done
            }
            busy => busy,
        };
        super::sweep::run(slots, &progress, &flight)
    }

    /// Counts a miss of this function (a computation) and says why it
    /// missed in the `memo: miss` debug event.
    pub(crate) fn missed(&self, engine: &Engine, key: &Key) {
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
        if crate::key::call::uncacheable(key) {
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
        let Some(engine) = store.engine() else {
            return;
        };
        if crate::key::call::uncacheable(key) {
            return;
        }
        let call = Typed {
            f: self,
            engine,
            key,
            out: std::marker::PhantomData,
        };
        engine.store_computed(key, &call, out, started.elapsed());
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
    pub(crate) fn report(&self, key: &Key, e: &Error) {
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

#[cfg(test)]
pub(crate) mod tests;
