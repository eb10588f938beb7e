//! forge-frontend: reads checkpoints from disk into forge-ir models.

pub mod error;
pub mod gguf;
pub mod safetensors;

pub use error::{Error, Result};
