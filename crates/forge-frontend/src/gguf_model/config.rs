//! llama.cpp metadata -> [`ModelConfig`].
//!
//! Some facts are not in the file because llama.cpp hard-codes them; they are
//! restored here: Gemma 2's alternating sliding layers, Gemma 3's one-in-six
//! global layers and its local rope base of 10000, Gemma's embedding scale.

use forge_ir::{
    Activation, Architecture, AttentionConfig, FeedForwardConfig, FeedForwardKind, LayerSpec,
    Mamba2Config, MambaConfig, Mixer, ModelConfig, ModelDims, MoeConfig, RopeConfig, RopeLayout,
    RopeScaling, SsmConfig,
};

use super::metadata::Metadata;
use super::tensors::read_f32;
use crate::Result;

/// Gemma 3 makes every sixth layer global; llama.cpp assumes it too.
const GEMMA3_SLIDING_PATTERN: u64 = 6;
/// Gemma 3's sliding layers use this rope base, which GGUF files do not record.
const GEMMA3_LOCAL_ROPE_BASE: f64 = 10000.0;
const SSM_CONTEXT_LENGTH: u64 = 1 << 20;

pub fn parse(m: &Metadata) -> Result<ModelConfig> {
    let expert_count = m.opt_u64("expert_count")?.unwrap_or(0);
    let arch = match m.arch.as_str() {
        "llama" if expert_count > 0 => Architecture::Mixtral,
        "llama" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        "qwen3" => Architecture::Qwen3,
        "gemma" => Architecture::Gemma,
        "gemma2" => Architecture::Gemma2,
        "gemma3" => Architecture::Gemma3,
        "phi3" => Architecture::Phi3,
        "qwen2moe" => Architecture::Qwen2Moe,
        "qwen3moe" => Architecture::Qwen3Moe,
        "mamba" => Architecture::Mamba,
        "mamba2" => Architecture::Mamba2,
        "lfm2" => Architecture::Lfm2,
        "granitehybrid" => Architecture::GraniteHybrid,
        "nemotron_h" => Architecture::NemotronH,
        "falcon-h1" => Architecture::FalconH1,
        other => {
            return Err(m.error(format!(
                "unsupported architecture {other:?} (supported: llama, qwen2, qwen3, qwen2moe, qwen3moe, gemma, gemma2, gemma3, phi3, mamba, mamba2, lfm2, granitehybrid, nemotron_h, falcon-h1)"
            )))
        }
    };
    let hidden = m.u64("embedding_length")?;
    let layers = m.u64("block_count")?;
    if layers == 0 || layers > 4096 {
        return Err(m.error(format!(
            "{}.block_count {layers} is out of range (1..=4096)",
            m.arch
        )));
    }
    let vocab = match m.opt_u64("vocab_size")? {
        Some(v) => v,
        None => match m
            .file
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_array())
        {
            Some(a) => a.items.len() as u64,
            None => {
                let embd = m
                    .file
                    .tensor("token_embd.weight")
                    .ok_or_else(|| m.error("missing tensor token_embd.weight"))?;
                embd.dims.get(1).copied().unwrap_or(0)
            }
        },
    };
    let norm_eps = m
        .opt_f64("attention.layer_norm_rms_epsilon")?
        .unwrap_or(1e-5) as f32;
    let tied = m.file.tensor("output.weight").is_none();
    if matches!(arch, Architecture::Mamba | Architecture::Mamba2) {
        return parse_ssm(m, arch, hidden, layers, vocab, norm_eps, tied);
    }
    if matches!(
        arch,
        Architecture::Lfm2
            | Architecture::GraniteHybrid
            | Architecture::NemotronH
            | Architecture::FalconH1
    ) {
        let dims = super::hybrid::Dims {
            hidden,
            layers,
            vocab,
            norm_eps,
            tied,
        };
        return super::hybrid::parse(m, arch, dims);
    }

    let heads = m.uniform_u64("attention.head_count")?.ok_or_else(|| {
        m.error(format!(
            "missing metadata key {}.attention.head_count",
            m.arch
        ))
    })?;
    if heads == 0 {
        return Err(m.error(format!("{}.attention.head_count is 0", m.arch)));
    }
    let kv_heads = m.uniform_u64("attention.head_count_kv")?.unwrap_or(heads);
    let head_dim = m.opt_u64("attention.key_length")?.unwrap_or(hidden / heads);
    let rotary_dim = m.opt_u64("rope.dimension_count")?.unwrap_or(head_dim);
    let theta = m.opt_f64("rope.freq_base")?.unwrap_or(10000.0);
    let rope = RopeConfig {
        theta,
        rotary_dim,
        layout: RopeLayout::Neox,
        scaling: rope_scaling(m, rotary_dim)?,
    };
    let gemma = matches!(
        arch,
        Architecture::Gemma | Architecture::Gemma2 | Architecture::Gemma3
    );
    let rope_local = (arch == Architecture::Gemma3).then(|| RopeConfig {
        theta: m
            .opt_f64("rope.freq_base_swa")
            .ok()
            .flatten()
            .unwrap_or(GEMMA3_LOCAL_ROPE_BASE),
        rotary_dim,
        layout: RopeLayout::Neox,
        scaling: RopeScaling::None,
    });
    let window = m.opt_u64("attention.sliding_window")?.filter(|&w| w > 0);
    let pattern = match arch {
        Architecture::Gemma2 => 2,
        Architecture::Gemma3 => m
            .opt_u64("attention.sliding_window_pattern")?
            .unwrap_or(GEMMA3_SLIDING_PATTERN),
        _ => 0,
    };
    let mixer = |i: u64| match window {
        None => Mixer::FullAttention,
        Some(_) if pattern == 0 || !(i + 1).is_multiple_of(pattern) => Mixer::SlidingAttention,
        Some(_) => Mixer::FullAttention,
    };
    let query_scale = match m.opt_f64("attention.scale")? {
        Some(s) => s as f32,
        None => 1.0 / (head_dim as f32).sqrt(),
    };
    let has = |name: &str| m.file.tensor(name).is_some();
    let attention = AttentionConfig {
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        qkv_bias: has("blk.0.attn_q.bias") || has("blk.0.attn_qkv.bias"),
        output_bias: has("blk.0.attn_output.bias"),
        qk_norm: has("blk.0.attn_q_norm.weight"),
        sliding_window: window,
        query_scale,
        logit_softcap: m.opt_f64("attn_logit_softcapping")?.map(|v| v as f32),
        rope,
        rope_local,
    };
    let intermediate = m.uniform_u64("feed_forward_length")?.ok_or_else(|| {
        m.error(format!(
            "missing metadata key {}.feed_forward_length",
            m.arch
        ))
    })?;
    let (moe, experts_in) = match arch {
        Architecture::Mixtral | Architecture::Qwen2Moe | Architecture::Qwen3Moe => {
            match experts(m, arch, layers, intermediate)? {
                Some((moe, experts_in)) => (Some(moe), experts_in),
                None => return Err(m.error(format!("{} without experts", m.arch))),
            }
        }
        _ => (None, vec![false; layers as usize]),
    };
    Ok(ModelConfig {
        architecture: arch,
        vocab_size: vocab,
        hidden_size: hidden,
        num_layers: layers,
        context_length: m.u64("context_length")?,
        tie_word_embeddings: tied,
        norm_eps,
        embedding_scale: gemma.then(|| (hidden as f64).sqrt() as f32),
        final_logit_softcap: m.opt_f64("final_logit_softcapping")?.map(|v| v as f32),
        attention: Some(attention),
        feed_forward: Some(FeedForwardConfig {
            intermediate_size: intermediate,
            activation: if gemma {
                Activation::GeluTanh
            } else {
                Activation::Silu
            },
            bias: has("blk.0.ffn_up.bias"),
            sandwich_norms: matches!(arch, Architecture::Gemma2 | Architecture::Gemma3),
            gated: true,
        }),
        moe,
        ssm: None,
        short_conv: None,
        layers: (0..layers)
            .map(|i| LayerSpec {
                mixer: mixer(i),
                feed_forward: if experts_in[i as usize] {
                    FeedForwardKind::MixtureOfExperts
                } else {
                    FeedForwardKind::Dense
                },
            })
            .collect(),
    })
}

/// The experts of a model whose layers may have them, and which layers do:
/// those with a router (`ffn_gate_inp`), the others being dense.
///
/// - `{arch}.expert_count` experts, `expert_used_count` per token;
/// - their width `expert_feed_forward_length`, or llama.cpp's fallback: the
///   feed-forward length itself for `llama` (Mixtral), divided by the experts
///   used for the others;
/// - a shared expert where `ffn_up_shexp` is, `expert_shared_feed_forward_length`
///   wide (by default the feed-forward length), sigmoid-gated where
///   `ffn_gate_inp_shexp` is (Qwen2-MoE);
/// - llama.cpp renormalises the top-k weights of Mixtral, Qwen3-MoE and
///   Granite, not Qwen2-MoE's; `expert_weights_norm` says so when present.
///   Gating other than softmax and `expert_weights_scale` other than 1 are refused.
pub(super) fn experts(
    m: &Metadata,
    arch: Architecture,
    layers: u64,
    ff: u64,
) -> Result<Option<(MoeConfig, Vec<bool>)>> {
    let count = m.opt_u64("expert_count")?.unwrap_or(0);
    if count == 0 {
        return Ok(None);
    }
    let has = |name: String| m.file.tensor(&name).is_some();
    let experts_in: Vec<bool> = (0..layers)
        .map(|i| has(format!("blk.{i}.ffn_gate_inp.weight")))
        .collect();
    let Some(first) = experts_in.iter().position(|&e| e) else {
        return Err(m.error(format!(
            "{}.expert_count is {count} but no layer has a router (blk.N.ffn_gate_inp.weight)",
            m.arch
        )));
    };
    let used = m.u64("expert_used_count")?;
    if let Some(f) = m.opt_u64("expert_gating_func")? {
        // llama.cpp: 0 none (its default, softmax), 1 softmax, 2 sigmoid, 3 softmax of weights.
        if f > 1 {
            return Err(m.error(format!(
                "{}.expert_gating_func {f} is not softmax, which forge does not support yet",
                m.arch
            )));
        }
    }
    if let Some(scale) = m.opt_f64("expert_weights_scale")? {
        if scale != 0.0 && scale != 1.0 {
            return Err(m.error(format!(
                "{}.expert_weights_scale {scale} is not supported yet",
                m.arch
            )));
        }
    }
    let width = match m.opt_u64("expert_feed_forward_length")? {
        Some(n) => n,
        None if arch == Architecture::Mixtral => ff,
        None => ff / used.max(1),
    };
    let shared = has(format!("blk.{first}.ffn_up_shexp.weight")).then_some(
        m.opt_u64("expert_shared_feed_forward_length")?
            .unwrap_or(ff),
    );
    let renormalize = match m.opt_bool_raw(&format!("{}.expert_weights_norm", m.arch))? {
        Some(norm) => norm,
        None => arch != Architecture::Qwen2Moe,
    };
    let moe = MoeConfig {
        num_experts: count,
        experts_per_token: used,
        renormalize,
        expert_intermediate_size: width,
        shared_intermediate_size: shared,
        shared_gated: shared.is_some() && has(format!("blk.{first}.ffn_gate_inp_shexp.weight")),
    };
    Ok(Some((moe, experts_in)))
}

fn rope_scaling(m: &Metadata, rotary_dim: u64) -> Result<RopeScaling> {
    let half = (rotary_dim / 2) as usize;
    let factors = |name: &str| -> Result<Option<Vec<f64>>> {
        match m.file.tensor(name) {
            None => Ok(None),
            Some(t) => {
                let values = read_f32(m, t)?;
                if values.len() != half {
                    return Err(m.error(format!(
                        "tensor {name} has {} values, expected {half} (half the rotary dimension)",
                        values.len()
                    )));
                }
                Ok(Some(values.into_iter().map(f64::from).collect()))
            }
        }
    };
    if let (Some(long), Some(short)) = (
        factors("rope_factors_long.weight")?,
        factors("rope_factors_short.weight")?,
    ) {
        let original = m.u64("rope.scaling.original_context_length")?;
        return Ok(RopeScaling::LongRope {
            short_factor: short,
            long_factor: long,
            original_context_length: original,
            attention_factor: m.opt_f64("rope.scaling.attn_factor")?.unwrap_or(1.0),
        });
    }
    if let Some(f) = factors("rope_freqs.weight")? {
        return Ok(RopeScaling::FrequencyFactors { factors: f });
    }
    let kind = m.opt_str("rope.scaling.type")?.unwrap_or("none");
    let factor = m.opt_f64("rope.scaling.factor")?;
    Ok(match (kind, factor) {
        ("none", _) | (_, None) => RopeScaling::None,
        (_, Some(f)) if f == 0.0 || f == 1.0 => RopeScaling::None,
        ("linear", Some(factor)) => RopeScaling::Linear { factor },
        ("yarn", Some(factor)) => RopeScaling::Yarn {
            factor,
            original_context_length: m.u64("rope.scaling.original_context_length")?,
            beta_fast: m.opt_f64("rope.scaling.yarn_beta_fast")?.unwrap_or(32.0),
            beta_slow: m.opt_f64("rope.scaling.yarn_beta_slow")?.unwrap_or(1.0),
            attention_factor: m
                .opt_f64("rope.scaling.attn_factor")?
                .unwrap_or(0.1 * factor.ln() + 1.0),
        },
        (other, _) => return Err(m.error(format!("unsupported rope scaling type {other:?}"))),
    })
}

fn parse_ssm(
    m: &Metadata,
    arch: Architecture,
    hidden: u64,
    layers: u64,
    vocab: u64,
    norm_eps: f32,
    tied: bool,
) -> Result<ModelConfig> {
    let d_inner = m.u64("ssm.inner_size")?;
    let d_state = m.u64("ssm.state_size")?;
    let d_conv = m.u64("ssm.conv_kernel")?;
    let has = |name: &str| m.file.tensor(name).is_some();
    let conv_bias = has("blk.0.ssm_conv1d.bias");
    let proj_bias = has("blk.0.ssm_in.bias");
    let ssm = if arch == Architecture::Mamba {
        let cfg = MambaConfig {
            d_state,
            d_conv,
            d_inner,
            dt_rank: m.u64("ssm.time_step_rank")?,
            conv_bias,
            proj_bias,
            dt_bc_norms: false,
        };
        SsmConfig::Mamba(cfg)
    } else {
        // llama.cpp stores Mamba-2's head count as the time-step rank.
        let heads = m.u64("ssm.time_step_rank")?;
        if heads == 0 {
            return Err(m.error(format!(
                "{}.ssm.time_step_rank (the head count) is 0",
                m.arch
            )));
        }
        let cfg = Mamba2Config {
            d_state,
            d_conv,
            d_inner,
            num_heads: heads,
            head_dim: d_inner / heads,
            n_groups: m.opt_u64("ssm.group_count")?.unwrap_or(1),
            // GGUF does not carry the training chunk size; it only affects how prefill is blocked.
            chunk_size: 256,
            conv_bias,
            proj_bias,
            dt_limit: (0.0, f64::INFINITY),
            norm_before_gate: false,
        };
        SsmConfig::Mamba2(cfg)
    };
    let dims = ModelDims {
        vocab_size: vocab,
        hidden_size: hidden,
        num_layers: layers,
        context_length: m.opt_u64("context_length")?.unwrap_or(SSM_CONTEXT_LENGTH),
        tie_word_embeddings: tied,
        norm_eps,
    };
    Ok(ModelConfig::state_space(arch, dims, ssm))
}
