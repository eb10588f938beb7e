//! `forge export-weights MODEL OUT_FILE [--dtype D]`: writes the weights file
//! a project compiled with the same `--dtype` reads, e.g. to re-create one
//! that was deleted or made for another plan.

use std::path::Path;

use forge_codegen::plan::options::GPU_WEIGHT_DTYPES;
use forge_codegen::plan::CompileOptions;
use forge_ir::DType;

use crate::progress::ProgressBar;

/// The `--dtype` values the GPU kernels read, as users type them.
fn dtype_choices() -> String {
    let names: Vec<String> = GPU_WEIGHT_DTYPES
        .iter()
        .map(|d| d.name().to_lowercase())
        .collect();
    names.join(", ")
}

/// Parses `--dtype`, naming the value when it is not one the GPU kernels read.
pub fn parse_weight_dtype(value: Option<&str>) -> Result<Option<DType>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    match DType::parse(value) {
        Some(d) if GPU_WEIGHT_DTYPES.contains(&d) => Ok(Some(d)),
        Some(_) => Err(format!(
            "--dtype {value} is not a GPU weight format (choose {})",
            dtype_choices()
        )),
        None => Err(format!(
            "--dtype {value}: unknown dtype (choose {})",
            dtype_choices()
        )),
    }
}

pub fn export_weights(model_path: &Path, out: &Path, dtype: Option<&str>) -> Result<(), String> {
    let options = CompileOptions {
        dtype: parse_weight_dtype(dtype)?,
        ..CompileOptions::default()
    };
    let model = forge_frontend::load_model(model_path).map_err(|e| e.to_string())?;
    let plan = forge_codegen::plan::plan_weights(&model, &options)
        .map_err(|e| format!("{}: {e}", model_path.display()))?;
    let mut bar = ProgressBar::new("weights");
    let summary =
        forge_codegen::export::export_weights(&model, &plan, out, &mut |p| bar.update(&p))
            .map_err(|e| e.to_string())?;
    bar.finish();
    println!(
        "{}: {} tensors, {:.1} MB, plan {} ({} copied, {} converted)",
        out.display(),
        summary.tensors,
        summary.file_bytes as f64 / 1e6,
        summary.fingerprint,
        summary.raw_parts,
        summary.converted_parts
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_names_are_checked() {
        assert_eq!(parse_weight_dtype(None), Ok(None));
        assert_eq!(parse_weight_dtype(Some("q8_0")), Ok(Some(DType::Q8_0)));
        assert_eq!(parse_weight_dtype(Some("BF16")), Ok(Some(DType::BF16)));
        let unknown = parse_weight_dtype(Some("q9_9")).unwrap_err();
        assert!(
            unknown.contains("q9_9") && unknown.contains("q4_0"),
            "{unknown}"
        );
        assert_eq!(parse_weight_dtype(Some("q4_k")), Ok(Some(DType::Q4_K)));
        // Q2_K decodes but no kernel reads it.
        let cpu_only = parse_weight_dtype(Some("q2_k")).unwrap_err();
        assert!(cpu_only.contains("q2_k"), "{cpu_only}");
    }
}
