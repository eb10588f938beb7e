//! forge-weights: GGML block formats and the GGUF writer.
pub mod gguf;
