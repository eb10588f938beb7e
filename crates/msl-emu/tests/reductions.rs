//! Reductions and scans: RMSNorm and softmax (threadgroup reductions through
//! threadgroup memory), a two-pass exclusive prefix sum, and atomics.

mod common;

use common::*;
use msl_emu::{dispatch_threadgroups, Buffer, FunctionConstants};

#[test]
fn rms_norm_matches_reference() {
    let (rows, cols, threads) = (7usize, 576usize, 256u32);
    let eps = 1e-5f32;
    let mut rng = Rng::new(10);
    let x = rng.vec_f32(rows * cols, -3.0, 3.0);
    let weight = rng.vec_f32(cols, 0.5, 1.5);
    let lib = load("rms_norm.metal");
    let pipe = lib
        .pipeline("rms_norm", &FunctionConstants::default())
        .unwrap();
    let xb = Buffer::from_slice(&x);
    let wb = Buffer::from_slice(&weight);
    let ob = Buffer::new(rows * cols * 4);
    let params = words(&[Word::U(cols as u32), Word::F(eps)]);
    let stats = dispatch_threadgroups(
        &pipe,
        (rows as u32).into(),
        threads.into(),
        &[buf(0, &xb), buf(1, &wb), buf(2, &ob), bytes(3, &params)],
    )
    .unwrap();
    assert_eq!(stats.threadgroups, rows as u64);
    assert_eq!(stats.threads, rows as u64 * threads as u64);
    assert!(
        stats.sync_points > 0,
        "rms_norm has barriers and simd_sum: {}",
        stats.sync_points
    );

    let mut want = vec![0.0f64; rows * cols];
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let mean_sq = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / cols as f64;
        let scale = 1.0 / (mean_sq + eps as f64).sqrt();
        for c in 0..cols {
            want[r * cols + c] = row[c] as f64 * scale * weight[c] as f64;
        }
    }
    // The f32 sum of squares is within cols*u relative (halved by the square root);
    // rsqrt and the two products add a few more roundings.
    let rel = (cols as f64 / 2.0 + 8.0) * F32_U;
    assert_close("rms_norm", &ob.read::<f32>(), &want, rel, 0.0);
}

#[test]
fn softmax_matches_reference() {
    // 1000 columns over 256 threads: the strided loops end unevenly.
    let (rows, cols, threads) = (5usize, 1000usize, 256u32);
    let scale = 0.7f32;
    let mut rng = Rng::new(11);
    let logits = rng.vec_f32(rows * cols, -10.0, 10.0);
    let lib = load("softmax.metal");
    let pipe = lib
        .pipeline("softmax", &FunctionConstants::default())
        .unwrap();
    let lb = Buffer::from_slice(&logits);
    let pb = Buffer::new(rows * cols * 4);
    let params = words(&[Word::U(cols as u32), Word::F(scale)]);
    dispatch_threadgroups(
        &pipe,
        (rows as u32).into(),
        threads.into(),
        &[buf(0, &lb), buf(1, &pb), bytes(2, &params)],
    )
    .unwrap();

    let mut want = vec![0.0f64; rows * cols];
    for r in 0..rows {
        let row: Vec<f64> = logits[r * cols..(r + 1) * cols]
            .iter()
            .map(|&v| v as f64 * scale as f64)
            .collect();
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|v| (v - m).exp()).sum();
        for c in 0..cols {
            want[r * cols + c] = (row[c] - m).exp() / sum;
        }
    }
    // exp's argument carries up to |arg|*u ≤ 14u absolute error (a relative error
    // of the result), exp itself a few ulp, and the f32 sum of cols terms cols*u.
    let rel = (cols as f64 + 32.0) * F32_U;
    let got = pb.read::<f32>();
    assert_close("softmax", &got, &want, rel, 0.0);
    for r in 0..rows {
        let s: f64 = got[r * cols..(r + 1) * cols]
            .iter()
            .map(|&v| v as f64)
            .sum();
        // Same bound as above, accumulated over the row.
        assert!((s - 1.0).abs() < 2.0 * rel, "row {r} sums to {s}");
    }
}

#[test]
fn prefix_sum_two_pass_matches_reference() {
    let n = 5000usize;
    let threads = 256u32;
    let per_group = threads as usize * 4;
    let groups = n.div_ceil(per_group);
    let mut rng = Rng::new(12);
    let input: Vec<u32> = (0..n).map(|_| rng.below(1000)).collect();

    let lib = load("prefix_sum.metal");
    let scan = lib
        .pipeline("scan_blocks", &FunctionConstants::default())
        .unwrap();
    let add = lib
        .pipeline("scan_add_offsets", &FunctionConstants::default())
        .unwrap();
    let inb = Buffer::from_slice(&input);
    let outb = Buffer::new(n * 4);
    let totals = Buffer::new(groups * 4);
    let offsets = Buffer::new(groups * 4);
    let grand_total = Buffer::new(4);
    let n_bytes = (n as u32).to_le_bytes();
    let groups_bytes = (groups as u32).to_le_bytes();

    dispatch_threadgroups(
        &scan,
        (groups as u32).into(),
        threads.into(),
        &[
            buf(0, &inb),
            buf(1, &outb),
            buf(2, &totals),
            bytes(3, &n_bytes),
        ],
    )
    .unwrap();
    dispatch_threadgroups(
        &scan,
        1u32.into(),
        threads.into(),
        &[
            buf(0, &totals),
            buf(1, &offsets),
            buf(2, &grand_total),
            bytes(3, &groups_bytes),
        ],
    )
    .unwrap();
    let stats = dispatch_threadgroups(
        &add,
        (groups as u32).into(),
        threads.into(),
        &[buf(0, &outb), buf(1, &offsets), bytes(2, &n_bytes)],
    )
    .unwrap();
    assert_eq!(
        stats.sync_points, 0,
        "scan_add_offsets has no barrier or collective"
    );

    let mut want = Vec::with_capacity(n);
    let mut running = 0u32;
    for &v in &input {
        want.push(running);
        running += v;
    }
    assert_eq!(outb.read::<u32>(), want);
    assert_eq!(grand_total.read::<u32>(), vec![running]);
    let block_totals: Vec<u32> = input.chunks(per_group).map(|c| c.iter().sum()).collect();
    assert_eq!(totals.read::<u32>(), block_totals);
}

#[test]
fn histogram_with_threadgroup_and_device_atomics() {
    let n = 100_000usize;
    let (groups, threads) = (8u32, 128u32);
    let mut rng = Rng::new(13);
    let values: Vec<u32> = (0..n).map(|_| rng.below(1_000_000)).collect();
    let lib = load("atomics.metal");
    let pipe = lib
        .pipeline("histogram", &FunctionConstants::default())
        .unwrap();
    let vb = Buffer::from_slice(&values);
    let hist = Buffer::new(64 * 4);
    let maxb = Buffer::new(4);
    let n_bytes = (n as u32).to_le_bytes();
    dispatch_threadgroups(
        &pipe,
        groups.into(),
        threads.into(),
        &[
            buf(0, &vb),
            buf(1, &hist),
            buf(2, &maxb),
            bytes(3, &n_bytes),
        ],
    )
    .unwrap();
    let mut want = vec![0u32; 64];
    for &v in &values {
        want[(v % 64) as usize] += 1;
    }
    assert_eq!(hist.read::<u32>(), want);
    assert_eq!(maxb.read::<u32>(), vec![*values.iter().max().unwrap()]);
}

#[test]
fn stream_compaction_claims_unique_slots() {
    let n = 10_000usize;
    let threshold = 0.3f32;
    let threads = 256u32;
    let mut rng = Rng::new(14);
    let values = rng.vec_f32(n, -1.0, 1.0);
    let lib = load("atomics.metal");
    let pipe = lib
        .pipeline("compact_greater", &FunctionConstants::default())
        .unwrap();
    let vb = Buffer::from_slice(&values);
    let kept = Buffer::new(n * 4);
    let count = Buffer::new(4);
    let t_bytes = threshold.to_le_bytes();
    let n_bytes = (n as u32).to_le_bytes();
    dispatch_threadgroups(
        &pipe,
        (n as u32).div_ceil(threads).into(),
        threads.into(),
        &[
            buf(0, &vb),
            buf(1, &kept),
            buf(2, &count),
            bytes(3, &t_bytes),
            bytes(4, &n_bytes),
        ],
    )
    .unwrap();
    let mut want: Vec<f32> = values.iter().copied().filter(|&v| v > threshold).collect();
    let k = count.read::<u32>()[0] as usize;
    assert_eq!(k, want.len(), "number of kept values");
    // Slots come from atomic_fetch_add, so the order is arbitrary but each value
    // must land exactly once.
    let mut got = kept.read::<f32>()[..k].to_vec();
    got.sort_by(f32::total_cmp);
    want.sort_by(f32::total_cmp);
    assert_eq!(got, want);
}
