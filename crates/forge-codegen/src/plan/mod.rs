//! Lowering: from the IR graph to the kernels, buffers and weights the
//! generated project uses.

pub mod options;
pub mod steps;
pub mod weights;

pub use options::CompileOptions;
pub use weights::{PlannedTensor, WeightPlan};
