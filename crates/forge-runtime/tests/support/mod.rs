//! Shared by the forge-runtime integration tests: a hand-built weights file
//! for the toy model, a project directory around it, and running the
//! command line in-process.
#![allow(dead_code)]

pub mod gguf;
pub mod toy_model;

use std::path::{Path, PathBuf};

use forge_runtime::cli::{ChatInfo, Project, SamplingDefaults, TextInfo};
use forge_runtime::gpu::{Gpu, GpuOptions};
use forge_runtime::weights::WeightsFile;
use forge_runtime::{CompiledModel, Session};

use gguf::{Meta, Tensor};
use toy_model::Toy;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("forge-runtime")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The toy model's weights: `toy.scale` = `scale`, for plan `fingerprint`.
pub fn toy_weights(fingerprint: &str, scale: f32) -> Vec<u8> {
    gguf::gguf(
        &[
            ("general.alignment", Meta::U32(64)),
            ("forge.plan_fingerprint", Meta::Str(fingerprint)),
        ],
        &[Tensor {
            name: "toy.scale",
            dims: &[1],
            type_id: gguf::GGML_F32,
            data: &scale.to_le_bytes(),
        }],
        64,
    )
}

/// A project directory holding the toy's `weights.gguf` (scale 1/8, exact in
/// f32) and, when asked, the llama2 fixture's `tokenizer.json`.
pub fn toy_project(name: &str, has_tokenizer: bool) -> Project {
    let dir = scratch(name);
    std::fs::write(dir.join("weights.gguf"), toy_weights("toy-plan", 0.125)).unwrap();
    if has_tokenizer {
        std::fs::copy(
            repo_root().join("tests/fixtures/llama2/hf/tokenizer.json"),
            dir.join("tokenizer.json"),
        )
        .unwrap();
    }
    Project {
        package: "toy",
        version: "0.0.1",
        dir: dir.to_string_lossy().into_owned().leak(),
        kernels: toy_model::KERNELS,
        weights: toy_model::SPEC,
        // The llama2 fixture's ids (tests/fixtures/manifest.json).
        text: TextInfo {
            has_tokenizer,
            bos_id: Some(1),
            add_bos: true,
            eos_ids: &[toy_model::EOS_ID],
        },
        sampling: SamplingDefaults {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
        },
        chat: ChatInfo {
            template: TOY_CHAT_TEMPLATE,
            fallback: Some("toy"),
            bos_token: Some("<s>"),
            eos_token: Some("</s>"),
        },
    }
}

/// A short template, so conversations fit the toy's context of 24 tokens.
pub const TOY_CHAT_TEMPLATE: &str = "{% for m in messages %}{{ m.role[0] }}:{{ m.content }}|{% endfor %}{% if add_generation_prompt %}a:{% endif %}";

/// A session on the toy model of `project`.
pub fn toy_session(project: &Project) -> Session<Toy> {
    model_session(project)
}

/// A session on model `M` loaded from `project` (the toy or a wrapper around it).
pub fn model_session<M: CompiledModel>(project: &Project) -> Session<M> {
    let file = WeightsFile::open(
        &Path::new(project.dir).join("weights.gguf"),
        &project.weights,
    )
    .unwrap();
    let gpu = Gpu::new(project.kernels, GpuOptions::default()).unwrap();
    Session::new(M::load(gpu, &file).unwrap())
}

/// Runs the command line in-process: (exit code, stdout, stderr).
pub fn run(project: &Project, args: &[&str]) -> (u8, String, String) {
    run_with_input(project, args, "")
}

/// [`run`] with `input` as stdin.
pub fn run_with_input(project: &Project, args: &[&str], input: &str) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once("toy").chain(args.iter().copied());
    let mut input = input.as_bytes();
    let code = forge_runtime::cli::run::<Toy>(project, argv, &mut input, &mut out, &mut err);
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (code, text(out), text(err))
}
