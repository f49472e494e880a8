//! `verify`: every entry's checksum and every structure, under the lock.

use super::Engine;
use crate::VerifyReport;
use crate::blob::check_blob;
use crate::dir::Kind;
use crate::error::Result;
use crate::format::{self, SEGMENT_SIZE, decode_blob_ptr, hdr, loc};
use crate::mmap::Region;
use crate::segment::{self, Read};

impl Engine {
    pub(super) fn verify(&self) -> Result<VerifyReport> {
        let _w = self.writer.lock()?;
        let idx = self.index()?;
        let mut r = VerifyReport::default();
        let mut live = 0;
        let mut live_locs = std::collections::HashSet::new();
        for i in idx.slot_ids() {
            let Some(snap) = idx.read_stable(i) else {
                r.problems.push(format!(
                    "{}: slot {i} is being written by a dead writer",
                    idx.path().display()
                ));
                continue;
            };
            if snap.loc == loc::EMPTY || snap.loc == loc::TOMBSTONE {
                continue;
            }
            live += 1;
            live_locs.insert(snap.loc);
            r.entries_checked += 1;
            let bad = match self.segs.record(snap.loc, None)? {
                Read::Found(rec) => {
                    let h = rec.header;
                    if h.key.tag32() != snap.tag {
                        Some(format!("slot {i} holds key {} under another tag", h.key))
                    } else if h.is_tombstone() {
                        Some(format!("slot {i} points at a tombstone of key {}", h.key))
                    } else if h.is_blob() {
                        self.check_blob_of(&h.key, rec.payload())?
                    } else {
                        None
                    }
                }
                Read::Damaged(what) => Some(what),
                Read::Missing => Some(format!("slot {i} points at a missing segment")),
                Read::OtherKey => None,
            };
            if let Some(what) = bad {
                r.corrupt += 1;
                r.problems.push(what);
            }
        }
        if live != idx.word(hdr::ENTRIES) {
            r.problems.push(format!(
                "{}: header counts {} entries, the table holds {live}",
                idx.path().display(),
                idx.word(hdr::ENTRIES)
            ));
        }
        self.verify_segments(&idx, &live_locs, &mut r)?;
        Ok(r)
    }

    /// Maps the blob afresh (not from the cache) and checks all of it.
    fn check_blob_of(&self, key: &crate::Key, ptr: &[u8]) -> Result<Option<String>> {
        let Some((id, len)) = decode_blob_ptr(ptr) else {
            return Ok(Some(format!("key {key}: bad blob pointer")));
        };
        let path = self.blobs.path(key, id);
        let file = match self.blobs.open(key, id) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(Some(format!("{}: missing", path.display()))),
            Err(e) => return Ok(Some(e.to_string())),
        };
        let region = Region::map(&file, &path)?;
        Ok(check_blob(&region, key, id, len)
            .err()
            .map(|what| format!("{}: {what}", path.display())))
    }

    /// Walks every record of every segment: damage in dead records is
    /// reported too, since it means the disk is failing.
    fn verify_segments(
        &self,
        idx: &crate::index::Index,
        live: &std::collections::HashSet<u64>,
        r: &mut VerifyReport,
    ) -> Result<()> {
        let dir = self.segs.dir();
        let cur = idx.word(hdr::CUR_SEG);
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
            let region = match self.segs.region(id) {
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
            let limit = (u64::from(id) == cur).then(|| idx.word(hdr::CUR_OFF));
            // Damage in a live record was counted through its slot; in a dead
            // one it harms no entry, but says the disk is failing.
            let end = segment::walk(&region, &path, limit, |off, read| {
                if matches!(read, Read::Damaged(_)) && !live.contains(&loc::encode(id, off)) {
                    r.damaged_dead_records += 1;
                }
            });
            if u64::from(id) == cur && end != idx.word(hdr::CUR_OFF) {
                r.problems.push(format!(
                    "{}: records end at {end}, the index appends at {}",
                    path.display(),
                    idx.word(hdr::CUR_OFF)
                ));
            }
        }
        Ok(())
    }
}
