//! TEST HARNESS ONLY (tests/host_cli.rs), not forge's model.rs: a toy
//! model with exactly the model.rs contract, so the generated main.rs can be
//! built, run and type-checked for macOS before the real model template
//! exists for a fixture. Its logits follow a rule the test recomputes: for
//! token t at position p the favourite is f = EOS_ID when p == EOS_AT, else
//! (3t + p) mod VOCAB_SIZE, and logit[v] = -((v - f) mod VOCAB_SIZE) * scale,
//! where scale is read from the weights file ("TOY1", then an f32).

use crate::gpu::{Arg, Buffer, Gpu, Pipeline};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::Arc;

pub const MODEL_NAME: &str = "harness";
pub const VOCAB_SIZE: usize = 384;
pub const CONTEXT_LENGTH: usize = 24;
pub const TOP_CANDIDATES: usize = 64;
pub const PENALTY_WINDOW: usize = 64;

pub enum Readback<'a> {
    AllLogits,
    LastLogits,
    Argmax,
    Candidates {
        repeat_penalty: f32,
        recent: &'a [u32],
    },
}

pub enum Output {
    Logits(Vec<f32>),
    Token(u32),
    Candidates(Vec<(u32, f32)>),
}

pub struct Model {
    gpu: Gpu,
    kernel: Pipeline,
    weights: Buffer,
    tokens: Buffer,
    logits: Buffer,
    position: usize,
}

impl Model {
    pub fn load(gpu: Gpu, weights: &Path) -> Result<Model> {
        let file =
            std::fs::File::open(weights).with_context(|| format!("{}", weights.display()))?;
        // The file is not modified while mapped: the test writes it before running the binary.
        let map = Arc::new(unsafe { memmap2::Mmap::map(&file)? });
        if map.len() < 8 || &map[..4] != b"TOY1" {
            bail!("not a harness weights file");
        }
        Ok(Model {
            kernel: gpu.pipeline("toy_logits")?,
            weights: gpu.wrap_mmap(map)?,
            tokens: gpu.buffer(CONTEXT_LENGTH * 4),
            logits: gpu.buffer(CONTEXT_LENGTH * VOCAB_SIZE * 4),
            position: 0,
            gpu,
        })
    }

    pub fn forward(&mut self, tokens: &[u32], readback: Readback) -> Result<Output> {
        if tokens.is_empty() || self.position + tokens.len() > CONTEXT_LENGTH {
            bail!("context limit: {} + {} tokens", self.position, tokens.len());
        }
        let n = tokens.len();
        self.tokens.write_u32(0, tokens);
        let mut step = [0u8; 8];
        step[..4].copy_from_slice(&(n as u32).to_le_bytes());
        step[4..].copy_from_slice(&(self.position as u32).to_le_bytes());
        let mut batch = self.gpu.batch();
        batch.dispatch(
            &self.kernel,
            [(VOCAB_SIZE / 64) as u32, n as u32, 1],
            [64, 1, 1],
            &[
                (0, Arg::Buffer(&self.tokens, 0)),
                (1, Arg::Buffer(&self.logits, 0)),
                (2, Arg::Buffer(&self.weights, 4)),
                (7, Arg::Bytes(&step)),
            ],
        );
        batch.finish()?;
        self.position += n;
        let last = self.logits.read_f32((n - 1) * VOCAB_SIZE * 4, VOCAB_SIZE);
        Ok(match readback {
            Readback::AllLogits => Output::Logits(self.logits.read_f32(0, n * VOCAB_SIZE)),
            Readback::LastLogits => Output::Logits(last),
            Readback::Argmax => Output::Token(ranked(last)[0].0),
            Readback::Candidates {
                repeat_penalty,
                recent,
            } => {
                let mut penalised = last;
                for &id in recent {
                    let l = &mut penalised[id as usize];
                    *l = if *l > 0.0 {
                        *l / repeat_penalty
                    } else {
                        *l * repeat_penalty
                    };
                }
                let mut best = ranked(penalised);
                best.truncate(TOP_CANDIDATES);
                Output::Candidates(best)
            }
        })
    }

    pub fn reset(&mut self) {
        self.position = 0;
    }

    pub fn position(&self) -> usize {
        self.position
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
}

/// (id, logit) pairs, best first.
fn ranked(logits: Vec<f32>) -> Vec<(u32, f32)> {
    let mut pairs: Vec<(u32, f32)> = logits
        .into_iter()
        .enumerate()
        .map(|(i, l)| (i as u32, l))
        .collect();
    pairs.sort_by(|a, b| b.1.total_cmp(&a.1));
    pairs
}
