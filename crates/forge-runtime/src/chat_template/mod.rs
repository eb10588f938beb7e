//! The model's chat template: Jinja written for Python's jinja2, rendered by
//! minijinja in the environment transformers' `apply_chat_template` gives it
//! — blocks trimmed, Python's str/dict/list methods, `raise_exception`, its
//! own `tojson`, `strftime_now`, the special tokens as strings — so the
//! prompt is byte for byte the one transformers renders.

mod json;

pub use json::{dumps, python_float_repr, DumpOptions};

use anyhow::{anyhow, bail, Context, Result};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::ValueKind;
use minijinja::{Environment, Error, ErrorKind, Value};

/// What `strftime_now` reads.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    /// The local wall-clock time, as Python's `datetime.now()`.
    Local,
    /// A fixed time, for reproducible renderings.
    Fixed(jiff::civil::DateTime),
}

impl Clock {
    fn now(self) -> jiff::civil::DateTime {
        match self {
            Clock::Local => jiff::ZonedDateTime::now().datetime(),
            Clock::Fixed(t) => t,
        }
    }
}

/// A parsed chat template with the special tokens it is rendered with.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

const NAME: &str = "chat_template.jinja";

impl ChatTemplate {
    /// Parses `source`; `bos_token`/`eos_token` are the strings the template
    /// sees (transformers passes the tokenizer's special tokens the same way).
    pub fn new(
        source: &str,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
        clock: Clock,
    ) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        // transformers: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True);
        // jinja2's default of dropping the source's final newline is minijinja's too.
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", json::tojson);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<Value, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_function(
            "strftime_now",
            move |format: String| -> Result<String, Error> {
                jiff::fmt::strtime::format(&format, clock.now()).map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        format!("strftime_now({format:?}): {e}"),
                    )
                })
            },
        );
        env.add_template_owned(NAME, without_generation_tags(source))
            .map_err(|e| anyhow!("{}", describe(&e)))?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.map(str::to_string),
            eos_token: eos_token.map(str::to_string),
        })
    }

    /// The prompt for `inputs`, ending with the assistant's header when
    /// `add_generation_prompt` (as `apply_chat_template(..., tokenize=False)`).
    pub fn render(&self, inputs: &ChatInputs, add_generation_prompt: bool) -> Result<String> {
        let mut context: Vec<(String, Value)> = vec![
            ("messages".into(), Value::from(inputs.messages.clone())),
            ("tools".into(), inputs.tools.clone()),
            ("documents".into(), inputs.documents.clone()),
            (
                "add_generation_prompt".into(),
                Value::from(add_generation_prompt),
            ),
        ];
        // transformers: {**special_tokens_map, **kwargs}, so a keyword overrides a token.
        for (key, token) in [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
        ] {
            if let Some(token) = token {
                context.push((key.into(), Value::from(token.as_str())));
            }
        }
        context.extend(inputs.extra.iter().cloned());
        let template = self.env.get_template(NAME).expect("added in new");
        template
            .render(Value::from_pairs(context))
            .map_err(|e| anyhow!("{}", describe(&e)))
    }
}

/// One line for a template error: what went wrong and where.
fn describe(e: &Error) -> String {
    let what = match (e.kind(), e.detail()) {
        // raise_exception's message is the template author's: it says it all.
        (ErrorKind::InvalidOperation, Some(detail)) => detail.to_string(),
        (kind, Some(detail)) => format!("{kind}: {detail}"),
        (kind, None) => kind.to_string(),
    };
    match e.line() {
        Some(line) => format!("{what} ({NAME} line {line})"),
        None => what,
    }
}

/// transformers' `{% generation %}…{% endgeneration %}` marks the assistant's
/// text for training masks and renders its body unchanged; minijinja has no
/// such tag, so it becomes `{% if true %}…{% endif %}` with the same
/// whitespace control.
fn without_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return out;
        };
        let inner = &tag[2..end];
        let body = inner
            .trim_start_matches(['-', '+'])
            .trim_end_matches(['-', '+']);
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(keyword) => {
                let leading = &inner[..inner.len() - inner.trim_start_matches(['-', '+']).len()];
                let trailing = &inner[inner.trim_end_matches(['-', '+']).len()..];
                out.push_str(&format!("{{%{leading} {keyword} {trailing}%}}"));
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// What a template renders: `apply_chat_template`'s conversation, `tools`,
/// `documents` and extra keyword arguments, as transformers prepares them.
#[derive(Clone, Debug)]
pub struct ChatInputs {
    messages: Vec<Value>,
    tools: Value,
    documents: Value,
    extra: Vec<(String, Value)>,
}

impl ChatInputs {
    /// A conversation of `(role, content)` pairs.
    pub fn from_messages<'a>(messages: impl IntoIterator<Item = (&'a str, &'a str)>) -> ChatInputs {
        let mut inputs = ChatInputs {
            messages: Vec::new(),
            tools: Value::from(()),
            documents: Value::from(()),
            extra: Vec::new(),
        };
        for (role, content) in messages {
            inputs.push(role, content);
        }
        inputs
    }

    /// Appends a message.
    pub fn push(&mut self, role: &str, content: &str) {
        self.messages.push(Value::from_pairs([
            ("role", Value::from(role)),
            ("content", Value::from(content)),
        ]));
    }

    /// Removes the last message.
    pub fn pop(&mut self) {
        self.messages.pop();
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The conversation in a `--messages` file: a list of messages, or an
    /// object with `messages` and optionally `tools`, `documents` and any
    /// other keys, which the template sees as keyword arguments.
    pub fn from_json(text: &str) -> Result<ChatInputs> {
        // Parsed straight into minijinja values, whose maps keep the file's key order.
        let value: Value = serde_json::from_str(text).context("not valid JSON")?;
        ChatInputs::from_value(value)
    }

    /// [`ChatInputs::from_json`] of an already parsed value.
    pub fn from_value(value: Value) -> Result<ChatInputs> {
        let mut inputs = ChatInputs::from_messages([]);
        let messages = match value.kind() {
            ValueKind::Seq => value,
            ValueKind::Map => {
                for key in value.try_iter()? {
                    let name = key.as_str().unwrap_or_default().to_string();
                    let item = value.get_item(&key)?;
                    match name.as_str() {
                        "messages" => {}
                        "tools" => inputs.tools = item,
                        "documents" => inputs.documents = item,
                        "add_generation_prompt" => bail!(
                            "add_generation_prompt is not read from the file: it is on unless --no-generation-prompt is given"
                        ),
                        _ => inputs.extra.push((name, item)),
                    }
                }
                value
                    .get_item(&Value::from("messages"))
                    .ok()
                    .filter(|m| !m.is_undefined())
                    .ok_or_else(|| anyhow!("the object has no \"messages\" list"))?
            }
            _ => bail!("expected a list of messages or an object with \"messages\""),
        };
        if messages.kind() != ValueKind::Seq {
            bail!("\"messages\" must be a list");
        }
        for (i, message) in messages.try_iter()?.enumerate() {
            if message.kind() != ValueKind::Map {
                bail!("message {i} is not an object with a role and content");
            }
            inputs.messages.push(normalise_message(&message)?);
        }
        if inputs.messages.is_empty() {
            bail!("the conversation has no messages");
        }
        Ok(inputs)
    }
}

/// As transformers does before rendering: keys whose value is null are
/// dropped (templates test for a key, not for None), and a message's
/// reasoning under any of its names is also given as `thinking` and
/// `reasoning_content`, the names templates read.
fn normalise_message(message: &Value) -> Result<Value> {
    let mut entries: Vec<(Value, Value)> = Vec::new();
    for key in message.try_iter()? {
        let item = message.get_item(&key)?;
        if !item.is_none() {
            entries.push((key, item));
        }
    }
    let reasoning = ["reasoning_content", "thinking", "reasoning"]
        .iter()
        .find_map(|name| entries.iter().find(|(k, _)| k.as_str() == Some(name)))
        .map(|(_, v)| v.clone());
    if let Some(reasoning) = reasoning {
        // {"thinking": r, **message, "reasoning_content": r}: `thinking` comes
        // first (with the message's own value if it has one), an existing
        // `reasoning_content` keeps its place, a new one goes last.
        let position = |entries: &[(Value, Value)], name: &str| {
            entries.iter().position(|(k, _)| k.as_str() == Some(name))
        };
        let thinking = match position(&entries, "thinking") {
            Some(i) => entries.remove(i).1,
            None => reasoning.clone(),
        };
        entries.insert(0, (Value::from("thinking"), thinking));
        match position(&entries, "reasoning_content") {
            Some(i) => entries[i].1 = reasoning,
            None => entries.push((Value::from("reasoning_content"), reasoning)),
        }
    }
    Ok(Value::from_pairs(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, inputs: &ChatInputs) -> String {
        ChatTemplate::new(source, Some("<s>"), Some("</s>"), Clock::Local)
            .unwrap()
            .render(inputs, true)
            .unwrap()
    }

    #[test]
    fn generation_tags_render_their_body() {
        let source = "{% for m in messages %}{% generation -%}\n[{{ m.content }}]{%- endgeneration %}{% endfor %}";
        let inputs = ChatInputs::from_messages([("user", "a"), ("assistant", "b")]);
        assert_eq!(render(source, &inputs), "[a][b]");
    }

    #[test]
    fn raise_exception_is_an_error_carrying_its_message() {
        let t = ChatTemplate::new(
            "{{ raise_exception('no system role') }}",
            None,
            None,
            Clock::Local,
        )
        .unwrap();
        let e = t
            .render(&ChatInputs::from_messages([("user", "x")]), true)
            .unwrap_err();
        assert!(e.to_string().contains("no system role"), "{e}");
    }

    #[test]
    fn a_syntax_error_names_the_file_and_line() {
        let e = ChatTemplate::new("ok\n{% if %}", None, None, Clock::Local)
            .err()
            .expect("does not parse");
        assert!(e.to_string().contains("chat_template.jinja"), "{e}");
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn null_keys_are_dropped_and_reasoning_is_aliased() {
        let inputs = ChatInputs::from_json(
            r#"[{"role": "assistant", "content": "x", "tool_calls": null, "reasoning": "r"}]"#,
        )
        .unwrap();
        let out = render(
            "{% for m in messages %}{{ m | tojson }}{{ m.tool_calls is defined }}{% endfor %}",
            &inputs,
        );
        assert_eq!(
            out,
            r#"{"thinking": "r", "role": "assistant", "content": "x", "reasoning": "r", "reasoning_content": "r"}False"#
        );
    }

    #[test]
    fn bad_message_files_say_what_is_wrong() {
        for (text, want) in [
            ("{", "not valid JSON"),
            ("[]", "no messages"),
            ("[1]", "message 0"),
            (r#"{"tools": []}"#, "no \"messages\""),
            ("3", "expected a list"),
        ] {
            let e = ChatInputs::from_json(text).unwrap_err();
            assert!(format!("{e:#}").contains(want), "{text}: {e:#}");
        }
    }
}
