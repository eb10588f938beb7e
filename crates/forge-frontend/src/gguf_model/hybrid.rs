//! llama.cpp metadata of hybrid models -> [`ModelConfig`]. What each layer
//! is comes from per-layer arrays: `attention.head_count_kv` is 0 on layers
//! without attention and `feed_forward_length` 0 on layers without an MLP.
//!
//! - `lfm2`: short convolutions where there are no KV heads, of
//!   `shortconv.l_cache` taps; the feed-forward length is already adjusted;
//!   the final norm is stored as `token_embd_norm` (`tensors.rs`).
//! - `granitehybrid` (Granite-4.0-H, and Bamba as the converter writes it):
//!   Mamba-2 where there are no KV heads; `rope.scaling.finetuned` is the
//!   converter's "uses rope" flag (false: no position embeddings);
//!   `attention.scale`, `embedding_scale`, `residual_scale` and `logit_scale`
//!   (a divisor) are Granite's multipliers; with `expert_count` > 0 the layers
//!   with a router (`ffn_gate_inp`) are experts plus the shared MLP as
//!   `ffn_*_shexp` (`config::experts`). The converter permutes q/k rows
//!   over the whole head into the interleaved layout; canonical restores
//!   rotate-half (`tensors.rs`), and partial rotary then rotates the first
//!   `rope.dimension_count` columns as transformers does.
//! - `nemotron_h`: per layer Mamba-2, attention (KV heads) or an MLP (a
//!   feed-forward length) with squared ReLU; no rope. The file does not
//!   record `time_step_min`, so dt is clamped at transformers' default 1e-3.
//! - `falcon-h1`: attention and Mamba-2 in every layer; the converter has
//!   already folded every µP multiplier into the weights.
//!
//! None records the SSD chunk size (training-time blocking; prefill picks
//! its own) or `time_step_limit` (no clamp).

use forge_ir::{
    Activation, Architecture, AttentionConfig, FeedForwardConfig, FeedForwardKind, LayerSpec,
    Mamba2Config, Mixer, ModelConfig, RopeConfig, RopeLayout, RopeScaling, ShortConvConfig,
    SsmConfig,
};

use super::metadata::Metadata;
use crate::multipliers::Multipliers;
use crate::Result;

/// transformers' `time_step_min` default for Nemotron-H.
const NEMOTRON_H_DT_MIN: f64 = 1e-3;
const SSD_CHUNK: u64 = 256;

/// The size facts read before the architecture-specific part.
pub struct Dims {
    pub hidden: u64,
    pub layers: u64,
    pub vocab: u64,
    pub norm_eps: f32,
    pub tied: bool,
}

pub fn parse(m: &Metadata, arch: Architecture, d: Dims) -> Result<ModelConfig> {
    let kv = m
        .per_layer_u64("attention.head_count_kv", d.layers)?
        .ok_or_else(|| {
            m.error(format!(
                "missing metadata key {}.attention.head_count_kv",
                m.arch
            ))
        })?;
    let ff = m
        .per_layer_u64("feed_forward_length", d.layers)?
        .ok_or_else(|| {
            m.error(format!(
                "missing metadata key {}.feed_forward_length",
                m.arch
            ))
        })?;
    let mut layers: Vec<LayerSpec> = (0..d.layers as usize)
        .map(|i| match arch {
            Architecture::Lfm2 => LayerSpec {
                mixer: if kv[i] > 0 {
                    Mixer::FullAttention
                } else {
                    Mixer::ShortConv
                },
                feed_forward: FeedForwardKind::Dense,
            },
            Architecture::FalconH1 => LayerSpec {
                mixer: Mixer::AttentionMamba2,
                feed_forward: FeedForwardKind::Dense,
            },
            Architecture::NemotronH if ff[i] > 0 => LayerSpec {
                mixer: Mixer::None,
                feed_forward: FeedForwardKind::Dense,
            },
            Architecture::NemotronH => LayerSpec {
                mixer: if kv[i] > 0 {
                    Mixer::FullAttention
                } else {
                    Mixer::Mamba2
                },
                feed_forward: FeedForwardKind::None,
            },
            _ => LayerSpec {
                mixer: if kv[i] > 0 {
                    Mixer::FullAttention
                } else {
                    Mixer::Mamba2
                },
                feed_forward: FeedForwardKind::Dense,
            },
        })
        .collect();
    let kv_heads = kv.iter().copied().find(|&k| k > 0);
    let attention = match kv_heads {
        Some(kv_heads) => Some(attention(m, arch, d.hidden, kv_heads)?),
        None => None,
    };
    let mut intermediate = ff.iter().copied().find(|&f| f > 0).unwrap_or(0);
    let moe = match arch {
        Architecture::GraniteHybrid => {
            super::config::experts(m, arch, d.layers, intermediate)?.map(|(moe, experts_in)| {
                for (layer, experts) in layers.iter_mut().zip(experts_in) {
                    if experts {
                        layer.feed_forward = FeedForwardKind::MixtureOfExperts;
                    }
                }
                // As the Hugging Face reader: the dense width is the shared MLP's.
                if let Some(shared) = moe.shared_intermediate_size {
                    intermediate = shared;
                }
                moe
            })
        }
        _ => None,
    };
    let eps_key = match arch {
        Architecture::NemotronH => "attention.layer_norm_epsilon",
        _ => "attention.layer_norm_rms_epsilon",
    };
    let norm_eps = m.opt_f64(eps_key)?.map_or(d.norm_eps, |e| e as f32);
    let embedding_scale = match m.opt_f64("embedding_scale")? {
        Some(s) if s != 1.0 => Some(s as f32),
        _ => None,
    };
    Ok(ModelConfig {
        architecture: arch,
        vocab_size: d.vocab,
        hidden_size: d.hidden,
        num_layers: d.layers,
        context_length: m.u64("context_length")?,
        tie_word_embeddings: d.tied,
        norm_eps,
        embedding_scale,
        final_logit_softcap: None,
        attention,
        feed_forward: Some(FeedForwardConfig {
            intermediate_size: intermediate,
            activation: if arch == Architecture::NemotronH {
                Activation::Relu2
            } else {
                Activation::Silu
            },
            bias: false,
            sandwich_norms: false,
            gated: arch != Architecture::NemotronH,
        }),
        moe,
        ssm: match arch {
            Architecture::Lfm2 => None,
            _ => Some(SsmConfig::Mamba2(mamba2(m, arch)?)),
        },
        short_conv: match arch {
            Architecture::Lfm2 => Some(ShortConvConfig {
                kernel: m.u64("shortconv.l_cache")?,
                bias: (0..d.layers).any(|i| {
                    m.file
                        .tensor(&format!("blk.{i}.shortconv.conv.bias"))
                        .is_some()
                }),
            }),
            _ => None,
        },
        layers,
    })
}

fn attention(
    m: &Metadata,
    arch: Architecture,
    hidden: u64,
    kv_heads: u64,
) -> Result<AttentionConfig> {
    let heads = m.uniform_u64("attention.head_count")?.unwrap_or(0);
    if heads == 0 {
        return Err(m.error(format!("{}.attention.head_count is missing or 0", m.arch)));
    }
    let head_dim = m.opt_u64("attention.key_length")?.unwrap_or(hidden / heads);
    let uses_rope = match arch {
        Architecture::NemotronH => false,
        Architecture::GraniteHybrid => m
            .opt_bool_raw(&format!("{}.rope.scaling.finetuned", m.arch))?
            .unwrap_or(true),
        _ => true,
    };
    let rotary_dim = if uses_rope {
        m.opt_u64("rope.dimension_count")?.unwrap_or(head_dim)
    } else {
        0
    };
    let has = |name: &str| m.file.tensor(name).is_some();
    let first_attention = (0..)
        .map(|i| format!("blk.{i}.attn_q.weight"))
        .take(4096)
        .find(|n| has(n))
        .map(|n| n.trim_end_matches("attn_q.weight").to_string())
        .unwrap_or_default();
    Ok(AttentionConfig {
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        qkv_bias: has(&format!("{first_attention}attn_q.bias")),
        output_bias: has(&format!("{first_attention}attn_output.bias")),
        qk_norm: has(&format!("{first_attention}attn_q_norm.weight")),
        sliding_window: None,
        query_scale: match m.opt_f64("attention.scale")? {
            Some(s) => s as f32,
            None => 1.0 / (head_dim as f32).sqrt(),
        },
        logit_softcap: None,
        rope: RopeConfig {
            theta: m.opt_f64("rope.freq_base")?.unwrap_or(10000.0),
            rotary_dim,
            layout: RopeLayout::Neox,
            scaling: RopeScaling::None,
        },
        rope_local: None,
    })
}

fn mamba2(m: &Metadata, arch: Architecture) -> Result<Mamba2Config> {
    let d_inner = m.u64("ssm.inner_size")?;
    // llama.cpp stores Mamba-2's head count as the time-step rank.
    let heads = m.u64("ssm.time_step_rank")?;
    if heads == 0 {
        return Err(m.error(format!(
            "{}.ssm.time_step_rank (the head count) is 0",
            m.arch
        )));
    }
    let mamba_layer = (0..4096u64)
        .find(|i| m.file.tensor(&format!("blk.{i}.ssm_in.weight")).is_some())
        .unwrap_or(0);
    let has = |name: &str| {
        m.file
            .tensor(&format!("blk.{mamba_layer}.{name}"))
            .is_some()
    };
    Ok(Mamba2Config {
        d_state: m.u64("ssm.state_size")?,
        d_conv: m.u64("ssm.conv_kernel")?,
        d_inner,
        num_heads: heads,
        head_dim: d_inner / heads,
        n_groups: m.opt_u64("ssm.group_count")?.unwrap_or(1),
        chunk_size: SSD_CHUNK,
        conv_bias: has("ssm_conv1d.bias"),
        proj_bias: has("ssm_in.bias"),
        dt_limit: match arch {
            Architecture::NemotronH => (NEMOTRON_H_DT_MIN, f64::INFINITY),
            _ => (0.0, f64::INFINITY),
        },
        norm_before_gate: false,
    })
}

/// Granite's multipliers as the converter stores them (Falcon-H1's are
/// already in the weights).
pub fn multipliers(m: &Metadata, arch: Architecture) -> Result<Multipliers> {
    let mut out = Multipliers::default();
    if arch == Architecture::GraniteHybrid {
        out.residual = m.opt_f64("residual_scale")?.unwrap_or(1.0) as f32;
        let scale = m.opt_f64("logit_scale")?.unwrap_or(1.0);
        if scale == 0.0 {
            return Err(m.error(format!("{}.logit_scale is 0", m.arch)));
        }
        out.logits = (1.0 / scale) as f32;
    }
    Ok(out)
}
