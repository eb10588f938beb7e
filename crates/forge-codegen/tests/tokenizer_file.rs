//! `tokenizer_json` for GGUF checkpoints, loaded by the `tokenizers` crate the generated project
//! uses: ids must equal the ones transformers computed (fixture references, and the SmolLM2
//! reference made by scripts/make_tokenizer_reference.py) and the ones the checkpoint's own
//! Hugging Face `tokenizer.json` gives; decoding must give the text back. Ids are compared exactly.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use forge_codegen::tokenizer_json::{tokenizer_json, TokenizerJsonError};
use forge_ir::{Model, TokenizerKind, TokenizerSource};
use serde_json::Value;
use tokenizers::Tokenizer;

/// Texts beyond the references: digits, unicode outside the tiny vocabularies (byte fallback),
/// runs of spaces, tabs and newlines, text starting with a space.
const EXTRA_TEXTS: &[&str] = &[
    "Numbers 12345 and 3.14159, 1,000,000!",
    "Café naïve 日本語 😀 Россия",
    "multiple   internal    spaces  and trailing  ",
    "  two leading spaces",
    "tabs\tand\nnewlines\r\n\n mixed",
    "I'm sure they'll say it's fine, don't you?",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn load(path: &Path) -> Model {
    forge_frontend::load_model(path)
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
}

/// The tokenizer forge writes for `model`, as the generated project loads it.
fn built_tokenizer(model: &Model) -> Tokenizer {
    let json = tokenizer_json(model)
        .unwrap_or_else(|e| panic!("{}: {e}", model.source.display()))
        .unwrap_or_else(|| panic!("{}: no tokenizer", model.source.display()));
    Tokenizer::from_str(&json).unwrap_or_else(|e| {
        panic!(
            "{}: tokenizers rejects the json: {e}",
            model.source.display()
        )
    })
}

fn ids(tokenizer: &Tokenizer, text: &str, add_special_tokens: bool) -> Vec<u32> {
    tokenizer
        .encode(text, add_special_tokens)
        .unwrap_or_else(|e| panic!("cannot encode {text:?}: {e}"))
        .get_ids()
        .to_vec()
}

fn decode(tokenizer: &Tokenizer, ids: &[u32], skip_special_tokens: bool) -> String {
    tokenizer
        .decode(ids, skip_special_tokens)
        .unwrap_or_else(|e| panic!("cannot decode {ids:?}: {e}"))
}

fn id_list(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .expect("ids are a list")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect()
}

/// Every GGUF fixture (from tests/fixtures/manifest.json) with the Hugging Face directory it came from.
fn gguf_fixtures() -> Vec<(String, PathBuf, PathBuf)> {
    let fixtures = repo_root().join("tests/fixtures");
    let manifest = read_json(&fixtures.join("manifest.json"));
    let mut out = Vec::new();
    for fixture in manifest["fixtures"].as_array().expect("fixtures list") {
        let name = fixture["name"].as_str().expect("fixture name");
        // GGUF architectures the frontend does not load yet (issue 12); remove as it does.
        if ["qwen2_moe", "qwen3_moe", "granite4h_moe"].contains(&name) {
            continue;
        }
        for gguf in fixture["gguf"].as_array().into_iter().flatten() {
            let file = fixtures.join(gguf["file"].as_str().expect("gguf file"));
            out.push((name.to_string(), file, fixtures.join(name)));
        }
    }
    assert!(
        out.len() >= 16,
        "manifest lists only {} GGUF files",
        out.len()
    );
    out
}

/// Compares one GGUF fixture's built tokenizer with transformers' ids and the HF file; returns
/// the disagreements.
fn check_fixture(name: &str, gguf: &Path, dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expect = |what: &str, got: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
        let (got, want) = (format!("{got:?}"), format!("{want:?}"));
        if got != want {
            problems.push(format!(
                "{name} ({}): {what}\n  got  {got}\n  want {want}",
                gguf.display()
            ));
        }
    };
    let model = load(gguf);
    assert!(matches!(
        model.tokenizer.as_ref().map(|t| &t.source),
        Some(TokenizerSource::Gguf(_))
    ));
    let ours = built_tokenizer(&model);
    let hf = Tokenizer::from_file(dir.join("hf/tokenizer.json"))
        .unwrap_or_else(|e| panic!("{name}: HF tokenizer.json: {e}"));
    let reference = read_json(&dir.join("reference/reference.json"));

    let prompt = &reference["prompt"];
    let text = prompt["text"].as_str().expect("prompt text");
    let special = prompt["add_special_tokens"]
        .as_bool()
        .expect("add_special_tokens");
    let want = id_list(&prompt["ids"]);
    let got = ids(&ours, text, special);
    expect("prompt ids vs transformers", &got, &want);
    expect(
        "prompt ids: HF file vs transformers",
        &ids(&hf, text, special),
        &want,
    );
    expect("prompt decoded", &decode(&ours, &got, true), &text);

    if let Some(chat) = reference.get("chat").filter(|c| !c.is_null()) {
        let text = chat["text"].as_str().expect("chat text");
        let want = id_list(&chat["ids_without_added_specials"]);
        let got = ids(&ours, text, false);
        expect("chat ids vs transformers", &got, &want);
        expect("chat decoded", &decode(&ours, &got, false), &text);
    }
    for text in EXTRA_TEXTS {
        let got = ids(&ours, text, false);
        expect(
            &format!("{text:?} vs HF file"),
            &got,
            &ids(&hf, text, false),
        );
        expect(
            &format!("{text:?} decoded vs HF file"),
            &decode(&ours, &got, false),
            &decode(&hf, &got, false),
        );
    }
    problems
}

#[test]
fn gguf_fixture_tokenizers_match_transformers_and_hf_files() {
    let mut problems = Vec::new();
    for (name, gguf, dir) in gguf_fixtures() {
        problems.extend(check_fixture(&name, &gguf, &dir));
    }
    assert!(
        problems.is_empty(),
        "{} disagreements:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn real_smollm2_gguf_tokenizer_matches_transformers_reference() {
    let root = repo_root();
    let gguf = root.join(".cache/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        gguf.exists(),
        "{} is missing: run scripts/fetch_smollm2.sh (the README's test command does)",
        gguf.display()
    );
    let model = load(&gguf);
    let ours = built_tokenizer(&model);
    let reference = read_json(&root.join("tests/fixtures/smollm2_tokenizer_reference.json"));
    assert_eq!(
        ours.get_vocab_size(true),
        reference["vocab_size"].as_u64().unwrap() as usize
    );
    let cases = reference["cases"].as_array().expect("cases");
    assert!(cases.len() >= 8);
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let got = ids(&ours, text, false);
        assert_eq!(got, id_list(&case["ids"]), "ids of {text:?}");
        assert_eq!(decode(&ours, &got, false), text, "decoding {text:?}");
    }
    // The chat markers are single special tokens and drop out when decoding skips specials.
    let chat = ids(&ours, "<|im_start|>user\nHi<|im_end|>", false);
    assert_eq!(chat.first(), Some(&1));
    assert_eq!(chat.last(), Some(&2));
    assert_eq!(decode(&ours, &chat, true), "user\nHi");
}

#[test]
fn hf_checkpoints_keep_their_own_tokenizer_json() {
    let dir = repo_root().join("tests/fixtures/smollm2/hf");
    let model = load(&dir);
    let json = tokenizer_json(&model).unwrap().expect("a tokenizer");
    assert_eq!(
        json,
        std::fs::read_to_string(dir.join("tokenizer.json")).unwrap()
    );
}

#[test]
fn models_without_a_tokenizer_get_none() {
    let mut model = load(&repo_root().join("tests/fixtures/smollm2/gguf/smollm2.f32.gguf"));
    model.tokenizer = None;
    assert!(tokenizer_json(&model).unwrap().is_none());
}

#[test]
fn unsupported_gguf_tokenizers_are_named_errors() {
    let base = load(&repo_root().join("tests/fixtures/smollm2/gguf/smollm2.f32.gguf"));

    let mut other = base.clone();
    other.tokenizer.as_mut().unwrap().kind = TokenizerKind::Other;
    let err = tokenizer_json(&other).unwrap_err();
    assert!(matches!(err, TokenizerJsonError::UnsupportedModel { .. }));
    let message = err.to_string();
    assert!(
        message.contains("gpt2") && message.contains("llama") && !message.contains('\n'),
        "{message}"
    );

    let mut unknown_pre = base.clone();
    match &mut unknown_pre.tokenizer.as_mut().unwrap().source {
        TokenizerSource::Gguf(vocab) => vocab.pre = Some("made-up-bpe".into()),
        TokenizerSource::HfJson { .. } => unreachable!("a GGUF model"),
    }
    let err = tokenizer_json(&unknown_pre).unwrap_err();
    assert!(err.to_string().contains("\"made-up-bpe\""), "{err}");

    let mut no_merges = base;
    match &mut no_merges.tokenizer.as_mut().unwrap().source {
        TokenizerSource::Gguf(vocab) => vocab.merges = None,
        TokenizerSource::HfJson { .. } => unreachable!("a GGUF model"),
    }
    let err = tokenizer_json(&no_merges).unwrap_err();
    assert!(err.to_string().contains("tokenizer.ggml.merges"), "{err}");
}
