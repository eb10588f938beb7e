//! What `generate` and `chat` share: the sampling flags, choosing each next
//! token, and streaming a continuation until a stop token, a token budget or
//! the end of the context.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::model::{CompiledModel, Readback};
use crate::sampler::{self, Rng, SamplingParams};
use crate::session::{Output, Session};
use crate::text::{TextStream, Tokenizer};

// No defaults here: `parse` sets the project's.
#[derive(Args)]
pub(super) struct SamplingArgs {
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
}

/// The subcommands that take [`SamplingArgs`], whose defaults `parse` sets.
pub(super) const SAMPLING_SUBCOMMANDS: &[&str] = &["generate", "chat"];

impl SamplingArgs {
    /// Checks the flags and makes the picker; returns it with the seed it uses.
    pub(super) fn picker<M: CompiledModel>(&self) -> Result<(Picker, u64)> {
        let info = M::INFO;
        let params = SamplingParams {
            temperature: self.temperature,
            // The GPU returns `top_candidates` candidates: 0 and larger values mean all of them.
            top_k: match self.top_k {
                0 => info.top_candidates,
                k => k.min(info.top_candidates),
            },
            top_p: self.top_p,
            min_p: self.min_p,
        };
        params.check()?;
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            bail!(
                "--repeat-penalty must be a number > 0, not {}",
                self.repeat_penalty
            );
        }
        let seed = self.seed.unwrap_or_else(clock_seed);
        Ok((Picker::new(params, self.repeat_penalty, seed), seed))
    }
}

/// How each next token is chosen: on the GPU when greedy, else from its candidates.
pub(super) struct Picker {
    params: SamplingParams,
    repeat_penalty: f32,
    rng: Rng,
    /// OpenAI's presence and frequency penalties over the tokens this picker chose.
    penalties: Option<ChosenPenalties>,
}

/// OpenAI's penalties: a chosen token's logit loses `presence` once and
/// `frequency` per time it was chosen.
struct ChosenPenalties {
    presence: f32,
    frequency: f32,
    counts: std::collections::HashMap<u32, u32>,
}

impl ChosenPenalties {
    /// Lowers the logits of chosen candidates. Only the GPU's best candidates
    /// are seen: a token outside them that a penalty would let overtake stays
    /// out (llama.cpp's samplers work on a truncated list the same way).
    fn apply(&self, candidates: &mut [(u32, f32)]) {
        for (id, logit) in candidates {
            if let Some(&n) = self.counts.get(id) {
                *logit -= self.presence + self.frequency * n as f32;
            }
        }
    }
}

impl Picker {
    /// A picker with checked `params` (`top_k` within the GPU's candidates).
    pub(super) fn new(params: SamplingParams, repeat_penalty: f32, seed: u64) -> Picker {
        Picker {
            params,
            repeat_penalty,
            rng: Rng::new(seed),
            penalties: None,
        }
    }

    /// Adds OpenAI's presence and frequency penalties (both 0 leaves them off).
    pub(super) fn with_chosen_penalties(mut self, presence: f32, frequency: f32) -> Picker {
        if presence != 0.0 || frequency != 0.0 {
            self.penalties = Some(ChosenPenalties {
                presence,
                frequency,
                counts: Default::default(),
            });
        }
        self
    }

    /// Runs `tokens` through the model and picks the token that follows them.
    pub(super) fn next<M: CompiledModel>(
        &mut self,
        session: &mut Session<M>,
        tokens: &[u32],
        history: &[u32],
    ) -> Result<u32> {
        if self.params.temperature == 0.0 && self.repeat_penalty == 1.0 && self.penalties.is_none()
        {
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
            Output::Candidates(mut candidates) => {
                if let Some(p) = &self.penalties {
                    p.apply(&mut candidates);
                }
                let id = sampler::sample(&candidates, &self.params, &mut self.rng)
                    .context("the model's candidate logits are all NaN")?;
                if let Some(p) = &mut self.penalties {
                    *p.counts.entry(id).or_default() += 1;
                }
                Ok(id)
            }
            other => bail!(
                "the model returned {} where candidates were expected",
                other.describe()
            ),
        }
    }
}

/// Why a continuation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// The model chose this stop token (not part of the continuation, not run).
    Token(u32),
    /// `max_tokens` were generated.
    MaxTokens,
    /// The sequence reached the model's context.
    ContextFull,
}

/// A streamed continuation.
pub(super) struct Continuation {
    /// The generated tokens, without the stop token.
    pub tokens: Vec<u32>,
    /// Their text, as streamed.
    pub text: String,
    pub stop: Stop,
    /// Whether the last of `tokens` is still to be run through the model
    /// (a token budget or a full context ends before it is).
    pub last_pending: bool,
    pub prefill_time: Duration,
    pub decode_time: Duration,
}

/// Runs `prompt` from the session's position, then samples and streams
/// tokens to `out` until one of `stops`, `max_tokens` or the
/// end of the context. `history` (the sequence so far, for the repeat
/// penalty) gains the prompt and every generated token.
#[allow(clippy::too_many_arguments)]
pub(super) fn continue_sequence<M: CompiledModel>(
    session: &mut Session<M>,
    picker: &mut Picker,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    history: &mut Vec<u32>,
    stops: &[u32],
    max_tokens: usize,
    out: &mut dyn Write,
) -> Result<Continuation> {
    let context_length = M::INFO.context_length;
    history.extend_from_slice(prompt);
    let start = Instant::now();
    let mut next = picker.next(session, prompt, history)?;
    let prefill_time = start.elapsed();
    let mut decode_time = Duration::ZERO;
    let mut stream = TextStream::new(&prompt[prompt.len() - 1..]);
    let mut tokens = Vec::new();
    let mut text = String::new();
    let stop = loop {
        if max_tokens == 0 {
            break Stop::MaxTokens;
        }
        if stops.contains(&next) {
            break Stop::Token(next);
        }
        tokens.push(next);
        history.push(next);
        let piece = stream.push(tokenizer, next)?;
        out.write_all(piece.as_bytes())?;
        out.flush()?;
        text.push_str(&piece);
        if tokens.len() >= max_tokens {
            break Stop::MaxTokens;
        }
        if session.position() >= context_length {
            break Stop::ContextFull;
        }
        let step = Instant::now();
        next = picker.next(session, &[next], history)?;
        decode_time += step.elapsed();
    };
    let rest = stream.finish(tokenizer)?;
    out.write_all(rest.as_bytes())?;
    text.push_str(&rest);
    Ok(Continuation {
        last_pending: !tokens.is_empty() && !matches!(stop, Stop::Token(_)),
        tokens,
        text,
        stop,
        prefill_time,
        decode_time,
    })
}

pub(super) fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ ((std::process::id() as u64) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_penalties_lower_each_chosen_token_by_presence_and_frequency() {
        let penalties = ChosenPenalties {
            presence: 0.5,
            frequency: 0.25,
            counts: [(7, 2), (9, 1)].into_iter().collect(),
        };
        let mut candidates = vec![(7, 3.0), (8, 2.0), (9, 1.0)];
        penalties.apply(&mut candidates);
        assert_eq!(candidates, [(7, 2.0), (8, 2.0), (9, 0.25)]);
    }
}
