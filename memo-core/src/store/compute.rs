//! Single flight: a value computed once across the threads and processes
//! that ask for it at the same time, then stored.

use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::engine::Engine;
use crate::Key;
use crate::error::Error;
use crate::lock::KeyLock;
use crate::remote::Waited;

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
        let found = |count: bool| match self.get_local::<V>(key, count) {
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
            // Then the remote tier: one round trip for the value, then a
            // lease, so other machines wait for this one's result (or this
            // one for theirs).
            let mut lease = None;
            if let Some(r) = self.remote() {
                let mut fetched = r.fetch(key);
                if fetched.is_none() {
                    match r.lease(key) {
                        Waited::Lease(l) => lease = Some(l),
                        Waited::Found(f) => fetched = Some(f),
                        Waited::Neither => {}
                    }
                }
                self.count_remote(fetched.is_some());
                if let Some(f) = fetched
                    && self.install_fetched(key, f).is_some()
                    && let Some(v) = found(false)?
                {
                    return Ok(Ok(v));
                }
            }
            let t = Instant::now();
            let r = compute();
            let cost = u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX);
            if let Some(v) = kept(&r) {
                match self.put_value(key, v, cost) {
                    Ok(()) => self.write_through(key, cost),
                    Err(err) => store_failed(&err),
                }
            }
            // Released once the value is on the remote (or failed to be).
            drop(lease);
            Ok(Err(r))
        })?;
        Ok(match out {
            Ok(v) => from(v),
            Err(r) => r,
        })
    }
}
