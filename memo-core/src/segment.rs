//! Segment files: small values appended back to back as self-describing
//! records, read through a mapping of the whole file.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use crate::Key;
use crate::dir::Dir;
use crate::error::{Error, IoContext, Result};
use crate::format::{
    self, ALIGN_MIN, INLINE_MAX, REC_HEADER_LEN, RecordHeader, SEG_HEADER_LEN, SEGMENT_SIZE,
    SegmentHeader, loc, record_size,
};
use crate::index::AppendPos;
use crate::mmap::{Bytes, Region};

/// A record read from a segment, header checked and payload checksummed.
pub(crate) struct Record {
    pub header: RecordHeader,
    pub region: Arc<Region>,
    /// Offset of the record's first byte in the segment.
    pub off: usize,
}

impl Record {
    pub(crate) fn payload(&self) -> &[u8] {
        self.region
            .get(self.off + REC_HEADER_LEN, self.header.len as usize)
            .unwrap_or(&[])
    }

    /// The payload as `Bytes`, keeping the segment mapped.
    pub(crate) fn into_payload(self) -> Option<Bytes> {
        let len = self.header.len as usize;
        Bytes::new(self.region, self.off + REC_HEADER_LEN, len)
    }

    /// The whole record, header and padded payload, as it lies in its
    /// segment (what compaction copies).
    pub(crate) fn bytes(&self) -> Option<&[u8]> {
        self.region.get(self.off, self.size() as usize)
    }

    /// The blob (id, value length) a blob pointer names; `None` for an
    /// inline value.
    pub(crate) fn blob(&self) -> Option<(u64, u64)> {
        if !self.header.is_blob() {
            return None;
        }
        format::decode_blob_ptr(self.payload())
    }

    /// The id of the blob file a blob pointer names.
    pub(crate) fn blob_id(&self) -> Option<u64> {
        self.blob().map(|(id, _)| id)
    }

    /// Bytes of the blob file a blob pointer names (0 for an inline value).
    /// The length is whatever the record says, so the sum saturates.
    pub(crate) fn blob_file_size(&self) -> u64 {
        self.blob().map_or(0, |(_, len)| {
            len.saturating_add(format::BLOB_HEADER_LEN as u64)
        })
    }

    /// Bytes the record takes in its segment.
    pub(crate) fn size(&self) -> u64 {
        record_size(self.header.len as usize) as u64
    }
}

/// What reading a record found.
pub(crate) enum Read {
    Found(Record),
    /// A valid record, but of another key (a tag collision).
    OtherKey,
    /// The segment file is gone: the slot was changed after it was read.
    Missing,
    /// Not a valid record: damage. The string says what, for the report.
    Damaged(String),
}

/// Hashes a segment number as itself: they are small distinct integers, and
/// the default `SipHash` costs more than the rest of the map lookup on a hit.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n);
    }
}

/// This process's mappings of segment files.
pub(crate) struct Segments {
    dir: Dir,
    maps: RwLock<HashMap<u32, Arc<Region>, BuildHasherDefault<IdHasher>>>,
}

impl Segments {
    /// The segments in `dir` (the store's `seg/`).
    pub(crate) fn new(dir: Dir) -> Segments {
        Segments {
            dir,
            maps: RwLock::new(HashMap::default()),
        }
    }

    pub(crate) fn dir(&self) -> &Dir {
        &self.dir
    }

    pub(crate) fn path(&self, id: u32) -> PathBuf {
        self.dir.child(&format::segment_name(id))
    }

    /// The numbers of the segment files in `seg/`, oldest first (other
    /// names are not memo's and are left alone).
    pub(crate) fn ids(&self) -> Result<Vec<u32>> {
        let names = self
            .dir
            .own_files(|n| format::parse_segment_name(n).is_some())?;
        let mut ids: Vec<u32> = names
            .iter()
            .filter_map(|n| format::parse_segment_name(n))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The length of segment `id`'s file (0 if it is gone).
    pub(crate) fn file_len(&self, id: u32) -> u64 {
        self.dir
            .len(&format::segment_name(id))
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// Unlinks segment `id` (mappings of it stay readable) and drops this
    /// process's mapping.
    pub(crate) fn remove(&self, id: u32) -> Result<()> {
        self.dir.remove(&format::segment_name(id))?;
        self.forget(id);
        Ok(())
    }

    /// Unlinks every segment file (`clear`); other files are left alone.
    pub(crate) fn remove_all(&self) -> Result<()> {
        for id in self.ids()? {
            self.dir.remove(&format::segment_name(id))?;
        }
        self.forget_all();
        Ok(())
    }

    /// The mapping of segment `id`; `None` if the file does not exist.
    pub(crate) fn region(&self, id: u32) -> Result<Option<Arc<Region>>> {
        if let Some(r) = self
            .maps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            return Ok(Some(r.clone()));
        }
        let path = self.path(id);
        let Some(file) = self.dir.open_file(&format::segment_name(id), false)? else {
            return Ok(None);
        };
        let region = Arc::new(Region::map_growing(file, &path, SEGMENT_SIZE as usize)?);
        match format::check_segment_header(region.get(0, SEG_HEADER_LEN).unwrap_or(&[]), id) {
            SegmentHeader::Ok => {}
            SegmentHeader::Version(found) => {
                return Err(Error::IncompatibleFormat {
                    path,
                    found,
                    supported: format::SEG_VERSION,
                });
            }
            SegmentHeader::Bad(what) => return Err(Error::corrupt(&path, 0, what)),
        }
        let mut maps = self.maps.write().unwrap_or_else(PoisonError::into_inner);
        Ok(Some(maps.entry(id).or_insert(region).clone()))
    }

    /// Drops this process's mapping of segment `id` (after compaction
    /// unlinked it).
    pub(crate) fn forget(&self, id: u32) {
        self.maps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Drops this process's mappings (after `clear`, so unlinked files can
    /// free their space once no `Bytes` holds them).
    pub(crate) fn forget_all(&self) {
        self.maps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Reads the record a slot's location word names. With `key`, a record
    /// of another key is `OtherKey` and is not checksummed.
    pub(crate) fn record(&self, loc_word: u64, key: Option<&Key>) -> Result<Read> {
        let Some((seg, off)) = loc::decode(loc_word) else {
            return Ok(Read::Damaged(format!(
                "slot location {loc_word:#x} is invalid"
            )));
        };
        let region = match self.region(seg) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(Read::Missing),
            Err(Error::Io { path, source }) => return Err(Error::Io { path, source }),
            Err(e) => return Ok(Read::Damaged(e.to_string())),
        };
        // The path is formatted only to name damage: a hit must not pay for
        // it (it measured 15% of a small hit on the CI machine, 2026-11-22).
        let path = || self.path(seg);
        let seen = region.len();
        match check_record(region.clone(), off, key, &path) {
            // The record may have been appended after this process last
            // looked at the file's length. Another thread may have looked
            // since, too: then `refresh` finds nothing new to raise, yet
            // more is readable than this check saw (a read of a record
            // just written reported as damage, and its slot dropped by the
            // next write, lost puts under two threads).
            Read::Damaged(_) if region.refresh() || region.len() != seen => {
                Ok(check_record(region, off, key, &path))
            }
            read => Ok(read),
        }
    }
}

/// What a scan reads of a record: its header checked, not its payload.
pub(crate) struct Peeked {
    pub header: format::RecordHeader,
    /// Bytes the record takes in its segment.
    pub size: u64,
    /// Bytes of the blob file a blob pointer names (0 inline).
    pub blob_file_size: u64,
}

impl Segments {
    /// The record a slot's location word names, its header and bounds
    /// checked but not its payload: for scans that read keys and sizes
    /// only (statistics, selections), where summing every value would
    /// read the whole store. `None` if there is no sound header there.
    /// `last` keeps the segment of the previous call, as a scan meets
    /// records of one segment in runs.
    pub(crate) fn peek(
        &self,
        loc_word: u64,
        last: &mut Option<(u32, Arc<Region>)>,
    ) -> Option<Peeked> {
        let (seg, off) = loc::decode(loc_word)?;
        let region = match last {
            Some((id, r)) if *id == seg => r,
            _ => &last.insert((seg, self.region(seg).ok()??)).1,
        };
        let at = usize::try_from(off).ok()?;
        if at < SEG_HEADER_LEN || at % 8 != 0 {
            return None;
        }
        if region.get(at, REC_HEADER_LEN).is_none() {
            // Appended since this process looked at the file's length.
            region.refresh();
        }
        let head = region.get(at, REC_HEADER_LEN)?;
        let header = format::decode_record_header(head)?;
        let len = header.len as usize;
        if len >= INLINE_MAX {
            return None;
        }
        let payload = region.get(at + REC_HEADER_LEN, len)?;
        let blob_file_size = if header.is_blob() {
            format::decode_blob_ptr(payload)
                .map_or(0, |(_, n)| n.saturating_add(format::BLOB_HEADER_LEN as u64))
        } else {
            0
        };
        Some(Peeked {
            header,
            size: record_size(len) as u64,
            blob_file_size,
        })
    }
}

/// Checks the record at `off` of `region`; `path` names the file in a
/// report of damage.
pub(crate) fn check_record(
    region: Arc<Region>,
    off: u64,
    key: Option<&Key>,
    path: &dyn Fn() -> PathBuf,
) -> Read {
    let damaged =
        |what: &str| Read::Damaged(format!("{} at offset {off}: {what}", path().display()));
    let Ok(off) = usize::try_from(off) else {
        return damaged("offset out of range");
    };
    if off < SEG_HEADER_LEN || off % 8 != 0 {
        return damaged("record offset is not a record boundary");
    }
    let Some(head) = region.get(off, REC_HEADER_LEN) else {
        return damaged("record past the end of the file");
    };
    let Some(header) = format::decode_record_header(head) else {
        return damaged("no record here (bad magic)");
    };
    if key.is_some_and(|k| *k != header.key) {
        return Read::OtherKey;
    }
    let len = header.len as usize;
    if len >= INLINE_MAX {
        return damaged("record length above the inline limit");
    }
    let Some(payload) = region.get(off + REC_HEADER_LEN, len) else {
        return damaged("record payload past the end of the file");
    };
    // A long record is checksummed the first time this process reads it
    // through this mapping, as a blob is: its bytes are written once and
    // never again, and summing 1 MiB on every hit would cost more than the
    // reader's own pass over it.
    let once = len >= ALIGN_MIN;
    if !(once && region.is_checked(off))
        && format::record_checksum(&head[..40], payload) != header.checksum
    {
        return damaged("record checksum mismatch");
    }
    if once {
        region.mark_checked(off);
    }
    Read::Found(Record {
        header,
        region,
        off,
    })
}

/// Calls `f` with every record of a segment in order, stopping at `limit`
/// (the append offset of the current segment: what lies past it is a
/// failed write's scratch) or at the first bytes that are not a record
/// header. Damaged records whose length is intact are passed as `Damaged`.
pub(crate) fn walk(
    region: &Arc<Region>,
    path: &Path,
    limit: Option<u64>,
    mut f: impl FnMut(u64, Read),
) -> u64 {
    region.refresh();
    let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let mut off = SEG_HEADER_LEN;
    while off < limit
        && let Some(h) = region
            .get(off, REC_HEADER_LEN)
            .and_then(format::decode_record_header)
    {
        if h.len as usize >= INLINE_MAX {
            f(
                off as u64,
                Read::Damaged(format!(
                    "{} at offset {off}: bad record length",
                    path.display()
                )),
            );
            break;
        }
        f(
            off as u64,
            check_record(region.clone(), off as u64, None, &|| path.to_path_buf()),
        );
        off += record_size(h.len as usize);
    }
    off as u64
}

/// Builds a record: header, payload, zero padding to 8 bytes.
pub(crate) fn build_record(key: &Key, codec: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut rec = Vec::with_capacity(record_size(payload.len()));
    rec.extend_from_slice(&format::encode_record_header(key, codec, flags, payload));
    rec.extend_from_slice(payload);
    rec.resize(record_size(payload.len()), 0);
    rec
}

/// A record to append without copying its payload: header, payload and
/// padding are written with one vectored write.
pub(crate) struct RecordParts<'a> {
    head: [u8; REC_HEADER_LEN],
    payload: &'a [u8],
}

/// Zeros for padding records to 8 bytes and for pad records' payloads.
static ZEROS: [u8; 4096] = [0; 4096];

impl<'a> RecordParts<'a> {
    pub(crate) fn new(key: &Key, codec: u8, flags: u8, payload: &'a [u8]) -> RecordParts<'a> {
        RecordParts {
            head: format::encode_record_header(key, codec, flags, payload),
            payload,
        }
    }

    /// A record as it lies in a segment, to copy elsewhere unchanged.
    pub(crate) fn copy_of(rec: &'a Record) -> RecordParts<'a> {
        let mut head = [0u8; REC_HEADER_LEN];
        if let Some(h) = rec.region.get(rec.off, REC_HEADER_LEN) {
            head.copy_from_slice(h);
        }
        RecordParts {
            head,
            payload: rec.payload(),
        }
    }

    /// Bytes the record takes in a segment.
    pub(crate) fn size(&self) -> usize {
        record_size(self.payload.len())
    }

    /// The payload's length.
    pub(crate) fn payload_len(&self) -> usize {
        self.payload.len()
    }

    fn slices(&self) -> [&[u8]; 3] {
        let pad = self.size() - REC_HEADER_LEN - self.payload.len();
        [&self.head, self.payload, &ZEROS[..pad]]
    }
}

/// A pad record `len` bytes long (`format::FLAG_PAD`).
fn pad_record(len: u64) -> Vec<u8> {
    let payload = &ZEROS[..(len as usize).saturating_sub(REC_HEADER_LEN)];
    build_record(&Key::from_bytes([0; 32]), 0, format::FLAG_PAD, payload)
}

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
