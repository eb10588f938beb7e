//! hf: the forward pass forge planned for this model.
//!
//! hf (llama), 2 layers, hidden 64, 4 query / 2 KV heads of 16, vocabulary 384; F32 weights, F32 KV cache, context 256.
//!
//! Every function below is a fixed sequence of kernel dispatches from
//! `shaders/kernels.metal`; shapes are constants there. Decode (one token)
//! uses matrix-vector kernels with the RMSNorms folded in; prefill (a chunk
//! of up to `PREFILL_CHUNK` tokens) uses matrix-matrix kernels.

use forge_runtime::gpu::{Arg, Batch, Buffer, Gpu};
use forge_runtime::weights::WeightsFile;
use forge_runtime::{
    penalty_bytes, CompiledModel, ModelInfo, Pass, PositionRows, Readback, Result, Results,
    SequenceMemory,
};

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

// The pipelines of `shaders/kernels.metal`: a `Kernels` struct with one
// field per kernel, named as the kernel is.
forge_runtime::kernels! {
    embedding_f32_384x64,
    rms_norm_64_eps1em5,
    matvec_f32_128x64_prenorm1em5,
    matmul_f32_128x64,
    rope_store_h4_kv2_d16_r16_neox_f32_c256_t7ac25971,
    attention_decode_h4_kv2_d16_f32_c256_s3e800000_split256,
    attention_decode_h4_kv2_d16_f32_c256_s3e800000_split256_reduce,
    attention_prefill_h4_kv2_d16_f32_c256_s3e800000,
    matvec_f32_64x64_residual,
    matmul_f32_64x64_residual,
    matvec_f32_128x64_gated_silu_prenorm1em5,
    matmul_f32_128x64_gated_silu,
    matvec_f32_64x128_residual,
    matmul_f32_64x128_residual,
    matvec_f32_384x64_prenorm1em5,
    matmul_f32_384x64,
    argmax_384,
    top_candidates_384_top64_select,
    top_candidates_384_top64_merge,
}

/// Byte offsets of the tensors outside the layers in `weights.gguf`.
struct Tensors {
    output_norm: usize,
    token_embd: usize,
}

/// The byte offset of layer `i`'s tensor `name` in `weights.gguf`.
fn layer_offset(file: &WeightsFile, i: usize, name: &str) -> Result<usize> {
    Ok(file.tensor(&format!("blk.{i}.{name}"))?.offset)
}

/// One layer: its tensors' byte offsets in `weights.gguf` and the memory it
/// carries from pass to pass.
struct Layer {
    attn_norm: usize,
    attn_output: usize,
    attn_qkv: usize,
    ffn_down: usize,
    ffn_gate_up: usize,
    ffn_norm: usize,
    cache: KvCache,
}

impl Layer {
    fn load(gpu: &Gpu, file: &WeightsFile, i: usize) -> Result<Layer> {
        let offset = |name: &str| layer_offset(file, i, name);
        Ok(Layer {
            attn_norm: offset("attn_norm.weight")?,
            attn_output: offset("attn_output.weight")?,
            attn_qkv: offset("attn_qkv.weight")?,
            ffn_down: offset("ffn_down.weight")?,
            ffn_gate_up: offset("ffn_gate_up.weight")?,
            ffn_norm: offset("ffn_norm.weight")?,
            cache: KvCache::new(gpu),
        })
    }

    /// Adds the buffers it keeps of the sequence to `memory`.
    fn memory<'a>(&'a self, memory: &mut SequenceMemory<'a>) {
        self.cache.memory(memory);
    }
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
    candidate_partials: Buffer,
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
            candidate_partials: gpu.buffer(1024),
        }
    }
}

/// One attention layer's keys and values, `[2 heads, CONTEXT_LENGTH, 16]` of f32.
struct KvCache {
    k: Buffer,
    v: Buffer,
}

impl KvCache {
    fn new(gpu: &Gpu) -> KvCache {
        let bytes = 2 * CONTEXT_LENGTH * 16 * 4;
        KvCache {
            k: gpu.buffer(bytes),
            v: gpu.buffer(bytes),
        }
    }

    /// Adds the keys and the values, one row per position and head, to `memory`.
    fn memory<'a>(&'a self, memory: &mut SequenceMemory<'a>) {
        for buffer in [&self.k, &self.v] {
            memory.positional.push(PositionRows {
                buffer,
                heads: 2,
                row_bytes: 16 * 4,
            });
        }
    }
}

pub struct Model {
    gpu: Gpu,
    kernels: Kernels,
    /// `weights.gguf`, mapped and wrapped without a copy.
    weights: Buffer,
    tensors: Tensors,
    layers: Vec<Layer>,
    /// Split-attention partials.
    scratch: Buffer,
    act: Activations,
}

impl CompiledModel for Model {
    const INFO: ModelInfo = ModelInfo {
        name: MODEL_NAME,
        vocab_size: VOCAB_SIZE,
        context_length: CONTEXT_LENGTH,
        prefill_chunk: PREFILL_CHUNK,
        top_candidates: TOP_CANDIDATES,
        penalty_window: PENALTY_WINDOW,
        recurrent_state: false,
    };

    fn load(gpu: Gpu, file: &WeightsFile) -> Result<Model> {
        let offset = |name: &str| -> Result<usize> { Ok(file.tensor(name)?.offset) };
        let tensors = Tensors {
            output_norm: offset("output_norm.weight")?,
            token_embd: offset("token_embd.weight")?,
        };
        let layers = (0..LAYERS)
            .map(|i| Layer::load(&gpu, file, i))
            .collect::<Result<Vec<_>>>()?;
        let scratch = gpu.buffer(288);
        let weights = gpu.wrap_mmap(file.map.clone())?;
        Ok(Model {
            kernels: Kernels::new(&gpu)?,
            act: Activations::new(&gpu),
            weights,
            tensors,
            layers,
            scratch,
            gpu,
        })
    }

    fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    fn decode(&mut self, token: u32, pass: &Pass, readback: &Readback) -> Result<()> {
        self.act.tokens.write_u32(0, &[token]);
        let mut batch = self.gpu.batch();
        self.embed(&mut batch, pass);
        for layer in &self.layers {
            self.decode_attention(&mut batch, layer, pass);
        }
        if readback.needs_logits() {
            self.logits_last(&mut batch, pass);
        }
        self.pick(&mut batch, readback);
        batch.finish()
    }

    fn prefill(&mut self, tokens: &[u32], pass: &Pass, readback: &Readback) -> Result<()> {
        self.act.tokens.write_u32(0, tokens);
        let mut batch = self.gpu.batch();
        self.embed(&mut batch, pass);
        for layer in &self.layers {
            self.prefill_attention(&mut batch, layer, pass);
        }
        match readback {
            Readback::Nothing => {}
            Readback::AllLogits => self.logits_all(&mut batch, pass),
            _ => self.logits_last(&mut batch, pass),
        }
        self.pick(&mut batch, readback);
        batch.finish()
    }

    fn results(&self) -> Results<'_> {
        Results {
            logits: &self.act.logits,
            sampled: &self.act.sampled,
            candidates: &self.act.candidates,
        }
    }

    /// The KV cache needs no clearing: a new sequence overwrites it from position 0.
    fn reset(&mut self) {}

    fn memory(&self) -> SequenceMemory<'_> {
        let mut memory = SequenceMemory::default();
        for layer in &self.layers {
            layer.memory(&mut memory);
        }
        memory
    }
}

impl Model {
    /// Embeds the pass's tokens into the residual stream.
    fn embed(&self, batch: &mut Batch, pass: &Pass) {
        // token embeddings into the residual stream
        batch.dispatch(
            &self.kernels.embedding_f32_384x64,
            [pass.n, 1, 1],
            [32, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, self.tensors.token_embd)),
                (1, Arg::Buffer(&self.act.tokens, 0)),
                (2, Arg::Buffer(&self.act.x, 0)),
                (7, Arg::Bytes(pass.step())),
            ],
        );
    }

    /// One attention layer, one token.
    fn decode_attention(&self, batch: &mut Batch, layer: &Layer, pass: &Pass) {
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
                (1, Arg::Buffer(&layer.cache.k, 0)),
                (2, Arg::Buffer(&layer.cache.v, 0)),
                (7, Arg::Bytes(pass.step())),
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
                (1, Arg::Buffer(&layer.cache.k, 0)),
                (2, Arg::Buffer(&layer.cache.v, 0)),
                (3, Arg::Buffer(&self.act.attn, 0)),
                (4, Arg::Buffer(&self.scratch, 0)),
                (7, Arg::Bytes(pass.step())),
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
                    (1, Arg::Buffer(&layer.cache.k, 0)),
                    (2, Arg::Buffer(&layer.cache.v, 0)),
                    (3, Arg::Buffer(&self.act.attn, 0)),
                    (4, Arg::Buffer(&self.scratch, 0)),
                    (7, Arg::Bytes(pass.step())),
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
    fn prefill_attention(&self, batch: &mut Batch, layer: &Layer, pass: &Pass) {
        // attn_norm = rms_norm(x)
        batch.dispatch(
            &self.kernels.rms_norm_64_eps1em5,
            [1, pass.n, 1],
            [32, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.x, 0)),
                (1, Arg::Buffer(&self.weights, layer.attn_norm)),
                (2, Arg::Buffer(&self.act.attn_norm, 0)),
                (7, Arg::Bytes(pass.step())),
            ],
        );
        // qkv = attn_qkv projection
        batch.dispatch(
            &self.kernels.matmul_f32_128x64,
            [2, pass.n.div_ceil(32), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.attn_qkv)),
                (1, Arg::Buffer(&self.act.attn_norm, 0)),
                (2, Arg::Buffer(&self.act.qkv, 0)),
                (7, Arg::Bytes(pass.step())),
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
                (1, Arg::Buffer(&layer.cache.k, 0)),
                (2, Arg::Buffer(&layer.cache.v, 0)),
                (7, Arg::Bytes(pass.step())),
            ],
        );
        // causal attention of the chunk over the cache
        batch.dispatch(
            &self.kernels.attention_prefill_h4_kv2_d16_f32_c256_s3e800000,
            [4, pass.n.div_ceil(32), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.qkv, 0)),
                (1, Arg::Buffer(&layer.cache.k, 0)),
                (2, Arg::Buffer(&layer.cache.v, 0)),
                (3, Arg::Buffer(&self.act.attn, 0)),
                (7, Arg::Bytes(pass.step())),
            ],
        );
        // x += attn_output projection
        batch.dispatch(
            &self.kernels.matmul_f32_64x64_residual,
            [1, pass.n.div_ceil(32), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.attn_output)),
                (1, Arg::Buffer(&self.act.attn, 0)),
                (2, Arg::Buffer(&self.act.x, 0)),
                (7, Arg::Bytes(pass.step())),
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
                (7, Arg::Bytes(pass.step())),
            ],
        );
        // gated = act(gate) * up, from ffn_gate_up
        batch.dispatch(
            &self.kernels.matmul_f32_128x64_gated_silu,
            [2, pass.n.div_ceil(32), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.ffn_gate_up)),
                (1, Arg::Buffer(&self.act.ffn_norm, 0)),
                (2, Arg::Buffer(&self.act.gated, 0)),
                (7, Arg::Bytes(pass.step())),
            ],
        );
        // x += ffn_down projection
        batch.dispatch(
            &self.kernels.matmul_f32_64x128_residual,
            [1, pass.n.div_ceil(32), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.ffn_down)),
                (1, Arg::Buffer(&self.act.gated, 0)),
                (2, Arg::Buffer(&self.act.x, 0)),
                (7, Arg::Bytes(pass.step())),
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
                (7, Arg::Bytes(pass.step())),
            ],
        );
        // logits of every token
        batch.dispatch(
            &self.kernels.matmul_f32_384x64,
            [6, pass.n.div_ceil(32), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, self.tensors.token_embd)),
                (1, Arg::Buffer(&self.act.final_norm, 0)),
                (2, Arg::Buffer(&self.act.logits, 0)),
                (7, Arg::Bytes(pass.step())),
            ],
        );
    }

    /// Chooses on the GPU what `readback` asks for: the greedy token, or the
    /// best candidates after the repeat penalty.
    fn pick(&self, batch: &mut Batch, readback: &Readback) {
        match *readback {
            Readback::Argmax => {
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
            Readback::Candidates {
                repeat_penalty,
                recent,
            } => {
                self.act.recent.write_u32(0, recent);
                let penalty = penalty_bytes(recent, repeat_penalty);
                // the best tokens of each slice of the vocabulary after the repeat penalty
                batch.dispatch(
                    &self.kernels.top_candidates_384_top64_select,
                    [2, 1, 1],
                    [32, 1, 1],
                    &[
                        (0, Arg::Buffer(&self.act.logits, 0)),
                        (1, Arg::Buffer(&self.act.recent, 0)),
                        (2, Arg::Buffer(&self.act.candidate_partials, 0)),
                        (3, Arg::Bytes(&penalty)),
                    ],
                );

                // merged: the most likely tokens, for the sampler
                batch.dispatch(
                    &self.kernels.top_candidates_384_top64_merge,
                    [1, 1, 1],
                    [32, 1, 1],
                    &[
                        (0, Arg::Buffer(&self.act.candidate_partials, 0)),
                        (2, Arg::Buffer(&self.act.candidates, 0)),
                    ],
                );
            }
            _ => {}
        }
    }
}
