//! The write path: everything here runs under the writer lock, except
//! encoding values and writing blob files, which happen before it is taken.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use serde::Serialize;

use super::{Durability, Engine};
use crate::Key;
use crate::blob::{self, Encoded, Spill, TmpBlob};
use crate::codec::{Bincode, Codec, RAW_ID};
use crate::dir::Dir;
use crate::error::{Error, Result};
use crate::format::{
    self, BLOB_HEADER_LEN, FLAG_BLOB, FLAG_TOMBSTONE, INLINE_MAX, MIN_CAPACITY, VALUE_MAX,
    decode_blob_ptr, encode_blob_ptr, hdr, loc,
};
use crate::index::{Index, Probe, Snap};
use crate::segment::{self, Appender, Read, Record, Segments};

/// Header words a grown table carries over from the one it replaces.
const CARRY_ALL: [usize; 18] = [
    hdr::TICK,
    hdr::LFU_AGED,
    hdr::GDSF_CLOCK,
    hdr::RECLAIMED,
    hdr::AGE_SCAN,
    hdr::TIME_RING_LEN,
    hdr::TIME_RING_SPACING,
    hdr::CLOCK_RING_LEN,
    hdr::CUR_SEG,
    hdr::CUR_OFF,
    hdr::NEXT_SEG,
    hdr::LIVE_BYTES,
    hdr::DEAD_BYTES,
    hdr::EVICTIONS,
    hdr::HITS,
    hdr::MISSES,
    hdr::EPOCH,
    hdr::TOMBSTONES,
];
/// Header words an emptied (cleared) table keeps.
const CARRY_CLEAR: [usize; 7] = [
    hdr::TICK,
    hdr::RECLAIMED,
    hdr::NEXT_SEG,
    hdr::EVICTIONS,
    hdr::HITS,
    hdr::MISSES,
    hdr::EPOCH,
];

/// A value ready to publish.
enum Payload<'a> {
    Inline(&'a [u8]),
    Blob(TmpBlob),
}

impl Engine {
    fn sync(&self) -> bool {
        self.opts.durability == Durability::Sync
    }

    pub(crate) fn put_value<V: Serialize + ?Sized>(
        &self,
        key: &Key,
        value: &V,
        cost: u32,
    ) -> Result<()> {
        let mut spill = Spill::new(&self.tmp, *key);
        Bincode::encode(key, value, &mut spill)?;
        match spill.finish(Bincode::ID, self.sync())? {
            Encoded::Inline(v) => self.publish(key, Bincode::ID, Payload::Inline(&v), cost),
            Encoded::Blob(b) => self.publish(key, Bincode::ID, Payload::Blob(b), cost),
        }
    }

    pub(super) fn put_raw(&self, key: &Key, value: &[u8], cost: u32) -> Result<()> {
        if value.len() as u64 > VALUE_MAX {
            return Err(Error::TooLarge {
                key: *key,
                len: value.len() as u64,
                limit: VALUE_MAX,
            });
        }
        if value.len() < INLINE_MAX {
            return self.publish(key, RAW_ID, Payload::Inline(value), cost);
        }
        let blob = blob::write_tmp(&self.tmp, key, RAW_ID, value, self.sync())?;
        self.publish(key, RAW_ID, Payload::Blob(blob), cost)
    }

    /// The index a writer works on: current, and repaired if the last writer
    /// died mid-publish. Caller holds the writer lock.
    fn writer_index(&self) -> Result<Arc<Index>> {
        let idx = self.index()?;
        if idx.word(hdr::DIRTY) != 0 {
            recover(&self.segs, &idx, &self.tmp);
            super::trim::recount_bytes(self, &idx);
        }
        self.remove_damaged(&idx);
        Ok(idx)
    }

    /// Removes the damaged entries this process's readers found, if their
    /// slots still point where the damage was. Caller holds the writer lock.
    fn remove_damaged(&self, idx: &Arc<Index>) {
        let found =
            std::mem::take(&mut *self.damaged.lock().unwrap_or_else(PoisonError::into_inner));
        for d in found {
            let current = d.index.upgrade().is_some_and(|i| Arc::ptr_eq(&i, idx));
            if !current || idx.read(d.slot).loc != d.loc {
                continue;
            }
            drop_slot(idx, d.slot);
            if let Some((key, id)) = d.blob {
                self.blobs.unlink(&key, id);
            }
        }
    }

    /// Appends the record, points the key's slot at it and settles the
    /// accounting: the publish step, the only one under the lock.
    fn publish(&self, key: &Key, codec: u8, payload: Payload<'_>, cost: u32) -> Result<()> {
        let sync = self.sync();
        let (rec, mut blob) = match payload {
            Payload::Inline(p) => (segment::build_record(key, codec, 0, p), None),
            Payload::Blob(b) => (
                segment::build_record(key, codec, FLAG_BLOB, &encode_blob_ptr(b.id, b.len)),
                Some(b),
            ),
        };
        let len = blob
            .as_ref()
            .map_or(rec.len() - format::REC_HEADER_LEN, |b| b.len as usize);
        let size = rec.len() as u64 + blob.as_ref().map_or(0, TmpBlob::file_size);
        if let Some(limit) = self.opts.max_bytes
            && size > limit
        {
            // Storing it would evict everything else and still not fit.
            return Err(Error::TooLarge {
                key: *key,
                len: size,
                limit,
            });
        }
        let mut w = self.writer.lock()?;
        let mut idx = self.writer_index()?;
        if !idx.has_room() {
            // Recount before growing: the counters come from disk, and a
            // damaged one must not make every put double the table.
            let (live, tombstones) = idx.count_slots();
            idx.set(hdr::ENTRIES, live);
            idx.set(hdr::TOMBSTONES, tombstones);
            if !idx.has_room() {
                idx = self.grow(&idx)?;
            }
        }
        if let Some(b) = &mut blob {
            self.blobs.install(b, key, sync)?;
        }
        idx.set(hdr::DIRTY, 1);
        let appended = w.append(&self.segs, &idx, &self.tmp, &rec, sync);
        let loc = match appended {
            Ok(l) => l,
            Err(e) => {
                // Nothing points at the bytes: the store is as it was. A blob
                // already renamed in stays an unreferenced file.
                idx.set(hdr::DIRTY, 0);
                if let Some(b) = &blob {
                    self.blobs.unlink(key, b.id);
                }
                return Err(e);
            }
        };
        let (slot, old) = match find(&self.segs, &idx, key)? {
            Probe::Found(found) => (found.0, Some(found.1)),
            Probe::Absent { free: Some(i) } => (i, None),
            Probe::Absent { free: None } => {
                idx.set(hdr::DIRTY, 0);
                return Err(Error::corrupt(
                    idx.path(),
                    0,
                    "index table has no free slot",
                ));
            }
        };
        let reused_tombstone = old.is_none() && idx.read(slot).loc == loc::TOMBSTONE;
        let tag = key.tag32();
        idx.write(
            slot,
            Snap {
                tag,
                loc,
                len: u32::try_from(len).unwrap_or(u32::MAX),
            },
        );
        idx.reset_stats(slot, idx.tick(), 0, cost);
        let mut live = rec.len() as u64 + blob.as_ref().map_or(0, TmpBlob::file_size);
        let mut dead = 0;
        let old_blob = old.as_ref().and_then(|o| retire(o, &mut live, &mut dead));
        if old.is_none() {
            add(&idx, hdr::ENTRIES, 1);
            if reused_tombstone {
                add(&idx, hdr::TOMBSTONES, -1);
            }
        }
        adjust(&idx, hdr::LIVE_BYTES, live);
        adjust(&idx, hdr::DEAD_BYTES, dead);
        idx.set(hdr::DIRTY, 0);
        if sync {
            idx.flush_slot(slot)?;
        }
        let unlinks = self.after_publish(&mut w, &idx, slot);
        drop(w);
        if let Some(id) = old_blob {
            self.blobs.unlink(key, id);
        }
        for (key, id) in unlinks {
            self.blobs.unlink(&key, id);
        }
        Ok(())
    }

    /// Keeps the store within its limits after a put to `slot`: the
    /// writer's next duty, whose failure (an I/O error while compacting)
    /// does not undo the committed put.
    fn after_publish(
        &self,
        w: &mut Appender,
        idx: &Arc<Index>,
        slot: usize,
    ) -> super::trim::Unlinks {
        if !self.has_limits() && idx.word(hdr::DEAD_BYTES) < super::trim::DEAD_MIN {
            // Kept by every writer (`enforce` keeps it too), so a process
            // opening the store later with `max_age` knows when existing
            // entries were last used.
            super::trim::record_time(idx, super::trim::unix_now());
            return Vec::new();
        }
        self.enforce(w, idx, false, Some(slot)).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "memo: could not bring the store within its limits");
            Vec::new()
        })
    }

    pub(super) fn remove(&self, key: &Key) -> Result<bool> {
        let mut w = self.writer.lock()?;
        let idx = self.writer_index()?;
        let Probe::Found((slot, old)) = find(&self.segs, &idx, key)? else {
            return Ok(false);
        };
        let old_blob = self.remove_slot(&mut w, &idx, slot, &old)?;
        drop(w);
        if let Some(id) = old_blob {
            self.blobs.unlink(key, id);
        }
        Ok(true)
    }

    /// Removes every entry whose key `matches`, the way `remove` removes
    /// one; returns how many there were.
    pub(crate) fn remove_matching(&self, matches: impl Fn(&Key) -> bool) -> Result<u64> {
        let mut w = self.writer.lock()?;
        let idx = self.writer_index()?;
        let mut blobs = Vec::new();
        let mut removed = 0;
        let mut result = Ok(());
        for (slot, snap) in idx.live() {
            let rec = match self.segs.record(snap.loc, None) {
                Ok(Read::Found(rec)) if rec.header.flags & FLAG_TOMBSTONE == 0 => rec,
                Ok(_) => continue,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let key = rec.header.key;
            if key.tag32() != snap.tag || !matches(&key) {
                continue;
            }
            match self.remove_slot(&mut w, &idx, slot, &rec) {
                Ok(blob) => {
                    removed += 1;
                    blobs.extend(blob.map(|id| (key, id)));
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        drop(w);
        for (key, id) in blobs {
            self.blobs.unlink(&key, id);
        }
        result.map(|()| removed)
    }

    /// Tombstones `slot`, which holds `old`; returns the blob to unlink once
    /// the lock is released. Caller holds the writer lock.
    pub(super) fn remove_slot(
        &self,
        w: &mut Appender,
        idx: &Arc<Index>,
        slot: usize,
        old: &Record,
    ) -> Result<Option<u64>> {
        idx.set(hdr::DIRTY, 1);
        // The tombstone record keeps a rebuild from bringing the entry back.
        let tomb = segment::build_record(&old.header.key, RAW_ID, FLAG_TOMBSTONE, &[]);
        if let Err(e) = w.append(&self.segs, idx, &self.tmp, &tomb, self.sync()) {
            idx.set(hdr::DIRTY, 0);
            return Err(e);
        }
        idx.write(slot, Snap::TOMBSTONE);
        let mut live = 0_u64;
        let mut dead = tomb.len() as u64;
        let old_blob = retire(old, &mut live, &mut dead);
        add(idx, hdr::ENTRIES, -1);
        add(idx, hdr::TOMBSTONES, 1);
        adjust(idx, hdr::LIVE_BYTES, live);
        adjust(idx, hdr::DEAD_BYTES, dead);
        idx.set(hdr::DIRTY, 0);
        if self.sync() {
            idx.flush_slot(slot)?;
        }
        Ok(old_blob)
    }

    /// Replaces the table with one sized for the live entries (half full),
    /// dropping tombstones: twice as large when the table filled with
    /// entries, the same size or smaller when it filled with tombstones
    /// (eviction makes many; doubling for them grew the index past a small
    /// `max_bytes` on its own).
    fn grow(&self, old: &Arc<Index>) -> Result<Arc<Index>> {
        // ENTRIES was just recounted, so it is at most the old capacity.
        let cap = Index::capacity_for(old.word(hdr::ENTRIES).saturating_add(1));
        let new = Index::create(&self.tmp, &tmp_index_name(), cap, Some((old, &CARRY_ALL)))?;
        old.copy_into(&new);
        new.set(hdr::TOMBSTONES, 0);
        self.install(new, old)
    }

    fn install(&self, new: Index, old: &Index) -> Result<Arc<Index>> {
        let tmp_path = new.path().to_path_buf();
        let installed = new.install(
            &self.tmp,
            &self.root,
            format::INDEX_FILE,
            Some(old),
            self.sync(),
        );
        let new = match installed {
            Ok(i) => Arc::new(i),
            Err(e) => {
                if let Some(name) = tmp_path.file_name().and_then(|n| n.to_str()) {
                    let _ = self.tmp.remove(name);
                }
                return Err(e);
            }
        };
        if self.sync() {
            self.root.sync()?;
        }
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = new.clone();
        Ok(new)
    }

    pub(super) fn clear(&self) -> Result<()> {
        let mut w = self.writer.lock()?;
        let old = self.index()?;
        let new = Index::create(
            &self.tmp,
            &tmp_index_name(),
            MIN_CAPACITY,
            Some((&old, &CARRY_CLEAR)),
        )?;
        self.install(new, &old)?;
        w.reset();
        // Unlinking keeps other processes' mappings (and our `Bytes`) valid.
        // Only files memo named are removed: anything else is left alone.
        self.segs.remove_all()?;
        self.blobs.remove_all()?;
        drop(w);
        self.segs.forget_all();
        self.blobs.forget_all();
        Ok(())
    }

    pub(super) fn trim(&self) -> Result<()> {
        let mut w = self.writer.lock()?;
        let idx = self.writer_index()?;
        let unlinks = self.enforce(&mut w, &idx, true, None)?;
        drop(w);
        for (key, id) in unlinks {
            self.blobs.unlink(&key, id);
        }
        Ok(())
    }
}

/// Accounts for a record that no slot points at any more; returns its
/// blob id if it had one (to unlink once published).
pub(super) fn retire(old: &Record, live: &mut u64, dead: &mut u64) -> Option<u64> {
    let size = old.size();
    *live = live.wrapping_sub(size).wrapping_sub(old.blob_file_size());
    *dead += size;
    if old.header.flags & FLAG_BLOB == 0 {
        return None;
    }
    decode_blob_ptr(old.payload()).map(|(id, _)| id)
}

/// A fresh name in `tmp/` for an index being built.
fn tmp_index_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format::tmp_index_name(std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Finds `key`'s live slot and record; caller holds the writer lock.
fn find(segs: &Segments, idx: &Index, key: &Key) -> Result<Probe<(usize, Record)>> {
    let probe = idx.probe(key.tag32(), |slot, snap| {
        match segs.record(snap.loc, Some(key)) {
            Ok(Read::Found(rec)) => Some(Ok((slot, rec))),
            Ok(Read::OtherKey | Read::Missing | Read::Damaged(_)) => None,
            Err(e) => Some(Err(e)),
        }
    });
    Ok(match probe {
        Probe::Found(r) => Probe::Found(r?),
        Probe::Absent { free } => Probe::Absent { free },
    })
}

/// Tombstones a slot whose record is gone or damaged (no tombstone record:
/// there is nothing valid to hide). Caller holds the writer lock.
pub(super) fn drop_slot(idx: &Index, slot: usize) {
    idx.set(hdr::DIRTY, 1);
    idx.write(slot, Snap::TOMBSTONE);
    add(idx, hdr::ENTRIES, -1);
    add(idx, hdr::TOMBSTONES, 1);
    idx.set(hdr::DIRTY, 0);
}

/// Adds a signed amount to a writer-state counter, saturating at 0.
pub(super) fn add(idx: &Index, w: usize, by: i64) {
    let v = idx.word(w);
    idx.set(w, v.saturating_add_signed(by));
}

/// Adds a wrapping delta (built with `wrapping_sub`) to a counter.
pub(super) fn adjust(idx: &Index, w: usize, delta: u64) {
    let v = idx.word(w).wrapping_add(delta);
    // A negative result means the counter was already off (after a repair):
    // clamp rather than wrap to a huge number.
    idx.set(w, if v > (1 << 62) { 0 } else { v });
}

/// Repairs after a writer that died while publishing. A torn slot keeps
/// its fields if they name a valid record whose key has the slot's tag (the
/// dead writer had written either the old or the new location, both
/// complete records), and becomes a tombstone otherwise; the entry counts
/// are then recomputed. Bounded by one pass over the table: the segments
/// are read only at torn slots.
fn recover(segs: &Segments, idx: &Index, tmp: &Dir) {
    let torn = idx.torn_slots();
    for &i in &torn {
        let snap = idx.read(i);
        let keep = loc::decode(snap.loc).is_some()
            && matches!(
                segs.record(snap.loc, None),
                Ok(Read::Found(rec)) if rec.header.key.tag32() == snap.tag
                    && rec.header.flags & FLAG_TOMBSTONE == 0
            );
        idx.settle(i, keep);
    }
    let (live, tombstones) = idx.count_slots();
    idx.set(hdr::ENTRIES, live);
    idx.set(hdr::TOMBSTONES, tombstones);
    idx.set(hdr::DIRTY, 0);
    let swept = crate::lock::sweep_unlocked(tmp, format::is_tmp_name);
    tracing::warn!(
        path = %idx.path().display(),
        torn = torn.len(),
        swept,
        "memo: repaired the index after a writer died mid-publish"
    );
}

/// Keeps a damaged index beside the store (`index.damaged-<unix time>`) for
/// inspection, and reports why; the caller rebuilds.
pub(super) fn set_aside_damaged_index(root: &Dir, why: &Error) -> Result<()> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = format::damaged_index_name(secs);
    root.rename(format::INDEX_FILE, root, &aside)?;
    tracing::warn!(error = %why, kept = %root.child(&aside).display(), "memo: the index is damaged; rebuilding it from the segments");
    Ok(())
}

/// Builds the index from the segments alone: the records are replayed in
/// order (later records win, tombstones remove), so a store whose index was
/// lost keeps every entry. Caller holds the writer lock.
pub(super) fn rebuild(segs: &Segments, tmp: &Dir, root: &Dir, sync: bool) -> Result<Index> {
    let ids = segs.ids()?;
    // key -> (location, value length, record size, blob file size)
    let mut live: HashMap<Key, (u64, u64, u64, u64)> = HashMap::new();
    let (mut appended, mut last_end) = (0_u64, format::SEG_HEADER_LEN as u64);
    for &id in &ids {
        let region = match segs.region(id) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "memo: rebuild skips an unreadable segment");
                continue;
            }
        };
        let path = segs.path(id);
        let end = segment::walk(&region, &path, None, |off, read| match read {
            Read::Found(rec) => {
                let h = rec.header;
                appended += rec.size();
                if h.flags & FLAG_TOMBSTONE != 0 {
                    live.remove(&h.key);
                } else {
                    let (len, blob_size) = match h.flags & FLAG_BLOB {
                        0 => (u64::from(h.len), 0),
                        _ => decode_blob_ptr(rec.payload()).map_or((0, 0), |(_, l)| {
                            (l, l.saturating_add(BLOB_HEADER_LEN as u64))
                        }),
                    };
                    live.insert(h.key, (loc::encode(id, off), len, rec.size(), blob_size));
                }
            }
            Read::Damaged(what) => {
                tracing::warn!(problem = what, "memo: rebuild skips a damaged record");
            }
            Read::OtherKey | Read::Missing => {}
        });
        last_end = end;
    }
    let tmp_name = format::tmp_rebuild_name(std::process::id());
    let _ = tmp.remove(&tmp_name);
    let idx = Index::create(tmp, &tmp_name, Index::capacity_for(live.len() as u64), None)?;
    let (mut live_bytes, mut record_bytes) = (0_u64, 0_u64);
    let now = idx.tick();
    for (key, &(l, len, size, blob)) in &live {
        if let Some(i) = idx.insert_fresh(Snap {
            tag: key.tag32(),
            loc: l,
            len: len.min(u64::from(u32::MAX)) as u32,
        }) {
            idx.reset_stats(i, now, 0, 0);
        }
        live_bytes = live_bytes.saturating_add(size.saturating_add(blob));
        record_bytes += size;
    }
    idx.set(hdr::ENTRIES, live.len() as u64);
    idx.set(hdr::LIVE_BYTES, live_bytes);
    idx.set(hdr::DEAD_BYTES, appended.saturating_sub(record_bytes));
    if let Some(&last) = ids.last() {
        idx.set(hdr::CUR_SEG, u64::from(last));
        idx.set(hdr::CUR_OFF, last_end);
        idx.set(hdr::NEXT_SEG, u64::from(last) + 1);
    }
    if !live.is_empty() {
        tracing::info!(entries = live.len(), path = %root.child(format::INDEX_FILE).display(), "memo: rebuilt the index from the segments");
    }
    idx.install(tmp, root, format::INDEX_FILE, None, sync)
}
