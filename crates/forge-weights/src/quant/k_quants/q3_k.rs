//! Q3_K: 256 values as 16 sub-blocks of 16, 3-bit codes.
//! `{ hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12], d: f16 }`.
//! Low two bits of value 128n + 32s + l: bits 2s..2s+2 of qs[32n + l]; its
//! third bit is bit (4n + s) of hmask[l], and a *clear* bit subtracts 4.
//! Sub-block scales are 6-bit, offset by 32: low nibbles in bytes 0-7
//! (scales 0-7 low, 8-15 high), top two bits in bytes 8-11, two per scale.

use super::QK_K;
use crate::quant::f16_at;

const BLOCK_BYTES: usize = 110;

fn unpack_scales(packed: &[u8]) -> [i8; 16] {
    std::array::from_fn(|j| {
        let low = if j < 8 {
            packed[j] & 0x0f
        } else {
            packed[j - 8] >> 4
        };
        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        (low | (high << 4)) as i8 - 32
    })
}

pub(crate) fn dequantize(bytes: &[u8], out: &mut [f32]) {
    for (block, y) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let hmask = &block[0..32];
        let qs = &block[32..96];
        let scales = unpack_scales(&block[96..108]);
        let d = f16_at(block, 108);
        for (i, y) in y.iter_mut().enumerate() {
            let (n, s, l) = (i / 128, (i % 128) / 32, i % 32);
            let low = ((qs[32 * n + l] >> (2 * s)) & 3) as i8;
            let high_set = (hmask[l] >> (i / 32)) & 1 == 1;
            let q = if high_set { low } else { low - 4 };
            let dl = d * f32::from(scales[i / 16]);
            *y = dl * f32::from(q);
        }
    }
}
