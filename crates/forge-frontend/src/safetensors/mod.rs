//! safetensors reader: single files, sharded checkpoints described by
//! `model.safetensors.index.json`, or every `*.safetensors` in a directory.
//! Files are memory-mapped once; headers are validated by the `safetensors`
//! crate, and tensor data is handed out as its views of the maps.

mod diagnose;
mod header;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use forge_ir::DType;
use memmap2::Mmap;
use serde_json::Value;

pub use header::{parse_header, SafetensorsHeader};
pub use safetensors::tensor::TensorView;

use crate::{Error, Result};

/// The `safetensors` crate's name for a dtype this reader hands out.
fn st_dtype(dtype: DType) -> Option<safetensors::Dtype> {
    use safetensors::Dtype as S;
    Some(match dtype {
        DType::F32 => S::F32,
        DType::F16 => S::F16,
        DType::BF16 => S::BF16,
        DType::F64 => S::F64,
        DType::I8 => S::I8,
        DType::I16 => S::I16,
        DType::I32 => S::I32,
        DType::I64 => S::I64,
        _ => return None,
    })
}

const SINGLE_FILE: &str = "model.safetensors";
const INDEX_FILE: &str = "model.safetensors.index.json";

/// One tensor of a safetensors set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetensorsTensor {
    pub name: String,
    pub dtype: DType,
    /// Row-major, as in the file (the last dimension is contiguous).
    pub shape: Vec<u64>,
    /// Index into [`SafetensorsSet::files`].
    pub file: usize,
    /// Absolute offset of the data in its file.
    pub offset: u64,
    pub n_bytes: u64,
}

/// The tensors of one or more safetensors files, with the files mapped.
/// Cloning is cheap: the maps are shared.
#[derive(Clone, Debug)]
pub struct SafetensorsSet {
    pub files: Vec<PathBuf>,
    pub tensors: Vec<SafetensorsTensor>,
    /// Each file's `__metadata__` entries, by file index.
    pub metadata: Vec<Vec<(String, String)>>,
    mmaps: Vec<Arc<Mmap>>,
    by_name: HashMap<String, usize>,
}

impl SafetensorsSet {
    /// Opens a model directory: `model.safetensors`, else the shards that
    /// `model.safetensors.index.json` lists, else every `*.safetensors`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join(SINGLE_FILE);
        if single.is_file() {
            return Self::open_files(&[single]);
        }
        let index = dir.join(INDEX_FILE);
        if index.is_file() {
            return Self::open_index(dir, &index);
        }
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::new(dir, format!("cannot read directory: {e}")))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| Error::new(dir, format!("cannot read directory: {e}")))?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "safetensors") && path.is_file() {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(Error::new(
                dir,
                format!("no {SINGLE_FILE}, {INDEX_FILE} or other *.safetensors file"),
            ));
        }
        files.sort();
        Self::open_files(&files)
    }

    fn open_index(dir: &Path, index: &Path) -> Result<Self> {
        let text =
            std::fs::read(index).map_err(|e| Error::new(index, format!("cannot read: {e}")))?;
        let json: Value = serde_json::from_slice(&text)
            .map_err(|e| Error::new(index, format!("invalid JSON: {e}")))?;
        let weight_map = json
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::new(index, "no \"weight_map\" object"))?;
        let mut shard_names: Vec<&str> = Vec::new();
        let mut placements = Vec::with_capacity(weight_map.len());
        for (tensor, shard) in weight_map {
            let shard = shard.as_str().ok_or_else(|| {
                Error::new(
                    index,
                    format!("weight_map entry '{tensor}' is not a file name"),
                )
            })?;
            // Shards live next to the index; a path could point anywhere.
            if shard.is_empty() || shard.contains(['/', '\\']) || shard == ".." || shard == "." {
                return Err(Error::new(
                    index,
                    format!("weight_map entry '{tensor}' names '{shard}', which is not a plain file name"),
                ));
            }
            if !shard_names.contains(&shard) {
                shard_names.push(shard);
            }
            placements.push((tensor, shard));
        }
        if shard_names.is_empty() {
            return Err(Error::new(index, "\"weight_map\" is empty"));
        }
        shard_names.sort();
        let mut files = Vec::with_capacity(shard_names.len());
        for name in &shard_names {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(Error::new(
                    index,
                    format!("shard '{name}' listed in the index does not exist"),
                ));
            }
            files.push(path);
        }
        let set = Self::open_files(&files)?;
        for (tensor, shard) in placements {
            let in_shard = set
                .get(tensor)
                .is_some_and(|t| set.files[t.file].file_name().is_some_and(|n| n == shard));
            if !in_shard {
                return Err(Error::new(
                    index,
                    format!("the index places tensor '{tensor}' in '{shard}', which does not contain it"),
                ));
            }
        }
        Ok(set)
    }

    /// Opens the given files as one set; a tensor name may appear only once.
    pub fn open_files(paths: &[PathBuf]) -> Result<Self> {
        let mut set = SafetensorsSet {
            files: Vec::with_capacity(paths.len()),
            tensors: Vec::new(),
            metadata: Vec::with_capacity(paths.len()),
            mmaps: Vec::with_capacity(paths.len()),
            by_name: HashMap::new(),
        };
        for (file_index, path) in paths.iter().enumerate() {
            let file =
                File::open(path).map_err(|e| Error::new(path, format!("cannot open: {e}")))?;
            // SAFETY: the map is read-only; like every mmap-based loader we
            // assume the file is not truncated by another process while mapped.
            let mmap = unsafe { Mmap::map(&file) }
                .map_err(|e| Error::new(path, format!("cannot memory-map: {e}")))?;
            let header = parse_header(path, &mmap)?;
            for mut t in header.tensors {
                if let Some(&earlier) = set.by_name.get(&t.name) {
                    let other = &set.files[set.tensors[earlier].file];
                    return Err(Error::new(
                        path,
                        format!("tensor '{}' is also in {}", t.name, other.display()),
                    ));
                }
                t.file = file_index;
                set.by_name.insert(t.name.clone(), set.tensors.len());
                set.tensors.push(t);
            }
            set.files.push(path.clone());
            set.metadata.push(header.metadata);
            set.mmaps.push(Arc::new(mmap));
        }
        Ok(set)
    }

    pub fn get(&self, name: &str) -> Option<&SafetensorsTensor> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor of this set. The parser checked every range
    /// against its file, so this panics only for a tensor from another set.
    pub fn data(&self, t: &SafetensorsTensor) -> &[u8] {
        self.view(t).data()
    }

    /// The `safetensors` crate's view of a tensor of this set (dtype, shape,
    /// bytes). Panics only for a tensor from another set.
    pub fn view(&self, t: &SafetensorsTensor) -> TensorView<'_> {
        let start = t.offset as usize;
        let end = start + t.n_bytes as usize;
        let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        self.mmaps
            .get(t.file)
            .and_then(|m| m.get(start..end))
            .and_then(|bytes| TensorView::new(st_dtype(t.dtype)?, shape, bytes).ok())
            .unwrap_or_else(|| panic!("tensor '{}' is not part of this safetensors set", t.name))
    }

    /// The mapped bytes of file `file`, for callers that wrap them in GPU buffers.
    pub fn mmap(&self, file: usize) -> &Arc<Mmap> {
        &self.mmaps[file]
    }
}
