//! Embedding lookup reference (tables given as the f32 values they hold, sums in f64).

/// `out[t] = word[ids[t]] + pos[offset + t % seq_len] + type[types[t] or 0]` over `hidden` columns.
pub fn embedding(
    word: &[f32],
    hidden: usize,
    ids: &[u32],
    position: Option<(&[f32], usize, usize)>,
    token_type: Option<(&[f32], Option<&[u32]>)>,
) -> Vec<f32> {
    let row = |table: &[f32], r: usize, c: usize| f64::from(table[r * hidden + c]);
    let mut out = Vec::with_capacity(ids.len() * hidden);
    for (t, &id) in ids.iter().enumerate() {
        for c in 0..hidden {
            let mut v = row(word, id as usize, c);
            if let Some((pos, offset, seq_len)) = position {
                v += row(pos, offset + t % seq_len.max(1), c);
            }
            if let Some((tt, types)) = token_type {
                v += row(tt, types.map_or(0, |ty| ty[t] as usize), c);
            }
            out.push(v as f32);
        }
    }
    out
}

/// The values an f32 table holds once stored as `dtype` ("f32", "f16" or "bf16"), for references.
pub fn round_to(values: &[f32], dtype: &str) -> Vec<f32> {
    match dtype {
        "f16" => values.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect(),
        "bf16" => values.iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect(),
        _ => values.to_vec(),
    }
}
