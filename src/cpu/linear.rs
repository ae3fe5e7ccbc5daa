//! References for the linear kernels (GEMV, tiled matmul) and their fused epilogues, in f64.

use crate::gpu::DType;
use crate::ops::linear::Act;

/// The epilogue of the reference: what follows `v = x · wᵀ`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epi<'a> {
    /// Bias `[n]`.
    pub bias: Option<&'a [f32]>,
    /// Activation after the bias.
    pub act: Act,
    /// `y = act(..) + r` (`[m, n]`).
    pub add: Option<&'a [f32]>,
    /// `y = act(..) * r` (`[m, n]`).
    pub mul: Option<&'a [f32]>,
}

/// `y[m, n] = epi(Σ_k x[m, k] · w[n, k])` for x `[m, k]` and w `[n, k]` (PyTorch Linear layout),
/// accumulated in f64. `w` holds the weight values as stored (already rounded to their dtype,
/// see [`round_to`]).
pub fn linear(x: &[f32], w: &[f32], m: usize, n: usize, k: usize, epi: Epi) -> Vec<f32> {
    let mut y = vec![0.0f32; m * n];
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            let mut v: f64 = xr.iter().zip(wr).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
            if let Some(b) = epi.bias {
                v += f64::from(b[j]);
            }
            v = act(epi.act, v);
            let idx = i * n + j;
            if let Some(r) = epi.add {
                v += f64::from(r[idx]);
            }
            if let Some(r) = epi.mul {
                v *= f64::from(r[idx]);
            }
            y[idx] = v as f32;
        }
    }
    y
}

/// `Σ_k |x[m, k] · w[n, k]|` per output: the scale of the rounding error of any summation order.
pub fn abs_dot(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|t| (f64::from(x[i * k + t]) * f64::from(w[j * k + t])).abs())
                .sum();
            y[i * n + j] = s as f32;
        }
    }
    y
}

/// An activation in f64.
pub fn act(a: Act, v: f64) -> f64 {
    match a {
        Act::None => v,
        Act::Gelu => super::gelu::gelu_exact(v),
        Act::Silu => v / (1.0 + (-v).exp()),
    }
}

/// The values a weight tensor of `dtype` holds for `v` (round to nearest even, as `GpuTensor::from_f32`).
pub fn round_to(dtype: DType, v: &[f32]) -> Vec<f32> {
    match dtype {
        DType::F16 => v.iter().map(|&a| half::f16::from_f32(a).to_f32()).collect(),
        DType::BF16 => v.iter().map(|&a| half::bf16::from_f32(a).to_f32()).collect(),
        _ => v.to_vec(),
    }
}

/// Values on a dyadic grid, `step · i` for integers `|i| ≤ span`: exactly representable in bf16,
/// f16 and f32, and so are their products and sums of up to 2^24 / (span² ...) terms, so kernels
/// can be checked for exact equality (any indexing mistake changes the result).
pub fn grid_values(n: usize, seed: u64, span: i32, step: f32) -> Vec<f32> {
    super::random(n, seed, 0.0, 1.0)
        .into_iter()
        .map(|u| ((u * (2 * span + 1) as f32).floor() as i32 - span) as f32 * step)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_applies_the_epilogue_in_order() {
        // x = [1, 2], w = [[1, 1], [2, -1]] → v = [3, 0]; bias [1, -1] → [4, -1]; silu; + [10, 20].
        let y = linear(
            &[1.0, 2.0],
            &[1.0, 1.0, 2.0, -1.0],
            1,
            2,
            2,
            Epi {
                bias: Some(&[1.0, -1.0]),
                act: Act::Silu,
                add: Some(&[10.0, 20.0]),
                mul: None,
            },
        );
        let silu = |v: f64| v / (1.0 + (-v).exp());
        assert!((f64::from(y[0]) - (silu(4.0) + 10.0)).abs() < 1e-5);
        assert!((f64::from(y[1]) - (silu(-1.0) + 20.0)).abs() < 1e-5);
        let g = grid_values(1000, 1, 4, 0.25);
        assert!(g.iter().all(|&v| (-1.0..=1.0).contains(&v) && (v * 4.0).fract() == 0.0));
        assert!(g.contains(&-1.0) && g.contains(&1.0));
    }
}
