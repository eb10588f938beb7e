//! For the rope and attention kernel tests: KV caches in their GPU dtypes
//! (building, reading back, rounding values the way the kernels store them)
//! and a straightforward float64 attention over a cache's contents.
#![allow(dead_code)]

use forge_codegen::kernels::attention_decode::AttentionShape;
use forge_ir::DType;
use half::f16;
use msl_emu::Buffer;

/// `value` as the cache stores it (round to nearest even, like MSL's conversions).
pub fn round_kv(dtype: DType, value: f32) -> f32 {
    match dtype {
        DType::F32 => value,
        DType::F16 => f16::from_f32(value).to_f32(),
        other => panic!("no KV cache of {other}"),
    }
}

/// A cache buffer holding `values` in `dtype`.
pub fn kv_buffer(dtype: DType, values: &[f32]) -> Buffer {
    match dtype {
        DType::F32 => Buffer::from_slice(values),
        DType::F16 => {
            let bits: Vec<u16> = values.iter().map(|v| f16::from_f32(*v).to_bits()).collect();
            Buffer::from_slice(&bits)
        }
        other => panic!("no KV cache of {other}"),
    }
}

/// A cache buffer's contents as f32.
pub fn read_kv(dtype: DType, buffer: &Buffer) -> Vec<f32> {
    match dtype {
        DType::F32 => buffer.read::<f32>(),
        DType::F16 => buffer
            .read::<u16>()
            .into_iter()
            .map(|b| f16::from_bits(b).to_f32())
            .collect(),
        other => panic!("no KV cache of {other}"),
    }
}

/// Relative size of the rounding step of the cache dtype (half an ulp).
pub fn kv_rounding(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 0.0,
        DType::F16 => 2f64.powi(-11),
        other => panic!("no KV cache of {other}"),
    }
}

/// What an attention kernel is specialised on, in the tests' terms.
#[derive(Clone, Debug)]
pub struct Attn {
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub context: usize,
    pub scale: f32,
    pub window: Option<usize>,
    pub softcap: Option<f32>,
    pub kv: DType,
}

impl Attn {
    /// The kernels' view of the same specialisation.
    pub fn shape(&self) -> AttentionShape {
        AttentionShape {
            q_heads: self.q_heads as u64,
            kv_heads: self.kv_heads as u64,
            head_dim: self.head_dim as u64,
            context: self.context as u64,
            scale: self.scale,
            window: self.window.map(|w| w as u64),
            softcap: self.softcap,
            kv_dtype: self.kv,
        }
    }

    /// First cache position a query at `position` attends.
    pub fn first_key(&self, position: usize) -> usize {
        self.window.map_or(0, |w| (position + 1).saturating_sub(w))
    }
}

/// Attention of one query (`q_heads·head_dim` values) at `position` over the
/// cache contents `k`, `v` (`[kv_heads, context, head_dim]`, as f32), in
/// float64: scores q·k·scale, optional softcap, softmax over the visible keys,
/// weighted sum of values. Returns `q_heads·head_dim` values.
pub fn reference_attention(a: &Attn, q: &[f32], k: &[f32], v: &[f32], position: usize) -> Vec<f64> {
    let d = a.head_dim;
    let group = a.q_heads / a.kv_heads;
    let mut out = vec![0.0; a.q_heads * d];
    for h in 0..a.q_heads {
        let base = (h / group) * a.context * d;
        let keys = a.first_key(position)..=position;
        let scores: Vec<f64> = keys
            .clone()
            .map(|j| {
                let dot: f64 = (0..d)
                    .map(|e| q[h * d + e] as f64 * k[base + j * d + e] as f64)
                    .sum();
                let s = dot * a.scale as f64;
                match a.softcap {
                    Some(c) => c as f64 * (s / c as f64).tanh(),
                    None => s,
                }
            })
            .collect();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        for (j, w) in keys.zip(&weights) {
            for e in 0..d {
                out[h * d + e] += w / total * v[base + j * d + e] as f64;
            }
        }
    }
    out
}

/// A cache of random values in [-1, 1) at the positions in `live`, and NaN
/// elsewhere, so a kernel that reads a position it must not see fails.
pub fn random_cache(a: &Attn, seed: u64, live: std::ops::Range<usize>) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut values = vec![f32::NAN; a.kv_heads * a.context * a.head_dim];
    for h in 0..a.kv_heads {
        for p in live.clone() {
            for e in 0..a.head_dim {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let x = ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
                values[(h * a.context + p) * a.head_dim + e] = round_kv(a.kv, x);
            }
        }
    }
    values
}
