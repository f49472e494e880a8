//! The shared index: one header page and an open-addressing table of slots,
//! mapped by every process that opens the store.
//!
//! Readers probe without any lock and validate each slot with its sequence
//! number (a seqlock); writers publish under `LOCK`. A table that fills up
//! grows without stopping anyone (`grow.rs`): a larger table takes its
//! place as `index`, and each put moves a bounded run of the old one's
//! slots into it, while lookups consult the old table for keys not moved
//! yet. A table replaced whole (`clear`, a rebuild) gets `REPLACED` set in
//! its header, which readers check with one atomic load per lookup.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::error::Result;
use crate::format::{
    CAPACITY_STEP, INDEX_HEADER_LEN, MAX_CAPACITY, MIN_CAPACITY, SLOT_LEN, hdr, loc,
};
use crate::mmap::{SharedMap, Slot};

mod append;
pub(crate) mod boot;
mod current;
mod file;
mod grow;

pub(crate) use append::AppendPos;
pub(crate) use current::{Current, Table};

/// A consistent read of a slot's published fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snap {
    pub tag: u32,
    pub loc: u64,
    pub len: u32,
}

impl Snap {
    /// What a removed entry's slot holds.
    pub(crate) const TOMBSTONE: Snap = Snap {
        tag: 0,
        loc: loc::TOMBSTONE,
        len: 0,
    };
}

/// The outcome of a probe.
pub(crate) enum Probe<T> {
    /// `check` accepted a slot.
    Found(T),
    /// No slot accepted; `free` is where an insert would go (the first
    /// tombstone or the empty slot that ended the probe), if any.
    Absent { free: Option<usize> },
}

/// Load factor above which the table grows: linear probing at 0.8 still
/// averages 3 probes per hit and 13 per miss.
const MAX_LOAD_NUM: u64 = 4;
const MAX_LOAD_DEN: u64 = 5;
/// The load a table is built for: 0.6, so a growth adds a third and the
/// table stays between 0.6 and 0.8 full, 40 to 53 bytes of index per entry
/// (doubling left it between 0.4 and 0.8, up to 80). Measured at 10M puts:
/// 0.7 made twice as many growths, whose tables (prepared, populated, moved
/// into, written back) cost a third of the put rate; 0.6 costs none.
const BUILD_LOAD_NUM: u64 = 6;
const BUILD_LOAD_DEN: u64 = 10;

/// How long a reader waits for a slot whose writer is mid-publish. A live
/// writer keeps a slot odd for a handful of stores; one odd for longer most
/// likely belongs to a writer that died, and is read as it stands (see
/// [`Index::read`]).
const SPIN_LIMIT: u32 = 256;

/// A mapped index file.
pub(crate) struct Index {
    map: SharedMap,
    /// The file's name in its directory, and its path for messages.
    name: String,
    path: PathBuf,
    /// Slots in the table.
    cap: usize,
    /// A version 1 table: power-of-two capacity, homes by the tag's low
    /// bits. Version 2 homes are `tag * cap >> 32`, for any capacity.
    low_bits: bool,
    /// The table a growth is moving into this one, while it does (see
    /// `grow.rs`). Its slots are numbered after this table's own:
    /// `cap + i` is its slot `i`.
    prev: Option<Arc<Index>>,
    /// Mapped privately for a read-only store: the counters and access
    /// times that readers keep are not kept (a page written would stop
    /// following the file).
    read_only: bool,
}

impl Index {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The append position, for the appender.
    pub(crate) fn append_pos(&self) -> AppendPos<'_> {
        AppendPos(self)
    }

    /// Bytes of the index: its file (header and table, checked at open) and,
    /// while a growth moves it, the previous table's.
    pub(crate) fn file_len(&self) -> u64 {
        let own = (INDEX_HEADER_LEN + self.cap * SLOT_LEN) as u64;
        own + self.moving().map_or(0, |m| m.prev.file_len())
    }

    /// Slots in this table (not counting a previous one being moved).
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    fn header(&self) -> &[AtomicU64] {
        self.map.header()
    }

    /// A header word (see `format::hdr`).
    #[inline]
    pub(crate) fn word(&self, w: usize) -> u64 {
        self.header()[w].load(Ordering::Acquire)
    }

    /// Sets a header word; writers only, under `LOCK`.
    #[inline]
    pub(crate) fn set(&self, w: usize, v: u64) {
        self.header()[w].store(v, Ordering::Release);
    }

    /// Raises a header word to `v` if it is below (it only grows).
    #[inline]
    pub(crate) fn raise(&self, w: usize, v: u64) {
        self.header()[w].fetch_max(v, Ordering::AcqRel);
    }

    /// Adds to a header counter (hits and misses, from any process).
    #[inline]
    pub(crate) fn bump(&self, w: usize, by: u64) {
        if !self.read_only {
            self.header()[w].fetch_add(by, Ordering::Relaxed);
        }
    }

    /// Advances the access clock; its value for this access.
    #[inline]
    pub(crate) fn tick(&self) -> u32 {
        if self.read_only {
            return self.word(hdr::TICK) as u32;
        }
        self.header()[hdr::TICK].fetch_add(1, Ordering::Relaxed) as u32
    }

    /// Whether a newer index has replaced this one.
    #[inline]
    pub(crate) fn replaced(&self) -> bool {
        self.word(hdr::REPLACED) != 0
    }

    /// Whether this handle should be opened again: the file was replaced,
    /// or the growth it still maps the previous table for has ended.
    #[inline]
    pub(crate) fn stale(&self) -> bool {
        self.replaced() || (self.prev.is_some() && self.moving().is_none())
    }
}

impl Table for Index {
    #[inline]
    fn stale(&self) -> bool {
        Index::stale(self)
    }
}

impl Index {
    /// Slots taken (entries and tombstones), plus `extra`, as a fraction
    /// `num / den` of the table at most.
    pub(crate) fn fits(&self, extra: u64, num: u64, den: u64) -> bool {
        // Header words come from disk: saturate rather than trust them.
        let used = self
            .word(hdr::ENTRIES)
            .saturating_add(self.word(hdr::TOMBSTONES))
            .saturating_add(extra);
        used.saturating_mul(den) <= self.cap as u64 * num
    }

    /// Whether one more entry fits without passing the load limit.
    pub(crate) fn has_room(&self) -> bool {
        self.fits(1, MAX_LOAD_NUM, MAX_LOAD_DEN)
    }

    /// How many more entries fit below the load limit.
    pub(crate) fn room(&self) -> u64 {
        let used = self
            .word(hdr::ENTRIES)
            .saturating_add(self.word(hdr::TOMBSTONES));
        (self.cap as u64 * MAX_LOAD_NUM / MAX_LOAD_DEN).saturating_sub(used)
    }

    /// The capacity of a table built for `entries`: 0.6 full.
    pub(crate) fn capacity_for(entries: u64) -> u64 {
        // Counts may come from a damaged header: saturate, never overflow.
        let slots = entries.saturating_mul(BUILD_LOAD_DEN) / BUILD_LOAD_NUM + 1;
        slots
            .div_ceil(CAPACITY_STEP)
            .saturating_mul(CAPACITY_STEP)
            .clamp(MIN_CAPACITY, MAX_CAPACITY)
    }

    /// Where `tag`'s probe sequence starts.
    #[inline]
    fn home(&self, tag: u32) -> usize {
        if self.low_bits {
            tag as usize & (self.cap - 1)
        } else {
            ((u64::from(tag) * self.cap as u64) >> 32) as usize
        }
    }

    /// The slot after `i`, wrapping at the end of the table.
    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.cap { 0 } else { i + 1 }
    }

    #[inline]
    pub(crate) fn slot(&self, i: usize) -> &Slot {
        let own = self.map.slots();
        match (own.get(i), &self.prev) {
            (Some(s), _) => s,
            (None, Some(prev)) => prev.slot(i - self.cap),
            // Slot numbers come from this table's own probes and scans.
            (None, None) => &own[i % own.len()],
        }
    }

    /// Slot `i`'s fields: a consistent read, or, if its writer stays
    /// mid-publish (it died), the fields as they stand.
    ///
    /// A torn read is safe because no reader trusts a slot: `loc` is one
    /// atomic word naming a record, and the record is checked against the
    /// key and its checksum before it is used. The seqlock only saves work.
    #[inline]
    pub(crate) fn read(&self, i: usize) -> Snap {
        self.read_stable(i).unwrap_or_else(|| {
            let s = self.slot(i);
            Snap {
                tag: s.tag.load(Ordering::Acquire),
                loc: s.loc.load(Ordering::Acquire),
                len: s.len.load(Ordering::Acquire),
            }
        })
    }

    /// A consistent read of slot `i`, or `None` if its writer stays
    /// mid-publish (see `SPIN_LIMIT`).
    #[inline]
    pub(crate) fn read_stable(&self, i: usize) -> Option<Snap> {
        let s = self.slot(i);
        for spin in 0..SPIN_LIMIT {
            let s1 = s.seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let snap = Snap {
                    tag: s.tag.load(Ordering::Relaxed),
                    loc: s.loc.load(Ordering::Relaxed),
                    len: s.len.load(Ordering::Relaxed),
                };
                fence(Ordering::Acquire);
                if s.seq.load(Ordering::Relaxed) == s1 {
                    return Some(snap);
                }
            }
            if spin < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        None
    }

    /// Publishes new fields for slot `i`; writers only, under `LOCK`.
    pub(crate) fn write(&self, i: usize, snap: Snap) {
        let s = self.slot(i);
        // An odd value here was left by a writer that died mid-publish;
        // `recover` makes it even before anyone writes again.
        let seq = s.seq.load(Ordering::Relaxed) & !1;
        s.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        s.tag.store(snap.tag, Ordering::Relaxed);
        s.loc.store(snap.loc, Ordering::Relaxed);
        s.len.store(snap.len, Ordering::Relaxed);
        s.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// Sets the access statistics of a freshly written slot.
    /// The compute cost slot `i` records, in microseconds.
    pub(crate) fn cost_us(&self, i: usize) -> u64 {
        crate::format::cost_us(
            self.slot(i).cost.load(Ordering::Relaxed),
            self.word(hdr::COST_UNITS),
        )
    }

    /// Puts every slot's cost in the encoding of `format::cost_word`, once
    /// (a table written before it kept plain microseconds); writers only.
    pub(crate) fn convert_costs(&self) {
        if self.word(hdr::COST_UNITS) != 0 {
            return;
        }
        for i in self.slot_ids() {
            let c = &self.slot(i).cost;
            let w = c.load(Ordering::Relaxed);
            c.store(crate::format::cost_word(u64::from(w)), Ordering::Relaxed);
        }
        self.set(hdr::COST_UNITS, 1);
    }

    pub(crate) fn reset_stats(&self, i: usize, atime: u32, hits: u32, cost: u32) {
        let s = self.slot(i);
        s.atime.store(atime, Ordering::Relaxed);
        s.hits.store(hits, Ordering::Relaxed);
        s.cost.store(cost, Ordering::Relaxed);
    }

    /// Records a hit on slot `i`: lock-free and without a sequence change,
    /// since statistics are hints that a racing writer may overwrite.
    #[inline]
    pub(crate) fn touch(&self, i: usize, tick: u32) {
        if self.read_only {
            return;
        }
        let s = self.slot(i);
        s.hits.fetch_add(1, Ordering::Relaxed);
        s.atime.store(tick, Ordering::Relaxed);
    }

    /// Walks the probe sequence of `tag`, calling `check` on every live slot
    /// whose tag matches, until it returns `Some` or an empty slot ends the
    /// sequence. While a growth moves the previous table, a key it has not
    /// moved yet is looked for there first (`grow.rs` says why that order).
    #[inline]
    pub(crate) fn probe<T>(
        &self,
        tag: u32,
        mut check: impl FnMut(usize, Snap) -> Option<T>,
    ) -> Probe<T> {
        if let Some(m) = self.moving()
            && m.unmoved(tag)
            && let Probe::Found(t) = m.prev.probe_own(tag, self.cap, &mut check)
        {
            return Probe::Found(t);
        }
        self.probe_own(tag, 0, &mut check)
    }

    /// [`Index::probe`] in this table alone, its slots numbered from `base`.
    #[inline]
    fn probe_own<T>(
        &self,
        tag: u32,
        base: usize,
        check: &mut impl FnMut(usize, Snap) -> Option<T>,
    ) -> Probe<T> {
        let mut free = None;
        let mut i = self.home(tag);
        for _ in 0..self.cap {
            let snap = self.read(i);
            match snap.loc {
                loc::EMPTY => {
                    return Probe::Absent {
                        free: free.or(Some(base + i)),
                    };
                }
                loc::TOMBSTONE => {
                    free.get_or_insert(base + i);
                }
                _ if snap.tag == tag => {
                    if let Some(t) = check(base + i, snap) {
                        return Probe::Found(t);
                    }
                }
                _ => {}
            }
            i = self.next(i);
        }
        Probe::Absent { free }
    }

    /// Every slot that may hold an entry: this table's, then those of the
    /// previous table a growth has not moved yet.
    pub(crate) fn slot_ids(&self) -> impl Iterator<Item = usize> + '_ {
        let unmoved = self.moving().map(|m| m.unmoved_slots(self.cap));
        (0..self.cap).chain(unmoved.into_iter().flatten())
    }

    /// Every slot that names a record, with its fields: the pass that
    /// copying, scans, eviction and recounts all start from.
    pub(crate) fn live(&self) -> impl Iterator<Item = (usize, Snap)> + '_ {
        self.slot_ids()
            .map(|i| (i, self.read(i)))
            .filter(|(_, s)| loc::decode(s.loc).is_some())
    }

    /// Whether slot `i` is where its entry lives now: this table's, or the
    /// previous table's before the growth moved it.
    pub(crate) fn is_current(&self, i: usize) -> bool {
        i < self.cap || self.moving().is_some_and(|m| m.holds(i - self.cap))
    }

    /// Copies every live slot of `self` into the empty table `new`, with
    /// statistics; writers only, under `LOCK`.
    pub(crate) fn copy_into(&self, new: &Index) {
        let mut entries = 0;
        for (i, snap) in self.live() {
            if let Some(j) = new.insert_fresh(snap) {
                self.copy_stats(i, new, j);
                entries += 1;
            }
        }
        new.set(hdr::ENTRIES, entries);
    }

    /// Gives slot `j` of `to` the statistics of slot `i` of `self`.
    fn copy_stats(&self, i: usize, to: &Index, j: usize) {
        let s = self.slot(i);
        // Re-encoded: `self` may keep plain microseconds (`COST_UNITS`).
        to.reset_stats(
            j,
            s.atime.load(Ordering::Relaxed),
            s.hits.load(Ordering::Relaxed),
            crate::format::cost_word(self.cost_us(i)),
        );
    }

    /// Places `snap` in the first empty slot of its probe sequence in this
    /// table (not a tombstone: its count stays right); writers only.
    pub(crate) fn insert_fresh(&self, snap: Snap) -> Option<usize> {
        let mut j = self.home(snap.tag);
        for _ in 0..self.cap {
            if self.slot(j).loc.load(Ordering::Relaxed) == loc::EMPTY {
                self.write(j, snap);
                return Some(j);
            }
            j = self.next(j);
        }
        None
    }

    /// Slots a dead writer left mid-publish (odd sequence number), in this
    /// table and the previous one.
    pub(crate) fn torn_slots(&self) -> Vec<usize> {
        let odd = |t: &Index, base: usize| {
            let slots = t.map.slots();
            (0..slots.len())
                .filter(|&i| slots[i].seq.load(Ordering::Acquire) & 1 == 1)
                .map(|i| base + i)
                .collect::<Vec<_>>()
        };
        let mut torn = odd(self, 0);
        if let Some(prev) = &self.prev {
            torn.extend(odd(prev, self.cap));
        }
        torn
    }

    /// Ends a dead writer's publish of slot `i`: its fields stay if `keep`
    /// (they name a valid record of the right key), else it becomes a
    /// tombstone. Writers only, under `LOCK`.
    pub(crate) fn settle(&self, i: usize, keep: bool) {
        let s = self.slot(i);
        if !keep {
            s.loc.store(loc::TOMBSTONE, Ordering::Relaxed);
        }
        let seq = s.seq.load(Ordering::Relaxed);
        s.seq.store((seq | 1).wrapping_add(1), Ordering::Release);
    }

    /// Counts live slots (where entries live now, in either table) and
    /// this table's tombstones.
    pub(crate) fn count_slots(&self) -> (u64, u64) {
        let (mut live, mut dead) = (0, 0);
        for i in self.slot_ids() {
            match self.slot(i).loc.load(Ordering::Acquire) {
                loc::EMPTY => {}
                loc::TOMBSTONE => dead += u64::from(i < self.cap),
                _ => live += 1,
            }
        }
        (live, dead)
    }

    /// Makes every page of the table writable in this process now, before
    /// it is used (see `SharedMap::populate`).
    pub(crate) fn populate(&self) {
        self.map.populate();
    }

    /// Makes the table durable (`Durability::Sync`), with the previous
    /// table while a growth moves it.
    pub(crate) fn flush_all(&self) -> Result<()> {
        if let Some(m) = self.moving() {
            m.prev.flush_all()?;
        }
        self.map.flush(&self.path)
    }

    /// Makes slot `i` and the header durable (`Durability::Sync`).
    pub(crate) fn flush_slot(&self, i: usize) -> Result<()> {
        if i >= self.cap
            && let Some(prev) = &self.prev
        {
            prev.flush_slot(i - self.cap)?;
        }
        self.map.flush_range(0, INDEX_HEADER_LEN, &self.path)?;
        if i < self.cap {
            self.map
                .flush_range(INDEX_HEADER_LEN + i * SLOT_LEN, SLOT_LEN, &self.path)?;
        }
        Ok(())
    }
}

/// Lets go of a table this process no longer uses. Unmapping a large
/// table, and freeing the file of one a growth has moved out of (the last
/// mapping of an unlinked file frees it), takes milliseconds per hundred
/// megabytes: a thread of its own does it, not the put or lookup that
/// noticed the change.
pub(crate) fn release(idx: Arc<Index>) {
    use std::sync::Mutex;
    use std::sync::mpsc::{Sender, channel};
    static REAPER: std::sync::OnceLock<Option<Mutex<Sender<Arc<Index>>>>> =
        std::sync::OnceLock::new();
    // Small tables are cheap to drop where they are.
    if idx.prev.is_none() && idx.file_len() < 4 << 20 {
        return;
    }
    let reaper = REAPER.get_or_init(|| {
        let (tx, rx) = channel::<Arc<Index>>();
        std::thread::Builder::new()
            .name("memo-index-release".into())
            .spawn(move || {
                for idx in rx {
                    // Only a table nobody else here still uses: a moment
                    // for the last other holder to let go.
                    for _ in 0..1000 {
                        if Arc::strong_count(&idx) == 1 {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    if let Some(idx) = Arc::into_inner(idx) {
                        idx.map.drop_pages();
                        if let Some(prev) = idx.prev.and_then(Arc::into_inner) {
                            prev.map.drop_pages();
                        }
                    }
                }
            })
            .ok()
            .map(|_| Mutex::new(tx))
    });
    if let Some(tx) = reaper {
        // On failure the table comes back in the error and drops here.
        let _ = tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(idx);
    }
}

/// A fresh table in a temporary directory, for unit tests.
#[cfg(test)]
pub(crate) fn scratch() -> (tempfile::TempDir, Index) {
    let t = tempfile::tempdir().expect("temp dir");
    let dir = crate::dir::Dir::open_root(t.path(), true).expect("temp dir handle");
    let idx = Index::create(&dir, "scratch", MIN_CAPACITY, None).expect("scratch index");
    (t, idx)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::dir::Dir;
    use crate::error::Error;

    fn snap(tag: u32, off: u64) -> Snap {
        Snap {
            tag,
            loc: loc::encode(1, off),
            len: 3,
        }
    }

    fn tmp() -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::open_root(t.path(), true).unwrap();
        (t, d)
    }

    /// Tags whose home in `idx` is `home`.
    fn tags_at(idx: &Index, home: usize, n: usize) -> Vec<u32> {
        (0..u32::MAX)
            .step_by(997)
            .filter(|&t| idx.home(t) == home)
            .take(n)
            .collect()
    }

    fn find(idx: &Index, s: Snap) -> Option<usize> {
        match idx.probe(s.tag, |i, got| (got.loc == s.loc).then_some(i)) {
            Probe::Found(i) => Some(i),
            Probe::Absent { .. } => None,
        }
    }

    #[test]
    fn probe_insert_and_copy() {
        let (_t, dir) = tmp();
        let idx = Index::create(&dir, "a", MIN_CAPACITY, None).unwrap();
        // Colliding tags land in consecutive slots and are found in order.
        let t = tags_at(&idx, 5, 2);
        let a = idx.insert_fresh(snap(t[0], 64)).unwrap();
        let b = idx.insert_fresh(snap(t[1], 128)).unwrap();
        assert_eq!((a, b), (5, 6));
        let found = idx.probe(t[1], |i, s| Some((i, s)));
        assert!(matches!(found, Probe::Found((6, s)) if s.loc == loc::encode(1, 128)));
        // A tombstone does not end the probe, and is offered as the free slot.
        idx.write(5, Snap::TOMBSTONE);
        assert!(matches!(idx.probe(t[1], |i, _| Some(i)), Probe::Found(6)));
        let p = idx.probe(t[0], |_, _| None::<()>);
        assert!(matches!(p, Probe::Absent { free: Some(5) }));
        // The last slot wraps to the first.
        let end = tags_at(&idx, MIN_CAPACITY as usize - 1, 2);
        idx.insert_fresh(snap(end[0], 8)).unwrap();
        assert_eq!(idx.insert_fresh(snap(end[1], 16)), Some(0));
        assert_eq!(find(&idx, snap(end[1], 16)), Some(0));

        idx.set(hdr::NEXT_SEG, 9);
        let big =
            Index::create(&dir, "b", MIN_CAPACITY * 2, Some((&idx, &[hdr::NEXT_SEG]))).unwrap();
        idx.copy_into(&big);
        assert_eq!(big.word(hdr::ENTRIES), 3);
        assert_eq!(big.word(hdr::NEXT_SEG), 9);
        assert!(find(&big, snap(t[1], 128)).is_some());
        assert!(find(&big, snap(end[1], 16)).is_some());
    }

    #[test]
    fn capacities_keep_the_build_load() {
        assert_eq!(Index::capacity_for(0), MIN_CAPACITY);
        for entries in [100_000, 5_000_000, 10_000_000, 123_457] {
            let cap = Index::capacity_for(entries);
            assert_eq!(cap % CAPACITY_STEP, 0);
            let load = entries as f64 / cap as f64;
            assert!((0.59..=0.6).contains(&load), "{entries}: {load}");
        }
        assert_eq!(Index::capacity_for(u64::MAX), MAX_CAPACITY);
    }

    /// A growth moving `n` entries from a full table; every entry is found
    /// before, during and after, whichever step it is at.
    #[test]
    fn a_growth_moves_runs_and_lookups_see_every_entry() {
        let (_t, dir) = tmp();
        let old = Index::create(&dir, "old", MIN_CAPACITY, None).unwrap();
        let n = (MIN_CAPACITY * 4 / 5) as u32;
        let entries: Vec<Snap> = (0..n)
            .map(|i| snap(i.wrapping_mul(2_654_435_761), u64::from(i + 1) * 64))
            .collect();
        for &e in &entries {
            old.insert_fresh(e).unwrap();
        }
        old.set(hdr::ENTRIES, u64::from(n));
        let old = Arc::new(old);
        let mut new = Index::create(&dir, "new", Index::capacity_for(u64::from(n)), None).unwrap();
        new.carry(&old, &[hdr::ENTRIES]);
        assert!(new.begin_move(old.clone()));
        assert!(new.moving().is_some());
        // A key put during the move goes to the new table.
        let late = snap(77, 1 << 30);
        let Probe::Absent { free: Some(slot) } = new.probe(late.tag, |_, _| None::<()>) else {
            panic!("no free slot");
        };
        assert!(slot < new.capacity());
        new.write(slot, late);
        let mut steps = 0;
        loop {
            for &e in &entries {
                assert!(find(&new, e).is_some(), "step {steps}: {e:?} lost");
            }
            assert!(find(&new, late).is_some());
            let live = new.live().count();
            assert_eq!(live, entries.len() + 1, "step {steps}");
            steps += 1;
            if new.move_step(64) {
                break;
            }
        }
        assert!(steps > 5, "moved in {steps} steps");
        assert!(new.moving().is_none() && new.stale());
        for &e in &entries {
            assert!(find(&new, e).unwrap() < new.capacity());
        }
        assert_eq!(new.count_slots(), (u64::from(n) + 1, 0));
    }

    #[test]
    fn an_interrupted_step_is_undone() {
        let (_t, dir) = tmp();
        let old = Index::create(&dir, "old", MIN_CAPACITY, None).unwrap();
        let entries: Vec<Snap> = (0..600u32)
            .map(|i| snap(i.wrapping_mul(2_654_435_761), u64::from(i + 1) * 64))
            .collect();
        for &e in &entries {
            old.insert_fresh(e).unwrap();
        }
        let mut new = Index::create(&dir, "new", MIN_CAPACITY, None).unwrap();
        assert!(new.begin_move(Arc::new(old)));
        assert!(!new.move_step(100));
        let moved = new.word(hdr::MIGRATED);
        // A writer copies the next run and dies before recording it.
        let m = new.moving().unwrap();
        let span = Index::step_span(&m, 100);
        for d in span.clone() {
            let i = (m.start + d) % m.prev.cap;
            let s = m.prev.read(i);
            if loc::decode(s.loc).is_some() {
                new.insert_fresh(s);
            }
        }
        new.set(hdr::MIGRATE_TARGET, span.end as u64);
        let copies = new.undo_step();
        assert!(copies > 0);
        assert_eq!(new.word(hdr::MIGRATED), moved);
        // Each entry is in one place again, and found.
        assert_eq!(new.live().count(), entries.len());
        while !new.move_step(100) {}
        let (live, _) = new.count_slots();
        assert_eq!(live, entries.len() as u64);
        for &e in &entries {
            assert!(find(&new, e).is_some());
        }
    }

    #[test]
    fn torn_slots_are_read_and_settled() {
        let (_t, dir) = tmp();
        let idx = Index::create(&dir, "a", MIN_CAPACITY, None).unwrap();
        let i = idx.insert_fresh(snap(9, 64)).unwrap();
        idx.slot(i).seq.fetch_add(1, Ordering::Relaxed); // a writer died mid-publish
        assert!(idx.read_stable(i).is_none());
        // Readers still see the fields as they stand.
        assert_eq!(idx.read(i).loc, loc::encode(1, 64));
        assert_eq!(idx.torn_slots(), vec![i]);
        idx.settle(i, true);
        assert_eq!(idx.read_stable(i).map(|s| s.loc), Some(loc::encode(1, 64)));
        idx.slot(i).seq.fetch_add(1, Ordering::Relaxed);
        idx.settle(i, false);
        assert_eq!(idx.read_stable(i).map(|s| s.loc), Some(loc::TOMBSTONE));
        assert!(idx.torn_slots().is_empty());
    }

    #[test]
    fn open_rejects_bad_headers() {
        let (_t, dir) = tmp();
        let p = dir.child("index");
        assert!(Index::open(&dir, "index").unwrap().is_none());
        std::fs::write(&p, vec![7u8; 5000]).unwrap();
        assert!(matches!(
            Index::open(&dir, "index"),
            Err(Error::Corrupt { .. })
        ));
        let idx = Index::create(&dir, "t", MIN_CAPACITY, None).unwrap();
        let idx = idx.install(&dir, &dir, "index", None, false).unwrap();
        drop(idx);
        assert!(Index::open(&dir, "index").unwrap().is_some());
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        // A capacity that is not a whole number of pages of slots.
        f.write_all_at(&(MIN_CAPACITY + 1).to_le_bytes(), 16)
            .unwrap();
        assert!(matches!(
            Index::open(&dir, "index"),
            Err(Error::Corrupt { .. })
        ));
        f.write_all_at(&MIN_CAPACITY.to_le_bytes(), 16).unwrap();
        f.write_all_at(&3u32.to_le_bytes(), 8).unwrap();
        assert!(matches!(
            Index::open(&dir, "index"),
            Err(Error::IncompatibleFormat { found: 3, .. })
        ));
    }
}
