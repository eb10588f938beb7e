//! `chat` keeps the sequence's state between turns — the KV cache of
//! attention layers, the conv/SSM state of recurrent ones — and runs only a
//! turn's new tokens. If that state were wrong, turn 2's greedy reply would
//! differ from the one the model gives the same tokens run from scratch: for
//! an attention, a Mamba-2 and a hybrid fixture, every reply token must be
//! the argmax of `logits --mode prefill` over the whole conversation's ids at
//! the position before it (so the reply is the from-scratch greedy one).
//! A template that rewrites earlier turns cuts an attention model's cache
//! back to the tokens the turns share, and reruns a recurrent one.

mod generated;
mod support;

use std::path::{Path, PathBuf};

use forge_runtime::cli::{verbose_ids, TurnReport};
use generated::{argmax, build, case_dir, compile, read_npy, run, run_with_stdin};
use serde_json::Value;
use support::repo_root;

fn chat_two_turns(binary: &Path) -> String {
    let args = [
        "chat",
        "--temperature",
        "0",
        "--max-tokens",
        "6",
        "--verbose-prompt",
        "--system",
        "Be brief.",
    ];
    run_with_stdin(binary, &args, "Say one small thing.\nAnd two?\n").1
}

/// A chat template that leaves the replies out, as templates that drop a
/// reply's reasoning do: turn 2's rendering no longer extends what the
/// sequence holds.
const USERS_ONLY: &str = "{% for m in messages %}{% if m.role != 'assistant' %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// The fixture's checkpoint, with its chat template replaced by `template` when given.
fn checkpoint(dir: &Path, fixture: &str, template: Option<&str>) -> PathBuf {
    let source = repo_root().join("tests/fixtures").join(fixture).join("hf");
    let Some(template) = template else {
        return source;
    };
    let copy = dir.join("checkpoint");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    let config = copy.join("tokenizer_config.json");
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["chat_template"] = Value::from(template);
    std::fs::write(&config, json.to_string()).unwrap();
    copy
}

/// Appends a reply's tokens, recording for each the position it was chosen after.
fn append_reply(ids: &mut Vec<u32>, positions: &mut Vec<(usize, u32)>, reply: &[u32]) {
    for &token in reply {
        positions.push((ids.len() - 1, token));
        ids.push(token);
    }
}

/// Chats two turns on the fixture and checks every reply token against
/// the model run from scratch over the sequence turn 2 saw: the tokens kept
/// from turn 1 (`reused` of them) and the ids turn 2 ran. Returns turn 2's
/// report.
fn check(name: &str, fixture: &str, template: Option<&str>) -> TurnReport {
    let dir = case_dir(name);
    let project = dir.join("project");
    compile(&checkpoint(&dir, fixture, template), &project, name, &[]);
    let binary = build(&project);
    let stderr = chat_two_turns(&binary);
    let prompts = verbose_ids(&stderr, "prompt ids");
    let replies = verbose_ids(&stderr, "reply ids");
    assert_eq!((prompts.len(), replies.len()), (2, 2), "{stderr}");
    let second = TurnReport::find(&stderr, 2).unwrap();

    // Turn 1's sequence: its prompt, then each reply token after the position it was chosen at.
    let mut reply_positions = Vec::new();
    let mut ids = prompts[0].clone();
    append_reply(&mut ids, &mut reply_positions, &replies[0]);
    // Turn 2 kept the first `reused` of them (all that ran, or fewer when
    // the template rewrote earlier turns) and ran its own ids after them.
    assert!(second.reused <= ids.len(), "{stderr}");
    ids.truncate(second.reused);
    reply_positions.retain(|&(position, _)| position + 1 < second.reused);
    ids.extend_from_slice(&prompts[1]);
    append_reply(&mut ids, &mut reply_positions, &replies[1]);
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    let out = dir.join("conversation.npy");
    run(
        &binary,
        &[
            "logits",
            "--tokens",
            &list.join(","),
            "--mode",
            "prefill",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let logits = read_npy(&out);
    assert!(!reply_positions.is_empty());
    for (position, token) in reply_positions {
        let row = &logits.data[position * logits.cols..(position + 1) * logits.cols];
        assert_eq!(
            argmax(row) as u32,
            token,
            "{name}: the reply token after position {position} is not the from-scratch greedy one\n{stderr}"
        );
    }
    second
}

#[test]
fn attention_kv_cache_carries_over() {
    let second = check("chat_reuse_llama3", "llama3", None);
    assert!(second.reused > 0, "turn 2 reused nothing: {second:?}");
}

#[test]
fn mamba2_state_carries_over() {
    let second = check("chat_reuse_mamba2", "mamba2", None);
    assert!(second.reused > 0, "turn 2 reused nothing: {second:?}");
}

#[test]
fn hybrid_state_carries_over() {
    let second = check("chat_reuse_granite4h", "granite4h", None);
    assert!(second.reused > 0, "turn 2 reused nothing: {second:?}");
}

/// A rewritten history on attention alone: the KV cache is cut back to the
/// tokens turn 2 shares with turn 1 (the system and first user turn).
#[test]
fn a_rewritten_history_cuts_the_kv_cache_back() {
    let second = check("chat_rewind_llama3", "llama3", Some(USERS_ONLY));
    assert!(second.reused > 0, "turn 2 kept nothing: {second:?}");
}

/// With recurrent state nothing can be cut back: turn 2 runs the whole rendering.
#[test]
fn a_rewritten_history_reruns_a_recurrent_model() {
    let second = check("chat_rewind_mamba2", "mamba2", Some(USERS_ONLY));
    assert_eq!(second.reused, 0, "{second:?}");
}
