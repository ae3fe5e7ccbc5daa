//! GGUF loading: SmolLM2-135M-Instruct Q4_1 from its single .gguf file against the reference of
//! transformers' GGUF path (tests/fixtures/smollm2_q4_1_gguf.json, scripts/gen_gguf_fixture.py),
//! the tokenizer from GGUF metadata against the HF ids, synthetic files through the streaming
//! loader (every chunking path, dequantisation, q/k un-permutation), typed errors, progress and
//! cancellation.

use crate::common::gpu;
use crate::models::{fixture, ids, SMOLLM2_FIXTURE};
use kjarni_web::generate::argmax;
use kjarni_web::gguf::writer::GgufWriter;
use kjarni_web::gguf::{GgmlType, MetaValue};
use kjarni_web::load::gguf::{is_gguf, load_gguf, read_header, TensorPlan};
use kjarni_web::load::{ByteSource, CancelFlag, LoadOptions, MemorySource, Progress};
use kjarni_web::models::gguf::{load_llama_gguf, GgufLlama, GgufOptions};
use kjarni_web::models::llama::LlamaOptions;
use kjarni_web::ops::kv_cache::KvDType;
use kjarni_web::tokenizer::{ChatMessage, Tokenizer};
use kjarni_web::{DType, Error};

pub const GGUF_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const GGUF_FIXTURE: &str = include_str!("../fixtures/smollm2_q4_1_gguf.json");

#[cfg(not(target_arch = "wasm32"))]
type Source = kjarni_web::load::DirSource;
#[cfg(target_arch = "wasm32")]
type Source = kjarni_web::load::FetchSource;

/// `models/gguf/` (scripts/fetch_models.sh puts the SmolLM2 GGUF there).
pub async fn gguf_dir() -> Source {
    #[cfg(not(target_arch = "wasm32"))]
    let src = {
        let root = std::env::var("KJARNI_MODELS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
        kjarni_web::load::DirSource::new(root.join("gguf"))
    };
    #[cfg(target_arch = "wasm32")]
    let src = kjarni_web::load::FetchSource::new("/models/gguf/");
    match src.read_range(GGUF_FILE, 0, 4).await {
        Ok(_) => src,
        Err(Error::NotFound { file }) => {
            panic!("test model missing ({file}): run scripts/fetch_models.sh first")
        }
        Err(e) => panic!("{GGUF_FILE} unreadable: {e}"),
    }
}

/// Bytes of wasm linear memory (0 natively).
fn wasm_heap_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsCast;
        let memory = wasm_bindgen::memory().unchecked_into::<js_sys::WebAssembly::Memory>();
        memory.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as u64
    }
    #[cfg(not(target_arch = "wasm32"))]
    0
}

async fn load_smollm2(dense: DType) -> (kjarni_web::Gpu, GgufLlama) {
    let gpu = gpu().await;
    let src = gguf_dir().await;
    let opts = LlamaOptions {
        kv_cache: KvDType::F32,
        max_context: 512,
    };
    let gopts = GgufOptions {
        dense,
        ..Default::default()
    };
    let heap = wasm_heap_bytes();
    let m = load_llama_gguf(&gpu, &src, GGUF_FILE, &opts, &gopts, &mut |_| {})
        .await
        .unwrap();
    let grown = wasm_heap_bytes() - heap;
    say!(
        "loaded {GGUF_FILE}: {} header requests, {} MB of GPU weights, wasm heap +{} KiB; warnings: {:?}",
        m.header_requests,
        m.weight_bytes / 1_000_000,
        grown / 1024,
        m.warnings
    );
    // Issue #7's bound: a load grows the wasm heap by at most 64 MiB (tokenizer included).
    assert!(grown <= 64 << 20, "wasm heap grew by {grown} bytes");
    (gpu, m)
}

/// Top-20 logits against the numpy float64 reference on the same dequantised weights: the
/// projections multiply exactly those weights with f32 accumulation (summation order only:
/// ≤ 7.5e-5 between f32 and f64, plus the GPU's exp/rsqrt/sin/cos), so the bf16 model's bound
/// 1e-2 applies. A dequantised **f16** embedding table rounds the Q8_0 values (d·q needs up to
/// 19 bits) by ≤ 2^-12 relative: measured 1.5e-3 on lavapipe (2.3e-5 with an f32 table), still
/// 7× inside 1e-2.
fn tolerance(_dense: DType) -> f32 {
    1e-2
}

async fn run_case(gpu: &kjarni_web::Gpu, m: &mut GgufLlama, case: &serde_json::Value, tol: f32, steps: usize) -> f32 {
    let model = &mut m.model;
    model.reset();
    let prompt = ids(&case["input_ids"]);
    let logits = model.forward(gpu, &prompt).await.unwrap();
    let top = &case["last_logits_top20"];
    let mut max_diff = 0.0f32;
    for (id, want) in ids(&top["ids"]).iter().zip(top["values"].as_array().unwrap()) {
        let want = want.as_f64().unwrap() as f32;
        let got = logits[*id as usize];
        max_diff = max_diff.max((got - want).abs());
        assert!(
            (got - want).abs() <= tol,
            "{}: logit of token {id}: got {got}, want {want} (tol {tol})",
            case["kind"]
        );
    }
    let want_ids = ids(&case["greedy_ids"]);
    let mut got_ids = vec![argmax(&logits).unwrap()];
    while got_ids.len() < want_ids.len().min(steps) {
        let logits = model.forward(gpu, &[*got_ids.last().unwrap()]).await.unwrap();
        got_ids.push(argmax(&logits).unwrap());
    }
    let n = got_ids.len();
    assert_eq!(
        got_ids,
        want_ids[..n],
        "greedy continuation of the {} case",
        case["kind"]
    );
    let text = m.tokenizer.decode(&got_ids, false).unwrap();
    if n == want_ids.len() {
        assert_eq!(text, case["greedy_text"].as_str().unwrap());
    }
    say!(
        "{} ({} prompt tokens): max top-20 logit diff {max_diff:.2e}; greedy {n} tokens identical: {text:?}; {} dispatches per decoded token",
        case["kind"],
        prompt.len(),
        model.dispatches_per_token()
    );
    max_diff
}

gpu_test!(gguf_smollm2_q4_1_matches_transformers_gguf_reference, async {
    let fx = fixture(GGUF_FIXTURE);
    let (gpu, mut m) = load_smollm2(DType::F16).await;
    assert!(
        m.warnings.iter().any(|w| w.contains("token_embd.weight")),
        "{:?}",
        m.warnings
    );
    assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
    // The browser (SwiftShader, a CPU rasteriser) and lavapipe are slow: a few greedy steps
    // already diverge on a wrong logit (the chat prompt's top two differ by 0.1).
    let (skip_long, steps) = if cfg!(target_arch = "wasm32") {
        (true, 3)
    } else {
        (false, 12)
    };
    for case in fx["cases"].as_array().unwrap() {
        if skip_long && case["input_ids"].as_array().unwrap().len() > 100 {
            continue;
        }
        run_case(&gpu, &mut m, case, tolerance(DType::F16), steps).await;
    }
});

gpu_test!(gguf_smollm2_with_f32_dequantised_embedding, async {
    let fx = fixture(GGUF_FIXTURE);
    let (gpu, mut m) = load_smollm2(DType::F32).await;
    // Chromium: the short text prompt (5 tokens; the chat prompt's prefill is checked by the Q4_1
    // fixture test), still the top-20 logits and greedy tokens, after the wasm heap check.
    let (case, steps) = if cfg!(target_arch = "wasm32") {
        (&fx["cases"][1], 2)
    } else {
        (&fx["cases"][0], 8)
    };
    run_case(&gpu, &mut m, case, tolerance(DType::F32), steps).await;
});

/// Greedy generation through the GPU driver (sampling on the GPU, ids fed on the GPU, steps in
/// flight) gives the fixture's tokens: with the embedding as one table, and held as f32 row
/// blocks (a 16 MiB part limit: the GPU gather per block) with the tied lm_head split likewise.
async fn greedy_through_driver(gpu: &kjarni_web::Gpu, m: &mut GgufLlama, case: &serde_json::Value, n: usize) {
    use kjarni_web::generate::{generate, CancelToken, GenerateOptions};
    let prompt = ids(&case["input_ids"]);
    let eos = m.model.config().eos_token_ids.clone();
    let want: Vec<u32> = ids(&case["greedy_ids"])
        .into_iter()
        .take(n)
        .take_while(|t| !eos.contains(t))
        .collect();
    m.model.reset();
    let opts = GenerateOptions {
        max_tokens: want.len(),
        ..Default::default()
    };
    let tok = &m.tokenizer;
    let g = generate(
        &mut m.model,
        gpu,
        |t: &[u32]| tok.decode(t, true),
        &prompt,
        &opts,
        &CancelToken::new(),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(g.tokens, want, "{} case through the GPU driver", case["kind"]);
    say!(
        "{}: {} greedy tokens through the GPU driver identical; {} dispatches per token",
        case["kind"],
        want.len(),
        m.model.dispatches_per_token()
    );
}

gpu_test!(gguf_smollm2_greedy_through_the_gpu_driver_table_and_row_blocks, async {
    let fx = fixture(GGUF_FIXTURE);
    let gpu = gpu().await;
    let src = gguf_dir().await;
    let opts = LlamaOptions {
        kv_cache: KvDType::F32,
        max_context: 512,
    };
    // The short text prompt (Chromium: 3 tokens; it ran the chat prompt, whose prefill the Q4_1
    // fixture test checks; the driver and the row blocks work at every step whatever the prompt).
    let case = &fx["cases"][1];
    let n = if cfg!(target_arch = "wasm32") { 3 } else { 32 };
    for limit in [None, Some(16u64 << 20)] {
        if cfg!(target_arch = "wasm32") && limit.is_none() {
            continue;
        }
        let gopts = GgufOptions {
            load: LoadOptions {
                max_part_bytes: limit,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut m = load_llama_gguf(&gpu, &src, GGUF_FILE, &opts, &gopts, &mut |_| {})
            .await
            .unwrap();
        if limit.is_some() {
            assert!(m.warnings.iter().any(|w| w.contains("row blocks")), "{:?}", m.warnings);
        }
        greedy_through_driver(&gpu, &mut m, case, n).await;
    }
});

gpu_test!(gguf_tokenizer_and_chat_template_match_hf, async {
    let fx = fixture(SMOLLM2_FIXTURE);
    let src = gguf_dir().await;
    let (header, requests) = read_header(&src, GGUF_FILE).await.unwrap();
    say!("header: {} bytes in {requests} requests", header.header_len);
    assert!(requests <= 7, "{requests} header requests");
    let tok = Tokenizer::from_gguf(&header).unwrap();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_token_id(), Some(1));
    assert_eq!(tok.eos_token_id(), Some(2));
    for case in fx["cases"].as_array().unwrap() {
        let want = ids(&case["input_ids"]);
        let got = if case["kind"] == "chat" {
            let msgs: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
            tok.encode_chat(&msgs, true).unwrap()
        } else {
            tok.encode(case["text"].as_str().unwrap(), true).unwrap()
        };
        assert_eq!(got, want, "{} prompt ids", case["kind"]);
        let text = tok.decode(&ids(&case["greedy_ids"]), false).unwrap();
        assert_eq!(text, case["greedy_text"].as_str().unwrap());
    }
    // Non-ASCII text and special tokens round trip.
    let s = "Le café était délicieux 😋 — 東京タワー!\n\n  x<|im_end|>";
    let e = tok.encode(s, false).unwrap();
    assert!(e.contains(&2), "<|im_end|> is one special token: {e:?}");
    assert_eq!(tok.decode(&e, false).unwrap(), s);
});

gpu_test!(gguf_suffix_detection, async {
    assert!(is_gguf("m.gguf"));
    assert!(is_gguf("https://x.org/a/SmolLM2.Q4_1.GGUF?download=1#x"));
    assert!(!is_gguf("model.safetensors"));
    assert!(!is_gguf("https://x.org/gguf/"));
    assert!(!is_gguf("a.gguf.json"));
});

// ---------------------------------------------------------------------------------------------
// Synthetic files

fn rand_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// Blocks of `t` with random quants and sane f16 scales (every block's f16 fields overwritten).
fn blocks(t: GgmlType, seed: u64, n: usize) -> Vec<u8> {
    let bb = t.type_size() as usize;
    let mut v = rand_bytes(seed, n * bb);
    let scale_at: &[usize] = match t {
        GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        _ => &[],
    };
    for (i, b) in v.chunks_mut(bb).enumerate() {
        for &a in scale_at {
            let x = half::f16::from_f32(0.01 + 0.001 * (i % 7) as f32);
            b[a..a + 2].copy_from_slice(&x.to_le_bytes());
        }
    }
    v
}

/// Every tensor type the loader handles, odd shapes, in one file.
type Tensors = Vec<(&'static str, GgmlType, Vec<u64>, Vec<u8>)>;

fn synthetic() -> (Vec<u8>, Tensors) {
    let f32s: Vec<u8> = (0..7u32).flat_map(|i| (i as f32 * 0.5 - 1.0).to_le_bytes()).collect();
    let f16s: Vec<u8> = (0..6u32)
        .flat_map(|i| half::f16::from_f32(i as f32 - 2.5).to_le_bytes())
        .collect();
    let tensors = vec![
        ("norm", GgmlType::F32, vec![7], f32s),
        ("h16", GgmlType::F16, vec![3, 2], f16s),
        ("q8big", GgmlType::Q8_0, vec![32, 40], blocks(GgmlType::Q8_0, 11, 40)),
        ("q8", GgmlType::Q8_0, vec![96, 3], blocks(GgmlType::Q8_0, 1, 9)),
        ("q4", GgmlType::Q4_0, vec![32, 5], blocks(GgmlType::Q4_0, 2, 5)),
        ("q41", GgmlType::Q4_1, vec![64, 3], blocks(GgmlType::Q4_1, 3, 6)),
        ("q5", GgmlType::Q5_0, vec![32, 3], blocks(GgmlType::Q5_0, 4, 3)),
        ("q51", GgmlType::Q5_1, vec![64, 1], blocks(GgmlType::Q5_1, 5, 2)),
        ("q4k", GgmlType::Q4_K, vec![256, 2], blocks(GgmlType::Q4_K, 6, 2)),
        ("q5k", GgmlType::Q5_K, vec![256, 1], blocks(GgmlType::Q5_K, 7, 1)),
        ("q6k", GgmlType::Q6_K, vec![256, 3], blocks(GgmlType::Q6_K, 8, 3)),
    ];
    let mut w = GgufWriter::new().kv("general.architecture", MetaValue::String("test".into()));
    for (n, t, d, b) in &tensors {
        w = w.tensor(n, *t, d, b.clone());
    }
    (w.build(), tensors)
}

fn mem(name: &str, bytes: Vec<u8>, piece: usize) -> MemorySource {
    let mut m = MemorySource::new().with_piece_size(piece);
    m.insert(name, bytes);
    m
}

gpu_test!(gguf_synthetic_tensors_round_trip_every_chunking, async {
    let gpu = gpu().await;
    let (file, tensors) = synthetic();
    // The last two: an 1100-byte binding limit splits the bigger tensors into row blocks
    // (q8big: 1360 bytes of 34-byte rows → 32 + 8 rows; q6k dequantised to f32: 1024-byte rows
    // → 3 parts), with tiny and large staging.
    for (staging, piece, part) in [
        (8 << 20, 1 << 20, None),
        (4, 1, None),
        (12, 3, None),
        (40, 7, None),
        (100, 1000, None),
        (64, 5, Some(1100)),
        (8 << 20, 1 << 20, Some(1100)),
    ] {
        let src = mem("t.gguf", file.clone(), piece);
        let opts = LoadOptions {
            staging_bytes: staging,
            max_part_bytes: part,
            ..Default::default()
        };
        let mut last = 0;
        let mut total = 0;
        let w = load_gguf(&gpu, &src, "t.gguf", DType::F32, &opts, &mut |p: &Progress| {
            assert!(p.done >= last && p.done <= p.total);
            last = p.done;
            total = p.total;
        })
        .await
        .unwrap();
        assert_eq!(last, total, "progress ends at the total");
        for (name, t, _, bytes) in &tensors {
            let mut want = Vec::new();
            kjarni_web::gguf::dequant::dequantize(*t, name, bytes, &mut want).unwrap();
            if w.has_quant(name) {
                let mut got = Vec::new();
                for q in w.quant_parts(name).unwrap() {
                    let words = q.tensor().to_u32_vec(&gpu).await.unwrap();
                    let b: Vec<u8> = words.iter().flat_map(|x| x.to_le_bytes()).collect();
                    assert!(b[q.block_bytes()..].iter().all(|&b| b == 0), "{name}: zero padding");
                    got.extend_from_slice(&b[..q.block_bytes()]);
                }
                assert_eq!(
                    got,
                    bytes[..],
                    "{name}: blocks as stored (staging {staging}, parts {part:?})"
                );
            } else {
                let mut got = Vec::new();
                for d in w.dense_parts(name).unwrap() {
                    got.extend(d.to_f32_vec(&gpu).await.unwrap());
                }
                let want: Vec<f32> = match w.dense_parts(name).unwrap()[0].dtype() {
                    DType::F16 => want.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect(),
                    _ => want,
                };
                assert_eq!(got, want, "{name} (staging {staging}, pieces {piece})");
            }
        }
        let kinds: Vec<_> = tensors.iter().map(|t| (t.0, w.has_quant(t.0))).collect();
        assert_eq!(
            kinds.iter().filter(|k| k.1).map(|k| k.0).collect::<Vec<_>>(),
            ["q8big", "q8", "q4", "q41", "q4k"],
            "kernel-readable types stay quantised"
        );
        assert_eq!(w.warnings.len(), 4, "{:?}", w.warnings); // q5, q51, q5k, q6k
        if let Some(limit) = part {
            let parts = w.quant_parts("q8big").unwrap();
            assert_eq!(
                parts.iter().map(|q| q.rows()).collect::<Vec<_>>(),
                [32, 8],
                "q8big split at {limit} bytes"
            );
            assert!(parts.iter().all(|q| q.tensor().buffer().size() <= limit));
            assert_eq!(w.dense_parts("q6k").unwrap().len(), 3);
            assert!(w.quant("q8big").is_err(), "a split tensor is not handed out whole");
        }
        assert!(
            w.warnings.iter().any(|m| m.contains("'q6k'") && m.contains("Q6_K")),
            "{:?}",
            w.warnings
        );
    }
});

gpu_test!(gguf_unpermutes_qk_rows_while_streaming, async {
    use kjarni_web::load::gguf::load_tensors;
    let gpu = gpu().await;
    // 2 heads of 4 rows, Q8_0 rows of one block, and an F32 [2 heads × 4] "bias".
    let rows = 8usize;
    let q8 = blocks(GgmlType::Q8_0, 9, rows);
    let bias: Vec<u8> = (0..rows as u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let file = GgufWriter::new()
        .kv("general.architecture", MetaValue::String("test".into()))
        .tensor("blk.0.attn_q.weight", GgmlType::Q8_0, &[32, rows as u64], q8.clone())
        .tensor("blk.0.attn_q.bias", GgmlType::F32, &[rows as u64], bias)
        .build();
    for staging in [4, 68, 1 << 20] {
        let src = mem("p.gguf", file.clone(), 5);
        let (header, _) = read_header(&src, "p.gguf").await.unwrap();
        let plan = |i: &kjarni_web::gguf::TensorInfo| {
            Some(TensorPlan {
                unpermute_heads: Some(2),
                ..TensorPlan::default_for(i, DType::F32)
            })
        };
        let opts = LoadOptions {
            staging_bytes: staging,
            ..Default::default()
        };
        // Staging smaller than one head (4 rows × 34 bytes) grows to one head.
        let w = load_tensors(&gpu, &src, "p.gguf", header, &opts, &plan, &mut |_| {})
            .await
            .unwrap();
        let order = kjarni_web::gguf::unpermute_qk_rows(rows, 2).unwrap();
        let got = w
            .quant("blk.0.attn_q.weight")
            .unwrap()
            .tensor()
            .to_u32_vec(&gpu)
            .await
            .unwrap();
        let got: Vec<u8> = got.iter().flat_map(|x| x.to_le_bytes()).collect();
        for (r, &src_row) in order.iter().enumerate() {
            assert_eq!(
                got[r * 34..(r + 1) * 34],
                q8[src_row * 34..(src_row + 1) * 34],
                "row {r}"
            );
        }
        let b = w.dense("blk.0.attn_q.bias").unwrap().to_f32_vec(&gpu).await.unwrap();
        assert_eq!(b, order.iter().map(|&i| i as f32).collect::<Vec<_>>());
    }
});

async fn load_err(bytes: Vec<u8>, hidden_len: bool) -> Error {
    let gpu = gpu().await;
    let before = gpu.memory();
    let mut src = mem("bad.gguf", bytes, 1 << 20);
    if hidden_len {
        src = src.with_hidden_len();
    }
    let r = load_gguf(&gpu, &src, "bad.gguf", DType::F16, &LoadOptions::default(), &mut |_| {}).await;
    let after = gpu.memory();
    assert_eq!(
        (after.live_buffers, after.live_bytes),
        (before.live_buffers, before.live_bytes),
        "buffers freed"
    );
    match r {
        Err(e) => e,
        Ok(_) => panic!("loaded a malformed file"),
    }
}

gpu_test!(gguf_malformed_files_are_typed_errors_through_the_loader, async {
    let (good, _) = synthetic();
    // Bad magic.
    let mut b = good.clone();
    b[..4].copy_from_slice(b"GGUX");
    let e = load_err(b, false).await;
    assert!(
        matches!(&e, Error::BadModelFile { file, detail } if file.contains("bad.gguf") && detail.contains("magic")),
        "{e}"
    );
    // Truncated inside the header (file length known).
    let e = load_err(good[..100].to_vec(), false).await;
    assert!(matches!(&e, Error::BadModelFile { .. }), "{e}");
    // Truncated inside the header, length unknown (compressed transfer).
    let e = load_err(good[..100].to_vec(), true).await;
    assert!(matches!(&e, Error::BadModelFile { .. }), "{e}");
    // Truncated in the data section with a hidden length (and a file longer than the first
    // 64 KiB header read, so the header read does not reach the end): found while streaming,
    // the error names the tensor.
    let big = GgufWriter::new()
        .kv("general.architecture", MetaValue::String("test".into()))
        .tensor("small", GgmlType::F32, &[4], vec![0; 16])
        .tensor("big", GgmlType::Q8_0, &[32, 4000], blocks(GgmlType::Q8_0, 3, 4000))
        .build();
    let e = load_err(big[..big.len() - 100].to_vec(), true).await;
    assert!(
        matches!(&e, Error::BadModelFile { detail, .. } if detail.contains("inside tensor 'big'")),
        "{e}"
    );
    // ... and with the length known: the parser already refuses it.
    let e = load_err(good[..good.len() - 100].to_vec(), false).await;
    assert!(
        matches!(&e, Error::BadModelFile { detail, .. } if detail.contains("q6k")),
        "{e}"
    );
    // Unknown ggml type id (99) in the tensor info.
    let file = GgufWriter::new()
        .kv("general.architecture", MetaValue::String("test".into()))
        .tensor("w", GgmlType::Q8_0, &[32, 1], blocks(GgmlType::Q8_0, 1, 1))
        .build();
    let info_at = file.windows(1 + 8).position(|w| &w[..1] == b"w").unwrap();
    let mut b = file.clone();
    // name (len u64 + "w"), n_dims u32, dims 2 × u64, then the type u32.
    let ty_at = info_at + 1 + 4 + 16;
    assert_eq!(
        u32::from_le_bytes(b[ty_at..ty_at + 4].try_into().unwrap()),
        8,
        "found Q8_0's id"
    );
    b[ty_at..ty_at + 4].copy_from_slice(&99u32.to_le_bytes());
    let e = load_err(b, false).await;
    assert!(
        matches!(&e, Error::BadModelFile { detail, .. } if detail.contains("'w'") && detail.contains("99")),
        "{e}"
    );
    // A known type with neither a kernel nor a dequantiser: typed Unsupported naming the tensor.
    let file = GgufWriter::new()
        .kv("general.architecture", MetaValue::String("test".into()))
        .tensor("iq", GgmlType::IQ4_NL, &[32, 1], vec![0; 18])
        .build();
    let e = load_err(file, false).await;
    assert!(
        matches!(&e, Error::Unsupported { why, .. } if why.contains("'iq'")),
        "{e}"
    );
    // Not a file at all.
    let gpu = gpu().await;
    let src = mem("x.gguf", vec![], 1);
    let r = load_gguf(
        &gpu,
        &src,
        "missing.gguf",
        DType::F16,
        &LoadOptions::default(),
        &mut |_| {},
    )
    .await;
    assert!(matches!(r, Err(Error::NotFound { .. })));
});

gpu_test!(gguf_progress_and_cancel, async {
    let gpu = gpu().await;
    let src = gguf_dir().await;
    let before = gpu.memory();
    let cancel = CancelFlag::new();
    let opts = LoadOptions {
        cancel: Some(cancel.clone()),
        staging_bytes: 1 << 20,
        ..LoadOptions::default()
    };
    let gopts = GgufOptions {
        load: opts,
        ..Default::default()
    };
    let lopts = LlamaOptions {
        kv_cache: KvDType::F16,
        max_context: 64,
    };
    let mut reports = 0;
    let mut last = 0;
    let r = load_llama_gguf(&gpu, &src, GGUF_FILE, &lopts, &gopts, &mut |p: &Progress| {
        assert!(p.done >= last, "monotonic");
        last = p.done;
        reports += 1;
        assert!(
            p.total > 90_000_000 && p.total < 98_362_432,
            "data section total {}",
            p.total
        );
        if p.done > 10 << 20 {
            cancel.cancel();
        }
    })
    .await;
    assert!(
        matches!(&r, Err(Error::Cancelled(m)) if m.contains(GGUF_FILE)),
        "{:?}",
        r.as_ref().err()
    );
    assert!(
        (10..40).contains(&reports),
        "stopped soon after the flag: {reports} reports"
    );
    let after = gpu.memory();
    assert_eq!(
        (after.live_buffers, after.live_bytes),
        (before.live_buffers, before.live_bytes),
        "buffers freed"
    );
    assert!(
        after.peak_bytes > before.live_bytes + (80 << 20),
        "buffers were allocated up front"
    );
});

/// Opt-in (too big for the default run): `KJARNI_QWEN_GGUF=path/to/qwen.gguf` (get it with
/// scripts/fetch_qwen_gguf.sh). Qwen2.5-Coder-0.5B-Instruct: Q5_0 / Q6_K tensors dequantised at
/// load, q/k/v biases, separate output.weight. Greedy answer to the chat prompt must name Paris.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn gguf_qwen_opt_in() {
    let Ok(path) = std::env::var("KJARNI_QWEN_GGUF") else {
        eprintln!("SKIPPED: set KJARNI_QWEN_GGUF to a Qwen2.5 GGUF (scripts/fetch_qwen_gguf.sh)");
        return;
    };
    pollster::block_on(async {
        let path = std::path::PathBuf::from(path);
        let src = kjarni_web::load::DirSource::new(path.parent().unwrap());
        let file = path.file_name().unwrap().to_str().unwrap();
        let gpu = gpu().await;
        let opts = LlamaOptions {
            kv_cache: KvDType::F16,
            max_context: 256,
        };
        let t0 = std::time::Instant::now();
        let mut m = load_llama_gguf(&gpu, &src, file, &opts, &GgufOptions::default(), &mut |_| {})
            .await
            .unwrap();
        let c = m.model.config().clone();
        eprintln!(
            "{:?}: {:?} {} layers, hidden {}, heads {}/{}, vocab {}, tied {}, {} MB on the GPU, loaded in {:.1} s",
            m.name,
            c.arch,
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.vocab_size,
            c.tie_word_embeddings,
            m.weight_bytes / 1_000_000,
            t0.elapsed().as_secs_f32()
        );
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for w in &m.warnings {
            let ty = w
                .split('(')
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .unwrap_or("?")
                .to_string();
            *kinds.entry(ty).or_default() += 1;
        }
        eprintln!(
            "{} warnings, dequantised by type: {kinds:?}; first: {:?}",
            m.warnings.len(),
            m.warnings.first()
        );
        let msgs = [ChatMessage::new("user", "What is the capital of France?")];
        let prompt = m.tokenizer.encode_chat(&msgs, true).unwrap();
        eprintln!(
            "prompt: {} tokens: {:?}",
            prompt.len(),
            m.tokenizer.decode(&prompt, false).unwrap()
        );
        let t0 = std::time::Instant::now();
        let mut logits = m.model.forward(&gpu, &prompt).await.unwrap();
        let mut out = Vec::new();
        let eos = m.model.config().eos_token_ids.clone();
        for _ in 0..24 {
            let id = argmax(&logits).unwrap();
            out.push(id);
            if eos.contains(&id) || m.tokenizer.id_to_token(id).as_deref() == Some("<|im_end|>") {
                break;
            }
            logits = m.model.forward(&gpu, &[id]).await.unwrap();
        }
        let text = m.tokenizer.decode(&out, true).unwrap();
        // The same greedy answer through the GPU driver (sampling and ids on the GPU).
        let want: Vec<u32> = out.iter().copied().take_while(|t| !eos.contains(t)).collect();
        m.model.reset();
        let gen_opts = kjarni_web::generate::GenerateOptions {
            max_tokens: want.len(),
            ..Default::default()
        };
        let tok = &m.tokenizer;
        let g = kjarni_web::generate::generate(
            &mut m.model,
            &gpu,
            |t: &[u32]| tok.decode(t, true),
            &prompt,
            &gen_opts,
            &kjarni_web::generate::CancelToken::new(),
            &mut |_| {},
        )
        .await
        .unwrap();
        assert_eq!(
            g.tokens[..],
            want[..want.len().min(g.tokens.len())],
            "through the GPU driver"
        );
        eprintln!(
            "greedy ({} tokens, {:.1} s): {text:?}",
            out.len(),
            t0.elapsed().as_secs_f32()
        );
        assert!(text.contains("Paris"), "{text:?}");
    });
}
