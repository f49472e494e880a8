//! The in-process tier of `#[memoize(memory = N)]`: up to N decoded
//! results of one function, looked up by the exact canonical bytes of a
//! call's arguments (with its `Self` type), in front of the store.
//!
//! Coherent by construction: a call's bytes determine its key, and a key's
//! value never changes except by `<name>_recompute` (which replaces the
//! entry here too) or `<name>_clear` (which empties this tier). Another
//! process recomputing the same key on purpose is the one way a value here
//! can differ from the store's, and then both are results of the same call.

use std::any::Any;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use crate::sync::{RwLock, unpoison};

/// Arguments longer than this (canonically encoded) skip the tier: hashing
/// them for the key costs little next to building them.
pub(crate) const MAX_ARGS: usize = 1024;

type Map = HashMap<Box<[u8]>, Entry, BuildHasherDefault<CallHasher>>;

/// Hashes a call's bytes with one-shot xxh3: a streaming xxh3 state (or
/// `SipHash`) costs more than the lookup it serves.
#[derive(Default)]
struct CallHasher(u64);

impl std::hash::Hasher for CallHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    fn write_usize(&mut self, n: usize) {
        // The length prefix of a slice: mixed in cheaply.
        self.0 ^= n as u64;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    used: AtomicU64,
}

/// The tiers of this process, by function (`module_path`, name): the
/// expansion gives the function and each of its helpers a `Function` of
/// their own, and `<name>_clear` and `<name>_recompute` must reach the
/// tier the function's calls fill.
pub(crate) fn of(module: &'static str, name: &'static str, cap: usize) -> Arc<Memory> {
    type ByFunction = HashMap<(&'static str, &'static str), Arc<Memory>>;
    static ALL: std::sync::LazyLock<std::sync::Mutex<ByFunction>> =
        std::sync::LazyLock::new(Default::default);
    ALL.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry((module, name))
        .or_insert_with(|| Arc::new(Memory::new(cap)))
        .clone()
}

/// Whether two `Self` type names are one: by address first, as they
/// usually are the same `type_name` string (a `memcmp` call per lookup
/// measured as much as the rest of a hit).
fn same(a: &str, b: &str) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

/// One function's in-memory results (one map per `Self` type of a
/// method; a free function has one).
pub(crate) struct Memory {
    cap: usize,
    maps: RwLock<Vec<(&'static str, Map)>>,
    clock: AtomicU64,
}

impl Memory {
    pub(crate) fn new(cap: usize) -> Memory {
        Memory {
            cap: cap.max(1),
            maps: RwLock::new(Vec::new()),
            clock: AtomicU64::new(0),
        }
    }

    /// The result kept for `call` of `Self` type `self_ty`, if it is here
    /// and of type `V`.
    pub(crate) fn get<V: Clone + 'static>(&self, self_ty: &str, call: &[u8]) -> Option<V> {
        let maps = unpoison(self.maps.read());
        let e = maps.iter().find(|(t, _)| same(t, self_ty))?.1.get(call)?;
        e.used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        e.value.downcast_ref::<V>().cloned()
    }

    /// Keeps `value` for `call`; when full, the least recently used eighth
    /// goes first.
    pub(crate) fn put<V: Send + Sync + 'static>(
        &self,
        self_ty: &'static str,
        call: &[u8],
        value: V,
    ) {
        let mut maps = unpoison(self.maps.write());
        let i = maps
            .iter()
            .position(|(t, _)| same(t, self_ty))
            .unwrap_or_else(|| {
                maps.push((self_ty, Map::default()));
                maps.len() - 1
            });
        let map = &mut maps[i].1;
        if map.len() >= self.cap && !map.contains_key(call) {
            let mut uses: Vec<u64> = map
                .values()
                .map(|e| e.used.load(Ordering::Relaxed))
                .collect();
            let drop_n = (self.cap / 8).max(1).min(uses.len());
            let (_, nth, _) = uses.select_nth_unstable(drop_n - 1);
            let cut = *nth;
            let mut dropped = 0;
            map.retain(|_, e| {
                let old = dropped < drop_n && e.used.load(Ordering::Relaxed) <= cut;
                dropped += usize::from(old);
                !old
            });
        }
        let used = AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed));
        map.insert(
            call.into(),
            Entry {
                value: Arc::new(value),
                used,
            },
        );
    }

    /// Forgets every result (`<name>_clear`).
    pub(crate) fn clear(&self) {
        unpoison(self.maps.write()).clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        unpoison(self.maps.read())
            .iter()
            .map(|(_, m)| m.len())
            .sum()
    }
}

/// The memory tier under the model checker (`--cfg loom`).
#[cfg(all(test, loom))]
mod loom_model {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::Memory;

    /// A reader racing a writer that fills the tier past its bound and a
    /// clear: a lookup gives the value put for that call or a miss, never
    /// another call's, and nobody waits forever.
    #[test]
    fn loom_lookups_race_puts_evictions_and_clears() {
        loom::model(|| {
            let m = std::sync::Arc::new(Memory::new(1));
            let w = {
                let m = m.clone();
                loom::thread::spawn(move || {
                    m.put("", &[1], 1_u32);
                    m.put("", &[2], 2_u32); // evicts call 1 (cap 1)
                })
            };
            let c = {
                let m = m.clone();
                loom::thread::spawn(move || m.clear())
            };
            for call in [1_u8, 2] {
                if let Some(v) = m.get::<u32>("", &[call]) {
                    assert_eq!(v, u32::from(call));
                }
            }
            w.join().unwrap();
            c.join().unwrap();
            assert!(m.len() <= 1, "the bound holds");
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::Memory;

    #[test]
    fn bounded_and_keeps_what_is_used() {
        let m = Memory::new(16);
        for i in 0..16_u32 {
            m.put("", &i.to_le_bytes(), i);
        }
        // Keep 0..4 in use, then overfill.
        for _ in 0..3 {
            for i in 0..4_u32 {
                assert_eq!(m.get::<u32>("", &i.to_le_bytes()), Some(i));
            }
        }
        // Ten more: the least recently used (4..16) make room.
        for i in 16..26_u32 {
            m.put("", &i.to_le_bytes(), i);
            assert!(m.len() <= 16);
        }
        for i in 0..4_u32 {
            assert_eq!(m.get::<u32>("", &i.to_le_bytes()), Some(i), "kept: in use");
        }
        assert_eq!(
            m.get::<u32>("", &4_u32.to_le_bytes()),
            None,
            "the oldest went first"
        );
        assert_eq!(m.get::<u32>("", &25_u32.to_le_bytes()), Some(25));
        assert_eq!(
            m.get::<u64>("", &25_u32.to_le_bytes()),
            None,
            "another type is a miss"
        );
        assert_eq!(
            m.get::<u32>("T", &25_u32.to_le_bytes()),
            None,
            "another Self type too"
        );
        m.clear();
        assert_eq!(m.get::<u32>("", &25_u32.to_le_bytes()), None);
    }
}
