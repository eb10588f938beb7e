//! Parser for one safetensors file's header: a u64 little-endian length, a
//! JSON object of tensor entries (plus an optional `__metadata__` map of
//! strings), then the data every entry's `data_offsets` point into.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use forge_ir::DType;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::SafetensorsTensor;
use crate::{Error, Result};

/// The reference implementation refuses headers above 100 MB; so do we,
/// which also bounds what a corrupt length field can make us parse.
const MAX_HEADER_LEN: u64 = 100_000_000;
const METADATA_KEY: &str = "__metadata__";

/// What one file's header says.
#[derive(Clone, Debug, PartialEq)]
pub struct SafetensorsHeader {
    /// Absolute offset of the data section (8 + header length).
    pub data_offset: u64,
    /// Tensors in file order, with absolute offsets and `file` set to 0.
    pub tensors: Vec<SafetensorsTensor>,
    /// The `__metadata__` entries, if any.
    pub metadata: Vec<(String, String)>,
}

/// A JSON object's entries in file order; a repeated key is an error rather
/// than serde_json's silent last-one-wins.
struct Entries<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct EntriesVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Entries<V>, A::Error> {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format!("duplicate key '{key}'")));
                    }
                    out.push((key, map.next_value()?));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(EntriesVisitor(std::marker::PhantomData))
    }
}

/// Maps a safetensors dtype name onto forge's; the unsigned, boolean and FP8
/// types have no DType and no use in the models forge compiles.
fn dtype_of(name: &str) -> Option<DType> {
    Some(match name {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F64" => DType::F64,
        "I8" => DType::I8,
        "I16" => DType::I16,
        "I32" => DType::I32,
        "I64" => DType::I64,
        _ => return None,
    })
}

fn u64_list(v: &Value) -> Option<Vec<u64>> {
    v.as_array()?.iter().map(Value::as_u64).collect()
}

/// Parses the header of a safetensors file whose complete bytes are `bytes`.
/// `path` is only used in error messages.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<SafetensorsHeader> {
    parse(bytes).map_err(|message| Error::new(path, message))
}

fn parse(bytes: &[u8]) -> std::result::Result<SafetensorsHeader, String> {
    let file_len = bytes.len() as u64;
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(format!(
            "not a safetensors file: only {file_len} bytes long, shorter than the 8-byte header length"
        ));
    };
    let header_len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    if header_len > MAX_HEADER_LEN {
        return Err(format!(
            "not a safetensors file: header length {header_len} is over the {MAX_HEADER_LEN}-byte limit"
        ));
    }
    if header_len > file_len - 8 {
        return Err(format!(
            "truncated or not a safetensors file: header length {header_len} runs past the end of the file ({file_len} bytes)"
        ));
    }
    let data_offset = 8 + header_len;
    let json = &bytes[8..data_offset as usize];
    if json.first() != Some(&b'{') {
        return Err("not a safetensors file: header does not start with '{'".to_string());
    }
    let entries: Entries<Entries<Value>> =
        serde_json::from_slice(json).map_err(|e| format!("invalid header JSON: {e}"))?;
    let data_len = file_len - data_offset;

    let mut tensors = Vec::with_capacity(entries.0.len());
    let mut metadata = Vec::new();
    for (name, fields) in entries.0 {
        if name == METADATA_KEY {
            for (k, v) in fields.0 {
                let Value::String(s) = v else {
                    return Err(format!("{METADATA_KEY} value of '{k}' is not a string"));
                };
                metadata.push((k, s));
            }
            continue;
        }
        let t = tensor(&name, fields.0, data_offset, data_len)
            .map_err(|e| format!("tensor '{name}': {e}"))?;
        tensors.push(t);
    }
    check_overlap(&tensors)?;
    Ok(SafetensorsHeader {
        data_offset,
        tensors,
        metadata,
    })
}

fn tensor(
    name: &str,
    fields: Vec<(String, Value)>,
    data_offset: u64,
    data_len: u64,
) -> std::result::Result<SafetensorsTensor, String> {
    let field = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| format!("missing \"{key}\""))
    };
    let dtype_name = field("dtype")?
        .as_str()
        .ok_or("\"dtype\" is not a string")?;
    let dtype = dtype_of(dtype_name).ok_or_else(|| {
        format!(
            "unsupported dtype '{dtype_name}' (forge reads F32, F16, BF16, F64, I8, I16, I32, I64)"
        )
    })?;
    let shape =
        u64_list(field("shape")?).ok_or("\"shape\" is not a list of non-negative integers")?;
    let offsets = u64_list(field("data_offsets")?)
        .filter(|o| o.len() == 2)
        .ok_or("\"data_offsets\" is not a pair of non-negative integers")?;
    let (begin, end) = (offsets[0], offsets[1]);
    if begin > end {
        return Err(format!(
            "data_offsets [{begin}, {end}] end before they begin"
        ));
    }
    if end > data_len {
        return Err(format!(
            "data_offsets [{begin}, {end}] are outside the {data_len}-byte data section"
        ));
    }
    let n_bytes = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .and_then(|elements| dtype.bytes_for(elements))
        .ok_or_else(|| format!("shape {shape:?} overflows u64"))?;
    if n_bytes != end - begin {
        return Err(format!(
            "shape {shape:?} of {dtype} needs {n_bytes} bytes, but data_offsets [{begin}, {end}] hold {}",
            end - begin
        ));
    }
    Ok(SafetensorsTensor {
        name: name.to_string(),
        dtype,
        shape,
        file: 0,
        offset: data_offset + begin,
        n_bytes,
    })
}

/// Two tensors sharing bytes means a corrupt file; the reference writer
/// never produces it.
fn check_overlap(tensors: &[SafetensorsTensor]) -> std::result::Result<(), String> {
    let mut spans: Vec<&SafetensorsTensor> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
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
