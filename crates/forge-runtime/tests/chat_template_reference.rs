//! forge's chat-template renderer against transformers' `apply_chat_template`:
//! the committed conversations (tests/fixtures/chat_conversations.json)
//! rendered with SmolLM2's GGUF template and four published templates
//! (scripts/make_chat_template_reference.py), and each fixture checkpoint's
//! own template on its reference conversation (scripts/make_fixtures.py).
//! Renderings must be byte for byte equal; no tolerance applies to text.

use std::path::{Path, PathBuf};

use forge_runtime::chat_template::{ChatInputs, ChatTemplate, Clock};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn read_ordered(path: &Path) -> minijinja::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A committed conversation as a `--messages` file gives it: messages plus
/// tools and keyword arguments.
fn conversation_inputs(conversations: &minijinja::Value, name: &str) -> ChatInputs {
    let item = |v: &minijinja::Value, key: &str| v.get_attr(key).unwrap();
    let conversation = item(conversations, "conversations")
        .try_iter()
        .unwrap()
        .find(|c| item(c, "name").as_str() == Some(name))
        .unwrap();
    let mut file = vec![("messages".to_string(), item(&conversation, "messages"))];
    let tools = item(&conversation, "tools");
    if !tools.is_undefined() {
        file.push(("tools".into(), tools));
    }
    let kwargs = item(&conversation, "kwargs");
    if !kwargs.is_undefined() {
        for key in kwargs.try_iter().unwrap() {
            let value = kwargs.get_item(&key).unwrap();
            file.push((key.as_str().unwrap().to_string(), value));
        }
    }
    ChatInputs::from_value(minijinja::Value::from_pairs(file)).unwrap()
}

/// The time the reference fixed `datetime.now()` at.
fn reference_clock(reference: &Value) -> Clock {
    let now: jiff::civil::DateTime = reference["now"].as_str().unwrap().parse().unwrap();
    Clock::Fixed(now)
}

#[test]
fn committed_conversations_render_as_transformers_renders_them() {
    let reference = read_json(&repo().join("tests/fixtures/chat_template_reference.json"));
    // As minijinja values: serde_json's maps would sort the keys tojson must keep in order.
    let conversations = read_ordered(&repo().join("tests/fixtures/chat_conversations.json"));
    let clock = reference_clock(&reference);
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in reference["cases"].as_array().unwrap() {
        let name = case["template"].as_str().unwrap();
        let info = &reference["templates"][name];
        let source = std::fs::read_to_string(repo().join(info["file"].as_str().unwrap())).unwrap();
        let template = ChatTemplate::new(
            &source,
            info["bos_token"].as_str(),
            info["eos_token"].as_str(),
            clock,
        )
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let conversation_name = case["conversation"].as_str().unwrap();
        let inputs = conversation_inputs(&conversations, conversation_name);
        let add = case["add_generation_prompt"].as_bool().unwrap();
        let label = format!("{name} / {conversation_name} / generation prompt {add}");
        let ours = template.render(&inputs, add);
        match (case.get("text").and_then(Value::as_str), ours) {
            (Some(want), Ok(got)) if got == want => {}
            (Some(want), Ok(got)) => failures.push(format!(
                "{label}:\n--- transformers\n{want:?}\n--- forge\n{got:?}"
            )),
            (Some(_), Err(e)) => failures.push(format!("{label}: forge refused: {e:#}")),
            (None, Ok(got)) => failures.push(format!(
                "{label}: transformers refused ({}), forge rendered {got:?}",
                case["error"]
            )),
            // A raise_exception message must come through; jinja2's own
            // errors (an undefined key) are worded differently by minijinja.
            (None, Err(e)) => {
                let want = case["error"].as_str().unwrap();
                if want.contains("role") && !format!("{e:#}").contains(want) {
                    failures.push(format!("{label}: error {e:#} does not say {want:?}"));
                }
            }
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} differ:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(checked >= 100, "only {checked} cases");
}

#[test]
fn strftime_now_formats_as_python() {
    let reference = read_json(&repo().join("tests/fixtures/chat_template_reference.json"));
    let clock = reference_clock(&reference);
    for case in reference["strftime"].as_array().unwrap() {
        let format = case["format"].as_str().unwrap();
        let source = format!(
            "{{{{ strftime_now({}) }}}}",
            serde_json::to_string(format).unwrap()
        );
        let template = ChatTemplate::new(&source, None, None, clock).unwrap();
        let got = template
            .render(&ChatInputs::from_messages([("user", "x")]), false)
            .unwrap();
        assert_eq!(got, case["text"].as_str().unwrap(), "strftime {format:?}");
    }
}

/// Every fixture checkpoint with a chat template, on the conversation
/// make_fixtures.py rendered with transformers into its reference.json.
#[test]
fn fixture_templates_render_their_reference_conversation() {
    let fixtures = repo().join("tests/fixtures");
    let mut checked = 0;
    let mut names: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for dir in names {
        let reference = dir.join("reference/reference.json");
        let config = dir.join("hf/tokenizer_config.json");
        if !reference.is_file() || !config.is_file() {
            continue;
        }
        let chat = read_json(&reference)["chat"].clone();
        let config = read_json(&config);
        let Some(source) = config["chat_template"].as_str() else {
            continue;
        };
        let token = |key: &str| match &config[key] {
            Value::String(s) => Some(s.clone()),
            Value::Object(o) => o["content"].as_str().map(str::to_string),
            _ => None,
        };
        let template = ChatTemplate::new(
            source,
            token("bos_token").as_deref(),
            token("eos_token").as_deref(),
            Clock::Local,
        )
        .unwrap();
        let inputs = ChatInputs::from_json(&chat["messages"].to_string()).unwrap();
        let got = template
            .render(&inputs, chat["add_generation_prompt"].as_bool().unwrap())
            .unwrap();
        assert_eq!(got, chat["text"].as_str().unwrap(), "{}", dir.display());
        checked += 1;
    }
    assert!(checked >= 32, "only {checked} fixtures with templates");
}
