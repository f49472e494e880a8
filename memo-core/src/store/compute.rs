//! Single flight: a value computed once across the threads and processes
//! that ask for it at the same time, then stored.

use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::engine::Engine;
use crate::Key;
use crate::error::Error;
use crate::lock::{Flight, KeyLock};
use crate::remote::Waited;

/// A key's compute lock across processes, however it was taken.
enum Held<'a> {
    Range(#[allow(dead_code, reason = "held for its drop")] Flight<'a>),
    File(#[allow(dead_code, reason = "held for its drop")] KeyLock),
}

impl Engine {
    /// Takes `key`'s compute lock: a byte-range lock on `locks/flight`, or
    /// a lock file where the file system has no OFD locks.
    fn flight(&self, key: &Key) -> crate::Result<Held<'_>> {
        match &self.flights {
            Some(f) => f.acquire(key).map(Held::Range),
            None => KeyLock::acquire(&self.locks, key).map(Held::File),
        }
    }

    /// Takes `key`'s compute lock if no other process holds it.
    fn try_flight(&self, key: &Key) -> crate::Result<Option<Held<'_>>> {
        match &self.flights {
            Some(f) => f.try_acquire(key).map(|h| h.map(Held::Range)),
            None => KeyLock::try_acquire(&self.locks, key).map(|h| h.map(Held::File)),
        }
    }

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
        match self.compute_flight(
            key,
            true,
            compute,
            || {},
            &Keep {
                fresh: |_: &V| true,
                min_cost_us: 0,
            },
            kept,
            from,
            lookup_failed,
            store_failed,
        )? {
            Flown::Done(r, _) => Ok(r),
            // A waiting flight is never busy; should one be, computing is
            // what the caller asked for.
            Flown::Busy(compute) => Ok(compute()),
        }
    }

    /// As `compute_once`; without `wait`, a key another process (or, with
    /// a remote tier, another machine) is computing is left to it: its
    /// `compute` comes back unrun as `Busy`, for the caller to ask again
    /// later (a sweep takes the next input meanwhile). `before` runs just
    /// before `compute` does; `keep` says which stored values still count
    /// and which computed ones are worth storing.
    #[allow(
        clippy::too_many_arguments,
        reason = "compute_once's, whether to wait, a hook and what to keep"
    )]
    pub(crate) fn compute_flight<V, R, X, F>(
        &self,
        key: &Key,
        wait: bool,
        compute: F,
        before: impl FnOnce(),
        keep: &Keep<impl Fn(&V) -> bool>,
        kept: impl FnOnce(&R) -> Option<&V>,
        from: impl FnOnce(V) -> R,
        lookup_failed: impl Fn(Error) -> std::result::Result<(), X>,
        store_failed: impl FnOnce(&Error),
    ) -> std::result::Result<Flown<R, F>, X>
    where
        V: Serialize + DeserializeOwned,
        F: FnOnce() -> R,
    {
        let found = |count: bool| match self.get_local::<V>(key, count) {
            // A stale value (past its ttl) is a miss: computed again and
            // replaced.
            Ok(v) => Ok(v.filter(|v| (keep.fresh)(v))),
            Err(e) => lookup_failed(e).map(|()| None),
        };
        if let Some(v) = found(true)? {
            return Ok(Flown::Done(from(v), false));
        }
        let out = self.inflight.run(key, move || {
            // Another thread may have computed it while this one waited.
            if let Some(v) = found(false)? {
                self.count_hit();
                return Ok(Step::Found(v));
            }
            if self.read_only() {
                // Nothing computed here can be stored, so there is no
                // flight for others to wait on, and no value to put.
                self.say_not_stored();
                before();
                return Ok(Step::Computed(compute()));
            }
            // Then one computation across processes: whoever holds the key's
            // lock computes, the others wait and find the value. If the
            // lock cannot be had (a read-only directory), compute anyway.
            let flight = if wait {
                self.flight(key).map(Some)
            } else {
                self.try_flight(key)
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
                    && self.install_fetched(key, f).is_some()
                    && let Some(v) = found(false)?
                {
                    return Ok(Step::Found(v));
                }
            }
            before();
            let t = Instant::now();
            let r = compute();
            let took = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
            let cost = crate::format::cost_word(took);
            if let Some(v) = kept(&r).filter(|_| took >= keep.min_cost_us) {
                match self.put_value(key, v, cost) {
                    Ok(()) => self.write_through(key, cost),
                    Err(err) => store_failed(&err),
                }
            }
            // Released once the value is on the remote (or failed to be).
            drop(lease);
            Ok(Step::Computed(r))
        })?;
        Ok(match out {
            Step::Found(v) => Flown::Done(from(v), false),
            Step::Computed(r) => Flown::Done(r, true),
            Step::Busy(compute) => Flown::Busy(compute),
        })
    }
}

/// What a flight keeps: which stored values still count (`fresh`: all but
/// those past a ttl), and which computed values are stored (those that
/// took at least `min_cost_us` microseconds).
pub(crate) struct Keep<F> {
    pub fresh: F,
    pub min_cost_us: u64,
}

/// What a flight ended with, inside the in-process flight.
enum Step<V, R, F> {
    Found(V),
    Computed(R),
    Busy(F),
}

/// What `compute_flight` did.
pub(crate) enum Flown<R, F> {
    /// The value: found or fetched (`false`), or computed here (`true`).
    Done(R, bool),
    /// Another process or machine is computing it; `compute` was not run.
    Busy(F),
}
