//! FFN: the fused SwiGLU (32 KiB and 16 KiB variants) vs two unfused GEMVs, beside a copy of the
//! same bytes. Case names: `swiglu_bf16_k<K>_n<N>` (hidden K -> intermediate N), each reported
//! against `gemv_pair` and as `<case>_vs_copy`.
//!
//! Weights rotate over enough copies that together exceed the GPU's L2 (`harness::copies`): every
//! dispatch reads its weights from DRAM, as a decode step does. `--quick` uses one copy.

use crate::harness::{copies, copy_timing, inner_for, time_op, vector, weight, Args, Report};
use kjarni_web::gpu::SwigluVariant;
use kjarni_web::ops::ffn::{self, SwigluShape};
use kjarni_web::ops::gemv;
use kjarni_web::ops::linear::{Act, Epilogue, Residual};
use kjarni_web::{DType, Gpu, GpuTensor, Result};
use serde_json::json;

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
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
                    per_invocation: shape.per_invocation,
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
