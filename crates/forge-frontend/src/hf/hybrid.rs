//! `config.json` of hybrid models, whose layers mix attention with
//! recurrent mixers, in both forms people meet: as transformers 5 saves
//! them and as the original repositories ship them.
//!
//! - LFM2: `layer_types` of `"conv"` / `"full_attention"`, or the original
//!   `full_attn_idxs`; the feed-forward width is adjusted from
//!   `intermediate_size` (originally `block_ff_dim`) as `block_auto_adjust_ff_dim` says.
//! - Bamba: attention at `attn_layer_indices`, Mamba-2 elsewhere, from
//!   `mamba_*` keys; partial rotary of one half unless the config says otherwise.
//! - Granite-4.0-H: `layer_types` (`layers_block_type` in older files) of
//!   `"mamba"` / `"attention"`; `position_embedding_type` `"nope"` means no
//!   rope at all; `attention_multiplier` replaces 1/√d; with
//!   `num_local_experts > 0` every feed-forward is experts plus the shared
//!   MLP as the mixture's shared expert. Its other
//!   multipliers are folded into weights by the name mapping
//!   (`hybrid_names`), the embedding multiplier into the embedding's scale.
//! - Nemotron-H: `layers_block_type` of `"linear_attention"` (Mamba-2),
//!   `"full_attention"` and `"mlp"`, or the original `hybrid_override_pattern`
//!   (`M`, `*`, `-`); each layer is one norm and one of the three; attention
//!   has no rope; dt is clamped below by `time_step_min`.
//! - Falcon-H1: attention and Mamba-2 (`mamba_d_ssm` wide) side by side in
//!   every layer; its µP multipliers are folded like Granite's.
//! - Jamba: attention (no rope) where `i % attn_layer_period ==
//!   attn_layer_offset`, Mamba-1 elsewhere, with RMSNorms over dt, B and C;
//!   experts (top-k of the softmax, not renormalised) where `i %
//!   expert_layer_period == expert_layer_offset` and `num_experts > 1`, a
//!   dense gated MLP elsewhere.

use forge_ir::{
    Activation, Architecture, AttentionConfig, FeedForwardConfig, FeedForwardKind, LayerSpec,
    Mamba2Config, MambaConfig, Mixer, ModelConfig, ModelDims, MoeConfig, ShortConvConfig,
    SsmConfig,
};

use super::config::{activation, attention_config, check_layer_count};
use super::json::JsonObject;
use crate::multipliers::Multipliers;
use crate::Result;

/// A config with the sizes every hybrid states the same way (untied unless
/// `tie_word_embeddings` says otherwise), but for its norm epsilon's key;
/// each reader fills in its mixers with struct update syntax.
fn sized(
    cfg: &JsonObject,
    arch: Architecture,
    hidden: u64,
    layers: u64,
    norm_eps_key: &str,
) -> Result<ModelConfig> {
    let dims = ModelDims {
        vocab_size: cfg.u64("vocab_size")?,
        hidden_size: hidden,
        num_layers: layers,
        context_length: cfg.u64("max_position_embeddings")?,
        tie_word_embeddings: cfg.opt_bool("tie_word_embeddings")?.unwrap_or(false),
        norm_eps: cfg.opt_f64(norm_eps_key)?.unwrap_or(1e-5) as f32,
    };
    Ok(ModelConfig::from_dims(arch, dims))
}

pub fn parse(cfg: &JsonObject, arch: Architecture) -> Result<ModelConfig> {
    match arch {
        Architecture::Lfm2 => lfm2(cfg),
        Architecture::Bamba | Architecture::GraniteHybrid => mamba2_attention(cfg, arch),
        Architecture::NemotronH => nemotron_h(cfg),
        Architecture::FalconH1 => falcon_h1(cfg),
        Architecture::Jamba => jamba(cfg),
        other => Err(cfg.error(format!("{other} is not a hybrid architecture"))),
    }
}

/// The multipliers `config.json` declares for `arch` (all 1 for most).
pub fn multipliers(cfg: &JsonObject, arch: Architecture) -> Result<Multipliers> {
    let mut m = Multipliers::default();
    let factor = |key: &str| -> Result<f32> { Ok(cfg.opt_f64(key)?.unwrap_or(1.0) as f32) };
    if arch == Architecture::GraniteHybrid {
        m.residual = factor("residual_multiplier")?;
        let scaling = factor("logits_scaling")?;
        if scaling == 0.0 {
            return Err(cfg.error("logits_scaling is 0"));
        }
        m.logits = 1.0 / scaling;
    }
    if arch == Architecture::FalconH1 {
        m.logits = factor("lm_head_multiplier")?;
        m.attention_in = factor("attention_in_multiplier")?;
        m.attention_out = factor("attention_out_multiplier")?;
        m.key = factor("key_multiplier")?;
        m.ssm_in = factor("ssm_in_multiplier")?;
        m.ssm_out = factor("ssm_out_multiplier")?;
        if let Some(parts) = cfg.f64_list("ssm_multipliers")? {
            let parts: [f64; 5] = parts.try_into().map_err(|p: Vec<f64>| {
                cfg.error(format!(
                    "ssm_multipliers has {} values, expected 5",
                    p.len()
                ))
            })?;
            m.ssm_parts = parts.map(|f| f as f32);
        }
        if let Some(parts) = cfg.f64_list("mlp_multipliers")? {
            let [gate, down] = parts[..] else {
                return Err(cfg.error(format!(
                    "mlp_multipliers has {} values, expected 2",
                    parts.len()
                )));
            };
            (m.mlp_gate, m.mlp_down) = (gate as f32, down as f32);
        }
    }
    Ok(m)
}

/// The layers' mixers from a list of per-layer type names, via `name_of`.
fn mixers_from_list(
    cfg: &JsonObject,
    key: &str,
    layers: u64,
    name_of: impl Fn(&str) -> Option<Mixer>,
) -> Result<Option<Vec<Mixer>>> {
    let Some(types) = cfg.str_list(key)? else {
        return Ok(None);
    };
    if types.len() as u64 != layers {
        return Err(cfg.error(format!(
            "{key} lists {} layers but num_hidden_layers is {layers}",
            types.len()
        )));
    }
    types
        .iter()
        .map(|t| {
            name_of(t).ok_or_else(|| cfg.error(format!("unsupported layer type {t:?} in {key}")))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Layers whose index is listed under `key` get `listed`, the others `rest`.
fn mixers_from_indices(
    cfg: &JsonObject,
    key: &str,
    layers: u64,
    listed: Mixer,
    rest: Mixer,
) -> Result<Option<Vec<Mixer>>> {
    let Some(indices) = cfg.u64_list(key)? else {
        return Ok(None);
    };
    if let Some(i) = indices.iter().find(|&&i| i >= layers) {
        return Err(cfg.error(format!("{key} names layer {i} of a {layers}-layer model")));
    }
    Ok(Some(
        (0..layers)
            .map(|i| if indices.contains(&i) { listed } else { rest })
            .collect(),
    ))
}

fn lfm2(cfg: &JsonObject) -> Result<ModelConfig> {
    let arch = Architecture::Lfm2;
    let hidden = cfg.u64("hidden_size")?;
    let layers = cfg.u64("num_hidden_layers")?;
    check_layer_count(cfg, layers)?;
    let mixers = match mixers_from_list(cfg, "layer_types", layers, |t| match t {
        "conv" => Some(Mixer::ShortConv),
        "full_attention" => Some(Mixer::FullAttention),
        _ => None,
    })? {
        Some(m) => m,
        None => mixers_from_indices(
            cfg,
            "full_attn_idxs",
            layers,
            Mixer::FullAttention,
            Mixer::ShortConv,
        )?
        // transformers: no list at all makes every layer attention.
        .unwrap_or_else(|| vec![Mixer::FullAttention; layers as usize]),
    };
    let mut attention = attention_config(cfg, arch, hidden, None)?;
    attention.qk_norm = true;
    // As transformers: the original `block_ff_dim` wins over `intermediate_size`.
    let mut ff = match cfg.opt_u64("block_ff_dim")? {
        Some(n) => n,
        None => cfg.u64("intermediate_size")?,
    };
    if cfg.opt_bool("block_auto_adjust_ff_dim")?.unwrap_or(true) {
        ff = 2 * ff / 3;
        let multiplier = match cfg.get("block_ffn_dim_multiplier") {
            Some(serde_json::Value::Null) => None,
            _ => Some(cfg.opt_f64("block_ffn_dim_multiplier")?.unwrap_or(1.0)),
        };
        if let Some(m) = multiplier {
            let multiple = cfg.opt_u64("block_multiple_of")?.unwrap_or(256).max(1);
            ff = ((m * ff as f64) as u64).next_multiple_of(multiple);
        }
    }
    let tied = match cfg.opt_bool("tie_word_embeddings")? {
        Some(t) => t,
        None => cfg.opt_bool("tie_embedding")?.unwrap_or(true),
    };
    let bias = cfg.opt_bool("conv_bias")?.unwrap_or(false);
    Ok(ModelConfig {
        attention: Some(attention),
        feed_forward: Some(FeedForwardConfig {
            intermediate_size: ff,
            activation: Activation::Silu,
            bias: false,
            sandwich_norms: false,
            gated: true,
        }),
        short_conv: Some(ShortConvConfig {
            kernel: cfg.opt_u64("conv_L_cache")?.unwrap_or(3),
            bias,
        }),
        layers: mixers
            .into_iter()
            .map(|mixer| LayerSpec {
                mixer,
                feed_forward: FeedForwardKind::Dense,
            })
            .collect(),
        tie_word_embeddings: tied,
        ..sized(cfg, arch, hidden, layers, "norm_eps")?
    })
}

/// The Mamba-2 mixer of a hybrid, from `mamba_*` keys (Bamba, Granite-4.0-H).
fn prefixed_mamba2(cfg: &JsonObject, hidden: u64) -> Result<Mamba2Config> {
    let heads = cfg.u64("mamba_n_heads")?;
    let expand = cfg.opt_u64("mamba_expand")?.unwrap_or(2);
    let head_dim = match cfg.get("mamba_d_head") {
        None | Some(serde_json::Value::String(_)) => {
            (expand * hidden).checked_div(heads).unwrap_or(0)
        }
        Some(_) => cfg.u64("mamba_d_head")?,
    };
    Ok(Mamba2Config {
        d_state: cfg.u64("mamba_d_state")?,
        d_conv: cfg.opt_u64("mamba_d_conv")?.unwrap_or(4),
        d_inner: heads * head_dim,
        num_heads: heads,
        head_dim,
        n_groups: cfg.opt_u64("mamba_n_groups")?.unwrap_or(1),
        chunk_size: cfg.opt_u64("mamba_chunk_size")?.unwrap_or(256),
        conv_bias: cfg.opt_bool("mamba_conv_bias")?.unwrap_or(true),
        proj_bias: cfg.opt_bool("mamba_proj_bias")?.unwrap_or(false),
        dt_limit: dt_limit(cfg)?,
        norm_before_gate: false,
    })
}

/// `time_step_limit` as a (min, max) pair; absent means no clamp.
pub(super) fn dt_limit(cfg: &JsonObject) -> Result<(f64, f64)> {
    let limit = cfg
        .f64_list("time_step_limit")?
        .unwrap_or(vec![0.0, f64::INFINITY]);
    match limit[..] {
        [lo, hi] if lo <= hi => Ok((lo, hi)),
        _ => Err(cfg.error(format!(
            "time_step_limit {limit:?} is not a [min, max] pair"
        ))),
    }
}

/// Bamba and Granite-4.0-H: Mamba-2 and attention layers, each followed by
/// a gated MLP.
fn mamba2_attention(cfg: &JsonObject, arch: Architecture) -> Result<ModelConfig> {
    let hidden = cfg.u64("hidden_size")?;
    let layers = cfg.u64("num_hidden_layers")?;
    check_layer_count(cfg, layers)?;
    let granite = arch == Architecture::GraniteHybrid;
    let moe = if granite { granite_experts(cfg)? } else { None };
    let ffn_kind = match moe {
        Some(_) => FeedForwardKind::MixtureOfExperts,
        None => FeedForwardKind::Dense,
    };
    let name_of = |t: &str| match t {
        "mamba" | "linear_attention" => Some(Mixer::Mamba2),
        "attention" | "full_attention" => Some(Mixer::FullAttention),
        _ => None,
    };
    let listed = match mixers_from_list(cfg, "layer_types", layers, name_of)? {
        Some(m) => Some(m),
        None => mixers_from_list(cfg, "layers_block_type", layers, name_of)?,
    };
    let mixers = match listed {
        Some(m) => m,
        None => mixers_from_indices(
            cfg,
            "attn_layer_indices",
            layers,
            Mixer::FullAttention,
            Mixer::Mamba2,
        )?
        .unwrap_or_else(|| vec![Mixer::Mamba2; layers as usize]),
    };
    let attention = if mixers.contains(&Mixer::FullAttention) {
        Some(hybrid_attention(cfg, arch, hidden)?)
    } else {
        None
    };
    let intermediate = if granite {
        cfg.u64("shared_intermediate_size")?
    } else {
        cfg.u64("intermediate_size")?
    };
    let act = cfg.opt_str("hidden_act")?.unwrap_or("silu").to_string();
    let embedding_scale = match cfg.opt_f64("embedding_multiplier")? {
        Some(m) if granite && m != 1.0 => Some(m as f32),
        _ => None,
    };
    Ok(ModelConfig {
        embedding_scale,
        attention,
        feed_forward: Some(FeedForwardConfig {
            intermediate_size: intermediate,
            activation: activation(cfg, &act)?,
            bias: cfg.opt_bool("mlp_bias")?.unwrap_or(false),
            sandwich_norms: false,
            gated: true,
        }),
        moe,
        ssm: Some(SsmConfig::Mamba2(prefixed_mamba2(cfg, hidden)?)),
        layers: mixers
            .into_iter()
            .map(|mixer| LayerSpec {
                mixer,
                feed_forward: ffn_kind,
            })
            .collect(),
        ..sized(cfg, arch, hidden, layers, "rms_norm_eps")?
    })
}

/// Granite-4.0-H's experts when `num_local_experts > 0`: every layer's
/// feed-forward is then `num_local_experts` experts of `intermediate_size`
/// plus the shared MLP (`shared_intermediate_size`, ungated) that the
/// dense models have alone. Its router takes the top-k logits and a softmax
/// over those k, which is the top-k of the softmax renormalised.
fn granite_experts(cfg: &JsonObject) -> Result<Option<MoeConfig>> {
    let experts = cfg.opt_u64("num_local_experts")?.unwrap_or(0);
    if experts == 0 {
        return Ok(None);
    }
    Ok(Some(MoeConfig {
        num_experts: experts,
        // transformers' GraniteMoeHybridConfig defaults.
        experts_per_token: cfg.opt_u64("num_experts_per_tok")?.unwrap_or(2),
        renormalize: true,
        expert_intermediate_size: cfg.opt_u64("intermediate_size")?.unwrap_or(11008),
        shared_intermediate_size: Some(cfg.u64("shared_intermediate_size")?),
        shared_gated: false,
    }))
}

/// The attention of Bamba and Granite-4.0-H layers.
fn hybrid_attention(cfg: &JsonObject, arch: Architecture, hidden: u64) -> Result<AttentionConfig> {
    let mut a = attention_config(cfg, arch, hidden, None)?;
    match arch {
        Architecture::GraniteHybrid => {
            if cfg.opt_str("position_embedding_type")? == Some("nope") {
                a.rope.rotary_dim = 0;
            }
            if let Some(m) = cfg.opt_f64("attention_multiplier")? {
                a.query_scale = m as f32;
            }
        }
        // Bamba rotates half of each head whatever an older config says.
        Architecture::Bamba if !has_partial_rotary(cfg)? => {
            a.rope.rotary_dim = (a.head_dim / 2) & !1;
        }
        _ => {}
    }
    Ok(a)
}

fn has_partial_rotary(cfg: &JsonObject) -> Result<bool> {
    if cfg.has("partial_rotary_factor") {
        return Ok(true);
    }
    Ok(match cfg.object("rope_parameters")? {
        Some(p) => p.has("partial_rotary_factor"),
        None => false,
    })
}

fn nemotron_h(cfg: &JsonObject) -> Result<ModelConfig> {
    let arch = Architecture::NemotronH;
    let hidden = cfg.u64("hidden_size")?;
    let kinds: Vec<String> = match cfg.str_list("layers_block_type")? {
        Some(list) => list,
        None => match cfg.opt_str("hybrid_override_pattern")? {
            Some(pattern) => pattern
                .chars()
                .map(|ch| match ch {
                    'M' => Ok("linear_attention".to_string()),
                    '*' => Ok("full_attention".to_string()),
                    '-' => Ok("mlp".to_string()),
                    'E' => Ok("moe".to_string()),
                    other => Err(cfg.error(format!(
                        "unknown layer {other:?} in hybrid_override_pattern {pattern:?}"
                    ))),
                })
                .collect::<Result<Vec<_>>>()?,
            None => return Err(cfg.error("missing layers_block_type or hybrid_override_pattern")),
        },
    };
    let layers = kinds.len() as u64;
    if let Some(n) = cfg.opt_u64("num_hidden_layers")? {
        if n != layers {
            return Err(cfg.error(format!(
                "num_hidden_layers is {n} but the layer pattern has {layers} layers"
            )));
        }
    }
    check_layer_count(cfg, layers)?;
    let specs = kinds
        .iter()
        .map(|k| {
            let (mixer, feed_forward) = match k.as_str() {
                "linear_attention" | "mamba" => (Mixer::Mamba2, FeedForwardKind::None),
                "full_attention" | "attention" => (Mixer::FullAttention, FeedForwardKind::None),
                "mlp" => (Mixer::None, FeedForwardKind::Dense),
                "moe" => {
                    return Err(
                        cfg.error("Nemotron-H mixture-of-experts layers are not supported yet")
                    )
                }
                other => return Err(cfg.error(format!("unsupported layer type {other:?}"))),
            };
            Ok(LayerSpec {
                mixer,
                feed_forward,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let attention = if specs.iter().any(|l| l.mixer.attends()) {
        let mut a = attention_config(cfg, arch, hidden, None)?;
        a.rope.rotary_dim = 0;
        Some(a)
    } else {
        None
    };
    let heads = cfg.u64("mamba_num_heads")?;
    let head_dim = cfg.u64("mamba_head_dim")?;
    let ssm = Mamba2Config {
        d_state: cfg.u64("ssm_state_size")?,
        d_conv: cfg.opt_u64("conv_kernel")?.unwrap_or(4),
        d_inner: heads * head_dim,
        num_heads: heads,
        head_dim,
        n_groups: cfg.opt_u64("n_groups")?.unwrap_or(1),
        chunk_size: cfg.opt_u64("chunk_size")?.unwrap_or(256),
        conv_bias: cfg.opt_bool("use_conv_bias")?.unwrap_or(true),
        proj_bias: cfg.opt_bool("mamba_proj_bias")?.unwrap_or(false),
        dt_limit: (
            cfg.opt_f64("time_step_min")?.unwrap_or(0.001),
            f64::INFINITY,
        ),
        norm_before_gate: false,
    };
    let act = cfg
        .opt_str("mlp_hidden_act")?
        .unwrap_or("relu2")
        .to_string();
    Ok(ModelConfig {
        attention,
        feed_forward: Some(FeedForwardConfig {
            intermediate_size: cfg.u64("intermediate_size")?,
            activation: activation(cfg, &act)?,
            bias: cfg.opt_bool("mlp_bias")?.unwrap_or(false),
            sandwich_norms: false,
            gated: false,
        }),
        ssm: Some(SsmConfig::Mamba2(ssm)),
        layers: specs,
        ..sized(cfg, arch, hidden, layers, "layer_norm_epsilon")?
    })
}

fn falcon_h1(cfg: &JsonObject) -> Result<ModelConfig> {
    let arch = Architecture::FalconH1;
    let hidden = cfg.u64("hidden_size")?;
    let layers = cfg.u64("num_hidden_layers")?;
    check_layer_count(cfg, layers)?;
    if cfg.opt_bool("mamba_rms_norm")? == Some(false) {
        return Err(cfg.error("Falcon-H1 without mamba_rms_norm is not supported yet"));
    }
    let proj_bias = cfg.opt_bool("mamba_proj_bias")?.unwrap_or(false);
    if cfg.opt_bool("projectors_bias")?.unwrap_or(false) != proj_bias {
        return Err(cfg.error(
            "Falcon-H1 with projectors_bias different from mamba_proj_bias is not supported yet",
        ));
    }
    let heads = cfg.u64("mamba_n_heads")?;
    let d_inner = match cfg.opt_u64("mamba_d_ssm")? {
        Some(d) => d,
        None => cfg.opt_u64("mamba_expand")?.unwrap_or(2) * hidden,
    };
    let head_dim = match cfg.opt_u64("mamba_d_head")? {
        Some(d) => d,
        None => d_inner.checked_div(heads).unwrap_or(0),
    };
    let ssm = Mamba2Config {
        d_state: cfg.u64("mamba_d_state")?,
        d_conv: cfg.opt_u64("mamba_d_conv")?.unwrap_or(4),
        d_inner,
        num_heads: heads,
        head_dim,
        n_groups: cfg.opt_u64("mamba_n_groups")?.unwrap_or(1),
        chunk_size: cfg.opt_u64("mamba_chunk_size")?.unwrap_or(256),
        conv_bias: cfg.opt_bool("mamba_conv_bias")?.unwrap_or(true),
        proj_bias,
        dt_limit: dt_limit(cfg)?,
        norm_before_gate: cfg.opt_bool("mamba_norm_before_gate")?.unwrap_or(true),
    };
    let embedding_scale = match cfg.opt_f64("embedding_multiplier")? {
        Some(m) if m != 1.0 => Some(m as f32),
        _ => None,
    };
    let act = cfg.opt_str("hidden_act")?.unwrap_or("silu").to_string();
    Ok(ModelConfig {
        embedding_scale,
        attention: Some(attention_config(cfg, arch, hidden, None)?),
        feed_forward: Some(FeedForwardConfig {
            intermediate_size: cfg.u64("intermediate_size")?,
            activation: activation(cfg, &act)?,
            bias: cfg.opt_bool("mlp_bias")?.unwrap_or(false),
            sandwich_norms: false,
            gated: true,
        }),
        ssm: Some(SsmConfig::Mamba2(ssm)),
        layers: (0..layers)
            .map(|_| LayerSpec {
                mixer: Mixer::AttentionMamba2,
                feed_forward: FeedForwardKind::Dense,
            })
            .collect(),
        ..sized(cfg, arch, hidden, layers, "rms_norm_eps")?
    })
}

/// Layer `i` is picked when `i % period == offset` (Jamba's attention and expert layers).
fn periodic(cfg: &JsonObject, what: &str, default: (u64, u64)) -> Result<impl Fn(u64) -> bool> {
    let period = cfg
        .opt_u64(&format!("{what}_layer_period"))?
        .unwrap_or(default.0);
    let offset = cfg
        .opt_u64(&format!("{what}_layer_offset"))?
        .unwrap_or(default.1);
    if offset >= period {
        return Err(cfg.error(format!(
            "{what}_layer_offset {offset} is not below {what}_layer_period {period}"
        )));
    }
    Ok(move |i: u64| i % period == offset)
}

/// Jamba (transformers' `JambaConfig`; defaults as its).
fn jamba(cfg: &JsonObject) -> Result<ModelConfig> {
    let arch = Architecture::Jamba;
    let hidden = cfg.u64("hidden_size")?;
    let layers = cfg.u64("num_hidden_layers")?;
    check_layer_count(cfg, layers)?;
    let attends = periodic(cfg, "attn", (8, 4))?;
    let has_experts = periodic(cfg, "expert", (2, 1))?;
    // `num_local_experts` is the attribute-map name of `num_experts`.
    let experts = match cfg.opt_u64("num_experts")? {
        Some(n) => n,
        None => cfg.opt_u64("num_local_experts")?.unwrap_or(16),
    };
    let intermediate = cfg.u64("intermediate_size")?;
    let moe = (experts > 1).then(|| -> Result<MoeConfig> {
        Ok(MoeConfig {
            num_experts: experts,
            experts_per_token: cfg.opt_u64("num_experts_per_tok")?.unwrap_or(2),
            renormalize: false,
            expert_intermediate_size: intermediate,
            shared_intermediate_size: None,
            shared_gated: false,
        })
    });
    let moe = moe.transpose()?;
    let specs: Vec<LayerSpec> = (0..layers)
        .map(|i| LayerSpec {
            mixer: if attends(i) {
                Mixer::FullAttention
            } else {
                Mixer::Mamba
            },
            feed_forward: if moe.is_some() && has_experts(i) {
                FeedForwardKind::MixtureOfExperts
            } else {
                FeedForwardKind::Dense
            },
        })
        .collect();
    let attention = if specs.iter().any(|l| l.mixer.attends()) {
        let mut a = attention_config(cfg, arch, hidden, None)?;
        a.rope.rotary_dim = 0;
        Some(a)
    } else {
        None
    };
    let dt_rank = match cfg.get("mamba_dt_rank") {
        None | Some(serde_json::Value::Null) => hidden.div_ceil(16),
        Some(serde_json::Value::String(s)) if s == "auto" => hidden.div_ceil(16),
        Some(_) => cfg.u64("mamba_dt_rank")?,
    };
    let ssm = MambaConfig {
        d_state: cfg.opt_u64("mamba_d_state")?.unwrap_or(16),
        d_conv: cfg.opt_u64("mamba_d_conv")?.unwrap_or(4),
        d_inner: cfg.opt_u64("mamba_expand")?.unwrap_or(2) * hidden,
        dt_rank,
        conv_bias: cfg.opt_bool("mamba_conv_bias")?.unwrap_or(true),
        proj_bias: cfg.opt_bool("mamba_proj_bias")?.unwrap_or(false),
        dt_bc_norms: true,
    };
    let act = cfg.opt_str("hidden_act")?.unwrap_or("silu").to_string();
    Ok(ModelConfig {
        attention,
        feed_forward: Some(FeedForwardConfig {
            intermediate_size: intermediate,
            activation: activation(cfg, &act)?,
            bias: false,
            sandwich_norms: false,
            gated: true,
        }),
        moe,
        ssm: Some(SsmConfig::Mamba(ssm)),
        layers: specs,
        norm_eps: cfg.opt_f64("rms_norm_eps")?.unwrap_or(1e-6) as f32,
        ..sized(cfg, arch, hidden, layers, "rms_norm_eps")?
    })
}
