//! The serde `Serializer` of the canonical encoding: every value of serde's
//! data model, as a tag and its bytes.

use serde::ser::{self, Serialize};

use super::compound::{Compound, Unordered};
use super::{CanonError, Hasher, tag};

/// Integers: their tag, then little-endian at their declared width.
macro_rules! primitive {
    ($($method:ident($ty:ty) => $tag:ident),* $(,)?) => {
        $(
            #[inline]
            fn $method(self, v: $ty) -> Result<(), CanonError> {
                self.prim(tag::$tag, v.to_le_bytes());
                Ok(())
            }
        )*
    };
}

impl<'a> ser::Serializer for &'a mut Hasher {
    type Ok = ();
    type Error = CanonError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Unordered<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), CanonError> {
        self.prim(tag::BOOL, [u8::from(v)]);
        Ok(())
    }

    primitive! {
        serialize_i8(i8) => I8, serialize_i16(i16) => I16, serialize_i32(i32) => I32,
        serialize_i64(i64) => I64, serialize_i128(i128) => I128,
        serialize_u8(u8) => U8, serialize_u16(u16) => U16, serialize_u32(u32) => U32,
        serialize_u64(u64) => U64, serialize_u128(u128) => U128,
    }

    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), CanonError> {
        self.prim(tag::F32, v.to_bits().to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), CanonError> {
        self.prim(tag::F64, v.to_bits().to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<(), CanonError> {
        self.prim(tag::CHAR, u32::from(v).to_le_bytes());
        Ok(())
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), CanonError> {
        self.write(&[tag::STR]);
        self.name(v);
        Ok(())
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CanonError> {
        self.write(&[tag::BYTES]);
        self.name_bytes(v);
        Ok(())
    }
    #[inline]
    fn serialize_none(self) -> Result<(), CanonError> {
        self.write(&[tag::NONE]);
        Ok(())
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), CanonError> {
        self.write(&[tag::SOME]);
        self.value(v);
        Ok(())
    }
    #[inline]
    fn serialize_unit(self) -> Result<(), CanonError> {
        self.write(&[tag::UNIT]);
        Ok(())
    }
    #[inline]
    fn serialize_unit_struct(self, name: &'static str) -> Result<(), CanonError> {
        self.write(&[tag::UNIT_STRUCT]);
        self.name(name);
        Ok(())
    }
    #[inline]
    fn serialize_unit_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), CanonError> {
        self.write(&[tag::UNIT_VARIANT]);
        self.name(name);
        self.name(variant);
        Ok(())
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<(), CanonError> {
        self.write(&[tag::NEWTYPE_STRUCT]);
        self.name(name);
        self.value(v);
        Ok(())
    }
    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), CanonError> {
        self.write(&[tag::NEWTYPE_VARIANT]);
        self.name(name);
        self.name(variant);
        self.value(v);
        Ok(())
    }
    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a>, CanonError> {
        if self.pending_is_set() {
            return Ok(Compound::Unordered(Unordered::new(self, tag::SET, len)));
        }
        Ok(Compound::ordered(self, tag::SEQ, &[]))
    }
    #[inline]
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a>, CanonError> {
        Ok(Compound::ordered(self, tag::TUPLE, &[]))
    }
    #[inline]
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, CanonError> {
        Ok(Compound::ordered(self, tag::TUPLE_STRUCT, &[name]))
    }
    #[inline]
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, CanonError> {
        Ok(Compound::ordered(
            self,
            tag::TUPLE_VARIANT,
            &[name, variant],
        ))
    }
    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Unordered<'a>, CanonError> {
        Ok(Unordered::new(self, tag::MAP, len))
    }
    #[inline]
    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Compound<'a>, CanonError> {
        Ok(Compound::ordered(self, tag::STRUCT, &[name]))
    }
    #[inline]
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a>, CanonError> {
        Ok(Compound::ordered(
            self,
            tag::STRUCT_VARIANT,
            &[name, variant],
        ))
    }
    fn is_human_readable(&self) -> bool {
        // Compact forms (e.g. of `IpAddr`, `SystemTime`) are canonical too and
        // cheaper to hash.
        false
    }
}
