//! forge-weights: GGML block formats and the GGUF writer.
pub mod gguf;

pub mod quant;

pub use quant::{
    can_dequantize, can_quantize, dequantize, dequantize_rows, quantize, quantize_rows, QuantError,
};
