//! Reference for the fused SwiGLU FFN projection (decode): `h[n] = silu(Wg[n]·x) · (Wu[n]·x)`.

/// `silu(Σ_k wg[n, k] x[k]) · Σ_k wu[n, k] x[k]` in f64, for weights `[n, k]` (values as stored).
pub fn swiglu(x: &[f32], w_gate: &[f32], w_up: &[f32], n: usize, k: usize) -> Vec<f32> {
    (0..n)
        .map(|j| {
            let dot = |w: &[f32]| -> f64 {
                w[j * k..(j + 1) * k]
                    .iter()
                    .zip(x)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum()
            };
            let g = dot(w_gate);
            let u = dot(w_up);
            (g / (1.0 + (-g).exp()) * u) as f32
        })
        .collect()
}
