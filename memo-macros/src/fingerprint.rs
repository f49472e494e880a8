//! The function's fingerprint: its tokens in a canonical text form.
//!
//! Comments and formatting are not tokens, and doc comments (`#[doc]`
//! attributes) are dropped, so neither changes the text; any other token
//! does. The text goes into the binary and memo-core hashes it into the
//! function's keys once per process, so the macro needs no hash function
//! of its own and the fingerprint cannot drift between compiler versions
//! (`TokenStream`'s `Display` makes no stability promise; this does).

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

pub(crate) fn canonical(tokens: TokenStream) -> String {
    let mut out = String::new();
    write(tokens, &mut out);
    out
}

fn write(tokens: TokenStream, out: &mut String) {
    let mut iter = tokens.into_iter().peekable();
    while let Some(t) = iter.next() {
        // `#[doc = ...]` and `#![doc = ...]`: skip the whole attribute.
        if let TokenTree::Punct(p) = &t
            && p.as_char() == '#'
        {
            let mut ahead = iter.clone();
            if let Some(TokenTree::Punct(bang)) = ahead.peek()
                && bang.as_char() == '!'
            {
                ahead.next();
            }
            if let Some(TokenTree::Group(g)) = ahead.peek()
                && g.delimiter() == Delimiter::Bracket
                && is_doc(g.stream())
            {
                ahead.next();
                iter = ahead;
                continue;
            }
        }
        match t {
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                write(g.stream(), out);
                out.push_str(close);
                out.push(' ');
            }
            TokenTree::Ident(i) => {
                out.push_str(&i.to_string());
                out.push(' ');
            }
            TokenTree::Punct(p) => {
                out.push(p.as_char());
                // Jointness keeps multi-character operators (`->`, `::`,
                // `..=`) apart from their pieces.
                if p.spacing() == Spacing::Alone {
                    out.push(' ');
                }
            }
            TokenTree::Literal(l) => {
                out.push_str(&l.to_string());
                out.push(' ');
            }
        }
    }
}

fn is_doc(attr: TokenStream) -> bool {
    matches!(attr.into_iter().next(), Some(TokenTree::Ident(i)) if i == "doc")
}

#[cfg(test)]
mod tests {
    use super::canonical;

    fn text(s: &str) -> String {
        canonical(s.parse().unwrap())
    }

    #[test]
    fn formatting_and_comments_do_not_count() {
        let a = text("/// Adds.\nfn add(a: u32, b: u32) -> u32 { a + b }");
        let b = text("fn add(a:u32,\n   b: u32)->u32{\n  // why\n  a+b /* sum */ }");
        assert_eq!(a, b);
        let inner = text("fn f() { /// inner doc\n let x = 1; x }");
        assert_eq!(inner, text("fn f() { let x = 1; x }"));
    }

    #[test]
    fn any_token_counts() {
        let a = text("fn add(a: u32, b: u32) -> u32 { a + b }");
        assert_ne!(a, text("fn add(a: u32, b: u32) -> u32 { a - b }"));
        assert_ne!(a, text("fn add(a: u32, b: u32) -> u64 { a + b }"));
        assert_ne!(text("fn f() -> u32 { 1 }"), text("fn f() -> u32 { 1_0 }"));
        assert_eq!(
            text("fn f(x: i32) -> i32 { 1 - -x }"),
            text("fn f(x: i32) -> i32 { 1 - - x }")
        );
        assert_ne!(text("fn f() { a::b }"), text("fn f() { a: :b }"));
        // A non-doc attribute is code.
        assert_ne!(a, text("#[inline] fn add(a: u32, b: u32) -> u32 { a + b }"));
    }
}
