//! Typed access to a parsed JSON object, with errors that name the file and key.
//!
//! transformers 5 writes non-finite floats as `{"__float__": "Infinity"}`
//! (Mamba-2's `time_step_limit`), transformers 4 as Python's json module
//! does, the bare `Infinity`, `-Infinity` and `NaN` that JSON lacks; the
//! parser turns the second form into the first, and numbers read through
//! here accept it.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::{Error, Result};

pub struct JsonObject {
    path: PathBuf,
    map: Map<String, Value>,
}

impl JsonObject {
    /// Reads and parses `path`, which must hold a JSON object.
    pub fn read(path: &Path) -> Result<JsonObject> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::new(path, format!("cannot read: {e}")))?;
        Self::parse(path, &bytes)
    }

    pub fn parse(path: &Path, bytes: &[u8]) -> Result<JsonObject> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| Error::new(path, format!("not UTF-8 text: {e}")))?;
        let value: Value = serde_json::from_str(&python_floats_as_objects(text))
            .map_err(|e| Error::new(path, format!("invalid JSON: {e}")))?;
        match value {
            Value::Object(map) => Ok(JsonObject {
                path: path.to_path_buf(),
                map,
            }),
            other => Err(Error::new(
                path,
                format!("expected a JSON object, found {}", kind(&other)),
            )),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::new(&self.path, message)
    }

    /// The raw value, treating JSON `null` as absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A nested object under `key`, if present.
    pub fn object(&self, key: &str) -> Result<Option<JsonObject>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(JsonObject {
                path: self.path.clone(),
                map: map.clone(),
            })),
            Some(other) => {
                Err(self.error(format!("{key} must be an object, found {}", kind(other))))
            }
        }
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 2e15)
                        .map(|f| f as u64)
                })
                .map(Some)
                .ok_or_else(|| {
                    self.error(format!("{key} must be a non-negative integer, found {v}"))
                }),
        }
    }

    pub fn u64(&self, key: &str) -> Result<u64> {
        self.opt_u64(key)?
            .ok_or_else(|| self.error(format!("missing required field {key}")))
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => number(v)
                .map(Some)
                .ok_or_else(|| self.error(format!("{key} must be a number, found {v}"))),
        }
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        self.opt_f64(key)?
            .ok_or_else(|| self.error(format!("missing required field {key}")))
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.error(format!("{key} must be true or false, found {v}"))),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.error(format!("{key} must be a string, found {v}"))),
        }
    }

    /// A list of numbers, or a single number read as a one-element list.
    pub fn f64_list(&self, key: &str) -> Result<Option<Vec<f64>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    number(v)
                        .ok_or_else(|| self.error(format!("{key} must hold numbers, found {v}")))
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(v) => number(v)
                .map(|f| Some(vec![f]))
                .ok_or_else(|| self.error(format!("{key} must be a number or a list, found {v}"))),
        }
    }

    /// A list of non-negative integers (layer indices); null is absent.
    pub fn u64_list(&self, key: &str) -> Result<Option<Vec<u64>>> {
        if matches!(self.get(key), Some(Value::Null)) {
            return Ok(None);
        }
        let Some(values) = self.f64_list(key)? else {
            return Ok(None);
        };
        values
            .into_iter()
            .map(|f| {
                if f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 {
                    Ok(f as u64)
                } else {
                    Err(self.error(format!("{key} must hold non-negative integers, found {f}")))
                }
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    pub fn str_list(&self, key: &str) -> Result<Option<Vec<String>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(self.error(format!("{key} must hold strings, found {v}"))),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(v) => Err(self.error(format!("{key} must be a list of strings, found {v}"))),
        }
    }
}

/// `text` with each bare `Infinity`, `-Infinity` or `NaN` outside strings
/// (Python's json output for non-finite floats) replaced by transformers'
/// `{"__float__": ...}` object, so serde_json accepts it.
fn python_floats_as_objects(text: &str) -> std::borrow::Cow<'_, str> {
    const LITERALS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];
    if !LITERALS.iter().any(|l| text.contains(l)) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 64);
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(literal) = LITERALS.iter().find(|l| rest.starts_with(**l)) {
            let after = rest[literal.len()..].chars().next();
            if !after.is_some_and(|a| a.is_alphanumeric() || a == '_') {
                out.push_str(&format!("{{\"__float__\": \"{literal}\"}}"));
                rest = &rest[literal.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.into()
}

/// A JSON number, or transformers' encoding of a non-finite one.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Object(m) => match m.get("__float__")?.as_str()? {
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            "NaN" | "nan" => Some(f64::NAN),
            s => s.parse().ok(),
        },
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_non_finite_floats_parse_outside_strings_only() {
        let text =
            r#"{"limit": [0.0, Infinity], "low": -Infinity, "n": NaN, "s": "Infinity \" NaN"}"#;
        let o = JsonObject::parse(Path::new("config.json"), text.as_bytes()).unwrap();
        let limit = o.get("limit").unwrap().as_array().unwrap();
        assert_eq!(number(&limit[1]), Some(f64::INFINITY));
        assert_eq!(number(o.get("low").unwrap()), Some(f64::NEG_INFINITY));
        assert!(number(o.get("n").unwrap()).unwrap().is_nan());
        assert_eq!(o.get("s").unwrap().as_str(), Some("Infinity \" NaN"));
        // Not a literal: part of a longer bare word stays invalid JSON.
        let err = JsonObject::parse(Path::new("c.json"), b"{\"a\": Infinityx}")
            .err()
            .unwrap();
        assert!(err.to_string().contains("invalid JSON"), "{err}");
    }
}
