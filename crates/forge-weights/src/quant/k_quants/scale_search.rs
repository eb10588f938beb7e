//! Choosing a sub-block's scale (and min) for the K-quant encoders.
//!
//! The obvious scale (largest value -> largest code) wastes precision when
//! one outlier stretches the range, so we try a small fan of inverse scales
//! around it, round the values to codes for each, solve the weighted
//! least-squares scale (and offset) for those codes in closed form, and keep
//! the fit with the least weighted squared error. This is the idea behind
//! ggml's `make_qkx2_quants` / `make_qx_quants`, written from the maths.

use super::clamp_round;

/// How many inverse scales either side of the obvious one we try, and the
/// step between them in units of one code.
const FAN: i32 = 10;
const FAN_STEP: f32 = 0.1;

/// Sums are kept in this many independent lanes: a single f32 accumulator
/// is a serial chain of additions the compiler may not reorder, and that
/// chain, not arithmetic, bounded the encoders' speed.
const LANES: usize = 8;

/// Σ over `x` of `f(x, w) -> [terms; N]`, accumulated lane-wise.
fn lane_sums<const N: usize>(x: &[f32], w: &[f32], f: impl Fn(f32, f32) -> [f32; N]) -> [f32; N] {
    let mut acc = [[0.0f32; LANES]; N];
    let xs = x.chunks_exact(LANES);
    let ws = w.chunks_exact(LANES);
    let (xr, wr) = (xs.remainder(), ws.remainder());
    for (xc, wc) in xs.zip(ws) {
        for l in 0..LANES {
            let t = f(xc[l], wc[l]);
            for k in 0..N {
                acc[k][l] += t[k];
            }
        }
    }
    let mut total: [f32; N] = std::array::from_fn(|k| acc[k].iter().sum());
    for (&v, &wt) in xr.iter().zip(wr) {
        let t = f(v, wt);
        for k in 0..N {
            total[k] += t[k];
        }
    }
    total
}

/// Weighted fit of `x ≈ scale * q - min` with integer q in 0..=nmax,
/// scale >= 0 and min >= 0 (the format subtracts an unsigned min, so a
/// sub-block whose values are all positive gets min 0). Returns (scale, min).
pub(super) fn fit_affine(x: &[f32], w: &[f32], nmax: u8) -> (f32, f32) {
    let lo = x.iter().fold(0.0f32, |a, &v| a.min(v));
    let hi = x.iter().fold(lo, |a, &v| a.max(v));
    if hi <= lo {
        // Constant sub-block at or below zero: the min alone reproduces it.
        return (0.0, -lo);
    }
    let nmax_f = f32::from(nmax);
    let [sw, sx] = lane_sums(x, w, |v, wt| [wt, wt * v]);
    // For codes held fixed, the least-squares (scale, offset) leaves an
    // error of Σwx² - scale·Σwqx - offset·Σwx, so the best candidate is the
    // one with the largest `gain` = scale·Σwqx + offset·Σwx.
    let mut best = ((hi - lo) / nmax_f, -lo, f32::NEG_INFINITY);
    for step in -FAN..=FAN {
        let iscale = (nmax_f + FAN_STEP * step as f32) / (hi - lo);
        let [sq, sqq, sqx] = lane_sums(x, w, |v, wt| {
            let q = clamp_round(iscale * (v - lo), 0.0, nmax_f);
            [wt * q, wt * q * q, wt * q * v]
        });
        let det = sw * sqq - sq * sq;
        if det <= 0.0 {
            continue;
        }
        let mut scale = (sw * sqx - sq * sx) / det;
        let mut offset = (sqq * sx - sq * sqx) / det;
        if offset > 0.0 {
            // The format cannot add a positive offset: refit through zero.
            offset = 0.0;
            scale = sqx / sqq;
        }
        if scale <= 0.0 {
            continue;
        }
        let gain = scale * sqx + offset * sx;
        if gain > best.2 {
            best = (scale, -offset, gain);
        }
    }
    (best.0, best.1)
}

/// Weighted fit of `x ≈ scale * q` with integer q in -nmax..nmax-1; the
/// signed scale maps the extreme value to -nmax, the side with one more
/// code. Returns 0 for an all-zero sub-block.
pub(super) fn fit_symmetric(x: &[f32], w: &[f32], nmax: i8) -> f32 {
    let ext = x
        .iter()
        .fold(0.0f32, |a, &v| if v.abs() > a.abs() { v } else { a });
    if ext == 0.0 {
        return 0.0;
    }
    let (qmin, qmax) = (-f32::from(nmax), f32::from(nmax) - 1.0);
    // Maximising (Σwxq)² / Σwq² minimises Σw(x - s q)² at s = Σwxq / Σwq².
    let mut best: Option<(f32, f32)> = None;
    for step in -FAN..=FAN {
        let iscale = -(f32::from(nmax) + FAN_STEP * step as f32) / ext;
        let [sxq, sqq] = lane_sums(x, w, |v, wt| {
            let q = clamp_round(iscale * v, qmin, qmax);
            [wt * v * q, wt * q * q]
        });
        if sqq > 0.0 {
            let gain = sxq * sxq / sqq;
            if best.is_none_or(|(g, _)| gain > g) {
                best = Some((gain, sxq / sqq));
            }
        }
    }
    best.map_or(-ext / f32::from(nmax), |(_, s)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_fit_reproduces_values_already_on_a_grid() {
        // 0.25 * q - 1.0 for q = 0..=15, each twice: the fit must find it exactly.
        let x: Vec<f32> = (0..32).map(|i| 0.25 * (i % 16) as f32 - 1.0).collect();
        let w = vec![1.0; 32];
        let (scale, min) = fit_affine(&x, &w, 15);
        assert!((scale - 0.25).abs() < 1e-6, "scale {scale}");
        assert!((min - 1.0).abs() < 1e-6, "min {min}");
    }

    #[test]
    fn affine_fit_of_positive_values_has_zero_min() {
        let x: Vec<f32> = (0..32).map(|i| 1.0 + i as f32).collect();
        let (scale, min) = fit_affine(&x, &[1.0; 32], 15);
        assert_eq!(min, 0.0);
        assert!(scale > 0.0);
    }

    #[test]
    fn symmetric_fit_maps_the_extreme_to_the_long_side() {
        let mut x = [0.5f32; 16];
        x[3] = 4.0;
        let s = fit_symmetric(&x, &[1.0; 16], 32);
        // 4.0 must land on a code in range, and on the negative side.
        let q = (4.0 / s).round();
        assert!((-32.0..=31.0).contains(&q), "q {q}");
        assert!(s < 0.0);
        assert_eq!(fit_symmetric(&[0.0; 16], &[1.0; 16], 32), 0.0);
    }
}
