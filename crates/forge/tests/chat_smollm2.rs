//! End to end on the real SmolLM2-135M-Instruct Q4_1 GGUF (fetched into
//! `.cache/` by scripts/fetch_smollm2.sh): the generated project carries the
//! GGUF's own chat template, `chat-template` renders it as transformers does
//! (tests/fixtures/chat_template_reference.json), and `chat` answers a
//! scripted two-turn conversation on stdin with the template applied, the
//! second turn reusing the first one's cache, and exits cleanly at EOF.

mod generated;
mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use forge_runtime::cli::{verbose_texts, TurnReport};
use generated::{build, case_dir, compile, run};
use support::{cached_model, repo_root};

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `chat-template` of `messages` (a JSON list), as a string.
fn chat_template(binary: &Path, dir: &Path, messages: &serde_json::Value) -> String {
    let file = dir.join("messages.json");
    std::fs::write(&file, messages.to_string()).unwrap();
    run(
        binary,
        &["chat-template", "--messages", file.to_str().unwrap()],
    )
}

#[test]
fn smollm2_chats_with_its_own_template_and_reuses_the_cache() {
    let dir = case_dir("chat_smollm2");
    let project = dir.join("project");
    compile(
        &cached_model("SmolLM2-135M-Instruct.Q4_1.gguf"),
        &project,
        "chat_smollm2",
        &[],
    );
    // The project carries the GGUF's template as gguf-py reads it.
    let template = std::fs::read_to_string(project.join("chat_template.jinja")).unwrap();
    let committed = repo_root().join("tests/fixtures/chat_templates/smollm2_gguf.jinja");
    assert_eq!(template, std::fs::read_to_string(committed).unwrap());
    let binary = build(&project);

    // chat-template equals transformers on a committed conversation.
    let reference = read_json(&repo_root().join("tests/fixtures/chat_template_reference.json"));
    let conversations = read_json(&repo_root().join("tests/fixtures/chat_conversations.json"));
    let multi_turn = conversations["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "multi_turn")
        .unwrap();
    let want = reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["template"] == "smollm2_gguf"
                && c["conversation"] == "multi_turn"
                && c["add_generation_prompt"] == true
        })
        .unwrap()["text"]
        .as_str()
        .unwrap();
    assert_eq!(chat_template(&binary, &dir, &multi_turn["messages"]), want);

    // Two scripted turns, greedy, each reply at most 16 tokens.
    let system = "You are a terse assistant.";
    let questions = ["What is the capital of France?", "And of Italy?"];
    let mut child = Command::new(&binary)
        .args(["chat", "--system", system, "--temperature", "0"])
        .args(["--max-tokens", "16", "--verbose-prompt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = format!("{}\n{}\n", questions[0], questions[1]);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "chat failed:\n{stderr}");
    eprintln!("{stderr}");
    assert!(stderr.contains("2 turns"), "{stderr}");
    let prompts = verbose_texts(&stderr, "prompt");
    let replies = verbose_texts(&stderr, "reply");
    assert_eq!((prompts.len(), replies.len()), (2, 2), "{stderr}");
    assert_eq!(stdout, format!("{}\n{}\n", replies[0], replies[1]));
    // The model is greedy on its own template: it knows the capital.
    assert!(replies[0].contains("Paris"), "{replies:?}");

    // What the model saw is the template's rendering: turn 1 the whole
    // prompt, turn 2 what the rendering adds after the reply.
    let message = |role: &str, content: &str| serde_json::json!({"role": role, "content": content});
    let first = serde_json::json!([message("system", system), message("user", questions[0])]);
    assert_eq!(prompts[0], chat_template(&binary, &dir, &first));
    let both = serde_json::json!([
        message("system", system),
        message("user", questions[0]),
        message("assistant", &replies[0]),
        message("user", questions[1]),
    ]);
    let whole = chat_template(&binary, &dir, &both);
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
