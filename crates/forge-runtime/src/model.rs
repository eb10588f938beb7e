//! The interface between a generated `model.rs` and the runtime: the model
//! records the dispatches of one pass (a prefill chunk or a decode token) and
//! leaves its results in buffers; [`Session`](crate::Session) decides what
//! each pass reads back and keeps the position.

use anyhow::Result;

use crate::gpu::{Buffer, Gpu};
use crate::weights::WeightsFile;

/// The constants of a compiled model that the runtime needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    pub name: &'static str,
    pub vocab_size: usize,
    /// Positions the sequence state holds (`forge compile --context`).
    pub context_length: usize,
    /// Tokens per prefill pass at most.
    pub prefill_chunk: usize,
    /// (id, logit) pairs a `Candidates` readback returns.
    pub top_candidates: usize,
    /// Most recent tokens the repeat penalty looks at.
    pub penalty_window: usize,
    /// Whether some layer carries recurrent (conv/SSM) state from token to
    /// token. A sequence of attention layers alone is its KV cache, indexed
    /// by position, so it can be cut back to any earlier position; recurrent
    /// state cannot.
    pub recurrent_state: bool,
}

/// What a pass computes for the CPU at its end.
#[derive(Clone, Copy, Debug)]
pub enum Readback<'a> {
    /// No logits at all: a prefill pass that is not the last of its prompt.
    Nothing,
    /// Logits of every position of the pass, rows `0..n` of the logits buffer.
    AllLogits,
    /// Logits of the pass's last position, in row 0.
    LastLogits,
    /// The greedy token of the last position, chosen on the GPU.
    Argmax,
    /// The most likely (id, logit) pairs of the last position after the
    /// repeat penalty over `recent` (at most `penalty_window` ids).
    Candidates {
        repeat_penalty: f32,
        recent: &'a [u32],
    },
}

impl Readback<'_> {
    /// Whether the pass must compute logits (of at least its last position).
    pub fn needs_logits(&self) -> bool {
        !matches!(self, Readback::Nothing)
    }
}

/// The buffers a pass leaves its results in.
pub struct Results<'a> {
    /// f32 `[tokens, vocab]`: every row for `AllLogits`, else row 0.
    pub logits: &'a Buffer,
    /// One u32: the `Argmax` token.
    pub sampled: &'a Buffer,
    /// `top_candidates` pairs of (u32 id, f32 logit), best first.
    pub candidates: &'a Buffer,
}

/// The runtime values of one pass, laid out as the kernels' `Step` struct
/// (`uint n_tokens; uint pos;`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pass {
    /// Tokens in the pass (grid sizes are `u32`, as Metal's are).
    pub n: u32,
    /// Position of the pass's first token.
    pub pos: u32,
    step: [u8; 8],
}

impl Pass {
    pub fn new(n: usize, pos: usize) -> Pass {
        let (n, pos) = (n as u32, pos as u32);
        let mut step = [0; 8];
        step[..4].copy_from_slice(&n.to_le_bytes());
        step[4..].copy_from_slice(&pos.to_le_bytes());
        Pass { n, pos, step }
    }

    /// The `Step` struct's bytes, for `Arg::Bytes`.
    pub fn step(&self) -> &[u8] {
        &self.step
    }

    /// Byte offset of the pass's last row in a buffer of `width` f32 columns.
    pub fn last_row(&self, width: usize) -> usize {
        (self.n as usize - 1) * width * 4
    }
}

/// The repeat penalty's `Penalty` struct (`uint count; float penalty;`) for `recent`.
pub fn penalty_bytes(recent: &[u32], repeat_penalty: f32) -> [u8; 8] {
    let mut bytes = [0; 8];
    bytes[..4].copy_from_slice(&(recent.len() as u32).to_le_bytes());
    bytes[4..].copy_from_slice(&repeat_penalty.to_le_bytes());
    bytes
}

/// One buffer of the sequence laid out by position: `heads` blocks of
/// `context_length` rows of `row_bytes` bytes, row p of each block holding
/// position p (an attention layer's keys or its values).
#[derive(Clone, Copy)]
pub struct PositionRows<'a> {
    pub buffer: &'a Buffer,
    pub heads: usize,
    pub row_bytes: usize,
}

/// Everything a sequence leaves in the model between passes.
#[derive(Default)]
pub struct SequenceMemory<'a> {
    pub positional: Vec<PositionRows<'a>>,
    /// Recurrent (conv/SSM) state buffers, saved whole.
    pub recurrent: Vec<&'a Buffer>,
}

/// What a generated `model.rs` implements.
pub trait CompiledModel: Sized {
    const INFO: ModelInfo;

    /// Binds the weights (already checked against the plan) and allocates
    /// buffers and per-sequence state.
    fn load(gpu: Gpu, weights: &WeightsFile) -> Result<Self>;

    fn gpu(&self) -> &Gpu;

    /// Runs one token at `pass.pos` (`pass.n == 1`) through the decode kernels.
    fn decode(&mut self, token: u32, pass: &Pass, readback: &Readback) -> Result<()>;

    /// Runs `tokens` (`pass.n` of them, at most `prefill_chunk`) from `pass.pos`.
    fn prefill(&mut self, tokens: &[u32], pass: &Pass, readback: &Readback) -> Result<()>;

    /// Where the last pass left its results.
    fn results(&self) -> Results<'_>;

    /// Forgets the sequence: the next pass starts a new one at position 0.
    fn reset(&mut self);

    /// The buffers that hold the sequence, for snapshots.
    fn memory(&self) -> SequenceMemory<'_>;
}
