//! Keys: 32 bytes of blake3, and the canonical hash of serde values.

pub(crate) mod call;
pub(crate) mod canon;

use std::fmt;
use std::str::FromStr;

pub(crate) use canon::Hasher;

/// A 32-byte blake3 key naming one entry of a store.
///
/// `Display` and `FromStr` use 64 lowercase hexadecimal characters.
///
/// # Examples
///
/// ```
/// use memo_core::Key;
///
/// let k = Key::of(&("fit", 3_u32, vec![1.5_f64, 2.5]));
/// assert_eq!(k, Key::of(&("fit", 3_u32, vec![1.5_f64, 2.5])));
/// assert_ne!(k, Key::of(&("fit", 4_u32, vec![1.5_f64, 2.5])));
/// let text = k.to_string();
/// assert_eq!(text.parse::<Key>().unwrap(), k);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key([u8; 32]);

impl Key {
    /// A key with exactly these bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }

    /// The key's 32 bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The canonical hash of any serde value.
    ///
    /// The same value gives the same key in every process, run and machine:
    /// the encoding is type-tagged and length-prefixed, integers are
    /// little-endian at their declared width (`usize` as 64 bits), floats are
    /// hashed by bit pattern, and maps and sets (`HashMap`, `HashSet`,
    /// `BTreeMap`, ...) are hashed independently of iteration order. The
    /// encoding streams into blake3 through a small buffer, with no
    /// intermediate copy of the value.
    ///
    /// Keys are part of the on-disk format: a value's key does not change
    /// between releases of the same format version.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use memo_core::Key;
    ///
    /// let a: HashMap<&str, i32> = [("x", 1), ("y", 2)].into();
    /// let b: HashMap<&str, i32> = [("y", 2), ("x", 1)].into();
    /// assert_eq!(Key::of(&a), Key::of(&b));
    /// ```
    #[must_use]
    pub fn of<T: serde::Serialize + ?Sized>(value: &T) -> Key {
        let mut h = Hasher::new();
        h.value(value);
        let key = h.finish();
        call::key_of_made();
        key
    }

    /// Bytes 0..4 as a little-endian integer: the tag an index slot keeps.
    /// Its low bits are the slot the probe starts at, so a table can be
    /// grown from its tags alone; the rest skip most wrong candidates.
    pub(crate) fn tag32(&self) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[..4]);
        u32::from_le_bytes(b)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

/// The error of parsing a [`Key`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a key is 64 lowercase hexadecimal characters, got {0:?}")]
pub struct ParseKeyError(String);

impl FromStr for Key {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> Result<Key, ParseKeyError> {
        let err = || ParseKeyError(s.chars().take(80).collect());
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(err());
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            let hi = nibble(b[2 * i]).ok_or_else(err)?;
            let lo = nibble(b[2 * i + 1]).ok_or_else(err)?;
            *o = hi << 4 | lo;
        }
        Ok(Key(out))
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Key;

    /// A test vector shared with the Python package
    /// (`memo-py/tests/test_keys.py`, `KEY_OF_SEVEN_I64`): Python's
    /// `memo.key(7)` encodes an int as an `i64`, so both languages name
    /// the same key for the same value.
    #[test]
    fn a_python_and_a_rust_value_share_a_key() {
        assert_eq!(
            Key::of(&7_i64).to_string(),
            "758c98c155fbde19f54b262a6f55b6779d7fdde4e838a000b5139b1cd9b64923"
        );
    }
}
