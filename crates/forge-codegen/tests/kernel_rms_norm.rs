//! The `rms_norm` family under msl-emu against an f64 reference: whole rows
//! and per-head groups, one and several simdgroups, in place and not.

mod kernel_support;

use forge_codegen::kernels::rms_norm::rms_norm;
use kernel_support::*;
use msl_emu::Buffer;

fn check(kernels: &Kernels, width: usize, group: usize, eps: f32, n: usize, in_place: bool) {
    let k = rms_norm(width as u64, group as u64, eps);
    let mut rng = Rng::new((width * 7 + group * 3 + n) as u64);
    let x = rng.vec(n * width, 2.0);
    let weight: Vec<f32> = rng.vec(group, 1.0).iter().map(|v| 1.0 + 0.5 * v).collect();
    let (xb, wb) = (buffer(&x), buffer(&weight));
    let ob = Buffer::new(n * width * 4);
    let out = if in_place { &xb } else { &ob };
    let step = step_bytes(n as u32, 0);
    kernels.run(
        &k,
        n as u32,
        0,
        &[
            bind(0, &xb),
            bind(1, &wb),
            bind(2, out),
            step_binding(&step),
        ],
    );
    let mut want = Vec::with_capacity(n * width);
    for chunk in x.chunks(group) {
        let mean = chunk.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / group as f64;
        let s = 1.0 / (mean + eps as f64).sqrt();
        want.extend(
            chunk
                .iter()
                .zip(&weight)
                .map(|(&v, &w)| v as f64 * s * w as f64),
        );
    }
    // The f32 sum of squares (≤ 576 terms) is within 1e-6 relative, so is
    // its rsqrt; the two products add two roundings.
    let tol: Vec<f64> = want.iter().map(|v| 2e-6 * v.abs() + 1e-7).collect();
    let name = format!("{} n={n} in_place={in_place}", k.name);
    assert_close(&name, &read_f32(out), &want, &tol);
}

#[test]
fn rms_norm_rows_and_heads() {
    // (width, group): fixture rows, per-head (head_dim 16) over q and k
    // heads, SmolLM2 rows (5 simdgroups), per-head at 64, a non-float4 group.
    let shapes = [
        (64, 64, 1e-5),
        (96, 16, 1e-6),
        (576, 576, 1e-5),
        (576, 64, 1e-6),
        (90, 30, 1e-5),
    ];
    let instances: Vec<_> = shapes.iter().map(|&(w, g, e)| rms_norm(w, g, e)).collect();
    let kernels = Kernels::build(&instances);
    for &(width, group, eps) in &shapes {
        for n in [1, 3, 17] {
            check(&kernels, width as usize, group as usize, eps, n, false);
            check(&kernels, width as usize, group as usize, eps, n, true);
        }
    }
}

#[test]
fn rms_norm_refuses_a_group_that_does_not_divide_the_width() {
    let k = rms_norm(576, 64, 1e-5);
    assert_param_refused(&k, "group", 7.into());
    assert_param_refused(&k, "group", 0.into());
    assert_renders(&with_param(&k, "group", 576.into()));
}

#[test]
fn rms_norm_refuses_threads_other_than_the_dispatch() {
    let k = rms_norm(576, 576, 1e-5);
    assert_param_refused(&k, "threads", 64.into());
    assert_renders(&k);
}
