//! Compaction: a segment's live records rewritten at the end of the log,
//! their slots repointed, and the old file unlinked. Processes that have it
//! mapped keep reading valid bytes; others find it gone and look again. The
//! oldest segment goes first, so the tombstones in it can be dropped (no
//! older record they could hide is left).

use std::collections::HashMap;
use std::sync::Arc;

use super::Engine;
use super::account::Publish;
use super::recover::drop_slot;
use super::trim::used;
use crate::error::{IoContext, Result};
use crate::evict::{self, Budget};
use crate::format::{ALIGN_MIN, SEG_HEADER_LEN, hdr, loc};
use crate::index::{Index, Snap};
use crate::segment::{self, Appender, Read, RecordParts};

impl Engine {
    /// Compacts the oldest segments while the store is over its compaction
    /// target (or, without a byte limit, while dead bytes are half of the
    /// segment data).
    pub(super) fn compact(&self, w: &mut Appender, idx: &Arc<Index>, force: bool) -> Result<()> {
        let max_bytes = self.opts.max_bytes;
        let over = |idx: &Index| {
            let (dead, live) = (idx.word(hdr::DEAD_BYTES), idx.word(hdr::LIVE_BYTES));
            if let Some(m) = max_bytes
                && used(idx) > (m as f64 * Budget::COMPACT_TO) as u64
                && dead >= m / Budget::COMPACT_MIN_DEAD_DIV
            {
                return true;
            }
            if force {
                dead > 0 && dead.saturating_mul(Budget::TRIM_DEAD_DIV) >= live
            } else {
                dead >= Budget::DEAD_MIN && dead >= live
            }
        };
        if !over(idx) {
            return Ok(());
        }
        // Each segment's live slots and bytes, from one pass over the
        // slots. Compacting a segment moves its slots into the current
        // segment, which may be compacted later in this round: the moves
        // are added to its list, so every list stays true.
        let mut by_seg: HashMap<u32, (u64, Vec<(usize, Snap)>)> = HashMap::new();
        for (slot, snap) in idx.live() {
            if let Some((seg, _)) = loc::decode(snap.loc) {
                let entry = by_seg.entry(seg).or_default();
                entry.0 += evict::record_bytes(snap.len);
                entry.1.push((slot, snap));
            }
        }
        for seg in self.files.segs.ids()? {
            if !over(idx) {
                break;
            }
            let len = self.files.segs.file_len(seg);
            let data = len.saturating_sub(SEG_HEADER_LEN as u64);
            let (live, slots) = by_seg.remove(&seg).unwrap_or_default();
            // A segment with almost nothing dead is not worth rewriting.
            if data == 0
                || data
                    .saturating_sub(live)
                    .saturating_mul(Budget::SEGMENT_MIN_DEAD_DIV)
                    < data
            {
                continue;
            }
            for (slot, snap) in self.compact_segment(w, idx, seg, &slots)? {
                if let Some((to, _)) = loc::decode(snap.loc) {
                    let entry = by_seg.entry(to).or_default();
                    entry.0 += evict::record_bytes(snap.len);
                    entry.1.push((slot, snap));
                }
            }
        }
        Ok(())
    }

    /// Rewrites segment `seg`'s live records (`slots`, from the caller's
    /// pass over the table) at the end of the log, points their slots there
    /// and unlinks the file; returns the moved slots as they now are.
    fn compact_segment(
        &self,
        w: &mut Appender,
        idx: &Arc<Index>,
        seg: u32,
        slots: &[(usize, Snap)],
    ) -> Result<Vec<(usize, Snap)>> {
        let pos = idx.append_pos();
        if pos.current().0 == u64::from(seg) {
            // Seal it: the next append starts a new segment.
            pos.seal();
        }
        let file_len = self.files.segs.file_len(seg);
        // The live records of `seg`, in slot order, read in place.
        let mut moves: Vec<(usize, Snap, segment::Record)> = Vec::new();
        let mut damaged = Vec::new();
        for &(slot, snap) in slots {
            match self.files.segs.record(snap.loc, None)? {
                Read::Found(rec)
                    if !rec.header.is_tombstone()
                        && rec.header.key.tag32() == snap.tag
                        && rec.bytes().is_some() =>
                {
                    moves.push((slot, snap, rec));
                }
                _ => damaged.push(slot),
            }
        }
        let mut rewritten = 0_u64;
        let mut repointed = Vec::with_capacity(moves.len());
        // Records whose payload must stay aligned go one at a time, each
        // placed (after a pad record if needed) where the append lands.
        let (aligned, moves): (Vec<_>, Vec<_>) = moves
            .into_iter()
            .partition(|(_, _, rec)| rec.header.len as usize >= ALIGN_MIN);
        for (slot, snap, rec) in &aligned {
            let parts = RecordParts::copy_of(rec);
            let mut publish = Publish::begin(idx);
            let (at, pad) = match self.append_record(w, idx, &parts) {
                Ok(r) => r,
                Err(e) => {
                    publish.unchanged();
                    return Err(e);
                }
            };
            let now = Snap { loc: at, ..*snap };
            idx.write(*slot, now);
            repointed.push((*slot, now));
            // The pad is dead from the start; the record stays live.
            publish.dead(pad);
            publish.commit();
            rewritten += rec.size();
        }
        let mut i = 0;
        while i < moves.len() {
            // One write for as many records as fit in a batch.
            let limit = w.batch();
            let mut batch = Vec::with_capacity(limit);
            let mut j = i;
            while let Some((_, _, rec)) = moves.get(j) {
                // Present: checked when `moves` was built.
                let b = rec.bytes().unwrap_or(&[]);
                if !batch.is_empty() && batch.len() + b.len() > limit {
                    break;
                }
                batch.extend_from_slice(b);
                j += 1;
            }
            let publish = Publish::begin(idx);
            let at = match self.append(w, idx, &batch) {
                Ok(at) => at,
                Err(e) => {
                    publish.unchanged();
                    return Err(e);
                }
            };
            let Some((new_seg, base)) = loc::decode(at) else {
                publish.unchanged();
                return Ok(repointed);
            };
            let mut off = base;
            for (slot, snap, rec) in &moves[i..j] {
                let now = Snap {
                    loc: loc::encode(new_seg, off),
                    ..*snap
                };
                idx.write(*slot, now);
                repointed.push((*slot, now));
                off += rec.size();
            }
            // Moved records stay live and their old copies are counted
            // dead when the file goes: no counter changes here.
            publish.commit();
            rewritten += batch.len() as u64;
            i = j;
        }
        for slot in damaged {
            // Nothing valid to move: the entry is gone with the file.
            drop_slot(idx, slot);
        }
        if self.sync()
            && let Some((id, file)) = w.file()
        {
            // The copies must be on disk before the originals go: after a
            // power loss the replay finds them (they follow the checkpoint).
            file.sync_data().at(&self.files.segs.path(id))?;
        }
        // Every slot now points elsewhere: the file can go. Processes that
        // have it mapped keep reading it until they look again.
        self.files.segs.remove(seg)?;
        // What the file held beyond the repointed records was dead (or a failed
        // write's scratch): all of it is reclaimed.
        let mut publish = Publish::begin(idx);
        publish.reclaimed(file_len.saturating_sub(SEG_HEADER_LEN as u64 + rewritten));
        publish.commit();
        idx.bump(hdr::RECLAIMED, file_len.saturating_sub(rewritten));
        Ok(repointed)
    }
}
