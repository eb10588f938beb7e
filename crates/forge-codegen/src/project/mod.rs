//! The generated Cargo project: the files forge writes next to the kernels.

pub mod chat_template;
pub mod host;
pub mod model_source;
pub mod writer;

pub use writer::{render_project, write_project, CompileError, Project};
