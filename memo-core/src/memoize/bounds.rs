//! What `#[memoize]` asks of a function's types, as traits named for it:
//! an argument must be [`Hashable`], a result [`Storable`]. Both are
//! implemented for every type with the serde traits, and exist so that a
//! type without them is reported as "`Params` cannot be an argument of a
//! #[memoize] function" at the user's type, with the fix, rather than
//! through the macro's runtime.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::key::call::KeyBuilder;
use crate::memoize::outcome::StoredAs;

/// A type a `#[memoize]` function can take as an argument of its key:
/// every [`serde::Serialize`] type is one. Name it (or `Serialize`) as
/// the bound of a type parameter that an argument's type uses.
///
/// # Examples
///
/// ```
/// use memo_core::{Hashable, memoize};
///
/// #[memoize]
/// fn total<T: Hashable + Copy + Into<f64>>(xs: Vec<T>) -> f64 {
///     xs.iter().map(|&x| x.into()).sum()
/// }
///
/// assert_eq!(total(vec![1_u8, 2, 3]), 6.0);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument of a #[memoize] function: it does not implement `serde::Serialize`",
    label = "each call's key hashes this argument",
    note = "derive it (`#[derive(serde::Serialize)]` on the type), bound a type parameter by `serde::Serialize`, or leave the argument out of the key: `#[memoize(ignore(name))]`"
)]
pub trait Hashable: Serialize {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + ?Sized> Hashable for T {}

/// A type a `#[memoize]` function can return and memo can store: every
/// type that is [`serde::Serialize`] and [`serde::de::DeserializeOwned`].
/// Of a `Result<T, E>`, only `T` is stored, so only `T` must be
/// `Storable`.
///
/// # Examples
///
/// ```
/// use memo_core::{Storable, memoize};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Fit {
///     slope: f64,
/// }
///
/// fn storable<T: Storable>() {}
/// storable::<Fit>();
///
/// #[memoize]
/// fn fit(points: Vec<f64>) -> Fit {
///     Fit { slope: points.iter().sum() }
/// }
/// # assert_eq!(fit(vec![1.0]).slope, 1.0);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the result of a #[memoize] function: it must implement `serde::Serialize` and `serde::Deserialize`",
    label = "memo stores this result and loads it back",
    note = "derive both (`#[derive(serde::Serialize, serde::Deserialize)]` on the type); of a `Result<T, E>` only `T` is stored, so `E` needs neither"
)]
pub trait Storable: Serialize + DeserializeOwned {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> Storable for T {}

/// Feeds an argument of a `#[memoize]` call to its key. A free function
/// bounded by `Hashable` alone (a trait method would also be bounded by
/// its supertrait, and report that), so that a type without `Serialize`
/// gets `Hashable`'s message, at the argument's type.
#[doc(hidden)]
#[inline]
pub fn memoize_argument<T: Hashable + ?Sized>(key: &mut KeyBuilder, value: &T) {
    key.arg(value);
}

/// Checks what a `#[memoize]` function's result stores, first and at its
/// return type: the runtime's own bounds there are implied by `Storable`,
/// so rustc drops their errors as duplicates of this one.
#[doc(hidden)]
#[inline]
pub fn memoize_result<T: Storable>(_stored: StoredAs<T>) {}
