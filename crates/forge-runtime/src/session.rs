//! A sequence being run through a compiled model: its position, the split of
//! a prompt into prefill passes, and reading each pass's results back.

use anyhow::{bail, Result};

use crate::model::{CompiledModel, Pass, Readback};

/// What [`Session::forward`] hands back.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// `[tokens, vocab]` for `AllLogits`, `[vocab]` for `LastLogits`.
    Logits(Vec<f32>),
    Token(u32),
    /// (id, logit), best first.
    Candidates(Vec<(u32, f32)>),
    /// `Readback::Nothing`.
    Nothing,
}

impl Output {
    /// A short description for messages about unexpected outputs.
    pub fn describe(&self) -> String {
        match self {
            Output::Logits(v) => format!("{} logits", v.len()),
            Output::Token(id) => format!("token {id}"),
            Output::Candidates(c) => format!("{} candidates", c.len()),
            Output::Nothing => "nothing".to_string(),
        }
    }
}

pub struct Session<M> {
    model: M,
    position: usize,
    /// Tokens per prefill pass, at most the model's `prefill_chunk`.
    pass_tokens: usize,
}

impl<M: CompiledModel> Session<M> {
    pub fn new(model: M) -> Session<M> {
        Session {
            model,
            position: 0,
            pass_tokens: M::INFO.prefill_chunk,
        }
    }

    /// Splits prompts into passes of at most `tokens` (1 ..= `prefill_chunk`)
    /// tokens instead of `prefill_chunk`: how tests cross pass boundaries
    /// with short prompts.
    pub fn set_pass_tokens(&mut self, tokens: usize) -> Result<()> {
        let most = M::INFO.prefill_chunk;
        if !(1..=most).contains(&tokens) {
            bail!("tokens per pass must be between 1 and {most}, not {tokens}");
        }
        self.pass_tokens = tokens;
        Ok(())
    }

    pub fn model(&self) -> &M {
        &self.model
    }

    /// Tokens of the sequence so far.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Moves the position without running anything: for
    /// [`Session::restore`](crate::Session::restore), once the model's memory
    /// holds the sequence up to `position`.
    pub(crate) fn set_position(&mut self, position: usize) {
        self.position = position;
    }

    /// Cuts the sequence back to its first `len` tokens, so the next pass
    /// continues from position `len`: the KV cache past it is overwritten as
    /// new tokens arrive. Refused for models with recurrent state, which
    /// holds every token seen and cannot forget the last ones.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if M::INFO.recurrent_state {
            bail!("a model with recurrent state cannot cut its sequence back; start a new one");
        }
        if len > self.position {
            bail!(
                "cannot cut a sequence of {} tokens back to {len}",
                self.position
            );
        }
        self.position = len;
        Ok(())
    }

    /// Starts a new sequence at position 0.
    pub fn reset(&mut self) {
        self.model.reset();
        self.position = 0;
    }

    /// Runs `tokens` from the current position: a single token takes the
    /// decode path, more run as prefill passes of up to `prefill_chunk`
    /// (or [`Session::set_pass_tokens`])
    /// tokens, and only the last pass reads back (every pass, for `AllLogits`).
    pub fn forward(&mut self, tokens: &[u32], readback: Readback) -> Result<Output> {
        let info = M::INFO;
        if tokens.is_empty() {
            bail!("no tokens to run");
        }
        if let Some(t) = tokens.iter().find(|&&t| t as usize >= info.vocab_size) {
            bail!(
                "token id {t} is outside the vocabulary of {}",
                info.vocab_size
            );
        }
        if self.position + tokens.len() > info.context_length {
            bail!(
                "context limit: {} cached + {} new tokens exceed the context of {} \
                 (recompile with `forge compile --context N` for more)",
                self.position,
                tokens.len(),
                info.context_length
            );
        }
        let readback = match readback {
            Readback::Candidates {
                repeat_penalty,
                recent,
            } => Readback::Candidates {
                repeat_penalty,
                recent: &recent[recent.len().saturating_sub(info.penalty_window)..],
            },
            other => other,
        };
        let mut all_logits = Vec::new();
        let chunks = tokens.len().div_ceil(self.pass_tokens);
        for (c, chunk) in tokens.chunks(self.pass_tokens).enumerate() {
            let this = match readback {
                Readback::AllLogits => Readback::AllLogits,
                _ if c + 1 == chunks => readback,
                _ => Readback::Nothing,
            };
            let pass = Pass::new(chunk.len(), self.position);
            let run = match chunk {
                [token] => self.model.decode(*token, &pass, &this),
                _ => self.model.prefill(chunk, &pass, &this),
            };
            if let Err(e) = run {
                // The state may hold part of the pass: the sequence cannot go on.
                self.reset();
                return Err(e);
            }
            self.position += chunk.len();
            if let Readback::AllLogits = readback {
                let logits = self.model.results().logits;
                all_logits.extend(logits.read_f32(0, chunk.len() * info.vocab_size));
            }
        }
        let results = self.model.results();
        Ok(match readback {
            Readback::Nothing => Output::Nothing,
            Readback::AllLogits => Output::Logits(all_logits),
            Readback::LastLogits => Output::Logits(results.logits.read_f32(0, info.vocab_size)),
            Readback::Argmax => Output::Token(results.sampled.read_u32(0, 1)[0]),
            Readback::Candidates { .. } => {
                let raw = results.candidates.read_u32(0, 2 * info.top_candidates);
                Output::Candidates(
                    raw.chunks(2)
                        .map(|p| (p[0], f32::from_bits(p[1])))
                        .collect(),
                )
            }
        })
    }

    /// Runs `tokens` and returns the greedy token after them.
    pub fn argmax(&mut self, tokens: &[u32]) -> Result<u32> {
        match self.forward(tokens, Readback::Argmax)? {
            Output::Token(id) => Ok(id),
            other => bail!(
                "the model returned {} where a token was expected",
                other.describe()
            ),
        }
    }
}
