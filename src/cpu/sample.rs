//! CPU reference of `shaders/sample.wgsl`: the same steps in the same f32 arithmetic and the
//! same counter-based RNG, so the GPU's ids equal these except where a sum's order (top-p mass)
//! or the last ulp of the GPU's `exp` / `log` decides (measured rare: see tests/gpu/sample.rs).
//!
//! The sampling semantics are the CPU [`crate::generate::Sampler`]'s: keep the top-k tokens by
//! (logit desc, index asc), then those with probability ≥ min_p × the top one, then the smallest
//! prefix whose probability (relative to the top-k set) reaches top_p; draw among them ∝
//! exp(logit / T). [`distribution`] gives those probabilities exactly (f64), for statistical tests.

use crate::generate::SamplingParams;
use crate::ops::sample::{resolve, Mode, Resolved, NONE};

fn hash(x: u32) -> u32 {
    let mut v = x;
    v ^= v >> 16;
    v = v.wrapping_mul(0x7feb_352d);
    v ^= v >> 15;
    v = v.wrapping_mul(0x846c_a68b);
    v ^= v >> 16;
    v
}

fn round_key(r: &Resolved, step: u32, round: u32) -> u32 {
    hash(round ^ hash(step ^ hash(r.seed.1 ^ hash(r.seed.0))))
}

fn gumbel(key: u32, i: u32) -> f32 {
    gumbel_of_bits(hash(hash(i ^ key) ^ 0x9e37_79b9))
}

/// Gumbel noise from a 32-bit hash: u from 23 bits, so u ≤ 1 - 2^-24 < 1 (24 bits rounded the
/// top value to exactly 1: +inf once in 2^24 tokens); -ln(u) kept ≥ 2^-24 as the shader keeps it
/// (see sample.wgsl). Finite for every hash.
fn gumbel_of_bits(h: u32) -> f32 {
    let u = ((h >> 9) as f32 + 0.5) * (1.0 / 8_388_608.0);
    -(-u.ln()).max(1.0 / 16_777_216.0).ln()
}

fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    if i == NONE {
        return false;
    }
    if bi == NONE {
        return true;
    }
    v > bv || (v == bv && i < bi)
}

fn fkey(v: f32) -> u32 {
    let b = v.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

fn key(l: f32, i: u32) -> (u32, u32) {
    (fkey(l), !i & 0xff_ffff)
}

/// The logits as the kernels see them: `None` where masked out or NaN, penalised where seen.
fn processed(logits: &[f32], seen: &[bool], mask: Option<&[u32]>, r: &Resolved) -> Vec<Option<f32>> {
    logits
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            if mask.is_some_and(|m| m[i / 32] & (1 << (i % 32)) == 0) || l.is_nan() {
                return None;
            }
            match r.penalty {
                Some(p) if seen[i] => Some(if l > 0.0 { l / p } else { l * p }),
                _ => Some(l),
            }
        })
        .collect()
}

/// One draw as the GPU makes it: `seen` is the context bitmask (updated with the drawn id),
/// `step` the RNG counter. Returns [`NONE`] when no token is valid.
pub fn sample(logits: &[f32], seen: &mut [bool], mask: Option<&[u32]>, params: &SamplingParams, step: u32) -> u32 {
    let r = resolve(params, logits.len());
    let l = processed(logits, seen, mask, &r);
    let id = match r.mode {
        Mode::Greedy | Mode::Temperature => {
            let k = round_key(&r, step, 0);
            let (mut bv, mut bi) = (0.0f32, NONE);
            for (i, v) in l.iter().enumerate() {
                if let Some(v) = *v {
                    let s = if r.mode == Mode::Temperature {
                        v + r.temperature * gumbel(k, i as u32)
                    } else {
                        v
                    };
                    if better(s, i as u32, bv, bi) {
                        (bv, bi) = (s, i as u32);
                    }
                }
            }
            bi
        }
        Mode::Filtered => filtered(&l, &r, step),
    };
    if id != NONE {
        seen[id as usize] = true;
    }
    id
}

fn filtered(l: &[Option<f32>], r: &Resolved, step: u32) -> u32 {
    let valid: Vec<(u32, f32)> = l
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i as u32, v)))
        .collect();
    let (mut m, mut top) = (0.0f32, NONE);
    for &(i, v) in &valid {
        if better(v, i, m, top) {
            (m, top) = (v, i);
        }
    }
    if top == NONE {
        return NONE;
    }
    let t = r.temperature;
    let d = |v: f32| if v == m { 0.0 } else { (v - m) / t };
    let kth = (r.top_k > 0 && (r.top_k as usize) < valid.len()).then(|| {
        let mut keys: Vec<(u32, u32)> = valid.iter().map(|&(i, v)| key(v, i)).collect();
        keys.sort_unstable_by(|a, b| b.cmp(a));
        keys[r.top_k as usize - 1]
    });
    let in_k = |i: u32, v: f32| kth.is_none_or(|k| key(v, i) >= k);
    let use_p = r.top_p < 1.0;
    let z: f32 = if use_p {
        valid
            .iter()
            .filter(|&&(i, v)| in_k(i, v))
            .map(|&(_, v)| d(v).exp())
            .sum()
    } else {
        0.0
    };
    let mut bound: Option<(u32, u32)> = None;
    for round in 0..64 {
        let k = round_key(r, step, round);
        let (mut cv, mut ci) = (0.0f32, NONE);
        for &(i, v) in &valid {
            let above = bound.is_none_or(|b| key(v, i) > b);
            let dv = d(v);
            let in_m = r.min_p <= 0.0 || dv.exp() >= r.min_p;
            if in_k(i, v) && above && in_m {
                let s = dv + gumbel(k, i);
                if better(s, i, cv, ci) {
                    (cv, ci) = (s, i);
                }
            }
        }
        if !use_p || ci == NONE || ci == top {
            return if ci == NONE { top } else { ci };
        }
        let kj = key(l[ci as usize].unwrap_or(0.0), ci);
        let before: f32 = valid
            .iter()
            .filter(|&&(i, v)| key(v, i) > kj && in_k(i, v))
            .map(|&(_, v)| d(v).exp())
            .sum();
        if before < r.top_p * z {
            return ci;
        }
        bound = Some(kj);
    }
    top
}

/// The exact probability of each token under the CPU Sampler's semantics (f64; the penalty and
/// mask applied as in [`sample`]): what the draws of [`sample`] and the GPU must follow.
pub fn distribution(logits: &[f32], seen: &[bool], mask: Option<&[u32]>, params: &SamplingParams) -> Vec<f64> {
    let r = resolve(params, logits.len());
    let l = processed(logits, seen, mask, &r);
    let mut out = vec![0.0; logits.len()];
    let mut cand: Vec<(usize, f32)> = l.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i, v))).collect();
    if cand.is_empty() {
        return out;
    }
    cand.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.0.cmp(&b.0))
    });
    if r.mode == Mode::Greedy {
        out[cand[0].0] = 1.0;
        return out;
    }
    if r.top_k > 0 && (r.top_k as usize) < cand.len() {
        cand.truncate(r.top_k as usize);
    }
    let t = f64::from(r.temperature);
    let max = f64::from(cand[0].1);
    let probs: Vec<f64> = cand
        .iter()
        .map(|&(_, v)| {
            if f64::from(v) == max {
                1.0
            } else {
                ((f64::from(v) - max) / t).exp()
            }
        })
        .collect();
    let sum: f64 = probs.iter().sum();
    let probs: Vec<f64> = probs.iter().map(|q| q / sum).collect();
    let mut keep = probs.len();
    if r.min_p > 0.0 {
        let floor = f64::from(r.min_p) * probs[0];
        keep = keep.min(probs.iter().take_while(|&&q| q >= floor).count().max(1));
    }
    if r.top_p < 1.0 {
        let mut acc = 0.0;
        let mut n = 0;
        for &q in &probs[..keep] {
            if acc >= f64::from(r.top_p) && n > 0 {
                break;
            }
            acc += q;
            n += 1;
        }
        keep = n.max(1);
    }
    let total: f64 = probs[..keep].iter().sum();
    for (k, &(i, _)) in cand[..keep].iter().enumerate() {
        out[i] = probs[k] / total;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chi-square statistic of `counts` (n draws) against `probs`, over tokens with expected ≥ 5.
    fn chi2(counts: &[u32], probs: &[f64], n: u32) -> (f64, usize, u32) {
        let (mut x, mut df, mut outside) = (0.0, 0usize, 0);
        for (c, p) in counts.iter().zip(probs) {
            let e = p * f64::from(n);
            if *p == 0.0 {
                outside += c;
            } else if e >= 5.0 {
                x += (f64::from(*c) - e).powi(2) / e;
                df += 1;
            }
        }
        (x, df.saturating_sub(1), outside)
    }

    #[test]
    fn draws_follow_the_sampler_distribution() {
        // 10k draws per case; chi-square against the exact f64 distribution at p = 0.001
        // (critical values for df ≤ 12 are below 33) and never a token of probability 0.
        let logits = [2.0f32, 1.5, 1.5, 0.3, -0.7, f32::NAN, 1.0, -3.0, 0.9, 2.0, -1.0, 0.0];
        let cases = [
            SamplingParams {
                temperature: 1.0,
                ..Default::default()
            },
            SamplingParams {
                temperature: 0.7,
                top_k: 4,
                ..Default::default()
            },
            SamplingParams {
                temperature: 1.3,
                top_p: 0.8,
                ..Default::default()
            },
            SamplingParams {
                temperature: 1.0,
                min_p: 0.2,
                ..Default::default()
            },
            SamplingParams {
                temperature: 0.9,
                top_k: 6,
                top_p: 0.7,
                min_p: 0.05,
                repetition_penalty: 1.3,
                ..Default::default()
            },
        ];
        for (c, params) in cases.iter().enumerate() {
            let mut seen = vec![false; logits.len()];
            seen[0] = true;
            seen[7] = true;
            let want = distribution(
                &logits,
                &seen,
                None,
                &SamplingParams {
                    seed: 5,
                    ..params.clone()
                },
            );
            let n = 10_000u32;
            let mut counts = vec![0u32; logits.len()];
            for step in 0..n {
                let mut s = seen.clone();
                let id = sample(
                    &logits,
                    &mut s,
                    None,
                    &SamplingParams {
                        seed: 5 + c as u64,
                        ..params.clone()
                    },
                    step,
                );
                counts[id as usize] += 1;
            }
            let (x, df, outside) = chi2(&counts, &want, n);
            assert_eq!(
                outside, 0,
                "case {c}: draws outside the kept set: {counts:?} vs {want:?}"
            );
            assert!(
                df >= 1 && x < 33.0,
                "case {c}: chi2 {x:.1} with {df} df: {counts:?} vs {want:?}"
            );
        }
    }

    #[test]
    fn greedy_ties_nan_mask_and_penalty() {
        let mut seen = vec![false; 5];
        let g = SamplingParams::default();
        assert_eq!(sample(&[1.0, 3.0, 3.0, f32::NAN, -1.0], &mut seen, None, &g, 0), 1);
        assert_eq!(sample(&[f32::NAN; 5], &mut seen, None, &g, 0), NONE);
        let mask = [0b11101u32];
        assert_eq!(sample(&[1.0, 3.0, 2.0, 0.0, 2.5], &mut seen, Some(&mask), &g, 0), 4);
        let mut seen = vec![false, true, false, false, false];
        let p = SamplingParams {
            repetition_penalty: 2.0,
            ..g
        };
        assert_eq!(sample(&[1.0, 3.0, 2.0, 0.0, 1.4], &mut seen, None, &p, 0), 2);
        assert!(seen[2]);
    }
}

#[cfg(test)]
mod gumbel_tests {
    #[test]
    fn gumbel_noise_is_finite_at_both_ends_of_the_hash() {
        // The old 24-bit mapping gave u = 1 (+inf noise) for h >> 8 = 2^24 - 1.
        for h in [0u32, 1, 511, 512, 0xffff_fe00, 0xffff_feff, u32::MAX - 1, u32::MAX] {
            let g = super::gumbel_of_bits(h);
            assert!(g.is_finite(), "h {h:#x}: {g}");
        }
        assert!(super::gumbel_of_bits(u32::MAX) > super::gumbel_of_bits(0xffff_0000));
        assert!(super::gumbel_of_bits(0) < -2.0);
    }
}
