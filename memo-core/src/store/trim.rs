//! Keeping a store within its limits: expiry, eviction and compaction, run
//! by the writer that crosses a limit (under `LOCK`) and by `Store::trim`.
//!
//! The disk bound: a put that takes the store past `max_bytes` evicts, by
//! the policy, until live data and the index fit in `LOW_WATER` of it, then
//! compacts the oldest segments until all of it fits in `COMPACT_TO`. So a
//! put returns with the store at most `COMPACT_TO` full, plus what one
//! compaction could not rewrite; each round frees a fifth or more of the
//! budget, so its cost is spread over the puts that fill it again.
//!
//! Compaction rewrites a segment's live records at the end of the current
//! segment, points their slots there, and unlinks the old file: processes
//! that have it mapped keep reading valid bytes; others find it gone and
//! look again. It takes the oldest segment first, so the tombstones in it
//! can be dropped (no older record they could hide is left).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Engine;
use super::write::{add, adjust, drop_slot, retire};
use crate::Key;
use crate::codec::RAW_ID;
use crate::error::Result;
use crate::evict::{self, Candidate};
use crate::format::{FLAG_TOMBSTONE, SEG_HEADER_LEN, SEGMENT_SIZE, hdr, loc};
use crate::index::{Index, Snap};
use crate::segment::{self, Appender, Read};
use crate::{Policy, format};

/// Eviction stops when live data and the index fit in this share of
/// `max_bytes` (and entries in this share of `max_entries`): a fifth of
/// the budget is freed per round, so rounds are rare.
const LOW_WATER: f64 = 0.8;
/// Compaction stops when everything fits in this share of `max_bytes`.
const COMPACT_TO: f64 = 0.9;
/// Without a byte limit, compaction starts once dead bytes are half the
/// segment data and at least this much.
pub(super) const DEAD_MIN: u64 = 64 << 20;
/// LFU halves hit counts each time the store sees this many accesses per
/// entry. Measured on the Zipf traces of `benches/eviction.rs` (1% budget):
/// 8 kept LFU 1.9 to 2.6 points of hit ratio below exact LFU without
/// ageing; 32 brings it within 0.8 points, and still lets past favourites
/// fade (`tests/eviction.rs`).
const AGE_EVERY: u64 = 32;

/// Blob files to unlink once the lock is released.
pub(super) type Unlinks = Vec<(Key, u64)>;

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Bytes the store takes, by its counters: records, blobs and the index.
pub(super) fn used(idx: &Index) -> u64 {
    idx.word(hdr::LIVE_BYTES)
        .saturating_add(idx.word(hdr::DEAD_BYTES))
        .saturating_add(index_len(idx))
}

fn index_len(idx: &Index) -> u64 {
    (format::INDEX_HEADER_LEN + idx.capacity() * format::SLOT_LEN) as u64
}

impl Engine {
    /// Whether any limit is set, so writers must look after each put.
    pub(super) fn has_limits(&self) -> bool {
        let o = &self.opts;
        o.max_bytes.is_some() || o.max_entries.is_some() || o.max_age.is_some()
    }

    /// Brings the store within its limits; `force` (from `trim`) evicts
    /// and compacts down to the low-water marks even if no limit is
    /// crossed. `protect` is the slot a put just wrote: it is not evicted
    /// by its own put (under LFU a new entry has the fewest hits). Caller
    /// holds the writer lock; the returned blobs are unlinked after it is
    /// released.
    pub(super) fn enforce(
        &self,
        w: &mut Appender,
        idx: &Arc<Index>,
        force: bool,
        protect: Option<usize>,
    ) -> Result<Unlinks> {
        let mut unlinks = Vec::new();
        let now = unix_now();
        record_time(idx, now);
        let o = &self.opts;
        if let Some(max_age) = o.max_age {
            let every = (max_age.as_secs() / 8).max(1);
            if force || now >= idx.word(hdr::AGE_SCAN).saturating_add(every) {
                idx.set(hdr::AGE_SCAN, now);
                self.expire(w, idx, now.saturating_sub(max_age.as_secs()), &mut unlinks)?;
            }
        }
        if o.policy != Policy::None {
            let over_bytes = o.max_bytes.is_some_and(|m| used(idx) > m);
            let over_entries = o.max_entries.is_some_and(|m| idx.word(hdr::ENTRIES) > m);
            if force || over_bytes || over_entries {
                let need_bytes = o.max_bytes.map_or(0, |m| {
                    let low = (m as f64 * LOW_WATER) as u64;
                    // Counters come from disk: saturate (found by the fuzzer).
                    idx.word(hdr::LIVE_BYTES)
                        .saturating_add(index_len(idx))
                        .saturating_sub(low)
                });
                let need_entries = o.max_entries.map_or(0, |m| {
                    idx.word(hdr::ENTRIES)
                        .saturating_sub((m as f64 * LOW_WATER) as u64)
                });
                self.evict(w, idx, need_bytes, need_entries, protect, &mut unlinks)?;
            }
        }
        self.compact(w, idx, force)?;
        Ok(unlinks)
    }

    /// Evicts every entry last used before `cutoff` (Unix seconds), as far
    /// as the time ring can tell.
    fn expire(
        &self,
        w: &mut Appender,
        idx: &Arc<Index>,
        cutoff: u64,
        unlinks: &mut Unlinks,
    ) -> Result<()> {
        let Some(tick) = tick_at(idx, cutoff) else {
            return Ok(());
        };
        let now = idx.word(hdr::TICK);
        // Entries used at or after `tick` are younger than this.
        let max_age = now.saturating_sub(tick).min(u64::from(u32::MAX)) as u32;
        let old: Vec<Candidate> = candidates(idx)
            .into_iter()
            .filter(|c| evict::age(now as u32, c.atime) > max_age)
            .collect();
        self.evict_all(w, idx, &old, unlinks)
    }

    /// Evicts by the policy until `bytes` and `entries` are freed.
    fn evict(
        &self,
        w: &mut Appender,
        idx: &Arc<Index>,
        bytes: u64,
        entries: u64,
        protect: Option<usize>,
        unlinks: &mut Unlinks,
    ) -> Result<()> {
        let policy = self.opts.policy;
        let mut cands = candidates(idx);
        cands.retain(|c| Some(c.slot) != protect);
        let now = idx.word(hdr::TICK) as u32;
        let clock_at = |age: u32| clock_at(idx, now, age);
        let (n, last) = evict::choose(policy, &mut cands, now, &clock_at, bytes, entries);
        self.evict_all(w, idx, &cands[..n], unlinks)?;
        if n > 0 {
            match policy {
                Policy::Lfu => age_hits(idx),
                Policy::CostAware => {
                    let l = f64::from_bits(idx.word(hdr::GDSF_CLOCK)).max(last);
                    idx.set(hdr::GDSF_CLOCK, l.to_bits());
                    push_ring(
                        idx,
                        hdr::CLOCK_RING,
                        hdr::CLOCK_RING_LEN,
                        hdr::CLOCK_RING_CAP,
                        (idx.word(hdr::TICK), l.to_bits()),
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes entries the way `remove` does (a tombstone record each
    /// keeps a rebuild from bringing them back), counting them as
    /// evictions. The tombstones go out in batched writes: one write per
    /// tombstone made a put with eviction active cost twice one without.
    fn evict_all(
        &self,
        w: &mut Appender,
        idx: &Arc<Index>,
        victims: &[Candidate],
        unlinks: &mut Unlinks,
    ) -> Result<()> {
        let mut items = Vec::with_capacity(victims.len());
        for c in victims {
            // The slot cannot change under this lock, but check anyway.
            let snap = idx.read(c.slot);
            if snap.loc != c.loc {
                continue;
            }
            if let Ok(Read::Found(rec)) = self.segs.record(snap.loc, None) {
                items.push((c.slot, rec));
            }
        }
        let sync = self.opts.durability == super::Durability::Sync;
        for chunk in items.chunks((w.batch() / format::REC_HEADER_LEN).max(1)) {
            let mut batch = Vec::with_capacity(chunk.len() * format::REC_HEADER_LEN);
            for (_, rec) in chunk {
                batch.extend_from_slice(&segment::build_record(
                    &rec.header.key,
                    RAW_ID,
                    FLAG_TOMBSTONE,
                    &[],
                ));
            }
            idx.set(hdr::DIRTY, 1);
            if let Err(e) = w.append(&self.segs, idx, &self.tmp, &batch, sync) {
                idx.set(hdr::DIRTY, 0);
                return Err(e);
            }
            let (mut live, mut dead) = (0_u64, batch.len() as u64);
            for (slot, rec) in chunk {
                idx.write(*slot, Snap::TOMBSTONE);
                if let Some(id) = retire(rec, &mut live, &mut dead) {
                    // The blob file goes once the lock is released.
                    idx.bump(hdr::RECLAIMED, rec.blob_file_size());
                    unlinks.push((rec.header.key, id));
                }
            }
            let n = i64::try_from(chunk.len()).unwrap_or(i64::MAX);
            add(idx, hdr::ENTRIES, -n);
            add(idx, hdr::TOMBSTONES, n);
            adjust(idx, hdr::LIVE_BYTES, live);
            adjust(idx, hdr::DEAD_BYTES, dead);
            idx.bump(hdr::EVICTIONS, chunk.len() as u64);
            idx.set(hdr::DIRTY, 0);
        }
        if sync && !items.is_empty() {
            idx.flush_all()?;
        }
        Ok(())
    }

    /// Compacts the oldest segments while the store is over its compaction
    /// target (or, without a byte limit, while dead bytes are half of the
    /// segment data).
    fn compact(&self, w: &mut Appender, idx: &Arc<Index>, force: bool) -> Result<()> {
        let max_bytes = self.opts.max_bytes;
        let over = |idx: &Index| {
            let (dead, live) = (idx.word(hdr::DEAD_BYTES), idx.word(hdr::LIVE_BYTES));
            if let Some(m) = max_bytes
                && used(idx) > (m as f64 * COMPACT_TO) as u64
                && dead >= m / 20
            {
                return true;
            }
            if force {
                dead > 0 && dead.saturating_mul(4) >= live
            } else {
                dead >= DEAD_MIN && dead >= live
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
        for seg in self.segs.ids()? {
            if !over(idx) {
                break;
            }
            let len = self.segs.file_len(seg);
            let data = len.saturating_sub(SEG_HEADER_LEN as u64);
            let (live, slots) = by_seg.remove(&seg).unwrap_or_default();
            // A segment with almost nothing dead is not worth rewriting.
            if data == 0 || data.saturating_sub(live).saturating_mul(10) < data {
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
        if idx.word(hdr::CUR_SEG) == u64::from(seg) {
            // Seal it: the next append starts a new segment.
            idx.set(hdr::CUR_OFF, SEGMENT_SIZE);
        }
        let file_len = self.segs.file_len(seg);
        // The live records of `seg`, in slot order, read in place.
        let mut moves: Vec<(usize, Snap, segment::Record)> = Vec::new();
        let mut damaged = Vec::new();
        for &(slot, snap) in slots {
            match self.segs.record(snap.loc, None)? {
                Read::Found(rec)
                    if rec.header.flags & FLAG_TOMBSTONE == 0
                        && rec.header.key.tag32() == snap.tag
                        && rec.bytes().is_some() =>
                {
                    moves.push((slot, snap, rec));
                }
                _ => damaged.push(slot),
            }
        }
        let sync = self.opts.durability == super::Durability::Sync;
        let mut rewritten = 0_u64;
        let mut repointed = Vec::with_capacity(moves.len());
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
            idx.set(hdr::DIRTY, 1);
            let at = match w.append(&self.segs, idx, &self.tmp, &batch, sync) {
                Ok(at) => at,
                Err(e) => {
                    idx.set(hdr::DIRTY, 0);
                    return Err(e);
                }
            };
            let Some((new_seg, base)) = loc::decode(at) else {
                idx.set(hdr::DIRTY, 0);
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
            idx.set(hdr::DIRTY, 0);
            rewritten += batch.len() as u64;
            i = j;
        }
        for slot in damaged {
            // Nothing valid to move: the entry is gone with the file.
            drop_slot(idx, slot);
        }
        if sync {
            idx.flush_all()?;
        }
        // Every slot now points elsewhere: the file can go. Processes that
        // have it mapped keep reading it until they look again.
        self.segs.remove(seg)?;
        // What the file held beyond the repointed records was dead (or a failed
        // write's scratch): all of it is reclaimed.
        let dead = file_len.saturating_sub(SEG_HEADER_LEN as u64 + rewritten);
        adjust(idx, hdr::DEAD_BYTES, 0_u64.wrapping_sub(dead));
        idx.bump(hdr::RECLAIMED, file_len.saturating_sub(rewritten));
        Ok(repointed)
    }
}

/// Every live slot, with the statistics eviction weighs.
fn candidates(idx: &Index) -> Vec<Candidate> {
    let mut out = Vec::with_capacity(idx.word(hdr::ENTRIES).min(1 << 24) as usize);
    for (slot, snap) in idx.live() {
        let s = idx.slot(slot);
        out.push(Candidate {
            slot,
            loc: snap.loc,
            size: evict::entry_size(snap.len),
            atime: s.atime.load(Ordering::Relaxed),
            hits: s.hits.load(Ordering::Relaxed),
            cost: s.cost.load(Ordering::Relaxed),
        });
    }
    out
}

/// LFU's ageing: halves every entry's hits once the access clock has
/// advanced by `AGE_EVERY` times the entries since the last halving, so a
/// favourite keeps its rank through a few turnovers of the store but not
/// forever. Hits racing in from readers may be lost to the halving; they
/// are hints.
fn age_hits(idx: &Index) {
    let (now, last) = (idx.word(hdr::TICK), idx.word(hdr::LFU_AGED));
    if now.saturating_sub(last) < AGE_EVERY.saturating_mul(idx.word(hdr::ENTRIES).max(1)) {
        return;
    }
    idx.set(hdr::LFU_AGED, now);
    for slot in 0..idx.capacity() {
        let h = &idx.slot(slot).hits;
        let _ = h.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            (v > 0).then_some(v / 2)
        });
    }
}

/// Appends `pair` to a ring of header words, dropping the oldest when full.
fn push_ring(idx: &Index, at: usize, len_word: usize, cap: usize, pair: (u64, u64)) {
    let len = (idx.word(len_word) as usize).min(cap);
    let len = if len == cap {
        for k in 1..cap {
            idx.set(at + 2 * (k - 1), idx.word(at + 2 * k));
            idx.set(at + 2 * (k - 1) + 1, idx.word(at + 2 * k + 1));
        }
        cap - 1
    } else {
        len
    };
    idx.set(at + 2 * len, pair.0);
    idx.set(at + 2 * len + 1, pair.1);
    idx.set(len_word, (len + 1) as u64);
}

fn ring(idx: &Index, at: usize, len_word: usize, cap: usize) -> Vec<(u64, u64)> {
    let len = (idx.word(len_word) as usize).min(cap);
    (0..len)
        .map(|k| (idx.word(at + 2 * k), idx.word(at + 2 * k + 1)))
        .collect()
}

/// Notes the access clock's reading at `now` (Unix seconds) in the time
/// ring, at most once per the ring's spacing; a full ring keeps every other
/// entry and doubles its spacing, so 64 entries span any age.
pub(super) fn record_time(idx: &Index, now: u64) {
    let r = ring(idx, hdr::TIME_RING, hdr::TIME_RING_LEN, hdr::TIME_RING_CAP);
    let spacing = idx.word(hdr::TIME_RING_SPACING).max(1);
    if r.last()
        .is_some_and(|&(_, t)| now < t.saturating_add(spacing))
    {
        return;
    }
    if r.len() == hdr::TIME_RING_CAP {
        let kept: Vec<(u64, u64)> = r.iter().step_by(2).copied().collect();
        for (k, &(tick, t)) in kept.iter().enumerate() {
            idx.set(hdr::TIME_RING + 2 * k, tick);
            idx.set(hdr::TIME_RING + 2 * k + 1, t);
        }
        idx.set(hdr::TIME_RING_LEN, kept.len() as u64);
        idx.set(hdr::TIME_RING_SPACING, spacing.saturating_mul(2));
    }
    push_ring(
        idx,
        hdr::TIME_RING,
        hdr::TIME_RING_LEN,
        hdr::TIME_RING_CAP,
        (idx.word(hdr::TICK), now),
    );
}

/// The access clock's reading at the last ring entry at or before `secs`.
fn tick_at(idx: &Index, secs: u64) -> Option<u64> {
    ring(idx, hdr::TIME_RING, hdr::TIME_RING_LEN, hdr::TIME_RING_CAP)
        .into_iter()
        .take_while(|&(_, t)| t <= secs)
        .last()
        .map(|(tick, _)| tick)
}

/// The cost-aware clock as it was `age` accesses before `now`.
fn clock_at(idx: &Index, now: u32, age: u32) -> f64 {
    ring(
        idx,
        hdr::CLOCK_RING,
        hdr::CLOCK_RING_LEN,
        hdr::CLOCK_RING_CAP,
    )
    .into_iter()
    .take_while(|&(tick, _)| evict::age(now, tick as u32) >= age)
    .last()
    .map_or(0.0, |(_, l)| f64::from_bits(l))
}

/// Recounts the byte counters from the slots and the segment files: after
/// a writer died, they may have missed its last record.
pub(super) fn recount_bytes(engine: &Engine, idx: &Index) {
    let (mut live, mut records) = (0_u64, 0_u64);
    for (_, snap) in idx.live() {
        if let Ok(Read::Found(rec)) = engine.segs.record(snap.loc, None) {
            records += rec.size();
            live = live.saturating_add(rec.size().saturating_add(rec.blob_file_size()));
        }
    }
    let seg_bytes: u64 = engine.segs.ids().map_or(0, |ids| {
        ids.iter()
            .map(|&id| {
                engine
                    .segs
                    .file_len(id)
                    .saturating_sub(SEG_HEADER_LEN as u64)
            })
            .sum()
    });
    idx.set(hdr::LIVE_BYTES, live);
    idx.set(hdr::DEAD_BYTES, seg_bytes.saturating_sub(records));
}
