//! The `causal_conv1d` family under msl-emu against an f64 reference over the
//! whole sequence: every kernel width 2 … 8 (and 16, 32 in `wide_kernels`),
//! channel counts that are and are not multiples of 32, x as a column slice
//! of wider rows, with and without bias, and a sequence run as prefill
//! passes and single decode tokens in turn, so the conv state is handed over
//! between them. The gated variant (LFM2's short convolution, out = C ·
//! conv(B · x)) runs the same checks with B, C and x as three column slices
//! of the projection's rows.

mod kernel_support;

use forge_codegen::kernels::causal_conv1d::{causal_conv1d, gated_short_conv, state_bytes};
use kernel_support::*;
use msl_emu::Buffer;

/// Each output is a float32 sum of at most 9 products of unit-sized values
/// and one SiLU: a few float32 ulps, far below 1e-5.
const TOLERANCE: f64 = 1e-5;

fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

/// The gate slices of one token (LFM2's B and C), for the gated variant.
struct Gates {
    b: Vec<f32>,
    c: Vec<f32>,
}

/// The convolved signal: x, or B · x when gated (what the state holds).
fn signal(x: &[Vec<f32>], gates: Option<&[Gates]>) -> Vec<Vec<f64>> {
    x.iter()
        .enumerate()
        .map(|(t, row)| {
            row.iter()
                .enumerate()
                .map(|(c, &v)| gates.map_or(1.0, |g| g[t].b[c] as f64) * v as f64)
                .collect()
        })
        .collect()
}

/// out[t, c] = silu(bias[c] + Σ_k w[c, k] · u[t - (K - 1) + k, c]) with zeros before
/// the sequence; gated: C[t, c] · (…) without the SiLU, u = B · x.
fn reference(
    u: &[Vec<f64>],
    gates: Option<&[Gates]>,
    w: &[f32],
    bias: Option<&[f32]>,
    k: usize,
) -> Vec<Vec<f64>> {
    let channels = w.len() / k;
    (0..u.len())
        .map(|t| {
            (0..channels)
                .map(|c| {
                    let mut acc = bias.map_or(0.0, |b| b[c] as f64);
                    for j in 0..k {
                        if let Some(src) = (t + j).checked_sub(k - 1) {
                            acc += w[c * k + j] as f64 * u[src][c];
                        }
                    }
                    match gates {
                        Some(g) => g[t].c[c] as f64 * acc,
                        None => silu(acc),
                    }
                })
                .collect()
        })
        .collect()
}

fn check(channels: usize, k: usize, x_stride: usize, with_bias: bool, passes: &[usize]) {
    check_variant(channels, k, x_stride, with_bias, false, passes);
}

fn check_gated(channels: usize, k: usize, x_stride: usize, with_bias: bool, passes: &[usize]) {
    check_variant(channels, k, x_stride, with_bias, true, passes);
}

fn check_variant(
    channels: usize,
    k: usize,
    x_stride: usize,
    with_bias: bool,
    gated: bool,
    passes: &[usize],
) {
    let make = if gated {
        gated_short_conv
    } else {
        causal_conv1d
    };
    let instance = make(channels as u64, k as u64, x_stride as u64, with_bias);
    let kernels = Kernels::build(std::slice::from_ref(&instance));
    let mut rng = Rng::new((channels * 31 + k * 7 + x_stride) as u64);
    let total: usize = passes.iter().sum();
    let x: Vec<Vec<f32>> = (0..total).map(|_| rng.vec(channels, 1.0)).collect();
    let gates: Option<Vec<Gates>> = gated.then(|| {
        (0..total)
            .map(|_| Gates {
                b: rng.vec(channels, 1.0),
                c: rng.vec(channels, 1.0),
            })
            .collect()
    });
    let u = signal(&x, gates.as_deref());
    let w = rng.vec(channels * k, 0.7);
    let bias = rng.vec(channels, 0.5);
    let want = reference(
        &u,
        gates.as_deref(),
        &w,
        with_bias.then_some(bias.as_slice()),
        k,
    );
    let (wb, bb) = (buffer(&w), buffer(&bias));
    let state = Buffer::from_slice(&vec![
        0f32;
        state_bytes(channels as u64, k as u64) as usize / 4
    ]);
    let mut start = 0;
    for &n in passes {
        // The pass's rows of the projection: x (and B, C) as column slices,
        // with other columns around them that must not be read.
        let slice_rows = |get: &dyn Fn(usize) -> Vec<f32>, rng: &mut Rng| {
            let mut rows = rng.vec(n * x_stride, 9.0);
            for t in 0..n {
                rows[t * x_stride..t * x_stride + channels].copy_from_slice(&get(start + t));
            }
            buffer(&rows)
        };
        let xb = slice_rows(&|t| x[t].clone(), &mut rng);
        let out = Buffer::new(n * channels * 4);
        let step = step_bytes(n as u32, start as u32);
        let mut bindings = vec![
            bind(0, &xb),
            bind(1, &wb),
            bind(2, &out),
            bind(4, &state),
            step_binding(&step),
        ];
        if with_bias {
            bindings.push(bind(3, &bb));
        }
        let gate_buffers = gates.as_ref().map(|g| {
            (
                slice_rows(&|t| g[t].b.clone(), &mut rng),
                slice_rows(&|t| g[t].c.clone(), &mut rng),
            )
        });
        if let Some((b, c)) = &gate_buffers {
            bindings.extend([bind(5, b), bind(6, c)]);
        }
        kernels.run(&instance, n as u32, start as u32, &bindings);
        let expect: Vec<f64> = want[start..start + n].iter().flatten().copied().collect();
        let what = format!("{} tokens {start}..{}", instance.name, start + n);
        assert_close(
            &what,
            &read_f32(&out),
            &expect,
            &vec![TOLERANCE; expect.len()],
        );
        start += n;
    }
    // The state is the last K - 1 convolved inputs, oldest first.
    let want_state: Vec<f64> = (total + 1 - k..total)
        .flat_map(|t| u[t].iter().copied())
        .collect();
    assert_close(
        &format!("{} state", instance.name),
        &read_f32(&state),
        &want_state,
        // A copy of the input, exactly; gated, one float32 product (half an ulp).
        &vec![if gated { TOLERANCE } else { 0.0 }; want_state.len()],
    );
}

#[test]
fn every_kernel_width_across_prefill_and_decode() {
    for k in 2..=8 {
        // A prefill longer than the window, decode steps, then a short prefill.
        check(40, k, 40, true, &[9, 1, 1, 2, 1]);
        check(80, k, 176, false, &[1, 1, 12, 1]);
    }
}

#[test]
fn wide_kernels() {
    // Widths past any checkpoint's, so the window in private memory is exercised.
    for k in [16, 32] {
        check(40, k, 40, true, &[k + 3, 1, 2]);
        check_gated(40, k, 120, false, &[1, k + 1, 1]);
    }
}

#[test]
fn gated_every_kernel_width_across_prefill_and_decode() {
    for k in 2..=8 {
        // LFM2's layout: B, C and x are thirds of the in_proj rows.
        check_gated(48, k, 144, true, &[9, 1, 1, 2, 1]);
        check_gated(40, k, 120, false, &[1, 1, 12, 1]);
    }
}

#[test]
fn gated_many_channels_span_threadgroups() {
    check_gated(600, 3, 1800, true, &[17, 1, 5]);
}

#[test]
fn many_channels_span_threadgroups() {
    // 600 channels: three threadgroups of 256 threads, the last one partial.
    check(600, 4, 1234, true, &[17, 1, 5]);
}

#[test]
fn causal_conv1d_refuses_rows_narrower_than_the_channels() {
    for k in [
        causal_conv1d(48, 4, 48, true),
        gated_short_conv(48, 3, 48, false),
    ] {
        assert_param_refused(&k, "x_stride", 47.into());
        assert_renders(&k);
    }
}
