//! Reference of the fused decode QKV (`ops::qkv`): RMSNorm of x, the projection of the
//! concatenated `[q; k; v]` weight (+ bias), the optional per-head RMSNorm of q and k (Qwen3's
//! `q_norm` / `k_norm`) and RoPE of q and k at the token's position. The KV cache's storage
//! rounding is the caller's (see `cpu::kv_cache`).

use super::linear::{self, Epi};
use super::norm::rms_norm;
use crate::ops::rope::Rope;

/// The weights and shape of one fused QKV (all f32 as the GPU reads them).
#[derive(Debug, Clone, Copy)]
pub struct QkvRef<'a> {
    /// The attention norm weight `[k]`.
    pub gamma: &'a [f32],
    /// `[n_heads·hd + 2 n_kv_heads·hd, k]`, q rows then k rows then v rows.
    pub w: &'a [f32],
    /// The concatenated bias `[n]`.
    pub bias: Option<&'a [f32]>,
    /// The per-head q and k norm weights `[hd]` each.
    pub qk_norm: Option<(&'a [f32], &'a [f32])>,
    /// Query heads.
    pub n_heads: usize,
    /// Key / value heads.
    pub n_kv_heads: usize,
    /// Values per head.
    pub head_dim: usize,
}

/// One token's projected values before the per-head norm and RoPE (`[n]`, f64 sums rounded to
/// f32): what the GPU's error bounds are stated against.
pub fn project(x: &[f32], r: &QkvRef, eps: f32) -> Vec<f32> {
    let k = x.len();
    let n = (r.n_heads + 2 * r.n_kv_heads) * r.head_dim;
    let xn = rms_norm(x, None, r.gamma, k, eps);
    linear::linear(
        &xn,
        r.w,
        1,
        n,
        k,
        Epi {
            bias: r.bias,
            ..Default::default()
        },
    )
}

/// q `[n_heads·hd]`, k and v `[n_kv_heads·hd]` of token x `[k]` at position `pos`.
pub fn fused_qkv(x: &[f32], r: &QkvRef, rope: Option<&Rope>, pos: usize, eps: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let y = project(x, r, eps);
    let (nq, nk, hd) = (r.n_heads * r.head_dim, r.n_kv_heads * r.head_dim, r.head_dim);
    let (mut q, mut k, v) = (y[..nq].to_vec(), y[nq..nq + nk].to_vec(), y[nq + nk..].to_vec());
    if let Some((qn, kn)) = r.qk_norm {
        // Each head's hd values as one RMSNorm row.
        q = rms_norm(&q, None, qn, hd, eps);
        k = rms_norm(&k, None, kn, hd, eps);
    }
    if let Some(rope) = rope {
        super::rope::apply(&mut q, r.n_heads, rope, pos);
        super::rope::apply(&mut k, r.n_kv_heads, rope, pos);
    }
    (q, k, v)
}
