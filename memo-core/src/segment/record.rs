//! A record's bytes: checking one in a mapped segment, building one, and
//! the parts of one appended without copying its payload.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Read, Record};
use crate::Key;
use crate::format::{self, ALIGN_MIN, INLINE_MAX, REC_HEADER_LEN, SEG_HEADER_LEN, record_size};
use crate::mmap::Region;

/// Checks the record at `off` of `region`; `path` names the file in a
/// report of damage. On every hit: inlined into its callers in `segment.rs`,
/// as it was when they shared a module (and so a codegen unit).
#[inline]
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

    pub(super) fn slices(&self) -> [&[u8]; 3] {
        let pad = self.size() - REC_HEADER_LEN - self.payload.len();
        [&self.head, self.payload, &ZEROS[..pad]]
    }
}

/// A pad record `len` bytes long (`format::FLAG_PAD`).
pub(super) fn pad_record(len: u64) -> Vec<u8> {
    let payload = &ZEROS[..(len as usize).saturating_sub(REC_HEADER_LEN)];
    build_record(&Key::from_bytes([0; 32]), 0, format::FLAG_PAD, payload)
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::PathBuf;
    use std::sync::Arc;

    use super::{build_record, check_record};
    use crate::Key;
    use crate::format::{self, SEG_HEADER_LEN};
    use crate::mmap::Region;
    use crate::segment::Read;

    /// A segment file holding `records` (key byte, payload) after its
    /// header, mapped; and each record's offset.
    pub(in crate::segment) fn segment(
        records: &[(u8, &[u8])],
    ) -> (tempfile::TempDir, PathBuf, Vec<u64>) {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("000001");
        let mut bytes = format::encode_segment_header(1).to_vec();
        let mut offs = Vec::new();
        for (k, payload) in records {
            offs.push(bytes.len() as u64);
            bytes.extend(build_record(&Key::from_bytes([*k; 32]), 1, 0, payload));
        }
        std::fs::write(&path, bytes).unwrap();
        (t, path, offs)
    }

    pub(in crate::segment) fn map(path: &PathBuf) -> Arc<Region> {
        let f = std::fs::File::open(path).unwrap();
        Arc::new(Region::map(&f, path).unwrap())
    }

    fn read(path: &PathBuf, off: u64, key: Option<u8>) -> Read {
        let key = key.map(|k| Key::from_bytes([k; 32]));
        check_record(map(path), off, key.as_ref(), &|| path.clone())
    }

    #[test]
    fn built_records_read_back_exactly() {
        let big = vec![7_u8; 70_000];
        let (_t, path, offs) = segment(&[(1, b"one"), (2, b""), (3, &big)]);
        for ((&off, k), want) in offs.iter().zip([1_u8, 2, 3]).zip([&b"one"[..], b"", &big]) {
            match read(&path, off, Some(k)) {
                Read::Found(r) => {
                    assert_eq!(r.payload(), want);
                    assert_eq!(r.header.key, Key::from_bytes([k; 32]));
                    assert_eq!(r.size() % 8, 0, "records pad to 8 bytes");
                }
                _ => panic!("record {k} not found"),
            }
        }
        assert!(matches!(read(&path, offs[0], Some(9)), Read::OtherKey));
    }

    #[test]
    fn damage_is_named_never_read() {
        let (_t, path, offs) = segment(&[(1, b"payload bytes")]);
        let damaged = |what: &str| match read(&path, offs[0], None) {
            Read::Damaged(m) => assert!(m.contains(what), "{m}"),
            _ => panic!("damage read as a record ({what})"),
        };
        let clean = std::fs::read(&path).unwrap();
        // A flipped payload byte: the checksum says so.
        let mut b = clean.clone();
        let last = b.len() - 8;
        b[last] ^= 1;
        std::fs::write(&path, &b).unwrap();
        damaged("checksum");
        // A truncated payload.
        std::fs::write(&path, &clean[..clean.len() - 4]).unwrap();
        damaged("past the end");
        // No record at all.
        let mut b = clean.clone();
        b[SEG_HEADER_LEN] ^= 0xff;
        std::fs::write(&path, &b).unwrap();
        damaged("bad magic");
        // Not a record boundary.
        std::fs::write(&path, &clean).unwrap();
        assert!(matches!(read(&path, offs[0] + 4, None), Read::Damaged(_)));
        assert!(matches!(read(&path, 8, None), Read::Damaged(_)));
    }
}
