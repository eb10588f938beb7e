//! Every variant of the linear-algebra families (embedding, rms_norm, add,
//! matvec, matmul, argmax, top_candidates) rendered into one library passes
//! msl-emu's strict address-space check, as the Metal compiler would see it.

mod kernel_support;

use kernel_support::assert_strict;

use forge_codegen::kernels::matvec::Epilogue;
use forge_codegen::kernels::{
    add, argmax, embedding, matmul, matvec, rms_norm, top_candidates, KernelInstance,
};
use forge_ir::{Activation, DType};

fn all_variants() -> Vec<KernelInstance> {
    let dtypes = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
    ];
    let epilogues = [
        Epilogue::None,
        Epilogue::Bias,
        Epilogue::Residual,
        Epilogue::BiasResidual,
        Epilogue::Gated(Activation::Silu),
        Epilogue::Gated(Activation::GeluTanh),
        Epilogue::Gated(Activation::Gelu),
        Epilogue::Gated(Activation::Relu),
    ];
    let mut out = vec![
        add::add(64),
        add::add(30),
        rms_norm::rms_norm(576, 576, 1e-5),
        rms_norm::rms_norm(64, 16, 1e-6),
        rms_norm::rms_norm(90, 30, 1e-5),
        argmax::argmax(384),
        argmax::argmax(1001),
    ];
    let top = top_candidates::top_candidates(384, 40);
    out.extend([top.select, top.merge]);
    for dtype in dtypes {
        out.push(embedding::embedding(dtype, 384, 64, None));
        out.push(embedding::embedding(dtype, 384, 64, Some(8.0)));
        for epilogue in epilogues {
            // 66 rows: the partial-simdgroup guard is emitted too.
            out.push(matvec::matvec(dtype, 66, 64, epilogue, None, None));
            out.push(matvec::matvec(
                dtype,
                64,
                64,
                epilogue,
                Some(30.0),
                Some(1e-5),
            ));
            out.push(matmul::matmul(dtype, 64, 64, epilogue, None));
            out.push(matmul::matmul(dtype, 70, 64, epilogue, Some(30.0)));
        }
    }
    // K-quant rows are whole 256-value super-blocks.
    for dtype in [DType::Q4_K, DType::Q5_K, DType::Q6_K] {
        out.push(embedding::embedding(dtype, 384, 256, None));
        out.push(embedding::embedding(dtype, 384, 512, Some(8.0)));
        for epilogue in epilogues {
            out.push(matvec::matvec(dtype, 66, 256, epilogue, None, None));
            out.push(matvec::matvec(
                dtype,
                64,
                512,
                epilogue,
                Some(30.0),
                Some(1e-5),
            ));
            out.push(matmul::matmul(dtype, 70, 256, epilogue, Some(30.0)));
        }
    }
    out
}

#[test]
fn linear_algebra_kernels_pass_the_strict_check() {
    assert_strict("kernels.metal", &all_variants());
}
