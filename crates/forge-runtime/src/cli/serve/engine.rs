//! The inference thread: it owns the model's one sequence and runs queued
//! requests one at a time, in arrival order, sending each its text as it is
//! generated. A request whose channel has closed (the client left) stops at
//! the next token and frees the model for the next one.
//!
//! The prompt cache: the sequence the model holds is kept between requests,
//! and a new prompt reuses as much of it as it shares (an attention model's
//! KV cache is cut back to the shared prefix; recurrent state cannot be cut
//! back, so it is reused only when the prompt extends it). Snapshots taken at
//! the end of each message and of each abandoned sequence let later requests
//! resume from the longest one their prompt starts with.

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::mpsc::UnboundedSender;

use super::prompt_cache::PromptCache;
use super::requests::Generation;
use super::responses::{FinishReason, Usage};
use super::stop_text::StopText;
use crate::cli::sampling::{clock_seed, Picker};
use crate::model::{CompiledModel, Readback};
use crate::session::Session;
use crate::snapshot::Snapshot;
use crate::text::{TextStream, Tokenizer};

/// A request, tokenized and checked, waiting for the model.
pub(super) struct Job {
    /// The number the log names it by.
    pub id: u64,
    pub prompt: Vec<u32>,
    /// Ends of messages inside `prompt` (token counts): where the sequence is snapshotted.
    pub boundaries: Vec<usize>,
    pub generation: Generation,
    /// Tokens at most: `max_tokens`, or what is left of the context.
    pub max_tokens: usize,
    pub events: UnboundedSender<Event>,
    pub received: Instant,
}

/// What the engine sends a request's handler.
#[derive(Debug)]
pub(super) enum Event {
    /// The next piece of text (never empty, never part of a character).
    Text(String),
    Done(FinishReason, Usage),
    /// The model failed; the message says why.
    Failed(String),
}

/// What ended the generation loop.
enum End {
    StopToken,
    StopString,
    Length,
    Left,
}

/// How a request ended, for the log.
enum Outcome {
    Finished(FinishReason),
    /// The client closed its connection.
    Left,
}

pub(super) struct Engine<M> {
    session: Session<M>,
    tokenizer: Arc<Tokenizer>,
    stop_ids: Vec<u32>,
    cache: PromptCache<Snapshot>,
    /// The tokens the session holds (`session.position()` of them).
    held: Vec<u32>,
    log: UnboundedSender<String>,
}

impl<M: CompiledModel> Engine<M> {
    pub(super) fn new(
        session: Session<M>,
        tokenizer: Arc<Tokenizer>,
        stop_ids: Vec<u32>,
        cache_bytes: usize,
        log: UnboundedSender<String>,
    ) -> Engine<M> {
        Engine {
            session,
            tokenizer,
            stop_ids,
            cache: PromptCache::new(cache_bytes),
            held: Vec::new(),
            log,
        }
    }

    /// Serves jobs until every sender is gone.
    pub(super) fn run(mut self, jobs: Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            self.serve(job);
        }
    }

    fn serve(&mut self, job: Job) {
        let id = job.id;
        if job.events.is_closed() {
            self.say(format!("request {id}: the client left before its turn"));
            return;
        }
        let started = Instant::now();
        let waited = started - job.received;
        match self.generate(&job) {
            Ok(report) => {
                let ended = match report.outcome {
                    Outcome::Finished(reason) => format!("finish {}", reason.as_str()),
                    Outcome::Left => "the client left".to_string(),
                };
                let u = report.usage;
                let decode = report.decode_time.as_secs_f64().max(1e-9);
                let (cache_bytes, snapshots) = self.cache.usage();
                self.say(format!(
                    "request {id}: {} prompt tokens ({} cached), {} generated, {ended}; \
                     queued {:.0} ms, first token {:.0} ms, decode {:.1} tok/s; \
                     prompt cache {snapshots} snapshots, {:.1} MiB",
                    u.prompt_tokens,
                    u.cached_tokens,
                    u.completion_tokens,
                    waited.as_secs_f64() * 1e3,
                    report.first_token.as_secs_f64() * 1e3,
                    u.completion_tokens.saturating_sub(1) as f64 / decode,
                    cache_bytes as f64 / (1 << 20) as f64,
                ));
            }
            Err(e) => {
                // A failed pass leaves the sequence unusable (Session resets it).
                self.session.reset();
                self.held.clear();
                let _ = job.events.send(Event::Failed(format!("{e:#}")));
                self.say(format!("request {id}: failed: {e:#}"));
            }
        }
    }

    fn say(&self, line: String) {
        let _ = self.log.send(line);
    }

    fn generate(&mut self, job: &Job) -> Result<Report> {
        let start = Instant::now();
        let prompt = &job.prompt;
        let cached = match job.generation.cache_prompt {
            true => self.resume(prompt)?,
            false => self.start_over(),
        };
        let ends: Vec<usize> = job
            .boundaries
            .iter()
            .copied()
            .filter(|&b| b > cached && b < prompt.len())
            .collect();
        let recurrent = M::INFO.recurrent_state;
        let mut at = cached;
        // Recurrent state exists only at the end of a pass: the prompt runs in
        // pieces ending at the message ends, snapshotted as they are reached.
        for &end in ends.iter().filter(|_| recurrent) {
            self.session.forward(&prompt[at..end], Readback::Nothing)?;
            self.held.extend_from_slice(&prompt[at..end]);
            at = end;
            self.keep_snapshot();
            if job.events.is_closed() {
                return Ok(Report::left(prompt.len(), cached, start.elapsed()));
            }
        }
        let g = &job.generation;
        let seed = g.seed.unwrap_or_else(clock_seed);
        let mut picker = Picker::new(g.sampling, g.repeat_penalty, seed)
            .with_chosen_penalties(g.presence_penalty, g.frequency_penalty);
        // The sequence so far: what the session holds, then each generated token.
        let mut history = prompt.clone();
        let mut next = picker.next(&mut self.session, &prompt[at..], &history)?;
        let first_token = start.elapsed();
        // KV rows of a message's end are final once the prompt has run.
        for &end in ends.iter().filter(|_| !recurrent) {
            if !self.cache.contains(&prompt[..end]) {
                let snapshot = self.session.snapshot_prefix(end)?;
                let bytes = snapshot.bytes();
                self.cache.insert(prompt[..end].to_vec(), snapshot, bytes);
            }
        }
        let decode_start = Instant::now();
        let mut stream = TextStream::new(&prompt[prompt.len() - 1..]);
        let mut stops = StopText::new(g.stop.clone());
        let mut generated = 0;
        let context = M::INFO.context_length;
        let end = loop {
            if self.stop_ids.contains(&next) {
                break End::StopToken;
            }
            generated += 1;
            history.push(next);
            let released = stops.push(&stream.push(self.tokenizer.as_ref(), next)?);
            if !send_text(job, released.text) {
                break End::Left;
            }
            if released.stopped {
                break End::StopString;
            }
            if generated >= job.max_tokens || self.session.position() >= context {
                break End::Length;
            }
            if job.events.is_closed() {
                break End::Left;
            }
            next = picker.next(&mut self.session, &[next], &history)?;
        };
        let decode_time = decode_start.elapsed();
        // Every generated token but a last one not yet run is in the sequence.
        history.truncate(self.session.position());
        self.held = history;
        let usage = Usage {
            prompt_tokens: prompt.len(),
            completion_tokens: generated,
            cached_tokens: cached,
        };
        let outcome = match end {
            End::Left => Outcome::Left,
            End::StopString => Outcome::Finished(FinishReason::Stop),
            End::StopToken | End::Length => {
                // The text the stream held back may still end in a stop string.
                let released = stops.push(&stream.finish(self.tokenizer.as_ref())?);
                let stopped = released.stopped;
                let rest = match stopped {
                    true => released.text,
                    false => released.text + &stops.finish(),
                };
                send_text(job, rest);
                Outcome::Finished(match end {
                    End::Length if !stopped => FinishReason::Length,
                    _ => FinishReason::Stop,
                })
            }
        };
        if let Outcome::Finished(reason) = outcome {
            let _ = job.events.send(Event::Done(reason, usage));
        }
        Ok(Report {
            outcome,
            usage,
            first_token,
            decode_time,
        })
    }

    /// Brings the session to the longest prefix of `prompt` it can reuse —
    /// what it holds, or a stored snapshot — and returns its length (always
    /// less than the prompt's, so the prompt's last token runs and yields logits).
    fn resume(&mut self, prompt: &[u32]) -> Result<usize> {
        let live = self.live_prefix(prompt);
        let stored = self
            .cache
            .longest_prefix(prompt)
            .map_or(0, |(t, _)| t.len());
        if live == self.held.len() && stored <= live {
            return Ok(live);
        }
        // The held sequence is about to change: keep it for a request that continues it.
        self.keep_snapshot();
        if let Some((tokens, snapshot)) = self.cache.longest_prefix(prompt) {
            if tokens.len() > live {
                self.session.restore(snapshot)?;
                self.held = tokens.to_vec();
                return Ok(self.held.len());
            }
        }
        match live {
            0 => self.session.reset(),
            n => self.session.truncate(n)?,
        }
        self.held.truncate(live);
        Ok(live)
    }

    /// Leaves the held sequence (kept as a snapshot) for an empty one.
    fn start_over(&mut self) -> usize {
        self.keep_snapshot();
        self.session.reset();
        self.held.clear();
        0
    }

    /// How much of what the session holds `prompt` can start from.
    fn live_prefix(&self, prompt: &[u32]) -> usize {
        let common = self
            .held
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        match M::INFO.recurrent_state {
            // Recurrent state holds all of `held`: usable only as a whole.
            true if common == self.held.len() && common < prompt.len() => common,
            true => 0,
            false => common.min(prompt.len() - 1),
        }
    }

    /// Stores a snapshot of the held sequence unless one is stored already.
    fn keep_snapshot(&mut self) {
        if self.held.is_empty() || self.cache.contains(&self.held) {
            return;
        }
        let snapshot = self.session.snapshot();
        let bytes = snapshot.bytes();
        self.cache.insert(self.held.clone(), snapshot, bytes);
    }
}

/// Sends a non-empty piece of text; false when the client has left.
fn send_text(job: &Job, text: String) -> bool {
    text.is_empty() || job.events.send(Event::Text(text)).is_ok()
}

struct Report {
    outcome: Outcome,
    usage: Usage,
    first_token: Duration,
    decode_time: Duration,
}

impl Report {
    fn left(prompt_tokens: usize, cached_tokens: usize, elapsed: Duration) -> Report {
        Report {
            outcome: Outcome::Left,
            usage: Usage {
                prompt_tokens,
                completion_tokens: 0,
                cached_tokens,
            },
            first_token: elapsed,
            decode_time: Duration::ZERO,
        }
    }
}
