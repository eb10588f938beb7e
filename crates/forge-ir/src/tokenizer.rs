//! How text becomes tokens and back, how chats are formatted, and when generation stops.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerKind {
    /// Byte-level BPE with merges (GPT-2 style; GGUF `tokenizer.ggml.model = gpt2`).
    BytePairBpe,
    /// SentencePiece BPE with scores and byte fallback (GGUF `tokenizer.ggml.model = llama`).
    SentencePiece,
    /// Unigram or word-level models, carried through as the tokenizer.json describes them.
    Other,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenizerSpec {
    pub kind: TokenizerKind,
    pub vocab_size: u64,
    pub source: TokenizerSource,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum TokenizerSource {
    /// A Hugging Face `tokenizer.json`, used as is.
    HfJson { path: PathBuf },
    /// The vocabulary a GGUF file carries in its `tokenizer.ggml.*` keys.
    Gguf(GgufVocab),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GgufVocab {
    pub tokens: Vec<String>,
    pub scores: Option<Vec<f32>>,
    /// llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    pub token_types: Option<Vec<i32>>,
    pub merges: Option<Vec<String>>,
    /// The pre-tokenizer llama.cpp's converter recognised (`tokenizer.ggml.pre`).
    pub pre: Option<String>,
    /// `tokenizer.ggml.add_bos_token`, `add_eos_token` and `add_space_prefix` as the file has
    /// them; `None` where it has not, so llama.cpp's default for the vocabulary applies.
    pub add_bos_token: Option<bool>,
    pub add_eos_token: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.ggml.<role>_token_id` for every role the file names, keyed by role
    /// (`bos`, `eos`, `eot`, `unknown`, `padding`, ...).
    pub token_ids: BTreeMap<String, u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatTemplate {
    /// Jinja source as the checkpoint ships it.
    pub source: String,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

/// Token ids and sampling settings a checkpoint asks for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationDefaults {
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    /// Prepend BOS when encoding a prompt.
    pub add_bos: bool,
    pub temperature: Option<f32>,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
}
