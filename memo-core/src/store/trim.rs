//! Keeping a store within its limits: after a put crosses one, and on
//! `Store::trim`. Expiry (`max_age`), then eviction by the policy, then
//! compaction (`compact.rs`), all under `LOCK`, with the fractions of
//! `evict::Budget`.
//!
//! The disk bound: a put that takes the store past `max_bytes` evicts, by
//! the policy, until live data and the index fit in `Budget::LOW_WATER` of
//! it, then compacts the oldest segments until all of it fits in
//! `Budget::COMPACT_TO`. So a put returns with the store at most that full,
//! plus what one compaction could not rewrite; each round frees a fifth or
//! more of the budget, so its cost is spread over the puts that fill it
//! again.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Engine;
use super::account::Publish;
use crate::Key;
use crate::clock;
use crate::codec::RAW_ID;
use crate::error::Result;
use crate::evict::{self, Budget, Candidate, Policy};
use crate::format::{self, FLAG_TOMBSTONE, hdr};
use crate::index::Index;
use crate::segment::{self, Appender, Read};

/// Blob files to unlink once the lock is released.
pub(super) type Unlinks = Vec<(Key, u64)>;

/// Bytes the store takes, by its counters: records, blobs and the index.
pub(super) fn used(idx: &Index) -> u64 {
    idx.word(hdr::LIVE_BYTES)
        .saturating_add(idx.word(hdr::DEAD_BYTES))
        .saturating_add(idx.file_len())
}

impl Engine {
    pub(super) fn trim(&self) -> Result<()> {
        self.settle_installs();
        let mut w = self.writer.lock()?;
        let idx = self.writer_index()?;
        // Maintenance finishes a growth in progress too: its old table
        // goes now, not after the next puts.
        let finished = self.move_all(&idx)?;
        let unlinks = self.enforce(&mut w, &idx, true, None)?;
        drop(w);
        self.unlink_all(unlinks);
        self.settle_growth(finished)
    }

    /// Keeps the store within its limits after a put to `slot`: the
    /// writer's next duty, whose failure (an I/O error while compacting)
    /// does not undo the committed put.
    pub(super) fn after_publish(&self, w: &mut Appender, idx: &Arc<Index>, slot: usize) -> Unlinks {
        if !self.has_limits() && idx.word(hdr::DEAD_BYTES) < Budget::DEAD_MIN {
            // Kept by every writer (`enforce` keeps it too), so a process
            // opening the store later with `max_age` knows when existing
            // entries were last used.
            clock::record_time(idx, crate::time::unix_now());
            return Vec::new();
        }
        self.enforce(w, idx, false, Some(slot)).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "memo: could not bring the store within its limits");
            Vec::new()
        })
    }

    /// Brings the store within its limits; `force` (from `trim`) evicts
    /// and compacts down to the low-water marks even if no limit is
    /// crossed. `protect` is the slot a put just wrote: it is not evicted
    /// by its own put (under LFU a new entry has the fewest hits). Caller
    /// holds the writer lock; the returned blobs are unlinked after it is
    /// released.
    fn enforce(
        &self,
        w: &mut Appender,
        idx: &Arc<Index>,
        force: bool,
        protect: Option<usize>,
    ) -> Result<Unlinks> {
        let mut unlinks = Vec::new();
        let now = crate::time::unix_now();
        clock::record_time(idx, now);
        let o = &self.opts;
        if let Some(max_age) = o.max_age {
            let every = (max_age.as_secs() / Budget::AGE_SCAN_DIV).max(1);
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
                    let low = (m as f64 * Budget::LOW_WATER) as u64;
                    // Counters come from disk: saturate (found by the fuzzer).
                    idx.word(hdr::LIVE_BYTES)
                        .saturating_add(idx.file_len())
                        .saturating_sub(low)
                });
                let need_entries = o.max_entries.map_or(0, |m| {
                    idx.word(hdr::ENTRIES)
                        .saturating_sub((m as f64 * Budget::LOW_WATER) as u64)
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
        let Some(tick) = clock::tick_at(idx, cutoff) else {
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
        let inflation_at = |age: u32| clock::inflation_at(idx, now, age);
        let (n, last) = evict::choose(policy, &mut cands, now, &inflation_at, bytes, entries);
        self.evict_all(w, idx, &cands[..n], unlinks)?;
        if n > 0 {
            match policy {
                Policy::Lfu => evict::age_hits(idx),
                Policy::CostAware => {
                    let l = f64::from_bits(idx.word(hdr::GDSF_CLOCK)).max(last);
                    idx.set(hdr::GDSF_CLOCK, l.to_bits());
                    clock::record_inflation(idx, l);
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
            if let Ok(Read::Found(rec)) = self.files.segs.record(snap.loc, None) {
                items.push((c.slot, rec));
            }
        }
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
            let mut p = Publish::begin(idx);
            if let Err(e) = self.append(w, idx, &batch) {
                p.unchanged();
                return Err(e);
            }
            p.dead(batch.len() as u64);
            for (slot, rec) in chunk {
                self.retire_stats(idx, *slot, &rec.header.key);
                p.tombstone(*slot);
                if let Some(id) = p.retire(rec, self.saved_by(rec)) {
                    // The blob file goes once the lock is released.
                    idx.bump(hdr::RECLAIMED, rec.blob_file_size());
                    unlinks.push((rec.header.key, id));
                }
            }
            p.commit();
            idx.bump(hdr::EVICTIONS, chunk.len() as u64);
        }
        // Not synced even for durable stores: an eviction lost to a power
        // failure brings back exact values, which the next trim evicts.
        Ok(())
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
            cost: idx.cost_us(slot),
        });
    }
    out
}
