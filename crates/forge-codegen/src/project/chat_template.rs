//! The project's `chat_template.jinja`: the checkpoint's own chat template,
//! or, for a checkpoint without one, forge's fallback in the format the
//! model family was trained on — Gemma's turns for Gemma checkpoints,
//! ChatML (what llama.cpp falls back to) for the rest.

use forge_ir::{Architecture, Model, TokenizerSource};
use serde::Serialize;

use crate::templates::raw_template;

/// The file name, beside `Cargo.toml`.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// The template a project is given and the special tokens it is rendered with.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProjectChatTemplate {
    #[serde(skip)]
    pub source: String,
    /// The fallback format's name when the checkpoint has no template.
    pub fallback: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

impl ProjectChatTemplate {
    pub fn for_model(model: &Model) -> ProjectChatTemplate {
        if let Some(t) = &model.chat_template {
            return ProjectChatTemplate {
                source: t.source.clone(),
                fallback: None,
                bos_token: t.bos_token.clone(),
                eos_token: t.eos_token.clone(),
            };
        }
        let (name, file) = match model.config.architecture {
            Architecture::Gemma | Architecture::Gemma2 | Architecture::Gemma3 => {
                ("Gemma", "chat/gemma.jinja")
            }
            _ => ("ChatML", "chat/chatml.jinja"),
        };
        let g = &model.generation;
        ProjectChatTemplate {
            source: raw_template(file)
                .expect("the fallback chat templates are embedded")
                .to_string(),
            fallback: Some(name.to_string()),
            bos_token: g.bos_token_id.and_then(|id| token_text(model, id)),
            eos_token: g
                .eos_token_ids
                .first()
                .and_then(|&id| token_text(model, id)),
        }
    }
}

/// The text of token `id`: from the GGUF vocabulary, or a Hugging Face
/// `tokenizer.json`'s added tokens (where special tokens live) or vocabulary.
fn token_text(model: &Model, id: u32) -> Option<String> {
    match &model.tokenizer.as_ref()?.source {
        TokenizerSource::Gguf(vocab) => vocab.tokens.get(id as usize).cloned(),
        TokenizerSource::HfJson { path } => {
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
            let added = json["added_tokens"].as_array().into_iter().flatten();
            let from_added = added
                .filter(|t| t["id"].as_u64() == Some(id as u64))
                .find_map(|t| t["content"].as_str());
            let from_vocab = || {
                json["model"]["vocab"]
                    .as_object()?
                    .iter()
                    .find(|(_, v)| v.as_u64() == Some(id as u64))
                    .map(|(k, _)| k.as_str())
            };
            from_added.or_else(from_vocab).map(str::to_string)
        }
    }
}
