//! The boot id a table records: the system it was last known to agree
//! with the segments on (`store/durable.rs` says why a restart is the one
//! moment mapped pages can be lost silently).

use std::sync::OnceLock;

use super::Index;
use crate::format::hdr;

/// The running system's boot id as two words, or `None` where there is
/// none to read.
pub(crate) fn boot_id() -> Option<[u64; 2]> {
    static ID: OnceLock<Option<[u64; 2]>> = OnceLock::new();
    *ID.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 {
            return None;
        }
        let hi = u64::from_str_radix(&hex[..16], 16).ok()?;
        let lo = u64::from_str_radix(&hex[16..], 16).ok()?;
        // All zeros is what a table that never recorded one holds.
        (hi | lo != 0).then_some([hi, lo])
    })
}

/// Whether `idx` was last known consistent on this boot.
pub(crate) fn same_boot(idx: &Index) -> bool {
    boot_id().is_none_or(|b| idx.word(hdr::BOOT_ID) == b[0] && idx.word(hdr::BOOT_ID + 1) == b[1])
}

/// Records this boot in `idx`; caller holds the writer lock (or owns the
/// table).
pub(crate) fn stamp_boot(idx: &Index) {
    if let Some(b) = boot_id() {
        idx.set(hdr::BOOT_ID, b[0]);
        idx.set(hdr::BOOT_ID + 1, b[1]);
    }
}
