//! What one sequence costs in device memory besides weights and activations:
//! the attention layers' KV caches, which grow with the context, and the
//! recurrent layers' conv/scan state, which does not. Hybrids exist to shrink
//! the first; `forge inspect` and the generated README report both.

use forge_ir::DType;
use serde::Serialize;

use super::steps::ArgSource;
use super::{LayerKind, Plan};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SequenceMemory {
    /// Layers holding a KV cache.
    pub cache_layers: u64,
    /// What the caches store keys and values as.
    pub cache_dtype: Option<DType>,
    /// Keys and values of all those layers, per token of context.
    pub cache_bytes_per_token: u64,
    /// Layers holding recurrent (conv and scan) state.
    pub state_layers: u64,
    /// Their state, whatever the context.
    pub state_bytes: u64,
}

impl LayerKind {
    fn reads(&self, what: impl Fn(&ArgSource) -> bool) -> bool {
        self.decode
            .iter()
            .chain(&self.prefill)
            .flat_map(|s| &s.args)
            .any(|a| what(&a.source))
    }

    /// Whether this kind's layers keep keys and values.
    pub fn holds_cache(&self) -> bool {
        self.reads(|s| matches!(s, ArgSource::KeyCache | ArgSource::ValueCache))
    }

    /// Whether this kind's layers carry conv or scan state between passes.
    pub fn holds_state(&self) -> bool {
        self.reads(|s| matches!(s, ArgSource::ConvState | ArgSource::ScanState))
    }
}

impl Plan {
    pub fn sequence_memory(&self) -> SequenceMemory {
        let count = |holds: fn(&LayerKind) -> bool| {
            self.layers
                .iter()
                .filter(|l| holds(&self.layer_kinds[l.kind]))
                .count() as u64
        };
        let (cache_layers, state_layers) =
            (count(LayerKind::holds_cache), count(LayerKind::holds_state));
        let per_layer_token = self.cache.as_ref().map_or(0, |c| {
            let element = c.dtype.bytes_for(1).expect("a cache dtype is a float");
            2 * c.kv_heads * c.head_dim * element
        });
        let per_layer_state = self
            .ssm_state
            .as_ref()
            .map_or(0, |s| s.conv_bytes() + s.ssm_bytes());
        SequenceMemory {
            cache_layers,
            cache_dtype: self.cache.as_ref().map(|c| c.dtype),
            cache_bytes_per_token: cache_layers * per_layer_token,
            state_layers,
            state_bytes: state_layers * per_layer_state,
        }
    }
}

/// Bytes as people read them: `192 B`, `1.1 KiB`, `3.0 MiB`, `1.25 GiB`.
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

impl Plan {
    /// The KV caches in one line: `f16, 2 of 4 layers: 1.0 KiB per token of
    /// context, 4.0 MiB at the full 4096`.
    pub fn describe_cache(&self) -> Option<String> {
        let cache = self.cache.as_ref()?;
        let m = self.sequence_memory();
        Some(format!(
            "{}, {} of {} layers: {} per token of context, {} at the full {}",
            cache.dtype.name().to_lowercase(),
            m.cache_layers,
            self.layers.len(),
            human_bytes(m.cache_bytes_per_token),
            human_bytes(m.cache_bytes_per_token * self.context),
            self.context
        ))
    }

    /// The recurrent state in one line: each layer's buffers, then how many
    /// layers hold them and their bytes in all.
    pub fn describe_state(&self) -> Option<String> {
        let state = self.ssm_state.as_ref()?;
        let m = self.sequence_memory();
        Some(format!(
            "{}; {} of {} layers, {} in all whatever the context",
            state.describe(),
            m.state_layers,
            self.layers.len(),
            human_bytes(m.state_bytes)
        ))
    }
}
