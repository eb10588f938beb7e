//! The whole model: what the front ends produce and the code generator consumes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::graph::Graph;
use crate::tensor::TensorTable;
use crate::tokenizer::{ChatTemplate, GenerationDefaults, TokenizerSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    HuggingFace,
    Gguf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// A human name: the checkpoint's own (`general.name`, directory name).
    pub name: String,
    pub source: PathBuf,
    pub format: SourceFormat,
    pub config: ModelConfig,
    pub graph: Graph,
    pub tensors: TensorTable,
    pub tokenizer: Option<TokenizerSpec>,
    pub chat_template: Option<ChatTemplate>,
    pub generation: GenerationDefaults,
}
