//! Every mixture-of-experts kernel variant renders and passes msl-emu's
//! strict syntax check (address spaces, Metal's limits).

mod kernel_support;

use forge_codegen::kernels::matmul::{matmul_experts, ExpertRows};
use forge_codegen::kernels::matvec::{matvec_experts, Epilogue, ExpertMode, Experts};
use forge_codegen::kernels::moe::{moe_combine, moe_router, SharedSlot};
use forge_ir::{Activation, DType};
use kernel_support::*;

#[test]
fn moe_kernels_pass_the_strict_check() {
    let experts = Experts {
        count: 8,
        slots: 2,
        routing_width: 6,
        id_column: 0,
    };
    let rows = ExpertRows {
        out_slots: 3,
        out_slot: 0,
    };
    let mut instances = vec![
        moe_router(8, 64, 2, true, SharedSlot::None),
        moe_router(8, 64, 2, false, SharedSlot::Gated),
        moe_router(60, 66, 4, false, SharedSlot::Ungated),
        moe_combine(64, 3),
        moe_combine(66, 2),
    ];
    for dtype in [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
    ] {
        // K-quant rows are whole 256-value super-blocks.
        let (narrow, wide) = match dtype {
            DType::Q4_K | DType::Q5_K | DType::Q6_K => (256, 512),
            _ => (32, 64),
        };
        let gated = Epilogue::Gated(Activation::Silu);
        instances.push(matvec_experts(
            dtype,
            narrow,
            wide,
            gated,
            experts,
            ExpertMode::Slot,
        ));
        instances.push(matvec_experts(
            dtype,
            64,
            narrow,
            Epilogue::Residual,
            experts,
            ExpertMode::Sum,
        ));
        instances.push(matmul_experts(
            dtype,
            narrow,
            wide,
            gated,
            experts,
            ExpertMode::Slot,
            ExpertRows {
                out_slots: 2,
                out_slot: 0,
            },
            64,
        ));
        instances.push(matmul_experts(
            dtype,
            64,
            narrow,
            Epilogue::None,
            experts,
            ExpertMode::Sum,
            rows,
            64,
        ));
    }
    assert_strict("kernel_moe_syntax", &instances);
    Kernels::build(&instances);
}
