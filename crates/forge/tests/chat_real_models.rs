//! `chat-template` and `chat` end to end on the real models the test command
//! fetches into `.cache/`:
//!
//! - SmolLM2-135M-Instruct Q4_1: the project carries the GGUF's own chat
//!   template, `chat-template` renders it as transformers does
//!   (tests/fixtures/chat_template_reference.json), and `chat` answers a
//!   scripted two-turn conversation on stdin with the template applied, the
//!   second turn reusing the first one's cache, and exits cleanly at EOF;
//! - Gemma 3 270M Q4_K_M, whose GGUF has no template: the project gets
//!   forge's Gemma fallback, says so once, renders it as transformers renders
//!   that template, and `chat` stops at Gemma's `<end_of_turn>`.
//!
//! The ids a reply must stop at are looked up in the GGUF's own vocabulary.

mod generated;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use forge_ir::TokenizerSource;
use forge_runtime::cli::{verbose_stop_ids, verbose_texts, TurnReport};
use generated::{build, case_dir, compile, run, run_with_stdin};
use serde_json::{json, Value};
use support::{cached_model, repo_root};

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `chat-template` of `messages` (a JSON list): its stdout and stderr.
fn chat_template(binary: &Path, dir: &Path, messages: &Value) -> (String, String) {
    let file = dir.join("messages.json");
    std::fs::write(&file, messages.to_string()).unwrap();
    let out = Command::new(binary)
        .args(["chat-template", "--messages", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    let (stdout, stderr) = (text(out.stdout), text(out.stderr));
    assert!(out.status.success(), "chat-template failed:\n{stderr}");
    (stdout, stderr)
}

/// transformers' rendering of the committed conversation `name` with `template`.
fn reference_rendering(template: &str, name: &str) -> (Value, String) {
    let reference = read_json(&repo_root().join("tests/fixtures/chat_template_reference.json"));
    let conversations = read_json(&repo_root().join("tests/fixtures/chat_conversations.json"));
    let conversation = conversations["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap();
    let case = reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["template"] == template
                && c["conversation"] == name
                && c["add_generation_prompt"] == true
        })
        .unwrap();
    let text = case["text"].as_str().unwrap().to_string();
    (conversation["messages"].clone(), text)
}

/// Runs `chat` with `input` on stdin, greedy and with `--verbose-prompt`:
/// (stdout, stderr), after checking it exited cleanly at the end of input.
fn chat(binary: &Path, extra: &[&str], input: &str) -> (String, String) {
    let mut args = vec!["chat", "--temperature", "0", "--verbose-prompt"];
    args.extend_from_slice(extra);
    let (stdout, stderr) = run_with_stdin(binary, &args, input);
    eprintln!("{stderr}");
    (stdout, stderr)
}

/// The ids of `texts` in the GGUF's vocabulary.
fn vocabulary_ids(gguf: &Path, texts: &[&str]) -> Vec<u32> {
    let model = forge_frontend::load_model(gguf).unwrap();
    let TokenizerSource::Gguf(vocab) = &model.tokenizer.unwrap().source else {
        panic!("{}: not a GGUF vocabulary", gguf.display());
    };
    texts
        .iter()
        .map(|t| vocab.tokens.iter().position(|v| v == t).unwrap() as u32)
        .collect()
}

fn message(role: &str, content: &str) -> Value {
    json!({"role": role, "content": content})
}

fn compile_and_build(gguf: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = case_dir(name);
    let project = dir.join("project");
    compile(gguf, &project, name, &[]);
    let binary = build(&project);
    (dir, project, binary)
}

#[test]
fn smollm2_chats_with_its_own_template_and_reuses_the_cache() {
    let gguf = cached_model("SmolLM2-135M-Instruct.Q4_1.gguf");
    let (dir, project, binary) = compile_and_build(&gguf, "chat_smollm2");
    // The project carries the GGUF's template as gguf-py reads it.
    let template = std::fs::read_to_string(project.join("chat_template.jinja")).unwrap();
    let committed = repo_root().join("tests/fixtures/chat_templates/smollm2_gguf.jinja");
    assert_eq!(template, std::fs::read_to_string(committed).unwrap());

    let (messages, want) = reference_rendering("smollm2_gguf", "multi_turn");
    assert_eq!(chat_template(&binary, &dir, &messages).0, want);

    // Two scripted turns, each reply at most 16 tokens.
    let system = "You are a terse assistant.";
    let questions = ["What is the capital of France?", "And of Italy?"];
    let input = format!("{}\n{}\n", questions[0], questions[1]);
    let (stdout, stderr) = chat(&binary, &["--system", system, "--max-tokens", "16"], &input);
    assert!(stderr.contains("2 turns"), "{stderr}");
    // ChatML's <|im_end|> (also the EOS) and <|endoftext|>, which llama.cpp marks end-of-generation.
    let stops = verbose_stop_ids(&stderr).unwrap();
    for id in vocabulary_ids(&gguf, &["<|im_end|>", "<|endoftext|>"]) {
        assert!(stops.contains(&id), "{id} not in {stops:?}");
    }
    let prompts = verbose_texts(&stderr, "prompt");
    let replies = verbose_texts(&stderr, "reply");
    assert_eq!((prompts.len(), replies.len()), (2, 2), "{stderr}");
    assert_eq!(stdout, format!("{}\n{}\n", replies[0], replies[1]));
    // The model is greedy on its own template: it knows the capital.
    assert!(replies[0].contains("Paris"), "{replies:?}");

    // What the model saw is the template's rendering: turn 1 the whole
    // prompt, turn 2 what the rendering adds after the reply.
    let first = json!([message("system", system), message("user", questions[0])]);
    assert_eq!(prompts[0], chat_template(&binary, &dir, &first).0);
    let both = json!([
        message("system", system),
        message("user", questions[0]),
        message("assistant", &replies[0]),
        message("user", questions[1]),
    ]);
    let whole = chat_template(&binary, &dir, &both).0;
    assert_eq!(whole, format!("{}{}{}", prompts[0], replies[0], prompts[1]));

    // Turn 2 reuses everything turn 1 ran: its prompt and the reply's tokens
    // (all of them when a stop token ended it; the last runs in turn 2 when
    // --max-tokens cut it).
    let report = |turn| TurnReport::find(&stderr, turn).unwrap_or_else(|| panic!("{stderr}"));
    let (first, second) = (report(1), report(2));
    assert_eq!(first.reused, 0);
    let ran = match first.stopped_by_token() {
        true => first.generated,
        false => first.generated - 1,
    };
    assert_eq!(second.reused, first.prefilled + ran, "{stderr}");
    assert!(second.prefilled < second.reused, "{stderr}");
}

#[test]
fn gemma3_without_a_template_chats_in_gemmas_format() {
    let gguf = cached_model("gemma-3-270m-q4_k_m.gguf");
    let (dir, project, binary) = compile_and_build(&gguf, "chat_gemma3");
    let template = std::fs::read_to_string(project.join("chat_template.jinja")).unwrap();
    let fallback = repo_root().join("templates/chat/gemma.jinja");
    assert_eq!(template, std::fs::read_to_string(fallback).unwrap());

    // transformers' rendering of the same template (with Gemma's <bos>).
    let (messages, want) = reference_rendering("forge_gemma", "multi_turn");
    let (rendered, stderr) = chat_template(&binary, &dir, &messages);
    assert_eq!(rendered, want);
    assert_eq!(
        stderr
            .matches("the checkpoint has no chat template")
            .count(),
        1,
        "{stderr}"
    );

    // One turn: Gemma's turns end at <end_of_turn>; the GGUF's EOS is <eos>.
    // (This is the pretrained 270M model: what it answers is not judged.)
    let question = "What is the capital of France?";
    let (_, stderr) = chat(&binary, &["--max-tokens", "4"], &format!("{question}\n"));
    assert!(stderr.contains("1 turn; seed"), "{stderr}");
    assert_eq!(
        stderr
            .matches("the checkpoint has no chat template")
            .count(),
        1
    );
    let stops = verbose_stop_ids(&stderr).unwrap();
    for id in vocabulary_ids(&gguf, &["<end_of_turn>", "<eos>"]) {
        assert!(stops.contains(&id), "{id} not in {stops:?}");
    }
    let prompts = verbose_texts(&stderr, "prompt");
    let (expected, _) = chat_template(&binary, &dir, &json!([message("user", question)]));
    assert_eq!(prompts, [expected]);
    let report = TurnReport::find(&stderr, 1).unwrap();
    // The template writes <bos> itself: the prompt holds it once.
    let bos = vocabulary_ids(&gguf, &["<bos>"])[0].to_string();
    let ids = run(&binary, &["tokenize", "--text", &prompts[0]]);
    let ids: Vec<&str> = ids.trim().split(',').collect();
    assert_eq!(
        ids.iter().filter(|&&id| id == bos).count(),
        2,
        "tokenize adds one: {ids:?}"
    );
    assert_eq!(report.prefilled, ids.len() - 1, "{stderr}");
}
