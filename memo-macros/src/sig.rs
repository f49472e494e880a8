//! Validating the function: what it takes, what it returns, what goes in
//! the key.

use syn::{FnArg, GenericParam, Ident, ItemFn, Pat, ReturnType, Type};

use crate::args::Args;
use crate::errors::Errors;

/// The function, as the expansion needs it.
pub(crate) struct Sig<'a> {
    pub func: &'a ItemFn,
    /// The receiver of a method (`self`, `&self`, `self: Box<Self>`).
    pub receiver: Option<&'a syn::Receiver>,
    /// Typed arguments in order.
    pub inputs: Vec<Input<'a>>,
    /// Type parameters: their `type_name` goes in the key.
    pub type_params: Vec<&'a Ident>,
    /// Const parameters: their values go in the key.
    pub const_params: Vec<&'a Ident>,
    /// The return type; `()` when none is written.
    pub ret: Type,
}

/// One typed argument.
pub(crate) struct Input<'a> {
    pub ty: &'a Type,
    /// The names its pattern binds, in order, that go in the key.
    pub hashed: Vec<&'a Ident>,
    /// The names it binds that `ignore` leaves out.
    pub ignored: Vec<&'a Ident>,
    /// Its pattern is a plain name (`x`, `mut x`), bound to a value of
    /// type `ty`.
    pub simple: bool,
}

/// The first reference in `ty`, if any (`&str`, `Option<&[u8]>`, ...).
fn borrowed(ty: &Type) -> Option<&syn::TypeReference> {
    use syn::visit::Visit;
    struct Find<'a>(Option<&'a syn::TypeReference>);
    impl<'a> Visit<'a> for Find<'a> {
        fn visit_type_reference(&mut self, r: &'a syn::TypeReference) {
            self.0.get_or_insert(r);
        }
    }
    let mut f = Find(None);
    f.visit_type(ty);
    f.0
}

pub(crate) fn check<'a>(func: &'a ItemFn, args: &Args, errors: &mut Errors) -> Sig<'a> {
    let sig = &func.sig;
    if let Some(c) = &sig.constness {
        errors.at(
            c,
            "#[memoize] cannot apply to a `const fn`: looking up a store is not const",
        );
    }
    if let Some(v) = &sig.variadic {
        errors.at(v, "#[memoize] cannot apply to a variadic function");
    }
    let mut receiver = None;
    let mut inputs = Vec::new();
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(r) => {
                if r.mutability.is_some() && r.reference.is_some() {
                    errors.at(r, MUT_MESSAGE);
                }
                receiver = Some(r);
            }
            FnArg::Typed(t) => {
                if let Type::Reference(r) = &*t.ty
                    && r.mutability.is_some()
                {
                    errors.at(&t.ty, MUT_MESSAGE);
                }
                let mut names = Vec::new();
                bindings(&t.pat, &mut names, errors);
                let (ignored, hashed) = names
                    .into_iter()
                    .partition(|n| args.ignore.iter().any(|i| i == *n));
                let simple =
                    matches!(&*t.pat, Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none());
                inputs.push(Input {
                    ty: &t.ty,
                    hashed,
                    ignored,
                    simple,
                });
            }
        }
    }
    for (i, name) in args.ignore.iter().enumerate() {
        if args.ignore[..i].contains(name) {
            errors.at(name, format!("`{name}` is ignored twice"));
        } else if !inputs.iter().any(|a| a.ignored.contains(&name)) {
            let all: Vec<String> = inputs
                .iter()
                .flat_map(|a| a.hashed.iter().chain(&a.ignored))
                .map(|n| format!("`{n}`"))
                .collect();
            let known = if all.is_empty() {
                "it takes none".to_owned()
            } else {
                format!("its arguments are {}", all.join(", "))
            };
            errors.at(
                name,
                format!("`{name}` is not an argument of `{}`; {known}", sig.ident),
            );
        }
    }
    let mut type_params = Vec::new();
    let mut const_params = Vec::new();
    for p in &sig.generics.params {
        match p {
            GenericParam::Type(t) => type_params.push(&t.ident),
            GenericParam::Const(c) => const_params.push(&c.ident),
            GenericParam::Lifetime(_) => {}
        }
    }
    let ret: Type = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, t) => (**t).clone(),
    };
    if contains_impl_trait(&ret) {
        errors.at(
            &ret,
            "a #[memoize] function must return a concrete type: cached results are decoded into it",
        );
    } else if let Some(r) = borrowed(&ret) {
        errors.at(
            r,
            "a #[memoize] function must return an owned type (`String` for `&str`, `Vec<T>` for \
             `&[T]`): a cached result is decoded into a new value, which cannot borrow from the call",
        );
    }
    Sig {
        func,
        receiver,
        inputs,
        type_params,
        const_params,
        ret,
    }
}

const MUT_MESSAGE: &str = "#[memoize] cannot take `&mut` arguments: a cached call skips the body, so its changes would be lost";

/// The names a pattern in argument position binds, in order.
fn bindings<'a>(pat: &'a Pat, out: &mut Vec<&'a Ident>, errors: &mut Errors) {
    match pat {
        // `x @ pattern` binds the whole value as `x`.
        Pat::Ident(p) => out.push(&p.ident),
        Pat::Tuple(t) => t.elems.iter().for_each(|p| bindings(p, out, errors)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|p| bindings(p, out, errors)),
        Pat::Slice(s) => s.elems.iter().for_each(|p| bindings(p, out, errors)),
        Pat::Struct(s) => s.fields.iter().for_each(|f| bindings(&f.pat, out, errors)),
        Pat::Reference(r) => bindings(&r.pat, out, errors),
        Pat::Paren(p) => bindings(&p.pat, out, errors),
        Pat::Type(t) => bindings(&t.pat, out, errors),
        // Nothing bound: the body cannot depend on it, so it stays out of
        // the key.
        Pat::Wild(_) | Pat::Rest(_) => {}
        other => errors.at(
            other,
            "#[memoize] does not support this pattern in argument position; bind a name and destructure it in the body",
        ),
    }
}

/// Whether `ty` mentions `impl Trait`, which cannot be named in a turbofish
/// or a closure's return type.
pub(crate) fn contains_impl_trait(ty: &Type) -> bool {
    fn walk(tokens: proc_macro2::TokenStream) -> bool {
        tokens.into_iter().any(|t| match t {
            proc_macro2::TokenTree::Ident(i) => i == "impl",
            proc_macro2::TokenTree::Group(g) => walk(g.stream()),
            _ => false,
        })
    }
    walk(quote::ToTokens::to_token_stream(ty))
}
