//! GELU: the erf, tanh and rational-erf formulas beside a vec4 copy of the same bytes.

use crate::harness::{inner, random_tensor as tensor, time_op, Args, Report, Timing};
use kjarni_web::ops::elementwise;
use kjarni_web::ops::gelu::{self, Gelu};
use kjarni_web::{DType, Gpu, GpuTensor, Result};
use serde_json::json;

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let n = 4096 * 4096;
    let case = format!("gelu_{n}");
    if !args.wants(&case) {
        return Ok(());
    }
    let x = tensor(gpu, "x", &[n], 8)?;
    let y = GpuTensor::zeros(gpu, "y", &[n], DType::F32)?;
    let k = inner(args);
    let mut t: Vec<Timing> = Vec::new();
    for (name, kind) in [
        ("erf", Gelu::Erf),
        ("tanh", Gelu::Tanh),
        ("erf_rational", Gelu::ErfRational),
    ] {
        t.push(time_op(gpu, args, name, k, |b| gelu::record(gpu, b, kind, &x, &y)).await?);
    }
    t.push(time_op(gpu, args, "copy_vec4", k, |b| elementwise::record_copy(gpu, b, &x, &y)).await?);
    report.add(&case, json!([n]), (2 * n * 4) as f64, 0.0, "erf", &t);
    Ok(())
}
