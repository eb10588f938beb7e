//! The `embedding` kernel family (templates/metal/embedding.metal.j2).

use super::matvec::float_tag;
use super::weight_format::{self, chunk_values, PlaneSlots};
use super::KernelInstance;
use forge_ir::DType;

/// Looks up `n` token rows of a `[vocab, hidden]` table, dequantised to float
/// and multiplied by `scale` when given (Gemma's √hidden). One threadgroup
/// per token. Buffers: 0 table (the quant plane of a quantised one), 1
/// tokens `uint[n]`, 2 out `[n, hidden]`, 3 (and on) the other planes
/// ([`PlaneSlots::Embedding`]), 7 step.
pub fn embedding(dtype: DType, vocab: u64, hidden: u64, scale: Option<f32>) -> KernelInstance {
    let dtype_param = weight_format::param(dtype);
    assert!(vocab > 0 && hidden > 0, "embedding: empty table");
    assert!(
        !dtype.is_quantized() || hidden.is_multiple_of(32),
        "embedding: quantised rows of {hidden} values are not whole blocks"
    );
    let chunk = chunk_values(dtype, hidden);
    let chunks = hidden / chunk;
    let threads = chunks.next_multiple_of(32).min(256) as u32;
    let mut name = format!("embedding_{dtype_param}_{vocab}x{hidden}");
    if let Some(s) = scale {
        name += &format!("_scale{}", float_tag(s));
    }
    KernelInstance {
        family: "embedding",
        name,
        params: serde_json::json!({
            "dtype": dtype_param,
            "vocab": vocab,
            "hidden": hidden,
            "scale": scale,
            "threads": threads,
            "chunk": chunk,
            "planes": weight_format::plane_params(dtype, hidden, PlaneSlots::Embedding),
        }),
        threads: [threads, 1, 1],
        grid: ["n".into(), "1".into(), "1".into()],
    }
}
