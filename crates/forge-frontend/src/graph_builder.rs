//! Builds the op graph of a model from its config, over canonical tensor names.
//!
//! Canonical names follow llama.cpp's GGUF naming (`token_embd.weight`,
//! `blk.N.attn_q.weight`, ...) with one tensor per expert (`blk.N.ffn_gate.E.weight`);
//! adapters map each checkpoint's names onto these.

use forge_ir::{
    AttentionConfig, FeedForwardKind, Graph, GraphBuilder, LayerSpec, Mamba2Config, MambaConfig,
    Mixer, ModelConfig, Op, SharedExpert, ShortConvConfig, SsmConfig, ValueId,
};

pub fn blk(layer: u64, name: &str) -> String {
    format!("blk.{layer}.{name}.weight")
}

pub fn blk_bias(layer: u64, name: &str) -> String {
    format!("blk.{layer}.{name}.bias")
}

pub fn expert(layer: u64, name: &str, e: u64) -> String {
    format!("blk.{layer}.{name}.{e}.weight")
}

pub fn build_graph(c: &ModelConfig) -> Graph {
    let mut g = GraphBuilder::new();
    let tokens = g.tokens();
    let mut x = g.push(
        "embed",
        c.hidden_size,
        Op::Embedding {
            table: "token_embd.weight".into(),
        },
        &[tokens],
    );
    if let Some(factor) = c.embedding_scale {
        x = g.push("embed_scaled", c.hidden_size, Op::Scale { factor }, &[x]);
    }
    for (i, spec) in c.layers.iter().enumerate() {
        let i = i as u64;
        g.begin_block(i, *spec);
        x = mixer(&mut g, c, i, *spec, x);
        x = match spec.feed_forward {
            FeedForwardKind::None => x,
            FeedForwardKind::Dense | FeedForwardKind::MixtureOfExperts => {
                feed_forward(&mut g, c, i, spec.feed_forward, x)
            }
        };
    }
    g.begin_epilogue();
    let h = norm(
        &mut g,
        c,
        "output_norm",
        "output_norm.weight".into(),
        c.hidden_size,
        x,
    );
    let head = if c.tie_word_embeddings {
        "token_embd.weight"
    } else {
        "output.weight"
    };
    let logits = g.push(
        "logits",
        c.vocab_size,
        Op::LmHead {
            weight: head.into(),
            softcap: c.final_logit_softcap,
        },
        &[h],
    );
    g.finish(logits)
}

fn norm(
    g: &mut GraphBuilder,
    c: &ModelConfig,
    name: &str,
    weight: String,
    group: u64,
    x: ValueId,
) -> ValueId {
    let width = g.width(x);
    g.push(
        name,
        width,
        Op::RmsNorm {
            weight,
            eps: c.norm_eps,
            group,
        },
        &[x],
    )
}

fn linear(
    g: &mut GraphBuilder,
    name: &str,
    out: u64,
    layer: u64,
    tensor: &str,
    bias: bool,
    x: ValueId,
) -> ValueId {
    g.push(
        name,
        out,
        Op::Linear {
            weight: blk(layer, tensor),
            bias: bias.then(|| blk_bias(layer, tensor)),
        },
        &[x],
    )
}

/// The layer's mixer on the normed residual stream, added back to it.
fn mixer(g: &mut GraphBuilder, c: &ModelConfig, i: u64, spec: LayerSpec, x: ValueId) -> ValueId {
    let hidden = c.hidden_size;
    let attention_config = || {
        c.attention
            .as_ref()
            .expect("validated: attention layers have a config")
    };
    let mamba2_config = || match &c.ssm {
        Some(SsmConfig::Mamba2(m)) => m,
        _ => unreachable!("validated: Mamba-2 layers have a Mamba-2 config"),
    };
    // Value names follow the mixer, so buffers read as what they hold.
    let (norm_name, residual_name) = match spec.mixer {
        Mixer::None => return x,
        Mixer::FullAttention | Mixer::SlidingAttention => ("attn_norm", "attn_residual"),
        Mixer::ShortConv => ("conv_norm_in", "residual"),
        // Falcon-H1's attention and Mamba-2 both read it.
        Mixer::AttentionMamba2 => ("mixer_norm_in", "residual"),
        Mixer::Mamba | Mixer::Mamba2 => ("ssm_norm_in", "residual"),
    };
    let h = norm(g, c, norm_name, blk(i, "attn_norm"), hidden, x);
    let out = match spec.mixer {
        Mixer::FullAttention | Mixer::SlidingAttention => {
            attention(g, c, attention_config(), i, spec, h)
        }
        Mixer::Mamba => match &c.ssm {
            Some(SsmConfig::Mamba(m)) => mamba(g, c, m, i, h),
            _ => unreachable!("validated: Mamba layers have a Mamba config"),
        },
        Mixer::Mamba2 => mamba2(g, c, mamba2_config(), i, h),
        Mixer::ShortConv => {
            let s = c
                .short_conv
                .as_ref()
                .expect("validated: short-conv layers have a config");
            short_conv(g, c, s, i, h)
        }
        Mixer::AttentionMamba2 => {
            // Two residual adds rather than one of the sum, so each out
            // projection can add into the stream itself.
            let attn = attention(g, c, attention_config(), i, spec, h);
            let x = g.push("attn_residual", hidden, Op::Add, &[x, attn]);
            let ssm = mamba2(g, c, mamba2_config(), i, h);
            return g.push(residual_name, hidden, Op::Add, &[x, ssm]);
        }
        Mixer::None => unreachable!("returned above"),
    };
    g.push(residual_name, hidden, Op::Add, &[x, out])
}

/// Attention on the normed input `h`: the output projection (and its norm).
fn attention(
    g: &mut GraphBuilder,
    c: &ModelConfig,
    a: &AttentionConfig,
    i: u64,
    spec: LayerSpec,
    h: ValueId,
) -> ValueId {
    let sliding = spec.mixer == Mixer::SlidingAttention;
    let (q_width, kv_width) = (a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim);
    let mut q = linear(g, "q", q_width, i, "attn_q", a.qkv_bias, h);
    let mut k = linear(g, "k", kv_width, i, "attn_k", a.qkv_bias, h);
    let v = linear(g, "v", kv_width, i, "attn_v", a.qkv_bias, h);
    if a.qk_norm {
        q = norm(g, c, "q_normed", blk(i, "attn_q_norm"), a.head_dim, q);
        k = norm(g, c, "k_normed", blk(i, "attn_k_norm"), a.head_dim, k);
    }
    let rope = match (&a.rope_local, sliding) {
        (Some(local), true) => local.clone(),
        _ => a.rope.clone(),
    };
    let q = g.push(
        "q_rope",
        q_width,
        Op::Rope {
            heads: a.num_heads,
            head_dim: a.head_dim,
            rope: rope.clone(),
        },
        &[q],
    );
    let k = g.push(
        "k_rope",
        kv_width,
        Op::Rope {
            heads: a.num_kv_heads,
            head_dim: a.head_dim,
            rope,
        },
        &[k],
    );
    let attn = g.push(
        "attn",
        q_width,
        Op::Attention {
            heads: a.num_heads,
            kv_heads: a.num_kv_heads,
            head_dim: a.head_dim,
            scale: a.query_scale,
            window: if sliding { a.sliding_window } else { None },
            softcap: a.logit_softcap,
        },
        &[q, k, v],
    );
    let mut o = linear(
        g,
        "attn_out",
        c.hidden_size,
        i,
        "attn_output",
        a.output_bias,
        attn,
    );
    if c.feed_forward.as_ref().is_some_and(|f| f.sandwich_norms) {
        o = norm(
            g,
            c,
            "attn_out_normed",
            blk(i, "post_attention_norm"),
            c.hidden_size,
            o,
        );
    }
    o
}

fn feed_forward(
    g: &mut GraphBuilder,
    c: &ModelConfig,
    i: u64,
    kind: FeedForwardKind,
    x: ValueId,
) -> ValueId {
    let h = norm(g, c, "ffn_norm", blk(i, "ffn_norm"), c.hidden_size, x);
    let mut out = match kind {
        FeedForwardKind::MixtureOfExperts => {
            let m = c.moe.as_ref().expect("validated: MoE layers have a config");
            let f = c
                .feed_forward
                .as_ref()
                .expect("MoE layers carry the activation in the feed-forward config");
            let routing = g.push(
                "routing",
                2 * m.experts_per_token,
                Op::MoeRouter {
                    weight: blk(i, "ffn_gate_inp"),
                    experts: m.num_experts,
                    top_k: m.experts_per_token,
                    renormalize: m.renormalize,
                },
                &[h],
            );
            let names = |n: &str| (0..m.num_experts).map(|e| expert(i, n, e)).collect();
            g.push(
                "ffn_out",
                c.hidden_size,
                Op::MoeExperts {
                    gate: names("ffn_gate"),
                    up: names("ffn_up"),
                    down: names("ffn_down"),
                    activation: f.activation,
                    shared: m.shared_intermediate_size.map(|_| SharedExpert {
                        gate: blk(i, "ffn_gate_shexp"),
                        up: blk(i, "ffn_up_shexp"),
                        down: blk(i, "ffn_down_shexp"),
                        gate_inp: m.shared_gated.then(|| blk(i, "ffn_gate_inp_shexp")),
                    }),
                },
                &[h, routing],
            )
        }
        _ => {
            let f = c
                .feed_forward
                .as_ref()
                .expect("validated: dense layers have a config");
            let n = f.intermediate_size;
            let act = if f.gated {
                let gate = linear(g, "gate", n, i, "ffn_gate", f.bias, h);
                let up = linear(g, "up", n, i, "ffn_up", f.bias, h);
                g.push(
                    "gated",
                    n,
                    Op::GatedActivation {
                        activation: f.activation,
                    },
                    &[gate, up],
                )
            } else {
                let up = linear(g, "up", n, i, "ffn_up", f.bias, h);
                g.push(
                    "activated",
                    n,
                    Op::Activation {
                        activation: f.activation,
                    },
                    &[up],
                )
            };
            linear(g, "ffn_out", c.hidden_size, i, "ffn_down", f.bias, act)
        }
    };
    if c.feed_forward.as_ref().is_some_and(|f| f.sandwich_norms) {
        out = norm(
            g,
            c,
            "ffn_out_normed",
            blk(i, "post_ffw_norm"),
            c.hidden_size,
            out,
        );
    }
    g.push("ffn_residual", c.hidden_size, Op::Add, &[x, out])
}

fn slice(g: &mut GraphBuilder, name: &str, x: ValueId, start: u64, len: u64) -> ValueId {
    g.push(name, len, Op::Slice { start, len }, &[x])
}

/// Mamba-1 on the normed input `h`: the out projection.
fn mamba(g: &mut GraphBuilder, c: &ModelConfig, m: &MambaConfig, i: u64, h: ValueId) -> ValueId {
    let inner = m.d_inner;
    let xz = linear(g, "xz", 2 * inner, i, "ssm_in", m.proj_bias, h);
    let xs = slice(g, "x", xz, 0, inner);
    let z = slice(g, "z", xz, inner, inner);
    let xc = g.push(
        "x_conv",
        inner,
        Op::CausalConv1d {
            weight: blk(i, "ssm_conv1d"),
            bias: m.conv_bias.then(|| blk_bias(i, "ssm_conv1d")),
            kernel: m.d_conv,
        },
        &[xs],
    );
    let dbc = linear(
        g,
        "dt_b_c",
        m.dt_rank + 2 * m.d_state,
        i,
        "ssm_x",
        false,
        xc,
    );
    let mut dt_low = slice(g, "dt_low_rank", dbc, 0, m.dt_rank);
    let mut b = slice(g, "b", dbc, m.dt_rank, m.d_state);
    let mut cc = slice(g, "c", dbc, m.dt_rank + m.d_state, m.d_state);
    if m.dt_bc_norms {
        dt_low = norm(
            g,
            c,
            "dt_low_rank_normed",
            blk(i, "ssm_dt_norm"),
            m.dt_rank,
            dt_low,
        );
        b = norm(g, c, "b_normed", blk(i, "ssm_b_norm"), m.d_state, b);
        cc = norm(g, c, "c_normed", blk(i, "ssm_c_norm"), m.d_state, cc);
    }
    let dt = linear(g, "dt", inner, i, "ssm_dt", true, dt_low);
    let y = g.push(
        "y",
        inner,
        Op::SelectiveScan {
            a: blk(i, "ssm_a"),
            d: blk(i, "ssm_d"),
            d_state: m.d_state,
        },
        &[xc, dt, b, cc],
    );
    let gated = g.push(
        "y_gated",
        inner,
        Op::GatedActivation {
            activation: forge_ir::Activation::Silu,
        },
        &[z, y],
    );
    linear(
        g,
        "ssm_out",
        c.hidden_size,
        i,
        "ssm_out",
        m.proj_bias,
        gated,
    )
}

/// Mamba-2 on the normed input `h`: the out projection.
fn mamba2(g: &mut GraphBuilder, c: &ModelConfig, m: &Mamba2Config, i: u64, h: ValueId) -> ValueId {
    let inner = m.d_inner;
    let bc = m.n_groups * m.d_state;
    let conv_width = inner + 2 * bc;
    let proj = linear(
        g,
        "zxbcdt",
        inner + conv_width + m.num_heads,
        i,
        "ssm_in",
        m.proj_bias,
        h,
    );
    let z = slice(g, "z", proj, 0, inner);
    let xbc = slice(g, "xbc", proj, inner, conv_width);
    let dt = slice(g, "dt", proj, inner + conv_width, m.num_heads);
    let xbc = g.push(
        "xbc_conv",
        conv_width,
        Op::CausalConv1d {
            weight: blk(i, "ssm_conv1d"),
            bias: m.conv_bias.then(|| blk_bias(i, "ssm_conv1d")),
            kernel: m.d_conv,
        },
        &[xbc],
    );
    let xs = slice(g, "x", xbc, 0, inner);
    let b = slice(g, "b", xbc, inner, bc);
    let cc = slice(g, "c", xbc, inner + bc, bc);
    let y = g.push(
        "y",
        inner,
        Op::SsdScan {
            a: blk(i, "ssm_a"),
            d: blk(i, "ssm_d"),
            dt_bias: blk_bias(i, "ssm_dt"),
            heads: m.num_heads,
            head_dim: m.head_dim,
            groups: m.n_groups,
            d_state: m.d_state,
            chunk_size: m.chunk_size,
            dt_limit: m.dt_limit,
        },
        &[xs, dt, b, cc],
    );
    let normed = g.push(
        "y_normed",
        inner,
        Op::GatedRmsNorm {
            weight: blk(i, "ssm_norm"),
            eps: c.norm_eps,
            group: inner / m.n_groups,
            norm_before_gate: m.norm_before_gate,
        },
        &[y, z],
    );
    linear(
        g,
        "ssm_out",
        c.hidden_size,
        i,
        "ssm_out",
        m.proj_bias,
        normed,
    )
}

/// LFM2's gated short convolution on the normed input `h`: the out projection.
fn short_conv(
    g: &mut GraphBuilder,
    c: &ModelConfig,
    s: &ShortConvConfig,
    i: u64,
    h: ValueId,
) -> ValueId {
    let n = c.hidden_size;
    let bcx = linear(g, "bcx", 3 * n, i, "shortconv.in_proj", s.bias, h);
    let b = slice(g, "b", bcx, 0, n);
    let cc = slice(g, "c", bcx, n, n);
    let xs = slice(g, "x", bcx, 2 * n, n);
    let y = g.push(
        "conv",
        n,
        Op::ShortConv {
            weight: blk(i, "shortconv.conv"),
            bias: s.bias.then(|| blk_bias(i, "shortconv.conv")),
            kernel: s.kernel,
        },
        &[b, cc, xs],
    );
    linear(g, "conv_out", n, i, "shortconv.out_proj", s.bias, y)
}
