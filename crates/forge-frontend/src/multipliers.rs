//! Scalar multipliers some architectures put between their ops (Granite's
//! and Falcon-H1's µP multipliers), folded into the weights they scale, so
//! the graph and the kernels never see them: a multiplier on a linear
//! layer's output scales its weight rows and bias, one on its input scales
//! only the weight, one on the logits scales the final norm's weight (which
//! works for tied embeddings too). Both front ends fill a [`Multipliers`]
//! from their own keys and fold it the same way, over canonical names.

use forge_ir::{Mamba2Config, ModelConfig, SsmConfig, TensorTable, TensorTransform};

use crate::graph_builder::{blk, blk_bias, expert};

/// 1 everywhere means nothing to fold.
#[derive(Clone, Debug, PartialEq)]
pub struct Multipliers {
    /// Each mixer's and feed-forward's output before the residual add (Granite).
    pub residual: f32,
    /// The logits (1 / Granite's `logits_scaling`, Falcon-H1's `lm_head_multiplier`).
    pub logits: f32,
    /// Attention's input, and its output (Falcon-H1).
    pub attention_in: f32,
    pub attention_out: f32,
    /// The keys, after their projection (Falcon-H1).
    pub key: f32,
    /// The SSM mixer's input and output (Falcon-H1).
    pub ssm_in: f32,
    pub ssm_out: f32,
    /// The Mamba-2 in-projection's parts z, x, B, C, dt (Falcon-H1's `ssm_multipliers`).
    pub ssm_parts: [f32; 5],
    /// The gate and down projections of the MLP (Falcon-H1's `mlp_multipliers`).
    pub mlp_gate: f32,
    pub mlp_down: f32,
}

impl Default for Multipliers {
    fn default() -> Self {
        Multipliers {
            residual: 1.0,
            logits: 1.0,
            attention_in: 1.0,
            attention_out: 1.0,
            key: 1.0,
            ssm_in: 1.0,
            ssm_out: 1.0,
            ssm_parts: [1.0; 5],
            mlp_gate: 1.0,
            mlp_down: 1.0,
        }
    }
}

/// How a factor applies to one projection.
enum Side {
    /// On its output: weight rows and bias.
    Output,
    /// On its input: weight only.
    Input,
}

impl Multipliers {
    /// Appends the scalings to the tensors of `c`'s layers in `tensors`.
    pub fn fold(&self, c: &ModelConfig, tensors: &mut TensorTable) {
        let hidden = c.hidden_size;
        let mut scale = |name: &str, runs: Vec<(u64, f32)>, side: Side| {
            if runs.iter().all(|r| r.1 == 1.0) {
                return;
            }
            let bias = name.replace(".weight", ".bias");
            let targets = match side {
                Side::Output => vec![name.to_string(), bias],
                Side::Input => vec![name.to_string()],
            };
            for target in targets {
                if let Some(spec) = tensors.get_mut(&target) {
                    spec.transforms
                        .push(TensorTransform::ScaleRows { runs: runs.clone() });
                }
            }
        };
        scale(
            "output_norm.weight",
            vec![(hidden, self.logits)],
            Side::Output,
        );
        for i in 0..c.num_layers {
            if let Some(a) = &c.attention {
                let (q, kv) = (a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim);
                let input = self.attention_in;
                scale(&blk(i, "attn_q"), vec![(q, input)], Side::Input);
                scale(&blk(i, "attn_v"), vec![(kv, input)], Side::Input);
                // The key multiplier follows the projection, so it also scales k's bias.
                scale(&blk(i, "attn_k"), vec![(kv, input * self.key)], Side::Input);
                if self.key != 1.0 {
                    scale(&blk_bias(i, "attn_k"), vec![(kv, self.key)], Side::Output);
                }
                let out = self.attention_out * self.residual;
                scale(&blk(i, "attn_output"), vec![(hidden, out)], Side::Output);
            }
            if let Some(SsmConfig::Mamba2(m)) = &c.ssm {
                scale(&blk(i, "ssm_in"), self.ssm_in_runs(m), Side::Output);
                if self.ssm_in != 1.0 {
                    let rows = in_proj_rows(m);
                    scale(&blk(i, "ssm_in"), vec![(rows, self.ssm_in)], Side::Input);
                }
                let out = self.ssm_out * self.residual;
                scale(&blk(i, "ssm_out"), vec![(hidden, out)], Side::Output);
            }
            let down = self.mlp_down * self.residual;
            if let Some(f) = &c.feed_forward {
                let n = f.intermediate_size;
                scale(&blk(i, "ffn_gate"), vec![(n, self.mlp_gate)], Side::Output);
                scale(&blk(i, "ffn_down"), vec![(hidden, down)], Side::Output);
            }
            // A mixture's output is the weighted sum of its experts' down
            // projections plus its shared expert's: each carries the factor.
            if let Some(m) = &c.moe {
                let n = m.expert_intermediate_size;
                for e in 0..m.num_experts {
                    let gate = expert(i, "ffn_gate", e);
                    scale(&gate, vec![(n, self.mlp_gate)], Side::Output);
                    scale(
                        &expert(i, "ffn_down", e),
                        vec![(hidden, down)],
                        Side::Output,
                    );
                }
                if let Some(n) = m.shared_intermediate_size {
                    let gate = blk(i, "ffn_gate_shexp");
                    scale(&gate, vec![(n, self.mlp_gate)], Side::Output);
                    scale(
                        &blk(i, "ffn_down_shexp"),
                        vec![(hidden, down)],
                        Side::Output,
                    );
                }
            }
        }
    }

    /// The in-projection's rows z, x, B, C, dt and their factors.
    fn ssm_in_runs(&self, m: &Mamba2Config) -> Vec<(u64, f32)> {
        let bc = m.n_groups * m.d_state;
        let [z, x, b, c, dt] = self.ssm_parts;
        vec![
            (m.d_inner, z),
            (m.d_inner, x),
            (bc, b),
            (bc, c),
            (m.num_heads, dt),
        ]
    }
}

fn in_proj_rows(m: &Mamba2Config) -> u64 {
    2 * m.d_inner + 2 * m.n_groups * m.d_state + m.num_heads
}
