//! Segment files: small values appended back to back as self-describing
//! records, read through a mapping of the whole file. This file holds the
//! segments of a store and reading them; a record's bytes are in
//! `record.rs`, walking a whole segment in `walk.rs`, appending in
//! `append.rs`.

mod append;
mod record;
mod walk;

pub(crate) use append::{Append, Appender};
pub(crate) use record::{RecordParts, build_record, check_record};
pub(crate) use walk::walk;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use crate::Key;
use crate::dir::Dir;
use crate::error::{Error, Result};
use crate::format::{
    self, INLINE_MAX, REC_HEADER_LEN, RecordHeader, SEG_HEADER_LEN, SEGMENT_SIZE, SegmentHeader,
    loc, record_size,
};
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
    /// The blob (id, stored length) a blob pointer names.
    pub blob: Option<(u64, u64)>,
    /// For a value stored compressed inline: its raw length (prefix).
    pub packed_raw: Option<u64>,
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
        let blob = if header.is_blob() {
            format::decode_blob_ptr(payload)
        } else {
            None
        };
        let packed = crate::compress::is_compressed(header.codec) && !header.is_blob();
        Some(Peeked {
            header,
            size: record_size(len) as u64,
            blob_file_size: blob
                .map_or(0, |(_, n)| n.saturating_add(format::BLOB_HEADER_LEN as u64)),
            blob,
            packed_raw: packed.then(|| crate::compress::raw_len(payload)).flatten(),
        })
    }
}
