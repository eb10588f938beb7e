//! Q8_0: blocks of 32 values, `{ d: f16, qs: [i8; 32] }`, value = d * q.

use super::{f16_at, put_f16};

const QK: usize = 32;
const BLOCK_BYTES: usize = 34;

pub(super) fn dequantize(bytes: &[u8], out: &mut [f32]) {
    for (block, y) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK))
    {
        let d = f16_at(block, 0);
        for (y, &q) in y.iter_mut().zip(&block[2..]) {
            *y = f32::from(q as i8) * d;
        }
    }
}

/// ggml's reference rounding: scale so the largest magnitude maps to 127,
/// then round half away from zero with the f32 (not the stored f16) scale.
pub(super) fn quantize(data: &[f32], out: &mut [u8]) {
    for (x, block) in data.chunks_exact(QK).zip(out.chunks_exact_mut(BLOCK_BYTES)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(block, 0, d);
        for (q, v) in block[2..].iter_mut().zip(x) {
            // `as i8` saturates, so even a non-finite input cannot wrap.
            *q = ((v * id).round() as i8) as u8;
        }
    }
}
