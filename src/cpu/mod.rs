//! CPU reference implementations (f64 accumulation) and comparison helpers.
//!
//! Compiled only with the `reference` feature (tests, benches): never shipped in the wasm
//! package. Each GPU op has its reference here under the same name.

pub mod attention;
pub mod compare;
pub mod embedding;
pub mod ffn;
pub mod gelu;
pub mod linear;
pub mod masked_softmax;
pub mod norm;
pub mod quant;
pub mod repeat_kv;
pub mod rope;
pub mod sample;
pub mod synthetic;

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

/// Mean over the first `len` of `seq` tokens of `h` [batch, seq, dim], optionally L2-normalised.
pub fn mean_pool(h: &[f32], seq: usize, dim: usize, lens: &[u32], normalize: bool) -> Vec<f32> {
    pool(h, seq, dim, lens, crate::ops::pooling::Pooling::Mean, normalize)
}

/// Mean / first / last of the first `len` of `seq` tokens of `h` [batch, seq, dim], optionally
/// L2-normalised.
pub fn pool(
    h: &[f32],
    seq: usize,
    dim: usize,
    lens: &[u32],
    mode: crate::ops::pooling::Pooling,
    normalize: bool,
) -> Vec<f32> {
    use crate::ops::pooling::Pooling;
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

/// a + b
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) + f64::from(*y)) as f32)
        .collect()
}

/// a * b
pub fn mul(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) * f64::from(*y)) as f32)
        .collect()
}

/// x * sigmoid(x)
pub fn silu(a: &[f32]) -> Vec<f32> {
    a.iter()
        .map(|&x| {
            let x = f64::from(x);
            (x / (1.0 + (-x).exp())) as f32
        })
        .collect()
}

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
