//! The `attention_prefill` kernel family (templates/metal/attention_prefill.metal.j2):
//! the `n` queries of a pass at positions `pos..pos+n` attend causally to the
//! cache (whose rows `pos..pos+n` `rope_store` has just written), flash-attention
//! style: each threadgroup takes a tile of queries of one head, walks the keys in
//! tiles staged in threadgroup memory and keeps a running softmax, so no
//! `[n, n]` score matrix ever exists in device memory.

use super::attention_decode::AttentionShape;
use super::KernelInstance;

/// Keys per tile and simdgroups per threadgroup for a head dimension (padded
/// to a multiple of 8): the K and V tiles (`2·keys·head_dim` floats) stay
/// within 16 KiB, and the query tile (8 rows per simdgroup), staged in the
/// same memory, fits in them.
fn tiling(head_dim: u64) -> (u64, u64) {
    let padded = head_dim.next_multiple_of(8);
    let keys = (2048 / padded).clamp(8, 32) / 8 * 8;
    let simdgroups = (keys / 4).min(4);
    (keys, simdgroups)
}

/// Causal prefill attention. Buffers: 0 qkv `[n, (q_heads + 2·kv_heads)·head_dim]`
/// (q is each row's first `q_heads·head_dim` columns), 1 k cache, 2 v cache
/// (`[kv_heads, context, head_dim]` of `kv_dtype`), 3 out `[n, q_heads·head_dim]`,
/// 7 step. Grid: (q_heads, ⌈n / query tile⌉).
///
/// # Panics
/// When `head_dim` is 0 or above 256, the heads do not group, the window is
/// 0 or the KV dtype is not a cache dtype. (A head dimension that is not a
/// multiple of 8, the side of the simdgroup matrices, is padded in the tiles.)
pub fn attention_prefill(shape: &AttentionShape) -> KernelInstance {
    let head_dim = shape.head_dim;
    assert!(
        (1..=256).contains(&head_dim),
        "attention_prefill: head dimension {head_dim} is not in 1..=256"
    );
    let (keys, simdgroups) = tiling(head_dim);
    let queries = 8 * simdgroups;
    let mut params = shape.params();
    params.insert("key_tile".into(), keys.into());
    params.insert("simdgroups".into(), simdgroups.into());
    KernelInstance {
        family: "attention_prefill",
        name: shape.name_stem("attention_prefill"),
        params: serde_json::Value::Object(params),
        threads: [32 * simdgroups as u32, 1, 1],
        grid: [
            shape.q_heads.to_string(),
            format!("n.div_ceil({queries})"),
            "1".into(),
        ],
    }
}
