//! MSL features beyond plain kernels: dynamic threadgroup memory bound at
//! dispatch time through [[threadgroup(0)]], and a templated kernel instantiated
//! under several [[host_name]]s.

mod common;

use common::*;
use msl_emu::{dispatch_threadgroups, Binding, Buffer, FunctionConstants, Size3};

fn transpose_with_tile(edge: u32) {
    let (rows, cols) = (70usize, 45usize);
    let input: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
    let lib = load("transpose_dynamic_tg.metal");
    let pipe = lib
        .pipeline("transpose_f32", &FunctionConstants::default())
        .unwrap();
    let inb = Buffer::from_slice(&input);
    let outb = Buffer::new(rows * cols * 4);
    let params = words(&[Word::U(rows as u32), Word::U(cols as u32)]);
    let grid = Size3::new(
        (cols as u32).div_ceil(edge),
        (rows as u32).div_ceil(edge),
        1,
    );
    let stats = dispatch_threadgroups(
        &pipe,
        grid,
        (edge, edge).into(),
        &[
            buf(0, &inb),
            buf(1, &outb),
            bytes(2, &params),
            // Padded rows of edge + 1 floats, as the kernel's comment requires.
            Binding::Threadgroup {
                index: 0,
                len: (edge * (edge + 1) * 4) as usize,
            },
        ],
    )
    .unwrap();
    assert_eq!(stats.threadgroups, (grid.x * grid.y) as u64);
    assert_eq!(stats.threads, (grid.x * grid.y * edge * edge) as u64);
    let mut want = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            want[c * rows + r] = input[r * cols + c];
        }
    }
    assert_eq!(
        outb.read::<f32>(),
        want,
        "transpose with {edge}x{edge} tiles"
    );
}

#[test]
fn dynamic_threadgroup_memory_16x16_tiles() {
    transpose_with_tile(16);
}

#[test]
fn dynamic_threadgroup_memory_8x8_tiles() {
    // Same pipeline, a different threadgroup memory size chosen at dispatch.
    transpose_with_tile(8);
}

#[test]
fn template_instantiations_are_named_by_host_name() {
    let lib = load("silu_mul_template.metal");
    let mut names = lib.function_names();
    names.sort();
    assert_eq!(names, ["silu_mul_f16", "silu_mul_f32", "silu_mul_f32_n1"]);
}

fn silu_mul_reference(gate: &[f64], up: &[f64]) -> Vec<f64> {
    gate.iter()
        .zip(up)
        .map(|(&g, &u)| g / (1.0 + (-g).exp()) * u)
        .collect()
}

#[test]
fn template_instantiated_for_f32() {
    let n = 1001usize;
    let mut rng = Rng::new(60);
    let gate = rng.vec_f32(n, -6.0, 6.0);
    let up = rng.vec_f32(n, -4.0, 4.0);
    let lib = load("silu_mul_template.metal");
    let want = silu_mul_reference(
        &gate.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &up.iter().map(|&v| v as f64).collect::<Vec<_>>(),
    );
    let n_bytes = (n as u32).to_le_bytes();
    for (name, per_thread) in [("silu_mul_f32", 4usize), ("silu_mul_f32_n1", 1)] {
        let pipe = lib.pipeline(name, &FunctionConstants::default()).unwrap();
        assert_eq!(pipe.name(), name);
        let gb = Buffer::from_slice(&gate);
        let ub = Buffer::from_slice(&up);
        let ob = Buffer::new(n * 4);
        let threads = n.div_ceil(per_thread) as u32;
        let stats = dispatch_threadgroups(
            &pipe,
            threads.div_ceil(64).into(),
            64u32.into(),
            &[buf(0, &gb), buf(1, &ub), buf(2, &ob), bytes(3, &n_bytes)],
        )
        .unwrap();
        assert_eq!(stats.threads, threads.div_ceil(64) as u64 * 64);
        // exp (a few ulp), one add, one divide and one multiply, all relative.
        assert_close(name, &ob.read::<f32>(), &want, 16.0 * F32_U, 0.0);
    }
}

#[test]
fn template_instantiated_for_f16() {
    let n = 1001usize;
    let mut rng = Rng::new(61);
    let gate = to_f16(&rng.vec_f32(n, -6.0, 6.0));
    let up = to_f16(&rng.vec_f32(n, -4.0, 4.0));
    let lib = load("silu_mul_template.metal");
    let pipe = lib
        .pipeline("silu_mul_f16", &FunctionConstants::default())
        .unwrap();
    let gb = Buffer::from_slice(&gate);
    let ub = Buffer::from_slice(&up);
    let ob = Buffer::new(n * 2);
    let n_bytes = (n as u32).to_le_bytes();
    let threads = n.div_ceil(4) as u32;
    dispatch_threadgroups(
        &pipe,
        threads.div_ceil(64).into(),
        64u32.into(),
        &[buf(0, &gb), buf(1, &ub), buf(2, &ob), bytes(3, &n_bytes)],
    )
    .unwrap();
    let got: Vec<f32> = ob.read::<half::f16>().iter().map(|h| h.to_f32()).collect();
    let want = silu_mul_reference(&f16_to_f64(&gate), &f16_to_f64(&up));
    // The result is stored as f16: half an f16 ulp (2^-11 relative, 2^-25 absolute
    // below the normal range) on top of the f32 arithmetic.
    let rel = 2f64.powi(-11) + 16.0 * F32_U;
    assert_close("silu_mul_f16", &got, &want, rel, 2f64.powi(-25));
}
