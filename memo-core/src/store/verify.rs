//! `verify`: every entry's checksum and every structure. It reads without
//! the writer lock, as readers do, so writers never wait on it; what looks
//! wrong is checked again under the lock (held as briefly as a put holds
//! it), so a writer racing the pass is never reported as damage.

use std::sync::Arc;

use super::Engine;
use crate::VerifyReport;
use crate::blob::check_blob;
use crate::dir::Kind;
use crate::error::Result;
use crate::format::{self, BLOB_HEADER_LEN, SEGMENT_SIZE, decode_blob_ptr, hdr, loc};
use crate::index::{Index, Snap};
use crate::mmap::Region;
use crate::segment::{self, Read};

impl Engine {
    pub(super) fn verify(&self) -> Result<VerifyReport> {
        self.settle_installs();
        let mut r = VerifyReport::default();
        let mut live_locs = std::collections::HashSet::new();
        let idx = self.index()?;
        let mut live = 0;
        for i in idx.slot_ids() {
            let Some(snap) = idx.read_stable(i) else {
                // A writer mid-change, or one that died there: the latter
                // stays odd under the lock.
                let w = self.writer.exclude()?;
                if Arc::ptr_eq(&self.index()?, &idx) && idx.read_stable(i).is_none() {
                    r.problems.push(format!(
                        "{}: slot {i} is being written by a dead writer",
                        idx.path().display()
                    ));
                }
                drop(w);
                continue;
            };
            if snap.loc == loc::EMPTY || snap.loc == loc::TOMBSTONE {
                continue;
            }
            live += 1;
            live_locs.insert(snap.loc);
            r.entries_checked += 1;
            if let Some(what) = self.check_slot(&idx, i, snap)? {
                // Again under the lock: the slot may have been replaced,
                // removed or moved (compaction, growth) under the pass.
                let w = self.writer.exclude()?;
                let now = self.index()?;
                let same = Arc::ptr_eq(&now, &idx)
                    && idx.read_stable(i).is_some_and(|s| s.loc == snap.loc);
                let confirmed = if same {
                    self.check_slot(&idx, i, snap)?
                } else {
                    None
                };
                drop(w);
                if let Some(what) = confirmed.map(|_| what) {
                    r.corrupt += 1;
                    r.problems.push(what);
                }
            }
        }
        // The count and the append offset move with every put: compared
        // again under the lock if they disagree.
        if live != idx.word(hdr::ENTRIES) {
            let w = self.writer.exclude()?;
            let idx = self.index()?;
            let live = idx
                .slot_ids()
                .filter(|&i| {
                    idx.read_stable(i)
                        .is_some_and(|s| s.loc != loc::EMPTY && s.loc != loc::TOMBSTONE)
                })
                .count() as u64;
            if live != idx.word(hdr::ENTRIES) {
                r.problems.push(format!(
                    "{}: header counts {} entries, the table holds {live}",
                    idx.path().display(),
                    idx.word(hdr::ENTRIES)
                ));
            }
            drop(w);
        }
        self.verify_segments(&idx, &live_locs, &mut r)?;
        Ok(r)
    }

    /// What is wrong with the entry slot `i` of `idx` holds, if anything.
    fn check_slot(&self, idx: &Index, i: usize, snap: Snap) -> Result<Option<String>> {
        Ok(match self.files.segs.record(snap.loc, None)? {
            Read::Found(rec) => {
                let h = rec.header;
                if h.key.tag32() != snap.tag {
                    Some(format!("slot {i} holds key {} under another tag", h.key))
                } else if h.is_tombstone() {
                    Some(format!("slot {i} points at a tombstone of key {}", h.key))
                } else if h.is_blob() {
                    self.check_blob_of(&h.key, h.codec, rec.payload())?
                } else {
                    unpacks(&h.key, h.codec, rec.payload())
                }
            }
            Read::Damaged(what) => Some(what),
            Read::Missing => Some(format!(
                "{}: slot {i} points at a missing segment",
                idx.path().display()
            )),
            Read::OtherKey => None,
        })
    }

    /// Maps the blob afresh (not from the cache) and checks all of it.
    fn check_blob_of(&self, key: &crate::Key, codec: u8, ptr: &[u8]) -> Result<Option<String>> {
        let Some((id, len)) = decode_blob_ptr(ptr) else {
            return Ok(Some(format!("key {key}: bad blob pointer")));
        };
        let path = self.files.blobs.path(key, id);
        let file = match self.files.blobs.open(key, id) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(Some(format!("{}: missing", path.display()))),
            Err(e) => return Ok(Some(e.to_string())),
        };
        let region = Region::map(&file, &path)?;
        Ok(match check_blob(&region, key, id, len) {
            Err(what) => Some(format!("{}: {what}", path.display())),
            Ok(_) => region
                .get(BLOB_HEADER_LEN, len as usize)
                .and_then(|payload| unpacks(key, codec, payload))
                .map(|what| format!("{}: {what}", path.display())),
        })
    }

    /// Walks every record of every segment: damage in dead records is
    /// reported too, since it means the disk is failing.
    fn verify_segments(
        &self,
        idx: &Index,
        live: &std::collections::HashSet<u64>,
        r: &mut VerifyReport,
    ) -> Result<()> {
        let dir = self.files.segs.dir();
        for (name, kind) in dir.entries()? {
            let path = dir.path().join(&name);
            let Some(id) = name.to_str().and_then(format::parse_segment_name) else {
                r.problems
                    .push(format!("{}: not a segment name", path.display()));
                continue;
            };
            if kind != Kind::File {
                r.problems.push(format!(
                    "{}: not a regular file (memo never follows links in a store)",
                    path.display()
                ));
                continue;
            }
            let region = match self.files.segs.region(id) {
                Ok(Some(region)) => region,
                Ok(None) => continue,
                Err(e) => {
                    r.problems.push(e.to_string());
                    continue;
                }
            };
            r.segments_checked += 1;
            region.refresh();
            if region.len() as u64 > SEGMENT_SIZE {
                r.problems.push(format!(
                    "{}: {} bytes, more than a segment holds ({SEGMENT_SIZE})",
                    path.display(),
                    region.len()
                ));
            }
            let (cur, cur_off) = append_pos(idx);
            let limit = (u64::from(id) == cur).then_some(cur_off);
            // Damage in a live record was counted through its slot; in a dead
            // one it harms no entry, but says the disk is failing.
            let end = segment::walk(&region, &path, limit, |off, read| {
                if matches!(read, Read::Damaged(_)) && !live.contains(&loc::encode(id, off)) {
                    r.damaged_dead_records += 1;
                }
            });
            if u64::from(id) == cur && end != cur_off {
                // Walked again under the lock, so that no append moves it.
                let w = self.writer.exclude()?;
                let idx = self.index()?;
                let (cur, cur_off) = append_pos(&idx);
                let end = if u64::from(id) == cur {
                    segment::walk(&region, &path, Some(cur_off), |_, _| {})
                } else {
                    cur_off
                };
                drop(w);
                if end != cur_off {
                    r.problems.push(format!(
                        "{}: records end at {end}, the index appends at {cur_off}",
                        path.display(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The current segment and its append offset, read as a consistent pair
/// (a writer may start a new segment between the two reads).
/// What is wrong with a compressed value's frame, if anything: its
/// checksum covers the stored bytes, so a forged or mis-written frame is
/// found only by decoding it (into memory that is dropped at once).
fn unpacks(key: &crate::Key, codec: u8, payload: &[u8]) -> Option<String> {
    if !crate::compress::is_compressed(codec) {
        return None;
    }
    crate::compress::unpack(payload)
        .err()
        .map(|what| format!("key {key}: {what}"))
}

fn append_pos(idx: &Index) -> (u64, u64) {
    loop {
        let cur = idx.word(hdr::CUR_SEG);
        let off = idx.word(hdr::CUR_OFF);
        if idx.word(hdr::CUR_SEG) == cur {
            return (cur, off);
        }
    }
}
