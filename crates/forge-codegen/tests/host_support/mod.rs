//! Support for the host-project tests (`host_project.rs`, `host_cli.rs`):
//! fixture models and their `HostContext`, writing generated files as a crate
//! under `target/host-project-tests/<name>`, building it with cargo in
//! `target/generated-projects` (shared with the end-to-end tests, same
//! RUSTFLAGS, so dependencies compile once) and running its binary.
//!
//! The throwaway crates' own sources live beside this file, each marked TEST
//! PROBE or TEST HARNESS: `gpu_probe.rs` (a main driving the device layer)
//! and `harness_model.rs` + `harness_kernels.metal` (a toy model.rs with the
//! model.rs contract, so main.rs can be built and run before a real one).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use forge_codegen::project::host::{GeneratedFile, HostContext, HostPlan};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn fixture(name: &str) -> forge_ir::Model {
    forge_frontend::load_model(&repo_root().join("tests/fixtures").join(name).join("hf"))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub const HARNESS_CONTEXT: u64 = 24;

/// TEST HARNESS: main.rs declares `mod weights;`, which the toy model does not use.
pub const WEIGHTS_STUB: &str = "//! TEST HARNESS: the weights reader is not part of this crate.\n";

pub fn context(model: &forge_ir::Model, has_tokenizer: bool) -> HostContext {
    let plan = HostPlan {
        dtype: "f32".into(),
        kv_dtype: Some("f32".into()),
        context_length: HARNESS_CONTEXT,
        vocab_size: model.config.vocab_size,
    };
    HostContext::new(model, &plan, "A tiny test model.", has_tokenizer)
}

pub fn file<'a>(files: &'a [GeneratedFile], path: &str) -> &'a str {
    &files
        .iter()
        .find(|f| f.path == Path::new(path))
        .unwrap_or_else(|| panic!("{path} not generated"))
        .contents
}

/// Writes `files` under `target/host-project-tests/<name>`, emptied first.
pub fn write_crate(name: &str, files: &[GeneratedFile]) -> PathBuf {
    let dir = repo_root().join("target/host-project-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    for f in files {
        let path = dir.join(&f.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &f.contents).unwrap();
    }
    dir
}

pub fn extra(path: &str, contents: &str) -> GeneratedFile {
    GeneratedFile {
        path: path.into(),
        contents: contents.into(),
    }
}

pub fn cargo(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO"))
        .args(args)
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .env(
            "CARGO_TARGET_DIR",
            repo_root().join("target/generated-projects"),
        )
        .env("RUSTFLAGS", "-D warnings")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?} in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn binary(name: &str) -> PathBuf {
    repo_root()
        .join("target/generated-projects/release")
        .join(name)
}

/// Runs a built binary: (exit code, stdout, stderr).
pub fn run(binary: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary)
        .args(args)
        .output()
        .expect("binary runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// The TEST PROBE main.rs (see gpu_probe.rs).
pub const GPU_PROBE_MAIN: &str = include_str!("gpu_probe.rs");
/// The TEST HARNESS model.rs and its kernels (see harness_model.rs).
pub const HARNESS_MODEL: &str = include_str!("harness_model.rs");
pub const HARNESS_KERNELS: &str = include_str!("harness_kernels.metal");
