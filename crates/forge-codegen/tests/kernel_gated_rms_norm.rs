//! The `gated_rms_norm` family under msl-emu against an f64 reference:
//! grouped and whole-row norms, the gate before or after the norm, z as a
//! column slice of wider rows, one and several simdgroups.

mod kernel_support;

use forge_codegen::kernels::gated_rms_norm::gated_rms_norm;
use kernel_support::*;
use msl_emu::Buffer;

fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

fn check(width: usize, group: usize, z_stride: usize, norm_before_gate: bool, n: usize) {
    let eps = 1e-5;
    let k = gated_rms_norm(
        width as u64,
        group as u64,
        eps,
        z_stride as u64,
        norm_before_gate,
    );
    let kernels = Kernels::build(std::slice::from_ref(&k));
    let mut rng = Rng::new((width * 5 + group + z_stride + n) as u64);
    let y = rng.vec(n * width, 2.0);
    let z = rng.vec(n * z_stride, 3.0);
    let weight: Vec<f32> = rng.vec(width, 1.0).iter().map(|v| 1.0 + 0.5 * v).collect();
    let (yb, zb, wb) = (buffer(&y), buffer(&z), buffer(&weight));
    let out = Buffer::new(n * width * 4);
    let step = step_bytes(n as u32, 0);
    kernels.run(
        &k,
        n as u32,
        0,
        &[
            bind(0, &yb),
            bind(1, &wb),
            bind(2, &out),
            bind(3, &zb),
            step_binding(&step),
        ],
    );
    let mut want = Vec::with_capacity(n * width);
    for t in 0..n {
        let gated: Vec<f64> = (0..width)
            .map(|i| y[t * width + i] as f64 * silu(z[t * z_stride + i] as f64))
            .collect();
        for g in 0..width / group {
            let cols = g * group..(g + 1) * group;
            let normed: Vec<f64> = cols
                .clone()
                .map(|i| {
                    if norm_before_gate {
                        y[t * width + i] as f64
                    } else {
                        gated[i]
                    }
                })
                .collect();
            let mean = normed.iter().map(|v| v * v).sum::<f64>() / group as f64;
            let scale = 1.0 / (mean + eps as f64).sqrt();
            want.extend(cols.map(|i| gated[i] * scale * weight[i] as f64));
        }
    }
    // A float32 sum of squares of ≤ 576 terms (1e-6 relative), SiLU and three
    // products: a few ulps of each output.
    let tol: Vec<f64> = want.iter().map(|v| 4e-6 * v.abs() + 1e-6).collect();
    let what = format!("{} n={n}", k.name);
    assert_close(&what, &read_f32(&out), &want, &tol);
}

#[test]
fn groups_gate_orders_and_strides() {
    for norm_before_gate in [false, true] {
        for n in [1, 6] {
            // Mamba-2 fixtures: 2 groups of 64, 1 group of 144 (5 simdgroups).
            check(128, 64, 128 + 2 * 32 + 8 + 128, norm_before_gate, n);
            check(144, 144, 144 + 184 + 6 + 144, norm_before_gate, n);
            // Groups that are not multiples of 32, and 576-wide rows.
            check(90, 30, 90, norm_before_gate, n);
            check(576, 576, 1200, norm_before_gate, n);
        }
    }
}

#[test]
fn gated_rms_norm_refuses_a_group_that_does_not_divide_the_width() {
    let k = gated_rms_norm(64, 16, 1e-5, 64, false);
    assert_param_refused(&k, "group", 24.into());
    assert_param_refused(&k, "group", 0.into());
    assert_renders(&with_param(&k, "group", 64.into()));
}

#[test]
fn gated_rms_norm_refuses_z_rows_narrower_than_y() {
    let k = gated_rms_norm(64, 16, 1e-5, 64, false);
    assert_param_refused(&k, "z_stride", 63.into());
    assert_renders(&k);
}

#[test]
fn gated_rms_norm_refuses_threads_other_than_the_dispatch() {
    let k = gated_rms_norm(64, 16, 1e-5, 64, false);
    assert_param_refused(&k, "threads", 64.into());
    assert_renders(&k);
}
