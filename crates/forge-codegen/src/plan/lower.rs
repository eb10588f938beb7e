//! The graph walk that chooses kernels, fuses ops and lays out buffers and
//! weights (see the module docs of `plan`).

use std::collections::{BTreeMap, HashMap, HashSet};

use forge_ir::{DType, Model, Node, Op, TensorTransform, ValueId};
use serde::Serialize;

use super::conversions::Conversions;
use super::options::{matrix_dtype, CompileOptions};
use super::steps::{act, arg, Arg, ArgSource, Row, Step};
use super::weights::{PlannedTensor, WeightPlan};
use crate::export::plane_tensor_name;
use crate::kernels::weight_format::{plane_bindings, PlaneSlots};
use crate::kernels::{
    add, argmax, attention_decode, attention_prefill, embedding, matmul, matvec, rms_norm,
    rope_store, top_candidates, KernelInstance,
};

/// Candidates the sampler gets back per decode step (the GPU keeps the rest).
pub const TOP_CANDIDATES: u64 = 64;

/// Tokens per prefill pass; longer prompts run in several.
pub const PREFILL_CHUNK: u64 = 64;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LowerError(pub String);

fn unsupported<T>(what: impl std::fmt::Display) -> Result<T, LowerError> {
    Err(LowerError(what.to_string()))
}

/// Shape of each attention layer's KV cache (`[kv_heads, context, head_dim]`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttentionCache {
    pub kv_heads: u64,
    pub head_dim: u64,
    pub dtype: DType,
}

/// Layers that dispatch the same kernels with the same bindings share a kind
/// and one pair of functions in the generated code.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerKind {
    pub name: String,
    /// What the kind's layers are made of (`attention` for full and sliding
    /// attention alike): kinds of one family share a `Layer` struct when they
    /// bind the same tensors.
    pub family: String,
    pub decode: Vec<Step>,
    pub prefill: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerPlan {
    pub index: u64,
    pub kind: usize,
    /// `Layer` struct field -> tensor name in the weights file.
    pub tensors: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub kernels: Vec<KernelInstance>,
    pub weights: WeightPlan,
    /// Checkpoint matrices stored in another format (for the notes of
    /// `forge compile`; not part of what the templates render).
    #[serde(skip)]
    pub conversions: Conversions,
    /// Activation buffers: name -> f32 columns per token (rows = PREFILL_CHUNK).
    pub buffers: BTreeMap<String, u64>,
    /// Embedding lookup (same for both paths).
    pub prologue: Vec<Step>,
    pub layer_kinds: Vec<LayerKind>,
    pub layers: Vec<LayerPlan>,
    /// Model tensors outside the layers: field -> tensor name.
    pub model_tensors: BTreeMap<String, String>,
    /// Logits of the pass's last token into `logits` row 0.
    pub logits_last: Vec<Step>,
    /// Logits of every token of a prefill pass into `logits`.
    pub logits_all: Vec<Step>,
    pub argmax: Step,
    /// Select per vocabulary slice, then merge.
    pub top_candidates: Vec<Step>,
    /// Bytes of the select step's partial lists.
    pub top_candidates_partial_bytes: u64,
    pub cache: Option<AttentionCache>,
    /// Each state-space layer's conv and scan state.
    pub ssm_state: Option<SsmState>,
    /// Bytes of split-attention scratch (0 without attention).
    pub attention_scratch_bytes: u64,
    pub context: u64,
    pub vocab: u64,
    pub hidden: u64,
    pub prefill_chunk: u64,
    pub top_candidates_count: u64,
}

/// Where a value lives: an activation buffer, its first column, and the
/// floats between the starts of consecutive rows (the width of the value
/// that was written there; more than the value's own for a column slice).
#[derive(Clone, Debug, PartialEq)]
struct Loc {
    buffer: String,
    column: u64,
    stride: u64,
}

/// An RMSNorm folded into the matvecs that read its output.
#[derive(Clone, Debug)]
struct FusedNorm {
    input: ValueId,
    weight_field: String,
    eps: f32,
}

struct Lowering<'m> {
    model: &'m Model,
    options: &'m CompileOptions,
    kv_dtype: DType,
    context: u64,
    kernels: Vec<KernelInstance>,
    weights: WeightPlan,
    conversions: Conversions,
    buffers: BTreeMap<String, u64>,
    locs: HashMap<ValueId, Loc>,
    norms: HashMap<ValueId, FusedNorm>,
    gated_norms: HashMap<ValueId, ssm::FusedGatedNorm>,
    consumers: HashMap<ValueId, Vec<Node>>,
    cache: Option<AttentionCache>,
    scratch: u64,
    /// The recurrent state of the layer being lowered, and of every state-space layer.
    layer_state: Option<SsmState>,
    ssm_state: Option<SsmState>,
}

/// The steps of one block (or the prologue/epilogue) in both paths.
#[derive(Default)]
struct Paths {
    decode: Vec<Step>,
    prefill: Vec<Step>,
    /// Field -> tensor for `LayerTensor` arguments.
    tensors: BTreeMap<String, String>,
}

pub fn lower(model: &Model, options: &CompileOptions) -> Result<Plan, LowerError> {
    options.check().map_err(LowerError)?;
    let graph = &model.graph;
    let mut consumers: HashMap<ValueId, Vec<Node>> = HashMap::new();
    let all_nodes = graph
        .prologue
        .iter()
        .chain(graph.blocks.iter().flat_map(|b| b.nodes.iter()))
        .chain(graph.epilogue.iter());
    for node in all_nodes {
        for input in &node.inputs {
            consumers.entry(*input).or_default().push(node.clone());
        }
    }
    let all_f32 = model
        .tensors
        .iter()
        .all(|t| t.dtype == DType::F32 || t.shape.len() < 2);
    let weights_f32 = options.dtype.map_or(all_f32, |d| d == DType::F32);
    let kv_dtype = options
        .kv_dtype
        .unwrap_or(if weights_f32 { DType::F32 } else { DType::F16 });
    let mut l = Lowering {
        model,
        options,
        kv_dtype,
        context: options.context_length(model),
        kernels: Vec::new(),
        weights: WeightPlan::default(),
        conversions: Conversions::default(),
        buffers: BTreeMap::new(),
        locs: HashMap::new(),
        norms: HashMap::new(),
        gated_norms: HashMap::new(),
        consumers,
        cache: None,
        scratch: 0,
        layer_state: None,
        ssm_state: None,
    };
    let prologue = l.prologue()?;
    let mut layer_kinds: Vec<LayerKind> = Vec::new();
    let mut layers = Vec::new();
    for block in &graph.blocks {
        let paths = l.block(&block.nodes, block.index)?;
        let kind = match layer_kinds
            .iter()
            .position(|k| k.decode == paths.decode && k.prefill == paths.prefill)
        {
            Some(k) => k,
            None => {
                let family = match block.spec.mixer {
                    forge_ir::Mixer::SlidingAttention => forge_ir::Mixer::FullAttention.name(),
                    mixer => mixer.name(),
                };
                layer_kinds.push(LayerKind {
                    name: block.spec.mixer.name().to_string(),
                    family: family.to_string(),
                    decode: paths.decode,
                    prefill: paths.prefill,
                });
                layer_kinds.len() - 1
            }
        };
        layers.push(LayerPlan {
            index: block.index,
            kind,
            tensors: paths.tensors,
        });
    }
    name_layer_kinds(&mut layer_kinds);
    let epilogue::Epilogue {
        last: logits_last,
        all: logits_all,
        tensors: mut model_tensors,
    } = l.epilogue()?;
    model_tensors.extend(prologue.tensors);
    let vocab = model.config.vocab_size;
    let argmax_kernel = l.kernel(argmax::argmax(vocab));
    let argmax = Step::new(
        "greedy token of the last position",
        &argmax_kernel,
        vec![act(0, "logits", 0), act(1, "sampled", 0)],
    );
    // A vocabulary smaller than the candidate count hands all of it to the sampler.
    let top_count = TOP_CANDIDATES.min(vocab);
    let top = top_candidates::top_candidates(vocab, top_count);
    let (select, merge) = (l.kernel(top.select), l.kernel(top.merge));
    let partials = || ArgSource::Activation {
        buffer: "candidate_partials".into(),
        column: 0,
        row: Row::First,
    };
    let top_candidates = vec![
        Step::new(
            "the best tokens of each slice of the vocabulary after the repeat penalty",
            &select,
            vec![
                act(0, "logits", 0),
                arg(
                    1,
                    ArgSource::Activation {
                        buffer: "recent".into(),
                        column: 0,
                        row: Row::First,
                    },
                ),
                arg(2, partials()),
                arg(3, ArgSource::Penalty),
            ],
        ),
        Step::new(
            "merged: the most likely tokens, for the sampler",
            &merge,
            vec![arg(0, partials()), act(2, "candidates", 0)],
        ),
    ];
    Ok(Plan {
        kernels: l.kernels,
        weights: l.weights,
        conversions: l.conversions,
        buffers: l.buffers,
        prologue: prologue.decode,
        layer_kinds,
        layers,
        model_tensors,
        logits_last,
        logits_all,
        argmax,
        top_candidates,
        top_candidates_partial_bytes: top.partial_bytes,
        cache: l.cache,
        ssm_state: l.ssm_state,
        attention_scratch_bytes: l.scratch,
        context: l.context,
        vocab,
        hidden: model.config.hidden_size,
        prefill_chunk: PREFILL_CHUNK,
        top_candidates_count: top_count,
    })
}

/// Kinds are named after their mixer; several kinds of one mixer get numbers.
fn name_layer_kinds(kinds: &mut [LayerKind]) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for k in kinds.iter() {
        *counts.entry(k.name.clone()).or_default() += 1;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for k in kinds.iter_mut() {
        if counts[&k.name] > 1 {
            let i = seen.entry(k.name.clone()).or_default();
            *i += 1;
            k.name = format!("{}_{}", k.name, i);
        }
    }
}

/// `blk.3.attn_qkv.weight` -> `attn_qkv`; `blk.3.attn_qkv.bias` -> `attn_qkv_bias`.
/// A `LayerTensor` argument (for [`Lowering::weight_args`]).
fn layer_tensor(field: String) -> ArgSource {
    ArgSource::LayerTensor { field }
}

/// A `ModelTensor` argument (for [`Lowering::weight_args`]).
fn model_tensor(field: String) -> ArgSource {
    ArgSource::ModelTensor { field }
}

fn field_name(tensor: &str) -> String {
    let rest = match tensor.strip_prefix("blk.") {
        Some(r) => r.split_once('.').map_or(r, |p| p.1),
        None => tensor,
    };
    // `shortconv.in_proj` (llama.cpp's LFM2 names) becomes `shortconv_in_proj`.
    match rest.strip_suffix(".weight") {
        Some(base) => base.replace('.', "_"),
        None => rest.replace('.', "_"),
    }
}

/// The name of a fused tensor made of `parts` (`attn_q|attn_k|attn_v` -> `attn_qkv`).
fn fused_name(parts: &[String]) -> String {
    let fields: Vec<String> = parts.iter().map(|p| field_name(p)).collect();
    let joined = fields.join("+");
    let short = match joined.as_str() {
        "attn_q+attn_k+attn_v" => "attn_qkv".to_string(),
        "attn_q_bias+attn_k_bias+attn_v_bias" => "attn_qkv_bias".to_string(),
        "ffn_gate+ffn_up" => "ffn_gate_up".to_string(),
        _ => fields.join("_"),
    };
    match parts[0]
        .strip_prefix("blk.")
        .and_then(|r| r.split_once('.'))
    {
        Some((layer, _)) => {
            let kind = if short.ends_with("_bias") {
                "bias"
            } else {
                "weight"
            };
            format!("blk.{layer}.{}.{kind}", short.trim_end_matches("_bias"))
        }
        None => format!("{short}.weight"),
    }
}

impl Lowering<'_> {
    fn kernel(&mut self, instance: KernelInstance) -> KernelInstance {
        if !self.kernels.iter().any(|k| k.name == instance.name) {
            self.kernels.push(instance.clone());
        }
        instance
    }

    fn value_name(&self, v: ValueId) -> &str {
        &self.model.graph.values[v.0 as usize].name
    }

    fn width(&self, v: ValueId) -> u64 {
        self.model.graph.values[v.0 as usize].width
    }

    /// A buffer named after the value's role (`blk.3.attn` -> `attn`).
    fn own_buffer(&mut self, v: ValueId) -> Loc {
        let name = self.value_name(v);
        let role = match name.strip_prefix("blk.") {
            Some(r) => r.split_once('.').map_or(r, |p| p.1),
            None => name,
        }
        .replace('.', "_");
        let width = self.width(v);
        self.buffer(&role, width);
        let loc = Loc {
            buffer: role,
            column: 0,
            stride: width,
        };
        self.locs.insert(v, loc.clone());
        loc
    }

    fn buffer(&mut self, name: &str, width: u64) {
        let w = self.buffers.entry(name.to_string()).or_insert(0);
        *w = (*w).max(width);
    }

    fn loc(&self, v: ValueId) -> Result<Loc, LowerError> {
        self.locs.get(&v).cloned().ok_or_else(|| {
            LowerError(format!(
                "internal: value {} has no buffer",
                self.value_name(v)
            ))
        })
    }

    /// The location of a value a kernel reads as dense rows (`matmul`,
    /// `add`, `rms_norm`): not a column slice of wider rows.
    fn dense(&self, v: ValueId) -> Result<Loc, LowerError> {
        let loc = self.loc(v)?;
        if loc.stride != self.width(v) {
            return unsupported(format!(
                "{} is a column slice of wider rows where dense rows are needed",
                self.value_name(v)
            ));
        }
        Ok(loc)
    }

    fn spec(&self, name: &str) -> Result<&forge_ir::TensorSpec, LowerError> {
        self.model
            .tensors
            .get(name)
            .ok_or_else(|| LowerError(format!("missing tensor {name}")))
    }

    /// Adds a tensor made of `parts` to the weight plan; returns its file name.
    fn plan_tensor(&mut self, parts: Vec<String>, matrix: bool) -> Result<String, LowerError> {
        let name = if parts.len() == 1 {
            parts[0].clone()
        } else {
            fused_name(&parts)
        };
        self.plan_tensor_as(name, parts, matrix)
    }

    /// [`Lowering::plan_tensor`] under a given file name (a mixture's stacked experts).
    fn plan_tensor_as(
        &mut self,
        name: String,
        parts: Vec<String>,
        matrix: bool,
    ) -> Result<String, LowerError> {
        if self.weights.get(&name).is_some() {
            return Ok(name);
        }
        let mut rows = 0;
        let mut cols = None;
        let mut dtypes = Vec::new();
        let mut conversions = Vec::new();
        let mut interleaved = false;
        for part in &parts {
            let spec = self.spec(part)?;
            interleaved |= self.interleaved_rope_kept()
                && spec
                    .transforms
                    .iter()
                    .any(|t| matches!(t, TensorTransform::UnpermuteRopeRows { .. }));
            match (matrix, spec.shape.as_slice()) {
                (true, [r, c]) => {
                    if cols.is_some_and(|k| k != *c) {
                        return unsupported(format!("cannot fuse {parts:?}: column counts differ"));
                    }
                    rows += r;
                    cols = Some(*c);
                    let (dtype, reason) = matrix_dtype(self.options, spec, *c);
                    dtypes.push(dtype);
                    conversions.extend(reason.map(|r| (r, spec.dtype, dtype)));
                }
                (false, [n]) => rows += n,
                (_, shape) => {
                    return unsupported(format!("tensor {part} has unexpected shape {shape:?}"))
                }
            }
        }
        // Parts are joined only in one format: callers split groups whose formats differ.
        if dtypes.windows(2).any(|w| w[0] != w[1]) {
            return unsupported(format!(
                "cannot fuse {parts:?}: their formats differ ({dtypes:?})"
            ));
        }
        let (dtype, shape) = match cols {
            Some(c) => (dtypes[0], vec![rows, c]),
            None => (DType::F32, vec![rows]),
        };
        for (reason, from, to) in conversions {
            self.conversions.record(reason, from, to);
        }
        self.weights.tensors.push(PlannedTensor {
            name: name.clone(),
            dtype,
            shape,
            parts,
            keep_interleaved_rope: interleaved,
        });
        Ok(name)
    }

    /// Whether q/k rows a GGUF stores in llama.cpp's interleaved order stay
    /// so (rope_store then rotates interleaved pairs): only when whole heads
    /// rotate. Partial rotary rotates the first columns of the rotate-half
    /// layout, which the interleaved order scatters, so those rows are
    /// restored instead (Bamba).
    fn interleaved_rope_kept(&self) -> bool {
        self.model.config.attention.as_ref().is_some_and(|a| {
            std::iter::once(&a.rope)
                .chain(&a.rope_local)
                .all(|r| r.rotary_dim == a.head_dim)
        })
    }

    /// Adds a checkpoint tensor the kernels read as f32 whatever its shape
    /// (the conv filter, A, D, dt projection and norm weights of state-space
    /// layers); returns its file name.
    fn plan_f32(&mut self, name: &str) -> Result<String, LowerError> {
        if self.weights.get(name).is_none() {
            let shape = self.spec(name)?.shape.clone();
            self.weights.tensors.push(PlannedTensor {
                name: name.to_string(),
                dtype: DType::F32,
                shape,
                parts: vec![name.to_string()],
                keep_interleaved_rope: false,
            });
        }
        Ok(name.to_string())
    }

    fn dtype_of(&self, planned: &str) -> DType {
        self.weights.get(planned).map_or(DType::F32, |t| t.dtype)
    }

    /// The bindings of weight `tensor` (field `field`): the tensor at 0 and,
    /// when the kernels read it as planes, its other planes where `slots`
    /// puts them (recorded in `tensors` as `<field>_<plane>`). `source` makes
    /// a layer or model argument.
    fn weight_args(
        &self,
        tensor: &str,
        field: &str,
        slots: PlaneSlots,
        source: fn(String) -> ArgSource,
        tensors: &mut BTreeMap<String, String>,
    ) -> Vec<Arg> {
        let mut args = vec![arg(0, source(field.to_string()))];
        for plane in plane_bindings(self.dtype_of(tensor), slots) {
            let plane_field = format!("{field}_{}", plane.name);
            tensors.insert(plane_field.clone(), plane_tensor_name(tensor, plane.name));
            args.push(arg(plane.buffer, source(plane_field)));
        }
        args
    }

    fn prologue(&mut self) -> Result<Paths, LowerError> {
        let mut paths = Paths::default();
        let nodes = &self.model.graph.prologue;
        let Some(first) = nodes.first() else {
            return unsupported("the graph has no embedding");
        };
        let Op::Embedding { table } = &first.op else {
            return unsupported(format!(
                "the graph starts with {}, not an embedding",
                first.op.kind()
            ));
        };
        let mut out = first.output;
        let mut scale = None;
        for node in &nodes[1..] {
            match &node.op {
                Op::Scale { factor } if node.inputs == [out] => {
                    scale = Some(*factor);
                    out = node.output;
                }
                other => return unsupported(format!("op {} before the first layer", other.kind())),
            }
        }
        let tensor = self.plan_tensor(vec![table.clone()], true)?;
        let hidden = self.width(out);
        self.buffer("x", hidden);
        self.locs.insert(
            out,
            Loc {
                buffer: "x".into(),
                column: 0,
                stride: hidden,
            },
        );
        let k = self.kernel(embedding::embedding(
            self.dtype_of(&tensor),
            self.model.config.vocab_size,
            hidden,
            scale,
        ));
        let mut args = self.weight_args(
            &tensor,
            &field_name(table),
            PlaneSlots::Embedding,
            model_tensor,
            &mut paths.tensors,
        );
        paths.tensors.insert(field_name(&tensor), tensor);
        args.extend([
            arg(1, ArgSource::Tokens),
            act(2, "x", 0),
            arg(7, ArgSource::Step),
        ]);
        args.sort_by_key(|a| a.index);
        let step = Step::new("token embeddings into the residual stream", &k, args);
        paths.decode.push(step.clone());
        paths.prefill.push(step);
        Ok(paths)
    }

    fn block(&mut self, nodes: &[Node], layer: u64) -> Result<Paths, LowerError> {
        let mut paths = Paths::default();
        let mut done: HashSet<ValueId> = HashSet::new();
        for (i, node) in nodes.iter().enumerate() {
            if done.contains(&node.output) {
                continue;
            }
            match &node.op {
                // Jamba's dt/B/C norms happen in the selective scan.
                Op::RmsNorm { .. } if self.is_scan_norm(node) => {}
                Op::RmsNorm { weight, eps, group } => {
                    // A residual add before the last reader changes what a folded norm would read.
                    let last_reader = nodes
                        .iter()
                        .rposition(|n| n.inputs.contains(&node.output))
                        .unwrap_or(i);
                    let input_stable = !nodes[i..last_reader]
                        .iter()
                        .any(|n| matches!(n.op, Op::Add));
                    self.norm(node, weight, *eps, *group, input_stable, &mut paths)?
                }
                Op::Linear { .. } if self.is_scan_dt(node) => {}
                Op::Linear { .. } => self.linear_group(nodes, i, &mut done, &mut paths)?,
                Op::Slice { .. } => self.slice(node)?,
                Op::CausalConv1d { .. } => self.causal_conv(node, layer, &mut paths)?,
                Op::ShortConv { .. } => self.short_conv(node, layer, &mut paths)?,
                Op::SelectiveScan { .. } => {
                    self.mamba_scan(nodes, node, layer, &mut done, &mut paths)?
                }
                Op::SsdScan { .. } => self.mamba2_scan(node, layer, &mut paths)?,
                Op::GatedRmsNorm { .. } => self.gated_norm(node, &mut paths)?,
                // Rotations (and per-head q/k norms) happen in the attention's rope_store.
                Op::Rope { .. } => {}
                Op::Attention { .. } => self.attention(nodes, node, layer, &mut paths)?,
                Op::Add => self.add(node, &mut paths)?,
                Op::MoeRouter { .. } => {}
                Op::MoeExperts { .. } => self.mixture(nodes, node, &mut done, &mut paths)?,
                other => {
                    return unsupported(format!(
                        "op {} (layer {layer}) is not supported by forge compile yet",
                        other.kind()
                    ))
                }
            }
        }
        // One `SsmState` type serves every state-space layer, so their shapes must agree.
        if let Some(state) = self.layer_state.take() {
            match &self.ssm_state {
                Some(s) if *s != state => {
                    return unsupported(format!(
                        "layer {layer}: state-space layers of different shapes"
                    ))
                }
                _ => self.ssm_state = Some(state),
            }
        }
        Ok(paths)
    }

    /// An RMSNorm; folded into the decode matvecs that read it when they
    /// are all it feeds and its input stays as it is until the last of them
    /// (`input_stable`: not so when Falcon-H1's attention adds to the
    /// residual stream before its Mamba-2 reads the same norm).
    fn norm(
        &mut self,
        node: &Node,
        weight: &str,
        eps: f32,
        group: u64,
        input_stable: bool,
        paths: &mut Paths,
    ) -> Result<(), LowerError> {
        let width = self.width(node.output);
        let consumers = self
            .consumers
            .get(&node.output)
            .cloned()
            .unwrap_or_default();
        // A per-head norm before a rotation (Qwen3's and Gemma 3's q/k norms) is
        // fused into rope_store, which checks its groups are heads; with one KV
        // head the k norm's group is its whole width.
        if !consumers.is_empty() && consumers.iter().all(|c| matches!(c.op, Op::Rope { .. })) {
            return Ok(());
        }
        if group < width {
            return unsupported(format!("a grouped RMSNorm ({weight}) outside attention"));
        }
        let tensor = self.plan_tensor(vec![weight.to_string()], false)?;
        let field = field_name(&tensor);
        paths.tensors.insert(field.clone(), tensor);
        let input = self.dense(node.inputs[0])?;
        let out = self.own_buffer(node.output);
        let k = self.kernel(rms_norm::rms_norm(width, width, eps));
        let step = Step::new(
            format!("{} = rms_norm({})", out.buffer, input.buffer),
            &k,
            vec![
                act(0, &input.buffer, input.column),
                arg(
                    1,
                    ArgSource::LayerTensor {
                        field: field.clone(),
                    },
                ),
                act(2, &out.buffer, 0),
                arg(7, ArgSource::Step),
            ],
        );
        let feeds_linears = input_stable
            && !consumers.is_empty()
            && consumers.iter().all(|c| matches!(c.op, Op::Linear { .. }));
        if feeds_linears {
            self.norms.insert(
                node.output,
                FusedNorm {
                    input: node.inputs[0],
                    weight_field: field,
                    eps,
                },
            );
        } else {
            paths.decode.push(step.clone());
        }
        paths.prefill.push(step);
        Ok(())
    }

    fn add(&mut self, node: &Node, paths: &mut Paths) -> Result<(), LowerError> {
        let a = self.dense(node.inputs[0])?;
        let b = self.dense(node.inputs[1])?;
        let k = self.kernel(add::add(self.width(node.output)));
        let step = Step::new(
            format!("{} += {}", a.buffer, b.buffer),
            &k,
            vec![
                act(0, &a.buffer, a.column),
                act(1, &b.buffer, b.column),
                act(2, &a.buffer, a.column),
                arg(7, ArgSource::Step),
            ],
        );
        self.locs.insert(node.output, a);
        paths.decode.push(step.clone());
        paths.prefill.push(step);
        Ok(())
    }
}

#[path = "lower_attention.rs"]
mod attention;
#[path = "lower_epilogue.rs"]
mod epilogue;
#[path = "lower_linear.rs"]
mod linear;
#[path = "lower_linear_mixed.rs"]
mod linear_mixed;
#[path = "lower_moe.rs"]
mod moe;
#[path = "lower_ssm.rs"]
mod ssm;

pub use ssm::{SsmState, StateDim};
