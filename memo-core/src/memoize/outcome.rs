//! What of a memoized function's result is stored, chosen by its type:
//! whole, a `Result`'s `Ok` only, a vector of numbers as its bytes, and
//! each of those with the time it was computed (`ttl`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Number, PodVec};

/// What of a function's result is cached.
#[diagnostic::on_unimplemented(
    message = "the result of a #[memoize] function must be Serialize + DeserializeOwned",
    note = "for a `Result<T, E>`, only `T` needs to be"
)]
pub trait Outcome: Sized {
    /// The stored type.
    type Stored: Serialize + DeserializeOwned;
    /// What the function returns.
    type Value;
    /// What to store, if anything.
    fn stored(&self) -> Option<&Self::Stored>;
    /// A result from what was stored.
    fn from_stored(v: Self::Stored) -> Self;
    /// What the function returns.
    fn value(self) -> Self::Value;
    /// When a stored value was computed (Unix milliseconds), for outcomes
    /// that record it (`#[memoize(ttl = ...)]`).
    fn computed_at(_stored: &Self::Stored) -> Option<u64> {
        None
    }
}

/// A value with the time it was computed (Unix milliseconds): what a
/// function with `#[memoize(ttl = ...)]` stores, encoded as the pair
/// `(at, value)`.
#[derive(Clone)]
pub struct Stamped<V> {
    at: u64,
    value: V,
}

impl<V> Stamped<V> {
    fn now(value: V) -> Stamped<V> {
        Stamped {
            at: crate::time::unix_now_ms(),
            value,
        }
    }
}

impl<V: Serialize> Serialize for Stamped<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (self.at, &self.value).serialize(s)
    }
}

impl<'de, V: serde::Deserialize<'de>> serde::Deserialize<'de> for Stamped<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (at, value) = <(u64, V)>::deserialize(d)?;
        Ok(Stamped { at, value })
    }
}

/// The whole return value is cached, with when it was computed.
pub struct Timed<V>(Stamped<V>);

impl<V: Serialize + DeserializeOwned> Outcome for Timed<V> {
    type Stored = Stamped<V>;
    type Value = V;
    fn stored(&self) -> Option<&Stamped<V>> {
        Some(&self.0)
    }
    fn from_stored(v: Stamped<V>) -> Self {
        Timed(v)
    }
    fn value(self) -> V {
        self.0.value
    }
    fn computed_at(stored: &Stamped<V>) -> Option<u64> {
        Some(stored.at)
    }
}

/// A `Result`'s `Ok` is cached with when it was computed.
pub struct TimedOk<T, E>(core::result::Result<Stamped<T>, E>);

impl<T: Serialize + DeserializeOwned, E> Outcome for TimedOk<T, E> {
    type Stored = Stamped<T>;
    type Value = core::result::Result<T, E>;
    fn stored(&self) -> Option<&Stamped<T>> {
        self.0.as_ref().ok()
    }
    fn from_stored(v: Stamped<T>) -> Self {
        TimedOk(Ok(v))
    }
    fn value(self) -> core::result::Result<T, E> {
        self.0.map(|s| s.value)
    }
    fn computed_at(stored: &Stamped<T>) -> Option<u64> {
        Some(stored.at)
    }
}

/// Chooses what of a result is cached by its type, however it is written
/// (`Result<T, E>`, `io::Result<T>`, `anyhow::Result<T>`, an alias): the
/// expansion calls `(&&&Pick::<R>::new()).wrap(value)` (`wrap_timed` with a
/// `ttl`), and method lookup tries four traits, nearest first:
///
/// | trait | implemented for | the result is stored as |
/// | --- | --- | --- |
/// | [`ViaBulk`] | `&&Pick<Vec<P>>`, numbers `P` | [`Bulk`]: the vector's bytes |
/// | [`ViaBulkOk`] | `&&Pick<Result<Vec<P>, E>>` | [`BulkOk`]: the `Ok` vector's bytes |
/// | [`ViaOk`] | `&Pick<Result<T, E>>` | [`OkOnly`]: the `Ok` value |
/// | [`ViaWhole`] | every `Pick<R>` | [`Whole`]: all of `R` |
///
/// and `wrap_timed` gives [`Timed`] (whole, with its time) or [`TimedOk`]
/// (`Ok` only, with its time): six outcomes in all. A generic `R` that is
/// only later a `Result` or a `Vec` of numbers is cached whole.
pub struct Pick<R>(core::marker::PhantomData<fn() -> R>);

impl<R> Default for Pick<R> {
    fn default() -> Pick<R> {
        Pick::new()
    }
}

impl<R> Pick<R> {
    /// The chooser for results of type `R`.
    #[must_use]
    pub const fn new() -> Pick<R> {
        Pick(core::marker::PhantomData)
    }
}

/// What a result of some type stores, as a type: `Pick::stored` gives it
/// to `Storable::check` (the expansion's check of the result type).
pub struct StoredAs<T>(core::marker::PhantomData<fn() -> T>);

/// A vector of numbers is stored as its bytes (`codec::PodVec`): a hit is
/// one copy instead of a decode per element. Nearest of the three (the
/// expansion calls `(&&&Pick::<R>::new())`), so it wins for `Vec<u8>`,
/// `Vec<f64>`, ... With a ttl, it is stored whole.
pub trait ViaBulk<P: Number> {
    /// `r`, to be stored as bytes.
    fn wrap(&self, r: Vec<P>) -> Bulk<P>;
    /// `r`, to be cached whole with when it was computed.
    fn wrap_timed(&self, r: Vec<P>) -> Timed<Vec<P>>;
    /// What is stored: the bytes of the vector.
    fn stored(&self) -> StoredAs<PodVec<P>> {
        StoredAs(core::marker::PhantomData)
    }
}

impl<P: Number> ViaBulk<P> for &&Pick<Vec<P>> {
    fn wrap(&self, r: Vec<P>) -> Bulk<P> {
        Bulk(PodVec(r))
    }
    fn wrap_timed(&self, r: Vec<P>) -> Timed<Vec<P>> {
        Timed(Stamped::now(r))
    }
}

/// A `Result` whose `Ok` is a vector of numbers: `Ok` only, stored as its
/// bytes (as [`ViaBulk`]).
pub trait ViaBulkOk<P: Number, E> {
    /// `r`, to be cached `Ok`-only, as bytes.
    fn wrap(&self, r: core::result::Result<Vec<P>, E>) -> BulkOk<P, E>;
    /// `r`, to be cached `Ok`-only with when it was computed.
    fn wrap_timed(&self, r: core::result::Result<Vec<P>, E>) -> TimedOk<Vec<P>, E>;
    /// What is stored: the bytes of the `Ok` vector.
    fn stored(&self) -> StoredAs<PodVec<P>> {
        StoredAs(core::marker::PhantomData)
    }
}

impl<P: Number, E> ViaBulkOk<P, E> for &&Pick<core::result::Result<Vec<P>, E>> {
    fn wrap(&self, r: core::result::Result<Vec<P>, E>) -> BulkOk<P, E> {
        BulkOk(r.map(PodVec))
    }
    fn wrap_timed(&self, r: core::result::Result<Vec<P>, E>) -> TimedOk<Vec<P>, E> {
        TimedOk(r.map(Stamped::now))
    }
}

/// A `Result`'s `Ok` vector of numbers, stored as its bytes.
pub struct BulkOk<P, E>(core::result::Result<PodVec<P>, E>);

impl<P: Number, E> Outcome for BulkOk<P, E> {
    type Stored = PodVec<P>;
    type Value = core::result::Result<Vec<P>, E>;
    fn stored(&self) -> Option<&PodVec<P>> {
        self.0.as_ref().ok()
    }
    fn from_stored(v: PodVec<P>) -> Self {
        BulkOk(Ok(v))
    }
    fn value(self) -> core::result::Result<Vec<P>, E> {
        self.0.map(|v| v.0)
    }
}

/// A vector of numbers, stored as its bytes.
pub struct Bulk<P>(PodVec<P>);

impl<P: Number> Outcome for Bulk<P> {
    type Stored = PodVec<P>;
    type Value = Vec<P>;
    fn stored(&self) -> Option<&PodVec<P>> {
        Some(&self.0)
    }
    fn from_stored(v: PodVec<P>) -> Self {
        Bulk(v)
    }
    fn value(self) -> Vec<P> {
        self.0.0
    }
}

/// A `Result` caches its `Ok` only (see [`Pick`]).
pub trait ViaOk<R> {
    /// The `Ok` type.
    type Ok;
    /// The error type.
    type Err;
    /// `r`, to be cached `Ok`-only.
    fn wrap(&self, r: R) -> OkOnly<R>;
    /// `r`, to be cached `Ok`-only with when it was computed.
    fn wrap_timed(&self, r: R) -> TimedOk<Self::Ok, Self::Err>;
    /// What is stored: the `Ok` type.
    fn stored(&self) -> StoredAs<Self::Ok> {
        StoredAs(core::marker::PhantomData)
    }
}

impl<T, E> ViaOk<core::result::Result<T, E>> for &Pick<core::result::Result<T, E>> {
    type Ok = T;
    type Err = E;
    fn wrap(&self, r: core::result::Result<T, E>) -> OkOnly<core::result::Result<T, E>> {
        OkOnly(r)
    }
    fn wrap_timed(&self, r: core::result::Result<T, E>) -> TimedOk<T, E> {
        TimedOk(r.map(Stamped::now))
    }
}

/// Any other result is cached whole (see [`Pick`]).
pub trait ViaWhole<R> {
    /// `r`, to be cached whole.
    fn wrap(&self, r: R) -> Whole<R>;
    /// `r`, to be cached whole with when it was computed.
    fn wrap_timed(&self, r: R) -> Timed<R>;
    /// What is stored: all of `R`.
    fn stored(&self) -> StoredAs<R> {
        StoredAs(core::marker::PhantomData)
    }
}

impl<R> ViaWhole<R> for Pick<R> {
    fn wrap(&self, r: R) -> Whole<R> {
        Whole(r)
    }
    fn wrap_timed(&self, r: R) -> Timed<R> {
        Timed(Stamped::now(r))
    }
}

/// The whole return value is cached.
pub struct Whole<V>(pub V);

impl<V: Serialize + DeserializeOwned> Outcome for Whole<V> {
    type Stored = V;
    type Value = V;
    fn stored(&self) -> Option<&V> {
        Some(&self.0)
    }
    fn from_stored(v: V) -> Self {
        Whole(v)
    }
    fn value(self) -> V {
        self.0
    }
}

/// A `Result`'s `Ok` is cached; an `Err` is returned and not stored.
pub struct OkOnly<R>(pub R);

impl<T: Serialize + DeserializeOwned, E> Outcome for OkOnly<core::result::Result<T, E>> {
    type Stored = T;
    type Value = core::result::Result<T, E>;
    fn stored(&self) -> Option<&T> {
        self.0.as_ref().ok()
    }
    fn from_stored(v: T) -> Self {
        OkOnly(Ok(v))
    }
    fn value(self) -> core::result::Result<T, E> {
        self.0
    }
}
