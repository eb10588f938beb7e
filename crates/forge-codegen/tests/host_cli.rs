//! The generated command line (`src/main.rs` with `sampler`, `text` and
//! `npy`), built with the TEST HARNESS toy model (see `host_support`): its
//! own unit tests, `logits`, `generate` and `bench` end to end, user errors
//! as one line with exit code 1, the build without a tokenizer, and the
//! macOS type-check.

mod host_support;

use std::path::{Path, PathBuf};

use forge_codegen::project::host::host_files;
use host_support::*;

/// Every generated host file with the toy model (TEST HARNESS) as model.rs.
fn harness(name: &str, has_tokenizer: bool) -> PathBuf {
    let model = fixture("llama2");
    let mut ctx = context(&model, has_tokenizer);
    ctx.package_name = name.into();
    let mut files = host_files(&ctx).unwrap();
    files.push(extra("src/model.rs", HARNESS_MODEL));
    files.push(extra("src/weights.rs", WEIGHTS_STUB));
    files.push(extra("shaders/kernels.metal", HARNESS_KERNELS));
    if has_tokenizer {
        let json =
            std::fs::read_to_string(repo_root().join("tests/fixtures/llama2/hf/tokenizer.json"))
                .unwrap();
        files.push(extra("tokenizer.json", &json));
    }
    let dir = write_crate(name, &files);
    let mut weights = b"TOY1".to_vec();
    weights.extend_from_slice(&0.125f32.to_le_bytes());
    weights.resize(16384, 0);
    std::fs::write(dir.join("weights.gguf"), weights).unwrap();
    dir
}

/// The toy model's favourite next token (see harness_model.rs).
fn toy_favourite(token: u32, position: usize) -> u32 {
    if position == 16 {
        2
    } else {
        (3 * token + position as u32) % 384
    }
}

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
fn assert_user_error(result: (i32, String, String), needle: &str) {
    let (code, _, stderr) = result;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.trim_end().lines().count() == 1,
        "{stderr}"
    );
    assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
}

/// The number after `after` in `stderr`.
fn stat(stderr: &str, after: &str) -> usize {
    let rest = &stderr[stderr
        .find(after)
        .unwrap_or_else(|| panic!("'{after}' in {stderr}"))
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

#[test]
fn generated_main_runs_logits_generate_and_bench_and_type_checks_for_macos() {
    let dir = harness("host-cli-harness", true);
    cargo(&dir, &["build", "--release", "--quiet"]);
    // The sampler, text and npy unit tests, including this tokenizer's streaming test.
    cargo(&dir, &["test", "--release", "--quiet"]);
    let bin = binary("host-cli-harness");

    // logits: both modes give [T, vocab] of the toy rule, exactly (k/8 is exact in f32).
    let tokens = [5u32, 17, 300, 2, 383];
    for mode in ["prefill", "decode"] {
        let out = dir.join(format!("{mode}.npy"));
        let (code, _, stderr) = run(
            &bin,
            &[
                "logits",
                "--tokens",
                "5, 17,300,2,383",
                "--mode",
                mode,
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        let (header, data) = read_npy_f32(&out);
        assert!(header.contains("'shape': (5, 384)"), "{header}");
        for (row, &t) in tokens.iter().enumerate() {
            let favourite = toy_favourite(t, row);
            for v in 0..384u32 {
                let want = -(((v + 384 - favourite) % 384) as f32) * 0.125;
                assert_eq!(
                    data[row * 384 + v as usize],
                    want,
                    "{mode} row {row} id {v}"
                );
            }
        }
    }
    let out = dir.join("x.npy");
    let out = out.to_str().unwrap();
    assert_user_error(
        run(&bin, &["logits", "--tokens", "1,384", "--out", out]),
        "id 384 is out of range",
    );
    assert_user_error(
        run(&bin, &["logits", "--tokens", "1,,2", "--out", out]),
        "'' is not a token id",
    );
    let too_many = vec!["1"; 25].join(",");
    assert_user_error(
        run(&bin, &["logits", "--tokens", &too_many, "--out", out]),
        "context holds 24",
    );
    assert_user_error(
        run(
            &bin,
            &[
                "logits",
                "--tokens",
                "1",
                "--out",
                out,
                "--weights",
                "/nonexistent/w.gguf",
            ],
        ),
        "/nonexistent/w.gguf: no such file",
    );
    let bad = dir.join("bad.gguf");
    std::fs::write(&bad, [0u8; 16384]).unwrap();
    assert_user_error(
        run(
            &bin,
            &[
                "logits",
                "--tokens",
                "1",
                "--out",
                out,
                "--weights",
                bad.to_str().unwrap(),
            ],
        ),
        "not a harness weights file",
    );
    assert_user_error(
        run(
            &bin,
            &["logits", "--tokens", "1", "--out", "/nonexistent/dir/x.npy"],
        ),
        "cannot create",
    );

    // generate (greedy): the reference prompt encodes to transformers' ids (BOS added), and
    // the toy model emits EOS when the sampled position reaches 16.
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo_root().join("tests/fixtures/llama2/reference/reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let prompt_text = reference["prompt"]["text"].as_str().unwrap();
    let prompt_len = reference["prompt"]["ids"].as_array().unwrap().len();
    let greedy = run(
        &bin,
        &["generate", "--prompt", prompt_text, "--temperature", "0"],
    );
    assert_eq!(greedy.0, 0, "{}", greedy.2);
    assert_eq!(stat(&greedy.2, "prefill "), prompt_len, "{}", greedy.2);
    assert_eq!(
        generated(&greedy.2),
        16 + 1 - prompt_len,
        "tokens until EOS: {}",
        greedy.2
    );
    // The candidates path with top-k 1 (and a repeat penalty that cannot move the best
    // logit, 0) chooses the same tokens as the GPU argmax.
    for flags in [
        &["--temperature", "1", "--top-k", "1"][..],
        &["--temperature", "0", "--repeat-penalty", "1.3"],
    ] {
        let mut args = vec!["generate", "--prompt", prompt_text];
        args.extend_from_slice(flags);
        let sampled = run(&bin, &args);
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
        prompt_text,
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
    let (first, second) = (run(&bin, &seeded), run(&bin, &seeded));
    assert_eq!(first.0, 0, "{}", first.2);
    assert_eq!(first.1, second.1, "same seed, same text");
    let two = run(
        &bin,
        &[
            "generate",
            "--prompt",
            prompt_text,
            "--temperature",
            "0",
            "--max-tokens",
            "2",
        ],
    );
    assert_eq!(generated(&two.2), 2, "{}", two.2);
    // A longer prompt fills the 24-position context before position 16 comes round again.
    let long = format!("{prompt_text} {prompt_text}");
    let full = run(&bin, &["generate", "--prompt", &long, "--temperature", "0"]);
    let k = stat(&full.2, "prefill ");
    assert!((18..=24).contains(&k), "prompt of {k} tokens: {}", full.2);
    assert!(
        full.2.contains("stopped: the context of 24 tokens is full"),
        "{}",
        full.2
    );
    assert_eq!(generated(&full.2), 24 + 1 - k, "{}", full.2);
    let longer = format!("{long} {long}");
    assert_user_error(
        run(&bin, &["generate", "--prompt", &longer]),
        "context holds 24",
    );
    assert_user_error(
        run(&bin, &["generate", "--prompt", "x", "--top-p", "0"]),
        "--top-p",
    );
    assert_user_error(
        run(
            &bin,
            &["generate", "--prompt", "x", "--repeat-penalty", "-1"],
        ),
        "--repeat-penalty",
    );
    assert_user_error(run(&bin, &["generate"]), "--prompt <PROMPT>");
    assert_user_error(
        run(
            &bin,
            &[
                "logits", "--tokens", "1", "--out", out, "--mode", "sideways",
            ],
        ),
        "sideways",
    );
    assert_eq!(run(&bin, &["--help"]).0, 0);

    // bench: one toy dispatch of 384 threads per token; each thread reads its token and
    // the scale (8 bytes) and writes one logit (4 bytes).
    let (code, stdout, stderr) = run(
        &bin,
        &["bench", "--prompt-tokens", "4", "--gen-tokens", "3"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("backend: msl-emu") && stdout.contains("prefill: 4 tokens"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "decode per token: 1.0 dispatches, 384 threads, 3072 bytes read, 1536 bytes written"
        ),
        "{stdout}"
    );
    assert_user_error(
        run(
            &bin,
            &["bench", "--prompt-tokens", "20", "--gen-tokens", "5"],
        ),
        "context holds 24",
    );

    cargo(
        &dir,
        &["check", "--quiet", "--target", "aarch64-apple-darwin"],
    );
}

#[test]
fn without_a_tokenizer_generate_refuses_and_logits_works() {
    let dir = harness("host-cli-harness-no-tokenizer", false);
    cargo(&dir, &["build", "--release", "--quiet"]);
    let bin = binary("host-cli-harness-no-tokenizer");
    assert_user_error(
        run(&bin, &["generate", "--prompt", "hi"]),
        "generate needs a tokenizer",
    );
    let out = dir.join("l.npy");
    let (code, _, stderr) = run(
        &bin,
        &["logits", "--tokens", "7", "--out", out.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(read_npy_f32(&out).1.len(), 384);
}
