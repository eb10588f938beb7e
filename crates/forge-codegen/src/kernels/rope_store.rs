//! The `rope_store` kernel family (templates/metal/rope_store.metal.j2): for
//! the `n` tokens of a pass at positions `pos..pos+n`, normalises (optionally)
//! and rotates the q and k heads of the fused qkv activation in place, and
//! appends the pass's k and v rows to the layer's KV cache. One kernel serves
//! decode and prefill.

use forge_ir::{DType, RopeConfig, RopeLayout};

use super::rope_tables::rope_table;
use super::KernelInstance;

/// One simdgroup per (head, token): heads are small, and the q/k norm is one `simd_sum`.
const THREADS: u32 = 32;

/// The MSL type and name tag of a KV cache dtype.
///
/// # Panics
/// On a dtype a KV cache cannot have: f32 and f16 only (bfloat stores need a
/// float-to-bfloat conversion msl-emu cannot link with this machine's libgcc,
/// so a bf16 cache could not be tested).
pub fn kv_type(kv_dtype: DType) -> (&'static str, &'static str) {
    match kv_dtype {
        DType::F32 => ("float", "f32"),
        DType::F16 => ("half", "f16"),
        other => panic!("a KV cache holds f32 or f16, not {other}"),
    }
}

/// FNV-1a over the table's bits: layers with different rope tables (Gemma 3's
/// local and global bases) get different kernel names.
fn table_tag(words: impl IntoIterator<Item = u32>) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for word in words {
        for byte in word.to_le_bytes() {
            hash ^= byte as u32;
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    format!("{hash:08x}")
}

/// Rotates the q and k heads of `[n, (q_heads + 2·kv_heads)·head_dim]` in
/// place at positions `pos..pos+n` and stores k and v rows into the caches
/// (`[kv_heads, context, head_dim]` of `kv_dtype`). With `qk_norm_eps`, each q
/// and k head is RMS-normalised with the weights in buffers 3 and 4 first.
///
/// Buffers: 0 qkv, 1 k cache, 2 v cache, 3 q norm weight, 4 k norm weight
/// (both `float[head_dim]`, only with `qk_norm_eps`), 7 step.
/// Threads: 32; grid: (q_heads + 2·kv_heads, n).
///
/// # Panics
/// When `rope.rotary_dim` is odd or larger than `head_dim`, or `kv_dtype` is not a cache dtype.
/// A rotary dimension of 0 rotates nothing: attention without position
/// embeddings (Granite-4.0-H's `nope`), the heads only normed and stored.
pub fn rope_store(
    q_heads: u64,
    kv_heads: u64,
    head_dim: u64,
    rope: &RopeConfig,
    qk_norm_eps: Option<f32>,
    kv_dtype: DType,
    context: u64,
) -> KernelInstance {
    assert!(
        rope.rotary_dim.is_multiple_of(2) && rope.rotary_dim <= head_dim,
        "rope_store: rotary dimension {} must be even and at most the head dimension {head_dim}",
        rope.rotary_dim
    );
    assert!(
        kv_heads > 0 && q_heads.is_multiple_of(kv_heads),
        "rope_store: {q_heads} query heads do not group over {kv_heads} kv heads"
    );
    let (_, kv_tag) = kv_type(kv_dtype);
    let table = rope_table(rope);
    let layout = match rope.layout {
        RopeLayout::Neox => "neox",
        RopeLayout::Interleaved => "interleaved",
    };
    let mut words: Vec<u32> = table.inv_freq.iter().map(|f| f.to_bits()).collect();
    words.push(table.attention_factor.to_bits());
    if let Some(long) = &table.long {
        words.extend(long.inv_freq.iter().map(|f| f.to_bits()));
        words.push(long.original_context_length as u32);
    }
    let mut name = format!(
        "rope_store_h{q_heads}_kv{kv_heads}_d{head_dim}_r{}_{layout}_{kv_tag}_c{context}_t{}",
        rope.rotary_dim,
        table_tag(words)
    );
    if let Some(eps) = qk_norm_eps {
        name.push_str(&format!("_norm{:08x}", eps.to_bits()));
    }
    let (long_inv_freq, long_threshold) = match &table.long {
        Some(long) => (
            serde_json::json!(long.inv_freq),
            serde_json::json!(long.original_context_length),
        ),
        None => (serde_json::Value::Null, serde_json::Value::Null),
    };
    KernelInstance {
        family: "rope_store",
        name,
        params: serde_json::json!({
            "q_heads": q_heads,
            "kv_heads": kv_heads,
            "head_dim": head_dim,
            "rotary_dim": rope.rotary_dim,
            "layout": layout,
            "inv_freq": table.inv_freq,
            "attention_factor": table.attention_factor,
            "long_inv_freq": long_inv_freq,
            "long_threshold": long_threshold,
            "qk_norm_eps": qk_norm_eps,
            "kv_dtype": kv_tag,
            "context": context,
        }),
        threads: [THREADS, 1, 1],
        grid: [
            format!("{}", q_heads + 2 * kv_heads),
            "n".into(),
            "1".into(),
        ],
    }
}
