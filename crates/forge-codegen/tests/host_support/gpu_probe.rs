//! TEST PROBE (tests/host_project.rs): the `src/main.rs` of a throwaway crate
//! made of the generated Cargo.toml, `src/gpu/` and the vendored msl-emu. It
//! drives the device layer with small kernels, checks every result against a
//! plain Rust computation, and prints `PASS <check>` lines for the test.

mod gpu;

use gpu::{Arg, Gpu, GpuOptions, Stats};
use std::sync::Arc;

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

fn check(name: &str, ok: bool, detail: String) {
    if ok {
        println!("PASS {name}");
    } else {
        println!("FAIL {name}: {detail}");
        std::process::exit(1);
    }
}

fn main() -> anyhow::Result<()> {
    let gpu = Gpu::new(SOURCE, GpuOptions { count_traffic: true })?;
    check("backend", gpu.backend() == "msl-emu", gpu.backend().to_string());
    let mirrored = gpu.pipeline("mirrored_affine")?;
    let add_one = gpu.pipeline("add_one")?;
    let mix = gpu.pipeline("mix_words")?;

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
        &[(0, Arg::Buffer(&yb, 0)), (1, Arg::Buffer(&zb, 0)), (2, Arg::Bytes(&columns))],
    );
    batch.finish()?;
    let want_y: Vec<f32> = (0..n)
        .map(|i| {
            let (group, lane) = (i / size, i % size);
            1.5 * x[group * size + size - 1 - lane] - 2.0
        })
        .collect();
    let y = yb.read_f32(0, n);
    check("threadgroup_barrier", y == want_y, format!("{:?} vs {:?}", &y[..4], &want_y[..4]));
    let z = zb.read_f32(0, n);
    let want_z: Vec<f32> = want_y.iter().map(|v| v + 1.0).collect();
    check("batch_order_and_2d_grid", z == want_z, format!("{:?} vs {:?}", &z[..4], &want_z[..4]));
    // Bytes arguments are not device traffic: x and y read, y and z written, 4 bytes per thread each.
    let stats = gpu.take_stats();
    let want = Stats {
        dispatches: 2,
        threads: 2 * n as u64,
        bytes_read: 2 * 4 * n as u64,
        bytes_written: 2 * 4 * n as u64,
        // Each element is read once and the buffers are whole 64-byte lines.
        line_bytes_read: 2 * 4 * n as u64,
    };
    check("stats", stats == Some(want), format!("{stats:?} vs {want:?}"));
    check("stats_reset", gpu.take_stats() == Some(Stats::default()), "not reset".into());

    // Partial reads and writes at byte offsets.
    yb.write_f32(8, &[42.0, 43.0]);
    check("write_f32_offset", yb.read_f32(4, 3) == [want_y[1], 42.0, 43.0], format!("{:?}", yb.read_f32(4, 3)));
    yb.write_u32(0, &[7, 8]);
    check("write_u32", yb.read_u32(0, 2) == [7, 8], format!("{:?}", yb.read_u32(0, 2)));
    check("buffer_len", yb.len() == n * 4 && !yb.is_empty(), yb.len().to_string());

    // A file mapped into memory is read by a kernel in place, from a byte offset.
    let path = std::env::temp_dir().join(format!("gpu-probe-{}.bin", std::process::id()));
    let words: Vec<u32> = (0..8192u32).map(|i| i.wrapping_mul(0x9E37_79B9) ^ 0x5555).collect();
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    std::fs::write(&path, &bytes)?;
    let map = Arc::new(unsafe { memmap2::Mmap::map(&std::fs::File::open(&path)?)? });
    std::fs::remove_file(&path)?;
    let base = map.as_ptr() as usize;
    let weights = gpu.wrap_mmap(map)?;
    check("wrap_mmap_len", weights.len() == bytes.len(), weights.len().to_string());
    let first = 1024;
    let count = 4096;
    let out = gpu.buffer(count * 4);
    let mut batch = gpu.batch();
    batch.dispatch(
        &mix,
        [(count / 128) as u32, 1, 1],
        [128, 1, 1],
        &[(0, Arg::Buffer(&weights, first * 4)), (1, Arg::Buffer(&out, 0))],
    );
    batch.finish()?;
    let want: Vec<u32> = words[first..first + count]
        .iter()
        .map(|w| w.wrapping_mul(2654435761).wrapping_add(w >> 7))
        .collect();
    check("wrap_mmap_kernel", out.read_u32(0, count) == want, "mixed words differ".into());
    check("wrap_mmap_in_place", weights.read_u32(0, 2) == words[..2] && base % 4096 == 0, format!("{base:#x}"));

    // Errors come back from finish, name the kernel, and stop the batch.
    gpu.take_stats();
    let mut batch = gpu.batch();
    batch.dispatch(&add_one, [1, 1, 1], [8, 1, 1], &[(0, Arg::Buffer(&yb, 0))]);
    batch.dispatch(&mix, [1, 1, 1], [1, 1, 1], &[(0, Arg::Buffer(&weights, 0)), (1, Arg::Buffer(&out, 0))]);
    let error = batch.finish().map_err(|e| e.to_string());
    check(
        "missing_binding_error",
        matches!(&error, Err(e) if e.contains("add_one") && e.contains("index 1")),
        format!("{error:?}"),
    );
    check("no_dispatch_after_error", gpu.take_stats().map(|s| s.dispatches) == Some(0), "ran".into());
    let big = vec![0u8; 4097];
    let mut batch = gpu.batch();
    batch.dispatch(&add_one, [1, 1, 1], [1, 1, 1], &[(0, Arg::Buffer(&yb, 0)), (1, Arg::Buffer(&zb, 0)), (2, Arg::Bytes(&big))]);
    let error = batch.finish().map_err(|e| e.to_string());
    check("bytes_limit_error", matches!(&error, Err(e) if e.contains("4096")), format!("{error:?}"));
    check("unknown_kernel_error", gpu.pipeline("no_such_kernel").is_err(), "found".into());
    Ok(())
}
