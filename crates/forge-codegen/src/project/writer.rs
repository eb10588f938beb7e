//! Writes a generated project: every file rendered in memory first, then
//! written to a temporary directory beside the target (`staging`) and
//! renamed into place, so a failed compile leaves nothing half-written.

use std::path::{Path, PathBuf};

use forge_ir::Model;

use super::host::{host_files, GeneratedFile, HostContext, HostPlan};
use super::model_source::model_source;
use crate::export::{export_weights, ExportProgress};
use crate::plan::{lower, CompileOptions, Plan};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CompileError {
    pub path: PathBuf,
    pub message: String,
}

impl CompileError {
    fn new(path: &Path, message: impl std::fmt::Display) -> CompileError {
        CompileError {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// A project rendered in memory (without its weights).
pub struct Project {
    pub plan: Plan,
    pub files: Vec<GeneratedFile>,
}

/// One line describing the compiled model, for the README and model.rs.
pub fn describe(model: &Model, plan: &Plan) -> String {
    let c = &model.config;
    let attention = c.attention.as_ref().map_or(String::new(), |a| {
        format!(
            ", {} query / {} KV heads of {}",
            a.num_heads, a.num_kv_heads, a.head_dim
        )
    });
    let mut dtypes: Vec<&str> = plan
        .weights
        .tensors
        .iter()
        .filter(|t| t.shape.len() == 2)
        .map(|t| t.dtype.name())
        .collect();
    dtypes.sort_unstable();
    dtypes.dedup();
    let cache = plan
        .cache
        .as_ref()
        .map_or(String::new(), |k| format!(", {} KV cache", k.dtype.name()));
    format!(
        "{} ({}), {} layers, hidden {}{attention}, vocabulary {}; {} weights{cache}, context {}.",
        model.name,
        c.architecture.name(),
        c.num_layers,
        c.hidden_size,
        c.vocab_size,
        dtypes.join("/"),
        plan.context
    )
}

/// Lowers the model and renders every file of its project.
pub fn render_project(model: &Model, options: &CompileOptions) -> Result<Project, CompileError> {
    let err = |e: &dyn std::fmt::Display| CompileError::new(&model.source, e);
    let plan = lower(model, options).map_err(|e| err(&e))?;
    let summary = describe(model, &plan);
    let mut files = vec![
        GeneratedFile {
            path: "shaders/kernels.metal".into(),
            contents: crate::render_kernels(&plan.kernels).map_err(|e| err(&format!("{e:#}")))?,
        },
        GeneratedFile {
            path: "src/model.rs".into(),
            contents: model_source(&plan, &model.name, &summary).map_err(|e| err(&e))?,
        },
    ];
    let tokenizer = crate::tokenizer_file::tokenizer_file(model).map_err(|e| err(&e))?;
    let tokenizer_name = tokenizer.as_ref().map(|t| t.name);
    if let Some(file) = tokenizer {
        files.push(GeneratedFile {
            path: file.name.into(),
            contents: file.contents,
        });
    }
    files.push(GeneratedFile {
        path: super::chat_template::CHAT_TEMPLATE_FILE.into(),
        contents: super::chat_template::ProjectChatTemplate::for_model(model).source,
    });
    let host_plan = HostPlan {
        dtype: HostPlan::weights_dtype(&plan.weights),
        kv_cache: plan.describe_cache(),
        recurrent_state: plan.describe_state(),
        experts: HostPlan::experts_line(&model.config, &plan.weights),
        context_length: plan.context,
        vocab_size: plan.vocab,
        fingerprint: plan.weights.fingerprint(),
        export_dtype: options.dtype.map(|d| d.name().to_lowercase()),
    };
    let mut context = HostContext::new(model, &host_plan, &summary, tokenizer_name);
    if let Some(name) = &options.name {
        context.package_name = super::host::package_name(name);
    }
    files.extend(host_files(&context).map_err(|e| err(&format!("{e:#}")))?);
    Ok(Project { plan, files })
}

/// Renders the project and writes it (and, when `weights` is set, its
/// `weights.gguf`) to `out`, which must not exist yet.
pub fn write_project(
    model: &Model,
    options: &CompileOptions,
    out: &Path,
    weights: bool,
    progress: &mut dyn FnMut(ExportProgress),
) -> Result<Project, CompileError> {
    if out.exists() {
        return Err(CompileError::new(
            out,
            "already exists; choose a new output directory",
        ));
    }
    let project = render_project(model, options)?;
    // Like `mkdir -p`: the output may name directories that do not exist yet.
    let parent = crate::staging::parent(out);
    std::fs::create_dir_all(parent).map_err(|e| CompileError::new(parent, e))?;
    let temp = crate::staging::dir_beside(out).map_err(|e| {
        let parent = crate::staging::parent(out).display();
        CompileError::new(out, format!("cannot create a directory in {parent}: {e}"))
    })?;
    write_tree(&project, model, temp.path(), weights, progress)?;
    // Renamed while tempfile still owns it: on failure it removes the directory.
    std::fs::rename(temp.path(), out).map_err(|e| CompileError::new(out, e))?;
    // The directory now lives at `out`; nothing is left at the temporary path to remove.
    let _ = temp.keep();
    Ok(project)
}

fn write_tree(
    project: &Project,
    model: &Model,
    dir: &Path,
    weights: bool,
    progress: &mut dyn FnMut(ExportProgress),
) -> Result<(), CompileError> {
    for file in &project.files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| CompileError::new(parent, e))?;
        }
        std::fs::write(&path, &file.contents).map_err(|e| CompileError::new(&path, e))?;
    }
    if weights {
        let path = dir.join("weights.gguf");
        export_weights(model, &project.plan.weights, &path, progress)
            .map_err(|e| CompileError::new(&model.source, e))?;
    }
    Ok(())
}
