//! The `causal_conv1d` family under msl-emu against an f64 reference over the
//! whole sequence: every kernel width 2 … 8, channel counts that are and are
//! not multiples of 32, x as a column slice of wider rows, with and without
//! bias, and a sequence run as prefill passes and single decode tokens in
//! turn, so the conv state is handed over between them.

mod kernel_support;

use forge_codegen::kernels::causal_conv1d::{causal_conv1d, state_bytes};
use kernel_support::*;
use msl_emu::Buffer;

/// Each output is a float32 sum of at most 9 products of unit-sized values
/// and one SiLU: a few float32 ulps, far below 1e-5.
const TOLERANCE: f64 = 1e-5;

fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

/// out[t, c] = silu(bias[c] + Σ_k w[c, k] · x[t - (K - 1) + k, c]), zeros before the sequence.
fn reference(x: &[Vec<f32>], w: &[f32], bias: Option<&[f32]>, k: usize) -> Vec<Vec<f64>> {
    let channels = w.len() / k;
    (0..x.len())
        .map(|t| {
            (0..channels)
                .map(|c| {
                    let mut acc = bias.map_or(0.0, |b| b[c] as f64);
                    for j in 0..k {
                        if let Some(src) = (t + j).checked_sub(k - 1) {
                            acc += w[c * k + j] as f64 * x[src][c] as f64;
                        }
                    }
                    silu(acc)
                })
                .collect()
        })
        .collect()
}

fn check(channels: usize, k: usize, x_stride: usize, with_bias: bool, passes: &[usize]) {
    let instance = causal_conv1d(channels as u64, k as u64, x_stride as u64, with_bias);
    let kernels = Kernels::build(std::slice::from_ref(&instance));
    let mut rng = Rng::new((channels * 31 + k * 7 + x_stride) as u64);
    let total: usize = passes.iter().sum();
    let x: Vec<Vec<f32>> = (0..total).map(|_| rng.vec(channels, 1.0)).collect();
    let w = rng.vec(channels * k, 0.7);
    let bias = rng.vec(channels, 0.5);
    let want = reference(&x, &w, with_bias.then_some(bias.as_slice()), k);
    let (wb, bb) = (buffer(&w), buffer(&bias));
    let state = Buffer::from_slice(&vec![
        0f32;
        state_bytes(channels as u64, k as u64) as usize / 4
    ]);
    let mut start = 0;
    for &n in passes {
        // The pass's x rows: its channels first, then other columns of the projection.
        let mut rows = rng.vec(n * x_stride, 9.0);
        for t in 0..n {
            rows[t * x_stride..t * x_stride + channels].copy_from_slice(&x[start + t]);
        }
        let xb = buffer(&rows);
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
    // The state is the last K - 1 inputs, oldest first.
    let want_state: Vec<f64> = (total + 1 - k..total)
        .flat_map(|t| x[t].iter().map(|&v| v as f64))
        .collect();
    assert_close(
        &format!("{} state", instance.name),
        &read_f32(&state),
        &want_state,
        &vec![0.0; want_state.len()],
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
fn many_channels_span_threadgroups() {
    // 600 channels: three threadgroups of 256 threads, the last one partial.
    check(600, 4, 1234, true, &[17, 1, 5]);
}
