//! Q4_0: blocks of 32 values, `{ d: f16, qs: [u8; 16] }`; value i < 16 is the
//! low nibble of qs[i], value i + 16 the high nibble; value = d * (q - 8).

use super::{f16_at, put_f16};

const QK: usize = 32;
const BLOCK_BYTES: usize = 18;

pub(super) fn dequantize(bytes: &[u8], out: &mut [f32]) {
    for (block, y) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK))
    {
        let d = f16_at(block, 0);
        let (lo, hi) = y.split_at_mut(QK / 2);
        for (i, &q) in block[2..].iter().enumerate() {
            lo[i] = d * f32::from((q & 0x0f) as i8 - 8);
            hi[i] = d * f32::from((q >> 4) as i8 - 8);
        }
    }
}

/// The value of largest magnitude (the first one on ties, as ggml picks it),
/// keeping its sign: Q4_0 maps it to -8, the end of the range with more room.
pub(super) fn signed_absmax(x: &[f32]) -> f32 {
    let mut best = 0.0f32;
    for &v in x {
        if v.abs() > best.abs() {
            best = v;
        }
    }
    best
}

/// ggml's reference: d = max / -8 with the signed extreme, q = trunc(x / d + 8.5).
pub(super) fn quantize(data: &[f32], out: &mut [u8]) {
    for (x, block) in data.chunks_exact(QK).zip(out.chunks_exact_mut(BLOCK_BYTES)) {
        let d = signed_absmax(x) / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(block, 0, d);
        let code = |v: f32| ((v * id + 8.5) as u8).min(15);
        for i in 0..QK / 2 {
            block[2 + i] = code(x[i]) | (code(x[i + QK / 2]) << 4);
        }
    }
}
