//! Golden files: the generated tree of two fixtures, committed under
//! `tests/golden/<case>/` and compared byte for byte. `FORGE_BLESS=1`
//! rewrites them (review the diff and explain it in the commit).
//!
//! Verbatim copies are left out: `forge-runtime/` and `msl-emu/` (the
//! vendored crates, checked against their sources below), `tokenizer.json`
//! (the checkpoint's own file) and `weights.gguf` (binary, covered by the
//! end-to-end tests).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use forge_codegen::plan::CompileOptions;
use forge_ir::DType;

fn golden_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/golden")
        .join(case)
}

fn is_copy(path: &Path) -> bool {
    path.starts_with("forge-runtime")
        || path.starts_with("msl-emu")
        || path == Path::new("tokenizer.json")
}

fn committed_files(dir: &Path, root: &Path, out: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            committed_files(&path, root, out);
        } else {
            out.insert(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}

fn check(case: &str, fixture: &str, options: CompileOptions) {
    // A relative path, as a user would type it, so the rendered hints do not depend on the checkout.
    let source = PathBuf::from("../../tests/fixtures")
        .join(fixture)
        .join("hf");
    let model = forge_frontend::load_model(&source).unwrap();
    let project = forge_codegen::project::render_project(&model, &options).unwrap();
    let dir = golden_dir(case);
    let generated: Vec<_> = project.files.iter().filter(|f| !is_copy(&f.path)).collect();

    if std::env::var_os("FORGE_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        for file in &generated {
            let path = dir.join(&file.path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &file.contents).unwrap();
        }
        return;
    }
    let mut committed = BTreeSet::new();
    committed_files(&dir, &dir, &mut committed);
    let rendered: BTreeSet<PathBuf> = generated.iter().map(|f| f.path.clone()).collect();
    assert_eq!(
        rendered, committed,
        "{case}: the generated file list differs from tests/golden/{case} (FORGE_BLESS=1 regenerates)"
    );
    for file in generated {
        let golden = std::fs::read_to_string(dir.join(&file.path)).unwrap();
        assert!(
            golden == file.contents,
            "{case}: {} differs from its golden copy (FORGE_BLESS=1 regenerates; review the diff)",
            file.path.display()
        );
    }
}

#[test]
fn golden_llama3_f32() {
    check("llama3_f32", "llama3", CompileOptions::default());
}

#[test]
fn golden_qwen2_q8_0() {
    check(
        "qwen2_q8_0",
        "qwen2",
        CompileOptions {
            dtype: Some(DType::Q8_0),
            ..CompileOptions::default()
        },
    );
}

/// A state-space model: conv/scan state, the SSD kernels, and the gated
/// norm folded into the Q4_0 out projection.
#[test]
fn golden_mamba2_q4_0() {
    check(
        "mamba2_q4_0",
        "mamba2",
        CompileOptions {
            dtype: Some(DType::Q4_0),
            ..CompileOptions::default()
        },
    );
}

/// A mixture of experts with a sigmoid-gated shared expert: the GPU
/// router, the expert matvecs and grouped matmuls over Q8_0 planes.
#[test]
fn golden_qwen2_moe_q8_0() {
    check(
        "qwen2_moe_q8_0",
        "qwen2_moe",
        CompileOptions {
            dtype: Some(DType::Q8_0),
            ..CompileOptions::default()
        },
    );
}

/// The vendored runtime and emulator are verbatim copies of their crates
/// (msl-emu's manifest aside, which is rendered standalone), so the golden
/// trees can leave them out.
#[test]
fn vendored_crates_are_the_workspace_crates() {
    let model = forge_frontend::load_model(Path::new("../../tests/fixtures/llama3/hf")).unwrap();
    let project =
        forge_codegen::project::render_project(&model, &CompileOptions::default()).unwrap();
    for krate in ["forge-runtime", "msl-emu"] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate);
        let mut copied = 0;
        for file in project.files.iter().filter(|f| f.path.starts_with(krate)) {
            let rel = file.path.strip_prefix(krate).unwrap();
            if krate == "msl-emu" && rel == Path::new("Cargo.toml") {
                continue;
            }
            let source = std::fs::read_to_string(root.join(rel)).unwrap();
            assert_eq!(
                source,
                file.contents,
                "{krate}/{} is not a verbatim copy",
                rel.display()
            );
            copied += 1;
        }
        assert!(copied > 10, "only {copied} {krate} files were vendored");
    }
}
