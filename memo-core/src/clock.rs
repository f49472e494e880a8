//! Time in the shared index: the access clock (`hdr::TICK`, bumped by every
//! hit and put) is what slots record, and two rings of header words map it
//! to what eviction needs — wall-clock seconds for `max_age` (the time
//! ring), and the cost-aware inflation clock's past values (the clock ring).
//! Writers only, under `LOCK`, except reads.

use crate::evict;
use crate::format::hdr;
use crate::index::Index;

/// A ring of (u64, u64) pairs in the index header, oldest first.
#[derive(Clone, Copy)]
struct Ring {
    at: usize,
    len_word: usize,
    cap: usize,
}

const TIME: Ring = Ring {
    at: hdr::TIME_RING,
    len_word: hdr::TIME_RING_LEN,
    cap: hdr::TIME_RING_CAP,
};

const CLOCK: Ring = Ring {
    at: hdr::CLOCK_RING,
    len_word: hdr::CLOCK_RING_LEN,
    cap: hdr::CLOCK_RING_CAP,
};

impl Ring {
    fn read(self, idx: &Index) -> Vec<(u64, u64)> {
        // The length comes from disk: bounded by the capacity.
        let len = (idx.word(self.len_word) as usize).min(self.cap);
        (0..len)
            .map(|k| (idx.word(self.at + 2 * k), idx.word(self.at + 2 * k + 1)))
            .collect()
    }

    fn write(self, idx: &Index, pairs: &[(u64, u64)]) {
        for (k, &(a, b)) in pairs.iter().take(self.cap).enumerate() {
            idx.set(self.at + 2 * k, a);
            idx.set(self.at + 2 * k + 1, b);
        }
        idx.set(self.len_word, pairs.len().min(self.cap) as u64);
    }

    /// Appends `pair`, dropping the oldest when full.
    fn push(self, idx: &Index, pair: (u64, u64)) {
        let mut r = self.read(idx);
        if r.len() == self.cap {
            r.remove(0);
        }
        r.push(pair);
        self.write(idx, &r);
    }
}

/// Notes the access clock's reading at `now` (Unix seconds) in the time
/// ring, at most once per the ring's spacing; a full ring keeps every other
/// entry and doubles its spacing, so 64 entries span any age.
pub(crate) fn record_time(idx: &Index, now: u64) {
    let mut r = TIME.read(idx);
    let spacing = idx.word(hdr::TIME_RING_SPACING).max(1);
    if r.last()
        .is_some_and(|&(_, t)| now < t.saturating_add(spacing))
    {
        return;
    }
    if r.len() == TIME.cap {
        r = r.iter().step_by(2).copied().collect();
        idx.set(hdr::TIME_RING_SPACING, spacing.saturating_mul(2));
    }
    r.push((idx.word(hdr::TICK), now));
    TIME.write(idx, &r);
}

/// The access clock's reading at the last time-ring entry at or before
/// `secs`.
pub(crate) fn tick_at(idx: &Index, secs: u64) -> Option<u64> {
    TIME.read(idx)
        .into_iter()
        .take_while(|&(_, t)| t <= secs)
        .last()
        .map(|(tick, _)| tick)
}

/// The latest time (Unix seconds) the time ring knows the access clock
/// had reached `tick` by: a lower bound of when it read `tick`, as precise
/// as the ring's spacing. `None` if the ring is empty.
pub(crate) fn time_at(idx: &Index, tick: u64) -> Option<u64> {
    let ring = TIME.read(idx);
    let first = ring.first().map(|&(_, t)| t)?;
    Some(
        ring.into_iter()
            .take_while(|&(t, _)| t <= tick)
            .last()
            .map_or(first, |(_, secs)| secs),
    )
}

/// Notes the cost-aware inflation clock's new value `l` from now on.
pub(crate) fn record_inflation(idx: &Index, l: f64) {
    CLOCK.push(idx, (idx.word(hdr::TICK), l.to_bits()));
}

/// The cost-aware inflation clock as it was `age` accesses before `now`.
pub(crate) fn inflation_at(idx: &Index, now: u32, age: u32) -> f64 {
    CLOCK
        .read(idx)
        .into_iter()
        .take_while(|&(tick, _)| evict::age(now, tick as u32) >= age)
        .last()
        .map_or(0.0, |(_, l)| f64::from_bits(l))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::float_cmp,
        reason = "tests; the ring stores exact bit patterns"
    )]

    use super::*;
    use crate::index::scratch;

    #[test]
    fn the_time_ring_thins_itself_and_maps_seconds_to_ticks() {
        let (_t, idx) = scratch();
        for s in 0..1000_u64 {
            idx.set(hdr::TICK, s * 10);
            record_time(&idx, 1_000 + s);
        }
        let r = TIME.read(&idx);
        assert!(r.len() <= hdr::TIME_RING_CAP);
        assert!(idx.word(hdr::TIME_RING_SPACING) > 1, "thinned as it filled");
        assert!(r.windows(2).all(|w| w[0].1 < w[1].1), "oldest first");
        // The ring still spans the whole run.
        assert_eq!(r[0], (0, 1_000));
        let at = tick_at(&idx, 1_500).unwrap();
        assert!(at <= 5_000 && at >= 5_000 - 10 * idx.word(hdr::TIME_RING_SPACING));
        assert_eq!(tick_at(&idx, 999), None);
    }

    #[test]
    fn the_clock_ring_keeps_the_latest_values() {
        let (_t, idx) = scratch();
        for i in 0..100_u64 {
            idx.set(hdr::TICK, i * 100);
            record_inflation(&idx, i as f64);
        }
        assert_eq!(CLOCK.read(&idx).len(), hdr::CLOCK_RING_CAP);
        let now = 100 * 100;
        // As it was 150 accesses ago (tick 9850): the value set at 9800.
        assert_eq!(inflation_at(&idx, now, 150), 98.0);
        // Older than the ring remembers: its oldest value.
        assert_eq!(inflation_at(&idx, now, 9_000), 0.0);
    }
}
