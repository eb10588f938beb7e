//! Hugging Face tensor names -> canonical names, per architecture, with the
//! storage conventions each one undoes:
//!
//! - Gemma stores RMSNorm weights zero-centred and applies `1 + w`: canonical is `1 + w`.
//! - Mamba stores `A_log`: canonical is `A = -exp(A_log)`, what the scan uses.
//! - Conv1d weights are `[channels, 1, kernel]`: canonical drops the middle axis.
//! - Phi-3 fuses q/k/v and gate/up into single matrices: canonical splits the rows,
//!   which are contiguous byte ranges of the stored tensor.
//! - Mixtral's legacy expert names `experts.E.w1/w3/w2` are gate/up/down.
//! - transformers 5 keeps a layer's experts as two stacks, `experts.gate_up_proj`
//!   `[experts, 2·inter, hidden]` (each expert's gate rows, then its up rows) and
//!   `experts.down_proj` `[experts, hidden, inter]`, and can save them so
//!   (`save_original_format=False`); Granite's `input_linear` / `output_linear`
//!   are the same stacks. Canonical has one tensor per expert, each a contiguous
//!   byte range of the stack.

use forge_ir::{Architecture, FeedForwardKind, ModelConfig, TensorTransform};

use crate::graph_builder::{blk, blk_bias, expert};

/// What one checkpoint tensor becomes.
#[derive(Debug, PartialEq)]
pub enum Mapped {
    /// One canonical tensor, reshaped to `shape` when given.
    Tensor {
        name: String,
        transforms: Vec<TensorTransform>,
        shape: Option<Vec<u64>>,
    },
    /// Consecutive row ranges of a fused matrix: (canonical name, rows).
    Rows(Vec<(String, u64)>),
    /// A stack `[n, rows, cols]` (one matrix per expert): for each of the `n`
    /// in order, consecutive row ranges of its matrix, as in [`Mapped::Rows`].
    Stack(Vec<Vec<(String, u64)>>),
    /// Not part of the model (e.g. cached rope frequencies, or a tied LM head copy).
    Ignore,
}

pub(super) fn one(name: String) -> Option<Mapped> {
    Some(Mapped::Tensor {
        name,
        transforms: vec![],
        shape: None,
    })
}

pub(super) fn with(name: String, transform: TensorTransform) -> Option<Mapped> {
    Some(Mapped::Tensor {
        name,
        transforms: vec![transform],
        shape: None,
    })
}

/// Maps `hf` for a model of config `c`; `None` means the name is not one this architecture has.
pub fn map_name(c: &ModelConfig, hf: &str) -> Option<Mapped> {
    let arch = c.architecture;
    let gemma = matches!(
        arch,
        Architecture::Gemma | Architecture::Gemma2 | Architecture::Gemma3
    );
    let norm = |name: String| {
        if gemma {
            with(name, TensorTransform::AddOne)
        } else {
            one(name)
        }
    };
    let body = hf
        .strip_prefix("model.")
        .or_else(|| hf.strip_prefix("backbone."))
        .unwrap_or(hf);
    if hf.ends_with("rotary_emb.inv_freq") {
        return Some(Mapped::Ignore);
    }
    match body {
        "embed_tokens.weight" | "embeddings.weight" => return one("token_embd.weight".into()),
        // LFM2's `embedding_norm` is its final norm, as Bamba's `final_layernorm`.
        "norm.weight" | "norm_f.weight" | "embedding_norm.weight" | "final_layernorm.weight" => {
            return norm("output_norm.weight".into())
        }
        "lm_head.weight" if c.tie_word_embeddings => return Some(Mapped::Ignore),
        "lm_head.weight" => return one("output.weight".into()),
        _ => {}
    }
    let rest = body.strip_prefix("layers.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let i: u64 = layer.parse().ok()?;
    if i >= c.num_layers {
        return None;
    }
    if matches!(arch, Architecture::Mamba | Architecture::Mamba2) {
        return map_ssm(c, i, suffix);
    }
    if super::hybrid_names::is_hybrid(arch) {
        return super::hybrid_names::map_layer(c, i, suffix);
    }
    let experts_here = c
        .layers
        .get(i as usize)
        .is_some_and(|l| l.feed_forward == FeedForwardKind::MixtureOfExperts);
    if experts_here {
        if let Some(m) = map_moe(c, i, suffix) {
            return Some(m);
        }
    }
    let sandwich = matches!(arch, Architecture::Gemma2 | Architecture::Gemma3);
    let (module, kind) = suffix.rsplit_once('.')?;
    let tensor = |n: &str| match kind {
        "weight" => Some(blk(i, n)),
        "bias" => Some(blk_bias(i, n)),
        _ => None,
    };
    match module {
        "input_layernorm" if kind == "weight" => norm(blk(i, "attn_norm")),
        "post_attention_layernorm" if kind == "weight" && sandwich => {
            norm(blk(i, "post_attention_norm"))
        }
        "post_attention_layernorm" | "pre_feedforward_layernorm" if kind == "weight" => {
            norm(blk(i, "ffn_norm"))
        }
        "post_feedforward_layernorm" if kind == "weight" => norm(blk(i, "post_ffw_norm")),
        "self_attn.q_norm" if kind == "weight" => norm(blk(i, "attn_q_norm")),
        "self_attn.k_norm" if kind == "weight" => norm(blk(i, "attn_k_norm")),
        "self_attn.q_proj" => one(tensor("attn_q")?),
        "self_attn.k_proj" => one(tensor("attn_k")?),
        "self_attn.v_proj" => one(tensor("attn_v")?),
        "self_attn.o_proj" => one(tensor("attn_output")?),
        "self_attn.qkv_proj" if kind == "weight" => {
            let a = c.attention.as_ref()?;
            Some(Mapped::Rows(vec![
                (blk(i, "attn_q"), a.num_heads * a.head_dim),
                (blk(i, "attn_k"), a.num_kv_heads * a.head_dim),
                (blk(i, "attn_v"), a.num_kv_heads * a.head_dim),
            ]))
        }
        "mlp.gate_proj" if !experts_here => one(tensor("ffn_gate")?),
        "mlp.up_proj" if !experts_here => one(tensor("ffn_up")?),
        "mlp.down_proj" if !experts_here => one(tensor("ffn_down")?),
        "mlp.gate_up_proj" if kind == "weight" && !experts_here => {
            let n = c.feed_forward.as_ref()?.intermediate_size;
            Some(Mapped::Rows(vec![
                (blk(i, "ffn_gate"), n),
                (blk(i, "ffn_up"), n),
            ]))
        }
        _ => None,
    }
}

/// The tensors of a mixture-of-experts layer `i`: the router, the experts
/// (one tensor each, or the two stacks) and the shared expert.
fn map_moe(c: &ModelConfig, i: u64, suffix: &str) -> Option<Mapped> {
    let moe = c.moe.as_ref()?;
    let suffix = suffix
        .strip_prefix("block_sparse_moe.")
        .or_else(|| suffix.strip_prefix("mlp."))?;
    match suffix {
        "gate.weight" => return one(blk(i, "ffn_gate_inp")),
        "experts.gate_up_proj" => return gate_up_stack(c, i),
        "experts.down_proj" => return down_stack(c, i),
        "shared_expert_gate.weight" if moe.shared_gated => {
            return one(blk(i, "ffn_gate_inp_shexp"))
        }
        _ => {}
    }
    if let Some(proj) = suffix.strip_prefix("shared_expert.") {
        moe.shared_intermediate_size?;
        let name = match proj {
            "gate_proj.weight" => "ffn_gate_shexp",
            "up_proj.weight" => "ffn_up_shexp",
            "down_proj.weight" => "ffn_down_shexp",
            _ => return None,
        };
        return one(blk(i, name));
    }
    // `experts.E.w1` (Mixtral) or `experts.E.gate_proj` (Qwen-MoE), one tensor per expert.
    let (e, proj) = suffix.strip_prefix("experts.")?.split_once('.')?;
    let e: u64 = e.parse().ok()?;
    if e >= moe.num_experts {
        return None;
    }
    let name = match proj {
        "w1.weight" | "gate_proj.weight" => "ffn_gate",
        "w3.weight" | "up_proj.weight" => "ffn_up",
        "w2.weight" | "down_proj.weight" => "ffn_down",
        _ => return None,
    };
    one(expert(i, name, e))
}

/// Layer `i`'s experts' gate and up projections stacked `[experts, 2·inter,
/// hidden]`, each expert's gate rows before its up rows.
pub(super) fn gate_up_stack(c: &ModelConfig, i: u64) -> Option<Mapped> {
    let m = c.moe.as_ref()?;
    let n = m.expert_intermediate_size;
    Some(Mapped::Stack(
        (0..m.num_experts)
            .map(|e| vec![(expert(i, "ffn_gate", e), n), (expert(i, "ffn_up", e), n)])
            .collect(),
    ))
}

/// Layer `i`'s experts' down projections stacked `[experts, hidden, inter]`.
pub(super) fn down_stack(c: &ModelConfig, i: u64) -> Option<Mapped> {
    let m = c.moe.as_ref()?;
    Some(Mapped::Stack(
        (0..m.num_experts)
            .map(|e| vec![(expert(i, "ffn_down", e), c.hidden_size)])
            .collect(),
    ))
}

fn map_ssm(c: &ModelConfig, i: u64, suffix: &str) -> Option<Mapped> {
    Some(match suffix {
        "norm.weight" => return one(blk(i, "attn_norm")),
        "mixer.in_proj.weight" => return one(blk(i, "ssm_in")),
        "mixer.in_proj.bias" => return one(blk_bias(i, "ssm_in")),
        "mixer.conv1d.weight" => {
            let channels = match c.ssm.as_ref()? {
                forge_ir::SsmConfig::Mamba(m) => m.d_inner,
                forge_ir::SsmConfig::Mamba2(m) => m.d_inner + 2 * m.n_groups * m.d_state,
            };
            let kernel = match c.ssm.as_ref()? {
                forge_ir::SsmConfig::Mamba(m) => m.d_conv,
                forge_ir::SsmConfig::Mamba2(m) => m.d_conv,
            };
            Mapped::Tensor {
                name: blk(i, "ssm_conv1d"),
                transforms: vec![],
                shape: Some(vec![channels, kernel]),
            }
        }
        "mixer.conv1d.bias" => return one(blk_bias(i, "ssm_conv1d")),
        "mixer.x_proj.weight" => return one(blk(i, "ssm_x")),
        "mixer.dt_proj.weight" => return one(blk(i, "ssm_dt")),
        "mixer.dt_proj.bias" | "mixer.dt_bias" => return one(blk_bias(i, "ssm_dt")),
        "mixer.A_log" => return with(blk(i, "ssm_a"), TensorTransform::NegExp),
        "mixer.D" => return one(blk(i, "ssm_d")),
        "mixer.norm.weight" => return one(blk(i, "ssm_norm")),
        "mixer.out_proj.weight" => return one(blk(i, "ssm_out")),
        "mixer.out_proj.bias" => return one(blk_bias(i, "ssm_out")),
        _ => return None,
    })
}
