//! forge-ir: the typed description of a model that forge's front ends produce
//! and its code generator walks. Data types and validation only; no I/O.
//!
//! - [`ModelConfig`]: hyper-parameters of every supported family;
//! - [`Graph`]: typed ops over named values, one block per layer;
//! - [`TensorTable`]: canonical tensor names, shapes, dtypes and byte ranges;
//! - [`TokenizerSpec`], [`ChatTemplate`], [`GenerationDefaults`];
//! - [`validate`]: the consistency pass that names the first problem.

pub mod config;
pub mod dtype;
pub mod graph;
pub mod model;
pub mod tensor;
pub mod tokenizer;
pub mod validate;

pub use config::*;
pub use dtype::DType;
pub use graph::{Block, Graph, GraphBuilder, Node, Op, SharedExpert, Value, ValueId};
pub use model::{Model, SourceFormat};
pub use tensor::{TensorSource, TensorSpec, TensorTable, TensorTransform};
pub use tokenizer::{
    ChatTemplate, GenerationDefaults, GgufVocab, TokenizerKind, TokenizerSource, TokenizerSpec,
};
pub use validate::{validate, ValidationError};
