//! The canonical serde `Serializer` behind [`Key::of`](crate::Key::of).
//!
//! Encoding, fed to blake3 as it is produced:
//! - every value starts with a one-byte type tag;
//! - integers are little-endian at their declared width, floats their bit
//!   pattern, `char` a `u32`;
//! - strings and byte strings are a `u64` length, then the bytes;
//! - struct, variant and field names are written (as length + bytes), variant
//!   indexes are not, so reordering an enum's variants keeps its keys;
//! - sequences, tuples and struct fields are followed by `END` and a `u64`
//!   count, so a length is never needed up front and nothing is ambiguous;
//! - maps and sets hash each entry on its own and feed the sorted entry
//!   digests, so iteration order does not matter.
//!
//! Serde's data model does not tell a `HashSet` from a `Vec` (both are
//! sequences), so the serializer remembers the Rust type name of the value it
//! was handed (`std::any::type_name`) and treats sequences whose type is a set
//! as unordered.
//!
//! Changing anything here changes keys, which are part of the on-disk format:
//! the golden values in this module's tests must then change with
//! `FORMAT_VERSION`.

mod compound;
mod serializer;

use serde::ser::{self, Serialize};

use crate::Key;

/// blake3 key-derivation context of `Key::of`: keys of other uses of blake3
/// can never collide with ours.
const CONTEXT: &str = "memo 2026-11 Key::of v1";

/// Most bytes gathered before one call into blake3. blake3 hashes a large
/// update as whole subtrees, merging far fewer chaining values than it does
/// for many small ones. Measured on the 2-core CI machine (2026-11-22,
/// `Key::of` of a 64 MiB `Vec<f64>` against blake3 of its bytes): 16 KiB
/// 0.39x, 64 KiB 0.46x, 256 KiB 0.51x, 1 MiB 0.54x.
const BUF: usize = 1024 * 1024;
/// The buffer a hasher starts with when its thread has none to lend: most
/// keys are small, and zeroing a large buffer for each would dominate their
/// cost. It doubles up to `BUF`.
const SMALL_BUF: usize = 256;

thread_local! {
    /// A buffer kept between keys, so a small key allocates nothing.
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Largest buffer kept in `SPARE`: larger ones go back to the allocator
/// rather than stay pinned per thread.
const SPARE_MAX: usize = 64 * 1024;

mod tag {
    pub const BOOL: u8 = 1;
    pub const I8: u8 = 2;
    pub const I16: u8 = 3;
    pub const I32: u8 = 4;
    pub const I64: u8 = 5;
    pub const I128: u8 = 6;
    pub const U8: u8 = 7;
    pub const U16: u8 = 8;
    pub const U32: u8 = 9;
    pub const U64: u8 = 10;
    pub const U128: u8 = 11;
    pub const F32: u8 = 12;
    pub const F64: u8 = 13;
    pub const CHAR: u8 = 14;
    pub const STR: u8 = 15;
    pub const BYTES: u8 = 16;
    pub const NONE: u8 = 17;
    pub const SOME: u8 = 18;
    pub const UNIT: u8 = 19;
    pub const UNIT_STRUCT: u8 = 20;
    pub const UNIT_VARIANT: u8 = 21;
    pub const NEWTYPE_STRUCT: u8 = 22;
    pub const NEWTYPE_VARIANT: u8 = 23;
    pub const SEQ: u8 = 24;
    pub const TUPLE: u8 = 25;
    pub const TUPLE_STRUCT: u8 = 26;
    pub const TUPLE_VARIANT: u8 = 27;
    pub const MAP: u8 = 28;
    pub const STRUCT: u8 = 29;
    pub const STRUCT_VARIANT: u8 = 30;
    pub const SET: u8 = 31;
    pub const END: u8 = 32;
    /// A `Serialize` impl that failed: its message is hashed, so the key is
    /// still a function of the value.
    pub const ERROR: u8 = 33;
}

/// A streaming canonical hasher: serde values in, a [`Key`] out.
///
/// Bytes gather in `buf`, a buffer kept per thread between keys; a blake3
/// hasher is made only when they outgrow it (`spill`). A small key is then
/// one one-shot blake3 call and no allocation (a blake3 hasher is 1.9 KB;
/// cloning it and allocating a buffer per key measured over a third of the
/// cost of a small key on the CI machine, 2026-11-22). An inline buffer
/// instead measured the same for small keys but 1.7x slower for a 64 MiB
/// `Vec<f64>`: choosing the buffer costs a branch on every write.
pub(crate) struct Hasher {
    start: Start,
    inner: Option<Box<blake3::Hasher>>,
    /// Always fully initialised; `pos` bytes of it are pending. Writing by
    /// index into a fixed length keeps the per-value cost to one bounds
    /// check and a copy (a `Vec` push per field measured 4x slower).
    buf: Vec<u8>,
    pos: usize,
    /// `type_name` of the value about to be serialized (see the module docs).
    pending: &'static str,
}

/// Which blake3 hash a hasher computes.
#[derive(Clone, Copy)]
enum Start {
    /// `Key::of`'s: derive-key mode with `CONTEXT`.
    KeyOf,
    /// Plain blake3: the entries of maps and sets.
    Plain,
    /// Keyed: a memoized call, keyed by its function's identity digest.
    Keyed([u8; 32]),
}

/// The error type serde needs; a failing `Serialize` impl's message.
#[derive(Debug)]
pub(crate) struct CanonError(String);

impl std::fmt::Display for CanonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CanonError {}

impl ser::Error for CanonError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        CanonError(msg.to_string())
    }
}

/// Hashes a large byte string (an `Array`, a `serde_bytes` buffer) into
/// `h`: on rayon's threads with the `sweep` feature, else on this one.
/// blake3 is a tree hash, so the result is the same whatever the split and
/// the thread count: keys do not depend on the machine.
fn update_large(h: &mut blake3::Hasher, bytes: &[u8]) {
    #[cfg(feature = "sweep")]
    h.update_rayon(bytes);
    #[cfg(not(feature = "sweep"))]
    h.update(bytes);
}

/// `Key::of`'s hasher state after the context: derived once, cloned after
/// (about 400 ns saved on every key).
static BASE: std::sync::LazyLock<blake3::Hasher> =
    std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key(CONTEXT));

impl Hasher {
    /// A hasher in `Key::of`'s domain.
    pub(crate) fn new() -> Hasher {
        Hasher::with(Start::KeyOf)
    }

    /// A hasher whose result is blake3 keyed by `key`: a memoized call's.
    #[inline]
    pub(crate) fn keyed(key: [u8; 32]) -> Hasher {
        Hasher::with(Start::Keyed(key))
    }

    #[inline]
    fn with(start: Start) -> Hasher {
        let mut buf = SPARE.try_with(std::cell::Cell::take).unwrap_or_default();
        if buf.len() < SMALL_BUF {
            buf.resize(SMALL_BUF, 0);
        }
        Hasher {
            start,
            inner: None,
            buf,
            pos: 0,
            pending: "",
        }
    }

    /// Makes this hasher a fresh keyed one, keeping its buffer (unless it
    /// grew past what a thread keeps): what a reused key builder does
    /// instead of taking a buffer from the thread each time.
    #[inline]
    pub(crate) fn restart_keyed(&mut self, key: &[u8; 32]) {
        self.start = Start::Keyed(*key);
        self.inner = None;
        self.pos = 0;
        self.pending = "";
        if self.buf.len() > SPARE_MAX {
            self.buf.truncate(SMALL_BUF);
            self.buf.shrink_to_fit();
        }
    }

    fn begin(start: Start) -> blake3::Hasher {
        match start {
            Start::KeyOf => BASE.clone(),
            Start::Plain => blake3::Hasher::new(),
            Start::Keyed(k) => blake3::Hasher::new_keyed(&k),
        }
    }

    /// Feeds one value in canonical form.
    #[inline]
    pub(crate) fn value<T: Serialize + ?Sized>(&mut self, v: &T) {
        self.pending = std::any::type_name::<T>();
        if let Err(e) = v.serialize(&mut *self) {
            self.failed(&e);
        }
    }

    /// A `Serialize` impl failed: its message is hashed in its place.
    #[cold]
    #[inline(never)]
    fn failed(&mut self, e: &CanonError) {
        self.write(&[tag::ERROR]);
        self.name(&e.0);
    }

    /// Every byte fed so far, while they are all still in the buffer (not
    /// yet spilled to blake3): the exact canonical encoding the key hashes.
    pub(crate) fn fed(&self) -> Option<&[u8]> {
        if self.inner.is_none() {
            self.buf.get(..self.pos)
        } else {
            None
        }
    }

    pub(crate) fn finish(mut self) -> Key {
        self.take_key()
    }

    /// The key of what was fed; the hasher must be `restart`ed before it
    /// is fed again.
    pub(crate) fn take_key(&mut self) -> Key {
        let inner = self.inner.take();
        let pending = &self.buf[..self.pos];
        // blake3 gives the same hash however the input is split, so the
        // one-shot forms equal the streaming one.
        let hash = match (inner, self.start) {
            (Some(mut h), _) => {
                h.update(pending);
                h.finalize()
            }
            (None, Start::KeyOf) => {
                let mut h = BASE.clone();
                h.update(pending);
                h.finalize()
            }
            (None, Start::Plain) => blake3::hash(pending),
            (None, Start::Keyed(k)) => blake3::keyed_hash(&k, pending),
        };
        Key::from_bytes(*hash.as_bytes())
    }

    #[inline]
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        let pos = self.pos;
        if let Some(dst) = self.buf.get_mut(pos..pos + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.pos = pos + bytes.len();
        } else {
            self.spill(bytes);
        }
    }

    #[cold]
    #[inline(never)]
    fn spill(&mut self, bytes: &[u8]) {
        let need = self.pos + bytes.len();
        if self.buf.len() < BUF {
            let grown = need.next_power_of_two().clamp(self.buf.len() * 2, BUF);
            self.buf.resize(grown, 0);
            if need <= grown {
                self.write(bytes);
                return;
            }
        }
        let start = self.start;
        let inner = self
            .inner
            .get_or_insert_with(|| Box::new(Hasher::begin(start)));
        inner.update(&self.buf[..self.pos]);
        self.pos = 0;
        if bytes.len() >= BUF {
            update_large(inner, bytes);
        } else {
            self.write(bytes);
        }
    }

    #[inline]
    fn prim<const N: usize>(&mut self, t: u8, bytes: [u8; N]) {
        let pos = self.pos;
        // Fixed-size arrays, so the copy is a register move, not a memcpy call.
        if let Some(dst) = self.buf.get_mut(pos..=pos + N)
            && let Some((first, rest)) = dst.split_first_mut()
            && let Ok(rest) = <&mut [u8; N]>::try_from(rest)
        {
            *first = t;
            *rest = bytes;
            self.pos = pos + 1 + N;
        } else {
            self.write(&[t]);
            self.write(&bytes);
        }
    }

    fn len(&mut self, n: usize) {
        self.write(&(n as u64).to_le_bytes());
    }

    fn name(&mut self, s: &str) {
        self.name_bytes(s.as_bytes());
    }

    fn name_bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.write(b);
    }

    fn end(&mut self, count: u64) {
        self.prim(tag::END, count.to_le_bytes());
    }

    fn pending_is_set(&self) -> bool {
        is_set_type(self.pending)
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        if self.buf.len() <= SPARE_MAX {
            let buf = std::mem::take(&mut self.buf);
            let len = buf.len();
            // Usually the slot is empty (this hasher took its buffer): one
            // store. Keeps the larger buffer when a nested hasher (a map
            // entry's) returned one too.
            let _ = SPARE.try_with(|spare| {
                let held = spare.replace(buf);
                if held.len() > len {
                    spare.set(held);
                }
            });
        }
    }
}

/// Whether `type_name` names a set type, looking through references and
/// smart pointers whose `Serialize` forwards to the pointee.
fn is_set_type(type_name: &str) -> bool {
    const WRAPPERS: [&str; 6] = [
        "&mut ",
        "&",
        "alloc::boxed::Box<",
        "alloc::rc::Rc<",
        "alloc::sync::Arc<",
        "alloc::borrow::Cow<",
    ];
    let mut t = type_name;
    'peel: loop {
        for w in WRAPPERS {
            if let Some(rest) = t.strip_prefix(w) {
                t = rest;
                continue 'peel;
            }
        }
        break;
    }
    let base = t.split('<').next().unwrap_or(t);
    let last = base.rsplit("::").next().unwrap_or(base);
    matches!(
        last,
        "HashSet" | "BTreeSet" | "IndexSet" | "AHashSet" | "HashTrieSet" | "OrdSet"
    )
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

    use super::is_set_type;
    use crate::Key;

    #[test]
    fn set_types_are_recognised_through_wrappers() {
        assert!(is_set_type(std::any::type_name::<HashSet<i32>>()));
        assert!(is_set_type(std::any::type_name::<&HashSet<String>>()));
        assert!(is_set_type(std::any::type_name::<Box<BTreeSet<u8>>>()));
        assert!(is_set_type(std::any::type_name::<
            std::sync::Arc<HashSet<u8>>,
        >()));
        assert!(!is_set_type(std::any::type_name::<Vec<HashSet<u8>>>()));
        assert!(!is_set_type(std::any::type_name::<Vec<i32>>()));
        assert!(!is_set_type(std::any::type_name::<[i32; 3]>()));
    }

    #[test]
    fn hash_containers_ignore_order() {
        // Many elements, so two HashSets almost surely iterate differently.
        let a: HashSet<u64> = (0..500).collect();
        let b: HashSet<u64> = (0..500).rev().collect();
        let sorted: BTreeSet<u64> = (0..500).collect();
        assert_eq!(Key::of(&a), Key::of(&b));
        assert_eq!(Key::of(&a), Key::of(&sorted));
        let m1: HashMap<String, Vec<u8>> =
            (0..300).map(|i| (i.to_string(), vec![i as u8])).collect();
        let m2: BTreeMap<String, Vec<u8>> = m1.clone().into_iter().collect();
        assert_eq!(Key::of(&m1), Key::of(&m2));
        assert_eq!(Key::of(&Some(&m1)), Key::of(&Some(m2)));
    }

    #[test]
    fn sequences_keep_order_and_types_are_tagged() {
        assert_ne!(Key::of(&vec![1, 2]), Key::of(&vec![2, 1]));
        assert_ne!(Key::of(&1_i32), Key::of(&1_i64));
        assert_ne!(Key::of(&1_u32), Key::of(&1_i32));
        assert_ne!(Key::of(&0.0_f64), Key::of(&-0.0_f64));
        assert_ne!(Key::of("ab"), Key::of(&('a', 'b')));
        assert_ne!(
            Key::of(&(vec![1u8], vec![2u8])),
            Key::of(&(vec![1u8, 2], Vec::<u8>::new()))
        );
        assert_ne!(Key::of(&("a", "bc")), Key::of(&("ab", "c")));
        assert_ne!(Key::of(&None::<u8>), Key::of(&()));
        assert_ne!(Key::of(&Some(())), Key::of(&()));
        assert_eq!(
            Key::of(&vec![1.5_f64; 3]),
            Key::of(&[1.5_f64, 1.5, 1.5][..])
        );
    }

    #[test]
    fn big_inputs_cross_the_buffer_the_same_way() {
        // A value written in one piece and in many pieces hashes alike only
        // if buffering is invisible; compare against a known-different split.
        let v: Vec<u64> = (0..100_000).collect();
        let k1 = Key::of(&v);
        let k2 = Key::of(&v.clone());
        assert_eq!(k1, k2);
        let s = "x".repeat(100_000);
        assert_eq!(Key::of(&s), Key::of(s.as_str()));
        assert_ne!(Key::of(&s), Key::of(&"x".repeat(99_999)));
    }
}
