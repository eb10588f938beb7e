//! Ids back to text as llama.cpp's `token_to_piece` and `llama_detokenize` do: control and
//! unknown tokens only when asked for, user-defined tokens as written, SentencePiece pieces with
//! `▁` as a space and `<0xXX>` as its byte, byte-level pieces through the byte alphabet; then, for
//! vocabularies that ask for it, the spaces before punctuation and contractions removed.

use anyhow::{bail, Result};

use super::{attr, byte_level, GgufVocab, Model};

/// The bytes of one token; `lstrip` drops one leading space, `special` shows control tokens.
fn piece(vocab: &GgufVocab, id: u32, lstrip: bool, special: bool) -> Result<Vec<u8>> {
    let Some(text) = vocab.tokens.get(id as usize) else {
        bail!(
            "token id {id} is outside the vocabulary of {} tokens",
            vocab.len()
        );
    };
    let attributes = vocab.attributes[id as usize];
    let shown_as_written = attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED;
    let mut bytes = if attributes & (attr::UNKNOWN | attr::CONTROL) != 0 && !special {
        Vec::new()
    } else if attributes & shown_as_written != 0 {
        text.as_bytes().to_vec()
    } else if attributes & attr::NORMAL != 0 {
        match vocab.model {
            Model::SentencePiece => text.replace('\u{2581}', " ").into_bytes(),
            Model::BytePair(_) => byte_level_bytes(text),
        }
    } else if attributes & attr::BYTE != 0 && matches!(vocab.model, Model::SentencePiece) {
        vec![byte_of(text)]
    } else {
        // Unused and undefined tokens show nothing.
        Vec::new()
    };
    if lstrip && bytes.first() == Some(&b' ') {
        bytes.remove(0);
    }
    Ok(bytes)
}

/// A byte-level piece's bytes; a character outside the byte alphabet is written out as llama.cpp
/// does (`[UNK_BYTE_0x..` with its UTF-8 bytes, then the whole piece and `]`).
fn byte_level_bytes(text: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len());
    for c in text.chars() {
        match byte_level::decode_char(c) {
            Some(b) => bytes.push(b),
            None => {
                bytes.extend_from_slice(b"[UNK_BYTE_0x");
                let mut utf8 = [0u8; 4];
                for b in c.encode_utf8(&mut utf8).bytes() {
                    bytes.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                bytes.extend_from_slice(text.as_bytes());
                bytes.push(b']');
            }
        }
    }
    bytes
}

/// The byte of a `<0xXX>` token (the two hex digits after `<0x`; 0 when they are not hex, as
/// `strtol` reads them).
fn byte_of(text: &str) -> u8 {
    let digits = text.get(3..5).unwrap_or("");
    let hex: String = digits.chars().take_while(char::is_ascii_hexdigit).collect();
    u8::from_str_radix(&hex, 16).unwrap_or(0)
}

pub(super) fn detokenize(
    vocab: &GgufVocab,
    mut ids: &[u32],
    remove_special: bool,
    unparse_special: bool,
) -> Result<String> {
    let around = &vocab.around;
    // A SentencePiece text's first piece carries the space the tokenizer put in front of it.
    let mut remove_space = around.add_space_prefix;
    if remove_special && around.add_bos && !ids.is_empty() && ids.first() == around.bos.as_ref() {
        remove_space = false;
        ids = &ids[1..];
    }
    if remove_special && around.add_eos && !ids.is_empty() && ids.last() == around.eos.as_ref() {
        ids = &ids[..ids.len() - 1];
    }
    let mut text = Vec::new();
    for &id in ids {
        text.extend(piece(vocab, id, remove_space, unparse_special)?);
        remove_space = false;
    }
    if around.clean_spaces {
        text = clean_spaces(&text);
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// llama.cpp's `clean_up_tokenization_spaces`, three passes over the bytes: no space before
/// `?!.,`; ` ' ` loses both spaces; no space before `'s`, `'m`, `'re`, `'ve`.
fn clean_spaces(text: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    for (i, &c) in text.iter().enumerate() {
        if i > 0 && text[i - 1] == b' ' && matches!(c, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(c);
    }
    // The space after a lone apostrophe is blanked in place (llama.cpp writes a NUL there),
    // so it is neither copied nor seen as a space by the next position.
    let mut text = std::mem::take(&mut out);
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        if i > 0 && c == b'\'' && i + 1 < text.len() && text[i - 1] == b' ' && text[i + 1] == b' ' {
            out.pop();
            out.push(c);
            text[i + 1] = 0;
            i += 2;
            continue;
        }
        out.push(c);
        i += 1;
    }
    let text = std::mem::take(&mut out);
    for (i, &c) in text.iter().enumerate() {
        if i > 0 && text[i - 1] == b' ' && c == b'\'' && i + 1 < text.len() {
            let next = text[i + 1];
            let after = text.get(i + 2).copied();
            let joins = matches!(next, b's' | b'm')
                || (i + 2 < text.len() && matches!((next, after), (b'r' | b'v', Some(b'e'))));
            if joins {
                out.pop();
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::clean_spaces;

    #[test]
    fn spaces_before_punctuation_and_contractions_go() {
        let clean = |s: &str| String::from_utf8(clean_spaces(s.as_bytes())).unwrap();
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("a ' b"), "a'b");
        assert_eq!(clean("a ' ' b"), "a'' b");
        assert_eq!(
            clean("it 's we 're I 'm they 'll don 't"),
            "it's we're I'm they 'll don 't"
        );
        // The text's first character is a space like any other.
        assert_eq!(clean(" ."), ".");
    }
}
