//! Why a safetensors header was refused, in forge's words: the `safetensors`
//! crate validates headers but reports coarse errors ("invalid JSON in
//! header", "invalid offset for tensor"), so when it refuses one this walk
//! of the same header finds the first concrete problem — which length,
//! which tensor, which field, which numbers. It also finds the one problem
//! the crate accepts silently: a repeated key, where the crate keeps the
//! last entry.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::header::{dtype_of, MAX_HEADER_LEN, METADATA_KEY};
use super::SafetensorsTensor;

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

fn u64_list(v: &Value) -> Option<Vec<u64>> {
    v.as_array()?.iter().map(Value::as_u64).collect()
}

/// The first problem of the header in `bytes` (a whole file), if this walk
/// finds one.
pub(super) fn first_problem(bytes: &[u8]) -> Option<String> {
    parse(bytes).err()
}

/// The header's keys are unique (the crate keeps the last of repeated ones).
pub(super) fn repeated_key(json: &[u8]) -> Option<String> {
    match serde_json::from_slice::<Entries<de::IgnoredAny>>(json) {
        Err(e) if e.to_string().starts_with("duplicate key") => {
            Some(format!("invalid header JSON: {e}"))
        }
        _ => None,
    }
}

/// Walks the whole header as the crate would, explaining the first problem.
fn parse(bytes: &[u8]) -> std::result::Result<(), String> {
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
    for (name, fields) in entries.0 {
        if name == METADATA_KEY {
            if let Some((k, _)) = fields.0.iter().find(|(_, v)| !v.is_string()) {
                return Err(format!("{METADATA_KEY} value of '{k}' is not a string"));
            }
            continue;
        }
        let t = tensor(&name, fields.0, data_offset, data_len)
            .map_err(|e| format!("tensor '{name}': {e}"))?;
        tensors.push(t);
    }
    check_overlap(&tensors)
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
    let dtype = dtype_of(dtype_name)?;
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
