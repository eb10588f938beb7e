//! The `attention_prefill` family under msl-emu against a float64 reference
//! over the same cache contents: each of the pass's n queries at positions
//! pos..pos+n attends causally to the cache; n and pos cross the query and
//! key tile sizes; GQA, MQA, windows, softcap, f32/f16 caches, head_dim 16,
//! 64, 128 and 256.

mod kernel_attention_reference;
mod kernel_support;

use forge_codegen::kernels::attention_prefill::attention_prefill;
use forge_ir::DType;
use kernel_attention_reference::*;
use kernel_support::*;
use msl_emu::Buffer;

/// Scores are float32 dot products (accumulated in float by the 8×8
/// simdgroup matrices) of at most 128 terms, weights are float32
/// exponentials and the output is rescaled once per key tile; with
/// unit-sized values that is a few float32 ulps, far below 2e-5.
const TOLERANCE: f64 = 2e-5;

fn check(a: &Attn, n: usize, pos: usize) {
    let k = attention_prefill(&a.shape());
    let kernels = Kernels::build(std::slice::from_ref(&k));
    let d = a.head_dim;
    let row = (a.q_heads + 2 * a.kv_heads) * d;
    let mut rng = Rng::new((n * 1000 + pos * 7 + d) as u64);
    let qkv = rng.vec(n * row, 1.0);
    // Positions no query of the pass may see hold NaN.
    let live = a.first_key(pos)..pos + n;
    let kc = random_cache(a, (n * 31 + pos) as u64, live.clone());
    let vc = random_cache(a, (n * 37 + pos) as u64, live);
    let (qkv_b, k_b, v_b) = (buffer(&qkv), kv_buffer(a.kv, &kc), kv_buffer(a.kv, &vc));
    let width = a.q_heads * d;
    let out = Buffer::from_slice(&vec![f32::NAN; n * width]);
    let step = step_bytes(n as u32, pos as u32);
    kernels.run(
        &k,
        n as u32,
        pos as u32,
        &[
            bind(0, &qkv_b),
            bind(1, &k_b),
            bind(2, &v_b),
            bind(3, &out),
            step_binding(&step),
        ],
    );
    let mut want = Vec::with_capacity(n * width);
    for t in 0..n {
        want.extend(reference_attention(
            a,
            &qkv[t * row..t * row + width],
            &kc,
            &vc,
            pos + t,
        ));
    }
    let what = format!("{} n {n} pos {pos}", k.name);
    assert_close(&what, &read_f32(&out), &want, &vec![TOLERANCE; want.len()]);
}

fn attn(q_heads: usize, kv_heads: usize, head_dim: usize, kv: DType) -> Attn {
    Attn {
        q_heads,
        kv_heads,
        head_dim,
        context: 128,
        scale: 1.0 / (head_dim as f32).sqrt(),
        window: None,
        softcap: None,
        kv,
    }
}

#[test]
fn from_position_zero_gqa_f32() {
    let a = attn(4, 2, 16, DType::F32);
    for n in [1, 7, 33] {
        check(&a, n, 0);
    }
}

#[test]
fn after_earlier_chunks_f16() {
    let a = attn(4, 2, 16, DType::F16);
    check(&a, 9, 40);
    check(&a, 1, 40);
}

#[test]
fn mqa_with_softcap_head_dim_64() {
    let a = Attn {
        softcap: Some(2.0),
        scale: 0.5,
        ..attn(4, 1, 64, DType::F16)
    };
    check(&a, 33, 0);
    check(&a, 9, 40);
}

#[test]
fn window_includes_the_current_token() {
    let a = Attn {
        window: Some(4),
        ..attn(4, 2, 16, DType::F32)
    };
    check(&a, 33, 0);
    check(&a, 9, 40);
    let wide = Attn {
        window: Some(37),
        ..attn(4, 4, 64, DType::F16)
    };
    check(&wide, 40, 20);
}

#[test]
fn head_dim_128_gqa_4_1() {
    let a = attn(4, 1, 128, DType::F32);
    check(&a, 20, 0);
    check(&a, 9, 40);
}

/// Gemma's head size: 8-key tiles and two simdgroups (16-query tiles).
#[test]
fn head_dim_256_with_window() {
    let a = Attn {
        window: Some(12),
        ..attn(2, 1, 256, DType::F16)
    };
    check(&a, 17, 3);
}

/// Head dimensions that are not multiples of 8 (or of 4): zero-padded in
/// the tiles, only the real columns written.
#[test]
fn head_dims_that_are_not_multiples_of_8() {
    for (d, kv) in [
        (14, DType::F32),
        (6, DType::F16),
        (37, DType::F32),
        (40, DType::F16),
    ] {
        let a = attn(4, 2, d, kv);
        check(&a, 11, 0);
        check(&a, 5, 20);
    }
}

#[test]
fn attention_prefill_shares_the_attention_shape_guards() {
    let k = attention_prefill(&attn(4, 2, 64, DType::F16).shape());
    assert_param_refused(&k, "kv_heads", 3.into());
    assert_param_refused(&k, "kv_dtype", "bf16".into());
    assert_param_refused(&k, "head_dim", 0.into());
    assert_param_refused(&k, "context", 0.into());
    assert_param_refused(&k, "window", 0.into());
    assert_param_refused(&k, "softcap", 0.0.into());
    assert_renders(&with_param(&k, "window", 1.into()));
}

#[test]
fn attention_prefill_refuses_key_tiles_that_are_not_whole_matrices() {
    // head_dim 64: 32 keys per tile and 4 simdgroups (32 queries, staged in 2 · 16 keys at least).
    let k = attention_prefill(&attn(4, 2, 64, DType::F16).shape());
    assert_eq!(k.params["key_tile"], 32);
    assert_param_refused(&k, "key_tile", 20.into());
    assert_param_refused(&k, "key_tile", 0.into());
    assert_renders(&with_param(&k, "key_tile", 16.into()));
}

#[test]
fn attention_prefill_refuses_simdgroups_other_than_the_dispatch() {
    let k = attention_prefill(&attn(4, 2, 64, DType::F16).shape());
    assert_param_refused(&k, "simdgroups", 2.into());
    assert_renders(&k);
}
