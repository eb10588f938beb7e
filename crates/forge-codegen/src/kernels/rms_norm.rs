//! The `rms_norm` kernel family (templates/metal/rms_norm.metal.j2).

use super::matvec::float_tag;
use super::KernelInstance;

/// RMS-normalises every `group` columns of `[n, width]` rows with the
/// `float[group]` weight: one threadgroup per (group, token). Buffers: 0 x,
/// 1 weight, 2 out (may alias x), 7 step.
pub fn rms_norm(width: u64, group: u64, eps: f32) -> KernelInstance {
    assert!(
        group > 0 && width.is_multiple_of(group),
        "rms_norm: group {group} does not divide width {width}"
    );
    // One lane per float4 (or float), at most 256 threads, whole simdgroups.
    let lanes = if group.is_multiple_of(4) {
        group / 4
    } else {
        group
    };
    let threads = lanes.next_multiple_of(32).min(256) as u32;
    let name = if group == width {
        format!("rms_norm_{width}_eps{}", float_tag(eps))
    } else {
        format!("rms_norm_{width}_per{group}_eps{}", float_tag(eps))
    };
    KernelInstance {
        family: "rms_norm",
        name,
        params: serde_json::json!({
            "width": width,
            "group": group,
            "eps": eps,
            "threads": threads,
        }),
        threads: [threads, 1, 1],
        grid: [(width / group).to_string(), "n".into(), "1".into()],
    }
}
