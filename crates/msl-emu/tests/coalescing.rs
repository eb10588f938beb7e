//! The coalescing counter of count_traffic builds: loads a simdgroup's lanes
//! make together are served in 64-byte lines, and `DispatchStats::coalescing`
//! says how much of those lines the kernel asked for.

mod common;

use common::*;
use msl_emu::{dispatch_threadgroups, Buffer, CompileOptions, FunctionConstants, Library};

const SOURCE: &str = r#"
#include <metal_stdlib>
using namespace metal;

// Lane i reads float i: a simdgroup's 32 floats fill two lines.
kernel void contiguous(device const float *x [[buffer(0)]], device float *y [[buffer(1)]],
                       uint i [[thread_position_in_grid]]) {
    y[i] = x[i];
}

// Lane i reads the first float of a 34-byte block (a Q8_0 block per lane).
kernel void strided(device const uchar *x [[buffer(0)]], device float *y [[buffer(1)]],
                    uint i [[thread_position_in_grid]]) {
    y[i] = *(device const float *)(x + 34 * i);
}

// Every lane reads the same float, then the one of its own.
kernel void broadcast(device const float *x [[buffer(0)]], device float *y [[buffer(1)]],
                      constant float &k [[buffer(2)]], uint i [[thread_position_in_grid]]) {
    y[i] = x[0] * k + x[i];
}
"#;

fn coalescing(kernel: &str, x: &Buffer, extra: &[u8]) -> msl_emu::LoadCoalescing {
    let options = CompileOptions {
        count_traffic: true,
        ..CompileOptions::default()
    };
    let lib = Library::from_source(SOURCE, &options).unwrap();
    let pipe = lib.pipeline(kernel, &FunctionConstants::default()).unwrap();
    let y = Buffer::new(64 * 4);
    let mut bindings = vec![buf(0, x), buf(1, &y)];
    if !extra.is_empty() {
        bindings.push(bytes(2, extra));
    }
    dispatch_threadgroups(&pipe, 2u32.into(), 32u32.into(), &bindings)
        .unwrap()
        .coalescing
}

#[test]
fn contiguous_loads_use_every_byte_of_their_lines() {
    let x = Buffer::from_slice(&[1.0f32; 64]);
    let c = coalescing("contiguous", &x, &[]);
    assert_eq!((c.requested_bytes, c.line_bytes), (256, 256));
    assert_eq!(c.efficiency_percent(), 100.0);
}

#[test]
fn a_block_per_lane_touches_a_line_per_two_lanes() {
    let x = Buffer::new(64 * 34 + 64);
    let c = coalescing("strided", &x, &[]);
    // 32 lanes x 4 bytes over 17 lines (34-byte stride), twice.
    assert_eq!((c.requested_bytes, c.line_bytes), (2 * 128, 2 * 17 * 64));
    assert!((c.efficiency_percent() - 100.0 * 128.0 / 1088.0).abs() < 1e-9);
}

#[test]
fn broadcasts_count_once_and_set_bytes_is_not_device_memory() {
    let x = Buffer::from_slice(&[1.0f32; 64]);
    let c = coalescing("broadcast", &x, &2.0f32.to_le_bytes());
    // Per simdgroup: x[0] (4 bytes, one line) and its 32 floats (128 bytes, two lines).
    assert_eq!(
        (c.requested_bytes, c.line_bytes),
        (2 * (4 + 128), 2 * 3 * 64)
    );
}
