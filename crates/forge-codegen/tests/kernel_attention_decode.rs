//! The `attention_decode` family (pass 1 and the reduce kernel) under msl-emu
//! against a float64 reference over the same cache contents: GQA 4:2, 4:1,
//! 9:3, MQA, head_dim 16, 64, 128 and 256, f32/f16 caches, windows, softcap,
//! one split (pass 1 writes the output) and several (the reduce combines).

mod kernel_attention_reference;
mod kernel_support;

use forge_codegen::kernels::attention_decode::{
    attention_decode, attention_decode_split, AttentionDecode,
};
use forge_ir::DType;
use kernel_attention_reference::*;
use kernel_support::*;
use msl_emu::Buffer;

/// Scores are float32 dot products of at most 128 terms and the weights
/// float32 exponentials; with unit-sized values the output's error is a few
/// float32 ulps of the largest terms, far below 2e-5.
const TOLERANCE: f64 = 2e-5;

/// Runs the decode kernels for a query at `pos` and compares with the
/// reference. Returns the number of splits pass 1 was dispatched with.
fn check(a: &Attn, decode: &AttentionDecode, pos: usize) -> u32 {
    let kernels = Kernels::build(&[decode.pass.clone(), decode.reduce.clone()]);
    let d = a.head_dim;
    let row = (a.q_heads + 2 * a.kv_heads) * d;
    let mut rng = Rng::new((pos * 131 + d) as u64);
    let qkv = rng.vec(row, 1.0);
    // Only the attended positions hold numbers; NaN anywhere else would show in the output.
    let live = a.first_key(pos)..pos + 1;
    let k = random_cache(a, pos as u64 * 7 + 1, live.clone());
    let v = random_cache(a, pos as u64 * 7 + 2, live);
    let (qkv_b, k_b, v_b) = (buffer(&qkv), kv_buffer(a.kv, &k), kv_buffer(a.kv, &v));
    let out = Buffer::new(a.q_heads * d * 4);
    let scratch = Buffer::new(decode.scratch_bytes as usize);
    let step = step_bytes(1, pos as u32);
    let bindings = [
        bind(0, &qkv_b),
        bind(1, &k_b),
        bind(2, &v_b),
        bind(3, &out),
        bind(4, &scratch),
        step_binding(&step),
    ];
    kernels.run(&decode.pass, 1, pos as u32, &bindings);
    let splits = eval_grid(&decode.pass.grid[1], 1, pos as u32);
    if splits > 1 {
        kernels.run(&decode.reduce, 1, pos as u32, &bindings);
    }
    let want = reference_attention(a, &qkv[..a.q_heads * d], &k, &v, pos);
    let what = format!("{} at pos {pos} ({splits} splits)", decode.pass.name);
    assert_close(&what, &read_f32(&out), &want, &vec![TOLERANCE; want.len()]);
    splits
}

fn attn(q_heads: usize, kv_heads: usize, head_dim: usize, kv: DType) -> Attn {
    Attn {
        q_heads,
        kv_heads,
        head_dim,
        context: 640,
        scale: 1.0 / (head_dim as f32).sqrt(),
        window: None,
        softcap: None,
        kv,
    }
}

#[test]
fn one_split_writes_the_output_directly() {
    let a = attn(4, 2, 16, DType::F32);
    let decode = attention_decode_split(&a.shape(), 64);
    for pos in [0, 1, 20, 63] {
        assert_eq!(check(&a, &decode, pos), 1);
    }
}

#[test]
fn several_splits_are_combined_f16_gqa() {
    let a = attn(4, 2, 16, DType::F16);
    let decode = attention_decode_split(&a.shape(), 8);
    assert_eq!(check(&a, &decode, 8), 2);
    assert_eq!(check(&a, &decode, 50), 7);
}

#[test]
fn default_split_head_dim_64_gqa_9_3() {
    let a = attn(9, 3, 64, DType::F16);
    let decode = attention_decode(&a.shape());
    assert_eq!(check(&a, &decode, 30), 1);
    assert_eq!(check(&a, &decode, 300), 2);
}

#[test]
fn mqa_with_softcap_head_dim_64() {
    let a = Attn {
        softcap: Some(2.0),
        scale: 0.5,
        ..attn(4, 1, 64, DType::F32)
    };
    let decode = attention_decode_split(&a.shape(), 32);
    assert_eq!(check(&a, &decode, 100), 4);
}

#[test]
fn window_includes_the_current_token() {
    let a = Attn {
        window: Some(4),
        ..attn(4, 2, 16, DType::F16)
    };
    let decode = attention_decode_split(&a.shape(), 2);
    // Before the window fills (positions 0..=pos), then sliding: 2 splits of 2.
    assert_eq!(check(&a, &decode, 2), 2);
    assert_eq!(check(&a, &decode, 40), 2);
    let wide = Attn {
        window: Some(33),
        ..a.clone()
    };
    let decode = attention_decode_split(&wide.shape(), 16);
    assert_eq!(check(&wide, &decode, 100), 3);
    let one = attention_decode_split(&a.shape(), 64);
    assert_eq!(check(&a, &one, 200), 1);
}

#[test]
fn head_dim_128_mqa_f32_and_f16() {
    for kv in [DType::F32, DType::F16] {
        let a = attn(4, 1, 128, kv);
        let decode = attention_decode_split(&a.shape(), 32);
        assert_eq!(check(&a, &decode, 70), 3);
    }
}

#[test]
fn scratch_holds_every_split_of_the_context() {
    let a = attn(4, 2, 16, DType::F32);
    let decode = attention_decode_split(&a.shape(), 64);
    // 640 positions in splits of 64: 10 partials of (max, sum, 16 values) per head.
    assert_eq!(decode.scratch_bytes, 4 * 10 * 18 * 4);
    assert_eq!(check(&a, &decode, 639), 10);
    let windowed = Attn {
        window: Some(100),
        ..a
    };
    assert_eq!(
        attention_decode_split(&windowed.shape(), 64).scratch_bytes,
        4 * 2 * 18 * 4
    );
}

/// Gemma's head size, with a window and softcap, over several splits.
#[test]
fn head_dim_256_window_softcap() {
    let a = Attn {
        window: Some(40),
        softcap: Some(50.0),
        ..attn(2, 1, 256, DType::F16)
    };
    let decode = attention_decode_split(&a.shape(), 16);
    assert_eq!(check(&a, &decode, 90), 3);
}

/// Head dimensions that are not multiples of 4 load single columns; ones
/// that are load half4/float4 chunks with fewer lanes than columns.
#[test]
fn head_dims_that_are_not_multiples_of_4_or_8() {
    for (d, kv) in [
        (14, DType::F32),
        (6, DType::F16),
        (37, DType::F16),
        (40, DType::F32),
    ] {
        let a = attn(4, 2, d, kv);
        let decode = attention_decode_split(&a.shape(), 16);
        for pos in [0, 15, 40] {
            check(&a, &decode, pos);
        }
    }
}

/// A decode attention over 640 positions in splits of 64 (4:2 heads of 64).
fn plain_decode() -> AttentionDecode {
    attention_decode_split(&attn(4, 2, 64, DType::F16).shape(), 64)
}

#[test]
fn attention_decode_refuses_an_unknown_kv_dtype() {
    assert_param_refused(&plain_decode().pass, "kv_dtype", "bf16".into());
}

#[test]
fn attention_decode_refuses_kv_heads_that_do_not_group_the_queries() {
    let d = plain_decode();
    assert_param_refused(&d.pass, "kv_heads", 3.into());
    assert_param_refused(&d.reduce, "kv_heads", 0.into());
    assert_renders(&with_param(&d.pass, "kv_heads", 1.into()));
}

#[test]
fn attention_decode_refuses_an_empty_head() {
    assert_param_refused(&plain_decode().pass, "head_dim", 0.into());
}

#[test]
fn attention_decode_refuses_an_empty_context() {
    let d = plain_decode();
    let k = with_param(
        &with_param(&d.pass, "context", 0.into()),
        "max_splits",
        0.into(),
    );
    assert_refused(&k, "attention_decode: context = 0");
}

#[test]
fn attention_decode_refuses_an_empty_window() {
    let d = plain_decode();
    assert_param_refused(&d.pass, "window", 0.into());
    assert_renders(&with_param(&d.pass, "window", 1.into()));
}

#[test]
fn attention_decode_refuses_a_zero_softcap() {
    let d = plain_decode();
    assert_param_refused(&d.pass, "softcap", 0.0.into());
    assert_renders(&with_param(&d.pass, "softcap", 50.0.into()));
}

#[test]
fn attention_decode_refuses_lanes_per_key_that_are_not_a_power_of_two() {
    let d = plain_decode();
    assert_param_refused(&d.pass, "lanes_per_key", 3.into());
    assert_param_refused(&d.pass, "lanes_per_key", 64.into());
    assert_renders(&with_param(&d.pass, "lanes_per_key", 32.into()));
}

#[test]
fn attention_decode_refuses_an_empty_split() {
    assert_param_refused(&plain_decode().pass, "split", 0.into());
}

#[test]
fn attention_decode_refuses_too_few_partials_slots() {
    let d = plain_decode();
    // 640 positions in splits of 64: 10 slots per head.
    assert_eq!(d.pass.params["max_splits"], 10);
    assert_param_refused(&d.reduce, "max_splits", 9.into());
    // A window of 100 needs only 2.
    let windowed = with_param(&d.pass, "window", 100.into());
    assert_renders(&with_param(&windowed, "max_splits", 2.into()));
    assert_param_refused(&windowed, "max_splits", 1.into());
}

#[test]
fn attention_decode_refuses_simdgroups_other_than_the_dispatch() {
    let d = plain_decode();
    assert_param_refused(&d.pass, "simdgroups", 2.into());
    let mut reduce = d.reduce.clone();
    reduce.threads = [64, 1, 1];
    assert_refused(
        &reduce,
        "attention_decode: threads = 64 of the reduce stage",
    );
    assert_renders(&d.pass);
    assert_renders(&d.reduce);
}
