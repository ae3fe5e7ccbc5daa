//! Softmax references: the row softmax, and the masked softmax of attention scores
//! `[batch * heads, q_len, k_len]` (masked keys become -inf before [`softmax`], so nothing
//! masked can leak and empty rows give zeros).

/// Row softmax of `scale * x` over rows of length `cols`, accumulated in f64.
/// -inf entries get probability 0; an all -inf row gives zeros.
pub fn softmax(x: &[f32], cols: usize, scale: f32) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    if cols == 0 {
        return out;
    }
    for (row, o) in x.chunks(cols).zip(out.chunks_mut(cols)) {
        let s: Vec<f64> = row.iter().map(|&v| f64::from(v * scale)).collect();
        let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if m == f64::NEG_INFINITY {
            continue;
        }
        let sum: f64 = s.iter().map(|&v| (v - m).exp()).sum();
        for (o, &v) in o.iter_mut().zip(&s) {
            *o = ((v - m).exp() / sum) as f32;
        }
    }
    out
}

/// The padding part of the mask.
#[derive(Debug, Clone, Copy)]
pub enum Padding<'a> {
    /// Every key.
    None,
    /// Batch entry b sees keys `0..lengths[b]`.
    Lengths(&'a [u32]),
    /// Batch entry b sees key j where `keep[b * k_len + j] != 0`.
    Keep(&'a [f32]),
}

/// Softmax of `scale * x` with a causal bound (`Some(offset)`: query i sees keys `0..=offset + i`)
/// and padding.
pub fn masked_softmax(
    x: &[f32],
    heads: usize,
    q_len: usize,
    k_len: usize,
    scale: f32,
    causal: Option<usize>,
    padding: Padding,
) -> Vec<f32> {
    let mut s = x.to_vec();
    for (row, r) in s.chunks_mut(k_len.max(1)).enumerate() {
        let i = row % q_len.max(1);
        let b = row / q_len.max(1) / heads.max(1);
        for (j, v) in r.iter_mut().enumerate() {
            let visible = causal.is_none_or(|o| j <= o + i)
                && match padding {
                    Padding::None => true,
                    Padding::Lengths(l) => j < l[b] as usize,
                    Padding::Keep(k) => k[b * k_len + j] != 0.0,
                };
            if !visible {
                *v = f32::NEG_INFINITY;
            }
        }
    }
    softmax(&s, k_len, scale)
}
