//! Metal's limits, enforced so a kernel the emulator runs is one a real GPU
//! accepts: threadgroup memory (declared + bound) within 32 KiB, threads
//! within the kernel's declared `max_total_threads_per_threadgroup`, buffer
//! offsets aligned to the bound type, setBytes within 4 KiB; each violation
//! is an error naming the kernel and the limit.

mod common;

use common::*;
use msl_emu::{dispatch_threadgroups, Binding, Buffer, CompileOptions, FunctionConstants, Library};

const SOURCE: &str = r#"
#include <metal_stdlib>
using namespace metal;

[[max_total_threads_per_threadgroup(64)]]
kernel void capped(device float *out [[buffer(0)]], uint i [[thread_position_in_grid]]) {
    out[i] = 1.0f;
}

kernel void vectors(device const float4 *in [[buffer(0)]],
                    device float4 *out [[buffer(1)]],
                    uint i [[thread_position_in_grid]]) {
    out[i] = in[i] * 2.0f;
}

kernel void staged(device float *out [[buffer(0)]],
                   threadgroup float *bound [[threadgroup(0)]],
                   uint i [[thread_index_in_threadgroup]]) {
    threadgroup float declared[4096];
    declared[i] = 1.0f;
    bound[i] = 2.0f;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    out[i] = declared[i] + bound[i];
}

template <typename T, uint N>
kernel void tiles(device T *out [[buffer(0)]], uint i [[thread_index_in_threadgroup]]) {
    threadgroup T tile[N];
    threadgroup uchar flag;
    tile[i] = T(i);
    flag = 1;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    out[i] = tile[i] + T(flag);
}
template [[host_name("tiles_f32_64")]] kernel void tiles<float, 64>(device float*, uint);
template [[host_name("tiles_f16_100")]] kernel void tiles<half, 100>(device half*, uint);
"#;

fn library() -> Library {
    Library::from_source(SOURCE, &CompileOptions::default()).unwrap()
}

fn error(result: Result<msl_emu::DispatchStats, msl_emu::Error>) -> String {
    let e = result
        .expect_err("the dispatch should be refused")
        .to_string();
    assert!(!e.contains('\n'), "{e}");
    e
}

#[test]
fn static_threadgroup_memory_and_declared_thread_limits_are_read_from_the_kernels() {
    let lib = library();
    let pipe = |name: &str| lib.pipeline(name, &FunctionConstants::default()).unwrap();
    assert_eq!(pipe("staged").static_threadgroup_memory(), 4096 * 4);
    // 64 floats then one byte; 100 halves then one byte.
    assert_eq!(pipe("tiles_f32_64").static_threadgroup_memory(), 257);
    assert_eq!(pipe("tiles_f16_100").static_threadgroup_memory(), 201);
    assert_eq!(pipe("capped").max_total_threads_per_threadgroup(), 64);
    assert_eq!(pipe("vectors").max_total_threads_per_threadgroup(), 1024);
    assert_eq!(pipe("vectors").static_threadgroup_memory(), 0);
}

#[test]
fn threads_over_the_declared_maximum_are_refused() {
    let lib = library();
    let capped = lib
        .pipeline("capped", &FunctionConstants::default())
        .unwrap();
    let out = Buffer::new(128 * 4);
    dispatch_threadgroups(&capped, 2u32.into(), 64u32.into(), &[buf(0, &out)]).unwrap();
    let e = error(dispatch_threadgroups(
        &capped,
        1u32.into(),
        128u32.into(),
        &[buf(0, &out)],
    ));
    assert!(
        e.contains("'capped'") && e.contains("max_total_threads_per_threadgroup(64)"),
        "{e}"
    );
}

#[test]
fn declared_and_bound_threadgroup_memory_share_the_32_kib() {
    let lib = library();
    let staged = lib
        .pipeline("staged", &FunctionConstants::default())
        .unwrap();
    let out = Buffer::new(32 * 4);
    let run = |bound: usize| {
        dispatch_threadgroups(
            &staged,
            1u32.into(),
            32u32.into(),
            &[
                buf(0, &out),
                Binding::Threadgroup {
                    index: 0,
                    len: bound,
                },
            ],
        )
    };
    // 16 KiB declared + 16 KiB bound is exactly Metal's limit.
    run(16384).unwrap();
    assert_eq!(out.read::<f32>(), vec![3.0; 32]);
    let e = error(run(16384 + 16));
    assert!(
        e.contains("'staged'") && e.contains("16384 declared + 16400 bound"),
        "{e}"
    );
    assert!(e.contains("maxThreadgroupMemoryLength"), "{e}");
}

#[test]
fn buffer_offsets_must_be_aligned_to_the_bound_type() {
    let lib = library();
    let vectors = lib
        .pipeline("vectors", &FunctionConstants::default())
        .unwrap();
    let (a, b) = (Buffer::new(256), Buffer::new(256));
    let at = |offset: usize| {
        dispatch_threadgroups(
            &vectors,
            1u32.into(),
            4u32.into(),
            &[
                Binding::Buffer {
                    index: 0,
                    buffer: &a,
                    offset,
                },
                buf(1, &b),
            ],
        )
    };
    at(16).unwrap();
    at(48).unwrap();
    let e = error(at(8));
    assert!(
        e.contains("'vectors'") && e.contains("offset 8") && e.contains("16-byte alignment"),
        "{e}"
    );
}

#[test]
fn set_bytes_over_4_kib_is_refused() {
    let lib = load("matvec_f32.metal");
    let pipe = lib
        .pipeline("matvec_f32", &FunctionConstants::default())
        .unwrap();
    let (w, x, y) = (Buffer::new(64 * 4), Buffer::new(16), Buffer::new(16));
    let big = vec![0u8; 4097];
    let e = error(dispatch_threadgroups(
        &pipe,
        1u32.into(),
        32u32.into(),
        &[buf(0, &w), buf(1, &x), buf(2, &y), bytes(3, &big)],
    ));
    assert!(
        e.contains("'matvec_f32'") && e.contains("4097 bytes") && e.contains("4096"),
        "{e}"
    );
}

#[test]
fn a_kernel_over_the_limits_does_not_compile_and_names_its_line() {
    let over = "#include <metal_stdlib>\nusing namespace metal;\n\
                kernel void big(device float *o [[buffer(0)]], uint i [[thread_index_in_threadgroup]]) {\n\
                threadgroup float a[8193];\n a[i] = 1.0f; o[i] = a[i];\n}\n";
    let e = Library::from_source(over, &CompileOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(":3:") && e.contains("kernel 'big'") && e.contains("32768 bytes"),
        "{e}"
    );
    let threads = "#include <metal_stdlib>\nusing namespace metal;\n\
                   [[max_total_threads_per_threadgroup(2048)]] kernel void wide(device float *o [[buffer(0)]]) {\n\
                   o[0] = 1.0f;\n}\n";
    let e = Library::from_source(threads, &CompileOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("kernel 'wide'") && e.contains("1 to 1024"),
        "{e}"
    );
}
