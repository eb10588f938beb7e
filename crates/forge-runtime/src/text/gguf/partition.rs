//! Cutting special tokens out of the text before any splitting or merging, as llama.cpp's
//! `tokenizer_st_partition`: token by token, longest text first, every occurrence in every
//! piece of text still left is replaced by the token, leftmost first.

use super::{attr, GgufVocab};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// `text` as text pieces and special tokens. Without `parse_special`, control and unknown
/// tokens stay text; user-defined tokens are cut out either way.
pub(super) fn split<'a>(
    vocab: &GgufVocab,
    text: &'a str,
    parse_special: bool,
) -> Vec<Fragment<'a>> {
    let mut fragments = Vec::new();
    if !text.is_empty() {
        fragments.push(Fragment::Text(text));
    }
    for &id in &vocab.specials {
        let attributes = vocab.attributes[id as usize];
        if !parse_special && attributes & (attr::CONTROL | attr::UNKNOWN) != 0 {
            continue;
        }
        let token = vocab.tokens[id as usize].as_str();
        if !fragments
            .iter()
            .any(|f| matches!(f, Fragment::Text(t) if t.contains(token)))
        {
            continue;
        }
        fragments = fragments
            .into_iter()
            .flat_map(|fragment| match fragment {
                Fragment::Text(piece) => cut(piece, token, id, attributes),
                token => vec![token],
            })
            .collect();
    }
    fragments
}

/// `piece` with every occurrence of `token` replaced by `id`; the token's LSTRIP and RSTRIP
/// attributes drop the whitespace before and after it.
fn cut<'a>(mut piece: &'a str, token: &str, id: u32, attributes: u32) -> Vec<Fragment<'a>> {
    let mut out = Vec::new();
    while let Some(at) = piece.find(token) {
        let mut left = &piece[..at];
        if attributes & attr::LSTRIP != 0 {
            left = left.trim_end_matches(is_c_space);
        }
        if !left.is_empty() {
            out.push(Fragment::Text(left));
        }
        out.push(Fragment::Token(id));
        piece = &piece[at + token.len()..];
        if attributes & attr::RSTRIP != 0 {
            piece = piece.trim_start_matches(is_c_space);
        }
    }
    if !piece.is_empty() {
        out.push(Fragment::Text(piece));
    }
    out
}

/// C's `isspace` in the "C" locale, which llama.cpp strips with.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r')
}
