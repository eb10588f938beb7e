//! The `selective_scan` kernel family (templates/metal/selective_scan.metal.j2):
//! Mamba-1's recurrence with the dt projection, softplus, D skip and SiLU(z)
//! gate fused, for a prefill pass or one decode token; optionally with
//! Jamba's RMSNorms over dt, B and C.

use super::matvec::float_tag;
use super::KernelInstance;

const SIMDGROUPS: u64 = 4;

/// Lanes sharing a channel for `d_state` states: the smallest power of two
/// covering them, at most 32, so consecutive lanes read consecutive states
/// and a simdgroup's loads of the `[channels, d_state]` state are contiguous.
pub fn lanes_per_channel(d_state: u64) -> u64 {
    d_state.next_power_of_two().min(32)
}

/// The scan over `channels` channels of `d_state` states with a dt
/// projection of rank `dt_rank`; z rows are `z_stride` floats apart.
/// Buffers: 0 x `[n, channels]`, 1 dt_low|B|C `[n, dt_rank + 2·d_state]`,
/// 2 z `[n, z_stride]`, 3 out `[n, channels]`, 4 dt weight `float[channels,
/// dt_rank]`, 5 dt bias `float[channels]`, 6 A `float[channels, d_state]`,
/// 8 D `float[channels]`, 9 state `float[channels, d_state]`, 7 step.
///
/// # Panics
/// When a dimension is 0 or z rows are narrower than the channels.
pub fn selective_scan(channels: u64, d_state: u64, dt_rank: u64, z_stride: u64) -> KernelInstance {
    scan(channels, d_state, dt_rank, z_stride, None)
}

/// [`selective_scan`] with dt_low, B and C each RMS-normalised (epsilon
/// `eps`) before they are used, as Jamba's Mamba does; the norm weights are
/// bound at 10 (dt_low, `float[dt_rank]`), 11 (B) and 12 (C, `float[d_state]`).
///
/// # Panics
/// As [`selective_scan`].
pub fn selective_scan_normed(
    channels: u64,
    d_state: u64,
    dt_rank: u64,
    z_stride: u64,
    eps: f32,
) -> KernelInstance {
    scan(channels, d_state, dt_rank, z_stride, Some(eps))
}

fn scan(
    channels: u64,
    d_state: u64,
    dt_rank: u64,
    z_stride: u64,
    norm_eps: Option<f32>,
) -> KernelInstance {
    assert!(
        channels > 0 && d_state > 0 && dt_rank > 0,
        "selective_scan: empty shape"
    );
    assert!(
        z_stride >= channels,
        "selective_scan: z rows of {z_stride} hold fewer than {channels} channels"
    );
    let lanes = lanes_per_channel(d_state);
    let per_group = SIMDGROUPS * (32 / lanes);
    let normed = match norm_eps {
        Some(eps) => format!("_normed_eps{}", float_tag(eps)),
        None => String::new(),
    };
    let mut params = serde_json::json!({
        "channels": channels,
        "d_state": d_state,
        "dt_rank": dt_rank,
        "z_stride": z_stride,
        "lanes": lanes,
        "per_lane": d_state.div_ceil(lanes),
        "simdgroups": SIMDGROUPS,
    });
    if let Some(eps) = norm_eps {
        params["norm_eps"] = eps.into();
    }
    KernelInstance {
        family: "selective_scan",
        name: format!(
            "selective_scan_{channels}x{d_state}_rank{dt_rank}_zstride{z_stride}{normed}"
        ),
        params,
        threads: [32 * SIMDGROUPS as u32, 1, 1],
        grid: [
            channels.div_ceil(per_group).to_string(),
            "1".into(),
            "1".into(),
        ],
    }
}
