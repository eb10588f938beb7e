//! Transformer building blocks: decode attention with online softmax over an f16
//! KV cache, a simdgroup_matrix GEMM, and RoPE specialised by function constants.

mod common;

use common::*;
use msl_emu::{dispatch_threadgroups, Buffer, FunctionConstants, Size3};

const HEAD_DIM: usize = 64;

fn attention_case(seq_len: usize) {
    let (n_heads, n_kv_heads, n_ctx) = (9usize, 3usize, 64usize);
    let scale = 1.0 / (HEAD_DIM as f32).sqrt();
    let mut rng = Rng::new(20 + seq_len as u64);
    let q = rng.vec_f32(n_heads * HEAD_DIM, -1.0, 1.0);
    let per_pos = n_kv_heads * HEAD_DIM;
    // Positions past seq_len hold large values: reading them would wreck the result.
    let fill = |rng: &mut Rng| -> Vec<f32> {
        (0..n_ctx * per_pos)
            .map(|i| {
                if i / per_pos < seq_len {
                    rng.f32_in(-1.0, 1.0)
                } else {
                    3.0e4
                }
            })
            .collect()
    };
    let k16 = to_f16(&fill(&mut rng));
    let v16 = to_f16(&fill(&mut rng));

    let lib = load("attention_decode.metal");
    let pipe = lib
        .pipeline("attention_decode", &FunctionConstants::default())
        .unwrap();
    let qb = Buffer::from_slice(&q);
    let kb = Buffer::from_slice(&k16);
    let vb = Buffer::from_slice(&v16);
    let ob = Buffer::new(n_heads * HEAD_DIM * 4);
    let params = words(&[
        Word::U(n_heads as u32),
        Word::U(n_kv_heads as u32),
        Word::U(seq_len as u32),
        Word::F(scale),
    ]);
    let stats = dispatch_threadgroups(
        &pipe,
        (n_heads as u32).into(),
        128u32.into(),
        &[
            buf(0, &qb),
            buf(1, &kb),
            buf(2, &vb),
            buf(3, &ob),
            bytes(4, &params),
        ],
    )
    .unwrap();
    assert_eq!(stats.threads, n_heads as u64 * 128);

    // f64 reference on the f16-rounded cache: the rounding of K/V to f16 is part of
    // the input, not of the error.
    let k = f16_to_f64(&k16);
    let v = f16_to_f64(&v16);
    let group = n_heads / n_kv_heads;
    let mut want = vec![0.0f64; n_heads * HEAD_DIM];
    let mut tol = vec![0.0f64; n_heads * HEAD_DIM];
    for h in 0..n_heads {
        let kvh = h / group;
        let qh = &q[h * HEAD_DIM..(h + 1) * HEAD_DIM];
        let mut scores = Vec::with_capacity(seq_len);
        let mut score_err: f64 = 0.0;
        for t in 0..seq_len {
            let kt = &k[t * per_pos + kvh * HEAD_DIM..][..HEAD_DIM];
            let terms = qh
                .iter()
                .zip(kt)
                .map(|(&a, &b)| a as f64 * scale as f64 * b);
            let (s, mag) = terms.fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()));
            scores.push(s);
            // Scaling q and the 64-term f32 dot product.
            score_err = score_err.max((HEAD_DIM + 2) as f64 * F32_U * mag);
        }
        let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
        let sum: f64 = w.iter().sum();
        for d in 0..HEAD_DIM {
            let o: f64 = (0..seq_len)
                .map(|t| w[t] * v[t * per_pos + kvh * HEAD_DIM + d])
                .sum::<f64>()
                / sum;
            want[h * HEAD_DIM + d] = o;
            // A score error e changes each weight by a factor within exp(±2e) after
            // normalisation; |v| ≤ 1. The online rescaling and the merge add about
            // a dozen roundings per position.
            tol[h * HEAD_DIM + d] = 4.0 * score_err + (12 * seq_len + 16) as f64 * F32_U;
        }
    }
    assert_within(
        &format!("attention_decode seq_len={seq_len}"),
        &ob.read::<f32>(),
        &want,
        |i| tol[i],
    );
}

#[test]
fn attention_decode_online_softmax_f16_cache() {
    attention_case(37);
}

#[test]
fn attention_decode_fewer_positions_than_simdgroups() {
    // Two positions over four simdgroups: two simdgroups see nothing and must
    // contribute nothing to the merge.
    attention_case(2);
}

#[test]
fn simdgroup_matrix_gemm_matches_reference() {
    let (m, n, k) = (64usize, 96usize, 80usize);
    let mut rng = Rng::new(30);
    let a = rng.vec_f32(m * k, -1.0, 1.0);
    let b = rng.vec_f32(k * n, -1.0, 1.0);
    let lib = load("gemm_simdgroup.metal");
    let pipe = lib
        .pipeline("gemm_f32", &FunctionConstants::default())
        .unwrap();
    let ab = Buffer::from_slice(&a);
    let bb = Buffer::from_slice(&b);
    let cb = Buffer::new(m * n * 4);
    let params = words(&[Word::U(m as u32), Word::U(n as u32), Word::U(k as u32)]);
    let grid = Size3::new((n / 32) as u32, (m / 32) as u32, 1);
    let stats = dispatch_threadgroups(
        &pipe,
        grid,
        128u32.into(),
        &[buf(0, &ab), buf(1, &bb), buf(2, &cb), bytes(3, &params)],
    )
    .unwrap();
    assert_eq!(stats.threadgroups, ((m / 32) * (n / 32)) as u64);

    let mut want = vec![0.0f64; m * n];
    let mut mag = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                let t = a[i * k + p] as f64 * b[p * n + j] as f64;
                want[i * n + j] += t;
                mag[i * n + j] += t.abs();
            }
        }
    }
    // Worst-case bound of a k-term f32 dot product.
    assert_within("gemm_f32", &cb.read::<f32>(), &want, |i| {
        k as f64 * F32_U * mag[i]
    });
}

fn rope_case(neox: bool) {
    let (n_heads, position, theta) = (3usize, 37u32, 10000.0f32);
    let mut rng = Rng::new(40);
    let x = rng.vec_f32(n_heads * HEAD_DIM, -1.0, 1.0);
    let lib = load("rope_function_constants.metal");
    let mut constants = FunctionConstants::default();
    constants.set_u32(0, HEAD_DIM as u32);
    constants.set_f32(1, theta);
    constants.set_bool(2, neox);
    let pipe = lib.pipeline("rope", &constants).unwrap();
    let xb = Buffer::from_slice(&x);
    let pos = position.to_le_bytes();
    dispatch_threadgroups(
        &pipe,
        Size3::new(1, n_heads as u32, 1),
        Size3::new(32, 1, 1),
        &[buf(0, &xb), bytes(1, &pos)],
    )
    .unwrap();

    let half = HEAD_DIM / 2;
    let mut want: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for h in 0..n_heads {
        for p in 0..half {
            let (i0, i1) = if neox {
                (p, p + half)
            } else {
                (2 * p, 2 * p + 1)
            };
            let angle = position as f64 * (theta as f64).powf(-((2 * p) as f64) / HEAD_DIM as f64);
            let (a, b) = (x[h * HEAD_DIM + i0] as f64, x[h * HEAD_DIM + i1] as f64);
            want[h * HEAD_DIM + i0] = a * angle.cos() - b * angle.sin();
            want[h * HEAD_DIM + i1] = a * angle.sin() + b * angle.cos();
        }
    }
    // The f32 angle is off by a few ulp of position*inv_freq (≤ 37 rad), so sin/cos
    // can be off by about 37 * 4u ≈ 1e-5 absolute; values are within ±1.4.
    assert_close(
        &format!("rope neox={neox}"),
        &xb.read::<f32>(),
        &want,
        0.0,
        3e-5,
    );
}

#[test]
fn rope_specialised_by_function_constants_normal_layout() {
    rope_case(false);
}

#[test]
fn rope_specialised_by_function_constants_neox_layout() {
    rope_case(true);
}
