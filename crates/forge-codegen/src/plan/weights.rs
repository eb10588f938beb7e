//! The weight plan: which tensors the generated project reads, in which
//! dtype, and which checkpoint tensors each one is made of.

use forge_ir::DType;
use serde::Serialize;

/// One tensor of `weights.gguf`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedTensor {
    /// Name in the weights file (`blk.0.attn_qkv.weight`).
    pub name: String,
    /// Storage dtype on the GPU.
    pub dtype: DType,
    /// `[rows, cols]` for matrices, `[n]` for vectors (norm weights, biases).
    pub shape: Vec<u64>,
    /// Canonical checkpoint tensors concatenated along rows, in order (the
    /// fused QKV is `[attn_q, attn_k, attn_v]`); one entry when not fused.
    pub parts: Vec<String>,
    /// Keep the checkpoint's interleaved rope row order instead of applying
    /// its `UnpermuteRopeRows` transform (the kernels then rotate pairs
    /// (2i, 2i+1)).
    pub keep_interleaved_rope: bool,
}

/// How the export lays dtypes out; part of the fingerprint, so a file in an
/// older layout is refused. `planes-2`: the block formats of
/// `forge_weights::planes::layout` as its planes (`planes-1` had Q8_0 and
/// Q4_0 only; Q4_1, Q5_0 and Q5_1 were converted to Q8_0).
const LAYOUT: &str = "planes-2";

/// Every tensor the generated project binds, in file order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WeightPlan {
    pub tensors: Vec<PlannedTensor>,
}

impl WeightPlan {
    pub fn get(&self, name: &str) -> Option<&PlannedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A stable hash of everything that decides the file's layout (names,
    /// dtypes, shapes, parts and order, and how dtypes are laid out), as 16
    /// hex digits. The weights file stores it and the generated binary
    /// refuses a file with another one.
    pub fn fingerprint(&self) -> String {
        // FNV-1a over a canonical text form: stable across Rust versions, unlike DefaultHasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let text = format!(
            "{LAYOUT}:{}",
            serde_json::to_string(self).expect("plain data serialises")
        );
        for byte in text.bytes() {
            hash ^= byte as u64;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{hash:016x}")
    }
}
