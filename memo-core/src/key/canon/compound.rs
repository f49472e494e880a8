//! The compound values of the canonical encoding: sequences, tuples and
//! structs in order, sets and maps by the sorted digests of their entries.

use serde::ser::{self, Serialize};

use super::{CanonError, Hasher, Start};

/// Compound state of sequences, tuples and structs.
pub(crate) enum Compound<'a> {
    /// Fields or elements in order; counted for the trailing `END`.
    Ordered { h: &'a mut Hasher, count: u64 },
    /// Set elements or map entries, each hashed on its own.
    Unordered(Unordered<'a>),
}

pub(crate) struct Unordered<'a> {
    parent: &'a mut Hasher,
    tag: u8,
    digests: Vec<[u8; 32]>,
    /// The entry being built: a map key waiting for its value.
    open: Option<Box<Hasher>>,
}

impl<'a> Unordered<'a> {
    pub(super) fn new(parent: &'a mut Hasher, tag: u8, len: Option<usize>) -> Self {
        // Bounded so a lying `size_hint` cannot reserve much.
        let digests = Vec::with_capacity(len.unwrap_or(0).min(1024));
        Unordered {
            parent,
            tag,
            digests,
            open: None,
        }
    }

    // Out of line: each set element costs a hash of its own anyway, and
    // inlined here it made `Compound::item` too big to inline into the
    // element loop of plain sequences (a 64 MiB `Vec<f64>` then hashed at
    // 0.39x blake3 instead of 0.57x in one binary, CI machine, 2026-11-22).
    #[inline(never)]
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) {
        let mut h = Hasher::with(Start::Plain);
        h.value(v);
        self.digests.push(*h.finish().as_bytes());
    }

    fn key<T: Serialize + ?Sized>(&mut self, k: &T) {
        let mut h = Box::new(Hasher::with(Start::Plain));
        h.value(k);
        self.open = Some(h);
    }

    fn val<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CanonError> {
        let mut h = self
            .open
            .take()
            .ok_or_else(|| CanonError("map value without a key".into()))?;
        h.value(v);
        self.digests.push(*h.finish().as_bytes());
        Ok(())
    }

    fn end(mut self) {
        self.digests.sort_unstable();
        self.parent.write(&[self.tag]);
        self.parent.len(self.digests.len());
        for d in &self.digests {
            self.parent.write(d);
        }
    }
}

impl<'a> Compound<'a> {
    /// Starts an ordered compound: its tag, then its type and variant
    /// names, then (as it is filled) its items and the closing count.
    #[inline]
    pub(super) fn ordered(h: &'a mut Hasher, tag: u8, names: &[&str]) -> Compound<'a> {
        h.write(&[tag]);
        for n in names {
            h.name(n);
        }
        Compound::Ordered { h, count: 0 }
    }

    #[inline]
    fn item<T: Serialize + ?Sized>(&mut self, v: &T) {
        match self {
            Compound::Ordered { h, count } => {
                h.value(v);
                *count += 1;
            }
            Compound::Unordered(u) => u.element(v),
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &'static str, v: &T) {
        if let Compound::Ordered { h, .. } = self {
            h.name(name);
        }
        self.item(v);
    }

    fn finish(self) {
        match self {
            Compound::Ordered { h, count } => h.end(count),
            Compound::Unordered(u) => u.end(),
        }
    }
}

macro_rules! compound_impl {
    ($trait:ident, $method:ident) => {
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = CanonError;

            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CanonError> {
                self.item(v);
                Ok(())
            }

            fn end(self) -> Result<(), CanonError> {
                self.finish();
                Ok(())
            }
        }
    };
}

compound_impl!(SerializeSeq, serialize_element);
compound_impl!(SerializeTuple, serialize_element);
compound_impl!(SerializeTupleStruct, serialize_field);
compound_impl!(SerializeTupleVariant, serialize_field);

macro_rules! struct_impl {
    ($trait:ident) => {
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = CanonError;

            #[inline]
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                name: &'static str,
                v: &T,
            ) -> Result<(), CanonError> {
                self.field(name, v);
                Ok(())
            }

            fn end(self) -> Result<(), CanonError> {
                self.finish();
                Ok(())
            }
        }
    };
}

struct_impl!(SerializeStruct);
struct_impl!(SerializeStructVariant);

impl ser::SerializeMap for Unordered<'_> {
    type Ok = ();
    type Error = CanonError;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), CanonError> {
        self.key(k);
        Ok(())
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CanonError> {
        self.val(v)
    }

    fn end(self) -> Result<(), CanonError> {
        if self.open.is_some() {
            return Err(CanonError("map key without a value".into()));
        }
        Unordered::end(self);
        Ok(())
    }
}
