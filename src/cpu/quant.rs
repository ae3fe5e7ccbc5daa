//! ggml block quantisation on the CPU: the reference quantisers (`quantize_row_*_ref` of
//! ggml-quants.c, ported operation for operation in f32 so the blocks are bit-identical),
//! the dequantisers (`dequantize_row_*`), and GEMV / matmul references on the dequantised
//! values with f64 accumulation.
//!
//! Block layouts (little-endian, f16 scales), `QK = 32`, `QK_K = 256`:
//! - Q8_0, 34 B / 32: `d: f16, qs: [i8; 32]`; `x = d·q`.
//! - Q4_0, 18 B / 32: `d: f16, qs: [u8; 16]`; byte j holds element j (low nibble) and j + 16
//!   (high nibble); `x = d·(q − 8)`.
//! - Q4_1, 20 B / 32: `d: f16, m: f16, qs: [u8; 16]` as Q4_0; `x = d·q + m`.
//! - Q4_K, 144 B / 256: `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`: 8 sub-blocks of
//!   32 with 6-bit scale `sc` and min `m` packed in `scales` ([`scale_min_k4`]); the 32 bytes
//!   `qs[32g..32g + 32]` hold sub-block 2g (low nibbles) and 2g + 1 (high nibbles);
//!   `x = d·sc·q − dmin·m`.

use crate::ops::quant::QuantType;
use half::f16;

/// ggml's `nearest_int`: round half to even through the 1.5·2²³ trick (|f| ≤ 4194303).
fn nearest_int(f: f32) -> i32 {
    let v = f + 12_582_912.0;
    (v.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

fn f16_bytes(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

/// Quantise `x` (a whole number of blocks; a trailing partial block is ignored) into ggml blocks.
pub fn quantize(t: QuantType, x: &[f32]) -> Vec<u8> {
    let bs = t.block_size();
    let mut out = Vec::with_capacity(x.len() / bs * t.block_bytes());
    for b in x.chunks_exact(bs) {
        match t {
            QuantType::Q8_0 => quantize_q8_0(b, &mut out),
            QuantType::Q4_0 => quantize_q4_0(b, &mut out),
            QuantType::Q4_1 => quantize_q4_1(b, &mut out),
            QuantType::Q4_K => quantize_q4_k(b, &mut out),
        }
    }
    out
}

fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16_bytes(d));
    out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8));
}

fn quantize_q4_0(x: &[f32], out: &mut Vec<u8>) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16_bytes(d));
    for j in 0..16 {
        let q0 = ((x[j] * id + 8.5) as i8).min(15) as u8;
        let q1 = ((x[j + 16] * id + 8.5) as i8).min(15) as u8;
        out.push(q0 | (q1 << 4));
    }
}

fn quantize_q4_1(x: &[f32], out: &mut Vec<u8>) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        min = min.min(v);
        max = max.max(v);
    }
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16_bytes(d));
    out.extend_from_slice(&f16_bytes(min));
    for j in 0..16 {
        let q0 = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
        let q1 = (((x[j + 16] - min) * id + 0.5) as i8).min(15) as u8;
        out.push(q0 | (q1 << 4));
    }
}

/// ggml's `make_qkx2_quants`: scale and (negated) min of one sub-block with levels 0..=nmax,
/// refined by a weighted least-squares search over `nstep` candidate scales.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    w: &[f32],
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = w[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out.iter_mut().for_each(|l| *l = 0);
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_mad = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_mad += w[i] * (diff * diff);
    }
    let mut aux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = l as u8;
            let lf = l as f32;
            sum_l += w[i] * lf;
            sum_l2 += w[i] * lf * lf;
            sum_xl += w[i] * lf * x[i];
        }
        let dd = sum_w * sum_l2 - sum_l * sum_l;
        if dd > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / dd;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / dd;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut mad = 0.0f32;
            for i in 0..n {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                mad += w[i] * (diff * diff);
            }
            if mad < best_mad {
                l_out[..n].copy_from_slice(&aux[..n]);
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

pub use crate::gguf::dequant::scale_min_k4;

fn quantize_q4_k(x: &[f32], out: &mut Vec<u8>) {
    let mut l_all = [0u8; 256];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let sum_x2 = xs.iter().fold(0.0f32, |a, &v| a + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        let w: Vec<f32> = xs.iter().map(|v| av_x + v.abs()).collect();
        let (s, m) = make_qkx2_quants(15, xs, &w, &mut l_all[32 * j..32 * j + 32], -1.0, 0.1, 20);
        scales[j] = s;
        mins[j] = m;
        max_scale = max_scale.max(s);
        max_min = max_min.max(m);
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut sc = [0u8; 12];
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            sc[j - 4] |= (ls >> 4) << 6;
            sc[j] |= (lm >> 4) << 6;
        }
    }
    let d16 = f16::from_f32(max_scale / 63.0);
    let dmin16 = f16::from_f32(max_min / 63.0);
    for j in 0..8 {
        let (s, m) = scale_min_k4(j, &sc);
        let d = d16.to_f32() * f32::from(s);
        if d == 0.0 {
            continue;
        }
        let dm = dmin16.to_f32() * f32::from(m);
        for ii in 0..32 {
            l_all[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, 15) as u8;
        }
    }
    out.extend_from_slice(&d16.to_le_bytes());
    out.extend_from_slice(&dmin16.to_le_bytes());
    out.extend_from_slice(&sc);
    for g in 0..4 {
        for l in 0..32 {
            out.push(l_all[64 * g + l] | (l_all[64 * g + l + 32] << 4));
        }
    }
}

/// Dequantise whole blocks (a trailing partial block is ignored), exactly as ggml does in f32:
/// the loader's dequantiser (`gguf::dequant`, checked against gguf-py), shared so that the
/// reference and the load path cannot drift apart.
pub fn dequantize(t: QuantType, bytes: &[u8]) -> Vec<f32> {
    let whole = bytes.len() / t.block_bytes() * t.block_bytes();
    let mut out = Vec::with_capacity(whole / t.block_bytes() * t.block_size());
    // Q8_0 / Q4_0 / Q4_1 / Q4_K are always dequantisable and `whole` is a block multiple.
    let _ = crate::gguf::dequant::dequantize(t.ggml(), "reference", &bytes[..whole], &mut out);
    out
}

/// `y[i, j] = Σ_k x[i, k] · w[j, k]` for `x: [m, k]`, `w: [n, k]` (dequantised), accumulated in
/// f64; also returns `Σ_k |x[i, k] · w[j, k]|`, the scale of the f32 summation error.
pub fn matmul(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<f64>) {
    let mut y = vec![0.0f32; m * n];
    let mut mag = vec![0.0f64; m * n];
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            let (mut s, mut a) = (0.0f64, 0.0f64);
            for (xv, wv) in xr.iter().zip(wr) {
                let p = f64::from(*xv) * f64::from(*wv);
                s += p;
                a += p.abs();
            }
            y[i * n + j] = s as f32;
            mag[i * n + j] = a;
        }
    }
    (y, mag)
}

/// Random block bytes with finite, moderate f16 scales (the same generator as the fixture
/// script: xorshift64 bytes, scale halves overwritten).
pub fn random_blocks(t: QuantType, seed: u64, blocks: usize) -> Vec<u8> {
    let mut s = seed;
    let mut b: Vec<u8> = (0..blocks * t.block_bytes())
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as u8
        })
        .collect();
    let halves: &[usize] = match t {
        QuantType::Q8_0 | QuantType::Q4_0 => &[0],
        QuantType::Q4_1 | QuantType::Q4_K => &[0, 2],
    };
    for blk in 0..blocks {
        for (i, &h) in halves.iter().enumerate() {
            let at = blk * t.block_bytes() + h;
            // exponent 0x30..0x37 → magnitudes ~2^-3..2^-1, sign from the low bit of the block
            let v: u16 = 0x3000 | (u16::from(b[at]) << 3 & 0x07ff) | (u16::from((blk + i) as u8 & 1) << 15);
            b[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture inputs: exact in f32 on every platform (integers over 137, correctly rounded),
    /// with an all-zero block, a constant block and a one-spike block mixed in.
    pub(crate) fn fixture_input(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| match i / 256 {
                1 if i % 256 < 32 => 0.0,
                1 if i % 256 < 64 => 0.75,
                1 if i % 256 < 96 => {
                    if i % 256 == 70 {
                        -9.0
                    } else {
                        0.0
                    }
                }
                _ => ((i * 7919 % 2001) as f32 - 1000.0) / 137.0,
            })
            .collect()
    }

    fn fnv(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }

    fn f32_hash(v: &[f32]) -> u64 {
        fnv(&v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect::<Vec<u8>>())
    }

    // Generated by scripts/gen_quant_fixture.py with gguf-py (numpy ports of ggml's reference
    // quantisers, bit-exact for Q8_0 / Q4_0 / Q4_1, and its dequantisers for all four).
    include!("quant_fixture.rs");

    #[test]
    fn quantisers_match_ggml_bit_for_bit() {
        let x = fixture_input(FIXTURE_N);
        for (t, want) in [
            (QuantType::Q8_0, Q8_0_BLOCKS),
            (QuantType::Q4_0, Q4_0_BLOCKS),
            (QuantType::Q4_1, Q4_1_BLOCKS),
        ] {
            let got = quantize(t, &x);
            assert_eq!(got.len(), FIXTURE_N / t.block_size() * t.block_bytes());
            assert_eq!(fnv(&got), want, "{t:?} blocks differ from gguf-py's");
        }
    }

    #[test]
    fn dequantisers_match_ggml_bit_for_bit() {
        for (t, seed, want) in DEQUANT_CASES {
            let bytes = random_blocks(t, seed, 4);
            let got = dequantize(t, &bytes);
            assert_eq!(got.len(), 4 * t.block_size());
            assert_eq!(f32_hash(&got), want, "{t:?} dequantisation differs from gguf-py's");
        }
    }

    #[test]
    fn q4_k_round_trip_error_is_small() {
        // The k-quant reference has no second implementation here; check its quality instead:
        // plain min/max 4-bit quantisation of the fixture's uniform ±7.3 data has an RMS error
        // of step/√12 = (14.6/15)/√12 = 0.28; the weighted search must do better (measured 0.244),
        // and the all-zero sub-block must come back as exact zeros.
        let x = fixture_input(1024);
        let q = quantize(QuantType::Q4_K, &x);
        assert_eq!(q.len(), 4 * 144);
        let y = dequantize(QuantType::Q4_K, &q);
        let rms = (x.iter().zip(&y).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
        assert!(rms < 0.26, "Q4_K rms error {rms}");
        assert!(y[256..288].iter().all(|&v| v == 0.0), "{:?}", &y[256..288]);
        for t in [QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4_1] {
            let y = dequantize(t, &quantize(t, &x));
            let max = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            // Half a step of the coarsest block: ±7.3 / 127 / 2 (Q8_0), 7.3 / 8 (Q4_0: 16 levels
            // over ±7.3 with rounding at the clamp), 14.6 / 15 / 2 (Q4_1), plus f16 scale rounding.
            let bound = match t {
                QuantType::Q8_0 => 0.03,
                QuantType::Q4_0 => 0.92,
                _ => 0.5,
            };
            assert!(max < bound, "{t:?} max error {max}");
        }
    }

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!([0.5, 1.5, 2.5, -0.5, -1.5, 3.49].map(nearest_int), [0, 2, 2, 0, -2, 3]);
    }
}
