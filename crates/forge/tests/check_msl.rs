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

/// A kernel whose threadgroup variables take `bytes` bytes (two arrays), on line 5.
fn threadgroup_kernel(bytes: usize) -> String {
    format!(
        "#include <metal_stdlib>
using namespace metal;

kernel void big(device float *out [[buffer(0)]], uint i [[thread_index_in_threadgroup]])
{{
    threadgroup float a[{}];
    threadgroup float b[{}];
    a[i] = 1.0f;
    b[i] = 2.0f;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    out[i] = a[i] + b[i];
}}
",
        bytes / 8,
        bytes / 8
    )
}

#[test]
fn threadgroup_memory_over_32_kib_fails_at_the_kernel_and_32_kib_passes() {
    let dir = tempfile::tempdir().unwrap();
    let exact = dir.path().join("exact.metal");
    let over = dir.path().join("over.metal");
    std::fs::write(&exact, threadgroup_kernel(32 * 1024)).unwrap();
    std::fs::write(&over, threadgroup_kernel(33 * 1024)).unwrap();

    let (code, out, err) = forge(&["check-msl", exact.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("big: 32768 bytes of threadgroup memory declared, at most 1024 threads"),
        "{out}"
    );
    let (code, _, err) = forge(&["check-msl", over.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("over.metal:5"),
        "diagnostic at the kernel's body: {err}"
    );
    assert!(err.contains("32768 bytes of threadgroup memory"), "{err}");
}

#[test]
fn a_threadgroup_variable_outside_a_kernel_is_refused_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("helper.metal");
    std::fs::write(
        &file,
        "#include <metal_stdlib>
using namespace metal;

float helper(uint i) {
    threadgroup float scratch[32];
    scratch[i] = 1.0f;
    return scratch[i];
}

kernel void k(device float *out [[buffer(0)]], uint i [[thread_index_in_threadgroup]]) {
    out[i] = helper(i);
}
",
    )
    .unwrap();
    let (code, _, err) = forge(&["check-msl", file.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("helper.metal:5") && err.contains("only in kernels"),
        "{err}"
    );
}

/// A bare file name (no directory) resolves its includes from the working
/// directory, as `./good.metal` does.
#[test]
fn a_bare_file_name_is_checked_from_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.metal"), GOOD).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["check-msl", "good.metal"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
}
