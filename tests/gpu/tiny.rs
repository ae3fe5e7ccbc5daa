//! Tiny random-weight checkpoints of each decoder architecture (tests/fixtures/tiny/, made with
//! transformers 5.17: see its README) against transformers' logits: the last position of each of
//! 3 prompts, then 4 greedy steps, and the 8-token greedy continuation.
//!
//! Tolerance: bf16 weights, f32 activations on both sides, an f32 KV cache here; what differs
//! is summation order (hidden 64, FFN 128: ~1e-6 relative), the GPU's exp / rsqrt and our RoPE
//! frequencies (exp2 of a rounded exponent, ≤ 5e-7 relative; positions < 16 so angles move by
//! < 1e-5 rad). Measured natively (lavapipe): ≤ 1e-5 on logits of O(1); 1e-4 absolute leaves a
//! 10× margin for other GPUs, while a wrong RoPE scaling, norm or head moves them by 1e-1 and
//! more (`tiny_llama3_without_its_scaling_misses` runs the llama3 checkpoint with its scaling
//! dropped: 2.5 off). Greedy ids must match exactly: the fixtures' smallest top-1 − top-2
//! margin is ≥ 0.18.

use kjarni_web::generate::argmax;
use kjarni_web::load::MemorySource;
use kjarni_web::models::llama::{DecodePath, Llama, LlamaOptions};
use kjarni_web::ops::kv_cache::KvDType;

const TOL: f32 = 1e-4;

pub fn source(config: &[u8], weights: &'static [u8]) -> MemorySource {
    let mut s = MemorySource::new();
    s.insert("config.json", config.to_vec())
        .insert("model.safetensors", weights);
    s
}

macro_rules! tiny {
    ($arch:literal) => {
        (
            source(
                include_bytes!(concat!("../fixtures/tiny/", $arch, "/config.json")),
                include_bytes!(concat!("../fixtures/tiny/", $arch, "/model.safetensors")),
            ),
            include_str!(concat!("../fixtures/tiny/", $arch, "/reference.json")),
        )
    };
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn max_diff(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "logit count");
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

/// Runs every prompt of the fixture; returns the largest logit difference seen.
async fn check(
    name: &str,
    src: MemorySource,
    reference: &str,
    config_edit: Option<&dyn Fn(&mut serde_json::Value)>,
) -> f32 {
    check_with(name, src, reference, config_edit, kjarni_web::LaunchShapes::Auto).await
}

/// [`check`] with the launch shapes chosen by `shapes`.
async fn check_with(
    name: &str,
    src: MemorySource,
    reference: &str,
    config_edit: Option<&dyn Fn(&mut serde_json::Value)>,
    shapes: kjarni_web::LaunchShapes,
) -> f32 {
    let src = match config_edit {
        None => src,
        Some(edit) => {
            let mut c: serde_json::Value = serde_json::from_slice(
                &kjarni_web::load::ByteSource::read_all(&src, "config.json")
                    .await
                    .unwrap(),
            )
            .unwrap();
            edit(&mut c);
            let mut s = src;
            s.insert("config.json", serde_json::to_vec(&c).unwrap());
            s
        }
    };
    let gpu = crate::common::gpu_with(shapes).await;
    let opts = LlamaOptions {
        kv_cache: KvDType::F32,
        max_context: 64,
    };
    let mut m = Llama::load(&gpu, &src, &opts, &mut |_| {}).await.unwrap();
    check_model(name, &gpu, &mut m, reference, config_edit.is_none()).await
}

/// [`check`] on a loaded model; `strict`: greedy continuations must match.
async fn check_model(name: &str, gpu: &kjarni_web::Gpu, m: &mut Llama, reference: &str, strict: bool) -> f32 {
    let r: serde_json::Value = serde_json::from_str(reference).unwrap();
    let mut worst = 0.0f32;
    for (n, p) in r["prompts"].as_array().unwrap().iter().enumerate() {
        m.reset();
        let prompt = ids(&p["ids"]);
        let mut logits = m.forward(gpu, &prompt).await.unwrap();
        worst = worst.max(max_diff(&logits, &floats(&p["last_logits"])));
        let want_greedy = ids(&p["greedy"]);
        let steps = p["step_logits"].as_array().unwrap();
        let mut got_greedy = Vec::new();
        for i in 0..want_greedy.len() {
            let next = argmax(&logits).unwrap();
            got_greedy.push(next);
            if got_greedy != want_greedy[..=i] {
                break;
            }
            logits = m.forward(gpu, &[next]).await.unwrap();
            if let Some(s) = steps.get(i) {
                worst = worst.max(max_diff(&logits, &floats(s)));
            }
        }
        say!(
            "{name} prompt {n} ({} tokens): greedy {got_greedy:?}, max logit diff so far {worst:.2e}",
            prompt.len()
        );
        if strict {
            assert_eq!(got_greedy, want_greedy, "{name} prompt {n}: greedy continuation");
        }
    }
    worst
}

gpu_test!(tiny_llama3_rope_scaling_matches_transformers, async {
    // Decode steps through the fused layer (the Llama 3 scaling in the fused QKV's RoPE), then
    // through the unfused path.
    let (src, r) = tiny!("llama3");
    let gpu = crate::common::gpu().await;
    let opts = LlamaOptions {
        kv_cache: KvDType::F32,
        max_context: 64,
    };
    let mut m = Llama::load(&gpu, &src, &opts, &mut |_| {}).await.unwrap();
    assert_eq!(m.decode_path(), DecodePath::Fused, "llama3: decode should fuse");
    let d = check_model("llama3", &gpu, &mut m, r, true).await;
    assert!(d <= TOL, "llama3: max logit diff {d} > {TOL}");
    m.set_decode_path(DecodePath::Unfused);
    let d = check_model("llama3 (unfused)", &gpu, &mut m, r, true).await;
    assert!(d <= TOL, "llama3 (unfused): max logit diff {d} > {TOL}");
});

gpu_test!(tiny_llama3_matches_transformers_with_the_gpu_launch_shapes, async {
    // CI runs on CPU adapters, which pick the CPU launch shapes: this keeps a model under the
    // GPU ones (gemv_vec4 / grouped, swiglu_fused, decode_single, 256-wide reductions) there.
    let (src, r) = tiny!("llama3");
    let d = check_with("llama3 (GPU shapes)", src, r, None, kjarni_web::LaunchShapes::Gpu).await;
    assert!(
        d <= TOL,
        "llama3 with the GPU launch shapes: max logit diff {d} > {TOL}"
    );
});

gpu_test!(tiny_llama3_without_its_scaling_misses, async {
    // The same checkpoint run with plain RoPE (what the loader silently did before): the test
    // above could not pass with the scaling ignored.
    let (src, r) = tiny!("llama3");
    let plain = |c: &mut serde_json::Value| c["rope_parameters"]["rope_type"] = "default".into();
    let d = check("llama3 (scaling dropped)", src, r, Some(&plain)).await;
    assert!(d > 0.1, "dropping llama3 scaling should move the logits, moved {d}");
});

gpu_test!(tiny_qwen3_matches_transformers, async {
    // Decode steps through the fused layer (the per-head q/k norms in the fused QKV).
    let (src, r) = tiny!("qwen3");
    let gpu = crate::common::gpu().await;
    let opts = LlamaOptions {
        kv_cache: KvDType::F32,
        max_context: 64,
    };
    let mut m = Llama::load(&gpu, &src, &opts, &mut |_| {}).await.unwrap();
    assert_eq!(m.decode_path(), DecodePath::Fused, "qwen3: decode should fuse");
    let d = check_model("qwen3", &gpu, &mut m, r, true).await;
    assert!(d <= TOL, "qwen3: max logit diff {d} > {TOL}");
    // The same steps through the unfused path (the per-head norms as separate dispatches).
    m.set_decode_path(DecodePath::Unfused);
    let d = check_model("qwen3 (unfused)", &gpu, &mut m, r, true).await;
    assert!(d <= TOL, "qwen3: max logit diff {d} > {TOL}");
});

gpu_test!(tiny_gemma3_matches_transformers, async {
    // Window 4 with prompts of 7..15 tokens: the local layer's window cuts in both in prefill
    // and in every decode step. Decode steps through the fused layer (GELU-tanh gate, sandwich
    // norms, the local layer's window and RoPE base, query_pre_attn_scalar 24 ≠ head_dim 32),
    // then the same steps through the unfused path.
    let (src, r) = tiny!("gemma3");
    let gpu = crate::common::gpu().await;
    let opts = LlamaOptions {
        kv_cache: KvDType::F32,
        max_context: 64,
    };
    let mut m = Llama::load(&gpu, &src, &opts, &mut |_| {}).await.unwrap();
    assert_eq!(m.decode_path(), DecodePath::Fused, "gemma3: decode should fuse");
    let d = check_model("gemma3", &gpu, &mut m, r, true).await;
    assert!(d <= TOL, "gemma3: max logit diff {d} > {TOL}");
    // Embedding, its √hidden scale, 7 per layer (2 layers), the lm_head.
    assert_eq!(
        m.dispatches_per_token(),
        3 + 7 * 2,
        "gemma3: fused dispatches per token"
    );
    m.set_decode_path(DecodePath::Unfused);
    let d = check_model("gemma3 (unfused)", &gpu, &mut m, r, true).await;
    assert!(d <= TOL, "gemma3 (unfused): max logit diff {d} > {TOL}");
});

gpu_test!(tiny_gemma3_without_its_window_misses, async {
    // The local layer made global: the window matters for these prompts.
    let (src, r) = tiny!("gemma3");
    let global = |c: &mut serde_json::Value| c["layer_types"] = serde_json::json!(["full_attention", "full_attention"]);
    let d = check("gemma3 (window dropped)", src, r, Some(&global)).await;
    assert!(d > 0.1, "dropping the sliding window should move the logits, moved {d}");
});

/// A tiny safetensors checkpoint written as llama.cpp's converter would: architecture `arch`,
/// f32 tensors under their GGUF names (`permute`: q/k rows permuted, as for `llama`), the given
/// extra metadata and tensors, a stand-in byte-level tokenizer of 512 tokens.
struct TinyGguf<'a> {
    arch: &'a str,
    safetensors: &'a [u8],
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    permute: bool,
    meta: Vec<(String, kjarni_web::gguf::MetaValue)>,
    extra: Vec<(&'a str, Vec<u64>, Vec<f32>)>,
}

fn tiny_gguf(t: TinyGguf<'_>) -> Vec<u8> {
    use kjarni_web::gguf::writer::GgufWriter;
    use kjarni_web::gguf::{unpermute_qk_rows, GgmlType, MetaArray, MetaValue};
    use kjarni_web::models::weights::gguf_name;
    let st = t.safetensors;
    let n = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&st[8..8 + n]).unwrap();
    let data = &st[8 + n..];
    let a = t.arch;
    let u = |v: usize| MetaValue::U32(v as u32);
    let mut w = GgufWriter::new()
        .kv("general.architecture", MetaValue::String(a.into()))
        .kv(&format!("{a}.context_length"), u(128))
        .kv(&format!("{a}.embedding_length"), u(64))
        .kv(&format!("{a}.block_count"), u(2))
        .kv(&format!("{a}.feed_forward_length"), u(128))
        .kv(&format!("{a}.attention.head_count"), u(t.heads))
        .kv(&format!("{a}.attention.head_count_kv"), u(t.kv_heads))
        .kv(&format!("{a}.attention.layer_norm_rms_epsilon"), MetaValue::F32(1e-6))
        .kv(&format!("{a}.rope.dimension_count"), u(t.head_dim))
        .kv(&format!("{a}.vocab_size"), u(512))
        .kv("tokenizer.ggml.model", MetaValue::String("gpt2".into()))
        .kv(
            "tokenizer.ggml.tokens",
            MetaValue::Array(MetaArray::String((0..512).map(|i| format!("t{i}")).collect())),
        )
        .kv("tokenizer.ggml.merges", MetaValue::Array(MetaArray::String(Vec::new())))
        .kv("tokenizer.ggml.bos_token_id", u(1))
        .kv("tokenizer.ggml.eos_token_id", u(2));
    for (k, v) in t.meta {
        w = w.kv(&k, v);
    }
    let mut names: Vec<&String> = header.keys().filter(|k| *k != "__metadata__").collect();
    names.sort();
    for name in names {
        let info = &header[name.as_str()];
        assert_eq!(info["dtype"], "BF16", "{name}");
        let shape: Vec<u64> = info["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        let off: Vec<usize> = info["data_offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let vals: Vec<f32> = data[off[0]..off[1]]
            .chunks_exact(2)
            .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
            .collect();
        let cols = *shape.last().unwrap() as usize;
        let rows = vals.len() / cols;
        // llama.cpp permutes `llama` q / k rows: GGUF row order[r] holds HF row r.
        let heads = match (t.permute, name) {
            (true, n) if n.ends_with("q_proj.weight") => Some(t.heads),
            (true, n) if n.ends_with("k_proj.weight") => Some(t.kv_heads),
            _ => None,
        };
        let vals = match heads {
            Some(h) => {
                let order = unpermute_qk_rows(rows, h).unwrap();
                let mut out = vec![0.0f32; vals.len()];
                for (r, &g) in order.iter().enumerate() {
                    out[g * cols..(g + 1) * cols].copy_from_slice(&vals[r * cols..(r + 1) * cols]);
                }
                out
            }
            None => vals,
        };
        let dims: Vec<u64> = shape.iter().rev().copied().collect();
        w = w.tensor(
            &gguf_name(name).unwrap(),
            GgmlType::F32,
            &dims,
            vals.iter().flat_map(|x| x.to_le_bytes()).collect(),
        );
    }
    for (name, dims, vals) in t.extra {
        w = w.tensor(
            name,
            GgmlType::F32,
            &dims,
            vals.iter().flat_map(|x| x.to_le_bytes()).collect(),
        );
    }
    w.build()
}

async fn check_gguf(name: &str, file: Vec<u8>, reference: &str) -> Llama {
    use kjarni_web::models::gguf::{load_llama_gguf, GgufOptions};
    let mut src = MemorySource::new();
    src.insert("tiny.gguf", file);
    let gpu = crate::common::gpu().await;
    let opts = LlamaOptions {
        kv_cache: KvDType::F32,
        max_context: 64,
    };
    let gguf = GgufOptions {
        dense: kjarni_web::DType::F32,
        ..Default::default()
    };
    let mut m = load_llama_gguf(&gpu, &src, "tiny.gguf", &opts, &gguf, &mut |_| {})
        .await
        .unwrap()
        .model;
    let d = check_model(name, &gpu, &mut m, reference, true).await;
    assert!(d <= TOL, "{name}: max logit diff {d} > {TOL}");
    m
}

// The tiny Llama 3 checkpoint written as llama.cpp would: GGUF `llama`, q/k rows permuted,
// `rope_freqs.weight` holding Llama 3's per-pair frequency divisors. Loaded through the GGUF
// path (the same layer loader by way of the HF ↔ GGUF name table, rows un-permuted while
// streaming, the scaling recovered from rope_freqs), it gives transformers' logits.
gpu_test!(tiny_llama3_from_gguf_matches_transformers, async {
    use kjarni_web::gguf::MetaValue;
    use kjarni_web::ops::rope::{inv_freq, RopeScaling};
    let s = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 32.0,
    };
    let factors: Vec<f32> = inv_freq(1e4, 16, RopeScaling::None)
        .iter()
        .map(|&f| (f / s.apply(f)) as f32)
        .collect();
    let file = tiny_gguf(TinyGguf {
        arch: "llama",
        safetensors: include_bytes!("../fixtures/tiny/llama3/model.safetensors"),
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        permute: true,
        meta: vec![
            ("llama.rope.freq_base".into(), MetaValue::F32(1e4)),
            ("llama.rope.scaling.original_context_length".into(), MetaValue::U32(32)),
        ],
        extra: vec![("rope_freqs.weight", vec![8], factors)],
    });
    let m = check_gguf(
        "llama3 (GGUF)",
        file,
        include_str!("../fixtures/tiny/llama3/reference.json"),
    )
    .await;
    assert_eq!(m.config().rope_scaling, s, "scaling recovered from rope_freqs.weight");
});

// The tiny Qwen3 as GGUF `qwen3`: head_dim 32 from `attention.key_length` (≠ 64 / 4), q/k norms
// as attn_q_norm / attn_k_norm, untied output.weight.
gpu_test!(tiny_qwen3_from_gguf_matches_transformers, async {
    use kjarni_web::gguf::MetaValue;
    let file = tiny_gguf(TinyGguf {
        arch: "qwen3",
        safetensors: include_bytes!("../fixtures/tiny/qwen3/model.safetensors"),
        heads: 4,
        kv_heads: 2,
        head_dim: 32,
        permute: false,
        meta: vec![
            ("qwen3.rope.freq_base".into(), MetaValue::F32(1e6)),
            ("qwen3.attention.key_length".into(), MetaValue::U32(32)),
            ("qwen3.attention.value_length".into(), MetaValue::U32(32)),
        ],
        extra: Vec::new(),
    });
    let m = check_gguf(
        "qwen3 (GGUF)",
        file,
        include_str!("../fixtures/tiny/qwen3/reference.json"),
    )
    .await;
    assert_eq!((m.config().head_dim, m.config().tie_word_embeddings), (32, false));
});
