//! Request bodies of `/v1/chat/completions` and `/v1/completions`, parsed
//! and checked into what the engine runs: every value that would make the
//! request meaningless is refused here with a 400 naming the parameter.

use serde::Deserialize;

use super::api_error::ApiError;
use crate::cli::SamplingDefaults;
use crate::sampler::SamplingParams;

/// What the checks need to know about the served model.
pub(super) struct Served {
    /// The one model name requests may ask for.
    pub model_id: String,
    pub defaults: SamplingDefaults,
    /// Candidates the GPU returns per step (the largest useful `top_k`).
    pub top_candidates: usize,
    pub vocab_size: usize,
}

/// How a request wants its continuation made.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Generation {
    /// `max_completion_tokens` or `max_tokens`; `None` runs to the end of the context.
    pub max_tokens: Option<usize>,
    pub sampling: SamplingParams,
    pub repeat_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk carries the usage.
    pub include_usage: bool,
    /// llama.cpp's `cache_prompt`: false runs the whole prompt from scratch.
    pub cache_prompt: bool,
}

pub(super) struct ChatRequest {
    /// (role, content), content flattened to text.
    pub messages: Vec<(String, String)>,
    pub generation: Generation,
}

pub(super) struct CompletionRequest {
    pub prompt: Prompt,
    pub generation: Generation,
}

pub(super) enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

#[derive(Deserialize)]
struct ChatBody {
    model: String,
    messages: Vec<MessageBody>,
    #[serde(flatten)]
    options: Options,
}

#[derive(Deserialize)]
struct MessageBody {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

/// A message's content: a string, or OpenAI's list of parts.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<PartBody>),
}

#[derive(Deserialize)]
struct PartBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct CompletionBody {
    model: String,
    prompt: PromptBody,
    #[serde(default)]
    echo: Option<bool>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(flatten)]
    options: Options,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PromptBody {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StopBody {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// The sampling and streaming options both endpoints share.
#[derive(Deserialize)]
struct Options {
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    seed: Option<i64>,
    stop: Option<StopBody>,
    n: Option<u64>,
    logprobs: Option<serde_json::Value>,
    top_logprobs: Option<u64>,
    cache_prompt: Option<bool>,
}

/// OpenAI accepts at most four stop sequences.
const MAX_STOPS: usize = 4;

pub(super) fn parse_chat(body: &[u8], served: &Served) -> Result<ChatRequest, ApiError> {
    let body: ChatBody = parse_json(body)?;
    check_model(&body.model, served)?;
    if body.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages must hold at least one message",
            Some("messages"),
        ));
    }
    let messages = body
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| Ok((m.role, content_text(m.content, i)?)))
        .collect::<Result<_, ApiError>>()?;
    Ok(ChatRequest {
        messages,
        generation: generation(body.options, served)?,
    })
}

pub(super) fn parse_completion(
    body: &[u8],
    served: &Served,
) -> Result<CompletionRequest, ApiError> {
    let body: CompletionBody = parse_json(body)?;
    check_model(&body.model, served)?;
    if body.echo == Some(true) {
        return Err(unsupported("echo"));
    }
    if body.suffix.is_some() {
        return Err(unsupported("suffix"));
    }
    let one = || {
        ApiError::invalid(
            "this server completes one prompt per request",
            Some("prompt"),
        )
    };
    let prompt = match body.prompt {
        PromptBody::Text(text) => Prompt::Text(text),
        PromptBody::Tokens(ids) => Prompt::Tokens(ids),
        PromptBody::Texts(texts) => Prompt::Text(single(texts).ok_or_else(one)?),
        PromptBody::TokenLists(lists) => Prompt::Tokens(single(lists).ok_or_else(one)?),
    };
    Ok(CompletionRequest {
        prompt,
        generation: generation(body.options, served)?,
    })
}

fn single<T>(mut items: Vec<T>) -> Option<T> {
    match items.len() {
        1 => items.pop(),
        _ => None,
    }
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    // serde_json refuses nesting deeper than 128 levels, so hostile input cannot exhaust the stack.
    serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            format!("the request body is not a valid request: {e}"),
            None,
        )
    })
}

fn check_model(model: &str, served: &Served) -> Result<(), ApiError> {
    if model == served.model_id {
        return Ok(());
    }
    Err(ApiError::invalid(
        format!(
            "the model '{model}' does not exist; this server serves '{}'",
            served.model_id
        ),
        Some("model"),
    )
    .with_status(404)
    .with_code("model_not_found"))
}

fn content_text(content: Option<Content>, index: usize) -> Result<String, ApiError> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(text)) => Ok(text),
        Some(Content::Parts(parts)) => parts
            .into_iter()
            .map(|part| match (part.kind.as_str(), part.text) {
                ("text", Some(text)) => Ok(text),
                (kind, _) => Err(ApiError::invalid(
                    format!("message {index}: content parts of type '{kind}' are not supported (text only)"),
                    Some("messages"),
                )),
            })
            .collect(),
    }
}

fn unsupported(param: &'static str) -> ApiError {
    ApiError::invalid(
        format!("{param} is not supported by this server"),
        Some(param),
    )
}

/// Checks `value` against `ok`, naming the parameter and its range when it fails.
fn checked(
    value: Option<f32>,
    default: f32,
    param: &'static str,
    range: &str,
    ok: impl Fn(f32) -> bool,
) -> Result<f32, ApiError> {
    let value = value.unwrap_or(default);
    match value.is_finite() && ok(value) {
        true => Ok(value),
        false => Err(ApiError::invalid(
            format!("{param} must be {range}, not {value}"),
            Some(param),
        )),
    }
}

fn generation(o: Options, served: &Served) -> Result<Generation, ApiError> {
    let d = &served.defaults;
    if o.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(
            "this server makes one choice per request (n must be 1)",
            Some("n"),
        ));
    }
    if o.logprobs
        .as_ref()
        .is_some_and(|v| v != &serde_json::Value::Bool(false) && !v.is_null())
        || o.top_logprobs.is_some()
    {
        return Err(unsupported("logprobs"));
    }
    let max_tokens = match o.max_completion_tokens.or(o.max_tokens) {
        None => None,
        Some(0) => {
            return Err(ApiError::invalid(
                "max_tokens must be at least 1",
                Some("max_tokens"),
            ))
        }
        Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
    };
    let temperature = checked(o.temperature, d.temperature, "temperature", ">= 0", |t| {
        t >= 0.0
    })?;
    let top_p = checked(o.top_p, d.top_p, "top_p", "in (0, 1]", |p| {
        p > 0.0 && p <= 1.0
    })?;
    let min_p = checked(o.min_p, d.min_p, "min_p", "in [0, 1]", |p| {
        (0.0..=1.0).contains(&p)
    })?;
    let repeat_penalty = checked(
        o.repeat_penalty,
        d.repeat_penalty,
        "repeat_penalty",
        "> 0",
        |p| p > 0.0,
    )?;
    // Negative penalties would raise tokens the GPU did not return among its candidates.
    let penalty = |v, param| checked(v, 0.0, param, "in [0, 2]", |p| (0.0..=2.0).contains(&p));
    let presence_penalty = penalty(o.presence_penalty, "presence_penalty")?;
    let frequency_penalty = penalty(o.frequency_penalty, "frequency_penalty")?;
    let top_k = match o.top_k {
        None => d.top_k,
        Some(k) if k >= 0 => usize::try_from(k).unwrap_or(usize::MAX),
        Some(k) => {
            return Err(ApiError::invalid(
                format!("top_k must be >= 0 (0 keeps every candidate), not {k}"),
                Some("top_k"),
            ))
        }
    };
    let top_k = match top_k {
        0 => served.top_candidates,
        k => k.min(served.top_candidates),
    };
    let stop = match o.stop {
        None => Vec::new(),
        Some(StopBody::One(s)) => vec![s],
        Some(StopBody::Many(list)) => list,
    };
    if stop.len() > MAX_STOPS || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            format!("stop must be at most {MAX_STOPS} non-empty strings"),
            Some("stop"),
        ));
    }
    let stream = o.stream.unwrap_or(false);
    if o.stream_options.is_some() && !stream {
        return Err(ApiError::invalid(
            "stream_options is only allowed when stream is true",
            Some("stream_options"),
        ));
    }
    Ok(Generation {
        max_tokens,
        sampling: SamplingParams {
            temperature,
            top_k,
            top_p,
            min_p,
        },
        repeat_penalty,
        presence_penalty,
        frequency_penalty,
        // A negative seed is as good a seed as its bits.
        seed: o.seed.map(|s| s as u64),
        stop,
        stream,
        include_usage: o
            .stream_options
            .and_then(|s| s.include_usage)
            .unwrap_or(false),
        cache_prompt: o.cache_prompt.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> Served {
        Served {
            model_id: "tiny".into(),
            defaults: SamplingDefaults {
                temperature: 0.8,
                top_k: 40,
                top_p: 0.95,
                min_p: 0.05,
                repeat_penalty: 1.0,
            },
            top_candidates: 64,
            vocab_size: 100,
        }
    }

    fn chat(body: &str) -> Result<ChatRequest, ApiError> {
        parse_chat(body.as_bytes(), &served())
    }

    fn refused(body: &str) -> ApiError {
        match chat(body) {
            Ok(_) => panic!("accepted {body}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_plain_request_gets_the_models_defaults() {
        let r = chat(r#"{"model":"tiny","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(r.messages, [("user".to_string(), "hi".to_string())]);
        let g = r.generation;
        assert_eq!((g.sampling.temperature, g.sampling.top_k), (0.8, 40));
        assert_eq!((g.max_tokens, g.stream, g.seed), (None, false, None));
    }

    #[test]
    fn options_are_read_as_openai_sends_them() {
        let r = chat(
            r#"{"model":"tiny","messages":[{"role":"system","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"user","content":null}],
               "max_tokens":5,"max_completion_tokens":7,"temperature":0,"top_k":0,"seed":-1,"stop":"\n",
               "stream":true,"stream_options":{"include_usage":true},"n":1,"logprobs":false,"user":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(r.messages[0].1, "ab");
        assert_eq!(r.messages[1].1, "");
        let g = r.generation;
        assert_eq!(g.max_tokens, Some(7));
        assert_eq!((g.sampling.temperature, g.sampling.top_k), (0.0, 64));
        assert_eq!(g.seed, Some(u64::MAX));
        assert_eq!(g.stop, ["\n"]);
        assert!(g.stream && g.include_usage);
    }

    #[test]
    fn bad_requests_are_refused_naming_the_parameter() {
        let m = r#""messages":[{"role":"user","content":"hi"}]"#;
        let table: &[(&str, u16, Option<&str>, &str)] = &[
            ("{", 400, None, "not a valid request"),
            ("[]", 400, None, "not a valid request"),
            (r#"{"messages":[]}"#, 400, None, "missing field `model`"),
            (r#"{"model":"tiny"}"#, 400, None, "missing field `messages`"),
            (
                r#"{"model":"tiny","messages":"hi"}"#,
                400,
                None,
                "invalid type",
            ),
            (
                r#"{"model":"tiny","messages":[]}"#,
                400,
                Some("messages"),
                "at least one",
            ),
            (
                &format!(r#"{{"model":"big",{m}}}"#),
                404,
                Some("model"),
                "does not exist",
            ),
            (
                &format!(r#"{{"model":"tiny",{m},"temperature":"hot"}}"#),
                400,
                None,
                "invalid type",
            ),
            (
                &format!(r#"{{"model":"tiny",{m},"temperature":-1}}"#),
                400,
                Some("temperature"),
                ">= 0",
            ),
            (
                &format!(r#"{{"model":"tiny",{m},"top_p":0}}"#),
                400,
                Some("top_p"),
                "(0, 1]",
            ),
            (
                &format!(r#"{{"model":"tiny",{m},"min_p":2}}"#),
                400,
                Some("min_p"),
                "[0, 1]",
            ),
            (
                &format!(r#"{{"model":"tiny",{m},"top_k":-3}}"#),
                400,
                Some("top_k"),
                ">= 0",
            ),
            (
                &format!(r#"{{"model":"tiny",{m},"max_tokens":0}}"#),
                400,
                Some("max_tokens"),
                "at least 1",
            ),
            (
                &format!(r#"{{"model":"tiny",{m},"max_tokens":-5}}"#),
                400,
                None,
                "invalid value",
            ),
            (
                &format!(r#"{{"model":"tiny",{m},"presence_penalty":-1}}"#),
                400,
                Some("presence_penalty"),
                "[0, 2]",
            ),
            (
                &format!(r#"{{"model":"tiny",{m},"stop":["a","b","c","d","e"]}}"#),
                400,
                Some("stop"),
                "at most 4",
            ),
            (
                &format!(r#"{{"model":"tiny",{m},"stop":[""]}}"#),
                400,
                Some("stop"),
                "non-empty",
            ),
            (
                &format!(r#"{{"model":"tiny",{m},"n":2}}"#),
                400,
                Some("n"),
                "one choice",
            ),
            (
                &format!(r#"{{"model":"tiny",{m},"logprobs":true}}"#),
                400,
                Some("logprobs"),
                "not supported",
            ),
            (
                &format!(r#"{{"model":"tiny",{m},"stream_options":{{}}}}"#),
                400,
                Some("stream_options"),
                "only allowed",
            ),
            (
                r#"{"model":"tiny","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
                400,
                Some("messages"),
                "image_url",
            ),
        ];
        for &(body, status, param, message) in table {
            let e = refused(body);
            assert_eq!((e.status, e.param), (status, param), "{body}: {e:?}");
            assert!(e.message.contains(message), "{body}: {}", e.message);
        }
    }

    #[test]
    fn deeply_nested_json_is_refused_not_recursed_into() {
        // In a field the server does not read, which serde still has to parse.
        let deep = format!(
            r#"{{"model":"tiny","messages":[],"metadata":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(refused(&deep).message.contains("recursion limit"));
    }

    #[test]
    fn completion_prompts_come_as_text_or_token_ids() {
        let parse = |p: &str| {
            parse_completion(
                format!(r#"{{"model":"tiny","prompt":{p}}}"#).as_bytes(),
                &served(),
            )
        };
        assert!(matches!(parse(r#""Once""#).unwrap().prompt, Prompt::Text(t) if t == "Once"));
        assert!(matches!(parse(r#"["Once"]"#).unwrap().prompt, Prompt::Text(t) if t == "Once"));
        assert!(matches!(parse("[1,2]").unwrap().prompt, Prompt::Tokens(t) if t == [1, 2]));
        assert!(matches!(parse("[[1,2]]").unwrap().prompt, Prompt::Tokens(t) if t == [1, 2]));
        assert_eq!(parse(r#"["a","b"]"#).err().unwrap().param, Some("prompt"));
        let echo = parse_completion(br#"{"model":"tiny","prompt":"a","echo":true}"#, &served());
        assert_eq!(echo.err().unwrap().param, Some("echo"));
    }
}
