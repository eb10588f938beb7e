//! `tokenizer.json`, `tokenizer_config.json` and `generation_config.json`:
//! the tokenizer kind and size, special tokens, chat template and stop ids.

use std::collections::HashMap;
use std::path::Path;

use forge_ir::{ChatTemplate, GenerationDefaults, TokenizerKind, TokenizerSource, TokenizerSpec};
use serde_json::Value;

use super::json::JsonObject;
use crate::Result;

/// What `tokenizer.json` tells us: its kind, size and token -> id table for special tokens.
pub struct HfTokenizer {
    pub spec: TokenizerSpec,
    ids: HashMap<String, u32>,
    /// Whether the post-processor prepends a special token (Llama 3 style BOS).
    pub post_processor_adds_bos: bool,
}

impl HfTokenizer {
    pub fn read(path: &Path) -> Result<HfTokenizer> {
        let json = JsonObject::read(path)?;
        let model = json
            .object("model")?
            .ok_or_else(|| json.error("missing required field model"))?;
        let model_type = model.opt_str("type")?.unwrap_or("BPE").to_string();
        let mut ids = HashMap::new();
        match model.get("vocab") {
            Some(Value::Object(vocab)) => {
                for (token, id) in vocab {
                    let id = id
                        .as_u64()
                        .and_then(|i| u32::try_from(i).ok())
                        .ok_or_else(|| {
                            json.error(format!("model.vocab[{token:?}] is not a token id"))
                        })?;
                    ids.insert(token.clone(), id);
                }
            }
            // Unigram vocabularies are [token, score] pairs in id order.
            Some(Value::Array(items)) => {
                for (id, item) in items.iter().enumerate() {
                    let token = item.get(0).and_then(Value::as_str).ok_or_else(|| {
                        json.error(format!("model.vocab[{id}] is not a [token, score] pair"))
                    })?;
                    ids.insert(token.to_string(), id as u32);
                }
            }
            _ => return Err(json.error("model.vocab is missing or not a table")),
        }
        if let Some(Value::Array(added)) = json.get("added_tokens") {
            for t in added {
                let content = t.get("content").and_then(Value::as_str);
                let id = t
                    .get("id")
                    .and_then(Value::as_u64)
                    .and_then(|i| u32::try_from(i).ok());
                match (content, id) {
                    (Some(c), Some(id)) => {
                        ids.insert(c.to_string(), id);
                    }
                    _ => {
                        return Err(
                            json.error(format!("added_tokens entry {t} lacks content or id"))
                        )
                    }
                }
            }
        }
        let byte_fallback = model.opt_bool("byte_fallback")?.unwrap_or(false);
        let kind = match model_type.as_str() {
            "BPE" if byte_fallback => TokenizerKind::SentencePiece,
            "BPE" => TokenizerKind::BytePairBpe,
            _ => TokenizerKind::Other,
        };
        let vocab_size = ids.values().map(|&id| u64::from(id) + 1).max().unwrap_or(0);
        let post_processor_adds_bos = json
            .get("post_processor")
            .is_some_and(template_starts_with_special);
        Ok(HfTokenizer {
            spec: TokenizerSpec {
                kind,
                vocab_size,
                source: TokenizerSource::HfJson {
                    path: path.to_path_buf(),
                },
            },
            ids,
            post_processor_adds_bos,
        })
    }

    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }
}

/// True when a TemplateProcessing (possibly inside a Sequence) begins `single` with a special token.
fn template_starts_with_special(p: &Value) -> bool {
    match p.get("type").and_then(Value::as_str) {
        Some("TemplateProcessing") => p
            .get("single")
            .and_then(Value::as_array)
            .and_then(|s| s.first())
            .is_some_and(|first| first.get("SpecialToken").is_some()),
        Some("Sequence") => p
            .get("processors")
            .and_then(Value::as_array)
            .is_some_and(|ps| ps.iter().any(template_starts_with_special)),
        _ => false,
    }
}

/// A special token in tokenizer_config.json: a string or `{"content": ...}`.
fn special_token(cfg: &JsonObject, key: &str) -> Result<Option<String>> {
    match cfg.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(cfg.error(format!("{key} has no string content"))),
        },
        Some(v) => Err(cfg.error(format!("{key} must be a token string, found {v}"))),
    }
}

/// The chat template: a string, or a list of named templates of which "default" is used.
fn chat_template(cfg: &JsonObject) -> Result<Option<String>> {
    match cfg.get("chat_template") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(items)) => {
            let named = |want: &str| {
                items.iter().find_map(|t| {
                    (t.get("name").and_then(Value::as_str) == Some(want))
                        .then(|| t.get("template").and_then(Value::as_str))
                        .flatten()
                })
            };
            named("default")
                .or_else(|| {
                    items
                        .first()
                        .and_then(|t| t.get("template"))
                        .and_then(Value::as_str)
                })
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| cfg.error("chat_template list has no template"))
        }
        Some(v) => Err(cfg.error(format!(
            "chat_template must be a string or a list, found {}",
            short(v)
        ))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", &s[..s.floor_char_boundary(60)])
    } else {
        s
    }
}

/// Token ids under `key`: one id or a list of ids.
fn ids(cfg: &JsonObject, key: &str) -> Result<Vec<u32>> {
    let to_id = |v: &Value| {
        v.as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| cfg.error(format!("{key} must be token ids, found {v}")))
    };
    match cfg.get(key) {
        None => Ok(vec![]),
        Some(Value::Array(items)) => items.iter().map(to_id).collect(),
        Some(v) => Ok(vec![to_id(v)?]),
    }
}

pub struct HfGenerationInfo {
    pub defaults: GenerationDefaults,
    pub chat_template: Option<ChatTemplate>,
}

/// Combines the three files' views of special tokens: generation_config.json
/// wins for ids, tokenizer_config.json for token strings and add_bos.
pub fn generation_info(
    dir: &Path,
    config: &JsonObject,
    tokenizer: Option<&HfTokenizer>,
) -> Result<HfGenerationInfo> {
    let read_opt = |name: &str| -> Result<Option<JsonObject>> {
        let path = dir.join(name);
        if path.exists() {
            JsonObject::read(&path).map(Some)
        } else {
            Ok(None)
        }
    };
    let tok_cfg = read_opt("tokenizer_config.json")?;
    let gen_cfg = read_opt("generation_config.json")?;

    let mut eos = Vec::new();
    let mut bos = None;
    for source in gen_cfg.iter().chain(std::iter::once(config)) {
        for id in ids(source, "eos_token_id")? {
            if !eos.contains(&id) {
                eos.push(id);
            }
        }
        bos = bos.or(ids(source, "bos_token_id")?.first().copied());
    }
    let mut template = None;
    let mut add_bos = tokenizer.is_some_and(|t| t.post_processor_adds_bos);
    let mut bos_token = None;
    let mut eos_token = None;
    if let Some(tc) = &tok_cfg {
        bos_token = special_token(tc, "bos_token")?;
        eos_token = special_token(tc, "eos_token")?;
        if let Some(t) = tokenizer {
            if let Some(id) = eos_token.as_deref().and_then(|s| t.id(s)) {
                if !eos.contains(&id) {
                    eos.push(id);
                }
            }
            bos = bos.or(bos_token.as_deref().and_then(|s| t.id(s)));
        }
        if let Some(b) = tc.opt_bool("add_bos_token")? {
            add_bos = b;
        }
        template = chat_template(tc)?;
    }
    // Newer checkpoints ship the template as its own file.
    let jinja = dir.join("chat_template.jinja");
    if template.is_none() && jinja.exists() {
        let text = std::fs::read(&jinja)
            .map_err(|e| crate::Error::new(&jinja, format!("cannot read: {e}")))?;
        template = Some(
            String::from_utf8(text)
                .map_err(|_| crate::Error::new(&jinja, "chat template is not UTF-8"))?,
        );
    }
    let sampling = |key: &str| -> Result<Option<f64>> {
        match &gen_cfg {
            Some(g) => g.opt_f64(key),
            None => Ok(None),
        }
    };
    let top_k = match &gen_cfg {
        Some(g) => g.opt_u64("top_k")?.and_then(|k| u32::try_from(k).ok()),
        None => None,
    };
    let pad = match &gen_cfg {
        Some(g) => ids(g, "pad_token_id")?.first().copied(),
        None => None,
    }
    .or(ids(config, "pad_token_id")?.first().copied());
    Ok(HfGenerationInfo {
        defaults: GenerationDefaults {
            bos_token_id: bos,
            eos_token_ids: eos,
            pad_token_id: pad,
            add_bos,
            temperature: sampling("temperature")?.map(|v| v as f32),
            top_k,
            top_p: sampling("top_p")?.map(|v| v as f32),
        },
        chat_template: template.map(|source| ChatTemplate {
            source,
            bos_token,
            eos_token,
        }),
    })
}
