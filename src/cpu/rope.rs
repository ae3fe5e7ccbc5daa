//! RoPE reference: angles `pos * inv_freq[i]` rounded to f32 as transformers computes them (the
//! GPU kernels do the same), sin / cos and the rotation in f64. The one reference of every RoPE
//! path (prefill Q / K, K on KV append, decode Q).

use crate::ops::rope::{inv_freq, Rope, RopeLayout};

/// Rotate `x: [tokens, heads, rope.head_dim]` in place by `rope`; token t at position `pos0 + t`.
pub fn apply(x: &mut [f32], heads: usize, rope: &Rope, pos0: usize) {
    let freqs = inv_freq(rope.theta, rope.rotary_dim, rope.scaling);
    self::rope(
        x,
        heads,
        rope.head_dim,
        &freqs,
        rope.layout == RopeLayout::Interleaved,
        pos0,
    );
}

/// Rotate `x: [tokens, heads, head_dim]` in place; token t at position `offset + t`.
/// `interleaved` pairs `(2i, 2i+1)`, otherwise `(i, i + rotary_dim/2)`.
pub fn rope(x: &mut [f32], heads: usize, head_dim: usize, inv_freq: &[f64], interleaved: bool, offset: usize) {
    let half = inv_freq.len();
    if head_dim == 0 || heads == 0 {
        return;
    }
    for (row, h) in x.chunks_mut(head_dim).enumerate() {
        let pos = (offset + row / heads) as f64;
        for (i, &f) in inv_freq.iter().enumerate() {
            let (a, b) = if interleaved { (2 * i, 2 * i + 1) } else { (i, i + half) };
            let (s, c) = f64::from(pos as f32 * f as f32).sin_cos();
            let (x1, x2) = (f64::from(h[a]), f64::from(h[b]));
            h[a] = (x1 * c - x2 * s) as f32;
            h[b] = (x2 * c + x1 * s) as f32;
        }
    }
}
