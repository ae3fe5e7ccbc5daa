//! CPU dequantisation of ggml blocks to f32, for tensors the GPU kernels cannot read as stored
//! (Q5_0, Q5_1, Q5_K, Q6_K, ...) and for tables that are gathered rather than multiplied (the
//! token embedding). Ports of ggml's `dequantize_row_*` (ggml-quants.c), operation by operation
//! in f32. Used by the streaming GGUF loader one staging chunk (whole blocks) at a time.

use super::GgmlType;
use crate::error::{Error, Result};

fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` (0..8) of a Q4_K / Q5_K block.
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Whether [`dequantize`] reads this type.
pub fn can_dequantize(t: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        t,
        F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q4_K | Q5_K | Q6_K
    )
}

/// Append the f32 values of `bytes` (whole blocks of `t`) to `out`. Types without a port are
/// [`Error::Unsupported`] naming `tensor`.
pub fn dequantize(t: GgmlType, tensor: &str, bytes: &[u8], out: &mut Vec<f32>) -> Result<()> {
    let bb = t.type_size() as usize;
    if !can_dequantize(t) || !bytes.len().is_multiple_of(bb) {
        return Err(Error::Unsupported {
            kernel: "gguf dequantize",
            variant: t.name(),
            why: format!("tensor '{tensor}': no CPU dequantiser for {t} (or a partial block)"),
        });
    }
    out.reserve(bytes.len() / bb * t.block_size() as usize);
    for b in bytes.chunks_exact(bb) {
        match t {
            GgmlType::F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            GgmlType::F16 => out.push(f16_at(b, 0)),
            GgmlType::BF16 => out.push(half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            GgmlType::Q8_0 => {
                let d = f16_at(b, 0);
                out.extend(b[2..34].iter().map(|&q| f32::from(q as i8) * d));
            }
            GgmlType::Q4_0 => {
                let d = f16_at(b, 0);
                out.extend(b[2..18].iter().map(|&q| f32::from((q & 0xF) as i8 - 8) * d));
                out.extend(b[2..18].iter().map(|&q| f32::from((q >> 4) as i8 - 8) * d));
            }
            GgmlType::Q4_1 => {
                let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                out.extend(b[4..20].iter().map(|&q| d * f32::from(q & 0xF) + m));
                out.extend(b[4..20].iter().map(|&q| d * f32::from(q >> 4) + m));
            }
            GgmlType::Q5_0 | GgmlType::Q5_1 => {
                let (d, m, at) = match t {
                    GgmlType::Q5_0 => (f16_at(b, 0), 0.0, 2),
                    _ => (f16_at(b, 0), f16_at(b, 2), 4),
                };
                let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
                let qs = &b[at + 4..at + 20];
                let off = if t == GgmlType::Q5_0 { 16 } else { 0 };
                let value = |x: u32| -> f32 {
                    if t == GgmlType::Q5_0 {
                        (x as i32 - off) as f32 * d
                    } else {
                        x as f32 * d + m
                    }
                };
                let mut hi = [0.0f32; 16];
                for j in 0..16 {
                    let xh0 = ((qh >> j) << 4) & 0x10;
                    let xh1 = (qh >> (j + 12)) & 0x10;
                    out.push(value(u32::from(qs[j] & 0xF) | xh0));
                    hi[j] = value(u32::from(qs[j] >> 4) | xh1);
                }
                out.extend_from_slice(&hi);
            }
            GgmlType::Q4_K => {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let sc = &b[4..16];
                for g in 0..4 {
                    let q = &b[16 + 32 * g..48 + 32 * g];
                    let (s1, m1) = scale_min_k4(2 * g, sc);
                    let (s2, m2) = scale_min_k4(2 * g + 1, sc);
                    let (d1, m1) = (d * f32::from(s1), dmin * f32::from(m1));
                    let (d2, m2) = (d * f32::from(s2), dmin * f32::from(m2));
                    out.extend(q.iter().map(|&v| d1 * f32::from(v & 0xF) - m1));
                    out.extend(q.iter().map(|&v| d2 * f32::from(v >> 4) - m2));
                }
            }
            GgmlType::Q5_K => {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let sc = &b[4..16];
                let qh = &b[16..48];
                let ql_all = &b[48..176];
                let (mut u1, mut u2) = (1u8, 2u8);
                for g in 0..4 {
                    let ql = &ql_all[32 * g..32 * g + 32];
                    let (s1, m1) = scale_min_k4(2 * g, sc);
                    let (s2, m2) = scale_min_k4(2 * g + 1, sc);
                    let (d1, m1) = (d * f32::from(s1), dmin * f32::from(m1));
                    let (d2, m2) = (d * f32::from(s2), dmin * f32::from(m2));
                    for l in 0..32 {
                        let h = if qh[l] & u1 != 0 { 16 } else { 0 };
                        out.push(d1 * f32::from((ql[l] & 0xF) + h) - m1);
                    }
                    for l in 0..32 {
                        let h = if qh[l] & u2 != 0 { 16 } else { 0 };
                        out.push(d2 * f32::from((ql[l] >> 4) + h) - m2);
                    }
                    u1 = u1.wrapping_shl(2);
                    u2 = u2.wrapping_shl(2);
                }
            }
            GgmlType::Q6_K => {
                let d = f16_at(b, 208);
                let mut y = [0.0f32; 256];
                for half in 0..2 {
                    let ql = &b[64 * half..64 * half + 64];
                    let qh = &b[128 + 32 * half..128 + 32 * half + 32];
                    let sc = &b[192 + 8 * half..192 + 8 * half + 8];
                    let y = &mut y[128 * half..128 * half + 128];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        let s = |i: usize| d * f32::from(sc[i] as i8);
                        y[l] = s(is) * q1 as f32;
                        y[l + 32] = s(is + 2) * q2 as f32;
                        y[l + 64] = s(is + 4) * q3 as f32;
                        y[l + 96] = s(is + 6) * q4 as f32;
                    }
                }
                out.extend_from_slice(&y);
            }
            _ => unreachable_type(t, tensor)?,
        }
    }
    Ok(())
}

fn unreachable_type(t: GgmlType, tensor: &str) -> Result<()> {
    Err(Error::Internal(format!("tensor '{tensor}': dequantize reached {t}")))
}

/// Encode f32 values as `dtype` little-endian bytes (F32, F16 or BF16, round to nearest even).
pub fn encode(values: &[f32], dtype: crate::gpu::DType, out: &mut Vec<u8>) -> Result<()> {
    use crate::gpu::DType;
    match dtype {
        DType::F32 => out.extend(values.iter().flat_map(|v| v.to_le_bytes())),
        DType::F16 => out.extend(values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes())),
        DType::BF16 => out.extend(values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())),
        d => {
            return Err(Error::DType {
                op: "gguf dequantize",
                tensor: String::new(),
                got: d.name().to_string(),
                expected: "F32, F16 or BF16".into(),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// gguf-py's `dequantize` of 3 random blocks per type (scripts/gen_dequant_fixture.py):
    /// the ports must agree to f32 rounding (both compute `d·sc·q − m` in f32; numpy may fuse
    /// or reorder a product, so 1 ulp-scale differences are allowed: 1e-6 relative to the block
    /// maximum).
    #[test]
    fn matches_gguf_py() {
        let fx: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/dequant_gguf_py.json")).unwrap();
        let mut seen = 0;
        for case in fx.as_array().unwrap() {
            let name = case["type"].as_str().unwrap();
            let t = (0..40)
                .filter_map(GgmlType::from_id)
                .find(|t| t.name() == name)
                .unwrap();
            let hex = case["hex"].as_str().unwrap();
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let want: Vec<f32> = case["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let mut got = Vec::new();
            dequantize(t, "x", &bytes, &mut got).unwrap();
            assert_eq!(got.len(), want.len(), "{name}");
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-6 * scale, "{name}[{i}]: got {g}, want {w}");
            }
            seen += 1;
        }
        assert_eq!(seen, 8);
    }

    #[test]
    fn refuses_types_without_a_port_and_partial_blocks() {
        let mut v = Vec::new();
        assert!(
            matches!(dequantize(GgmlType::IQ4_NL, "t", &[0; 18], &mut v), Err(Error::Unsupported { why, .. }) if why.contains("'t'"))
        );
        assert!(dequantize(GgmlType::Q8_0, "t", &[0; 33], &mut v).is_err());
    }
}
