//! Parsing the attribute's options: `#[memoize(store = EXPR, ignore(a, b), ...)]`.

use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Lit, LitStr, Meta, Token};

use crate::errors::Errors;

/// Every option, for the message of an unknown one.
const VALID: &str = "`store = EXPR`, `dir = \"path\"`, `ignore(arg, ...)`, `version = N`, `ttl = \"1h\"`, `min_cost = \"50ms\"`, `uses(helper, ...)`, `memory = N`, `compress = \"zstd\"`, `helpers`, `map` and `crate = path`";

/// Where the cached values live.
pub(crate) enum StoreArg {
    /// `Store::global()`.
    Global,
    /// `store = EXPR`: anything that derefs to a `Store`.
    Expr(Expr),
    /// `dir = "..."`: a store opened once at that directory.
    Dir(LitStr),
}

/// The parsed options.
pub(crate) struct Args {
    pub store: StoreArg,
    pub ignore: Vec<Ident>,
    /// The user's version, as text: `2` and `"2"` are the same version.
    pub version: String,
    /// Generate the per-function helpers (`<name>_uncached`, ...).
    pub helpers: bool,
    /// Generate `<name>_map`, the sweep over many inputs; the token, for
    /// errors about it.
    pub map: Option<Ident>,
    /// The path memo-core is reached by, when a crate that re-exports memo
    /// says `crate = path` (else `::memo_core`).
    pub krate: Option<syn::Path>,
    /// `ttl = "1h"`, in milliseconds.
    pub ttl: Option<u64>,
    /// `min_cost = "50ms"`, in microseconds.
    pub min_cost: Option<u64>,
    /// `uses(helper, m::other)`: tracked helpers whose code the key covers.
    pub uses: Vec<syn::Path>,
    /// `memory = N`: results kept decoded in the process, and the literal.
    pub memory: Option<(usize, syn::LitInt)>,
    /// `compress = "zstd:9"`: the zstd level, 0 for `"none"`.
    pub compress: Option<i32>,
}

/// The part of `expr` that opens a store (`Store::open(..)`,
/// `Store::builder(..)...open()`), if any: as a `store = ` expression it
/// would run on every call.
fn opens_a_store(expr: &Expr) -> Option<proc_macro2::TokenStream> {
    use quote::ToTokens;
    use syn::visit::Visit;
    struct Finder(Option<proc_macro2::TokenStream>);
    impl<'a> Visit<'a> for Finder {
        fn visit_expr_call(&mut self, c: &'a syn::ExprCall) {
            if let Expr::Path(p) = &*c.func {
                let segs: Vec<String> = p
                    .path
                    .segments
                    .iter()
                    .map(|s| s.ident.to_string())
                    .collect();
                if let [.., ty, f] = segs.as_slice()
                    && ty == "Store"
                    && matches!(f.as_str(), "open" | "builder")
                {
                    self.0.get_or_insert_with(|| c.to_token_stream());
                }
            }
            syn::visit::visit_expr_call(self, c);
        }
        // A closure's body runs when called, which the expression may do
        // once (`LazyLock::new(|| ...)` is the cure, not the trap).
        fn visit_expr_closure(&mut self, _: &'a syn::ExprClosure) {}
    }
    let mut f = Finder(None);
    f.visit_expr(expr);
    f.0
}

/// `ttl = "1h"` or `min_cost = "50ms"`, into `args`.
fn durations(args: &mut Args, name: &str, value: &Expr, errors: &mut Errors) {
    match (name, duration(value)) {
        // Stored times are milliseconds.
        ("ttl", Some(us)) if us >= 1_000 => args.ttl = Some(us / 1_000),
        ("ttl", Some(_)) => errors.at(value, "`ttl` is at least a millisecond: `ttl = \"1ms\"`"),
        ("ttl", None) => errors.at(
            value,
            "`ttl` takes a duration: `ttl = \"1h\"`, `\"30m\"`, `\"7d\"` (units ms, s, m, h, d, w)",
        ),
        (_, Some(us)) => args.min_cost = Some(us),
        (_, None) => errors.at(
            value,
            "`min_cost` takes a duration: `min_cost = \"50ms\"`, `\"2s\"` (units us, ms, s, m, h)",
        ),
    }
}

/// `memory = N` or `compress = "..."`, into `args`.
fn numbers(args: &mut Args, name: &str, value: &Expr, errors: &mut Errors) {
    if name == "memory" {
        args.memory = memory(value, errors);
    } else {
        args.compress = compress(value, errors);
    }
}

/// `memory = N`: a positive integer literal.
fn memory(value: &Expr, errors: &mut Errors) -> Option<(usize, syn::LitInt)> {
    if let Expr::Lit(syn::ExprLit {
        lit: Lit::Int(i), ..
    }) = value
        && let Ok(n) = i.base10_parse::<usize>()
        && n > 0
    {
        return Some((n, i.clone()));
    }
    errors.at(
        value,
        "`memory` takes how many results to keep in memory, a positive integer: `memory = 1000`",
    );
    None
}

/// `compress = "zstd"`, `"zstd:LEVEL"` (1 to 22) or `"none"`: the level,
/// checked here so a typo is a compile error (the grammar of
/// `memo_core::Compression`'s `FromStr`).
fn compress(value: &Expr, errors: &mut Errors) -> Option<i32> {
    if let Expr::Lit(syn::ExprLit {
        lit: Lit::Str(s), ..
    }) = value
    {
        let text = s.value();
        let text = text.trim();
        match text.split_once(':') {
            None if text.eq_ignore_ascii_case("none") => return Some(0),
            None if text.eq_ignore_ascii_case("zstd") => return Some(3),
            Some((name, level)) if name.trim().eq_ignore_ascii_case("zstd") => {
                if let Ok(level @ 1..=22) = level.trim().parse::<i32>() {
                    return Some(level);
                }
            }
            _ => {}
        }
    }
    errors.at(
        value,
        "`compress` takes `\"zstd\"`, `\"zstd:LEVEL\"` (levels 1 to 22) or `\"none\"`: `compress = \"zstd:9\"`",
    );
    None
}

/// The microseconds of a duration string literal, if `expr` is one.
fn duration(expr: &Expr) -> Option<u64> {
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => crate::duration::micros(&s.value()),
        _ => None,
    }
}

pub(crate) fn parse(attr: proc_macro2::TokenStream, errors: &mut Errors) -> Args {
    let mut args = Args {
        store: StoreArg::Global,
        ignore: Vec::new(),
        version: String::new(),
        helpers: false,
        map: None,
        krate: None,
        ttl: None,
        min_cost: None,
        uses: Vec::new(),
        memory: None,
        compress: None,
    };
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(attr) {
        Ok(m) => m,
        Err(e) => {
            errors.push(e);
            return args;
        }
    };
    // The option names seen, to report duplicates at their second use.
    let mut seen: Vec<String> = Vec::new();
    for meta in metas {
        let path = meta.path();
        let Some(name) = path.get_ident().map(ToString::to_string) else {
            errors.at(path, format!("unknown option; the options are {VALID}"));
            continue;
        };
        if seen.contains(&name) {
            errors.at(path, format!("duplicate option `{name}`"));
            continue;
        }
        seen.push(name.clone());
        match (name.as_str(), &meta) {
            ("store", Meta::NameValue(nv)) => {
                if matches!(args.store, StoreArg::Dir(_)) {
                    errors.at(path, "`store` and `dir` both say where values go; keep one");
                } else if let Some(open) = opens_a_store(&nv.value) {
                    errors.at(
                        open,
                        "`store = ...` is evaluated on every call, and this opens the store each time \
                         (tens of microseconds a call); open it once: \
                         `static STORE: std::sync::LazyLock<memo_core::Store> = \
                         std::sync::LazyLock::new(|| memo_core::Store::open(\"cache\").unwrap());` \
                         then `store = STORE`, or use `dir = \"cache\"`",
                    );
                } else {
                    args.store = StoreArg::Expr(nv.value.clone());
                }
            }
            ("dir", Meta::NameValue(nv)) => match &nv.value {
                Expr::Lit(l) if matches!(l.lit, Lit::Str(_)) => {
                    if matches!(args.store, StoreArg::Expr(_)) {
                        errors.at(path, "`store` and `dir` both say where values go; keep one");
                    } else if let Lit::Str(s) = &l.lit {
                        args.store = StoreArg::Dir(s.clone());
                    }
                }
                other => errors.at(
                    other,
                    "`dir` takes a string literal: `dir = \"results/cache\"`; for a store built at run time use `store = EXPR`",
                ),
            },
            ("version", Meta::NameValue(nv)) => match &nv.value {
                Expr::Lit(l) => match &l.lit {
                    Lit::Int(i) => i.base10_digits().clone_into(&mut args.version),
                    Lit::Str(s) => args.version = s.value(),
                    other => errors.at(other, "`version` takes an integer or a string: `version = 2`"),
                },
                other => errors.at(other, "`version` takes an integer or a string literal: `version = 2`"),
            },
            ("ignore", Meta::List(list)) => {
                match list.parse_args_with(Punctuated::<Ident, Token![,]>::parse_terminated) {
                    Ok(names) => args.ignore.extend(names),
                    Err(e) => errors.push(e),
                }
            }
            ("uses", Meta::List(list)) => args.uses = crate::track::uses(list, errors),
            ("uses", _) => errors.at(&meta, "`uses` names tracked helpers: `uses(normalize, io::load)`"),
            ("helpers", Meta::Path(_)) => args.helpers = true,
            ("map", Meta::Path(p)) => args.map = p.get_ident().cloned(),
            ("crate", Meta::NameValue(nv)) => match &nv.value {
                Expr::Path(p) if p.qself.is_none() && p.attrs.is_empty() => {
                    args.krate = Some(p.path.clone());
                }
                other => errors.at(
                    other,
                    "`crate` takes the path memo_core is reached by: `crate = my_lib::memo`",
                ),
            },
            ("ttl" | "min_cost", Meta::NameValue(nv)) => durations(&mut args, &name, &nv.value, errors),
            ("memory" | "compress", Meta::NameValue(nv)) => numbers(&mut args, &name, &nv.value, errors),
            ("store" | "dir" | "version" | "crate" | "ttl" | "min_cost" | "memory" | "compress", _) => {
                errors.at(&meta, format!("`{name}` takes a value: `{name} = ...`"));
            }
            ("ignore", _) => errors.at(&meta, "`ignore` takes argument names: `ignore(verbose, progress)`"),
            ("helpers" | "map", _) => errors.at(&meta, format!("`{name}` takes no value")),
            _ => errors.at(path, format!("unknown option `{name}`; the options are {VALID}")),
        }
    }
    args
}
