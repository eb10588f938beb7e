//! One safetensors file's header, read and validated by the `safetensors`
//! crate (a u64 little-endian length, a JSON object of tensor entries and
//! an optional `__metadata__` map, data covering the rest of the file).
//! A header the crate refuses gets forge's own one-line explanation
//! (`diagnose`), naming the file.

use std::path::Path;

use forge_ir::DType;
use safetensors::SafeTensors;

use super::{diagnose, SafetensorsTensor};
use crate::{Error, Result};

/// The reference implementation refuses headers above 100 MB; so do we,
/// which also bounds what a corrupt length field can make us parse.
pub(super) const MAX_HEADER_LEN: u64 = 100_000_000;
pub(super) const METADATA_KEY: &str = "__metadata__";

/// What one file's header says.
#[derive(Clone, Debug, PartialEq)]
pub struct SafetensorsHeader {
    /// Absolute offset of the data section (8 + header length).
    pub data_offset: u64,
    /// Tensors in the order of their data, with absolute offsets and `file` set to 0.
    pub tensors: Vec<SafetensorsTensor>,
    /// The `__metadata__` entries, if any, sorted by key.
    pub metadata: Vec<(String, String)>,
}

/// Maps a safetensors dtype name onto forge's; the unsigned, boolean and FP8
/// types have no DType and no use in the models forge compiles.
pub(super) fn dtype_of(name: &str) -> std::result::Result<DType, String> {
    Ok(match name {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F64" => DType::F64,
        "I8" => DType::I8,
        "I16" => DType::I16,
        "I32" => DType::I32,
        "I64" => DType::I64,
        _ => {
            return Err(format!(
                "unsupported dtype '{name}' (forge reads F32, F16, BF16, F64, I8, I16, I32, I64)"
            ))
        }
    })
}

/// Parses the header of a safetensors file whose complete bytes are `bytes`.
/// `path` is only used in error messages.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<SafetensorsHeader> {
    let (header_len, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| {
        let message = diagnose::first_problem(bytes)
            .unwrap_or_else(|| format!("not a valid safetensors file: {e}"));
        Error::new(path, message)
    })?;
    let data_offset = 8 + header_len as u64;
    if let Some(message) = diagnose::repeated_key(&bytes[8..data_offset as usize]) {
        return Err(Error::new(path, message));
    }
    let mut tensors = Vec::new();
    for name in metadata.offset_keys() {
        let info = metadata
            .info(&name)
            .expect("offset_keys names its own tensors");
        let dtype = dtype_of(&info.dtype.to_string())
            .map_err(|e| Error::new(path, format!("tensor '{name}': {e}")))?;
        let (begin, end) = info.data_offsets;
        tensors.push(SafetensorsTensor {
            name,
            dtype,
            shape: info.shape.iter().map(|&d| d as u64).collect(),
            file: 0,
            offset: data_offset + begin as u64,
            n_bytes: (end - begin) as u64,
        });
    }
    let mut entries: Vec<(String, String)> = metadata
        .metadata()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    entries.sort();
    Ok(SafetensorsHeader {
        data_offset,
        tensors,
        metadata: entries,
    })
}
