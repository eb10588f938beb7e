//! The `matmul` family (simdgroup matrices) under msl-emu against an f64
//! Rust reference, for every weight dtype and epilogue, at token counts that
//! fill, split and leave partial 32-token tiles, and row counts that leave
//! partial 64-row tiles.

mod kernel_support;
mod linear_reference;

use forge_codegen::kernels::matmul::{matmul, matmul_into_columns};
use forge_codegen::kernels::matvec::Epilogue;
use forge_ir::{Activation, DType};
use kernel_support::*;
use linear_reference::*;

/// Token counts: one, a few, a partial second tile, and two whole tiles.
const TOKENS: [usize; 4] = [1, 3, 40, 64];

/// One configuration: (rows, cols, epilogue, softcap).
type Case = (u64, u64, Epilogue, Option<f32>);

/// Fixture-model shapes with every epilogue, plus row counts that leave a
/// partial 64-row tile.
fn fixture_cases() -> Vec<Case> {
    let gated = |a| Epilogue::Gated(a);
    vec![
        (64, 64, Epilogue::None, None),
        (192, 64, Epilogue::Bias, None),
        (128, 64, gated(Activation::Silu), None),
        (128, 64, gated(Activation::GeluTanh), None),
        (128, 64, gated(Activation::Gelu), None),
        (128, 64, gated(Activation::Relu), None),
        (64, 128, Epilogue::Residual, None),
        (64, 64, Epilogue::BiasResidual, None),
        (384, 64, Epilogue::None, Some(30.0)),
        (70, 96, Epilogue::Bias, None),
        (12, 64, gated(Activation::Silu), None),
        (72, 96, Epilogue::Activated(Activation::Relu2), None),
        (128, 64, Epilogue::Activated(Activation::Relu2), None),
    ]
}

fn run_case(kernels: &Kernels, dtype: DType, case: Case, n: usize, seed: u64) {
    let (rows, cols, epilogue, softcap) = case;
    let k = matmul(dtype, rows, cols, epilogue, softcap);
    let problem = Problem::random(dtype, n, rows as usize, cols as usize, epilogue, seed);
    let (wb, xb, bb) = (
        buffer(&problem.weight_bytes),
        buffer(&problem.x),
        buffer(&problem.bias),
    );
    let planes = problem.plane_buffers();
    // Sentinels past the last token's row catch stores outside y.
    let yb = buffer(&problem.y_with_sentinels());
    let step = step_bytes(n as u32, 5);
    let mut bindings = vec![
        bind(0, &wb),
        bind(1, &xb),
        bind(2, &yb),
        step_binding(&step),
    ];
    if epilogue.has_bias() {
        bindings.push(bind(3, &bb));
    }
    bindings.extend(plane_binds(&planes));
    kernels.run(&k, n as u32, 5, &bindings);
    let (want, tol) = problem.reference(epilogue, softcap, None);
    problem.check(&format!("{} n={n}", k.name), &read_f32(&yb), &want, &tol);
}

fn check_dtype(dtype: DType) {
    let cases = fixture_cases();
    let instances: Vec<_> = cases
        .iter()
        .map(|&(r, c, e, s)| matmul(dtype, r, c, e, s))
        .collect();
    let kernels = Kernels::build(&instances);
    for (i, &case) in cases.iter().enumerate() {
        for n in TOKENS {
            run_case(&kernels, dtype, case, n, 2000 + 10 * i as u64 + n as u64);
        }
    }
}

#[test]
fn matmul_f32() {
    check_dtype(DType::F32);
}

#[test]
fn matmul_f16() {
    check_dtype(DType::F16);
}

#[test]
fn matmul_bf16() {
    check_dtype(DType::BF16);
}

#[test]
fn matmul_q8_0() {
    check_dtype(DType::Q8_0);
}

#[test]
fn matmul_q4_0() {
    check_dtype(DType::Q4_0);
}

#[test]
fn matmul_q4_1() {
    check_dtype(DType::Q4_1);
}

#[test]
fn matmul_q5_0() {
    check_dtype(DType::Q5_0);
}

#[test]
fn matmul_q5_1() {
    check_dtype(DType::Q5_1);
}

/// Block-format rows of 1 and 25 blocks (a step of fewer lanes than
/// chunks, and a last 32-column step that is a block of its own), row
/// counts that leave partial tiles, and token counts that split a tile.
#[test]
fn matmul_block_formats_at_odd_shapes() {
    let cases: [Case; 3] = [
        (37, 32, Epilogue::Bias, None),
        (70, 800, Epilogue::Gated(Activation::Silu), None),
        (129, 160, Epilogue::Residual, Some(10.0)),
    ];
    for dtype in [DType::Q4_1, DType::Q5_0, DType::Q5_1] {
        run_cases_at_1_and_33_tokens(dtype, &cases, 5000);
    }
}

/// A SmolLM2-135M-like prefill projection: 576 hidden, q8_0, gated MLP.
#[test]
fn matmul_smollm2_shape_q8_0_gated() {
    let case = (1536, 576, Epilogue::Gated(Activation::Silu), None);
    let k = matmul(DType::Q8_0, case.0, case.1, case.2, case.3);
    run_case(&Kernels::build(&[k]), DType::Q8_0, case, 17, 9);
}

/// Widths that are not multiples of 32 (or of 4) in float dtypes: the last
/// 32-column step is partial, odd widths load single floats.
#[test]
fn matmul_any_width_float_dtypes() {
    let cases: [Case; 4] = [
        (80, 80, Epilogue::Bias, None),
        (37, 13, Epilogue::Gated(Activation::Silu), None),
        (5, 150, Epilogue::Residual, Some(10.0)),
        (101, 7, Epilogue::None, None),
    ];
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        run_cases_at_1_and_33_tokens(dtype, &cases, 3000);
    }
}

/// Runs `cases` of `dtype` from one library at 1 and 33 tokens (a partial
/// second tile), seeded from `seed`.
fn run_cases_at_1_and_33_tokens(dtype: DType, cases: &[Case], seed: u64) {
    let instances: Vec<_> = cases
        .iter()
        .map(|&(r, c, e, s)| matmul(dtype, r, c, e, s))
        .collect();
    let kernels = Kernels::build(&instances);
    for (i, &case) in cases.iter().enumerate() {
        for n in [1, 33] {
            run_case(&kernels, dtype, case, n, seed + 10 * i as u64 + n as u64);
        }
    }
}

fn plain() -> forge_codegen::KernelInstance {
    matmul(DType::F32, 64, 128, Epilogue::None, None)
}

#[test]
fn matmul_refuses_an_unknown_dtype() {
    assert_param_refused(&plain(), "dtype", "iq4_nl".into());
}

#[test]
fn matmul_refuses_a_chunk_its_loads_are_not_written_for() {
    assert_param_refused(&plain(), "chunk", 8.into());
    let odd = matmul(DType::BF16, 64, 130, Epilogue::None, None);
    assert_param_refused(&odd, "chunk", 4.into());
    assert_renders(&odd);
}

#[test]
fn matmul_refuses_an_unknown_epilogue() {
    assert_param_refused(&plain(), "epilogue", "bogus".into());
}

#[test]
fn matmul_refuses_a_zero_softcap() {
    assert_param_refused(&plain(), "softcap", 0.0.into());
    assert_renders(&with_param(&plain(), "softcap", 30.0.into()));
}

#[test]
fn matmul_refuses_a_dispatch_other_than_128_threads() {
    let mut k = plain();
    k.threads = [64, 1, 1];
    assert_refused(&k, "matmul: threads = 128 must equal the 64 threads");
    assert_renders(&plain());
}

/// K-quants: rows of 1, 2 and 3 whole 256-value super-blocks (eight
/// 32-column steps each), every kind of epilogue, row counts that leave
/// partial 64-row tiles, one token and a tile and a token.
#[test]
fn matmul_k_quants() {
    let gated = |a| Epilogue::Gated(a);
    let cases: [Case; 5] = [
        (64, 256, Epilogue::None, None),
        (70, 512, gated(Activation::Silu), None),
        (129, 256, Epilogue::Residual, Some(10.0)),
        (37, 768, Epilogue::BiasResidual, None),
        (72, 256, Epilogue::Activated(Activation::Relu2), None),
    ];
    for (d, dtype) in [DType::Q4_K, DType::Q5_K, DType::Q6_K]
        .into_iter()
        .enumerate()
    {
        run_cases_at_1_and_33_tokens(dtype, &cases, 7000 + 1000 * d as u64);
    }
}

/// The up projection of a gate|up pair whose formats differ (y holds the
/// gate projection, y = act(y)·(W·x)), and a projection writing its
/// columns of wider rows (one run of a Q|K|V group whose formats differ).
#[test]
fn matmul_gate_product_and_column_runs() {
    for dtype in [DType::F16, DType::Q8_0, DType::Q5_0] {
        let gp = (70, 64, Epilogue::GateProduct(Activation::Silu), None);
        let k = matmul(dtype, gp.0, gp.1, gp.2, gp.3);
        let kernels = Kernels::build(std::slice::from_ref(&k));
        for n in [1, 40] {
            run_case(&kernels, dtype, gp, n, 9100 + n as u64);
        }
        // 48 outputs at columns 16.. of rows of 96: the other columns keep their values.
        let (rows, cols, stride, column) = (48usize, 64usize, 96usize, 16usize);
        let k = matmul_into_columns(
            dtype,
            rows as u64,
            cols as u64,
            Epilogue::None,
            stride as u64,
        );
        let kernels = Kernels::build(std::slice::from_ref(&k));
        let n = 40;
        let problem = Problem::random(dtype, n, rows, cols, Epilogue::None, 9200);
        let (wb, xb) = (buffer(&problem.weight_bytes), buffer(&problem.x));
        let planes = problem.plane_buffers();
        let before: Vec<f32> = (0..n * stride + SENTINEL_COUNT).map(|i| i as f32).collect();
        let yb = buffer(&before);
        let step = step_bytes(n as u32, 0);
        let mut bindings = vec![
            bind(0, &wb),
            bind(1, &xb),
            msl_emu::Binding::Buffer {
                index: 2,
                buffer: &yb,
                offset: 4 * column,
            },
            step_binding(&step),
        ];
        bindings.extend(plane_binds(&planes));
        kernels.run(&k, n as u32, 0, &bindings);
        let got = read_f32(&yb);
        let (want, tol) = problem.reference(Epilogue::None, None, None);
        for t in 0..n {
            for c in 0..stride {
                let at = t * stride + c;
                if (column..column + rows).contains(&c) {
                    let i = t * rows + c - column;
                    let err = (got[at] as f64 - want[i]).abs();
                    assert!(
                        err <= tol[i],
                        "{} t={t} c={c}: {} vs {}",
                        k.name,
                        got[at],
                        want[i]
                    );
                } else {
                    assert_eq!(got[at], before[at], "{} t={t} c={c} was written", k.name);
                }
            }
        }
        assert_eq!(
            got[n * stride..],
            before[n * stride..],
            "{}: past the rows",
            k.name
        );
    }
}

/// Extra floats past the strided output.
const SENTINEL_COUNT: usize = 8;
