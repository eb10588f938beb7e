//! Renders `src/model.rs` from the plan.

use serde::Serialize;

use crate::plan::{LowerError, Plan};

/// A `Layer` struct field and the tensor-name pattern it is bound from.
#[derive(Serialize)]
struct LayerField {
    name: String,
    /// `blk.{i}.attn_qkv.weight`, formatted with the layer index.
    pattern: String,
}

#[derive(Serialize)]
struct KindView<'p> {
    name: &'p str,
    type_name: String,
    decode: &'p [crate::plan::steps::Step],
    prefill: &'p [crate::plan::steps::Step],
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

/// Every layer must bind the same fields, named `blk.<index>.<...>`, so one
/// loop can bind them all.
fn layer_fields(plan: &Plan) -> Result<Vec<LayerField>, LowerError> {
    let Some(first) = plan.layers.first() else {
        return Ok(Vec::new());
    };
    let prefix = format!("blk.{}.", first.index);
    let mut fields = Vec::new();
    for (name, tensor) in &first.tensors {
        let rest = tensor.strip_prefix(&prefix).ok_or_else(|| {
            LowerError(format!(
                "layer tensor {tensor} is not named after its layer"
            ))
        })?;
        fields.push(LayerField {
            name: name.clone(),
            pattern: format!("blk.{{i}}.{rest}"),
        });
    }
    for layer in &plan.layers {
        let same = layer.tensors.len() == fields.len()
            && fields.iter().all(|f| {
                layer.tensors.get(&f.name).map(String::as_str)
                    == Some(f.pattern.replace("{i}", &layer.index.to_string()).as_str())
            });
        if !same {
            return Err(LowerError(format!(
                "layer {} binds other tensors than layer {}",
                layer.index, first.index
            )));
        }
    }
    Ok(fields)
}

/// Renders `src/model.rs`.
pub fn model_source(plan: &Plan, model_name: &str, summary: &str) -> Result<String, LowerError> {
    let kinds: Vec<KindView> = plan
        .layer_kinds
        .iter()
        .map(|k| KindView {
            name: &k.name,
            type_name: camel_case(&k.name),
            decode: &k.decode,
            prefill: &k.prefill,
        })
        .collect();
    let mut plan_view = serde_json::to_value(plan).expect("plain data serialises");
    plan_view["layer_kinds"] = serde_json::to_value(&kinds).expect("plain data serialises");
    let (kv_type, kv_bytes) = match &plan.cache {
        Some(c) if c.dtype == forge_ir::DType::F32 => ("f32", 4),
        _ => ("f16", 2),
    };
    // What each layer function gets besides its weights: its KV cache or its recurrent state.
    let layer_state = match (&plan.cache, &plan.ssm_state) {
        (Some(_), Some(_)) => {
            return Err(LowerError(
                "models mixing attention and state-space layers are not supported yet".into(),
            ))
        }
        (Some(_), None) => {
            Some(serde_json::json!({"var": "cache", "ty": "KvCache", "field": "cache"}))
        }
        (None, Some(_)) => {
            Some(serde_json::json!({"var": "state", "ty": "SsmState", "field": "state"}))
        }
        (None, None) => None,
    };
    crate::templates::render(
        "host/model.rs.j2",
        serde_json::json!({
            "plan": plan_view,
            "buffers": &plan.buffers,
            "model_name": model_name,
            "summary": summary,
            "layer_fields": layer_fields(plan)?,
            "layer_kinds_enum": plan.layer_kinds.len() > 1,
            "kv_type": kv_type,
            "kv_bytes": kv_bytes,
            "layer_state": layer_state,
            "conv_bytes": plan.ssm_state.as_ref().map(|s| s.conv_bytes()),
            "ssm_bytes": plan.ssm_state.as_ref().map(|s| s.ssm_bytes()),
            "penalty_window": 64,
        }),
    )
    .map_err(|e| LowerError(format!("rendering model.rs: {e:#}")))
}
