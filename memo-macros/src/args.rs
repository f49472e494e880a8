//! Parsing the attribute's options: `#[memoize(store = EXPR, ignore(a, b), ...)]`.

use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Lit, LitStr, Meta, Token};

use crate::errors::Errors;

/// Every option, for the message of an unknown one.
const VALID: &str = "`store = EXPR`, `dir = \"path\"`, `ignore(arg, ...)`, `version = N`, `helpers`, `map` and `crate = path`";

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
}

pub(crate) fn parse(attr: proc_macro2::TokenStream, errors: &mut Errors) -> Args {
    let mut args = Args {
        store: StoreArg::Global,
        ignore: Vec::new(),
        version: String::new(),
        helpers: false,
        map: None,
        krate: None,
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
            ("store" | "dir" | "version" | "crate", _) => {
                errors.at(&meta, format!("`{name}` takes a value: `{name} = ...`"));
            }
            ("ignore", _) => errors.at(&meta, "`ignore` takes argument names: `ignore(verbose, progress)`"),
            ("helpers" | "map", _) => errors.at(&meta, format!("`{name}` takes no value")),
            _ => errors.at(path, format!("unknown option `{name}`; the options are {VALID}")),
        }
    }
    args
}
