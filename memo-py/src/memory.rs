//! The in-process tier of `memoize(memory=N)`: up to N results kept as
//! the Python objects themselves, looked up by the canonical bytes of the
//! call's arguments (no hashing, no decoding), so a hit costs about what
//! `functools.lru_cache`'s does. As with `lru_cache`, the same object is
//! returned to every caller.

use rustc_hash::{FxBuildHasher, FxHashMap};

use pyo3::prelude::*;

/// What a call is looked up by: the arguments' canonical bytes when they
/// were small enough to keep, else `KEYED` and the call's key (no
/// encoding starts with `KEYED`: its first byte is a tag of the table).
pub(crate) type Slot = Vec<u8>;

/// The first byte of a slot that is a key.
pub(crate) const KEYED: u8 = 0xFF;

/// Up to `cap` results, least recently used evicted first.
pub(crate) struct Memory {
    cap: usize,
    tick: u64,
    map: FxHashMap<Slot, (Py<PyAny>, u64)>,
}

impl Memory {
    pub(crate) fn new(cap: usize) -> Memory {
        Memory {
            cap,
            tick: 0,
            map: FxHashMap::with_capacity_and_hasher(cap.min(1 << 16), FxBuildHasher),
        }
    }

    /// The object kept for `slot`.
    pub(crate) fn get(&mut self, py: Python<'_>, slot: &[u8]) -> Option<Py<PyAny>> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(slot).map(|(v, used)| {
            *used = tick;
            v.clone_ref(py)
        })
    }

    /// Keeps `value` for `slot`, evicting the least recently used eighth
    /// when full (one pass over the ticks per eighth, not per insert).
    pub(crate) fn put(&mut self, slot: Slot, value: Py<PyAny>) -> Vec<Py<PyAny>> {
        let mut dropped = Vec::new();
        if self.cap == 0 {
            dropped.push(value);
            return dropped;
        }
        if self.map.len() >= self.cap && !self.map.contains_key(&slot) {
            let mut ticks: Vec<u64> = self.map.values().map(|(_, t)| *t).collect();
            let n = (self.cap / 8).max(1).min(ticks.len());
            let (_, cut, _) = ticks.select_nth_unstable(n - 1);
            let cut = *cut;
            let old: Vec<Slot> = self
                .map
                .iter()
                .filter(|(_, (_, t))| *t <= cut)
                .map(|(k, _)| k.clone())
                .collect();
            for k in old {
                if let Some((v, _)) = self.map.remove(&k) {
                    dropped.push(v);
                }
            }
        }
        self.tick += 1;
        if let Some((v, _)) = self.map.insert(slot, (value, self.tick)) {
            dropped.push(v);
        }
        // Returned so the caller drops them after releasing the lock: a
        // dropped object's finaliser may run Python code.
        dropped
    }

    /// Forgets everything; the objects, to drop outside the lock.
    pub(crate) fn clear(&mut self) -> Vec<Py<PyAny>> {
        self.map.drain().map(|(_, (v, _))| v).collect()
    }
}
