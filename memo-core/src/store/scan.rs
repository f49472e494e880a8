//! Lock-free scans of the live entries: per-function statistics.

use std::time::Duration;

use super::Engine;
use crate::segment::Read;
use crate::{FunctionStats, Key};

impl Engine {
    /// Totals over the live entries whose key `matches`. One pass over the
    /// table, reading the record of every live slot (its key is there): a
    /// few milliseconds per 100k entries. Racing writers may make the
    /// figures a moment old, never wrong about what an entry is.
    pub(crate) fn stats_matching(&self, matches: impl Fn(&Key) -> bool) -> FunctionStats {
        let mut out = FunctionStats::default();
        let Ok(idx) = self.index() else {
            return out;
        };
        let mut cost_us = 0_u64;
        for (slot, snap) in idx.live() {
            let Ok(Read::Found(rec)) = self.segs.record(snap.loc, None) else {
                continue;
            };
            let h = rec.header;
            if h.is_tombstone() || h.key.tag32() != snap.tag || !matches(&h.key) {
                continue;
            }
            let s = idx.slot(slot);
            out.entries += 1;
            // Lengths come from disk: saturate.
            out.bytes = out
                .bytes
                .saturating_add(rec.size().saturating_add(rec.blob_file_size()));
            out.hits += u64::from(s.hits.load(std::sync::atomic::Ordering::Relaxed));
            cost_us += u64::from(s.cost.load(std::sync::atomic::Ordering::Relaxed));
        }
        out.compute_time = Duration::from_micros(cost_us);
        out
    }
}
