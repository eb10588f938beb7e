//! Runtime cost targets of issue 3 item 8, measured on one worker. Run with
//! `cargo test -p msl-emu --release perf -- --ignored --nocapture`.

use crate::*;

fn pipeline(src: &str, name: &str) -> Pipeline {
    let l = Library::from_source(src, &CompileOptions::default()).unwrap();
    l.pipeline(name, &FunctionConstants::default()).unwrap()
}

/// CPU time of the calling thread: with one worker the dispatch runs on it, and
/// unlike wall time this does not count time other processes held the core.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Best of `reps` runs, in CPU seconds of this thread.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = thread_cpu_seconds();
            f();
            thread_cpu_seconds() - t
        })
        .fold(f64::INFINITY, f64::min)
}

const SYNC_KERNELS: &str = "kernel void launch(device float* o [[buffer(0)]], constant uint& n [[buffer(1)]], uint i [[thread_position_in_grid]]) {\n if (n == 12345u) threadgroup_barrier(mem_flags::mem_none);\n o[i] = 1.0f;\n}\nkernel void syncs(device float* o [[buffer(0)]], constant uint& n [[buffer(1)]], uint i [[thread_position_in_grid]]) {\n float s = 0.0f;\n for (uint k = 0; k < n; k++) { s += simd_sum(float(k)); threadgroup_barrier(mem_flags::mem_threadgroup); }\n o[i] = s;\n}\n";

#[test]
#[ignore]
fn perf_fiber_launch_and_sync_point_costs() {
    set_max_workers(1);
    let launch = pipeline(SYNC_KERNELS, "launch");
    let syncs = pipeline(SYNC_KERNELS, "syncs");
    assert!(launch.uses_sync() && syncs.uses_sync());
    let tptg: u32 = std::env::var("TPTG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let groups = 262144 / tptg;
    let o = Buffer::new((groups * tptg) as usize * 4);
    let n = 0u32.to_le_bytes();
    let run = |p: &Pipeline, n: &[u8]| {
        let b = [
            Binding::Buffer {
                index: 0,
                buffer: &o,
                offset: 0,
            },
            Binding::Bytes { index: 1, data: n },
        ];
        dispatch_threadgroups(p, groups.into(), tptg.into(), &b).unwrap();
    };
    let threads = (groups * tptg) as f64;
    let t_launch = best(5, || run(&launch, &n)) / threads;
    let k = 16u32;
    let nk = k.to_le_bytes();
    let t_sync = best(5, || run(&syncs, &nk)) / threads;
    let per_sync = (t_sync - t_launch) / (2 * k) as f64;
    println!(
        "fiber launch {:.1} ns/thread, sync point {:.1} ns/lane",
        t_launch * 1e9,
        per_sync * 1e9
    );
    assert!(t_launch <= 30e-9, "fiber launch {:.1} ns", t_launch * 1e9);
    assert!(per_sync <= 70e-9, "sync point {:.1} ns", per_sync * 1e9);
}

/// A simd_sum-based Q8_0 matrix-vector product: each simdgroup computes 4 rows,
/// each lane takes 8 quants of every 4th block.
const Q8_MATVEC: &str = "struct block_q8_0 { half d; char qs[32]; };\n#define ROWS 4\nkernel void mv(device const block_q8_0* w [[buffer(0)]], device const float* x [[buffer(1)]], device float* y [[buffer(2)]], constant uint& ncols [[buffer(3)]], uint g [[threadgroup_position_in_grid]], uint sg [[simdgroup_index_in_threadgroup]], uint lane [[thread_index_in_simdgroup]]) {\n const uint nb = ncols / 32;\n const uint row0 = (g * 2 + sg) * ROWS;\n const uint ix = lane / 4, il = (lane % 4) * 8;\n float acc[ROWS] = {0, 0, 0, 0};\n for (uint ib = ix; ib < nb; ib += 8) {\n  float4 xa = *(device const float4*)(x + ib * 32 + il);\n  float4 xb = *(device const float4*)(x + ib * 32 + il + 4);\n  for (uint r = 0; r < ROWS; r++) {\n   device const block_q8_0& b = w[(row0 + r) * nb + ib];\n   float s = 0.0f;\n   for (uint j = 0; j < 4; j++) s += float(b.qs[il + j]) * xa[j] + float(b.qs[il + 4 + j]) * xb[j];\n   acc[r] += s * float(b.d);\n  }\n }\n for (uint r = 0; r < ROWS; r++) {\n  float t = simd_sum(acc[r]);\n  if (lane == 0) y[row0 + r] = t;\n }\n}\n";

#[test]
#[ignore]
fn perf_q8_0_matvec_lm_head() {
    set_max_workers(1);
    let (rows, cols) = (49152usize, 576usize);
    let nb = cols / 32;
    let mut w = vec![0u8; rows * nb * 34];
    let mut seed = 1u32;
    let mut rnd = || {
        seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
        seed >> 8
    };
    // Scales (1 + m/4) * 2^-6 are exact in half: bits 0x2400 + (m << 8).
    let mut scales = vec![0f32; rows * nb];
    for (bi, blk) in w.chunks_mut(34).enumerate() {
        let m = (rnd() % 4) as u16;
        blk[0..2].copy_from_slice(&(0x2400u16 + (m << 8)).to_le_bytes());
        scales[bi] = (1.0 + m as f32 / 4.0) / 64.0;
        for q in &mut blk[2..] {
            *q = (rnd() % 255) as u8;
        }
    }
    let x: Vec<f32> = (0..cols)
        .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
        .collect();
    let (bw, bx, by) = (
        Buffer::from_slice(&w),
        Buffer::from_slice(&x),
        Buffer::new(rows * 4),
    );
    let p = pipeline(Q8_MATVEC, "mv");
    let ncols = (cols as u32).to_le_bytes();
    let b = [
        Binding::Buffer {
            index: 0,
            buffer: &bw,
            offset: 0,
        },
        Binding::Buffer {
            index: 1,
            buffer: &bx,
            offset: 0,
        },
        Binding::Buffer {
            index: 2,
            buffer: &by,
            offset: 0,
        },
        Binding::Bytes {
            index: 3,
            data: &ncols,
        },
    ];
    let groups = (rows / 8) as u32;
    let reps = std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let t = best(reps, || {
        dispatch_threadgroups(&p, groups.into(), 64.into(), &b).unwrap();
    });
    println!("Q8_0 matvec {rows}x{cols}: {:.1} ms on one worker", t * 1e3);
    let y = by.read::<f32>();
    for r in (0..rows).step_by(997) {
        let mut want = 0f64;
        for ib in 0..nb {
            let blk = &w[(r * nb + ib) * 34..];
            for j in 0..32 {
                want +=
                    scales[r * nb + ib] as f64 * (blk[2 + j] as i8) as f64 * x[ib * 32 + j] as f64;
            }
        }
        assert!(
            (y[r] as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
            "row {r}: {} vs {want}",
            y[r]
        );
    }
    assert!(t <= 0.060, "Q8_0 matvec took {:.1} ms", t * 1e3);
}

#[test]
#[ignore]
fn perf_plain_dispatch_per_thread() {
    set_max_workers(1);
    let p = pipeline("kernel void k(device float* o [[buffer(0)]], uint i [[thread_position_in_grid]]) { o[i] = 1.0f; }\n", "k");
    let o = Buffer::new(1024 * 256 * 4);
    let t = best(5, || {
        dispatch_threadgroups(
            &p,
            1024.into(),
            256.into(),
            &[Binding::Buffer {
                index: 0,
                buffer: &o,
                offset: 0,
            }],
        )
        .unwrap();
    });
    println!("plain call {:.1} ns/thread", t / (1024.0 * 256.0) * 1e9);
}
