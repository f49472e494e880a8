//! The keys of memoized calls. Format-bearing: changing anything here
//! orphans every stored result, so the golden values in the tests below
//! change only with `KEY_VERSION` (`docs/format.md` draws the layout).
//!
//! A call's key is blake3 in keyed mode: its key is the function's *base*
//! (a blake3 derivation over the format version and the function's
//! identity and code), and its input the canonical encoding (`canon.rs`) of
//! the type parameters' names and the arguments. The last 12 bytes are then
//! replaced by the function's *code mark* (4 bytes of its base) and its *tag*
//! (8 bytes: its identity without the code), so every entry names its
//! function across versions of its code, and which version stored it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use serde::Serialize;

use super::Hasher;
use crate::Key;

/// The version of the call key derivation, hashed first into every base.
/// It was the store's `FORMAT_VERSION` (1) when the two were one number;
/// they change for different reasons (a new key derivation orphans stored
/// results, a new file layout need not), so the key keeps its own, pinned
/// by the golden tests below. `docs/format.md` lists every version number.
pub(crate) const KEY_VERSION: u32 = 1;

/// blake3 key-derivation context of a function's base, apart from
/// `Key::of`'s: a memoized call never collides with a key a user made.
/// v2: keys carry the code mark (`CODE_AT`); v1 keys had 24 bytes of hash.
const CALL_CONTEXT: &str = "memo 2026-12 #[memoize] call v2";
/// Context of the function tag stored in the last bytes of each key.
const TAG_CONTEXT: &str = "memo 2026-11 #[memoize] function tag v1";
/// Where a call's key keeps its function's tag. The first 20 bytes are the
/// call's blake3 hash: 160 bits, so a collision stays out of reach (2^80
/// calls by the birthday bound) while every entry names its function and
/// its code version, which is what per-function statistics, clearing and
/// staleness read.
pub(crate) const TAG_AT: usize = 24;
/// Where a call's key keeps its code mark: bytes 0..4 of the function's
/// base, which covers its code and `version`. Two versions share a mark
/// with odds of 2^-32, and then only `memo functions` miscounts stale
/// entries: their keys still differ in the 160 bits of hash.
pub(crate) const CODE_AT: usize = 20;

/// What identifies a memoized function: where it is, what its code is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Identity<'a> {
    /// `module_path!()` of the function.
    pub module: &'a str,
    /// `type_name::<Self>()` for a method, else empty.
    pub self_ty: &'a str,
    pub name: &'a str,
    /// The function's tokens in the macro's canonical text form.
    pub tokens: &'a str,
    /// `#[memoize(version = ...)]`, else empty.
    pub version: &'a str,
    /// Results are stored with their time (`#[memoize(ttl = ...)]`): a
    /// stored value of another shape, so other keys.
    pub timed: bool,
    /// The digest of the tracked helpers it uses (`uses(...)`), if any.
    pub helpers: Option<[u8; 32]>,
    /// The digest of its types' serde shapes (`schema.rs`), if known.
    pub schema: Option<[u8; 32]>,
    /// The language of a function a binding memoizes (`"python"`); empty
    /// for Rust. Hashed only when set, so Rust keys are as they were, and
    /// a Python `lab.fit` never shares keys or a tag with a Rust one.
    pub language: &'a str,
}

/// What every call's key of one function starts from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Base {
    /// blake3 of the identity and code: the key of the keyed hash of the
    /// arguments. Starting each call from a 32-byte key, rather than from a
    /// hasher state that has absorbed the identity, keeps a small call's
    /// hash to one compression (measured 2026-11-22 on the CI machine: a
    /// hit through the macro 647 ns with the state cloned per call).
    key: [u8; 32],
    tag: [u8; 8],
}

impl Base {
    /// The code mark of this function's calls (`CODE_AT`).
    pub(crate) fn code(&self) -> u32 {
        u32::from_le_bytes([self.key[0], self.key[1], self.key[2], self.key[3]])
    }

    /// The tag of this function's calls.
    pub(crate) fn tag(&self) -> [u8; 8] {
        self.tag
    }
}

fn feed(h: &mut blake3::Hasher, parts: &[&str]) {
    for part in parts {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
}

impl Identity<'_> {
    /// The base of this function's calls.
    pub(crate) fn base(&self) -> Base {
        let mut h = blake3::Hasher::new_derive_key(CALL_CONTEXT);
        h.update(&KEY_VERSION.to_le_bytes());
        feed(
            &mut h,
            &[
                self.module,
                self.self_ty,
                self.name,
                self.tokens,
                self.version,
            ],
        );
        // Each only when present, so the keys of every other function stay
        // as they were.
        if self.timed {
            feed(&mut h, &["stored with its time"]);
        }
        if let Some(d) = self.helpers {
            h.update(b"uses");
            h.update(&d);
        }
        if let Some(d) = self.schema {
            h.update(b"schema");
            h.update(&d);
        }
        if !self.language.is_empty() {
            feed(&mut h, &["language", self.language]);
        }
        Base {
            key: *h.finalize().as_bytes(),
            tag: self.tag(),
        }
    }

    /// The tag of this function's entries: its identity without the code,
    /// so entries of every version of the function share it.
    pub(crate) fn tag(&self) -> [u8; 8] {
        let mut h = blake3::Hasher::new_derive_key(TAG_CONTEXT);
        feed(&mut h, &[self.module, self.self_ty, self.name]);
        if !self.language.is_empty() {
            feed(&mut h, &["language", self.language]);
        }
        let mut tag = [0; 8];
        tag.copy_from_slice(&h.finalize().as_bytes()[..8]);
        tag
    }
}

/// Whether `key` belongs to the function with this tag.
pub(crate) fn has_tag(key: &Key, tag: [u8; 8]) -> bool {
    key.as_bytes()[TAG_AT..] == tag
}

/// The function tag a key carries (meaningful for keys of memoized calls).
pub(crate) fn tag_of(key: &Key) -> [u8; 8] {
    let mut t = [0; 8];
    t.copy_from_slice(&key.as_bytes()[TAG_AT..]);
    t
}

/// The code mark a key carries (meaningful for keys of memoized calls).
pub(crate) fn code_of(key: &Key) -> u32 {
    let b = key.as_bytes();
    u32::from_le_bytes([b[CODE_AT], b[CODE_AT + 1], b[CODE_AT + 2], b[CODE_AT + 3]])
}

/// A call's key under construction: the function's identity is in, the
/// type parameters and arguments follow.
pub struct KeyBuilder {
    hasher: Hasher,
    code: u32,
    tag: [u8; 8],
}

impl KeyBuilder {
    /// Starts the key of a call of the function with this base.
    #[inline]
    pub(crate) fn new(base: Base) -> KeyBuilder {
        KeyBuilder {
            hasher: Hasher::keyed(base.key),
            code: base.code(),
            tag: base.tag,
        }
    }

    /// Starts over as the key of another call of the function with this
    /// base, keeping the buffer.
    #[inline]
    pub(crate) fn restart(&mut self, base: &Base) {
        self.hasher.restart_keyed(&base.key);
        self.code = base.code();
        self.tag = base.tag;
    }

    /// The key, leaving the builder to be `restart`ed.
    pub(crate) fn take_key(&mut self) -> Key {
        let mut bytes = *self.hasher.take_key().as_bytes();
        bytes[CODE_AT..TAG_AT].copy_from_slice(&self.code.to_le_bytes());
        bytes[TAG_AT..].copy_from_slice(&self.tag);
        let key = Key::from_bytes(bytes);
        key_made(&key);
        key
    }

    /// Feeds a type parameter's `type_name`.
    pub fn type_param(&mut self, name: &'static str) {
        self.hasher.value(name);
    }

    /// Feeds the schema digest of a generic function's instantiation,
    /// whose base its instantiations share.
    #[inline]
    pub fn schema(&mut self, digest: &[u8; 32]) {
        self.hasher.value(digest);
    }

    /// Feeds an argument in canonical form.
    #[inline]
    pub fn arg<T: Serialize + ?Sized>(&mut self, value: &T) {
        self.hasher.value(value);
    }

    /// Feeds bytes another encoder already put in canonical form (a
    /// binding's arguments: `memoize::protocol`).
    #[inline]
    pub(crate) fn encoded(&mut self, bytes: &[u8]) {
        self.hasher.write(bytes);
    }

    /// The canonical bytes fed so far (type parameters, arguments), while
    /// there are at most `max` of them: what `#[memoize(memory = N)]` looks
    /// calls up by, without hashing them.
    #[must_use]
    pub fn fed(&self, max: usize) -> Option<&[u8]> {
        self.hasher.fed().filter(|b| b.len() <= max)
    }

    /// The key: 20 bytes of the call's hash, the code mark, then the
    /// function's tag.
    #[must_use]
    pub fn finish(mut self) -> Key {
        self.take_key()
    }
}

thread_local! {
    /// Set when an unreadable data file is hashed into the key this thread
    /// is making; whichever key ends next takes it (`KeyBuilder::take_key`,
    /// or `Key::of`, which only clears it), so it never outlives its key.
    /// Taken at the end rather than cleared at the start: the start is on
    /// the hit path of `memory = N`, the end only on a miss.
    static HASHED_UNREADABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether any key of this process had an unreadable data file in it: the
/// check of every call is one load until one has.
static ANY_UNCACHEABLE: AtomicBool = AtomicBool::new(false);

/// Keys of calls whose data files could not be read. A key hashes the
/// reason a file was unreadable, not contents, so the set is as small as
/// the number of distinct missing inputs a process meets.
static UNCACHEABLE: LazyLock<Mutex<std::collections::HashSet<Key>>> = LazyLock::new(Mutex::default);

/// An argument that could not be read (a `DataFile`) went into the key
/// being made on this thread: the key is remembered as one never to cache.
pub(crate) fn hashed_unreadable() {
    let _ = HASHED_UNREADABLE.try_with(|f| f.set(true));
}

/// A `Key::of` ended on this thread: an unreadable data file in it is no
/// memoized call's.
#[inline]
pub(crate) fn key_of_made() {
    let _ = HASHED_UNREADABLE.try_with(std::cell::Cell::take);
}

/// A key was made on this thread: if an unreadable data file went into it,
/// it is remembered as one never to cache.
#[inline]
pub(crate) fn key_made(key: &Key) {
    if HASHED_UNREADABLE
        .try_with(std::cell::Cell::take)
        .unwrap_or(false)
    {
        ANY_UNCACHEABLE.store(true, Ordering::Release);
        UNCACHEABLE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(*key);
    }
}

/// Whether `key` is a call with an unreadable data file: run, never
/// looked up or stored.
#[inline]
pub(crate) fn uncacheable(key: &Key) -> bool {
    ANY_UNCACHEABLE.load(Ordering::Acquire)
        && UNCACHEABLE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIT: Identity<'static> = Identity {
        module: "lab::model",
        self_ty: "",
        name: "fit",
        tokens: "fn fit ( x : u32 ) -> u32 { x }",
        version: "",
        timed: false,
        helpers: None,
        schema: None,
        language: "",
    };

    fn key(id: &Identity<'_>, type_params: &[&'static str], args: &(u32, &str)) -> String {
        let mut k = KeyBuilder::new(id.base());
        for t in type_params {
            k.type_param(t);
        }
        k.arg(&args.0);
        k.arg(args.1);
        k.finish().to_string()
    }

    /// Golden values: a change here orphans every stored result, and must
    /// come with a new `KEY_VERSION`.
    #[test]
    fn call_keys_are_stable() {
        let golden = [
            (
                key(&FIT, &[], &(1, "a")),
                "55bd9afc9e2a573e7809b910981ee5e033bc2978cd569fc670a5b6c47595f356",
            ),
            (
                key(
                    &Identity {
                        version: "2",
                        ..FIT
                    },
                    &[],
                    &(1, "a"),
                ),
                "ccb9f4947007a62474c18256fbc63df7b9cf0a8dff637b8570a5b6c47595f356",
            ),
            (
                key(
                    &Identity {
                        self_ty: "lab::model::Ridge",
                        ..FIT
                    },
                    &["f64"],
                    &(7, "b"),
                ),
                "cc86b7a7983666a42d8c622e4e2780292e98ede849e1bf7b145a2d750570b37f",
            ),
        ];
        for (got, want) in golden {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn the_tag_names_the_function_across_code_versions() {
        let edited = Identity {
            tokens: "fn fit ( x : u32 ) -> u32 { x + 1 }",
            ..FIT
        };
        let a = key(&FIT, &[], &(1, "a"));
        let b = key(&edited, &[], &(1, "a"));
        assert_ne!(a, b, "new code, new key");
        assert_eq!(a[2 * TAG_AT..], b[2 * TAG_AT..], "same function, same tag");
        assert_ne!(
            a[2 * CODE_AT..2 * TAG_AT],
            b[2 * CODE_AT..2 * TAG_AT],
            "new code, new code mark"
        );
        let ka: Key = a.parse().unwrap_or_else(|_| Key::from_bytes([0; 32]));
        assert_eq!(code_of(&ka), FIT.base().code());
        assert_eq!(tag_of(&ka), FIT.tag());
        let k: Key = a.parse().unwrap_or_else(|_| Key::from_bytes([0; 32]));
        assert!(has_tag(&k, FIT.tag()));
        let other = Identity {
            name: "predict",
            ..FIT
        };
        assert!(!has_tag(&k, other.tag()));
    }

    /// A function with a ttl stores `(time, value)`: its keys must differ
    /// from the same function's without one, or a value stored without a
    /// time would be decoded as one with a time. Every other key stays as
    /// it was.
    #[test]
    fn a_ttl_changes_the_base_and_nothing_else_does() {
        let timed = Identity { timed: true, ..FIT };
        assert_ne!(timed.base().key, FIT.base().key);
        assert_eq!(timed.tag(), FIT.tag(), "the same function's entries");
        let helped = Identity {
            helpers: Some([7; 32]),
            ..FIT
        };
        let other = Identity {
            helpers: Some([8; 32]),
            ..FIT
        };
        assert_ne!(helped.base().key, FIT.base().key);
        assert_ne!(helped.base().key, other.base().key);
    }
}
