//! Kernels I: LayerNorm / RMSNorm (workgroup per row, both reduction paths, fused residual) vs
//! the row-per-thread baseline; RoPE vec2 vs the wg16 scalar baseline; embedding vec8 vs scalar
//! per dtype; GELU formulas; fused causal softmax vs mask-then-softmax; repeat_kv vec4 vs scalar.
//! Every case also times a vec4 copy of the bytes the op must move (the bandwidth ceiling).

use crate::harness::{time_op, Args, Report, Timing};
use kjarni_web::ops::embedding::{self, Lookup, Tables, TokenIds};
use kjarni_web::ops::gelu::{self, Gelu};
use kjarni_web::ops::norm::{self, Norm, NormKind};
use kjarni_web::ops::rope::{self, Rope, RopeConfig, RopeLayout, RopeScaling};
use kjarni_web::ops::softmax::{self, Mask, MaskedVariant};
use kjarni_web::ops::{elementwise, repeat_kv};
use kjarni_web::{cpu, DType, Gpu, GpuTensor, Result};
use serde_json::json;

fn tensor(gpu: &Gpu, name: &str, shape: &[usize], seed: u64) -> Result<GpuTensor> {
    let n = shape.iter().product();
    GpuTensor::from_f32(gpu, name, shape, DType::F32, &cpu::random(n, seed, -2.0, 2.0))
}

fn inner(args: &Args) -> usize {
    if args.quick {
        2
    } else {
        20
    }
}

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    norms(gpu, args, report).await?;
    rope_case(gpu, args, report).await?;
    embedding_cases(gpu, args, report).await?;
    gelu_case(gpu, args, report).await?;
    masked_softmax_case(gpu, args, report).await?;
    repeat_kv_case(gpu, args, report).await
}

async fn norms(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
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

async fn rope_case(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let (tokens, heads, d) = (512usize, 32usize, 128usize);
    let case = format!("rope_{tokens}x{heads}x{d}");
    if !args.wants(&case) {
        return Ok(());
    }
    let q = tensor(gpu, "q", &[tokens, heads, d], 5)?;
    let k = tensor(gpu, "k", &[tokens, heads, d], 6)?;
    let copy_dst = GpuTensor::zeros(gpu, "copy", &[tokens, heads, d], DType::F32)?;
    let r = Rope::new(
        gpu,
        RopeConfig {
            theta: 1e4,
            head_dim: d,
            rotary_dim: d,
            layout: RopeLayout::HalfSplit,
            scaling: RopeScaling::None,
        },
    )?;
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

async fn embedding_cases(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let (tokens, vocab, hidden) = (2048usize, 4096usize, 4096usize);
    for (dt, name) in [(DType::F32, "f32"), (DType::F16, "f16"), (DType::BF16, "bf16")] {
        let case = format!("embedding_{name}_{tokens}x{hidden}");
        if !args.wants(&case) {
            continue;
        }
        let table = GpuTensor::from_f32(
            gpu,
            "word",
            &[vocab, hidden],
            dt,
            &cpu::random(vocab * hidden, 7, -1.0, 1.0),
        )?;
        let ids: Vec<u32> = (0..tokens).map(|i| ((i * 7919) % vocab) as u32).collect();
        let ids = TokenIds::new(gpu, "ids", &ids)?;
        let out = GpuTensor::zeros(gpu, "out", &[tokens, hidden], DType::F32)?;
        let out2 = GpuTensor::zeros(gpu, "out2", &[tokens, hidden], DType::F32)?;
        let tables = Tables {
            word: &table,
            position: None,
            token_type: None,
        };
        let n = inner(args);
        let t = vec![
            time_op(gpu, args, "vec8", n, |b| {
                embedding::record_variant(gpu, b, &tables, &Lookup::new(&ids), &out, embedding::Variant::Vec8)
            })
            .await?,
            time_op(gpu, args, "scalar", n, |b| {
                embedding::record_variant(gpu, b, &tables, &Lookup::new(&ids), &out, embedding::Variant::Scalar)
            })
            .await?,
            time_op(gpu, args, "copy_vec4_output", n, |b| {
                elementwise::record_copy(gpu, b, &out, &out2)
            })
            .await?,
        ];
        let bytes = tokens * hidden * (dt.size() + 4);
        report.add(
            &case,
            json!({"tokens": tokens, "vocab": vocab, "hidden": hidden, "dtype": name}),
            bytes as f64,
            0.0,
            "scalar",
            &t,
        );
    }
    Ok(())
}

async fn gelu_case(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
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

async fn masked_softmax_case(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
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

async fn repeat_kv_case(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
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
