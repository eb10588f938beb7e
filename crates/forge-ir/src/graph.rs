//! The computation as typed ops over named values, grouped by layer.
//!
//! Every value is a matrix `[tokens, width]`; the token count is symbolic.
//! The graph is what the code generator walks: it never goes back to config
//! fields to find out what a layer does.

use serde::{Deserialize, Serialize};

use crate::config::{Activation, LayerSpec, RopeConfig};

/// Index of a value in `Graph::values`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ValueId(pub u32);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Value {
    /// A readable name, unique within the graph (`blk.3.q`).
    pub name: String,
    /// Columns per token (the token count is the symbolic row count).
    pub width: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
}

/// A group of nodes belonging to one layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub index: u64,
    pub spec: LayerSpec,
    pub nodes: Vec<Node>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub values: Vec<Value>,
    /// The token ids (width 1).
    pub tokens: Option<ValueId>,
    /// Embedding lookup and scaling, before the first block.
    pub prologue: Vec<Node>,
    pub blocks: Vec<Block>,
    /// Final norm and LM head.
    pub epilogue: Vec<Node>,
    /// The logits (width = vocabulary).
    pub logits: Option<ValueId>,
}

/// An operation. Tensor operands are canonical names in the tensor table;
/// value operands are the node's `inputs`, in the order each variant documents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// inputs: [tokens] -> rows of `table` ([vocab, hidden]).
    Embedding { table: String },
    /// inputs: [x] -> x * factor.
    Scale { factor: f32 },
    /// inputs: [x] -> RMSNorm over groups of `group` columns (the whole row when
    /// `group` equals the width), times `weight` ([group]).
    RmsNorm {
        weight: String,
        eps: f32,
        group: u64,
    },
    /// inputs: [x] -> x · weightᵀ (+ bias); weight is [out, in].
    Linear {
        weight: String,
        bias: Option<String>,
    },
    /// inputs: [x] -> columns `start .. start + len`.
    Slice { start: u64, len: u64 },
    /// inputs: [x] -> x with every head (of `head_dim` columns) rotated by its position.
    Rope {
        heads: u64,
        head_dim: u64,
        rope: RopeConfig,
    },
    /// inputs: [q, k, v] -> causal attention with a per-layer KV cache.
    Attention {
        heads: u64,
        kv_heads: u64,
        head_dim: u64,
        scale: f32,
        /// Positions attended, the current one included; None = all.
        window: Option<u64>,
        softcap: Option<f32>,
    },
    /// inputs: [gate, up] -> act(gate) * up.
    GatedActivation { activation: Activation },
    /// inputs: [x] -> act(x).
    Activation { activation: Activation },
    /// inputs: [a, b] -> a + b.
    Add,
    /// inputs: [x] -> top-k expert ids and weights per token, as 2·k columns.
    MoeRouter {
        weight: String,
        experts: u64,
        top_k: u64,
        renormalize: bool,
    },
    /// inputs: [x, routing] -> Σ_k w_k · down_e(act(gate_e(x)) * up_e(x)),
    /// plus the shared expert's output when there is one.
    MoeExperts {
        gate: Vec<String>,
        up: Vec<String>,
        down: Vec<String>,
        activation: Activation,
        shared: Option<SharedExpert>,
    },
    /// inputs: [x] -> depthwise causal convolution over time (with state), then SiLU.
    CausalConv1d {
        weight: String,
        bias: Option<String>,
        kernel: u64,
    },
    /// LFM2's gated short convolution. inputs: [b, c, x] -> c * conv(b * x),
    /// a depthwise causal conv over time (with state), no activation.
    ShortConv {
        weight: String,
        bias: Option<String>,
        kernel: u64,
    },
    /// Mamba-1. inputs: [x, dt, b, c] -> y; dt passes softplus, A is canonical
    /// `-exp(A_log)` ([d_inner, d_state]), D is the skip ([d_inner]).
    SelectiveScan { a: String, d: String, d_state: u64 },
    /// Mamba-2. inputs: [x, dt, b, c] -> y, heads of `head_dim` sharing B/C per group.
    SsdScan {
        a: String,
        d: String,
        dt_bias: String,
        heads: u64,
        head_dim: u64,
        groups: u64,
        d_state: u64,
        chunk_size: u64,
        dt_limit: (f64, f64),
    },
    /// inputs: [y, z] -> RMSNorm per group of y * silu(z) (or of y, gated after), times weight.
    GatedRmsNorm {
        weight: String,
        eps: f32,
        group: u64,
        norm_before_gate: bool,
    },
    /// inputs: [x] -> x · weightᵀ, the vocabulary logits, optionally soft-capped.
    LmHead {
        weight: String,
        softcap: Option<f32>,
    },
}

/// The expert of a mixture every token goes through: act(gate·x) * (up·x)
/// projected by `down`, scaled by sigmoid(gate_inp·x) when `gate_inp` is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharedExpert {
    pub gate: String,
    pub up: String,
    pub down: String,
    /// `[1, hidden]`.
    pub gate_inp: Option<String>,
}

impl Op {
    /// A short name for summaries and error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Embedding { .. } => "embedding",
            Op::Scale { .. } => "scale",
            Op::RmsNorm { .. } => "rms_norm",
            Op::Linear { .. } => "linear",
            Op::Slice { .. } => "slice",
            Op::Rope { .. } => "rope",
            Op::Attention { .. } => "attention",
            Op::GatedActivation { .. } => "gated_activation",
            Op::Activation { .. } => "activation",
            Op::Add => "add",
            Op::MoeRouter { .. } => "moe_router",
            Op::MoeExperts { .. } => "moe_experts",
            Op::CausalConv1d { .. } => "causal_conv1d",
            Op::ShortConv { .. } => "short_conv",
            Op::SelectiveScan { .. } => "selective_scan",
            Op::SsdScan { .. } => "ssd_scan",
            Op::GatedRmsNorm { .. } => "gated_rms_norm",
            Op::LmHead { .. } => "lm_head",
        }
    }

    /// Names of the tensors this op reads.
    pub fn tensors(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        match self {
            Op::Embedding { table } => out.push(table),
            Op::RmsNorm { weight, .. }
            | Op::GatedRmsNorm { weight, .. }
            | Op::LmHead { weight, .. }
            | Op::MoeRouter { weight, .. } => out.push(weight),
            Op::Linear { weight, bias }
            | Op::CausalConv1d { weight, bias, .. }
            | Op::ShortConv { weight, bias, .. } => {
                out.push(weight);
                out.extend(bias.as_deref());
            }
            Op::MoeExperts {
                gate,
                up,
                down,
                shared,
                ..
            } => {
                out.extend(gate.iter().chain(up).chain(down).map(String::as_str));
                if let Some(s) = shared {
                    out.extend([s.gate.as_str(), s.up.as_str(), s.down.as_str()]);
                    out.extend(s.gate_inp.as_deref());
                }
            }
            Op::SelectiveScan { a, d, .. } => out.extend([a.as_str(), d.as_str()]),
            Op::SsdScan { a, d, dt_bias, .. } => {
                out.extend([a.as_str(), d.as_str(), dt_bias.as_str()])
            }
            Op::Scale { .. }
            | Op::Slice { .. }
            | Op::Rope { .. }
            | Op::Attention { .. }
            | Op::GatedActivation { .. }
            | Op::Activation { .. }
            | Op::Add => {}
        }
        out
    }
}

impl Graph {
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.0 as usize]
    }

    /// Every node in execution order.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.prologue
            .iter()
            .chain(self.blocks.iter().flat_map(|b| b.nodes.iter()))
            .chain(self.epilogue.iter())
    }
}

/// Builds a graph node by node, naming values as it goes.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: Graph,
    current: Option<Block>,
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The graph input: one token id per row.
    pub fn tokens(&mut self) -> ValueId {
        let id = self.value("tokens", 1);
        self.graph.tokens = Some(id);
        id
    }

    fn value(&mut self, name: &str, width: u64) -> ValueId {
        let id = ValueId(self.graph.values.len() as u32);
        self.graph.values.push(Value {
            name: name.to_string(),
            width,
        });
        id
    }

    /// Starts the nodes of layer `index`; nodes before the first call form the prologue.
    pub fn begin_block(&mut self, index: u64, spec: LayerSpec) {
        self.end_block();
        self.current = Some(Block {
            index,
            spec,
            nodes: Vec::new(),
        });
    }

    fn end_block(&mut self) {
        if let Some(block) = self.current.take() {
            self.graph.blocks.push(block);
        }
    }

    /// Appends `op` reading `inputs`, producing a new value `name` of `width` columns.
    pub fn push(&mut self, name: &str, width: u64, op: Op, inputs: &[ValueId]) -> ValueId {
        let name = match &self.current {
            Some(b) => format!("blk.{}.{name}", b.index),
            None => name.to_string(),
        };
        let output = self.value(&name, width);
        let node = Node {
            op,
            inputs: inputs.to_vec(),
            output,
        };
        match &mut self.current {
            Some(b) => b.nodes.push(node),
            None if self.graph.blocks.is_empty() => self.graph.prologue.push(node),
            None => self.graph.epilogue.push(node),
        }
        output
    }

    /// Ends the last block: nodes pushed after this form the epilogue.
    pub fn begin_epilogue(&mut self) {
        self.end_block();
    }

    pub fn width(&self, id: ValueId) -> u64 {
        self.graph.values[id.0 as usize].width
    }

    pub fn finish(mut self, logits: ValueId) -> Graph {
        self.end_block();
        self.graph.logits = Some(logits);
        self.graph
    }
}
