//! Appending to the current segment under `LOCK`: one record written
//! without copying its payload, or records laid out back to back; new
//! segments made whole in `tmp/` and renamed in.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::Segments;
use super::record::{RecordParts, pad_record};
use crate::dir::Dir;
use crate::error::{Error, IoContext, Result};
use crate::format::{self, SEG_HEADER_LEN, SEGMENT_SIZE, loc};
use crate::index::AppendPos;

/// Writes all of `parts` at `off`, in as few system calls as the kernel
/// allows.
fn write_parts_at(file: &File, parts: &[&[u8]; 4], mut off: u64) -> std::io::Result<()> {
    // On the stack, not a Vec: this runs on every put.
    let mut slices = [std::io::IoSlice::new(&[]); 4];
    let mut n = 0;
    for p in parts.iter().filter(|p| !p.is_empty()) {
        slices[n] = std::io::IoSlice::new(p);
        n += 1;
    }
    let mut rest: &mut [std::io::IoSlice<'_>] = &mut slices[..n];
    while !rest.is_empty() {
        let n = match rustix::io::pwritev(file, rest, off) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        off += n as u64;
        std::io::IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// The appending side, used under `LOCK`: the open handle of the current
/// segment.
pub(crate) struct Appender {
    cur: Option<(u32, Arc<File>)>,
    /// Size at which this process starts a new segment.
    limit: u64,
}

/// What is to be appended: one record written without copying its payload,
/// or whole records already laid out back to back.
pub(crate) enum Append<'a, 'b> {
    Record(&'b RecordParts<'a>),
    Records(&'b [u8]),
}

impl Append<'_, '_> {
    fn len(&self) -> u64 {
        match self {
            Append::Record(r) => r.size() as u64,
            Append::Records(b) => b.len() as u64,
        }
    }
}

impl Appender {
    /// An appender that starts a new segment once one reaches `limit`
    /// bytes (at most `SEGMENT_SIZE`).
    pub(crate) fn new(limit: u64) -> Appender {
        Appender {
            cur: None,
            limit: limit.min(SEGMENT_SIZE),
        }
    }

    /// Appends `what` to the current segment (starting a new one when it
    /// does not fit), after a pad record if a long payload must be aligned,
    /// and advances the index's append offset. Returns the location word of
    /// the (first) record, and the pad bytes written before it; nothing
    /// points at either yet. Durability is the caller's ([`Appender::file`]).
    pub(crate) fn append(
        &mut self,
        segs: &Segments,
        pos: &AppendPos<'_>,
        tmp: &Dir,
        what: &Append<'_, '_>,
        sync: bool,
    ) -> Result<(u64, u64)> {
        let payload_len = match what {
            Append::Record(r) => r.payload_len(),
            // Whole records are copied as they are, never re-aligned.
            Append::Records(_) => 0,
        };
        let pad_at = |off: u64| format::pad_before(off, payload_len);
        let fits =
            |off: u64| off.saturating_add(pad_at(off)).saturating_add(what.len()) <= self.limit;
        let (seg, off) = pos.current();
        // Both come from disk: check rather than trust them.
        let (seg, off) = match u32::try_from(seg) {
            Ok(seg) if seg != 0 && off >= SEG_HEADER_LEN as u64 && off % 8 == 0 && fits(off) => {
                (seg, off)
            }
            _ => (
                self.start_segment(segs, pos, tmp, sync)?,
                SEG_HEADER_LEN as u64,
            ),
        };
        let path = segs.path(seg);
        let file = match &self.cur {
            Some((id, f)) if *id == seg => f.clone(),
            _ => {
                let f = segs
                    .dir
                    .open_file(&format::segment_name(seg), true)?
                    .ok_or_else(|| Error::io(&path, std::io::ErrorKind::NotFound.into()))?;
                let f = Arc::new(f);
                self.switch(seg, f.clone(), segs, sync)?;
                f
            }
        };
        let pad_len = pad_at(off);
        let pad = if pad_len > 0 {
            pad_record(pad_len)
        } else {
            Vec::new()
        };
        match what {
            Append::Record(r) => {
                let [head, payload, zeros] = r.slices();
                write_parts_at(&file, &[&pad, head, payload, zeros], off)
            }
            Append::Records(b) => write_parts_at(&file, &[&pad, b, &[], &[]], off),
        }
        .at(&path)?;
        // The offset moves before any slot points at the record, so a crash
        // can only waste the bytes, never let a later append overwrite a
        // published record.
        pos.advance(off + pad_len + what.len());
        Ok((loc::encode(seg, off + pad_len), pad_len))
    }

    /// Makes `seg` the segment this process appends to. Durable writers
    /// sync only the segment they append to (`store/durable.rs`), so the one
    /// they leave is synced first: every record this process appended
    /// before is then on disk.
    fn switch(&mut self, seg: u32, file: Arc<File>, segs: &Segments, sync: bool) -> Result<()> {
        if sync && let Some((old, f)) = &self.cur {
            f.sync_data().at(&segs.path(*old))?;
        }
        self.cur = Some((seg, file));
        Ok(())
    }

    /// The current segment's number and handle, for a durable write to sync
    /// it once the lock is released.
    pub(crate) fn file(&self) -> Option<(u32, Arc<File>)> {
        self.cur.clone()
    }

    /// Creates the next segment in `tmp/` with its header and renames it into
    /// `seg/`, so a segment file is never seen half made. It grows by
    /// appending from there (no holes: see the safety model in `mmap.rs`).
    fn start_segment(
        &mut self,
        segs: &Segments,
        pos: &AppendPos<'_>,
        tmp: &Dir,
        sync: bool,
    ) -> Result<u32> {
        let id = pos.take_number();
        let Some(id) = u32::try_from(id).ok().filter(|&id| id <= loc::SEG_ID_MAX) else {
            return Err(Error::corrupt(
                pos.path(),
                0,
                "segment numbers exhausted; clear the store",
            ));
        };
        let tmp_name = format::tmp_segment_name(id);
        let _ = tmp.remove(&tmp_name);
        let file = tmp.create_new(&tmp_name)?;
        let made = (|| {
            file.write_all_at(&format::encode_segment_header(id), 0)?;
            if sync {
                file.sync_all()?;
            }
            Ok(())
        })()
        .at(&tmp.child(&tmp_name))
        .and_then(|()| tmp.rename(&tmp_name, &segs.dir, &format::segment_name(id)));
        if let Err(e) = made {
            let _ = tmp.remove(&tmp_name);
            return Err(e);
        }
        if sync {
            segs.dir.sync()?;
        }
        self.switch(id, Arc::new(file), segs, sync)?;
        pos.start(id);
        Ok(id)
    }

    /// Bytes gathered into one batched append: at most half a segment.
    pub(crate) fn batch(&self) -> usize {
        (self.limit / 2).min(1 << 20) as usize
    }

    /// Forgets the open handle (after `clear` removed the files).
    pub(crate) fn reset(&mut self) {
        self.cur = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::{Append, Appender};
    use crate::Key;
    use crate::dir::Dir;
    use crate::format::loc;
    use crate::segment::{Read, RecordParts, Segments};

    #[test]
    fn appends_read_back_and_full_segments_are_left_for_new_ones() {
        let (_it, idx) = crate::index::scratch();
        let t = tempfile::tempdir().unwrap();
        let root = Dir::open_root(t.path(), true).unwrap();
        let seg = root.open_dir("seg", true).unwrap().unwrap();
        let tmp = root.open_dir("tmp", true).unwrap().unwrap();
        let segs = Segments::new(seg);
        // Small segments, so a few records fill one.
        let mut w = Appender::new(16 * 1024);
        let mut at = Vec::new();
        for i in 0..40_u8 {
            let key = Key::from_bytes([i; 32]);
            let payload = vec![i; 1000];
            let parts = RecordParts::new(&key, 1, 0, &payload);
            let (word, pad) = w
                .append(
                    &segs,
                    &idx.append_pos(),
                    &tmp,
                    &Append::Record(&parts),
                    false,
                )
                .unwrap();
            assert_eq!(pad, 0, "short payloads need no alignment");
            at.push((word, key, payload));
        }
        let segments: std::collections::BTreeSet<u32> = at
            .iter()
            .map(|(w, _, _)| loc::decode(*w).unwrap().0)
            .collect();
        assert!(segments.len() >= 3, "new segments when full: {segments:?}");
        for (word, key, payload) in &at {
            match segs.record(*word, Some(key)).unwrap() {
                Read::Found(r) => assert_eq!(r.payload(), &payload[..]),
                _ => panic!("appended record not found"),
            }
        }
        assert!(
            tmp.own_files(|_| true).unwrap().is_empty(),
            "tmp/ left clean"
        );
    }
}
