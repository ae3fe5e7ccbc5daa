//! Timing and JSON reporting shared by every benchmark family.
//!
//! Each sample records `inner` dispatches of one variant into one batch, submits it and waits;
//! the per-dispatch time is the wall time over `inner` (submission cost amortised), and the
//! reported figure is the median over the samples after warm-up. Variants of one case are timed
//! in the same run on the same device, so their ratios are what to read.

use kjarni_web::gpu::Batch;
use kjarni_web::ops::elementwise;
use kjarni_web::{cpu, DType, Gpu, GpuTensor, Result};
use serde_json::{json, Value};
use std::time::Instant;

/// Command-line options.
pub struct Args {
    /// Only cases whose name contains this (or one of its comma-separated parts).
    pub filter: Option<String>,
    /// Fewer samples (smoke runs on a CPU adapter).
    pub quick: bool,
}

impl Args {
    pub fn parse() -> Args {
        let mut filter = None;
        let mut quick = false;
        for a in std::env::args().skip(1) {
            if a == "--quick" {
                quick = true;
            } else if !a.starts_with("--") {
                filter = Some(a);
            }
        }
        Args { filter, quick }
    }

    /// Whether `case` contains the filter (or one of its comma-separated parts).
    pub fn wants(&self, case: &str) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|f| f.split(',').any(|p| case.contains(p)))
    }

    fn samples(&self) -> (usize, usize) {
        if self.quick {
            (1, 3)
        } else {
            (3, 15)
        }
    }
}

/// One timed variant.
pub struct Timing {
    pub name: String,
    pub median_us: f64,
    pub min_us: f64,
}

/// Median and minimum microseconds per dispatch of `record` (which records one op into a batch).
pub async fn time_op(
    gpu: &Gpu,
    args: &Args,
    name: &str,
    inner: usize,
    mut record: impl FnMut(&mut Batch) -> Result<()>,
) -> Result<Timing> {
    let (warm, samples) = args.samples();
    let mut times = Vec::with_capacity(samples);
    for i in 0..warm + samples {
        let mut batch = gpu.batch();
        for _ in 0..inner {
            record(&mut batch)?;
        }
        let t0 = Instant::now();
        gpu.submit(batch)?;
        gpu.sync().await?;
        let us = t0.elapsed().as_secs_f64() * 1e6 / inner as f64;
        if i >= warm {
            times.push(us);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(Timing {
        name: name.to_string(),
        median_us: times[times.len() / 2],
        min_us: times[0],
    })
}

/// The JSON report: one entry per case, each with its variants side by side and their ratios.
#[derive(Default)]
pub struct Report {
    cases: Vec<Value>,
}

impl Report {
    /// Add a case. `bytes` is the minimal traffic of the op (read inputs once, write outputs
    /// once) and `flops` its arithmetic, for effective GB/s and TFLOPS; `baseline` names the
    /// variant the others are compared with (ratio = baseline time / variant time: > 1 is faster).
    pub fn add(&mut self, case: &str, shape: Value, bytes: f64, flops: f64, baseline: &str, timings: &[Timing]) {
        let base = timings.iter().find(|t| t.name == baseline).map(|t| t.median_us);
        let variants: Vec<Value> = timings
            .iter()
            .map(|t| {
                let mut v = json!({
                    "variant": t.name,
                    "median_us": round(t.median_us, 2),
                    "min_us": round(t.min_us, 2),
                    "effective_gb_s": round(bytes / (t.median_us * 1e3), 1),
                });
                if flops > 0.0 {
                    v["tflops"] = json!(round(flops / (t.median_us * 1e6), 2));
                }
                if let Some(b) = base {
                    v[format!("speedup_vs_{baseline}")] = json!(round(b / t.median_us, 2));
                }
                v
            })
            .collect();
        let line = json!({ "case": case, "shape": shape, "bytes": bytes, "variants": variants });
        eprintln!("{line}");
        self.cases.push(line);
    }

    pub fn finish(self, gpu: &Gpu) -> Value {
        json!({
            "adapter": gpu.caps().adapter,
            "backend": gpu.caps().backend,
            "driver": gpu.caps().driver,
            "variants_chosen": gpu.caps().variants,
            "cases": self.cases,
        })
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

impl Report {
    /// Attach an extra field (peak memory, a skipped variant and why) to the last case added.
    pub fn annotate(&mut self, key: &str, value: Value) {
        if let Some(last) = self.cases.last_mut() {
            last[key] = value;
            eprintln!("  {key}: {}", last[key]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs shared by the kernel families

/// An f32 tensor of `shape` with values uniform in [-2, 2).
pub fn random_tensor(gpu: &Gpu, name: &str, shape: &[usize], seed: u64) -> Result<GpuTensor> {
    let n = shape.iter().product();
    GpuTensor::from_f32(gpu, name, shape, DType::F32, &cpu::random(n, seed, -2.0, 2.0))
}

/// Dispatches per timed batch of the small row / elementwise ops.
pub fn inner(args: &Args) -> usize {
    if args.quick {
        2
    } else {
        20
    }
}

/// Bytes of weights a GEMV-like case rotates over, so that no copy stays in L2 (≥ 160 MB: an
/// H100's 50 MB L2 would otherwise serve a repeated 32 MB weight).
const L2_DEFEAT_BYTES: usize = 160 << 20;

/// Weight copies for `bytes` per copy (at most `max`; one with `--quick`).
pub fn copies(args: &Args, bytes: usize, max: usize) -> usize {
    if args.quick {
        1
    } else {
        L2_DEFEAT_BYTES.div_ceil(bytes.max(1)).clamp(1, max)
    }
}

/// A `[n, k]` weight of `dtype`, values uniform in [-0.05, 0.05).
pub fn weight(gpu: &Gpu, name: &str, n: usize, k: usize, dtype: DType, seed: u64) -> Result<GpuTensor> {
    GpuTensor::from_f32(gpu, name, &[n, k], dtype, &cpu::random(n * k, seed, -0.05, 0.05))
}

/// An f32 tensor of `shape`, values uniform in [-1, 1).
pub fn vector(gpu: &Gpu, name: &str, shape: &[usize], seed: u64) -> Result<GpuTensor> {
    let n = shape.iter().product();
    GpuTensor::from_f32(gpu, name, shape, DType::F32, &cpu::random(n, seed, -1.0, 1.0))
}

/// Dispatches per timed batch: enough GPU time to amortise a submit (~0.1 ms) on a fast GPU.
pub fn inner_for(args: &Args, bytes: f64, flops: f64) -> usize {
    if args.quick {
        return 2;
    }
    // ~2 ms of work at 2.5 TB/s or 25 TFLOPS, between 3 and 200 dispatches.
    let seconds = (bytes / 2.5e12).max(flops / 2.5e13);
    ((2e-3 / seconds.max(1e-9)) as usize).clamp(3, 200)
}

/// A copy of `bytes` bytes in total traffic (bytes / 2 read, bytes / 2 written), rotating copies.
pub async fn copy_timing(gpu: &Gpu, args: &Args, bytes: usize, inner: usize) -> Result<Timing> {
    let words = (bytes / 2).div_ceil(16) * 4; // f32 elements of a vec4-multiple half
    let n = copies(args, bytes, 16);
    let srcs: Vec<GpuTensor> = (0..n)
        .map(|i| GpuTensor::zeros(gpu, &format!("copy_src{i}"), &[words], DType::F32))
        .collect::<Result<_>>()?;
    let dsts: Vec<GpuTensor> = (0..n)
        .map(|i| GpuTensor::zeros(gpu, &format!("copy_dst{i}"), &[words], DType::F32))
        .collect::<Result<_>>()?;
    let mut i = 0;
    time_op(gpu, args, "copy_vec4", inner, |b| {
        i = (i + 1) % n;
        elementwise::record_copy(gpu, b, &srcs[i], &dsts[i])
    })
    .await
}
