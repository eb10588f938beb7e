//! Q2_K: 256 values as 16 sub-blocks of 16, 2-bit codes.
//! `{ scales: [u8; 16], qs: [u8; 64], d: f16, dmin: f16 }`; sub-block j has
//! scale `d * (scales[j] & 15)` and min `dmin * (scales[j] >> 4)`; value
//! 128n + 32s + l is bits 2s..2s+2 of qs[32n + l]; value = scale * q - min.

use super::QK_K;
use crate::quant::f16_at;

const BLOCK_BYTES: usize = 84;

pub(crate) fn dequantize(bytes: &[u8], out: &mut [f32]) {
    for (block, y) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let (scales, rest) = block.split_at(16);
        let (qs, _) = rest.split_at(64);
        let d = f16_at(block, 80);
        let dmin = f16_at(block, 82);
        for (i, y) in y.iter_mut().enumerate() {
            let (n, s, l) = (i / 128, (i % 128) / 32, i % 32);
            let q = (qs[32 * n + l] >> (2 * s)) & 3;
            let sc = scales[i / 16];
            let dl = d * f32::from(sc & 0x0f);
            let ml = dmin * f32::from(sc >> 4);
            *y = dl * f32::from(q) - ml;
        }
    }
}
