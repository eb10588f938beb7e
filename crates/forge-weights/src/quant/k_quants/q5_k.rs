//! Q5_K: 256 values as 8 sub-blocks of 32, 5-bit codes.
//! `{ d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128] }`;
//! scales/mins packed as in Q4_K; sub-block j takes the low (j even) or high
//! (j odd) nibbles of qs[32 * (j / 2)..][..32] and bit j of qh[l] as bit 4.

use super::q4_k::encode_scale_min;
use super::{unpack_scale_min, QK_K};
use crate::quant::f16_at;

const BLOCK_BYTES: usize = 176;

pub(crate) fn dequantize(bytes: &[u8], out: &mut [f32]) {
    for (block, y) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let d = f16_at(block, 0);
        let dmin = f16_at(block, 2);
        let (sc, m) = unpack_scale_min(&block[4..16]);
        let qh = &block[16..48];
        let qs = &block[48..176];
        for (j, y) in y.chunks_exact_mut(32).enumerate() {
            let dl = d * f32::from(sc[j]);
            let ml = dmin * f32::from(m[j]);
            let nibbles = &qs[32 * (j / 2)..32 * (j / 2) + 32];
            let shift = 4 * (j % 2);
            for (l, y) in y.iter_mut().enumerate() {
                let q = ((nibbles[l] >> shift) & 0x0f) | (((qh[l] >> j) & 1) << 4);
                *y = dl * f32::from(q) - ml;
            }
        }
    }
}

pub(crate) fn quantize(data: &[f32], out: &mut [u8]) {
    for (x, block) in data
        .chunks_exact(QK_K)
        .zip(out.chunks_exact_mut(BLOCK_BYTES))
    {
        let codes = encode_scale_min(x, 31, &mut block[..16]);
        block[16..].fill(0);
        for (j, sub) in codes.chunks_exact(32).enumerate() {
            let shift = 4 * (j % 2);
            for (l, &q) in sub.iter().enumerate() {
                block[16 + l] |= (q >> 4) << j;
                block[48 + 32 * (j / 2) + l] |= (q & 0x0f) << shift;
            }
        }
    }
}
