//! Softmax [rows, cols]: the workgroup-per-row kernel (each reduction path) against the naive
//! one-thread-per-row kernel and a vec4 copy of the same bytes; the fused causal masked softmax
//! against mask-then-softmax.

use crate::harness::{inner, random_tensor as tensor, time_op, Args, Report, Timing};
use kjarni_web::ops::softmax::{Mask, MaskedVariant, Variant};
use kjarni_web::ops::{elementwise, softmax};
use kjarni_web::{cpu, DType, Gpu, GpuTensor, Result};
use serde_json::json;

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    for [rows, cols] in [[128usize, 4096usize], [4096, 4096]] {
        let case = format!("softmax_{rows}x{cols}");
        if !args.wants(&case) {
            continue;
        }
        let x = GpuTensor::from_f32(
            gpu,
            "x",
            &[rows, cols],
            DType::F32,
            &cpu::random(rows * cols, 1, -10.0, 10.0),
        )?;
        let y = GpuTensor::zeros(gpu, "y", &[rows, cols], DType::F32)?;
        let inner = inner(args);
        let mut timings = Vec::new();
        for r in gpu.caps().reductions() {
            let v = Variant::Workgroup(r);
            timings.push(
                time_op(gpu, args, &format!("workgroup_{}", r.name()), inner, |b| {
                    softmax::record_variant(gpu, b, &x, &y, 1.0, v)
                })
                .await?,
            );
        }
        timings.push(
            time_op(gpu, args, "row_per_thread", inner.min(5), |b| {
                softmax::record_variant(gpu, b, &x, &y, 1.0, Variant::RowPerThread)
            })
            .await?,
        );
        timings.push(
            time_op(gpu, args, "copy_vec4", inner, |b| {
                elementwise::record_copy(gpu, b, &x, &y)
            })
            .await?,
        );
        let bytes = (2 * rows * cols * 4) as f64;
        report.add(&case, json!([rows, cols]), bytes, 0.0, "row_per_thread", &timings);
    }
    Ok(())
}

pub async fn masked(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let (heads, q, k) = (32usize, 512usize, 512usize);
    let case = format!("masked_softmax_causal_{}x{k}", heads * q);
    if !args.wants(&case) {
        return Ok(());
    }
    let x = tensor(gpu, "scores", &[heads, q, k], 9)?;
    let y = GpuTensor::zeros(gpu, "probs", &[heads, q, k], DType::F32)?;
    let mask = Mask::causal(heads, 0);
    let n = inner(args);
    let mut t: Vec<Timing> = Vec::new();
    for red in gpu.caps().reductions() {
        let v = MaskedVariant::Fused(red);
        t.push(
            time_op(gpu, args, &format!("fused_{}", red.name()), n, |b| {
                softmax::record_masked_variant(gpu, b, &x, &y, 0.125, &mask, v)
            })
            .await?,
        );
    }
    for red in gpu.caps().reductions() {
        let v = MaskedVariant::Unfused(red);
        t.push(
            time_op(gpu, args, &format!("mask_then_softmax_{}", red.name()), n, |b| {
                softmax::record_masked_variant(gpu, b, &x, &y, 0.125, &mask, v)
            })
            .await?,
        );
    }
    t.push(time_op(gpu, args, "copy_vec4", n, |b| elementwise::record_copy(gpu, b, &x, &y)).await?);
    report.add(
        &case,
        json!({"scores": [heads, q, k], "causal": true}),
        (2 * heads * q * k * 4) as f64,
        0.0,
        "mask_then_softmax_shared",
        &t,
    );
    Ok(())
}
