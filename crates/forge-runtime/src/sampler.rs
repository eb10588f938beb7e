//! Drawing the next token from the candidates the GPU returns (the best few
//! ids with their logits, repeat penalty already applied), with llama.cpp's
//! order of filters: top-k, top-p, min-p, then temperature.

use anyhow::{bail, Result};

/// A small seeded generator (SplitMix64): the same seed gives the same text.
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 picks the most likely candidate.
    pub temperature: f32,
    /// Keep the k best candidates; 0 keeps all of them.
    pub top_k: usize,
    /// Keep the smallest set of best candidates whose probability reaches this; 1 keeps all.
    pub top_p: f32,
    /// Drop candidates less likely than this fraction of the best one; 0 keeps all.
    pub min_p: f32,
}

impl SamplingParams {
    /// Refuses values that have no meaning, naming the flag.
    pub fn check(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            bail!(
                "--temperature must be a number >= 0, not {}",
                self.temperature
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            bail!("--top-p must be in (0, 1], not {}", self.top_p);
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            bail!("--min-p must be in [0, 1], not {}", self.min_p);
        }
        Ok(())
    }
}

/// Draws one id from `candidates` (id, logit); `None` when none has a usable logit.
pub fn sample(candidates: &[(u32, f32)], params: &SamplingParams, rng: &mut Rng) -> Option<u32> {
    let mut kept: Vec<(u32, f32)> = candidates
        .iter()
        .copied()
        .filter(|c| !c.1.is_nan())
        .collect();
    kept.sort_by(|a, b| b.1.total_cmp(&a.1));
    let best = *kept.first()?;
    if params.temperature <= 0.0 || best.1 == f32::NEG_INFINITY {
        return Some(best.0);
    }
    if params.top_k > 0 {
        kept.truncate(params.top_k);
    }
    // Weights relative to the best candidate at temperature 1 (the best one weighs 1).
    let weights: Vec<f64> = kept.iter().map(|c| ((c.1 - best.1) as f64).exp()).collect();
    let mut keep = kept.len();
    if params.top_p < 1.0 {
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        for (i, w) in weights.iter().enumerate() {
            sum += w;
            if sum >= params.top_p as f64 * total {
                keep = i + 1;
                break;
            }
        }
    }
    if params.min_p > 0.0 {
        keep = keep.min(
            weights
                .iter()
                .take_while(|&&w| w >= params.min_p as f64)
                .count()
                .max(1),
        );
    }
    kept.truncate(keep);
    let scaled: Vec<f64> = kept
        .iter()
        .map(|c| (((c.1 - best.1) / params.temperature) as f64).exp())
        .collect();
    let mut target = rng.uniform() * scaled.iter().sum::<f64>();
    for (c, w) in kept.iter().zip(&scaled) {
        if target < *w {
            return Some(c.0);
        }
        target -= w;
    }
    // Rounding left `target` a hair above the last weight.
    kept.last().map(|c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: usize, top_p: f32, min_p: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            min_p,
        }
    }

    /// Candidates whose temperature-1 probabilities are `probs` (logits = ln p).
    fn with_probs(probs: &[f64]) -> Vec<(u32, f32)> {
        probs
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u32, p.ln() as f32))
            .collect()
    }

    /// Frequency of each id over `n` draws.
    fn frequencies(candidates: &[(u32, f32)], p: &SamplingParams, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = Rng::new(seed);
        let mut counts = vec![0usize; candidates.len()];
        for _ in 0..n {
            counts[sample(candidates, p, &mut rng).unwrap() as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / n as f64).collect()
    }

    // 40000 draws: a frequency's standard deviation is at most 0.0025, so 0.015 is 6 sigma.
    const DRAWS: usize = 40000;
    const FREQ_TOL: f64 = 0.015;

    fn assert_frequencies(got: &[f64], want: &[f64]) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= FREQ_TOL,
                "id {i}: frequency {g}, expected {w} (all: {got:?})"
            );
        }
    }

    #[test]
    fn zero_temperature_and_top_k_one_pick_the_best_whatever_the_order() {
        let candidates = [(7, 0.5), (3, 2.0), (9, f32::NAN), (5, 1.0)];
        let mut rng = Rng::new(1);
        assert_eq!(
            sample(&candidates, &params(0.0, 40, 0.95, 0.05), &mut rng),
            Some(3)
        );
        for _ in 0..100 {
            assert_eq!(
                sample(&candidates, &params(1.5, 1, 1.0, 0.0), &mut rng),
                Some(3)
            );
        }
        assert_eq!(
            sample(&[(1, f32::NAN)], &params(1.0, 0, 1.0, 0.0), &mut rng),
            None
        );
        assert_eq!(sample(&[], &params(1.0, 0, 1.0, 0.0), &mut rng), None);
    }

    #[test]
    fn temperature_one_draws_the_softmax_distribution() {
        let probs = [0.4, 0.3, 0.2, 0.1];
        let got = frequencies(&with_probs(&probs), &params(1.0, 0, 1.0, 0.0), DRAWS, 7);
        assert_frequencies(&got, &probs);
    }

    #[test]
    fn temperature_flattens_or_sharpens_the_distribution() {
        let probs = [0.4, 0.3, 0.2, 0.1];
        for t in [0.5f64, 2.0] {
            // p^(1/t), renormalised: softmax(ln p / t).
            let powered: Vec<f64> = probs.iter().map(|p: &f64| p.powf(1.0 / t)).collect();
            let sum: f64 = powered.iter().sum();
            let want: Vec<f64> = powered.iter().map(|w| w / sum).collect();
            let got = frequencies(
                &with_probs(&probs),
                &params(t as f32, 0, 1.0, 0.0),
                DRAWS,
                11,
            );
            assert_frequencies(&got, &want);
        }
    }

    #[test]
    fn top_k_keeps_the_k_best_and_renormalises() {
        let probs = [0.1, 0.4, 0.2, 0.3];
        let got = frequencies(&with_probs(&probs), &params(1.0, 2, 1.0, 0.0), DRAWS, 3);
        assert_frequencies(&got, &[0.0, 0.4 / 0.7, 0.0, 0.3 / 0.7]);
    }

    #[test]
    fn top_p_keeps_the_smallest_prefix_reaching_the_mass() {
        let probs = [0.5, 0.3, 0.15, 0.05];
        // 0.5 < 0.7 <= 0.8: two candidates.
        let got = frequencies(&with_probs(&probs), &params(1.0, 0, 0.7, 0.0), DRAWS, 5);
        assert_frequencies(&got, &[0.5 / 0.8, 0.3 / 0.8, 0.0, 0.0]);
        // Below the best candidate's own mass only the best one is left.
        let got = frequencies(&with_probs(&probs), &params(1.0, 0, 0.2, 0.0), 1000, 5);
        assert_frequencies(&got, &[1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn min_p_drops_candidates_below_a_fraction_of_the_best() {
        let probs = [0.5, 0.3, 0.15, 0.05];
        // 0.25 of the best is 0.125: 0.05 goes, 0.15 stays.
        let got = frequencies(&with_probs(&probs), &params(1.0, 0, 1.0, 0.25), DRAWS, 9);
        assert_frequencies(&got, &[0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0]);
    }

    #[test]
    fn filters_use_temperature_one_probabilities_then_temperature_applies() {
        let probs = [0.5, 0.3, 0.15, 0.05];
        // top-p 0.7 keeps two at temperature 1, then temperature 2 draws them by sqrt(p).
        let got = frequencies(&with_probs(&probs), &params(2.0, 0, 0.7, 0.0), DRAWS, 13);
        let (a, b) = (0.5f64.sqrt(), 0.3f64.sqrt());
        assert_frequencies(&got, &[a / (a + b), b / (a + b), 0.0, 0.0]);
    }

    #[test]
    fn the_same_seed_gives_the_same_draws_and_another_seed_does_not() {
        let candidates = with_probs(&[0.2; 5]);
        let p = params(1.0, 0, 1.0, 0.0);
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..64)
                .map(|_| sample(&candidates, &p, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }

    #[test]
    fn uniform_stays_in_the_unit_interval_with_mean_one_half() {
        let mut rng = Rng::new(0);
        let xs: Vec<f64> = (0..10000).map(|_| rng.uniform()).collect();
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        // The mean of 10000 uniforms has standard deviation 0.0029; 0.015 is 5 sigma.
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.015, "mean {mean}");
    }

    #[test]
    fn out_of_range_parameters_are_refused_with_the_flag_name() {
        assert!(params(0.8, 40, 0.95, 0.05).check().is_ok());
        let bad = [params(-1.0, 0, 1.0, 0.0), params(f32::NAN, 0, 1.0, 0.0)];
        for p in bad {
            assert!(p.check().unwrap_err().to_string().contains("--temperature"));
        }
        assert!(params(1.0, 0, 0.0, 0.0)
            .check()
            .unwrap_err()
            .to_string()
            .contains("--top-p"));
        assert!(params(1.0, 0, 1.0, 1.5)
            .check()
            .unwrap_err()
            .to_string()
            .contains("--min-p"));
    }
}
