//! RoPE: the vec2 kernel vs the wg16 scalar baseline, beside a vec4 copy of the same bytes.

use crate::harness::{inner, random_tensor as tensor, time_op, Args, Report, Timing};
use kjarni_web::ops::elementwise;
use kjarni_web::ops::rope::{self, Rope};
use kjarni_web::{DType, Gpu, GpuTensor, Result};
use serde_json::json;

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let (tokens, heads, d) = (512usize, 32usize, 128usize);
    let case = format!("rope_{tokens}x{heads}x{d}");
    if !args.wants(&case) {
        return Ok(());
    }
    let q = tensor(gpu, "q", &[tokens, heads, d], 5)?;
    let k = tensor(gpu, "k", &[tokens, heads, d], 6)?;
    let copy_dst = GpuTensor::zeros(gpu, "copy", &[tokens, heads, d], DType::F32)?;
    let r = Rope::plain(1e4, d);
    let n = inner(args);
    let mut t: Vec<Timing> = Vec::new();
    for (name, v) in [
        ("vec2_wg128", rope::Variant::Vec2 { workgroup: 128 }),
        ("vec2_wg64", rope::Variant::Vec2 { workgroup: 64 }),
        ("scalar_wg64", rope::Variant::Scalar { workgroup: 64 }),
        ("scalar_wg16", rope::BASELINE),
    ] {
        t.push(time_op(gpu, args, name, n, |b| r.record_variant(gpu, b, &q, Some(&k), 100, v)).await?);
    }
    // Q and K are each read and written once: the same bytes as two copies.
    t.push(
        time_op(gpu, args, "copy_vec4", n, |b| {
            elementwise::record_copy(gpu, b, &q, &copy_dst)?;
            elementwise::record_copy(gpu, b, &k, &copy_dst)
        })
        .await?,
    );
    report.add(
        &case,
        json!({"q": [tokens, heads, d], "k": [tokens, heads, d]}),
        (4 * tokens * heads * d * 4) as f64,
        0.0,
        "scalar_wg16",
        &t,
    );
    Ok(())
}
