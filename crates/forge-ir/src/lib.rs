//! forge-ir: the typed description of a model that forge's front ends produce
//! and its code generator walks. Data types and validation only; no I/O.

pub mod dtype;

pub use dtype::DType;
