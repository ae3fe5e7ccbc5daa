//! Constrained decoding overhead (src/structured): SmolLM2-135M shapes (synthetic bf16 weights)
//! through the GPU decode driver, free vs under a JSON Schema, same run. The schema's masks come
//! from SmolLM2's real tokenizer (the mask cost depends on the vocabulary): it is read from
//! `$KJARNI_BENCH_TOKENIZER` (a directory with tokenizer.json and tokenizer_config.json;
//! default `models/SmolLM2-135M-Instruct`), and the case is skipped without it.
//!
//! Variants: `decode_free_depth3` (the default pipeline), `decode_free_depth1` (one step in flight,
//! as a constraint forces), `decode_json_schema` (mask computed on the CPU each step, uploaded
//! and applied by the sampler). `mask_cpu_us_per_token` is llguidance's share.

use crate::harness::{Args, Report, Timing};
use kjarni_web::generate::{CancelToken, CausalLm, GenerateOptions};
use kjarni_web::load::ByteSource;
use kjarni_web::models::llama::{Llama, LlamaOptions};
use kjarni_web::ops::kv_cache::KvDType;
use kjarni_web::structured::{self, ResponseFormat, Vocab};
use kjarni_web::tokenizer::Tokenizer;
use kjarni_web::{Gpu, Result};
use serde_json::json;
use std::time::Instant;

const CASE: &str = "structured_smollm2_135m_json_schema";

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    if !args.wants(CASE) {
        return Ok(());
    }
    let dir = std::env::var("KJARNI_BENCH_TOKENIZER").unwrap_or_else(|_| "models/SmolLM2-135M-Instruct".into());
    let src = kjarni_web::load::DirSource::new(&dir);
    if src.read_range("tokenizer.json", 0, 1).await.is_err() {
        eprintln!("{CASE}: skipped, no tokenizer.json in {dir} (set KJARNI_BENCH_TOKENIZER)");
        return Ok(());
    }
    let tok = Tokenizer::load(&src).await?;
    let (weights, weight_bytes) = crate::models::synthetic_smollm2();
    let mut m = Llama::load(
        gpu,
        &weights,
        &LlamaOptions {
            kv_cache: KvDType::F16,
            max_context: 1024,
        },
        &mut |_| {},
    )
    .await?;
    let vocab = Vocab::new(&tok, m.config().vocab_size, &m.eos_ids())?;
    // At least 100 records: the grammar cannot end before max_tokens, whatever the random model picks.
    let schema = json!({"type": "array", "minItems": 100, "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"}, "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}},
        "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}, "required": ["city", "zip"]}},
        "required": ["name", "age", "tags", "address"]}});
    let format = ResponseFormat::JsonSchema {
        json_schema: serde_json::from_value(json!({"name": "bench", "schema": schema}))
            .map_err(|e| kjarni_web::Error::Internal(e.to_string()))?,
    };
    let steps = if args.quick { 8 } else { 128 };
    let prompt: Vec<u32> = (0..32).map(|i| (i * 7 % 1000) as u32).collect();
    let reps = if args.quick { 1 } else { 3 };
    // One character per token: every token streams a delta (the timing below relies on it).
    let decode = |ids: &[u32]| Ok("x".repeat(ids.len()));
    let mut timings = Vec::new();
    let mut extra = serde_json::Map::new();
    for (name, depth, constrained) in [
        ("decode_free_depth3", 0, false),
        ("decode_free_depth1", 1, false),
        ("decode_json_schema", 1, true),
    ] {
        let mut best = f64::MAX;
        let mut mask = (0.0, 0usize);
        for _ in 0..reps {
            m.reset();
            let opts = GenerateOptions {
                max_tokens: steps,
                ignore_eos: !constrained,
                steps_in_flight: depth,
                ..Default::default()
            };
            let mut c = if constrained {
                structured::Constraint::new(&vocab, &format, "bench")?
            } else {
                None
            };
            // The first token includes the prefill: time the decode steps after it (every token
            // streams a delta with this decoder).
            let mut first: Option<Instant> = None;
            let g = structured::generate(
                &mut m,
                gpu,
                decode,
                &prompt,
                &opts,
                &CancelToken::new(),
                &mut |_| {
                    first.get_or_insert_with(Instant::now);
                },
                c.as_mut(),
            )
            .await?;
            let end = Instant::now();
            let per = first.map_or(0.0, |f| (end - f).as_secs_f64()) / g.tokens.len().saturating_sub(1).max(1) as f64;
            if per < best {
                best = per;
                mask = c.as_ref().map(|c| c.mask_time()).unwrap_or((0.0, 0));
            }
            extra.insert(format!("{name}_tokens"), json!(g.tokens.len()));
        }
        timings.push(Timing {
            name: name.into(),
            median_us: best * 1e6,
            min_us: best * 1e6,
        });
        if constrained {
            extra.insert(
                "mask_cpu_us_per_token".into(),
                json!((mask.0 * 1e3 / mask.1.max(1) as f64).round()),
            );
        }
    }
    let us = |n: &str| timings.iter().find(|t| t.name == n).map_or(0.0, |t| t.median_us);
    extra.insert(
        "overhead_us_per_token_vs_depth1".into(),
        json!((us("decode_json_schema") - us("decode_free_depth1")).round()),
    );
    extra.insert(
        "overhead_us_per_token_vs_depth3".into(),
        json!((us("decode_json_schema") - us("decode_free_depth3")).round()),
    );
    extra.insert("note".into(), json!("per token = wall time from the first token's arrival to the last / (tokens - 1); mask_cpu includes the first (prompt) mask"));
    report.add(
        CASE,
        serde_json::Value::Object(extra),
        weight_bytes as f64,
        0.0,
        "decode_free_depth3",
        &timings,
    );
    Ok(())
}
