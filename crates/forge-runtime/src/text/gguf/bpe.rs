//! Byte-level BPE as llama.cpp runs it (`llm_tokenizer_bpe_session`): the text is split into
//! words by the vocabulary's regexes (each regex splitting the pieces the previous left, matches
//! and the text between them alike), each word is written in the byte-level alphabet, and its
//! characters are merged pair by pair, the pair of lowest merge rank first (the leftmost on ties).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use anyhow::{anyhow, Result};
use fancy_regex::Regex;

use super::{byte_level, GgufVocab};

pub(super) struct Bpe {
    /// (left, right) -> rank; the first of repeated merges keeps its rank.
    ranks: HashMap<(String, String), u32>,
    regexes: Vec<Regex>,
    /// A word that is a token is not merged (Llama 3).
    ignore_merges: bool,
}

struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of `left` and `right` into `text`.
struct Bigram {
    left: usize,
    right: usize,
    rank: u32,
    text: String,
}

impl Ord for Bigram {
    /// The best merge is the greatest: lower rank, then the lower position.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
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

impl Bpe {
    pub(super) fn new(merges: &[String], regexes: &[String], ignore_merges: bool) -> Result<Bpe> {
        let mut ranks = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            // The pair splits at the first space after the first byte, as llama.cpp reads it;
            // a merge without one is the empty pair.
            let space = merge.bytes().skip(1).position(|b| b == b' ');
            let pair = match space.map(|at| at + 1) {
                Some(at) => (merge[..at].to_string(), merge[at + 1..].to_string()),
                None => (String::new(), String::new()),
            };
            ranks.entry(pair).or_insert(rank as u32);
        }
        let regexes = regexes
            .iter()
            .map(|r| Regex::new(r).map_err(|e| anyhow!("split regex {r:?}: {e}")))
            .collect::<Result<_>>()?;
        Ok(Bpe {
            ranks,
            regexes,
            ignore_merges,
        })
    }

    /// Appends the ids of `text` (no special tokens in it) to `out`.
    pub(super) fn tokenize(&self, vocab: &GgufVocab, text: &str, out: &mut Vec<u32>) -> Result<()> {
        for word in self.split(text)? {
            let word = byte_level::encode(word.as_bytes());
            if let Some(id) = vocab.id(&word).filter(|_| self.ignore_merges) {
                out.push(id);
                continue;
            }
            for piece in self.merge(&word) {
                match vocab.id(piece) {
                    Some(id) => out.push(id),
                    // A piece outside the vocabulary falls back to its single bytes that are tokens.
                    None => {
                        out.extend(piece.bytes().filter_map(|b| {
                            std::str::from_utf8(&[b]).ok().and_then(|s| vocab.id(s))
                        }))
                    }
                }
            }
        }
        Ok(())
    }

    /// The words of `text`: every regex in turn splits each piece into matches and the text
    /// between them.
    fn split<'t>(&self, text: &'t str) -> Result<Vec<&'t str>> {
        let mut pieces = vec![text];
        for regex in &self.regexes {
            let mut next = Vec::with_capacity(pieces.len());
            for piece in pieces {
                let mut end = 0;
                for found in regex.find_iter(piece) {
                    let found = found.map_err(|e| anyhow!("splitting the text into words: {e}"))?;
                    if found.start() > end {
                        next.push(&piece[end..found.start()]);
                    }
                    if found.end() > found.start() {
                        next.push(found.as_str());
                    }
                    end = found.end();
                }
                if end < piece.len() {
                    next.push(&piece[end..]);
                }
            }
            pieces = next;
        }
        Ok(pieces)
    }

    /// The pieces `word` (in the byte-level alphabet) merges into.
    fn merge<'w>(&self, word: &'w str) -> Vec<&'w str> {
        let mut symbols: Vec<Symbol> = Vec::new();
        for (start, c) in word.char_indices() {
            let index = symbols.len();
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: index.checked_sub(1),
                next: Some(index + 1).filter(|_| start + c.len_utf8() < word.len()),
            });
        }
        let text = |s: &Symbol| &word[s.start..s.start + s.len];
        let candidate = |symbols: &[Symbol], left: Option<usize>, right: Option<usize>| {
            let (left, right) = (left?, right?);
            let pair = (
                text(&symbols[left]).to_string(),
                text(&symbols[right]).to_string(),
            );
            let rank = *self.ranks.get(&pair)?;
            Some(Bigram {
                left,
                right,
                rank,
                text: pair.0 + &pair.1,
            })
        };
        let mut queue = BinaryHeap::new();
        for i in 1..symbols.len() {
            queue.extend(candidate(&symbols, Some(i - 1), Some(i)));
        }
        while let Some(bigram) = queue.pop() {
            let (left, right) = (&symbols[bigram.left], &symbols[bigram.right]);
            if left.len == 0 || right.len == 0 {
                continue;
            }
            // The pair's symbols have changed since it was queued.
            if left.len + right.len != bigram.text.len()
                || word[left.start..right.start + right.len] != *bigram.text
            {
                continue;
            }
            let next = right.next;
            symbols[bigram.left].len += symbols[bigram.right].len;
            symbols[bigram.left].next = next;
            symbols[bigram.right].len = 0;
            if let Some(next) = next {
                symbols[next].prev = Some(bigram.left);
            }
            let prev = symbols[bigram.left].prev;
            queue.extend(candidate(&symbols, prev, Some(bigram.left)));
            queue.extend(candidate(&symbols, Some(bigram.left), next));
        }
        symbols.iter().filter(|s| s.len > 0).map(text).collect()
    }
}
