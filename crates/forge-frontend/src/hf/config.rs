//! `config.json` -> [`ModelConfig`], in both the transformers-4 style
//! (`rope_theta`, `rope_scaling`, `torch_dtype`) and the transformers-5 style
//! (`rope_parameters`, possibly per layer type, `layer_types`, `dtype`).

use forge_ir::{
    Activation, Architecture, AttentionConfig, FeedForwardConfig, FeedForwardKind, LayerSpec,
    Mamba2Config, MambaConfig, Mixer, ModelConfig, ModelDims, MoeConfig, RopeConfig, RopeLayout,
    RopeScaling, SsmConfig,
};

use super::json::JsonObject;
use crate::Result;

/// Context length assumed for state-space models, which have no positional limit.
const SSM_CONTEXT_LENGTH: u64 = 1 << 20;

/// The architecture named by `model_type` (or, failing that, `architectures`).
pub fn architecture(cfg: &JsonObject) -> Result<Architecture> {
    let model_type = match cfg.opt_str("model_type")? {
        Some(t) => t.to_string(),
        None => cfg
            .str_list("architectures")?
            .and_then(|a| a.into_iter().next())
            .ok_or_else(|| cfg.error("missing required field model_type"))?,
    };
    Ok(match model_type.as_str() {
        "llama" | "LlamaForCausalLM" => Architecture::Llama,
        "mistral" | "MistralForCausalLM" => Architecture::Mistral,
        "qwen2" | "Qwen2ForCausalLM" => Architecture::Qwen2,
        "qwen3" | "Qwen3ForCausalLM" => Architecture::Qwen3,
        "gemma" | "GemmaForCausalLM" => Architecture::Gemma,
        "gemma2" | "Gemma2ForCausalLM" => Architecture::Gemma2,
        "gemma3_text" | "gemma3" | "Gemma3ForCausalLM" => Architecture::Gemma3,
        "phi3" | "Phi3ForCausalLM" => Architecture::Phi3,
        "mixtral" | "MixtralForCausalLM" => Architecture::Mixtral,
        "qwen2_moe" | "Qwen2MoeForCausalLM" => Architecture::Qwen2Moe,
        "qwen3_moe" | "Qwen3MoeForCausalLM" => Architecture::Qwen3Moe,
        "mamba" | "MambaForCausalLM" => Architecture::Mamba,
        "mamba2" | "Mamba2ForCausalLM" => Architecture::Mamba2,
        "lfm2" | "Lfm2ForCausalLM" => Architecture::Lfm2,
        "bamba" | "BambaForCausalLM" => Architecture::Bamba,
        "granitemoehybrid" | "GraniteMoeHybridForCausalLM" => Architecture::GraniteHybrid,
        "nemotron_h" | "NemotronHForCausalLM" => Architecture::NemotronH,
        "falcon_h1" | "FalconH1ForCausalLM" => Architecture::FalconH1,
        "jamba" | "JambaForCausalLM" => Architecture::Jamba,
        other => {
            return Err(cfg.error(format!(
                "unsupported architecture {other:?} (supported: llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3, phi3, mixtral, qwen2_moe, qwen3_moe, mamba, mamba2, lfm2, bamba, granitemoehybrid, nemotron_h, falcon_h1, jamba)"
            )))
        }
    })
}

pub fn parse(cfg: &JsonObject) -> Result<ModelConfig> {
    let arch = architecture(cfg)?;
    match arch {
        Architecture::Mamba | Architecture::Mamba2 => parse_ssm(cfg, arch),
        Architecture::Lfm2
        | Architecture::Bamba
        | Architecture::GraniteHybrid
        | Architecture::NemotronH
        | Architecture::FalconH1
        | Architecture::Jamba => super::hybrid::parse(cfg, arch),
        _ => parse_transformer(cfg, arch),
    }
}

fn is_gemma(arch: Architecture) -> bool {
    matches!(
        arch,
        Architecture::Gemma | Architecture::Gemma2 | Architecture::Gemma3
    )
}

fn parse_transformer(cfg: &JsonObject, arch: Architecture) -> Result<ModelConfig> {
    let hidden = cfg.u64("hidden_size")?;
    let layers = cfg.u64("num_hidden_layers")?;
    check_layer_count(cfg, layers)?;
    let context = cfg.u64("max_position_embeddings")?;
    let sliding_window = match arch {
        Architecture::Qwen2 | Architecture::Qwen2Moe | Architecture::Qwen3Moe
            if cfg.opt_bool("use_sliding_window")? != Some(true) =>
        {
            None
        }
        _ => cfg.opt_u64("sliding_window")?,
    };
    let layer_types = layer_types(cfg, arch, layers, sliding_window)?;
    let attention = attention_config(cfg, arch, hidden, sliding_window)?;

    let act_key = if is_gemma(arch) {
        "hidden_activation"
    } else {
        "hidden_act"
    };
    let act_name = match cfg.opt_str(act_key)? {
        Some(a) => a.to_string(),
        None if is_gemma(arch) => "gelu_pytorch_tanh".to_string(),
        None => cfg.opt_str("hidden_act")?.unwrap_or("silu").to_string(),
    };
    let activation = activation(cfg, &act_name)?;
    let intermediate = match (arch, cfg.opt_u64("intermediate_size")?) {
        (_, Some(n)) => n,
        // transformers' defaults; only the dense layers among the experts use it.
        (Architecture::Qwen2Moe, None) => 5632,
        (Architecture::Qwen3Moe, None) => 6144,
        (_, None) => cfg.u64("intermediate_size")?,
    };
    let moe = moe_config(cfg, arch, intermediate)?;
    let ffn_kinds = feed_forward_kinds(cfg, arch, layers, moe.is_some())?;
    let feed_forward = FeedForwardConfig {
        intermediate_size: intermediate,
        activation,
        bias: cfg.opt_bool("mlp_bias")?.unwrap_or(false),
        sandwich_norms: matches!(arch, Architecture::Gemma2 | Architecture::Gemma3),
        gated: true,
    };
    Ok(ModelConfig {
        architecture: arch,
        vocab_size: cfg.u64("vocab_size")?,
        hidden_size: hidden,
        num_layers: layers,
        context_length: context,
        tie_word_embeddings: cfg
            .opt_bool("tie_word_embeddings")?
            .unwrap_or(is_gemma(arch)),
        norm_eps: cfg.opt_f64("rms_norm_eps")?.unwrap_or(1e-6) as f32,
        embedding_scale: is_gemma(arch).then(|| (hidden as f64).sqrt() as f32),
        final_logit_softcap: cfg.opt_f64("final_logit_softcapping")?.map(|v| v as f32),
        attention: Some(attention),
        feed_forward: Some(feed_forward),
        moe,
        ssm: None,
        short_conv: None,
        layers: layer_types
            .into_iter()
            .zip(ffn_kinds)
            .map(|(mixer, feed_forward)| LayerSpec {
                mixer,
                feed_forward,
            })
            .collect(),
    })
}

/// The experts of a transformer's mixture-of-experts layers, if it has any.
///
/// - Mixtral: `num_local_experts` of `intermediate_size`, top-k renormalised;
/// - Qwen2-MoE: `num_experts` of `moe_intermediate_size`, the top-k softmax
///   probabilities as they are unless `norm_topk_prob`, and a shared expert of
///   `shared_expert_intermediate_size` gated by sigmoid(`shared_expert_gate`·x);
/// - Qwen3-MoE: as Qwen2-MoE without the shared expert.
fn moe_config(
    cfg: &JsonObject,
    arch: Architecture,
    intermediate: u64,
) -> Result<Option<MoeConfig>> {
    Ok(match arch {
        Architecture::Mixtral => Some(MoeConfig {
            num_experts: cfg.u64("num_local_experts")?,
            experts_per_token: cfg.u64("num_experts_per_tok")?,
            renormalize: true,
            expert_intermediate_size: intermediate,
            shared_intermediate_size: None,
            shared_gated: false,
        }),
        Architecture::Qwen2Moe | Architecture::Qwen3Moe => {
            // transformers 5 saves Qwen3-MoE's `num_experts` under its attribute-map name.
            let experts = match cfg.opt_u64("num_local_experts")? {
                Some(n) => n,
                None => cfg.u64("num_experts")?,
            };
            if experts == 0 {
                return Ok(None);
            }
            let shared = match arch {
                Architecture::Qwen2Moe => Some(cfg.u64("shared_expert_intermediate_size")?),
                _ => None,
            };
            Some(MoeConfig {
                num_experts: experts,
                experts_per_token: cfg.u64("num_experts_per_tok")?,
                renormalize: cfg.opt_bool("norm_topk_prob")?.unwrap_or(false),
                expert_intermediate_size: cfg.u64("moe_intermediate_size")?,
                shared_intermediate_size: shared.filter(|&n| n > 0),
                shared_gated: shared.is_some_and(|n| n > 0),
            })
        }
        _ => None,
    })
}

/// Each layer's feed-forward: Mixtral's are all experts; Qwen-MoE's layer
/// `i` is experts unless listed in `mlp_only_layers` or `i + 1` is not a
/// multiple of `decoder_sparse_step` (transformers' `Qwen2MoeDecoderLayer`).
fn feed_forward_kinds(
    cfg: &JsonObject,
    arch: Architecture,
    layers: u64,
    experts: bool,
) -> Result<Vec<FeedForwardKind>> {
    if !experts {
        return Ok(vec![FeedForwardKind::Dense; layers as usize]);
    }
    if arch == Architecture::Mixtral {
        return Ok(vec![FeedForwardKind::MixtureOfExperts; layers as usize]);
    }
    let step = cfg.opt_u64("decoder_sparse_step")?.unwrap_or(1);
    if step == 0 {
        return Err(cfg.error("decoder_sparse_step is 0"));
    }
    let dense_only = match cfg.get("mlp_only_layers") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(_) => cfg.u64_list("mlp_only_layers")?.unwrap_or_default(),
    };
    if let Some(i) = dense_only.iter().find(|&&i| i >= layers) {
        return Err(cfg.error(format!(
            "mlp_only_layers names layer {i} of a {layers}-layer model"
        )));
    }
    Ok((0..layers)
        .map(|i| {
            if !dense_only.contains(&i) && (i + 1).is_multiple_of(step) {
                FeedForwardKind::MixtureOfExperts
            } else {
                FeedForwardKind::Dense
            }
        })
        .collect())
}

/// The attention of a transformer layer: heads, rope, scale and biases as `arch` reads them.
pub(super) fn attention_config(
    cfg: &JsonObject,
    arch: Architecture,
    hidden: u64,
    sliding_window: Option<u64>,
) -> Result<AttentionConfig> {
    let heads = cfg.u64("num_attention_heads")?;
    if heads == 0 {
        return Err(cfg.error("num_attention_heads is 0"));
    }
    let kv_heads = cfg.opt_u64("num_key_value_heads")?.unwrap_or(heads);
    let head_dim = cfg.opt_u64("head_dim")?.unwrap_or(hidden / heads);

    // transformers 5 moves partial_rotary_factor into rope_parameters.
    let nested_factor = match cfg.object("rope_parameters")? {
        Some(p) => p.opt_f64("partial_rotary_factor")?,
        None => None,
    };
    let rotary_dim = match cfg.opt_f64("partial_rotary_factor")?.or(nested_factor) {
        Some(f) if f > 0.0 && f <= 1.0 => ((head_dim as f64 * f) as u64) & !1,
        Some(f) => return Err(cfg.error(format!("partial_rotary_factor {f} is not in (0, 1]"))),
        None => head_dim,
    };
    let (rope, rope_local) = rope_configs(cfg, arch, rotary_dim)?;

    let query_scale = match cfg.opt_f64("query_pre_attn_scalar")? {
        Some(s) if is_gemma(arch) && s > 0.0 => 1.0 / s.sqrt(),
        _ => 1.0 / (head_dim as f64).sqrt(),
    } as f32;
    let attention_bias = cfg.opt_bool("attention_bias")?.unwrap_or(false);
    Ok(AttentionConfig {
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        qkv_bias: match arch {
            Architecture::Qwen2 => true,
            Architecture::Qwen2Moe => cfg.opt_bool("qkv_bias")?.unwrap_or(true),
            _ => attention_bias,
        },
        output_bias: !matches!(arch, Architecture::Qwen2 | Architecture::Qwen2Moe)
            && attention_bias,
        qk_norm: matches!(
            arch,
            Architecture::Qwen3 | Architecture::Qwen3Moe | Architecture::Gemma3
        ),
        sliding_window,
        query_scale,
        logit_softcap: cfg.opt_f64("attn_logit_softcapping")?.map(|v| v as f32),
        rope,
        rope_local,
    })
}

/// Refuses layer counts that could only come from a corrupt file, before anything is sized by them.
pub(super) fn check_layer_count(cfg: &JsonObject, layers: u64) -> Result<()> {
    if layers == 0 || layers > 4096 {
        return Err(cfg.error(format!(
            "num_hidden_layers {layers} is out of range (1..=4096)"
        )));
    }
    Ok(())
}

pub(super) fn activation(cfg: &JsonObject, name: &str) -> Result<Activation> {
    Ok(match name {
        "silu" | "swish" => Activation::Silu,
        "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" | "gelu_tanh" => Activation::GeluTanh,
        "gelu" => Activation::Gelu,
        "relu" => Activation::Relu,
        "relu2" => Activation::Relu2,
        other => return Err(cfg.error(format!("unsupported activation {other:?}"))),
    })
}

fn layer_types(
    cfg: &JsonObject,
    arch: Architecture,
    layers: u64,
    window: Option<u64>,
) -> Result<Vec<Mixer>> {
    if let Some(types) = cfg.str_list("layer_types")? {
        if types.len() as u64 != layers {
            return Err(cfg.error(format!(
                "layer_types lists {} layers but num_hidden_layers is {layers}",
                types.len()
            )));
        }
        return types
            .iter()
            .map(|t| match t.as_str() {
                "full_attention" => Ok(Mixer::FullAttention),
                "sliding_attention" if window.is_some() => Ok(Mixer::SlidingAttention),
                // Qwen2 lists sliding layers even when use_sliding_window is off.
                "sliding_attention" => Ok(Mixer::FullAttention),
                other => Err(cfg.error(format!("unsupported layer type {other:?} in layer_types"))),
            })
            .collect();
    }
    let sliding = |i: u64| -> bool {
        match arch {
            _ if window.is_none() => false,
            // Gemma 2 alternates, starting with a sliding layer.
            Architecture::Gemma2 => i.is_multiple_of(2),
            Architecture::Gemma3 => {
                let pattern = cfg
                    .opt_u64("sliding_window_pattern")
                    .ok()
                    .flatten()
                    .or(cfg.opt_u64("_sliding_window_pattern").ok().flatten())
                    .unwrap_or(6);
                pattern == 0 || !(i + 1).is_multiple_of(pattern)
            }
            Architecture::Qwen2 => {
                i >= cfg.opt_u64("max_window_layers").ok().flatten().unwrap_or(0)
            }
            // transformers 5's Qwen2MoeConfig: layers with i + 1 odd below max_window_layers.
            Architecture::Qwen2Moe => {
                i.is_multiple_of(2)
                    && i < cfg
                        .opt_u64("max_window_layers")
                        .ok()
                        .flatten()
                        .unwrap_or(28)
            }
            _ => true,
        }
    };
    Ok((0..layers)
        .map(|i| {
            if sliding(i) {
                Mixer::SlidingAttention
            } else {
                Mixer::FullAttention
            }
        })
        .collect())
}

/// The rope of full-attention layers and, when it differs, of sliding ones.
fn rope_configs(
    cfg: &JsonObject,
    arch: Architecture,
    rotary_dim: u64,
) -> Result<(RopeConfig, Option<RopeConfig>)> {
    let context = cfg.opt_u64("max_position_embeddings")?;
    if let Some(params) = cfg.object("rope_parameters")? {
        // Gemma 3 (transformers 5) keys the parameters by layer type.
        if let Some(full) = params.object("full_attention")? {
            let global = rope_from(&full, None, rotary_dim, context)?;
            let local = match params.object("sliding_attention")? {
                Some(s) => Some(rope_from(&s, None, rotary_dim, context)?),
                None => None,
            };
            return Ok((global, local));
        }
        return Ok((rope_from(&params, None, rotary_dim, context)?, None));
    }
    let theta = cfg.opt_f64("rope_theta")?.unwrap_or(10000.0);
    let scaling = cfg.object("rope_scaling")?;
    let global = match scaling {
        Some(s) => rope_from(&s, Some(theta), rotary_dim, context)?,
        None => rope_plain(theta, rotary_dim),
    };
    let local = match (arch, cfg.opt_f64("rope_local_base_freq")?) {
        (Architecture::Gemma3, Some(base)) => Some(rope_plain(base, rotary_dim)),
        (Architecture::Gemma3, None) => Some(rope_plain(10000.0, rotary_dim)),
        _ => None,
    };
    Ok((global, local))
}

fn rope_plain(theta: f64, rotary_dim: u64) -> RopeConfig {
    RopeConfig {
        theta,
        rotary_dim,
        layout: RopeLayout::Neox,
        scaling: RopeScaling::None,
    }
}

/// One rope parameter object (`rope_parameters` or v4 `rope_scaling`).
fn rope_from(
    p: &JsonObject,
    theta: Option<f64>,
    rotary_dim: u64,
    context: Option<u64>,
) -> Result<RopeConfig> {
    let theta = match p.opt_f64("rope_theta")? {
        Some(t) => t,
        None => theta.unwrap_or(10000.0),
    };
    let kind = match p.opt_str("rope_type")? {
        Some(t) => t.to_string(),
        None => p.opt_str("type")?.unwrap_or("default").to_string(),
    };
    let original = |key_default: Option<u64>| -> Result<u64> {
        p.opt_u64("original_max_position_embeddings")?
            .or(key_default)
            .ok_or_else(|| {
                p.error(format!(
                    "rope type {kind} needs original_max_position_embeddings"
                ))
            })
    };
    let scaling = match kind.as_str() {
        "default" | "none" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: p.f64("factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: p.f64("factor")?,
            low_freq_factor: p.f64("low_freq_factor")?,
            high_freq_factor: p.f64("high_freq_factor")?,
            original_context_length: original(None)?,
        },
        "yarn" => {
            let factor = p.f64("factor")?;
            let default_attention = 0.1 * factor.ln() + 1.0;
            RopeScaling::Yarn {
                factor,
                original_context_length: original(context.map(|c| (c as f64 / factor) as u64))?,
                beta_fast: p.opt_f64("beta_fast")?.unwrap_or(32.0),
                beta_slow: p.opt_f64("beta_slow")?.unwrap_or(1.0),
                attention_factor: p.opt_f64("attention_factor")?.unwrap_or(default_attention),
            }
        }
        "longrope" | "su" => {
            let short = p
                .f64_list("short_factor")?
                .ok_or_else(|| p.error("longrope scaling needs short_factor"))?;
            let long = p
                .f64_list("long_factor")?
                .ok_or_else(|| p.error("longrope scaling needs long_factor"))?;
            if short.len() as u64 != rotary_dim / 2 || long.len() as u64 != rotary_dim / 2 {
                return Err(p.error(format!(
                    "longrope factors have {} and {} entries, expected {}",
                    short.len(),
                    long.len(),
                    rotary_dim / 2
                )));
            }
            let original = original(None)?;
            let factor = context.unwrap_or(original) as f64 / original as f64;
            let default_attention = if factor <= 1.0 {
                1.0
            } else {
                (1.0 + factor.ln() / (original as f64).ln()).sqrt()
            };
            RopeScaling::LongRope {
                short_factor: short,
                long_factor: long,
                original_context_length: original,
                attention_factor: p.opt_f64("attention_factor")?.unwrap_or(default_attention),
            }
        }
        other => return Err(p.error(format!("unsupported rope scaling type {other:?}"))),
    };
    Ok(RopeConfig {
        theta,
        rotary_dim,
        layout: RopeLayout::Neox,
        scaling,
    })
}

fn parse_ssm(cfg: &JsonObject, arch: Architecture) -> Result<ModelConfig> {
    let hidden = cfg.u64("hidden_size")?;
    let layers = cfg.u64("num_hidden_layers")?;
    check_layer_count(cfg, layers)?;
    let expand = cfg.opt_u64("expand")?.unwrap_or(2);
    let d_inner = match cfg.opt_u64("intermediate_size")? {
        Some(i) if arch == Architecture::Mamba => i,
        _ => expand * hidden,
    };
    let d_state = cfg.u64("state_size")?;
    let d_conv = cfg.opt_u64("conv_kernel")?.unwrap_or(4);
    let conv_bias = cfg.opt_bool("use_conv_bias")?.unwrap_or(true);
    let proj_bias = cfg.opt_bool("use_bias")?.unwrap_or(false);
    let ssm = if arch == Architecture::Mamba {
        let dt_rank = match cfg.get("time_step_rank") {
            Some(serde_json::Value::String(s)) if s == "auto" => hidden.div_ceil(16),
            _ => cfg
                .opt_u64("time_step_rank")?
                .unwrap_or(hidden.div_ceil(16)),
        };
        let m = MambaConfig {
            d_state,
            d_conv,
            d_inner,
            dt_rank,
            conv_bias,
            proj_bias,
            dt_bc_norms: false,
        };
        SsmConfig::Mamba(m)
    } else {
        let num_heads = cfg.u64("num_heads")?;
        let head_dim = cfg
            .opt_u64("head_dim")?
            .unwrap_or(d_inner.checked_div(num_heads).unwrap_or(0));
        let limit = cfg
            .f64_list("time_step_limit")?
            .unwrap_or(vec![0.0, f64::INFINITY]);
        let dt_limit = match limit[..] {
            [lo, hi] if lo <= hi => (lo, hi),
            _ => {
                return Err(cfg.error(format!(
                    "time_step_limit {limit:?} is not a [min, max] pair"
                )))
            }
        };
        let m = Mamba2Config {
            d_state,
            d_conv,
            d_inner,
            num_heads,
            head_dim,
            n_groups: cfg.opt_u64("n_groups")?.unwrap_or(1),
            chunk_size: cfg.opt_u64("chunk_size")?.unwrap_or(256),
            conv_bias,
            proj_bias,
            dt_limit,
            norm_before_gate: cfg.opt_bool("norm_before_gate")?.unwrap_or(false),
        };
        SsmConfig::Mamba2(m)
    };
    let dims = ModelDims {
        vocab_size: cfg.u64("vocab_size")?,
        hidden_size: hidden,
        num_layers: layers,
        context_length: cfg
            .opt_u64("max_position_embeddings")?
            .unwrap_or(SSM_CONTEXT_LENGTH),
        tie_word_embeddings: cfg
            .opt_bool("tie_word_embeddings")?
            .unwrap_or(arch == Architecture::Mamba),
        norm_eps: cfg.opt_f64("layer_norm_epsilon")?.unwrap_or(1e-5) as f32,
    };
    Ok(ModelConfig::state_space(arch, dims, ssm))
}
