//! hf: the forward pass forge planned for this model.
//!
//! hf (llama), 2 layers, hidden 64, 4 query / 2 KV heads of 16, vocabulary 384; F32 weights, F32 KV cache, context 256.
//!
//! Every function below is a fixed sequence of kernel dispatches from
//! `shaders/kernels.metal`; shapes are constants there. Decode (one token)
//! uses matrix-vector kernels with the RMSNorms folded in; prefill (a chunk
//! of up to `PREFILL_CHUNK` tokens) uses matrix-matrix kernels.

use std::path::Path;

use anyhow::{bail, Result};

use crate::gpu::{Arg, Batch, Buffer, Gpu, Pipeline};
use crate::weights::WeightsFile;

pub const MODEL_NAME: &str = "hf";
pub const VOCAB_SIZE: usize = 384;
pub const LAYERS: usize = 2;
/// Positions the KV cache holds (chosen at `forge compile --context`).
pub const CONTEXT_LENGTH: usize = 256;
/// Tokens per prefill pass.
pub const PREFILL_CHUNK: usize = 64;
/// Candidates the GPU hands the sampler per step.
pub const TOP_CANDIDATES: usize = 64;
/// Most recent tokens the repeat penalty looks at.
pub const PENALTY_WINDOW: usize = 64;

/// What `forward` hands back to the CPU after the pass.
pub enum Readback<'a> {
    /// Logits of every position of the pass, `[tokens, VOCAB_SIZE]`.
    AllLogits,
    /// Logits of the last position.
    LastLogits,
    /// The greedy token of the last position, chosen on the GPU.
    Argmax,
    /// The `TOP_CANDIDATES` most likely (id, logit) pairs of the last
    /// position after the repeat penalty over `recent`, best first.
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

/// The pipelines of `shaders/kernels.metal`.
struct Kernels {
    embedding_f32_384x64: Pipeline,
    rms_norm_64_eps1em5: Pipeline,
    matvec_f32_128x64_prenorm1em5: Pipeline,
    matmul_f32_128x64: Pipeline,
    rope_store_h4_kv2_d16_r16_neox_f32_c256_t7ac25971: Pipeline,
    attention_decode_h4_kv2_d16_f32_c256_s3e800000_split256: Pipeline,
    attention_decode_h4_kv2_d16_f32_c256_s3e800000_split256_reduce: Pipeline,
    attention_prefill_h4_kv2_d16_f32_c256_s3e800000: Pipeline,
    matvec_f32_64x64_residual: Pipeline,
    matmul_f32_64x64_residual: Pipeline,
    matvec_f32_128x64_gated_silu_prenorm1em5: Pipeline,
    matmul_f32_128x64_gated_silu: Pipeline,
    matvec_f32_64x128_residual: Pipeline,
    matmul_f32_64x128_residual: Pipeline,
    matvec_f32_384x64_prenorm1em5: Pipeline,
    matmul_f32_384x64: Pipeline,
    argmax_384: Pipeline,
    top_candidates_384_top64: Pipeline,
}

impl Kernels {
    fn new(gpu: &Gpu) -> Result<Kernels> {
        Ok(Kernels {
            embedding_f32_384x64: gpu.pipeline("embedding_f32_384x64")?,
            rms_norm_64_eps1em5: gpu.pipeline("rms_norm_64_eps1em5")?,
            matvec_f32_128x64_prenorm1em5: gpu.pipeline("matvec_f32_128x64_prenorm1em5")?,
            matmul_f32_128x64: gpu.pipeline("matmul_f32_128x64")?,
            rope_store_h4_kv2_d16_r16_neox_f32_c256_t7ac25971: gpu
                .pipeline("rope_store_h4_kv2_d16_r16_neox_f32_c256_t7ac25971")?,
            attention_decode_h4_kv2_d16_f32_c256_s3e800000_split256: gpu
                .pipeline("attention_decode_h4_kv2_d16_f32_c256_s3e800000_split256")?,
            attention_decode_h4_kv2_d16_f32_c256_s3e800000_split256_reduce: gpu
                .pipeline("attention_decode_h4_kv2_d16_f32_c256_s3e800000_split256_reduce")?,
            attention_prefill_h4_kv2_d16_f32_c256_s3e800000: gpu
                .pipeline("attention_prefill_h4_kv2_d16_f32_c256_s3e800000")?,
            matvec_f32_64x64_residual: gpu.pipeline("matvec_f32_64x64_residual")?,
            matmul_f32_64x64_residual: gpu.pipeline("matmul_f32_64x64_residual")?,
            matvec_f32_128x64_gated_silu_prenorm1em5: gpu.pipeline("matvec_f32_128x64_gated_silu_prenorm1em5")?,
            matmul_f32_128x64_gated_silu: gpu.pipeline("matmul_f32_128x64_gated_silu")?,
            matvec_f32_64x128_residual: gpu.pipeline("matvec_f32_64x128_residual")?,
            matmul_f32_64x128_residual: gpu.pipeline("matmul_f32_64x128_residual")?,
            matvec_f32_384x64_prenorm1em5: gpu.pipeline("matvec_f32_384x64_prenorm1em5")?,
            matmul_f32_384x64: gpu.pipeline("matmul_f32_384x64")?,
            argmax_384: gpu.pipeline("argmax_384")?,
            top_candidates_384_top64: gpu.pipeline("top_candidates_384_top64")?,
        })
    }
}

/// Byte offsets of the tensors outside the layers in `weights.gguf`.
struct Tensors {
    output_norm: usize,
    token_embd: usize,
}

/// Byte offsets of one layer's tensors in `weights.gguf`.
struct Layer {
    attn_norm: usize,
    attn_output: usize,
    attn_qkv: usize,
    ffn_down: usize,
    ffn_gate_up: usize,
    ffn_norm: usize,
}

/// Activations of one pass, `PREFILL_CHUNK` rows of f32 each.
struct Activations {
    /// `[tokens, 64]`
    attn: Buffer,
    /// `[tokens, 64]`
    attn_norm: Buffer,
    /// `[tokens, 64]`
    ffn_norm: Buffer,
    /// `[tokens, 64]`
    final_norm: Buffer,
    /// `[tokens, 128]`
    gated: Buffer,
    /// `[tokens, 384]`
    logits: Buffer,
    /// `[tokens, 128]`
    qkv: Buffer,
    /// `[tokens, 64]`
    x: Buffer,
    tokens: Buffer,
    sampled: Buffer,
    recent: Buffer,
    candidates: Buffer,
}

impl Activations {
    fn new(gpu: &Gpu) -> Activations {
        let rows = |width: usize| gpu.buffer(PREFILL_CHUNK * width * 4);
        Activations {
            attn: rows(64),
            attn_norm: rows(64),
            ffn_norm: rows(64),
            final_norm: rows(64),
            gated: rows(128),
            logits: rows(384),
            qkv: rows(128),
            x: rows(64),
            tokens: gpu.buffer(PREFILL_CHUNK * 4),
            sampled: gpu.buffer(4),
            recent: gpu.buffer(PENALTY_WINDOW * 4),
            candidates: gpu.buffer(TOP_CANDIDATES * 8),
        }
    }
}

/// One layer's keys and values, `[2 heads, CONTEXT_LENGTH, 16]` of f32.
struct KvCache {
    k: Buffer,
    v: Buffer,
}

/// The runtime values of one pass, as the kernels' `Step` struct.
struct Pass {
    n: u32,
    pos: u32,
    step: [u8; 8],
}

impl Pass {
    fn new(n: usize, pos: usize) -> Pass {
        let (n, pos) = (n as u32, pos as u32);
        let mut step = [0; 8];
        step[..4].copy_from_slice(&n.to_le_bytes());
        step[4..].copy_from_slice(&pos.to_le_bytes());
        Pass { n, pos, step }
    }

    /// Byte offset of the pass's last row in a buffer of `width` f32 columns.
    fn last_row(&self, width: usize) -> usize {
        (self.n as usize - 1) * width * 4
    }
}

pub struct Model {
    gpu: Gpu,
    kernels: Kernels,
    /// `weights.gguf`, mapped and wrapped without a copy.
    weights: Buffer,
    tensors: Tensors,
    layers: Vec<Layer>,
    cache: Vec<KvCache>,
    /// Split-attention partials.
    scratch: Buffer,
    act: Activations,
    position: usize,
}

impl Model {
    pub fn load(gpu: Gpu, path: &Path) -> Result<Model> {
        let file = WeightsFile::open(path)?;
        let offset = |name: &str| -> Result<usize> { Ok(file.tensor(name)?.offset) };
        let tensors = Tensors {
            output_norm: offset("output_norm.weight")?,
            token_embd: offset("token_embd.weight")?,
        };
        let layers = (0..LAYERS)
            .map(|i| {
                Ok(Layer {
                    attn_norm: offset(&format!("blk.{i}.attn_norm.weight"))?,
                    attn_output: offset(&format!("blk.{i}.attn_output.weight"))?,
                    attn_qkv: offset(&format!("blk.{i}.attn_qkv.weight"))?,
                    ffn_down: offset(&format!("blk.{i}.ffn_down.weight"))?,
                    ffn_gate_up: offset(&format!("blk.{i}.ffn_gate_up.weight"))?,
                    ffn_norm: offset(&format!("blk.{i}.ffn_norm.weight"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let cache_bytes = 2 * CONTEXT_LENGTH * 16 * 4;
        let cache = (0..LAYERS)
            .map(|_| KvCache {
                k: gpu.buffer(cache_bytes),
                v: gpu.buffer(cache_bytes),
            })
            .collect();
        let scratch = gpu.buffer(288);
        let weights = gpu.wrap_mmap(file.map.clone())?;
        Ok(Model {
            kernels: Kernels::new(&gpu)?,
            act: Activations::new(&gpu),
            weights,
            tensors,
            layers,
            cache,
            scratch,
            gpu,
            position: 0,
        })
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    pub fn position(&self) -> usize {
        self.position
    }

    /// Forgets the sequence: the next `forward` starts at position 0.
    pub fn reset(&mut self) {
        self.position = 0;
    }

    /// Runs `tokens` from the current position: one token takes the decode
    /// path, more run as prefill passes of up to `PREFILL_CHUNK` tokens.
    pub fn forward(&mut self, tokens: &[u32], readback: Readback) -> Result<Output> {
        if tokens.is_empty() {
            bail!("no tokens to run");
        }
        if let Some(t) = tokens.iter().find(|&&t| t as usize >= VOCAB_SIZE) {
            bail!("token id {t} is outside the vocabulary of {VOCAB_SIZE}");
        }
        if self.position + tokens.len() > CONTEXT_LENGTH {
            bail!(
                "context limit: {} cached + {} new tokens exceed CONTEXT_LENGTH {CONTEXT_LENGTH} \
                 (recompile with `forge compile --context N` for more)",
                self.position,
                tokens.len()
            );
        }
        let mut logits = Vec::new();
        let chunks = tokens.len().div_ceil(PREFILL_CHUNK);
        for (c, chunk) in tokens.chunks(PREFILL_CHUNK).enumerate() {
            let last = c + 1 == chunks;
            let pass = Pass::new(chunk.len(), self.position);
            self.act.tokens.write_u32(0, chunk);
            let mut batch = self.gpu.batch();
            self.run_layers(&mut batch, &pass);
            match readback {
                Readback::AllLogits if chunk.len() > 1 => self.logits_all(&mut batch, &pass),
                Readback::AllLogits => self.logits_last(&mut batch, &pass),
                _ if last => self.logits_last(&mut batch, &pass),
                _ => {}
            }
            if last {
                match readback {
                    Readback::Argmax => self.argmax(&mut batch),
                    Readback::Candidates {
                        repeat_penalty,
                        recent,
                    } => self.top_candidates(&mut batch, repeat_penalty, recent),
                    _ => {}
                }
            }
            batch.finish()?;
            self.position += chunk.len();
            if let Readback::AllLogits = readback {
                logits.extend(self.act.logits.read_f32(0, chunk.len() * VOCAB_SIZE));
            }
        }
        Ok(match readback {
            Readback::AllLogits => Output::Logits(logits),
            Readback::LastLogits => Output::Logits(self.act.logits.read_f32(0, VOCAB_SIZE)),
            Readback::Argmax => Output::Token(self.act.sampled.read_u32(0, 1)[0]),
            Readback::Candidates { .. } => {
                let raw = self.act.candidates.read_u32(0, 2 * TOP_CANDIDATES);
                Output::Candidates(
                    raw.chunks(2)
                        .map(|p| (p[0], f32::from_bits(p[1])))
                        .collect(),
                )
            }
        })
    }

    /// Embeds the pass's tokens and runs every layer over them.
    fn run_layers(&self, batch: &mut Batch, pass: &Pass) {
        // token embeddings into the residual stream
        batch.dispatch(
            &self.kernels.embedding_f32_384x64,
            [pass.n, 1, 1],
            [32, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, self.tensors.token_embd)),
                (1, Arg::Buffer(&self.act.tokens, 0)),
                (2, Arg::Buffer(&self.act.x, 0)),
                (7, Arg::Bytes(&pass.step)),
            ],
        );
        for (layer, cache) in self.layers.iter().zip(&self.cache) {
            if pass.n == 1 {
                self.decode_attention(batch, layer, cache, pass);
            } else {
                self.prefill_attention(batch, layer, cache, pass);
            }
        }
    }

    /// One attention layer, one token.
    fn decode_attention(&self, batch: &mut Batch, layer: &Layer, cache: &KvCache, pass: &Pass) {
        // qkv = attn_qkv projection
        batch.dispatch(
            &self.kernels.matvec_f32_128x64_prenorm1em5,
            [10, 1, 1],
            [64, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.attn_qkv)),
                (1, Arg::Buffer(&self.act.x, 0)),
                (2, Arg::Buffer(&self.act.qkv, 0)),
                (4, Arg::Buffer(&self.weights, layer.attn_norm)),
            ],
        );
        // rotate q and k, append k and v to the cache
        batch.dispatch(
            &self
                .kernels
                .rope_store_h4_kv2_d16_r16_neox_f32_c256_t7ac25971,
            [8, pass.n, 1],
            [32, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.qkv, 0)),
                (1, Arg::Buffer(&cache.k, 0)),
                (2, Arg::Buffer(&cache.v, 0)),
                (7, Arg::Bytes(&pass.step)),
            ],
        );
        // attention over the cache, split over positions
        batch.dispatch(
            &self
                .kernels
                .attention_decode_h4_kv2_d16_f32_c256_s3e800000_split256,
            [4, (pass.pos + 1).div_ceil(256), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.qkv, 0)),
                (1, Arg::Buffer(&cache.k, 0)),
                (2, Arg::Buffer(&cache.v, 0)),
                (3, Arg::Buffer(&self.act.attn, 0)),
                (4, Arg::Buffer(&self.scratch, 0)),
                (7, Arg::Bytes(&pass.step)),
            ],
        );
        // combine the splits
        if (pass.pos + 1).div_ceil(256) > 1 {
            batch.dispatch(
                &self
                    .kernels
                    .attention_decode_h4_kv2_d16_f32_c256_s3e800000_split256_reduce,
                [4, 1, 1],
                [32, 1, 1],
                &[
                    (0, Arg::Buffer(&self.act.qkv, 0)),
                    (1, Arg::Buffer(&cache.k, 0)),
                    (2, Arg::Buffer(&cache.v, 0)),
                    (3, Arg::Buffer(&self.act.attn, 0)),
                    (4, Arg::Buffer(&self.scratch, 0)),
                    (7, Arg::Bytes(&pass.step)),
                ],
            );
        }
        // x += attn_output projection
        batch.dispatch(
            &self.kernels.matvec_f32_64x64_residual,
            [4, 1, 1],
            [64, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.attn_output)),
                (1, Arg::Buffer(&self.act.attn, 0)),
                (2, Arg::Buffer(&self.act.x, 0)),
            ],
        );
        // gated = act(gate) * up, from ffn_gate_up
        batch.dispatch(
            &self.kernels.matvec_f32_128x64_gated_silu_prenorm1em5,
            [10, 1, 1],
            [64, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.ffn_gate_up)),
                (1, Arg::Buffer(&self.act.x, 0)),
                (2, Arg::Buffer(&self.act.gated, 0)),
                (4, Arg::Buffer(&self.weights, layer.ffn_norm)),
            ],
        );
        // x += ffn_down projection
        batch.dispatch(
            &self.kernels.matvec_f32_64x128_residual,
            [4, 1, 1],
            [64, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.ffn_down)),
                (1, Arg::Buffer(&self.act.gated, 0)),
                (2, Arg::Buffer(&self.act.x, 0)),
            ],
        );
    }

    /// One attention layer, a chunk of tokens.
    fn prefill_attention(&self, batch: &mut Batch, layer: &Layer, cache: &KvCache, pass: &Pass) {
        // attn_norm = rms_norm(x)
        batch.dispatch(
            &self.kernels.rms_norm_64_eps1em5,
            [1, pass.n, 1],
            [32, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.x, 0)),
                (1, Arg::Buffer(&self.weights, layer.attn_norm)),
                (2, Arg::Buffer(&self.act.attn_norm, 0)),
                (7, Arg::Bytes(&pass.step)),
            ],
        );
        // qkv = attn_qkv projection
        batch.dispatch(
            &self.kernels.matmul_f32_128x64,
            [4, pass.n.div_ceil(16), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.attn_qkv)),
                (1, Arg::Buffer(&self.act.attn_norm, 0)),
                (2, Arg::Buffer(&self.act.qkv, 0)),
                (7, Arg::Bytes(&pass.step)),
            ],
        );
        // rotate q and k, append k and v to the cache
        batch.dispatch(
            &self
                .kernels
                .rope_store_h4_kv2_d16_r16_neox_f32_c256_t7ac25971,
            [8, pass.n, 1],
            [32, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.qkv, 0)),
                (1, Arg::Buffer(&cache.k, 0)),
                (2, Arg::Buffer(&cache.v, 0)),
                (7, Arg::Bytes(&pass.step)),
            ],
        );
        // causal attention of the chunk over the cache
        batch.dispatch(
            &self.kernels.attention_prefill_h4_kv2_d16_f32_c256_s3e800000,
            [4, pass.n.div_ceil(32), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.qkv, 0)),
                (1, Arg::Buffer(&cache.k, 0)),
                (2, Arg::Buffer(&cache.v, 0)),
                (3, Arg::Buffer(&self.act.attn, 0)),
                (7, Arg::Bytes(&pass.step)),
            ],
        );
        // x += attn_output projection
        batch.dispatch(
            &self.kernels.matmul_f32_64x64_residual,
            [2, pass.n.div_ceil(16), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.attn_output)),
                (1, Arg::Buffer(&self.act.attn, 0)),
                (2, Arg::Buffer(&self.act.x, 0)),
                (7, Arg::Bytes(&pass.step)),
            ],
        );
        // ffn_norm = rms_norm(x)
        batch.dispatch(
            &self.kernels.rms_norm_64_eps1em5,
            [1, pass.n, 1],
            [32, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.x, 0)),
                (1, Arg::Buffer(&self.weights, layer.ffn_norm)),
                (2, Arg::Buffer(&self.act.ffn_norm, 0)),
                (7, Arg::Bytes(&pass.step)),
            ],
        );
        // gated = act(gate) * up, from ffn_gate_up
        batch.dispatch(
            &self.kernels.matmul_f32_128x64_gated_silu,
            [4, pass.n.div_ceil(16), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.ffn_gate_up)),
                (1, Arg::Buffer(&self.act.ffn_norm, 0)),
                (2, Arg::Buffer(&self.act.gated, 0)),
                (7, Arg::Bytes(&pass.step)),
            ],
        );
        // x += ffn_down projection
        batch.dispatch(
            &self.kernels.matmul_f32_64x128_residual,
            [2, pass.n.div_ceil(16), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.ffn_down)),
                (1, Arg::Buffer(&self.act.gated, 0)),
                (2, Arg::Buffer(&self.act.x, 0)),
                (7, Arg::Bytes(&pass.step)),
            ],
        );
    }

    /// Logits of the pass's last token into `logits` row 0.
    fn logits_last(&self, batch: &mut Batch, pass: &Pass) {
        // logits of the last token (final norm fused)
        batch.dispatch(
            &self.kernels.matvec_f32_384x64_prenorm1em5,
            [28, 1, 1],
            [64, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, self.tensors.token_embd)),
                (1, Arg::Buffer(&self.act.x, pass.last_row(64))),
                (2, Arg::Buffer(&self.act.logits, 0)),
                (4, Arg::Buffer(&self.weights, self.tensors.output_norm)),
            ],
        );
    }

    /// Logits of every token of the pass into `logits`.
    fn logits_all(&self, batch: &mut Batch, pass: &Pass) {
        // final norm of every token
        batch.dispatch(
            &self.kernels.rms_norm_64_eps1em5,
            [1, pass.n, 1],
            [32, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.x, 0)),
                (1, Arg::Buffer(&self.weights, self.tensors.output_norm)),
                (2, Arg::Buffer(&self.act.final_norm, 0)),
                (7, Arg::Bytes(&pass.step)),
            ],
        );
        // logits of every token
        batch.dispatch(
            &self.kernels.matmul_f32_384x64,
            [12, pass.n.div_ceil(16), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, self.tensors.token_embd)),
                (1, Arg::Buffer(&self.act.final_norm, 0)),
                (2, Arg::Buffer(&self.act.logits, 0)),
                (7, Arg::Bytes(&pass.step)),
            ],
        );
    }

    fn argmax(&self, batch: &mut Batch) {
        // greedy token of the last position
        batch.dispatch(
            &self.kernels.argmax_384,
            [1, 1, 1],
            [96, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.logits, 0)),
                (1, Arg::Buffer(&self.act.sampled, 0)),
            ],
        );
    }

    fn top_candidates(&self, batch: &mut Batch, repeat_penalty: f32, recent: &[u32]) {
        let recent = &recent[recent.len().saturating_sub(PENALTY_WINDOW)..];
        self.act.recent.write_u32(0, recent);
        let mut penalty = [0; 8];
        penalty[..4].copy_from_slice(&(recent.len() as u32).to_le_bytes());
        penalty[4..].copy_from_slice(&repeat_penalty.to_le_bytes());
        // the most likely tokens after the repeat penalty, for the sampler
        batch.dispatch(
            &self.kernels.top_candidates_384_top64,
            [1, 1, 1],
            [384, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.logits, 0)),
                (1, Arg::Buffer(&self.act.recent, 0)),
                (2, Arg::Buffer(&self.act.candidates, 0)),
                (3, Arg::Bytes(&penalty)),
            ],
        );
    }
}
