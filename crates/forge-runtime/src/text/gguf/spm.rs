//! SentencePiece BPE as llama.cpp runs it (`llm_tokenizer_spm_session`): start from single
//! characters, repeatedly merge the adjacent pair whose concatenation is the vocabulary token
//! with the highest score (the leftmost pair on ties), then emit each piece's id, or its bytes
//! as `<0xXX>` tokens when the piece is not in the vocabulary.

use std::cmp::Ordering;

use anyhow::{bail, Result};

use super::{merge::merge, GgufVocab};

/// A piece score, ordered as llama.cpp's `<` orders floats (a NaN is equal to everything).
#[derive(Clone, Copy, PartialEq)]
struct Score(f32);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal)
    }
}

/// Appends the ids of `text` (spaces already written as `▁`) to `out`.
pub(super) fn tokenize(vocab: &GgufVocab, text: &str, out: &mut Vec<u32>) -> Result<()> {
    // Any token of the vocabulary can be a merge, whatever its type, as in llama.cpp.
    let pieces = merge(text, |_, _, both| {
        vocab.id(both).map(|id| Score(vocab.scores[id as usize]))
    });
    for piece in pieces {
        match vocab.id(piece) {
            Some(id) => out.push(id),
            None => {
                for &byte in piece.as_bytes() {
                    out.push(byte_token(vocab, byte)?);
                }
            }
        }
    }
    Ok(())
}

/// The `<0xXX>` token of a byte, else the one-byte text itself (llama.cpp's `byte_to_token`).
fn byte_token(vocab: &GgufVocab, byte: u8) -> Result<u32> {
    let id = vocab
        .id(&format!("<0x{byte:02X}>"))
        .or_else(|| std::str::from_utf8(&[byte]).ok().and_then(|s| vocab.id(s)));
    match id {
        Some(id) => Ok(id),
        None => bail!("the vocabulary has no token for byte 0x{byte:02X}"),
    }
}
