//! Plain float storage: F32, F16 and BF16, little-endian.

use half::f16;

pub(super) fn dequantize_f32(bytes: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

pub(super) fn dequantize_f16(bytes: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

pub(super) fn dequantize_bf16(bytes: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        // A bf16 is the top half of an f32, so widening is a shift.
        *o = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
    }
}

pub(super) fn quantize_f32(data: &[f32], out: &mut [u8]) {
    for (x, b) in data.iter().zip(out.chunks_exact_mut(4)) {
        b.copy_from_slice(&x.to_le_bytes());
    }
}

pub(super) fn quantize_f16(data: &[f32], out: &mut [u8]) {
    for (x, b) in data.iter().zip(out.chunks_exact_mut(2)) {
        b.copy_from_slice(&f16::from_f32(*x).to_le_bytes());
    }
}

/// f32 -> bf16 the way ggml does it: round to nearest even, and NaNs stay
/// quiet NaNs (plain rounding could carry a NaN's payload into infinity).
pub(super) fn to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        return ((bits >> 16) | 0x40) as u16;
    }
    // No overflow: the largest non-NaN pattern (-inf, 0xff80_0000) plus
    // 0x8000 still fits in a u32.
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

pub(super) fn quantize_bf16(data: &[f32], out: &mut [u8]) {
    for (x, b) in data.iter().zip(out.chunks_exact_mut(2)) {
        b.copy_from_slice(&to_bf16_bits(*x).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;

    #[test]
    fn bf16_rounds_to_nearest_even_and_keeps_nan() {
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even one (1.0).
        assert_eq!(
            to_bf16_bits(1.0 + 1.0 / 256.0),
            bf16::from_f32(1.0).to_bits()
        );
        // 1 + 3 * 2^-8 is halfway too; the even neighbour is 1 + 2^-6.
        assert_eq!(to_bf16_bits(1.0 + 3.0 / 256.0), 0x3f82);
        let nan = to_bf16_bits(f32::from_bits(0x7fff_ffff));
        assert!(f32::from_bits(u32::from(nan) << 16).is_nan());
        assert_eq!(to_bf16_bits(f32::INFINITY), 0x7f80);
        assert_eq!(
            to_bf16_bits(f32::MAX),
            0x7f80,
            "f32::MAX rounds up to infinity"
        );
    }
}
