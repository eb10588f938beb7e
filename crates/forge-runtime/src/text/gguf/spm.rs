//! SentencePiece BPE as llama.cpp runs it (`llm_tokenizer_spm_session`): start from single
//! characters, repeatedly merge the adjacent pair whose concatenation is the vocabulary token
//! with the highest score (the leftmost pair on ties), then emit each piece's id, or its bytes
//! as `<0xXX>` tokens when the piece is not in the vocabulary.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use anyhow::{bail, Result};

use super::GgufVocab;

/// A piece of the text: `len` bytes from `start`, linked to its neighbours.
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of `left` with the symbol after it into a `len`-byte token of `score`.
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    len: usize,
}

impl Ord for Bigram {
    /// The best merge is the greatest: higher score, then the lower position.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

/// Appends the ids of `text` (spaces already written as `▁`) to `out`.
pub(super) fn tokenize(vocab: &GgufVocab, text: &str, out: &mut Vec<u32>) -> Result<()> {
    let mut symbols: Vec<Symbol> = Vec::new();
    for (start, c) in text.char_indices() {
        let index = symbols.len();
        symbols.push(Symbol {
            start,
            len: c.len_utf8(),
            prev: index.checked_sub(1),
            next: Some(index + 1).filter(|_| start + c.len_utf8() < text.len()),
        });
    }
    let mut queue = BinaryHeap::new();
    let candidate = |symbols: &[Symbol], left: Option<usize>, right: Option<usize>| {
        let (left, right) = (left?, right?);
        let start = symbols[left].start;
        let piece = &text[start..symbols[right].start + symbols[right].len];
        let id = vocab.id(piece)?;
        Some(Bigram {
            left,
            right,
            score: vocab.scores[id as usize],
            len: piece.len(),
        })
    };
    for i in 1..symbols.len() {
        queue.extend(candidate(&symbols, Some(i - 1), Some(i)));
    }
    while let Some(bigram) = queue.pop() {
        let (left, right) = (&symbols[bigram.left], &symbols[bigram.right]);
        // A pair one of whose symbols has since merged with another is stale.
        if left.len == 0 || right.len == 0 || left.len + right.len != bigram.len {
            continue;
        }
        let next = right.next;
        symbols[bigram.left].len = bigram.len;
        symbols[bigram.left].next = next;
        symbols[bigram.right].len = 0;
        if let Some(next) = next {
            symbols[next].prev = Some(bigram.left);
        }
        let prev = symbols[bigram.left].prev;
        queue.extend(candidate(&symbols, prev, Some(bigram.left)));
        queue.extend(candidate(&symbols, Some(bigram.left), next));
    }
    let mut at = (!symbols.is_empty()).then_some(0);
    while let Some(i) = at {
        let symbol = &symbols[i];
        let piece = &text[symbol.start..symbol.start + symbol.len];
        match vocab.id(piece) {
            Some(id) => out.push(id),
            None => {
                for &byte in piece.as_bytes() {
                    out.push(byte_token(vocab, byte)?);
                }
            }
        }
        at = symbol.next;
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
