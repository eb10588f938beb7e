//! The `matvec` family's gated-norm input (Mamba-2's output norm fused into
//! the out projection) under msl-emu against an f64 reference: every weight
//! dtype, one, two and four groups, the gate before and after the norm, and
//! the plain and residual epilogues.

mod kernel_support;
mod linear_reference;

use forge_codegen::kernels::matvec::{gated_norm_fusable, matvec_gated_norm, Epilogue, GatedNorm};
use forge_ir::DType;
use kernel_support::*;
use linear_reference::*;

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

fn silu(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

/// (rows, cols, group, norm_before_gate, epilogue).
type Case = (u64, u64, u64, bool, Epilogue);

fn cases() -> Vec<Case> {
    vec![
        // mamba2: hidden 64 from 2 groups of 64; mamba2_odd-like: one group.
        (64, 128, 64, false, Epilogue::Residual),
        (72, 160, 160, false, Epilogue::Residual),
        (72, 160, 160, true, Epilogue::None),
        // Four groups, a partial simdgroup of rows, biased.
        (30, 256, 64, false, Epilogue::Bias),
        (30, 256, 64, true, Epilogue::BiasResidual),
    ]
}

fn run_case(kernels: &Kernels, dtype: DType, case: Case, seed: u64) {
    let (rows, cols, group, norm_before_gate, epilogue) = case;
    let eps = 1e-5;
    let norm = GatedNorm {
        eps,
        group,
        norm_before_gate,
    };
    let k = matvec_gated_norm(dtype, rows, cols, epilogue, norm);
    let problem = Problem::random(dtype, 1, rows as usize, cols as usize, epilogue, seed);
    let z = Rng::new(seed + 1).vec(cols as usize, 3.0);
    let (wb, xb, zb) = (
        buffer(&problem.weight_bytes),
        buffer(&problem.x),
        buffer(&z),
    );
    let (bb, nb) = (buffer(&problem.bias), buffer(&problem.norm));
    let planes = problem.plane_buffers();
    let yb = buffer(&problem.y_with_sentinels());
    let mut bindings = vec![
        bind(0, &wb),
        bind(1, &xb),
        bind(2, &yb),
        bind(4, &nb),
        bind(6, &zb),
    ];
    bindings.extend(plane_binds(&planes));
    if epilogue.has_bias() {
        bindings.push(bind(3, &bb));
    }
    kernels.run(&k, 1, 0, &bindings);

    // u = gated input · per-group RMS scale · norm weight; y = W·u (+ epilogue).
    let (cols, group) = (cols as usize, group as usize);
    let gated: Vec<f64> = (0..cols)
        .map(|i| problem.x[i] as f64 * silu(z[i] as f64))
        .collect();
    let u: Vec<f64> = (0..cols)
        .map(|i| {
            let g = i / group * group..(i / group + 1) * group;
            let mean = g
                .map(|j| {
                    let v = if norm_before_gate {
                        problem.x[j] as f64
                    } else {
                        gated[j]
                    };
                    v * v
                })
                .sum::<f64>()
                / group as f64;
            gated[i] / (mean + eps as f64).sqrt() * problem.norm[i] as f64
        })
        .collect();
    let mut want = Vec::new();
    let mut tol = Vec::new();
    for r in 0..rows as usize {
        let terms = (0..cols).map(|j| problem.w[r * cols + j] as f64 * u[j]);
        let (mut v, mag) = terms.fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()));
        if epilogue.has_bias() {
            v += problem.bias[r] as f64;
        }
        if matches!(epilogue, Epilogue::Residual | Epilogue::BiasResidual) {
            v += problem.y0[r] as f64;
        }
        want.push(v);
        // As linear_reference: 2e-6 of Σ|terms| for the f32 sums, plus the
        // SiLU, the group sums of squares and their rsqrt (a few ulps each).
        tol.push(4e-6 * mag + 1e-6 * (v.abs() + 1e-3));
    }
    problem.check(&k.name, &read_f32(&yb), &want, &tol);
}

fn run_cases(dtype: DType, cases: &[Case]) {
    let instances: Vec<_> = cases
        .iter()
        .map(|&(r, c, g, before, e)| {
            let norm = GatedNorm {
                eps: 1e-5,
                group: g,
                norm_before_gate: before,
            };
            matvec_gated_norm(dtype, r, c, e, norm)
        })
        .collect();
    let kernels = Kernels::build(&instances);
    for (i, &case) in cases.iter().enumerate() {
        run_case(&kernels, dtype, case, 500 + i as u64);
    }
}

#[test]
fn gated_norm_in_every_dtype() {
    for dtype in DTYPES {
        run_cases(dtype, &cases());
    }
}

/// K-quant rows are whole 256-value super-blocks: the four-group cases, and
/// two groups of 256 over two super-blocks.
#[test]
fn gated_norm_in_k_quants() {
    let mut cases: Vec<Case> = cases().into_iter().filter(|c| c.1 % 256 == 0).collect();
    cases.push((64, 512, 256, false, Epilogue::Residual));
    for dtype in [DType::Q4_K, DType::Q5_K, DType::Q6_K] {
        run_cases(dtype, &cases);
    }
}

#[test]
fn groups_that_split_a_chunk_do_not_fuse() {
    // Q4_0 lanes load 8 values: groups of 20 would straddle chunks.
    assert!(!gated_norm_fusable(DType::Q4_0, 160, 20));
    assert!(gated_norm_fusable(DType::F32, 160, 20));
    // Nine groups would keep too many partial sums.
    assert!(!gated_norm_fusable(DType::F32, 144, 16));
    // f32 rows that are not float4s load single values: any group fuses.
    assert!(gated_norm_fusable(DType::F32, 150, 75));
}

#[test]
fn gated_norm_groups_must_cover_the_columns() {
    let norm = GatedNorm {
        eps: 1e-5,
        group: 32,
        norm_before_gate: false,
    };
    let k = matvec_gated_norm(DType::F32, 16, 128, Epilogue::None, norm);
    assert_param_refused(&k, "gated_norm.groups", 3.into());
    assert_renders(&k);
}
