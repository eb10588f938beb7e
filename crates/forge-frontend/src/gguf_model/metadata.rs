//! Typed reads of GGUF metadata keys, with errors naming the file and key.

use forge_weights::gguf::GgufValue;

use crate::gguf::GgufFile;
use crate::{Error, Result};

pub struct Metadata<'a> {
    pub file: &'a GgufFile,
    /// The `general.architecture` prefix of architecture keys.
    pub arch: String,
}

impl<'a> Metadata<'a> {
    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::new(&self.file.path, message)
    }

    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.arch)
    }

    /// `{arch}.{key}` as a non-negative integer.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        self.opt_u64_raw(&self.key(key))
    }

    pub fn opt_u64_raw(&self, key: &str) -> Result<Option<u64>> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                self.error(format!(
                    "{key} must be a non-negative integer, found {}",
                    v.type_name()
                ))
            }),
        }
    }

    pub fn u64(&self, key: &str) -> Result<u64> {
        self.opt_u64(key)?
            .ok_or_else(|| self.error(format!("missing metadata key {}", self.key(key))))
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        let key = self.key(key);
        match self.file.get(&key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                self.error(format!("{key} must be a number, found {}", v.type_name()))
            }),
        }
    }

    pub fn opt_str_raw(&self, key: &str) -> Result<Option<&'a str>> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| {
                self.error(format!("{key} must be a string, found {}", v.type_name()))
            }),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        self.opt_str_raw(&self.key(key))
    }

    pub fn opt_bool_raw(&self, key: &str) -> Result<Option<bool>> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| {
                self.error(format!("{key} must be a boolean, found {}", v.type_name()))
            }),
        }
    }

    /// An array value's items, checked to be of one kind by `item`.
    pub fn array<T>(
        &self,
        key: &str,
        item: impl Fn(&GgufValue) -> Option<T>,
    ) -> Result<Option<Vec<T>>> {
        match self.file.get(key) {
            None => Ok(None),
            Some(v) => {
                let arr = v.as_array().ok_or_else(|| {
                    self.error(format!("{key} must be an array, found {}", v.type_name()))
                })?;
                arr.items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| {
                        item(x).ok_or_else(|| {
                            self.error(format!("{key}[{i}] has the wrong type ({})", x.type_name()))
                        })
                    })
                    .collect::<Result<Vec<T>>>()
                    .map(Some)
            }
        }
    }

    /// `{arch}.{key}` as one integer per layer: an array of `layers`, or one
    /// integer for all (llama.cpp writes per-layer values for hybrids).
    pub fn per_layer_u64(&self, key: &str, layers: u64) -> Result<Option<Vec<u64>>> {
        let full = self.key(key);
        match self.file.get(&full) {
            Some(GgufValue::Array(_)) => {
                let values = self.array(&full, GgufValue::as_u64)?.unwrap_or_default();
                if values.len() as u64 != layers {
                    return Err(self.error(format!(
                        "{full} has {} values for {layers} layers",
                        values.len()
                    )));
                }
                Ok(Some(values))
            }
            _ => Ok(self.opt_u64(key)?.map(|v| vec![v; layers as usize])),
        }
    }

    /// `{arch}.{key}` that may be one integer or one per layer (llama.cpp allows both);
    /// returns the single value, refusing per-layer values that differ.
    pub fn uniform_u64(&self, key: &str) -> Result<Option<u64>> {
        let full = self.key(key);
        match self.file.get(&full) {
            Some(GgufValue::Array(_)) => {
                let values = self.array(&full, GgufValue::as_u64)?.unwrap_or_default();
                match values.split_first() {
                    Some((first, rest)) if rest.iter().all(|v| v == first) => Ok(Some(*first)),
                    Some(_) => Err(self.error(format!(
                        "{full} differs between layers, which forge does not support"
                    ))),
                    None => Err(self.error(format!("{full} is an empty array"))),
                }
            }
            _ => self.opt_u64(key),
        }
    }
}
