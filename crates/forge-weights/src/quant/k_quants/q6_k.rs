//! Q6_K: 256 values as 16 sub-blocks of 16, 6-bit codes offset by 32.
//! `{ ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16 }`. Value
//! 128n + 32s + l: low nibble (s < 2) or high nibble (s >= 2) of
//! ql[64n + 32(s % 2) + l], top two bits = bits 2s..2s+2 of qh[32n + l];
//! value = d * scales[i / 16] * (q - 32).

use super::scale_search::fit_symmetric;
use super::{clamp_round, QK_K};
use crate::quant::{f16_at, put_f16};

const BLOCK_BYTES: usize = 210;
const SUB: usize = 16;

/// Byte positions of value `i`'s low bits in ql and high bits in qh, with
/// the shifts within those bytes.
fn code_position(i: usize) -> (usize, u32, usize, u32) {
    let (n, s, l) = (i / 128, (i % 128) / 32, i % 32);
    (
        64 * n + 32 * (s % 2) + l,
        4 * (s as u32 / 2),
        32 * n + l,
        2 * s as u32,
    )
}

pub(crate) fn dequantize(bytes: &[u8], out: &mut [f32]) {
    for (block, y) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let ql = &block[0..128];
        let qh = &block[128..192];
        let scales = &block[192..208];
        let d = f16_at(block, 208);
        for (i, y) in y.iter_mut().enumerate() {
            let (lo_at, lo_shift, hi_at, hi_shift) = code_position(i);
            let q = ((ql[lo_at] >> lo_shift) & 0x0f) | (((qh[hi_at] >> hi_shift) & 3) << 4);
            let dl = d * f32::from(scales[i / SUB] as i8);
            *y = dl * f32::from(q as i8 - 32);
        }
    }
}

pub(crate) fn quantize(data: &[f32], out: &mut [u8]) {
    for (x, block) in data
        .chunks_exact(QK_K)
        .zip(out.chunks_exact_mut(BLOCK_BYTES))
    {
        let mut scales = [0.0f32; 16];
        for (j, xs) in x.chunks_exact(SUB).enumerate() {
            // Squared-value weights, as ggml uses for Q6_K: with 6 bits the
            // small values are already well served, the large ones matter.
            let w: [f32; SUB] = std::array::from_fn(|l| xs[l] * xs[l]);
            scales[j] = fit_symmetric(xs, &w, 32);
        }
        // The sub-block scale of largest magnitude becomes -128 (the long
        // side of i8); the others are rounded relative to it.
        let ext = scales
            .iter()
            .fold(0.0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
        let iscale = if ext != 0.0 { -128.0 / ext } else { 0.0 };
        let d = if ext != 0.0 { ext / -128.0 } else { 0.0 };
        let sc: [i8; 16] =
            std::array::from_fn(|j| clamp_round(iscale * scales[j], -128.0, 127.0) as i8);
        for (b, s) in block[192..208].iter_mut().zip(sc) {
            *b = s as u8;
        }
        put_f16(block, 208, d);
        let d = f16_at(block, 208);
        block[..192].fill(0);
        for (i, &v) in x.iter().enumerate() {
            let dl = d * f32::from(sc[i / SUB]);
            let q = if dl != 0.0 {
                clamp_round(v / dl, -32.0, 31.0) as i8
            } else {
                0
            };
            let code = (q + 32) as u8;
            let (lo_at, lo_shift, hi_at, hi_shift) = code_position(i);
            block[lo_at] |= (code & 0x0f) << lo_shift;
            block[128 + hi_at] |= (code >> 4) << hi_shift;
        }
    }
}
