//! Helpers shared by the GEMV, matmul and FFN tests.

use kjarni_web::cpu::linear::{grid_values, round_to};
use kjarni_web::{DType, Gpu, GpuTensor};

/// In headless Chromium (SwiftShader, a CPU rasteriser that compiles every pipeline with LLVM) the
/// tests run a representative subset of the native matrices: every kernel, dtype and alignment
/// path, fewer shapes and launch variants. The full matrices run natively.
pub fn browser() -> bool {
    cfg!(target_arch = "wasm32")
}

/// Keep every item natively, only those with `keep` true in the browser.
pub fn subset<T: Copy>(items: &[T], keep: impl Fn(&T) -> bool) -> Vec<T> {
    items.iter().copied().filter(|t| !browser() || keep(t)).collect()
}

/// The weight dtypes every linear kernel supports.
pub const DTYPES: [DType; 3] = [DType::BF16, DType::F16, DType::F32];

/// Exact-arithmetic data: x on a grid of 1/8 in [-4, 4], weights on a grid of 1/16 in [-1, 1].
/// Every product is a multiple of 2^-7 below 4 in magnitude, and sums of fewer than 2^14 such
/// products are exact in f32 in any order, so GPU and reference must agree exactly: any
/// indexing or alignment mistake (a skipped, repeated or shifted element) shows.
pub fn exact_data(m: usize, n: usize, k: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    assert!(k < 1 << 14);
    (
        grid_values(m * k, seed, 32, 0.125),
        grid_values(n * k, seed + 1000, 16, 1.0 / 16.0),
    )
}

/// Upload weights as `dtype`; returns the tensor and the values it holds.
pub fn weights(gpu: &Gpu, name: &str, n: usize, k: usize, dtype: DType, w: &[f32]) -> (GpuTensor, Vec<f32>) {
    let t = GpuTensor::from_f32(gpu, name, &[n, k], dtype, w).unwrap();
    (t, round_to(dtype, w))
}

/// |got - want| ≤ rel · scale[i] + rtol · |want| for every element, where `scale` is Σ|x·w| of
/// the output (the size of any summation's rounding error).
pub fn assert_scaled(what: &str, got: &[f32], want: &[f32], scale: &[f32], rel: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for i in 0..got.len() {
        let allowed = rel * scale[i] + rtol * want[i].abs() + 1e-30;
        let d = (got[i] - want[i]).abs();
        assert!(
            d <= allowed,
            "{what}: element {i}: got {}, want {}, |diff| {d:e} > allowed {allowed:e}",
            got[i],
            want[i]
        );
    }
}
