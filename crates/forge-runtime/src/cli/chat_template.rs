//! `chat-template`: the prompt the model's chat template makes of a
//! conversation, printed exactly (no newline added), as transformers'
//! `apply_chat_template(..., tokenize=False)` returns it. No weights are loaded.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::Project;
use crate::chat_template::{ChatInputs, ChatTemplate, Clock};

#[derive(Args)]
pub(super) struct ChatTemplateArgs {
    /// A JSON list of messages ({"role": ..., "content": ...}), or an object
    /// with "messages" and optionally "tools", "documents" and other keys the
    /// template reads (e.g. "enable_thinking").
    #[arg(long)]
    messages: PathBuf,
    /// End after the last message instead of opening the assistant's turn.
    #[arg(long)]
    no_generation_prompt: bool,
}

pub(super) fn chat_template(
    project: &Project,
    args: ChatTemplateArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let template = open_template(project, err)?;
    let path = &args.messages;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the messages", path.display()))?;
    let inputs = ChatInputs::from_json(&text).with_context(|| path.display().to_string())?;
    let prompt = template.render(&inputs, !args.no_generation_prompt)?;
    out.write_all(prompt.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// The project's chat template (`chat_template.jinja`, compiled in); when it
/// is forge's fallback for a checkpoint without one, says so on `err`.
pub(super) fn open_template(project: &Project, err: &mut dyn Write) -> Result<ChatTemplate> {
    let chat = &project.chat;
    if let Some(format) = chat.fallback {
        writeln!(
            err,
            "note: the checkpoint has no chat template; using forge's {format} format (chat_template.jinja)"
        )?;
    }
    ChatTemplate::new(chat.template, chat.bos_token, chat.eos_token, Clock::Local)
        .with_context(|| format!("{}/chat_template.jinja", project.dir))
}
