//! TEST ONLY (tests/cli.rs): a toy model with the `CompiledModel` contract,
//! so the command line can be driven end to end without a real model. Its
//! logits follow a rule the test recomputes: for token t at position p the
//! favourite is f = EOS_ID when p == EOS_AT, else (3t + p) mod VOCAB, and
//! logit[v] = -((v - f) mod VOCAB) * scale, where scale is the weights
//! file's `toy.scale` tensor. The logits come from a kernel on msl-emu; the
//! readbacks a real model picks on the GPU are picked here on the CPU.
//!
//! It also keeps a sequence's memory, for the snapshot tests: KV-like rows
//! (head h, position p: the token there and `p * KV_HEADS + h`) and a
//! recurrent-like tally (tokens run since the reset, and their sum). The
//! logits read neither, so cutting the sequence back stays exact.

use forge_runtime::gpu::{Arg, Buffer, Gpu, Pipeline};
use forge_runtime::weights::{WeightsFile, WeightsSpec};
use forge_runtime::{
    CompiledModel, ModelInfo, Pass, PositionRows, Readback, Result, Results, SequenceMemory,
};

pub const VOCAB: usize = 384;
pub const CONTEXT: usize = 24;
pub const EOS_ID: u32 = 2;
pub const EOS_AT: usize = 16;
/// Heads of the toy's positional memory, two u32s per row.
pub const KV_HEADS: usize = 2;
pub const KV_ROW_BYTES: usize = 8;
pub const KERNELS: &str = include_str!("toy_kernels.metal");
pub const SPEC: WeightsSpec = WeightsSpec {
    fingerprint: "toy-plan",
    model_hint: "models/toy",
    export_flags: " --dtype f32",
};

/// The favourite next token after `token` at `position`.
pub fn favourite(token: u32, position: usize) -> u32 {
    if position == EOS_AT {
        EOS_ID
    } else {
        (3 * token + position as u32) % VOCAB as u32
    }
}

pub struct Toy {
    gpu: Gpu,
    kernel: Pipeline,
    weights: Buffer,
    scale_offset: usize,
    tokens: Buffer,
    /// Every row of the pass, as the kernel writes them.
    rows: Buffer,
    logits: Buffer,
    sampled: Buffer,
    candidates: Buffer,
    /// `[KV_HEADS, CONTEXT]` rows of (token, p * KV_HEADS + h) u32 pairs.
    pub kv: Buffer,
    /// (tokens run, their sum) since the last reset, u32s.
    pub tally: Buffer,
    /// Passes run since the last reset, for the session tests.
    pub passes: Vec<(usize, u32, u32)>,
}

impl CompiledModel for Toy {
    const INFO: ModelInfo = ModelInfo {
        name: "toy",
        vocab_size: VOCAB,
        context_length: CONTEXT,
        prefill_chunk: 8,
        top_candidates: 64,
        penalty_window: 4,
        recurrent_state: false,
    };

    fn load(gpu: Gpu, file: &WeightsFile) -> Result<Toy> {
        let scale = file.tensor("toy.scale")?;
        Ok(Toy {
            kernel: gpu.pipeline("toy_logits")?,
            weights: gpu.wrap_mmap(file.map.clone())?,
            scale_offset: scale.offset,
            tokens: gpu.buffer(CONTEXT * 4),
            rows: gpu.buffer(CONTEXT * VOCAB * 4),
            logits: gpu.buffer(CONTEXT * VOCAB * 4),
            sampled: gpu.buffer(4),
            candidates: gpu.buffer(64 * 8),
            kv: gpu.buffer(KV_HEADS * CONTEXT * KV_ROW_BYTES),
            tally: gpu.buffer(8),
            passes: Vec::new(),
            gpu,
        })
    }

    fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    fn decode(&mut self, token: u32, pass: &Pass, readback: &Readback) -> Result<()> {
        assert_eq!(pass.n, 1);
        self.run(&[token], pass, readback)
    }

    fn prefill(&mut self, tokens: &[u32], pass: &Pass, readback: &Readback) -> Result<()> {
        assert!(tokens.len() > 1 && tokens.len() <= Self::INFO.prefill_chunk);
        self.run(tokens, pass, readback)
    }

    fn results(&self) -> Results<'_> {
        Results {
            logits: &self.logits,
            sampled: &self.sampled,
            candidates: &self.candidates,
        }
    }

    fn reset(&mut self) {
        self.passes.clear();
        self.tally.zero();
    }

    fn memory(&self) -> SequenceMemory<'_> {
        SequenceMemory {
            positional: vec![PositionRows {
                buffer: &self.kv,
                heads: KV_HEADS,
                row_bytes: KV_ROW_BYTES,
            }],
            recurrent: vec![&self.tally],
        }
    }
}

impl Toy {
    fn run(&mut self, tokens: &[u32], pass: &Pass, readback: &Readback) -> Result<()> {
        let n = tokens.len();
        assert_eq!(pass.n as usize, n);
        self.passes.push((n, pass.pos, kind(readback)));
        self.tokens.write_u32(0, tokens);
        self.remember(tokens, pass.pos as usize);
        let mut batch = self.gpu.batch();
        batch.dispatch(
            &self.kernel,
            [(VOCAB / 64) as u32, n as u32, 1],
            [64, 1, 1],
            &[
                (0, Arg::Buffer(&self.tokens, 0)),
                (1, Arg::Buffer(&self.rows, 0)),
                (2, Arg::Buffer(&self.weights, self.scale_offset)),
                (7, Arg::Bytes(pass.step())),
            ],
        );
        batch.finish()?;
        let last = self.rows.read_f32(pass.last_row(VOCAB), VOCAB);
        match *readback {
            Readback::Nothing => {}
            Readback::AllLogits => self.logits.write_f32(0, &self.rows.read_f32(0, n * VOCAB)),
            Readback::LastLogits => self.logits.write_f32(0, &last),
            Readback::Argmax => self.sampled.write_u32(0, &[ranked(last)[0].0]),
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
                let pairs: Vec<u32> = ranked(penalised)
                    .into_iter()
                    .take(64)
                    .flat_map(|(id, logit)| [id, logit.to_bits()])
                    .collect();
                self.candidates.write_u32(0, &pairs);
            }
        }
        Ok(())
    }

    /// Writes the pass's KV rows and adds its tokens to the tally.
    fn remember(&self, tokens: &[u32], pos: usize) {
        for (i, &t) in tokens.iter().enumerate() {
            let p = pos + i;
            for h in 0..KV_HEADS {
                let row = (h * CONTEXT + p) * KV_ROW_BYTES;
                self.kv.write_u32(row, &[t, (p * KV_HEADS + h) as u32]);
            }
        }
        let tally = self.tally.read_u32(0, 2);
        let sum = tokens.iter().fold(tally[1], |s, &t| s.wrapping_add(t));
        self.tally
            .write_u32(0, &[tally[0] + tokens.len() as u32, sum]);
    }
}

/// 0 nothing, 1 all logits, 2 last logits, 3 argmax, 4 + ids: candidates over that many recent ids.
fn kind(readback: &Readback) -> u32 {
    match readback {
        Readback::Nothing => 0,
        Readback::AllLogits => 1,
        Readback::LastLogits => 2,
        Readback::Argmax => 3,
        Readback::Candidates { recent, .. } => 4 + recent.len() as u32,
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
