//! The `ssd` family (Mamba-2) under msl-emu against an f64 sequential
//! reference over the whole sequence: the chunked prefill scan and the
//! single-step decode update, one and two groups, head dims 3, 16, 24 and
//! 64, state sizes 5 … 128 (the last shrinks the chunk to fit threadgroup
//! memory), dt limits, dt bound at a column offset of wider rows, and passes
//! whose lengths are not multiples of the chunk, alternating with decode
//! tokens so the state is handed over both ways.

mod kernel_support;

use forge_codegen::kernels::ssd::{ssd_decode, ssd_prefill, state_bytes, SsdShape};
use kernel_support::*;
use msl_emu::{Binding, Buffer};

fn softplus(v: f64) -> f64 {
    if v > 20.0 {
        v
    } else {
        v.exp().ln_1p()
    }
}

struct Inputs {
    /// Per token: x (heads·head_dim), B, C (groups·d_state each).
    xbc: Vec<Vec<f32>>,
    dt: Vec<Vec<f32>>,
    a: Vec<f32>,
    d: Vec<f32>,
    dt_bias: Vec<f32>,
}

fn width(s: &SsdShape) -> usize {
    (s.heads * s.head_dim + 2 * s.groups * s.d_state) as usize
}

fn inputs(s: &SsdShape, tokens: usize, rng: &mut Rng) -> Inputs {
    let h = s.heads as usize;
    Inputs {
        xbc: (0..tokens).map(|_| rng.vec(width(s), 1.0)).collect(),
        dt: (0..tokens).map(|_| rng.vec(h, 1.5)).collect(),
        // Slow decays so the state matters across chunks and passes.
        a: (0..h)
            .map(|_| -(0.05 + 0.5 * rng.uniform().abs()))
            .collect(),
        d: rng.vec(h, 1.0),
        dt_bias: rng.vec(h, 0.5),
    }
}

/// y[t, h, p] = Σ_s C[t, g, s] · S[h, p, s] + D[h] · x[t, h, p] after
/// S[h, p, s] = exp(dt · A[h]) · S[h, p, s] + dt · x[t, h, p] · B[t, g, s].
fn reference(s: &SsdShape, i: &Inputs) -> (Vec<Vec<f64>>, Vec<f64>) {
    let (h, p, n, g) = (
        s.heads as usize,
        s.head_dim as usize,
        s.d_state as usize,
        s.groups as usize,
    );
    let (b_col, c_col) = (h * p, h * p + g * n);
    let mut state = vec![0f64; h * p * n];
    let mut out = Vec::new();
    for t in 0..i.xbc.len() {
        let row = &i.xbc[t];
        let mut y = vec![0f64; h * p];
        for head in 0..h {
            let group = head / (h / g);
            let dt = softplus(i.dt[t][head] as f64 + i.dt_bias[head] as f64)
                .clamp(s.dt_limit.0, s.dt_limit.1);
            let decay = (dt * i.a[head] as f64).exp();
            for ch in 0..p {
                let xv = row[head * p + ch] as f64;
                let mut acc = 0.0;
                for st in 0..n {
                    let v = &mut state[(head * p + ch) * n + st];
                    *v = decay * *v + dt * xv * row[b_col + group * n + st] as f64;
                    acc += row[c_col + group * n + st] as f64 * *v;
                }
                y[head * p + ch] = acc + i.d[head] as f64 * xv;
            }
        }
        out.push(y);
    }
    (out, state)
}

/// Runs the sequence as `passes` (1 = a decode token) and compares every
/// output and the final state with the reference.
fn check(s: SsdShape, passes: &[usize]) {
    let decode = ssd_decode(&s);
    let prefill = ssd_prefill(&s);
    let kernels = Kernels::build(&[decode.clone(), prefill.clone()]);
    let mut rng = Rng::new(s.heads * 101 + s.head_dim * 7 + s.d_state * 3 + s.groups);
    let total: usize = passes.iter().sum();
    let i = inputs(&s, total, &mut rng);
    let (want, want_state) = reference(&s, &i);
    let (ab, db, biasb) = (buffer(&i.a), buffer(&i.d), buffer(&i.dt_bias));
    let state = Buffer::from_slice(&vec![
        0f32;
        state_bytes(s.heads, s.head_dim, s.d_state) as usize
            / 4
    ]);
    let (h, stride) = (s.heads as usize, s.dt_stride as usize);
    // dt sits at the end of wider rows (Mamba-2's in_proj: z, xBC, dt).
    let dt_col = stride - h;
    let mut start = 0;
    for &n in passes {
        let tokens = start..start + n;
        let xbc: Vec<f32> = i.xbc[tokens.clone()].concat();
        let mut dt_rows = rng.vec(n * stride, 5.0);
        for (r, t) in tokens.clone().enumerate() {
            dt_rows[r * stride + dt_col..(r + 1) * stride].copy_from_slice(&i.dt[t]);
        }
        let (xbcb, dtb) = (buffer(&xbc), buffer(&dt_rows));
        let y = Buffer::new(n * (s.heads * s.head_dim) as usize * 4);
        let step = step_bytes(n as u32, start as u32);
        let bindings = [
            bind(0, &xbcb),
            Binding::Buffer {
                index: 1,
                buffer: &dtb,
                offset: dt_col * 4,
            },
            bind(2, &y),
            bind(3, &ab),
            bind(4, &db),
            bind(5, &biasb),
            bind(6, &state),
            step_binding(&step),
        ];
        let kernel = if n == 1 { &decode } else { &prefill };
        kernels.run(kernel, n as u32, start as u32, &bindings);
        let expect: Vec<f64> = want[tokens].iter().flatten().copied().collect();
        // The chunked form sums C·B·x products in another order and decays
        // by exp of differences of f32 cumulative sums (|Σ dt·A| ≤ ~40 over a
        // chunk, so ~4e-6 relative in the exponent): 2e-5 of each output
        // plus 2e-5 of the unit-sized terms it sums.
        let tol: Vec<f64> = expect.iter().map(|v| 2e-5 * v.abs() + 2e-5).collect();
        let what = format!("{} tokens {start}..{}", kernel.name, start + n);
        assert_close(&what, &read_f32(&y), &expect, &tol);
        start += n;
    }
    let tol: Vec<f64> = want_state.iter().map(|v| 2e-5 * v.abs() + 2e-5).collect();
    assert_close(
        &format!("{} state", prefill.name),
        &read_f32(&state),
        &want_state,
        &tol,
    );
}

fn shape(heads: u64, head_dim: u64, d_state: u64, groups: u64, chunk: u64) -> SsdShape {
    SsdShape {
        heads,
        head_dim,
        d_state,
        groups,
        chunk,
        dt_stride: heads * head_dim * 2 + 2 * groups * d_state + heads,
        dt_limit: (0.0, f64::INFINITY),
    }
}

#[test]
fn fixture_shapes_across_chunks_passes_and_decode() {
    // Passes of 13 and 9 tokens: neither a multiple of chunk 4 nor 5.
    let passes = [13, 1, 1, 9, 1];
    // mamba2_odd: 6 heads of 24, one group, 20 states, chunk 5.
    check(shape(6, 24, 20, 1, 5), &passes);
    // mamba2: 8 heads of 16, two groups, 16 states, chunk 4.
    check(shape(8, 16, 16, 2, 4), &passes);
}

#[test]
fn small_heads_odd_states_and_dt_limits() {
    // Head dim 3 and 5 states: one padded tile each.
    let mut s = shape(2, 3, 5, 2, 8);
    s.dt_limit = (0.05, 0.4);
    check(s, &[11, 1, 19, 1]);
    let mut s = shape(4, 8, 16, 1, 64);
    s.dt_limit = (0.1, f64::INFINITY);
    check(s, &[1, 40, 1]);
}

#[test]
fn real_state_size_shrinks_the_chunk() {
    // Mamba-2 130m's heads: 64 channels, 128 states, chunk 256 in the config.
    let s = shape(2, 64, 128, 1, 256);
    let prefill = ssd_prefill(&s);
    let chunk = prefill.params["chunk"].as_u64().unwrap();
    assert!(chunk < 64, "chunk {chunk}");
    check(s, &[chunk as usize + 3, 1, 2]);
}

/// Both stages of 8 heads of 16 in 2 groups, 16 states, chunk 4.
fn both_stages() -> [forge_codegen::KernelInstance; 2] {
    let s = shape(8, 16, 16, 2, 4);
    [ssd_decode(&s), ssd_prefill(&s)]
}

#[test]
fn ssd_refuses_groups_that_do_not_divide_the_heads() {
    for k in both_stages() {
        assert_param_refused(&k, "groups", 3.into());
        assert_param_refused(&k, "groups", 0.into());
    }
}

#[test]
fn ssd_refuses_b_columns_inside_x() {
    // x is 8 · 16 = 128 columns, B and C 2 · 16 each.
    for k in both_stages() {
        assert_eq!(k.params["b_col"], 128);
        assert_param_refused(&k, "b_col", 127.into());
        assert_renders(&k);
    }
}

#[test]
fn ssd_refuses_c_columns_inside_b() {
    for k in both_stages() {
        assert_param_refused(&k, "c_col", 159.into());
    }
}

#[test]
fn ssd_refuses_rows_narrower_than_x_b_and_c() {
    for k in both_stages() {
        assert_param_refused(&k, "xbc_stride", 191.into());
    }
}

#[test]
fn ssd_refuses_a_dt_limit_below_its_minimum() {
    for k in both_stages() {
        let k = with_param(&k, "dt_min", 0.5.into());
        assert_param_refused(&k, "dt_max", 0.25.into());
        assert_renders(&with_param(&k, "dt_max", 0.5.into()));
    }
}

#[test]
fn ssd_decode_refuses_lanes_that_are_not_a_power_of_two() {
    let [decode, _] = both_stages();
    assert_param_refused(&decode, "lanes", 12.into());
}

#[test]
fn ssd_decode_refuses_per_lane_that_misses_states() {
    // 16 lanes of one state; 8 lanes would need 2 each.
    let [decode, _] = both_stages();
    let k = with_param(&decode, "lanes", 8.into());
    assert_refused(&k, "ssd: per_lane = 1");
    assert_renders(&with_param(&k, "per_lane", 2.into()));
}

#[test]
fn ssd_decode_refuses_threads_other_than_the_dispatch() {
    let [decode, _] = both_stages();
    assert_param_refused(&decode, "threads", 64.into());
    // A dispatch of 24 threads with 16 lanes would split a channel.
    let mut ragged = with_param(&decode, "threads", 24.into());
    ragged.threads = [24, 1, 1];
    assert_refused(&ragged, "ssd: threads = 24");
}

#[test]
fn ssd_prefill_refuses_an_empty_chunk() {
    let [_, prefill] = both_stages();
    assert_param_refused(&prefill, "chunk", 0.into());
}

#[test]
fn ssd_prefill_refuses_a_chunk_unlike_the_dispatch() {
    // Chunk 4 is one simdgroup; 9 would need two.
    let [_, prefill] = both_stages();
    assert_param_refused(&prefill, "chunk", 9.into());
    assert_renders(&with_param(&prefill, "chunk", 8.into()));
}

#[test]
fn ssd_prefill_refuses_dt_rows_narrower_than_the_heads() {
    let [_, prefill] = both_stages();
    assert_param_refused(&prefill, "dt_stride", 7.into());
    assert_renders(&with_param(&prefill, "dt_stride", 8.into()));
}
