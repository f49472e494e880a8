//! Repair and rebuild: what a writer does after another died mid-publish,
//! with damage readers found, and when the index is lost or damaged.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};

use super::Engine;
use super::account::{Publish, saved_by};
use super::durable;
use crate::Key;
use crate::blob::Blobs;
use crate::dir::Dir;
use crate::error::{Error, Result};
use crate::format::{self, SEG_HEADER_LEN, hdr, loc};
use crate::index::{Index, Probe, Snap};
use crate::segment::{self, Read, Segments};

impl Engine {
    /// The index a writer works on: current, repaired if the last writer
    /// died mid-publish, and rid of the damage this process's readers found.
    /// Caller holds the writer lock.
    pub(super) fn writer_index(&self) -> Result<Arc<Index>> {
        let idx = self.index()?;
        if idx.word(hdr::DIRTY) != 0 {
            recover(&self.files.segs, &idx, &self.files.tmp);
            recount_bytes(&self.files.segs, &self.files.blobs, &idx);
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
            if !current || !idx.is_current(d.slot) || idx.read(d.slot).loc != d.loc {
                continue;
            }
            drop_slot(idx, d.slot);
            if let Some((key, id)) = d.blob {
                self.files.blobs.unlink(&key, id);
            }
        }
    }
}

/// Tombstones a slot whose record is gone or damaged (no tombstone record:
/// there is nothing valid to hide). Caller holds the writer lock.
pub(super) fn drop_slot(idx: &Index, slot: usize) {
    let mut p = Publish::begin(idx);
    p.tombstone(slot);
    p.commit();
}

/// Repairs after a writer that died while publishing. A torn slot keeps
/// its fields if they name a valid record whose key has the slot's tag (the
/// dead writer had written either the old or the new location, both
/// complete records), and becomes a tombstone otherwise; the entry counts
/// are then recomputed. Bounded by one pass over the table: the segments
/// are read only at torn slots.
fn recover(segs: &Segments, idx: &Index, tmp: &Dir) {
    // The repair is itself a publish: if this writer dies too, the next
    // one starts over.
    let p = Publish::begin(idx);
    // First, before any key can change: copies a step of a growth made
    // past its recorded end.
    let undone = idx.undo_step();
    let torn = idx.torn_slots();
    for &i in &torn {
        let snap = idx.read(i);
        let keep = loc::decode(snap.loc).is_some()
            && matches!(
                segs.record(snap.loc, None),
                Ok(Read::Found(rec)) if rec.header.key.tag32() == snap.tag
                    && !rec.header.is_tombstone()
            );
        idx.settle(i, keep);
    }
    let (live, tombstones) = idx.count_slots();
    idx.set(hdr::ENTRIES, live);
    idx.set(hdr::TOMBSTONES, tombstones);
    p.commit();
    let swept = crate::lock::sweep_unlocked(tmp, format::is_tmp_name);
    tracing::warn!(
        path = %idx.path().display(),
        torn = torn.len(),
        undone,
        swept,
        "memo: repaired the index after a writer died mid-publish"
    );
}

/// Recounts the byte counters from the slots and the segment files: after
/// a writer died, they may have missed its last record.
fn recount_bytes(segs: &Segments, blobs: &Blobs, idx: &Index) {
    let (mut live, mut records) = (0_u64, 0_u64);
    for (_, snap) in idx.live() {
        if let Ok(Read::Found(rec)) = segs.record(snap.loc, None) {
            records += rec.size();
            live = live.saturating_add(rec.size().saturating_add(rec.blob_file_size()));
        }
    }
    recount_saved(segs, blobs, idx);
    let seg_bytes: u64 = segs.ids().map_or(0, |ids| {
        ids.iter()
            .map(|&id| segs.file_len(id).saturating_sub(SEG_HEADER_LEN as u64))
            .sum()
    });
    idx.set(hdr::LIVE_BYTES, live);
    idx.set(hdr::DEAD_BYTES, seg_bytes.saturating_sub(records));
}

/// Recounts `hdr::SAVED` from the live entries' records (and the
/// prefixes of compressed blobs).
fn recount_saved(segs: &Segments, blobs: &Blobs, idx: &Index) {
    let mut saved = 0_u64;
    for (_, snap) in idx.live() {
        if let Ok(Read::Found(rec)) = segs.record(snap.loc, None) {
            saved = saved.saturating_add(saved_by(blobs, &rec));
        }
    }
    idx.set(hdr::SAVED, saved);
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
pub(super) fn rebuild(
    segs: &Segments,
    blobs: &Blobs,
    tmp: &Dir,
    root: &Dir,
    sync: bool,
) -> Result<Index> {
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
            Read::Found(rec) if rec.header.is_pad() => appended += rec.size(),
            Read::Found(rec) => {
                let h = rec.header;
                appended += rec.size();
                if h.is_tombstone() {
                    live.remove(&h.key);
                } else {
                    let len = match rec.blob() {
                        Some((_, l)) => l,
                        None if h.is_blob() => 0,
                        None => u64::from(h.len),
                    };
                    let blob_size = rec.blob_file_size();
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
    recount_saved(segs, blobs, &idx);
    if let Some(&last) = ids.last() {
        idx.set(hdr::CUR_SEG, u64::from(last));
        idx.set(hdr::CUR_OFF, last_end);
        idx.set(hdr::NEXT_SEG, u64::from(last) + 1);
    }
    if !live.is_empty() {
        tracing::info!(entries = live.len(), path = %root.child(format::INDEX_FILE).display(), "memo: rebuilt the index from the segments");
    }
    let idx = idx.install(tmp, root, format::INDEX_FILE, None, sync)?;
    // The rebuilt table holds every entry: a growth's old table is moot.
    root.remove(format::PREV_INDEX_FILE)?;
    Ok(idx)
}

/// A record the replay after a restart applies.
struct Replayed {
    loc: u64,
    key: Key,
    tombstone: bool,
    len: u64,
}

impl Engine {
    /// The first open after the system restarted: pages of the index may
    /// have been lost with the page cache, so the records after its
    /// checkpoint are applied again in log order (later records win,
    /// tombstones remove), slots pointing into segments that are gone are
    /// dropped, the end of the log is found from the segments themselves,
    /// and the counters recounted. See `durable.rs`.
    pub(super) fn after_restart(&self) -> Result<()> {
        let _w = self.writer.lock()?;
        let mut idx = self.writer_index()?;
        if crate::index::boot::same_boot(&idx) {
            return Ok(());
        }
        if idx.header_says_moving() || self.files.root.kind(format::PREV_INDEX_FILE)?.is_some() {
            return self.rebuild_after_restart(&idx);
        }
        let ids = self.files.segs.ids()?;
        // A store only flushing writers used promised nothing across a power
        // loss: only the end of the log must be found again.
        let from = if idx.word(hdr::DURABLE) == 0 {
            (ids.last().copied().unwrap_or(0), 0)
        } else {
            loc::decode(idx.word(hdr::CHECKPOINT)).unwrap_or((0, 0))
        };
        let mut records = Vec::new();
        let mut end = None;
        for &id in ids.iter().filter(|&&id| id >= from.0) {
            let Ok(Some(region)) = self.files.segs.region(id) else {
                continue;
            };
            let start = if id == from.0 { from.1 } else { 0 };
            let last = segment::walk(&region, &self.files.segs.path(id), None, |off, read| {
                if let Read::Found(rec) = read
                    && off >= start
                    && !rec.header.is_pad()
                {
                    records.push(Replayed {
                        loc: loc::encode(id, off),
                        key: rec.header.key,
                        tombstone: rec.header.is_tombstone(),
                        len: rec.blob().map_or(u64::from(rec.header.len), |(_, l)| l),
                    });
                }
            });
            end = Some((id, last));
        }
        // Counted, not read from the header: it may be as stale as the rest.
        let need = (idx.count_slots().0).saturating_add(records.len() as u64);
        if Index::capacity_for(need) > idx.capacity() as u64 {
            idx = self.grow_for(&idx, need)?;
        }
        let p = Publish::begin(&idx);
        let present: std::collections::HashSet<u32> = ids.iter().copied().collect();
        for (slot, snap) in idx.live() {
            if loc::decode(snap.loc).is_none_or(|(seg, _)| !present.contains(&seg)) {
                idx.write(slot, Snap::TOMBSTONE);
            }
        }
        let tick = idx.tick();
        for r in &records {
            let snap = Snap {
                tag: r.key.tag32(),
                loc: r.loc,
                len: r.len.min(u64::from(u32::MAX)) as u32,
            };
            let slot = match super::write::find(&self.files.segs, &idx, &r.key)? {
                Probe::Found((slot, _)) if r.tombstone => {
                    idx.write(slot, Snap::TOMBSTONE);
                    continue;
                }
                // Already there: keep its statistics.
                Probe::Found((slot, _)) if idx.read(slot).loc == r.loc => continue,
                Probe::Found((slot, _)) | Probe::Absent { free: Some(slot) } => slot,
                Probe::Absent { free: None } => continue,
            };
            if r.tombstone {
                continue;
            }
            idx.write(slot, snap);
            idx.reset_stats(slot, tick, 0, 0);
        }
        if let Some((seg, off)) = end {
            idx.set(hdr::CUR_SEG, u64::from(seg));
            idx.set(hdr::CUR_OFF, off);
            idx.set(
                hdr::NEXT_SEG,
                idx.word(hdr::NEXT_SEG).max(u64::from(seg) + 1),
            );
        }
        let (live, tombstones) = idx.count_slots();
        idx.set(hdr::ENTRIES, live);
        idx.set(hdr::TOMBSTONES, tombstones);
        p.commit();
        recount_bytes(&self.files.segs, &self.files.blobs, &idx);
        crate::index::boot::stamp_boot(&idx);
        tracing::info!(
            path = %idx.path().display(),
            replayed = records.len(),
            "memo: the system restarted since this store was last used; replayed its log from the last checkpoint"
        );
        if self.sync() {
            durable::checkpoint(&idx, idx.append_pos().word())?;
        }
        Ok(())
    }

    /// After a restart during a growth: pages of both tables (or of a new
    /// table not yet synced) may be lost, and neither can be trusted to
    /// agree with the other; the segments can. Caller holds the writer lock.
    fn rebuild_after_restart(&self, old: &Index) -> Result<()> {
        let new = rebuild(
            &self.files.segs,
            &self.files.blobs,
            &self.files.tmp,
            &self.files.root,
            self.sync(),
        )?;
        old.set(hdr::REPLACED, 1);
        crate::index::boot::stamp_boot(&new);
        let new = Arc::new(new);
        self.index.install(new.clone());
        tracing::info!(
            path = %new.path().display(),
            "memo: the system restarted during a growth of the index; rebuilt it from the segments"
        );
        if self.sync() {
            durable::checkpoint(&new, new.append_pos().word())?;
        }
        Ok(())
    }

    /// The first durable writer of a table marks it so (durably), and
    /// checkpoints it: a restart then replays from there.
    pub(super) fn start_durable(&self) -> Result<()> {
        let _w = self.writer.lock()?;
        let idx = self.writer_index()?;
        if idx.word(hdr::DURABLE) != 0 {
            return Ok(());
        }
        idx.set(hdr::DURABLE, 1);
        // Flushed whatever the checkpoint: DURABLE itself must be on disk.
        idx.flush_all()?;
        idx.raise(hdr::CHECKPOINT, idx.append_pos().word());
        Ok(())
    }
}
