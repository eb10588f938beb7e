//! GGUF v2/v3 reader: parses the header of a memory-mapped file and hands out
//! tensor data as slices of the map, so opening a multi-GB model copies nothing.

mod parse;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use forge_ir::DType;
pub use forge_weights::gguf::{GgufArray, GgufValue, GgufValueType};
use memmap2::Mmap;

pub use parse::{parse_bytes, GgufHeader};

use crate::{Error, Result};

/// One tensor's description from the GGUF header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// GGML order: `dims[0]` is the contiguous (row) length.
    pub dims: Vec<u64>,
    pub dtype: DType,
    /// Absolute offset of the data in the file.
    pub offset: u64,
    pub n_bytes: u64,
}

impl GgufTensorInfo {
    pub fn n_elements(&self) -> u64 {
        // The parser checked that this product does not overflow.
        self.dims.iter().product()
    }
}

/// An open GGUF file: its parsed header and a map of its bytes.
/// Cloning is cheap: the maps are shared.
#[derive(Clone, Debug)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: Vec<(String, GgufValue)>,
    pub tensors: Vec<GgufTensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the tensor data section.
    pub data_offset: u64,
    mmap: Arc<Mmap>,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file = File::open(path).map_err(|e| Error::new(path, format!("cannot open: {e}")))?;
        // SAFETY: the map is read-only; like every mmap-based model loader we
        // assume the file is not truncated by another process while mapped.
        let mmap = unsafe { Mmap::map(&file) }
            .map_err(|e| Error::new(path, format!("cannot memory-map: {e}")))?;
        let header = parse_bytes(path, &mmap)?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            version: header.version,
            metadata: header.metadata,
            tensors: header.tensors,
            alignment: header.alignment,
            data_offset: header.data_offset,
            mmap: Arc::new(mmap),
        })
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Like [`get`](Self::get), but a missing key is an error naming the file.
    pub fn require(&self, key: &str) -> Result<&GgufValue> {
        self.get(key)
            .ok_or_else(|| Error::new(&self.path, format!("missing metadata key '{key}'")))
    }

    /// The strings of a string-array entry such as `tokenizer.ggml.tokens`.
    pub fn string_array(&self, key: &str) -> Result<Vec<&str>> {
        let value = self.require(key)?;
        let wrong = || {
            Error::new(
                &self.path,
                format!(
                    "metadata '{key}' is {}, expected an array of strings",
                    value.type_name()
                ),
            )
        };
        let array = value.as_array().ok_or_else(wrong)?;
        array
            .items
            .iter()
            .map(|item| item.as_str().ok_or_else(wrong))
            .collect()
    }

    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The bytes of a tensor of this file. The parser checked every tensor's
    /// range against the file, so this panics only for an info taken from
    /// another file.
    pub fn tensor_data(&self, t: &GgufTensorInfo) -> &[u8] {
        let start = t.offset as usize;
        let end = start + t.n_bytes as usize;
        self.mmap.get(start..end).unwrap_or_else(|| {
            panic!(
                "tensor '{}' [{start}, {end}) is not inside {}",
                t.name,
                self.path.display()
            )
        })
    }

    /// The whole mapped file, for callers that wrap it in GPU buffers.
    pub fn mmap(&self) -> &Arc<Mmap> {
        &self.mmap
    }
}
