//! forge-weights: GGML block formats, the quant planes the GPU kernels read,
//! and the GGUF writer.
pub mod gguf;
pub mod planes;
pub mod quant;

pub use quant::{
    can_dequantize, can_quantize, dequantize, dequantize_rows, quantize, quantize_rows, QuantError,
};
