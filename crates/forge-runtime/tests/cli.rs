//! The command line (`forge_runtime::cli`) driven in-process with the toy
//! model of `support/toy_model.rs` on msl-emu: `logits`, `generate` and
//! `bench` end to end, user errors as one line with exit code 1, and the
//! project without a tokenizer.

mod support;

use std::path::Path;

use support::toy_model::{favourite, CONTEXT, EOS_AT, VOCAB};
use support::{repo_root, run, toy_project, toy_weights};

fn read_npy_f32(path: &Path) -> (String, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8(bytes[10..10 + header_len].to_vec()).unwrap();
    let data = bytes[10 + header_len..]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (header, data)
}

/// `error: ...` on one line and exit code 1.
fn assert_user_error(result: (u8, String, String), needle: &str) {
    let (code, _, stderr) = result;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.trim_end().lines().count() == 1
            || stderr.ends_with("(see --help)\n") && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
}

/// The number after `after` in `text`.
fn stat(text: &str, after: &str) -> usize {
    let rest = &text[text
        .find(after)
        .unwrap_or_else(|| panic!("'{after}' in {text}"))
        + after.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// Tokens generated, from the summary line `N tokens; prefill K tokens at ...`.
fn generated(stderr: &str) -> usize {
    let line = stderr
        .lines()
        .find(|l| l.contains(" tokens; prefill "))
        .unwrap_or_else(|| panic!("{stderr}"));
    stat(line, "")
}

/// The llama2 fixture's reference (its tokenizer is the toy project's).
fn reference() -> serde_json::Value {
    let path = repo_root().join("tests/fixtures/llama2/reference/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn reference_prompt() -> String {
    reference()["prompt"]["text"].as_str().unwrap().to_string()
}

#[test]
fn logits_in_both_modes_follow_the_toy_rule_exactly() {
    let project = toy_project("cli-logits", false);
    let dir = Path::new(project.dir);
    // 13 tokens: two prefill passes of the toy's 8-token chunk.
    let list = "5, 17,300,2,383,1,2,3,4,5,6,7,8";
    let tokens: Vec<u32> = list.split(',').map(|t| t.trim().parse().unwrap()).collect();
    for mode in ["prefill", "decode"] {
        let out = dir.join(format!("{mode}.npy"));
        let (code, _, stderr) = run(
            &project,
            &[
                "logits",
                "--tokens",
                list,
                "--mode",
                mode,
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.contains("[13, 384] f32"), "{stderr}");
        let (header, data) = read_npy_f32(&out);
        assert!(header.contains("'shape': (13, 384)"), "{header}");
        for (row, &t) in tokens.iter().enumerate() {
            let f = favourite(t, row);
            for v in 0..VOCAB as u32 {
                // k/8 is exact in f32.
                let want = -(((v + VOCAB as u32 - f) % VOCAB as u32) as f32) * 0.125;
                assert_eq!(
                    data[row * VOCAB + v as usize],
                    want,
                    "{mode} row {row} id {v}"
                );
            }
        }
    }
}

#[test]
fn logits_refuses_bad_lists_files_and_weights_in_one_line() {
    let project = toy_project("cli-logits-errors", false);
    let dir = Path::new(project.dir);
    let out = dir.join("x.npy");
    let out = out.to_str().unwrap();
    assert_user_error(
        run(&project, &["logits", "--tokens", "1,384", "--out", out]),
        "id 384 is out of range",
    );
    assert_user_error(
        run(&project, &["logits", "--tokens", "1,,2", "--out", out]),
        "'' is not a token id",
    );
    let too_many = vec!["1"; CONTEXT + 1].join(",");
    assert_user_error(
        run(&project, &["logits", "--tokens", &too_many, "--out", out]),
        "context holds 24",
    );
    let missing = [
        "logits",
        "--tokens",
        "1",
        "--out",
        out,
        "--weights",
        "/nonexistent/w.gguf",
    ];
    assert_user_error(run(&project, &missing), "/nonexistent/w.gguf: no such file");
    let zeros = dir.join("zeros.gguf");
    std::fs::write(&zeros, [0u8; 16384]).unwrap();
    let args = [
        "logits",
        "--tokens",
        "1",
        "--out",
        out,
        "--weights",
        zeros.to_str().unwrap(),
    ];
    assert_user_error(run(&project, &args), "not a GGUF file");
    let other = dir.join("other.gguf");
    std::fs::write(&other, toy_weights("another-plan", 1.0)).unwrap();
    let args = [
        "logits",
        "--tokens",
        "1",
        "--out",
        out,
        "--weights",
        other.to_str().unwrap(),
    ];
    assert_user_error(
        run(&project, &args),
        "re-create them with `forge export-weights models/toy",
    );
    assert_user_error(
        run(
            &project,
            &["logits", "--tokens", "1", "--out", "/nonexistent/dir/x.npy"],
        ),
        "cannot create",
    );
    assert_user_error(
        run(
            &project,
            &[
                "logits", "--tokens", "1", "--out", out, "--mode", "sideways",
            ],
        ),
        "sideways",
    );
}

#[test]
fn generate_streams_until_eos_and_samples_reproducibly() {
    let project = toy_project("cli-generate", true);
    // The reference prompt encodes to transformers' ids (BOS added), and the
    // toy model emits EOS when the sampled position reaches EOS_AT.
    let prompt = &reference_prompt();
    let prompt_len = reference()["prompt"]["ids"].as_array().unwrap().len();
    let greedy = run(
        &project,
        &["generate", "--prompt", prompt, "--temperature", "0"],
    );
    assert_eq!(greedy.0, 0, "{}", greedy.2);
    assert_eq!(stat(&greedy.2, "prefill "), prompt_len, "{}", greedy.2);
    assert_eq!(
        generated(&greedy.2),
        EOS_AT + 1 - prompt_len,
        "{}",
        greedy.2
    );
    assert!(greedy.1.ends_with('\n'), "{:?}", greedy.1);
    // The candidates path with top-k 1 (and a repeat penalty that cannot move
    // the best logit, 0) chooses the same tokens as the GPU argmax.
    for flags in [
        &["--temperature", "1", "--top-k", "1"][..],
        &["--temperature", "0", "--repeat-penalty", "1.3"],
    ] {
        let mut args = vec!["generate", "--prompt", prompt];
        args.extend_from_slice(flags);
        let sampled = run(&project, &args);
        assert_eq!(
            (sampled.0, &sampled.1),
            (0, &greedy.1),
            "{flags:?}: {}",
            sampled.2
        );
    }
    let seeded = [
        "generate",
        "--prompt",
        prompt,
        "--temperature",
        "3",
        "--top-k",
        "0",
        "--top-p",
        "1",
        "--min-p",
        "0",
        "--seed",
        "9",
    ];
    let (first, second) = (run(&project, &seeded), run(&project, &seeded));
    assert_eq!(first.0, 0, "{}", first.2);
    assert!(first.2.contains("seed 9"), "{}", first.2);
    assert_eq!(first.1, second.1, "same seed, same text");
    let two = run(
        &project,
        &[
            "generate",
            "--prompt",
            prompt,
            "--temperature",
            "0",
            "--max-tokens",
            "2",
        ],
    );
    assert_eq!(generated(&two.2), 2, "{}", two.2);
}

#[test]
fn generate_stops_at_the_context_and_refuses_bad_flags() {
    let project = toy_project("cli-generate-limits", true);
    let prompt = reference_prompt();
    // A longer prompt fills the 24-position context before EOS_AT comes round again.
    let long = format!("{prompt} {prompt}");
    let full = run(
        &project,
        &["generate", "--prompt", &long, "--temperature", "0"],
    );
    assert_eq!(full.0, 0, "{}", full.2);
    let k = stat(&full.2, "prefill ");
    assert!(
        (EOS_AT + 2..=CONTEXT).contains(&k),
        "prompt of {k} tokens: {}",
        full.2
    );
    assert!(
        full.2.contains("stopped: the context of 24 tokens is full"),
        "{}",
        full.2
    );
    assert_eq!(generated(&full.2), CONTEXT + 1 - k, "{}", full.2);
    let longer = format!("{long} {long}");
    assert_user_error(
        run(&project, &["generate", "--prompt", &longer]),
        "context holds 24",
    );
    assert_user_error(
        run(&project, &["generate", "--prompt", "x", "--top-p", "0"]),
        "--top-p",
    );
    assert_user_error(
        run(
            &project,
            &["generate", "--prompt", "x", "--repeat-penalty", "-1"],
        ),
        "--repeat-penalty",
    );
    assert_user_error(run(&project, &["generate"]), "--prompt <PROMPT>");
}

#[test]
fn help_shows_the_projects_name_and_sampling_defaults() {
    let project = toy_project("cli-help", true);
    let (code, out, _) = run(&project, &["--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("toy, compiled by forge") && out.contains("Usage: toy"),
        "{out}"
    );
    let (code, out, _) = run(&project, &["generate", "--help"]);
    assert_eq!(code, 0);
    for default in [
        "[default: 0.8]",
        "[default: 40]",
        "[default: 0.95]",
        "[default: 0.05]",
    ] {
        assert!(out.contains(default), "{default} in {out}");
    }
    let (code, out, _) = run(&project, &["--version"]);
    assert_eq!((code, out.as_str()), (0, "toy 0.0.1\n"));
}

#[test]
fn bench_counts_the_work_per_decode_token() {
    let project = toy_project("cli-bench", false);
    let (code, stdout, stderr) = run(
        &project,
        &["bench", "--prompt-tokens", "4", "--gen-tokens", "3"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("backend: msl-emu") && stdout.contains("prefill: 4 tokens"),
        "{stdout}"
    );
    // One toy dispatch of 384 threads per token; each thread reads its token
    // and the scale (8 bytes) and writes one logit (4 bytes).
    assert!(
        stdout.contains(
            "decode per token: 1.0 dispatches, 384 threads, 3072 bytes read, 1536 bytes written"
        ),
        "{stdout}"
    );
    assert_user_error(
        run(
            &project,
            &["bench", "--prompt-tokens", "20", "--gen-tokens", "5"],
        ),
        "context holds 24",
    );
    assert_user_error(
        run(&project, &["bench", "--prompt-tokens", "0"]),
        "at least 1",
    );
}

#[test]
fn without_a_tokenizer_generate_refuses_and_logits_works() {
    let project = toy_project("cli-no-tokenizer", false);
    assert_user_error(
        run(&project, &["generate", "--prompt", "hi"]),
        "generate needs a tokenizer",
    );
    let out = Path::new(project.dir).join("l.npy");
    let (code, _, stderr) = run(
        &project,
        &["logits", "--tokens", "7", "--out", out.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(read_npy_f32(&out).1.len(), VOCAB);
}

/// `tokenize` prints transformers' ids of the reference prompt (BOS 1 added, as the checkpoint
/// asks) comma-separated on one line, without touching the weights.
#[test]
fn tokenize_prints_the_prompt_ids_without_loading_weights() {
    let project = toy_project("cli-tokenize", true);
    std::fs::remove_file(Path::new(project.dir).join("weights.gguf")).unwrap();
    let ids: Vec<u64> = reference()["prompt"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_u64().unwrap())
        .collect();
    assert_eq!(ids[0], 1, "the reference prompt starts with BOS");
    let line = |ids: &[u64]| {
        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
        ids.join(",") + "\n"
    };
    let prompt = reference_prompt();
    let (code, stdout, stderr) = run(&project, &["tokenize", "--text", &prompt]);
    assert_eq!((code, stdout), (0, line(&ids)), "{stderr}");
    let (code, stdout, stderr) = run(&project, &["tokenize", "--text", &prompt, "--no-bos"]);
    assert_eq!((code, stdout), (0, line(&ids[1..])), "{stderr}");
    // The BOS spelt in the text is a token, unless special tokens are not parsed.
    let spelt = format!("</s>{prompt}");
    let (_, parsed, _) = run(&project, &["tokenize", "--text", &spelt, "--no-bos"]);
    let (_, plain, _) = run(
        &project,
        &[
            "tokenize",
            "--text",
            &spelt,
            "--no-bos",
            "--no-parse-special",
        ],
    );
    assert!(parsed.starts_with("2,"), "{parsed}");
    assert!(
        !plain.starts_with("2,") && plain.len() > parsed.len(),
        "{plain}"
    );
}

#[test]
fn without_a_tokenizer_tokenize_refuses() {
    let project = toy_project("cli-tokenize-none", false);
    assert_user_error(
        run(&project, &["tokenize", "--text", "hi"]),
        "tokenize needs a tokenizer",
    );
}
