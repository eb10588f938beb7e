//! Tensor names of hybrid models -> canonical names (llama.cpp's), per
//! architecture. Conv1d weights `[channels, 1, kernel]` lose the middle axis.

use forge_ir::{Architecture, ModelConfig};

use super::names::{one, Mapped};
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
    )
}

/// Maps layer `i`'s tensor `suffix` (after `model.layers.N.`).
pub fn map_layer(c: &ModelConfig, i: u64, suffix: &str) -> Option<Mapped> {
    match c.architecture {
        Architecture::Lfm2 => lfm2(c, i, suffix),
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
