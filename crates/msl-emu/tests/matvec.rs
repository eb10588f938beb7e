//! Matrix-vector kernels (f32, f16, Q8_0) against f64 references, plus the
//! dispatch counters: exact thread counts and, with `count_traffic`, that each
//! weight byte is read exactly once and each output written once.

mod common;

use common::*;
use msl_emu::{dispatch_threadgroups, Buffer, CompileOptions, DispatchStats, FunctionConstants};

/// Threads per threadgroup and rows per simdgroup, as written in the kernels.
const F32_THREADS: u32 = 64;
const F32_ROWS_PER_SIMDGROUP: usize = 4;
const F16_THREADS: u32 = 128;
const F16_ROWS_PER_SIMDGROUP: usize = 2;
const Q8_THREADS: u32 = 64;
const Q8_ROWS_PER_SIMDGROUP: usize = 4;

fn reference_matvec(w: &[f64], x: &[f32], rows: usize, cols: usize) -> (Vec<f64>, Vec<f64>) {
    // Returns y and sum|w*x| per row, the scale of the f32 rounding error.
    let mut y = vec![0.0; rows];
    let mut mag = vec![0.0; rows];
    for r in 0..rows {
        for c in 0..cols {
            let t = w[r * cols + c] * x[c] as f64;
            y[r] += t;
            mag[r] += t.abs();
        }
    }
    (y, mag)
}

fn traffic(stats: &DispatchStats, index: u32) -> (u64, u64) {
    let entry = stats
        .buffers
        .iter()
        .find(|b| b.index == index)
        .unwrap_or_else(|| {
            panic!(
                "no traffic entry for buffer {index}: {:?}",
                stats.buffers.iter().map(|b| b.index).collect::<Vec<_>>()
            )
        });
    (entry.bytes_read, entry.bytes_written)
}

/// Distinct 64-byte lines read from the binding, in bytes.
fn line_bytes(stats: &DispatchStats, index: u32) -> u64 {
    let entry = stats.buffers.iter().find(|b| b.index == index);
    entry.map_or(0, |b| b.line_bytes_read)
}

fn run_f32(
    rows: usize,
    cols: usize,
    options: &CompileOptions,
) -> (Vec<f32>, Vec<f64>, Vec<f64>, DispatchStats) {
    let mut rng = Rng::new(1);
    let w = rng.vec_f32(rows * cols, -1.0, 1.0);
    let x = rng.vec_f32(cols, -1.0, 1.0);
    let lib = load_with("matvec_f32.metal", options);
    let pipe = lib
        .pipeline("matvec_f32", &FunctionConstants::default())
        .unwrap();
    let wb = Buffer::from_slice(&w);
    let xb = Buffer::from_slice(&x);
    let yb = Buffer::new(rows * 4);
    let params = words(&[Word::U(rows as u32), Word::U(cols as u32)]);
    let rows_per_tg = F32_ROWS_PER_SIMDGROUP * (F32_THREADS as usize / 32);
    let groups = rows.div_ceil(rows_per_tg) as u32;
    let stats = dispatch_threadgroups(
        &pipe,
        groups.into(),
        F32_THREADS.into(),
        &[buf(0, &wb), buf(1, &xb), buf(2, &yb), bytes(3, &params)],
    )
    .unwrap();
    let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    let (want, mag) = reference_matvec(&w64, &x, rows, cols);
    (yb.read::<f32>(), want, mag, stats)
}

#[test]
fn matvec_f32_matches_reference() {
    // 203 rows: the last threadgroup has one simdgroup with 3 rows and one with none.
    let (rows, cols) = (203, 576);
    let (got, want, mag, stats) = run_f32(rows, cols, &CompileOptions::default());
    // Worst-case f32 summation bound: cols * u * sum|w*x| (the order of the sum differs).
    assert_within("matvec_f32", &got, &want, |i| cols as f64 * F32_U * mag[i]);
    let groups = rows.div_ceil(8) as u64;
    assert_eq!(stats.threadgroups, groups);
    assert_eq!(stats.threads, groups * F32_THREADS as u64);
}

#[test]
fn matvec_f32_reads_each_weight_once() {
    let (rows, cols) = (203, 576);
    let options = CompileOptions {
        count_traffic: true,
        ..CompileOptions::default()
    };
    let (got, want, mag, stats) = run_f32(rows, cols, &options);
    assert_within("matvec_f32 (count_traffic build)", &got, &want, |i| {
        cols as f64 * F32_U * mag[i]
    });
    assert_eq!(
        traffic(&stats, 0),
        ((rows * cols * 4) as u64, 0),
        "weights: read once, never written"
    );
    // Every simdgroup that owns at least one row reads the whole of x once.
    let live_simdgroups = rows.div_ceil(F32_ROWS_PER_SIMDGROUP) as u64;
    assert_eq!(
        traffic(&stats, 1),
        (live_simdgroups * cols as u64 * 4, 0),
        "x"
    );
    assert_eq!(
        traffic(&stats, 2),
        (0, (rows * 4) as u64),
        "y: written once, never read"
    );
    // As device-memory traffic (distinct lines), x counts once however many
    // simdgroups re-read it; the weights' lines are all distinct.
    assert_eq!(
        line_bytes(&stats, 0),
        (rows * cols * 4) as u64,
        "weight lines"
    );
    assert_eq!(line_bytes(&stats, 1), (cols * 4) as u64, "x lines");
    assert_eq!(line_bytes(&stats, 2), 0, "y is never read");
}

#[test]
fn matvec_f16_matches_reference() {
    let (rows, cols) = (130, 576);
    let mut rng = Rng::new(2);
    let w16 = to_f16(&rng.vec_f32(rows * cols, -1.0, 1.0));
    let x = rng.vec_f32(cols, -2.0, 2.0);
    let options = CompileOptions {
        count_traffic: true,
        ..CompileOptions::default()
    };
    let lib = load_with("matvec_f16.metal", &options);
    let pipe = lib
        .pipeline("matvec_f16", &FunctionConstants::default())
        .unwrap();
    let wb = Buffer::from_slice(&w16);
    let xb = Buffer::from_slice(&x);
    let yb = Buffer::new(rows * 4);
    let params = words(&[Word::U(rows as u32), Word::U(cols as u32)]);
    let rows_per_tg = F16_ROWS_PER_SIMDGROUP * (F16_THREADS as usize / 32);
    let groups = rows.div_ceil(rows_per_tg) as u32;
    let stats = dispatch_threadgroups(
        &pipe,
        groups.into(),
        F16_THREADS.into(),
        &[buf(0, &wb), buf(1, &xb), buf(2, &yb), bytes(3, &params)],
    )
    .unwrap();
    // The reference uses the f16-rounded weights, so only f32 summation error remains.
    let (want, mag) = reference_matvec(&f16_to_f64(&w16), &x, rows, cols);
    assert_within("matvec_f16", &yb.read::<f32>(), &want, |i| {
        cols as f64 * F32_U * mag[i]
    });
    assert_eq!(stats.threadgroups, groups as u64);
    assert_eq!(stats.threads, groups as u64 * F16_THREADS as u64);
    assert_eq!(
        traffic(&stats, 0),
        ((rows * cols * 2) as u64, 0),
        "f16 weights read once"
    );
    assert_eq!(traffic(&stats, 2), (0, (rows * 4) as u64), "y written once");
}

fn q8_options(rows: usize, cols: usize, count_traffic: bool) -> CompileOptions {
    CompileOptions {
        count_traffic,
        defines: vec![
            ("Q8_ROWS".to_string(), rows.to_string()),
            ("Q8_COLS".to_string(), cols.to_string()),
        ],
        ..CompileOptions::default()
    }
}

#[test]
fn matvec_q8_0_matches_reference() {
    // 576 columns = 18 blocks: the last simdgroup step covers only 2 of its 8 blocks.
    // 100 rows: the last threadgroup's second simdgroup has no rows.
    let (rows, cols) = (100, 576);
    let mut rng = Rng::new(3);
    let (packed, dequant) = quantize_q8_0(&rng.vec_f32(rows * cols, -0.5, 0.5));
    assert_eq!(packed.len(), rows * cols / QK8_0 * Q8_0_BLOCK_BYTES);
    let x = rng.vec_f32(cols, -1.0, 1.0);
    let lib = load_with("matvec_q8_0.metal", &q8_options(rows, cols, true));
    let (want, mag) = reference_matvec(&dequant, &x, rows, cols);
    // One simd_sum per row, and all four rows in one simd_sum of a float4.
    for kernel in ["matvec_q8_0", "matvec_q8_0_rows_reduced_together"] {
        let pipe = lib.pipeline(kernel, &FunctionConstants::default()).unwrap();
        let wb = Buffer::from_slice(&packed);
        let xb = Buffer::from_slice(&x);
        let yb = Buffer::new(rows * 4);
        let rows_per_tg = Q8_ROWS_PER_SIMDGROUP * (Q8_THREADS as usize / 32);
        let groups = rows.div_ceil(rows_per_tg) as u32;
        let stats = dispatch_threadgroups(
            &pipe,
            groups.into(),
            Q8_THREADS.into(),
            &[buf(0, &wb), buf(1, &xb), buf(2, &yb)],
        )
        .unwrap();
        // Dequantization d*q is exact in f32 (8-bit q times an f16 d), so the error is
        // f32 summation plus one product per block: (cols + blocks) * u * sum|w*x|.
        let bound = (cols + cols / QK8_0) as f64 * F32_U;
        assert_within(kernel, &yb.read::<f32>(), &want, |i| bound * mag[i]);
        assert_eq!(stats.threads, groups as u64 * Q8_THREADS as u64);
        // Quants are read once; the four lanes sharing a block each read its 2-byte d.
        let blocks = (rows * cols / QK8_0) as u64;
        assert_eq!(
            traffic(&stats, 0),
            (blocks * (32 + 4 * 2), 0),
            "{kernel}: Q8_0 weights"
        );
        assert_eq!(
            traffic(&stats, 2),
            (0, (rows * 4) as u64),
            "{kernel}: y written once"
        );
    }
}

#[test]
fn matvec_q8_0_lm_head_shape() {
    // The SmolLM2 LM head shape the benchmark times. Rows cycle through a pool of
    // 61 distinct quantized rows (a prime, so neighbouring rows and simdgroups
    // differ) to keep input generation cheap, and every output row is checked.
    let (rows, cols, pool) = (49152usize, 576usize, 61usize);
    let mut rng = Rng::new(4);
    let pool_rows: Vec<(Vec<u8>, Vec<f64>)> = (0..pool)
        .map(|_| quantize_q8_0(&rng.vec_f32(cols, -0.25, 0.25)))
        .collect();
    let x = rng.vec_f32(cols, -1.0, 1.0);
    let mut packed = Vec::with_capacity(rows * cols / QK8_0 * Q8_0_BLOCK_BYTES);
    for r in 0..rows {
        packed.extend_from_slice(&pool_rows[r % pool].0);
    }
    let lib = load_with("matvec_q8_0.metal", &q8_options(rows, cols, false));
    let pipe = lib
        .pipeline("matvec_q8_0", &FunctionConstants::default())
        .unwrap();
    let wb = Buffer::from_slice(&packed);
    let xb = Buffer::from_slice(&x);
    let yb = Buffer::new(rows * 4);
    let groups = (rows / 8) as u32;
    let stats = dispatch_threadgroups(
        &pipe,
        groups.into(),
        Q8_THREADS.into(),
        &[buf(0, &wb), buf(1, &xb), buf(2, &yb)],
    )
    .unwrap();
    assert_eq!(stats.threadgroups, groups as u64);
    let refs: Vec<(f64, f64)> = pool_rows
        .iter()
        .map(|(_, row)| {
            let (y, mag) = reference_matvec(row, &x, 1, cols);
            (y[0], mag[0])
        })
        .collect();
    let want: Vec<f64> = (0..rows).map(|r| refs[r % pool].0).collect();
    let bound = (cols + cols / QK8_0) as f64 * F32_U;
    assert_within("lm head", &yb.read::<f32>(), &want, |r| {
        bound * refs[r % pool].1
    });
}

#[test]
fn matvec_f32_reads_weights_at_an_offset_in_a_wrapped_file() {
    // How forge binds weights: one mmapped file wrapped without copying, each
    // tensor bound at its 16 KiB-aligned offset. Two tensors share the file; the
    // matvec must see only the second one and count traffic against its binding.
    let (rows, cols) = (40usize, 256usize);
    let first_len = 24 * cols * 4;
    let offset = first_len.next_multiple_of(16384);
    let mut rng = Rng::new(5);
    let first = rng.vec_f32(24 * cols, -1.0, 1.0);
    let second = rng.vec_f32(rows * cols, -1.0, 1.0);
    let mut file = vec![0u8; offset + rows * cols * 4];
    for (i, v) in first.iter().enumerate() {
        file[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    for (i, v) in second.iter().enumerate() {
        file[offset + i * 4..offset + i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    let file = std::sync::Arc::new(file);
    let ptr = file.as_ptr() as *mut u8;
    // SAFETY: the kernel only reads buffer 0, and `file` is kept alive as the owner.
    let weights = unsafe { Buffer::wrap(ptr, file.len(), file.clone()) };
    assert_eq!(
        weights.contents() as *const u8,
        file.as_ptr(),
        "wrap must not copy"
    );

    // x also sits after a 64-byte header in its buffer.
    let x = rng.vec_f32(cols, -1.0, 1.0);
    let xb = Buffer::new(64 + cols * 4);
    xb.write(64, &x);
    let options = CompileOptions {
        count_traffic: true,
        ..CompileOptions::default()
    };
    let lib = load_with("matvec_f32.metal", &options);
    let pipe = lib
        .pipeline("matvec_f32", &FunctionConstants::default())
        .unwrap();
    let yb = Buffer::new(rows * 4);
    let params = words(&[Word::U(rows as u32), Word::U(cols as u32)]);
    let groups = rows.div_ceil(8) as u32;
    let stats = dispatch_threadgroups(
        &pipe,
        groups.into(),
        F32_THREADS.into(),
        &[
            msl_emu::Binding::Buffer {
                index: 0,
                buffer: &weights,
                offset,
            },
            msl_emu::Binding::Buffer {
                index: 1,
                buffer: &xb,
                offset: 64,
            },
            buf(2, &yb),
            bytes(3, &params),
        ],
    )
    .unwrap();
    let w64: Vec<f64> = second.iter().map(|&v| v as f64).collect();
    let (want, mag) = reference_matvec(&w64, &x, rows, cols);
    assert_within("matvec_f32 at an offset", &yb.read::<f32>(), &want, |i| {
        cols as f64 * F32_U * mag[i]
    });
    assert_eq!(traffic(&stats, 0), ((rows * cols * 4) as u64, 0), "weights");

    // An offset past the end of the buffer is an error, not a wild read.
    let err = dispatch_threadgroups(
        &pipe,
        groups.into(),
        F32_THREADS.into(),
        &[
            msl_emu::Binding::Buffer {
                index: 0,
                buffer: &weights,
                offset: file.len() + 4,
            },
            buf(1, &xb),
            buf(2, &yb),
            bytes(3, &params),
        ],
    );
    assert!(err.is_err(), "offset past the end was accepted");
}
