//! Pooling reference: a sentence embedding from token states, in f64.

use crate::ops::pooling::Pooling;

/// Mean / first / last of the first `len` of `seq` tokens of `h` [batch, seq, dim], optionally
/// L2-normalised.
pub fn pool(h: &[f32], seq: usize, dim: usize, lens: &[u32], mode: Pooling, normalize: bool) -> Vec<f32> {
    let mut out = Vec::with_capacity(lens.len() * dim);
    for (b, &len) in lens.iter().enumerate() {
        let valid = (len as usize).min(seq);
        let (first, n) = match mode {
            Pooling::Mean => (0, valid),
            Pooling::Cls => (0, valid.min(1)),
            Pooling::LastToken => (valid.max(1) - 1, valid.min(1)),
        };
        let mut m: Vec<f64> = (0..dim)
            .map(|c| {
                (first..first + n)
                    .map(|t| f64::from(h[(b * seq + t) * dim + c]))
                    .sum::<f64>()
                    / (n.max(1) as f64)
            })
            .collect();
        if normalize {
            let norm = m.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            m.iter_mut().for_each(|v| *v /= norm);
        }
        out.extend(m.iter().map(|&v| v as f32));
    }
    out
}
