//! The host side of a generated project: its Cargo.toml, README and
//! `src/main.rs` (what the project tells forge-runtime about itself), and the
//! vendored forge-runtime and msl-emu crates. `model.rs` and
//! `shaders/kernels.metal` are rendered elsewhere.

use std::path::PathBuf;

use forge_ir::{Model, SourceFormat};
use serde::Serialize;

use super::chat_template::ProjectChatTemplate;
use crate::plan::WeightPlan;
use crate::templates::{render, FORGE_RUNTIME_SOURCES, MSL_EMU_SOURCES};

/// One file of the generated project, its path relative to the project root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: PathBuf,
    pub contents: String,
}

/// llama.cpp's sampling defaults, used where the checkpoint names none.
const LLAMA_CPP_TEMPERATURE: f32 = 0.8;
const LLAMA_CPP_TOP_K: u32 = 40;
const LLAMA_CPP_TOP_P: f32 = 0.95;
const LLAMA_CPP_MIN_P: f32 = 0.05;
const LLAMA_CPP_REPEAT_PENALTY: f32 = 1.0;

/// What the host templates need from the lowering's plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostPlan {
    /// Storage dtype(s) of the weight matrices, lower case (`q8_0`, or `f16/q8_0` when mixed).
    pub dtype: String,
    /// The KV caches in one line (dtype, layers, bytes per token); `None`
    /// for models without attention.
    pub kv_cache: Option<String>,
    /// Recurrent layers' state in one line (shapes, layers, bytes).
    pub recurrent_state: Option<String>,
    /// A mixture's experts in one line (count, top-k, shared expert, the
    /// share of the weights a decode token reads); `None` without experts.
    pub experts: Option<String>,
    /// Positions a sequence may reach (`model::CONTEXT_LENGTH`).
    pub context_length: u64,
    /// Rows of the logits (`model::VOCAB_SIZE`).
    pub vocab_size: u64,
    /// The weight plan's fingerprint, which `weights.gguf` must carry.
    pub fingerprint: String,
    /// `--dtype` as the compile was given it (lower case), for the re-export hint.
    pub export_dtype: Option<String>,
}

impl HostPlan {
    /// The experts line of the README: how many, how chosen, and the share
    /// of the weights' bytes a decode token reads (all but the unchosen
    /// experts' part of the stacked `_exps` tensors and their scales).
    pub fn experts_line(config: &forge_ir::ModelConfig, weights: &WeightPlan) -> Option<String> {
        let m = config.moe.as_ref()?;
        // Quant and scale planes hold the same bytes as the blocks they come from.
        let bytes = |t: &crate::plan::PlannedTensor| {
            t.dtype
                .bytes_for(t.shape.iter().product())
                .unwrap_or_default()
        };
        let total: u64 = weights.tensors.iter().map(bytes).sum();
        let stacked: u64 = weights
            .tensors
            .iter()
            .filter(|t| t.name.contains("_exps."))
            .map(bytes)
            .sum();
        let read = total - stacked + stacked * m.experts_per_token / m.num_experts;
        let moe_layers = config
            .layers
            .iter()
            .filter(|l| l.feed_forward == forge_ir::FeedForwardKind::MixtureOfExperts)
            .count();
        let mut line = format!(
            "{} of width {} in {moe_layers} of {} layers, top {} by softmax{}",
            m.num_experts,
            m.expert_intermediate_size,
            config.layers.len(),
            m.experts_per_token,
            if m.renormalize { ", renormalised" } else { "" },
        );
        if let Some(w) = m.shared_intermediate_size {
            let gate = if m.shared_gated { "sigmoid-gated " } else { "" };
            line += &format!(", plus a {gate}shared expert of width {w}");
        }
        line += &format!(
            "; a decode token reads its chosen experts only: {:.0}% of the weights",
            100.0 * read as f64 / total.max(1) as f64
        );
        Some(line)
    }

    /// The lower-case dtype names of the plan's matrices, sorted and joined with `/`.
    pub fn weights_dtype(weights: &WeightPlan) -> String {
        let mut names: Vec<String> = weights
            .tensors
            .iter()
            .filter(|t| t.shape.len() == 2)
            .map(|t| t.dtype.name().to_lowercase())
            .collect();
        names.sort();
        names.dedup();
        names.join("/")
    }
}

/// Everything the host and project templates read. Public fields, so a
/// caller can adjust what `new` derives (e.g. add `measurements`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HostContext {
    /// Cargo package and binary name.
    pub package_name: String,
    /// The checkpoint's human name.
    pub model_name: String,
    /// One line: architecture, sizes, dtypes (Cargo description and README).
    pub description: String,
    pub architecture: String,
    /// Where the model came from, without machine-specific paths.
    pub source: String,
    pub dtype: String,
    /// Layer count and kinds: `4: short_conv ×3, attention ×1`.
    pub layers: String,
    /// `none` for models without a KV cache.
    pub kv_cache: String,
    pub recurrent_state: Option<String>,
    pub experts: Option<String>,
    pub has_tokenizer: bool,
    /// The tokenizer's file beside `Cargo.toml`: `tokenizer.json` (a Hugging Face checkpoint's
    /// own) or `gguf_vocab.json` (a GGUF vocabulary, tokenized as llama.cpp does).
    pub tokenizer_file: Option<String>,
    pub vocab_size: u64,
    pub context_length: u64,
    /// Ids that end generation (tokenizer and generation config), in order, without repeats.
    pub eos_ids: Vec<u32>,
    pub bos_id: Option<u32>,
    /// Prepend `bos_id` to prompts.
    pub add_bos: bool,
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    /// Which sampling defaults came from the checkpoint, for the docs.
    pub defaults_origin: String,
    /// The chat template the project is given (its special tokens, whether a fallback).
    pub chat: ProjectChatTemplate,
    /// Markdown for the README's "Measured" section, when numbers exist.
    pub measurements: Option<String>,
    /// The weight plan's fingerprint.
    pub fingerprint: String,
    /// The checkpoint as the compile was given it, for the re-export hint.
    pub model_hint: String,
    /// The re-export command's flags (` --dtype q8_0`, or empty).
    pub export_flags: String,
    pub forge_version: String,
}

impl HostContext {
    pub fn new(
        model: &Model,
        plan: &HostPlan,
        summary: &str,
        tokenizer_file: Option<&str>,
    ) -> HostContext {
        let g = &model.generation;
        let vocab = plan.vocab_size;
        let mut eos_ids: Vec<u32> = Vec::new();
        for &id in &g.eos_token_ids {
            if (id as u64) < vocab && !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        let bos_id = g.bos_token_id.filter(|&id| (id as u64) < vocab);
        let mut from_checkpoint = Vec::new();
        let temperature = match g.temperature.filter(|t| t.is_finite() && *t >= 0.0) {
            Some(t) => {
                from_checkpoint.push("temperature");
                t
            }
            None => LLAMA_CPP_TEMPERATURE,
        };
        let top_k = match g.top_k {
            Some(k) => {
                from_checkpoint.push("top-k");
                k
            }
            None => LLAMA_CPP_TOP_K,
        };
        let top_p = match g.top_p.filter(|p| *p > 0.0 && *p <= 1.0) {
            Some(p) => {
                from_checkpoint.push("top-p");
                p
            }
            None => LLAMA_CPP_TOP_P,
        };
        let defaults_origin = match from_checkpoint.len() {
            0 => "llama.cpp's defaults".to_string(),
            3 => {
                "the checkpoint's generation config; min-p and repeat penalty: llama.cpp's defaults"
                    .to_string()
            }
            _ => format!(
                "{} from the checkpoint's generation config, the rest llama.cpp's defaults",
                from_checkpoint.join(" and ")
            ),
        };
        let source = match model.format {
            SourceFormat::HuggingFace => "a Hugging Face checkpoint (safetensors)".to_string(),
            SourceFormat::Gguf => match model.source.file_name() {
                Some(name) => format!("the GGUF file `{}`", name.to_string_lossy()),
                None => "a GGUF file".to_string(),
            },
        };
        HostContext {
            package_name: package_name(&model.name),
            model_name: one_line(&model.name),
            description: one_line(summary),
            architecture: model.config.architecture.name().to_string(),
            source,
            dtype: plan.dtype.clone(),
            layers: format!(
                "{}: {}",
                model.config.num_layers,
                model.config.describe_layer_kinds()
            ),
            kv_cache: plan.kv_cache.clone().unwrap_or_else(|| "none".to_string()),
            recurrent_state: plan.recurrent_state.clone(),
            experts: plan.experts.clone(),
            has_tokenizer: tokenizer_file.is_some(),
            tokenizer_file: tokenizer_file.map(str::to_string),
            vocab_size: vocab,
            context_length: plan.context_length,
            eos_ids,
            bos_id,
            add_bos: g.add_bos && bos_id.is_some(),
            temperature,
            top_k,
            top_p,
            min_p: LLAMA_CPP_MIN_P,
            repeat_penalty: LLAMA_CPP_REPEAT_PENALTY,
            defaults_origin,
            chat: ProjectChatTemplate::for_model(model),
            measurements: None,
            fingerprint: plan.fingerprint.clone(),
            model_hint: model.source.display().to_string(),
            export_flags: plan
                .export_dtype
                .as_ref()
                .map_or(String::new(), |d| format!(" --dtype {d}")),
            forge_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The context as the templates see it: the fields, plus the same values
/// escaped for the languages they are pasted into.
#[derive(Serialize)]
struct TemplateContext<'a> {
    #[serde(flatten)]
    host: &'a HostContext,
    temperature_literal: String,
    top_p_literal: String,
    min_p_literal: String,
    repeat_penalty_literal: String,
    eos_ids_literal: String,
    description_toml: String,
}

/// An f32 as a Rust literal that reads back exactly (`0.8`, `1.0`).
fn rust_f32(v: f32) -> String {
    format!("{v:?}")
}

/// A `&[u32]` literal laid out as rustfmt lays it out on a line indented by
/// `indent`: on one line up to 60 columns, else packed lines of at most 100
/// columns.
fn rust_u32_slice(ids: &[u32], indent: usize) -> String {
    let items: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    let one_line = format!("[{}]", items.join(", "));
    if one_line.len() <= 60 {
        return format!("&{one_line}");
    }
    let pad = " ".repeat(indent);
    let mut out = String::from("&[\n");
    let mut line = String::new();
    for item in items {
        if !line.is_empty() && indent + 4 + line.len() + 2 + item.len() + 1 > 100 {
            out.push_str(&format!("{pad}    {line},\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push_str(", ");
        }
        line.push_str(&item);
    }
    out.push_str(&format!("{pad}    {line},\n{pad}]"));
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Names Cargo refuses for a package or binary, or that clash with the standard crates.
const RESERVED: &[&str] = &[
    "alloc",
    "build",
    "core",
    "deps",
    "examples",
    "incremental",
    "proc-macro",
    "proc_macro",
    "std",
    "test",
    "self",
    "super",
    "crate",
    "con",
    "aux",
    "nul",
    "prn",
];

/// A Cargo package name from a model name: lower case ASCII letters, digits
/// and single dashes, starting with a letter (`SmolLM2 135M Instruct` ->
/// `smollm2-135m-instruct`).
pub fn package_name(model_name: &str) -> String {
    let mut name = String::new();
    for c in model_name.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    while name.ends_with('-') {
        name.pop();
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert_str(0, if name.is_empty() { "model" } else { "model-" });
    }
    if RESERVED.contains(&name.as_str()) {
        name.push_str("-model");
    }
    name
}

/// Template -> output path of every rendered host and project file.
const RENDERED: &[(&str, &str)] = &[
    ("project/Cargo.toml.j2", "Cargo.toml"),
    ("project/README.md.j2", "README.md"),
    ("project/gitignore.j2", ".gitignore"),
    ("project/msl-emu.Cargo.toml.j2", "msl-emu/Cargo.toml"),
    ("host/main.rs.j2", "src/main.rs"),
];

/// Renders the host and project files and copies in the forge-runtime and
/// msl-emu sources (under `forge-runtime/` and `msl-emu/`), in a fixed order.
pub fn host_files(ctx: &HostContext) -> Result<Vec<GeneratedFile>, minijinja::Error> {
    let view = TemplateContext {
        host: ctx,
        temperature_literal: rust_f32(ctx.temperature),
        top_p_literal: rust_f32(ctx.top_p),
        min_p_literal: rust_f32(ctx.min_p),
        repeat_penalty_literal: rust_f32(ctx.repeat_penalty),
        // `eos_ids` is a field of `PROJECT.text` in main.rs, 8 columns in.
        eos_ids_literal: rust_u32_slice(&ctx.eos_ids, 8),
        description_toml: toml_string(&ctx.description),
    };
    let mut files = Vec::new();
    for (template, path) in RENDERED {
        files.push(GeneratedFile {
            path: PathBuf::from(path),
            contents: render(template, &view)?,
        });
    }
    for (dir, sources) in [
        ("forge-runtime", FORGE_RUNTIME_SOURCES),
        ("msl-emu", MSL_EMU_SOURCES),
    ] {
        for (path, contents) in sources {
            files.push(GeneratedFile {
                path: PathBuf::from(dir).join(path),
                contents: contents.to_string(),
            });
        }
    }
    Ok(files)
}
