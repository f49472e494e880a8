//! The `#[memoize]` attribute of memo-core.

use proc_macro::TokenStream;

/// Memoizes a function in a memo store.
///
/// The attribute is not available yet in this release: applying it is a
/// compile error that says so, at the attribute. Until it lands, memoize
/// with `memo_core::Store::get_or_compute` and `memo_core::Key::of`.
#[proc_macro_attribute]
pub fn memoize(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut out: TokenStream = "::core::compile_error! { \"#[memoize] is not available in this release of memo; use memo_core::Store::get_or_compute\" }"
        .parse()
        .unwrap_or_default();
    out.extend(item);
    out
}
