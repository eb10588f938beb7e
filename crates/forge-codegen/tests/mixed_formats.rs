//! Lowering a checkpoint whose matrices differ in format per tensor (as a
//! Q4_K_M GGUF does): every matrix keeps its format, fusion joins only
//! weights of one format, and the rest become separate dispatches — q|k in
//! one format and v in another write their columns of the group's buffer;
//! gate and up in two formats become the gate projection and the up
//! projection multiplying act(gate) in place.

use std::path::PathBuf;

use forge_codegen::plan::{lower, CompileOptions};
use forge_ir::DType;

fn llama3_with(formats: &[(&str, DType)]) -> forge_ir::Model {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join("tests/fixtures/llama3/gguf/llama3.f32.gguf");
    let mut model = forge_frontend::load_model(&path).expect("fixture loads");
    let layers = model.config.layers.len();
    for layer in 0..layers {
        for (kind, dtype) in formats {
            let name = format!("blk.{layer}.{kind}.weight");
            model.tensors.get_mut(&name).expect("fixture tensor").dtype = *dtype;
        }
    }
    model
}

fn kernel_names(plan: &forge_codegen::plan::Plan) -> Vec<String> {
    plan.kernels.iter().map(|k| k.name.clone()).collect()
}

#[test]
fn projections_of_different_formats_are_not_fused() {
    let model = llama3_with(&[
        ("attn_q", DType::Q5_0),
        ("attn_k", DType::Q5_0),
        ("attn_v", DType::Q8_0),
        ("ffn_gate", DType::Q4_1),
        ("ffn_up", DType::Q5_1),
    ]);
    let plan = lower(&model, &CompileOptions::default()).expect("lowers");
    let (hidden, q, kv) = (64, 64, 32);
    let tensors: Vec<(&str, DType)> = plan
        .weights
        .tensors
        .iter()
        .filter(|t| t.name.starts_with("blk.0."))
        .map(|t| (t.name.as_str(), t.dtype))
        .collect();
    for want in [
        ("blk.0.attn_q_attn_k.weight", DType::Q5_0),
        ("blk.0.attn_v.weight", DType::Q8_0),
        ("blk.0.ffn_gate.weight", DType::Q4_1),
        ("blk.0.ffn_up.weight", DType::Q5_1),
    ] {
        assert!(tensors.contains(&want), "{want:?} not planned: {tensors:?}");
    }
    let names = kernel_names(&plan);
    let stride = q + 2 * kv;
    for want in [
        format!("matvec_q5_0_{}x{hidden}_prenorm", q + kv),
        format!("matmul_q5_0_{}x{hidden}_stride{stride}", q + kv),
        format!("matvec_q8_0_{kv}x{hidden}_prenorm"),
        format!("matmul_q8_0_{kv}x{hidden}_stride{stride}"),
        format!("matvec_q4_1_128x{hidden}_prenorm"),
        format!("matvec_q5_1_128x{hidden}_gate_product_silu_prenorm"),
        format!("matmul_q5_1_128x{hidden}_gate_product_silu"),
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(&want)),
            "no {want}: {names:?}"
        );
    }
    // Every matrix is read in its checkpoint's format.
    assert!(
        plan.conversions.is_empty(),
        "{:?}",
        plan.conversions.notes()
    );
}

#[test]
fn one_format_still_fuses() {
    let model = llama3_with(&[
        ("attn_q", DType::Q5_0),
        ("attn_k", DType::Q5_0),
        ("attn_v", DType::Q5_0),
    ]);
    let plan = lower(&model, &CompileOptions::default()).expect("lowers");
    assert!(plan.weights.get("blk.0.attn_qkv.weight").is_some());
    assert!(kernel_names(&plan)
        .iter()
        .any(|n| n.starts_with("matmul_q5_0_128x64") && !n.contains("stride")));
}

#[test]
fn dtype_conversions_are_counted_for_the_note() {
    let model = llama3_with(&[]);
    let options = CompileOptions {
        dtype: Some(DType::Q4_1),
        ..Default::default()
    };
    let plan = lower(&model, &options).expect("lowers");
    let notes = plan.conversions.notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("--dtype re-quantises F32 ("),
        "{notes:?}"
    );
    assert!(notes[0].ends_with("to Q4_1"), "{notes:?}");
}

#[test]
fn experts_whose_gate_and_up_differ_in_format_are_two_dispatches() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join("tests/fixtures/qwen3_moe/gguf/qwen3_moe.f32.gguf");
    let mut model = forge_frontend::load_model(&path).expect("fixture loads");
    let names: Vec<String> = model.tensors.iter().map(|t| t.name.clone()).collect();
    for name in &names {
        let dtype = if name.contains(".ffn_gate.") {
            DType::Q4_1
        } else if name.contains(".ffn_up.") {
            DType::Q5_1
        } else {
            continue;
        };
        model.tensors.get_mut(name).unwrap().dtype = dtype;
    }
    let plan = lower(&model, &CompileOptions::default()).expect("lowers");
    let names = kernel_names(&plan);
    for want in [
        "matvec_q4_1_32x64_slot",
        "matvec_q5_1_32x64_gate_product_silu_slot",
        "matmul_q4_1_32x64_slot",
        "matmul_q5_1_32x64_gate_product_silu_slot",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(want)),
            "no {want}: {names:?}"
        );
    }
    assert!(plan.weights.get("blk.0.ffn_gate_exps.weight").is_some());
    assert!(plan.weights.get("blk.0.ffn_up_exps.weight").is_some());
    assert!(
        plan.conversions.is_empty(),
        "{:?}",
        plan.conversions.notes()
    );
}
