//! `serve` on the real SmolLM2-135M-Instruct (Q4_1 GGUF, its own chat
//! template): the official `openai` Python client (PyPI, installed by the
//! test command) chats whole and streamed, completes text, lists the model
//! and gets OpenAI errors; the raw client sees tokens arrive one by one —
//! the first long before the last — and the same text as a whole reply.

mod generated;
mod server;
mod support;

use std::process::Command;

use generated::{build, case_dir, compile};
use serde_json::{json, Value};
use server::Server;
use support::{cached_model, repo_root};

/// The decode rate the server logged for request `id`, tokens per second.
fn decode_rate(log: &str, id: u64) -> f64 {
    let line = log
        .lines()
        .find(|l| l.starts_with(&format!("request {id}: ")))
        .unwrap_or_else(|| panic!("no log line for request {id}:\n{log}"));
    line.split("decode ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no decode rate in {line:?}"))
}

#[test]
fn smollm2_serves_the_openai_client_and_streams_token_by_token() {
    let gguf = cached_model("SmolLM2-135M-Instruct.Q4_1.gguf");
    let name = "serve_smollm2";
    let project = case_dir(name).join("project");
    compile(&gguf, &project, name, &[]);
    let binary = build(&project);
    let server = Server::start(&binary, &[]);
    // The package name, as Cargo spells it.
    let model = "serve-smollm2";

    let script = repo_root().join("crates/forge/tests/server/openai_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{}/v1", server.port))
        .arg(model)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the openai client failed (scripts/install_tools.sh python installs it):\n{}\nserver:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("the client's report is JSON");
    assert_eq!(report["models"], json!([model]));
    let chat = &report["chat"];
    let stream = &report["stream"];
    let content = chat["content"].as_str().unwrap();
    assert!(!content.trim().is_empty(), "{report}");
    // Greedy: the streamed reply is the whole one, piece by piece.
    assert_eq!(stream["content"], chat["content"], "{report}");
    assert_eq!(stream["finish_reason"], chat["finish_reason"]);
    assert_eq!(
        stream["usage"]["completion_tokens"],
        chat["usage"]["completion_tokens"]
    );
    assert_eq!(
        stream["usage"]["prompt_tokens"],
        chat["usage"]["prompt_tokens"]
    );
    // The same prompt again: all but its last token come from the cache.
    let prompt_tokens = chat["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(
        stream["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64(),
        Some(prompt_tokens - 1),
        "{report}"
    );
    assert!(stream["pieces"].as_u64().unwrap() >= 2, "{report}");
    assert!(!report["completion"]["text"].as_str().unwrap().is_empty());
    assert_eq!(report["errors"]["unknown_model"]["status"], 404, "{report}");
    assert_eq!(
        report["errors"]["bad_temperature"]["status"], 400,
        "{report}"
    );

    // The raw client: the first token arrives long before the last one. A
    // server that buffered the reply would deliver them together; here they
    // are at least half the logged decode time apart.
    let body = json!({
        "model": model,
        "messages": [{"role": "user", "content": "Count from one to twenty in words."}],
        "temperature": 0,
        "max_tokens": 24,
        "stream": true,
    });
    let streamed = server.stream("/v1/chat/completions", &body);
    let texts: Vec<_> = streamed
        .events
        .iter()
        .filter(|e| !e.is_done() && server::chunk_text(&e.json()).is_some_and(|t| !t.is_empty()))
        .collect();
    assert!(texts.len() >= 10, "{} text events", texts.len());
    let spread = texts.last().unwrap().at - texts[0].at;
    // The openai script's accepted requests were 1 to 3 (refused ones get no number): this is 4.
    let rate = decode_rate(&server.log(), 4);
    let decode_time = (texts.len() - 1) as f64 / rate;
    assert!(
        spread.as_secs_f64() >= 0.5 * decode_time,
        "text events {:.3} s apart over {} tokens decoded at {rate:.1} tok/s\n{}",
        spread.as_secs_f64(),
        texts.len(),
        server.log()
    );
    let mut whole = body.clone();
    whole["stream"] = json!(false);
    let reply = server.post("/v1/chat/completions", &whole).json();
    assert_eq!(
        reply["choices"][0]["message"]["content"].as_str(),
        Some(streamed.text().as_str())
    );
}
