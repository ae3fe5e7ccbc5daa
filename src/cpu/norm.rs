//! LayerNorm / RMSNorm references (f64 statistics), with the optional residual add.

/// `x + r` rounded to f32 once, exactly as the kernel forms (and stores) it.
pub fn residual_sum(x: &[f32], r: Option<&[f32]>) -> Vec<f32> {
    match r {
        Some(r) => x.iter().zip(r).map(|(a, b)| a + b).collect(),
        None => x.to_vec(),
    }
}

/// LayerNorm of `x [+ r]` over rows of length `cols`: `(v - mean) / sqrt(var + eps) * gamma + beta`
/// with the biased variance (as PyTorch).
pub fn layer_norm(
    x: &[f32],
    r: Option<&[f32]>,
    gamma: &[f32],
    beta: Option<&[f32]>,
    cols: usize,
    eps: f32,
) -> Vec<f32> {
    norm(x, r, gamma, beta, cols, eps, false)
}

/// RMSNorm of `x [+ r]`: `v / sqrt(mean(v^2) + eps) * gamma`.
pub fn rms_norm(x: &[f32], r: Option<&[f32]>, gamma: &[f32], cols: usize, eps: f32) -> Vec<f32> {
    norm(x, r, gamma, None, cols, eps, true)
}

fn norm(
    x: &[f32],
    r: Option<&[f32]>,
    gamma: &[f32],
    beta: Option<&[f32]>,
    cols: usize,
    eps: f32,
    rms: bool,
) -> Vec<f32> {
    let v = residual_sum(x, r);
    let mut out = vec![0.0f32; v.len()];
    if cols == 0 {
        return out;
    }
    for (row, o) in v.chunks(cols).zip(out.chunks_mut(cols)) {
        let n = cols as f64;
        let mean = if rms {
            0.0
        } else {
            row.iter().map(|&a| f64::from(a)).sum::<f64>() / n
        };
        let var = row.iter().map(|&a| (f64::from(a) - mean).powi(2)).sum::<f64>() / n;
        let inv = 1.0 / (var + f64::from(eps)).sqrt();
        for (c, (o, &a)) in o.iter_mut().zip(row).enumerate() {
            let b = beta.map_or(0.0, |b| f64::from(b[c]));
            *o = ((f64::from(a) - mean) * inv * f64::from(gamma[c]) + b) as f32;
        }
    }
    out
}

/// RMSNorm with an optional shift added after the scale (for completeness of the kernel's flags).
pub fn rms_norm_with_bias(
    x: &[f32],
    r: Option<&[f32]>,
    gamma: &[f32],
    beta: Option<&[f32]>,
    cols: usize,
    eps: f32,
) -> Vec<f32> {
    norm(x, r, gamma, beta, cols, eps, true)
}
