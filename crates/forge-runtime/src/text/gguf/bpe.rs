//! Byte-level BPE as llama.cpp runs it (`llm_tokenizer_bpe_session`): the text is split into
//! words by the vocabulary's regexes (each regex splitting the pieces the previous left, matches
//! and the text between them alike), each word is written in the byte-level alphabet, and its
//! characters are merged pair by pair, the pair of lowest merge rank first (the leftmost on ties).

use std::cmp::Reverse;
use std::collections::HashMap;

use anyhow::{anyhow, Result};
use fancy_regex::Regex;

use super::{byte_level, merge::merge, GgufVocab};

pub(super) struct Bpe {
    /// (left, right) -> rank; the first of repeated merges keeps its rank.
    ranks: HashMap<(String, String), u32>,
    regexes: Vec<Regex>,
    /// A word that is a token is not merged (Llama 3).
    ignore_merges: bool,
}

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

    /// The pieces `word` (in the byte-level alphabet) merges into: the pair of lowest rank first.
    fn merge<'w>(&self, word: &'w str) -> Vec<&'w str> {
        merge(word, |left, right, _| {
            let rank = self.ranks.get(&(left.to_string(), right.to_string()))?;
            Some(Reverse(*rank))
        })
    }
}
