//! The `embedding` kernel family (templates/metal/embedding.metal.j2).

use super::matvec::{float_tag, weight_dtype_param};
use super::KernelInstance;
use forge_ir::DType;

/// Looks up `n` token rows of a `[vocab, hidden]` table, dequantised to float
/// and multiplied by `scale` when given (Gemma's √hidden). One threadgroup
/// per token. Buffers: 0 table, 1 tokens `uint[n]`, 2 out `[n, hidden]`, 7 step.
pub fn embedding(dtype: DType, vocab: u64, hidden: u64, scale: Option<f32>) -> KernelInstance {
    let dtype_param = weight_dtype_param(dtype);
    assert!(vocab > 0, "embedding: empty table");
    assert!(
        hidden > 0 && hidden.is_multiple_of(32),
        "embedding: hidden = {hidden} must be a positive multiple of 32"
    );
    let chunks = if dtype.is_quantized() {
        hidden / 32
    } else {
        hidden / 4
    };
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
        }),
        threads: [threads, 1, 1],
        grid: ["n".into(), "1".into(), "1".into()],
    }
}
