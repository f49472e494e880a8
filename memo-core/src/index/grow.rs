//! Growth without stopping the writers: the previous table is moved into
//! a larger one a bounded run of slots at a time.
//!
//! A growth names the new table `index` and the old one `index.prev`, and
//! records in the new header where the move started (`MIGRATE_START`, an
//! empty slot of the old table) and how far it got (`MIGRATED`, counted in
//! old slots from there). The old table receives no new entries while it
//! is moved, so its empty slots stay empty and its runs of occupied slots
//! keep their bounds; each step moves whole runs, so `MIGRATED` always
//! sits at the end of one. Then:
//!
//! - a key whose home in the old table is before `MIGRATED` was moved with
//!   its whole run: it is only looked for in the new table;
//! - any other key is looked for in the old table first, then in the new
//!   one (where a put since the growth began may have placed it).
//!
//! A step copies slots into the new table, then advances `MIGRATED`; it
//! never changes the old table. A reader that loaded `MIGRATED` before a
//! step and probes the old table finds the entry there (unchanged), and one
//! that loaded it after finds it in the new table, so no lookup misses an
//! entry that is present. Writers keep each key in one place: an entry not
//! moved yet is replaced or removed in the old table, in place, and new
//! keys go to the new one. A writer that dies mid-step leaves copies past
//! `MIGRATED`; the repair removes them (`undo_step`) before anything else
//! can change those keys.

use std::ops::Range;
use std::sync::Arc;

use super::{Index, Probe, Snap};
use crate::format::{hdr, loc};

/// A growth in progress, as a reader sees it: one load of `MIGRATED`.
pub(crate) struct Moving<'a> {
    pub prev: &'a Index,
    pub(super) start: usize,
    moved: usize,
}

impl Moving<'_> {
    /// The offset of old slot `i` from where the move started.
    #[inline]
    fn offset(&self, i: usize) -> usize {
        if i >= self.start {
            i - self.start
        } else {
            i + self.prev.cap - self.start
        }
    }

    /// Whether a key with `tag` may still be in the old table.
    #[inline]
    pub fn unmoved(&self, tag: u32) -> bool {
        self.offset(self.prev.home(tag)) >= self.moved
    }

    /// Old slots still to move.
    pub fn left(&self) -> usize {
        self.prev.cap - self.moved
    }

    /// Whether old slot `i` is one the move has not reached.
    pub fn holds(&self, i: usize) -> bool {
        i < self.prev.cap && self.offset(i) >= self.moved
    }

    /// The old slots not moved yet, numbered after the new table's `base`.
    pub fn unmoved_slots(&self, base: usize) -> impl Iterator<Item = usize> + use<> {
        let (start, cap) = (self.start, self.prev.cap);
        (self.moved..cap).map(move |d| base + (start + d) % cap)
    }
}

impl Index {
    /// The growth moving a previous table into this one, if one is.
    #[inline]
    pub(crate) fn moving(&self) -> Option<Moving<'_>> {
        let prev = self.prev.as_deref()?;
        let moved = self.word(hdr::MIGRATED) as usize;
        (moved < prev.cap).then(|| Moving {
            prev,
            start: self.word(hdr::MIGRATE_START) as usize % prev.cap,
            moved,
        })
    }

    /// Whether this table's header says a growth into it is not finished.
    pub(crate) fn header_says_moving(&self) -> bool {
        let from = self.word(hdr::MIGRATE_FROM);
        from != 0 && self.word(hdr::MIGRATED) < from
    }

    /// Makes this fresh table the destination of a growth from `prev`,
    /// before it is named `index`; writers only, under `LOCK`. `false` when
    /// `prev` has no empty slot to start from (a table that full was never
    /// within its load limit): the caller copies it whole instead.
    pub(crate) fn begin_move(&mut self, prev: Arc<Index>) -> bool {
        let Some(start) = (0..prev.cap).find(|&i| prev.read(i).loc == loc::EMPTY) else {
            return false;
        };
        self.set(hdr::MIGRATE_FROM, prev.cap as u64);
        self.set(hdr::MIGRATE_PREV_ID, prev.word(hdr::TABLE_ID));
        self.set(hdr::MIGRATE_START, start as u64);
        self.set(hdr::MIGRATED, 0);
        self.set(hdr::MIGRATE_TARGET, 0);
        self.prev = Some(prev);
        true
    }

    /// The old slots (as offsets from the start) the next step of at least
    /// `budget` slots covers: up to the end of the run it reaches.
    pub(super) fn step_span(m: &Moving<'_>, budget: usize) -> Range<usize> {
        let cap = m.prev.cap;
        let mut end = m.moved.saturating_add(budget.max(1)).min(cap);
        while end < cap && m.prev.read((m.start + end) % cap).loc != loc::EMPTY {
            end += 1;
        }
        m.moved..end
    }

    /// Moves at least `budget` slots of the previous table (whole runs)
    /// into this one; `true` once every slot is moved. Writers only, under
    /// `LOCK`, inside a publish (a writer that dies here leaves `DIRTY`).
    pub(crate) fn move_step(&self, budget: usize) -> bool {
        let Some(m) = self.moving() else {
            return true;
        };
        let span = Self::step_span(&m, budget);
        let cap = m.prev.cap;
        self.set(hdr::MIGRATE_TARGET, span.end as u64);
        for d in span.clone() {
            let i = (m.start + d) % cap;
            let snap = m.prev.read(i);
            if loc::decode(snap.loc).is_some()
                && let Some(j) = self.insert_fresh(snap)
            {
                m.prev.copy_stats(i, self, j);
            }
        }
        self.set(hdr::MIGRATED, span.end as u64);
        span.end == cap
    }

    /// Removes the copies a writer that died mid-step made of slots past
    /// `MIGRATED`, so that those keys live only in the old table again;
    /// writers only, under `LOCK`, before any other change.
    pub(crate) fn undo_step(&self) -> usize {
        let Some(m) = self.moving() else {
            return 0;
        };
        let cap = m.prev.cap;
        let target = (self.word(hdr::MIGRATE_TARGET) as usize).min(cap);
        let mut undone = 0;
        for d in m.moved..target {
            let snap = m.prev.read((m.start + d) % cap);
            if loc::decode(snap.loc).is_none() {
                continue;
            }
            let copy = self.probe_own(snap.tag, 0, &mut |j, s: Snap| {
                (s.loc == snap.loc).then_some(j)
            });
            if let Probe::Found(j) = copy {
                self.write(j, Snap::TOMBSTONE);
                undone += 1;
            }
        }
        self.set(hdr::MIGRATE_TARGET, m.moved as u64);
        undone
    }
}
