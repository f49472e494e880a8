//! The `#[memoize]` attribute of memo-core; use it through `memo_core`.
//!
//! The path a function takes: `args` parses the options, `sig` checks
//! the function, `expand` generates; `errors` gathers every problem so
//! all are reported at once, at their tokens.

mod args;
mod duration;
// memo-core's grammar of sizes and durations, the same file: the macro
// checks `ttl` and `min_cost` literals with the code that reads
// `MEMO_MAX_AGE` and the `memo` command's options (memo-core cannot be a
// dependency of the macro it re-exports).
mod errors;
mod expand;
mod fingerprint;
mod sig;
mod track;
#[path = "../../memo-core/src/units.rs"]
#[allow(dead_code, reason = "the macro reads durations, not sizes")]
mod units;

use proc_macro::TokenStream;

#[doc = include_str!("guide.md")]
#[proc_macro_attribute]
pub fn memoize(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let mut errors = errors::Errors::default();
    let args = args::parse(attr.into(), &mut errors);
    let Ok(func) = syn::parse2::<syn::ItemFn>(item.clone()) else {
        errors.push(syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[memoize] applies to a function or a method",
        ));
        return errors.fallback(item).into();
    };
    let sig = sig::check(&func, &args, &mut errors);
    match errors.into_result() {
        Ok(()) => expand::expand(&args, &sig).into(),
        Err(e) => errors::fallback(item, &e).into(),
    }
}

/// Tracks a helper function: its code goes into the keys of every
/// `#[memoize(uses(helper))]` function, so editing the helper recomputes
/// their results. `#[track(uses(other))]` tracks the helpers it calls in
/// turn; cycles are fine. The guide of [`memoize`] has the details
/// ("What the key covers, and what it cannot").
///
/// Beside the function it defines an empty `enum` of the same name (types
/// and functions live apart, so the two do not clash), which `uses` names.
#[proc_macro_attribute]
pub fn track(attr: TokenStream, item: TokenStream) -> TokenStream {
    track::expand(attr.into(), item.into()).into()
}
