//! End-to-end decoder speed: prefill and decode tokens/s of Llama-family models with synthetic
//! weights of the real shapes (speed does not depend on the values; the GPU machine has no model
//! files; `kjarni_web::cpu::synthetic`). `decoder_*` times prefill and decode through `generate`
//! (GPU sampling, steps in flight: the public API's path, which benches/dawn.mjs measures on Dawn)
//! and, beside it, the forward loop (every token's logits read back). `decode_fused_*`: the fused
//! decode layer beside the unfused path.

use crate::driver::timed_generate;
use crate::harness::{Args, Report, Timing};
pub(crate) use kjarni_web::cpu::synthetic::{self as synth, Shape, MODELS};
use kjarni_web::load::MemorySource;
use kjarni_web::models::llama::{DecodePath, Llama, LlamaOptions};
use kjarni_web::ops::kv_cache::KvDType;
use kjarni_web::ops::quant::QuantType;
use kjarni_web::{Gpu, Result};
use serde_json::json;
use std::time::Instant;

pub(crate) fn synthetic(s: &Shape) -> (MemorySource, u64) {
    synth::safetensors(s)
}

pub(crate) fn synthetic_gguf(s: &Shape) -> (MemorySource, u64) {
    synth::gguf(s, QuantType::Q4_1)
}

/// SmolLM2-135M's shape with random bf16 weights, and its weight bytes (benches/structured.rs).
pub fn synthetic_smollm2() -> (MemorySource, u64) {
    synthetic(&MODELS[0])
}

/// Decode (and prefill) tokens/s of one loaded model.
async fn time_decode(gpu: &Gpu, args: &Args, m: &mut Llama) -> Result<(f64, f64, usize)> {
    let prompt: Vec<u32> = (0..if args.quick { 16 } else { 512 })
        .map(|i| (i * 7 % 1000) as u32)
        .collect();
    m.reset();
    let t0 = Instant::now();
    m.forward(gpu, &prompt).await?;
    let prefill = prompt.len() as f64 / t0.elapsed().as_secs_f64();
    let steps = if args.quick { 4 } else { 128 };
    let mut tok = 5u32;
    m.forward(gpu, &[tok]).await?;
    let t0 = Instant::now();
    for _ in 0..steps {
        let logits = m.forward(gpu, &[tok]).await?;
        tok = kjarni_web::generate::argmax(&logits).unwrap_or(0);
    }
    Ok((t0.elapsed().as_secs_f64() / steps as f64, prefill, prompt.len()))
}

/// SmolLM2-135M decode: Q4_1 GGUF (quant GEMV) vs bf16 safetensors, same run.
async fn gguf_vs_bf16(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let case = "decoder_smollm2_135m_q4_1_gguf_vs_bf16";
    if !args.wants(case) {
        return Ok(());
    }
    let s = &MODELS[0];
    let opts = LlamaOptions {
        kv_cache: KvDType::F16,
        max_context: 1024,
    };
    let mut timings = Vec::new();
    let mut extra = serde_json::Map::new();
    let (src, bf16_bytes) = synthetic(s);
    let mut m = Llama::load(gpu, &src, &opts, &mut |_| {}).await?;
    let (per, prefill, n) = time_decode(gpu, args, &mut m).await?;
    drop(m);
    timings.push(Timing {
        name: "decode_bf16_safetensors".into(),
        median_us: per * 1e6,
        min_us: per * 1e6,
    });
    extra.insert("decode_tok_s_bf16".into(), json!((1.0 / per).round()));
    extra.insert(format!("prefill_{n}_tok_s_bf16"), json!(prefill.round()));
    extra.insert("weight_bytes_bf16".into(), json!(bf16_bytes));
    let (src, q_bytes) = synthetic_gguf(s);
    let mut m = Llama::load_gguf(gpu, &src, "model.gguf", &opts, &mut |_| {}).await?;
    let (per, prefill, n) = time_decode(gpu, args, &mut m).await?;
    timings.push(Timing {
        name: "decode_q4_1_gguf".into(),
        median_us: per * 1e6,
        min_us: per * 1e6,
    });
    extra.insert("decode_tok_s_q4_1_gguf".into(), json!((1.0 / per).round()));
    extra.insert(format!("prefill_{n}_tok_s_q4_1_gguf"), json!(prefill.round()));
    extra.insert("weight_bytes_q4_1_gguf".into(), json!(q_bytes));
    extra.insert("dispatches_per_token_q4_1_gguf".into(), json!(m.dispatches_per_token()));
    report.add(
        case,
        serde_json::Value::Object(extra),
        bf16_bytes as f64,
        0.0,
        "decode_bf16_safetensors",
        &timings,
    );
    Ok(())
}

/// Decode through the fused layer (5 dispatches per layer, Gemma 3 7) beside the unfused path,
/// same model, same run: `decode_fused_{model}_{format}`.
async fn fused_vs_unfused(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    let formats: [(&str, Option<QuantType>); 4] = [
        ("bf16", None),
        ("q4_1_gguf", Some(QuantType::Q4_1)),
        ("q4_k_gguf", Some(QuantType::Q4_K)),
        ("q8_0_gguf", Some(QuantType::Q8_0)),
    ];
    for s in MODELS.iter().chain(&synth::MODELS_II) {
        for (fname, qtype) in formats {
            // The set: SmolLM2 bf16 / Q4_1 / Q4_K, Qwen2.5 bf16 / Q4_K (Q8_0 for both);
            // Qwen3 / Gemma 3 bf16 only (the synthetic GGUF writer makes Llama / Qwen2 files).
            if s.name.starts_with("qwen") && qtype == Some(QuantType::Q4_1) {
                continue;
            }
            if synth::MODELS_II.iter().any(|m| m.name == s.name) && qtype.is_some() {
                continue;
            }
            let case = format!("decode_fused_{}_{fname}", s.name);
            if !args.wants(&case) {
                continue;
            }
            let opts = LlamaOptions {
                kv_cache: KvDType::F16,
                max_context: 1024,
            };
            let (mut m, bytes) = match qtype {
                None => {
                    let (src, bytes) = synth::safetensors(s);
                    (Llama::load(gpu, &src, &opts, &mut |_| {}).await?, bytes)
                }
                Some(t) => {
                    let (src, bytes) = synth::gguf(s, t);
                    (
                        Llama::load_gguf(gpu, &src, "model.gguf", &opts, &mut |_| {}).await?,
                        bytes,
                    )
                }
            };
            let mut timings = Vec::new();
            let mut extra = serde_json::Map::new();
            for (pname, path) in [("unfused", DecodePath::Unfused), ("fused", DecodePath::Fused)] {
                m.set_decode_path(path);
                let (per, _, n) = time_decode(gpu, args, &mut m).await?;
                timings.push(Timing {
                    name: format!("decode_{pname}"),
                    median_us: per * 1e6,
                    min_us: per * 1e6,
                });
                extra.insert(format!("decode_tok_s_{pname}"), json!((1.0 / per).round()));
                extra.insert(format!("dispatches_per_token_{pname}"), json!(m.dispatches_per_token()));
                extra.insert("context".into(), json!(n));
            }
            extra.insert("layers".into(), json!(s.layers));
            extra.insert("weight_bytes".into(), json!(bytes));
            report.add(
                &case,
                serde_json::Value::Object(extra),
                bytes as f64,
                0.0,
                "decode_unfused",
                &timings,
            );
        }
    }
    Ok(())
}

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    fused_vs_unfused(gpu, args, report).await?;
    gguf_vs_bf16(gpu, args, report).await?;
    for s in MODELS.iter().chain(&synth::MODELS_II) {
        let case = format!("decoder_{}", s.name);
        if !args.wants(&case) {
            continue;
        }
        if let Err(e) = decoder_case(gpu, args, report, &case, s).await {
            // One model's failure is a finding, not the end of the run.
            eprintln!("{case}: {e}");
            report.add(&case, json!({ "error": e.to_string() }), 0.0, 0.0, "", &[]);
        }
    }
    Ok(())
}

/// `decoder_<model>`: prefill and decode through `generate`, f16 and int8 KV.
async fn decoder_case(gpu: &Gpu, args: &Args, report: &mut Report, case: &str, s: &Shape) -> Result<()> {
    {
        let case = case.to_string();
        let (src, weight_bytes) = synthetic(s);
        let mut timings = Vec::new();
        let mut extra = serde_json::Map::new();
        for kv in [KvDType::F16, KvDType::Int8] {
            let opts = LlamaOptions {
                kv_cache: kv,
                max_context: 1024,
            };
            let mut m = Llama::load(gpu, &src, &opts, &mut |_| {}).await?;
            let prompt: Vec<u32> = (0..if args.quick { 16 } else { 512 })
                .map(|i| (i * 7 % 1000) as u32)
                .collect();
            let reps = if args.quick { 1 } else { 3 };
            let steps = if args.quick { 4 } else { 128 };
            let name = kv.name();
            // As the public API runs (and benches/dawn.mjs measures on Dawn): `generate` with GPU
            // sampling and steps in flight. Prefill: the call to the first id, best of `reps`;
            // decode: per token after the first, median of `reps` runs after a warm-up run.
            let greedy = kjarni_web::generate::SamplingParams::default();
            let mut prefill = f64::MAX;
            for _ in 0..reps {
                prefill = prefill.min(timed_generate(gpu, &mut m, &prompt, 0, 0, greedy.clone()).await?.first);
            }
            let short = &prompt[..prompt.len().min(48)];
            timed_generate(gpu, &mut m, short, steps, 0, greedy.clone()).await?;
            let mut runs = Vec::new();
            let mut host = Vec::new();
            for _ in 0..reps {
                let g = timed_generate(gpu, &mut m, short, steps, 0, greedy.clone()).await?;
                runs.push(g.per_token);
                host.push(g.host_per_step);
            }
            host.sort_by(f64::total_cmp);
            // Host side of a decode step (record + submit, median over steps, median run).
            extra.insert(
                format!("host_us_per_step_record_submit_kv_{name}"),
                json!((host[host.len() / 2] * 1e7).round() / 10.0),
            );
            runs.sort_by(f64::total_cmp);
            let per_token = runs[runs.len() / 2];
            timings.push(Timing {
                name: format!("decode_kv_{name}"),
                median_us: per_token * 1e6,
                min_us: runs[0] * 1e6,
            });
            extra.insert(
                format!("prefill_{}_tok_s_kv_{name}", prompt.len()),
                json!((prompt.len() as f64 / prefill).round()),
            );
            extra.insert(format!("decode_tok_s_kv_{name}"), json!((1.0 / per_token).round()));
            // The forward loop: every token's logits read back, argmax on the CPU, one submit and
            // one wait per token (what decode cost before the driver; `decode_driver_*` has more).
            m.reset();
            m.forward(gpu, short).await?;
            let mut tok = 5u32;
            m.forward(gpu, &[tok]).await?; // warm the one-token pipelines
            let t0 = Instant::now();
            for _ in 0..steps {
                let logits = m.forward(gpu, &[tok]).await?;
                tok = kjarni_web::generate::argmax(&logits).unwrap_or(0);
            }
            let per_token = t0.elapsed().as_secs_f64() / steps as f64;
            extra.insert(
                format!("decode_tok_s_forward_readback_kv_{name}"),
                json!((1.0 / per_token).round()),
            );
            extra.insert("dispatches_per_token".into(), json!(m.dispatches_per_token()));
        }
        extra.insert("weight_bytes".into(), json!(weight_bytes));
        // Every decoded token reads all weights once: the bandwidth-bound limit at the 2.4 TB/s
        // a copy kernel reaches on the H100 (README).
        extra.insert(
            "bandwidth_bound_tok_s_at_2_4_tb_s".into(),
            json!((2.4e12 / weight_bytes as f64).round()),
        );
        report.add(
            &case,
            serde_json::Value::Object(extra),
            weight_bytes as f64,
            0.0,
            "decode_kv_f16",
            &timings,
        );
    }
    Ok(())
}
