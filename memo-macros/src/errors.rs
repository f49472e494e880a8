//! Gathering errors: every problem is reported at its token, all at once.

use proc_macro2::TokenStream;

/// Errors found so far, merged into one `syn::Error` (one `compile_error!`
/// each when emitted).
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    /// An error at `tokens` (its first to last token).
    pub(crate) fn at(&mut self, tokens: impl quote::ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn into_result(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }

    /// The fallback output (see [`fallback`]) with the errors gathered so
    /// far: the item unchanged when there are none.
    pub(crate) fn fallback(self, item: TokenStream) -> TokenStream {
        match self.0 {
            Some(e) => fallback(item, &e),
            None => item,
        }
    }
}

/// The output when the attribute cannot be expanded: the function as the
/// user wrote it, so the rest of the crate still type-checks against it, and
/// the errors.
pub(crate) fn fallback(item: TokenStream, errors: &syn::Error) -> TokenStream {
    let mut out = errors.to_compile_error();
    out.extend(item);
    out
}
