//! Response bodies in the OpenAI shapes: a whole completion, the chunks of a
//! streamed one (server-sent events ending with `data: [DONE]`), the model
//! list and `usage` with the prompt cache's `cached_tokens`.

use serde_json::{json, Value};

/// Token counts of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens the prompt cache supplied instead of running them.
    pub cached_tokens: usize,
}

impl Usage {
    fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        })
    }
}

/// Why generation ended, as `finish_reason` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FinishReason {
    /// A stop token or a stop string.
    Stop,
    /// `max_tokens`, or the end of the context.
    Length,
}

impl FinishReason {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Endpoint {
    Chat,
    Completion,
}

/// What every response to one request carries: its id, time and model.
#[derive(Clone, Debug)]
pub(super) struct Reply {
    pub endpoint: Endpoint,
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    pub model: String,
}

impl Reply {
    /// A whole (non-streamed) completion.
    pub(super) fn whole(&self, text: &str, finish: FinishReason, usage: Usage) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": finish.as_str(),
            }),
            Endpoint::Completion => json!({
                "index": 0,
                "text": text,
                "logprobs": null,
                "finish_reason": finish.as_str(),
            }),
        };
        self.object(self.whole_object(), vec![choice], Some(usage))
    }

    /// The chunk opening a chat stream: the assistant's role, no text yet.
    pub(super) fn role_chunk(&self) -> Option<Value> {
        match self.endpoint {
            Endpoint::Chat => Some(self.chunk(json!({"role": "assistant", "content": ""}), None)),
            Endpoint::Completion => None,
        }
    }

    /// A chunk carrying the next piece of text.
    pub(super) fn text_chunk(&self, text: &str) -> Value {
        match self.endpoint {
            Endpoint::Chat => self.chunk(json!({"content": text}), None),
            Endpoint::Completion => self.chunk(json!(text), None),
        }
    }

    /// The chunk saying why the stream ended.
    pub(super) fn finish_chunk(&self, finish: FinishReason) -> Value {
        match self.endpoint {
            Endpoint::Chat => self.chunk(json!({}), Some(finish)),
            Endpoint::Completion => self.chunk(json!(""), Some(finish)),
        }
    }

    /// `stream_options.include_usage`'s last chunk: no choices, the usage.
    pub(super) fn usage_chunk(&self, usage: Usage) -> Value {
        self.object(self.chunk_object(), Vec::new(), Some(usage))
    }

    fn chunk(&self, content: Value, finish: Option<FinishReason>) -> Value {
        let finish = finish.map(FinishReason::as_str);
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "delta": content,
                "logprobs": null,
                "finish_reason": finish,
            }),
            Endpoint::Completion => json!({
                "index": 0,
                "text": content,
                "logprobs": null,
                "finish_reason": finish,
            }),
        };
        self.object(self.chunk_object(), vec![choice], None)
    }

    fn whole_object(&self) -> &'static str {
        match self.endpoint {
            Endpoint::Chat => "chat.completion",
            Endpoint::Completion => "text_completion",
        }
    }

    fn chunk_object(&self) -> &'static str {
        match self.endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Completion => "text_completion",
        }
    }

    fn object(&self, object: &str, choices: Vec<Value>, usage: Option<Usage>) -> Value {
        let mut value = json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            value["usage"] = usage.json();
        }
        value
    }
}

/// One server-sent event holding `value`.
pub(super) fn event(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// The event that ends every stream.
pub(super) const DONE_EVENT: &str = "data: [DONE]\n\n";

/// `GET /v1/models/{id}`'s object (and each entry of `GET /v1/models`).
pub(super) fn model_object(id: &str, created: u64) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": "forge"})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(endpoint: Endpoint) -> Reply {
        Reply {
            endpoint,
            id: "chatcmpl-7".into(),
            created: 1,
            model: "tiny".into(),
        }
    }

    #[test]
    fn a_whole_chat_completion_has_openais_fields() {
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 3,
            cached_tokens: 4,
        };
        let v = reply(Endpoint::Chat).whole("Hi", FinishReason::Length, usage);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "Hi");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["total_tokens"], 13);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    }

    #[test]
    fn stream_chunks_carry_deltas_and_end_with_the_reason() {
        let r = reply(Endpoint::Chat);
        assert_eq!(
            r.role_chunk().unwrap()["choices"][0]["delta"]["role"],
            "assistant"
        );
        let text = r.text_chunk("é");
        assert_eq!(text["object"], "chat.completion.chunk");
        assert_eq!(text["choices"][0]["delta"]["content"], "é");
        assert!(text["choices"][0]["finish_reason"].is_null());
        assert_eq!(
            r.finish_chunk(FinishReason::Stop)["choices"][0]["finish_reason"],
            "stop"
        );
        let usage = r.usage_chunk(Usage::default());
        assert_eq!(usage["choices"].as_array().map(Vec::len), Some(0));
        assert_eq!(event(&json!({"a": 1})), "data: {\"a\":1}\n\n");
    }

    #[test]
    fn completion_chunks_carry_text() {
        let r = reply(Endpoint::Completion);
        assert!(r.role_chunk().is_none());
        assert_eq!(r.text_chunk("x")["choices"][0]["text"], "x");
        assert_eq!(
            r.whole("y", FinishReason::Stop, Usage::default())["object"],
            "text_completion"
        );
    }
}
