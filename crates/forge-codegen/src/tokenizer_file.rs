//! The generated project's `tokenizer.json`: a Hugging Face checkpoint's own file, or one built
//! from the vocabulary a GGUF file carries, in the form the `tokenizers` crate loads (with its
//! `fancy-regex` engine).
//!
//! Byte-level BPE (`tokenizer.ggml.model = gpt2`) becomes a BPE model over the GGUF merges with the
//! split regexes `tokenizer.ggml.pre` names. SentencePiece (`llama`) becomes the BPE-with-byte-
//! fallback form transformers 5 gives Llama tokenizers: merges recovered from the vocabulary,
//! `Metaspace` marking spaces with `▁`, and a decoder that turns `<0xXX>` pieces back into bytes.
//! Control and user-defined tokens become added tokens so `<|im_start|>` encodes as one id.

mod pre_tokenizer;

use std::collections::HashMap;
use std::path::PathBuf;

use forge_ir::{
    Architecture, GenerationDefaults, GgufVocab, Model, TokenizerKind, TokenizerSource,
};
use serde_json::{json, Map, Value};

pub use pre_tokenizer::{rule_for, PreTokenizerRule};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerJsonError {
    #[error("cannot read tokenizer file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{gguf}: the GGUF tokenizer model is neither `gpt2` (byte-level BPE) nor `llama` \
         (SentencePiece); forge builds a tokenizer.json for those two only"
    )]
    UnsupportedModel { gguf: PathBuf },
    #[error(
        "{gguf}: unknown byte-level BPE pre-tokenizer tokenizer.ggml.pre = {pre:?}; \
         forge does not know how this vocabulary splits words"
    )]
    UnsupportedPreTokenizer { gguf: PathBuf, pre: String },
    #[error("{gguf}: GGUF vocabulary: {message}")]
    Vocab { gguf: PathBuf, message: String },
}

/// llama.cpp token types (`tokenizer.ggml.token_type`).
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// SentencePiece's visible space.
const SPACE_MARK: char = '\u{2581}';

/// The `tokenizer.json` text for `model`: `None` when it has no tokenizer, the checkpoint's own
/// file for a Hugging Face directory, one built from the vocabulary for a GGUF file.
pub fn tokenizer_json(model: &Model) -> Result<Option<String>, TokenizerJsonError> {
    let Some(spec) = &model.tokenizer else {
        return Ok(None);
    };
    let vocab = match &spec.source {
        TokenizerSource::HfJson { path } => {
            return std::fs::read_to_string(path).map(Some).map_err(|source| {
                TokenizerJsonError::Read {
                    path: path.clone(),
                    source,
                }
            });
        }
        TokenizerSource::Gguf(vocab) => vocab,
    };
    let built = GgufTokenizer {
        vocab,
        generation: &model.generation,
        source: &model.source,
    };
    let json = match spec.kind {
        TokenizerKind::BytePairBpe => built.byte_level()?,
        TokenizerKind::SentencePiece => {
            built.sentencepiece(adds_space_prefix(model.config.architecture))?
        }
        TokenizerKind::Other => {
            return Err(TokenizerJsonError::UnsupportedModel {
                gguf: model.source.clone(),
            })
        }
    };
    Ok(Some(json.to_string()))
}

/// Whether a SentencePiece vocabulary prepends `▁` to the text. `GgufVocab` does not carry
/// `tokenizer.ggml.add_space_prefix`; llama.cpp's converter writes `false` for the Gemma family
/// alone, so the architecture stands in for it.
fn adds_space_prefix(architecture: Architecture) -> bool {
    !matches!(
        architecture,
        Architecture::Gemma | Architecture::Gemma2 | Architecture::Gemma3
    )
}

struct GgufTokenizer<'a> {
    vocab: &'a GgufVocab,
    generation: &'a GenerationDefaults,
    source: &'a PathBuf,
}

impl GgufTokenizer<'_> {
    fn error(&self, message: impl Into<String>) -> TokenizerJsonError {
        TokenizerJsonError::Vocab {
            gguf: self.source.clone(),
            message: message.into(),
        }
    }

    fn token_type(&self, id: usize) -> i32 {
        self.vocab
            .token_types
            .as_ref()
            .map_or(NORMAL, |types| types[id])
    }

    fn byte_level(&self) -> Result<Value, TokenizerJsonError> {
        let pre = self.vocab.pre.as_deref().unwrap_or("default");
        let rule = rule_for(pre).ok_or_else(|| TokenizerJsonError::UnsupportedPreTokenizer {
            gguf: self.source.clone(),
            pre: pre.to_string(),
        })?;
        let merges = self
            .vocab
            .merges
            .as_ref()
            .ok_or_else(|| self.error("a gpt2 tokenizer needs tokenizer.ggml.merges"))?;
        let merges = merges
            .iter()
            .map(|merge| {
                // The pair separator is the first space after the first character, as llama.cpp reads it.
                let split = merge
                    .char_indices()
                    .skip(1)
                    .find(|&(_, c)| c == ' ')
                    .map(|(at, _)| at)
                    .ok_or_else(|| self.error(format!("merge {merge:?} is not a pair")))?;
                Ok(json!([&merge[..split], &merge[split + 1..]]))
            })
            .collect::<Result<Vec<_>, TokenizerJsonError>>()?;
        let (vocab, _) = self.vocab_map(&self.vocab.tokens);
        Ok(self.document(
            json!({
                "type": "BPE",
                "dropout": null,
                "unk_token": null,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": false,
                "byte_fallback": false,
                "ignore_merges": rule.ignore_merges,
                "vocab": vocab,
                "merges": merges,
            }),
            &self.vocab.tokens,
            rule.to_json(),
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}),
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true}),
        ))
    }

    fn sentencepiece(&self, space_prefix: bool) -> Result<Value, TokenizerJsonError> {
        let tokens = respell_space_tokens(&self.vocab.tokens);
        for byte in 0..=255u8 {
            let piece = format!("<0x{byte:02X}>");
            if !tokens.contains(&piece) {
                return Err(self.error(format!("byte fallback token {piece} is missing")));
            }
        }
        let (vocab, ids) = self.vocab_map(&tokens);
        let unk = (0..tokens.len())
            .find(|&id| self.token_type(id) == UNKNOWN)
            .map(|id| tokens[id].clone());
        let mut decoders = vec![
            json!({"type": "Replace", "pattern": {"String": SPACE_MARK.to_string()}, "content": " "}),
            json!({"type": "ByteFallback"}),
            json!({"type": "Fuse"}),
        ];
        if space_prefix {
            // The `▁` added in front of the text decodes to a space nobody typed.
            decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
        }
        Ok(self.document(
            json!({
                "type": "BPE",
                "dropout": null,
                "unk_token": unk,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": true,
                "byte_fallback": true,
                "ignore_merges": false,
                "vocab": vocab,
                "merges": self.sentencepiece_merges(&tokens, &ids),
            }),
            &tokens,
            json!({
                "type": "Metaspace",
                "replacement": SPACE_MARK.to_string(),
                // Only the text's start gets the `▁`, not text after a special token (transformers 5).
                "prepend_scheme": if space_prefix { "first" } else { "never" },
                "split": false,
            }),
            json!({"type": "Sequence", "decoders": decoders}),
            Value::Null,
        ))
    }

    /// The merges a SentencePiece BPE vocabulary implies: every way to cut a normal piece into two
    /// pieces of the vocabulary, ranked by the merged piece's position (SentencePiece stores its
    /// pieces best-first) and then by the shorter left part, as transformers 5 recovers them.
    /// Positions rather than scores because Gemma's scores do not follow its merge order.
    fn sentencepiece_merges(&self, tokens: &[String], ids: &HashMap<&str, usize>) -> Vec<Value> {
        let mergeable = |id: usize| self.token_type(id) == NORMAL;
        let mut merges = Vec::new();
        for (id, token) in tokens.iter().enumerate() {
            if !mergeable(id) || ids.get(token.as_str()) != Some(&id) {
                continue;
            }
            for (at, _) in token.char_indices().skip(1) {
                let (left, right) = token.split_at(at);
                let known = |part: &str| ids.get(part).is_some_and(|&part_id| mergeable(part_id));
                if known(left) && known(right) {
                    merges.push(json!([left, right]));
                }
            }
        }
        merges
    }

    /// token -> id for every token; a text that appears twice keeps its first id.
    fn vocab_map<'t>(&self, tokens: &'t [String]) -> (Map<String, Value>, HashMap<&'t str, usize>) {
        let mut ids = HashMap::with_capacity(tokens.len());
        for (id, token) in tokens.iter().enumerate() {
            ids.entry(token.as_str()).or_insert(id);
        }
        let vocab = tokens
            .iter()
            .enumerate()
            .filter(|&(id, token)| ids[token.as_str()] == id)
            .map(|(id, token)| (token.clone(), json!(id)))
            .collect();
        (vocab, ids)
    }

    /// Control and unknown tokens become special added tokens, user-defined ones plain added
    /// tokens: both are matched whole in the raw text before any splitting, as llama.cpp does.
    fn added_tokens(&self, tokens: &[String]) -> Vec<Value> {
        (0..tokens.len())
            .filter_map(|id| {
                let special = match self.token_type(id) {
                    CONTROL | UNKNOWN => true,
                    USER_DEFINED => false,
                    _ => return None,
                };
                Some(json!({
                    "id": id,
                    "content": tokens[id],
                    "single_word": false,
                    "lstrip": false,
                    "rstrip": false,
                    "normalized": false,
                    "special": special,
                }))
            })
            .collect()
    }

    /// Prepends BOS when the checkpoint asks for it, like the Hugging Face tokenizers do; otherwise
    /// `fallback`.
    fn post_processor(&self, tokens: &[String], fallback: Value) -> Value {
        let bos = self
            .generation
            .bos_token_id
            .filter(|_| self.generation.add_bos)
            .and_then(|id| Some((id, tokens.get(id as usize)?)));
        let Some((id, bos)) = bos else {
            return fallback;
        };
        let special = |type_id: u32| json!({"SpecialToken": {"id": bos, "type_id": type_id}});
        let sequence =
            |name: &str, type_id: u32| json!({"Sequence": {"id": name, "type_id": type_id}});
        json!({
            "type": "TemplateProcessing",
            "single": [special(0), sequence("A", 0)],
            "pair": [special(0), sequence("A", 0), special(1), sequence("B", 1)],
            "special_tokens": {bos.as_str(): {"id": bos, "ids": [id], "tokens": [bos]}},
        })
    }

    fn document(
        &self,
        model: Value,
        tokens: &[String],
        pre_tokenizer: Value,
        decoder: Value,
        post_processor_without_bos: Value,
    ) -> Value {
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": self.added_tokens(tokens),
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": self.post_processor(tokens, post_processor_without_bos),
            "decoder": decoder,
            "model": model,
        })
    }
}

/// GGUF files spell SentencePiece's runs of spaces (`▁▁`) with real spaces; text reaches the model
/// with `▁` for every space, so those tokens are looked up under `▁` again.
fn respell_space_tokens(tokens: &[String]) -> Vec<String> {
    let present: std::collections::HashSet<&str> = tokens.iter().map(String::as_str).collect();
    tokens
        .iter()
        .map(|token| {
            let marked: String = token.chars().map(|_| SPACE_MARK).collect();
            if !token.is_empty()
                && token.chars().all(|c| c == ' ')
                && !present.contains(marked.as_str())
            {
                marked
            } else {
                token.clone()
            }
        })
        .collect()
}
