//! Tensor names of hybrid models -> canonical names (llama.cpp's), per
//! architecture. Conv1d weights `[channels, 1, kernel]` lose the middle axis.

use forge_ir::{Architecture, ModelConfig, SsmConfig, TensorTransform};

use super::names::{down_stack, gate_up_stack, one, with, Mapped};
use crate::graph_builder::{blk, blk_bias};

/// The architectures this module names.
pub fn is_hybrid(arch: Architecture) -> bool {
    matches!(
        arch,
        Architecture::Lfm2
            | Architecture::Bamba
            | Architecture::GraniteHybrid
            | Architecture::NemotronH
            | Architecture::FalconH1
            | Architecture::Jamba
    )
}

/// Maps layer `i`'s tensor `suffix` (after `model.layers.N.`).
pub fn map_layer(c: &ModelConfig, i: u64, suffix: &str) -> Option<Mapped> {
    match c.architecture {
        Architecture::Lfm2 => lfm2(c, i, suffix),
        // Falcon-H1 names its parallel mixers as Bamba names its alternating ones.
        Architecture::Bamba | Architecture::GraniteHybrid | Architecture::FalconH1 => {
            mamba2_attention(c, i, suffix)
        }
        Architecture::NemotronH => nemotron_h(c, i, suffix),
        Architecture::Jamba => jamba(c, i, suffix),
        _ => None,
    }
}

/// `weight` or `bias` of canonical `name`.
fn weight_or_bias(i: u64, name: &str, kind: &str) -> Option<String> {
    match kind {
        "weight" => Some(blk(i, name)),
        "bias" => Some(blk_bias(i, name)),
        _ => None,
    }
}

fn conv_weight(name: String, channels: u64, kernel: u64) -> Option<Mapped> {
    Some(Mapped::Tensor {
        name,
        transforms: vec![],
        shape: Some(vec![channels, kernel]),
    })
}

fn lfm2(c: &ModelConfig, i: u64, suffix: &str) -> Option<Mapped> {
    let (module, kind) = suffix.rsplit_once('.')?;
    let canonical = match module {
        "operator_norm" => "attn_norm",
        "ffn_norm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.out_proj" => "attn_output",
        "self_attn.q_layernorm" => "attn_q_norm",
        "self_attn.k_layernorm" => "attn_k_norm",
        "conv.in_proj" => "shortconv.in_proj",
        "conv.out_proj" => "shortconv.out_proj",
        "conv.conv" if kind == "weight" => {
            let kernel = c.short_conv.as_ref()?.kernel;
            return conv_weight(blk(i, "shortconv.conv"), c.hidden_size, kernel);
        }
        "conv.conv" => "shortconv.conv",
        "feed_forward.w1" => "ffn_gate",
        "feed_forward.w3" => "ffn_up",
        "feed_forward.w2" => "ffn_down",
        _ => return None,
    };
    one(weight_or_bias(i, canonical, kind)?)
}

/// A Mamba-2 mixer's tensors under `mamba.` (Bamba, Granite-4.0-H).
fn mamba2_mixer(c: &ModelConfig, i: u64, module: &str, kind: &str) -> Option<Mapped> {
    let canonical = match module {
        "in_proj" => "ssm_in",
        "out_proj" => "ssm_out",
        "norm" => "ssm_norm",
        "conv1d" if kind == "weight" => {
            let Some(SsmConfig::Mamba2(m)) = &c.ssm else {
                return None;
            };
            let channels = m.d_inner + 2 * m.n_groups * m.d_state;
            return conv_weight(blk(i, "ssm_conv1d"), channels, m.d_conv);
        }
        "conv1d" => "ssm_conv1d",
        "dt_bias" if kind.is_empty() => return one(blk_bias(i, "ssm_dt")),
        "A_log" if kind.is_empty() => return with(blk(i, "ssm_a"), TensorTransform::NegExp),
        "D" if kind.is_empty() => return one(blk(i, "ssm_d")),
        _ => return None,
    };
    one(weight_or_bias(i, canonical, kind)?)
}

fn mamba2_attention(c: &ModelConfig, i: u64, suffix: &str) -> Option<Mapped> {
    if let Some(rest) = suffix.strip_prefix("mamba.") {
        // `dt_bias`, `A_log` and `D` are parameters without a `.weight`.
        let (module, kind) = rest.rsplit_once('.').unwrap_or((rest, ""));
        return mamba2_mixer(c, i, module, kind);
    }
    if let Some(m) = &c.moe {
        // Granite-4.0-H's experts, as saved (`input_linear`, `output_linear`,
        // `router.layer`) and as transformers 5 names them; its shared MLP is
        // the mixture's shared expert.
        let n = m.shared_intermediate_size.unwrap_or(0);
        match suffix {
            "block_sparse_moe.router.layer.weight" | "block_sparse_moe.router.weight" => {
                return one(blk(i, "ffn_gate_inp"))
            }
            "block_sparse_moe.input_linear.weight" | "block_sparse_moe.experts.gate_up_proj" => {
                return gate_up_stack(c, i)
            }
            "block_sparse_moe.output_linear.weight" | "block_sparse_moe.experts.down_proj" => {
                return down_stack(c, i)
            }
            "shared_mlp.input_linear.weight" => {
                return Some(Mapped::Rows(vec![
                    (blk(i, "ffn_gate_shexp"), n),
                    (blk(i, "ffn_up_shexp"), n),
                ]))
            }
            "shared_mlp.output_linear.weight" => return one(blk(i, "ffn_down_shexp")),
            s if s.starts_with("shared_mlp.") || s.starts_with("block_sparse_moe.") => return None,
            _ => {}
        }
    }
    let (module, kind) = suffix.rsplit_once('.')?;
    let canonical = match module {
        "input_layernorm" => "attn_norm",
        // Bamba's name, and Granite's.
        "pre_ff_layernorm" | "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "feed_forward.gate_proj" => "ffn_gate",
        "feed_forward.up_proj" => "ffn_up",
        "feed_forward.down_proj" | "shared_mlp.output_linear" => "ffn_down",
        // Granite's shared MLP fuses gate and up, gate first.
        "shared_mlp.input_linear" if kind == "weight" => {
            let n = c.feed_forward.as_ref()?.intermediate_size;
            return Some(Mapped::Rows(vec![
                (blk(i, "ffn_gate"), n),
                (blk(i, "ffn_up"), n),
            ]));
        }
        _ => return None,
    };
    one(weight_or_bias(i, canonical, kind)?)
}

/// Nemotron-H: each layer is `norm` and one `mixer` (Mamba-2, attention or MLP).
fn nemotron_h(c: &ModelConfig, i: u64, suffix: &str) -> Option<Mapped> {
    let mixer = c.layers.get(i as usize)?.mixer;
    if suffix == "norm.weight" {
        let norm = match mixer {
            forge_ir::Mixer::None => "ffn_norm",
            _ => "attn_norm",
        };
        return one(blk(i, norm));
    }
    let rest = suffix.strip_prefix("mixer.")?;
    if mixer == forge_ir::Mixer::Mamba2 {
        let (module, kind) = rest.rsplit_once('.').unwrap_or((rest, ""));
        return mamba2_mixer(c, i, module, kind);
    }
    let (module, kind) = rest.rsplit_once('.')?;
    let canonical = match (mixer, module) {
        (forge_ir::Mixer::FullAttention, "q_proj") => "attn_q",
        (forge_ir::Mixer::FullAttention, "k_proj") => "attn_k",
        (forge_ir::Mixer::FullAttention, "v_proj") => "attn_v",
        (forge_ir::Mixer::FullAttention, "o_proj") => "attn_output",
        (forge_ir::Mixer::None, "up_proj") => "ffn_up",
        (forge_ir::Mixer::None, "down_proj") => "ffn_down",
        _ => return None,
    };
    one(weight_or_bias(i, canonical, kind)?)
}

/// Jamba: `self_attn` or `mamba` (Mamba-1 with dt/B/C norms), then
/// `feed_forward`: a gated MLP, or a `router` and experts (one tensor each
/// as the released checkpoints store them, or transformers 5's stacks).
fn jamba(c: &ModelConfig, i: u64, suffix: &str) -> Option<Mapped> {
    let spec = c.layers.get(i as usize)?;
    let experts_here = spec.feed_forward == forge_ir::FeedForwardKind::MixtureOfExperts;
    let mamba_here = spec.mixer == forge_ir::Mixer::Mamba;
    if let Some(rest) = suffix.strip_prefix("mamba.") {
        if !mamba_here {
            return None;
        }
        let Some(SsmConfig::Mamba(m)) = &c.ssm else {
            return None;
        };
        return match rest {
            "A_log" => with(blk(i, "ssm_a"), TensorTransform::NegExp),
            "D" => one(blk(i, "ssm_d")),
            "conv1d.weight" => conv_weight(blk(i, "ssm_conv1d"), m.d_inner, m.d_conv),
            "conv1d.bias" if m.conv_bias => one(blk_bias(i, "ssm_conv1d")),
            "in_proj.weight" => one(blk(i, "ssm_in")),
            "in_proj.bias" if m.proj_bias => one(blk_bias(i, "ssm_in")),
            "x_proj.weight" => one(blk(i, "ssm_x")),
            "dt_proj.weight" => one(blk(i, "ssm_dt")),
            "dt_proj.bias" => one(blk_bias(i, "ssm_dt")),
            "out_proj.weight" => one(blk(i, "ssm_out")),
            "out_proj.bias" if m.proj_bias => one(blk_bias(i, "ssm_out")),
            // llama.cpp's names; mini-Jamba spells B and C in capitals.
            "dt_layernorm.weight" => one(blk(i, "ssm_dt_norm")),
            "b_layernorm.weight" | "B_layernorm.weight" => one(blk(i, "ssm_b_norm")),
            "c_layernorm.weight" | "C_layernorm.weight" => one(blk(i, "ssm_c_norm")),
            _ => None,
        };
    }
    if let Some(rest) = suffix.strip_prefix("self_attn.") {
        if mamba_here {
            return None;
        }
        return match rest {
            "q_proj.weight" => one(blk(i, "attn_q")),
            "k_proj.weight" => one(blk(i, "attn_k")),
            "v_proj.weight" => one(blk(i, "attn_v")),
            "o_proj.weight" => one(blk(i, "attn_output")),
            _ => None,
        };
    }
    if let Some(rest) = suffix.strip_prefix("feed_forward.") {
        if !experts_here {
            return match rest {
                "gate_proj.weight" => one(blk(i, "ffn_gate")),
                "up_proj.weight" => one(blk(i, "ffn_up")),
                "down_proj.weight" => one(blk(i, "ffn_down")),
                _ => None,
            };
        }
        match rest {
            "router.weight" => return one(blk(i, "ffn_gate_inp")),
            "experts.gate_up_proj" => return gate_up_stack(c, i),
            "experts.down_proj" => return down_stack(c, i),
            _ => {}
        }
        let (e, proj) = rest.strip_prefix("experts.")?.split_once('.')?;
        let e: u64 = e.parse().ok()?;
        if e >= c.moe.as_ref()?.num_experts {
            return None;
        }
        let name = match proj {
            "gate_proj.weight" => "ffn_gate",
            "up_proj.weight" => "ffn_up",
            "down_proj.weight" => "ffn_down",
            _ => return None,
        };
        return one(crate::graph_builder::expert(i, name, e));
    }
    match suffix {
        "input_layernorm.weight" => one(blk(i, "attn_norm")),
        "pre_ff_layernorm.weight" => one(blk(i, "ffn_norm")),
        _ => None,
    }
}
