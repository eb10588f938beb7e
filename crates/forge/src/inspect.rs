//! `forge inspect`: what a checkpoint is, in a few lines or as JSON.

use std::collections::BTreeMap;

use forge_codegen::plan::{human_bytes, CompileOptions, SequenceMemory};
use forge_ir::{FeedForwardKind, Model, SsmConfig, TokenizerKind, TokenizerSource};
use serde::Serialize;

/// Everything `inspect` reports; also the `--json` schema.
#[derive(Serialize)]
pub struct Summary<'a> {
    pub name: &'a str,
    pub source: String,
    pub format: forge_ir::SourceFormat,
    pub architecture: &'static str,
    pub parameters: u64,
    pub layers: u64,
    pub hidden_size: u64,
    pub feed_forward_length: Option<u64>,
    pub heads: Option<u64>,
    pub kv_heads: Option<u64>,
    pub head_dim: Option<u64>,
    pub vocab_size: u64,
    pub context_length: u64,
    pub tie_word_embeddings: bool,
    /// One entry per layer: `attention`, `sliding_attention`, `mamba`,
    /// `mamba2`, `short_conv`, `attention_mamba2` or `mlp`, with `+moe` for
    /// expert layers.
    pub layer_types: Vec<String>,
    /// How many layers of each of those kinds, in order of first appearance.
    pub layer_kinds: Vec<LayerKindCount>,
    /// KV cache per token of context and fixed recurrent state, as `forge
    /// compile` with default options lays them out; `None` (with
    /// `memory_unknown` saying why) when it cannot compile the model.
    pub memory: Option<SequenceMemory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_unknown: Option<String>,
    pub tokenizer: Option<TokenizerSummary>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: &'a [u32],
    pub add_bos: bool,
    pub chat_template: bool,
    /// Checkpoint tensors the model uses, by storage type.
    pub tensors: BTreeMap<String, DTypeCount>,
    pub tensor_count: usize,
    pub tensor_bytes: u64,
    /// The full configuration forge derived.
    pub config: &'a forge_ir::ModelConfig,
}

#[derive(Serialize)]
pub struct LayerKindCount {
    pub kind: String,
    pub count: u64,
}

#[derive(Serialize)]
pub struct TokenizerSummary {
    pub kind: TokenizerKind,
    pub source: &'static str,
    pub vocab_size: u64,
}

#[derive(Serialize, Default)]
pub struct DTypeCount {
    pub count: usize,
    pub bytes: u64,
}

pub fn summarize(model: &Model) -> Summary<'_> {
    let c = &model.config;
    let a = c.attention.as_ref();
    // Canonical tensors split from one stored tensor (Phi-3 qkv, expert stacks) count once.
    let mut seen = std::collections::BTreeSet::new();
    let mut tensors: BTreeMap<String, DTypeCount> = BTreeMap::new();
    for t in model.tensors.iter() {
        let key = (t.source.file.clone(), t.source.name.clone());
        let entry = tensors.entry(t.dtype.name().to_string()).or_default();
        entry.bytes += t.source.n_bytes;
        if seen.insert(key) {
            entry.count += 1;
        }
    }
    let (memory, memory_unknown) =
        match forge_codegen::plan::lower(model, &CompileOptions::default()) {
            Ok(plan) => (Some(plan.sequence_memory()), None),
            Err(e) => (None, Some(e.to_string())),
        };
    Summary {
        name: &model.name,
        source: model.source.display().to_string(),
        format: model.format,
        architecture: c.architecture.name(),
        parameters: model.tensors.iter().filter_map(|t| t.elements()).sum(),
        layers: c.num_layers,
        hidden_size: c.hidden_size,
        feed_forward_length: c
            .feed_forward
            .as_ref()
            .map(|f| f.intermediate_size)
            .or(c.moe.as_ref().map(|m| m.expert_intermediate_size)),
        heads: a.map(|a| a.num_heads),
        kv_heads: a.map(|a| a.num_kv_heads),
        head_dim: a.map(|a| a.head_dim),
        vocab_size: c.vocab_size,
        context_length: c.context_length,
        tie_word_embeddings: c.tie_word_embeddings,
        layer_types: c.layer_kind_names(),
        layer_kinds: c
            .layer_kind_counts()
            .into_iter()
            .map(|(kind, count)| LayerKindCount { kind, count })
            .collect(),
        memory,
        memory_unknown,
        tokenizer: model.tokenizer.as_ref().map(|t| TokenizerSummary {
            kind: t.kind,
            source: match t.source {
                TokenizerSource::HfJson { .. } => "tokenizer.json",
                TokenizerSource::Gguf(_) => "gguf",
            },
            vocab_size: t.vocab_size,
        }),
        bos_token_id: model.generation.bos_token_id,
        eos_token_ids: &model.generation.eos_token_ids,
        add_bos: model.generation.add_bos,
        chat_template: model.chat_template.is_some(),
        tensor_count: tensors.values().map(|d| d.count).sum(),
        tensor_bytes: tensors.values().map(|d| d.bytes).sum(),
        tensors,
        config: c,
    }
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// Consecutive layers of the same type, as `0-29 attention`.
fn layer_runs(types: &[String]) -> Vec<String> {
    let mut runs: Vec<(usize, usize, &str)> = Vec::new();
    for (i, t) in types.iter().enumerate() {
        match runs.last_mut() {
            Some((_, end, kind)) if *kind == t.as_str() => *end = i,
            _ => runs.push((i, i, t)),
        }
    }
    runs.into_iter()
        .map(|(s, e, kind)| {
            if s == e {
                format!("{s}: {kind}")
            } else {
                format!("{s}-{e}: {kind}")
            }
        })
        .collect()
}

/// `KV cache 2.0 KiB per token of context (f16, 2 of 4 layers); recurrent state ...`.
fn describe_memory(m: &SequenceMemory, total_layers: u64) -> String {
    let layers = |n: u64| format!("{n} of {total_layers} layers");
    let mut parts = Vec::new();
    if let Some(dtype) = m.cache_dtype.filter(|_| m.cache_layers > 0) {
        parts.push(format!(
            "KV cache {} per token of context ({}, {})",
            human_bytes(m.cache_bytes_per_token),
            dtype.name().to_lowercase(),
            layers(m.cache_layers)
        ));
    }
    if m.state_layers > 0 {
        parts.push(format!(
            "recurrent state {} whatever the context (f32, {})",
            human_bytes(m.state_bytes),
            layers(m.state_layers)
        ));
    }
    parts.join("; ")
}

/// `8 of width 1408 in 23 of 24 layers, top 4 of the softmax as is; shared
/// expert of width 5632, sigmoid-gated`: the mixture, which layers have it,
/// how its weights are normalised and its shared expert.
fn describe_experts(c: &forge_ir::ModelConfig) -> Option<String> {
    let m = c.moe.as_ref()?;
    let moe_layers = c
        .layers
        .iter()
        .filter(|l| l.feed_forward == FeedForwardKind::MixtureOfExperts)
        .count();
    let layers = if moe_layers == c.layers.len() {
        "in every layer".to_string()
    } else {
        format!("in {moe_layers} of {} layers", c.layers.len())
    };
    let weights = if m.renormalize {
        "renormalised"
    } else {
        "of the softmax as is"
    };
    let mut line = format!(
        "{} of width {} {layers}, top {} {weights}",
        m.num_experts, m.expert_intermediate_size, m.experts_per_token
    );
    if let Some(n) = m.shared_intermediate_size {
        line += &format!("; shared expert of width {n}");
        if m.shared_gated {
            line += ", sigmoid-gated";
        }
    }
    Some(line)
}

pub fn render_text(s: &Summary) -> String {
    let c = s.config;
    let mut out = Vec::new();
    out.push(format!(
        "model         {} ({:?}, {})",
        s.name, s.format, s.source
    ));
    out.push(format!("architecture  {}", s.architecture));
    out.push(format!(
        "parameters    {} ({})",
        human_count(s.parameters),
        s.parameters
    ));
    let mut shape = format!("layers        {}, hidden {}", s.layers, s.hidden_size);
    if let Some(ff) = s.feed_forward_length {
        shape += &format!(", feed-forward {ff}");
    }
    out.push(shape);
    if let Some(a) = &c.attention {
        let mut line = format!(
            "attention     {} heads / {} KV heads, head dim {}",
            a.num_heads, a.num_kv_heads, a.head_dim
        );
        // Granite-4.0-H, Nemotron-H and Jamba attend without positions.
        if a.rope.rotary_dim == 0 {
            line += ", no rope";
        } else {
            line += &format!(", rope base {}", a.rope.theta);
        }
        if let Some(w) = a.sliding_window {
            line += &format!(", sliding window {w}");
        }
        out.push(line);
    }
    if let Some(line) = describe_experts(c) {
        out.push(format!("experts       {line}"));
    }
    match &c.ssm {
        Some(SsmConfig::Mamba(m)) => out.push(format!(
            "ssm           Mamba: inner {}, state {}, conv {}, dt rank {}{}",
            m.d_inner,
            m.d_state,
            m.d_conv,
            m.dt_rank,
            if m.dt_bc_norms {
                ", RMSNorms over dt, B and C"
            } else {
                ""
            }
        )),
        Some(SsmConfig::Mamba2(m)) => {
            let groups = if m.n_groups == 1 { "group" } else { "groups" };
            let mut line = format!(
                "ssm           Mamba-2: {} heads of {}, {} {groups}, state {}, conv {}, chunk {}",
                m.num_heads, m.head_dim, m.n_groups, m.d_state, m.d_conv, m.chunk_size
            );
            let (min, max) = m.dt_limit;
            if min > 0.0 || max.is_finite() {
                line += &format!(", dt in [{min}, {max}]");
            }
            out.push(line);
        }
        None => {}
    }
    out.push(format!(
        "vocabulary    {}, tied embeddings: {}",
        s.vocab_size,
        if s.tie_word_embeddings { "yes" } else { "no" }
    ));
    out.push(format!("context       {}", s.context_length));
    match (&s.memory, &s.memory_unknown) {
        (Some(m), _) => out.push(format!("memory        {}", describe_memory(m, s.layers))),
        (None, Some(why)) => out.push(format!("memory        unknown: {why}")),
        (None, None) => {}
    }
    match &s.tokenizer {
        Some(t) => {
            let kind = match t.kind {
                TokenizerKind::BytePairBpe => "byte-level BPE",
                TokenizerKind::SentencePiece => "SentencePiece BPE",
                TokenizerKind::Other => "other",
            };
            out.push(format!(
                "tokenizer     {kind} from {}, {} tokens",
                t.source, t.vocab_size
            ))
        }
        None => out.push("tokenizer     none".to_string()),
    }
    let ids = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    out.push(format!(
        "special       bos {}, eos [{}], add bos: {}",
        s.bos_token_id.map_or("none".to_string(), |b| b.to_string()),
        ids(s.eos_token_ids),
        if s.add_bos { "yes" } else { "no" }
    ));
    out.push(format!(
        "chat template {}",
        if s.chat_template { "yes" } else { "no" }
    ));
    let by_dtype = s
        .tensors
        .iter()
        .map(|(d, n)| format!("{d} ×{}", n.count))
        .collect::<Vec<_>>()
        .join(", ");
    out.push(format!(
        "tensors       {} ({by_dtype}), {}",
        s.tensor_count,
        human_bytes(s.tensor_bytes)
    ));
    out.push(format!("layer kinds   {}", c.describe_layer_kinds()));
    out.push("layer structure".to_string());
    out.extend(
        layer_runs(&s.layer_types)
            .into_iter()
            .map(|r| format!("  {r}")),
    );
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use forge_ir::{Architecture, LayerSpec, Mixer, ModelConfig, ModelDims, MoeConfig};

    fn config(kinds: &[FeedForwardKind], moe: MoeConfig) -> ModelConfig {
        let dims = ModelDims {
            vocab_size: 16,
            hidden_size: 8,
            num_layers: kinds.len() as u64,
            context_length: 64,
            tie_word_embeddings: false,
            norm_eps: 1e-6,
        };
        ModelConfig {
            moe: Some(moe),
            layers: kinds
                .iter()
                .map(|&feed_forward| LayerSpec {
                    mixer: Mixer::FullAttention,
                    feed_forward,
                })
                .collect(),
            ..ModelConfig::from_dims(Architecture::Qwen2Moe, dims)
        }
    }

    #[test]
    fn experts_line_names_layers_weights_and_shared_expert() {
        use FeedForwardKind::{Dense, MixtureOfExperts as Moe};
        let qwen2 = MoeConfig {
            num_experts: 60,
            experts_per_token: 4,
            renormalize: false,
            expert_intermediate_size: 1408,
            shared_intermediate_size: Some(5632),
            shared_gated: true,
        };
        assert_eq!(
            describe_experts(&config(&[Moe, Dense, Moe], qwen2.clone())).unwrap(),
            "60 of width 1408 in 2 of 3 layers, top 4 of the softmax as is; \
             shared expert of width 5632, sigmoid-gated"
        );
        let granite = MoeConfig {
            renormalize: true,
            shared_gated: false,
            ..qwen2.clone()
        };
        assert_eq!(
            describe_experts(&config(&[Moe, Moe], granite)).unwrap(),
            "60 of width 1408 in every layer, top 4 renormalised; shared expert of width 5632"
        );
        let mixtral = MoeConfig {
            num_experts: 8,
            experts_per_token: 2,
            renormalize: true,
            expert_intermediate_size: 14336,
            shared_intermediate_size: None,
            shared_gated: false,
        };
        assert_eq!(
            describe_experts(&config(&[Moe], mixtral)).unwrap(),
            "8 of width 14336 in every layer, top 2 renormalised"
        );
        let mut dense = config(&[Dense], qwen2);
        dense.moe = None;
        assert_eq!(describe_experts(&dense), None);
    }
}
