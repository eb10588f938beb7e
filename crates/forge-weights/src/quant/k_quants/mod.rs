//! K-quants: super-blocks of 256 values split into sub-blocks whose scales
//! are themselves quantised against one or two f16 super-block scales.

pub(super) mod q2_k;
pub(super) mod q3_k;
pub(super) mod q4_k;
pub(super) mod q5_k;
pub(super) mod q6_k;
mod scale_search;

/// Values per super-block (ggml's QK_K).
const QK_K: usize = 256;

/// Clamps `x` to `lo..=hi` (integers, |bounds| < 2^22) and rounds to the
/// nearest integer, ties to even. Adding and removing 1.5 * 2^23 leaves no
/// fraction bits, so the FPU's own rounding does the work: without SSE4.1,
/// `f32::round_ties_even` is a libm call and dominated the encoders' time.
fn clamp_round(x: f32, lo: f32, hi: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    (x.clamp(lo, hi) + SHIFT) - SHIFT
}

/// Unpacks the eight 6-bit scales and eight 6-bit mins that Q4_K and Q5_K
/// squeeze into 12 bytes: bytes 0-3 hold scales 0-3, bytes 4-7 mins 0-3, and
/// bytes 8-11 the low nibbles of scales/mins 4-7 whose top two bits ride in
/// the spare high bits of bytes 0-7.
pub(crate) fn unpack_scale_min(packed: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    for j in 0..4 {
        sc[j] = packed[j] & 63;
        m[j] = packed[j + 4] & 63;
        sc[j + 4] = (packed[j + 8] & 0x0f) | ((packed[j] >> 6) << 4);
        m[j + 4] = (packed[j + 8] >> 4) | ((packed[j + 4] >> 6) << 4);
    }
    (sc, m)
}

/// Inverse of [`unpack_scale_min`]; every input must be below 64.
fn pack_scale_min(sc: &[u8; 8], m: &[u8; 8], packed: &mut [u8]) {
    for j in 0..4 {
        packed[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        packed[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        packed[j + 8] = (sc[j + 4] & 0x0f) | ((m[j + 4] & 0x0f) << 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_min_packing_round_trips_every_value() {
        for base in 0..64usize {
            let sc: [u8; 8] = std::array::from_fn(|j| ((base + 7 * j) % 64) as u8);
            let m: [u8; 8] = std::array::from_fn(|j| ((base * 3 + 11 * j) % 64) as u8);
            let mut packed = [0u8; 12];
            pack_scale_min(&sc, &m, &mut packed);
            assert_eq!(unpack_scale_min(&packed), (sc, m));
        }
    }
}
