//! `config.json` of hybrid models, whose layers mix attention with
//! recurrent mixers, in both forms people meet: as transformers 5 saves
//! them and as the original repositories ship them.
//!
//! - LFM2: `layer_types` of `"conv"` / `"full_attention"`, or the original
//!   `full_attn_idxs`; the feed-forward width is adjusted from
//!   `intermediate_size` (originally `block_ff_dim`) as `block_auto_adjust_ff_dim` says.

use forge_ir::{
    Activation, Architecture, FeedForwardConfig, FeedForwardKind, LayerSpec, Mixer, ModelConfig,
    ShortConvConfig,
};

use super::config::{attention_config, check_layer_count};
use super::json::JsonObject;
use crate::Result;

pub fn parse(cfg: &JsonObject, arch: Architecture) -> Result<ModelConfig> {
    match arch {
        Architecture::Lfm2 => lfm2(cfg),
        other => Err(cfg.error(format!("{other} is not a hybrid architecture"))),
    }
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
    let mut ff = match cfg.opt_u64("intermediate_size")? {
        Some(n) => n,
        None => cfg.u64("block_ff_dim")?,
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
        architecture: arch,
        vocab_size: cfg.u64("vocab_size")?,
        hidden_size: hidden,
        num_layers: layers,
        context_length: cfg.u64("max_position_embeddings")?,
        tie_word_embeddings: tied,
        norm_eps: cfg.opt_f64("norm_eps")?.unwrap_or(1e-5) as f32,
        embedding_scale: None,
        final_logit_softcap: None,
        attention: Some(attention),
        feed_forward: Some(FeedForwardConfig {
            intermediate_size: ff,
            activation: Activation::Silu,
            bias: false,
            sandwich_norms: false,
            gated: true,
        }),
        moe: None,
        ssm: None,
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
    })
}
