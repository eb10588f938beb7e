//! The HTTP side: routes, request bodies (bounded), turning a request into
//! a [`Job`] for the engine, and replies — a whole JSON body, or a stream of
//! server-sent events written as the engine produces them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::api_error::ApiError;
use super::engine::{Event, Job};
use super::requests::{parse_chat, parse_completion, Generation, Prompt, Served};
use super::responses::{event, model_object, Endpoint, Reply, DONE_EVENT};
use crate::chat_template::{ChatInputs, ChatTemplate};
use crate::cli::tokenize::prompt_ids;
use crate::text::Tokenizer;

/// What every connection's handler shares.
pub(super) struct Server {
    pub served: Served,
    pub tokenizer: Arc<Tokenizer>,
    pub template: ChatTemplate,
    pub bos_id: Option<u32>,
    pub context_length: usize,
    /// Largest request body, bytes.
    pub body_limit: usize,
    /// Unix seconds at start, the model's `created`.
    pub started: u64,
    pub jobs: Sender<Job>,
    pub log: UnboundedSender<String>,
    pub next_id: AtomicU64,
}

/// A reply body: one JSON document, or events as they come.
pub(super) enum ReplyBody {
    Whole(Option<Bytes>),
    Events(EventStream),
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ReplyBody::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ReplyBody::Events(stream) => {
                stream.poll_event(cx).map(|e| e.map(|b| Ok(Frame::data(b))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ReplyBody::Whole(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplyBody::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ReplyBody::Events(_) => SizeHint::default(),
        }
    }
}

/// A streamed reply: each engine event becomes server-sent events, handed
/// to hyper one at a time, so each is written to the socket when it exists.
pub(super) struct EventStream {
    events: UnboundedReceiver<Event>,
    reply: Reply,
    include_usage: bool,
    queued: VecDeque<String>,
    ended: bool,
}

impl EventStream {
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            if let Some(text) = self.queued.pop_front() {
                return Poll::Ready(Some(Bytes::from(text)));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match std::task::ready!(self.events.poll_recv(cx)) {
                Some(Event::Text(text)) => {
                    self.queued.push_back(event(&self.reply.text_chunk(&text)))
                }
                Some(Event::Done(finish, usage)) => {
                    self.queued
                        .push_back(event(&self.reply.finish_chunk(finish)));
                    if self.include_usage {
                        self.queued.push_back(event(&self.reply.usage_chunk(usage)));
                    }
                    self.finish();
                }
                Some(Event::Failed(message)) => {
                    self.queued
                        .push_back(event(&ApiError::server(message).body()));
                    self.finish();
                }
                // The engine dropped the request without a word: end the stream cleanly.
                None => self.finish(),
            }
        }
    }

    fn finish(&mut self) {
        self.queued.push_back(DONE_EVENT.to_string());
        self.ended = true;
    }
}

/// hyper's service: every request gets a response, errors included.
pub(super) async fn handle(
    server: Arc<Server>,
    request: Request<Incoming>,
) -> Result<Response<ReplyBody>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = route(&server, request).await.unwrap_or_else(|e| {
        let _ = server
            .log
            .send(format!("{method} {path}: {} {}", e.status, e.message));
        json_response(e.status, &e.body())
    });
    Ok(response)
}

async fn route(
    server: &Server,
    request: Request<Incoming>,
) -> Result<Response<ReplyBody>, ApiError> {
    let path = request.uri().path().to_string();
    let model_id = &server.served.model_id;
    match (request.method(), path.as_str()) {
        (&Method::GET, "/health") => Ok(json_response(200, &json!({"status": "ok"}))),
        (&Method::GET, "/v1/models") => Ok(json_response(
            200,
            &json!({"object": "list", "data": [model_object(model_id, server.started)]}),
        )),
        (&Method::GET, p) if p.strip_prefix("/v1/models/") == Some(model_id.as_str()) => {
            Ok(json_response(200, &model_object(model_id, server.started)))
        }
        (&Method::GET, p) if p.starts_with("/v1/models/") => Err(ApiError::invalid(
            format!(
                "the model '{}' does not exist; this server serves '{model_id}'",
                &p[11..]
            ),
            Some("model"),
        )
        .with_status(404)
        .with_code("model_not_found")),
        (&Method::POST, "/v1/chat/completions") => {
            let body = read_body(request, server.body_limit).await?;
            let chat = parse_chat(&body, &server.served)?;
            let (prompt, boundaries) = chat_prompt(server, &chat.messages)?;
            submit(server, Endpoint::Chat, prompt, boundaries, chat.generation).await
        }
        (&Method::POST, "/v1/completions") => {
            let body = read_body(request, server.body_limit).await?;
            let completion = parse_completion(&body, &server.served)?;
            let prompt = match completion.prompt {
                // As `generate`: special-token text parsed, the model's BOS added.
                Prompt::Text(text) => {
                    server.tokenizer.tokenize(&text, true, true).map_err(|e| {
                        ApiError::invalid(
                            format!("the prompt cannot be tokenized: {e:#}"),
                            Some("prompt"),
                        )
                    })?
                }
                Prompt::Tokens(ids) => ids,
            };
            submit(
                server,
                Endpoint::Completion,
                prompt,
                Vec::new(),
                completion.generation,
            )
            .await
        }
        (_, "/health" | "/v1/models" | "/v1/chat/completions" | "/v1/completions") => {
            Err(ApiError::invalid(
                format!("{} is not allowed on {path}", request.method()),
                None,
            )
            .with_status(405))
        }
        _ => Err(ApiError::invalid(format!("no such endpoint: {path}"), None).with_status(404)),
    }
}

/// The body, refused with 413 past `limit` bytes.
async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::invalid(
            format!("the request body is larger than {limit} bytes"),
            None,
        )
        .with_status(413)
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::invalid(
            format!("the request body could not be read: {e}"),
            None,
        )),
    }
}

/// The conversation's prompt ids, and the ends of its messages among them
/// (where the rendering of the first k messages is a prefix of the whole).
fn chat_prompt(
    server: &Server,
    messages: &[(String, String)],
) -> Result<(Vec<u32>, Vec<usize>), ApiError> {
    let inputs = |k: usize| {
        ChatInputs::from_messages(messages[..k].iter().map(|(r, c)| (r.as_str(), c.as_str())))
    };
    let text = server
        .template
        .render(&inputs(messages.len()), true)
        .map_err(|e| {
            ApiError::invalid(
                format!("the chat template refused the messages: {e:#}"),
                Some("messages"),
            )
        })?;
    let ids = |text: &str| prompt_ids(&server.tokenizer, server.bos_id, text);
    let prompt = ids(&text).map_err(|e| {
        ApiError::invalid(
            format!("the messages cannot be tokenized: {e:#}"),
            Some("messages"),
        )
    })?;
    let mut boundaries = Vec::new();
    for k in 1..=messages.len() {
        // A template may refuse a conversation that does not end with a user turn: no boundary then.
        let Ok(part) = server.template.render(&inputs(k), false) else {
            continue;
        };
        if let Ok(part_ids) = ids(&part) {
            if part_ids.len() < prompt.len() && prompt.starts_with(&part_ids) {
                boundaries.push(part_ids.len());
            }
        }
    }
    boundaries.dedup();
    Ok((prompt, boundaries))
}

/// Checks the prompt against the context, queues the job and replies.
async fn submit(
    server: &Server,
    endpoint: Endpoint,
    prompt: Vec<u32>,
    boundaries: Vec<usize>,
    generation: Generation,
) -> Result<Response<ReplyBody>, ApiError> {
    let context = server.context_length;
    let vocab = server.served.vocab_size;
    if prompt.is_empty() {
        return Err(ApiError::invalid("the prompt is empty", Some("prompt")));
    }
    if let Some(t) = prompt.iter().find(|&&t| t as usize >= vocab) {
        return Err(ApiError::invalid(
            format!("token id {t} is outside the vocabulary of {vocab}"),
            Some("prompt"),
        ));
    }
    let exceeded = |asked: usize| {
        ApiError::invalid(
            format!(
                "this model's maximum context length is {context} tokens; the request asks for {asked} ({} in the prompt, {} to generate)",
                prompt.len(),
                asked - prompt.len()
            ),
            Some(match endpoint {
                Endpoint::Chat => "messages",
                Endpoint::Completion => "prompt",
            }),
        )
        .with_code("context_length_exceeded")
    };
    if prompt.len() >= context {
        return Err(exceeded(prompt.len() + 1));
    }
    let max_tokens = match generation.max_tokens {
        Some(n) if n > context - prompt.len() => {
            return Err(exceeded(prompt.len().saturating_add(n)))
        }
        Some(n) => n,
        None => context - prompt.len(),
    };
    let id = server.next_id.fetch_add(1, Ordering::Relaxed);
    let reply = Reply {
        endpoint,
        id: match endpoint {
            Endpoint::Chat => format!("chatcmpl-{id}"),
            Endpoint::Completion => format!("cmpl-{id}"),
        },
        created: unix_seconds(),
        model: server.served.model_id.clone(),
    };
    let (events, mut received) = unbounded_channel();
    let stream = generation.stream;
    let include_usage = generation.include_usage;
    let job = Job {
        id,
        prompt,
        boundaries,
        generation,
        max_tokens,
        events,
        received: Instant::now(),
    };
    if server.jobs.send(job).is_err() {
        return Err(ApiError::server("the inference thread has stopped").with_status(503));
    }
    if stream {
        let mut queued = VecDeque::new();
        queued.extend(reply.role_chunk().map(|c| event(&c)));
        let body = ReplyBody::Events(EventStream {
            events: received,
            reply,
            include_usage,
            queued,
            ended: false,
        });
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(response);
    }
    let mut text = String::new();
    while let Some(event) = received.recv().await {
        match event {
            Event::Text(piece) => text.push_str(&piece),
            Event::Done(finish, usage) => {
                return Ok(json_response(200, &reply.whole(&text, finish, usage)))
            }
            Event::Failed(message) => return Err(ApiError::server(message)),
        }
    }
    Err(ApiError::server("the inference thread dropped the request"))
}

fn json_response(status: u16, value: &Value) -> Response<ReplyBody> {
    let mut response = Response::new(ReplyBody::Whole(Some(Bytes::from(value.to_string()))));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub(super) fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
