//! The shared index: one header page and an open-addressing table of slots,
//! mapped by every process that opens the store.
//!
//! Readers probe without any lock and validate each slot with its sequence
//! number (a seqlock); writers publish under `LOCK`. A table that fills up is
//! replaced: the writer builds a larger file in `tmp/`, renames it over
//! `index` and sets `REPLACED` in the old header, which readers check with
//! one atomic load per lookup.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::error::Result;
use crate::format::{
    INDEX_HEADER_LEN, MAX_CAPACITY, MIN_CAPACITY, SEG_HEADER_LEN, SEGMENT_SIZE, SLOT_LEN, hdr, loc,
};
use crate::mmap::{SharedMap, Slot};

mod file;

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

/// The append position in the index header (current segment, offset in
/// it, next segment number): the narrow view of the index the appender
/// gets. Writers only, under `LOCK`.
pub(crate) struct AppendPos<'a>(&'a Index);

impl AppendPos<'_> {
    /// The current segment (0: none yet) and the offset of the next record
    /// in it, as the header says (from disk: the caller checks them).
    pub(crate) fn current(&self) -> (u64, u64) {
        (self.0.word(hdr::CUR_SEG), self.0.word(hdr::CUR_OFF))
    }

    /// The append position as a location word (0 when no segment was
    /// started), the form checkpoints and durable writes compare.
    pub(crate) fn word(&self) -> u64 {
        let (seg, off) = self.current();
        u32::try_from(seg).map_or(0, |s| {
            if s == 0 {
                0
            } else {
                crate::format::loc::encode(s, off)
            }
        })
    }

    /// Records that the current segment now ends at `off`.
    pub(crate) fn advance(&self, off: u64) {
        self.0.set(hdr::CUR_OFF, off);
    }

    /// Takes the next segment number; numbers are never reused, even if
    /// making the segment then fails.
    pub(crate) fn take_number(&self) -> u64 {
        let id = self.0.word(hdr::NEXT_SEG).max(1);
        self.0.set(hdr::NEXT_SEG, id.saturating_add(1));
        id
    }

    /// Appends go to segment `id` from now on, after its header.
    pub(crate) fn start(&self, id: u32) {
        self.0.set(hdr::CUR_SEG, u64::from(id));
        self.0.set(hdr::CUR_OFF, SEG_HEADER_LEN as u64);
    }

    /// No more appends to the current segment: the next starts a new one.
    pub(crate) fn seal(&self) {
        self.0.set(hdr::CUR_OFF, SEGMENT_SIZE);
    }

    /// The index file, to name in errors.
    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Load factor above which the table grows. Linear probing at 0.8 still
/// averages 3 probes per hit, and keeps the index near 0.4 B per payload byte
/// for 100-byte values (the disk-use target is 2x payload overall).
const MAX_LOAD_NUM: u64 = 4;
const MAX_LOAD_DEN: u64 = 5;

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
    mask: usize,
}

impl Index {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The append position, for the appender.
    pub(crate) fn append_pos(&self) -> AppendPos<'_> {
        AppendPos(self)
    }

    /// Bytes of the index file: its header and table (checked at open).
    pub(crate) fn file_len(&self) -> u64 {
        (INDEX_HEADER_LEN + self.capacity() * SLOT_LEN) as u64
    }

    pub(crate) fn capacity(&self) -> usize {
        self.mask + 1
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
        self.header()[w].fetch_add(by, Ordering::Relaxed);
    }

    /// Advances the access clock; its value for this access.
    #[inline]
    pub(crate) fn tick(&self) -> u32 {
        self.header()[hdr::TICK].fetch_add(1, Ordering::Relaxed) as u32
    }

    /// Whether a newer index has replaced this one.
    #[inline]
    pub(crate) fn replaced(&self) -> bool {
        self.word(hdr::REPLACED) != 0
    }

    /// Whether one more entry fits without passing the load limit.
    pub(crate) fn has_room(&self) -> bool {
        // Header words come from disk: saturate rather than trust them.
        let used = self
            .word(hdr::ENTRIES)
            .saturating_add(self.word(hdr::TOMBSTONES))
            .saturating_add(1);
        used.saturating_mul(MAX_LOAD_DEN) <= self.capacity() as u64 * MAX_LOAD_NUM
    }

    /// The capacity a table needs to hold `entries` below the load limit with
    /// room to grow (half full).
    pub(crate) fn capacity_for(entries: u64) -> u64 {
        // Counts may come from a damaged header: saturate, never overflow.
        (entries.saturating_mul(2))
            .clamp(MIN_CAPACITY, MAX_CAPACITY)
            .next_power_of_two()
    }

    #[inline]
    pub(crate) fn slot(&self, i: usize) -> &Slot {
        &self.map.slots()[i & self.mask]
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
        let s = self.slot(i);
        s.hits.fetch_add(1, Ordering::Relaxed);
        s.atime.store(tick, Ordering::Relaxed);
    }

    /// Walks the probe sequence of `tag`, calling `check` on every live slot
    /// whose tag matches, until it returns `Some` or an empty slot ends the
    /// sequence.
    #[inline]
    pub(crate) fn probe<T>(
        &self,
        tag: u32,
        mut check: impl FnMut(usize, Snap) -> Option<T>,
    ) -> Probe<T> {
        let mut free = None;
        let start = tag as usize & self.mask;
        for step in 0..=self.mask {
            let i = (start + step) & self.mask;
            let snap = self.read(i);
            match snap.loc {
                loc::EMPTY => {
                    return Probe::Absent {
                        free: free.or(Some(i)),
                    };
                }
                loc::TOMBSTONE => {
                    free.get_or_insert(i);
                }
                _ if snap.tag == tag => {
                    if let Some(t) = check(i, snap) {
                        return Probe::Found(t);
                    }
                }
                _ => {}
            }
        }
        Probe::Absent { free }
    }

    /// Every slot that names a record, with its fields: the pass that
    /// copying, scans, eviction and recounts all start from.
    pub(crate) fn live(&self) -> impl Iterator<Item = (usize, Snap)> + '_ {
        (0..self.capacity())
            .map(|i| (i, self.read(i)))
            .filter(|(_, s)| loc::decode(s.loc).is_some())
    }

    /// Copies every live slot of `self` into the empty table `new`, with
    /// statistics; writers only, under `LOCK`.
    pub(crate) fn copy_into(&self, new: &Index) {
        let mut entries = 0;
        for (i, snap) in self.live() {
            if let Some(j) = new.insert_fresh(snap) {
                let s = self.slot(i);
                new.reset_stats(
                    j,
                    s.atime.load(Ordering::Relaxed),
                    s.hits.load(Ordering::Relaxed),
                    s.cost.load(Ordering::Relaxed),
                );
                entries += 1;
            }
        }
        new.set(hdr::ENTRIES, entries);
    }

    /// Places `snap` in the first empty slot of its probe sequence, in a
    /// table no other process sees yet.
    pub(crate) fn insert_fresh(&self, snap: Snap) -> Option<usize> {
        let start = snap.tag as usize & self.mask;
        (0..=self.mask).map(|s| (start + s) & self.mask).find(|&j| {
            let free = self.slot(j).loc.load(Ordering::Relaxed) == loc::EMPTY;
            if free {
                self.write(j, snap);
            }
            free
        })
    }

    /// Slots a dead writer left mid-publish (odd sequence number).
    pub(crate) fn torn_slots(&self) -> Vec<usize> {
        let slots = self.map.slots();
        (0..slots.len())
            .filter(|&i| slots[i].seq.load(Ordering::Acquire) & 1 == 1)
            .collect()
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

    /// Counts live and tombstone slots.
    pub(crate) fn count_slots(&self) -> (u64, u64) {
        let (mut live, mut dead) = (0, 0);
        for s in self.map.slots() {
            match s.loc.load(Ordering::Acquire) {
                loc::EMPTY => {}
                loc::TOMBSTONE => dead += 1,
                _ => live += 1,
            }
        }
        (live, dead)
    }

    /// Makes the whole table durable (`Durability::Sync`, after compaction
    /// moved many slots).
    pub(crate) fn flush_all(&self) -> Result<()> {
        self.map.flush(&self.path)
    }

    /// Makes slot `i` and the header durable (`Durability::Sync`).
    pub(crate) fn flush_slot(&self, i: usize) -> Result<()> {
        self.map.flush_range(0, INDEX_HEADER_LEN, &self.path)?;
        self.map.flush_range(
            INDEX_HEADER_LEN + (i & self.mask) * SLOT_LEN,
            SLOT_LEN,
            &self.path,
        )
    }
}

/// A fresh table in a temporary directory, for unit tests.
#[cfg(test)]
pub(crate) fn scratch() -> (tempfile::TempDir, Index) {
    let t = tempfile::tempdir().expect("temp dir");
    let dir = crate::dir::Dir::open_root(t.path()).expect("temp dir handle");
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
        let d = Dir::open_root(t.path()).unwrap();
        (t, d)
    }

    #[test]
    fn probe_insert_and_grow() {
        let (_t, dir) = tmp();
        let idx = Index::create(&dir, "a", MIN_CAPACITY, None).unwrap();
        // Colliding tags land in consecutive slots and are found in order.
        let a = idx.insert_fresh(snap(5, 64)).unwrap();
        let b = idx
            .insert_fresh(snap(5 + MIN_CAPACITY as u32, 128))
            .unwrap();
        assert_eq!((a, b), (5, 6));
        let found = idx.probe(5 + MIN_CAPACITY as u32, |i, s| Some((i, s)));
        assert!(matches!(found, Probe::Found((6, s)) if s.loc == loc::encode(1, 128)));
        // A tombstone does not end the probe, and is offered as the free slot.
        idx.write(
            5,
            Snap {
                tag: 0,
                loc: loc::TOMBSTONE,
                len: 0,
            },
        );
        let found = idx.probe(5 + MIN_CAPACITY as u32, |i, _| Some(i));
        assert!(matches!(found, Probe::Found(6)));
        assert!(matches!(
            idx.probe(77, |_, _| Some(())),
            Probe::Absent { free: Some(77) }
        ));
        let p = idx.probe(5, |_, _| None::<()>);
        assert!(matches!(p, Probe::Absent { free: Some(5) }));

        idx.set(hdr::NEXT_SEG, 9);
        let big =
            Index::create(&dir, "b", MIN_CAPACITY * 2, Some((&idx, &[hdr::NEXT_SEG]))).unwrap();
        idx.copy_into(&big);
        assert_eq!(big.word(hdr::ENTRIES), 1);
        assert_eq!(big.word(hdr::NEXT_SEG), 9);
        let found = big.probe(5 + MIN_CAPACITY as u32, |_, s| Some(s));
        assert!(matches!(found, Probe::Found(s) if s.loc == loc::encode(1, 128)));
    }

    #[test]
    fn torn_slots_are_read_and_settled() {
        let (_t, dir) = tmp();
        let idx = Index::create(&dir, "a", MIN_CAPACITY, None).unwrap();
        idx.insert_fresh(snap(9, 64)).unwrap();
        idx.slot(9).seq.fetch_add(1, Ordering::Relaxed); // a writer died mid-publish
        assert!(idx.read_stable(9).is_none());
        // Readers still see the fields as they stand.
        assert_eq!(idx.read(9).loc, loc::encode(1, 64));
        assert_eq!(idx.torn_slots(), vec![9]);
        idx.settle(9, true);
        assert_eq!(idx.read_stable(9).map(|s| s.loc), Some(loc::encode(1, 64)));
        idx.slot(9).seq.fetch_add(1, Ordering::Relaxed);
        idx.settle(9, false);
        assert_eq!(idx.read_stable(9).map(|s| s.loc), Some(loc::TOMBSTONE));
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
        f.write_all_at(&2u32.to_le_bytes(), 8).unwrap();
        assert!(matches!(
            Index::open(&dir, "index"),
            Err(Error::IncompatibleFormat { found: 2, .. })
        ));
    }
}
