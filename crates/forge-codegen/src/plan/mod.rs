//! Lowering: from the IR graph to the kernels, buffers and weights the
//! generated project uses.

pub mod weights;

pub use weights::{PlannedTensor, WeightPlan};
