//! The `selective_scan` family (Mamba-1) under msl-emu against an f64
//! sequential reference over the whole sequence: state sizes that take 1,
//! 16 and 32 lanes per channel (one and several states per lane), channel
//! counts that leave simdgroups partly idle, z bound at a column offset of
//! wider rows, and a sequence run as prefill passes and single decode tokens
//! in turn, so the state is handed over between them; and the variant with
//! Jamba's RMSNorms over dt_low, B and C.

mod kernel_support;

use forge_codegen::kernels::selective_scan::{selective_scan, selective_scan_normed};
use kernel_support::*;
use msl_emu::{Binding, Buffer};

fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

fn softplus(v: f64) -> f64 {
    if v > 20.0 {
        v
    } else {
        v.exp().ln_1p()
    }
}

struct Shape {
    channels: usize,
    d_state: usize,
    dt_rank: usize,
    /// Jamba's norms over dt_low, B and C, with this epsilon.
    norm_eps: Option<f32>,
}

struct Inputs {
    x: Vec<Vec<f32>>,
    dbc: Vec<Vec<f32>>,
    z: Vec<Vec<f32>>,
    dt_w: Vec<f32>,
    dt_b: Vec<f32>,
    a: Vec<f32>,
    d: Vec<f32>,
    /// Norm weights of dt_low, B and C (used with `Shape::norm_eps`).
    norms: [Vec<f32>; 3],
}

fn inputs(s: &Shape, tokens: usize, rng: &mut Rng) -> Inputs {
    let row = s.dt_rank + 2 * s.d_state;
    Inputs {
        x: (0..tokens).map(|_| rng.vec(s.channels, 1.0)).collect(),
        dbc: (0..tokens).map(|_| rng.vec(row, 1.0)).collect(),
        z: (0..tokens).map(|_| rng.vec(s.channels, 2.0)).collect(),
        dt_w: rng.vec(s.channels * s.dt_rank, 0.5),
        dt_b: rng.vec(s.channels, 0.5),
        // Slow decays (A in [-0.55, -0.05]) so the state carries far across passes.
        a: (0..s.channels * s.d_state)
            .map(|_| -(0.05 + 0.5 * rng.uniform().abs()))
            .collect(),
        d: rng.vec(s.channels, 1.0),
        norms: [s.dt_rank, s.d_state, s.d_state]
            .map(|n| (0..n).map(|_| 1.0 + 0.5 * rng.uniform()).collect()),
    }
}

/// y[t, c] = (Σ_s C[t, s] · h[c, s] + D[c] · x[t, c]) · silu(z[t, c]) after
/// h[c, s] = exp(dt · A[c, s]) · h[c, s] + dt · B[t, s] · x[t, c].
fn reference(s: &Shape, i: &Inputs) -> (Vec<Vec<f64>>, Vec<f64>) {
    let (n, r) = (s.d_state, s.dt_rank);
    let mut h = vec![0f64; s.channels * n];
    let mut out = Vec::new();
    for t in 0..i.x.len() {
        let mut row: Vec<f64> = i.dbc[t].iter().map(|&v| v as f64).collect();
        if let Some(eps) = s.norm_eps {
            // x · rsqrt(mean(x²) + eps) · w over dt_low, B and C in turn.
            let mut start = 0;
            for (w, len) in i.norms.iter().zip([r, n, n]) {
                let part = &mut row[start..start + len];
                let ms = part.iter().map(|v| v * v).sum::<f64>() / len as f64;
                let scale = 1.0 / (ms + eps as f64).sqrt();
                for (v, &wk) in part.iter_mut().zip(w) {
                    *v *= scale * wk as f64;
                }
                start += len;
            }
        }
        let mut y = Vec::with_capacity(s.channels);
        for c in 0..s.channels {
            let raw = i.dt_b[c] as f64
                + (0..r)
                    .map(|k| i.dt_w[c * r + k] as f64 * row[k])
                    .sum::<f64>();
            let dt = softplus(raw);
            let xv = i.x[t][c] as f64;
            let mut acc = 0.0;
            for st in 0..n {
                let hs = &mut h[c * n + st];
                *hs = (dt * i.a[c * n + st] as f64).exp() * *hs + dt * row[r + st] * xv;
                acc += row[r + n + st] * *hs;
            }
            y.push((acc + i.d[c] as f64 * xv) * silu(i.z[t][c] as f64));
        }
        out.push(y);
    }
    (out, h)
}

fn check(s: Shape, passes: &[usize]) {
    let z_stride = 2 * s.channels;
    let (c, n, r, zs) = (
        s.channels as u64,
        s.d_state as u64,
        s.dt_rank as u64,
        z_stride as u64,
    );
    let k = match s.norm_eps {
        Some(eps) => selective_scan_normed(c, n, r, zs, eps),
        None => selective_scan(c, n, r, zs),
    };
    let kernels = Kernels::build(std::slice::from_ref(&k));
    let mut rng = Rng::new((s.channels * 13 + s.d_state * 5 + s.dt_rank) as u64);
    let total: usize = passes.iter().sum();
    let i = inputs(&s, total, &mut rng);
    let (want, want_state) = reference(&s, &i);
    let weights = [&i.dt_w, &i.dt_b, &i.a, &i.d].map(|v| buffer(v));
    let norms = i.norms.each_ref().map(|v| buffer(v));
    let state = Buffer::from_slice(&vec![0f32; s.channels * s.d_state]);
    // Rows of z as Mamba-1's in_proj leaves them: x, then z; z is bound at column `channels`.
    let mut start = 0;
    for &n in passes {
        let tokens = start..start + n;
        let x: Vec<f32> = i.x[tokens.clone()].concat();
        let dbc: Vec<f32> = i.dbc[tokens.clone()].concat();
        let xz: Vec<f32> = tokens
            .clone()
            .flat_map(|t| i.x[t].iter().chain(&i.z[t]).copied())
            .collect();
        let (xb, dbcb, xzb) = (buffer(&x), buffer(&dbc), buffer(&xz));
        let out = Buffer::new(n * s.channels * 4);
        let step = step_bytes(n as u32, start as u32);
        let mut bindings = vec![
            bind(0, &xb),
            bind(1, &dbcb),
            Binding::Buffer {
                index: 2,
                buffer: &xzb,
                offset: s.channels * 4,
            },
            bind(3, &out),
            bind(4, &weights[0]),
            bind(5, &weights[1]),
            bind(6, &weights[2]),
            bind(8, &weights[3]),
            bind(9, &state),
            step_binding(&step),
        ];
        if s.norm_eps.is_some() {
            bindings.extend([
                bind(10, &norms[0]),
                bind(11, &norms[1]),
                bind(12, &norms[2]),
            ]);
        }
        kernels.run(&k, n as u32, start as u32, &bindings);
        let expect: Vec<f64> = want[tokens].iter().flatten().copied().collect();
        // Each token's state update is an f32 exp, two products and a sum; over
        // ≤ 30 tokens of slow decay the states keep ~1e-6 relative error, and y
        // sums ≤ 64 of them: 1e-5 of the output plus 1e-5 absolute.
        let tol: Vec<f64> = expect.iter().map(|v| 1e-5 * v.abs() + 1e-5).collect();
        let what = format!("{} tokens {start}..{}", k.name, start + n);
        assert_close(&what, &read_f32(&out), &expect, &tol);
        start += n;
    }
    let tol: Vec<f64> = want_state.iter().map(|v| 1e-5 * v.abs() + 1e-5).collect();
    assert_close(
        &format!("{} state", k.name),
        &read_f32(&state),
        &want_state,
        &tol,
    );
}

#[test]
fn states_of_every_lane_layout_across_prefill_and_decode() {
    let passes = [7, 1, 1, 6, 1];
    // mamba_odd: 12 states on 16 lanes, 2 channels per simdgroup.
    check(
        Shape {
            channels: 80,
            d_state: 12,
            dt_rank: 5,
            norm_eps: None,
        },
        &passes,
    );
    // mamba: 16 states, 16 lanes.
    check(
        Shape {
            channels: 128,
            d_state: 16,
            dt_rank: 8,
            norm_eps: None,
        },
        &passes,
    );
    // 20 states on 32 lanes; 64 states, two per lane.
    check(
        Shape {
            channels: 24,
            d_state: 20,
            dt_rank: 4,
            norm_eps: None,
        },
        &passes,
    );
    check(
        Shape {
            channels: 40,
            d_state: 64,
            dt_rank: 3,
            norm_eps: None,
        },
        &passes,
    );
    // One state: a lane per channel, 32 channels per simdgroup, one more in a second.
    check(
        Shape {
            channels: 33,
            d_state: 1,
            dt_rank: 1,
            norm_eps: None,
        },
        &passes,
    );
}

#[test]
fn jamba_norms_over_dt_b_and_c_across_prefill_and_decode() {
    let passes = [7, 1, 1, 6, 1];
    // The jamba fixture: 128 channels of 16 states, dt rank 6, eps 1e-6.
    check(
        Shape {
            channels: 128,
            d_state: 16,
            dt_rank: 6,
            norm_eps: Some(1e-6),
        },
        &passes,
    );
    // 12 states on 16 lanes (the idle lanes add nothing to B's and C's
    // sums); 64 states, two per lane; one state, where B and C normalise to
    // ±1; a large epsilon that is not negligible next to the mean squares.
    for (channels, d_state, dt_rank, eps) in [
        (80, 12, 5, 1e-5),
        (40, 64, 3, 1e-6),
        (33, 1, 1, 1e-6),
        (24, 20, 4, 0.5),
    ] {
        check(
            Shape {
                channels,
                d_state,
                dt_rank,
                norm_eps: Some(eps),
            },
            &passes,
        );
    }
}

#[test]
fn selective_scan_refuses_a_negative_norm_epsilon() {
    let k = selective_scan_normed(40, 16, 4, 80, 1e-6);
    assert_renders(&k);
    assert_param_refused(&k, "norm_eps", (-1.0).into());
}

/// 40 channels of 16 states, dt rank 4, z rows of 80.
fn plain_scan() -> forge_codegen::KernelInstance {
    selective_scan(40, 16, 4, 80)
}

#[test]
fn selective_scan_refuses_lanes_that_are_not_a_power_of_two() {
    let k = plain_scan();
    assert_param_refused(&k, "lanes", 12.into());
    assert_param_refused(&k, "lanes", 64.into());
}

#[test]
fn selective_scan_refuses_per_lane_that_misses_states() {
    // 16 lanes of 1 state each: 8 lanes would need 2.
    let k = with_param(&plain_scan(), "lanes", 8.into());
    assert_refused(&k, "selective_scan: per_lane = 1");
    assert_renders(&with_param(&k, "per_lane", 2.into()));
}

#[test]
fn selective_scan_refuses_an_empty_dt_rank() {
    assert_param_refused(&plain_scan(), "dt_rank", 0.into());
}

#[test]
fn selective_scan_refuses_z_rows_narrower_than_the_channels() {
    let k = plain_scan();
    assert_param_refused(&k, "z_stride", 39.into());
    assert_renders(&with_param(&k, "z_stride", 40.into()));
}

#[test]
fn selective_scan_refuses_simdgroups_other_than_the_dispatch() {
    let k = plain_scan();
    assert_param_refused(&k, "simdgroups", 2.into());
    assert_renders(&k);
}
