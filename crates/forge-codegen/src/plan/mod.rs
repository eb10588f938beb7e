//! Lowering: from the IR graph to the kernels, buffers and weights the
//! generated project uses.
//!
//! The walk (`lower`) visits the graph's nodes in order and picks, for each
//! op or fusable group of ops, a kernel for the decode path (one token,
//! matrix-vector) and one for the prefill path (a chunk of tokens,
//! matrix-matrix). Fusions it makes:
//! - an RMSNorm feeding only linear layers is computed inside their decode
//!   matvec (`prenorm`), and as its own dispatch for prefill;
//! - linear layers reading the same input become one weight (Q|K|V, gate|up)
//!   when their weights share a format (otherwise each run of one format is
//!   its own dispatch, writing its columns of the group's output), and
//!   gate|up followed by the gated activation one kernel (two when their
//!   formats differ: the up projection multiplies act(gate) in place);
//! - a linear layer whose output is only added to the residual stream adds
//!   into it in place;
//! - per-head q/k norms, RoPE and the KV-cache store are one kernel;
//! - the final norm is fused into the LM head's matvec.

pub mod conversions;
mod lower;
mod memory;
pub mod options;
pub mod steps;
pub mod weights;

pub use conversions::Conversions;
pub use lower::{
    lower, AttentionCache, LayerKind, LayerPlan, LowerError, Plan, SsmState, StateDim,
};
pub use memory::{human_bytes, SequenceMemory};
pub use options::CompileOptions;
pub use weights::{PlannedTensor, WeightPlan};

/// The weight layout `forge compile` would write for this model and options.
pub fn plan_weights(
    model: &forge_ir::Model,
    options: &CompileOptions,
) -> Result<WeightPlan, LowerError> {
    lower(model, options).map(|plan| plan.weights)
}
