//! Kernels II: GEMV (vec4 variants vs the naive scalar kernel and a copy of the same bytes), the
//! tiled matmul (each tile, the default and the autotuned choice vs the 32x32 baseline) and the
//! fused SwiGLU (32 KiB and 16 KiB variants vs two unfused GEMVs).
//!
//! Weights rotate over enough copies that together exceed the GPU's L2 (≥ 160 MB, e.g. H100's
//! 50 MB L2 would otherwise serve a repeated 32 MB weight): every dispatch reads its weights from
//! DRAM, as a decode step does. `--quick` uses one copy (smoke runs on lavapipe).
//!
//! Case names: `gemv_<dtype>_n<N>_k<K>` (W is [N, K]: N outputs, K inputs), `matmul_bf16_m<M>_n<N>_k<K>`,
//! `swiglu_bf16_k<K>_n<N>` (hidden K -> intermediate N). Each GEMV / SwiGLU case is reported twice:
//! against its baseline, and as `<case>_vs_copy` whose `speedup_vs_copy_vec4` is the fraction of
//! copy bandwidth reached (the copy moves the same number of bytes: half read, half written).

use crate::harness::{time_op, Args, Report, Timing};
use kjarni_web::gpu::SwigluVariant;
use kjarni_web::ops::elementwise;
use kjarni_web::ops::ffn::{self, SwigluShape};
use kjarni_web::ops::gemv::{self, Variant as GemvVariant};
use kjarni_web::ops::linear::{Act, Epilogue, Residual};
use kjarni_web::ops::matmul::{self, Variant as MatmulVariant};
use kjarni_web::{cpu, DType, Gpu, GpuTensor, Result};
use serde_json::json;

const L2_DEFEAT_BYTES: usize = 160 << 20;

fn copies(args: &Args, bytes: usize, max: usize) -> usize {
    if args.quick {
        1
    } else {
        L2_DEFEAT_BYTES.div_ceil(bytes.max(1)).clamp(1, max)
    }
}

fn weight(gpu: &Gpu, name: &str, n: usize, k: usize, dtype: DType, seed: u64) -> Result<GpuTensor> {
    GpuTensor::from_f32(gpu, name, &[n, k], dtype, &cpu::random(n * k, seed, -0.05, 0.05))
}

fn vector(gpu: &Gpu, name: &str, shape: &[usize], seed: u64) -> Result<GpuTensor> {
    let n = shape.iter().product();
    GpuTensor::from_f32(gpu, name, shape, DType::F32, &cpu::random(n, seed, -1.0, 1.0))
}

/// Dispatches per timed batch: enough GPU time to amortise a submit (~0.1 ms) on a fast GPU.
fn inner_for(args: &Args, bytes: f64, flops: f64) -> usize {
    if args.quick {
        return 2;
    }
    // ~2 ms of work at 2.5 TB/s or 25 TFLOPS, between 3 and 200 dispatches.
    let seconds = (bytes / 2.5e12).max(flops / 2.5e13);
    ((2e-3 / seconds.max(1e-9)) as usize).clamp(3, 200)
}

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    gemv_cases(gpu, args, report).await?;
    matmul_cases(gpu, args, report).await?;
    swiglu_cases(gpu, args, report).await
}

/// A copy of `bytes` bytes in total traffic (bytes / 2 read, bytes / 2 written), rotating copies.
async fn copy_timing(gpu: &Gpu, args: &Args, bytes: usize, inner: usize) -> Result<Timing> {
    let words = (bytes / 2).div_ceil(16) * 4; // f32 elements of a vec4-multiple half
    let n = copies(args, bytes, 16);
    let srcs: Vec<GpuTensor> = (0..n)
        .map(|i| GpuTensor::zeros(gpu, &format!("copy_src{i}"), &[words], DType::F32))
        .collect::<Result<_>>()?;
    let dsts: Vec<GpuTensor> = (0..n)
        .map(|i| GpuTensor::zeros(gpu, &format!("copy_dst{i}"), &[words], DType::F32))
        .collect::<Result<_>>()?;
    let mut i = 0;
    time_op(gpu, args, "copy_vec4", inner, |b| {
        i = (i + 1) % n;
        elementwise::record_copy(gpu, b, &srcs[i], &dsts[i])
    })
    .await
}

async fn gemv_cases(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let shapes: [(DType, usize, usize); 8] = [
        (DType::BF16, 4096, 4096),
        (DType::BF16, 4096, 14336), // N = 4096 outputs, K = 14336 inputs: Llama-3-8B down_proj
        (DType::BF16, 14336, 4096), // N = 14336 outputs, K = 4096 inputs: gate_proj / up_proj
        (DType::BF16, 4096, 4095),  // odd K: rows start mid-word
        (DType::BF16, 4096, 4097),
        (DType::F16, 4096, 4096),
        (DType::F32, 4096, 4096),
        (DType::BF16, 1536, 576), // SmolLM2-135M up_proj
    ];
    for (dtype, n, k) in shapes {
        let case = format!("gemv_{dtype}_n{n}_k{k}");
        if !args.wants(&case) {
            continue;
        }
        let wbytes = n * k * dtype.size();
        let ncopies = copies(args, wbytes, 64);
        let ws: Vec<GpuTensor> = (0..ncopies)
            .map(|i| weight(gpu, &format!("w{i}"), n, k, dtype, i as u64 + 1))
            .collect::<Result<_>>()?;
        let x = vector(gpu, "x", &[k], 7)?;
        let y = GpuTensor::zeros(gpu, "y", &[n], DType::F32)?;
        let inner = inner_for(args, wbytes as f64, 0.0);
        let mut variants = vec![GemvVariant::Scalar, gemv::default_variant(gpu.caps(), n, k, dtype)];
        for reduction in gpu.caps().reductions() {
            for rows in [1, 2, 4] {
                let v = GemvVariant::Vec4 {
                    rows,
                    workgroup: gpu.caps().variants.reduce_workgroup.min(256),
                    reduction,
                };
                if !variants.contains(&v) {
                    variants.push(v);
                }
            }
        }
        let mut timings = Vec::new();
        for (idx, v) in variants.iter().enumerate() {
            let name = if idx == 1 {
                format!("default_{}", v.name())
            } else {
                v.name()
            };
            // The scalar kernel is slow: fewer dispatches.
            let inner = if *v == GemvVariant::Scalar {
                inner.div_ceil(8).max(2)
            } else {
                inner
            };
            let mut i = 0;
            timings.push(
                time_op(gpu, args, &name, inner, |b| {
                    i = (i + 1) % ncopies;
                    gemv::record_variant(gpu, b, &ws[i], &x, &y, &Epilogue::NONE, *v)
                })
                .await?,
            );
        }
        timings.push(copy_timing(gpu, args, wbytes, inner).await?);
        let bytes = wbytes as f64;
        let flops = 2.0 * n as f64 * k as f64;
        let shape = json!({ "n": n, "k": k, "dtype": dtype, "weight_copies": ncopies });
        report.add(&case, shape.clone(), bytes, flops, "scalar", &timings);
        report.add(&format!("{case}_vs_copy"), shape, bytes, flops, "copy_vec4", &timings);
    }
    Ok(())
}

async fn matmul_cases(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
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

async fn swiglu_cases(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    for (k, n) in [(576usize, 1536usize), (4096, 14336)] {
        let case = format!("swiglu_bf16_k{k}_n{n}");
        if !args.wants(&case) {
            continue;
        }
        let pair_bytes = 2 * n * k * 2;
        let ncopies = copies(args, pair_bytes, 64);
        let gates: Vec<GpuTensor> = (0..ncopies)
            .map(|i| weight(gpu, &format!("gate{i}"), n, k, DType::BF16, 2 * i as u64 + 1))
            .collect::<Result<_>>()?;
        let ups: Vec<GpuTensor> = (0..ncopies)
            .map(|i| weight(gpu, &format!("up{i}"), n, k, DType::BF16, 2 * i as u64 + 2))
            .collect::<Result<_>>()?;
        let x = vector(gpu, "x", &[k], 7)?;
        let h = GpuTensor::zeros(gpu, "h", &[n], DType::F32)?;
        let up = GpuTensor::zeros(gpu, "up_scratch", &[n], DType::F32)?;
        let inner = inner_for(args, pair_bytes as f64, 0.0);
        let shape = ffn::default_swiglu_shape(gpu, n, k, DType::BF16);
        let mut timings = Vec::new();
        for variant in [SwigluVariant::Shared32K, SwigluVariant::Shared16K] {
            if variant.bytes() > gpu.caps().max_workgroup_storage {
                continue;
            }
            let mut shapes = vec![shape];
            for rows in [2, 4] {
                let s = SwigluShape {
                    rows,
                    workgroup: shape.workgroup,
                };
                if !shapes.contains(&s) {
                    shapes.push(s);
                }
            }
            for s in shapes {
                let name = format!(
                    "fused_{}_r{}_wg{}",
                    if variant == SwigluVariant::Shared32K {
                        "32KiB"
                    } else {
                        "16KiB"
                    },
                    s.rows,
                    s.workgroup
                );
                let mut i = 0;
                timings.push(
                    time_op(gpu, args, &name, inner, |b| {
                        i = (i + 1) % ncopies;
                        ffn::record_swiglu_variant(gpu, b, &x, &gates[i], &ups[i], &h, variant, s)
                    })
                    .await?,
                );
            }
        }
        // Unfused: up = Wu·x, then h = silu(Wg·x) * up (two vec4 GEMVs, x read from L1, no staging).
        let v = gemv::default_variant(gpu.caps(), n, k, DType::BF16);
        let mut i = 0;
        timings.push(
            time_op(gpu, args, "gemv_pair", inner, |b| {
                i = (i + 1) % ncopies;
                gemv::record_variant(gpu, b, &ups[i], &x, &up, &Epilogue::NONE, v)?;
                gemv::record_variant(
                    gpu,
                    b,
                    &gates[i],
                    &x,
                    &h,
                    &Epilogue {
                        bias: None,
                        act: Act::Silu,
                        residual: Some(Residual::Mul(&up)),
                    },
                    v,
                )
            })
            .await?,
        );
        timings.push(copy_timing(gpu, args, pair_bytes, inner).await?);
        let bytes = pair_bytes as f64;
        let flops = 4.0 * (n * k) as f64;
        let shape = json!({ "k": k, "n": n, "dtype": "bf16", "weight_copies": ncopies, "chosen": format!("{:?}", gpu.caps().variants.swiglu) });
        report.add(&case, shape.clone(), bytes, flops, "gemv_pair", &timings);
        report.add(&format!("{case}_vs_copy"), shape, bytes, flops, "copy_vec4", &timings);
    }
    Ok(())
}
