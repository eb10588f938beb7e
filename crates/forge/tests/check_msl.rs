//! `forge check-msl`: passes correct Metal, fails an address-space mistake at its line.

mod support;

use support::forge;

const GOOD: &str = "#include <metal_stdlib>
using namespace metal;

kernel void scale(device float *out [[buffer(0)]],
                  const device float *in [[buffer(1)]],
                  constant float &factor [[buffer(2)]],
                  uint i [[thread_position_in_grid]]) {
    out[i] = in[i] * factor;
}
";

// Line 7 passes a device pointer where a threadgroup pointer is required.
const BAD: &str = "#include <metal_stdlib>
using namespace metal;

void fill(threadgroup float *dst, float v) { dst[0] = v; }

kernel void k(device float *out [[buffer(0)]], uint i [[thread_position_in_grid]]) {
    fill(out, 1.0f);
}
";

#[test]
fn correct_file_passes_and_mistake_fails_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.metal");
    let bad = dir.path().join("bad.metal");
    std::fs::write(&good, GOOD).unwrap();
    std::fs::write(&bad, BAD).unwrap();

    let (code, _, err) = forge(&["check-msl", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");

    let (code, _, err) = forge(&["check-msl", good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("bad.metal:7"),
        "diagnostic should point at bad.metal:7: {err}"
    );
    assert!(!err.contains("good.metal:"), "{err}");
    assert!(err.contains("1 of 2 Metal files failed"), "{err}");
}
