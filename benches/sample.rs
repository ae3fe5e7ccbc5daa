//! Filtered sampling (`ops::sample`) at large vocabularies: the single-workgroup kernel
//! (`sample_filtered`, one workgroup scans the vocabulary) against the two-stage paths, beside the
//! temperature-only argmax (the cost floor of a draw), temperature 0.7. Cases:
//! `sample_top_k_40_top_p_0.95_<vocab>` (`topk_partial` + `topk_final`) and, top-p alone
//! (`topk_partial` + `topp_final`), `sample_top_p_0.95_<vocab>` (uniform logits in [-8, 8]: a
//! nucleus of thousands, the whole-vocabulary fallbacks) and `sample_top_p_0.95_peaked_<vocab>`
//! (a bulk in [-8, 0] and 40 tokens in [4, 9], like a language model's: decided from the
//! candidates). Wall µs per draw (`<path>`) and, where the device has timestamp queries, GPU µs
//! per draw summed over its dispatches (`gpu_<path>`).

use crate::harness::{inner, time_op, Args, Report, Timing};
use kjarni_web::generate::SamplingParams;
use kjarni_web::ops::sample::{FilteredPath, GpuSampler};
use kjarni_web::{cpu, DType, Gpu, GpuTensor, Result};
use serde_json::json;

/// Uniform logits in [-8, 8], or (`peaked`) a bulk in [-8, 0] with 40 tokens in [4, 9].
fn bench_logits(vocab: usize, peaked: bool) -> Vec<f32> {
    if !peaked {
        return cpu::random(vocab, 7, -8.0, 8.0);
    }
    let mut l = cpu::random(vocab, 7, -8.0, 0.0);
    for (h, &x) in cpu::random(40, 8, 4.0, 9.0).iter().enumerate() {
        l[(h * 7919 + 13) % vocab] = x;
    }
    l
}

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let cases = [
        ("sample_top_k_40_top_p_0.95", 40, false),
        ("sample_top_p_0.95", 0, false),
        ("sample_top_p_0.95_peaked", 0, true),
    ];
    for (prefix, top_k, peaked) in cases {
        for vocab in [49152usize, 151936, 262144] {
            let case = format!("{prefix}_{vocab}");
            if !args.wants(&case) {
                continue;
            }
            run_case(gpu, args, report, &case, vocab, top_k, peaked).await?;
        }
    }
    Ok(())
}

async fn run_case(
    gpu: &Gpu,
    args: &Args,
    report: &mut Report,
    case: &str,
    vocab: usize,
    top_k: usize,
    peaked: bool,
) -> Result<()> {
    let logits = GpuTensor::from_f32(gpu, "logits", &[vocab], DType::F32, &bench_logits(vocab, peaked))?;
    let ids = GpuTensor::zeros(gpu, "ids", &[1], DType::U32)?;
    let filtered = SamplingParams {
        temperature: 0.7,
        top_k,
        top_p: 0.95,
        seed: 1,
        ..Default::default()
    };
    let plain = SamplingParams {
        temperature: 0.7,
        seed: 1,
        ..Default::default()
    };
    let variants = [
        ("single_workgroup", &filtered, FilteredPath::SingleWorkgroup),
        ("two_stage", &filtered, FilteredPath::TwoStage),
        ("temperature_argmax", &plain, FilteredPath::Auto),
    ];
    let n = inner(args);
    let mut timings: Vec<Timing> = Vec::new();
    let mut shape = json!({ "vocab": vocab, "top_k": top_k, "top_p": 0.95, "temperature": 0.7, "peaked": peaked });
    for (name, params, path) in variants {
        let mut s = GpuSampler::new(gpu, vocab)?;
        s.start(gpu, params, &[])?;
        s.set_filtered_path(path);
        shape[format!("dispatches_{name}")] = json!(s.dispatches());
        timings.push(time_op(gpu, args, name, n, |b| s.record(gpu, b, &logits, ids.buffer(), 0)).await?);
        // GPU time of `n` draws, one timestamped pass per dispatch.
        gpu.begin_profile()?;
        let mut b = gpu.batch();
        let mut recorded = Ok(());
        for _ in 0..n {
            recorded = recorded.and(s.record(gpu, &mut b, &logits, ids.buffer(), 0));
        }
        let submitted = recorded.and(gpu.submit(b));
        let p = gpu.end_profile().await?;
        submitted?;
        if let Some(us) = p.total_gpu_us {
            let per = us / n as f64;
            timings.push(Timing {
                name: format!("gpu_{name}"),
                median_us: per,
                min_us: per,
            });
            shape["quantized"] = json!(p.quantized);
        }
    }
    report.add(case, shape, (vocab * 4) as f64, 0.0, "single_workgroup", &timings);
    Ok(())
}
