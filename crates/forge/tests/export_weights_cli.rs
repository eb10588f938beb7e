//! `forge export-weights`: a file the plan of the same `--dtype` accepts, and
//! for every mistake one line naming the culprit, a non-zero exit and no
//! output file.

mod support;

use std::path::Path;

use forge_codegen::plan::CompileOptions;
use forge_frontend::gguf::{GgufFile, GgufValue};
use forge_ir::DType;
use support::{forge, repo_root};

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs a failing export and checks the contract; returns stderr.
fn expect_failure(args: &[&str], dir: &Path, names: &str) -> String {
    let (code, stdout, stderr) = forge(args);
    assert_ne!(code, 0, "forge {args:?} succeeded: {stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.contains(names), "does not name {names}: {stderr}");
    assert!(entries(dir).is_empty(), "left behind: {:?}", entries(dir));
    stderr
}

#[test]
fn mistakes_give_one_line_and_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("weights.gguf");
    let out = out.to_str().unwrap();
    let model = repo_root().join("tests/fixtures/qwen2/hf");
    let model = model.to_str().unwrap();

    let err = expect_failure(
        &["export-weights", model, out, "--dtype", "q9_9"],
        dir.path(),
        "q9_9",
    );
    assert!(err.contains("unknown dtype"), "{err}");
    // A format forge decodes but no kernel reads.
    expect_failure(
        &["export-weights", model, out, "--dtype", "q2_k"],
        dir.path(),
        "q2_k",
    );
    let missing = dir.path().join("no-such-model");
    expect_failure(
        &["export-weights", missing.to_str().unwrap(), out],
        dir.path(),
        missing.to_str().unwrap(),
    );
    let nowhere = dir.path().join("no/such/dir/weights.gguf");
    expect_failure(
        &["export-weights", model, nowhere.to_str().unwrap()],
        dir.path(),
        nowhere.to_str().unwrap(),
    );
}

#[test]
fn export_matches_the_plan_of_the_same_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = repo_root().join("tests/fixtures/qwen2/hf");
    let model = forge_frontend::load_model(&model_path).unwrap();
    for (flag, dtype) in [(Some("q4_0"), Some(DType::Q4_0)), (None, None)] {
        let out = dir.path().join(format!("{flag:?}.gguf"));
        let mut args = vec![
            "export-weights",
            model_path.to_str().unwrap(),
            out.to_str().unwrap(),
        ];
        if let Some(flag) = flag {
            args.extend(["--dtype", flag]);
        }
        let (code, stdout, stderr) = forge(&args);
        assert_eq!(code, 0, "{stderr}");
        // stderr is a pipe here, not a terminal: no progress bar.
        assert_eq!(stderr, "");
        let options = CompileOptions {
            dtype,
            ..CompileOptions::default()
        };
        let plan = forge_codegen::plan::plan_weights(&model, &options).unwrap();
        assert!(stdout.contains(&plan.fingerprint()), "{stdout}");
        let file = GgufFile::open(&out).unwrap();
        let fingerprint = file
            .get("forge.plan_fingerprint")
            .and_then(GgufValue::as_str);
        assert_eq!(fingerprint, Some(plan.fingerprint().as_str()));
        // Q8_0 and Q4_0 tensors are written as an I8 quant plane and an F16 `.scales` plane.
        let planes = |d: DType| matches!(d, DType::Q8_0 | DType::Q4_0);
        let expected: Vec<(String, DType)> = plan
            .tensors
            .iter()
            .flat_map(|t| match planes(t.dtype) {
                true => vec![
                    (t.name.clone(), DType::I8),
                    (format!("{}.scales", t.name), DType::F16),
                ],
                false => vec![(t.name.clone(), t.dtype)],
            })
            .collect();
        let written: Vec<(String, DType)> = file
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.dtype))
            .collect();
        assert_eq!(written, expected);
        if let Some(dtype) = dtype {
            assert!(
                plan.tensors.iter().any(|t| t.dtype == dtype),
                "no {dtype} tensor planned"
            );
        }
    }
}
