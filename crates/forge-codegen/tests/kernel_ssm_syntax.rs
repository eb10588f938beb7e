//! Every variant of the causal_conv1d (plain and gated), selective_scan, ssd and
//! gated_rms_norm families, and of matvec with a gated norm, renders into
//! one library that passes msl-emu's strict syntax check (address spaces as Metal enforces them, threadgroup
//! memory within 32 KiB), with a unique name per specialisation.

mod kernel_support;

use kernel_support::assert_strict;

use forge_codegen::kernels::causal_conv1d::{causal_conv1d, gated_short_conv};
use forge_codegen::kernels::gated_rms_norm::gated_rms_norm;
use forge_codegen::kernels::matvec::{matvec_gated_norm, Epilogue, GatedNorm};
use forge_codegen::kernels::selective_scan::{selective_scan, selective_scan_normed};
use forge_codegen::kernels::ssd::{ssd_decode, ssd_prefill, SsdShape};
use forge_codegen::KernelInstance;
use forge_ir::DType;

fn instances() -> Vec<KernelInstance> {
    let mut all = Vec::new();
    for kernel in (2..=8).chain([16, 32]) {
        all.push(causal_conv1d(40, kernel, 80, kernel % 2 == 0));
        all.push(gated_short_conv(40, kernel, 120, kernel % 2 == 1));
    }
    all.push(gated_short_conv(1024, 3, 3072, false));
    all.push(causal_conv1d(3072, 4, 6272, true));
    for (channels, d_state, rank) in [(80, 12, 5), (1536, 16, 48), (33, 1, 1), (40, 64, 3)] {
        all.push(selective_scan(channels, d_state, rank, 2 * channels));
        all.push(selective_scan_normed(
            channels,
            d_state,
            rank,
            2 * channels,
            1e-6,
        ));
    }
    for (heads, head_dim, d_state, groups, chunk, limit) in [
        (6, 24, 20, 1, 5, (0.0, f64::INFINITY)),
        (8, 16, 16, 2, 4, (0.0, f64::INFINITY)),
        (24, 64, 128, 1, 256, (0.0, f64::INFINITY)),
        (2, 3, 5, 2, 8, (0.05, 0.4)),
        (128, 64, 128, 8, 256, (0.001, f64::INFINITY)),
    ] {
        let shape = SsdShape {
            heads,
            head_dim,
            d_state,
            groups,
            chunk,
            dt_stride: 2 * heads * head_dim + 2 * groups * d_state + heads,
            dt_limit: limit,
        };
        all.push(ssd_decode(&shape));
        all.push(ssd_prefill(&shape));
    }
    for before in [false, true] {
        all.push(gated_rms_norm(128, 64, 1e-5, 328, before));
        all.push(gated_rms_norm(1536, 1536, 1e-5, 3352, before));
    }
    // Mamba-2's out projection with the gated norm folded in, every dtype.
    for dtype in [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
    ] {
        for (group, before) in [(128, false), (64, true), (32, false)] {
            let norm = GatedNorm {
                eps: 1e-5,
                group,
                norm_before_gate: before,
            };
            all.push(matvec_gated_norm(dtype, 64, 128, Epilogue::Residual, norm));
        }
    }
    all
}

#[test]
fn all_variants_pass_the_strict_check() {
    assert_strict("ssm.metal", &instances());
}
