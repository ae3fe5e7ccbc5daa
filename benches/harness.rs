//! Timing and JSON reporting shared by every benchmark family.
//!
//! Each sample records `inner` dispatches of one variant into one batch, submits it and waits;
//! the per-dispatch time is the wall time over `inner` (submission cost amortised), and the
//! reported figure is the median over the samples after warm-up. Variants of one case are timed
//! in the same run on the same device, so their ratios are what to read.

use kjarni_web::gpu::Batch;
use kjarni_web::{Gpu, Result};
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
