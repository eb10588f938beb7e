//! Parser for the GGUF header: magic, version, metadata and tensor infos,
//! with every count and offset checked against the bytes actually present
//! before anything is allocated or sliced.

use std::collections::HashSet;
use std::path::Path;

use forge_ir::DType;
use forge_weights::gguf::{
    GgufArray, GgufValue, GgufValueType, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC,
};

use super::GgufTensorInfo;
use crate::{Error, Result};

/// GGML tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;
/// Real files nest arrays at most two deep; the limit keeps a crafted file
/// from exhausting the stack through recursion.
const MAX_ARRAY_DEPTH: u32 = 8;
/// Smallest tensor info: empty name (u64 length), n_dims, type, offset.
const MIN_TENSOR_INFO_LEN: u64 = 8 + 4 + 4 + 8;
/// Smallest metadata entry: empty key, type tag, one-byte value.
const MIN_KV_LEN: u64 = 8 + 4 + 1;

/// Everything in a GGUF file except the tensor data itself.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: Vec<(String, GgufValue)>,
    pub tensors: Vec<GgufTensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the tensor data section.
    pub data_offset: u64,
}

type Parsed<T> = std::result::Result<T, String>;

/// A position in the file's bytes; every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64) -> Parsed<&'a [u8]> {
        if n > self.remaining() {
            return Err(format!(
                "truncated: {n} bytes needed at offset {}, but the file is {} bytes long",
                self.pos,
                self.bytes.len()
            ));
        }
        let n = n as usize;
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn fixed<const N: usize>(&mut self) -> Parsed<[u8; N]> {
        let slice = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u32(&mut self) -> Parsed<u32> {
        self.fixed().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Parsed<u64> {
        self.fixed().map(u64::from_le_bytes)
    }

    fn string(&mut self) -> Parsed<String> {
        let at = self.pos;
        let len = self.u64()?;
        if len > self.remaining() {
            return Err(format!(
                "string at offset {at} claims {len} bytes, but only {} remain in the file",
                self.remaining()
            ));
        }
        let bytes = self.take(len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(format!("string at offset {at} is not valid UTF-8")),
        }
    }

    fn value_type(&mut self) -> Parsed<GgufValueType> {
        let at = self.pos;
        let tag = self.u32()?;
        GgufValueType::from_u32(tag)
            .ok_or_else(|| format!("unknown metadata value type {tag} at offset {at}"))
    }

    fn value(&mut self, ty: GgufValueType, depth: u32) -> Parsed<GgufValue> {
        Ok(match ty {
            GgufValueType::U8 => GgufValue::U8(u8::from_le_bytes(self.fixed()?)),
            GgufValueType::I8 => GgufValue::I8(i8::from_le_bytes(self.fixed()?)),
            GgufValueType::U16 => GgufValue::U16(u16::from_le_bytes(self.fixed()?)),
            GgufValueType::I16 => GgufValue::I16(i16::from_le_bytes(self.fixed()?)),
            GgufValueType::U32 => GgufValue::U32(u32::from_le_bytes(self.fixed()?)),
            GgufValueType::I32 => GgufValue::I32(i32::from_le_bytes(self.fixed()?)),
            GgufValueType::F32 => GgufValue::F32(f32::from_le_bytes(self.fixed()?)),
            GgufValueType::U64 => GgufValue::U64(u64::from_le_bytes(self.fixed()?)),
            GgufValueType::I64 => GgufValue::I64(i64::from_le_bytes(self.fixed()?)),
            GgufValueType::F64 => GgufValue::F64(f64::from_le_bytes(self.fixed()?)),
            GgufValueType::Bool => {
                let at = self.pos;
                match self.fixed::<1>()?[0] {
                    0 => GgufValue::Bool(false),
                    1 => GgufValue::Bool(true),
                    b => return Err(format!("bool at offset {at} has value {b}, not 0 or 1")),
                }
            }
            GgufValueType::String => GgufValue::String(self.string()?),
            GgufValueType::Array => GgufValue::Array(self.array(depth + 1)?),
        })
    }

    fn array(&mut self, depth: u32) -> Parsed<GgufArray> {
        if depth > MAX_ARRAY_DEPTH {
            return Err(format!(
                "arrays nested more than {MAX_ARRAY_DEPTH} deep at offset {}",
                self.pos
            ));
        }
        let item_type = self.value_type()?;
        let at = self.pos;
        let count = self.u64()?;
        // Check the count against the bytes left before reserving memory for it.
        let fits = count
            .checked_mul(item_type.min_encoded_len())
            .is_some_and(|need| need <= self.remaining());
        if !fits {
            return Err(format!(
                "array at offset {at} claims {count} {} items, more than the {} bytes that remain can hold",
                item_type.name(),
                self.remaining()
            ));
        }
        let mut items = Vec::with_capacity(count as usize);
        for i in 0..count {
            let item = self
                .value(item_type, depth)
                .map_err(|e| format!("array item {i}: {e}"))?;
            items.push(item);
        }
        Ok(GgufArray { item_type, items })
    }

    /// Reads a u64 count of records each at least `min_len` bytes long,
    /// rejecting counts the rest of the file cannot hold.
    fn count(&mut self, what: &str, min_len: u64) -> Parsed<u64> {
        let at = self.pos;
        let count = self.u64()?;
        if count
            .checked_mul(min_len)
            .is_none_or(|need| need > self.remaining())
        {
            return Err(format!(
                "{what} count {count} at offset {at} needs at least {min_len} bytes each, but only {} bytes remain",
                self.remaining()
            ));
        }
        Ok(count)
    }
}

/// Parses a whole GGUF file held in `bytes` (normally a memory map).
/// `path` is only used in error messages.
pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<GgufHeader> {
    parse(bytes).map_err(|message| Error::new(path, message))
}

fn parse(bytes: &[u8]) -> Parsed<GgufHeader> {
    let mut cur = Cursor { bytes, pos: 0 };
    let magic: [u8; 4] = cur
        .fixed()
        .map_err(|_| format!("not a GGUF file: only {} bytes long", bytes.len()))?;
    if magic != GGUF_MAGIC {
        return Err(format!(
            "not a GGUF file: starts with {:02x?}, expected \"GGUF\"",
            magic
        ));
    }
    let version = cur.u32()?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(
                "GGUF version 1 (32-bit counts, 2023) is not supported; re-convert the model to v3"
                    .to_string(),
            )
        }
        v if matches!(v.swap_bytes(), 1..=3) => {
            return Err("big-endian GGUF files are not supported".to_string())
        }
        v => return Err(format!("GGUF version {v} is not supported (2 and 3 are)")),
    }
    let n_tensors = cur.u64()?;
    let n_kv = cur.count("metadata", MIN_KV_LEN)?;

    let mut metadata = Vec::with_capacity(n_kv as usize);
    let mut keys = HashSet::new();
    for i in 0..n_kv {
        let key = cur
            .string()
            .map_err(|e| format!("metadata entry {i}: key: {e}"))?;
        let value = cur
            .value_type()
            .and_then(|ty| cur.value(ty, 0))
            .map_err(|e| format!("metadata '{key}': {e}"))?;
        if !keys.insert(key.clone()) {
            return Err(format!("duplicate metadata key '{key}'"));
        }
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
        None => DEFAULT_ALIGNMENT,
        Some((_, GgufValue::U32(a))) if a.is_power_of_two() => u64::from(*a),
        Some((_, v)) => {
            return Err(format!(
                "'{ALIGNMENT_KEY}' must be a u32 power of two, found {} {v:?}",
                v.type_name()
            ))
        }
    };

    if n_tensors
        .checked_mul(MIN_TENSOR_INFO_LEN)
        .is_none_or(|need| need > cur.remaining())
    {
        return Err(format!(
            "tensor count {n_tensors} needs at least {MIN_TENSOR_INFO_LEN} bytes each, but only {} bytes remain after the metadata",
            cur.remaining()
        ));
    }
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut names = HashSet::new();
    for i in 0..n_tensors {
        let info = tensor_info(&mut cur, alignment).map_err(|e| format!("tensor info {i}: {e}"))?;
        if !names.insert(info.name.clone()) {
            return Err(format!("duplicate tensor name '{}'", info.name));
        }
        tensors.push(info);
    }

    let data_offset = (cur.pos as u64).next_multiple_of(alignment);
    let file_len = bytes.len() as u64;
    for t in &mut tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= file_len => t.offset = start,
            _ => {
                return Err(format!(
                    "tensor '{}': data ({} bytes at data offset {}) runs past the end of the file ({file_len} bytes)",
                    t.name, t.n_bytes, t.offset
                ))
            }
        }
    }
    check_overlap(&tensors)?;

    Ok(GgufHeader {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

/// Reads one tensor info; `offset` in the result is still relative to the
/// data section.
fn tensor_info(cur: &mut Cursor, alignment: u64) -> Parsed<GgufTensorInfo> {
    let name = cur.string().map_err(|e| format!("name: {e}"))?;
    let n_dims = cur.u32()?;
    if n_dims > MAX_DIMS {
        return Err(format!(
            "tensor '{name}' has {n_dims} dimensions; GGUF allows at most {MAX_DIMS}"
        ));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(cur.u64()?);
    }
    let type_id = cur.u32()?;
    let dtype = DType::from_ggml_type_id(type_id)
        .ok_or_else(|| format!("tensor '{name}' has unknown GGML type id {type_id}"))?;
    let offset = cur.u64()?;
    let elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("tensor '{name}': dimensions {dims:?} overflow u64"))?;
    let row = dims.first().copied().unwrap_or(1);
    if !row.is_multiple_of(dtype.block_elements()) {
        return Err(format!(
            "tensor '{name}': row length {row} is not a multiple of the {dtype} block size {}",
            dtype.block_elements()
        ));
    }
    let n_bytes = dtype.bytes_for(elements).ok_or_else(|| {
        format!("tensor '{name}': {dtype} size of dimensions {dims:?} overflows u64")
    })?;
    if !offset.is_multiple_of(alignment) {
        return Err(format!(
            "tensor '{name}': data offset {offset} is not a multiple of the alignment {alignment}"
        ));
    }
    Ok(GgufTensorInfo {
        name,
        dims,
        dtype,
        offset,
        n_bytes,
    })
}

/// Two tensors sharing bytes means a corrupt or malicious file.
fn check_overlap(tensors: &[GgufTensorInfo]) -> Parsed<()> {
    let mut spans: Vec<&GgufTensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    spans.sort_by_key(|t| t.offset);
    for pair in spans.windows(2) {
        if pair[0].offset + pair[0].n_bytes > pair[1].offset {
            return Err(format!(
                "tensors '{}' and '{}' overlap in the file",
                pair[0].name, pair[1].name
            ));
        }
    }
    Ok(())
}
