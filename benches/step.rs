//! Where a decode step's GPU time goes, dispatch by dispatch, as `generate` runs it: every
//! dispatch of the real one-pass step timed by timestamps written between dispatches inside
//! the pass (`Gpu::begin_profile_in_pass`, native devices with `TIMESTAMP_QUERY_INSIDE_PASSES`),
//! so each time includes the barrier before the dispatch and its launch, not the extra pass
//! boundaries of `profile_decoder_*`'s pass-per-dispatch profile.
//!
//! Cases `profile_step_<model>` (bf16 synthetic weights) and
//! `profile_step_<model>_{q4_1,q4_k,q8_0}_gguf`: per kernel label, calls and µs per step
//! (median step), µs per call; the step's sum beside the plain one-pass step time.

use crate::driver::timed_generate;
use crate::harness::{Args, Report, Timing};
use crate::models::{synth, synthetic, MODELS};
use kjarni_web::generate::SamplingParams;
use kjarni_web::models::llama::{Llama, LlamaOptions};
use kjarni_web::ops::kv_cache::KvDType;
use kjarni_web::ops::quant::QuantType;
use kjarni_web::{Gpu, Result};
use serde_json::json;

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let opts = LlamaOptions {
        kv_cache: KvDType::F16,
        max_context: 1024,
    };
    let quants = [
        ("", None),
        ("_q4_1_gguf", Some(QuantType::Q4_1)),
        ("_q4_k_gguf", Some(QuantType::Q4_K)),
        ("_q8_0_gguf", Some(QuantType::Q8_0)),
    ];
    for s in MODELS.iter().chain(&kjarni_web::cpu::synthetic::MODELS_II) {
        for (suffix, quant) in quants {
            let case = format!("profile_step_{}{suffix}", s.name);
            if !args.wants(&case) {
                continue;
            }
            let loaded = match quant {
                None => {
                    let (src, _) = synthetic(s);
                    Llama::load(gpu, &src, &opts, &mut |_| {}).await
                }
                Some(t) => {
                    let (src, _) = synth::gguf(s, t);
                    Llama::load_gguf(gpu, &src, "model.gguf", &opts, &mut |_| {}).await
                }
            };
            let r = match loaded {
                Ok(mut m) => one(gpu, args, report, &case, &mut m).await,
                Err(e) => Err(e),
            };
            // One model's failure is a finding (recorded in its case), not the end of the run.
            if let Err(e) = r {
                eprintln!("{case}: {e}");
                report.add(&case, json!({ "error": e.to_string() }), 0.0, 0.0, "", &[]);
            }
        }
    }
    Ok(())
}

async fn one(gpu: &Gpu, args: &Args, report: &mut Report, case: &str, m: &mut Llama) -> Result<()> {
    let prompt: Vec<u32> = (0..48).map(|i| (i * 7 % 1000) as u32).collect();
    let steps = if args.quick { 4 } else { 24 };
    let greedy = SamplingParams::default();
    timed_generate(gpu, m, &prompt, 4, 3, greedy.clone()).await?; // warm-up
    gpu.begin_profile_in_pass()?;
    let g = timed_generate(gpu, m, &prompt, steps, 3, greedy.clone()).await;
    let p = gpu.end_profile().await?;
    let g = g?;
    // Split the trace by batch; the first is the prompt's, the last may be a short tail.
    let mut batches = Vec::new();
    let mut at = 0;
    for &n in &p.batches {
        batches.push(&p.trace[at..(at + n).min(p.trace.len())]);
        at += n;
    }
    let decode: Vec<_> = batches
        .iter()
        .skip(1)
        .filter(|b| !b.is_empty() && b.len() == batches.get(1).map_or(0, |f| f.len()))
        .collect();
    let mut totals: Vec<(f64, usize)> = decode
        .iter()
        .enumerate()
        .map(|(i, b)| (b.iter().filter_map(|d| d.gpu_us).sum(), i))
        .collect();
    totals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some(&(step_us, median_i)) = totals.get(totals.len() / 2) else {
        report.add(case, json!({ "error": "no decode step profiled" }), 0.0, 0.0, "", &[]);
        return Ok(());
    };
    let step = decode[median_i];
    // Per label over the median step, in order of first appearance.
    let mut per: Vec<(String, usize, f64)> = Vec::new();
    for d in step.iter() {
        let us = d.gpu_us.unwrap_or(f64::NAN);
        match per.iter_mut().find(|(l, _, _)| *l == d.label) {
            Some(e) => {
                e.1 += 1;
                e.2 += us;
            }
            None => per.push((d.label.clone(), 1, us)),
        }
    }
    let kernels: Vec<_> = per
        .iter()
        .map(|(label, count, us)| {
            json!({
                "label": label,
                "calls_per_step": count,
                "us_per_step": (us * 100.0).round() / 100.0,
                "us_per_call": (us / *count as f64 * 100.0).round() / 100.0,
            })
        })
        .collect();
    // The first layer's dispatches in order (after the embedding lookup): the shape of a layer.
    let first: Vec<_> = step
        .iter()
        .take(8)
        .map(|d| json!([short(&d.label), d.gpu_us.map(|u| (u * 100.0).round() / 100.0)]))
        .collect();
    let shape = json!({
        "dispatches_per_step": step.len(),
        "decode_steps_profiled": decode.len(),
        "tok_s_while_profiled": (1.0 / g.per_token).round(),
        "timestamps_inside_passes": gpu.device().features().contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
        "first_dispatches": first,
    });
    let timings = [Timing {
        name: "decode_step_gpu_in_pass_sum".into(),
        median_us: step_us,
        min_us: totals.first().map_or(step_us, |t| t.0),
    }];
    report.add(case, shape, 0.0, 0.0, "decode_step_gpu_in_pass_sum", &timings);
    report.annotate("kernels", json!(kernels));
    Ok(())
}

/// `kernel::entry` of a pipeline label (without the variant constants).
fn short(label: &str) -> &str {
    label.split('[').next().unwrap_or(label)
}

/// `norm_inline_ab`: decode tok/s through `generate` (greedy, 3 steps in flight, and 2 steps per
/// submission with 4 in flight) with the inline RMSNorm prologue (the default,
/// `Variants::inline_norm`) beside the previous kernels (`GpuOptions::norm_pass`: a separate
/// sum-of-squares pass; SwiGLU staging x) on a second device of the same adapter, rounds
/// alternating, medians of 3; per model the ratio new / previous.
pub async fn norm_ab(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let case = "norm_inline_ab";
    if !args.wants(case) {
        return Ok(());
    }
    let old = Gpu::with_options(kjarni_web::GpuOptions {
        norm_pass: true,
        ..Default::default()
    })
    .await?;
    let opts = LlamaOptions {
        kv_cache: KvDType::F16,
        max_context: 1024,
    };
    let prompt: Vec<u32> = (0..32).map(|i| (i * 7 % 1000) as u32).collect();
    let steps = if args.quick { 8 } else { 256 };
    let mut timings = Vec::new();
    let mut shape = serde_json::Map::new();
    let models: [(&str, usize, Option<QuantType>); 4] = [
        ("smollm2_135m_bf16", 0, None),
        ("smollm2_135m_q4_1_gguf", 0, Some(QuantType::Q4_1)),
        ("qwen2.5_0.5b_bf16", 1, None),
        ("qwen2.5_0.5b_q4_k_gguf", 1, Some(QuantType::Q4_K)),
    ];
    for (name, i, quant) in models {
        let s = &MODELS[i];
        let mut pair = Vec::new();
        for g in [gpu, &old] {
            let m = match quant {
                None => {
                    let (src, _) = synthetic(s);
                    Llama::load(g, &src, &opts, &mut |_| {}).await?
                }
                Some(t) => {
                    let (src, _) = synth::gguf(s, t);
                    Llama::load_gguf(g, &src, "model.gguf", &opts, &mut |_| {}).await?
                }
            };
            pair.push(m);
        }
        for (depth, per_submit) in [(3usize, 1usize), (4, 2)] {
            let mut per: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
            for round in 0..4 {
                for (j, g) in [gpu, &old].into_iter().enumerate() {
                    let t = crate::driver::timed_generate_grouped(
                        g,
                        &mut pair[j],
                        &prompt,
                        steps,
                        depth,
                        per_submit,
                        SamplingParams::default(),
                    )
                    .await?;
                    if round > 0 {
                        per[j].push(t.per_token);
                    }
                }
            }
            let med = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let (new_s, old_s) = (med(&mut per[0]), med(&mut per[1]));
            let tag = format!("{name}_in_flight_{depth}_per_submit_{per_submit}");
            shape.insert(format!("tok_s_{tag}_inline"), json!((1.0 / new_s).round()));
            shape.insert(format!("tok_s_{tag}_norm_pass"), json!((1.0 / old_s).round()));
            shape.insert(format!("ratio_{tag}"), json!((old_s / new_s * 1000.0).round() / 1000.0));
            for (v, s) in [("inline", new_s), ("norm_pass", old_s)] {
                timings.push(Timing {
                    name: format!("{tag}_{v}"),
                    median_us: s * 1e6,
                    min_us: s * 1e6,
                });
            }
        }
    }
    let base = timings.first().map(|t| t.name.clone()).unwrap_or_default();
    report.add(case, serde_json::Value::Object(shape), 0.0, 0.0, &base, &timings);
    Ok(())
}
