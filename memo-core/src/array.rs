//! `Array<T>`: numbers that a hit hands back as a view of the mapped file.

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

use bytemuck::Pod;
use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeTupleStruct, Serializer};

use crate::Bytes;

/// An immutable array of plain-old-data (`f64`, `u32`, `[f32; 3]`, a
/// `#[derive(Pod)]` struct...) that memo stores as its bytes and loads
/// without a copy.
///
/// Returned by a memoized function or read with [`Store::get`], a stored
/// `Array` is a view of the mapped file: a hit costs the lookup, whatever
/// the size, and the memory is the page cache's, shared by every process.
/// That holds for an `Array` nested in a struct, an enum or a `Result`
/// too. Elements are aligned in the stored bytes (`docs/format.md`), so
/// the view is a `&[T]` in place; an alignment the format cannot give
/// (over 8 bytes in a value under 64 KiB) costs one copy instead.
///
/// As an argument of a memoized function, an `Array` is hashed as its raw
/// little-endian bytes, on several threads when it is large (the key is the
/// same whatever the thread count).
///
/// It derefs to `[T]`, clones in O(1) (the view or the vector is shared),
/// and is `Send + Sync`. A view keeps its file's mapping alive, as
/// [`Bytes`] does: it stays valid after the store is dropped and after the
/// entry is evicted or replaced.
///
/// # Examples
///
/// ```
/// use memo_core::{Array, memoize};
///
/// #[memoize(dir = "target/memo-doc-array")]
/// fn signal(n: usize) -> Array<f64> {
///     (0..n).map(|i| (i as f64 * 0.01).sin()).collect()
/// }
///
/// let first = signal(1_000_000); // computed and stored
/// let again = signal(1_000_000); // a view of the stored bytes: no decode, no copy
/// assert_eq!(first, again);
/// assert!(again.is_mapped());
/// assert_eq!(again.len(), 1_000_000);
/// ```
///
/// [`Store::get`]: crate::Store::get
pub struct Array<T: Pod> {
    data: Data<T>,
}

enum Data<T> {
    /// Made in this process (or copied out of bytes it could not view).
    Owned(Arc<Vec<T>>),
    /// Stored elements, viewed in place: `Bytes` keeps the mapping alive.
    /// Built only once the bytes are checked to be a whole number of
    /// aligned `T`s.
    Mapped(Bytes, PhantomData<T>),
}

impl<T: Pod> Array<T> {
    /// An empty array.
    #[must_use]
    pub fn new() -> Array<T> {
        Array::from(Vec::new())
    }

    /// Whether this array is a view of a store's mapped file (loaded from
    /// the store) rather than memory of its own.
    #[must_use]
    pub fn is_mapped(&self) -> bool {
        matches!(self.data, Data::Mapped(..))
    }

    /// The elements' bytes, little-endian (memo builds only on little-endian
    /// targets).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self)
    }

    /// The elements, copied into a vector of their own.
    #[must_use]
    pub fn to_vec(&self) -> Vec<T> {
        <[T]>::to_vec(self)
    }

    /// The elements in `bytes`, viewed in place if `bytes` is a slice of
    /// the value being loaded from a store and aligned for `T`, else copied.
    fn from_stored<E: de::Error>(bytes: &[u8]) -> Result<Array<T>, E> {
        let size = size_of::<T>();
        if size == 0 || !bytes.len().is_multiple_of(size) {
            return Err(E::invalid_length(bytes.len(), &Expecting::<T>(PhantomData)));
        }
        if (bytes.as_ptr() as usize).is_multiple_of(align_of::<T>())
            && let Some(view) = crate::mmap::view_of(bytes)
        {
            return Ok(Array {
                data: Data::Mapped(view, PhantomData),
            });
        }
        Ok(Array::from(copied::<T>(bytes)))
    }
}

/// `bytes` as a vector of `T`: zeroed by the allocator (no pass over the
/// memory), then one copy. `bytes.len()` is a multiple of `T`'s size.
fn copied<T: Pod>(bytes: &[u8]) -> Vec<T> {
    let mut v = vec![T::zeroed(); bytes.len() / size_of::<T>().max(1)];
    bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(bytes);
    v
}

impl<T: Pod> Deref for Array<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        match &self.data {
            Data::Owned(v) => v,
            // Size and alignment were checked when the view was made, and
            // a mapping never moves, so this cannot fail.
            Data::Mapped(b, _) => bytemuck::try_cast_slice(b).unwrap_or(&[]),
        }
    }
}

impl<T: Pod> AsRef<[T]> for Array<T> {
    fn as_ref(&self) -> &[T] {
        self
    }
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Array<T> {
        Array {
            data: match &self.data {
                Data::Owned(v) => Data::Owned(Arc::clone(v)),
                Data::Mapped(b, _) => Data::Mapped(b.clone(), PhantomData),
            },
        }
    }
}

impl<T: Pod> Default for Array<T> {
    fn default() -> Array<T> {
        Array::new()
    }
}

impl<T: Pod> From<Vec<T>> for Array<T> {
    /// Takes the vector as it is: no copy.
    fn from(v: Vec<T>) -> Array<T> {
        const {
            assert!(
                size_of::<T>() != 0,
                "an Array's elements cannot be zero-sized"
            );
        };
        Array {
            data: Data::Owned(Arc::new(v)),
        }
    }
}

impl<T: Pod> From<&[T]> for Array<T> {
    fn from(s: &[T]) -> Array<T> {
        Array::from(s.to_vec())
    }
}

impl<T: Pod> FromIterator<T> for Array<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Array<T> {
        Array::from(iter.into_iter().collect::<Vec<T>>())
    }
}

impl<T: Pod + PartialEq> PartialEq for Array<T> {
    fn eq(&self, other: &Array<T>) -> bool {
        **self == **other
    }
}

impl<T: Pod + PartialEq> PartialEq<[T]> for Array<T> {
    fn eq(&self, other: &[T]) -> bool {
        **self == *other
    }
}

impl<T: Pod + PartialEq> PartialEq<Vec<T>> for Array<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        **self == **other
    }
}

impl<T: Pod + Eq> Eq for Array<T> {}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A byte string written as it is.
struct Raw<'a>(&'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Zeros, at most 63, that align the elements after them.
const ZEROS: [u8; 64] = [0; 64];

impl<T: Pod> Serialize for Array<T> {
    /// A tuple struct named after the element type (`"f64"`) holding two
    /// byte strings: padding, then the elements' bytes. The padding is
    /// empty except in a store's encoding, where it makes the elements
    /// start aligned for `T` within the payload (`docs/format.md`,
    /// `Array<T>` under "Keys of memoized calls"); hashed into a key it is
    /// always empty, so a key is the element type and the elements' bytes. The name costs nothing in the
    /// store (bincode writes no names) and keeps the result shape of an
    /// `Array<f32>` apart from an `Array<u32>`'s (the key's schema).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = self.as_bytes();
        let pad = crate::codec::array_pad(bytes.len(), align_of::<T>());
        let mut t = s.serialize_tuple_struct(std::any::type_name::<T>(), 2)?;
        t.serialize_field(&Raw(ZEROS.get(..pad).unwrap_or_default()))?;
        t.serialize_field(&Raw(bytes))?;
        t.end()
    }
}

struct Expecting<T>(PhantomData<T>);

impl<T> de::Expected for Expecting<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a byte string of {}-byte elements", size_of::<T>())
    }
}

/// The padding: zeros, fewer than 64.
struct Padding;

impl<'de> Deserialize<'de> for Padding {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Padding, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Padding;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an Array's padding: fewer than 64 zero bytes")
            }
            fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Padding, E> {
                if b.len() < 64 && b.iter().all(|&x| x == 0) {
                    Ok(Padding)
                } else {
                    Err(E::invalid_value(de::Unexpected::Bytes(b), &self))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Padding, A::Error> {
                let mut n = 0_usize;
                while let Some(x) = seq.next_element::<u8>()? {
                    n += 1;
                    if x != 0 || n >= 64 {
                        return Err(de::Error::invalid_value(
                            de::Unexpected::Unsigned(x.into()),
                            &self,
                        ));
                    }
                }
                Ok(Padding)
            }
        }
        d.deserialize_bytes(V)
    }
}

/// The elements' byte string.
struct Elements<T: Pod>(Array<T>);

impl<'de, T: Pod> Deserialize<'de> for Elements<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Elements<T>, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Pod> Visitor<'de> for V<T> {
            type Value = Elements<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a byte string of {}-byte elements", size_of::<T>())
            }
            fn visit_borrowed_bytes<E: de::Error>(self, b: &'de [u8]) -> Result<Elements<T>, E> {
                Array::from_stored(b).map(Elements)
            }
            fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Elements<T>, E> {
                Array::from_stored(b).map(Elements)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Elements<T>, A::Error> {
                let mut bytes = Vec::new();
                while let Some(x) = seq.next_element::<u8>()? {
                    bytes.push(x);
                }
                Array::from_stored(&bytes).map(Elements)
            }
        }
        d.deserialize_bytes(V(PhantomData))
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Array<T>, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Pod> Visitor<'de> for V<T> {
            type Value = Array<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an Array: padding, then the elements' bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Array<T>, A::Error> {
                seq.next_element::<Padding>()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let Elements(a) = seq
                    .next_element::<Elements<T>>()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                Ok(a)
            }
        }
        d.deserialize_tuple_struct(std::any::type_name::<T>(), 2, V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::Array;
    use crate::Key;
    use crate::codec::{Bincode, Codec};

    #[test]
    fn round_trips_through_the_codec_and_json() {
        let k = Key::of("t");
        for n in [0_usize, 1, 7, 250, 251, 65_535, 65_536, 100_000] {
            let a: Array<u32> = (0..n as u32).collect();
            let mut buf = Vec::new();
            Bincode::encode(&k, &a, &mut buf).unwrap();
            let back: Array<u32> = Bincode::decode(&k, &buf).unwrap();
            assert_eq!(back, a);
            // Outside a mapping, a copy.
            assert!(!back.is_mapped());
        }
        let a: Array<f64> = vec![1.5, -2.0].into();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Array<f64>>(&json).unwrap(), a);
    }

    #[test]
    fn elements_start_aligned_within_the_payload() {
        let k = Key::of("t");
        // Every prefix length shifts the array; its elements must still
        // land at a multiple of their alignment.
        for prefix in 0..40_usize {
            for n in [0_usize, 3, 31, 32, 8191, 8192] {
                let a: Array<f64> = (0..n).map(|i| i as f64).collect();
                let value = ("x".repeat(prefix), a.clone());
                let mut buf = Vec::new();
                Bincode::encode(&k, &value, &mut buf).unwrap();
                let bytes = a.as_bytes();
                if n > 0 {
                    let at = buf.windows(bytes.len()).position(|w| w == bytes).unwrap();
                    assert_eq!(at % 8, 0, "prefix {prefix}, {n} elements at {at}");
                }
                let back: (String, Array<f64>) = Bincode::decode(&k, &buf).unwrap();
                assert_eq!(back.1, a);
            }
        }
    }

    #[test]
    fn hostile_bytes_are_errors() {
        let k = Key::of("t");
        // Padding of 64 bytes is more than any alignment needs.
        let mut buf = vec![64];
        buf.extend([0; 64]);
        buf.extend([8, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(Bincode::decode::<Array<f64>>(&k, &buf).is_err());
        // Non-zero padding.
        assert!(Bincode::decode::<Array<f64>>(&k, &[1, 9, 8, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // 7 bytes are no whole f64.
        assert!(Bincode::decode::<Array<f64>>(&k, &[0, 7, 1, 2, 3, 4, 5, 6, 7]).is_err());
    }
}
