//! `forge compile MODEL OUT_DIR`: lower, render and write the project.

use std::path::Path;

use forge_codegen::plan::CompileOptions;
use forge_ir::DType;

/// Parses a `--dtype`/`--kv-dtype` value, naming it when unknown.
pub fn parse_dtype(flag: &str, value: Option<&str>) -> Result<Option<DType>, String> {
    value
        .map(|v| DType::parse(v).ok_or_else(|| format!("{flag} {v}: unknown dtype")))
        .transpose()
}

pub fn compile(
    model_path: &Path,
    out: &Path,
    options: &CompileOptions,
    weights: bool,
) -> Result<(), String> {
    options
        .check()
        .map_err(|e| format!("{}: {e}", model_path.display()))?;
    let model = forge_frontend::load_model(model_path).map_err(|e| e.to_string())?;
    if model.tokenizer.is_none() {
        eprintln!(
            "warning: {} has no tokenizer; the project's `generate` will refuse, `logits --tokens` works",
            model_path.display()
        );
    }
    let mut bar = crate::progress::ProgressBar::new("weights");
    let project = forge_codegen::project::write_project(&model, options, out, weights, &mut |p| {
        bar.update(&p)
    })
    .map_err(|e| e.to_string())?;
    bar.finish();
    // Said once, after the progress bar: what is stored in another format than the checkpoint's.
    for note in project.plan.conversions.notes() {
        eprintln!("note: {}: {note}", model_path.display());
    }
    println!(
        "{}: {} kernels, {} weight tensors (plan {}){}",
        out.display(),
        project.plan.kernels.len(),
        project.plan.weights.tensors.len(),
        project.plan.weights.fingerprint(),
        if weights {
            ""
        } else {
            ", no weights.gguf (--no-weights)"
        }
    );
    println!(
        "run it: cargo run --release --manifest-path {}/Cargo.toml -- generate --prompt \"Hello\"",
        out.display()
    );
    Ok(())
}
