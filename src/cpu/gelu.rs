//! GELU references: an f64 erf accurate to ~1e-15 (the ground truth), each kernel formula in f64
//! (what the GPU is tested against) and in f32 (what the error table measures), and the table.

use std::f64::consts::{FRAC_2_SQRT_PI, SQRT_2};

/// erf in f64: Taylor series below |x| = 2.5, the erfc continued fraction above (both ~1e-15).
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 2.5 {
        let (mut term, mut sum, x2) = (a, a, a * a);
        for n in 1..200 {
            term *= -x2 / n as f64;
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * FRAC_2_SQRT_PI
    } else {
        // erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + 2/(a + ...)))))
        let mut f = a;
        for k in (1..120).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / (f * std::f64::consts::PI.sqrt())
    };
    r.copysign(x)
}

/// GELU with the exact erf: the ground truth.
pub fn gelu_exact(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / SQRT_2))
}

/// Which formula (mirrors `ops::gelu::Gelu`, which the reference cannot depend on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formula {
    /// A&S 7.1.26 erf.
    Erf,
    /// tanh approximation.
    Tanh,
    /// Eigen's rational erf.
    ErfRational,
}

const AS: [f64; 5] = [0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429];
const ALPHA: [f64; 7] = [
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
];
const BETA: [f64; 5] = [
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
];

macro_rules! formula {
    ($name:ident, $t:ty) => {
        /// The kernel's formula evaluated in this float type.
        pub fn $name(f: Formula, x: $t) -> $t {
            match f {
                Formula::Tanh => {
                    let u = 0.797_884_560_802_865_4_f64 as $t * (x + 0.044715 as $t * x * x * x);
                    x / (1.0 + (-2.0 * u).min(80.0).exp())
                }
                Formula::Erf => {
                    let z = x * std::f64::consts::FRAC_1_SQRT_2 as $t;
                    let a = z.abs();
                    let t = 1.0 / (1.0 + 0.3275911 as $t * a);
                    let poly =
                        t * (AS[0] as $t + t * (AS[1] as $t + t * (AS[2] as $t + t * (AS[3] as $t + t * AS[4] as $t))));
                    let e = (1.0 - poly * (-a * a).exp()).copysign(z);
                    0.5 * x * (1.0 + e)
                }
                Formula::ErfRational => {
                    let z = (x * std::f64::consts::FRAC_1_SQRT_2 as $t).clamp(-4.0, 4.0);
                    let z2 = z * z;
                    let num = ALPHA[1..]
                        .iter()
                        .fold(ALPHA[0] as $t, |acc, &c| z2 * acc + c as $t);
                    let den = BETA[1..].iter().fold(BETA[0] as $t, |acc, &c| z2 * acc + c as $t);
                    0.5 * x * (1.0 + z * num / den)
                }
            }
        }
    };
}

formula!(gelu_formula, f64);
formula!(gelu_formula_f32, f32);

/// Largest |formula(x) - gelu_exact(x)| over `xs`, and where: (formula in f64, formula in f32).
pub fn max_error(f: Formula, xs: &[f32]) -> ((f64, f32), (f64, f32)) {
    let mut e64 = (0.0, 0.0);
    let mut e32 = (0.0, 0.0);
    for &x in xs {
        let exact = gelu_exact(f64::from(x));
        let d = (gelu_formula(f, f64::from(x)) - exact).abs();
        if d > e64.0 {
            e64 = (d, x);
        }
        let d = (f64::from(gelu_formula_f32(f, x)) - exact).abs();
        if d > e32.0 {
            e32 = (d, x);
        }
    }
    (e64, e32)
}

/// The dense grid of the error table: [-10, 10] in steps of 1e-4 (200001 points).
pub fn grid() -> Vec<f32> {
    (0..=200_000).map(|i| (-10.0 + i as f64 * 1e-4) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (3.0, 0.9999779095030014),
            (-1.5, -0.9661051464753108),
        ] {
            assert!((erf(x) - want).abs() < 1e-15, "erf({x}) = {} want {want}", erf(x));
        }
        assert!((1.0 - erf(5.0) - 1.537_459_794_428_035e-12).abs() < 3e-16);
    }
}
