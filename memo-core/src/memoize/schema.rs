//! Schema fingerprints: the serde shape of a memoized function's result
//! type (and of its argument types that can be deserialized), traced once
//! per process and type with `serde-reflection`, and hashed into the
//! function's keys.
//!
//! Stored values are bincode, which records no names: a result type whose
//! fields were reordered, retyped (`i64` to `u64`) or whose enum gained or
//! lost a variant may still decode old bytes, into wrong values. The shape
//! covers field names and order, field types, enum variants and their
//! order, recursively, so any such change gives new keys.
//!
//! A type that cannot be traced (a `Deserialize` that validates what it
//! reads, `deserialize_any`, `#[serde(flatten)]`) is hashed by its type
//! name only, and said once through `tracing` and on stderr: a change to
//! its shape is then not noticed, and `version` is the remedy.

use std::collections::{BTreeSet, HashMap};
use std::marker::PhantomData;
use std::sync::{LazyLock, Mutex, PoisonError, RwLock};

use serde::de::DeserializeOwned;
use serde_reflection::{Samples, Tracer, TracerConfig};

/// blake3 key-derivation context of a schema digest.
const CONTEXT: &str = "memo 2026-12 schema v1";

/// The shapes hashed so far, by type name: a type is traced once per
/// process however many functions use it.
static SHAPES: LazyLock<RwLock<HashMap<&'static str, [u8; 32]>>> = LazyLock::new(RwLock::default);

/// The shape digest of `T`.
fn shape<T: DeserializeOwned>() -> [u8; 32] {
    let name = std::any::type_name::<T>();
    if let Some(d) = SHAPES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name)
    {
        return *d;
    }
    let d = match trace::<T>() {
        Ok(traced) => traced,
        Err(why) => {
            untraceable(name, &why);
            let mut h = blake3::Hasher::new_derive_key(CONTEXT);
            h.update(b"untraced ");
            h.update(name.as_bytes());
            *h.finalize().as_bytes()
        }
    };
    SHAPES
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(name, d);
    d
}

/// `T`'s format and the formats of every container it holds, encoded
/// canonically; every enum explored to its last variant.
fn trace<T: DeserializeOwned>() -> Result<[u8; 32], String> {
    static SAMPLES: LazyLock<Samples> = LazyLock::new(Samples::new);
    // An enum nested in `T` is explored one variant per trace, and only
    // once its name is known can it be asked for the next: each attempt
    // starts again knowing every name the last one found incomplete.
    let mut names: BTreeSet<String> = BTreeSet::new();
    for _ in 0..16 {
        let mut tracer = Tracer::new(TracerConfig::default());
        let mut format = None;
        for _ in 0..1024 {
            let (f, _) = tracer
                .trace_type_once::<T>(&SAMPLES)
                .map_err(|e| e.to_string())?;
            format = Some(f);
            let mut again = false;
            for n in &names {
                again |= tracer.check_incomplete_enum(n).is_some();
            }
            if !again {
                break;
            }
        }
        match tracer.registry() {
            Ok(registry) => return Ok(*crate::Key::of(&(format, registry)).as_bytes()),
            Err(serde_reflection::Error::MissingVariants(more)) => {
                let before = names.len();
                names.extend(more);
                if names.len() == before {
                    return Err("its enums' variants could not all be traced".to_owned());
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("its enums nest too deep to trace".to_owned())
}

/// Says once per type and process that its shape is not in the keys.
fn untraceable(name: &str, why: &str) {
    static SAID: LazyLock<Mutex<BTreeSet<String>>> = LazyLock::new(Mutex::default);
    if !SAID
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(name.to_owned())
    {
        return;
    }
    tracing::warn!(
        r#type = name,
        reason = why,
        "memo: a type's shape cannot be traced; bump `version` when it changes"
    );
    crate::report::on_stderr(&format!(
        "memo: the serde shape of `{name}` cannot be traced ({why}), so a change to it does not \
         change the keys of the functions that use it: bump their `version` when it changes \
         (MEMO_QUIET=1 hides this line)"
    ));
}

/// The schema of a memoized function: what its keys cover of its types.
/// Built by the expansion, once per process (per `Self` type for a
/// method, per call for a generic function, from a cache).
#[derive(Default)]
pub struct Schema {
    parts: Vec<[u8; 32]>,
}

impl Schema {
    /// An empty schema.
    #[must_use]
    pub fn new() -> Schema {
        Schema::default()
    }

    /// Adds the shape of the stored result type `T`.
    pub fn stored<T: DeserializeOwned>(&mut self, _of: crate::memoize::outcome::StoredAs<T>) {
        self.parts.push(shape::<T>());
    }

    /// The digest of every shape added, in order.
    #[must_use]
    pub fn finish(self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key(CONTEXT);
        for p in &self.parts {
            h.update(p);
        }
        *h.finalize().as_bytes()
    }
}

/// The digest of a generic function's schema for one instantiation,
/// cached by `name` (the `type_name` of its types): a generic function's
/// base is shared by its instantiations, so their schemas go into each
/// call.
pub fn cached(name: &'static str, schema: impl FnOnce() -> [u8; 32]) -> [u8; 32] {
    static BY_TYPES: LazyLock<RwLock<HashMap<&'static str, [u8; 32]>>> =
        LazyLock::new(RwLock::default);
    if let Some(d) = BY_TYPES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name)
    {
        return *d;
    }
    let d = schema();
    BY_TYPES
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(name, d);
    d
}

/// An argument type, for its shape: traced when it can be deserialized
/// ([`ViaTraced`]), else left to the argument's value, whose canonical
/// encoding names its fields and variants ([`ViaValue`]). The expansion
/// calls `(&&ArgShape::<T>::new()).add_to(&mut schema)`.
pub struct ArgShape<T: ?Sized>(PhantomData<fn() -> Box<T>>);

impl<T: ?Sized> ArgShape<T> {
    /// The chooser for `T`.
    #[must_use]
    pub const fn new() -> ArgShape<T> {
        ArgShape(PhantomData)
    }
}

impl<T: ?Sized> Default for ArgShape<T> {
    fn default() -> ArgShape<T> {
        ArgShape::new()
    }
}

/// An argument type that can be deserialized: its shape is traced.
pub trait ViaTraced {
    /// Adds the shape.
    fn add_to(&self, schema: &mut Schema);
}

impl<T: DeserializeOwned> ViaTraced for &ArgShape<T> {
    fn add_to(&self, schema: &mut Schema) {
        schema.parts.push(shape::<T>());
    }
}

/// Any other argument type: its value's encoding carries its shape.
pub trait ViaValue {
    /// Adds nothing.
    fn add_to(&self, schema: &mut Schema);
}

impl<T: ?Sized> ViaValue for ArgShape<T> {
    fn add_to(&self, _schema: &mut Schema) {}
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        dead_code,
        reason = "tests; the types are only traced"
    )]

    use serde::Deserialize;

    use super::*;

    mod v1 {
        #[derive(serde::Deserialize)]
        pub struct Fit {
            pub slope: i64,
            pub kind: super::Kind,
        }
    }
    mod v2 {
        #[derive(serde::Deserialize)]
        pub struct Fit {
            pub slope: u64,
            pub kind: super::Kind,
        }
    }
    mod v3 {
        #[derive(serde::Deserialize)]
        pub struct Fit {
            pub kind: super::Kind,
            pub slope: i64,
        }
    }
    #[derive(Deserialize)]
    pub enum Kind {
        A,
        B(u32),
        C { x: f64, nested: Option<Inner> },
    }
    #[derive(Deserialize)]
    pub enum Inner {
        P,
        Q(Vec<Kind>),
    }

    #[test]
    fn any_change_of_shape_changes_the_digest() {
        let a = trace::<v1::Fit>().unwrap();
        assert_eq!(trace::<v1::Fit>().unwrap(), a, "deterministic");
        assert_ne!(trace::<v2::Fit>().unwrap(), a, "i64 to u64");
        assert_ne!(trace::<v3::Fit>().unwrap(), a, "fields swapped");
    }

    #[test]
    fn nested_enums_are_explored_to_their_last_variant() {
        trace::<Kind>().unwrap();
        trace::<v1::Fit>().unwrap();
        trace::<Vec<Option<Inner>>>().unwrap();
    }

    #[test]
    fn arrays_trace_with_their_element_type() {
        use crate::Array;
        let f = trace::<Array<f32>>().unwrap();
        assert_ne!(trace::<Array<u32>>().unwrap(), f, "same size, another type");
        assert_ne!(trace::<Vec<f32>>().unwrap(), f);
        trace::<(String, Array<f64>, Option<Array<u8>>)>().unwrap();
    }

    #[test]
    fn an_untraceable_type_says_so_and_still_has_a_digest() {
        assert!(trace::<std::num::NonZeroU32>().is_err());
        assert_ne!(shape::<std::num::NonZeroU32>(), shape::<u32>());
    }
}
