//! forge-codegen: lowers a forge-ir model to a plan (kernel instances, buffer
//! plan, weight layout) and renders the generated Cargo project from the
//! minijinja templates in `templates/`.

pub mod export;
pub mod kernels;
pub mod plan;
pub mod project;
mod staging;
pub mod templates;
pub mod tokenizer_file;

pub use kernels::{render_kernels, KernelInstance};
pub use plan::{PlannedTensor, WeightPlan};
