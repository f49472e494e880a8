//! Eviction's knobs and choices: the [`Policy`], the [`Budget`] every limit
//! is enforced with, LFU's ageing, and each policy's priority of an entry,
//! from the access statistics its index slot keeps (last use on the access
//! clock, hits, compute cost, size). Lower priority goes first.
//!
//! - `Lru`: last use. The access clock counts every hit and put, so the
//!   order is exact, not rounded to a time unit.
//! - `Lfu`: hits, ties broken by last use, with ageing ([`age_hits`]).
//! - `CostAware`: Greedy-Dual-Size-Frequency (Cherkasova 1998), priority
//!   `L + (hits + 1) × cost ÷ size`, where `L` is an inflation clock set to
//!   the priority of the last evicted entry and read as it was at the
//!   entry's last use. What is expensive to recompute per byte stays; what
//!   was valuable once ages out as `L` rises past it.
//! - `None`: nothing is evicted.

use std::sync::atomic::Ordering;

use crate::format::{BLOB_HEADER_LEN, BLOB_PTR_LEN, INLINE_MAX, hdr, record_size};
use crate::index::Index;

/// Which entries eviction removes first when a limit is reached.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// Least recently used first. Recency is counted in accesses (every
    /// hit and put, from every process), not rounded to a time unit.
    #[default]
    Lru,
    /// Least frequently used first (ties: least recent), with ageing: once
    /// the store has seen 32 accesses per entry since the last halving, the
    /// next eviction round halves every entry's hit count, so past
    /// favourites fade.
    Lfu,
    /// Greedy-Dual-Size-Frequency: lowest `L + (hits + 1) × compute cost ÷
    /// size` first, where `L` is an inflation clock raised to each evicted
    /// entry's priority. What is expensive to recompute per byte stays;
    /// what was valuable once ages out. Costs come from `get_or_compute`,
    /// `#[memoize]` and [`Store::put_with_cost`](crate::Store::put_with_cost).
    CostAware,
    /// Never evict: `max_bytes` and `max_entries` are not enforced (dead
    /// records are still compacted, `max_age` still expires).
    None,
}

/// The fractions and floors every limit is enforced with.
pub(crate) struct Budget;

impl Budget {
    /// Eviction stops when live data and the index fit in this share of
    /// `max_bytes` (and entries in this share of `max_entries`): a fifth of
    /// the budget is freed per round, so rounds are rare and their cost is
    /// spread over the puts that fill the store again.
    pub const LOW_WATER: f64 = 0.8;
    /// Compaction stops when everything fits in this share of `max_bytes`.
    pub const COMPACT_TO: f64 = 0.9;
    /// Under a byte limit, compaction runs only once dead bytes are at
    /// least `max_bytes` divided by this (a twentieth): less is not worth
    /// rewriting segments for.
    pub const COMPACT_MIN_DEAD_DIV: u64 = 20;
    /// A segment is rewritten only if at least this share of it (a tenth)
    /// is dead.
    pub const SEGMENT_MIN_DEAD_DIV: u64 = 10;
    /// Without a byte limit, compaction starts once dead bytes are at least
    /// this much and at least the live bytes.
    pub const DEAD_MIN: u64 = 64 << 20;
    /// `trim` compacts once dead bytes are at least live bytes divided by
    /// this (a quarter).
    pub const TRIM_DEAD_DIV: u64 = 4;
    /// Under a byte limit, segments are `max_bytes` divided by this (an
    /// eighth), and at least `SEGMENT_FLOOR`: compaction rewrites a
    /// segment's live records before unlinking it, so for a moment the store
    /// holds both, and an eighth keeps that overshoot small (whole 64 MiB
    /// segments in a 3 MiB store let a compaction double its files, measured
    /// from another process).
    pub const SEGMENT_DIV: u64 = 8;
    /// The smallest segment a byte limit makes.
    pub const SEGMENT_FLOOR: u64 = 256 * 1024;
    /// With `max_age`, puts look for expired entries every `max_age`
    /// divided by this (an eighth).
    pub const AGE_SCAN_DIV: u64 = 8;
}

/// LFU halves every hit count once the store has seen this many accesses
/// per entry since the last halving (checked after each eviction round).
/// Measured on the Zipf traces of `benches/eviction.rs` (1% budget): 8 kept
/// LFU 1.9 to 2.6 points of hit ratio below exact LFU without ageing; 32
/// brings it within 0.8 points, and still lets past favourites fade
/// (`tests/eviction.rs`).
const AGE_EVERY: u64 = 32;

/// LFU's ageing: halves every entry's hits once the access clock has
/// advanced by `AGE_EVERY` times the entries since the last halving, so a
/// favourite keeps its rank through a few turnovers of the store but not
/// forever. Hits racing in from readers may be lost to the halving; they
/// are hints. Writers only, under `LOCK`.
pub(crate) fn age_hits(idx: &Index) {
    let (now, last) = (idx.word(hdr::TICK), idx.word(hdr::LFU_AGED));
    if now.saturating_sub(last) < AGE_EVERY.saturating_mul(idx.word(hdr::ENTRIES).max(1)) {
        return;
    }
    idx.set(hdr::LFU_AGED, now);
    for slot in idx.slot_ids() {
        let h = &idx.slot(slot).hits;
        let _ = h.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            (v > 0).then_some(v / 2)
        });
    }
}

/// A live entry as eviction sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate {
    pub slot: usize,
    pub loc: u64,
    /// Bytes on disk: its record, and its blob file if it has one.
    pub size: u64,
    /// The access clock at its last use (low 32 bits).
    pub atime: u32,
    pub hits: u32,
    /// Compute cost in microseconds.
    pub cost: u64,
}

/// Bytes an entry whose value is `len` bytes takes on disk (a slot keeps
/// the length saturated at `u32::MAX`; such a blob counts as 4 GiB).
pub(crate) fn entry_size(len: u32) -> u64 {
    let len = len as usize;
    if len < INLINE_MAX {
        record_size(len) as u64
    } else {
        (record_size(BLOB_PTR_LEN) + BLOB_HEADER_LEN + len) as u64
    }
}

/// Bytes an entry whose value is `len` bytes takes in its segment (a large
/// value's record only points at its blob file).
pub(crate) fn record_bytes(len: u32) -> u64 {
    let len = len as usize;
    record_size(if len < INLINE_MAX { len } else { BLOB_PTR_LEN }) as u64
}

/// How many accesses ago `atime` was, on a clock now at `now` (both low 32
/// bits of the access clock; correct for ages below 2^32 accesses).
pub(crate) fn age(now: u32, atime: u32) -> u32 {
    now.wrapping_sub(atime)
}

/// The entry's priority: lower is evicted first. `clock_at` gives the
/// cost-aware inflation clock as it was at a given age.
pub(crate) fn priority(
    policy: Policy,
    c: &Candidate,
    now: u32,
    clock_at: &dyn Fn(u32) -> f64,
) -> f64 {
    let accesses = age(now, c.atime);
    let since = f64::from(accesses);
    match policy {
        Policy::Lfu => f64::from(c.hits) - since / f64::from(u32::MAX) * 0.5,
        Policy::CostAware => {
            let value = (f64::from(c.hits) + 1.0) * c.cost.max(1) as f64 / c.size.max(1) as f64;
            clock_at(accesses) + value
        }
        // `Lru`, and any later policy until it is written here.
        _ => -since,
    }
}

/// Orders `cands` lowest priority first and returns how many of the first
/// must go to free `bytes` and `entries`.
pub(crate) fn choose(
    policy: Policy,
    cands: &mut [Candidate],
    now: u32,
    clock_at: &dyn Fn(u32) -> f64,
    bytes: u64,
    entries: u64,
) -> (usize, f64) {
    if cands.is_empty() || (bytes == 0 && entries == 0) {
        return (0, 0.0);
    }
    let mut keyed: Vec<(f64, Candidate)> = cands
        .iter()
        .map(|c| (priority(policy, c, now, clock_at), *c))
        .collect();
    keyed.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let (mut freed, mut n, mut last) = (0_u64, 0_usize, 0.0);
    for (p, c) in &keyed {
        if freed >= bytes && n as u64 >= entries {
            break;
        }
        freed = freed.saturating_add(c.size);
        n += 1;
        last = *p;
    }
    for (dst, (_, c)) in cands.iter_mut().zip(&keyed) {
        *dst = *c;
    }
    (n, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(slot: usize, atime: u32, hits: u32, cost: u64, size: u64) -> Candidate {
        Candidate {
            slot,
            loc: 0,
            size,
            atime,
            hits,
            cost,
        }
    }

    fn order(policy: Policy, mut cands: Vec<Candidate>, now: u32) -> Vec<usize> {
        let n = cands.len() as u64;
        choose(policy, &mut cands, now, &|_| 0.0, 0, n);
        cands.iter().map(|c| c.slot).collect()
    }

    #[test]
    fn lru_evicts_the_least_recent_across_clock_wrap() {
        // Clock wrapped: 5 accesses ago is `u32::MAX - 3` + ... in low bits.
        let now = 2_u32;
        let cands = vec![
            c(0, now.wrapping_sub(5), 9, 0, 10),
            c(1, now.wrapping_sub(50), 0, 0, 10),
            c(2, now, 0, 0, 10),
        ];
        assert_eq!(order(Policy::Lru, cands, now), [1, 0, 2]);
    }

    #[test]
    fn lfu_evicts_the_least_used_then_the_least_recent() {
        let cands = vec![
            c(0, 90, 5, 0, 10),
            c(1, 99, 1, 0, 10),
            c(2, 10, 1, 0, 10),
            c(3, 5, 50, 0, 10),
        ];
        assert_eq!(order(Policy::Lfu, cands, 100), [2, 1, 0, 3]);
    }

    #[test]
    fn cost_aware_keeps_what_is_expensive_per_byte() {
        // Same hits and recency: cost per byte decides.
        let cands = vec![
            c(0, 50, 0, 1_000_000, 1_000_000), // 1 µs per byte
            c(1, 50, 0, 1_000, 100),           // 10 µs per byte
            c(2, 50, 0, 10, 100),              // 0.1 µs per byte
        ];
        assert_eq!(order(Policy::CostAware, cands, 100), [2, 0, 1]);
        // The inflation clock as it was at last use: a recently used cheap
        // entry outranks an old expensive one once `L` has grown.
        let old = c(0, 0, 0, 1_000, 100);
        let recent = c(1, 99, 0, 100, 100);
        let clock_at = |age: u32| if age > 50 { 0.0 } else { 100.0 };
        let mut cands = vec![old, recent];
        choose(Policy::CostAware, &mut cands, 100, &clock_at, 0, 2);
        assert_eq!(cands[0].slot, 0);
    }

    #[test]
    fn choose_frees_enough_bytes_and_entries() {
        let mut cands: Vec<Candidate> = (0..10).map(|i| c(i, i as u32, 0, 0, 100)).collect();
        let (n, _) = choose(Policy::Lru, &mut cands, 10, &|_| 0.0, 250, 0);
        assert_eq!(n, 3);
        assert_eq!(
            cands[..3].iter().map(|c| c.slot).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let (n, _) = choose(Policy::Lru, &mut cands, 10, &|_| 0.0, 0, 5);
        assert_eq!(n, 5);
        assert_eq!(choose(Policy::Lru, &mut cands, 10, &|_| 0.0, 0, 0).0, 0);
    }

    #[test]
    fn sizes_count_records_and_blob_files() {
        assert_eq!(entry_size(100), record_size(100) as u64);
        assert_eq!(
            entry_size(INLINE_MAX as u32),
            (64 + 128 + INLINE_MAX) as u64
        );
    }
}
