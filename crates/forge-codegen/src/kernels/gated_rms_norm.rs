//! The `gated_rms_norm` kernel family (templates/metal/gated_rms_norm.metal.j2):
//! Mamba-2's grouped RMSNorm of y gated by SiLU(z).

use super::matvec::float_tag;
use super::KernelInstance;

/// Normalises every `group` columns of `[n, width]` rows of y gated by z
/// (rows `z_stride` floats apart), before (`norm_before_gate`) or after the
/// gate. Buffers: 0 y, 1 weight `float[width]`, 2 out `[n, width]`, 3 z,
/// 7 step. One threadgroup per (group, token).
pub fn gated_rms_norm(
    width: u64,
    group: u64,
    eps: f32,
    z_stride: u64,
    norm_before_gate: bool,
) -> KernelInstance {
    assert!(
        group > 0 && width.is_multiple_of(group),
        "gated_rms_norm: group {group} does not divide width {width}"
    );
    assert!(
        z_stride >= width,
        "gated_rms_norm: z rows of {z_stride} are narrower than {width}"
    );
    let threads = group.next_multiple_of(32).min(256) as u32;
    let order = if norm_before_gate {
        "_norm_then_gate"
    } else {
        ""
    };
    KernelInstance {
        family: "gated_rms_norm",
        name: format!(
            "gated_rms_norm_{width}_per{group}_zstride{z_stride}{order}_eps{}",
            float_tag(eps)
        ),
        params: serde_json::json!({
            "width": width,
            "group": group,
            "eps": eps,
            "z_stride": z_stride,
            "norm_before_gate": norm_before_gate,
            "threads": threads,
        }),
        threads: [threads, 1, 1],
        grid: [(width / group).to_string(), "n".into(), "1".into()],
    }
}
