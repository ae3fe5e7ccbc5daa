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

pub struct Shape {
    name: &'static str,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    ff: usize,
    vocab: usize,
    qkv_bias: bool,
}

pub const MODELS: [Shape; 2] = [
    Shape { name: "smollm2_135m", hidden: 576, layers: 30, heads: 9, kv_heads: 3, ff: 1536, vocab: 49152, qkv_bias: false },
    Shape { name: "qwen2.5_0.5b", hidden: 896, layers: 24, heads: 14, kv_heads: 2, ff: 4864, vocab: 151936, qkv_bias: true },
];

/// A model directory in memory: config.json + one bf16 safetensors file of random weights.
pub fn synthetic(s: &Shape) -> (MemorySource, u64) {
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

/// The same shape as a GGUF file as llama.cpp writes SmolLM2-135M-Instruct.Q4_1.gguf: Q4_1
/// layers, Q8_0 token embedding (tied), F32 norms, random blocks, and a stand-in vocabulary.
pub fn synthetic_gguf(s: &Shape) -> (MemorySource, u64) {
    use kjarni_web::cpu::quant::random_blocks;
    use kjarni_web::gguf::writer::GgufWriter;
    use kjarni_web::gguf::{GgmlType, MetaArray, MetaValue};
    use kjarni_web::ops::quant::QuantType;
    let hd = s.hidden / s.heads;
    let arch = if s.qkv_bias { "qwen2" } else { "llama" };
    let tokens: Vec<String> = (0..s.vocab).map(|i| format!("t{i}")).collect();
    let mut w = GgufWriter::new()
        .kv("general.architecture", MetaValue::String(arch.into()))
        .kv(&format!("{arch}.context_length"), MetaValue::U32(8192))
        .kv(&format!("{arch}.embedding_length"), MetaValue::U32(s.hidden as u32))
        .kv(&format!("{arch}.block_count"), MetaValue::U32(s.layers as u32))
        .kv(&format!("{arch}.feed_forward_length"), MetaValue::U32(s.ff as u32))
        .kv(&format!("{arch}.attention.head_count"), MetaValue::U32(s.heads as u32))
        .kv(&format!("{arch}.attention.head_count_kv"), MetaValue::U32(s.kv_heads as u32))
        .kv(&format!("{arch}.attention.layer_norm_rms_epsilon"), MetaValue::F32(1e-5))
        .kv(&format!("{arch}.rope.freq_base"), MetaValue::F32(100_000.0))
        .kv("tokenizer.ggml.model", MetaValue::String("gpt2".into()))
        .kv("tokenizer.ggml.tokens", MetaValue::Array(MetaArray::String(tokens)))
        .kv("tokenizer.ggml.merges", MetaValue::Array(MetaArray::String(vec![])))
        .kv("tokenizer.ggml.eos_token_id", MetaValue::U32(2));
    let mut bytes = 0u64;
    let mut seed = 1u64;
    let mut quant = |w: GgufWriter, name: &str, t: QuantType, n: usize, k: usize| {
        seed += 1;
        let b = random_blocks(t, seed, n * k / t.block_size());
        bytes += b.len() as u64;
        w.tensor(name, t.ggml(), &[k as u64, n as u64], b)
    };
    w = quant(w, "token_embd.weight", QuantType::Q8_0, s.vocab, s.hidden);
    let ones: Vec<u8> = (0..s.hidden).flat_map(|_| 1.0f32.to_le_bytes()).collect();
    for i in 0..s.layers {
        let p = |n: &str| format!("blk.{i}.{n}");
        w = w.tensor(&p("attn_norm.weight"), GgmlType::F32, &[s.hidden as u64], ones.clone());
        w = w.tensor(&p("ffn_norm.weight"), GgmlType::F32, &[s.hidden as u64], ones.clone());
        w = quant(w, &p("attn_q.weight"), QuantType::Q4_1, s.heads * hd, s.hidden);
        w = quant(w, &p("attn_k.weight"), QuantType::Q4_1, s.kv_heads * hd, s.hidden);
        w = quant(w, &p("attn_v.weight"), QuantType::Q4_1, s.kv_heads * hd, s.hidden);
        if s.qkv_bias {
            for (n, r) in [("attn_q.bias", s.heads * hd), ("attn_k.bias", s.kv_heads * hd), ("attn_v.bias", s.kv_heads * hd)] {
                w = w.tensor(&p(n), GgmlType::F32, &[r as u64], vec![0; r * 4]);
            }
        }
        w = quant(w, &p("attn_output.weight"), QuantType::Q4_1, s.hidden, s.heads * hd);
        w = quant(w, &p("ffn_gate.weight"), QuantType::Q4_1, s.ff, s.hidden);
        w = quant(w, &p("ffn_up.weight"), QuantType::Q4_1, s.ff, s.hidden);
        w = quant(w, &p("ffn_down.weight"), QuantType::Q4_1, s.hidden, s.ff);
    }
    w = w.tensor("output_norm.weight", GgmlType::F32, &[s.hidden as u64], ones);
    let mut src = MemorySource::new();
    src.insert("model.gguf", w.build());
    (src, bytes)
}

/// SmolLM2-135M's shape with random bf16 weights, and its weight bytes (benches/structured.rs).
pub fn synthetic_smollm2() -> (MemorySource, u64) {
    synthetic(&MODELS[0])
}

/// Decode (and prefill) tokens/s of one loaded model.
async fn time_decode(gpu: &Gpu, args: &Args, m: &mut Llama) -> Result<(f64, f64, usize)> {
    let prompt: Vec<u32> = (0..if args.quick { 16 } else { 512 }).map(|i| (i * 7 % 1000) as u32).collect();
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
    let opts = LlamaOptions { kv_cache: KvDType::F16, max_context: 1024 };
    let mut timings = Vec::new();
    let mut extra = serde_json::Map::new();
    let (src, bf16_bytes) = synthetic(s);
    let mut m = Llama::load(gpu, &src, &opts, &mut |_| {}).await?;
    let (per, prefill, n) = time_decode(gpu, args, &mut m).await?;
    drop(m);
    timings.push(Timing { name: "decode_bf16_safetensors".into(), median_us: per * 1e6, min_us: per * 1e6 });
    extra.insert("decode_tok_s_bf16".into(), json!((1.0 / per).round()));
    extra.insert(format!("prefill_{n}_tok_s_bf16"), json!(prefill.round()));
    extra.insert("weight_bytes_bf16".into(), json!(bf16_bytes));
    let (src, q_bytes) = synthetic_gguf(s);
    let mut m = Llama::load_gguf(gpu, &src, "model.gguf", &opts, &mut |_| {}).await?;
    let (per, prefill, n) = time_decode(gpu, args, &mut m).await?;
    timings.push(Timing { name: "decode_q4_1_gguf".into(), median_us: per * 1e6, min_us: per * 1e6 });
    extra.insert("decode_tok_s_q4_1_gguf".into(), json!((1.0 / per).round()));
    extra.insert(format!("prefill_{n}_tok_s_q4_1_gguf"), json!(prefill.round()));
    extra.insert("weight_bytes_q4_1_gguf".into(), json!(q_bytes));
    extra.insert("dispatches_per_token_q4_1_gguf".into(), json!(m.dispatches_per_token()));
    report.add(case, serde_json::Value::Object(extra), bf16_bytes as f64, 0.0, "decode_bf16_safetensors", &timings);
    Ok(())
}

pub async fn run(gpu: &Gpu, args: &Args, report: &mut Report) -> Result<()> {
    gguf_vs_bf16(gpu, args, report).await?;
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
