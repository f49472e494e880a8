//! The crash protocol and the accounting of every change to the table.
//!
//! A writer changes slots and header counters only inside a [`Publish`]:
//! making one sets `DIRTY` in the index header, and only
//! [`Publish::commit`] (which applies the counted changes) or
//! [`Publish::unchanged`] (nothing was changed) clear it. A writer that
//! dies, panics or returns an error in between leaves `DIRTY` set, and the
//! next writer repairs (`recover.rs`): no code path can forget the flag,
//! and the counters change in one place.

use crate::format::hdr;
use crate::index::{Index, Snap};
use crate::segment::Record;

/// Changes to the table in progress; see the module docs.
#[must_use = "dropping a Publish leaves DIRTY set: commit it, or say it changed nothing"]
pub(super) struct Publish<'a> {
    idx: &'a Index,
    entries: i64,
    tombstones: i64,
    live: i64,
    dead: i64,
    saved: i64,
}

/// A byte count as a signed change; lengths come from disk, so saturate.
fn signed(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

impl<'a> Publish<'a> {
    /// Starts changing `idx`; caller holds the writer lock.
    pub(super) fn begin(idx: &'a Index) -> Publish<'a> {
        idx.set(hdr::DIRTY, 1);
        Publish {
            idx,
            entries: 0,
            tombstones: 0,
            live: 0,
            dead: 0,
            saved: 0,
        }
    }

    /// A new entry took a slot that was empty or, with `reused_tombstone`,
    /// a tombstone.
    pub(super) fn added(&mut self, reused_tombstone: bool) {
        self.entries += 1;
        if reused_tombstone {
            self.tombstones -= 1;
        }
    }

    /// Bytes appended (a record, and its blob file) that an entry now uses.
    pub(super) fn live(&mut self, bytes: u64) {
        self.live = self.live.saturating_add(signed(bytes));
    }

    /// An entry now uses a value stored compressed that `bytes` shorter
    /// than its raw length (`hdr::SAVED`).
    pub(super) fn saved(&mut self, bytes: u64) {
        self.saved = self.saved.saturating_add(signed(bytes));
    }

    /// Bytes appended that no entry uses (tombstone records).
    pub(super) fn dead(&mut self, bytes: u64) {
        self.dead = self.dead.saturating_add(signed(bytes));
    }

    /// Dead bytes given back to the file system (an unlinked segment).
    pub(super) fn reclaimed(&mut self, bytes: u64) {
        self.dead = self.dead.saturating_sub(signed(bytes));
    }

    /// The entry in `slot` is gone: the slot becomes a tombstone.
    pub(super) fn tombstone(&mut self, slot: usize) {
        self.idx.write(slot, Snap::TOMBSTONE);
        self.entries -= 1;
        self.tombstones += 1;
    }

    /// `old` is a record no slot points at any more: its bytes are dead,
    /// what its compression saved is no longer saved (`saved`, from
    /// `Engine::saved_by`), and its blob file (whose id this returns) is
    /// to be unlinked once the lock is released.
    pub(super) fn retire(&mut self, old: &Record, saved: u64) -> Option<u64> {
        self.saved = self.saved.saturating_sub(signed(saved));
        let size = old.size();
        self.live = self
            .live
            .saturating_sub(signed(size.saturating_add(old.blob_file_size())));
        self.dead = self.dead.saturating_add(signed(size));
        old.blob_id()
    }

    /// Applies the counted changes and ends the publish.
    pub(super) fn commit(self) {
        let idx = self.idx;
        for (w, by) in [
            (hdr::ENTRIES, self.entries),
            (hdr::TOMBSTONES, self.tombstones),
            (hdr::LIVE_BYTES, self.live),
            (hdr::DEAD_BYTES, self.dead),
            (hdr::SAVED, self.saved),
        ] {
            if by != 0 {
                // A counter that would go below zero was already off (it
                // comes from disk, or from before a repair): clamp at 0.
                idx.set(w, idx.word(w).saturating_add_signed(by));
            }
        }
        idx.set(hdr::DIRTY, 0);
    }

    /// Ends a publish that changed nothing (an append that failed before
    /// any slot pointed at it).
    pub(super) fn unchanged(self) {
        self.idx.set(hdr::DIRTY, 0);
    }
}

/// What storing a value compressed saves: its raw length (the payload's
/// `compress` prefix) less the `stored` length; 0 for a value stored as
/// its codec wrote it.
pub(super) fn saving(codec: u8, raw_len: Option<u64>, stored: u64) -> u64 {
    if !crate::compress::is_compressed(codec) {
        return 0;
    }
    raw_len.map_or(0, |raw| raw.saturating_sub(stored))
}

/// What `rec`'s value saves by being stored compressed (a blob's prefix
/// is read from its file: only compressed blobs pay that).
pub(super) fn saved_by(blobs: &crate::blob::Blobs, rec: &Record) -> u64 {
    let codec = rec.header.codec;
    if !crate::compress::is_compressed(codec) {
        return 0;
    }
    if let Some((id, len)) = rec.blob() {
        return saving(codec, blobs.packed_raw_len(&rec.header.key, id), len);
    }
    let p = rec.payload();
    saving(codec, crate::compress::raw_len(p), p.len() as u64)
}

impl super::Engine {
    /// What `rec`'s value saves by being stored compressed.
    pub(super) fn saved_by(&self, rec: &Record) -> u64 {
        saved_by(&self.files.blobs, rec)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::dir::Dir;
    use crate::format::{MIN_CAPACITY, loc};

    fn index() -> (tempfile::TempDir, Index) {
        let t = tempfile::tempdir().unwrap();
        let idx = Index::create(
            &Dir::open_root(t.path(), true).unwrap(),
            "i",
            MIN_CAPACITY,
            None,
        )
        .unwrap();
        (t, idx)
    }

    #[test]
    fn dirty_is_cleared_only_by_ending_the_publish() {
        let (_t, idx) = index();
        let mut p = Publish::begin(&idx);
        assert_eq!(idx.word(hdr::DIRTY), 1);
        p.added(false);
        p.live(100);
        p.commit();
        assert_eq!(idx.word(hdr::DIRTY), 0);
        assert_eq!(
            (idx.word(hdr::ENTRIES), idx.word(hdr::LIVE_BYTES)),
            (1, 100)
        );
        // An error path that returns early drops the publish: DIRTY stays,
        // the counts are untouched, and the next writer repairs.
        {
            let mut p = Publish::begin(&idx);
            p.added(false);
            p.live(7);
            drop(p);
        }
        assert_eq!(idx.word(hdr::DIRTY), 1);
        assert_eq!(idx.word(hdr::ENTRIES), 1);
        Publish::begin(&idx).unchanged();
        assert_eq!(idx.word(hdr::DIRTY), 0);
    }

    #[test]
    fn counters_saturate_at_zero_and_tombstones_are_counted() {
        let (_t, idx) = index();
        idx.insert_fresh(Snap {
            tag: 5,
            loc: loc::encode(1, 64),
            len: 1,
        });
        idx.set(hdr::ENTRIES, 1);
        let mut p = Publish::begin(&idx);
        p.tombstone(5);
        p.reclaimed(u64::MAX);
        p.commit();
        assert_eq!(idx.read(5).loc, loc::TOMBSTONE);
        assert_eq!((idx.word(hdr::ENTRIES), idx.word(hdr::TOMBSTONES)), (0, 1));
        assert_eq!(idx.word(hdr::DEAD_BYTES), 0, "clamped, not wrapped");
    }
}
