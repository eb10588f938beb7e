//! hf: the forward pass forge planned for this model.
//!
//! hf (mamba2), 2 layers, hidden 64, vocabulary 384; F32/Q4_0 weights, context 1048576.
//!
//! Every function below is a fixed sequence of kernel dispatches from
//! `shaders/kernels.metal`; shapes are constants there. Decode (one token)
//! uses matrix-vector kernels with the RMSNorms folded in; prefill (a chunk
//! of up to `PREFILL_CHUNK` tokens) uses matrix-matrix kernels.

use forge_runtime::gpu::{Arg, Batch, Buffer, Gpu};
use forge_runtime::weights::WeightsFile;
use forge_runtime::{
    penalty_bytes, CompiledModel, ModelInfo, Pass, Readback, Result, Results, SequenceMemory,
};

pub const MODEL_NAME: &str = "hf";
pub const VOCAB_SIZE: usize = 384;
pub const LAYERS: usize = 2;
/// Positions a sequence may reach (the model's own, or `forge compile --context`).
pub const CONTEXT_LENGTH: usize = 1048576;
/// Tokens per prefill pass.
pub const PREFILL_CHUNK: usize = 64;
/// Candidates the GPU hands the sampler per step.
pub const TOP_CANDIDATES: usize = 64;
/// Most recent tokens the repeat penalty looks at.
pub const PENALTY_WINDOW: usize = 64;

// The pipelines of `shaders/kernels.metal`: a `Kernels` struct with one
// field per kernel, named as the kernel is.
forge_runtime::kernels! {
    embedding_q4_0_384x64,
    rms_norm_64_eps1em5,
    matvec_q4_0_328x64_prenorm1em5,
    matmul_q4_0_328x64,
    causal_conv1d_192_k4_stride328_bias,
    ssd_decode_8x16x16_g2_dtstride328,
    ssd_prefill_8x16x16_g2_dtstride328_chunk4,
    gated_rms_norm_128_per64_zstride328_eps1em5,
    matvec_q4_0_64x128_residual_gatednorm2g_eps1em5,
    matmul_q4_0_64x128_residual,
    matvec_q4_0_384x64_prenorm1em5,
    matmul_q4_0_384x64,
    argmax_384,
    top_candidates_384_top64_select,
    top_candidates_384_top64_merge,
}

/// Byte offsets of the tensors outside the layers in `weights.gguf`.
struct Tensors {
    output: usize,
    output_norm: usize,
    output_scales: usize,
    token_embd: usize,
    token_embd_scales: usize,
}

/// The byte offset of layer `i`'s tensor `name` in `weights.gguf`.
fn layer_offset(file: &WeightsFile, i: usize, name: &str) -> Result<usize> {
    Ok(file.tensor(&format!("blk.{i}.{name}"))?.offset)
}

/// One layer: its tensors' byte offsets in `weights.gguf` and the memory it
/// carries from pass to pass.
struct Layer {
    attn_norm: usize,
    ssm_a: usize,
    ssm_conv1d: usize,
    ssm_conv1d_bias: usize,
    ssm_d: usize,
    ssm_dt_bias: usize,
    ssm_in: usize,
    ssm_in_scales: usize,
    ssm_norm: usize,
    ssm_out: usize,
    ssm_out_scales: usize,
    state: SsmState,
}

impl Layer {
    fn load(gpu: &Gpu, file: &WeightsFile, i: usize) -> Result<Layer> {
        let offset = |name: &str| layer_offset(file, i, name);
        Ok(Layer {
            attn_norm: offset("attn_norm.weight")?,
            ssm_a: offset("ssm_a.weight")?,
            ssm_conv1d: offset("ssm_conv1d.weight")?,
            ssm_conv1d_bias: offset("ssm_conv1d.bias")?,
            ssm_d: offset("ssm_d.weight")?,
            ssm_dt_bias: offset("ssm_dt.bias")?,
            ssm_in: offset("ssm_in.weight")?,
            ssm_in_scales: offset("ssm_in.weight.scales")?,
            ssm_norm: offset("ssm_norm.weight")?,
            ssm_out: offset("ssm_out.weight")?,
            ssm_out_scales: offset("ssm_out.weight.scales")?,
            state: SsmState::new(gpu),
        })
    }

    /// Adds the buffers it keeps of the sequence to `memory`.
    fn memory<'a>(&'a self, memory: &mut SequenceMemory<'a>) {
        self.state.memory(memory);
    }
}

/// Activations of one pass, `PREFILL_CHUNK` rows of f32 each.
struct Activations {
    /// `[tokens, 64]`
    final_norm: Buffer,
    /// `[tokens, 384]`
    logits: Buffer,
    /// `[tokens, 64]`
    ssm_norm_in: Buffer,
    /// `[tokens, 64]`
    x: Buffer,
    /// `[tokens, 192]`
    xbc_conv: Buffer,
    /// `[tokens, 128]`
    y: Buffer,
    /// `[tokens, 128]`
    y_normed: Buffer,
    /// `[tokens, 328]`
    zxbcdt: Buffer,
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
            final_norm: rows(64),
            logits: rows(384),
            ssm_norm_in: rows(64),
            x: rows(64),
            xbc_conv: rows(192),
            y: rows(128),
            y_normed: rows(128),
            zxbcdt: rows(328),
            tokens: gpu.buffer(PREFILL_CHUNK * 4),
            sampled: gpu.buffer(4),
            recent: gpu.buffer(PENALTY_WINDOW * 4),
            candidates: gpu.buffer(TOP_CANDIDATES * 8),
            candidate_partials: gpu.buffer(1024),
        }
    }
}

/// One state-space layer's recurrent state, f32, carried from pass to pass
/// and zeroed when a sequence starts.
struct SsmState {
    /// The causal conv's window, `[3 previous inputs, 192 channels]`.
    conv: Buffer,
    /// The scan's state, `[8 heads, 16 channels, 16 states]`.
    ssm: Buffer,
}

impl SsmState {
    fn new(gpu: &Gpu) -> SsmState {
        SsmState {
            conv: gpu.buffer(2304),
            ssm: gpu.buffer(8192),
        }
    }

    fn zero(&self) {
        self.conv.zero();
        self.ssm.zero();
    }

    /// Adds the state, kept whole, to `memory`.
    fn memory<'a>(&'a self, memory: &mut SequenceMemory<'a>) {
        memory.recurrent.push(&self.conv);
        memory.recurrent.push(&self.ssm);
    }
}

pub struct Model {
    gpu: Gpu,
    kernels: Kernels,
    /// `weights.gguf`, mapped and wrapped without a copy.
    weights: Buffer,
    tensors: Tensors,
    layers: Vec<Layer>,
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
        recurrent_state: true,
    };

    fn load(gpu: Gpu, file: &WeightsFile) -> Result<Model> {
        let offset = |name: &str| -> Result<usize> { Ok(file.tensor(name)?.offset) };
        let tensors = Tensors {
            output: offset("output.weight")?,
            output_norm: offset("output_norm.weight")?,
            output_scales: offset("output.weight.scales")?,
            token_embd: offset("token_embd.weight")?,
            token_embd_scales: offset("token_embd.weight.scales")?,
        };
        let layers = (0..LAYERS)
            .map(|i| Layer::load(&gpu, file, i))
            .collect::<Result<Vec<_>>>()?;
        let weights = gpu.wrap_mmap(file.map.clone())?;
        Ok(Model {
            kernels: Kernels::new(&gpu)?,
            act: Activations::new(&gpu),
            weights,
            tensors,
            layers,
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
            self.decode_mamba2(&mut batch, layer, pass);
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
            self.prefill_mamba2(&mut batch, layer, pass);
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

    /// A new sequence starts from zero state.
    fn reset(&mut self) {
        for layer in &self.layers {
            layer.state.zero();
        }
    }

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
            &self.kernels.embedding_q4_0_384x64,
            [pass.n, 1, 1],
            [32, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, self.tensors.token_embd)),
                (1, Arg::Buffer(&self.act.tokens, 0)),
                (2, Arg::Buffer(&self.act.x, 0)),
                (
                    3,
                    Arg::Buffer(&self.weights, self.tensors.token_embd_scales),
                ),
                (7, Arg::Bytes(pass.step())),
            ],
        );
    }

    /// One mamba2 layer, one token.
    fn decode_mamba2(&self, batch: &mut Batch, layer: &Layer, pass: &Pass) {
        // zxbcdt = ssm_in projection
        batch.dispatch(
            &self.kernels.matvec_q4_0_328x64_prenorm1em5,
            [24, 1, 1],
            [64, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.ssm_in)),
                (1, Arg::Buffer(&self.act.x, 0)),
                (2, Arg::Buffer(&self.act.zxbcdt, 0)),
                (4, Arg::Buffer(&self.weights, layer.attn_norm)),
                (5, Arg::Buffer(&self.weights, layer.ssm_in_scales)),
            ],
        );
        // xbc_conv = silu(causal conv4), shifting the conv state
        batch.dispatch(
            &self.kernels.causal_conv1d_192_k4_stride328_bias,
            [1, 1, 1],
            [192, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.zxbcdt, 512)),
                (1, Arg::Buffer(&self.weights, layer.ssm_conv1d)),
                (2, Arg::Buffer(&self.act.xbc_conv, 0)),
                (3, Arg::Buffer(&self.weights, layer.ssm_conv1d_bias)),
                (4, Arg::Buffer(&layer.state.conv, 0)),
                (7, Arg::Bytes(pass.step())),
            ],
        );
        // y = one SSD step (dt bias, softplus, D skip fused)
        batch.dispatch(
            &self.kernels.ssd_decode_8x16x16_g2_dtstride328,
            [8, 2, 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.xbc_conv, 0)),
                (1, Arg::Buffer(&self.act.zxbcdt, 1280)),
                (2, Arg::Buffer(&self.act.y, 0)),
                (3, Arg::Buffer(&self.weights, layer.ssm_a)),
                (4, Arg::Buffer(&self.weights, layer.ssm_d)),
                (5, Arg::Buffer(&self.weights, layer.ssm_dt_bias)),
                (6, Arg::Buffer(&layer.state.ssm, 0)),
            ],
        );
        // x += ssm_out projection, the gated rms_norm of y folded in
        batch.dispatch(
            &self.kernels.matvec_q4_0_64x128_residual_gatednorm2g_eps1em5,
            [5, 1, 1],
            [64, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.ssm_out)),
                (1, Arg::Buffer(&self.act.y, 0)),
                (2, Arg::Buffer(&self.act.x, 0)),
                (4, Arg::Buffer(&self.weights, layer.ssm_norm)),
                (5, Arg::Buffer(&self.weights, layer.ssm_out_scales)),
                (6, Arg::Buffer(&self.act.zxbcdt, 0)),
            ],
        );
    }

    /// One mamba2 layer, a chunk of tokens.
    fn prefill_mamba2(&self, batch: &mut Batch, layer: &Layer, pass: &Pass) {
        // ssm_norm_in = rms_norm(x)
        batch.dispatch(
            &self.kernels.rms_norm_64_eps1em5,
            [1, pass.n, 1],
            [32, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.x, 0)),
                (1, Arg::Buffer(&self.weights, layer.attn_norm)),
                (2, Arg::Buffer(&self.act.ssm_norm_in, 0)),
                (7, Arg::Bytes(pass.step())),
            ],
        );
        // zxbcdt = ssm_in projection
        batch.dispatch(
            &self.kernels.matmul_q4_0_328x64,
            [6, pass.n.div_ceil(32), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.ssm_in)),
                (1, Arg::Buffer(&self.act.ssm_norm_in, 0)),
                (2, Arg::Buffer(&self.act.zxbcdt, 0)),
                (5, Arg::Buffer(&self.weights, layer.ssm_in_scales)),
                (7, Arg::Bytes(pass.step())),
            ],
        );
        // xbc_conv = silu(causal conv4), shifting the conv state
        batch.dispatch(
            &self.kernels.causal_conv1d_192_k4_stride328_bias,
            [1, 1, 1],
            [192, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.zxbcdt, 512)),
                (1, Arg::Buffer(&self.weights, layer.ssm_conv1d)),
                (2, Arg::Buffer(&self.act.xbc_conv, 0)),
                (3, Arg::Buffer(&self.weights, layer.ssm_conv1d_bias)),
                (4, Arg::Buffer(&layer.state.conv, 0)),
                (7, Arg::Bytes(pass.step())),
            ],
        );
        // y = chunked SSD scan over the pass
        batch.dispatch(
            &self.kernels.ssd_prefill_8x16x16_g2_dtstride328_chunk4,
            [8, 2, 1],
            [32, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.xbc_conv, 0)),
                (1, Arg::Buffer(&self.act.zxbcdt, 1280)),
                (2, Arg::Buffer(&self.act.y, 0)),
                (3, Arg::Buffer(&self.weights, layer.ssm_a)),
                (4, Arg::Buffer(&self.weights, layer.ssm_d)),
                (5, Arg::Buffer(&self.weights, layer.ssm_dt_bias)),
                (6, Arg::Buffer(&layer.state.ssm, 0)),
                (7, Arg::Bytes(pass.step())),
            ],
        );
        // y_normed = grouped rms_norm of y gated by SiLU(z)
        batch.dispatch(
            &self.kernels.gated_rms_norm_128_per64_zstride328_eps1em5,
            [2, pass.n, 1],
            [64, 1, 1],
            &[
                (0, Arg::Buffer(&self.act.y, 0)),
                (1, Arg::Buffer(&self.weights, layer.ssm_norm)),
                (2, Arg::Buffer(&self.act.y_normed, 0)),
                (3, Arg::Buffer(&self.act.zxbcdt, 0)),
                (7, Arg::Bytes(pass.step())),
            ],
        );
        // x += ssm_out projection
        batch.dispatch(
            &self.kernels.matmul_q4_0_64x128_residual,
            [1, pass.n.div_ceil(32), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, layer.ssm_out)),
                (1, Arg::Buffer(&self.act.y_normed, 0)),
                (2, Arg::Buffer(&self.act.x, 0)),
                (5, Arg::Buffer(&self.weights, layer.ssm_out_scales)),
                (7, Arg::Bytes(pass.step())),
            ],
        );
    }

    /// Logits of the pass's last token into `logits` row 0.
    fn logits_last(&self, batch: &mut Batch, pass: &Pass) {
        // logits of the last token (final norm fused)
        batch.dispatch(
            &self.kernels.matvec_q4_0_384x64_prenorm1em5,
            [28, 1, 1],
            [64, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, self.tensors.output)),
                (1, Arg::Buffer(&self.act.x, pass.last_row(64))),
                (2, Arg::Buffer(&self.act.logits, 0)),
                (4, Arg::Buffer(&self.weights, self.tensors.output_norm)),
                (5, Arg::Buffer(&self.weights, self.tensors.output_scales)),
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
            &self.kernels.matmul_q4_0_384x64,
            [6, pass.n.div_ceil(32), 1],
            [128, 1, 1],
            &[
                (0, Arg::Buffer(&self.weights, self.tensors.output)),
                (1, Arg::Buffer(&self.act.final_norm, 0)),
                (2, Arg::Buffer(&self.act.logits, 0)),
                (5, Arg::Buffer(&self.weights, self.tensors.output_scales)),
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
