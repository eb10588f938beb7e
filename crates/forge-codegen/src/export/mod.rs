//! Writes `weights.gguf`: the planned tensors of a model, converted to their
//! planned dtypes, in plan order, with 16 KiB-aligned data so the generated
//! binary can wrap the mapped file in GPU buffers without copying. Block
//! formats the kernels read are written as their planes
//! (`forge_weights::planes`), the layout the kernels read.

mod convert;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use forge_ir::{DType, Model, SourceFormat};
use forge_weights::gguf::{GgufValue, GgufWriter};
use forge_weights::planes;
use memmap2::Mmap;

use crate::plan::WeightPlan;
use convert::{PartMode, PreparedPart};

/// Alignment of the data section, of every tensor and of the file length:
/// Metal's `newBufferWithBytesNoCopy` wants whole 16 KiB pages on Apple silicon.
pub const WEIGHTS_ALIGNMENT: u64 = 16384;

/// Metadata key holding [`WeightPlan::fingerprint`].
pub const FINGERPRINT_KEY: &str = "forge.plan_fingerprint";

/// A failed export: the file at fault and what is wrong. Displays as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportError {
    pub path: PathBuf,
    pub message: String,
}

impl ExportError {
    fn new(path: &Path, message: impl Into<String>) -> Self {
        let message: String = message.into();
        ExportError {
            path: path.to_path_buf(),
            message: message.replace(['\n', '\r'], " "),
        }
    }
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for ExportError {}

/// Where an export is, reported before each tensor and once at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportProgress<'a> {
    pub tensors_done: usize,
    pub tensors_total: usize,
    /// Tensor data bytes written so far and in all (padding excluded).
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// The tensor being converted; `None` once everything is written.
    pub current: Option<&'a str>,
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    pub path: PathBuf,
    pub fingerprint: String,
    pub tensors: usize,
    pub file_bytes: u64,
    /// Parts copied byte for byte (same dtype, rows at most reordered).
    pub raw_parts: usize,
    /// Parts dequantised, transformed and quantised.
    pub converted_parts: usize,
}

/// A planned tensor with its parts resolved against the model.
struct PreparedTensor<'a> {
    name: &'a str,
    /// GGML order: the row length first.
    dims: Vec<u64>,
    n_bytes: u64,
    parts: Vec<(PreparedPart, &'a Path, std::ops::Range<usize>)>,
}

/// Writes `plan`'s tensors of `model` to `out` (through a temporary file in
/// the same directory, persisted into place, so `out` is never half-written).
pub fn export_weights(
    model: &Model,
    plan: &WeightPlan,
    out: &Path,
    progress: &mut dyn FnMut(ExportProgress<'_>),
) -> Result<ExportSummary, ExportError> {
    let mut maps: HashMap<PathBuf, Mmap> = HashMap::new();
    let tensors = prepare(model, plan, &mut maps)?;
    let fingerprint = plan.fingerprint();
    let file_error = |message: String| ExportError::new(out, message);

    if out.is_dir() {
        return Err(ExportError::new(out, "is a directory"));
    }
    let temp = crate::staging::file_beside(out).map_err(|e| {
        let dir = crate::staging::parent(out).display();
        ExportError::new(out, format!("cannot create a file in {dir}: {e}"))
    })?;
    let sink = BufWriter::with_capacity(1 << 20, temp.as_file());
    let mut writer = GgufWriter::with_alignment(sink, WEIGHTS_ALIGNMENT)
        .map_err(|e| file_error(e.to_string()))?;
    let source_format = match model.format {
        SourceFormat::HuggingFace => "huggingface",
        SourceFormat::Gguf => "gguf",
    };
    let metadata = [
        ("general.architecture", "forge".to_string()),
        ("general.name", model.name.clone()),
        (FINGERPRINT_KEY, fingerprint.clone()),
        ("forge.source", model.source.display().to_string()),
        ("forge.source_format", source_format.to_string()),
        (
            "forge.model_architecture",
            model.config.architecture.name().to_string(),
        ),
    ];
    for (key, value) in metadata {
        writer
            .add_metadata(key, GgufValue::String(value))
            .map_err(|e| file_error(e.to_string()))?;
    }
    for t in &tensors {
        for (name, dims, dtype) in file_tensors(t.name, &t.dims, plan_dtype(plan, t.name)) {
            writer
                .add_tensor(&name, &dims, dtype)
                .map_err(|e| file_error(e.to_string()))?;
        }
    }

    let bytes_total: u64 = tensors.iter().map(|t| t.n_bytes).sum();
    let mut bytes_done = 0;
    let (mut raw_parts, mut converted_parts) = (0, 0);
    for (i, t) in tensors.iter().enumerate() {
        progress(ExportProgress {
            tensors_done: i,
            tensors_total: tensors.len(),
            bytes_done,
            bytes_total,
            current: Some(t.name),
        });
        let dtype = plan_dtype(plan, t.name);
        let mut data = vec![0u8; t.n_bytes as usize];
        let mut at = 0;
        for (part, file, range) in &t.parts {
            let part_bytes = dtype
                .bytes_for((part.rows * part.row_len) as u64)
                .expect("prepare checked the part's rows are whole blocks")
                as usize;
            let stored = &maps[*file][range.clone()];
            convert::convert_part(part, stored, dtype, &mut data[at..at + part_bytes]);
            at += part_bytes;
            match part.mode {
                PartMode::RawRows { .. } => raw_parts += 1,
                _ => converted_parts += 1,
            }
        }
        let write = |writer: &mut GgufWriter<_>, name: &str, bytes: &[u8]| {
            writer
                .write_tensor_data(name, bytes)
                .map_err(|e| file_error(format!("writing tensor {name}: {e}")))
        };
        if let Some(layout) = planes::layout(dtype) {
            let split = planes::split(dtype, &data).map_err(|e| file_error(e.to_string()))?;
            write(&mut writer, t.name, split.quants())?;
            for (plane, bytes) in layout.iter().zip(&split.planes).skip(1) {
                write(&mut writer, &plane_tensor_name(t.name, plane.name), bytes)?;
            }
        } else {
            write(&mut writer, t.name, &data)?;
        }
        bytes_done += t.n_bytes;
    }
    let sink = writer.finish().map_err(|e| file_error(e.to_string()))?;
    let file = sink
        .into_inner()
        .map_err(|e| file_error(e.error().to_string()))?;
    file.sync_all().map_err(|e| file_error(e.to_string()))?;
    let file_bytes = file
        .metadata()
        .map_err(|e| file_error(e.to_string()))?
        .len();
    temp.persist(out).map_err(|e| {
        file_error(format!(
            "cannot move the finished file into place: {}",
            e.error
        ))
    })?;
    progress(ExportProgress {
        tensors_done: tensors.len(),
        tensors_total: tensors.len(),
        bytes_done,
        bytes_total,
        current: None,
    });
    Ok(ExportSummary {
        path: out.to_path_buf(),
        fingerprint,
        tensors: tensors.len(),
        file_bytes,
        raw_parts,
        converted_parts,
    })
}

fn plan_dtype(plan: &WeightPlan, name: &str) -> forge_ir::DType {
    plan.get(name).expect("prepared from the plan").dtype
}

/// The GGUF tensor holding plane `plane` (`scales`) of a tensor written as
/// planes; the quant plane keeps the tensor's own name.
pub fn plane_tensor_name(name: &str, plane: &str) -> String {
    format!("{name}.{plane}")
}

/// The GGUF tensors a planned tensor is written as (dims innermost first):
/// itself, or for a block format the kernels read as planes each of its
/// planes (the quants under the tensor's name, the others as
/// [`plane_tensor_name`]), each as rows of its own elements (I8 bytes, F16
/// halves), as the kernels read them.
fn file_tensors(name: &str, dims: &[u64], dtype: DType) -> Vec<(String, Vec<u64>, DType)> {
    let Some(layout) = planes::layout(dtype) else {
        return vec![(name.to_string(), dims.to_vec(), dtype)];
    };
    layout
        .iter()
        .enumerate()
        .map(|(i, plane)| {
            let mut plane_dims = dims.to_vec();
            plane_dims[0] = planes::plane_elements(dtype, plane, dims[0]);
            let plane_name = if i == 0 {
                name.to_string()
            } else {
                plane_tensor_name(name, plane.name)
            };
            (plane_name, plane_dims, plane.element)
        })
        .collect()
}

/// Resolves and checks every part of every planned tensor before anything is
/// written, mapping each source file once.
fn prepare<'a>(
    model: &'a Model,
    plan: &'a WeightPlan,
    maps: &mut HashMap<PathBuf, Mmap>,
) -> Result<Vec<PreparedTensor<'a>>, ExportError> {
    let plan_error = |message: String| ExportError::new(&model.source, message);
    let mut seen = std::collections::HashSet::new();
    let mut prepared = Vec::with_capacity(plan.tensors.len());
    for planned in &plan.tensors {
        let name = planned.name.as_str();
        if !seen.insert(name) {
            return Err(plan_error(format!("weight plan lists {name} twice")));
        }
        if planned.parts.is_empty() {
            return Err(plan_error(format!("weight plan gives {name} no parts")));
        }
        let (rows, row_len) = convert::rows_and_len(&planned.shape);
        let dtype = planned.dtype;
        let n_bytes = rows
            .checked_mul(row_len)
            .filter(|_| row_len.is_multiple_of(dtype.block_elements()))
            .and_then(|n| dtype.bytes_for(n))
            .ok_or_else(|| {
                plan_error(format!(
                    "planned {name} {:?} is not whole rows of {dtype} blocks",
                    planned.shape
                ))
            })?;
        let mut parts = Vec::with_capacity(planned.parts.len());
        let mut part_rows = 0u64;
        for part_name in &planned.parts {
            let spec = model.tensors.get(part_name).ok_or_else(|| {
                plan_error(format!(
                    "weight plan builds {name} from {part_name}, which the model does not have"
                ))
            })?;
            if spec.shape.get(1..) != planned.shape.get(1..) || spec.shape.is_empty() {
                return Err(plan_error(format!(
                    "{name} is planned as {:?}, but its part {part_name} is {:?}",
                    planned.shape, spec.shape
                )));
            }
            part_rows += spec.shape[0];
            let source = &spec.source;
            let part = convert::prepare_part(spec, dtype, planned.keep_interleaved_rope)
                .map_err(|m| ExportError::new(&source.file, format!("{part_name}: {m}")))?;
            let map = map_source(maps, &source.file)?;
            let end = source.offset.checked_add(source.n_bytes);
            let range = match end {
                Some(end) if end <= map.len() as u64 => source.offset as usize..end as usize,
                _ => {
                    return Err(ExportError::new(
                        &source.file,
                        format!(
                            "{part_name}: bytes {}..{} lie outside the file ({} bytes)",
                            source.offset,
                            source.offset.saturating_add(source.n_bytes),
                            map.len()
                        ),
                    ))
                }
            };
            parts.push((part, source.file.as_path(), range));
        }
        if part_rows != rows {
            return Err(plan_error(format!(
                "{name} is planned with {rows} rows, its parts have {part_rows}"
            )));
        }
        prepared.push(PreparedTensor {
            name,
            dims: planned.shape.iter().rev().copied().collect(),
            n_bytes,
            parts,
        });
    }
    Ok(prepared)
}

/// Maps `path` once; later parts of the same file reuse the map.
fn map_source<'m>(
    maps: &'m mut HashMap<PathBuf, Mmap>,
    path: &Path,
) -> Result<&'m Mmap, ExportError> {
    if !maps.contains_key(path) {
        let file =
            File::open(path).map_err(|e| ExportError::new(path, format!("cannot open: {e}")))?;
        // SAFETY: read-only map of a checkpoint nobody is expected to modify during the export.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| ExportError::new(path, format!("cannot memory-map: {e}")))?;
        maps.insert(path.to_path_buf(), map);
    }
    Ok(&maps[path])
}
