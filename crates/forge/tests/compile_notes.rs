//! `forge compile` says once on stderr what it stores in another format
//! than the checkpoint's, and nothing when every tensor keeps its own.

mod support;

use support::{forge, repo_root};

fn notes(model: &str, flags: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("project");
    let model = repo_root().join("tests/fixtures").join(model);
    let mut args = vec![
        "compile",
        model.to_str().unwrap(),
        out.to_str().unwrap(),
        "--no-weights",
    ];
    args.extend(flags);
    let (code, stdout, stderr) = forge(&args);
    assert_eq!(code, 0, "forge {args:?} failed: {stdout}{stderr}");
    stderr
        .lines()
        .filter(|l| l.starts_with("note: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_requested_dtype_is_said_once_with_the_formats() {
    let notes = notes("llama3/gguf/llama3.f32.gguf", &["--dtype", "q4_1"]);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("llama3.f32.gguf: --dtype re-quantises F32 (")
            && notes[0].ends_with("matrices) to Q4_1"),
        "{notes:?}"
    );
}

#[test]
fn a_file_in_formats_the_kernels_read_compiles_without_a_note() {
    // llama.cpp's Q5_0 mix: Q5_0 matrices and embedding, a Q6_K head, f32 norms.
    assert_eq!(
        notes("llama_k/gguf/llama_k.q5_0.gguf", &[]),
        Vec::<String>::new()
    );
}
