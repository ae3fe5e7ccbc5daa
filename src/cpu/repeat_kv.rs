//! repeat_kv reference: `[tokens, kv_heads, d]` -> `[tokens, kv_heads * n_rep, d]`, head h from h / n_rep.

/// Repeat every kv head `n_rep` times.
pub fn repeat_kv(x: &[f32], kv_heads: usize, d: usize, n_rep: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len() * n_rep);
    for token in x.chunks(kv_heads * d) {
        for head in token.chunks(d) {
            for _ in 0..n_rep {
                out.extend_from_slice(head);
            }
        }
    }
    out
}
