//! `tokenizer.ggml.*` and `tokenizer.chat_template` -> tokenizer spec, chat template, stop ids.

use std::collections::BTreeMap;

use forge_ir::{
    ChatTemplate, GenerationDefaults, GgufVocab, TokenizerKind, TokenizerSource, TokenizerSpec,
};
use forge_weights::gguf::GgufValue;

use super::metadata::Metadata;
use crate::Result;

fn as_string(v: &GgufValue) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn as_f32(v: &GgufValue) -> Option<f32> {
    v.as_f64().map(|f| f as f32)
}

fn as_i32(v: &GgufValue) -> Option<i32> {
    v.as_i64().and_then(|i| i32::try_from(i).ok())
}

fn id(m: &Metadata, key: &str) -> Result<Option<u32>> {
    Ok(m.opt_u64_raw(key)?.and_then(|v| u32::try_from(v).ok()))
}

/// The `tokenizer.ggml.<role>_token_id` roles llama.cpp reads (`seperator` is its spelling).
const TOKEN_ID_ROLES: [&str; 17] = [
    "bos",
    "eos",
    "eot",
    "eom",
    "unknown",
    "seperator",
    "padding",
    "mask",
    "fim_pre",
    "fim_suf",
    "fim_mid",
    "fim_pad",
    "fim_rep",
    "fim_sep",
    "prefix",
    "suffix",
    "middle",
];

fn token_ids(m: &Metadata) -> Result<BTreeMap<String, u32>> {
    let mut ids = BTreeMap::new();
    for role in TOKEN_ID_ROLES {
        if let Some(id) = id(m, &format!("tokenizer.ggml.{role}_token_id"))? {
            ids.insert(role.to_string(), id);
        }
    }
    Ok(ids)
}

pub fn read(
    m: &Metadata,
) -> Result<(
    Option<TokenizerSpec>,
    Option<ChatTemplate>,
    GenerationDefaults,
)> {
    let model = m.opt_str_raw("tokenizer.ggml.model")?;
    let tokens = m.array("tokenizer.ggml.tokens", as_string)?;
    let bos = id(m, "tokenizer.ggml.bos_token_id")?;
    let mut eos_ids = Vec::new();
    for key in [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ] {
        if let Some(id) = id(m, key)? {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
    }
    let kind = match model {
        Some("gpt2") => TokenizerKind::BytePairBpe,
        Some("llama") => TokenizerKind::SentencePiece,
        _ => TokenizerKind::Other,
    };
    // llama.cpp prepends BOS by default for SentencePiece vocabularies only.
    let add_bos_token = m.opt_bool_raw("tokenizer.ggml.add_bos_token")?;
    let add_bos = add_bos_token.unwrap_or(kind == TokenizerKind::SentencePiece);
    let tokenizer = match (model, tokens) {
        (Some(_), Some(tokens)) => {
            let n = tokens.len();
            let scores = m.array("tokenizer.ggml.scores", as_f32)?;
            let token_types = m.array("tokenizer.ggml.token_type", as_i32)?;
            for (key, len) in [
                ("tokenizer.ggml.scores", scores.as_ref().map(Vec::len)),
                (
                    "tokenizer.ggml.token_type",
                    token_types.as_ref().map(Vec::len),
                ),
            ] {
                if let Some(len) = len.filter(|&l| l != n) {
                    return Err(m.error(format!("{key} has {len} entries for {n} tokens")));
                }
            }
            Some(TokenizerSpec {
                kind,
                vocab_size: n as u64,
                source: TokenizerSource::Gguf(GgufVocab {
                    tokens,
                    scores,
                    token_types,
                    merges: m.array("tokenizer.ggml.merges", as_string)?,
                    pre: m.opt_str_raw("tokenizer.ggml.pre")?.map(str::to_string),
                    add_bos_token,
                    add_eos_token: m.opt_bool_raw("tokenizer.ggml.add_eos_token")?,
                    add_space_prefix: m.opt_bool_raw("tokenizer.ggml.add_space_prefix")?,
                    token_ids: token_ids(m)?,
                }),
            })
        }
        _ => None,
    };
    let token_text = |id: Option<u32>| -> Option<String> {
        let TokenizerSource::Gguf(v) = &tokenizer.as_ref()?.source else {
            return None;
        };
        v.tokens.get(id? as usize).cloned()
    };
    let chat_template = m
        .opt_str_raw("tokenizer.chat_template")?
        .map(|source| ChatTemplate {
            source: source.to_string(),
            bos_token: token_text(bos),
            eos_token: token_text(eos_ids.first().copied()),
        });
    Ok((
        tokenizer,
        chat_template,
        GenerationDefaults {
            bos_token_id: bos,
            eos_token_ids: eos_ids,
            pad_token_id: id(m, "tokenizer.ggml.padding_token_id")?,
            add_bos,
            temperature: None,
            top_k: None,
            top_p: None,
        },
    ))
}
