//! Elementwise references, in f64.

/// a + b
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) + f64::from(*y)) as f32)
        .collect()
}

/// a * b
pub fn mul(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) * f64::from(*y)) as f32)
        .collect()
}

/// x * sigmoid(x)
pub fn silu(a: &[f32]) -> Vec<f32> {
    a.iter()
        .map(|&x| {
            let x = f64::from(x);
            (x / (1.0 + (-x).exp())) as f32
        })
        .collect()
}
