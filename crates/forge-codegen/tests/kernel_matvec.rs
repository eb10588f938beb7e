//! The `matvec` family under msl-emu against an f64 Rust reference, for every
//! weight dtype and epilogue, at fixture shapes and one SmolLM2-like shape.

mod kernel_support;
mod linear_reference;

use forge_codegen::kernels::matvec::{matvec, rows_per_simdgroup, Epilogue};
use forge_ir::{Activation, DType};
use kernel_support::*;
use linear_reference::*;
use msl_emu::Buffer;

const DTYPES: [DType; 8] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
];

/// The K-quants, whose rows are whole 256-value super-blocks.
const K_QUANTS: [DType; 3] = [DType::Q4_K, DType::Q5_K, DType::Q6_K];

/// One matvec configuration: (rows, cols, epilogue, softcap, prenorm eps).
type Case = (u64, u64, Epilogue, Option<f32>, Option<f32>);

/// Fixture-model shapes (hidden 64, intermediate 128, vocab 384) with every
/// epilogue, plus row counts that leave a partial simdgroup or threadgroup.
fn fixture_cases() -> Vec<Case> {
    let gated = |a| Epilogue::Gated(a);
    vec![
        (64, 64, Epilogue::None, None, None),
        (192, 64, Epilogue::Bias, None, Some(1e-5)),
        (128, 64, gated(Activation::Silu), None, Some(1e-6)),
        (128, 64, gated(Activation::GeluTanh), None, None),
        (128, 64, gated(Activation::Gelu), None, None),
        (128, 64, gated(Activation::Relu), None, None),
        (64, 128, Epilogue::Residual, None, None),
        (64, 64, Epilogue::BiasResidual, None, None),
        (384, 64, Epilogue::None, None, Some(1e-5)),
        (384, 64, Epilogue::None, Some(30.0), Some(1e-6)),
        (66, 64, Epilogue::Bias, None, None),
        (12, 96, gated(Activation::Silu), None, None),
        (
            72,
            64,
            Epilogue::Activated(Activation::Relu2),
            None,
            Some(1e-5),
        ),
        (128, 64, Epilogue::Activated(Activation::Relu2), None, None),
    ]
}

/// Runs one case on prepared data and checks it against the reference.
fn run_case(kernels: &Kernels, dtype: DType, case: Case, seed: u64) {
    let (rows, cols, epilogue, softcap, eps) = case;
    let k = matvec(dtype, rows, cols, epilogue, softcap, eps);
    let problem = Problem::random(dtype, 1, rows as usize, cols as usize, epilogue, seed);
    let (wb, xb) = (buffer(&problem.weight_bytes), buffer(&problem.x));
    let (bb, nb) = (buffer(&problem.bias), buffer(&problem.norm));
    let planes = problem.plane_buffers();
    // Sentinels past the last row catch stores outside y.
    let yb = buffer(&problem.y_with_sentinels());
    let mut bindings = vec![bind(0, &wb), bind(1, &xb), bind(2, &yb)];
    bindings.extend(plane_binds(&planes));
    if epilogue.has_bias() {
        bindings.push(bind(3, &bb));
    }
    if eps.is_some() {
        bindings.push(bind(4, &nb));
    }
    kernels.run(&k, 1, 0, &bindings);
    let (want, tol) = problem.reference(epilogue, softcap, eps);
    problem.check(&k.name, &read_f32(&yb), &want, &tol);
}

fn check_dtype(dtype: DType) {
    run_cases(dtype, &fixture_cases(), 1000);
}

#[test]
fn matvec_f32() {
    check_dtype(DType::F32);
}

#[test]
fn matvec_f16() {
    check_dtype(DType::F16);
}

#[test]
fn matvec_bf16() {
    check_dtype(DType::BF16);
}

#[test]
fn matvec_q8_0() {
    check_dtype(DType::Q8_0);
}

#[test]
fn matvec_q4_0() {
    check_dtype(DType::Q4_0);
}

#[test]
fn matvec_q4_1() {
    check_dtype(DType::Q4_1);
}

#[test]
fn matvec_q5_0() {
    check_dtype(DType::Q5_0);
}

#[test]
fn matvec_q5_1() {
    check_dtype(DType::Q5_1);
}

/// Block-format rows of 1, 5 and 25 blocks (fewer chunks than lanes, and a
/// last pass of lanes left partial) and row counts that leave partial
/// simdgroups, with every kind of epilogue.
#[test]
fn matvec_block_formats_at_odd_shapes() {
    let cases: [Case; 4] = [
        (37, 32, Epilogue::Bias, None, Some(1e-5)),
        (13, 800, Epilogue::Gated(Activation::Silu), None, None),
        (5, 160, Epilogue::Residual, Some(10.0), None),
        (
            101,
            800,
            Epilogue::Activated(Activation::Relu2),
            None,
            Some(1e-6),
        ),
    ];
    for dtype in [DType::Q4_1, DType::Q5_0, DType::Q5_1] {
        run_cases(dtype, &cases, 6000);
    }
}

/// A SmolLM2-135M-like decode projection: 576 hidden, q8_0, norm fused.
#[test]
fn matvec_smollm2_shape_q8_0_prenorm() {
    let case = (1024, 576, Epilogue::None, None, Some(1e-5));
    let k = matvec(DType::Q8_0, case.0, case.1, case.2, case.3, case.4);
    run_case(&Kernels::build(&[k]), DType::Q8_0, case, 7);
}

/// Every weight byte is loaded exactly once per dispatch, for each dtype
/// (K-quants at 768 columns: whole super-blocks).
#[test]
fn matvec_reads_each_weight_byte_once() {
    let rows = 40u64;
    let cases: Vec<(DType, u64)> = DTYPES
        .iter()
        .map(|&d| (d, 576))
        .chain(K_QUANTS.iter().map(|&d| (d, 768)))
        .collect();
    let instances: Vec<_> = cases
        .iter()
        .map(|&(d, cols)| {
            matvec(
                d,
                rows,
                cols,
                Epilogue::Gated(Activation::Silu),
                None,
                Some(1e-5),
            )
        })
        .collect();
    let kernels = Kernels::build_counting(&instances);
    for (&(dtype, cols), k) in cases.iter().zip(&instances) {
        let epilogue = Epilogue::Gated(Activation::Silu);
        let problem = Problem::random(dtype, 1, rows as usize, cols as usize, epilogue, 3);
        let (wb, xb, nb) = (
            buffer(&problem.weight_bytes),
            buffer(&problem.x),
            buffer(&problem.norm),
        );
        let planes = problem.plane_buffers();
        let yb = Buffer::new(rows as usize * 4);
        let mut bindings = vec![bind(0, &wb), bind(1, &xb), bind(2, &yb), bind(4, &nb)];
        bindings.extend(plane_binds(&planes));
        let stats = kernels.run(k, 1, 0, &bindings);
        let traffic = |index| {
            stats
                .buffers
                .iter()
                .find(|b| b.index == index)
                .unwrap()
                .clone()
        };
        assert_eq!(
            traffic(0).bytes_read,
            problem.weight_bytes.len() as u64,
            "{}: W bytes read",
            k.name
        );
        assert_eq!(traffic(0).bytes_written, 0, "{}", k.name);
        // Each lane loads the plane elements of its chunk: the chunks of a
        // row that share an element (8 of 4 values share a Q8_0 scale, 4
        // of 8 a Q4_0 one) each load it.
        let chunks = cols / k.params["chunk"].as_u64().unwrap();
        for (plane, bytes) in k.params["planes"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&problem.planes)
        {
            let per_element = chunks / plane["per_row"].as_u64().unwrap();
            assert_eq!(
                traffic(plane["buffer"].as_u64().unwrap() as u32).bytes_read,
                per_element * bytes.len() as u64,
                "{}: {} bytes read",
                k.name,
                plane["name"]
            );
        }
        assert_eq!(
            traffic(2).bytes_written,
            rows * 4,
            "{}: y written once per row",
            k.name
        );
        // One vector simd_sum per four packed sums (R gate, R up, Σx²) in
        // each simdgroup that owns rows: nothing else synchronises.
        let r = rows_per_simdgroup(true, true);
        let per_simdgroup = 32 * (2 * r + 1).div_ceil(4);
        assert_eq!(
            stats.sync_points,
            rows.div_ceil(r) * per_simdgroup,
            "{}: sync points",
            k.name
        );
        let (want, tol) = problem.reference(epilogue, None, Some(1e-5));
        problem.check(&k.name, &read_f32(&yb), &want, &tol);
    }
}

/// Widths that are not multiples of 32 (or of 4) in float dtypes: odd
/// widths load one float per lane.
#[test]
fn matvec_any_width_float_dtypes() {
    let cases: [Case; 4] = [
        (80, 80, Epilogue::Bias, None, Some(1e-5)),
        (37, 13, Epilogue::Gated(Activation::Silu), None, Some(1e-6)),
        (5, 150, Epilogue::Residual, Some(10.0), None),
        (101, 7, Epilogue::None, None, None),
    ];
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        run_cases(dtype, &cases, 4000);
    }
}

fn plain() -> forge_codegen::KernelInstance {
    matvec(DType::F32, 64, 128, Epilogue::None, None, None)
}

#[test]
fn matvec_refuses_an_unknown_dtype() {
    assert_param_refused(&plain(), "dtype", "iq4_nl".into());
}

#[test]
fn matvec_refuses_a_chunk_its_loads_are_not_written_for() {
    assert_param_refused(&plain(), "chunk", 1.into());
    let q4 = matvec(DType::Q4_0, 64, 128, Epilogue::None, None, None);
    assert_param_refused(&q4, "chunk", 4.into());
    assert_renders(&q4);
}

#[test]
fn matvec_refuses_an_unknown_epilogue() {
    assert_param_refused(&plain(), "epilogue", "bogus".into());
}

#[test]
fn matvec_refuses_a_zero_softcap() {
    assert_param_refused(&plain(), "softcap", 0.0.into());
    // c·tanh(y/c) is odd in c: a negative cap computes the same values.
    assert_renders(&with_param(&plain(), "softcap", (-30.0).into()));
}

#[test]
fn matvec_refuses_simdgroups_other_than_the_dispatch() {
    assert_param_refused(&plain(), "simdgroups", 3.into());
    assert_renders(&plain());
}

#[test]
fn matvec_refuses_more_rows_per_simdgroup_than_lanes() {
    let k = plain();
    assert_param_refused(&k, "rows_per_simdgroup", 33.into());
    assert_param_refused(&k, "rows_per_simdgroup", 0.into());
    assert_renders(&with_param(&k, "rows_per_simdgroup", 32.into()));
}

/// Runs `cases` of `dtype` from one library, seeded from `seed`.
fn run_cases(dtype: DType, cases: &[Case], seed: u64) {
    let instances: Vec<_> = cases
        .iter()
        .map(|&(r, c, e, s, eps)| matvec(dtype, r, c, e, s, eps))
        .collect();
    let kernels = Kernels::build(&instances);
    for (i, &case) in cases.iter().enumerate() {
        run_case(&kernels, dtype, case, seed + i as u64);
    }
}

/// K-quants: rows of 1, 2 and 3 whole 256-value super-blocks (a
/// simdgroup's lanes take one super-block per pass), every kind of
/// epilogue, and row counts that leave partial simdgroups and threadgroups.
fn k_quant_cases() -> Vec<Case> {
    let gated = |a| Epilogue::Gated(a);
    vec![
        (64, 256, Epilogue::None, None, None),
        (37, 256, Epilogue::Bias, None, Some(1e-5)),
        (13, 512, gated(Activation::Silu), None, None),
        (12, 768, gated(Activation::GeluTanh), None, Some(1e-6)),
        (5, 256, Epilogue::Residual, Some(10.0), None),
        (66, 512, Epilogue::BiasResidual, None, None),
        (
            101,
            768,
            Epilogue::Activated(Activation::Relu2),
            None,
            Some(1e-6),
        ),
        (384, 256, Epilogue::None, Some(30.0), Some(1e-5)),
    ]
}

#[test]
fn matvec_q4_k() {
    run_cases(DType::Q4_K, &k_quant_cases(), 8000);
}

#[test]
fn matvec_q5_k() {
    run_cases(DType::Q5_K, &k_quant_cases(), 8100);
}

#[test]
fn matvec_q6_k() {
    run_cases(DType::Q6_K, &k_quant_cases(), 8200);
}

#[test]
fn matvec_refuses_k_quant_rows_that_are_not_whole_super_blocks() {
    let k = matvec(DType::Q4_K, 64, 256, Epilogue::None, None, None);
    assert_renders(&k);
    assert_refused(
        &with_param(&k, "cols", 288.into()),
        "matvec: q4_k rows of 288 values are not whole 256-value super-blocks",
    );
    assert_param_refused(&k, "chunk", 4.into());
}

/// The up projection of a gate|up pair whose formats differ: y holds the
/// gate projection and becomes act(y)·(W·x), in every format and for each
/// activation, with a prenorm and at a partial simdgroup.
#[test]
fn matvec_gate_product() {
    let cases: Vec<Case> = [
        Activation::Silu,
        Activation::GeluTanh,
        Activation::Gelu,
        Activation::Relu,
    ]
    .into_iter()
    .map(|a| (70, 64, Epilogue::GateProduct(a), None, Some(1e-5)))
    .collect();
    for dtype in DTYPES {
        run_cases(dtype, &cases, 9000);
    }
}
