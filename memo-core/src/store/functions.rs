//! The store's view of memoized functions: registering the one that runs
//! (`registry.rs` holds the files), listing them with their entries, and
//! selecting entries by function, staleness and age for `clear`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Engine;
use crate::clock;
use crate::error::{Error, Result};
use crate::format::hdr;
use crate::index::Index;
use crate::key::call::{code_of, tag_of};
use crate::registry::{Entry, Registered, Registry};
use crate::{FunctionInfo, FunctionStats, Key, Selection};

/// One live entry as a scan sees it.
pub(super) struct Scanned {
    pub key: Key,
    pub bytes: u64,
    /// What compression saves on it (`hdr::SAVED`'s share).
    pub saved: u64,
    pub hits: u64,
    pub cost_us: u64,
    /// The access clock at its last use, widened from the slot's 32 bits.
    pub used_tick: u64,
}

/// The functions a store knows: its registry (`fns/`), opened on first
/// use, and the functions this process registered with what the registry
/// said of each then.
#[derive(Default)]
pub(crate) struct Functions {
    registry: OnceLock<Option<Registry>>,
    registered: Mutex<HashMap<[u8; 8], Registered>>,
}

impl Engine {
    /// The registry, opened (and with `create`, made) on first use.
    pub(crate) fn registry(&self, create: bool) -> Option<&Registry> {
        let cell = &self.functions.registry;
        if let Some(r) = cell.get() {
            return r.as_ref();
        }
        match Registry::open(&self.files.root, &self.files.tmp, create) {
            Ok(Some(r)) => cell.get_or_init(|| Some(r)).as_ref(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "memo: the function registry is off for this store");
                cell.get_or_init(|| None).as_ref()
            }
        }
    }

    /// A number naming this opened store in this process.
    pub(crate) fn serial(&self) -> u64 {
        self.serial
    }

    /// Records that function `tag` (named `name`) runs with code mark
    /// `code`; the macro's runtime calls it once per process per function.
    pub(crate) fn register(&self, tag: [u8; 8], code: u32, name: &str, version: &str) {
        let mut seen = self
            .functions
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if seen.contains_key(&tag) {
            return;
        }
        let found = match self.registry(!self.read_only()) {
            // A read-only store's registry is read, not written: its misses
            // are still explained.
            Some(r) if self.read_only() => Registered::of(r.read(tag).as_ref(), code),
            Some(r) => r
                .record(tag, name, version, code, crate::time::unix_now())
                .unwrap_or_else(|e| {
                    tracing::debug!(function = name, error = %e, "memo: could not register the function");
                    Registered::default()
                }),
            None => Registered::default(),
        };
        seen.insert(tag, found);
    }

    /// Counts a computation of the function whose call has `key`.
    pub(crate) fn count_miss(&self, key: &Key) {
        if self.read_only() {
            return;
        }
        if let Some(r) = self.registry(true) {
            r.count_miss(tag_of(key));
        }
    }

    /// The likeliest reason a memoized call missed, as far as this store
    /// can know it.
    pub(crate) fn miss_reason(&self, key: &Key) -> String {
        let damaged = self
            .damaged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|d| d.key == *key);
        if damaged {
            return "its stored result was damaged (checksum mismatch), so it is computed again"
                .to_owned();
        }
        let reg = self
            .functions
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tag_of(key))
            .cloned()
            .unwrap_or_default();
        if let Some(old) = reg.changed_from {
            return format!(
                "the function's code or `version` changed since its entries were stored \
                 (code mark {old:08x} -> {:08x}): results of the old code are not reused",
                code_of(key)
            );
        }
        if !reg.known {
            return "the function has not run with this store before".to_owned();
        }
        let evicted = self.index().map_or(0, |i| i.word(hdr::EVICTIONS));
        if evicted > 0 {
            format!(
                "new arguments, or an entry evicted to keep the store within its limits ({evicted} evicted so far)"
            )
        } else {
            "new arguments: nothing was stored for this call with this code".to_owned()
        }
    }

    /// Every live entry, read lock-free (racing writers may make the list a
    /// moment old, never wrong about what an entry is). The table is split
    /// between up to four threads: a pass over 1M entries took 0.3 s on one.
    pub(super) fn scan(&self) -> Result<Vec<Scanned>> {
        self.settle_installs();
        let idx = self.index()?;
        let cap = idx.capacity();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let threads = if cap < 1 << 16 { 1 } else { threads };
        let chunk = cap.div_ceil(threads);
        let parts: Vec<Vec<Scanned>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let idx = &idx;
                    scope.spawn(move || {
                        let lo = t * chunk;
                        let hi = ((t + 1) * chunk).min(cap);
                        let mut out = Vec::new();
                        // The last thread takes the previous table's
                        // unmoved slots too, during a growth.
                        if t + 1 == threads {
                            self.scan_slots(
                                idx,
                                (lo..hi).chain(idx.slot_ids().skip(cap)),
                                &mut out,
                            );
                        } else {
                            self.scan_slots(idx, lo..hi, &mut out);
                        }
                        out
                    })
                })
                .collect();
            workers.into_iter().filter_map(|w| w.join().ok()).collect()
        });
        Ok(parts.into_iter().flatten().collect())
    }

    fn scan_slots(&self, idx: &Index, ids: impl Iterator<Item = usize>, out: &mut Vec<Scanned>) {
        let now = idx.word(hdr::TICK);
        let mut last = None;
        for slot in ids {
            let snap = idx.read(slot);
            if crate::format::loc::decode(snap.loc).is_none() {
                continue;
            }
            let Some(rec) = self.files.segs.peek(snap.loc, &mut last) else {
                continue;
            };
            let h = rec.header;
            if h.is_tombstone() || h.key.tag32() != snap.tag {
                continue;
            }
            let s = idx.slot(slot);
            let atime = s.atime.load(Ordering::Relaxed);
            // The slot keeps the clock's low 32 bits.
            let age = (now as u32).wrapping_sub(atime);
            let saved = match (rec.packed_raw, rec.blob) {
                (Some(raw), _) => raw.saturating_sub(u64::from(h.len)),
                (None, Some((id, len))) if crate::compress::is_compressed(h.codec) => {
                    super::account::saving(
                        h.codec,
                        self.files.blobs.packed_raw_len(&h.key, id),
                        len,
                    )
                }
                _ => 0,
            };
            out.push(Scanned {
                key: h.key,
                bytes: rec.size.saturating_add(rec.blob_file_size),
                saved,
                hits: u64::from(s.hits.load(Ordering::Relaxed)),
                cost_us: idx.cost_us(slot),
                used_tick: now.saturating_sub(u64::from(age)),
            });
        }
    }

    /// The figures of function `tag`'s entries, `code` being the code mark
    /// that runs now (`<name>_stats()`).
    pub(crate) fn function_stats(&self, tag: [u8; 8], code: u32) -> FunctionStats {
        let mut stats = FunctionStats::default();
        let Ok(idx) = self.index() else {
            return stats;
        };
        let mut last = 0;
        for s in self.scan().unwrap_or_default() {
            if tag_of(&s.key) == tag {
                add(&mut stats, &s, code_of(&s.key) != code);
                last = last.max(s.used_tick);
            }
        }
        if let Some(r) = self.registry(false) {
            stats.misses = r.misses().get(&tag).copied().unwrap_or(0);
            add_retired(&mut stats, r.retired().get(&tag).copied());
        }
        stats.last_used = used_at(&idx, last, stats.entries);
        stats
    }

    /// Notes what the entry in `slot` of `idx`, holding `key`, had earned,
    /// as it is evicted, replaced or removed: its function's hits and
    /// saved compute time outlive it (`Registry::retire`). Caller holds the
    /// writer lock, before the slot is reused.
    pub(super) fn retire_stats(&self, idx: &Index, slot: usize, key: &Key) {
        let hits = u64::from(idx.slot(slot).hits.load(Ordering::Relaxed));
        if hits == 0 || self.read_only() {
            return;
        }
        if let Some(r) = self.registry(true) {
            r.retire(tag_of(key), hits, idx.cost_us(slot).saturating_mul(hits));
        }
    }

    /// Every registered function with the figures of its entries; the
    /// entries of no registered function are summed in the second value.
    pub(crate) fn functions(&self) -> Result<(Vec<FunctionInfo>, FunctionStats)> {
        let (entries, misses, retired) = match self.registry(false) {
            Some(r) => (r.all()?.0, r.misses(), r.retired()),
            None => (Vec::new(), HashMap::new(), HashMap::new()),
        };
        let idx = self.index()?;
        let mut by_tag: HashMap<[u8; 8], (Entry, FunctionStats, u64)> = entries
            .into_iter()
            .map(|e| (e.tag, (e, FunctionStats::default(), 0)))
            .collect();
        let mut other = FunctionStats::default();
        let mut other_last = 0;
        for s in self.scan()? {
            let (stats, last, current) = match by_tag.get_mut(&tag_of(&s.key)) {
                Some((e, stats, last)) => (stats, last, Some(e.code)),
                None => (&mut other, &mut other_last, None),
            };
            add(stats, &s, current.is_some_and(|c| c != code_of(&s.key)));
            *last = (*last).max(s.used_tick);
        }
        let mut out: Vec<FunctionInfo> = by_tag
            .into_values()
            .map(|(e, mut stats, last)| {
                stats.misses = misses.get(&e.tag).copied().unwrap_or(0);
                add_retired(&mut stats, retired.get(&e.tag).copied());
                // The ring dates uses only as finely as writers record
                // time; the function's last registration is a use too
                // (its first call in that process hit or stored).
                stats.last_used = used_at(&idx, last, stats.entries).map(|t| t.max(at(e.last_run)));
                FunctionInfo {
                    name: e.name,
                    version: e.version,
                    first_run: at(e.first_run),
                    last_run: at(e.last_run),
                    code_since: at(e.code_since),
                    stats,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        other.last_used = used_at(&idx, other_last, other.entries);
        Ok((out, other))
    }

    /// The entries `sel` selects: their keys and what they hold.
    /// (`keep_keys`: whether the keys are wanted, or only the figures.)
    pub(crate) fn selected(
        &self,
        sel: &Selection,
        keep_keys: bool,
    ) -> Result<(Vec<Key>, FunctionStats)> {
        let registry = self.registry(false);
        let (entries, _) = match registry {
            Some(r) => r.all()?,
            None => (Vec::new(), Vec::new()),
        };
        let current: HashMap<[u8; 8], u32> = entries.iter().map(|e| (e.tag, e.code)).collect();
        let tag = match &sel.function {
            Some(name) => Some(resolve(&entries, name, &self.files.dir)?),
            None => None,
        };
        let idx = self.index()?;
        // Entries used at or after this tick are younger than the cutoff:
        // the time ring can only say "certainly older", so a doubtful entry
        // is kept.
        let cutoff = match sel.older_than {
            Some(age) => {
                match clock::tick_at(&idx, crate::time::unix_now().saturating_sub(age.as_secs())) {
                    Some(t) => Some(t),
                    None => return Ok((Vec::new(), FunctionStats::default())),
                }
            }
            None => None,
        };
        let mut keys = Vec::new();
        let mut stats = FunctionStats::default();
        for s in self.scan()? {
            let t = tag_of(&s.key);
            if tag.is_some_and(|want| want != t) {
                continue;
            }
            // Only an entry of a registered function can be judged stale.
            if sel.stale && current.get(&t).is_none_or(|&c| c == code_of(&s.key)) {
                continue;
            }
            if cutoff.is_some_and(|c| s.used_tick >= c) {
                continue;
            }
            let stale = current.get(&t).is_some_and(|&c| c != code_of(&s.key));
            add(&mut stats, &s, stale);
            if keep_keys {
                keys.push(s.key);
            }
        }
        Ok((keys, stats))
    }
}

/// Adds what a function's removed entries had earned (hits, saved
/// microseconds) to the figures of its live ones.
fn add_retired(stats: &mut FunctionStats, retired: Option<(u64, u64)>) {
    if let Some((hits, saved_us)) = retired {
        stats.hits = stats.hits.saturating_add(hits);
        stats.compute_saved += Duration::from_micros(saved_us);
    }
}

fn add(stats: &mut FunctionStats, s: &Scanned, stale: bool) {
    stats.entries += 1;
    stats.bytes = stats.bytes.saturating_add(s.bytes);
    stats.raw_bytes = stats
        .raw_bytes
        .saturating_add(s.bytes.saturating_add(s.saved));
    stats.hits = stats.hits.saturating_add(s.hits);
    stats.compute_time += Duration::from_micros(s.cost_us);
    stats.compute_saved += Duration::from_micros(s.cost_us.saturating_mul(s.hits));
    if stale {
        stats.stale_entries += 1;
        stats.stale_bytes = stats.stale_bytes.saturating_add(s.bytes);
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// When the access clock read `tick`, to the time ring's precision (the
/// latest recorded time at or before it).
fn used_at(idx: &Index, tick: u64, entries: u64) -> Option<SystemTime> {
    if entries == 0 {
        return None;
    }
    clock::time_at(idx, tick).map(at)
}

/// The registered function `name` names: its full path, or a unique
/// `::`-suffix of it.
fn resolve(entries: &[Entry], name: &str, dir: &std::path::Path) -> Result<[u8; 8]> {
    let exact: Vec<&Entry> = entries.iter().filter(|e| e.name == name).collect();
    let matches = if exact.is_empty() {
        entries
            .iter()
            .filter(|e| e.name.ends_with(&format!("::{name}")))
            .collect()
    } else {
        exact
    };
    match matches.as_slice() {
        [one] => Ok(one.tag),
        [] => Err(Error::Function {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            message: format!(
                "no memoized function of this store is named so; its functions: {}",
                list(entries.iter())
            ),
        }),
        many => Err(Error::Function {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            message: format!(
                "more than one function ends so: {}; give more of the path",
                list(many.iter().copied())
            ),
        }),
    }
}

fn list<'a>(entries: impl Iterator<Item = &'a Entry>) -> String {
    let names: Vec<&str> = entries.map(|e| e.name.as_str()).collect();
    if names.is_empty() {
        "none (no memoized function has run with it)".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use crate::{Key, Store};

    #[test]
    fn a_miss_says_why() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let e = store.engine().unwrap();
        let key = Key::of("k");
        let tag = crate::key::call::tag_of(&key);
        e.register(tag, 1, "lab::fit", "");
        // The whole first process that runs the function says so.
        assert!(e.miss_reason(&key).contains("has not run with this store"));
        // The next, with the same code: new arguments.
        let same = Store::open(t.path()).unwrap();
        same.engine().unwrap().register(tag, 1, "lab::fit", "");
        assert!(
            same.engine()
                .unwrap()
                .miss_reason(&key)
                .contains("new arguments")
        );

        // Another process, with other code.
        let other = Store::open(t.path()).unwrap();
        let o = other.engine().unwrap();
        o.register(tag, 2, "lab::fit", "");
        let why = o.miss_reason(&key);
        assert!(
            why.contains("code or `version` changed") && why.contains("00000001 -> "),
            "{why}"
        );

        // A damaged entry read as a miss.
        store.put(&key, &vec![7_u8; 100]).unwrap();
        let seg = t.path().join("seg/000001");
        let mut bytes = std::fs::read(&seg).unwrap();
        let at = bytes.windows(32).position(|w| w == key.as_bytes()).unwrap();
        bytes[at + 45] ^= 1;
        std::fs::write(&seg, &bytes).unwrap();
        let fresh = Store::open(t.path()).unwrap();
        assert_eq!(fresh.get::<Vec<u8>>(&key).unwrap(), None);
        assert!(
            fresh
                .engine()
                .unwrap()
                .miss_reason(&key)
                .contains("damaged")
        );
    }
}
