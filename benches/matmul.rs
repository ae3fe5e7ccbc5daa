//! Tiled matmul: each tile, the default and the autotuned choice vs the 32x32 baseline (and the
//! GEMV at M = 1). Case names: `matmul_bf16_m<M>_n<N>_k<K>`.
//!
//! Weights rotate over enough copies that together exceed the GPU's L2 (`harness::copies`): every
//! dispatch reads its weights from DRAM, as a decode step does. `--quick` uses one copy.

use crate::harness::{copies, inner_for, time_op, vector, weight, Args, Report};
use kjarni_web::ops::gemv;
use kjarni_web::ops::linear::Epilogue;
use kjarni_web::ops::matmul::{self, CpuShape, Variant as MatmulVariant};
use kjarni_web::{DType, Gpu, GpuTensor, Result};
use serde_json::json;

/// MiniLM (5 and 64 tokens; K = 384 or 1536) and SmolLM2-135M (37 tokens; K = 576 or 1536).
const CPU_SHAPES: [(usize, usize, usize); 8] = [
    (5, 384, 384),
    (5, 1536, 384),
    (5, 384, 1536),
    (64, 384, 384),
    (64, 1536, 384),
    (37, 576, 576),
    (37, 1536, 576),
    (37, 576, 1536),
];

async fn run_cpu(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    for (m, n, k) in CPU_SHAPES {
        let case = format!("matmul_cpu_bf16_m{m}_n{n}_k{k}");
        if !args.wants(&case) {
            continue;
        }
        let w = weight(gpu, "w", n, k, DType::BF16, 1)?;
        let x = vector(gpu, "x", &[m, k], 7)?;
        let y = GpuTensor::zeros(gpu, "y", &[m, n], DType::F32)?;
        let flops = 2.0 * (m * n * k) as f64;
        let bytes = (n * k * 2 + 4 * m * k + 4 * m * n) as f64;
        let gpu_tile = matmul::default_tile(gpu.caps(), m, n);
        let chosen = matmul::cpu_shape(gpu.caps(), m, n);
        let mut variants: Vec<(String, MatmulVariant)> = vec![
            (
                format!("gpu_default_{}", gpu_tile.name()),
                MatmulVariant::Tiled(gpu_tile),
            ),
            ("tile32_baseline".into(), MatmulVariant::Tile32),
            (format!("cpu_default_{}", chosen.name()), MatmulVariant::Cpu(chosen)),
        ];
        for (rows, cols) in [(1, 4), (2, 4), (4, 4), (4, 8), (8, 4), (8, 8)] {
            for workgroup in [16, 64] {
                let c = CpuShape { rows, cols, workgroup };
                if c != chosen {
                    variants.push((MatmulVariant::Cpu(c).name(), MatmulVariant::Cpu(c)));
                }
            }
        }
        let mut timings = Vec::new();
        for (name, v) in &variants {
            timings.push(
                time_op(gpu, args, name, 2, |b| {
                    matmul::record_variant(gpu, b, &x, &w, &y, &Epilogue::NONE, *v)
                })
                .await?,
            );
        }
        let shape = json!({ "m": m, "n": n, "k": k, "dtype": "bf16", "cpu_default": chosen.name() });
        let base = variants[0].0.clone();
        report.add(&case, shape, bytes, flops, &base, &timings);
    }
    Ok(())
}

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    run_cpu(gpu, args, report).await?;
    let (n, k) = (4096usize, 4096usize);
    for m in [1usize, 16, 128, 2048] {
        let case = format!("matmul_bf16_m{m}_n{n}_k{k}");
        if !args.wants(&case) {
            continue;
        }
        let wbytes = n * k * 2;
        let ncopies = copies(args, wbytes, 8);
        let ws: Vec<GpuTensor> = (0..ncopies)
            .map(|i| weight(gpu, &format!("w{i}"), n, k, DType::BF16, i as u64 + 1))
            .collect::<Result<_>>()?;
        let x = vector(gpu, "x", &[m, k], 7)?;
        let y = GpuTensor::zeros(gpu, "y", &[m, n], DType::F32)?;
        let flops = 2.0 * (m * n * k) as f64;
        let bytes = (wbytes + 4 * m * k + 4 * m * n) as f64;
        let inner = inner_for(args, bytes, flops);
        let tuned = matmul::autotune(gpu, &x, &ws[0], &y).await?;
        let mut variants: Vec<(String, MatmulVariant)> = vec![
            ("tile32_baseline".into(), MatmulVariant::Tile32),
            (
                format!("default_{}", matmul::default_tile(gpu.caps(), m, n).name()),
                MatmulVariant::Tiled(matmul::default_tile(gpu.caps(), m, n)),
            ),
            (format!("autotuned_{}", tuned.name()), MatmulVariant::Tiled(tuned)),
        ];
        for t in matmul::candidates(gpu.caps(), m) {
            variants.push((MatmulVariant::Tiled(t).name(), MatmulVariant::Tiled(t)));
        }
        let mut timings = Vec::new();
        for (name, v) in &variants {
            let inner = if *v == MatmulVariant::Tile32 {
                inner.div_ceil(4).max(1)
            } else {
                inner
            };
            let mut i = 0;
            timings.push(
                time_op(gpu, args, name, inner, |b| {
                    i = (i + 1) % ncopies;
                    matmul::record_variant(gpu, b, &x, &ws[i], &y, &Epilogue::NONE, *v)
                })
                .await?,
            );
        }
        if m == 1 {
            let v = gemv::default_variant(gpu.caps(), n, k, DType::BF16);
            let x1 = vector(gpu, "x1", &[k], 7)?;
            let y1 = GpuTensor::zeros(gpu, "y1", &[n], DType::F32)?;
            let mut i = 0;
            timings.push(
                time_op(gpu, args, &format!("gemv_{}", v.name()), inner, |b| {
                    i = (i + 1) % ncopies;
                    gemv::record_variant(gpu, b, &ws[i], &x1, &y1, &Epilogue::NONE, v)
                })
                .await?,
            );
        }
        let shape =
            json!({ "m": m, "n": n, "k": k, "dtype": "bf16", "weight_copies": ncopies, "autotuned": tuned.name() });
        report.add(&case, shape, bytes, flops, "tile32_baseline", &timings);
    }
    Ok(())
}
