//! GGUF tensor names -> canonical tensors, undoing llama.cpp's conventions:
//!
//! - dimensions are stored fastest-first: canonical shapes are the reverse;
//! - the `llama` converter permutes Q/K rows into the interleaved rope layout:
//!   canonical restores rotate-half ([`TensorTransform::UnpermuteRopeRows`]);
//! - experts are stacked as `ffn_*_exps` `[experts, rows, cols]`: canonical has
//!   one tensor per expert, each a contiguous byte range of the stack; the
//!   shared expert's sigmoid gate `ffn_gate_inp_shexp` is a vector, canonical `[1, hidden]`;
//! - Phi-3 keeps q/k/v fused (`attn_qkv`) and gate/up fused (`ffn_up`, gate first):
//!   canonical splits the rows;
//! - Mamba-2 (and the hybrids with it) stores A and D as `[heads, 1]` and the grouped norm as `[groups, inner/groups]`:
//!   canonical flattens them. Mamba's `ssm_a` is already `-exp(A_log)`, as canonical is;
//! - Gemma's norm weights are stored as `1 + w`, already the canonical value;
//! - `rope_freqs` / `rope_factors_*` are rope parameters, read into the config instead;
//! - LFM2's final norm is `token_embd_norm`; Nemotron-H's MLP layers keep their
//!   one norm as `attn_norm` (canonical: `ffn_norm`); Falcon-H1's pre-FFN norm
//!   is `ffn_norm` without `.weight`.

use forge_ir::{
    Architecture, DType, ModelConfig, TensorSource, TensorSpec, TensorTable, TensorTransform,
};

use super::metadata::Metadata;
use crate::gguf::GgufTensorInfo;
use crate::Result;

/// Reads a small F32 tensor's values (rope factor tables).
pub fn read_f32(m: &Metadata, t: &GgufTensorInfo) -> Result<Vec<f32>> {
    if t.dtype != DType::F32 {
        return Err(m.error(format!("tensor {} must be F32, found {}", t.name, t.dtype)));
    }
    Ok(m.file
        .tensor_data(t)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

pub fn map_tensors(m: &Metadata, c: &ModelConfig) -> Result<TensorTable> {
    let mut table = TensorTable::new();
    for t in &m.file.tensors {
        for spec in map_one(m, c, t)? {
            table
                .insert(spec)
                .map_err(|name| m.error(format!("two tensors map to {name}")))?;
        }
    }
    Ok(table)
}

fn map_one(m: &Metadata, c: &ModelConfig, t: &GgufTensorInfo) -> Result<Vec<TensorSpec>> {
    let name = t.name.as_str();
    if matches!(
        name,
        "rope_freqs.weight" | "rope_factors_long.weight" | "rope_factors_short.weight"
    ) {
        return Ok(vec![]);
    }
    let shape: Vec<u64> = t.dims.iter().rev().copied().collect();
    let spec = |canonical: String,
                shape: Vec<u64>,
                offset: u64,
                n_bytes: u64,
                transforms: Vec<TensorTransform>| TensorSpec {
        name: canonical,
        shape,
        dtype: t.dtype,
        source: TensorSource {
            file: m.file.path.clone(),
            name: t.name.clone(),
            offset,
            n_bytes,
        },
        transforms,
    };
    let whole = |canonical: String, shape: Vec<u64>, transforms| {
        vec![spec(canonical, shape, t.offset, t.n_bytes, transforms)]
    };
    let suffix = name.strip_prefix("blk.").and_then(|r| r.split_once('.'));
    let Some((layer, rest)) = suffix else {
        // LFM2's final norm (transformers' `embedding_norm`).
        if name == "token_embd_norm.weight" && c.architecture == Architecture::Lfm2 {
            return Ok(whole("output_norm.weight".to_string(), shape, vec![]));
        }
        return Ok(whole(name.to_string(), shape, vec![]));
    };
    let attention = c.attention.as_ref();
    match rest {
        // Nemotron-H's MLP layers have one norm, stored as the layer's attn_norm.
        "attn_norm.weight"
            if c.layers
                .get(layer.parse::<usize>().unwrap_or(usize::MAX))
                .is_some_and(|l| l.mixer == forge_ir::Mixer::None) =>
        {
            Ok(whole(format!("blk.{layer}.ffn_norm.weight"), shape, vec![]))
        }
        // The converter permutes these architectures' q/k rows (whole heads) for llama.cpp's rope.
        "attn_q.weight" | "attn_k.weight"
            if matches!(
                c.architecture,
                Architecture::Llama
                    | Architecture::Mixtral
                    | Architecture::GraniteHybrid
                    | Architecture::NemotronH
            ) =>
        {
            let a = attention
                .ok_or_else(|| m.error(format!("tensor {name} in a model without attention")))?;
            let heads = if rest == "attn_q.weight" {
                a.num_heads
            } else {
                a.num_kv_heads
            };
            Ok(whole(
                name.to_string(),
                shape,
                vec![TensorTransform::UnpermuteRopeRows { heads }],
            ))
        }
        "attn_qkv.weight" | "attn_qkv.bias" => {
            let a = attention
                .ok_or_else(|| m.error(format!("tensor {name} in a model without attention")))?;
            let kind = rest.rsplit_once('.').map(|p| p.1).unwrap_or("weight");
            let parts = [
                (
                    format!("blk.{layer}.attn_q.{kind}"),
                    a.num_heads * a.head_dim,
                ),
                (
                    format!("blk.{layer}.attn_k.{kind}"),
                    a.num_kv_heads * a.head_dim,
                ),
                (
                    format!("blk.{layer}.attn_v.{kind}"),
                    a.num_kv_heads * a.head_dim,
                ),
            ];
            split_rows(m, t, &shape, &parts, &spec)
        }
        "ffn_up.weight" if c.architecture == Architecture::Phi3 => {
            let n = c.feed_forward.as_ref().map_or(0, |f| f.intermediate_size);
            let parts = [
                (format!("blk.{layer}.ffn_gate.weight"), n),
                (format!("blk.{layer}.ffn_up.weight"), n),
            ];
            split_rows(m, t, &shape, &parts, &spec)
        }
        "ffn_gate_exps.weight" | "ffn_up_exps.weight" | "ffn_down_exps.weight" => {
            let base = rest.trim_end_matches("_exps.weight");
            let [experts, rows, cols] = shape[..] else {
                return Err(m.error(format!(
                    "tensor {name} has shape {shape:?}, expected [experts, rows, cols]"
                )));
            };
            if experts == 0 || !t.n_bytes.is_multiple_of(experts) {
                return Err(m.error(format!(
                    "tensor {name} does not split into {experts} experts"
                )));
            }
            let per = t.n_bytes / experts;
            Ok((0..experts)
                .map(|e| {
                    spec(
                        format!("blk.{layer}.{base}.{e}.weight"),
                        vec![rows, cols],
                        t.offset + e * per,
                        per,
                        vec![],
                    )
                })
                .collect())
        }
        // The shared expert's gate is one row (`[1, hidden]`), stored as a vector.
        "ffn_gate_inp_shexp.weight" => {
            let elements = shape.iter().product();
            Ok(whole(name.to_string(), vec![1, elements], vec![]))
        }
        "ssm_a" | "ssm_d" | "ssm_a.weight" | "ssm_d.weight" | "ssm_norm.weight"
            if matches!(c.ssm, Some(forge_ir::SsmConfig::Mamba2(_))) =>
        {
            let canonical = format!("blk.{layer}.{}.weight", rest.trim_end_matches(".weight"));
            let elements = shape.iter().product();
            Ok(whole(canonical, vec![elements], vec![]))
        }
        // Weights the converter names without `.weight` (Falcon-H1's pre-FFN norm too).
        "ssm_a" | "ssm_d" | "ffn_norm" => {
            Ok(whole(format!("blk.{layer}.{rest}.weight"), shape, vec![]))
        }
        _ => Ok(whole(name.to_string(), shape, vec![])),
    }
}

type SpecFn<'a> = dyn Fn(String, Vec<u64>, u64, u64, Vec<TensorTransform>) -> TensorSpec + 'a;

/// Splits a fused tensor (matrix, or bias vector) into consecutive row ranges.
fn split_rows(
    m: &Metadata,
    t: &GgufTensorInfo,
    shape: &[u64],
    parts: &[(String, u64)],
    spec: &SpecFn,
) -> Result<Vec<TensorSpec>> {
    let rows = shape.first().copied().unwrap_or(0);
    let total: u64 = parts.iter().map(|p| p.1).sum();
    if rows != total || rows == 0 {
        return Err(m.error(format!(
            "tensor {} has {rows} rows, expected {total}",
            t.name
        )));
    }
    let row_bytes = t.n_bytes / rows;
    let mut start = 0;
    Ok(parts
        .iter()
        .map(|(name, n)| {
            let mut part_shape = shape.to_vec();
            part_shape[0] = *n;
            let s = spec(
                name.clone(),
                part_shape,
                t.offset + start * row_bytes,
                n * row_bytes,
                vec![],
            );
            start += n;
            s
        })
        .collect())
}
