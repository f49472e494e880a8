//! Lock-free scans of the live entries: per-function statistics.

use std::time::Duration;

use super::Engine;
use crate::format::{BLOB_HEADER_LEN, FLAG_BLOB, FLAG_TOMBSTONE, decode_blob_ptr, loc};
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
        for slot in 0..idx.capacity() {
            let snap = idx.read(slot);
            if loc::decode(snap.loc).is_none() {
                continue;
            }
            let Ok(Read::Found(rec)) = self.segs.record(snap.loc, None) else {
                continue;
            };
            let h = rec.header;
            if h.flags & FLAG_TOMBSTONE != 0 || h.key.tag32() != snap.tag || !matches(&h.key) {
                continue;
            }
            let blob = if h.flags & FLAG_BLOB == 0 {
                0
            } else {
                decode_blob_ptr(rec.payload())
                    .map_or(0, |(_, len)| len.saturating_add(BLOB_HEADER_LEN as u64))
            };
            let s = idx.slot(slot);
            out.entries += 1;
            // Lengths come from disk: saturate.
            out.bytes = out.bytes.saturating_add(rec.size().saturating_add(blob));
            out.hits += u64::from(s.hits.load(std::sync::atomic::Ordering::Relaxed));
            cost_us += u64::from(s.cost.load(std::sync::atomic::Ordering::Relaxed));
        }
        out.compute_time = Duration::from_micros(cost_us);
        out
    }
}
