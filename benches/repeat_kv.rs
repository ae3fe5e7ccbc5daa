//! repeat_kv (GQA head expansion): vec4 vs scalar, beside a vec4 copy of the output.

use crate::harness::{inner, random_tensor as tensor, time_op, Args, Report};
use kjarni_web::ops::{elementwise, repeat_kv};
use kjarni_web::{DType, Gpu, GpuTensor, Result};
use serde_json::json;

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let (tokens, kv, rep, d) = (512usize, 8usize, 4usize, 128usize);
    let case = format!("repeat_kv_{tokens}x{kv}x{d}_rep{rep}");
    if !args.wants(&case) {
        return Ok(());
    }
    let src = tensor(gpu, "k", &[tokens, kv, d], 10)?;
    let dst = GpuTensor::zeros(gpu, "k_rep", &[tokens, kv * rep, d], DType::F32)?;
    let dst2 = GpuTensor::zeros(gpu, "copy", &[tokens, kv * rep, d], DType::F32)?;
    let n = inner(args);
    let t = vec![
        time_op(gpu, args, "vec4", n, |b| {
            repeat_kv::record_variant(gpu, b, &src, &dst, repeat_kv::Variant::Vec4)
        })
        .await?,
        time_op(gpu, args, "scalar", n, |b| {
            repeat_kv::record_variant(gpu, b, &src, &dst, repeat_kv::Variant::Scalar)
        })
        .await?,
        time_op(gpu, args, "copy_vec4_output", n, |b| {
            elementwise::record_copy(gpu, b, &dst, &dst2)
        })
        .await?,
    ];
    report.add(
        &case,
        json!({"src": [tokens, kv, d], "dst": [tokens, kv * rep, d]}),
        (tokens * kv * d * 4 * (1 + rep)) as f64,
        0.0,
        "scalar",
        &t,
    );
    Ok(())
}
