//! Where a dispatch's time goes on this backend: CPU recording (ops + bind-group cache), CPU
//! encoding and submission (wgpu's command encoding, barrier tracking), and the GPU's own time
//! between dependent tiny dispatches; plus the readback round trip decode pays per token today.
//! The kernel is a 576-element in-place SiLU (SmolLM2's hidden size): its own work is negligible.

use crate::harness::{Args, Report, Timing};
use kjarni_web::gpu::Batch;
use kjarni_web::ops::elementwise::{self, Op};
use kjarni_web::{DType, Gpu, GpuTensor, Result};
use serde_json::json;
use std::time::Instant;

const N: usize = 300;

fn median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

/// Record `N` dispatches: all on one tensor (each depends on the previous: wgpu puts a barrier
/// between them) or each on its own tensor (independent).
fn record(gpu: &Gpu, xs: &[GpuTensor], dependent: bool) -> Result<Batch> {
    let mut b = gpu.batch();
    for i in 0..N {
        let x = if dependent { &xs[0] } else { &xs[i % xs.len()] };
        elementwise::record_inplace(gpu, &mut b, Op::Silu, x)?;
    }
    Ok(b)
}

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let case = "dispatch_overhead";
    if !args.wants(case) {
        return Ok(());
    }
    let xs = (0..N)
        .map(|i| GpuTensor::zeros(gpu, &format!("x{i}"), &[576], DType::F32))
        .collect::<Result<Vec<_>>>()?;
    let samples = if args.quick { 3 } else { 20 };
    let mut timings = Vec::new();
    let mut extra = serde_json::Map::new();
    for dependent in [true, false] {
        let tag = if dependent { "dependent" } else { "independent" };
        let (mut rec, mut sub, mut total) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..samples + 3 {
            gpu.sync().await?;
            let t0 = Instant::now();
            let b = record(gpu, &xs, dependent)?;
            let t1 = Instant::now();
            gpu.submit(b)?;
            let t2 = Instant::now();
            gpu.sync().await?;
            let t3 = Instant::now();
            if i >= 3 {
                rec.push((t1 - t0).as_secs_f64() * 1e6 / N as f64);
                sub.push((t2 - t1).as_secs_f64() * 1e6 / N as f64);
                total.push((t3 - t0).as_secs_f64() * 1e6 / N as f64);
            }
        }
        for (what, v) in [("record_cpu", rec), ("encode_submit_cpu", sub), ("total", total)] {
            let (m, lo) = median(v);
            timings.push(Timing {
                name: format!("{tag}_{what}_per_dispatch"),
                median_us: m,
                min_us: lo,
            });
        }
    }
    // Readback round trips: a vocabulary of logits (49152 f32) and one token id.
    for (name, n) in [("readback_logits_196k", 49152usize), ("readback_one_id", 1)] {
        let t = GpuTensor::zeros(gpu, name, &[n], DType::F32)?;
        let mut v = Vec::new();
        for i in 0..samples + 3 {
            let t0 = Instant::now();
            let _ = t.to_f32_vec(gpu).await?;
            if i >= 3 {
                v.push(t0.elapsed().as_secs_f64() * 1e6);
            }
        }
        let (m, lo) = median(v);
        timings.push(Timing {
            name: name.into(),
            median_us: m,
            min_us: lo,
        });
    }
    extra.insert("dispatches_per_sample".into(), json!(N));
    report.add(
        case,
        serde_json::Value::Object(extra),
        0.0,
        0.0,
        "dependent_total_per_dispatch",
        &timings,
    );
    Ok(())
}
