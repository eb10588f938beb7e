//! forge-frontend: reads checkpoints from disk into validated forge-ir models.
//!
//! - [`hf`]: Hugging Face directories (config.json, safetensors, tokenizer files);
//! - [`gguf`]: the GGUF container reader; [`gguf_model`]: GGUF files as models;
//! - [`graph_builder`]: the op graph over canonical tensor names, shared by both;
//! - [`multipliers`]: scalar multipliers folded into the weights they scale.

pub mod error;
pub mod gguf;
pub mod gguf_model;
pub mod graph_builder;
pub mod hf;
pub mod multipliers;
pub mod safetensors;

pub use error::{Error, Result};

use std::path::Path;

use forge_ir::Model;

/// Loads a model from a Hugging Face directory or a GGUF file.
pub fn load_model(path: &Path) -> Result<Model> {
    if path.is_dir() {
        hf::load(path)
    } else if path.is_file() {
        gguf_model::load(path)
    } else {
        Err(Error::new(path, "no such file or directory"))
    }
}
