//! `chat`: an interactive conversation. Each line of stdin is a user message;
//! the conversation is rendered with the model's chat template, the reply is
//! streamed to stdout, and the model's sequence (KV cache and recurrent
//! state) carries over from turn to turn, so a turn runs only its own tokens.
//! At the end of each turn stderr says how many tokens were run and how many
//! were reused from the cache.

mod conversation;
pub mod report;
pub(super) mod stops;

use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;

use super::chat_template::open_template;
use super::sampling::{continue_sequence, SamplingArgs, Stop};
use super::tokenize::{open_tokenizer, prompt_ids};
use super::{load, per_second, Project, WeightsArg};
use crate::gpu::GpuOptions;
use crate::model::CompiledModel;
use crate::session::Session;
use conversation::{Conversation, Feed};
use report::{
    TurnReport, PROMPT_IDS_LABEL, PROMPT_LABEL, REPLY_IDS_LABEL, REPLY_LABEL, STOPS_LABEL,
};

#[derive(Args)]
pub(super) struct ChatArgs {
    /// A system message opening the conversation.
    #[arg(long, allow_hyphen_values = true)]
    system: Option<String>,
    /// Tokens a reply may have at most.
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    /// Print on stderr the ids that end a reply, and per turn the text (as a
    /// JSON string) and ids it feeds the model and the reply's text and ids.
    #[arg(long)]
    verbose_prompt: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    weights: WeightsArg,
}

/// Cuts the session back to the longest prefix of `held` (the tokens it
/// holds) that `all` (the whole conversation's tokens) starts with, leaving at
/// least one token of `all` to run; a model with recurrent state cannot be
/// cut back and starts over. Returns the tokens kept.
fn rewind<M: CompiledModel>(session: &mut Session<M>, held: &[u32], all: &[u32]) -> usize {
    let common = held.iter().zip(all).take_while(|(a, b)| a == b).count();
    let keep = match M::INFO.recurrent_state {
        true => 0,
        false => common.min(all.len().saturating_sub(1)),
    };
    match keep {
        0 => session.reset(),
        _ => session
            .truncate(keep)
            .expect("a model without recurrent state cuts back within its sequence"),
    }
    keep
}

pub(super) fn chat<M: CompiledModel>(
    project: &Project,
    args: ChatArgs,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let info = M::INFO;
    let tokenizer = open_tokenizer::<M>(project, "chat")?;
    let template = open_template(project, err)?;
    let (mut picker, seed) = args.sampling.picker::<M>()?;
    let stops = stops::stop_ids(project.text.eos_ids, &template, &tokenizer);
    if args.verbose_prompt {
        writeln!(err, "{STOPS_LABEL}: {stops:?}")?;
    }
    let mut session = load::<M>(project, args.weights.weights, GpuOptions::default())?;
    let interactive = std::io::stdin().is_terminal();
    let mut conversation = Conversation::new(args.system.as_deref());
    // Every token the sequence holds, for the repeat penalty.
    let mut history: Vec<u32> = Vec::new();
    // The last reply's final token when the model has not run it yet.
    let mut pending: Option<u32> = None;
    let mut turn = 0;
    let mut line = String::new();
    loop {
        if interactive {
            write!(out, "> ")?;
            out.flush()?;
        }
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        let message = line.trim_end_matches(['\n', '\r']);
        if message.trim().is_empty() {
            continue;
        }
        turn += 1;
        let (text, restart) = match conversation.user_turn(&template, message)? {
            Feed::Append(text) => (text, false),
            Feed::Restart(text) => (text, true),
        };
        let ids = if restart {
            let mut all = prompt_ids(&tokenizer, project.text.bos_id, &text)?;
            let held = session.position();
            let keep = rewind(&mut session, &history[..held], &all);
            if held > 0 {
                writeln!(
                    err,
                    "turn {turn}: the template rewrote earlier turns; {keep} of the {held} tokens held are kept, the rest runs again"
                )?;
            }
            history.truncate(keep);
            pending = None;
            all.split_off(keep.min(all.len()))
        } else {
            let mut ids: Vec<u32> = pending.take().into_iter().collect();
            ids.extend(tokenizer.tokenize(&text, false, true)?);
            ids
        };
        if ids.is_empty() {
            bail!("turn {turn}: the template rendered nothing to run");
        }
        // Room for the prompt and at least one reply token.
        if session.position() + ids.len() >= info.context_length {
            bail!(
                "turn {turn}: the conversation ({} tokens held, {} new) has reached the context of {} tokens",
                session.position(),
                ids.len(),
                info.context_length
            );
        }
        if args.verbose_prompt {
            writeln!(err, "{PROMPT_LABEL}: {}", serde_json::to_string(&text)?)?;
            writeln!(err, "{PROMPT_IDS_LABEL}: {ids:?}")?;
        }
        let reused = session.position();
        let start = Instant::now();
        let reply = continue_sequence(
            &mut session,
            &mut picker,
            &tokenizer,
            &ids,
            &mut history,
            &stops,
            args.max_tokens,
            out,
        )?;
        writeln!(out)?;
        out.flush()?;
        if reply.last_pending {
            pending = reply.tokens.last().copied();
        }
        conversation.assistant_reply(&reply.text);
        if args.verbose_prompt {
            writeln!(
                err,
                "{REPLY_LABEL}: {}",
                serde_json::to_string(&reply.text)?
            )?;
            writeln!(err, "{REPLY_IDS_LABEL}: {:?}", reply.tokens)?;
        }
        let ended = match reply.stop {
            Stop::Token(id) => format!("ended by token {id}"),
            Stop::MaxTokens => format!("cut at --max-tokens {}", args.max_tokens),
            Stop::ContextFull => {
                format!("cut: the context of {} tokens is full", info.context_length)
            }
        };
        let report = TurnReport {
            turn,
            prefilled: ids.len(),
            reused,
            generated: reply.tokens.len(),
            ended,
        };
        writeln!(
            err,
            "{report}; prefill {:.1} tok/s, decode {:.1} tok/s; {:.1} s",
            per_second(ids.len(), reply.prefill_time),
            per_second(reply.tokens.len().saturating_sub(1), reply.decode_time),
            start.elapsed().as_secs_f64()
        )?;
        if reply.stop == Stop::ContextFull {
            bail!(
                "the conversation filled the context of {} tokens",
                info.context_length
            );
        }
    }
    if interactive {
        writeln!(out)?;
    }
    let plural = if turn == 1 { "" } else { "s" };
    writeln!(err, "{turn} turn{plural}; seed {seed}")?;
    Ok(())
}
