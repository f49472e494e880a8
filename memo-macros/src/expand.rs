//! Generating the memoized function and its helpers.
//!
//! The shape, for `fn f(a: A) -> R { body }`:
//!
//! ```text
//! fn f(a: A) -> R {
//!     static FN: Function = Function::new(module_path!(), "f", "<tokens>", "<version>");
//!     let store: &Store = <global | dir | EXPR>;
//!     let key = { let mut k = FN.key(<Self type>); k.arg(&a); k.finish() };
//!     let body = move || -> R { body };      // `return` and `?` stay inside
//!     FN.call(store, &key, move || Whole(body())).0
//! }
//! ```
//!
//! Generated names are `Span::mixed_site()`, so the body cannot see them and
//! they cannot shadow the user's; paths are absolute.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Signature};

use crate::args::{Args, StoreArg};
use crate::fingerprint;
use crate::sig::Sig;

/// The names the expansion uses, all invisible to the user's code.
struct Names {
    func: Ident,
    store: Ident,
    key: Ident,
    builder: Ident,
    /// `memory = N`: the base schema's closure, and the closure feeding
    /// the arguments to a key builder.
    schema_fn: Ident,
    feed: Ident,
    body: Ident,
    out: Ident,
    started: Ident,
    dir: Ident,
    /// `#[memoize(crate = path)]`, if given.
    krate: Option<syn::Path>,
    /// `ttl` is set: results are stored with their time.
    timed: bool,
}

impl Names {
    fn new(args: &Args) -> Names {
        let m = |s: &str| Ident::new(s, Span::mixed_site());
        Names {
            krate: args.krate.clone(),
            timed: args.ttl.is_some(),
            func: m("__MEMO_FN"),
            store: m("__memo_store"),
            key: m("__memo_key"),
            builder: m("__memo_k"),
            schema_fn: m("__memo_schema_fn"),
            feed: m("__memo_feed"),
            body: m("__memo_body"),
            out: m("__memo_out"),
            started: m("__memo_started"),
            dir: m("__MEMO_DIR"),
        }
    }
}

impl Names {
    /// The path of memo-core, as tokens located at `span`: the user's
    /// `crate = path` as written, else `::memo_core` at `span` (so an
    /// error in generated code is reported where the user's token is).
    fn krate(&self, span: Span) -> TokenStream {
        self.krate.as_ref().map_or_else(
            || quote_spanned! {span=> ::memo_core },
            ToTokens::to_token_stream,
        )
    }
}

pub(crate) fn expand(args: &Args, sig: &Sig<'_>) -> TokenStream {
    let n = Names::new(args);
    let func = sig.func;
    let (attrs, vis, fsig) = (&func.attrs, &func.vis, &func.sig);
    let Prelude {
        setup,
        key,
        unhashed,
        store,
    } = prelude(args, sig, &n);
    let key = &key;
    let prelude = quote! { #setup #key };
    if let (Some((_, lit)), Some(_)) = (&args.memory, &fsig.asyncness) {
        let mut out = syn::Error::new(
            lit.span(),
            "`memory` keeps results of synchronous functions; an `async fn` has the store alone",
        )
        .to_compile_error();
        out.extend(func.to_token_stream());
        return out;
    }
    let body = if fsig.asyncness.is_some() {
        let call = async_call(sig, &n, Call::Cached);
        quote! { #prelude #call }
    } else if args.memory.is_some() {
        // The in-process tier looks the call up by its bytes, before the
        // key is hashed.
        let call = sync_call(sig, &n, Call::Remembered);
        quote! { #setup #unhashed #call }
    } else {
        let call = sync_call(sig, &n, Call::Cached);
        quote! { #prelude #call }
    };
    let mut out = quote! {
        #(#attrs)*
        #vis #fsig {
            #body
        }
    };
    if args.helpers {
        out.extend(helpers(sig, &n, &prelude, &setup));
        if lazy_applies(sig) {
            out.extend(lazy(sig, &n, &prelude, &store));
        }
    }
    if let Some(token) = &args.map {
        out.extend(map(sig, &n, &setup, key, token));
    }
    out
}

/// `<name>_map(inputs)`: the sweep of `#[memoize(map)]`. Each input is a
/// tuple of the arguments; its key is made as the function's, and its body
/// becomes a closure owning them, which `Function::sweep` runs at most once
/// (or hands back unrun to ask again later).
fn map(
    sig: &Sig<'_>,
    n: &Names,
    setup: &TokenStream,
    key: &TokenStream,
    token: &Ident,
) -> TokenStream {
    let fsig = &sig.func.sig;
    if fsig.asyncness.is_some() {
        return syn::Error::new(
            token.span(),
            "`map` sweeps a synchronous function on a thread pool; for an `async fn`, join its futures instead",
        )
        .to_compile_error();
    }
    let krate = n.krate(Span::call_site());
    let Names {
        func,
        store,
        key: key_name,
        ..
    } = n;
    let (vis, block, ret) = (&sig.func.vis, &sig.func.block, &sig.ret);
    let wrapped = wrap(
        sig,
        n,
        &quote! { #krate::__private::run(move || -> #ret #block) },
    );
    let mut msig = fsig.clone();
    msig.ident = format_ident!("{}_map", fsig.ident, span = fsig.ident.span());
    // The inputs' types, with elided lifetimes named (an `impl Trait`
    // argument cannot elide them).
    let lifetime = syn::Lifetime::new("'__memo_in", Span::call_site());
    let mut named = false;
    let mut tys = Vec::new();
    let mut pats = Vec::new();
    for arg in &fsig.inputs {
        if let syn::FnArg::Typed(t) = arg {
            let mut ty = (*t.ty).clone();
            named |= name_lifetimes(&mut ty, &lifetime);
            tys.push(ty);
            pats.push(&t.pat);
        }
    }
    if named {
        msig.generics.params.insert(
            0,
            syn::GenericParam::Lifetime(syn::LifetimeParam::new(lifetime)),
        );
    }
    let inputs = Ident::new("__memo_inputs", Span::mixed_site());
    let input = Ident::new("__memo_input", Span::mixed_site());
    msig.inputs = msig
        .inputs
        .into_iter()
        .filter(|a| matches!(a, syn::FnArg::Receiver(_)))
        .collect();
    msig.inputs.push(syn::parse_quote! {
        #inputs: impl ::core::iter::IntoIterator<Item = (#(#tys,)*)>
    });
    msig.output = syn::parse_quote!(-> ::std::vec::Vec<#ret>);
    let name = &fsig.ident;
    let doc = format!(
        "`{name}` over many inputs, each a tuple of its arguments (generated by `#[memoize(map)]`): \
         the results in input order. Stored results are loaded first; the others are computed \
         on a thread pool, each once across threads, processes and machines, and an input \
         another process is computing is left to it. A progress bar is drawn on stderr when \
         it is a terminal (`MEMO_PROGRESS=0` turns it off). A body that panics does not stop \
         the others: they are computed and stored, then the panic goes on."
    );
    // At the return type, as every call that stores the result is (see
    // `prelude`).
    let rkrate = n.krate(ret.span());
    // Located at the return type, as everything that needs the result
    // storable (see `prelude`).
    let o = Ident::new("__memo_o", ret.span());
    let calls = Ident::new("__memo_calls", ret.span());
    let value = value_of(sig, n, &quote! { #o });
    let sweep = quote_spanned! {ret.span()=>
        let __memo_out = #rkrate::__private::Function::sweep(&#func, #store, #calls);
    };
    quote! {
        #[doc = #doc]
        #[allow(dead_code, reason = "generated by `#[memoize(map)]`; a program may not call it")]
        #vis #msig {
            #setup
            let #calls = ::core::iter::Iterator::map(
                ::core::iter::IntoIterator::into_iter(#inputs),
                |#input| {
                    let (#(#pats,)*) = #input;
                    #key
                    (#key_name, move || #wrapped)
                },
            );
            #sweep
            ::core::iter::Iterator::collect(::core::iter::Iterator::map(
                ::core::iter::IntoIterator::into_iter(__memo_out),
                |#o| #value,
            ))
        }
    }
}

/// `ty` without its outer references: the type `Hashable` is asked of
/// (`&Params` hashes as `Params`, and is reported as such).
fn peel_references(ty: &syn::Type) -> &syn::Type {
    match ty {
        syn::Type::Reference(r) => peel_references(&r.elem),
        syn::Type::Paren(p) => peel_references(&p.elem),
        t => t,
    }
}

/// How many references `ty` is behind (`&&T`: 2).
fn reference_depth(ty: &syn::Type) -> usize {
    match ty {
        syn::Type::Reference(r) => 1 + reference_depth(&r.elem),
        syn::Type::Paren(p) => reference_depth(&p.elem),
        _ => 0,
    }
}

/// Names every elided lifetime of `ty` (`&T`, `'_`) `lifetime`; whether
/// there was one.
fn name_lifetimes(ty: &mut syn::Type, lifetime: &syn::Lifetime) -> bool {
    use syn::visit_mut::VisitMut;
    struct Namer<'a>(&'a syn::Lifetime, bool);
    impl VisitMut for Namer<'_> {
        fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
            if r.lifetime.is_none() {
                r.lifetime = Some(self.0.clone());
                self.1 = true;
            }
            syn::visit_mut::visit_type_reference_mut(self, r);
        }
        fn visit_lifetime_mut(&mut self, l: &mut syn::Lifetime) {
            if l.ident == "_" {
                *l = self.0.clone();
                self.1 = true;
            }
        }
    }
    let mut namer = Namer(lifetime, false);
    namer.visit_type_mut(ty);
    namer.1
}

/// What every generated function starts with: the function's static and
/// the store (the setup), then the bound checks and the key.
fn prelude(args: &Args, sig: &Sig<'_>, n: &Names) -> Prelude {
    let krate = n.krate(Span::call_site());
    let Names {
        func,
        store,
        key,
        builder,
        dir,
        ..
    } = n;
    let fsig = &sig.func.sig;
    let name = fsig.ident.to_string();
    let tokens = fingerprint::canonical(sig.func.to_token_stream());
    let version = &args.version;
    // The store: a static when it has one (`dir`), then the reference to
    // it, which `<name>_lazy`'s loader takes again.
    let (store_static, store_init) = match &args.store {
        // The default store is found from the function's own project (its
        // crate's manifest directory, known here at compile time), so a
        // program started from anywhere finds its project's cache.
        StoreArg::Global => (
            quote! {
                static #dir: #krate::__private::StoreAt =
                    #krate::__private::StoreAt::program(::core::env!("CARGO_MANIFEST_DIR"));
            },
            quote! {
                let #store: &#krate::Store = #krate::__private::StoreAt::get(&#dir);
            },
        ),
        // Deref coercion: `&CACHE` is a `&Store` for a `Store`, a
        // `LazyLock<Store>`, an `Arc<Store>`, ...; a mismatch is reported at
        // the user's expression.
        StoreArg::Expr(e) => {
            let krate = n.krate(e.span());
            (
                quote! {},
                quote_spanned! {e.span()=>
                    let #store: &#krate::Store = &#e;
                },
            )
        }
        StoreArg::Dir(d) => (
            quote! {
                static #dir: #krate::__private::StoreAt = #krate::__private::StoreAt::new(#d);
            },
            quote! {
                let #store: &#krate::Store = #krate::__private::StoreAt::get(&#dir);
            },
        ),
    };
    let feeds = feeds(sig, n);
    let self_ty = if sig.receiver.is_some() {
        quote! { ::core::any::type_name::<Self>() }
    } else {
        quote! { "" }
    };
    let ttl = args.ttl.map(|s| quote! { .ttl(#s) });
    let memory = args.memory.as_ref().map(|(m, _)| quote! { .memory(#m) });
    let uses = (!args.uses.is_empty()).then(|| {
        let list = crate::track::track_list(&krate.to_token_stream(), &args.uses);
        quote! { .uses(#list) }
    });
    let min_cost = args.min_cost.map(|us| quote! { .min_cost(#us) });
    let compress = compress_option(args, &krate.to_token_stream());
    let setup = quote! {
        #[allow(unused_imports)]
        use #krate::__private::{
            ViaBulk as _, ViaBulkOk as _, ViaOk as _, ViaTraced as _, ViaValue as _, ViaWhole as _,
        };
        static #func: #krate::__private::Function =
            #krate::__private::Function::new(::core::module_path!(), #name, #tokens, #version)
                #ttl #min_cost #uses #memory #compress;
        #store_static
        #store_init
    };
    // The result's type is checked first, as `Storable`'s: the calls that
    // store it are located at the return type too, so their errors (a
    // missing `Serialize` or `Deserialize` through memo's runtime) are
    // dropped as duplicates of this one.
    let ret = &sig.ret;
    let rkrate = n.krate(ret.span());
    let result_check = quote_spanned! {ret.span()=>
        #rkrate::memoize_result((&&&#rkrate::__private::Pick::<#ret>::new()).stored());
    };
    let (base_schema, call_schema) = schemas(sig, n);
    // The arguments fed to `#builder`, a `&mut KeyBuilder`.
    let fed = quote! {
        #call_schema
        #(#feeds)*
    };
    let owned = Ident::new("__memo_kb", Span::mixed_site());
    let key = quote! {
        #result_check
        let #key: #krate::Key = {
            let mut #owned = #krate::__private::Function::key(&#func, #self_ty, #base_schema);
            {
                let #builder = &mut #owned;
                #fed
            }
            #krate::__private::KeyBuilder::finish(#owned)
        };
    };
    // What `memory = N` starts with: how to feed the arguments to the
    // thread's key builder, whose bytes are looked up before any hashing.
    let (schema_fn, feeder) = (&n.schema_fn, &n.feed);
    let unhashed = quote! {
        #result_check
        let #schema_fn = #base_schema;
        let #feeder = |#builder: &mut #krate::__private::KeyBuilder| { #fed };
    };
    Prelude {
        setup,
        key,
        unhashed,
        store: store_init,
    }
}

/// What `prelude` makes.
struct Prelude {
    /// The function's static and the store.
    setup: TokenStream,
    /// The bound checks and the key.
    key: TokenStream,
    /// The bound checks and the key's bytes, fed but not hashed.
    unhashed: TokenStream,
    /// Just the store's reference (the setup has it too).
    store: TokenStream,
}

/// The schema of the function's types (`memo_core::__private::Schema`): the
/// stored result's shape, and each hashed argument's that can be traced.
/// As `(for the base, for each call)`: a function's base holds it, once per
/// process (per `Self` type for a method); a generic function's base is
/// shared by its instantiations, so each call feeds its own, from a cache
/// keyed by the instantiation's types.
fn schemas(sig: &Sig<'_>, n: &Names) -> (TokenStream, TokenStream) {
    let krate = n.krate(Span::call_site());
    let ret = &sig.ret;
    let rkrate = n.krate(ret.span());
    let s = Ident::new("__memo_schema", Span::mixed_site());
    let mut types = Vec::new();
    if sig.receiver.is_some() {
        types.push(quote! { Self });
    }
    for input in &sig.inputs {
        if !input.hashed.is_empty() && !crate::sig::contains_impl_trait(input.ty) {
            let peeled = peel_references(input.ty);
            types.push(quote! { #peeled });
        }
    }
    // At the return type, as every call that needs the result storable.
    let stored = quote_spanned! {ret.span()=>
        #rkrate::__private::Schema::stored(&mut #s, (&&&#rkrate::__private::Pick::<#ret>::new()).stored());
    };
    let build = quote! {
        || {
            let mut #s = #krate::__private::Schema::new();
            #stored
            #( (&&#krate::__private::ArgShape::<#types>::new()).add_to(&mut #s); )*
            #krate::__private::Schema::finish(#s)
        }
    };
    if sig.type_params.is_empty() {
        (build, quote! {})
    } else {
        let b = &n.builder;
        let per_call = quote! {
            #krate::__private::KeyBuilder::schema(
                #b,
                &#krate::__private::schema_cached(
                    ::core::any::type_name::<(#ret, #(#types,)*)>(),
                    #build,
                ),
            );
        };
        (quote! { || [0_u8; 32] }, per_call)
    }
}

/// What goes into a call's key after the function's base: type
/// parameters' names, const parameters, `self` and the arguments.
fn feeds(sig: &Sig<'_>, n: &Names) -> Vec<TokenStream> {
    let krate = n.krate(Span::call_site());
    let builder = &n.builder;
    let mut feeds = Vec::new();
    for t in &sig.type_params {
        feeds.push(quote! {
            #krate::__private::KeyBuilder::type_param(#builder, ::core::any::type_name::<#t>());
        });
    }
    for c in &sig.const_params {
        feeds.push(quote! { #krate::__private::KeyBuilder::arg(#builder, &#c); });
    }
    if let Some(r) = sig.receiver {
        let this = &r.self_token;
        let krate = n.krate(r.span());
        // `&self` hashes as `Self` (and is reported so), like `self`.
        let value = if r.reference.is_some() && r.colon_token.is_none() {
            quote_spanned! {r.span()=> #this }
        } else {
            quote_spanned! {r.span()=> &#this }
        };
        feeds.push(quote_spanned! {r.span()=>
            #krate::memoize_argument(#builder, #value);
        });
    }
    for input in &sig.inputs {
        let ty = input.ty;
        // A missing `Serialize` is reported once per argument, at its type
        // (without references: `&Params` hashes as `Params`), as
        // `Hashable`'s error, which names the type and the fix.
        let peeled = peel_references(ty);
        let at = peeled.span();
        let krate = n.krate(at);
        let derefs = if input.simple { reference_depth(ty) } else { 0 };
        let stars = (0..derefs).map(|_| quote_spanned! {at=> * });
        for b in &input.hashed {
            // Located at the type. Marked as generated (resolved at the
            // call site) when it is a `_name` binding, so lints about the
            // user's own code do not fire on the key's use of it.
            let mut b = (*b).clone();
            if b.to_string().starts_with('_') {
                b.set_span(Span::call_site().located_at(at));
            } else {
                b.set_span(b.span().located_at(at));
            }
            let stars = stars.clone();
            feeds.push(quote_spanned! {at=>
                #krate::memoize_argument(#builder, &#(#stars)* #b);
            });
        }
    }
    feeds
}

/// The cached call, the recomputing one of `<name>_recompute`, or the
/// cached call of a `memory = N` function (the in-process tier first).
#[derive(Clone, Copy)]
enum Call {
    Cached,
    Recompute,
    Remembered,
}

/// `value` wrapped as one of the six outcomes (`Whole`, `OkOnly`, `Bulk`,
/// `BulkOk`, or with a `ttl` `Timed`, `TimedOk`), chosen by its type (not
/// by how the return type is spelled: `io::Result<T>` and aliases are
/// `Result`s; `memo_core::__private::Pick`), spanned at the return type: the calls
/// that need it to be storable are spanned there too, so a missing
/// `Serialize` or `Deserialize` is reported once, at the user's return
/// type.
fn wrap(sig: &Sig<'_>, n: &Names, value: &TokenStream) -> TokenStream {
    let ret = &sig.ret;
    let krate = n.krate(ret.span());
    let method = if n.timed {
        quote_spanned! {ret.span()=> wrap_timed }
    } else {
        quote_spanned! {ret.span()=> wrap }
    };
    quote_spanned! {ret.span()=>
        (&&&#krate::__private::Pick::<#ret>::new()).#method(#value)
    }
}

/// What the function returns, from the outcome `out` of a call.
fn value_of(sig: &Sig<'_>, n: &Names, out: &TokenStream) -> TokenStream {
    let krate = n.krate(sig.ret.span());
    quote_spanned! {sig.ret.span()=> #krate::__private::Outcome::value(#out) }
}

fn sync_call(sig: &Sig<'_>, n: &Names, call: Call) -> TokenStream {
    let Names {
        func,
        store,
        key,
        body,
        ..
    } = n;
    let (ret, block) = (&sig.ret, &sig.func.block);
    let krate = n.krate(Span::call_site());
    let wrapped = wrap(sig, n, &quote! { #krate::__private::run(#body) });
    let span = sig.ret.span();
    // The body is a closure of its own, so `return` and `?` leave it and
    // not the memoization; `run` calls it as `FnOnce`, so a body that
    // changes a `mut` argument needs no `mut` binding of the closure.
    let krate = n.krate(span);
    let method = match call {
        Call::Cached => quote_spanned! {span=> call },
        Call::Recompute => quote_spanned! {span=> recompute },
        Call::Remembered => {
            // The in-process tier: looked up with the arguments borrowed
            // by the feed, then, on a miss only, the body made and called.
            let (schema_fn, feed) = (&n.schema_fn, &n.feed);
            let self_ty = if sig.receiver.is_some() {
                quote! { ::core::any::type_name::<Self>() }
            } else {
                quote! { "" }
            };
            let out = Ident::new("__memo_found", Span::mixed_site());
            let miss = Ident::new("__memo_miss", Span::mixed_site());
            let found = quote_spanned! {span=>
                match #krate::__private::Function::remembered(&#func, #store, #self_ty, #schema_fn, #feed) {
                    ::core::result::Result::Ok(#out) => #out,
                    ::core::result::Result::Err(#miss) => {
                        let #body = move || -> #ret #block;
                        #krate::__private::Function::call_missed(&#func, #store, #self_ty, #miss, move || {
                            #wrapped
                        })
                    }
                }
            };
            return value_of(sig, n, &found);
        }
    };
    let call = quote_spanned! {span=>
        #krate::__private::Function::#method(&#func, #store, &#key, move || {
            #wrapped
        })
    };
    let call = value_of(sig, n, &call);
    quote! {
        let #body = move || -> #ret #block;
        #call
    }
}

fn async_call(sig: &Sig<'_>, n: &Names, call: Call) -> TokenStream {
    let krate = n.krate(Span::call_site());
    let Names {
        func,
        store,
        key,
        out,
        started,
        ..
    } = n;
    let (ret, block) = (&sig.ret, &sig.func.block);
    let span = sig.ret.span();
    let spanned = n.krate(span);
    let picked = Ident::new("__memo_picked", Span::mixed_site());
    let pick = wrap(sig, n, &quote! { #picked });
    let value = value_of(sig, n, &quote! { #out });
    // A cached call looks up and takes its turn in the single flight
    // (waiting, without blocking, for another task or process computing
    // the same call); the turn is let go once the result is stored.
    let turn = Ident::new("__memo_turn", Span::mixed_site());
    let lookup = match call {
        Call::Cached => quote_spanned! {span=>
            let #turn = match #spanned::__private::Function::lead(&#func, #store, &#key, |#picked: #ret| #pick).await {
                ::core::result::Result::Ok(#out) => return #value,
                ::core::result::Result::Err(#turn) => #turn,
            };
        },
        // `memory` is refused on an async fn (`expand`).
        Call::Recompute | Call::Remembered => quote! { let #turn = (); },
    };
    let save = quote_spanned! {span=>
        #spanned::__private::Function::save(&#func, #store, &#key, &#out, #started);
    };
    quote! {
        #lookup
        let #started = #krate::__private::Instant::now();
        let #picked = #krate::__private::typed_future::<#ret, _>(async move #block).await;
        let #out = #pick;
        #save
        ::core::mem::drop(#turn);
        #value
    }
}

/// `<name>_uncached`, `<name>_recompute`, `<name>_is_cached`,
/// `<name>_clear` and `<name>_stats`, beside the function.
fn helpers(sig: &Sig<'_>, n: &Names, prelude: &TokenStream, setup: &TokenStream) -> TokenStream {
    let krate = n.krate(Span::call_site());
    let func = sig.func;
    let (vis, fsig, block) = (&func.vis, &func.sig, &func.block);
    let name = &fsig.ident;
    let renamed = |suffix: &str| -> Signature {
        let mut s = fsig.clone();
        s.ident = format_ident!("{}_{}", name, suffix, span = name.span());
        s
    };
    let uncached = renamed("uncached");
    let recompute = renamed("recompute");
    let mut is_cached = renamed("is_cached");
    is_cached.asyncness = None;
    is_cached.output = syn::parse_quote!(-> bool);
    let clear = format_ident!("{}_clear", name, span = name.span());
    let stats = format_ident!("{}_stats", name, span = name.span());
    let recompute_call = if fsig.asyncness.is_some() {
        async_call(sig, n, Call::Recompute)
    } else {
        sync_call(sig, n, Call::Recompute)
    };
    let ignored = sig.inputs.iter().flat_map(|i| &i.ignored);
    let Names {
        func: f,
        store,
        key,
        ..
    } = n;
    let (base_schema, _) = schemas(sig, n);
    let self_ty = if sig.receiver.is_some() {
        quote! { ::core::any::type_name::<Self>() }
    } else {
        quote! { "" }
    };
    let doc = |what: &str| format!("`{name}` {what} (generated by `#[memoize(helpers)]`).");
    let (d_uncached, d_recompute, d_is_cached, d_clear, d_stats) = (
        doc("without the cache: runs the body, reads and stores nothing"),
        doc("recomputed: runs the body and stores its result in place of any stored one"),
        doc("is cached for these arguments: a lookup, never a computation"),
        doc(
            "forgotten: removes every stored result of this function, of every version of its code; returns how many",
        ),
        doc("in numbers: the stored results of this function, store-wide"),
    );
    quote! {
        #[doc = #d_uncached]
        #[allow(dead_code, reason = "helpers are generated together; a program may use some")]
        #vis #uncached #block

        #[doc = #d_recompute]
        #[allow(dead_code, reason = "helpers are generated together; a program may use some")]
        #vis #recompute {
            #prelude
            #recompute_call
        }

        #[doc = #d_is_cached]
        #[allow(dead_code, reason = "helpers are generated together; a program may use some")]
        #vis #is_cached {
            #( let _ = &#ignored; )*
            #prelude
            #krate::__private::Function::is_cached(&#f, #store, &#key)
        }

        #[doc = #d_clear]
        #[allow(dead_code, reason = "helpers are generated together; a program may use some")]
        ///
        /// # Errors
        ///
        /// As `memo_core::Store::remove`.
        #vis fn #clear() -> #krate::Result<u64> {
            #setup
            #krate::__private::Function::clear(&#f, #store, #self_ty)
        }

        #[doc = #d_stats]
        #[allow(dead_code, reason = "helpers are generated together; a program may use some")]
        #[must_use]
        #vis fn #stats() -> #krate::FunctionStats {
            #setup
            #krate::__private::Function::stats(&#f, #store, #self_ty, #base_schema)
        }
    }
}

/// Whether `<name>_lazy` can be generated: its loader owns the arguments
/// and outlives the call, so they must be owned values, with no `self`,
/// generics, references, lifetimes or `impl Trait`; and it runs the body
/// synchronously on first deref.
fn lazy_applies(sig: &Sig<'_>) -> bool {
    use syn::visit::Visit;
    struct Borrows(bool);
    impl Visit<'_> for Borrows {
        fn visit_type_reference(&mut self, _: &syn::TypeReference) {
            self.0 = true;
        }
        fn visit_lifetime(&mut self, _: &syn::Lifetime) {
            self.0 = true;
        }
        fn visit_type_impl_trait(&mut self, _: &syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let fsig = &sig.func.sig;
    if fsig.asyncness.is_some() || sig.receiver.is_some() || !fsig.generics.params.is_empty() {
        return false;
    }
    let mut borrows = Borrows(false);
    for arg in &fsig.inputs {
        if let syn::FnArg::Typed(t) = arg {
            borrows.visit_type(&t.ty);
        }
    }
    !borrows.0
}

/// `<name>_lazy(args…) -> Lazy<R>`: the call's key now; a loader that owns
/// the arguments and makes the cached call (load, or compute once) on
/// first deref, with the key already made.
fn lazy(sig: &Sig<'_>, n: &Names, prelude: &TokenStream, store_init: &TokenStream) -> TokenStream {
    let krate = n.krate(Span::call_site());
    let fsig = &sig.func.sig;
    let (vis, ret, name) = (&sig.func.vis, &sig.ret, &fsig.ident);
    let mut lsig = fsig.clone();
    lsig.ident = format_ident!("{}_lazy", name, span = name.span());
    lsig.output = syn::parse_quote!(-> #krate::Lazy<#ret>);
    let Names { store, key, .. } = n;
    let call = sync_call(sig, n, Call::Cached);
    let doc = format!(
        "`{name}` by reference (generated by `#[memoize(helpers)]`): the call's key now, \
         nothing computed or read; its value on first deref, loaded or computed once. \
         As an argument of another memoized function it is hashed as its key alone."
    );
    quote! {
        #[doc = #doc]
        #[allow(dead_code, reason = "helpers are generated together; a program may use some")]
        #vis #lsig {
            #prelude
            let _ = #store;
            #krate::__private::lazy(#key, move || {
                #store_init
                #call
            })
        }
    }
}

/// `.compress(...)` on the function's static, for `compress = "..."`.
fn compress_option(args: &Args, krate: &TokenStream) -> Option<TokenStream> {
    args.compress.map(|level| {
        if level == 0 {
            quote! { .compress(#krate::Compression::None) }
        } else {
            quote! { .compress(#krate::Compression::Zstd { level: #level }) }
        }
    })
}
