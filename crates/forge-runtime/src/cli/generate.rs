//! `generate`: continue a prompt, streaming text as the tokens arrive.

use std::io::Write;

use anyhow::{bail, Result};
use clap::Args;

use super::sampling::{continue_sequence, SamplingArgs, Stop};
use super::tokenize::open_tokenizer;
use super::{load, per_second, Project, WeightsArg};
use crate::gpu::GpuOptions;
use crate::model::CompiledModel;

#[derive(Args)]
pub(super) struct GenerateArgs {
    #[arg(long)]
    prompt: String,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    weights: WeightsArg,
}

pub(super) fn generate<M: CompiledModel>(
    project: &Project,
    args: GenerateArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let info = M::INFO;
    let text = &project.text;
    let tokenizer = open_tokenizer::<M>(project, "generate")?;
    let (mut picker, seed) = args.sampling.picker::<M>()?;
    // As llama.cpp's llama-cli: special-token text parsed, the model's BOS added.
    let prompt = tokenizer.tokenize(&args.prompt, true, true)?;
    if prompt.is_empty() {
        bail!("the prompt is empty and this model starts without a BOS token: there is nothing to continue");
    }
    if prompt.len() > info.context_length {
        bail!(
            "the prompt is {} tokens; the model's context holds {}",
            prompt.len(),
            info.context_length
        );
    }
    let mut session = load::<M>(project, args.weights.weights, GpuOptions::default())?;
    let mut history = Vec::new();
    let continuation = continue_sequence(
        &mut session,
        &mut picker,
        &tokenizer,
        &prompt,
        &mut history,
        text.eos_ids,
        args.max_tokens,
        out,
    )?;
    writeln!(out)?;
    // The summary goes to stderr: flush first so it never lands mid-line.
    out.flush()?;
    if continuation.stop == Stop::ContextFull {
        writeln!(
            err,
            "stopped: the context of {} tokens is full",
            info.context_length
        )?;
    }
    let generated = continuation.tokens.len();
    writeln!(
        err,
        "{generated} tokens; prefill {} tokens at {:.1} tok/s, decode {:.1} tok/s; seed {seed}",
        prompt.len(),
        per_second(prompt.len(), continuation.prefill_time),
        per_second(generated.saturating_sub(1), continuation.decode_time)
    )?;
    Ok(())
}
