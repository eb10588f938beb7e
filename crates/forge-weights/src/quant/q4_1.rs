//! Q4_1: blocks of 32 values, `{ d: f16, m: f16, qs: [u8; 16] }`, nibbles as
//! in Q4_0; value = d * q + m.

use super::{f16_at, put_f16};

const QK: usize = 32;
const BLOCK_BYTES: usize = 20;

pub(super) fn dequantize(bytes: &[u8], out: &mut [f32]) {
    for (block, y) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK))
    {
        let d = f16_at(block, 0);
        let m = f16_at(block, 2);
        let (lo, hi) = y.split_at_mut(QK / 2);
        for (i, &q) in block[4..].iter().enumerate() {
            lo[i] = d * f32::from(q & 0x0f) + m;
            hi[i] = d * f32::from(q >> 4) + m;
        }
    }
}

/// Smallest and largest value of a block (0 and 0 for an empty one).
pub(super) fn min_max(x: &[f32]) -> (f32, f32) {
    let first = x.first().copied().unwrap_or(0.0);
    x.iter()
        .fold((first, first), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// ggml's reference: d = (max - min) / 15, q = trunc((x - min) / d + 0.5).
pub(super) fn quantize(data: &[f32], out: &mut [u8]) {
    for (x, block) in data.chunks_exact(QK).zip(out.chunks_exact_mut(BLOCK_BYTES)) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(block, 0, d);
        put_f16(block, 2, min);
        let code = |v: f32| (((v - min) * id + 0.5) as u8).min(15);
        for i in 0..QK / 2 {
            block[4 + i] = code(x[i]) | (code(x[i + QK / 2]) << 4);
        }
    }
}
