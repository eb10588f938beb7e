//! Q4_K: 256 values as 8 sub-blocks of 32, 4-bit codes.
//! `{ d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128] }`; sub-block j has
//! scale `d * sc[j]` and min `dmin * m[j]` (6-bit sc/m, packed as
//! `unpack_scale_min` describes) and takes the low (j even) or high (j odd)
//! nibbles of qs[32 * (j / 2)..][..32]; value = scale * q - min.

use super::scale_search::fit_affine;
use super::{clamp_round, pack_scale_min, unpack_scale_min, QK_K};
use crate::quant::{f16_at, put_f16};

const BLOCK_BYTES: usize = 144;
const SUB: usize = 32;

pub(crate) fn dequantize(bytes: &[u8], out: &mut [f32]) {
    for (block, y) in bytes
        .chunks_exact(BLOCK_BYTES)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let d = f16_at(block, 0);
        let dmin = f16_at(block, 2);
        let (sc, m) = unpack_scale_min(&block[4..16]);
        let qs = &block[16..144];
        for (j, y) in y.chunks_exact_mut(SUB).enumerate() {
            let dl = d * f32::from(sc[j]);
            let ml = dmin * f32::from(m[j]);
            let nibbles = &qs[SUB * (j / 2)..SUB * (j / 2) + SUB];
            let shift = 4 * (j % 2);
            for (y, &q) in y.iter_mut().zip(nibbles) {
                *y = dl * f32::from((q >> shift) & 0x0f) - ml;
            }
        }
    }
}

/// Rounds `value * inv` to a 6-bit sub-block scale or min.
fn six_bits(value: f32, inv: f32) -> u8 {
    clamp_round(value * inv, 0.0, 63.0) as u8
}

/// The encoder Q4_K and Q5_K share: fits each 32-value sub-block of `x`
/// (256 values) as scale·q − min with codes 0..=`nmax`, writes d, dmin and
/// the packed 6-bit scales and mins into `header` (16 bytes) and returns the
/// codes.
pub(super) fn encode_scale_min(x: &[f32], nmax: u8, header: &mut [u8]) -> [u8; QK_K] {
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    for (j, xs) in x.chunks_exact(SUB).enumerate() {
        // Weight large values more: they dominate the dot products the
        // weights take part in (ggml weighs by rms + |x| for this reason).
        let rms = (xs.iter().map(|v| v * v).sum::<f32>() / SUB as f32).sqrt();
        let w: [f32; SUB] = std::array::from_fn(|l| rms + xs[l].abs());
        (scales[j], mins[j]) = fit_affine(xs, &w, nmax);
    }
    let max_scale = scales.iter().fold(0.0f32, |a, &v| a.max(v));
    let max_min = mins.iter().fold(0.0f32, |a, &v| a.max(v));
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let sc: [u8; 8] = std::array::from_fn(|j| six_bits(scales[j], inv_scale));
    let m: [u8; 8] = std::array::from_fn(|j| six_bits(mins[j], inv_min));
    put_f16(header, 0, max_scale / 63.0);
    put_f16(header, 2, max_min / 63.0);
    pack_scale_min(&sc, &m, &mut header[4..16]);
    // Codes are chosen against the scales as stored (f16 times 6 bits),
    // so rounding of the scales is partly absorbed by the codes.
    let d = f16_at(header, 0);
    let dmin = f16_at(header, 2);
    let mut codes = [0u8; QK_K];
    for (j, (xs, qs)) in x
        .chunks_exact(SUB)
        .zip(codes.chunks_exact_mut(SUB))
        .enumerate()
    {
        let dl = d * f32::from(sc[j]);
        let ml = dmin * f32::from(m[j]);
        let inv = if dl != 0.0 { 1.0 / dl } else { 0.0 };
        for (q, &v) in qs.iter_mut().zip(xs) {
            *q = clamp_round((v + ml) * inv, 0.0, f32::from(nmax)) as u8;
        }
    }
    codes
}

pub(crate) fn quantize(data: &[f32], out: &mut [u8]) {
    for (x, block) in data
        .chunks_exact(QK_K)
        .zip(out.chunks_exact_mut(BLOCK_BYTES))
    {
        let codes = encode_scale_min(x, 15, &mut block[..16]);
        let qs = &mut block[16..144];
        qs.fill(0);
        for (j, sub) in codes.chunks_exact(SUB).enumerate() {
            let shift = 4 * (j % 2);
            for (l, &q) in sub.iter().enumerate() {
                qs[SUB * (j / 2) + l] |= q << shift;
            }
        }
    }
}
