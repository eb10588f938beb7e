//! Kernel instances: one specialisation of a kernel family template
//! (`templates/metal/<family>.metal.j2`) with the model's shapes and dtypes
//! baked in, plus how the host dispatches it. See `templates/metal/README.md`
//! for each family's buffers and grid.

use serde::Serialize;

/// One kernel to emit into `kernels.metal`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelInstance {
    /// Template family: `templates/metal/<family>.metal.j2`, macro `<family>`.
    pub family: &'static str,
    /// The `[[host_name]]`/function name, unique in the library
    /// (`matvec_q8_0_960x576_prenorm`).
    pub name: String,
    /// Parameters the family's macro reads; shapes are compile-time constants.
    pub params: serde_json::Value,
    /// Threads per threadgroup.
    pub threads: [u32; 3],
    /// Threadgroups per grid, as Rust expressions over `n` (tokens in the
    /// pass, u32) and `pos` (position of the pass's first token, u32).
    pub grid: [String; 3],
}

/// Renders `kernels.metal` for the given instances, in order. Instances with
/// the same name are emitted once.
pub fn render_kernels(instances: &[KernelInstance]) -> Result<String, minijinja::Error> {
    let mut unique: Vec<&KernelInstance> = Vec::new();
    for k in instances {
        if !unique.iter().any(|u| u.name == k.name) {
            unique.push(k);
        }
    }
    let families: std::collections::BTreeSet<&str> = unique.iter().map(|k| k.family).collect();
    crate::templates::render(
        "metal/kernels.metal.j2",
        serde_json::json!({ "kernels": unique, "families": families }),
    )
}

pub mod add;
pub mod argmax;
pub mod attention_decode;
pub mod attention_prefill;
pub mod causal_conv1d;
pub mod embedding;
pub mod gated_rms_norm;
pub mod matmul;
pub mod matvec;
pub mod moe;
pub mod rms_norm;
pub mod rope_store;
pub mod rope_tables;
pub mod selective_scan;
pub mod ssd;
pub mod top_candidates;
pub mod weight_format;
