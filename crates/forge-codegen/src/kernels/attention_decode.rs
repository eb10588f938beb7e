//! The `attention_decode` kernel family (templates/metal/attention_decode.metal.j2):
//! one query token at position `pos` attends the cache positions
//! `max(0, pos - window + 1) ..= pos`, split over the sequence. Pass 1 runs one
//! threadgroup per (query head, split of `split` positions) and leaves a
//! partial softmax (max, sum, weighted values) per split in a scratch buffer;
//! `<name>_reduce` combines them. With a single split pass 1 writes the output
//! itself and the reduce dispatch is skipped.

use forge_ir::DType;

use super::rope_store::kv_type;
use super::KernelInstance;

/// Positions one pass-1 threadgroup covers: long enough that each simdgroup
/// walks 64+ keys, short enough that a 1k-token context still spreads over
/// several threadgroups per head.
pub const DEFAULT_SPLIT: u64 = 256;

/// Simdgroups per pass-1 threadgroup; each walks its own keys with its own running softmax.
const SIMDGROUPS: u32 = 4;

/// The two kernels of a decode attention and the scratch they share.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionDecode {
    /// Pass 1: grid (q_heads, number of splits).
    pub pass: KernelInstance,
    /// Combines the splits; dispatch it only when pass 1's grid y is above 1.
    pub reduce: KernelInstance,
    /// Bytes of buffer 4 (the partials) both kernels need.
    pub scratch_bytes: u64,
    /// Positions per split.
    pub split: u64,
}

/// Decode attention with the default split. Buffers: 0 qkv (q is the first
/// `q_heads·head_dim` columns of row 0), 1 k cache, 2 v cache (both
/// `[kv_heads, context, head_dim]` of `kv_dtype`), 3 out `float[q_heads·head_dim]`,
/// 4 partials scratch, 7 step (`pos` = the query's position).
pub fn attention_decode(shape: &AttentionShape) -> AttentionDecode {
    attention_decode_split(shape, DEFAULT_SPLIT)
}

/// Everything an attention kernel is specialised on.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionShape {
    pub q_heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    /// Positions the cache holds.
    pub context: u64,
    /// Multiplier of q·k.
    pub scale: f32,
    /// Positions attended, the query's own included; None = all.
    pub window: Option<u64>,
    /// Scores become `c·tanh(s/c)` before the softmax.
    pub softcap: Option<f32>,
    pub kv_dtype: DType,
}

impl AttentionShape {
    /// The name stem shared by the attention families: every parameter that
    /// changes the code is in it, since instances are de-duplicated by name.
    pub fn name_stem(&self, family: &str) -> String {
        let (_, kv_tag) = kv_type(self.kv_dtype);
        let mut name = format!(
            "{family}_h{}_kv{}_d{}_{kv_tag}_c{}_s{:08x}",
            self.q_heads,
            self.kv_heads,
            self.head_dim,
            self.context,
            self.scale.to_bits()
        );
        if let Some(w) = self.window {
            name.push_str(&format!("_w{w}"));
        }
        if let Some(c) = self.softcap {
            name.push_str(&format!("_cap{:08x}", c.to_bits()));
        }
        name
    }

    /// The parameters both families' templates read.
    pub fn params(&self) -> serde_json::Map<String, serde_json::Value> {
        assert!(
            self.kv_heads > 0 && self.q_heads.is_multiple_of(self.kv_heads),
            "attention: {} query heads do not group over {} kv heads",
            self.q_heads,
            self.kv_heads
        );
        assert!(
            self.window != Some(0),
            "attention: a window holds at least the query's own position"
        );
        let (_, kv_tag) = kv_type(self.kv_dtype);
        let serde_json::Value::Object(map) = serde_json::json!({
            "q_heads": self.q_heads,
            "kv_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "context": self.context,
            "scale": self.scale,
            "window": self.window,
            "softcap": self.softcap,
            "kv_dtype": kv_tag,
        }) else {
            unreachable!("json! of an object literal is an object")
        };
        map
    }

    /// Positions a query can attend at most.
    pub fn span(&self) -> u64 {
        self.window.map_or(self.context, |w| w.min(self.context))
    }
}

/// Decode attention with `split` positions per pass-1 threadgroup (tests use
/// small splits to exercise the combination on short sequences).
///
/// # Panics
/// When `split` is 0, the heads do not group, the window is 0 or the KV dtype
/// is not a cache dtype.
pub fn attention_decode_split(shape: &AttentionShape, split: u64) -> AttentionDecode {
    assert!(split > 0, "attention_decode: split must be positive");
    let mut params = shape.params();
    let max_splits = shape.span().div_ceil(split);
    params.insert("split".into(), split.into());
    params.insert("max_splits".into(), max_splits.into());
    params.insert("simdgroups".into(), SIMDGROUPS.into());
    // Lanes that share one key: about 8 values each (two half4 loads of the
    // key and of the value), a power of two up to 32, so a simdgroup scores
    // several consecutive keys at once with few shuffles.
    let lanes_per_key = shape.head_dim.div_ceil(8).next_power_of_two().min(32);
    params.insert("lanes_per_key".into(), lanes_per_key.into());
    let name = format!("{}_split{split}", shape.name_stem("attention_decode"));
    let splits = match shape.window {
        Some(w) => format!("(pos + 1).min({w}).div_ceil({split})"),
        None => format!("(pos + 1).div_ceil({split})"),
    };
    let q_heads = shape.q_heads.to_string();
    let mut reduce_params = params.clone();
    params.insert("stage".into(), "pass".into());
    reduce_params.insert("stage".into(), "reduce".into());
    AttentionDecode {
        pass: KernelInstance {
            family: "attention_decode",
            name: name.clone(),
            params: serde_json::Value::Object(params),
            threads: [32 * SIMDGROUPS, 1, 1],
            grid: [q_heads.clone(), splits, "1".into()],
        },
        // Same family: the macro emits the combining kernel for stage "reduce".
        reduce: KernelInstance {
            family: "attention_decode",
            name: format!("{name}_reduce"),
            params: serde_json::Value::Object(reduce_params),
            threads: [32, 1, 1],
            grid: [q_heads, "1".into(), "1".into()],
        },
        scratch_bytes: shape.q_heads * max_splits * (shape.head_dim + 2) * 4,
        split,
    }
}
