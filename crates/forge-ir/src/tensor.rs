//! The tensor table: every weight the graph uses, where its bytes live, and
//! what must be done to them to reach the canonical convention.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::DType;

/// One weight under its canonical name (GGUF style, e.g. `blk.3.attn_q.weight`).
///
/// `shape` is row-major with the outermost dimension first, as PyTorch writes
/// it: a linear layer's weight is `[out_features, in_features]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<u64>,
    pub dtype: DType,
    pub source: TensorSource,
    /// Applied in order to the stored values to obtain the canonical tensor.
    pub transforms: Vec<TensorTransform>,
}

/// Where the stored bytes of a tensor are: a byte range of one file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorSource {
    pub file: PathBuf,
    /// Name of the tensor in the checkpoint (a slice of it when several canonical tensors share one).
    pub name: String,
    pub offset: u64,
    pub n_bytes: u64,
}

/// A conversion from a checkpoint's storage convention to the canonical one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TensorTransform {
    /// llama.cpp's converter reorders the rows of each Q/K head from the
    /// rotate-half layout to the interleaved one; this restores rotate-half.
    UnpermuteRopeRows { heads: u64 },
    /// Stored `w`, used as `1 + w` (Gemma's zero-centred RMSNorm weights).
    AddOne,
    /// Stored `A_log`, used as `A = -exp(A_log)` (Mamba).
    NegExp,
    /// Stored `[in, out]`, used as `[out, in]`.
    Transpose,
    /// Runs of consecutive rows (elements, for a vector) multiplied by a
    /// factor: a scalar multiplier of the model folded into the weight it
    /// follows (Granite's and Falcon-H1's µP multipliers). `(rows, factor)`
    /// pairs cover the rows in order.
    ScaleRows { runs: Vec<(u64, f32)> },
}

impl TensorSpec {
    pub fn elements(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }
}

/// All tensors of a model, looked up by canonical name. Serialised as a list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "Vec<TensorSpec>", try_from = "Vec<TensorSpec>")]
pub struct TensorTable {
    tensors: Vec<TensorSpec>,
    index: BTreeMap<String, usize>,
}

impl From<TensorTable> for Vec<TensorSpec> {
    fn from(table: TensorTable) -> Self {
        table.tensors
    }
}

impl TryFrom<Vec<TensorSpec>> for TensorTable {
    type Error = String;

    fn try_from(specs: Vec<TensorSpec>) -> Result<Self, String> {
        let mut table = TensorTable::new();
        for spec in specs {
            table
                .insert(spec)
                .map_err(|name| format!("duplicate tensor {name}"))?;
        }
        Ok(table)
    }
}

impl TensorTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tensor; returns the previous spec's name back as an error if it is a duplicate.
    pub fn insert(&mut self, spec: TensorSpec) -> Result<(), String> {
        if self.index.contains_key(&spec.name) {
            return Err(spec.name);
        }
        self.index.insert(spec.name.clone(), self.tensors.len());
        self.tensors.push(spec);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&TensorSpec> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The spec of `name`, to add transforms to (its name stays as indexed).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut TensorSpec> {
        self.index.get(name).map(|&i| &mut self.tensors[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &TensorSpec> {
        self.tensors.iter()
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}
