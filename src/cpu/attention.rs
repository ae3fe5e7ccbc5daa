//! References for attention and its half-split RoPE (f64 accumulation); the KV-cache formats
//! are in [`super::kv_cache`].

/// Sizes of one attention: Q `[batch, q_len, n_heads, head_dim]`, K / V
/// `[batch, kv_len, n_kv_heads, head_dim]`.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    /// Sequences.
    pub batch: usize,
    /// Query tokens per sequence.
    pub q_len: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key tokens per sequence.
    pub kv_len: usize,
    /// KV heads (divides `n_heads`).
    pub n_kv_heads: usize,
    /// Head size.
    pub head_dim: usize,
}

/// Masking of one attention.
#[derive(Debug, Clone, Default)]
pub struct Mask {
    /// Query row r sees keys j <= q_pos0 + r.
    pub causal: bool,
    /// Position of query row 0; `None`: kv_len - q_len.
    pub q_pos0: Option<usize>,
    /// Valid keys per sequence (padding); `None`: all.
    pub kv_lens: Option<Vec<usize>>,
    /// Sliding window: query row r sees only keys j > q_pos0 + r - window.
    pub window: Option<usize>,
}

/// softmax(scale Q K^T + mask) V with grouped-query heads, for the query rows in `rows` (all when
/// `None`); other rows of the result stay 0. Rows that see no key give 0.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dims: Dims,
    mask: &Mask,
    scale: f32,
    rows: Option<&[usize]>,
) -> Vec<f32> {
    let Dims {
        batch,
        q_len,
        n_heads,
        kv_len,
        n_kv_heads,
        head_dim: d,
    } = dims;
    let group = n_heads / n_kv_heads;
    let q_pos0 = mask.q_pos0.unwrap_or(kv_len.saturating_sub(q_len));
    let all: Vec<usize> = (0..q_len).collect();
    let rows = rows.unwrap_or(&all);
    let mut out = vec![0.0f32; batch * q_len * n_heads * d];
    let mut s = vec![0.0f64; kv_len];
    let mut acc = vec![0.0f64; d];
    for b in 0..batch {
        let valid = mask.kv_lens.as_ref().map_or(kv_len, |l| l[b].min(kv_len));
        for &r in rows {
            let visible = if mask.causal { valid.min(q_pos0 + r + 1) } else { valid };
            let first = mask
                .window
                .map_or(0, |w| (q_pos0 + r + 1).saturating_sub(w))
                .min(visible);
            for h in 0..n_heads {
                let kvh = h / group;
                let qo = ((b * q_len + r) * n_heads + h) * d;
                let qrow = &q[qo..qo + d];
                let mut m = f64::NEG_INFINITY;
                for (j, sj) in s.iter_mut().enumerate().take(visible).skip(first) {
                    let ko = ((b * kv_len + j) * n_kv_heads + kvh) * d;
                    let dot: f64 = qrow
                        .iter()
                        .zip(&k[ko..ko + d])
                        .map(|(&a, &c)| f64::from(a) * f64::from(c))
                        .sum();
                    *sj = dot * f64::from(scale);
                    m = m.max(*sj);
                }
                if visible == first {
                    continue;
                }
                acc.iter_mut().for_each(|a| *a = 0.0);
                let mut total = 0.0;
                for (j, &sj) in s.iter().enumerate().take(visible).skip(first) {
                    let pj = (sj - m).exp();
                    total += pj;
                    let vo = ((b * kv_len + j) * n_kv_heads + kvh) * d;
                    for (a, &x) in acc.iter_mut().zip(&v[vo..vo + d]) {
                        *a += pj * f64::from(x);
                    }
                }
                for (o, a) in out[qo..qo + d].iter_mut().zip(&acc) {
                    *o = (a / total) as f32;
                }
            }
        }
    }
    out
}

/// The rows `rows` of `x` (`[.., rows, width]` flattened per batch entry of `q_len` rows).
pub fn select_rows(x: &[f32], q_len: usize, width: usize, rows: &[usize]) -> Vec<f32> {
    let batch = x.len() / (q_len * width).max(1);
    let mut out = Vec::with_capacity(batch * rows.len() * width);
    for b in 0..batch {
        for &r in rows {
            let o = (b * q_len + r) * width;
            out.extend_from_slice(&x[o..o + width]);
        }
    }
    out
}
