//! Quantised weights: GEMV (decode) per block type at 4096×4096 and N=14336, K=4096, with the
//! rows-per-workgroup and reduction variants, beside a vec4 copy moving the same number of bytes
//! as the GEMV reads (a copy of half the block bytes: read + write = the block bytes), i.e. the
//! bandwidth ceiling. `effective_gb_s` counts the block bytes only (x and y are < 0.1 %), so
//! `speedup_vs_copy_vec4` is the fraction of the ceiling reached. The tiled prefill matmul is
//! timed at M = 512 in TFLOPS.
//!
//! The bf16 GEMV of the same shapes lives with the bf16 kernels (benches of `ops::linear`); the
//! quantised / bf16 ratio is the weight-bytes ratio when both run at the bandwidth ceiling
//! (Q4_K 4.5 bits, Q8_0 8.5 bits vs 16).

use crate::harness::{time_op, Args, Report};
use kjarni_web::cpu::quant as cq;
use kjarni_web::gpu::Reduction;
use kjarni_web::ops::elementwise;
use kjarni_web::ops::quant::{self, QuantType, QuantWeight, Variant};
use kjarni_web::{cpu, DType, Gpu, GpuTensor, Result};
use serde_json::json;

fn name(t: QuantType) -> String {
    format!("{t:?}").to_lowercase()
}

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    for t in [QuantType::Q4_K, QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4_1] {
        for (n, k) in [(4096usize, 4096usize), (14336, 4096)] {
            let case = format!("quant_gemv_{}_{n}x{k}", name(t));
            if !args.wants(&case) {
                continue;
            }
            // Raw random blocks: same bytes and work as real weights, no quantisation wait.
            let blocks = cq::random_blocks(t, 7, n * k / t.block_size());
            let w = QuantWeight::from_blocks(gpu, "w", t, n, k, &blocks)?;
            let x = GpuTensor::from_f32(gpu, "x", &[1, k], DType::F32, &cpu::random(k, 3, -1.0, 1.0))?;
            let y = GpuTensor::zeros(gpu, "y", &[1, n], DType::F32)?;
            let half_words = blocks.len().div_ceil(2).div_ceil(16) * 4;
            let src = GpuTensor::zeros(gpu, "copy_src", &[half_words], DType::U32)?;
            let dst = GpuTensor::zeros(gpu, "copy_dst", &[half_words], DType::U32)?;
            let inner = if args.quick { 2 } else { 50 };
            let mut timings = Vec::new();
            for reduction in gpu.caps().reductions() {
                for rows in [4u32, 2, 1] {
                    let v = Variant::Gemv { rows, reduction };
                    let label = format!("gemv_rows{rows}_{}", reduction.name());
                    timings.push(time_op(gpu, args, &label, inner, |b| quant::record_variant(gpu, b, &w, &x, &y, v)).await?);
                }
            }
            timings.push(time_op(gpu, args, "copy_vec4", inner, |b| elementwise::record_copy(gpu, b, &src, &dst)).await?);
            let bytes = w.block_bytes() as f64;
            let shape = json!({ "n": n, "k": k, "type": name(t), "block_bytes": w.block_bytes() });
            report.add(&case, shape, bytes, 2.0 * (n * k) as f64, "copy_vec4", &timings);
        }
    }
    for t in [QuantType::Q4_K, QuantType::Q8_0] {
        let (m, n, k) = (512usize, 4096usize, 4096usize);
        let case = format!("quant_matmul_{}_{m}x{n}x{k}", name(t));
        if !args.wants(&case) {
            continue;
        }
        let blocks = cq::random_blocks(t, 9, n * k / t.block_size());
        let w = QuantWeight::from_blocks(gpu, "w", t, n, k, &blocks)?;
        let x = GpuTensor::from_f32(gpu, "x", &[m, k], DType::F32, &cpu::random(m * k, 5, -1.0, 1.0))?;
        let y = GpuTensor::zeros(gpu, "y", &[m, n], DType::F32)?;
        let inner = if args.quick { 1 } else { 10 };
        let mut timings = Vec::new();
        for rm in [4u32, 2, 1] {
            let v = Variant::Matmul { rm };
            timings.push(time_op(gpu, args, &format!("matmul_rm{rm}"), inner, |b| quant::record_variant(gpu, b, &w, &x, &y, v)).await?);
        }
        // GEMV per x row would re-read the weights M times: the prefill kernel must beat it.
        let v = Variant::Gemv { rows: 4, reduction: Reduction::SharedMemory };
        timings.push(time_op(gpu, args, "gemv_rows4_shared", inner, |b| quant::record_variant(gpu, b, &w, &x, &y, v)).await?);
        let bytes = (w.block_bytes() + (m * k + m * n) * 4) as f64;
        let shape = json!({ "m": m, "n": n, "k": k, "type": name(t) });
        report.add(&case, shape, bytes, 2.0 * (m * n * k) as f64, "gemv_rows4_shared", &timings);
    }
    Ok(())
}
