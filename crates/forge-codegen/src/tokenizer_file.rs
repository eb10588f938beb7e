//! The generated project's tokenizer file: a Hugging Face checkpoint's own `tokenizer.json`
//! (read by the `tokenizers` crate), or, for a GGUF file, `gguf_vocab.json`: its vocabulary
//! resolved the way llama.cpp loads it, which forge-runtime tokenizes as llama.cpp does.

mod gguf_vocab;
mod pre_tokenizer;

use std::path::PathBuf;

use forge_ir::{Model, TokenizerSource};

pub use gguf_vocab::{attr, GGUF_VOCAB_FILE};
pub use pre_tokenizer::{rule_for, PreTokenizerRule};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerFileError {
    #[error("cannot read tokenizer file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{gguf}: the GGUF tokenizer model is neither `gpt2` (byte-level BPE) nor `llama` \
         (SentencePiece); forge tokenizes those two only"
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

/// One file of the project: its name beside `Cargo.toml` and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizerFile {
    pub name: &'static str,
    pub contents: String,
}

/// The tokenizer file for `model`: `None` when it has no tokenizer.
pub fn tokenizer_file(model: &Model) -> Result<Option<TokenizerFile>, TokenizerFileError> {
    let Some(spec) = &model.tokenizer else {
        return Ok(None);
    };
    let file = match &spec.source {
        TokenizerSource::HfJson { path } => TokenizerFile {
            name: "tokenizer.json",
            contents: std::fs::read_to_string(path).map_err(|source| TokenizerFileError::Read {
                path: path.clone(),
                source,
            })?,
        },
        TokenizerSource::Gguf(vocab) => TokenizerFile {
            name: GGUF_VOCAB_FILE,
            contents: gguf_vocab::resolve(model, spec.kind, vocab)?,
        },
    };
    Ok(Some(file))
}
