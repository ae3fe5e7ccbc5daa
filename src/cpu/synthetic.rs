//! Synthetic Llama-family models of any shape, in memory (tests and benchmarks: speed does not
//! depend on the values, and the GPU machine has no model files): a safetensors directory
//! (config.json + one bf16 file) or a GGUF file laid out as llama.cpp writes them (Llama and
//! Qwen2 shapes; Qwen3 and Gemma 3 shapes as safetensors only).

use crate::cpu;
use crate::gguf::writer::GgufWriter;
use crate::gguf::{GgmlType, MetaArray, MetaValue};
use crate::load::MemorySource;
use crate::ops::quant::QuantType;
use serde_json::json;

/// The shape of a synthetic decoder.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Name for reports.
    pub name: &'static str,
    /// Hidden size.
    pub hidden: usize,
    /// Layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// KV heads.
    pub kv_heads: usize,
    /// FFN width.
    pub ff: usize,
    /// Vocabulary.
    pub vocab: usize,
    /// Qwen2-style q/k/v biases.
    pub qkv_bias: bool,
    /// lm_head tied to the embedding.
    pub tied: bool,
    /// Architecture: Llama / Qwen2 (by `qkv_bias`) or one of Models II.
    pub arch: Arch,
    /// Head width (0: hidden / heads, as Llama and Qwen2 have it).
    pub head_dim: usize,
}

/// The architecture of a synthetic decoder (its config.json and the extra tensors it needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama, or Qwen2 when the shape has q/k/v biases.
    Llama,
    /// Qwen3: per-head q_norm / k_norm, explicit head_dim.
    Qwen3,
    /// Gemma 3: (1 + w) norms around attention and MLP, GELU-tanh MLP, q/k norms, sliding-window
    /// layers (window 512, 5 of every 6 layers), √hidden embedding scale.
    Gemma3,
}

impl Shape {
    /// The head width.
    pub fn head_dim(&self) -> usize {
        if self.head_dim > 0 {
            self.head_dim
        } else {
            self.hidden / self.heads
        }
    }
}

/// SmolLM2-135M and Qwen2.5-0.5B.
pub const MODELS: [Shape; 2] = [
    Shape {
        name: "smollm2_135m",
        hidden: 576,
        layers: 30,
        heads: 9,
        kv_heads: 3,
        ff: 1536,
        vocab: 49152,
        qkv_bias: false,
        tied: true,
        arch: Arch::Llama,
        head_dim: 0,
    },
    Shape {
        name: "qwen2.5_0.5b",
        hidden: 896,
        layers: 24,
        heads: 14,
        kv_heads: 2,
        ff: 4864,
        vocab: 151936,
        qkv_bias: true,
        tied: true,
        arch: Arch::Llama,
        head_dim: 0,
    },
];

/// Qwen3-0.6B and Gemma-3-270M (safetensors only: [`gguf`] writes Llama / Qwen2 files).
pub const MODELS_II: [Shape; 2] = [
    Shape {
        name: "qwen3_0.6b",
        hidden: 1024,
        layers: 28,
        heads: 16,
        kv_heads: 8,
        ff: 3072,
        vocab: 151936,
        qkv_bias: false,
        tied: true,
        arch: Arch::Qwen3,
        head_dim: 128,
    },
    Shape {
        name: "gemma3_270m",
        hidden: 640,
        layers: 18,
        heads: 4,
        kv_heads: 1,
        ff: 2048,
        vocab: 262144,
        qkv_bias: false,
        tied: true,
        arch: Arch::Gemma3,
        head_dim: 256,
    },
];

fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect()
}

/// A model directory in memory: config.json + one bf16 safetensors file of random weights
/// (norm weights around 1, biases and weights small). Returns the source and the weight bytes.
pub fn safetensors(s: &Shape) -> (MemorySource, u64) {
    let hd = s.head_dim();
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
        if s.arch != Arch::Llama {
            add("self_attn.q_norm.weight", vec![hd]);
            add("self_attn.k_norm.weight", vec![hd]);
        }
        if s.arch == Arch::Gemma3 {
            add("pre_feedforward_layernorm.weight", vec![s.hidden]);
            add("post_feedforward_layernorm.weight", vec![s.hidden]);
        }
        add("self_attn.o_proj.weight", vec![s.hidden, s.heads * hd]);
        add("mlp.gate_proj.weight", vec![s.ff, s.hidden]);
        add("mlp.up_proj.weight", vec![s.ff, s.hidden]);
        add("mlp.down_proj.weight", vec![s.hidden, s.ff]);
    }
    tensors.push(("model.norm.weight".into(), vec![s.hidden]));
    if !s.tied {
        tensors.push(("lm_head.weight".into(), vec![s.vocab, s.hidden]));
    }
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (i, (name, shape)) in tensors.iter().enumerate() {
        let n: usize = shape.iter().product();
        let vals = if name.ends_with("norm.weight") {
            cpu::random(n, i as u64 + 1, 0.8, 1.2)
        } else if name.ends_with("bias") {
            cpu::random(n, i as u64 + 1, -0.5, 0.5)
        } else {
            cpu::random(n, i as u64 + 1, -0.05, 0.05)
        };
        let start = data.len();
        data.extend(bf16_bytes(&vals));
        header.insert(
            name.clone(),
            json!({"dtype": "BF16", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut h = serde_json::to_vec(&header).unwrap_or_default();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut file = (h.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&h);
    let weight_bytes = data.len() as u64;
    file.extend_from_slice(&data);
    let mut config = json!({
        "model_type": if s.qkv_bias { "qwen2" } else { "llama" },
        "hidden_size": s.hidden, "num_hidden_layers": s.layers, "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads, "intermediate_size": s.ff, "vocab_size": s.vocab,
        "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "max_position_embeddings": 8192,
        "tie_word_embeddings": s.tied, "hidden_act": "silu", "eos_token_id": 2,
    });
    match s.arch {
        Arch::Llama => {}
        Arch::Qwen3 => {
            config["model_type"] = json!("qwen3");
            config["head_dim"] = json!(hd);
            config["rms_norm_eps"] = json!(1e-6);
            config["rope_theta"] = json!(1_000_000.0);
        }
        Arch::Gemma3 => {
            // As Gemma-3-270M's config.json has it.
            let types: Vec<&str> = (0..s.layers)
                .map(|i| {
                    if (i + 1) % 6 == 0 {
                        "full_attention"
                    } else {
                        "sliding_attention"
                    }
                })
                .collect();
            config = json!({
                "model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"],
                "hidden_size": s.hidden, "num_hidden_layers": s.layers, "num_attention_heads": s.heads,
                "num_key_value_heads": s.kv_heads, "head_dim": hd, "intermediate_size": s.ff,
                "vocab_size": s.vocab, "rms_norm_eps": 1e-6, "max_position_embeddings": 32768,
                "tie_word_embeddings": s.tied, "hidden_activation": "gelu_pytorch_tanh",
                "query_pre_attn_scalar": 256, "sliding_window": 512, "layer_types": types,
                "_sliding_window_pattern": 6, "attn_logit_softcapping": null, "final_logit_softcapping": null,
                "rope_parameters": {
                    "full_attention": {"rope_theta": 1_000_000.0, "rope_type": "default"},
                    "sliding_attention": {"rope_theta": 10_000.0, "rope_type": "default"},
                },
                "eos_token_id": 1,
            });
        }
    }
    let mut src = MemorySource::new();
    src.insert("config.json", serde_json::to_vec(&config).unwrap_or_default());
    src.insert("model.safetensors", file);
    (src, weight_bytes)
}

/// The same shape as a GGUF file laid out as llama.cpp writes SmolLM2-135M-Instruct.Q4_1.gguf:
/// layers in `qtype` (Q8_0 where the row length is not a multiple of its block), Q8_0 token embedding (and Q8_0 output.weight when untied), F32 norms and
/// biases, random blocks, a stand-in vocabulary. Returns the source (`model.gguf`) and the
/// weight bytes.
pub fn gguf(s: &Shape, qtype: QuantType) -> (MemorySource, u64) {
    use crate::cpu::quant::random_blocks;
    let hd = s.head_dim();
    let arch = if s.qkv_bias { "qwen2" } else { "llama" };
    let tokens: Vec<String> = (0..s.vocab).map(|i| format!("t{i}")).collect();
    let mut w = GgufWriter::new()
        .kv("general.architecture", MetaValue::String(arch.into()))
        .kv(&format!("{arch}.context_length"), MetaValue::U32(8192))
        .kv(&format!("{arch}.embedding_length"), MetaValue::U32(s.hidden as u32))
        .kv(&format!("{arch}.block_count"), MetaValue::U32(s.layers as u32))
        .kv(&format!("{arch}.feed_forward_length"), MetaValue::U32(s.ff as u32))
        .kv(&format!("{arch}.attention.head_count"), MetaValue::U32(s.heads as u32))
        .kv(
            &format!("{arch}.attention.head_count_kv"),
            MetaValue::U32(s.kv_heads as u32),
        )
        .kv(
            &format!("{arch}.attention.layer_norm_rms_epsilon"),
            MetaValue::F32(1e-5),
        )
        .kv(&format!("{arch}.rope.freq_base"), MetaValue::F32(100_000.0))
        .kv("tokenizer.ggml.model", MetaValue::String("gpt2".into()))
        .kv("tokenizer.ggml.tokens", MetaValue::Array(MetaArray::String(tokens)))
        .kv("tokenizer.ggml.merges", MetaValue::Array(MetaArray::String(vec![])))
        .kv("tokenizer.ggml.eos_token_id", MetaValue::U32(2));
    let mut bytes = 0u64;
    let mut seed = 1u64;
    // Rows whose length is not a multiple of the type's block fall back to Q8_0 (llama.cpp falls
    // back to another 32-weight type for Q4_K there, e.g. K = 576 or 896).
    let mut quant = |w: GgufWriter, name: &str, t: QuantType, n: usize, k: usize| {
        let t = if k.is_multiple_of(t.block_size()) {
            t
        } else {
            QuantType::Q8_0
        };
        seed += 1;
        let b = random_blocks(t, seed, n * k / t.block_size());
        bytes += b.len() as u64;
        w.tensor(name, t.ggml(), &[k as u64, n as u64], b)
    };
    w = quant(w, "token_embd.weight", QuantType::Q8_0, s.vocab, s.hidden);
    let f32s = |v: Vec<f32>| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    for i in 0..s.layers {
        let p = |n: &str| format!("blk.{i}.{n}");
        let seed = 1000 + i as u64 * 10;
        w = w.tensor(
            &p("attn_norm.weight"),
            GgmlType::F32,
            &[s.hidden as u64],
            f32s(cpu::random(s.hidden, seed, 0.8, 1.2)),
        );
        w = w.tensor(
            &p("ffn_norm.weight"),
            GgmlType::F32,
            &[s.hidden as u64],
            f32s(cpu::random(s.hidden, seed + 1, 0.8, 1.2)),
        );
        w = quant(w, &p("attn_q.weight"), qtype, s.heads * hd, s.hidden);
        w = quant(w, &p("attn_k.weight"), qtype, s.kv_heads * hd, s.hidden);
        w = quant(w, &p("attn_v.weight"), qtype, s.kv_heads * hd, s.hidden);
        if s.qkv_bias {
            for (j, (n, r)) in [
                ("attn_q.bias", s.heads * hd),
                ("attn_k.bias", s.kv_heads * hd),
                ("attn_v.bias", s.kv_heads * hd),
            ]
            .into_iter()
            .enumerate()
            {
                w = w.tensor(
                    &p(n),
                    GgmlType::F32,
                    &[r as u64],
                    f32s(cpu::random(r, seed + 2 + j as u64, -0.5, 0.5)),
                );
            }
        }
        w = quant(w, &p("attn_output.weight"), qtype, s.hidden, s.heads * hd);
        w = quant(w, &p("ffn_gate.weight"), qtype, s.ff, s.hidden);
        w = quant(w, &p("ffn_up.weight"), qtype, s.ff, s.hidden);
        w = quant(w, &p("ffn_down.weight"), qtype, s.hidden, s.ff);
    }
    w = w.tensor(
        "output_norm.weight",
        GgmlType::F32,
        &[s.hidden as u64],
        f32s(cpu::random(s.hidden, 7, 0.8, 1.2)),
    );
    if !s.tied {
        w = quant(w, "output.weight", QuantType::Q8_0, s.vocab, s.hidden);
    }
    let mut src = MemorySource::new();
    src.insert("model.gguf", w.build());
    (src, bytes)
}
