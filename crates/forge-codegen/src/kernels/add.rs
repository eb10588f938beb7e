//! The `add` kernel family (templates/metal/add.metal.j2): elementwise sum
//! of two `[n, width]` activations.

use super::KernelInstance;

/// Threads per threadgroup; each thread adds one float4 (or one float when
/// the width is not a multiple of 4).
const THREADS: u32 = 256;

/// `out = a + b` over `[n, width]` (buffers 0 a, 1 b, 2 out, 7 step).
pub fn add(width: u64) -> KernelInstance {
    assert!(width > 0, "add: width must be positive");
    let per_row = if width.is_multiple_of(4) {
        width / 4
    } else {
        width
    };
    KernelInstance {
        family: "add",
        name: format!("add_{width}"),
        params: serde_json::json!({ "width": width }),
        threads: [THREADS, 1, 1],
        grid: [
            format!("(n * {per_row}).div_ceil({THREADS})"),
            "1".into(),
            "1".into(),
        ],
    }
}
