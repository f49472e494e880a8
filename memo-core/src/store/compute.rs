//! Single flight: a value computed once across the threads and processes
//! that ask for it at the same time, then stored.

use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::engine::Engine;
use crate::Key;
use crate::dir::Dir;
use crate::error::Error;
use crate::lock::{Flight, Flights, Inflight, KeyLock};
use crate::remote::Waited;

/// A key's compute lock across processes, however it was taken.
enum Held<'a> {
    Range(#[allow(dead_code, reason = "held for its drop")] Flight<'a>),
    File(#[allow(dead_code, reason = "held for its drop")] KeyLock),
}

/// Single flight's state: the gates of this process's threads (`local`)
/// and tasks (`tasks`), and the locks across processes (`cross`: byte
/// ranges of `locks/flight`, or lock files in `locks` where the file system
/// has no OFD locks; `None` then).
pub(crate) struct SingleFlight {
    pub(super) local: Inflight,
    pub(super) tasks: super::flight_async::AsyncInflight,
    pub(super) cross: Option<Flights>,
    pub(super) locks: Dir,
}

impl SingleFlight {
    /// Takes `key`'s compute lock across processes, waiting for it.
    fn hold(&self, key: &Key) -> crate::Result<Held<'_>> {
        match &self.cross {
            Some(f) => f.acquire(key).map(Held::Range),
            None => KeyLock::acquire(&self.locks, key).map(Held::File),
        }
    }

    /// Takes `key`'s compute lock if no other process holds it.
    fn try_hold(&self, key: &Key) -> crate::Result<Option<Held<'_>>> {
        match &self.cross {
            Some(f) => f.try_acquire(key).map(|h| h.map(Held::Range)),
            None => KeyLock::try_acquire(&self.locks, key).map(|h| h.map(Held::File)),
        }
    }
}

impl Engine {
    /// `get_or_compute`: the stored result of `key`, or `compute` run once
    /// across threads, processes and machines and its result stored, as
    /// `call` says.
    pub(crate) fn compute_once<C: Call, F: FnOnce() -> C::Out>(
        &self,
        key: &Key,
        call: &C,
        compute: F,
    ) -> std::result::Result<C::Out, C::Stop> {
        Ok(match self.compute_flight(key, call, true, compute)? {
            Flown::Done(r, _) => r,
            // A waiting flight is never busy; should one be, computing is
            // what the caller asked for.
            Flown::Busy(compute) => compute(),
        })
    }

    /// One call's flight: its lookup, then its computation once across
    /// threads, processes and machines, then its store, as `call` says.
    /// Without `wait`, a key another process (or, with a remote tier,
    /// another machine) is computing is left to it: `compute` comes back
    /// unrun as `Busy`, for the caller to ask again later (a sweep takes
    /// the next input meanwhile).
    pub(crate) fn compute_flight<C: Call, F: FnOnce() -> C::Out>(
        &self,
        key: &Key,
        call: &C,
        wait: bool,
        compute: F,
    ) -> std::result::Result<Flown<C::Out, F>, C::Stop> {
        let found = |count: bool| match call.load(self, key, count) {
            Ok(v) => Ok(v),
            Err(e) => call.lookup_failed(e).map(|()| None),
        };
        if let Some(v) = found(true)? {
            return Ok(Flown::Done(v, Source::Stored));
        }
        let out = self.flight.local.run(key, move || {
            // Another thread may have computed it while this one waited.
            if let Some(v) = found(false)? {
                self.count_hit();
                return Ok(Step::Found(v));
            }
            if self.read_only() {
                // Nothing computed here can be stored, so there is no
                // flight for others to wait on, and no value to put.
                self.say_not_stored();
                call.computing();
                return Ok(Step::Computed(compute()));
            }
            // Then one computation across processes: whoever holds the key's
            // lock computes, the others wait and find the value. If the
            // lock cannot be had (a read-only directory), compute anyway.
            let flight = if wait {
                self.flight.hold(key).map(Some)
            } else {
                self.flight.try_hold(key)
            };
            let flight = match flight {
                Ok(Some(held)) => Some(held),
                Ok(None) => return Ok(Step::Busy(compute)),
                Err(err) => {
                    tracing::warn!(%key, error = %err, "memo: no compute lock; computing without");
                    None
                }
            };
            if flight.is_some()
                && let Some(v) = found(false)?
            {
                self.count_hit();
                return Ok(Step::Found(v));
            }
            // Then the remote tier: one round trip for the value, then a
            // lease, so other machines wait for this one's result (or this
            // one for theirs).
            let mut lease = None;
            if let Some(r) = self.remote() {
                let mut fetched = r.fetch(key);
                if fetched.is_none() {
                    match r.lease(key, wait) {
                        Waited::Lease(l) => lease = Some(l),
                        Waited::Found(f) => fetched = Some(f),
                        Waited::Neither => {}
                        Waited::Busy => return Ok(Step::Busy(compute)),
                    }
                }
                self.count_remote(fetched.is_some());
                if let Some(f) = fetched
                    && self.take_fetched(key, f).is_some()
                    && let Some(v) = found(false)?
                {
                    return Ok(Step::Found(v));
                }
            }
            call.computing();
            let started = Instant::now();
            let r = compute();
            self.store_computed(key, call, &r, started.elapsed());
            // Released once the value is on the remote (or failed to be).
            drop(lease);
            Ok(Step::Computed(r))
        })?;
        Ok(match out {
            Step::Found(v) => Flown::Done(v, Source::Stored),
            Step::Computed(r) => Flown::Done(r, Source::Computed),
            Step::Busy(compute) => Flown::Busy(compute),
        })
    }

    /// Stores what `call` keeps of `out`, which took `took` to compute:
    /// unless it took less than the call's `min_cost`, it is put locally
    /// with its cost and written through to the remote tier. A failure is
    /// the call's to report; the computed value stands. The one path by
    /// which a computed result is stored, for sync calls, `async` calls,
    /// sweeps and other languages' calls alike.
    pub(crate) fn store_computed<C: Call>(
        &self,
        key: &Key,
        call: &C,
        out: &C::Out,
        took: std::time::Duration,
    ) {
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        if took < call.min_cost_us() {
            return;
        }
        let cost = crate::format::cost_word(took);
        match call.store(self, key, out, cost) {
            Ok(true) => self.write_through(key, cost),
            Ok(false) => {}
            Err(err) => call.store_failed(&err),
        }
    }
}

/// What the engine's single flight asks of a call's runtime: how to load a
/// stored result (and whether it still counts), what of a computed one to
/// store, the least cost worth storing, and what a failure means. The
/// runtime of `#[memoize]` (`memoize/`), `Store::get_or_compute` and the
/// byte-level call protocol for other languages each implement it; the
/// engine knows none of them.
pub(crate) trait Call {
    /// A result as the caller returns it, computed or loaded.
    type Out;
    /// What ends a flight whose lookup failed (`Infallible` for a runtime
    /// that reports the failure and computes instead).
    type Stop;
    /// The stored result of `key` in the local store, if there is one that
    /// still counts (a ttl may have passed); `count` counts the lookup.
    fn load(&self, engine: &Engine, key: &Key, count: bool) -> crate::Result<Option<Self::Out>>;
    /// Stores what of `out` is kept (all of it, a `Result`'s `Ok`, nothing)
    /// with its cost word; `false` when nothing of it is kept.
    fn store(&self, engine: &Engine, key: &Key, out: &Self::Out, cost: u32) -> crate::Result<bool>;
    /// Computations faster than this many microseconds are not stored.
    fn min_cost_us(&self) -> u64 {
        0
    }
    /// Runs just before the body does (a memoized function counts a miss).
    fn computing(&self) {}
    /// A lookup failed: `Err` ends the flight with it, `Ok` computes.
    fn lookup_failed(&self, e: Error) -> std::result::Result<(), Self::Stop>;
    /// Storing a computed result failed; the result is returned anyway.
    fn store_failed(&self, e: &Error);
}

/// `Store::get_or_compute`'s call: any serde value, stored whole, lookup
/// errors returned.
pub(crate) struct Whole<V>(pub std::marker::PhantomData<fn() -> V>);

impl<V: Serialize + DeserializeOwned> Call for Whole<V> {
    type Out = V;
    type Stop = Error;
    fn load(&self, engine: &Engine, key: &Key, count: bool) -> crate::Result<Option<V>> {
        engine.get_local(key, count)
    }
    fn store(&self, engine: &Engine, key: &Key, out: &V, cost: u32) -> crate::Result<bool> {
        engine.put_value(key, out, cost).map(|()| true)
    }
    fn lookup_failed(&self, e: Error) -> crate::Result<()> {
        Err(e)
    }
    fn store_failed(&self, e: &Error) {
        tracing::warn!(error = %e, "memo: computed value could not be stored");
    }
}

/// `Store::get_or_try_compute`'s call: a `Result` whose `Ok` is stored.
pub(crate) struct OkOnly<V, E>(pub std::marker::PhantomData<fn() -> (V, E)>);

impl<V: Serialize + DeserializeOwned, E> Call for OkOnly<V, E> {
    type Out = std::result::Result<V, E>;
    type Stop = Error;
    fn load(&self, engine: &Engine, key: &Key, count: bool) -> crate::Result<Option<Self::Out>> {
        Ok(engine.get_local(key, count)?.map(Ok))
    }
    fn store(&self, engine: &Engine, key: &Key, out: &Self::Out, cost: u32) -> crate::Result<bool> {
        match out {
            Ok(v) => engine.put_value(key, v, cost).map(|()| true),
            Err(_) => Ok(false),
        }
    }
    fn lookup_failed(&self, e: Error) -> crate::Result<()> {
        Err(e)
    }
    fn store_failed(&self, e: &Error) {
        tracing::warn!(error = %e, "memo: computed value could not be stored");
    }
}

/// What a flight ended with, inside the in-process flight.
enum Step<V, R, F> {
    Found(V),
    Computed(R),
    Busy(F),
}

/// Where a flight's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// Found in the local store, or fetched from the remote tier.
    Stored,
    /// Computed by this call.
    Computed,
}

/// What `compute_flight` did.
pub(crate) enum Flown<R, F> {
    /// The value, and where it came from.
    Done(R, Source),
    /// Another process or machine is computing it; `compute` was not run.
    Busy(F),
}
