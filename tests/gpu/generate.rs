//! The GPU-driven decode loop (`generate`: sampling on the GPU, ids fed to the next step on the
//! GPU, steps in flight, ids read back through a ring) on a tiny random Llama built in memory:
//! the same ids as the logits path, seeded sampling equal to the CPU reference step by step,
//! steps in flight never change the result, stops / abort mid-flight lose and leak nothing, the
//! cache afterwards holds exactly the prompt and the accepted tokens, and 1,000 tokens keep the
//! live buffers flat.

use crate::common::{gpu, gpu_with, BOTH_SHAPES};
use kjarni_web::generate::{
    argmax, generate, generate_masked, CancelToken, FinishReason, GenerateOptions, Generation, SamplingParams,
};
use kjarni_web::load::MemorySource;
use kjarni_web::models::llama::{Llama, LlamaOptions};
use kjarni_web::ops::kv_cache::KvDType;
use kjarni_web::{Gpu, Result};
use serde_json::json;

const VOCAB: usize = 300;

/// A tiny Llama (2 layers, hidden 64, 4 heads of 16, 2 KV heads, vocab 300: not a multiple of
/// 32) with random bf16 weights, as config.json + model.safetensors in memory; `qwen2`: q/k/v
/// biases and an untied lm_head.
pub fn tiny_model(qwen2: bool) -> MemorySource {
    let (h, layers, heads, kv, ff, hd) = (64usize, 2, 4, 2, 128, 16);
    let mut tensors: Vec<(String, Vec<usize>)> = vec![("model.embed_tokens.weight".into(), vec![VOCAB, h])];
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        for (n, shape) in [
            ("input_layernorm.weight", vec![h]),
            ("post_attention_layernorm.weight", vec![h]),
            ("self_attn.q_proj.weight", vec![heads * hd, h]),
            ("self_attn.k_proj.weight", vec![kv * hd, h]),
            ("self_attn.v_proj.weight", vec![kv * hd, h]),
            ("self_attn.o_proj.weight", vec![h, heads * hd]),
            ("mlp.gate_proj.weight", vec![ff, h]),
            ("mlp.up_proj.weight", vec![ff, h]),
            ("mlp.down_proj.weight", vec![h, ff]),
        ] {
            tensors.push((format!("{p}.{n}"), shape));
        }
        if qwen2 {
            for (n, r) in [("q_proj", heads * hd), ("k_proj", kv * hd), ("v_proj", kv * hd)] {
                tensors.push((format!("{p}.self_attn.{n}.bias"), vec![r]));
            }
        }
    }
    tensors.push(("model.norm.weight".into(), vec![h]));
    if qwen2 {
        tensors.push(("lm_head.weight".into(), vec![VOCAB, h]));
    }
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (i, (name, shape)) in tensors.iter().enumerate() {
        let n: usize = shape.iter().product();
        let vals = if name.ends_with("norm.weight") {
            vec![1.0f32; n]
        } else {
            kjarni_web::cpu::random(n, i as u64 + 1, -0.3, 0.3)
        };
        let start = data.len();
        data.extend(vals.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()));
        header.insert(
            name.clone(),
            json!({"dtype": "BF16", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut hdr = serde_json::to_vec(&header).unwrap();
    while !hdr.len().is_multiple_of(8) {
        hdr.push(b' ');
    }
    let mut file = (hdr.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&hdr);
    file.extend_from_slice(&data);
    let config = json!({
        "model_type": if qwen2 { "qwen2" } else { "llama" }, "hidden_size": h, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv, "intermediate_size": ff, "vocab_size": VOCAB, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "max_position_embeddings": 4096, "tie_word_embeddings": !qwen2,
        "hidden_act": "silu", "eos_token_id": 2,
    });
    let mut src = MemorySource::new();
    src.insert("config.json", serde_json::to_vec(&config).unwrap());
    src.insert("model.safetensors", file);
    src
}

async fn load(gpu: &Gpu, max_context: usize) -> Llama {
    load_with(gpu, max_context, KvDType::F32, false).await
}

async fn load_with(gpu: &Gpu, max_context: usize, kv_cache: KvDType, qwen2: bool) -> Llama {
    let opts = LlamaOptions { kv_cache, max_context };
    Llama::load(gpu, &tiny_model(qwen2), &opts, &mut |_| {}).await.unwrap()
}

/// Every token decodes to its own non-empty text, so each id streams one delta.
fn text_of(ids: &[u32]) -> Result<String> {
    Ok(ids.iter().map(|i| format!("<{i}>")).collect())
}

const PROMPT: [u32; 5] = [1, 17, 42, 99, 250];

async fn run(
    gpu: &Gpu,
    m: &mut Llama,
    opts: &GenerateOptions,
    cancel: &CancelToken,
    on: &mut dyn FnMut(&str),
) -> Generation {
    m.reset();
    generate(m, gpu, text_of, &PROMPT, opts, cancel, on).await.unwrap()
}

fn opts(max_tokens: usize, depth: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        ignore_eos: true,
        steps_in_flight: depth,
        ..Default::default()
    }
}

/// Greedy ids through the logits path (forward + readback + CPU argmax).
async fn greedy_reference(gpu: &Gpu, m: &mut Llama, n: usize) -> Vec<u32> {
    m.reset();
    let mut logits = m.forward(gpu, &PROMPT).await.unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let id = argmax(&logits).unwrap();
        out.push(id);
        logits = m.forward(gpu, &[id]).await.unwrap();
    }
    out
}

gpu_test!(generate_greedy_equals_the_logits_path_at_every_depth, async {
    let gpu = gpu().await;
    let mut m = load(&gpu, 256).await;
    let want = greedy_reference(&gpu, &mut m, 40).await;
    for depth in [1, 2, 3, 4] {
        let mut streamed = String::new();
        let g = run(&gpu, &mut m, &opts(40, depth), &CancelToken::new(), &mut |d| {
            streamed.push_str(d)
        })
        .await;
        assert_eq!(g.tokens, want, "depth {depth}");
        assert_eq!(g.finish, FinishReason::Length);
        assert_eq!(streamed, text_of(&want).unwrap());
        // max_tokens: the last token was never fed (as before), everything else was.
        assert_eq!(m.cached_ids(), [&PROMPT[..], &want[..39]].concat(), "depth {depth}");
    }
    say!(
        "tiny model: {} dispatches per decoded token (sampling included)",
        m.dispatches_per_token()
    );
    // f16 / int8 KV caches and the Qwen2 layout (q/k/v biases, untied lm_head) likewise.
    for (kv, qwen2) in [(KvDType::F16, false), (KvDType::Int8, false), (KvDType::F16, true)] {
        let mut m = load_with(&gpu, 256, kv, qwen2).await;
        let want = greedy_reference(&gpu, &mut m, 24).await;
        let g = run(&gpu, &mut m, &opts(24, 3), &CancelToken::new(), &mut |_| {}).await;
        assert_eq!(g.tokens, want, "KV {} qwen2 {qwen2}", kv.name());
    }
});

gpu_test!(generate_greedy_is_the_same_under_both_launch_shapes, async {
    // The fused decode path of the tiny model under the GPU launch shapes (gemv_vec4 / grouped,
    // swiglu_fused, gemv_qkv at 256 invocations, decode_single) and the CPU ones (gemv_rows,
    // swiglu_rows, gemv_qkv at 64, decode_partial), whatever the adapter: the same math in
    // another f32 summation order, so logits within 1e-3 of their size at every step (as the
    // fused-vs-unfused test), the same 16 greedy ids, and generate's ids equal to them.
    use kjarni_web::models::llama::DecodePath;
    let mut runs: Vec<(Vec<u32>, Vec<Vec<f32>>)> = Vec::new();
    for shapes in BOTH_SHAPES {
        let gpu = gpu_with(shapes).await;
        let mut m = load(&gpu, 64).await;
        assert_eq!(m.decode_path(), DecodePath::Fused);
        m.reset();
        let mut logits = m.forward(&gpu, &PROMPT).await.unwrap();
        let (mut ids, mut steps) = (Vec::new(), Vec::new());
        while ids.len() < 16 {
            ids.push(argmax(&logits).unwrap());
            steps.push(logits);
            logits = m.forward(&gpu, &[*ids.last().unwrap()]).await.unwrap();
        }
        let g = run(&gpu, &mut m, &opts(16, 2), &CancelToken::new(), &mut |_| {}).await;
        assert_eq!(g.tokens, ids, "{shapes:?} shapes: generate vs the logits path");
        runs.push((ids, steps));
    }
    let ((gpu_ids, gpu_steps), (cpu_ids, cpu_steps)) = (&runs[0], &runs[1]);
    for (i, (g, c)) in gpu_steps.iter().zip(cpu_steps).enumerate() {
        let size = g.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
        let d = g.iter().zip(c).fold(0.0f32, |a, (x, y)| a.max((x - y).abs()));
        assert!(
            d <= 1e-3 * size,
            "step {i}: GPU vs CPU launch shapes differ by {d} (logits up to {size})"
        );
    }
    assert_eq!(gpu_ids, cpu_ids, "greedy ids under the GPU vs the CPU launch shapes");
});

gpu_test!(generate_seeded_sampling_equals_cpu_reference_step_by_step, async {
    use kjarni_web::cpu::sample as reference;
    let gpu = gpu().await;
    let mut m = load(&gpu, 256).await;
    let n = 24;
    let cases = [
        SamplingParams {
            temperature: 0.9,
            seed: 11,
            ..Default::default()
        },
        SamplingParams {
            temperature: 1.1,
            top_k: 50,
            top_p: 0.9,
            min_p: 0.01,
            repetition_penalty: 1.2,
            seed: 12,
        },
    ];
    for p in cases {
        let g = run(
            &gpu,
            &mut m,
            &GenerateOptions {
                sampling: p.clone(),
                ..opts(n, 3)
            },
            &CancelToken::new(),
            &mut |_| {},
        )
        .await;
        for depth in [1, 4] {
            let again = run(
                &gpu,
                &mut m,
                &GenerateOptions {
                    sampling: p.clone(),
                    ..opts(n, depth)
                },
                &CancelToken::new(),
                &mut |_| {},
            )
            .await;
            assert_eq!(again.tokens, g.tokens, "depth {depth} changed the draws of {p:?}");
        }
        let other = run(
            &gpu,
            &mut m,
            &GenerateOptions {
                sampling: SamplingParams { seed: 99, ..p.clone() },
                ..opts(n, 3)
            },
            &CancelToken::new(),
            &mut |_| {},
        )
        .await;
        assert_ne!(other.tokens, g.tokens);
        // The CPU reference on the logits path's logits, following the same ids.
        m.reset();
        let mut logits = m.forward(&gpu, &PROMPT).await.unwrap();
        let mut seen = vec![false; VOCAB];
        PROMPT.iter().for_each(|&t| seen[t as usize] = true);
        let mut want = Vec::new();
        for step in 0..n {
            let id = reference::sample(&logits, &mut seen, None, &p, step as u32);
            want.push(id);
            logits = m.forward(&gpu, &[id]).await.unwrap();
        }
        assert_eq!(g.tokens, want, "{p:?}");
    }
});

gpu_test!(generate_stops_and_abort_mid_flight_lose_and_leak_nothing, async {
    let gpu = gpu().await;
    let mut m = load(&gpu, 256).await;
    let want = greedy_reference(&gpu, &mut m, 40).await;
    run(&gpu, &mut m, &opts(4, 4), &CancelToken::new(), &mut |_| {}).await; // warm
    let before = gpu.memory();

    // A stop id: the tokens before its first occurrence; the cache holds them all (each was fed).
    let stop = want[12];
    let at = want.iter().position(|&t| t == stop).unwrap();
    let o = GenerateOptions {
        stop_token_ids: vec![stop],
        ..opts(40, 4)
    };
    let mut streamed = String::new();
    let g = run(&gpu, &mut m, &o, &CancelToken::new(), &mut |d| streamed.push_str(d)).await;
    assert_eq!((g.finish, &g.tokens[..]), (FinishReason::Stop, &want[..at]));
    assert_eq!(
        streamed,
        text_of(&want[..at]).unwrap(),
        "nothing past the stop is streamed"
    );
    assert_eq!(m.cached_ids(), [&PROMPT[..], &want[..at]].concat());

    // A stop string ends at the token completing it; its text is not emitted.
    let s = want[7];
    let j = want.iter().position(|&t| t == s).unwrap();
    let o = GenerateOptions {
        stop: vec![format!("<{s}>")],
        ..opts(40, 4)
    };
    let mut streamed = String::new();
    let g = run(&gpu, &mut m, &o, &CancelToken::new(), &mut |d| streamed.push_str(d)).await;
    assert_eq!((g.finish, &g.tokens[..]), (FinishReason::Stop, &want[..=j]));
    assert_eq!(
        (g.text.as_str(), streamed.as_str()),
        (
            text_of(&want[..j]).unwrap().as_str(),
            text_of(&want[..j]).unwrap().as_str()
        )
    );
    assert!(
        m.cached_tokens() <= PROMPT.len() + j + 1
            && m.cached_ids() == &[&PROMPT[..], &want[..m.cached_tokens() - PROMPT.len()]].concat()[..]
    );

    // Abort after 5 streamed tokens: exactly 5 kept, the steps in flight dropped.
    let cancel = CancelToken::new();
    let mut deltas = 0;
    let c2 = cancel.clone();
    let g = run(&gpu, &mut m, &opts(40, 4), &cancel, &mut |_| {
        deltas += 1;
        if deltas == 5 {
            c2.cancel();
        }
    })
    .await;
    assert_eq!((g.finish, &g.tokens[..]), (FinishReason::Cancelled, &want[..5]));
    assert_eq!(m.cached_ids(), [&PROMPT[..], &want[..5]].concat());
    assert_eq!(gpu.memory().live_buffers, before.live_buffers, "a buffer leaked");
    assert_eq!(gpu.memory().live_bytes, before.live_bytes);

    // The next turn reuses that prefix: the same logits as a fresh run of the whole conversation.
    let turn: Vec<u32> = [&PROMPT[..], &want[..5], &[3, 4]].concat();
    let reused = m.forward_reusing(&gpu, &turn).await.unwrap();
    m.reset();
    let fresh = m.forward(&gpu, &turn).await.unwrap();
    let diff = fresh
        .iter()
        .zip(&reused)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-4, "prefix reuse after an abort changed the logits by {diff}");

    // Cancelled before the first id: nothing generated, only the prompt cached.
    let cancel = CancelToken::new();
    cancel.cancel();
    let g = run(&gpu, &mut m, &opts(40, 4), &cancel, &mut |_| {}).await;
    assert_eq!(
        (g.finish, g.tokens.len(), m.cached_ids()),
        (FinishReason::Cancelled, 0, &PROMPT[..])
    );

    // The context's end: every token that fits, then Length.
    let mut small = load(&gpu, 12).await;
    let g = run(&gpu, &mut small, &opts(0, 4), &CancelToken::new(), &mut |_| {}).await;
    assert_eq!((g.finish, &g.tokens[..]), (FinishReason::Length, &want[..8]));
    assert_eq!(small.cached_tokens(), 12);
});

gpu_test!(generate_in_groups_of_steps_per_submit_changes_nothing, async {
    // Several steps recorded into one submission: the same greedy ids as the logits path; a
    // max_tokens that is no multiple of the group; a stop id and the context's end in the middle
    // of a group keep exactly the accepted tokens in the cache; no buffer leaks.
    let gpu = gpu().await;
    let mut m = load(&gpu, 256).await;
    let want = greedy_reference(&gpu, &mut m, 40).await;
    run(&gpu, &mut m, &opts(4, 4), &CancelToken::new(), &mut |_| {}).await; // warm
    let before = gpu.memory();
    for (depth, per_submit, max_tokens) in [(4, 2, 40), (6, 3, 37), (8, 4, 39), (3, 3, 11), (2, 4, 9)] {
        let o = GenerateOptions {
            steps_per_submit: per_submit,
            ..opts(max_tokens, depth)
        };
        let mut streamed = String::new();
        let g = run(&gpu, &mut m, &o, &CancelToken::new(), &mut |d| streamed.push_str(d)).await;
        let tag = format!("depth {depth}, {per_submit} per submit, max_tokens {max_tokens}");
        assert_eq!(g.tokens, want[..max_tokens], "{tag}");
        assert_eq!(g.finish, FinishReason::Length, "{tag}");
        assert_eq!(streamed, text_of(&want[..max_tokens]).unwrap(), "{tag}");
        assert_eq!(m.cached_ids(), [&PROMPT[..], &want[..max_tokens - 1]].concat(), "{tag}");
    }
    // A stop id inside a group: nothing past it streamed or cached.
    let stop = want[13];
    let at = want.iter().position(|&t| t == stop).unwrap();
    let o = GenerateOptions {
        stop_token_ids: vec![stop],
        steps_per_submit: 4,
        ..opts(40, 8)
    };
    let g = run(&gpu, &mut m, &o, &CancelToken::new(), &mut |_| {}).await;
    assert_eq!((g.finish, &g.tokens[..]), (FinishReason::Stop, &want[..at]));
    assert_eq!(m.cached_ids(), [&PROMPT[..], &want[..at]].concat());
    assert_eq!(gpu.memory().live_buffers, before.live_buffers, "a buffer leaked");
    // The context's end inside a group: every token that fits, then Length.
    let mut small = load(&gpu, 12).await;
    let o = GenerateOptions {
        steps_per_submit: 3,
        ..opts(0, 6)
    };
    let g = run(&gpu, &mut small, &o, &CancelToken::new(), &mut |_| {}).await;
    assert_eq!((g.finish, &g.tokens[..]), (FinishReason::Length, &want[..8]));
    assert_eq!(small.cached_tokens(), 12);
});

gpu_test!(generate_with_a_logit_mask_keeps_one_step_in_flight, async {
    let gpu = gpu().await;
    let mut m = load(&gpu, 256).await;
    // Only even ids, and after the first token only ids below 100.
    let mut calls = 0;
    let mut mask = |tokens: &[u32]| -> Result<Vec<u32>> {
        calls += 1;
        let lim = if tokens.is_empty() { VOCAB } else { 100 };
        let mut w = vec![0u32; VOCAB.div_ceil(32)];
        for i in (0..lim).step_by(2) {
            w[i / 32] |= 1 << (i % 32);
        }
        Ok(w)
    };
    m.reset();
    let g = generate_masked(
        &mut m,
        &gpu,
        text_of,
        &PROMPT,
        &opts(12, 4),
        &CancelToken::new(),
        &mut |_| {},
        Some(&mut mask),
    )
    .await
    .unwrap();
    assert_eq!(g.tokens.len(), 12);
    assert!(
        g.tokens.iter().all(|t| t % 2 == 0) && g.tokens[1..].iter().all(|&t| t < 100),
        "{:?}",
        g.tokens
    );
    assert_eq!(calls, 12, "one mask per token");
    // The first token is the argmax over the even ids.
    m.reset();
    let l = m.forward(&gpu, &PROMPT).await.unwrap();
    let even: Vec<f32> = l
        .iter()
        .enumerate()
        .map(|(i, &v)| if i % 2 == 0 { v } else { f32::NEG_INFINITY })
        .collect();
    assert_eq!(g.tokens[0], argmax(&even).unwrap());
});

gpu_test!(generate_1000_tokens_keeps_live_buffers_flat, async {
    let gpu = gpu().await;
    let mut m = load(&gpu, 1100).await;
    let p = SamplingParams {
        temperature: 1.0,
        top_p: 0.95,
        seed: 5,
        ..Default::default()
    };
    let o = GenerateOptions {
        sampling: p,
        ..opts(8, 3)
    };
    run(&gpu, &mut m, &o, &CancelToken::new(), &mut |_| {}).await;
    let before = gpu.memory();
    let o = GenerateOptions { max_tokens: 1000, ..o };
    let g = run(&gpu, &mut m, &o, &CancelToken::new(), &mut |_| {}).await;
    let after = gpu.memory();
    assert_eq!(g.tokens.len(), 1000);
    assert_eq!(m.cached_tokens(), PROMPT.len() + 999);
    say!(
        "1000 tokens: live buffers {} → {}, bytes {} → {}; {} buffers created during the run",
        before.live_buffers,
        after.live_buffers,
        before.live_bytes,
        after.live_bytes,
        after.created_buffers - before.created_buffers
    );
    assert_eq!(
        (after.live_buffers, after.live_bytes),
        (before.live_buffers, before.live_bytes)
    );
    // Per generation: the id ring (3) and the prefill's scratch; nothing per token.
    assert!(
        after.created_buffers - before.created_buffers < 40,
        "{} buffers created",
        after.created_buffers - before.created_buffers
    );
});
