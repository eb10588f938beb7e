//! The f64 reference of a projection with its epilogue, shared by the matvec
//! and matmul tests: random data, the expected output and its tolerance.
#![allow(dead_code)]

use crate::kernel_support::{assert_close, encode_weights, plane_buffers, Rng};
use forge_codegen::kernels::matvec::Epilogue;
use forge_codegen::kernels::weight_format::PlaneSlots;
use forge_ir::{Activation, DType};

/// Written past the output rows; a kernel that stores out of range changes it.
pub const SENTINEL: f32 = 12345.0;
const SENTINELS: usize = 8;

/// Random inputs of one projection of `n` tokens.
pub struct Problem {
    pub n: usize,
    pub rows: usize,
    pub cols: usize,
    pub weight_rows: usize,
    pub dtype: DType,
    /// W as the GPU reads it (the quant plane of a block format), its other
    /// planes (none for float dtypes), and its exact decoded values.
    pub weight_bytes: Vec<u8>,
    pub planes: Vec<Vec<u8>>,
    pub w: Vec<f32>,
    pub x: Vec<f32>,
    pub bias: Vec<f32>,
    pub norm: Vec<f32>,
    /// y before the kernel (what a residual epilogue adds to).
    pub y0: Vec<f32>,
}

impl Problem {
    pub fn random(
        dtype: DType,
        n: usize,
        rows: usize,
        cols: usize,
        epilogue: Epilogue,
        seed: u64,
    ) -> Problem {
        let mut rng = Rng::new(seed);
        let weight_rows = epilogue.weight_rows(rows as u64) as usize;
        // Scaled so a row's dot product is O(1), where activations are not flat.
        let values = rng.vec(weight_rows * cols, 3.0 / (cols as f32).sqrt());
        let encoded = encode_weights(dtype, &values, cols);
        Problem {
            n,
            rows,
            cols,
            weight_rows,
            dtype,
            weight_bytes: encoded.bytes,
            planes: encoded.planes,
            w: encoded.values,
            x: rng.vec(n * cols, 1.0),
            bias: rng.vec(rows, 0.5),
            norm: rng.vec(cols, 1.0).iter().map(|v| 1.0 + 0.5 * v).collect(),
            y0: rng.vec(n * rows, 1.0),
        }
    }

    /// W's planes after the quants as matvec and matmul bind them.
    pub fn plane_buffers(&self) -> Vec<(u32, msl_emu::Buffer)> {
        plane_buffers(self.dtype, &self.planes, PlaneSlots::Linear)
    }

    pub fn y_with_sentinels(&self) -> Vec<f32> {
        let mut y = self.y0.clone();
        y.extend([SENTINEL; SENTINELS]);
        y
    }

    /// Row r of W·x' for token t, and Σ|W·x'| (the scale of its rounding error).
    fn dot(&self, t: usize, r: usize, eps: Option<f32>) -> (f64, f64) {
        let x = &self.x[t * self.cols..][..self.cols];
        let scale = eps.map(|eps| {
            let mean = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / self.cols as f64;
            1.0 / (mean + eps as f64).sqrt()
        });
        let (mut sum, mut mag) = (0.0f64, 0.0f64);
        for (j, &xj) in x.iter().enumerate() {
            let xj = match scale {
                Some(s) => xj as f64 * s * self.norm[j] as f64,
                None => xj as f64,
            };
            let term = self.w[r * self.cols + j] as f64 * xj;
            sum += term;
            mag += term.abs();
        }
        (sum, mag)
    }

    /// Expected y (`n × rows`) and per-element tolerances.
    pub fn reference(
        &self,
        epilogue: Epilogue,
        softcap: Option<f32>,
        eps: Option<f32>,
    ) -> (Vec<f64>, Vec<f64>) {
        // f32 sums of a few hundred products (per lane, then a 32-lane tree):
        // ~30 dependent roundings of 6e-8 bound the error by 2e-6 of Σ|terms|
        // (observed: under 3e-7).
        const SUM_REL: f64 = 2e-6;
        let mut want = Vec::with_capacity(self.n * self.rows);
        let mut tol = Vec::with_capacity(self.n * self.rows);
        for t in 0..self.n {
            for r in 0..self.rows {
                let (mut v, mag) = self.dot(t, r, eps);
                let mut e = SUM_REL * mag;
                if let Epilogue::Gated(act) = epilogue {
                    let (u, mag_u) = self.dot(t, self.rows + r, eps);
                    let e_u = SUM_REL * mag_u;
                    let a = activate(act, v);
                    // |act'| <= 1.2 for all four activations; f32 evaluation
                    // of exp/tanh/erf (A&S erf: 1.5e-7) adds ~1e-6 of |g|+1.
                    e = 1.2 * e * (u.abs() + e_u)
                        + a.abs() * e_u
                        + 1e-6 * (v.abs() + 1.0) * u.abs();
                    v = a * u;
                }
                if let Epilogue::Activated(act) = epilogue {
                    // |act'| <= 1.2, or 2|g| for the squared ReLU.
                    let slope = if act == Activation::Relu2 {
                        2.0 * v.abs()
                    } else {
                        1.2
                    };
                    e = slope * e + 1e-6 * (v.abs() + 1.0);
                    v = activate(act, v);
                }
                if let Epilogue::GateProduct(act) = epilogue {
                    // y0 holds the gate projection: exact inputs, so only
                    // the dot's error (times |act|) and act's f32 evaluation.
                    let g = self.y0[t * self.rows + r] as f64;
                    let a = activate(act, g);
                    e = a.abs() * e + 1e-6 * (g.abs() + 1.0) * v.abs();
                    v *= a;
                }
                if epilogue.has_bias() {
                    v += self.bias[r] as f64;
                }
                if matches!(epilogue, Epilogue::Residual | Epilogue::BiasResidual) {
                    v += self.y0[t * self.rows + r] as f64;
                }
                if let Some(c) = softcap {
                    let c = c as f64;
                    // tanh is 1-Lipschitz, so the error before it passes through.
                    v = c * (v / c).tanh();
                }
                // Rounding of the last few f32 operations (adds, scale, tanh).
                e += 1e-6 * (v.abs() + 1e-3);
                want.push(v);
                tol.push(e);
            }
        }
        (want, tol)
    }

    /// Compares `got` (y with its sentinels) with the reference.
    pub fn check(&self, name: &str, got: &[f32], want: &[f64], tol: &[f64]) {
        let rows = self.n * self.rows;
        assert_close(name, &got[..rows], want, tol);
        assert!(
            got[rows..].iter().all(|&v| v == SENTINEL),
            "{name}: stored past the last row"
        );
    }
}

pub fn activate(act: Activation, g: f64) -> f64 {
    match act {
        Activation::Silu => g / (1.0 + (-g).exp()),
        Activation::GeluTanh => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * g * (1.0 + (k * (g + 0.044715 * g * g * g)).tanh())
        }
        Activation::Gelu => 0.5 * g * (1.0 + erf(g / std::f64::consts::SQRT_2)),
        Activation::Relu => g.max(0.0),
        Activation::Relu2 => g.max(0.0).powi(2),
    }
}

/// erf by its Maclaurin series below |x| = 4 (terms peak near 1e6, so f64
/// keeps ~1e-9 absolute accuracy) and ±1 beyond (erfc(4) < 1.6e-8).
pub fn erf(x: f64) -> f64 {
    if x.abs() >= 4.0 {
        return x.signum();
    }
    let (mut term, mut sum) = (x, x);
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}
