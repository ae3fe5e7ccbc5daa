//! CPU reference implementations (f64 accumulation) and comparison helpers.
//!
//! Compiled only with the `reference` feature (tests, benches): never shipped in the wasm
//! package. Each GPU op has its reference here under the same name.

pub mod attention;
pub mod compare;
pub mod elementwise;
pub mod embedding;
pub mod ffn;
pub mod gelu;
pub mod kv_cache;
pub mod linear;
pub mod norm;
pub mod pooling;
pub mod qkv;
pub mod quant;
pub mod repeat_kv;
pub mod rope;
pub mod sample;
pub mod softmax;
pub mod synthetic;

/// Deterministic pseudo-random values in [lo, hi) (xorshift; no dependency, same on every target).
pub fn random(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            lo + (hi - lo) * u
        })
        .collect()
}
