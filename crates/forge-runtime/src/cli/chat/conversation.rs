//! The conversation `chat` keeps, and which text each new turn feeds the
//! model. As llama.cpp's chat does, a turn is the difference between the
//! rendering with the new message and what the sequence already holds — the
//! previous prompt and the reply exactly as it was generated — so earlier
//! turns are never run again.

use anyhow::Result;

use crate::chat_template::{ChatInputs, ChatTemplate};

pub(super) struct Conversation {
    messages: ChatInputs,
    /// The text the model's sequence holds: the last prompt and the reply after it.
    seen: String,
}

/// What a user turn feeds the model.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Feed {
    /// Text to append to the sequence: the rendering past what it holds.
    Append(String),
    /// The whole rendering, from an empty sequence: the first turn, or a
    /// template that rewrites earlier turns (e.g. drops a reply's reasoning
    /// or trims it), so the rendering no longer extends what the sequence holds.
    Restart(String),
}

impl Conversation {
    /// A conversation opened by `system`, if given.
    pub(super) fn new(system: Option<&str>) -> Conversation {
        Conversation {
            messages: ChatInputs::from_messages(system.map(|s| ("system", s))),
            seen: String::new(),
        }
    }

    /// Adds the user's message and renders the prompt for the reply.
    pub(super) fn user_turn(&mut self, template: &ChatTemplate, text: &str) -> Result<Feed> {
        self.messages.push("user", text);
        let prompt = match template.render(&self.messages, true) {
            Ok(prompt) => prompt,
            Err(e) => {
                self.messages.pop();
                return Err(e);
            }
        };
        let feed = match prompt.strip_prefix(self.seen.as_str()) {
            Some(rest) if !self.seen.is_empty() => Feed::Append(rest.to_string()),
            _ => Feed::Restart(prompt.clone()),
        };
        self.seen = prompt;
        Ok(feed)
    }

    /// Records the reply as it was generated (and as the sequence holds it).
    pub(super) fn assistant_reply(&mut self, text: &str) {
        self.messages.push("assistant", text);
        self.seen.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_template::Clock;

    const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    fn template(source: &str) -> ChatTemplate {
        ChatTemplate::new(source, None, None, Clock::Local).unwrap()
    }

    #[test]
    fn later_turns_feed_only_what_follows_the_reply() {
        let t = template(CHATML);
        let mut c = Conversation::new(Some("Be brief."));
        assert_eq!(
            c.user_turn(&t, "Hi").unwrap(),
            Feed::Restart(
                "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n".into()
            )
        );
        c.assistant_reply("Hello!");
        assert_eq!(
            c.user_turn(&t, "Bye").unwrap(),
            Feed::Append(
                "<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n".into()
            )
        );
    }

    #[test]
    fn a_template_that_rewrites_the_reply_starts_over() {
        // Trims replies, as Llama 2's and Gemma's templates do.
        let t = template("{% for m in messages %}[{{ m.content | trim }}]{% endfor %}");
        let mut c = Conversation::new(None);
        assert_eq!(c.user_turn(&t, "a").unwrap(), Feed::Restart("[a]".into()));
        c.assistant_reply(" b ");
        assert_eq!(
            c.user_turn(&t, "c").unwrap(),
            Feed::Restart("[a][b][c]".into())
        );
    }

    #[test]
    fn a_refused_turn_leaves_the_conversation_as_it_was() {
        let t = template("{% if messages | length > 2 %}{{ raise_exception('too long') }}{% endif %}{% for m in messages %}{{ m.content }}|{% endfor %}");
        let mut c = Conversation::new(None);
        c.user_turn(&t, "a").unwrap();
        c.assistant_reply("b");
        assert!(c.user_turn(&t, "c").is_err());
        assert_eq!(c.messages.len(), 2);
    }
}
