//! `serve` on tiny fixtures, against the real server on loopback with a raw
//! HTTP client: the OpenAI shapes, streamed text equal to the whole reply,
//! stop strings, the bad-request table, 8 concurrent clients, a client that
//! leaves mid-stream, and prompt-cache hits that answer exactly as a run
//! from scratch does — on an attention model (llama3), a Mamba-2 model and
//! a hybrid (Granite-4.0-H: Mamba-2 and attention layers).

mod generated;
mod server;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use generated::{build, case_dir, compile};
use serde_json::{json, Value};
use server::{EventReader, Server};
use support::repo_root;

const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";

/// Compiles and builds the fixture: (project directory, binary).
fn project(name: &str, fixture: &str) -> (PathBuf, PathBuf) {
    let project = case_dir(name).join("project");
    let checkpoint = repo_root().join("tests/fixtures").join(fixture).join("hf");
    compile(&checkpoint, &project, name, &[]);
    let binary = build(&project);
    (project, binary)
}

/// The README's fenced block in `language` that contains `needle`.
fn readme_block(readme: &str, language: &str, needle: &str) -> String {
    readme
        .split(&format!("```{language}\n"))
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains(needle))
        .unwrap_or_else(|| panic!("the README has no {language} block with {needle:?}"))
        .to_string()
}

/// The generated README's curl and openai examples work as written (against
/// this server's port instead of 8080).
fn readme_examples_work(server: &Server, project: &Path) {
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    let port = format!("127.0.0.1:{}", server.port);
    let curl = readme_block(&readme, "sh", "curl").replace("127.0.0.1:8080", &port);
    let out = Command::new("sh")
        .arg("-c")
        .arg(&curl)
        .output()
        .expect("sh runs");
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && events.ends_with("data: [DONE]\n\n"),
        "{curl}\n{events}"
    );
    assert!(events.contains("\"delta\":{\"content\""), "{events}");
    let python = readme_block(&readme, "python", "OpenAI(").replace("127.0.0.1:8080", &port);
    let out = Command::new("python3")
        .arg("-c")
        .arg(&python)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the README's openai example failed:\n{python}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.ends_with(b"\n"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn messages(turns: &[(&str, &str)]) -> Value {
    turns
        .iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect()
}

/// A greedy chat request for `model`, with `extra` fields merged in.
fn chat_body(model: &str, turns: &[(&str, &str)], extra: Value) -> Value {
    let mut body = json!({
        "model": model,
        "messages": messages(turns),
        "temperature": 0,
        "max_tokens": 8,
    });
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

/// A whole chat reply: (text, usage), after checking the response's shape.
fn chat(server: &Server, body: &Value) -> (String, Value) {
    let response = server.post(CHAT, body);
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
    let v = response.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    let usage = v["usage"].clone();
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        )
    );
    (
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string(),
        usage,
    )
}

fn cached(usage: &Value) -> u64 {
    usage["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap()
}

/// The model id a server reports.
fn model_id(server: &Server) -> String {
    let models = server.get("/v1/models");
    assert_eq!(models.status, 200);
    let v = models.json();
    assert_eq!(v["object"], "list");
    v["data"][0]["id"].as_str().unwrap().to_string()
}

/// Prompt-cache hits answer exactly as the same request run from scratch
/// (`cache_prompt: false`, llama.cpp's switch), greedy, for a conversation's
/// second turn (reusing the first turn's sequence), the same turn after an
/// unrelated request (resumed from a snapshot) and a new conversation sharing
/// the system prompt.
fn check_prompt_cache(server: &Server, model: &str) {
    let system = "You are a terse assistant. Answer with one word, then stop.";
    let from_scratch = json!({"cache_prompt": false});
    let turn1 = [("system", system), ("user", "Name a colour.")];
    let (reply1, usage) = chat(server, &chat_body(model, &turn1, from_scratch.clone()));
    assert_eq!(cached(&usage), 0);
    let turn2 = [
        ("system", system),
        ("user", "Name a colour."),
        ("assistant", reply1.as_str()),
        ("user", "And another one?"),
    ];
    // Turn 2 right after turn 1: the held sequence (turn 1 and its reply) is reused.
    let turn2_body = chat_body(model, &turn2, json!({}));
    let (continuing, usage) = chat(server, &turn2_body);
    assert!(cached(&usage) > 0, "turn 2 reused nothing: {usage}");
    let (fresh, usage) = chat(server, &chat_body(model, &turn2, from_scratch.clone()));
    assert_eq!(cached(&usage), 0);
    assert_eq!(
        continuing, fresh,
        "turn 2 continuing turn 1 differs from turn 2 from scratch"
    );
    // Something unrelated takes the sequence; turn 2 resumes from a snapshot.
    let unrelated = [("user", "Something else entirely.")];
    chat(server, &chat_body(model, &unrelated, json!({})));
    assert_cache_hit(server, &turn2_body, &fresh, "turn 2 after another request");
    // A new conversation with the same system prompt.
    let other = [("system", system), ("user", "Name an animal.")];
    let (fresh, _) = chat(server, &chat_body(model, &other, from_scratch));
    chat(
        server,
        &chat_body(model, &[("user", "Unrelated.")], json!({})),
    );
    let other_body = chat_body(model, &other, json!({}));
    assert_cache_hit(server, &other_body, &fresh, "a shared system prompt");
}

/// `body` reuses cached tokens and answers `fresh`, the reply from scratch.
fn assert_cache_hit(server: &Server, body: &Value, fresh: &str, what: &str) {
    let (reply, usage) = chat(server, body);
    assert!(
        cached(&usage) > 0,
        "{what}: nothing reused: {usage}\n{}",
        server.log()
    );
    assert_eq!(
        reply, fresh,
        "{what}: the reply differs from the one from scratch"
    );
}

#[test]
fn a_transformer_serves_the_openai_api() {
    let (project, binary) = project("serve_llama3", "llama3");
    let mut server = Server::start(&binary, &["--body-limit-kb", "64"]);
    let health = server.get("/health");
    assert_eq!(
        (health.status, health.json()),
        (200, json!({"status": "ok"}))
    );
    let model = model_id(&server);
    // The package name, as Cargo spells it.
    assert_eq!(model, "serve-llama3");
    assert_eq!(
        server.get(&format!("/v1/models/{model}")).json()["id"],
        model.as_str()
    );

    // Streamed chat: the role first, text deltas, the finish reason, [DONE]; the same text as a whole reply.
    let turns = [("system", "Be brief."), ("user", "Say something.")];
    let (whole, usage) = chat(&server, &chat_body(&model, &turns, json!({})));
    assert_eq!(usage["completion_tokens"], 8, "{usage}");
    let stream = server.stream(
        CHAT,
        &chat_body(
            &model,
            &turns,
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    );
    assert_eq!(stream.status, 200);
    let events = &stream.events;
    assert!(
        events.last().unwrap().is_done(),
        "the stream does not end with [DONE]"
    );
    assert_eq!(events[0].json()["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(events[0].json()["object"], "chat.completion.chunk");
    assert_eq!(stream.text(), whole);
    assert_eq!(stream.finish_reason().as_deref(), Some("length"));
    let usage_chunk = events[events.len() - 2].json();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 8);

    // Text completions, whole and streamed.
    let body =
        json!({"model": model, "prompt": "Once upon a time", "max_tokens": 6, "temperature": 0});
    let response = server.post(COMPLETIONS, &body);
    assert_eq!(response.status, 200);
    let v = response.json();
    assert_eq!(v["object"], "text_completion");
    let text = v["choices"][0]["text"].as_str().unwrap().to_string();
    let mut streamed_body = body.clone();
    streamed_body["stream"] = json!(true);
    assert_eq!(server.stream(COMPLETIONS, &streamed_body).text(), text);

    // A stop string cuts the reply where it first appears.
    let chars: Vec<char> = whole.chars().collect();
    if chars.len() >= 4 {
        let stop: String = chars[2..4].iter().collect();
        let cut = &whole[..whole.find(&stop).unwrap()];
        let (text, _) = chat(
            &server,
            &chat_body(&model, &turns, json!({"stop": [stop.clone()]})),
        );
        assert_eq!(text, cut, "stop {stop:?}");
        let stream = server.stream(
            CHAT,
            &chat_body(&model, &turns, json!({"stop": stop, "stream": true})),
        );
        assert_eq!(stream.text(), cut);
        assert_eq!(stream.finish_reason().as_deref(), Some("stop"));
    }

    bad_requests_get_openai_errors(&server, &model);
    eight_clients_at_once(&server, &model);
    a_client_that_leaves_frees_the_model(&server, &model);
    check_prompt_cache(&server, &model);
    readme_examples_work(&server, &project);
    assert!(server.alive(), "the server died:\n{}", server.log());
    assert_eq!(server.get("/health").status, 200);
}

/// Every malformed request is a 4xx with an OpenAI error object, and the server carries on.
fn bad_requests_get_openai_errors(server: &Server, model: &str) {
    let m = json!([{"role": "user", "content": "hi"}]);
    let long_prompt: Vec<u32> = vec![1; 300];
    let deep = format!(
        "{{\"model\":\"{model}\",\"messages\":[],\"x\":{}{}}}",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            CHAT,
            b"{\"model\": ".to_vec(),
            400,
            "not a valid request",
        ),
        (
            "deeply nested JSON",
            CHAT,
            deep.into_bytes(),
            400,
            "recursion limit",
        ),
        (
            "missing messages",
            CHAT,
            json!({"model": model}).to_string().into_bytes(),
            400,
            "missing field `messages`",
        ),
        (
            "missing model",
            CHAT,
            json!({"messages": m}).to_string().into_bytes(),
            400,
            "missing field `model`",
        ),
        (
            "wrong type",
            CHAT,
            json!({"model": model, "messages": m, "max_tokens": "ten"})
                .to_string()
                .into_bytes(),
            400,
            "invalid type",
        ),
        (
            "unknown model",
            CHAT,
            json!({"model": "gpt-9", "messages": m})
                .to_string()
                .into_bytes(),
            404,
            "does not exist",
        ),
        (
            "prompt past the context",
            COMPLETIONS,
            json!({"model": model, "prompt": long_prompt})
                .to_string()
                .into_bytes(),
            400,
            "maximum context length",
        ),
        (
            "max_tokens past the context",
            CHAT,
            json!({"model": model, "messages": m, "max_tokens": 100_000})
                .to_string()
                .into_bytes(),
            400,
            "maximum context length",
        ),
        (
            "token outside the vocabulary",
            COMPLETIONS,
            json!({"model": model, "prompt": [1, 99_999_999]})
                .to_string()
                .into_bytes(),
            400,
            "outside the vocabulary",
        ),
        (
            "body past the limit",
            CHAT,
            vec![b' '; 100 * 1024],
            413,
            "larger than",
        ),
        (
            "unknown endpoint",
            "/v1/embeddings",
            b"{}".to_vec(),
            404,
            "no such endpoint",
        ),
    ];
    for (what, path, body, status, message) in cases {
        let response = server::request(server.port, "POST", path, &body);
        assert_eq!(
            response.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&response.body)
        );
        let error = &response.json()["error"];
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{what}: {error}"
        );
        assert!(error["type"].is_string(), "{what}: {error}");
    }
    let wrong_method = server.get(CHAT);
    assert_eq!(wrong_method.status, 405);
    assert_eq!(
        server.get("/health").status,
        200,
        "the server stopped answering after bad requests"
    );
}

/// Eight clients at once, half streaming: each gets the answer it gets alone.
fn eight_clients_at_once(server: &Server, model: &str) {
    let body = |i: usize| {
        let question = format!("Client {i} asks for number {}.", i * 7);
        chat_body(
            model,
            &[("user", question.as_str())],
            json!({"max_tokens": 6}),
        )
    };
    let alone: Vec<String> = (0..8).map(|i| chat(server, &body(i)).0).collect();
    let answers: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let body = body(i);
                scope.spawn(move || match i % 2 {
                    0 => chat(server, &body).0,
                    _ => {
                        let mut body = body;
                        body["stream"] = json!(true);
                        server.stream(CHAT, &body).text()
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        answers, alone,
        "concurrent clients got other answers than alone"
    );
}

/// A client that closes its connection after the first token stops its
/// generation (the log says how many tokens were made), and the next request is served.
fn a_client_that_leaves_frees_the_model(server: &Server, model: &str) {
    let body = chat_body(
        model,
        &[("user", "Tell me a very long story.")],
        json!({"max_tokens": 200, "stream": true, "temperature": 1.0, "seed": 3}),
    );
    let mut reader = EventReader::open(server.port, CHAT, &body);
    assert_eq!(reader.status, 200);
    loop {
        let event = reader
            .next_event()
            .expect("the stream ended before any text");
        if server::chunk_text(&event.json()).is_some_and(|t| !t.is_empty()) {
            break;
        }
    }
    reader.close();
    let line = server.wait_for_log("the client left");
    let generated: usize = line
        .split(" generated")
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no generated count in {line:?}"));
    assert!(
        generated < 200,
        "generation ran to the end after the client left: {line}"
    );
    let (_, usage) = chat(
        server,
        &chat_body(model, &[("user", "Still there?")], json!({})),
    );
    assert_eq!(
        usage["completion_tokens"].as_u64().map(|n| n > 0),
        Some(true)
    );
}

#[test]
fn mamba2_prompt_cache_hits_answer_as_from_scratch() {
    let (_, binary) = project("serve_mamba2", "mamba2");
    let server = Server::start(&binary, &[]);
    check_prompt_cache(&server, &model_id(&server));
}

#[test]
fn hybrid_prompt_cache_hits_answer_as_from_scratch() {
    let (_, binary) = project("serve_granite4h", "granite4h");
    let server = Server::start(&binary, &[]);
    check_prompt_cache(&server, &model_id(&server));
}
