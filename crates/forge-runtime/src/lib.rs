//! forge-runtime: what every project forge generates shares. A project's
//! `model.rs` implements [`CompiledModel`] (the dispatches of a prefill pass
//! and of a decode step over its own buffers); everything that does not
//! depend on the model is here:
//!
//! - [`gpu`]: the device layer, Metal through objc2-metal on macOS and
//!   msl-emu everywhere else, behind one small API;
//! - [`weights`]: the mapped `weights.gguf` and its plan-fingerprint check;
//! - [`session`]: positions, prefill chunking and reading results back;
//! - [`snapshot`]: a sequence's memory copied out and put back (the prompt cache);
//! - [`sampler`], [`text`], [`npy`]: sampling, tokenizer and streaming
//!   detokenisation, `.npy` output;
//! - [`chat_template`]: the model's Jinja chat template, rendered as
//!   transformers renders it;
//! - [`cli`]: the command-line verbs, written once against [`CompiledModel`].
//!
//! Generated projects vendor this crate (`forge-runtime/` beside `msl-emu/`),
//! so they build offline and stand alone.

pub mod chat_template;
pub mod cli;
pub mod gpu;
pub mod model;
pub mod npy;
pub mod sampler;
pub mod session;
pub mod snapshot;
pub mod text;
pub mod weights;

pub use anyhow::Result;
pub use model::{
    penalty_bytes, CompiledModel, ModelInfo, Pass, PositionRows, Readback, Results, SequenceMemory,
};
pub use session::{Output, Session};
pub use snapshot::Snapshot;
