//! The on-disk format: magics, versions, file names and header layouts, as
//! pure encode/decode functions over fixed-width little-endian integers.
//!
//! `docs/format.md` draws every layout defined here.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::Key;

/// Version of every file memo writes. Bumped whenever any layout, or the
/// derivation of keys, changes.
pub(crate) const FORMAT_VERSION: u32 = 1;

pub(crate) const LOCK_FILE: &str = "LOCK";
pub(crate) const INDEX_FILE: &str = "index";
pub(crate) const SEG_DIR: &str = "seg";
pub(crate) const BLOB_DIR: &str = "blob";
pub(crate) const LOCKS_DIR: &str = "locks";
/// The file whose byte-range locks are the keys' compute locks, in `locks/`.
pub(crate) const FLIGHT_FILE: &str = "flight";
pub(crate) const TMP_DIR: &str = "tmp";
/// The function registry (`registry.rs`).
pub(crate) const FNS_DIR: &str = "fns";
/// The per-function miss counters, in `fns/`.
pub(crate) const FN_COUNTS_FILE: &str = "misses";
/// What removed entries had earned, per function, in `fns/`.
pub(crate) const FN_RETIRED_FILE: &str = "retired";

mod names;
pub(crate) use names::*;

/// Values shorter than this are appended to segments; longer ones get a
/// file each. 2 MiB, by measurement on the CI machine (2026-11-30,
/// `docs/format.md` has the figures): a value in its own file pays a create,
/// a rename and, per reader, a mapping and a page fault per 4 KiB, which cost
/// 20x a segment read at 64 KiB and still 2x at 1 MiB; a segment record is
/// written under the writer lock, and at 2.5 GB/s of page-cache writes a
/// 2 MiB record holds it for under a millisecond. Above that the copy, not
/// the file, dominates, and the lock would be held for longer.
pub(crate) const INLINE_MAX: usize = 2 << 20;

/// Records whose payload is at least this long start it 64-byte aligned in
/// the segment (a pad record goes before them when needed), so that values
/// of 64 KiB and more are aligned wherever they live.
pub(crate) const ALIGN_MIN: usize = 64 * 1024;
/// The alignment of such payloads.
pub(crate) const PAYLOAD_ALIGN: u64 = 64;

/// Largest value accepted: blob lengths are written as u64, but a mapping
/// must fit `usize` and `isize`.
pub(crate) const VALUE_MAX: u64 = (isize::MAX as u64) - 4096;

// ---------------------------------------------------------------- index ----

pub(crate) const INDEX_MAGIC: [u8; 8] = *b"memo-idx";

/// A slot's `cost` word for a computation of `us` microseconds: below
/// 2^31 (35.8 minutes) the microseconds themselves; above, bit 31 set and
/// the milliseconds in the other 31 bits, saturating at 2^31 - 1 ms (24.8
/// days). So costs stay exact to the microsecond for short computations
/// and to the millisecond for days-long ones, and keep their order.
pub(crate) fn cost_word(us: u64) -> u32 {
    const MS: u32 = 1 << 31;
    match u32::try_from(us) {
        Ok(w) if w < MS => w,
        // Rounded up, so a cost above the threshold never reads as less
        // than one below it.
        _ => {
            MS | u32::try_from(us.div_ceil(1000))
                .unwrap_or(u32::MAX)
                .min(MS - 1)
        }
    }
}

/// The microseconds a `cost` word of a table with `COST_UNITS` = `units`
/// stands for.
pub(crate) fn cost_us(word: u32, units: u64) -> u64 {
    if units == 0 || word & (1 << 31) == 0 {
        u64::from(word)
    } else {
        u64::from(word & !(1 << 31)) * 1000
    }
}
/// Version of the index file. 2: any capacity, homes by multiply-shift,
/// and the words of an incremental growth (`hdr::MIGRATE_*`). Version 1
/// tables (power-of-two capacity, homes by the tag's low bits) are still
/// read and written; their next growth makes a version 2 table.
pub(crate) const INDEX_VERSION: u32 = 2;
/// Index file name of the table a growth moves entries out of (see
/// `index/grow.rs`): the old `index`, kept until every slot has moved.
pub(crate) const PREV_INDEX_FILE: &str = "index.prev";
/// The header is one page, so the slot table starts page-aligned.
pub(crate) const INDEX_HEADER_LEN: usize = 4096;
/// Bytes per slot; see `mmap::Slot`.
pub(crate) const SLOT_LEN: usize = 32;
/// Smallest table: 1024 slots, 32 KiB.
pub(crate) const MIN_CAPACITY: u64 = 1024;
/// Capacities of version 2 tables are multiples of this many slots (one
/// 4 KiB page), so every table ends on a page.
pub(crate) const CAPACITY_STEP: u64 = 128;
/// Largest table: 2^32 slots (128 GiB of index), far past any real store;
/// a header claiming more is corrupt.
pub(crate) const MAX_CAPACITY: u64 = 1 << 32;

/// Word offsets (in u64 units) of the index header's fields. Fields written
/// by different parties sit on different 64-byte lines so that readers'
/// counters do not slow the line every reader loads first.
pub(crate) mod hdr {
    /// `INDEX_MAGIC`.
    pub const MAGIC: usize = 0;
    /// Low 32 bits: `INDEX_VERSION`; high 32 bits: `SLOT_LEN`.
    pub const VERSION: usize = 1;
    /// Number of slots: a power of two in version 1, a multiple of
    /// `CAPACITY_STEP` in version 2.
    pub const CAPACITY: usize = 2;
    /// Unix time in seconds when the store was created; access stamps count
    /// from here.
    pub const EPOCH: usize = 3;
    /// A random number naming this table, so that the table a growth moves
    /// out of is known by more than its file name.
    pub const TABLE_ID: usize = 4;

    /// Set to 1 when this file has been replaced by a newer index (grown or
    /// cleared): readers then reopen `index`. Alone on its line.
    pub const REPLACED: usize = 8;

    // An incremental growth (`index/grow.rs`), on the line readers already
    // load: set under LOCK. The table named `PREV_INDEX_FILE` is being moved
    // into this one; readers consult it for keys not moved yet.
    /// Capacity of the previous table; 0: this table never grew from one.
    pub const MIGRATE_FROM: usize = 9;
    /// `TABLE_ID` of the previous table.
    pub const MIGRATE_PREV_ID: usize = 10;
    /// Position in the previous table where the move started: an empty
    /// slot, so no run of occupied slots spans the start.
    pub const MIGRATE_START: usize = 11;
    /// Slots of the previous table moved, counted from `MIGRATE_START`;
    /// always at the end of a run. Equal to `MIGRATE_FROM`: done.
    pub const MIGRATED: usize = 12;
    /// Where the step in progress ends (`MIGRATED` when none is): a writer
    /// that dies mid-step leaves copies of slots up to here, which the
    /// repair removes.
    pub const MIGRATE_TARGET: usize = 13;

    // Writer state, changed only under LOCK.
    /// 1 while a writer is publishing; a writer that finds it set repairs.
    pub const DIRTY: usize = 16;
    /// Segment being appended to (0: none yet).
    pub const CUR_SEG: usize = 17;
    /// Append offset in the current segment.
    pub const CUR_OFF: usize = 18;
    /// Next segment number to create.
    pub const NEXT_SEG: usize = 19;
    /// The access clock when LFU last halved every hit count.
    pub const LFU_AGED: usize = 20;
    /// Live entries.
    pub const ENTRIES: usize = 21;
    /// Tombstone slots (count toward the load factor).
    pub const TOMBSTONES: usize = 22;
    /// Bytes of live records and blob files.
    pub const LIVE_BYTES: usize = 23;
    /// Bytes of segment records that are superseded or removed.
    pub const DEAD_BYTES: usize = 24;
    /// Entries evicted, ever.
    pub const EVICTIONS: usize = 25;
    /// Cost-aware eviction's inflation clock `L` (the bits of an `f64`):
    /// the priority of the last entry it evicted.
    pub const GDSF_CLOCK: usize = 26;
    /// Bytes given back to the file system by eviction and compaction, ever.
    pub const RECLAIMED: usize = 27;
    /// Unix seconds of the last scan for entries past `max_age`.
    pub const AGE_SCAN: usize = 28;
    /// Entries in `TIME_RING`.
    pub const TIME_RING_LEN: usize = 29;
    /// Least seconds between two `TIME_RING` entries; doubles as the ring
    /// is thinned, so the ring spans any age with its 64 entries.
    pub const TIME_RING_SPACING: usize = 30;
    /// Entries in `CLOCK_RING`.
    pub const CLOCK_RING_LEN: usize = 31;

    /// Store-wide hit counter, on its own line.
    pub const HITS: usize = 32;
    /// The access clock: bumped by every hit (beside `HITS`, on the line a
    /// hit already owns) and every put. A slot's `atime` is its value at the
    /// entry's last use, so recency is exact however fast accesses come.
    pub const TICK: usize = 33;
    /// Store-wide miss counter, on its own line.
    pub const MISSES: usize = 40;

    // Durability (`store/durable.rs`), changed under LOCK, except
    // `CHECKPOINT`, which only grows.
    /// The system's boot id (16 bytes, words 48 and 49) when this table was
    /// last known to agree with the segments; another value means the
    /// machine restarted since, and pages of this file may have been lost.
    pub const BOOT_ID: usize = 48;
    /// 1 once a `Durability::Sync` writer has used this table (made durable
    /// when set): a restart then replays the segments from `CHECKPOINT`.
    pub const DURABLE: usize = 50;
    /// A location word: every slot change for records before it is on
    /// disk. 0: none is known, replay from the first segment.
    pub const CHECKPOINT: usize = 51;
    /// 1 once every slot's `cost` is in the encoding of `cost_word` (from
    /// 2026-12); 0: plain microseconds saturated at `u32::MAX` (converted
    /// by the first writer that opens the table).
    pub const COST_UNITS: usize = 52;
    /// Bytes compression saves: over live entries stored compressed, their
    /// raw length less their stored length (`Stats::raw_bytes` adds it to
    /// the bytes on disk). 0 in tables from before compression, which hold
    /// no compressed entry.
    pub const SAVED: usize = 53;

    // The remote tier's store-wide counters, on a line of their own; any
    // process adds.
    /// Local misses the remote answered with a verified value.
    pub const REMOTE_HITS: usize = 56;
    /// Local misses the remote did not answer with one.
    pub const REMOTE_MISSES: usize = 57;
    /// Values written through to the remote (answered puts).
    pub const UPLOADS: usize = 58;

    /// 64 pairs (tick, Unix seconds), oldest first: when the clock read
    /// what, for `max_age` (slots keep ticks, not times).
    pub const TIME_RING: usize = 256;
    /// 32 pairs (tick, `GDSF_CLOCK` bits), oldest first: the inflation
    /// clock's value from each tick on, so an entry's priority counts the
    /// clock as it was at the entry's last use.
    pub const CLOCK_RING: usize = 384;
    /// Capacity of `TIME_RING`, in pairs.
    pub const TIME_RING_CAP: usize = 64;
    /// Capacity of `CLOCK_RING`, in pairs.
    pub const CLOCK_RING_CAP: usize = 32;

    /// Words in the header page.
    pub const WORDS: usize = super::INDEX_HEADER_LEN / 8;
}

/// A slot's location word: the segment record of the entry, `seg << 40 |
/// offset`. For a large value that record is a blob pointer. Segments are
/// numbered from 1, so a live word is never `EMPTY`; `EMPTY` ends a probe,
/// `TOMBSTONE` (a removed entry) does not.
pub(crate) mod loc {
    pub const EMPTY: u64 = 0;
    pub const TOMBSTONE: u64 = u64::MAX;
    const OFF_BITS: u32 = 40;
    const OFF_MASK: u64 = (1 << OFF_BITS) - 1;
    /// Largest segment number a location can hold.
    pub const SEG_ID_MAX: u32 = (1 << 23) - 1;

    pub fn encode(seg: u32, off: u64) -> u64 {
        u64::from(seg) << OFF_BITS | off & OFF_MASK
    }

    /// `(segment, offset)`, or `None` for `EMPTY`, `TOMBSTONE` and words no
    /// writer produces.
    pub fn decode(w: u64) -> Option<(u32, u64)> {
        let seg = w >> OFF_BITS;
        (seg != 0 && seg <= u64::from(SEG_ID_MAX)).then_some((seg as u32, w & OFF_MASK))
    }
}

// -------------------------------------------------------------- segments ----

pub(crate) const SEG_MAGIC: [u8; 8] = *b"memo-seg";
/// Segment header: magic, version, segment number, zeros.
pub(crate) const SEG_HEADER_LEN: usize = 64;
/// A segment's largest size: a new segment is started when a record would
/// not fit. Readers map this much and read what the file holds.
pub(crate) const SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

/// Version of the segments memo writes. Version 2 segments may hold records
/// up to `INLINE_MAX` and pad records (`FLAG_PAD`); version 1 segments (up
/// to 64 KiB records, no pads) are still read. A memo that knows only
/// version 1 refuses a version 2 segment rather than misread it.
pub(crate) const SEG_VERSION: u32 = 2;

pub(crate) fn encode_segment_header(id: u32) -> [u8; SEG_HEADER_LEN] {
    let mut h = [0u8; SEG_HEADER_LEN];
    h[0..8].copy_from_slice(&SEG_MAGIC);
    h[8..12].copy_from_slice(&SEG_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&id.to_le_bytes());
    h
}

/// What a segment header says about itself.
pub(crate) enum SegmentHeader {
    Ok,
    Version(u32),
    Bad(&'static str),
}

pub(crate) fn check_segment_header(bytes: &[u8], id: u32) -> SegmentHeader {
    if bytes.len() < SEG_HEADER_LEN || bytes[0..8] != SEG_MAGIC {
        return SegmentHeader::Bad("not a memo segment (bad magic)");
    }
    let version = le32(&bytes[8..12]);
    if !(1..=SEG_VERSION).contains(&version) {
        return SegmentHeader::Version(version);
    }
    if le32(&bytes[12..16]) != id {
        return SegmentHeader::Bad("segment header names another segment");
    }
    SegmentHeader::Ok
}

const REC_MAGIC: u16 = u16::from_le_bytes(*b"mr");
/// Record header: magic u16, codec u8, flags u8, len u32, key (32 bytes), checksum u64.
pub(crate) const REC_HEADER_LEN: usize = 48;
/// The record is a tombstone: `remove` wrote it so a rebuild does not bring
/// the entry back.
pub(crate) const FLAG_TOMBSTONE: u8 = 1;
/// The record's payload is a blob pointer (`BLOB_PTR_LEN` bytes).
pub(crate) const FLAG_BLOB: u8 = 2;
/// The record only fills space, so that the next record's payload is
/// aligned (`ALIGN_MIN`); its key is zero and it stands for nothing.
pub(crate) const FLAG_PAD: u8 = 4;
/// Blob pointer payload: blob id u64, value length u64.
pub(crate) const BLOB_PTR_LEN: usize = 16;

/// Bytes a record with a `len`-byte payload takes in a segment: records are
/// 8-aligned so headers never straddle more cache lines than needed.
pub(crate) fn record_size(len: usize) -> usize {
    (REC_HEADER_LEN + len + 7) & !7
}

/// A decoded record header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordHeader {
    pub codec: u8,
    pub flags: u8,
    pub len: u32,
    pub key: Key,
    pub checksum: u64,
}

impl RecordHeader {
    /// The record removes its key (`FLAG_TOMBSTONE`).
    pub(crate) fn is_tombstone(&self) -> bool {
        self.flags & FLAG_TOMBSTONE != 0
    }

    /// The record's payload is a blob pointer (`FLAG_BLOB`).
    pub(crate) fn is_blob(&self) -> bool {
        self.flags & FLAG_BLOB != 0
    }

    /// The record only fills space (`FLAG_PAD`).
    pub(crate) fn is_pad(&self) -> bool {
        self.flags & FLAG_PAD != 0
    }
}

/// Bytes of pad record to write at `off` so that a `len`-byte payload
/// recorded after it starts `PAYLOAD_ALIGN`-aligned: 0 when no pad is
/// needed (short payloads are not aligned), else at least a record header.
pub(crate) fn pad_before(off: u64, len: usize) -> u64 {
    if len < ALIGN_MIN {
        return 0;
    }
    let head = REC_HEADER_LEN as u64;
    let mut gap = (PAYLOAD_ALIGN - (off + head) % PAYLOAD_ALIGN) % PAYLOAD_ALIGN;
    if gap != 0 && gap < head {
        gap += PAYLOAD_ALIGN;
    }
    gap
}

pub(crate) fn encode_record_header(
    key: &Key,
    codec: u8,
    flags: u8,
    payload: &[u8],
) -> [u8; REC_HEADER_LEN] {
    let mut h = [0u8; REC_HEADER_LEN];
    h[0..2].copy_from_slice(&REC_MAGIC.to_le_bytes());
    h[2] = codec;
    h[3] = flags;
    // Callers keep payloads below INLINE_MAX (or BLOB_PTR_LEN), so this fits.
    h[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[8..40].copy_from_slice(key.as_bytes());
    let sum = record_checksum(&h[..40], payload);
    h[40..48].copy_from_slice(&sum.to_le_bytes());
    h
}

/// xxh3-64 of the payload, seeded with xxh3-64 of the header's first 40
/// bytes, so both are covered: a random corruption passes with probability
/// 2^-64. Checksums guard against accidents, not adversaries (whoever can
/// write the files can write valid ones), so a fast non-cryptographic hash
/// serves as well as a truncated blake3 at a 16th of the cost.
pub(crate) fn record_checksum(head: &[u8], payload: &[u8]) -> u64 {
    xxh3_64_with_seed(payload, xxh3_64(head))
}

/// `None` when the bytes do not start with a record (the zeros after the
/// last record of a segment, or damage).
pub(crate) fn decode_record_header(b: &[u8]) -> Option<RecordHeader> {
    if b.len() < REC_HEADER_LEN || u16::from_le_bytes([b[0], b[1]]) != REC_MAGIC {
        return None;
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&b[8..40]);
    Some(RecordHeader {
        codec: b[2],
        flags: b[3],
        len: le32(&b[4..8]),
        key: Key::from_bytes(key),
        checksum: le64(&b[40..48]),
    })
}

pub(crate) fn encode_blob_ptr(id: u64, len: u64) -> [u8; BLOB_PTR_LEN] {
    let mut p = [0u8; BLOB_PTR_LEN];
    p[0..8].copy_from_slice(&id.to_le_bytes());
    p[8..16].copy_from_slice(&len.to_le_bytes());
    p
}

pub(crate) fn decode_blob_ptr(p: &[u8]) -> Option<(u64, u64)> {
    (p.len() == BLOB_PTR_LEN).then(|| (le64(&p[0..8]), le64(&p[8..16])))
}

// ----------------------------------------------------------------- blobs ----

pub(crate) const BLOB_MAGIC: [u8; 8] = *b"memoblob";
/// The payload starts here: 64-byte aligned in the mapping (which is page
/// aligned), enough for any SIMD type viewed in place.
pub(crate) const BLOB_HEADER_LEN: usize = 128;

/// A blob file's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlobHeader {
    pub codec: u8,
    pub key: Key,
    pub id: u64,
    pub len: u64,
    /// xxh3-128 of the payload.
    pub hash: u128,
}

pub(crate) fn encode_blob_header(b: &BlobHeader) -> [u8; BLOB_HEADER_LEN] {
    let mut h = [0u8; BLOB_HEADER_LEN];
    h[0..8].copy_from_slice(&BLOB_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12] = b.codec;
    h[16..48].copy_from_slice(b.key.as_bytes());
    h[48..56].copy_from_slice(&b.id.to_le_bytes());
    h[56..64].copy_from_slice(&b.len.to_le_bytes());
    h[64..80].copy_from_slice(&b.hash.to_le_bytes());
    let sum = xxh3_64(&h[..96]);
    h[96..104].copy_from_slice(&sum.to_le_bytes());
    h
}

/// Why a blob header is rejected.
#[derive(Debug)]
pub(crate) enum BlobHeaderError {
    Version(u32),
    Bad(&'static str),
}

pub(crate) fn decode_blob_header(h: &[u8]) -> Result<BlobHeader, BlobHeaderError> {
    use BlobHeaderError::{Bad, Version};
    if h.len() < BLOB_HEADER_LEN || h[0..8] != BLOB_MAGIC {
        return Err(Bad("not a memo blob (bad magic)"));
    }
    let version = le32(&h[8..12]);
    if version != FORMAT_VERSION {
        return Err(Version(version));
    }
    if xxh3_64(&h[..96]) != le64(&h[96..104]) {
        return Err(Bad("blob header checksum mismatch"));
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&h[16..48]);
    let mut hash = [0u8; 16];
    hash.copy_from_slice(&h[64..80]);
    let hash = u128::from_le_bytes(hash);
    Ok(BlobHeader {
        codec: h[12],
        key: Key::from_bytes(key),
        id: le64(&h[48..56]),
        len: le64(&h[56..64]),
        hash,
    })
}

pub(crate) fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

pub(crate) fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    #[test]
    fn costs_keep_their_order_and_precision_for_days() {
        let ladder: [u64; 9] = [
            0,
            1,
            999_999,
            (1 << 31) - 1,
            1 << 31,
            2 * 3_600_000_000,
            3 * 3_600_000_000,
            86_400_000_000,
            20 * 86_400_000_000,
        ];
        let mut last = None;
        for us in ladder {
            let back = cost_us(cost_word(us), 1);
            // Exact below 35.8 minutes, to the millisecond above.
            assert!(us.abs_diff(back) < 1000, "{us} came back as {back}");
            if us < 1 << 31 {
                assert_eq!(back, us);
            }
            assert!(last.is_none_or(|l| l <= back), "order kept at {us}");
            last = Some(back);
        }
        // Saturates at 24.8 days, never wraps.
        assert_eq!(cost_us(cost_word(u64::MAX), 1), ((1 << 31) - 1) * 1000);
        // A table of plain microseconds reads as it was written.
        assert_eq!(cost_us(u32::MAX, 0), u64::from(u32::MAX));
    }

    use super::*;

    #[test]
    fn record_round_trip_and_damage() {
        let key = Key::of("k");
        let payload = b"hello";
        let h = encode_record_header(&key, 1, 0, payload);
        let d = decode_record_header(&h).unwrap();
        assert_eq!((d.codec, d.flags, d.len, d.key), (1, 0, 5, key));
        assert_eq!(d.checksum, record_checksum(&h[..40], payload));
        assert_ne!(d.checksum, record_checksum(&h[..40], b"hellp"));
        assert!(decode_record_header(&[0u8; REC_HEADER_LEN]).is_none());
        assert!(decode_record_header(&h[..47]).is_none());
        assert_eq!(record_size(0), 48);
        assert_eq!(record_size(1), 56);
        assert_eq!(record_size(8), 56);
    }

    #[test]
    fn pads_align_long_payloads() {
        for off in (64..1024).step_by(8) {
            assert_eq!(pad_before(off, ALIGN_MIN - 1), 0);
            let pad = pad_before(off, ALIGN_MIN);
            assert!(pad == 0 || pad >= REC_HEADER_LEN as u64, "{off}: {pad}");
            assert_eq!(pad % 8, 0);
            assert_eq!((off + pad + REC_HEADER_LEN as u64) % PAYLOAD_ALIGN, 0);
        }
    }

    #[test]
    fn loc_round_trip() {
        for (seg, off) in [(1, 64), (loc::SEG_ID_MAX, (1 << 40) - 1)] {
            let w = loc::encode(seg, off);
            assert_ne!(w, loc::EMPTY);
            assert_ne!(w, loc::TOMBSTONE);
            assert_eq!(loc::decode(w), Some((seg, off)));
        }
        assert_eq!(loc::decode(loc::EMPTY), None);
        assert_eq!(loc::decode(loc::TOMBSTONE), None);
    }

    #[test]
    fn blob_header_round_trip_and_damage() {
        let b = BlobHeader {
            codec: 0,
            key: Key::of(&1),
            id: 7,
            len: 1 << 20,
            hash: 9 << 100,
        };
        let mut h = encode_blob_header(&b);
        assert_eq!(decode_blob_header(&h).unwrap(), b);
        h[50] ^= 1;
        assert!(matches!(
            decode_blob_header(&h),
            Err(BlobHeaderError::Bad(_))
        ));
        let mut h = encode_blob_header(&b);
        h[8] = 9;
        assert!(matches!(
            decode_blob_header(&h),
            Err(BlobHeaderError::Version(9))
        ));
    }

    #[test]
    fn segment_header() {
        let h = encode_segment_header(3);
        assert!(matches!(check_segment_header(&h, 3), SegmentHeader::Ok));
        assert!(matches!(check_segment_header(&h, 4), SegmentHeader::Bad(_)));
        assert!(matches!(
            check_segment_header(&h[..10], 3),
            SegmentHeader::Bad(_)
        ));
    }
}
