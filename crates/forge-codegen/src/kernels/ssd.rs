//! The `ssd` kernel family (templates/metal/ssd.metal.j2): Mamba-2's
//! state-space recurrence, as a chunked scan on simdgroup matrices for a
//! prefill pass and as a single-step update for a decode token.

use super::matvec::float_tag;
use super::selective_scan::lanes_per_channel;
use super::KernelInstance;

/// Threadgroup memory a threadgroup may use (Metal's limit on Apple GPUs).
const THREADGROUP_MEMORY: u64 = 32 * 1024;

/// Tokens per chunk at most: 8 simdgroups of 8 rows.
const MAX_CHUNK: u64 = 64;

/// A Mamba-2 mixer's scan. The conv output row holds x (`heads·head_dim`
/// columns), then B, then C (`groups·d_state` each); dt rows are a column
/// slice `dt_stride` floats apart.
#[derive(Clone, Debug, PartialEq)]
pub struct SsdShape {
    pub heads: u64,
    pub head_dim: u64,
    pub d_state: u64,
    pub groups: u64,
    /// The config's chunk size.
    pub chunk: u64,
    pub dt_stride: u64,
    /// dt is clamped to [min, max] after softplus; max is infinite for none.
    pub dt_limit: (f64, f64),
}

impl SsdShape {
    fn check(&self) {
        assert!(
            self.heads > 0 && self.head_dim > 0 && self.d_state > 0 && self.chunk > 0,
            "ssd: empty shape {self:?}"
        );
        assert!(
            self.groups > 0 && self.heads.is_multiple_of(self.groups),
            "ssd: {} heads do not split into {} groups",
            self.heads,
            self.groups
        );
        assert!(
            self.dt_stride >= self.heads,
            "ssd: dt rows of {} hold fewer than {} heads",
            self.dt_stride,
            self.heads
        );
    }

    fn xbc_stride(&self) -> u64 {
        self.heads * self.head_dim + 2 * self.groups * self.d_state
    }

    fn params(&self, stage: &str) -> serde_json::Map<String, serde_json::Value> {
        let (min, max) = self.dt_limit;
        let serde_json::Value::Object(params) = serde_json::json!({
            "stage": stage,
            "heads": self.heads,
            "head_dim": self.head_dim,
            "d_state": self.d_state,
            "groups": self.groups,
            "xbc_stride": self.xbc_stride(),
            "b_col": self.heads * self.head_dim,
            "c_col": self.heads * self.head_dim + self.groups * self.d_state,
            "dt_stride": self.dt_stride,
            "dt_min": min,
            "dt_max": max.is_finite().then_some(max),
        }) else {
            unreachable!("an object literal")
        };
        params
    }

    fn name(&self, stage: &str) -> String {
        let mut name = format!(
            "ssd_{stage}_{}x{}x{}_g{}_dtstride{}",
            self.heads, self.head_dim, self.d_state, self.groups, self.dt_stride
        );
        let (min, max) = self.dt_limit;
        if min > 0.0 || max.is_finite() {
            name += &format!("_dt{}to{}", float_tag(min as f32), float_tag(max as f32));
        }
        name
    }
}

/// The single-step update. Buffers: 0 x|B|C of the token, 1 dt (raw, before
/// softplus), 2 y `[heads·head_dim]`, 3 A `float[heads]`, 4 D `float[heads]`,
/// 5 dt bias `float[heads]`, 6 state `float[heads, head_dim, d_state]`.
/// Grid (heads, channel blocks); `lanes` lanes share a channel.
pub fn ssd_decode(shape: &SsdShape) -> KernelInstance {
    shape.check();
    let lanes = lanes_per_channel(shape.d_state);
    // Up to 4 simdgroups of channels, fewer for a small head.
    let threads = (shape.head_dim * lanes).next_multiple_of(32).min(128);
    let channels = threads / lanes;
    let mut params = shape.params("decode");
    params.insert("lanes".into(), lanes.into());
    params.insert("per_lane".into(), shape.d_state.div_ceil(lanes).into());
    params.insert("threads".into(), threads.into());
    KernelInstance {
        family: "ssd",
        name: shape.name("decode"),
        params: serde_json::Value::Object(params),
        threads: [threads as u32, 1, 1],
        grid: [
            shape.heads.to_string(),
            shape.head_dim.div_ceil(channels).to_string(),
            "1".into(),
        ],
    }
}

/// Threadgroup bytes of the prefill tiles for chunks of `chunk` tokens and
/// `d_state` states (both padded to 8): C and B `[chunk, d_state]`, the mask
/// `[chunk, chunk]`, x and y `[chunk, 8]`, the state `[d_state, 8]`, dt and
/// the decays `[chunk]`, as the template lays them out.
pub fn prefill_tile_bytes(chunk: u64, d_state: u64) -> u64 {
    let (q, s) = (chunk.next_multiple_of(8), d_state.next_multiple_of(8));
    let floats = 2 * q * s + q * q + 2 * q * 8 + s * 8 + 2 * q;
    (floats / 4 + 1) * 16
}

/// Tokens per chunk of the prefill scan: the config's chunk size, capped at
/// 64 and lowered until the tiles fit threadgroup memory. The recurrence is
/// exact for any chunk; only the order of the sums changes.
pub fn prefill_chunk(config_chunk: u64, d_state: u64) -> Option<u64> {
    (1..=config_chunk.min(MAX_CHUNK))
        .rev()
        .find(|&q| prefill_tile_bytes(q, d_state) <= THREADGROUP_MEMORY)
}

/// The chunked scan over a pass. Buffers as [`ssd_decode`], x|B|C and dt for
/// every token of the pass, plus 7 step. Grid (heads, ⌈head_dim / 8⌉).
///
/// # Panics
/// When even one-token chunks of `d_state` states do not fit threadgroup
/// memory (d_state above about 1000).
pub fn ssd_prefill(shape: &SsdShape) -> KernelInstance {
    shape.check();
    let chunk = prefill_chunk(shape.chunk, shape.d_state).unwrap_or_else(|| {
        panic!(
            "ssd: {} states do not fit threadgroup memory",
            shape.d_state
        )
    });
    let simdgroups = chunk.div_ceil(8);
    let mut params = shape.params("prefill");
    params.insert("chunk".into(), chunk.into());
    KernelInstance {
        family: "ssd",
        name: format!("{}_chunk{chunk}", shape.name("prefill")),
        params: serde_json::Value::Object(params),
        threads: [32 * simdgroups as u32, 1, 1],
        grid: [
            shape.heads.to_string(),
            shape.head_dim.div_ceil(8).to_string(),
            "1".into(),
        ],
    }
}

/// Bytes of one layer's SSM state.
pub fn state_bytes(heads: u64, head_dim: u64, d_state: u64) -> u64 {
    heads * head_dim * d_state * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_shrink_to_fit_threadgroup_memory() {
        assert_eq!(prefill_chunk(256, 16), Some(64));
        assert_eq!(prefill_chunk(4, 16), Some(4));
        let q = prefill_chunk(256, 128).unwrap();
        assert!(prefill_tile_bytes(q, 128) <= THREADGROUP_MEMORY);
        assert!(prefill_tile_bytes(q + 1, 128) > THREADGROUP_MEMORY);
        assert_eq!(prefill_chunk(256, 4096), None);
    }
}
