//! Value encoding, behind a trait so the format can move on.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Key, Result};

/// How values become bytes and back. Private: no public API takes a codec
/// yet, so none is promised; the trait is the seam a second codec plugs
/// into (issue: bulk encoding of numeric sequences).
///
/// A codec's `ID` is written into every record it encodes, and
/// a record is only ever decoded by the codec that wrote it, so switching
/// codecs can never serve bytes written by another: the old entries read as
/// misses. Id 0 is reserved for raw bytes (`Store::put_bytes`).
///
/// memo ships `Bincode`. bincode 2.0.1 is pinned: its 3.0 release is a
/// tombstone and RUSTSEC-2025-0141 marks it unmaintained, so this trait is
/// the way out (postcard is the likely successor).
pub(crate) trait Codec {
    /// Written into every record; never reused for another encoding.
    const ID: u8;

    /// Writes the encoding of `value` to `out`; whether it holds arrays
    /// (`Array`) that hits read in place, which the store's compression
    /// setting leaves uncompressed.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] when the value's `Serialize` impl or the writer fails.
    fn encode<V: Serialize + ?Sized, W: std::io::Write>(
        key: &Key,
        value: &V,
        out: &mut W,
    ) -> Result<bool>;

    /// Decodes a whole value from `bytes`; trailing bytes are an error.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] when the bytes are not an encoding of `V`.
    fn decode<V: DeserializeOwned>(key: &Key, bytes: &[u8]) -> Result<V>;
}

/// Id of entries stored raw by `put_bytes`.
pub(crate) const RAW_ID: u8 = 0;

/// bincode 2.0.1 in serde mode, standard configuration (little-endian,
/// variable-length integers).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bincode;

/// Decoding is bounded by the input: bincode checks every claimed length
/// against the remaining bytes before it allocates, and serde's own
/// containers preallocate at most 1 MiB on a size hint. The limit below makes
/// the first check explicit for any length.
const DECODE_LIMIT: usize = 1 << 40;

impl Codec for Bincode {
    const ID: u8 = 1;

    fn encode<V: Serialize + ?Sized, W: std::io::Write>(
        key: &Key,
        value: &V,
        out: &mut W,
    ) -> Result<bool> {
        // Counted, so an `Array` can align its elements within the
        // payload (`array_pad`).
        // The writer holds the thread's counter itself: a thread-local
        // lookup per write cost 8% of an element-by-element put.
        let previous_views = VIEWS.with(|v| v.replace(false));
        let done = ENCODED.with(|pos| {
            let previous = pos.replace(Some(0));
            let done = bincode::serde::encode_into_std_write(
                value,
                &mut Counted { out, pos },
                bincode::config::standard(),
            );
            pos.set(previous);
            done
        });
        let views = VIEWS.with(|v| v.replace(previous_views));
        done.map(|_| views).map_err(|e| Error::Codec {
            key: *key,
            message: e.to_string(),
        })
    }

    fn decode<V: DeserializeOwned>(key: &Key, bytes: &[u8]) -> Result<V> {
        let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
        // Borrowing from the stored bytes: a byte string (a `PodVec`, a
        // `serde_bytes` buffer) is handed to its visitor in place, and
        // copied once, by the visitor, instead of into a buffer first.
        let (v, used) =
            bincode::serde::borrow_decode_from_slice(bytes, config).map_err(|e| Error::Codec {
                key: *key,
                message: e.to_string(),
            })?;
        if used != bytes.len() {
            return Err(Error::Codec {
                key: *key,
                message: format!("{} trailing bytes after the value", bytes.len() - used),
            });
        }
        Ok(v)
    }
}

thread_local! {
    /// Bytes `Bincode::encode` has written so far on this thread: `None`
    /// when no store encoding is under way (a key being hashed, another
    /// serializer).
    static ENCODED: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
    /// Whether the store encoding under way wrote an `Array`.
    static VIEWS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A writer that counts into `ENCODED`. bincode's `std::io::Write` adapter
/// writes straight through, so the count is the payload offset of the next
/// byte.
struct Counted<'a, W> {
    out: W,
    pos: &'a std::cell::Cell<Option<u64>>,
}

impl<W: std::io::Write> std::io::Write for Counted<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(data)?;
        self.pos.set(self.pos.get().map(|p| p + n as u64));
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// bincode's standard varint size of a length.
fn varint_len(n: u64) -> u64 {
    match n {
        0..251 => 1,
        251..=0xFFFF => 3,
        0x1_0000..=0xFFFF_FFFF => 5,
        _ => 9,
    }
}

/// Zero bytes an `Array` writes before its `len` bytes of elements so that
/// they start `align`-aligned within the payload being encoded: the array
/// is a pair of byte strings, the padding (its varint length, one byte,
/// then the zeros) and the elements (a varint length, then the bytes).
/// 0 outside a store encoding, where no offset means anything.
pub(crate) fn array_pad(len: usize, align: usize) -> usize {
    let Some(at) = ENCODED.with(std::cell::Cell::get) else {
        return 0;
    };
    VIEWS.with(|v| v.set(true));
    // Payloads start at most 64-byte aligned (docs/format.md): a larger
    // alignment could not be kept anyway, and this keeps the padding's
    // length one byte.
    let align = align.clamp(1, 64) as u64;
    let before = at + 1 + varint_len(len as u64);
    ((align - before % align) % align) as usize
}

/// The element types whose vectors are stored as their bytes: plain
/// numbers, which any bit pattern of their size is.
pub trait Number: bytemuck::Pod + Send + Sync {}

macro_rules! numbers {
    ($($t:ty),*) => { $(impl Number for $t {})* };
}
numbers!(u8, i8, u16, i16, u32, i32, u64, i64, u128, i128, f32, f64);

/// A vector of numbers, encoded as one byte string: a varint length in
/// bytes, then the elements little-endian (memo builds only on
/// little-endian targets). What `#[memoize]` stores for a `Vec<u8>`,
/// `Vec<f64>`, ... result, so a hit is one copy instead of a decode per
/// element.
#[derive(Clone)]
pub struct PodVec<P>(pub Vec<P>);

impl<P: Number> Serialize for PodVec<P> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(bytemuck::cast_slice(&self.0))
    }
}

impl<'de, P: Number> serde::Deserialize<'de> for PodVec<P> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Elements<P>(std::marker::PhantomData<P>);
        impl<P: Number> serde::de::Visitor<'_> for Elements<P> {
            type Value = PodVec<P>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a byte string of {}-byte numbers", size_of::<P>())
            }
            fn visit_bytes<E: serde::de::Error>(
                self,
                b: &[u8],
            ) -> std::result::Result<PodVec<P>, E> {
                let size = size_of::<P>();
                if !b.len().is_multiple_of(size) {
                    return Err(E::invalid_length(b.len(), &self));
                }
                // One pass over the memory: a zeroed vector then a copy
                // was two (the allocator zeroes reused memory itself;
                // profiled on 8 MiB hits: 32% of the time in memset).
                // Aligned bytes (always for u8) are one memcpy; others are
                // read element by element, which compiles to a copy loop.
                if let Ok(aligned) = bytemuck::try_cast_slice::<u8, P>(b) {
                    return Ok(PodVec(aligned.to_vec()));
                }
                let mut v = Vec::with_capacity(b.len() / size);
                v.extend(b.chunks_exact(size).map(bytemuck::pod_read_unaligned::<P>));
                Ok(PodVec(v))
            }
        }
        d.deserialize_bytes(Elements(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::{Bincode, Codec, PodVec};
    use crate::Key;

    #[test]
    fn vectors_of_numbers_round_trip_as_bytes() {
        let k = Key::of("t");
        let v: Vec<f64> = (0..1000).map(|i| f64::from(i) * 0.5).collect();
        let mut buf = Vec::new();
        Bincode::encode(&k, &PodVec(v.clone()), &mut buf).unwrap();
        // A varint of 8000 (3 bytes), then the bytes.
        assert_eq!(buf.len(), 3 + 8000);
        assert_eq!(Bincode::decode::<PodVec<f64>>(&k, &buf).unwrap().0, v);
        let bytes: Vec<u8> = (0..=255).collect();
        buf.clear();
        Bincode::encode(&k, &PodVec(bytes.clone()), &mut buf).unwrap();
        assert_eq!(Bincode::decode::<PodVec<u8>>(&k, &buf).unwrap().0, bytes);
        // 7 bytes are no whole number of u32s.
        buf.clear();
        Bincode::encode(&k, &PodVec(vec![0_u8; 7]), &mut buf).unwrap();
        assert!(Bincode::decode::<PodVec<u32>>(&k, &buf).is_err());
    }

    #[test]
    fn round_trip_and_errors() {
        let k = Key::of("t");
        let mut buf = Vec::new();
        Bincode::encode(&k, &vec![1.0_f64, 2.0], &mut buf).unwrap();
        assert_eq!(
            Bincode::decode::<Vec<f64>>(&k, &buf).unwrap(),
            vec![1.0, 2.0]
        );
        assert!(Bincode::decode::<Vec<f64>>(&k, &buf[..buf.len() - 1]).is_err());
        buf.push(0);
        assert!(Bincode::decode::<Vec<f64>>(&k, &buf).is_err());
    }

    #[test]
    fn hostile_lengths_do_not_allocate() {
        // A claimed length of 2^60 elements in a 10-byte input must fail fast.
        let k = Key::of("t");
        let bytes = [0xFD, 0, 0, 0, 0, 0, 0, 0, 0x10, 0];
        assert!(Bincode::decode::<Vec<u64>>(&k, &bytes).is_err());
        assert!(Bincode::decode::<String>(&k, &bytes).is_err());
    }
}
