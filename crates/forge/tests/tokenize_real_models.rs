//! End-to-end: the generated binary's `tokenize` prints exactly llama.cpp's ids for every
//! committed text, for the two real GGUF models (SmolLM2-135M-Instruct Q4_1, byte-level BPE;
//! Gemma 3 270M Q4_K_M, SentencePiece), compiled with `--no-weights`: tokenizing needs no
//! weights. References: tests/fixtures/llama_tokenizer_reference.json
//! (scripts/make_llama_tokenizer_reference.py). The test command fetches the models
//! (scripts/fetch_smollm2.sh, scripts/fetch_gemma3.sh).

mod generated;
mod support;

use std::path::Path;
use std::process::Command;

use generated::{build, case_dir, compile};
use support::repo_root;

/// One line of comma-separated ids, as `tokenize` prints them.
fn id_line(ids: &serde_json::Value) -> String {
    let ids: Vec<String> = ids
        .as_array()
        .expect("ids")
        .iter()
        .map(|id| id.as_u64().expect("id").to_string())
        .collect();
    ids.join(",") + "\n"
}

/// `binary tokenize --text TEXT [flags]`: stdout, or stderr on failure.
fn tokenize(binary: &Path, text: &str, flags: &[&str]) -> Result<String, String> {
    let out = Command::new(binary)
        .arg("tokenize")
        .arg(format!("--text={text}"))
        .args(flags)
        .output()
        .expect("the generated binary runs");
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

fn check(model: &str) {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/fixtures/llama_tokenizer_reference.json"))
            .unwrap(),
    )
    .unwrap();
    let record = &reference["models"][model];
    let gguf = repo_root().join(record["gguf"].as_str().expect("gguf path"));
    assert!(
        gguf.exists(),
        "{} is missing: run scripts/fetch_smollm2.sh and scripts/fetch_gemma3.sh (the README's test command does)",
        gguf.display()
    );
    let dir = case_dir(&format!("tokenize_{model}"));
    let project = dir.join("project");
    compile(
        &gguf,
        &project,
        &format!("tokenize_{model}"),
        &["--no-weights"],
    );
    assert!(!project.join("weights.gguf").exists());
    assert!(project.join("gguf_vocab.json").is_file());
    let binary = build(&project);
    let mut wrong = Vec::new();
    let cases = record["cases"].as_array().expect("cases");
    for case in cases {
        let text = case["text"].as_str().unwrap();
        for (flags, key) in [
            (&[][..], "ids"),
            (&["--no-bos", "--no-parse-special"][..], "ids_plain"),
        ] {
            let want = id_line(&case[key]);
            match tokenize(&binary, text, flags) {
                Ok(got) if got == want => {}
                Ok(got) => wrong.push(format!("{text:?} {flags:?}: got {got:?}, want {want:?}")),
                Err(stderr) => wrong.push(format!("{text:?} {flags:?}: failed: {stderr}")),
            }
        }
    }
    assert!(cases.len() >= 30, "only {} texts", cases.len());
    assert!(
        wrong.is_empty(),
        "{model}: {} of {} tokenizations differ from llama.cpp:\n{}",
        wrong.len(),
        2 * cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn smollm2_tokenize_matches_llama_cpp() {
    check("smollm2");
}

#[test]
fn gemma3_tokenize_matches_llama_cpp() {
    check("gemma3");
}
