//! Hugging Face tensor names -> canonical names, per architecture, with the
//! storage conventions each one undoes:
//!
//! - Gemma stores RMSNorm weights zero-centred and applies `1 + w`: canonical is `1 + w`.
//! - Mamba stores `A_log`: canonical is `A = -exp(A_log)`, what the scan uses.
//! - Conv1d weights are `[channels, 1, kernel]`: canonical drops the middle axis.
//! - Phi-3 fuses q/k/v and gate/up into single matrices: canonical splits the rows,
//!   which are contiguous byte ranges of the stored tensor.
//! - Mixtral's legacy expert names `experts.E.w1/w3/w2` are gate/up/down.

use forge_ir::{Architecture, ModelConfig, TensorTransform};

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
        "mlp.gate_proj" => one(tensor("ffn_gate")?),
        "mlp.up_proj" => one(tensor("ffn_up")?),
        "mlp.down_proj" => one(tensor("ffn_down")?),
        "mlp.gate_up_proj" if kind == "weight" => {
            let n = c.feed_forward.as_ref()?.intermediate_size;
            Some(Mapped::Rows(vec![
                (blk(i, "ffn_gate"), n),
                (blk(i, "ffn_up"), n),
            ]))
        }
        "block_sparse_moe.gate" | "mlp.gate" if kind == "weight" && c.moe.is_some() => {
            one(blk(i, "ffn_gate_inp"))
        }
        _ => map_expert(c, i, module, kind),
    }
}

/// `block_sparse_moe.experts.E.w1` (Mixtral) or `mlp.experts.E.gate_proj` (newer MoE naming).
fn map_expert(c: &ModelConfig, i: u64, module: &str, kind: &str) -> Option<Mapped> {
    let moe = c.moe.as_ref()?;
    if kind != "weight" {
        return None;
    }
    let rest = module
        .strip_prefix("block_sparse_moe.experts.")
        .or_else(|| module.strip_prefix("mlp.experts."))?;
    let (e, proj) = rest.split_once('.')?;
    let e: u64 = e.parse().ok()?;
    if e >= moe.num_experts {
        return None;
    }
    let name = match proj {
        "w1" | "gate_proj" => "ffn_gate",
        "w3" | "up_proj" => "ffn_up",
        "w2" | "down_proj" => "ffn_down",
        _ => return None,
    };
    one(expert(i, name, e))
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
