//! How the expansion runs a function's body: as a closure, or as an
//! `async` block whose output type is fixed.

/// Calls a body closure as `FnOnce`.
#[inline]
pub fn run<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// Fixes the output type of the `async` block that holds a body, so `?`
/// and `return` inside it are typed as in the function.
pub fn typed_future<R, F: core::future::Future<Output = R>>(f: F) -> F {
    f
}
