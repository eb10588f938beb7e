//! Emulator throughput: ns per fiber launch, ns per sync point per lane, and the
//! time of the SmolLM2 LM-head Q8_0 matvec (49152 x 576) on one worker, with one
//! simd_sum per row and with the rows reduced together in one float4 simd_sum.
//! Run with `cargo bench -p msl-emu --bench emu_throughput`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use msl_emu::{
    dispatch_threadgroups, Binding, Buffer, CompileOptions, FunctionConstants, Library, Pipeline,
    Size3,
};

/// Targets from forge issue 3.
const FIBER_LAUNCH_TARGET_NS: f64 = 30.0;
const SYNC_POINT_TARGET_NS: f64 = 70.0;
const LM_HEAD_TARGET_MS: f64 = 60.0;

fn kernel(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("kernels")
        .join(name)
}

fn compile(name: &str, options: &CompileOptions) -> Library {
    Library::from_file(&kernel(name), options).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// CPU time of the calling thread. With one worker the emulator runs the whole
/// dispatch on the calling thread, so this excludes time other processes held the
/// core (the build machines are shared), unlike wall time.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Best (thread CPU, wall) time of `runs` calls, after one warm-up call.
fn best_of(runs: usize, mut f: impl FnMut()) -> Timing {
    f();
    let mut best = Timing {
        cpu: Duration::MAX,
        wall: Duration::MAX,
    };
    for _ in 0..runs {
        let (cpu, wall) = (thread_cpu_time(), Instant::now());
        f();
        best.cpu = best.cpu.min(thread_cpu_time() - cpu);
        best.wall = best.wall.min(wall.elapsed());
    }
    best
}

#[derive(Clone, Copy)]
struct Timing {
    cpu: Duration,
    wall: Duration,
}

fn time_barriers(pipe: &Pipeline, groups: u32, threads: u32, barriers: u32) -> Timing {
    let out = Buffer::new((groups * threads) as usize * 4);
    let count = barriers.to_le_bytes();
    best_of(5, || {
        let stats = dispatch_threadgroups(
            pipe,
            groups.into(),
            threads.into(),
            &[
                Binding::Buffer {
                    index: 0,
                    buffer: &out,
                    offset: 0,
                },
                Binding::Bytes {
                    index: 1,
                    data: &count,
                },
            ],
        )
        .unwrap();
        assert_eq!(stats.threads, (groups * threads) as u64);
    })
}

fn verdict(value: f64, target: f64) -> &'static str {
    if value <= target {
        "ok"
    } else {
        "OVER TARGET"
    }
}

fn main() {
    // One worker for every figure, so they are per-core costs.
    msl_emu::set_max_workers(1);
    assert_eq!(msl_emu::max_workers(), 1);

    let fibers = compile("bench_fibers.metal", &CompileOptions::default());
    let pipe = fibers
        .pipeline("fiber_barriers", &FunctionConstants::default())
        .unwrap();
    let (groups, threads) = (512u32, 256u32);
    let lanes = (groups * threads) as f64;
    let barriers = 16u32;
    let launch = time_barriers(&pipe, groups, threads, 0);
    let synced = time_barriers(&pipe, groups, threads, barriers);
    let per_lane = |t: Duration| t.as_nanos() as f64 / lanes;
    let launch_ns = per_lane(launch.cpu);
    let sync_ns = (per_lane(synced.cpu) - launch_ns) / barriers as f64;
    let sync_wall_ns = (per_lane(synced.wall) - per_lane(launch.wall)) / barriers as f64;
    println!("msl-emu on one worker; thread CPU time (wall time in brackets), best of 5");
    println!(
        "fiber launch:          {launch_ns:7.1} ns per thread [{:.1}]  target <= {FIBER_LAUNCH_TARGET_NS} ns: {}  ({groups} x {threads} threads, no barrier executed)",
        per_lane(launch.wall),
        verdict(launch_ns, FIBER_LAUNCH_TARGET_NS)
    );
    println!(
        "sync point:            {sync_ns:7.1} ns per lane   [{sync_wall_ns:.1}]  target <= {SYNC_POINT_TARGET_NS} ns: {}  ({barriers} threadgroup barriers per thread)",
        verdict(sync_ns, SYNC_POINT_TARGET_NS)
    );

    let (rows, cols) = (49152usize, 576usize);
    let options = CompileOptions {
        defines: vec![
            ("Q8_ROWS".into(), rows.to_string()),
            ("Q8_COLS".into(), cols.to_string()),
        ],
        ..CompileOptions::default()
    };
    let q8 = compile("matvec_q8_0.metal", &options);
    // Deterministic weights: the matvec's cost does not depend on the values, but
    // every block gets a real scale and spread of quants.
    let blocks = rows * cols / 32;
    let mut weights = Vec::with_capacity(blocks * 34);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..blocks {
        weights.extend_from_slice(&0x2c00u16.to_le_bytes()); // d = 0.0625 in f16
        for _ in 0..32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            weights.push((state >> 56) as u8);
        }
    }
    let x: Vec<f32> = (0..cols).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
    // One simd_sum per row (the target), then the four rows in one simd_sum of a float4.
    for (kernel, label) in [
        ("matvec_q8_0", "Q8_0 matvec 49152x576:"),
        (
            "matvec_q8_0_rows_reduced_together",
            "  rows in one float4 sum:",
        ),
    ] {
        let pipe = q8.pipeline(kernel, &FunctionConstants::default()).unwrap();
        let lm_head = time_q8_0(&pipe, &weights, &x, rows);
        let ms = lm_head.cpu.as_secs_f64() * 1e3;
        println!(
            "{label:<24}{ms:6.1} ms           [{:.1}]  target <= {LM_HEAD_TARGET_MS} ms: {}  ({:.2} GB/s of weights, {kernel})",
            lm_head.wall.as_secs_f64() * 1e3,
            verdict(ms, LM_HEAD_TARGET_MS),
            weights.len() as f64 / lm_head.cpu.as_secs_f64() / 1e9
        );
    }
}

/// Best time of the Q8_0 matvec `pipe` on `rows` rows, after checking a few rows against f64.
fn time_q8_0(pipe: &Pipeline, weights: &[u8], x: &[f32], rows: usize) -> Timing {
    let cols = x.len();
    let wb = Buffer::from_slice(weights);
    let xb = Buffer::from_slice(x);
    let yb = Buffer::new(rows * 4);
    let grid = Size3::new((rows / 8) as u32, 1, 1);
    let lm_head = best_of(5, || {
        dispatch_threadgroups(
            pipe,
            grid,
            64u32.into(),
            &[
                Binding::Buffer {
                    index: 0,
                    buffer: &wb,
                    offset: 0,
                },
                Binding::Buffer {
                    index: 1,
                    buffer: &xb,
                    offset: 0,
                },
                Binding::Buffer {
                    index: 2,
                    buffer: &yb,
                    offset: 0,
                },
            ],
        )
        .unwrap();
    });
    // The timed kernel must also be right: check a few rows against f64.
    let y = yb.read::<f32>();
    for r in [0, rows / 2, rows - 1] {
        let (mut want, mut mag) = (0.0f64, 0.0f64);
        for c in 0..cols {
            let blk = &weights[(r * cols + c) / 32 * 34..][..34];
            let t = 0.0625 * (blk[2 + c % 32] as i8) as f64 * x[c] as f64;
            want += t;
            mag += t.abs();
        }
        // f32 summation bound: (cols + blocks) roundings of at most sum|t| * 2^-24.
        let tol = (cols + cols / 32) as f64 * mag / (1u64 << 24) as f64;
        assert!(
            (y[r] as f64 - want).abs() <= tol,
            "row {r}: got {} want {want}",
            y[r]
        );
    }
    lm_head
}
