//! `generate`: continue a prompt, streaming text as the tokens arrive.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::{load, per_second, Project, WeightsArg};
use crate::gpu::GpuOptions;
use crate::model::{CompiledModel, Readback};
use crate::sampler::{self, Rng, SamplingParams};
use crate::session::{Output, Session};
use crate::text::{TextStream, Tokenizer};

// No defaults here for the sampling flags: `parse` sets the project's.
#[derive(Args)]
pub(super) struct GenerateArgs {
    #[arg(long)]
    prompt: String,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// 0 picks the most likely token every time (greedy).
    #[arg(long, allow_negative_numbers = true)]
    temperature: f32,
    /// Sample among the k most likely tokens; 0, or more than the GPU returns, means all it returns.
    #[arg(long)]
    top_k: usize,
    /// Nucleus sampling: the smallest set of likely tokens whose probability reaches this.
    #[arg(long, allow_negative_numbers = true)]
    top_p: f32,
    /// Drop tokens less likely than this fraction of the most likely one.
    #[arg(long, allow_negative_numbers = true)]
    min_p: f32,
    /// Divide positive logits (multiply negative ones) of recently seen tokens by this; 1 = off.
    #[arg(long, allow_negative_numbers = true)]
    repeat_penalty: f32,
    /// Seed of the sampler (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
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
    if !text.has_tokenizer {
        bail!(
            "generate needs a tokenizer and the checkpoint {} was compiled from has none; `logits --tokens` takes token ids instead",
            info.name
        );
    }
    let params = SamplingParams {
        temperature: args.temperature,
        // The GPU returns `top_candidates` candidates: 0 and larger values mean all of them.
        top_k: match args.top_k {
            0 => info.top_candidates,
            k => k.min(info.top_candidates),
        },
        top_p: args.top_p,
        min_p: args.min_p,
    };
    params.check()?;
    if !(args.repeat_penalty.is_finite() && args.repeat_penalty > 0.0) {
        bail!(
            "--repeat-penalty must be a number > 0, not {}",
            args.repeat_penalty
        );
    }
    let tokenizer = Tokenizer::load(&Path::new(project.dir).join("tokenizer.json"))?;
    let mut prompt = tokenizer.encode(&args.prompt)?;
    if let (true, Some(bos)) = (text.add_bos, text.bos_id) {
        if prompt.first() != Some(&bos) {
            prompt.insert(0, bos);
        }
    }
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
    let seed = args.seed.unwrap_or_else(clock_seed);
    let mut picker = Picker {
        params,
        repeat_penalty: args.repeat_penalty,
        rng: Rng::new(seed),
    };

    let mut history = prompt.clone();
    let start = Instant::now();
    let mut next = picker.next(&mut session, &prompt, &history)?;
    let prefill_time = start.elapsed();
    let mut decode_time = Duration::ZERO;
    let mut stream = TextStream::new(&prompt[prompt.len() - 1..]);
    let mut generated = 0;
    let mut context_full = false;
    while generated < args.max_tokens && !text.eos_ids.contains(&next) {
        generated += 1;
        history.push(next);
        out.write_all(stream.push(&tokenizer, next)?.as_bytes())?;
        out.flush()?;
        if generated == args.max_tokens {
            break;
        }
        if session.position() >= info.context_length {
            context_full = true;
            break;
        }
        let step = Instant::now();
        next = picker.next(&mut session, &[next], &history)?;
        decode_time += step.elapsed();
    }
    out.write_all(stream.finish(&tokenizer)?.as_bytes())?;
    writeln!(out)?;
    // The summary goes to stderr: flush first so it never lands mid-line.
    out.flush()?;
    if context_full {
        writeln!(
            err,
            "stopped: the context of {} tokens is full",
            info.context_length
        )?;
    }
    writeln!(
        err,
        "{generated} tokens; prefill {} tokens at {:.1} tok/s, decode {:.1} tok/s; seed {seed}",
        prompt.len(),
        per_second(prompt.len(), prefill_time),
        per_second(generated.saturating_sub(1), decode_time)
    )?;
    Ok(())
}

/// How each next token is chosen: on the GPU when greedy, else from its candidates.
struct Picker {
    params: SamplingParams,
    repeat_penalty: f32,
    rng: Rng,
}

impl Picker {
    /// Runs `tokens` through the model and picks the token that follows them.
    fn next<M: CompiledModel>(
        &mut self,
        session: &mut Session<M>,
        tokens: &[u32],
        history: &[u32],
    ) -> Result<u32> {
        if self.params.temperature == 0.0 && self.repeat_penalty == 1.0 {
            return session.argmax(tokens);
        }
        let recent = if self.repeat_penalty == 1.0 {
            &[][..]
        } else {
            history
        };
        let readback = Readback::Candidates {
            repeat_penalty: self.repeat_penalty,
            recent,
        };
        match session.forward(tokens, readback)? {
            Output::Candidates(candidates) => {
                sampler::sample(&candidates, &self.params, &mut self.rng)
                    .context("the model's candidate logits are all NaN")
            }
            other => bail!(
                "the model returned {} where candidates were expected",
                other.describe()
            ),
        }
    }
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ ((std::process::id() as u64) << 32)
}
