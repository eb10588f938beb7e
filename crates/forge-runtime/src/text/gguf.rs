//! A GGUF vocabulary tokenized exactly as llama.cpp tokenizes it (`llama-vocab.cpp`): special
//! tokens are cut out of the text first, longest first; SentencePiece (`spm`) text is then merged
//! by piece score with byte fallback, byte-level BPE (`bpe`) text split into words by the
//! vocabulary's regexes and merged by rank. `forge compile` writes the vocabulary, resolved as
//! llama.cpp's loader resolves it, into the project's `gguf_vocab.json`.

mod bpe;
mod byte_level;
mod merge;
mod partition;
mod pieces;
mod spm;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;

use partition::Fragment;

/// The layout of `gguf_vocab.json` this runtime reads.
const FORMAT: &str = "forge-gguf-vocab/1";

/// llama.cpp's token attributes (`llama_token_attr`), as `forge compile` stores them per token.
pub mod attr {
    pub const UNKNOWN: u32 = 1 << 0;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const LSTRIP: u32 = 1 << 7;
    pub const RSTRIP: u32 = 1 << 8;
}

#[derive(Deserialize)]
struct VocabFile {
    format: String,
    kind: String,
    tokens: Vec<String>,
    scores: Vec<f32>,
    attributes: Vec<u32>,
    merges: Vec<String>,
    split_regexes: Vec<String>,
    ignore_merges: bool,
    #[serde(flatten)]
    around: AroundText,
}

/// What the vocabulary adds around a text when tokenizing and strips when detokenizing.
#[derive(Clone, Copy, Deserialize)]
struct AroundText {
    /// SentencePiece: a space before the text and after each special token.
    add_space_prefix: bool,
    add_bos: bool,
    add_eos: bool,
    /// Detokenizing removes spaces before punctuation and contractions.
    clean_spaces: bool,
    bos: Option<u32>,
    eos: Option<u32>,
}

/// How text between special tokens becomes ids.
enum Model {
    SentencePiece,
    BytePair(bpe::Bpe),
}

pub struct GgufVocab {
    model: Model,
    tokens: Vec<String>,
    scores: Vec<f32>,
    attributes: Vec<u32>,
    ids: HashMap<String, u32>,
    /// Control, user-defined and unknown tokens, longest text first: the order they are cut
    /// out of the text in.
    specials: Vec<u32>,
    around: AroundText,
}

impl GgufVocab {
    /// Reads `gguf_vocab.json`; errors name the file.
    pub fn load(path: &Path) -> Result<GgufVocab> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("{}: cannot read: {e}", path.display()))?;
        let file: VocabFile = serde_json::from_str(&text)
            .map_err(|e| anyhow!("{}: not a forge GGUF vocabulary: {e}", path.display()))?;
        GgufVocab::new(file).map_err(|e| anyhow!("{}: {e}", path.display()))
    }

    fn new(file: VocabFile) -> Result<GgufVocab> {
        if file.format != FORMAT {
            bail!(
                "written in layout {:?}, this binary reads {FORMAT:?}; re-run forge compile",
                file.format
            );
        }
        let n = file.tokens.len();
        if file.scores.len() != n || file.attributes.len() != n {
            bail!(
                "{} tokens but {} scores and {} attributes",
                n,
                file.scores.len(),
                file.attributes.len()
            );
        }
        for id in [file.around.bos, file.around.eos].into_iter().flatten() {
            if id as usize >= n {
                bail!("special token id {id} is outside the vocabulary of {n}");
            }
        }
        let model = match file.kind.as_str() {
            "spm" => Model::SentencePiece,
            "bpe" => Model::BytePair(bpe::Bpe::new(
                &file.merges,
                &file.split_regexes,
                file.ignore_merges,
            )?),
            other => bail!("unknown tokenizer kind {other:?}"),
        };
        let ids: HashMap<String, u32> = file
            .tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), id as u32))
            .collect();
        if ids.len() != n {
            bail!("a token text appears twice");
        }
        let special = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&id| file.attributes[id as usize] & special != 0)
            .collect();
        // Equal lengths keep id order; no two such tokens of one vocabulary overlap in practice.
        specials.sort_by_key(|&id| std::cmp::Reverse(file.tokens[id as usize].len()));
        Ok(GgufVocab {
            model,
            tokens: file.tokens,
            scores: file.scores,
            attributes: file.attributes,
            ids,
            specials,
            around: file.around,
        })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    fn id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// llama.cpp's `llama_tokenize(text, add_special, parse_special)`: `add_special` adds the
    /// BOS and EOS the vocabulary adds to every text; `parse_special` lets control tokens be
    /// written as text (user-defined tokens always are).
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let fragments = partition::split(self, text, parse_special);
        let mut out = Vec::new();
        let around = &self.around;
        if add_special && around.add_bos {
            out.extend(around.bos);
        }
        // SentencePiece marks a word start with `▁`: the text's, and each after a special token.
        let mut after_special = true;
        for fragment in fragments {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(piece) => {
                    match &self.model {
                        Model::SentencePiece => {
                            let prefix = if around.add_space_prefix && after_special {
                                " "
                            } else {
                                ""
                            };
                            let escaped = format!("{prefix}{piece}").replace(' ', "\u{2581}");
                            spm::tokenize(self, &escaped, &mut out)?;
                        }
                        Model::BytePair(bpe) => bpe.tokenize(self, piece, &mut out)?,
                    }
                    after_special = false;
                }
            }
        }
        if add_special && around.add_eos {
            out.extend(around.eos);
        }
        Ok(out)
    }

    /// llama.cpp's `llama_detokenize(ids, remove_special, unparse_special)`: `remove_special`
    /// drops the BOS and EOS `tokenize` adds, `unparse_special` writes control tokens as text.
    pub fn detokenize(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<String> {
        pieces::detokenize(self, ids, remove_special, unparse_special)
    }
}
