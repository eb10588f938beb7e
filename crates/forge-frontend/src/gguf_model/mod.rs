//! GGUF files as models: llama.cpp's metadata keys -> [`ModelConfig`], its
//! tensor names -> canonical names, and its `tokenizer.ggml.*` vocabulary.

mod config;
mod hybrid;
mod metadata;
mod tensors;
mod vocab;

use std::path::Path;

use forge_ir::{Model, SourceFormat};

use crate::gguf::GgufFile;
use crate::graph_builder::build_graph;
use crate::{Error, Result};
use metadata::Metadata;

pub fn load(path: &Path) -> Result<Model> {
    let file = GgufFile::open(path)?;
    let arch = match file.get("general.architecture") {
        Some(v) => v
            .as_str()
            .ok_or_else(|| Error::new(path, "general.architecture is not a string"))?
            .to_string(),
        None => {
            return Err(Error::new(
                path,
                "missing metadata key general.architecture",
            ))
        }
    };
    let meta = Metadata { file: &file, arch };
    let config = config::parse(&meta)?;
    forge_ir::validate::validate_config(&config).map_err(|e| meta.error(e.0))?;
    let mut tensors = tensors::map_tensors(&meta, &config)?;
    hybrid::multipliers(&meta, config.architecture)?.fold(&config, &mut tensors);
    let (tokenizer, chat_template, generation) = vocab::read(&meta)?;
    let name = meta
        .opt_str_raw("general.name")?
        .map(str::to_string)
        .unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into())
        });
    let model = Model {
        name,
        source: path.to_path_buf(),
        format: SourceFormat::Gguf,
        graph: build_graph(&config),
        config,
        tensors,
        tokenizer,
        chat_template,
        generation,
    };
    forge_ir::validate(&model).map_err(|e| Error::new(path, e.0))?;
    Ok(model)
}
