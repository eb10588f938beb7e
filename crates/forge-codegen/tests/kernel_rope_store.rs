//! The `rope_store` family under msl-emu against a float64 Rust reference:
//! layouts, partial rotary, q/k norm, scaled tables (YaRN, Llama 3, LongRoPE
//! on both sides of its threshold), f32/f16 caches, GQA and MQA.

mod kernel_attention_reference;
mod kernel_support;

use forge_codegen::kernels::rope_store::rope_store;
use forge_codegen::kernels::rope_tables::rope_table;
use forge_ir::{DType, RopeConfig, RopeLayout, RopeScaling};
use kernel_attention_reference::*;
use kernel_support::*;

struct Case {
    q_heads: usize,
    kv_heads: usize,
    head_dim: usize,
    rope: RopeConfig,
    qk_norm_eps: Option<f32>,
    kv: DType,
    context: usize,
    n: usize,
    pos: usize,
}

fn rope(theta: f64, rotary_dim: u64, layout: RopeLayout, scaling: RopeScaling) -> RopeConfig {
    RopeConfig {
        theta,
        rotary_dim,
        layout,
        scaling,
    }
}

/// Sentinel the caches start with, so rows the kernel must not touch are checked.
const SENTINEL: f32 = 7.0;

/// The rotated (and normalised) head in float64. The angle is the float32
/// product position · inv_freq, as transformers computes it and the kernel
/// must; cos, sin and everything after are exact here.
fn reference_head(case: &Case, x: &[f32], weight: Option<&[f32]>, position: usize) -> Vec<f64> {
    let table = rope_table(&case.rope);
    let last = case.pos + case.n;
    let inv_freq = match &table.long {
        Some(long) if last as u64 > long.original_context_length => &long.inv_freq,
        _ => &table.inv_freq,
    };
    let mut v: Vec<f64> = x.iter().map(|e| *e as f64).collect();
    if let (Some(eps), Some(w)) = (case.qk_norm_eps, weight) {
        let mean = v.iter().map(|e| e * e).sum::<f64>() / v.len() as f64;
        let inv_rms = 1.0 / (mean + eps as f64).sqrt();
        for (e, w) in v.iter_mut().zip(w) {
            *e *= inv_rms * *w as f64;
        }
    }
    let half = case.rope.rotary_dim as usize / 2;
    let factor = table.attention_factor as f64;
    let mut out = v.clone();
    for (i, f) in inv_freq.iter().enumerate() {
        let angle = (position as f32 * f) as f64;
        let (c, s) = (angle.cos() * factor, angle.sin() * factor);
        let (a, b) = match case.rope.layout {
            RopeLayout::Neox => (i, i + half),
            RopeLayout::Interleaved => (2 * i, 2 * i + 1),
        };
        out[a] = v[a] * c - v[b] * s;
        out[b] = v[b] * c + v[a] * s;
    }
    out
}

fn run(case: &Case) {
    let (d, qh, kvh) = (case.head_dim, case.q_heads, case.kv_heads);
    let row = (qh + 2 * kvh) * d;
    let k = rope_store(
        qh as u64,
        kvh as u64,
        d as u64,
        &case.rope,
        case.qk_norm_eps,
        case.kv,
        case.context as u64,
    );
    let kernels = Kernels::build(std::slice::from_ref(&k));
    let mut rng = Rng::new((d * 1000 + case.n * 10 + case.pos) as u64);
    let qkv = rng.vec(case.n * row, 1.0);
    let q_norm: Vec<f32> = rng.vec(d, 0.5).iter().map(|w| 1.0 + w).collect();
    let k_norm: Vec<f32> = rng.vec(d, 0.5).iter().map(|w| 1.0 + w).collect();
    let cache_len = kvh * case.context * d;
    let (qkv_b, qn_b, kn_b) = (buffer(&qkv), buffer(&q_norm), buffer(&k_norm));
    let k_cache = kv_buffer(case.kv, &vec![SENTINEL; cache_len]);
    let v_cache = kv_buffer(case.kv, &vec![SENTINEL; cache_len]);
    let step = step_bytes(case.n as u32, case.pos as u32);
    kernels.run(
        &k,
        case.n as u32,
        case.pos as u32,
        &[
            bind(0, &qkv_b),
            bind(1, &k_cache),
            bind(2, &v_cache),
            bind(3, &qn_b),
            bind(4, &kn_b),
            step_binding(&step),
        ],
    );

    let mut want_qkv = Vec::with_capacity(qkv.len());
    let mut want_k = vec![SENTINEL as f64; cache_len];
    let mut want_v = vec![SENTINEL as f64; cache_len];
    for t in 0..case.n {
        let position = case.pos + t;
        for h in 0..qh + 2 * kvh {
            let x = &qkv[t * row + h * d..t * row + (h + 1) * d];
            let head: Vec<f64> = if h < qh {
                reference_head(case, x, Some(&q_norm), position)
            } else if h < qh + kvh {
                reference_head(case, x, Some(&k_norm), position)
            } else {
                x.iter().map(|e| *e as f64).collect()
            };
            if h >= qh {
                let cache = if h < qh + kvh {
                    &mut want_k
                } else {
                    &mut want_v
                };
                let kv_head = (h - qh) % kvh;
                let at = (kv_head * case.context + position) * d;
                cache[at..at + d].copy_from_slice(&head);
            }
            want_qkv.extend(head);
        }
    }
    let what = &k.name;
    // Values stay below ~4 (unit inputs, norm weights in [0.5, 1.5], factors
    // near 1): a handful of float32 roundings of 2.4e-7 relative each.
    const ROTATION_TOLERANCE: f64 = 4e-6;
    let tol = vec![ROTATION_TOLERANCE; want_qkv.len()];
    assert_close(&format!("{what} qkv"), &read_f32(&qkv_b), &want_qkv, &tol);
    // The cache holds the kernel's float32 value rounded once to its dtype.
    let rounding = kv_rounding(case.kv);
    let tol_k: Vec<f64> = want_k
        .iter()
        .map(|w| w.abs() * rounding + ROTATION_TOLERANCE)
        .collect();
    assert_close(
        &format!("{what} k cache"),
        &read_kv(case.kv, &k_cache),
        &want_k,
        &tol_k,
    );
    // v passes through unchanged: one rounding to the cache dtype on both sides.
    let got_v = read_kv(case.kv, &v_cache);
    let want_v: Vec<f32> = want_v
        .iter()
        .map(|v| round_kv(case.kv, *v as f32))
        .collect();
    assert_eq!(got_v, want_v, "{what} v cache");
}

#[test]
fn neox_full_rotary_f32_gqa() {
    run(&Case {
        q_heads: 4,
        kv_heads: 2,
        head_dim: 16,
        rope: rope(10000.0, 16, RopeLayout::Neox, RopeScaling::None),
        qk_norm_eps: None,
        kv: DType::F32,
        context: 32,
        n: 5,
        pos: 3,
    });
}

#[test]
fn interleaved_decode_f16_mqa() {
    run(&Case {
        q_heads: 4,
        kv_heads: 1,
        head_dim: 16,
        rope: rope(500000.0, 16, RopeLayout::Interleaved, RopeScaling::None),
        qk_norm_eps: None,
        kv: DType::F16,
        context: 128,
        n: 1,
        pos: 100,
    });
}

#[test]
fn partial_rotary_with_qk_norm_and_yarn_f16() {
    run(&Case {
        q_heads: 4,
        kv_heads: 2,
        head_dim: 16,
        rope: rope(
            1e6,
            12,
            RopeLayout::Neox,
            RopeScaling::Yarn {
                factor: 4.0,
                original_context_length: 256,
                beta_fast: 32.0,
                beta_slow: 1.0,
                attention_factor: 0.1 * 4f64.ln() + 1.0,
            },
        ),
        qk_norm_eps: Some(1e-6),
        kv: DType::F16,
        context: 64,
        n: 7,
        pos: 0,
    });
}

#[test]
fn head_dim_64_llama3_prefill_f32() {
    run(&Case {
        q_heads: 9,
        kv_heads: 3,
        head_dim: 64,
        rope: rope(
            500000.0,
            64,
            RopeLayout::Neox,
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_context_length: 64,
            },
        ),
        qk_norm_eps: None,
        kv: DType::F32,
        context: 64,
        n: 9,
        pos: 40,
    });
}

#[test]
fn head_dim_128_interleaved_partial_norm_f16() {
    run(&Case {
        q_heads: 2,
        kv_heads: 1,
        head_dim: 128,
        rope: rope(
            10000.0,
            96,
            RopeLayout::Interleaved,
            RopeScaling::Linear { factor: 2.0 },
        ),
        qk_norm_eps: Some(1e-5),
        kv: DType::F16,
        context: 16,
        n: 3,
        pos: 5,
    });
}

/// LongRoPE switches tables when the pass's last position reaches past the
/// original context: a pass ending at position 63 (of 64) uses the short
/// factors, one ending at 64 the long ones, for all of its tokens.
#[test]
fn longrope_switches_tables_at_the_original_context() {
    let longrope = rope(
        10000.0,
        12,
        RopeLayout::Neox,
        RopeScaling::LongRope {
            short_factor: vec![1.0, 1.1, 1.25, 1.5, 2.0, 2.5],
            long_factor: vec![1.0, 1.5, 2.0, 3.0, 4.0, 6.0],
            original_context_length: 64,
            attention_factor: 1.1547005383792517,
        },
    );
    for (n, pos) in [(4, 60), (4, 61), (1, 63), (1, 64)] {
        run(&Case {
            q_heads: 4,
            kv_heads: 2,
            head_dim: 16,
            rope: longrope.clone(),
            qk_norm_eps: None,
            kv: DType::F16,
            context: 80,
            n,
            pos,
        });
    }
}

/// No position embeddings (Granite-4.0-H's `nope`): rotary dimension 0, the
/// heads only stored, with and without the per-head norm.
#[test]
fn no_rotation_stores_heads_as_they_are() {
    for qk_norm_eps in [None, Some(1e-6)] {
        run(&Case {
            q_heads: 4,
            kv_heads: 2,
            head_dim: 10,
            rope: rope(10000.0, 0, RopeLayout::Neox, RopeScaling::None),
            qk_norm_eps,
            kv: DType::F16,
            context: 32,
            n: 6,
            pos: 2,
        });
    }
}

/// 4 query and 2 kv heads of 16, fully rotated, into an f16 cache.
fn plain_rope_store() -> forge_codegen::KernelInstance {
    let r = rope(10000.0, 16, RopeLayout::Neox, RopeScaling::None);
    rope_store(4, 2, 16, &r, None, DType::F16, 64)
}

#[test]
fn rope_store_refuses_a_dispatch_other_than_one_simdgroup() {
    let mut k = plain_rope_store();
    k.threads = [64, 1, 1];
    assert_refused(&k, "rope_store: threads = 64 must be 32");
    assert_renders(&plain_rope_store());
}

#[test]
fn rope_store_refuses_an_unknown_kv_dtype() {
    assert_param_refused(&plain_rope_store(), "kv_dtype", "bf16".into());
}

#[test]
fn rope_store_refuses_an_odd_or_oversized_rotary_dim() {
    let k = plain_rope_store();
    assert_param_refused(&k, "rotary_dim", 15.into());
    assert_param_refused(&k, "rotary_dim", 18.into());
    // A smaller even rotary dim with its table renders (columns past it pass through).
    let partial = with_param(&k, "rotary_dim", 8.into());
    assert_renders(&with_param(
        &partial,
        "inv_freq",
        serde_json::json!([1.0, 0.1, 0.01, 0.001]),
    ));
}

#[test]
fn rope_store_refuses_a_table_of_the_wrong_length() {
    let k = plain_rope_store();
    assert_refused(
        &with_param(&k, "inv_freq", serde_json::json!([1.0, 0.5])),
        "rope_store: inv_freq has 2 entries, must be rotary_dim / 2 = 8",
    );
}

#[test]
fn rope_store_refuses_a_long_table_of_the_wrong_length() {
    let k = with_param(&plain_rope_store(), "long_threshold", 32.into());
    assert_refused(
        &with_param(&k, "long_inv_freq", serde_json::json!([1.0])),
        "rope_store: long_inv_freq has 1 entries",
    );
    assert_renders(&with_param(
        &k,
        "long_inv_freq",
        serde_json::Value::from(vec![0.5; 8]),
    ));
}

#[test]
fn rope_store_refuses_a_long_table_without_its_threshold() {
    let k = with_param(
        &plain_rope_store(),
        "long_inv_freq",
        serde_json::Value::from(vec![0.5; 8]),
    );
    assert_refused(&k, "rope_store: long_threshold = none");
}
