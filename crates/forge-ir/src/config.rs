//! Model hyper-parameters: everything the graph and the kernels are specialised on.

use serde::{Deserialize, Serialize};

/// The architecture family a checkpoint belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Gemma,
    Gemma2,
    Gemma3,
    Phi3,
    Mixtral,
    #[serde(rename = "qwen2_moe")]
    Qwen2Moe,
    #[serde(rename = "qwen3_moe")]
    Qwen3Moe,
    Mamba,
    Mamba2,
    Lfm2,
    Bamba,
    GraniteHybrid,
    NemotronH,
    FalconH1,
    Jamba,
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
            Architecture::Gemma => "gemma",
            Architecture::Gemma2 => "gemma2",
            Architecture::Gemma3 => "gemma3",
            Architecture::Phi3 => "phi3",
            Architecture::Mixtral => "mixtral",
            Architecture::Qwen2Moe => "qwen2_moe",
            Architecture::Qwen3Moe => "qwen3_moe",
            Architecture::Mamba => "mamba",
            Architecture::Mamba2 => "mamba2",
            Architecture::Lfm2 => "lfm2",
            Architecture::Bamba => "bamba",
            Architecture::GraniteHybrid => "granitehybrid",
            Architecture::NemotronH => "nemotron_h",
            Architecture::FalconH1 => "falcon_h1",
            Architecture::Jamba => "jamba",
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: u64,
    pub hidden_size: u64,
    pub num_layers: u64,
    /// Longest sequence the model was trained for (after rope scaling).
    pub context_length: u64,
    /// The LM head reuses the token embedding matrix.
    pub tie_word_embeddings: bool,
    /// Epsilon of every RMSNorm in the model.
    pub norm_eps: f32,
    /// Embeddings are multiplied by this after the lookup (Gemma: sqrt(hidden)).
    pub embedding_scale: Option<f32>,
    /// Final logits become `cap * tanh(logits / cap)` (Gemma 2).
    pub final_logit_softcap: Option<f32>,
    pub attention: Option<AttentionConfig>,
    pub feed_forward: Option<FeedForwardConfig>,
    pub moe: Option<MoeConfig>,
    pub ssm: Option<SsmConfig>,
    /// LFM2's gated short convolutions.
    pub short_conv: Option<ShortConvConfig>,
    /// One entry per layer, in order.
    pub layers: Vec<LayerSpec>,
}

/// What one layer is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSpec {
    pub mixer: Mixer,
    pub feed_forward: FeedForwardKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mixer {
    /// Causal attention over the whole context.
    FullAttention,
    /// Causal attention over the last `AttentionConfig::sliding_window` positions.
    SlidingAttention,
    /// Mamba-1 selective state-space block.
    Mamba,
    /// Mamba-2 state-space-duality block.
    Mamba2,
    /// LFM2's gated short convolution.
    ShortConv,
    /// Attention and Mamba-2 side by side on the same normed input, summed (Falcon-H1).
    AttentionMamba2,
    /// No mixer: the layer is only its feed-forward (Nemotron-H's `-` layers).
    None,
}

impl Mixer {
    /// Whether the layer attends (and so keeps a KV cache).
    pub fn attends(self) -> bool {
        matches!(
            self,
            Mixer::FullAttention | Mixer::SlidingAttention | Mixer::AttentionMamba2
        )
    }

    /// The name summaries use (`forge inspect`, layer kinds).
    pub fn name(self) -> &'static str {
        match self {
            Mixer::FullAttention => "attention",
            Mixer::SlidingAttention => "sliding_attention",
            Mixer::Mamba => "mamba",
            Mixer::Mamba2 => "mamba2",
            Mixer::ShortConv => "short_conv",
            Mixer::AttentionMamba2 => "attention_mamba2",
            Mixer::None => "mlp",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedForwardKind {
    None,
    Dense,
    MixtureOfExperts,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionConfig {
    pub num_heads: u64,
    pub num_kv_heads: u64,
    pub head_dim: u64,
    pub qkv_bias: bool,
    pub output_bias: bool,
    /// RMSNorm over each query / key head before rope (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Positions a sliding layer attends to, the current one included.
    pub sliding_window: Option<u64>,
    /// Multiplier applied to q·k (usually 1/sqrt(head_dim); Gemma uses query_pre_attn_scalar).
    pub query_scale: f32,
    /// Attention scores become `cap * tanh(s / cap)` before softmax (Gemma 2).
    pub logit_softcap: Option<f32>,
    /// Rope of full-attention layers.
    pub rope: RopeConfig,
    /// Rope of sliding layers when it differs (Gemma 3's local base).
    pub rope_local: Option<RopeConfig>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RopeConfig {
    pub theta: f64,
    /// Leading dimensions of each head that rotate (partial rotary when < head_dim).
    pub rotary_dim: u64,
    pub layout: RopeLayout,
    pub scaling: RopeScaling,
}

/// Which elements of a head are rotated together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RopeLayout {
    /// Pairs (2i, 2i+1): Meta's original layout, and GGUF llama weights as stored.
    Interleaved,
    /// Pairs (i, i + d/2), "rotate half": Hugging Face's layout and GPT-NeoX's.
    Neox,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor`.
    Linear {
        factor: f64,
    },
    /// Llama 3.1's frequency-dependent interpolation.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_context_length: u64,
    },
    /// YaRN: NTK-by-parts interpolation and an attention temperature.
    Yarn {
        factor: f64,
        original_context_length: u64,
        beta_fast: f64,
        beta_slow: f64,
        /// Multiplier on cos/sin (defaults to 0.1 ln(factor) + 1).
        attention_factor: f64,
    },
    /// Per-frequency divisors, as GGUF stores Llama 3 scaling (`rope_freqs.weight`):
    /// frequency i becomes `theta^(-2i/d) / factors[i]`.
    FrequencyFactors {
        factors: Vec<f64>,
    },
    /// Phi-3's per-dimension rescaling (LongRoPE): `long` factors past the original context.
    LongRope {
        short_factor: Vec<f64>,
        long_factor: Vec<f64>,
        original_context_length: u64,
        attention_factor: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Silu,
    /// GELU with the tanh approximation (Gemma).
    GeluTanh,
    Gelu,
    Relu,
    /// relu(x)² (Nemotron-H's MLP).
    Relu2,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedForwardConfig {
    pub intermediate_size: u64,
    pub activation: Activation,
    pub bias: bool,
    /// Extra RMSNorms around the feed-forward (Gemma 2/3 pre/post, and post-attention).
    pub sandwich_norms: bool,
    /// `down(act(gate) * up)`; false: `down(act(up))` (Nemotron-H).
    pub gated: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShortConvConfig {
    /// Taps of the depthwise causal conv (LFM2's `conv_L_cache`).
    pub kernel: u64,
    /// Biases on the conv and the in/out projections.
    pub bias: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MoeConfig {
    pub num_experts: u64,
    pub experts_per_token: u64,
    /// Re-normalise the top-k router weights to sum to one (Mixtral does).
    pub renormalize: bool,
    pub expert_intermediate_size: u64,
    /// An expert every token goes through besides the routed ones (Qwen2-MoE's
    /// `shared_expert`, Granite's `shared_mlp`), with its own width.
    pub shared_intermediate_size: Option<u64>,
    /// The shared expert's output is scaled by sigmoid(g·x), g a `[1, hidden]`
    /// weight (Qwen2-MoE's `shared_expert_gate`); without it, by one.
    pub shared_gated: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SsmConfig {
    Mamba(MambaConfig),
    Mamba2(Mamba2Config),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MambaConfig {
    pub d_state: u64,
    pub d_conv: u64,
    /// expand × hidden_size.
    pub d_inner: u64,
    pub dt_rank: u64,
    pub conv_bias: bool,
    /// Biases on the in/out projections.
    pub proj_bias: bool,
    /// RMSNorms (`rank`, `d_state` and `d_state` wide, the model's epsilon)
    /// over dt, B and C as the x projection splits them, before the dt
    /// projection and the scan (Jamba).
    #[serde(default)]
    pub dt_bc_norms: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mamba2Config {
    pub d_state: u64,
    pub d_conv: u64,
    /// num_heads × head_dim (= expand × hidden_size).
    pub d_inner: u64,
    pub num_heads: u64,
    pub head_dim: u64,
    pub n_groups: u64,
    pub chunk_size: u64,
    pub conv_bias: bool,
    pub proj_bias: bool,
    /// dt is clamped to [min, max] after softplus; (0, inf) means no clamp.
    pub dt_limit: (f64, f64),
    /// Gated RMSNorm: normalise y * silu(z) (false) or normalise y then gate (true).
    pub norm_before_gate: bool,
}

/// The size facts every model has, whatever its layers are made of.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDims {
    pub vocab_size: u64,
    pub hidden_size: u64,
    pub num_layers: u64,
    pub context_length: u64,
    pub tie_word_embeddings: bool,
    pub norm_eps: f32,
}

impl ModelConfig {
    /// A pure state-space model: every layer is the SSM mixer `ssm` describes, with no feed-forward.
    pub fn state_space(architecture: Architecture, dims: ModelDims, ssm: SsmConfig) -> ModelConfig {
        let mixer = match ssm {
            SsmConfig::Mamba(_) => Mixer::Mamba,
            SsmConfig::Mamba2(_) => Mixer::Mamba2,
        };
        ModelConfig {
            ssm: Some(ssm),
            layers: (0..dims.num_layers)
                .map(|_| LayerSpec {
                    mixer,
                    feed_forward: FeedForwardKind::None,
                })
                .collect(),
            ..ModelConfig::from_dims(architecture, dims)
        }
    }

    /// The sizes alone: no attention, feed-forward, SSM or layers yet, for
    /// readers to fill in with struct update syntax.
    pub fn from_dims(architecture: Architecture, dims: ModelDims) -> ModelConfig {
        ModelConfig {
            architecture,
            vocab_size: dims.vocab_size,
            hidden_size: dims.hidden_size,
            num_layers: dims.num_layers,
            context_length: dims.context_length,
            tie_word_embeddings: dims.tie_word_embeddings,
            norm_eps: dims.norm_eps,
            embedding_scale: None,
            final_logit_softcap: None,
            attention: None,
            feed_forward: None,
            moe: None,
            ssm: None,
            short_conv: None,
            layers: Vec::new(),
        }
    }

    /// Each layer's kind as summaries name it: its mixer, with `+moe` when
    /// its feed-forward is a mixture of experts.
    pub fn layer_kind_names(&self) -> Vec<String> {
        self.layers
            .iter()
            .map(|l| match l.feed_forward {
                FeedForwardKind::MixtureOfExperts => format!("{}+moe", l.mixer.name()),
                _ => l.mixer.name().to_string(),
            })
            .collect()
    }

    /// How many layers there are of each kind, kinds in order of first appearance.
    pub fn layer_kind_counts(&self) -> Vec<(String, u64)> {
        let mut counts: Vec<(String, u64)> = Vec::new();
        for name in self.layer_kind_names() {
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => *count += 1,
                None => counts.push((name, 1)),
            }
        }
        counts
    }

    /// The layer kinds counted in one line: `mamba2 ×3, attention ×1`.
    pub fn describe_layer_kinds(&self) -> String {
        self.layer_kind_counts()
            .iter()
            .map(|(name, count)| format!("{name} ×{count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_kinds_are_counted_in_order_of_first_appearance() {
        let dims = ModelDims {
            vocab_size: 8,
            hidden_size: 8,
            num_layers: 4,
            context_length: 16,
            tie_word_embeddings: true,
            norm_eps: 1e-5,
        };
        let ssm = SsmConfig::Mamba2(Mamba2Config {
            d_state: 4,
            d_conv: 4,
            d_inner: 16,
            num_heads: 2,
            head_dim: 8,
            n_groups: 1,
            chunk_size: 4,
            conv_bias: true,
            proj_bias: false,
            dt_limit: (0.0, f64::INFINITY),
            norm_before_gate: false,
        });
        let mut config = ModelConfig::state_space(Architecture::Bamba, dims, ssm);
        config.layers[1].mixer = Mixer::FullAttention;
        config.layers[3].feed_forward = FeedForwardKind::MixtureOfExperts;
        assert_eq!(
            config.layer_kind_names(),
            ["mamba2", "attention", "mamba2", "mamba2+moe"]
        );
        assert_eq!(
            config.describe_layer_kinds(),
            "mamba2 ×2, attention ×1, mamba2+moe ×1"
        );
    }
}
