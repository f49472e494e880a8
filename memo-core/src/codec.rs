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

    /// Writes the encoding of `value` to `out`.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] when the value's `Serialize` impl or the writer fails.
    fn encode<V: Serialize + ?Sized, W: std::io::Write>(
        key: &Key,
        value: &V,
        out: &mut W,
    ) -> Result<()>;

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
    ) -> Result<()> {
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map(drop)
            .map_err(|e| Error::Codec {
                key: *key,
                message: e.to_string(),
            })
    }

    fn decode<V: DeserializeOwned>(key: &Key, bytes: &[u8]) -> Result<V> {
        let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
        let (v, used) =
            bincode::serde::decode_from_slice(bytes, config).map_err(|e| Error::Codec {
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

#[cfg(test)]
mod tests {
    use super::{Bincode, Codec};
    use crate::Key;

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
