//! Compressed values: a zstd frame stored in place of a codec's bytes,
//! where that makes the value smaller by enough to pay for decoding it.
//!
//! On the path of a value: key → codec → **compress** → store. The codec
//! byte of a compressed value has [`COMPRESSED`] set over the id of the
//! codec that made the bytes inside, so every layer that moves stored
//! bytes (compaction, the remote tier, installs) carries them compressed
//! without knowing it, and a memo that predates compression reads them as
//! a codec it does not have: a miss, never a wrong value. The payload is
//! `raw length u64 LE ‖ zstd frame` (`docs/format.md`).

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;

use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, InBuffer, OutBuffer};

/// How a store compresses the values it writes.
///
/// A value is stored compressed only where that pays: at least
/// 512 bytes long and 10% smaller compressed; anything else
/// is stored as it is, so incompressible data (measured floats) keeps
/// zero-copy hits. Every store reads compressed values, whatever it was
/// opened with. Values holding an [`Array`](crate::Array) stay views,
/// uncompressed, unless their function asks for compression itself
/// (`#[memoize(compress = "zstd")]`).
///
/// Parsed from `none`, `zstd` (level 3) and `zstd:LEVEL` (1 to 22), as
/// `MEMO_COMPRESS` and `#[memoize(compress = ...)]` take it.
///
/// # Examples
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use memo_core::{Compression, Key, Store};
///
/// let store = Store::builder(dir.path())
///     .compress(Compression::Zstd { level: 3 })
///     .open()?;
/// let labels: Vec<u32> = (0..100_000).map(|i| i % 7).collect();
/// store.put(&Key::of("labels"), &labels)?;
/// assert_eq!(store.get::<Vec<u32>>(&Key::of("labels"))?, Some(labels));
/// let s = store.stats();
/// assert!(s.raw_bytes - s.bytes > 90_000, "stored compressed");
/// assert_eq!("zstd:9".parse::<Compression>(), Ok(Compression::Zstd { level: 9 }));
/// # Ok::<(), memo_core::Error>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// Values are stored as their codec wrote them.
    #[default]
    None,
    /// zstd at `level` (1 fastest … 22 smallest; 3 is zstd's default).
    Zstd {
        /// zstd's compression level, 1 to 22.
        level: i32,
    },
}

/// zstd's own default level, and what `zstd` alone means.
pub const DEFAULT_LEVEL: i32 = 3;

impl FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Compression, String> {
        let s = s.trim();
        let bad =
            || format!("{s:?} is not a compression: expected none, zstd or zstd:LEVEL (1-22)");
        match s.split_once(':') {
            None if s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("off") => {
                Ok(Compression::None)
            }
            None if s.eq_ignore_ascii_case("zstd") => Ok(Compression::Zstd {
                level: DEFAULT_LEVEL,
            }),
            Some((name, level)) if name.trim().eq_ignore_ascii_case("zstd") => {
                match level.trim().parse::<i32>() {
                    Ok(level @ 1..=22) => Ok(Compression::Zstd { level }),
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Zstd { level } => write!(f, "zstd:{level}"),
        }
    }
}

impl Compression {
    /// The zstd level to compress at, if any; levels outside zstd's range
    /// are clamped to it.
    pub(crate) fn level(self) -> Option<i32> {
        match self {
            Compression::None => None,
            Compression::Zstd { level } => Some(level.clamp(1, 22)),
        }
    }
}

/// Set in a codec byte: the payload is `raw length ‖ zstd frame` of bytes
/// written by the codec in the low bits.
pub(crate) const COMPRESSED: u8 = 0x80;

/// Whether bytes stored under codec byte `codec` are compressed.
pub(crate) fn is_compressed(codec: u8) -> bool {
    codec & COMPRESSED != 0
}

/// Bytes before the frame: the raw length.
pub(crate) const PREFIX: usize = 8;

/// Values shorter than this are never compressed: a frame's own header
/// and the prefix (about 20 bytes) and a decoder's start-up (about 1 µs)
/// would eat what a short value could save, and 100-byte puts and hits
/// keep their speed.
pub(crate) const MIN_LEN: usize = 512;

/// Values from this long are sampled before they are compressed whole.
const SAMPLE_FROM: usize = 4 << 20;
/// Samples taken, spread evenly over the value, and their length.
const SAMPLES: usize = 8;
const SAMPLE_LEN: usize = 64 << 10;

/// zstd produces at most this many bytes per input byte: a 128 KiB block
/// of one repeated byte takes a 3-byte block header and 1 byte. A frame
/// claiming more than this ratio (plus a block) is a forgery.
const MAX_RATIO: u64 = 32 << 10;
const BLOCK: u64 = 128 << 10;

/// Frames decoding to more than this grow their output as it is produced
/// instead of reserving their claimed length at once.
const GROW_FROM: u64 = 64 << 20;

thread_local! {
    /// Contexts are reused: making one costs about as much as
    /// compressing or decoding a few kilobytes.
    static CCTX: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

/// Whether `packed` bytes are worth keeping in place of `raw` ones: at
/// least 10% smaller (what a hit pays to decode is then bought back in
/// disk, page cache, network and `max_bytes`).
fn pays(packed: usize, raw: usize) -> bool {
    (packed as u64) * 10 <= (raw as u64) * 9
}

/// Values longer than this are cut into frames of this many bytes,
/// compressed and decoded independently on up to `threads()` cores: a
/// 64 MiB hit decodes in about half the time on two. zstd's window at the
/// levels people use (8 MiB at level 9 and below) is not longer, so what a
/// frame boundary costs in size is a few hundred bytes per frame.
const FRAME: usize = 4 << 20;

/// Threads that compress or decode the frames of one value.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Runs `f` on each of `items`, on up to `threads()` scoped threads (in
/// order, contiguous runs per thread); their results in order.
fn in_parallel<I: Send, T: Send>(items: Vec<I>, f: impl Fn(I) -> T + Sync) -> Vec<T> {
    let n = threads().min(items.len());
    if n <= 1 {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(n);
    let mut groups: Vec<Vec<I>> = Vec::with_capacity(n);
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        groups.push(items.by_ref().take(per).collect());
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|g| s.spawn(move || g.into_iter().map(f).collect::<Vec<T>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Runs `f` with this thread's compression context set to `level`.
fn with_cctx<R>(level: i32, f: impl FnOnce(&mut CCtx<'static>) -> Option<R>) -> Option<R> {
    CCTX.with(|cell| {
        let mut cell = cell.borrow_mut();
        let cctx = match &mut *cell {
            Some(c) => c,
            None => cell.insert(CCtx::try_create()?),
        };
        cctx.set_parameter(CParameter::CompressionLevel(level))
            .ok()?;
        f(cctx)
    })
}

/// Compresses `src` into `dst` (a cursor past what it holds): one frame,
/// its content size in its header. `None` if it does not fit `dst`.
fn frame_into(
    cctx: &mut CCtx<'static>,
    dst: &mut std::io::Cursor<Vec<u8>>,
    src: &[u8],
) -> Option<()> {
    if cctx.compress2(dst, src).is_err() {
        // A failed frame is left open; start the next one afresh.
        let _ = cctx.reset(zstd_safe::ResetDirective::SessionOnly);
        return None;
    }
    Some(())
}

/// `raw` compressed at `level` as a stored payload (`PREFIX` and frames),
/// or `None` where that does not pay: too short, or not 10% smaller (a
/// value of 4 MiB or more is first judged by samples, so incompressible
/// data costs a few milliseconds, not a whole compression).
pub(crate) fn pack(level: i32, raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() < MIN_LEN {
        return None;
    }
    if raw.len() >= SAMPLE_FROM && !with_cctx(level, |c| Some(samples_pay(c, raw)))? {
        return None;
    }
    // Room for frames that pay and no more: a value that would not is cut
    // short by zstd ("destination too small") and dropped.
    let room = PREFIX + raw.len() / 10 * 9;
    let mut out = Vec::new();
    out.try_reserve_exact(room).ok()?;
    out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    let mut cursor = std::io::Cursor::new(out);
    cursor.set_position(PREFIX as u64);
    if raw.len() <= FRAME {
        with_cctx(level, |c| frame_into(c, &mut cursor, raw))?;
    } else {
        let frames = in_parallel(raw.chunks(FRAME).collect(), |chunk| {
            let mut one =
                std::io::Cursor::new(Vec::with_capacity(zstd_safe::compress_bound(chunk.len())));
            with_cctx(level, |c| frame_into(c, &mut one, chunk))?;
            Some(one.into_inner())
        });
        for f in frames {
            let f = f?;
            if cursor.get_ref().len() + f.len() > room {
                return None;
            }
            cursor.get_mut().extend_from_slice(&f);
        }
    }
    let out = cursor.into_inner();
    pays(out.len(), raw.len()).then_some(out)
}

/// Whether `SAMPLES` slices spread over `raw` compress by enough, each on
/// its own: less context than the whole has, so a value that passes here
/// compresses at least as well whole.
fn samples_pay(cctx: &mut CCtx<'static>, raw: &[u8]) -> bool {
    let step = (raw.len() - SAMPLE_LEN) / (SAMPLES - 1);
    let mut buf = Vec::with_capacity(zstd_safe::compress_bound(SAMPLE_LEN));
    let (mut packed, mut total) = (0, 0);
    for i in 0..SAMPLES {
        let sample = &raw[i * step..i * step + SAMPLE_LEN];
        buf.clear();
        let Ok(n) = cctx.compress2(&mut buf, sample) else {
            let _ = cctx.reset(zstd_safe::ResetDirective::SessionOnly);
            return false;
        };
        packed += n;
        total += SAMPLE_LEN;
    }
    pays(packed, total)
}

/// The raw length a stored compressed payload claims.
pub(crate) fn raw_len(packed: &[u8]) -> Option<u64> {
    let prefix = packed.get(..PREFIX)?;
    Some(crate::format::le64(prefix))
}

/// Claims past this decode frame by frame into output grown as it is
/// produced; below it, frames decode in parallel into output reserved
/// whole (zeroed pages the kernel gives lazily).
const PARALLEL_MAX: u64 = 1 << 30;

/// The bytes a stored compressed payload holds, checked: the claim is
/// bounded by what zstd can produce from the frames before anything is
/// allocated, a payload claiming more than that is refused, output is
/// reserved as it is produced for large claims, and the result must be
/// exactly the claimed length. Errors say what was wrong.
pub(crate) fn unpack(packed: &[u8]) -> Result<Vec<u8>, String> {
    let raw = raw_len(packed).ok_or("compressed value shorter than its length prefix")?;
    let frames = &packed[PREFIX..];
    let most = (frames.len() as u64).saturating_mul(MAX_RATIO) + BLOCK;
    if raw > most || raw > crate::format::VALUE_MAX {
        return Err(format!(
            "compressed value claims {raw} bytes from {} bytes of frames: more than zstd can produce",
            frames.len()
        ));
    }
    let out = if raw > FRAME as u64 && raw <= PARALLEL_MAX {
        parallel_decode(frames, raw)?
    } else if raw <= GROW_FROM {
        with_dctx(|dctx| {
            let mut out = Vec::new();
            out.try_reserve_exact(raw as usize)
                .map_err(|_| format!("cannot allocate {raw} bytes to decode a value"))?;
            if let Err(code) = dctx.decompress(&mut out, frames) {
                let _ = dctx.reset(zstd_safe::ResetDirective::SessionOnly);
                return Err(bad_frame(code));
            }
            Ok(out)
        })?
    } else {
        with_dctx(|dctx| grow_decode(dctx, frames, raw))?
    };
    if out.len() as u64 != raw {
        return Err(format!(
            "compressed value decodes to {} bytes, its prefix says {raw}",
            out.len()
        ));
    }
    Ok(out)
}

/// Runs `f` with this thread's decoding context.
fn with_dctx<R>(f: impl FnOnce(&mut DCtx<'static>) -> Result<R, String>) -> Result<R, String> {
    DCTX.with(|cell| {
        let mut cell = cell.borrow_mut();
        let dctx = match &mut *cell {
            Some(d) => d,
            None => cell.insert(DCtx::try_create().ok_or("cannot make a zstd decoder")?),
        };
        f(dctx)
    })
}

/// Decodes frames that each name their content size, on several threads,
/// each into its own part of the output. The sizes must add up to `raw`
/// (already bounded) before anything is allocated, and each frame must
/// decode to exactly its size.
fn parallel_decode(frames: &[u8], raw: u64) -> Result<Vec<u8>, String> {
    let mut parts = Vec::new();
    let (mut at, mut total) = (0, 0_u64);
    while at < frames.len() {
        let rest = &frames[at..];
        let len = zstd_safe::find_frame_compressed_size(rest).map_err(bad_frame)?;
        let frame = rest
            .get(..len)
            .ok_or("compressed value's frame is cut short")?;
        let Ok(Some(size)) = zstd_safe::get_frame_content_size(frame) else {
            return Err("compressed value's frame does not say its size".into());
        };
        total = total.saturating_add(size);
        if total > raw {
            return Err(format!(
                "compressed value's frames hold more than the {raw} bytes its prefix says"
            ));
        }
        parts.push((frame, size as usize));
        at += len;
    }
    if total != raw {
        return Err(format!(
            "compressed value decodes to {total} bytes, its prefix says {raw}"
        ));
    }
    // Zeroed memory of this size comes from the kernel as untouched pages:
    // each thread faults in only its part as it decodes into it.
    let mut out = vec![0_u8; raw as usize];
    let mut slices = Vec::with_capacity(parts.len());
    let mut rest = out.as_mut_slice();
    for &(frame, size) in &parts {
        let (mine, more) = rest.split_at_mut(size);
        slices.push((frame, mine));
        rest = more;
    }
    let done = in_parallel(slices, |(frame, dst)| {
        with_dctx(|dctx| match dctx.decompress(dst, frame) {
            Ok(n) if n == dst.len() => Ok(()),
            Ok(n) => Err(format!(
                "compressed value's frame decodes to {n} bytes, its header says {}",
                dst.len()
            )),
            Err(code) => {
                let _ = dctx.reset(zstd_safe::ResetDirective::SessionOnly);
                Err(bad_frame(code))
            }
        })
    });
    if done.len() != parts.len() {
        return Err("a thread decoding a compressed value failed".into());
    }
    done.into_iter().collect::<Result<(), String>>()?;
    Ok(out)
}

/// Decodes frames whose claim is large, reserving output only as zstd
/// produces it (doubling, never past the claim): a forged claim costs
/// what the frames really hold.
fn grow_decode(dctx: &mut DCtx<'static>, frames: &[u8], raw: u64) -> Result<Vec<u8>, String> {
    let _ = dctx.reset(zstd_safe::ResetDirective::SessionOnly);
    let mut input = InBuffer::around(frames);
    let mut out: Vec<u8> = Vec::new();
    loop {
        if out.len() == out.capacity() {
            let have = out.len() as u64;
            if have >= raw {
                return Err(format!(
                    "compressed value decodes to more than the {raw} bytes its prefix says"
                ));
            }
            let more = (raw - have).min(have.max(GROW_FROM)) as usize;
            out.try_reserve_exact(more)
                .map_err(|_| format!("cannot allocate {more} bytes to decode a value"))?;
        }
        let at = out.len();
        let mut output = OutBuffer::around_pos(&mut out, at);
        let left = dctx.decompress_stream(&mut output, &mut input);
        let wrote = output.pos() > at;
        match left {
            // A frame ended; the next one, if any, starts a new frame.
            Ok(0) if input.pos() == frames.len() => return Ok(out),
            Ok(_) if input.pos() == frames.len() && !wrote && out.len() < out.capacity() => {
                return Err("compressed value's frame is cut short".into());
            }
            Ok(_) => {}
            Err(code) => {
                let _ = dctx.reset(zstd_safe::ResetDirective::SessionOnly);
                return Err(bad_frame(code));
            }
        }
    }
}

fn bad_frame(code: zstd_safe::ErrorCode) -> String {
    format!(
        "compressed value's frame does not decode: {}",
        zstd_safe::get_error_name(code)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// `n` pseudo-random bytes, each `% modulus` (256: incompressible).
    fn random(n: usize, modulus: u64) -> Vec<u8> {
        let mut x = 0x1234_5678_9abc_def0_u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 32) % modulus) as u8
            })
            .collect()
    }

    /// Small numbers with some disorder: compressible, not trivially.
    fn labels(n: usize) -> Vec<u8> {
        random(n, 16)
    }

    fn noise(n: usize) -> Vec<u8> {
        random(n, 256)
    }

    #[test]
    fn round_trips_what_pays_and_leaves_the_rest() {
        for n in [MIN_LEN, 4096, 100_000, SAMPLE_FROM + 12_345] {
            let raw = labels(n);
            let packed = pack(DEFAULT_LEVEL, &raw).unwrap();
            assert!(packed.len() < raw.len() * 9 / 10, "{n}");
            assert_eq!(raw_len(&packed), Some(n as u64));
            assert_eq!(unpack(&packed).unwrap(), raw);
        }
        assert!(pack(DEFAULT_LEVEL, &labels(MIN_LEN - 1)).is_none());
        for n in [4096, SAMPLE_FROM + 1] {
            assert!(pack(DEFAULT_LEVEL, &noise(n)).is_none(), "{n}");
        }
    }

    #[test]
    fn many_frames_decode_in_parallel_and_by_growing() {
        let raw = labels(3 * FRAME + 12_345);
        let packed = pack(1, &raw).unwrap();
        assert_eq!(unpack(&packed).unwrap(), raw);
        // The frames one after another, as claims past PARALLEL_MAX are.
        let grown = with_dctx(|d| grow_decode(d, &packed[PREFIX..], raw.len() as u64)).unwrap();
        assert_eq!(grown, raw);
        // Frames that do not add up to the claim: refused before decoding.
        let mut bad = packed.clone();
        bad[..PREFIX].copy_from_slice(&(raw.len() as u64 - 1).to_le_bytes());
        assert!(unpack(&bad).unwrap_err().contains("more than the"));
        // Damage in a frame header past the first: an error or other
        // bytes (the record's checksum is what refuses those), never a panic.
        let second = PREFIX + zstd_safe::find_frame_compressed_size(&packed[PREFIX..]).unwrap();
        for at in second..second + 12 {
            for bit in 0..8 {
                let mut bad = packed.clone();
                bad[at] ^= 1 << bit;
                let _ = unpack(&bad);
            }
        }
    }

    #[test]
    fn forged_frames_are_refused_without_their_claim() {
        let packed = pack(DEFAULT_LEVEL, &labels(10_000)).unwrap();
        let mut bomb = packed.clone();
        bomb[..PREFIX].copy_from_slice(&(16_u64 << 30).to_le_bytes());
        assert!(
            unpack(&bomb)
                .unwrap_err()
                .contains("more than zstd can produce")
        );
        // A claim within the ratio, decoding to less: refused after decoding
        // what the frame holds.
        let mut short = packed.clone();
        short[..PREFIX].copy_from_slice(&(100_000_u64).to_le_bytes());
        assert!(unpack(&short).unwrap_err().contains("decodes to 10000"));
        let mut long = packed.clone();
        long[..PREFIX].copy_from_slice(&(9_999_u64).to_le_bytes());
        assert!(unpack(&long).is_err());
        let mut flipped = packed.clone();
        let at = packed.len() / 2;
        flipped[at] ^= 0x55;
        let _ = unpack(&flipped); // an error or other bytes: never a panic
        assert!(unpack(&packed[..packed.len() - 3]).is_err());
        assert!(unpack(&packed[..4]).is_err());
    }

    #[test]
    fn parses_what_the_variable_and_the_attribute_take() {
        assert_eq!("zstd".parse(), Ok(Compression::Zstd { level: 3 }));
        assert_eq!(" ZSTD:19 ".parse(), Ok(Compression::Zstd { level: 19 }));
        assert_eq!("none".parse(), Ok(Compression::None));
        for bad in ["zstd:0", "zstd:23", "lz4", "zstd:x", ""] {
            assert!(bad.parse::<Compression>().is_err(), "{bad}");
        }
        assert_eq!(Compression::Zstd { level: 9 }.to_string(), "zstd:9");
    }
}
