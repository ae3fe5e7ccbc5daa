//! Quantised weights: GEMV (decode) per block type at N×K = 4096×4096, 4096×14336 (down
//! projection) and 14336×4096 (gate / up), case `quant_gemv_<type>_n<N>_k<K>`. Variants timed in
//! one run on rotating weight copies (≥ 160 MB in all, so L2 does not hold them, as in the bf16
//! GEMV bench):
//! - `fast_default_*` = what `quant::record` picks (`gemv_default`), `fast_wg*_l*_r*[_u2]`
//!   candidate parameters of the same kernel (workgroup × lanes per row × rows per lane × units
//!   per lane step);
//! - `gemv_rows{1,4}_*`: the previous GEMV kernel (the baseline);
//! - `bf16_gemv`: the tuned bf16 GEMV (`ops::gemv`, default variant) of the same shape;
//! - `copy_vec4`: a vec4 copy moving the quantised bytes (half read, half written): the ceiling.
//!
//! `effective_gb_s` counts the quantised block bytes for every variant (so for `bf16_gemv` it is
//! not its own byte rate: see the case's `bf16_gemv_gb_s`). The case is reported twice:
//! `speedup_vs_bf16_gemv` (quantised / bf16 per matrix, the number issue #10 asks for) and, as
//! `<case>_vs_old`, `speedup_vs_gemv_rows1_<reduction>` (new / old kernel).
//! The tiled prefill matmul is timed at M = 512 in TFLOPS.

use crate::harness::{time_op, Args, Report, Timing};
use kjarni_web::cpu::quant as cq;
use kjarni_web::gpu::Reduction;
use kjarni_web::ops::elementwise;
use kjarni_web::ops::gemv;
use kjarni_web::ops::linear::Epilogue;
use kjarni_web::ops::quant::{self, QuantType, QuantWeight, Variant};
use kjarni_web::{cpu, DType, Gpu, GpuTensor, Result};
use serde_json::json;

fn name(t: QuantType) -> String {
    format!("{t:?}").to_lowercase()
}

/// Bytes of weights that do not fit the largest L2 (H100: 50 MB), rotated over between dispatches.
const L2_DEFEAT_BYTES: usize = 160 << 20;

fn copies(args: &Args, bytes: usize) -> usize {
    if args.quick {
        1
    } else {
        L2_DEFEAT_BYTES.div_ceil(bytes.max(1)).clamp(1, 64)
    }
}

/// Dispatches per timed batch: ~2 ms of work at 2.5 TB/s, between 3 and 200.
fn inner_for(args: &Args, bytes: usize) -> usize {
    if args.quick {
        return 2;
    }
    ((2e-3 / (bytes as f64 / 2.5e12).max(1e-9)) as usize).clamp(3, 200)
}

/// Candidate parameters of the tuned GEMV (bench-selectable, for the H100 run), every type:
/// the neighbourhood of the sweep's winners (lanes 32 / 64, 4 rows); 128 / 256 lanes (every lane
/// one or two units of a 4096 / 14336 row: all loads issued at once); 8 / 16 rows per lane (x
/// loaded once for more rows: less L1/L2 traffic for x); and two
/// units per lane step (`_u2`: Q4_K reads a whole 32-byte group with one scale unpack; the
/// block types load two adjacent blocks before the math).
fn candidates(gpu: &Gpu) -> Vec<Variant> {
    let max_wg = gpu.caps().max_invocations.min(256);
    let reduction = gpu.caps().variants.reduction;
    // (workgroup, lanes, rows, step)
    let list: [(u32, u32, u32, u32); 27] = [
        (64, 64, 2, 1),
        (64, 64, 4, 1),
        (64, 64, 8, 1),
        (128, 128, 4, 1),
        (128, 128, 8, 1),
        (128, 128, 16, 1),
        (128, 64, 4, 1),
        (128, 64, 8, 1),
        (128, 32, 4, 1),
        (128, 32, 8, 1),
        (256, 32, 2, 1),
        (256, 32, 4, 1),
        (256, 256, 8, 1),
        (64, 64, 4, 2),
        (64, 64, 8, 2),
        (64, 64, 16, 2),
        (128, 128, 8, 2),
        (128, 128, 16, 2),
        (128, 64, 4, 2),
        (128, 64, 8, 2),
        (128, 64, 16, 2),
        (128, 32, 4, 2),
        (128, 32, 8, 2),
        (256, 32, 4, 2),
        (256, 256, 4, 2),
        (256, 256, 8, 2),
        (256, 256, 16, 2),
    ];
    let mut v = Vec::new();
    for (workgroup, lanes, rows, step) in list {
        if workgroup <= max_wg {
            v.push(Variant::GemvFast {
                workgroup,
                lanes,
                rows,
                step,
                reduction,
            });
        }
    }
    v
}

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    for t in [QuantType::Q4_K, QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4_1] {
        for (n, k) in [(4096usize, 4096usize), (4096, 14336), (14336, 4096)] {
            let case = format!("quant_gemv_{}_n{n}_k{k}", name(t));
            if !args.wants(&case) {
                continue;
            }
            let qbytes = t.bytes(n, k);
            let nq = copies(args, qbytes);
            // Raw random blocks: same bytes and work as real weights, no quantisation wait.
            let ws: Vec<QuantWeight> = (0..nq)
                .map(|i| {
                    QuantWeight::from_blocks(
                        gpu,
                        &format!("w{i}"),
                        t,
                        n,
                        k,
                        &cq::random_blocks(t, 7 + i as u64, n * k / t.block_size()),
                    )
                })
                .collect::<Result<_>>()?;
            let x = GpuTensor::from_f32(gpu, "x", &[1, k], DType::F32, &cpu::random(k, 3, -1.0, 1.0))?;
            let y = GpuTensor::zeros(gpu, "y", &[1, n], DType::F32)?;
            let inner = inner_for(args, qbytes);
            let mut timings: Vec<Timing> = Vec::new();
            let default = quant::gemv_default(gpu, t, n, k);
            let mut variants = vec![(format!("fast_default_{}", default.name()), default)];
            for v in candidates(gpu) {
                if v != default {
                    variants.push((v.name(), v));
                }
            }
            let reduction = gpu.caps().variants.reduction;
            let old = Variant::Gemv { rows: 1, reduction };
            variants.push((old.name(), old));
            let old4 = Variant::Gemv { rows: 4, reduction };
            variants.push((old4.name(), old4));
            for (label, v) in &variants {
                let mut i = 0;
                timings.push(
                    time_op(gpu, args, label, inner, |b| {
                        i = (i + 1) % nq;
                        quant::record_variant(gpu, b, &ws[i], &x, &y, *v)
                    })
                    .await?,
                );
            }
            drop(ws);
            // The bf16 GEMV of the same shape, same rotation scheme.
            let bbytes = n * k * 2;
            let nb = copies(args, bbytes);
            let bws: Vec<GpuTensor> = (0..nb)
                .map(|i| {
                    GpuTensor::from_f32(
                        gpu,
                        &format!("wb{i}"),
                        &[n, k],
                        DType::BF16,
                        &cpu::random(n * k, 11 + i as u64, -0.05, 0.05),
                    )
                })
                .collect::<Result<_>>()?;
            let xb = GpuTensor::from_f32(gpu, "xb", &[k], DType::F32, &cpu::random(k, 3, -1.0, 1.0))?;
            let yb = GpuTensor::zeros(gpu, "yb", &[n], DType::F32)?;
            let bv = gemv::default_variant(gpu.caps(), n, k, DType::BF16);
            let mut i = 0;
            let bf16 = time_op(gpu, args, "bf16_gemv", inner_for(args, bbytes), |b| {
                i = (i + 1) % nb;
                gemv::record_variant(gpu, b, &bws[i], &xb, &yb, &Epilogue::NONE, bv)
            })
            .await?;
            let bf16_gb_s = bbytes as f64 / (bf16.median_us * 1e3);
            timings.push(bf16);
            drop(bws);
            // Copy ceiling: half the quantised bytes read + half written, rotating buffers.
            let words = (qbytes / 2).div_ceil(16) * 4;
            let nc = copies(args, qbytes);
            let srcs: Vec<GpuTensor> = (0..nc)
                .map(|i| GpuTensor::zeros(gpu, &format!("copy_src{i}"), &[words], DType::U32))
                .collect::<Result<_>>()?;
            let dsts: Vec<GpuTensor> = (0..nc)
                .map(|i| GpuTensor::zeros(gpu, &format!("copy_dst{i}"), &[words], DType::U32))
                .collect::<Result<_>>()?;
            let mut i = 0;
            timings.push(
                time_op(gpu, args, "copy_vec4", inner, |b| {
                    i = (i + 1) % nc;
                    elementwise::record_copy(gpu, b, &srcs[i], &dsts[i])
                })
                .await?,
            );
            let bytes = qbytes as f64;
            let flops = 2.0 * (n * k) as f64;
            let shape = json!({ "n": n, "k": k, "type": name(t), "block_bytes": qbytes, "weight_copies": nq, "bf16_variant": bv.name() });
            report.add(&case, shape.clone(), bytes, flops, "bf16_gemv", &timings);
            report.annotate("bf16_gemv_gb_s", json!((bf16_gb_s * 10.0).round() / 10.0));
            report.add(&format!("{case}_vs_old"), shape, bytes, flops, &old.name(), &timings);
        }
    }
    for t in [QuantType::Q4_K, QuantType::Q8_0] {
        let (m, n, k) = (512usize, 4096usize, 4096usize);
        let case = format!("quant_matmul_{}_{m}x{n}x{k}", name(t));
        if !args.wants(&case) {
            continue;
        }
        let blocks = cq::random_blocks(t, 9, n * k / t.block_size());
        let w = QuantWeight::from_blocks(gpu, "w", t, n, k, &blocks)?;
        let x = GpuTensor::from_f32(gpu, "x", &[m, k], DType::F32, &cpu::random(m * k, 5, -1.0, 1.0))?;
        let y = GpuTensor::zeros(gpu, "y", &[m, n], DType::F32)?;
        let inner = if args.quick { 1 } else { 10 };
        let mut timings = Vec::new();
        for rm in [4u32, 2, 1] {
            let v = Variant::Matmul { rm };
            timings.push(
                time_op(gpu, args, &format!("matmul_rm{rm}"), inner, |b| {
                    quant::record_variant(gpu, b, &w, &x, &y, v)
                })
                .await?,
            );
        }
        // GEMV per x row would re-read the weights M times: the prefill kernel must beat it.
        let v = Variant::Gemv {
            rows: 4,
            reduction: Reduction::SharedMemory,
        };
        timings.push(
            time_op(gpu, args, "gemv_rows4_shared", inner, |b| {
                quant::record_variant(gpu, b, &w, &x, &y, v)
            })
            .await?,
        );
        let bytes = (w.block_bytes() + (m * k + m * n) * 4) as f64;
        let shape = json!({ "m": m, "n": n, "k": k, "type": name(t) });
        report.add(
            &case,
            shape,
            bytes,
            2.0 * (m * n * k) as f64,
            "gemv_rows4_shared",
            &timings,
        );
    }
    Ok(())
}

/// `quant_pair_<type>_<model>`: the fused quantised gate/up GEMV (RMSNorm prologue, `[gate; up]`
/// rows in one pass, SiLU · up) at the decode shapes of SmolLM2-135M (1536 outputs, K = 576) and
/// Qwen2.5-0.5B (4864, K = 896), the launch shape `gemv_default` picks beside candidates with
/// fewer rows or outputs per workgroup (more workgroups in flight). 60 dispatches per sample, in
/// sequence (each rewrites y: a barrier between them, as between a layer's dispatches), on
/// rotating weight copies: per-dispatch latency as in a decode step.
pub async fn pair(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    use kjarni_web::ops::linear::{GateAct, NormPrologue};
    for (model, n, k) in [("smollm2_135m", 1536usize, 576usize), ("qwen2.5_0.5b", 4864, 896)] {
        for t in [QuantType::Q4_1, QuantType::Q4_K, QuantType::Q8_0] {
            let case = format!("quant_pair_{}_{model}", name(t));
            if !args.wants(&case) {
                continue;
            }
            let qbytes = t.bytes(2 * n, k);
            let nq = copies(args, qbytes);
            let ws: Vec<QuantWeight> = (0..nq)
                .map(|i| {
                    QuantWeight::from_blocks(
                        gpu,
                        &format!("w{i}"),
                        t,
                        2 * n,
                        k,
                        &cq::random_blocks(t, 17 + i as u64, 2 * n * k / t.block_size()),
                    )
                })
                .collect::<Result<_>>()?;
            let x = GpuTensor::from_f32(gpu, "x", &[1, k], DType::F32, &cpu::random(k, 3, -1.0, 1.0))?;
            let g = GpuTensor::from_f32(gpu, "g", &[k], DType::F32, &cpu::random(k, 5, 0.5, 1.5))?;
            let y = GpuTensor::zeros(gpu, "y", &[1, n], DType::F32)?;
            let norm = NormPrologue { weight: &g, eps: 1e-5 };
            let default = quant::gemv_default(gpu, t, n, k);
            let reduction = gpu.caps().variants.reduction;
            let mut variants = vec![(format!("default_{}", default.name()), default)];
            for (workgroup, lanes, rows) in [
                (64, 16, 2),
                (64, 16, 1),
                (64, 32, 2),
                (64, 32, 1),
                (32, 16, 1),
                (128, 32, 1),
                (64, 8, 2),
                (64, 8, 1),
            ] {
                let v = Variant::GemvFast {
                    workgroup,
                    lanes,
                    rows,
                    step: 1,
                    reduction,
                };
                let mut probe = gpu.batch();
                let fits = quant::record_fused_variant(
                    gpu,
                    &mut probe,
                    &ws[0],
                    &x,
                    &y,
                    Some(&norm),
                    &Epilogue::NONE,
                    Some(GateAct::Silu),
                    v,
                )
                .is_ok();
                if v != default && fits {
                    variants.push((v.name(), v));
                }
            }
            let mut timings = Vec::new();
            for (label, v) in &variants {
                let mut i = 0;
                timings.push(
                    time_op(gpu, args, label, 60, |b| {
                        i = (i + 1) % nq;
                        quant::record_fused_variant(
                            gpu,
                            b,
                            &ws[i],
                            &x,
                            &y,
                            Some(&norm),
                            &Epilogue::NONE,
                            Some(GateAct::Silu),
                            *v,
                        )
                    })
                    .await?,
                );
            }
            let base = timings.first().map(|t| t.name.clone()).unwrap_or_default();
            let shape = json!({ "n_out": n, "k": k, "type": name(t), "block_bytes": qbytes, "weight_copies": nq });
            report.add(&case, shape, qbytes as f64, 4.0 * (n * k) as f64, &base, &timings);
        }
    }
    Ok(())
}
