//! Native counterparts of the cases the Dawn benchmark (benches/dawn.mjs) adds, with the same
//! names, so one device run shows Dawn and wgpu native line by line:
//!
//! - `profile_decoder_<model>`: one decode step (after a 48-token prompt) with a GPU timestamp
//!   around every dispatch (`Gpu::begin_profile`), per kernel label, most expensive first; with
//!   the previous kernels beside (`kernels_previous`); and the step as `generate` submits it,
//!   timed as one compute pass, with the host's record + submit time (native only).
//! - `profile_prefill_<model>`: a 512-token prefill, wall time of `forward` and GPU time per
//!   kernel (native prefill through `generate` measured 3–4x slower than Dawn's on the H200).
//! - `encoder_minilm_l6`: sentence embeddings per second, one at a time and in a batch of 32.
//!   The model directory is `$KJARNI_BENCH_MODELS/minilm_l6` (written by benches/dawn_models.mjs
//!   with the sentences the Dawn run embeds) or else `$KJARNI_MODELS/all-MiniLM-L6-v2`.

use crate::driver::timed_generate;
use crate::harness::{Args, Report, Timing};
use crate::models::{synthetic, MODELS};
use kjarni_web::generate::SamplingParams;
use kjarni_web::load::DirSource;
use kjarni_web::models::bert::BertModel;
use kjarni_web::models::llama::{DecodeTuning, Llama, LlamaOptions};
use kjarni_web::ops::kv_cache::KvDType;
use kjarni_web::{Gpu, Result};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    for s in MODELS.iter().chain(&kjarni_web::cpu::synthetic::MODELS_II) {
        // One model's failure is a finding (recorded in its case), not the end of the run.
        let case = format!("profile_decoder_{}", s.name);
        if args.wants(&case) {
            if let Err(e) = profile_decode(gpu, report, &case, s).await {
                eprintln!("{case}: {e}");
                report.add(&case, serde_json::json!({ "error": e.to_string() }), 0.0, 0.0, "", &[]);
            }
        }
        let case = format!("profile_prefill_{}", s.name);
        if args.wants(&case) {
            if let Err(e) = profile_prefill(gpu, args, report, &case, s).await {
                eprintln!("{case}: {e}");
                report.add(&case, serde_json::json!({ "error": e.to_string() }), 0.0, 0.0, "", &[]);
            }
        }
    }
    if args.wants("encoder_minilm_l6") {
        minilm(gpu, args, report).await?;
    }
    Ok(())
}

/// Per-kernel GPU times of one decode step (a pass per dispatch) with the chosen kernels and with
/// the previous ones (`DecodeTuning::previous`), then the step as `generate` submits it: GPU µs
/// of one step recorded in one compute pass (timestamps at its start and end) and host µs to
/// record and submit it, at a short and a long single-chunk context, for the chosen kernels, the
/// previous ones and each QKV split.
async fn profile_decode(gpu: &Gpu, report: &mut Report, case: &str, s: &crate::models::Shape) -> Result<()> {
    let (src, _) = synthetic(s);
    let opts = LlamaOptions {
        kv_cache: KvDType::F16,
        max_context: 1024,
    };
    let mut m = Llama::load(gpu, &src, &opts, &mut |_| {}).await?;
    // ~ the context of the Dawn run's profile (a short chat prompt with its template).
    let prompt: Vec<u32> = (0..48).map(|i| (i * 7 % 1000) as u32).collect();
    let mut per_kernel = Vec::new();
    for (name, tuning) in [("", DecodeTuning::default()), ("_previous", DecodeTuning::previous())] {
        m.set_decode_tuning(tuning);
        m.reset();
        m.forward(gpu, &prompt).await?;
        m.forward(gpu, &[5]).await?; // compiles the one-token pipelines
        gpu.begin_profile()?;
        let step = m.forward(gpu, &[5]).await;
        let p = gpu.end_profile().await?;
        step?;
        per_kernel.push((name, p));
    }
    let mut timings = Vec::new();
    let mut shape = json!({ "context_tokens": prompt.len() + 2 });
    for (name, p) in &per_kernel {
        let total = p.total_gpu_us.unwrap_or(f64::NAN);
        timings.push(Timing {
            name: format!("decode_step_gpu_total{name}"),
            median_us: total,
            min_us: total,
        });
        shape[format!("dispatches{name}")] = json!(p.dispatches);
        shape["timestamps"] = json!(p.timestamps);
        shape["quantized"] = json!(p.quantized);
    }
    // One compute pass per step, as `generate` submits it.
    let long: Vec<u32> = (0..448).map(|i| (i * 7 % 1000) as u32).collect();
    let mut variants = vec![
        ("".to_string(), DecodeTuning::default()),
        ("_previous".to_string(), DecodeTuning::previous()),
    ];
    for split in [1u32, 2, 4, 8, 16] {
        variants.push((
            format!("_qkv_split_{split}"),
            DecodeTuning {
                qkv_split: Some(split),
                ..Default::default()
            },
        ));
    }
    // Fewer lanes per row group: more groups, fewer rows each (Qwen3's unsplit QK-norm head
    // runs 16 rows a group at 32 lanes).
    for lanes in [16u32, 8, 4] {
        variants.push((
            format!("_qkv_lanes_{lanes}"),
            DecodeTuning {
                qkv_lanes: Some(lanes),
                ..Default::default()
            },
        ));
    }
    variants.push((
        "_attention_partial_only".into(),
        DecodeTuning {
            attention_partial_only: true,
            ..Default::default()
        },
    ));
    for (ctx, p) in [("ctx_48", &prompt), ("ctx_448", &long)] {
        for (name, tuning) in &variants {
            m.set_decode_tuning(*tuning);
            let (gpu_us, host_us, label) = one_pass_step(gpu, &mut m, p).await?;
            timings.push(Timing {
                name: format!("decode_step_gpu_one_pass_{ctx}{name}"),
                median_us: gpu_us,
                min_us: gpu_us,
            });
            shape[format!("host_us_record_submit_{ctx}{name}")] = json!((host_us * 10.0).round() / 10.0);
            shape["one_pass_label"] = json!(label);
        }
    }
    m.set_decode_tuning(DecodeTuning::default());
    report.add(case, shape, 0.0, 0.0, "decode_step_gpu_total", &timings);
    for (name, p) in &per_kernel {
        let kernels: Vec<_> = p
            .kernels
            .iter()
            .map(|k| json!({ "label": k.label, "count": k.count, "gpu_us": k.gpu_us.map(|u| (u * 100.0).round() / 100.0) }))
            .collect();
        report.annotate(&format!("kernels{name}"), json!(kernels));
    }
    Ok(())
}

/// A 512-token prefill (the Dawn run's prefill figure): wall time of `forward` (logits read
/// back) beside the GPU time per kernel of the same forward, to tell kernel time from the rest.
async fn profile_prefill(
    gpu: &Gpu,
    args: &Args,
    report: &mut Report,
    case: &str,
    s: &crate::models::Shape,
) -> Result<()> {
    let (src, _) = synthetic(s);
    let opts = LlamaOptions {
        kv_cache: KvDType::F16,
        max_context: 1024,
    };
    let mut m = Llama::load(gpu, &src, &opts, &mut |_| {}).await?;
    let n = if args.quick { 16 } else { 512 };
    let prompt: Vec<u32> = (0..n).map(|i| (i * 7 % 1000) as u32).collect();
    let mut walls = Vec::new();
    for _ in 0..if args.quick { 2 } else { 4 } {
        m.reset();
        let t0 = Instant::now();
        m.forward(gpu, &prompt).await?;
        walls.push(t0.elapsed().as_secs_f64());
    }
    // The first run compiles the prefill pipelines.
    let warm = &mut walls[1..];
    warm.sort_by(f64::total_cmp);
    let wall = warm[warm.len() / 2];
    m.reset();
    gpu.begin_profile()?;
    let step = m.forward(gpu, &prompt).await;
    let p = gpu.end_profile().await?;
    step?;
    let total = p.total_gpu_us.unwrap_or(f64::NAN);
    let shape = json!({
        "prompt_tokens": n,
        "forward_wall_ms": (wall * 1e5).round() / 100.0,
        "forward_tok_s": (n as f64 / wall).round(),
        "first_forward_wall_ms": (walls[0] * 1e5).round() / 100.0,
        "dispatches": p.dispatches,
        "timestamps": p.timestamps,
    });
    let timing = Timing {
        name: "prefill_gpu_total".into(),
        median_us: total,
        min_us: total,
    };
    report.add(case, shape, 0.0, 0.0, "prefill_gpu_total", &[timing]);
    let kernels: Vec<_> = p
        .kernels
        .iter()
        .map(|k| json!({ "label": k.label, "count": k.count, "gpu_us": k.gpu_us.map(|u| (u * 100.0).round() / 100.0) }))
        .collect();
    report.annotate("kernels", json!(kernels));
    Ok(())
}

/// `generate` (greedy, 3 steps in flight, 32 steps after `prompt`) with every submitted batch
/// timed as one compute pass (`Gpu::begin_profile_one_pass`): (median GPU µs of a decode step,
/// median host µs of recording + submitting one, the step's label: dispatches and passes).
async fn one_pass_step(gpu: &Gpu, m: &mut Llama, prompt: &[u32]) -> Result<(f64, f64, String)> {
    let greedy = SamplingParams::default();
    timed_generate(gpu, m, prompt, 4, 3, greedy.clone()).await?; // warm-up
    gpu.begin_profile_one_pass()?;
    let g = timed_generate(gpu, m, prompt, 32, 3, greedy).await;
    let p = gpu.end_profile().await?;
    let g = g?;
    // trace[0] is the prompt's batch, the rest decode steps.
    let mut t: Vec<f64> = p.trace.iter().skip(1).filter_map(|d| d.gpu_us).collect();
    t.sort_by(f64::total_cmp);
    let gpu_us = t.get(t.len() / 2).copied().unwrap_or(f64::NAN);
    let label = p.trace.get(1).map(|d| d.label.clone()).unwrap_or_default();
    Ok((gpu_us, g.host_per_step * 1e6, label))
}

fn minilm_dir() -> Option<PathBuf> {
    let generated = std::env::var_os("KJARNI_BENCH_MODELS").map(|d| PathBuf::from(d).join("minilm_l6"));
    let real =
        PathBuf::from(std::env::var_os("KJARNI_MODELS").unwrap_or_else(|| "models".into())).join("all-MiniLM-L6-v2");
    generated
        .into_iter()
        .chain([real])
        .find(|d| d.join("model.safetensors").is_file())
}

async fn minilm(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let case = "encoder_minilm_l6";
    let Some(dir) = minilm_dir() else {
        eprintln!("{case}: skipped (no model directory: set KJARNI_BENCH_MODELS or KJARNI_MODELS)");
        return Ok(());
    };
    let model = BertModel::load(gpu, &DirSource::new(&dir)).await?;
    let sentences: Vec<String> = std::fs::read(dir.join("bench_sentences.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| {
            (0..32)
                .map(|i| format!("sentence number {i} is about a man who plays the guitar by the river"))
                .collect()
        });
    let n = if args.quick { 4 } else { sentences.len() };
    let list: Vec<&str> = sentences.iter().take(n).map(String::as_str).collect();
    let runs = if args.quick { 1 } else { 3 };
    model.embed(gpu, &list[..2.min(list.len())]).await?;
    model.embed(gpu, &list).await?;
    let mut one = Vec::new();
    for _ in 0..runs {
        for s in &list {
            let t = Instant::now();
            model.embed(gpu, &[s]).await?;
            one.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let mut batch = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        model.embed(gpu, &list).await?;
        batch.push(t.elapsed().as_secs_f64() * 1e6 / list.len() as f64);
    }
    one.sort_by(f64::total_cmp);
    batch.sort_by(f64::total_cmp);
    let (us1, usb) = (one[one.len() / 2], batch[batch.len() / 2]);
    let mut shape = json!({
        "sentences": list.len(),
        "embeddings_per_s_batch_1": (1e7 / us1).round() / 10.0,
        "model_dir": dir.display().to_string(),
    });
    shape[format!("embeddings_per_s_batch_{}", list.len())] = json!((1e7 / usb).round() / 10.0);
    let timings = [
        Timing {
            name: "embed_batch_1".into(),
            median_us: us1,
            min_us: one[0],
        },
        Timing {
            name: format!("embed_batch_{}", list.len()),
            median_us: usb,
            min_us: batch[0],
        },
    ];
    report.add(case, shape, 0.0, 0.0, "embed_batch_1", &timings);
    Ok(())
}
