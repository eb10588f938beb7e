//! The device layer (`forge_runtime::gpu`) on msl-emu: small kernels whose
//! results are checked against plain Rust computations — threadgroup memory
//! and barriers, dependent dispatches in one batch, 2-D grids, traffic
//! counters, buffers at byte offsets, a memory-mapped file used in place,
//! and the errors a batch reports.

use std::sync::Arc;

use forge_runtime::gpu::{Arg, Gpu, GpuOptions, Stats};

const SOURCE: &str = r#"
#include <metal_stdlib>
using namespace metal;

struct Affine { float a; float b; };

// y[i] = a * x[j] + b where j mirrors i inside its threadgroup: the value
// comes from another thread through threadgroup memory, so the barrier matters.
kernel void mirrored_affine(device const float* x [[buffer(0)]],
                            device float* y [[buffer(1)]],
                            constant Affine& p [[buffer(2)]],
                            threadgroup float* shared_x [[threadgroup(0)]],
                            uint gid [[thread_position_in_grid]],
                            uint tid [[thread_position_in_threadgroup]],
                            uint size [[threads_per_threadgroup]]) {
    shared_x[tid] = x[gid];
    threadgroup_barrier(mem_flags::mem_threadgroup);
    y[gid] = p.a * shared_x[size - 1 - tid] + p.b;
}

// out[i] = in[i] + 1 over a 2-D grid of rows x columns.
kernel void add_one(device const float* in [[buffer(0)]],
                    device float* out [[buffer(1)]],
                    constant uint& columns [[buffer(2)]],
                    uint2 gid [[thread_position_in_grid]]) {
    out[gid.y * columns + gid.x] = in[gid.y * columns + gid.x] + 1.0f;
}

// Mixes every word of a read-only (mmapped) buffer.
kernel void mix_words(device const uint* words [[buffer(0)]],
                      device uint* out [[buffer(1)]],
                      uint gid [[thread_position_in_grid]]) {
    out[gid] = words[gid] * 2654435761u + (words[gid] >> 7);
}
"#;

fn gpu() -> Gpu {
    Gpu::new(
        SOURCE,
        GpuOptions {
            count_traffic: true,
        },
    )
    .unwrap()
}

#[test]
fn dependent_dispatches_barriers_and_counters() {
    let gpu = gpu();
    assert_eq!(gpu.backend(), "msl-emu");
    let mirrored = gpu.pipeline("mirrored_affine").unwrap();
    let add_one = gpu.pipeline("add_one").unwrap();

    // Two dependent dispatches in one batch: the second reads what the first wrote.
    let (groups, size) = (4usize, 64usize);
    let n = groups * size;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 17.0).collect();
    let (xb, yb, zb) = (gpu.buffer(n * 4), gpu.buffer(n * 4), gpu.buffer(n * 4));
    xb.write_f32(0, &x);
    let mut params = Vec::new();
    params.extend_from_slice(&1.5f32.to_le_bytes());
    params.extend_from_slice(&(-2.0f32).to_le_bytes());
    let columns = 16u32.to_le_bytes();
    let mut batch = gpu.batch();
    batch.dispatch(
        &mirrored,
        [groups as u32, 1, 1],
        [size as u32, 1, 1],
        &[
            (0, Arg::Buffer(&xb, 0)),
            (1, Arg::Buffer(&yb, 0)),
            (2, Arg::Bytes(&params)),
            (0, Arg::Threadgroup(size * 4)),
        ],
    );
    batch.dispatch(
        &add_one,
        [2, (n / 16 / 2) as u32, 1],
        [8, 2, 1],
        &[
            (0, Arg::Buffer(&yb, 0)),
            (1, Arg::Buffer(&zb, 0)),
            (2, Arg::Bytes(&columns)),
        ],
    );
    batch.finish().unwrap();
    let want_y: Vec<f32> = (0..n)
        .map(|i| {
            let (group, lane) = (i / size, i % size);
            1.5 * x[group * size + size - 1 - lane] - 2.0
        })
        .collect();
    assert_eq!(yb.read_f32(0, n), want_y, "threadgroup memory and barrier");
    let want_z: Vec<f32> = want_y.iter().map(|v| v + 1.0).collect();
    assert_eq!(zb.read_f32(0, n), want_z, "batch order and 2-D grid");
    // Bytes arguments are not device traffic: x and y read, y and z written, 4 bytes per thread each.
    let want = Stats {
        dispatches: 2,
        threadgroups: groups as u64 + 2 * (n / 16 / 2) as u64,
        threads: 2 * n as u64,
        bytes_read: 2 * 4 * n as u64,
        bytes_written: 2 * 4 * n as u64,
        // Each element is read once and the buffers are whole 64-byte lines.
        line_bytes_read: 2 * 4 * n as u64,
        // mirrored_affine's simdgroups read 32 consecutive floats (whole lines);
        // add_one's 8x2 groups read two half lines of 8 floats each (50%).
        load_requested_bytes: 2 * 4 * n as u64,
        load_line_bytes: 4 * n as u64 + 2 * 4 * n as u64,
        // add_one reads y, which mirrored_affine writes: one barrier between them.
        barriers: 1,
    };
    assert_eq!(gpu.take_stats(), Some(want));
    assert_eq!(
        gpu.take_stats(),
        Some(Stats::default()),
        "take_stats resets"
    );

    // Partial reads and writes at byte offsets.
    yb.write_f32(8, &[42.0, 43.0]);
    assert_eq!(yb.read_f32(4, 3), [want_y[1], 42.0, 43.0]);
    yb.write_u32(0, &[7, 8]);
    assert_eq!(yb.read_u32(0, 2), [7, 8]);
    assert!(yb.len() == n * 4 && !yb.is_empty());
}

#[test]
fn a_mapped_file_is_read_in_place_from_an_offset() {
    let gpu = gpu();
    let mix = gpu.pipeline("mix_words").unwrap();
    let path = std::env::temp_dir().join(format!("forge-runtime-mmap-{}.bin", std::process::id()));
    let words: Vec<u32> = (0..8192u32)
        .map(|i| i.wrapping_mul(0x9E37_79B9) ^ 0x5555)
        .collect();
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    std::fs::write(&path, &bytes).unwrap();
    // The test wrote the file and nothing changes it while it is mapped.
    let map =
        Arc::new(unsafe { memmap2::Mmap::map(&std::fs::File::open(&path).unwrap()).unwrap() });
    std::fs::remove_file(&path).unwrap();
    let base = map.as_ptr() as usize;
    let weights = gpu.wrap_mmap(map).unwrap();
    assert_eq!(weights.len(), bytes.len());
    let (first, count) = (1024, 4096);
    let out = gpu.buffer(count * 4);
    let mut batch = gpu.batch();
    batch.dispatch(
        &mix,
        [(count / 128) as u32, 1, 1],
        [128, 1, 1],
        &[
            (0, Arg::Buffer(&weights, first * 4)),
            (1, Arg::Buffer(&out, 0)),
        ],
    );
    batch.finish().unwrap();
    let want: Vec<u32> = words[first..first + count]
        .iter()
        .map(|w| w.wrapping_mul(2654435761).wrapping_add(w >> 7))
        .collect();
    assert_eq!(out.read_u32(0, count), want);
    // In place: the buffer's memory is the mapping itself.
    assert_eq!(weights.read_u32(0, 2), words[..2]);
    assert_eq!(base % 4096, 0);
}

#[test]
fn errors_name_the_kernel_and_stop_the_batch() {
    let gpu = gpu();
    let add_one = gpu.pipeline("add_one").unwrap();
    let mix = gpu.pipeline("mix_words").unwrap();
    let (yb, zb, out) = (gpu.buffer(64), gpu.buffer(64), gpu.buffer(64));
    let mut batch = gpu.batch();
    batch.dispatch(&add_one, [1, 1, 1], [8, 1, 1], &[(0, Arg::Buffer(&yb, 0))]);
    batch.dispatch(
        &mix,
        [1, 1, 1],
        [1, 1, 1],
        &[(0, Arg::Buffer(&zb, 0)), (1, Arg::Buffer(&out, 0))],
    );
    let error = batch.finish().unwrap_err().to_string();
    assert!(
        error.contains("add_one") && error.contains("index 1"),
        "{error}"
    );
    assert_eq!(
        gpu.take_stats().map(|s| s.dispatches),
        Some(0),
        "nothing ran after the error"
    );
    let big = vec![0u8; 4097];
    let mut batch = gpu.batch();
    batch.dispatch(
        &add_one,
        [1, 1, 1],
        [1, 1, 1],
        &[
            (0, Arg::Buffer(&yb, 0)),
            (1, Arg::Buffer(&zb, 0)),
            (2, Arg::Bytes(&big)),
        ],
    );
    let error = batch.finish().unwrap_err().to_string();
    assert!(error.contains("4096"), "{error}");
    assert!(gpu.pipeline("no_such_kernel").is_err());
    let kernels = Gpu::new("kernel void broken(", GpuOptions::default());
    assert!(kernels.is_err());
}
