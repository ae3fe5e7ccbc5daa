//! LayerNorm / RMSNorm: the workgroup-per-row kernel (both reduction paths) and the fused
//! residual variant vs the row-per-thread baseline and add-then-norm; every case also times a
//! vec4 copy of the bytes the op must move (the bandwidth ceiling).

use crate::harness::{inner, random_tensor as tensor, time_op, Args, Report, Timing};
use kjarni_web::ops::elementwise;
use kjarni_web::ops::norm::{self, Norm, NormKind};
use kjarni_web::{DType, Gpu, GpuTensor, Result};
use serde_json::json;

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    for kind in [NormKind::Layer, NormKind::Rms] {
        let family = if kind == NormKind::Layer {
            "layernorm"
        } else {
            "rmsnorm"
        };
        for [rows, cols] in [[128usize, 768usize], [4096, 4096]] {
            let case = format!("{family}_{rows}x{cols}");
            let fused_case = format!("add_{family}_{rows}x{cols}");
            if !args.wants(&case) && !args.wants(&fused_case) {
                continue;
            }
            let x = tensor(gpu, "x", &[rows, cols], 1)?;
            let r = tensor(gpu, "r", &[rows, cols], 2)?;
            let y = GpuTensor::zeros(gpu, "y", &[rows, cols], DType::F32)?;
            let sum = GpuTensor::zeros(gpu, "sum", &[rows, cols], DType::F32)?;
            let g = tensor(gpu, "gamma", &[cols], 3)?;
            let b = tensor(gpu, "beta", &[cols], 4)?;
            let n = match kind {
                NormKind::Layer => Norm::layer(&g, Some(&b), 1e-5),
                NormKind::Rms => Norm::rms(&g, 1e-6),
            };
            let k = inner(args);
            if args.wants(&case) {
                let mut t: Vec<Timing> = Vec::new();
                for red in gpu.caps().reductions() {
                    let v = norm::Variant::Workgroup(red);
                    t.push(
                        time_op(gpu, args, &format!("workgroup_{}", red.name()), k, |bt| {
                            norm::record_variant(gpu, bt, &x, &y, &n, v)
                        })
                        .await?,
                    );
                }
                t.push(
                    time_op(gpu, args, "row_per_thread", k.min(5), |bt| {
                        norm::record_variant(gpu, bt, &x, &y, &n, norm::Variant::RowPerThread)
                    })
                    .await?,
                );
                t.push(
                    time_op(gpu, args, "copy_vec4", k, |bt| {
                        elementwise::record_copy(gpu, bt, &x, &y)
                    })
                    .await?,
                );
                report.add(
                    &case,
                    json!([rows, cols]),
                    (2 * rows * cols * 4) as f64,
                    0.0,
                    "row_per_thread",
                    &t,
                );
            }
            if args.wants(&fused_case) {
                // norm(x + r) that also stores x + r (the residual stream): one fused dispatch vs
                // an elementwise add then the norm. The fused kernel updates x in place, so x
                // drifts over the samples; only the timing matters here.
                let nf = n.residual(&r, true);
                let mut t: Vec<Timing> = Vec::new();
                for red in gpu.caps().reductions() {
                    let v = norm::Variant::Workgroup(red);
                    t.push(
                        time_op(gpu, args, &format!("fused_{}", red.name()), k, |bt| {
                            norm::record_variant(gpu, bt, &x, &y, &nf, v)
                        })
                        .await?,
                    );
                }
                t.push(
                    time_op(gpu, args, "add_then_norm", k, |bt| {
                        elementwise::record(gpu, bt, elementwise::Op::Add, &x, Some(&r), &sum)?;
                        norm::record(gpu, bt, &sum, &y, &n)
                    })
                    .await?,
                );
                t.push(
                    time_op(gpu, args, "copy_vec4", k, |bt| {
                        elementwise::record_copy(gpu, bt, &x, &y)
                    })
                    .await?,
                );
                report.add(
                    &fused_case,
                    json!([rows, cols]),
                    (4 * rows * cols * 4) as f64,
                    0.0,
                    "add_then_norm",
                    &t,
                );
            }
        }
    }
    Ok(())
}
