//! GEMV: the vec4 variants vs the naive scalar kernel and a copy of the same bytes.
//!
//! Weights rotate over enough copies that together exceed the GPU's L2 (`harness::copies`): every
//! dispatch reads its weights from DRAM, as a decode step does. `--quick` uses one copy.
//!
//! Case names: `gemv_<dtype>_n<N>_k<K>` (W is [N, K]: N outputs, K inputs). Each case is reported
//! twice: against the scalar baseline, and as `<case>_vs_copy` whose `speedup_vs_copy_vec4` is the
//! fraction of copy bandwidth reached (the copy moves the same number of bytes: half read, half
//! written).

use crate::harness::{copies, copy_timing, inner_for, time_op, vector, weight, Args, Report};
use kjarni_web::ops::gemv::{self, Variant as GemvVariant};
use kjarni_web::ops::linear::Epilogue;
use kjarni_web::{DType, Gpu, GpuTensor, Result};
use serde_json::json;

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
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
