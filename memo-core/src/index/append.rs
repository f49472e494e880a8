//! The append position kept in the index header.

use std::path::Path;

use super::Index;
use crate::format::{SEG_HEADER_LEN, SEGMENT_SIZE, hdr};

/// The append position in the index header (current segment, offset in
/// it, next segment number): the narrow view of the index the appender
/// gets. Writers only, under `LOCK`.
pub(crate) struct AppendPos<'a>(pub(super) &'a Index);

impl AppendPos<'_> {
    /// The current segment (0: none yet) and the offset of the next record
    /// in it, as the header says (from disk: the caller checks them).
    pub(crate) fn current(&self) -> (u64, u64) {
        (self.0.word(hdr::CUR_SEG), self.0.word(hdr::CUR_OFF))
    }

    /// The append position as a location word (0 when no segment was
    /// started), the form checkpoints and durable writes compare.
    pub(crate) fn word(&self) -> u64 {
        let (seg, off) = self.current();
        u32::try_from(seg).map_or(0, |s| {
            if s == 0 {
                0
            } else {
                crate::format::loc::encode(s, off)
            }
        })
    }

    /// Records that the current segment now ends at `off`.
    pub(crate) fn advance(&self, off: u64) {
        self.0.set(hdr::CUR_OFF, off);
    }

    /// Takes the next segment number; numbers are never reused, even if
    /// making the segment then fails.
    pub(crate) fn take_number(&self) -> u64 {
        let id = self.0.word(hdr::NEXT_SEG).max(1);
        self.0.set(hdr::NEXT_SEG, id.saturating_add(1));
        id
    }

    /// Appends go to segment `id` from now on, after its header.
    pub(crate) fn start(&self, id: u32) {
        self.0.set(hdr::CUR_SEG, u64::from(id));
        self.0.set(hdr::CUR_OFF, SEG_HEADER_LEN as u64);
    }

    /// No more appends to the current segment: the next starts a new one.
    pub(crate) fn seal(&self) {
        self.0.set(hdr::CUR_OFF, SEGMENT_SIZE);
    }

    /// The index file, to name in errors.
    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}
