//! Rope inverse-frequency tables with every `RopeScaling` variant applied, the
//! way Hugging Face transformers (`modeling_rope_utils`) computes them: in
//! float32, operation by operation, so the tables the kernels bake in match the
//! reference bit for bit or within an ulp of libm's `powf`.

use forge_ir::{RopeConfig, RopeScaling};

/// What the `rope_store` kernel needs to rotate a head at any position.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeTable {
    /// `rotary_dim / 2` inverse frequencies (radians per position).
    pub inv_freq: Vec<f32>,
    /// Multiplier on cos and sin (YaRN and LongRoPE magnitude scaling; 1 otherwise).
    pub attention_factor: f32,
    /// LongRoPE only: the table transformers switches to for a forward pass
    /// whose last position reaches past the original context.
    pub long: Option<LongRopeTable>,
}

/// LongRoPE's second table and when it applies.
#[derive(Clone, Debug, PartialEq)]
pub struct LongRopeTable {
    pub inv_freq: Vec<f32>,
    /// A pass at positions `pos..pos+n` uses the long table when `pos + n`
    /// exceeds this (transformers: `max(position_ids) + 1 > original`).
    pub original_context_length: u64,
}

/// The unscaled frequencies `1 / theta^(2i/d)`, as transformers computes them in float32.
fn base_inv_freq(theta: f64, rotary_dim: u64) -> Vec<f32> {
    let dim = rotary_dim as f32;
    (0..rotary_dim / 2)
        .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / dim))
        .collect()
}

/// `1 / (factors[i] * theta^(2i/d))` (LongRoPE's per-frequency extension factors).
fn divided_inv_freq(theta: f64, rotary_dim: u64, factors: &[f64]) -> Vec<f32> {
    assert_eq!(
        factors.len() as u64,
        rotary_dim / 2,
        "one rope factor per rotated pair"
    );
    let dim = rotary_dim as f32;
    (0..rotary_dim / 2)
        .map(|i| {
            let base = (theta as f32).powf((2 * i) as f32 / dim);
            1.0 / (factors[i as usize] as f32 * base)
        })
        .collect()
}

/// Llama 3.1: long wavelengths divided by `factor`, short ones kept, a smooth
/// blend between (transformers' `_compute_llama3_parameters`).
fn llama3(
    base: Vec<f32>,
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    original: u64,
) -> Vec<f32> {
    let old_context = original as f64;
    let low_freq_wavelen = (old_context / low_freq_factor) as f32;
    let high_freq_wavelen = (old_context / high_freq_factor) as f32;
    let factor = factor as f32;
    base.into_iter()
        .map(|inv_freq| {
            // torch evaluates `scalar / tensor` as `reciprocal(tensor) * scalar`.
            let wavelen = (1.0 / inv_freq) * (2.0 * std::f64::consts::PI) as f32;
            let scaled = if wavelen > low_freq_wavelen {
                inv_freq / factor
            } else {
                inv_freq
            };
            // Wavelengths are finite, so this is transformers' `~(w < high) * ~(w > low)`.
            let medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
            if !medium {
                return scaled;
            }
            let smooth = ((1.0 / wavelen) * old_context as f32 - low_freq_factor as f32)
                / (high_freq_factor - low_freq_factor) as f32;
            (1.0 - smooth) * scaled / factor + smooth * scaled
        })
        .collect()
}

/// YaRN's NTK-by-parts blend of interpolated and extrapolated frequencies
/// (transformers' `_compute_yarn_parameters` with `truncate = true`).
fn yarn(
    theta: f64,
    rotary_dim: u64,
    factor: f64,
    original: u64,
    beta_fast: f64,
    beta_slow: f64,
) -> Vec<f32> {
    let dim = rotary_dim as f64;
    let correction_dim = |rotations: f64| {
        dim * (original as f64 / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * theta.ln())
    };
    let low = correction_dim(beta_fast).floor().max(0.0);
    let mut high = correction_dim(beta_slow).ceil().min(dim - 1.0);
    if low == high {
        // transformers' guard against a zero-width ramp.
        high += 0.001;
    }
    let span = (high - low) as f32;
    let dimf = rotary_dim as f32;
    (0..rotary_dim / 2)
        .map(|i| {
            let pos_freq = (theta as f32).powf((2 * i) as f32 / dimf);
            let extrapolation = 1.0 / pos_freq;
            let interpolation = 1.0 / (factor as f32 * pos_freq);
            let ramp = ((i as f32 - low as f32) / span).clamp(0.0, 1.0);
            let extrapolation_factor = 1.0 - ramp;
            interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor
        })
        .collect()
}

/// The table for one rope configuration. `rope.rotary_dim` (even) decides the
/// table length; the head's remaining columns are not rotated.
pub fn rope_table(rope: &RopeConfig) -> RopeTable {
    let dim = rope.rotary_dim;
    let (inv_freq, attention_factor, long) = match &rope.scaling {
        RopeScaling::None => (base_inv_freq(rope.theta, dim), 1.0, None),
        RopeScaling::Linear { factor } => {
            let factor = *factor as f32;
            let table = base_inv_freq(rope.theta, dim)
                .into_iter()
                .map(|f| f / factor)
                .collect();
            (table, 1.0, None)
        }
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_context_length,
        } => {
            let table = llama3(
                base_inv_freq(rope.theta, dim),
                *factor,
                *low_freq_factor,
                *high_freq_factor,
                *original_context_length,
            );
            (table, 1.0, None)
        }
        RopeScaling::Yarn {
            factor,
            original_context_length,
            beta_fast,
            beta_slow,
            attention_factor,
        } => {
            let table = yarn(
                rope.theta,
                dim,
                *factor,
                *original_context_length,
                *beta_fast,
                *beta_slow,
            );
            (table, *attention_factor as f32, None)
        }
        RopeScaling::FrequencyFactors { factors } => {
            // llama.cpp divides each frequency by its factor (GGUF `rope_freqs`).
            (divided_inv_freq(rope.theta, dim, factors), 1.0, None)
        }
        RopeScaling::LongRope {
            short_factor,
            long_factor,
            original_context_length,
            attention_factor,
        } => {
            let long = LongRopeTable {
                inv_freq: divided_inv_freq(rope.theta, dim, long_factor),
                original_context_length: *original_context_length,
            };
            (
                divided_inv_freq(rope.theta, dim, short_factor),
                *attention_factor as f32,
                Some(long),
            )
        }
    };
    RopeTable {
        inv_freq,
        attention_factor,
        long,
    }
}
