//! End-to-end decoder speed: prefill and decode tokens/s of Llama-family models with synthetic
//! weights of the real shapes (speed does not depend on the values; the GPU machine has no model
//! files). Decode includes the logits readback of every token, as generation does.

use crate::harness::{Args, Report, Timing};
use kjarni_web::cpu;
use kjarni_web::load::MemorySource;
use kjarni_web::models::llama::{Llama, LlamaOptions};
use kjarni_web::ops::kv_cache::KvDType;
use kjarni_web::{Gpu, Result};
use serde_json::json;
use std::time::Instant;

struct Shape {
    name: &'static str,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    ff: usize,
    vocab: usize,
    qkv_bias: bool,
}

const MODELS: [Shape; 2] = [
    Shape { name: "smollm2_135m", hidden: 576, layers: 30, heads: 9, kv_heads: 3, ff: 1536, vocab: 49152, qkv_bias: false },
    Shape { name: "qwen2.5_0.5b", hidden: 896, layers: 24, heads: 14, kv_heads: 2, ff: 4864, vocab: 151936, qkv_bias: true },
];

/// A model directory in memory: config.json + one bf16 safetensors file of random weights.
fn synthetic(s: &Shape) -> (MemorySource, u64) {
    let hd = s.hidden / s.heads;
    let mut tensors: Vec<(String, Vec<usize>)> = vec![("model.embed_tokens.weight".into(), vec![s.vocab, s.hidden])];
    for i in 0..s.layers {
        let p = format!("model.layers.{i}");
        let mut add = |n: &str, shape: Vec<usize>| tensors.push((format!("{p}.{n}"), shape));
        add("input_layernorm.weight", vec![s.hidden]);
        add("post_attention_layernorm.weight", vec![s.hidden]);
        add("self_attn.q_proj.weight", vec![s.heads * hd, s.hidden]);
        add("self_attn.k_proj.weight", vec![s.kv_heads * hd, s.hidden]);
        add("self_attn.v_proj.weight", vec![s.kv_heads * hd, s.hidden]);
        if s.qkv_bias {
            add("self_attn.q_proj.bias", vec![s.heads * hd]);
            add("self_attn.k_proj.bias", vec![s.kv_heads * hd]);
            add("self_attn.v_proj.bias", vec![s.kv_heads * hd]);
        }
        add("self_attn.o_proj.weight", vec![s.hidden, s.heads * hd]);
        add("mlp.gate_proj.weight", vec![s.ff, s.hidden]);
        add("mlp.up_proj.weight", vec![s.ff, s.hidden]);
        add("mlp.down_proj.weight", vec![s.hidden, s.ff]);
    }
    tensors.push(("model.norm.weight".into(), vec![s.hidden]));
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (i, (name, shape)) in tensors.iter().enumerate() {
        let n: usize = shape.iter().product();
        let vals = if shape.len() == 1 && name.ends_with("norm.weight") {
            vec![1.0f32; n]
        } else {
            cpu::random(n, i as u64 + 1, -0.05, 0.05)
        };
        let start = data.len();
        data.extend(vals.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()));
        header.insert(name.clone(), json!({"dtype": "BF16", "shape": shape, "data_offsets": [start, data.len()]}));
    }
    let mut h = serde_json::to_vec(&header).unwrap_or_default();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut file = (h.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&h);
    let weight_bytes = data.len() as u64;
    file.extend_from_slice(&data);
    let config = json!({
        "model_type": if s.qkv_bias { "qwen2" } else { "llama" },
        "hidden_size": s.hidden, "num_hidden_layers": s.layers, "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads, "intermediate_size": s.ff, "vocab_size": s.vocab,
        "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "max_position_embeddings": 8192,
        "tie_word_embeddings": true, "hidden_act": "silu", "eos_token_id": 2,
    });
    let mut src = MemorySource::new();
    src.insert("config.json", serde_json::to_vec(&config).unwrap_or_default());
    src.insert("model.safetensors", file);
    (src, weight_bytes)
}

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    for s in &MODELS {
        let case = format!("decoder_{}", s.name);
        if !args.wants(&case) {
            continue;
        }
        let (src, weight_bytes) = synthetic(s);
        let mut timings = Vec::new();
        let mut extra = serde_json::Map::new();
        for kv in [KvDType::F16, KvDType::Int8] {
            let opts = LlamaOptions { kv_cache: kv, max_context: 1024 };
            let mut m = Llama::load(gpu, &src, &opts, &mut |_| {}).await?;
            let prompt: Vec<u32> = (0..if args.quick { 16 } else { 512 }).map(|i| (i * 7 % 1000) as u32).collect();
            let reps = if args.quick { 1 } else { 3 };
            let mut prefill = f64::MAX;
            for _ in 0..reps {
                m.reset();
                let t0 = Instant::now();
                m.forward(gpu, &prompt).await?;
                prefill = prefill.min(t0.elapsed().as_secs_f64());
            }
            let steps = if args.quick { 4 } else { 128 };
            let mut tok = 5u32;
            m.forward(gpu, &[tok]).await?; // warm the one-token pipelines
            let t0 = Instant::now();
            for _ in 0..steps {
                let logits = m.forward(gpu, &[tok]).await?;
                tok = kjarni_web::generate::argmax(&logits).unwrap_or(0);
            }
            let per_token = t0.elapsed().as_secs_f64() / steps as f64;
            let name = kv.name();
            timings.push(Timing { name: format!("decode_kv_{name}"), median_us: per_token * 1e6, min_us: per_token * 1e6 });
            extra.insert(format!("prefill_{}_tok_s_kv_{name}", prompt.len()), json!((prompt.len() as f64 / prefill).round()));
            extra.insert(format!("decode_tok_s_kv_{name}"), json!((1.0 / per_token).round()));
            extra.insert("dispatches_per_token".into(), json!(m.dispatches_per_token()));
        }
        extra.insert("weight_bytes".into(), json!(weight_bytes));
        // Every decoded token reads all weights once: the bandwidth-bound limit at the 2.4 TB/s
        // a copy kernel reaches on the H100 (README).
        extra.insert("bandwidth_bound_tok_s_at_2_4_tb_s".into(), json!((2.4e12 / weight_bytes as f64).round()));
        report.add(&case, serde_json::Value::Object(extra), weight_bytes as f64, 0.0, "decode_kv_f16", &timings);
    }
    Ok(())
}
