//! KV cache reference: what an append leaves in the cache. K is rotated by RoPE at its rows'
//! positions (the reference frequencies of [`crate::ops::rope::inv_freq`], angles rounded to f32
//! as transformers does: [`super::rope::rope`]), then K and V are stored in the cache's format:
//! f32 as they are, f16 rounded, int8 as codes `round(x · 127 / absmax)` with one f16 absmax per
//! (token, head) row.

use crate::ops::kv_cache::KvDType;
use crate::ops::rope::Rope;
use half::f16;

/// The values (as f32, int8 dequantised) a cache of `dtype` holds after appending `k_new`,
/// `v_new` = `[tokens, heads, head_dim]` at rows `pos0..`, K rotated by `rope` when given.
pub fn append(
    k_new: &[f32],
    v_new: &[f32],
    heads: usize,
    head_dim: usize,
    pos0: usize,
    rope: Option<Rope>,
    dtype: KvDType,
) -> (Vec<f32>, Vec<f32>) {
    let mut k = k_new.to_vec();
    if let Some(r) = rope {
        super::rope::apply(&mut k, heads, &r, pos0);
    }
    (stored(&k, head_dim, dtype), stored(v_new, head_dim, dtype))
}

/// `x` (rows of `head_dim`) as a cache of `dtype` stores it, read back as f32.
pub fn stored(x: &[f32], head_dim: usize, dtype: KvDType) -> Vec<f32> {
    match dtype {
        KvDType::F32 => x.to_vec(),
        KvDType::F16 => to_f16(x),
        KvDType::Int8 => {
            let (codes, absmax) = quantize_i8(x, head_dim);
            dequantize_i8(&codes, &absmax, head_dim)
        }
    }
}

/// f16 rounding of each value (the f16 KV format).
pub fn to_f16(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
}

/// The int8 KV format of `x` in rows of `head_dim`: (codes, absmax per row rounded to f16),
/// `value ≈ code * absmax / 127`, codes rounded half to even as WGSL `round` does.
pub fn quantize_i8(x: &[f32], head_dim: usize) -> (Vec<i8>, Vec<f32>) {
    let mut codes = Vec::with_capacity(x.len());
    let mut absmax = Vec::with_capacity(x.len() / head_dim.max(1));
    for row in x.chunks(head_dim) {
        let m = row.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
        let stored = f16::from_f32(m).to_f32();
        let inv = if stored > 0.0 { 127.0 / stored } else { 0.0 };
        codes.extend(
            row.iter()
                .map(|&v| (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8),
        );
        absmax.push(stored);
    }
    (codes, absmax)
}

/// Values of the int8 format.
pub fn dequantize_i8(codes: &[i8], absmax: &[f32], head_dim: usize) -> Vec<f32> {
    codes
        .chunks(head_dim)
        .zip(absmax)
        .flat_map(|(row, &m)| row.iter().map(move |&c| f32::from(c) * (m / 127.0)))
        .collect()
}
