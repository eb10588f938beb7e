//! `chat-template` and `chat` driven in-process on the toy model
//! (support/toy_model.rs, whose project has a short chat template so a
//! conversation fits its 24-token context): the rendering printed exactly,
//! user errors in one line, and a scripted two-turn chat whose second turn
//! runs only its own tokens.

mod support;

use std::path::Path;

use forge_runtime::chat_template::{ChatInputs, ChatTemplate, Clock};
use forge_runtime::cli::{verbose_ids, verbose_texts, TurnReport};
use forge_runtime::text::Tokenizer;
use support::{run, run_with_input, toy_project, TOY_CHAT_TEMPLATE};

fn toy_template() -> ChatTemplate {
    ChatTemplate::new(TOY_CHAT_TEMPLATE, Some("<s>"), Some("</s>"), Clock::Local).unwrap()
}

#[test]
fn chat_template_prints_the_rendering_and_nothing_else() {
    let project = toy_project("chat-template-cli", true);
    // No weights are needed.
    std::fs::remove_file(Path::new(project.dir).join("weights.gguf")).unwrap();
    let messages = Path::new(project.dir).join("conversation.json");
    std::fs::write(
        &messages,
        r#"[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]"#,
    )
    .unwrap();
    let inputs = ChatInputs::from_messages([("system", "be brief"), ("user", "hi")]);
    let file = messages.to_str().unwrap();
    for (flags, add) in [(&[][..], true), (&["--no-generation-prompt"][..], false)] {
        let mut args = vec!["chat-template", "--messages", file];
        args.extend_from_slice(flags);
        let (code, stdout, stderr) = run(&project, &args);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout, toy_template().render(&inputs, add).unwrap());
        // The project's template is a fallback: said once.
        assert_eq!(
            stderr.matches("has no chat template").count(),
            1,
            "{stderr}"
        );
    }
    std::fs::write(&messages, r#"{"tools": []}"#).unwrap();
    let (code, _, stderr) = run(&project, &["chat-template", "--messages", file]);
    assert_eq!(code, 1);
    let error: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(
        error[0].contains("conversation.json") && error[0].contains("messages"),
        "{stderr}"
    );
}

#[test]
fn chat_keeps_the_previous_turns_in_the_cache() {
    let project = toy_project("chat-cli", true);
    let args = [
        "chat",
        "--temperature",
        "0",
        "--max-tokens",
        "3",
        "--verbose-prompt",
    ];
    let (code, stdout, stderr) = run_with_input(&project, &args, "hi\n\nyo\n");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("2 turns"), "{stderr}");
    let prompts = verbose_texts(&stderr, "prompt");
    let replies = verbose_texts(&stderr, "reply");
    assert_eq!((prompts.len(), replies.len()), (2, 2), "{stderr}");
    assert_eq!(stdout, format!("{}\n{}\n", replies[0], replies[1]));

    // Turn 1 is the rendering of the first message, from an empty cache.
    let template = toy_template();
    let mut conversation = ChatInputs::from_messages([("user", "hi")]);
    assert_eq!(prompts[0], template.render(&conversation, true).unwrap());
    // Turn 2 is what the rendering adds after the reply as generated.
    conversation.push("assistant", &replies[0]);
    conversation.push("user", "yo");
    let whole = template.render(&conversation, true).unwrap();
    assert_eq!(whole, format!("{}{}{}", prompts[0], replies[0], prompts[1]));

    let tokenizer = Tokenizer::open(Path::new(project.dir))
        .unwrap()
        .with_hf_bos(Some(1));
    let report = |turn| TurnReport::find(&stderr, turn).unwrap_or_else(|| panic!("{stderr}"));
    let (first, second) = (report(1), report(2));
    let (prefilled1, reused1, generated1) = (first.prefilled, first.reused, first.generated);
    assert_eq!(reused1, 0);
    assert_eq!(
        prefilled1,
        tokenizer.tokenize(&prompts[0], true, true).unwrap().len()
    );
    // --max-tokens cut the reply before its last token ran: turn 2 runs it
    // first, then the new text; everything before is reused.
    let (prefilled2, reused2) = (second.prefilled, second.reused);
    assert_eq!(generated1, 3);
    assert_eq!(reused2, prefilled1 + generated1 - 1);
    assert_eq!(
        prefilled2,
        1 + tokenizer.tokenize(&prompts[1], false, true).unwrap().len()
    );
}

#[test]
fn chat_without_a_tokenizer_refuses() {
    let project = toy_project("chat-cli-no-tokenizer", false);
    let (code, _, stderr) = run_with_input(&project, &["chat"], "hi\n");
    assert_eq!(code, 1);
    assert!(stderr.contains("chat needs a tokenizer"), "{stderr}");
}

#[test]
fn chat_takes_generates_sampling_defaults_and_ends_at_the_context() {
    let project = toy_project("chat-cli-context", true);
    let (code, help, _) = run(&project, &["chat", "--help"]);
    assert_eq!(code, 0);
    for default in ["[default: 0.8]", "[default: 40]", "[default: 0.95]"] {
        assert!(help.contains(default), "{default} in:\n{help}");
    }
    // Each turn needs about 10 of the toy's 24 positions: the third cannot fit.
    let input = "hi\nhi\nhi\nhi\n";
    let (code, stdout, stderr) = run_with_input(
        &project,
        &["chat", "--temperature", "0", "--max-tokens", "3"],
        input,
    );
    assert_eq!(code, 1, "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("context of 24 tokens"), "{stderr}");
    assert!(stdout.lines().count() >= 1, "{stdout}");
}

#[test]
fn a_template_that_rewrites_earlier_turns_keeps_the_tokens_before_the_change() {
    let mut project = toy_project("chat-cli-rewind", true);
    // Leaves replies out of the rendering, so turn 2's rendering does not
    // extend what the sequence holds (turn 1's prompt and reply).
    const USERS_ONLY: &str = "{% for m in messages %}{% if m.role == 'user' %}u:{{ m.content }}|{% endif %}{% endfor %}{% if add_generation_prompt %}a:{% endif %}";
    project.chat.template = USERS_ONLY;
    let args = [
        "chat",
        "--temperature",
        "0",
        "--max-tokens",
        "2",
        "--verbose-prompt",
    ];
    let (code, _, stderr) = run_with_input(&project, &args, "hi\nyo\n");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("the template rewrote earlier turns"),
        "{stderr}"
    );
    let prompts = verbose_texts(&stderr, "prompt");
    assert_eq!(
        prompts[1], "u:hi|u:yo|a:",
        "turn 2 feeds the whole rendering"
    );

    // The toy has no recurrent state: the tokens turn 1 and turn 2 share stay.
    let tokenizer = Tokenizer::open(Path::new(project.dir))
        .unwrap()
        .with_hf_bos(Some(1));
    let first = tokenizer.tokenize(&prompts[0], true, true).unwrap();
    let all = tokenizer.tokenize(&prompts[1], true, true).unwrap();
    let common = first.iter().zip(&all).take_while(|(a, b)| a == b).count();
    assert!(
        common > 1,
        "the renderings share their start: {first:?} {all:?}"
    );
    let second = TurnReport::find(&stderr, 2).unwrap();
    assert_eq!(
        (second.reused, second.prefilled),
        (common, all.len() - common),
        "{stderr}"
    );
    let ran = verbose_ids(&stderr, "prompt ids");
    assert_eq!(ran[1], all[common..], "{stderr}");
}
