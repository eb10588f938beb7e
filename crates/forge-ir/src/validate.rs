//! Checks a model for internal consistency and names the first problem found.
//!
//! Front ends build the IR from files nobody here controls; this pass is what
//! stands between a wrong tensor shape and a kernel reading past a buffer.

use std::collections::BTreeSet;

use crate::config::{FeedForwardKind, Mixer, ModelConfig, SsmConfig};
use crate::graph::{Graph, Node, Op};
use crate::model::Model;
use crate::tensor::{TensorSpec, TensorTable};

/// The first inconsistency found, as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

fn fail<T>(message: String) -> Result<T, ValidationError> {
    Err(ValidationError(message))
}

pub fn validate(model: &Model) -> Result<(), ValidationError> {
    validate_config(&model.config)?;
    validate_tensors(&model.tensors)?;
    validate_graph(&model.graph, &model.tensors)?;
    if let Some(tok) = &model.tokenizer {
        if tok.vocab_size > model.config.vocab_size {
            return fail(format!(
                "tokenizer has {} tokens but the model's vocabulary is {}",
                tok.vocab_size, model.config.vocab_size
            ));
        }
    }
    for &id in model
        .generation
        .eos_token_ids
        .iter()
        .chain(&model.generation.bos_token_id)
    {
        if u64::from(id) >= model.config.vocab_size {
            return fail(format!(
                "special token id {id} is outside the vocabulary of {}",
                model.config.vocab_size
            ));
        }
    }
    Ok(())
}

pub fn validate_config(c: &ModelConfig) -> Result<(), ValidationError> {
    for (name, v) in [
        ("vocab_size", c.vocab_size),
        ("hidden_size", c.hidden_size),
        ("num_layers", c.num_layers),
        ("context_length", c.context_length),
    ] {
        if v == 0 {
            return fail(format!("{name} is 0"));
        }
    }
    if c.layers.len() as u64 != c.num_layers {
        return fail(format!(
            "{} layer descriptions for {} layers",
            c.layers.len(),
            c.num_layers
        ));
    }
    if !(c.norm_eps.is_finite() && c.norm_eps >= 0.0) {
        return fail(format!(
            "norm epsilon {} is not a small positive number",
            c.norm_eps
        ));
    }
    for (i, layer) in c.layers.iter().enumerate() {
        match layer.mixer {
            Mixer::FullAttention | Mixer::SlidingAttention => {
                let Some(a) = &c.attention else {
                    return fail(format!(
                        "layer {i} is attention but there is no attention config"
                    ));
                };
                if layer.mixer == Mixer::SlidingAttention && a.sliding_window.is_none() {
                    return fail(format!(
                        "layer {i} is sliding-window attention but no window is set"
                    ));
                }
            }
            Mixer::Mamba => {
                if !matches!(c.ssm, Some(SsmConfig::Mamba(_))) {
                    return fail(format!("layer {i} is Mamba but there is no Mamba config"));
                }
            }
            Mixer::Mamba2 | Mixer::AttentionMamba2 => {
                if !matches!(c.ssm, Some(SsmConfig::Mamba2(_))) {
                    return fail(format!(
                        "layer {i} is Mamba-2 but there is no Mamba-2 config"
                    ));
                }
                if layer.mixer == Mixer::AttentionMamba2 && c.attention.is_none() {
                    return fail(format!(
                        "layer {i} is attention and Mamba-2 but there is no attention config"
                    ));
                }
            }
            Mixer::ShortConv => match &c.short_conv {
                None => {
                    return fail(format!(
                        "layer {i} is a short convolution but there is no short-conv config"
                    ))
                }
                Some(s) if s.kernel < 2 => {
                    return fail(format!("short convolution of {} taps", s.kernel))
                }
                Some(_) => {}
            },
            Mixer::None if layer.feed_forward == FeedForwardKind::None => {
                return fail(format!("layer {i} has neither a mixer nor a feed-forward"))
            }
            Mixer::None => {}
        }
        match layer.feed_forward {
            FeedForwardKind::Dense if c.feed_forward.is_none() => {
                return fail(format!(
                    "layer {i} has a feed-forward but there is no feed-forward config"
                ))
            }
            FeedForwardKind::MixtureOfExperts if c.moe.is_none() => {
                return fail(format!("layer {i} has experts but there is no MoE config"))
            }
            _ => {}
        }
    }
    if let Some(a) = &c.attention {
        if a.num_heads == 0 || a.num_kv_heads == 0 || a.head_dim == 0 {
            return fail(format!(
                "attention has {} heads, {} KV heads of dimension {}",
                a.num_heads, a.num_kv_heads, a.head_dim
            ));
        }
        if a.num_heads % a.num_kv_heads != 0 {
            return fail(format!(
                "{} attention heads are not a multiple of {} KV heads",
                a.num_heads, a.num_kv_heads
            ));
        }
        for rope in std::iter::once(&a.rope).chain(&a.rope_local) {
            // A rotary dimension of 0 is attention without position embeddings.
            if rope.rotary_dim > a.head_dim || rope.rotary_dim % 2 != 0 {
                return fail(format!(
                    "rotary dimension {} does not fit head dimension {}",
                    rope.rotary_dim, a.head_dim
                ));
            }
            if !(rope.theta.is_finite() && rope.theta > 0.0) {
                return fail(format!("rope base {} is not positive", rope.theta));
            }
        }
        if a.sliding_window == Some(0) {
            return fail("sliding window of 0 positions".to_string());
        }
    }
    if let Some(m) = &c.moe {
        if m.experts_per_token == 0 || m.experts_per_token > m.num_experts {
            return fail(format!(
                "{} experts per token out of {}",
                m.experts_per_token, m.num_experts
            ));
        }
    }
    match &c.ssm {
        Some(SsmConfig::Mamba(m))
            if m.d_state == 0 || m.d_conv == 0 || m.d_inner == 0 || m.dt_rank == 0 =>
        {
            return fail("Mamba dimensions must be non-zero".to_string());
        }
        Some(SsmConfig::Mamba2(m)) => {
            if m.num_heads == 0 || m.n_groups == 0 || m.d_state == 0 || m.d_conv == 0 {
                return fail("Mamba-2 dimensions must be non-zero".to_string());
            }
            if m.num_heads * m.head_dim != m.d_inner {
                return fail(format!(
                    "Mamba-2 has {} heads of {} but an inner size of {}",
                    m.num_heads, m.head_dim, m.d_inner
                ));
            }
            if !m.num_heads.is_multiple_of(m.n_groups) {
                return fail(format!(
                    "Mamba-2 heads ({}) are not a multiple of its groups ({})",
                    m.num_heads, m.n_groups
                ));
            }
        }
        Some(SsmConfig::Mamba(_)) | None => {}
    }
    Ok(())
}

fn validate_tensors(table: &TensorTable) -> Result<(), ValidationError> {
    for t in table.iter() {
        let Some(elements) = t.elements() else {
            return fail(format!("{}: shape {:?} overflows", t.name, t.shape));
        };
        let row = t.shape.last().copied().unwrap_or(1);
        if t.dtype.is_quantized() && !row.is_multiple_of(t.dtype.block_elements()) {
            return fail(format!(
                "{}: rows of {row} values are not whole {} blocks of {}",
                t.name,
                t.dtype,
                t.dtype.block_elements()
            ));
        }
        match t.dtype.bytes_for(elements) {
            Some(n) if n == t.source.n_bytes => {}
            Some(n) => {
                return fail(format!(
                    "{}: {} shape {:?} needs {n} bytes but the checkpoint has {}",
                    t.name, t.dtype, t.shape, t.source.n_bytes
                ))
            }
            None => {
                return fail(format!(
                    "{}: {} values are not a whole number of {} blocks",
                    t.name, elements, t.dtype
                ))
            }
        }
    }
    Ok(())
}

fn validate_graph(g: &Graph, table: &TensorTable) -> Result<(), ValidationError> {
    let Some(tokens) = g.tokens else {
        return fail("graph has no token input".to_string());
    };
    let mut defined = vec![false; g.values.len()];
    let mut used_tensors = BTreeSet::new();
    defined[tokens.0 as usize] = true;
    for node in g.nodes() {
        let widths = node
            .inputs
            .iter()
            .map(|&id| match defined.get(id.0 as usize) {
                Some(true) => Ok(g.value(id).width),
                _ => fail(format!(
                    "{} reads a value that is not computed before it",
                    describe(g, node)
                )),
            })
            .collect::<Result<Vec<u64>, _>>()?;
        for name in node.op.tensors() {
            if table.get(name).is_none() {
                return fail(format!(
                    "missing tensor {name} (used by {})",
                    describe(g, node)
                ));
            }
            used_tensors.insert(name.to_string());
        }
        let width = infer_width(&node.op, &widths, table)
            .map_err(|m| ValidationError(format!("{}: {m}", describe(g, node))))?;
        let out = g.value(node.output);
        if out.width != width {
            return fail(format!(
                "{}: produces {width} columns but the model's config needs {}",
                describe_with_tensor(g, table, node),
                out.width
            ));
        }
        let slot = &mut defined[node.output.0 as usize];
        if *slot {
            return fail(format!("value {} is computed twice", out.name));
        }
        *slot = true;
    }
    match g.logits {
        Some(id) if defined[id.0 as usize] => {}
        _ => return fail("graph never computes the logits".to_string()),
    }
    if let Some(unused) = table.iter().find(|t| !used_tensors.contains(&t.name)) {
        return fail(format!("tensor {} is not used by any layer", unused.name));
    }
    Ok(())
}

fn describe(g: &Graph, node: &Node) -> String {
    format!("{} ({})", g.value(node.output).name, node.op.kind())
}

/// Like [`describe`], naming the op's first tensor and its shape, for shape mismatches.
fn describe_with_tensor(g: &Graph, table: &TensorTable, node: &Node) -> String {
    match node.op.tensors().first().and_then(|n| table.get(n)) {
        Some(t) => format!(
            "{} ({} of tensor {} {:?})",
            g.value(node.output).name,
            node.op.kind(),
            t.name,
            t.shape
        ),
        None => describe(g, node),
    }
}

fn tensor<'a>(table: &'a TensorTable, name: &str) -> &'a TensorSpec {
    table
        .get(name)
        .expect("existence checked before shape inference")
}

/// Requires `name` to have exactly `want`, explaining the mismatch otherwise.
fn expect_shape(table: &TensorTable, name: &str, want: &[u64]) -> Result<(), String> {
    let t = tensor(table, name);
    if t.shape == want {
        Ok(())
    } else {
        Err(format!(
            "tensor {name} has shape {:?}, expected {want:?}",
            t.shape
        ))
    }
}

fn matrix(table: &TensorTable, name: &str) -> Result<(u64, u64), String> {
    match tensor(table, name).shape[..] {
        [rows, cols] => Ok((rows, cols)),
        ref s => Err(format!("tensor {name} has shape {s:?}, expected a matrix")),
    }
}

fn arity(widths: &[u64], n: usize) -> Result<(), String> {
    if widths.len() == n {
        Ok(())
    } else {
        Err(format!("takes {n} inputs, got {}", widths.len()))
    }
}

/// The output width of `op` for inputs of `widths` columns, checking operand shapes.
pub fn infer_width(op: &Op, widths: &[u64], table: &TensorTable) -> Result<u64, String> {
    match op {
        Op::Embedding { table: name } => {
            arity(widths, 1)?;
            Ok(matrix(table, name)?.1)
        }
        Op::Scale { .. } => {
            arity(widths, 1)?;
            Ok(widths[0])
        }
        Op::RmsNorm { weight, group, .. } => {
            arity(widths, 1)?;
            if *group == 0 || !widths[0].is_multiple_of(*group) {
                return Err(format!(
                    "groups of {group} do not divide {} columns",
                    widths[0]
                ));
            }
            expect_shape(table, weight, &[*group])?;
            Ok(widths[0])
        }
        Op::Linear { weight, bias } => {
            arity(widths, 1)?;
            let (out, inp) = matrix(table, weight)?;
            if inp != widths[0] {
                return Err(format!(
                    "tensor {weight} has shape [{out}, {inp}] but its input has {} columns",
                    widths[0]
                ));
            }
            if let Some(b) = bias {
                expect_shape(table, b, &[out])?;
            }
            Ok(out)
        }
        Op::Slice { start, len } => {
            arity(widths, 1)?;
            if start.checked_add(*len).is_none_or(|end| end > widths[0]) || *len == 0 {
                return Err(format!("columns {start}+{len} outside {}", widths[0]));
            }
            Ok(*len)
        }
        Op::Rope {
            heads,
            head_dim,
            rope,
        } => {
            arity(widths, 1)?;
            if heads * head_dim != widths[0] {
                return Err(format!(
                    "{heads} heads of {head_dim} do not make {} columns",
                    widths[0]
                ));
            }
            if rope.rotary_dim > *head_dim {
                return Err(format!(
                    "rotary dimension {} exceeds head {head_dim}",
                    rope.rotary_dim
                ));
            }
            Ok(widths[0])
        }
        Op::Attention {
            heads,
            kv_heads,
            head_dim,
            ..
        } => {
            arity(widths, 3)?;
            let want = [heads * head_dim, kv_heads * head_dim, kv_heads * head_dim];
            if widths != want {
                return Err(format!(
                    "q, k, v have {widths:?} columns, expected {want:?}"
                ));
            }
            if *kv_heads == 0 || heads % kv_heads != 0 {
                return Err(format!(
                    "{heads} heads do not share {kv_heads} KV heads evenly"
                ));
            }
            Ok(heads * head_dim)
        }
        Op::GatedActivation { .. } | Op::Add => {
            arity(widths, 2)?;
            if widths[0] != widths[1] {
                return Err(format!(
                    "inputs have {} and {} columns",
                    widths[0], widths[1]
                ));
            }
            Ok(widths[0])
        }
        Op::MoeRouter {
            weight,
            experts,
            top_k,
            ..
        } => {
            arity(widths, 1)?;
            expect_shape(table, weight, &[*experts, widths[0]])?;
            if *top_k == 0 || top_k > experts {
                return Err(format!("top-{top_k} of {experts} experts"));
            }
            Ok(2 * top_k)
        }
        Op::MoeExperts {
            gate,
            up,
            down,
            shared,
            ..
        } => {
            arity(widths, 2)?;
            if gate.is_empty() || gate.len() != up.len() || gate.len() != down.len() {
                return Err(format!(
                    "{} gate, {} up and {} down experts",
                    gate.len(),
                    up.len(),
                    down.len()
                ));
            }
            let hidden = widths[0];
            let (inter, _) = matrix(table, &gate[0])?;
            for ((g, u), d) in gate.iter().zip(up).zip(down) {
                expect_shape(table, g, &[inter, hidden])?;
                expect_shape(table, u, &[inter, hidden])?;
                expect_shape(table, d, &[hidden, inter])?;
            }
            if let Some(s) = shared {
                let (inter, _) = matrix(table, &s.gate)?;
                expect_shape(table, &s.gate, &[inter, hidden])?;
                expect_shape(table, &s.up, &[inter, hidden])?;
                expect_shape(table, &s.down, &[hidden, inter])?;
                if let Some(g) = &s.gate_inp {
                    expect_shape(table, g, &[1, hidden])?;
                }
            }
            Ok(hidden)
        }
        Op::CausalConv1d {
            weight,
            bias,
            kernel,
        } => {
            arity(widths, 1)?;
            expect_shape(table, weight, &[widths[0], *kernel])?;
            if let Some(b) = bias {
                expect_shape(table, b, &[widths[0]])?;
            }
            Ok(widths[0])
        }
        Op::ShortConv {
            weight,
            bias,
            kernel,
        } => {
            arity(widths, 3)?;
            let channels = widths[0];
            if widths[1] != channels || widths[2] != channels {
                return Err(format!(
                    "B, C, x have {widths:?} columns, expected {channels} each"
                ));
            }
            expect_shape(table, weight, &[channels, *kernel])?;
            if let Some(b) = bias {
                expect_shape(table, b, &[channels])?;
            }
            Ok(channels)
        }
        Op::Activation { .. } => {
            arity(widths, 1)?;
            Ok(widths[0])
        }
        Op::SelectiveScan { a, d, d_state } => {
            arity(widths, 4)?;
            let inner = widths[0];
            if widths[1..] != [inner, *d_state, *d_state] {
                return Err(format!(
                    "x, dt, B, C have {widths:?} columns, expected [{inner}, {inner}, {d_state}, {d_state}]"
                ));
            }
            expect_shape(table, a, &[inner, *d_state])?;
            expect_shape(table, d, &[inner])?;
            Ok(inner)
        }
        Op::SsdScan {
            a,
            d,
            dt_bias,
            heads,
            head_dim,
            groups,
            d_state,
            ..
        } => {
            arity(widths, 4)?;
            let want = [heads * head_dim, *heads, groups * d_state, groups * d_state];
            if widths != want {
                return Err(format!(
                    "x, dt, B, C have {widths:?} columns, expected {want:?}"
                ));
            }
            for name in [a, d, dt_bias] {
                expect_shape(table, name, &[*heads])?;
            }
            Ok(heads * head_dim)
        }
        Op::GatedRmsNorm { weight, group, .. } => {
            arity(widths, 2)?;
            if widths[0] != widths[1] || *group == 0 || !widths[0].is_multiple_of(*group) {
                return Err(format!(
                    "y and z have {} and {} columns for groups of {group}",
                    widths[0], widths[1]
                ));
            }
            expect_shape(table, weight, &[widths[0]])?;
            Ok(widths[0])
        }
        Op::LmHead { weight, .. } => {
            arity(widths, 1)?;
            let (vocab, hidden) = matrix(table, weight)?;
            if hidden != widths[0] {
                return Err(format!(
                    "tensor {weight} has shape [{vocab}, {hidden}] but its input has {} columns",
                    widths[0]
                ));
            }
            Ok(vocab)
        }
    }
}
