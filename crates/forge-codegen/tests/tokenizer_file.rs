//! The tokenizer file forge writes, loaded as the generated project loads it (forge-runtime's
//! `Tokenizer::open` on the project directory). A GGUF vocabulary must tokenize and detokenize
//! exactly as llama.cpp does: ids and text are compared exactly with
//! tests/fixtures/llama_tokenizer_reference.json (scripts/make_llama_tokenizer_reference.py,
//! llama.cpp through llama-cpp-python) for the two real GGUFs in `.cache/` and the tiny fixture
//! GGUFs, and the token attributes llama.cpp's loader fixes up must be the ones forge wrote.

use std::path::{Path, PathBuf};

use forge_codegen::tokenizer_file::{attr, tokenizer_file, TokenizerFileError, GGUF_VOCAB_FILE};
use forge_ir::{Model, TokenizerKind, TokenizerSource};
use forge_runtime::text::{Decode, TextStream, Tokenizer};
use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn reference() -> Value {
    read_json(&repo_root().join("tests/fixtures/llama_tokenizer_reference.json"))
}

fn load(path: &Path) -> Model {
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch_smollm2.sh and scripts/fetch_gemma3.sh (the README's test command does)",
        path.display()
    );
    forge_frontend::load_model(path)
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
}

/// The tokenizer file forge writes for `model`, in a project directory of its own, and the
/// tokenizer the generated binary opens from there.
fn project_tokenizer(model: &Model) -> (tempfile::TempDir, Tokenizer) {
    let file = tokenizer_file(model)
        .unwrap_or_else(|e| panic!("{}: {e}", model.source.display()))
        .unwrap_or_else(|| panic!("{}: no tokenizer", model.source.display()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file.name), &file.contents).unwrap();
    let tokenizer =
        Tokenizer::open(dir.path()).unwrap_or_else(|e| panic!("{}: {e}", model.source.display()));
    (dir, tokenizer)
}

fn id_list(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .expect("ids are a list")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect()
}

/// Every disagreement of `tokenizer` with llama.cpp's records for one model.
fn disagreements(name: &str, tokenizer: &Tokenizer, record: &Value) -> Vec<String> {
    let Tokenizer::Gguf(vocab) = tokenizer else {
        panic!("{name}: a GGUF checkpoint gets gguf_vocab.json");
    };
    let mut problems = Vec::new();
    let mut expect = |what: String, got: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
        let (got, want) = (format!("{got:?}"), format!("{want:?}"));
        if got != want {
            problems.push(format!("{name}: {what}\n  got  {got}\n  want {want}"));
        }
    };
    expect(
        "vocabulary size".into(),
        &(vocab.len() as u64),
        &record["n_tokens"].as_u64().unwrap(),
    );
    for case in record["cases"].as_array().expect("cases") {
        let text = case["text"].as_str().expect("text");
        let ids = tokenizer.tokenize(text, true, true).unwrap();
        expect(format!("ids of {text:?}"), &ids, &id_list(&case["ids"]));
        let plain = tokenizer.tokenize(text, false, false).unwrap();
        expect(
            format!("ids of {text:?} (no BOS, no special parsing)"),
            &plain,
            &id_list(&case["ids_plain"]),
        );
        let want = id_list(&case["ids"]);
        for (special, key) in [(false, "decoded"), (true, "decoded_special")] {
            let got = vocab.detokenize(&want, false, special).unwrap();
            expect(
                format!("{key} {want:?}"),
                &got,
                &case[key].as_str().unwrap(),
            );
        }
        // What `generate` streams: the text without special tokens.
        expect(
            format!("decode {want:?}"),
            &tokenizer.decode(&want).unwrap(),
            &case["decoded"].as_str().unwrap(),
        );
    }
    problems
}

fn assert_agrees(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} disagreements with llama.cpp:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn real_gguf_tokenizers_match_llama_cpp() {
    let reference = reference();
    let mut problems = Vec::new();
    let mut cases = 0;
    for (name, record) in reference["models"].as_object().expect("models") {
        let model = load(&repo_root().join(record["gguf"].as_str().unwrap()));
        let (_dir, tokenizer) = project_tokenizer(&model);
        problems.extend(disagreements(name, &tokenizer, record));
        cases += record["cases"].as_array().unwrap().len();
    }
    assert_eq!(reference["models"].as_object().unwrap().len(), 2);
    assert!(cases >= 60, "only {cases} cases");
    assert_agrees(problems);
}

#[test]
fn fixture_gguf_tokenizers_match_llama_cpp() {
    let reference = reference();
    let fixtures = reference["fixtures"].as_object().expect("fixtures");
    assert!(fixtures.len() >= 10, "only {} fixtures", fixtures.len());
    let mut problems = Vec::new();
    for (name, record) in fixtures {
        let model = load(&repo_root().join(record["gguf"].as_str().unwrap()));
        let (_dir, tokenizer) = project_tokenizer(&model);
        problems.extend(disagreements(name, &tokenizer, record));
    }
    assert_agrees(problems);
}

/// `generate` and `chat` stream text one id at a time: for every reference text of the real
/// models the pieces add up to a whole decode, and a character split over byte tokens (emoji
/// through Gemma's byte fallback) never shows as a replacement character.
#[test]
fn streamed_text_equals_a_whole_decode() {
    let reference = reference();
    for (name, record) in reference["models"].as_object().unwrap() {
        let model = load(&repo_root().join(record["gguf"].as_str().unwrap()));
        let (_dir, tokenizer) = project_tokenizer(&model);
        for case in record["cases"].as_array().unwrap() {
            let ids = id_list(&case["ids"]);
            let pieces = TextStream::pieces(&tokenizer, &ids).unwrap();
            let whole = tokenizer.decode(&ids).unwrap();
            assert_eq!(pieces.concat(), whole, "{name}: {ids:?}");
            assert!(
                pieces.iter().all(|p| !p.contains('\u{FFFD}')),
                "{name}: {pieces:?}"
            );
        }
    }
}

/// llama.cpp's loader changes some tokens' attributes from what their token type says (control
/// for end-of-generation texts such as Gemma's user-defined `</s>`, unused for `<unusedN>`,
/// Phi-3's stripped whitespace); the attributes forge writes must be exactly llama.cpp's.
#[test]
fn token_attributes_are_llama_cpps() {
    let reference = reference();
    let records = reference["models"]
        .as_object()
        .unwrap()
        .iter()
        .chain(reference["fixtures"].as_object().unwrap());
    let mut checked_fixups = 0;
    for (name, record) in records {
        let model = load(&repo_root().join(record["gguf"].as_str().unwrap()));
        let file = tokenizer_file(&model).unwrap().unwrap();
        assert_eq!(file.name, GGUF_VOCAB_FILE);
        let written: Value = serde_json::from_str(&file.contents).unwrap();
        let ours = id_list(&written["attributes"]);
        let TokenizerSource::Gguf(vocab) = &model.tokenizer.as_ref().unwrap().source else {
            unreachable!("a GGUF model");
        };
        let plain = |id: usize| match vocab.token_types.as_ref().map(|t| t[id]) {
            None | Some(1) => attr::NORMAL,
            Some(2) => attr::UNKNOWN,
            Some(3) => attr::CONTROL,
            Some(4) => attr::USER_DEFINED,
            Some(5) => 1 << 1,
            Some(6) => attr::BYTE,
            Some(_) => 0,
        };
        let mut want: Vec<u32> = (0..ours.len()).map(plain).collect();
        for fixup in record["attribute_fixups"].as_array().unwrap() {
            let [first, last, attribute] = id_list(fixup)[..] else {
                panic!("{name}: fixup {fixup} is not [first, last, attribute]");
            };
            for id in first..=last {
                want[id as usize] = attribute;
                checked_fixups += 1;
            }
        }
        let differing: Vec<(usize, u32, u32)> = (0..ours.len())
            .filter(|&id| ours[id] != want[id])
            .map(|id| (id, ours[id], want[id]))
            .take(10)
            .collect();
        assert!(
            differing.is_empty(),
            "{name}: (id, ours, llama.cpp's) {differing:?}"
        );
    }
    assert!(
        checked_fixups > 6000,
        "only {checked_fixups} fixed-up attributes"
    );
}

/// The older reference: transformers' GGUF loader on the real SmolLM2 with the published
/// pre-tokenizer (scripts/make_tokenizer_reference.py) agrees with llama.cpp on these texts.
#[test]
fn real_smollm2_tokenizer_matches_the_transformers_reference() {
    let root = repo_root();
    let model = load(&root.join(".cache/SmolLM2-135M-Instruct.Q4_1.gguf"));
    let (_dir, tokenizer) = project_tokenizer(&model);
    let reference = read_json(&root.join("tests/fixtures/smollm2_tokenizer_reference.json"));
    let cases = reference["cases"].as_array().expect("cases");
    assert!(cases.len() >= 8);
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let got = tokenizer.encode(text).unwrap();
        assert_eq!(got, id_list(&case["ids"]), "ids of {text:?}");
    }
}

#[test]
fn hf_checkpoints_keep_their_own_tokenizer_json() {
    let dir = repo_root().join("tests/fixtures/smollm2/hf");
    let model = load(&dir);
    let file = tokenizer_file(&model).unwrap().expect("a tokenizer");
    assert_eq!(file.name, "tokenizer.json");
    assert_eq!(
        file.contents,
        std::fs::read_to_string(dir.join("tokenizer.json")).unwrap()
    );
}

#[test]
fn models_without_a_tokenizer_get_none() {
    let mut model = load(&repo_root().join("tests/fixtures/smollm2/gguf/smollm2.f32.gguf"));
    model.tokenizer = None;
    assert!(tokenizer_file(&model).unwrap().is_none());
}

#[test]
fn unsupported_gguf_tokenizers_are_named_errors() {
    let base = load(&repo_root().join("tests/fixtures/smollm2/gguf/smollm2.f32.gguf"));
    fn vocab(model: &mut Model) -> &mut forge_ir::GgufVocab {
        match &mut model.tokenizer.as_mut().unwrap().source {
            TokenizerSource::Gguf(vocab) => vocab,
            TokenizerSource::HfJson { .. } => unreachable!("a GGUF model"),
        }
    }

    let mut other = base.clone();
    other.tokenizer.as_mut().unwrap().kind = TokenizerKind::Other;
    let err = tokenizer_file(&other).unwrap_err();
    assert!(matches!(err, TokenizerFileError::UnsupportedModel { .. }));
    let message = err.to_string();
    assert!(
        message.contains("gpt2") && message.contains("llama") && !message.contains('\n'),
        "{message}"
    );

    let mut unknown_pre = base.clone();
    vocab(&mut unknown_pre).pre = Some("made-up-bpe".into());
    let err = tokenizer_file(&unknown_pre).unwrap_err();
    assert!(err.to_string().contains("\"made-up-bpe\""), "{err}");

    let mut no_merges = base.clone();
    vocab(&mut no_merges).merges = None;
    let err = tokenizer_file(&no_merges).unwrap_err();
    assert!(err.to_string().contains("tokenizer.ggml.merges"), "{err}");

    let mut duplicate = base.clone();
    let tokens = &mut vocab(&mut duplicate).tokens;
    tokens[5] = tokens[4].clone();
    let err = tokenizer_file(&duplicate).unwrap_err().to_string();
    assert!(
        err.contains("duplicate token") && err.contains("4 and 5"),
        "{err}"
    );

    let mut bos_missing = base;
    let v = vocab(&mut bos_missing);
    v.add_bos_token = Some(true);
    v.token_ids.remove("bos");
    // gpt2's default BOS id 11 stands in for a missing one, as in llama.cpp; past the vocabulary
    // it is dropped, and adding BOS is then an error.
    v.tokens.truncate(11);
    v.token_types.as_mut().unwrap().truncate(11);
    let err = tokenizer_file(&bos_missing).unwrap_err().to_string();
    assert!(
        err.contains("add_bos_token") && !err.contains('\n'),
        "{err}"
    );
}
