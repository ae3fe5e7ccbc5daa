//! Comparing GPU output with a reference under a stated tolerance.

/// |got - want| ≤ atol + rtol · |want| for every element, and no NaN where the reference has none.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Absolute part.
    pub atol: f32,
    /// Relative part.
    pub rtol: f32,
}

impl Tolerance {
    /// Exact equality.
    pub const EXACT: Tolerance = Tolerance { atol: 0.0, rtol: 0.0 };
}

/// Statistics of a comparison.
#[derive(Debug, Clone, Copy, Default)]
pub struct Diff {
    /// Largest absolute difference.
    pub max_abs: f32,
    /// Index of the worst element relative to its allowance.
    pub worst: usize,
}

/// Check `got` against `want`; the error names the worst element, its values and the tolerance.
pub fn check_close(what: &str, got: &[f32], want: &[f32], tol: Tolerance) -> Result<Diff, String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: length {} != reference length {}",
            got.len(),
            want.len()
        ));
    }
    let mut diff = Diff::default();
    let mut worst_ratio = -1.0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let bad_nan = g.is_nan() != w.is_nan();
        let same_inf = g.is_infinite() && g == w;
        let d = if same_inf || (g.is_nan() && w.is_nan()) {
            0.0
        } else {
            (g - w).abs()
        };
        let allowed = tol.atol + tol.rtol * w.abs();
        if bad_nan || (d > 0.0 && (d > allowed || allowed.is_nan())) {
            return Err(format!(
                "{what}: element {i}: got {g}, want {w}, |diff| {d:e} > allowed {allowed:e} (atol {:e}, rtol {:e})",
                tol.atol, tol.rtol
            ));
        }
        if d > diff.max_abs {
            diff.max_abs = d;
        }
        let ratio = if allowed > 0.0 { d / allowed } else { 0.0 };
        if ratio > worst_ratio {
            worst_ratio = ratio;
            diff.worst = i;
        }
    }
    Ok(diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catches_differences_nan_and_length() {
        let t = Tolerance { atol: 1e-3, rtol: 0.0 };
        assert!(check_close("x", &[1.0, 2.0], &[1.0, 2.0005], t).is_ok());
        assert!(check_close("x", &[1.0, 2.0], &[1.0, 2.01], t).is_err());
        assert!(check_close("x", &[f32::NAN], &[0.0], t).is_err());
        assert!(check_close("x", &[1.0], &[1.0, 2.0], t).is_err());
        assert!(check_close("x", &[f32::NEG_INFINITY], &[f32::NEG_INFINITY], Tolerance::EXACT).is_ok());
    }
}
