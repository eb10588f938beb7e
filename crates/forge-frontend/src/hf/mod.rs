//! Hugging Face model directories: `config.json`, safetensors (single or
//! sharded), `tokenizer.json`, `tokenizer_config.json`, `generation_config.json`.

pub mod config;
pub mod hybrid;
mod hybrid_names;
pub mod json;
pub mod names;
pub mod tokenizer;

use std::path::Path;

use forge_ir::{Model, SourceFormat, TensorSource, TensorSpec, TensorTable};

use crate::graph_builder::build_graph;
use crate::safetensors::SafetensorsSet;
use crate::{Error, Result};
use json::JsonObject;
use names::Mapped;

/// Reads the checkpoint in `dir` into a validated model.
pub fn load(dir: &Path) -> Result<Model> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(Error::new(
            dir,
            "not a model directory: config.json is missing",
        ));
    }
    let cfg_json = JsonObject::read(&config_path)?;
    let config = config::parse(&cfg_json)?;
    forge_ir::validate::validate_config(&config).map_err(|e| cfg_json.error(e.0))?;

    let set = SafetensorsSet::open_dir(dir)?;
    let mut tensors = TensorTable::new();
    for t in &set.tensors {
        let file = &set.files[t.file];
        let mapped = names::map_name(&config, &t.name).ok_or_else(|| {
            Error::new(
                file,
                format!(
                    "unexpected tensor {} for a {} model",
                    t.name, config.architecture
                ),
            )
        })?;
        let source = |name: &str, offset: u64, n_bytes: u64| TensorSource {
            file: file.clone(),
            name: name.to_string(),
            offset,
            n_bytes,
        };
        let specs = match mapped {
            Mapped::Ignore => vec![],
            Mapped::Tensor {
                name,
                transforms,
                shape,
            } => {
                let shape = match shape {
                    Some(s) => {
                        let want: u64 = s.iter().product();
                        let have = t.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
                        if have != Some(want) {
                            return Err(Error::new(
                                file,
                                format!(
                                    "tensor {} has shape {:?}, expected {} values ({s:?})",
                                    t.name, t.shape, want
                                ),
                            ));
                        }
                        s
                    }
                    None => t.shape.clone(),
                };
                vec![TensorSpec {
                    name,
                    shape,
                    dtype: t.dtype,
                    source: source(&t.name, t.offset, t.n_bytes),
                    transforms,
                }]
            }
            Mapped::Rows(parts) => split_rows(file, t, &[parts], false, &source)?,
            Mapped::Stack(parts) => split_rows(file, t, &parts, true, &source)?,
        };
        for spec in specs {
            tensors.insert(spec).map_err(|name| {
                Error::new(file, format!("two checkpoint tensors map to {name}"))
            })?;
        }
    }

    hybrid::multipliers(&cfg_json, config.architecture)?.fold(&config, &mut tensors);

    let tokenizer_path = dir.join("tokenizer.json");
    let tokenizer = if tokenizer_path.exists() {
        Some(tokenizer::HfTokenizer::read(&tokenizer_path)?)
    } else {
        None
    };
    let info = tokenizer::generation_info(dir, &cfg_json, tokenizer.as_ref())?;
    let model = Model {
        name: dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into()),
        source: dir.to_path_buf(),
        format: SourceFormat::HuggingFace,
        graph: build_graph(&config),
        config,
        tensors,
        tokenizer: tokenizer.map(|t| t.spec),
        chat_template: info.chat_template,
        generation: info.defaults,
    };
    forge_ir::validate(&model).map_err(|e| Error::new(dir, e.0))?;
    Ok(model)
}

/// Splits a fused `[rows, cols]` matrix into canonical tensors of consecutive
/// rows, or (`stacked`) each matrix of a `[n, rows, cols]` stack, `parts[k]`
/// naming the row ranges of the k-th.
fn split_rows(
    file: &Path,
    t: &crate::safetensors::SafetensorsTensor,
    parts: &[Vec<(String, u64)>],
    stacked: bool,
    source: &dyn Fn(&str, u64, u64) -> TensorSource,
) -> Result<Vec<TensorSpec>> {
    let shape_error = |want: String| {
        Error::new(
            file,
            format!("tensor {} has shape {:?}, expected {want}", t.name, t.shape),
        )
    };
    let rows_of = |p: &[(String, u64)]| p.iter().map(|r| r.1).sum::<u64>();
    let (rows, cols) = match (stacked, &t.shape[..]) {
        (false, &[rows, cols]) => (rows, cols),
        (false, _) => return Err(shape_error("a matrix".into())),
        (true, &[n, rows, cols]) if n == parts.len() as u64 => (rows, cols),
        (true, _) => {
            let rows = parts.first().map_or(0, |p| rows_of(p));
            return Err(shape_error(format!("[{}, {rows}, cols]", parts.len())));
        }
    };
    if let Some(p) = parts.iter().find(|p| rows_of(p) != rows) {
        let total = rows_of(p);
        return Err(Error::new(
            file,
            format!("tensor {} has {rows} rows, expected {total}", t.name),
        ));
    }
    let row_bytes = t.n_bytes / (rows * parts.len() as u64).max(1);
    let mut start = 0;
    Ok(parts
        .iter()
        .flatten()
        .map(|(name, n)| {
            let spec = TensorSpec {
                name: name.clone(),
                shape: vec![*n, cols],
                dtype: t.dtype,
                source: source(&t.name, t.offset + start * row_bytes, n * row_bytes),
                transforms: vec![],
            };
            start += n;
            spec
        })
        .collect())
}
