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
            *q = round_half_away(v * id) as u8;
        }
    }
}

/// `x.round() as i8` (ties away from zero, saturating) without the libm call
/// `f32::round` becomes on x86-64 without SSE4.1. After the clamp the
/// integer and fractional parts are exact in f32.
fn round_half_away(x: f32) -> i8 {
    let x = x.clamp(-128.0, 127.0);
    let whole = x as i32;
    let frac = x - whole as f32;
    (whole + i32::from(frac >= 0.5) - i32::from(frac <= -0.5)) as i8
}

#[cfg(test)]
mod tests {
    use super::round_half_away;

    #[test]
    fn rounding_matches_f32_round_and_saturates() {
        let mut x = -140.0f32;
        while x <= 140.0 {
            for v in [x, x.next_up(), x.next_down()] {
                let want = v.round().clamp(-128.0, 127.0) as i8;
                assert_eq!(round_half_away(v), want, "{v}");
            }
            x += 0.25;
        }
        assert_eq!(round_half_away(f32::NAN), 0);
        assert_eq!(round_half_away(f32::INFINITY), 127);
        assert_eq!(round_half_away(0.49999997), 0);
    }
}
