//! `chat` keeps the sequence's state between turns — the KV cache of
//! attention layers, the conv/SSM state of recurrent ones — and runs only a
//! turn's new tokens. If that state were wrong, turn 2's greedy reply would
//! differ from the one the model gives the same tokens run from scratch: for
//! an attention, a Mamba-2 and a hybrid fixture, every reply token must be
//! the argmax of `logits --mode prefill` over the whole conversation's ids at
//! the position before it (so the reply is the from-scratch greedy one).

mod generated;
mod support;

use std::path::Path;

use forge_runtime::cli::{verbose_ids, TurnReport};
use generated::{argmax, build, case_dir, compile, read_npy, run, run_with_stdin};
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

fn check(name: &str, fixture: &str) {
    let dir = case_dir(name);
    let project = dir.join("project");
    let model = repo_root().join("tests/fixtures").join(fixture).join("hf");
    compile(&model, &project, name, &[]);
    let binary = build(&project);
    let stderr = chat_two_turns(&binary);
    let prompts = verbose_ids(&stderr, "prompt ids");
    let replies = verbose_ids(&stderr, "reply ids");
    assert_eq!((prompts.len(), replies.len()), (2, 2), "{stderr}");
    let second = TurnReport::find(&stderr, 2).unwrap();
    assert!(second.reused > 0, "turn 2 reused nothing:\n{stderr}");

    // The whole sequence as the model ran it. When --max-tokens cut reply 1,
    // its last token ran first in turn 2, as turn 2's first id.
    let first = TurnReport::find(&stderr, 1).unwrap();
    let cut = !first.stopped_by_token();
    let mut ids = prompts[0].clone();
    let mut reply_positions = Vec::new();
    let mut generate = |ids: &mut Vec<u32>, reply: &[u32]| {
        for &token in reply {
            reply_positions.push((ids.len() - 1, token));
            ids.push(token);
        }
    };
    generate(&mut ids, &replies[0]);
    assert_eq!(second.reused, ids.len() - cut as usize, "{stderr}");
    if cut {
        assert_eq!(prompts[1].first(), replies[0].last(), "{stderr}");
    }
    ids.extend_from_slice(&prompts[1][cut as usize..]);
    generate(&mut ids, &replies[1]);
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
    for (position, token) in reply_positions {
        let row = &logits.data[position * logits.cols..(position + 1) * logits.cols];
        assert_eq!(
            argmax(row) as u32,
            token,
            "{name}: the reply token after position {position} is not the from-scratch greedy one"
        );
    }
}

#[test]
fn attention_kv_cache_carries_over() {
    check("chat_reuse_llama3", "llama3");
}

#[test]
fn mamba2_state_carries_over() {
    check("chat_reuse_mamba2", "mamba2");
}

#[test]
fn hybrid_state_carries_over() {
    check("chat_reuse_granite4h", "granite4h");
}
