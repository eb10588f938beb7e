//! What the user chose on the `forge compile` command line, and the dtype
//! rules that follow from it.

use forge_ir::{DType, Model, TensorSpec};

use super::conversions::Reason;

/// The weight dtypes the generated kernels read.
pub use crate::kernels::weight_format::GPU_WEIGHT_DTYPES;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompileOptions {
    /// Weight dtype for every matrix; None keeps each tensor's own (see [`matrix_dtype`]).
    pub dtype: Option<DType>,
    /// KV-cache dtype; None picks f32 for all-f32 weights, else f16.
    pub kv_dtype: Option<DType>,
    /// Context length of the generated binary; None takes the model's
    /// (see [`CompileOptions::context_length`]).
    pub context: Option<u64>,
    /// Cargo package (and binary) name; None derives it from the model's name.
    pub name: Option<String>,
}

/// llama.cpp's default context; a model advertising 128k positions would
/// otherwise allocate a KV cache most runs never touch.
pub const DEFAULT_CONTEXT_CAP: u64 = 4096;

impl CompileOptions {
    /// The error text for a dtype the GPU kernels do not read.
    pub fn check(&self) -> Result<(), String> {
        if let Some(d) = self.dtype {
            if !GPU_WEIGHT_DTYPES.contains(&d) {
                return Err(format!(
                    "--dtype {} is not supported on the GPU (choose {})",
                    d.name(),
                    crate::kernels::weight_format::names(", ")
                ));
            }
        }
        if let Some(d) = self.kv_dtype {
            if d != DType::F32 && d != DType::F16 {
                return Err(format!(
                    "--kv-dtype {} is not supported (choose f16 or f32)",
                    d.name()
                ));
            }
        }
        if self.context == Some(0) {
            return Err("--context must be at least 1".into());
        }
        Ok(())
    }

    /// Without `--context`: the model's own, capped at [`DEFAULT_CONTEXT_CAP`]
    /// when attention layers need a KV cache that long (a state-space
    /// model's state has the same size at any position).
    pub fn context_length(&self, model: &Model) -> u64 {
        let attention = model.config.layers.iter().any(|l| {
            matches!(
                l.mixer,
                forge_ir::Mixer::FullAttention | forge_ir::Mixer::SlidingAttention
            )
        });
        self.context.unwrap_or(if attention {
            model.config.context_length.min(DEFAULT_CONTEXT_CAP)
        } else {
            model.config.context_length
        })
    }
}

/// The GPU dtype of a weight matrix with `cols` columns stored as `source`,
/// and why it differs from the checkpoint's when it does.
///
/// Without `--dtype`, every format a kernel reads is kept as it is; other
/// block formats become Q8_0, which holds their values almost exactly, and
/// other float types f16. Block formats need whole blocks per row; rows that
/// are not fall back to f16, as llama.cpp does.
pub fn matrix_dtype(
    options: &CompileOptions,
    source: &TensorSpec,
    cols: u64,
) -> (DType, Option<Reason>) {
    let (wanted, reason) = match options.dtype {
        Some(d) => (d, Reason::Requested),
        None if GPU_WEIGHT_DTYPES.contains(&source.dtype) => (source.dtype, Reason::NoKernel),
        None if source.dtype.is_quantized() => (DType::Q8_0, Reason::NoKernel),
        None => (DType::F16, Reason::NoKernel),
    };
    let dtype = if wanted.is_quantized() && !cols.is_multiple_of(wanted.block_elements()) {
        DType::F16
    } else {
        wanted
    };
    let reason = if dtype == source.dtype {
        None
    } else if dtype != wanted {
        Some(Reason::PartialBlocks)
    } else {
        Some(reason)
    };
    (dtype, reason)
}
