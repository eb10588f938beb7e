//! Renders `src/model.rs` from the plan.
//!
//! Each layer is a struct of its tensors' offsets and the memory it carries
//! between passes (a KV cache for attention, conv/scan state for recurrent
//! mixers), so a hybrid's attention layers alone hold caches. Layer kinds
//! that bind the same tensors and memory share a struct; a model with
//! several kinds keeps its layers in an enum with one variant per kind.

use serde::Serialize;

use crate::plan::steps::Step;
use crate::plan::{LowerError, Plan};

/// A layer struct field and the tensor it is bound from, relative to
/// `blk.{i}.` (`attn_qkv.weight`).
#[derive(Clone, PartialEq, Serialize)]
struct LayerField {
    name: String,
    tensor: String,
}

/// A `Layer` struct: tensor offsets plus memory.
#[derive(Serialize)]
struct LayerStruct {
    type_name: String,
    fields: Vec<LayerField>,
    cache: bool,
    state: bool,
}

#[derive(Serialize)]
struct KindView<'p> {
    name: &'p str,
    type_name: String,
    /// The struct its layers are (index into the structs).
    layer_type: String,
    cache: bool,
    state: bool,
    decode: &'p [Step],
    prefill: &'p [Step],
    /// The pass parameter's name in each path's function (`_pass` when unread).
    decode_pass: &'static str,
    prefill_pass: &'static str,
}

fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
        })
        .collect()
}

/// The tensors layer kind `kind` binds; every layer of the kind must bind
/// the same ones, named `blk.<index>.<...>`, so one function loads them all.
fn kind_fields(plan: &Plan, kind: usize) -> Result<Vec<LayerField>, LowerError> {
    let mut layers = plan.layers.iter().filter(|l| l.kind == kind);
    let Some(first) = layers.next() else {
        return Ok(Vec::new());
    };
    let relative = |layer: &crate::plan::LayerPlan| -> Result<Vec<LayerField>, LowerError> {
        let prefix = format!("blk.{}.", layer.index);
        layer
            .tensors
            .iter()
            .map(|(name, tensor)| {
                let rest = tensor.strip_prefix(&prefix).ok_or_else(|| {
                    LowerError(format!(
                        "layer tensor {tensor} is not named after its layer"
                    ))
                })?;
                Ok(LayerField {
                    name: name.clone(),
                    tensor: rest.to_string(),
                })
            })
            .collect()
    };
    let fields = relative(first)?;
    for layer in layers {
        if relative(layer)? != fields {
            return Err(LowerError(format!(
                "layer {} binds other tensors than layer {}",
                layer.index, first.index
            )));
        }
    }
    Ok(fields)
}

fn pass_name(steps: &[Step]) -> &'static str {
    if steps.iter().any(Step::uses_pass) {
        "pass"
    } else {
        "_pass"
    }
}

/// The layer structs and, per kind, its view.
fn layer_types(plan: &Plan) -> Result<(Vec<LayerStruct>, Vec<KindView<'_>>), LowerError> {
    let several_kinds = plan.layer_kinds.len() > 1;
    let mut structs: Vec<(String, LayerStruct)> = Vec::new();
    let mut kinds = Vec::new();
    for (index, kind) in plan.layer_kinds.iter().enumerate() {
        let (cache, state) = (kind.holds_cache(), kind.holds_state());
        let fields = kind_fields(plan, index)?;
        let existing = structs.iter().find(|(family, s)| {
            *family == kind.family && s.fields == fields && s.cache == cache && s.state == state
        });
        let type_name = match existing {
            Some((_, s)) => s.type_name.clone(),
            None => {
                let base = if several_kinds {
                    format!("{}Layer", camel_case(&kind.family))
                } else {
                    "Layer".to_string()
                };
                let taken = structs.iter().filter(|(f, _)| *f == kind.family).count();
                let type_name = match taken {
                    0 => base,
                    n => format!("{base}{}", n + 1),
                };
                structs.push((
                    kind.family.clone(),
                    LayerStruct {
                        type_name: type_name.clone(),
                        fields,
                        cache,
                        state,
                    },
                ));
                type_name
            }
        };
        kinds.push(KindView {
            name: &kind.name,
            type_name: camel_case(&kind.name),
            layer_type: type_name,
            cache,
            state,
            decode: &kind.decode,
            prefill: &kind.prefill,
            decode_pass: pass_name(&kind.decode),
            prefill_pass: pass_name(&kind.prefill),
        });
    }
    Ok((structs.into_iter().map(|(_, s)| s).collect(), kinds))
}

/// Renders `src/model.rs`.
pub fn model_source(plan: &Plan, model_name: &str, summary: &str) -> Result<String, LowerError> {
    let (structs, kinds) = layer_types(plan)?;
    let mut plan_view = serde_json::to_value(plan).expect("plain data serialises");
    plan_view["layer_kinds"] = serde_json::to_value(&kinds).expect("plain data serialises");
    let (kv_type, kv_bytes) = match &plan.cache {
        Some(c) if c.dtype == forge_ir::DType::F32 => ("f32", 4),
        _ => ("f16", 2),
    };
    // A recurrent state without a scan (LFM2's short convolutions) is only a conv window.
    let state_type = match &plan.ssm_state {
        Some(s) if s.ssm.is_empty() => Some("ConvState"),
        Some(_) => Some("SsmState"),
        None => None,
    };
    crate::templates::render(
        "host/model.rs.j2",
        serde_json::json!({
            "plan": plan_view,
            "buffers": &plan.buffers,
            "model_name": model_name,
            "summary": summary,
            "layer_structs": structs,
            "layer_kinds_enum": plan.layer_kinds.len() > 1,
            "kv_type": kv_type,
            "kv_bytes": kv_bytes,
            "state_type": state_type,
            "conv_bytes": plan.ssm_state.as_ref().map(|s| s.conv_bytes()),
            "ssm_bytes": plan.ssm_state.as_ref().map(|s| s.ssm_bytes()),
            "penalty_window": 64,
        }),
    )
    .map_err(|e| LowerError(format!("rendering model.rs: {e:#}")))
}
