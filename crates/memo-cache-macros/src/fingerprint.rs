//! The automatic fingerprint: blake3 of the function item's tokens.
//!
//! Tokens are hashed one by one with their kind and text, never through a pretty-printer, so
//! formatting, comments and doc comments (`#[doc]` attributes, which are left out) do not change
//! the fingerprint, and a change in how `proc_macro2` prints tokens cannot either.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;

/// The fingerprint of `item`: 32 hex digits of blake3 over its tokens, doc comments left out.
pub fn of(item: &syn::ItemFn) -> String {
    let mut item = item.clone();
    item.attrs.retain(|a| !a.path().is_ident("doc"));
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"memo-cache/fingerprint/v1\0");
    feed(&mut hasher, item.into_token_stream());
    hasher.finalize().to_hex()[..32].to_owned()
}

fn feed(hasher: &mut blake3::Hasher, tokens: TokenStream) {
    for token in tokens {
        match token {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("\u{2}", "\u{3}"),
                };
                hasher.update(open.as_bytes());
                feed(hasher, group.stream());
                hasher.update(close.as_bytes());
            }
            TokenTree::Ident(ident) => {
                hasher.update(b"i");
                hasher.update(ident.to_string().as_bytes());
            }
            TokenTree::Punct(punct) => {
                hasher.update(b"p");
                hasher.update(punct.as_char().to_string().as_bytes());
            }
            TokenTree::Literal(literal) => {
                hasher.update(b"l");
                hasher.update(literal.to_string().as_bytes());
            }
        }
        hasher.update(b"\0");
    }
}

#[cfg(test)]
mod tests {
    fn fp(src: &str) -> String {
        super::of(&syn::parse_str(src).unwrap())
    }

    #[test]
    fn formatting_and_comments_do_not_count() {
        let a = fp("fn f(x: u32) -> u32 { x + 1 }");
        assert_eq!(
            a,
            fp("fn f( x : u32 )->u32{\n    // add one\n    x   +   1 /* ! */\n}")
        );
        assert_eq!(a, fp("/// Adds one.\nfn f(x: u32) -> u32 { x + 1 }"));
        assert_ne!(a, fp("fn f(x: u32) -> u32 { x + 2 }"));
        assert_ne!(a, fp("fn f(x: u32) -> u64 { x + 1 }"));
    }
}
