//! sentence-transformers heads (modules.json + 1_Pooling/config.json) and the cross-encoder
//! (classification head on [CLS]), on all-MiniLM-L6-v2's weights with edited head files: the
//! encoder itself is checked against its fixture in bert.rs.

use crate::models::{fixture, model, MINILM, MINILM_FIXTURE};
use kjarni_web::cpu;
use kjarni_web::load::{self, ByteSource, MemorySource};
use kjarni_web::models::bert::{BertModel, SentenceHead};
use kjarni_web::models::cross_encoder::CrossEncoder;
use kjarni_web::ops::pooling::Pooling;
use kjarni_web::Error;

const BROWSER: bool = cfg!(target_arch = "wasm32");

/// As bert.rs: hidden-state values are O(1), f32 error through 6 layers ~1e-5.
const HIDDEN_TOL: f32 = 1e-3;

/// MiniLM's files in memory (the encoder, tokenizer and its own head files).
async fn minilm_files() -> MemorySource {
    let src = model(MINILM).await;
    let mut m = MemorySource::new();
    for f in [
        "config.json",
        "model.safetensors",
        "sentence_bert_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        if f == "model.safetensors" {
            // Over read_all's cap for small files: one range read of the whole file, its length
            // from the header (the 8-byte header size, then the JSON's largest data offset): a
            // server may not say the length (no Content-Range / a compressed answer).
            let (head, _) = src.read_range(f, 0, 8).await.unwrap();
            let n = u64::from_le_bytes(head[..8].try_into().unwrap());
            let (json, _) = src.read_range(f, 8, 8 + n).await.unwrap();
            let header: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let data = header
                .as_object()
                .unwrap()
                .values()
                .filter_map(|t| t["data_offsets"][1].as_u64())
                .max()
                .unwrap();
            m.insert(f, src.read_range(f, 0, 8 + n + data).await.unwrap().0);
        } else if let Some(b) = src.read_optional(f).await.unwrap() {
            m.insert(f, b);
        }
    }
    m
}

fn modules(normalize: bool, extra: Option<&str>) -> Vec<u8> {
    let mut m = vec![
        r#"{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"}"#.to_string(),
        r#"{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}"#.to_string(),
    ];
    if normalize {
        m.push(r#"{"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}"#.into());
    }
    if let Some(t) = extra {
        m.push(format!(r#"{{"idx":3,"name":"3","path":"3","type":"{t}"}}"#));
    }
    format!("[{}]", m.join(",")).into_bytes()
}

fn pooling(mode: &str) -> Vec<u8> {
    format!(r#"{{"word_embedding_dimension":384,"pooling_mode_{mode}":true}}"#).into_bytes()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

gpu_test!(sentence_heads_follow_modules_json, async {
    let gpu = crate::common::gpu().await;
    let mut src = minilm_files().await;
    let head = SentenceHead::load(&src).await.unwrap();
    assert_eq!(
        head,
        SentenceHead {
            pooling: Pooling::Mean,
            normalize: true
        },
        "MiniLM's own modules.json"
    );
    let fx = fixture(MINILM_FIXTURE);
    let cases = fx["cases"].as_array().unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    // CLS and last token, not normalised: the pooled rows are hidden states the fixture has
    // (first 8 values of the first / last token), in one padded batch.
    // In the browser (SwiftShader: each load of MiniLM takes minutes) the CLS case only; the
    // pooling kernel's modes are covered by pooling.rs there.
    let modes = [
        ("cls_token", "hidden_first_token_first8", Pooling::Cls),
        ("lasttoken", "hidden_last_token_first8", Pooling::LastToken),
    ];
    for (mode, key, want_pool) in modes.into_iter().take(if BROWSER { 1 } else { 2 }) {
        src.insert("modules.json", modules(false, None))
            .insert("1_Pooling/config.json", pooling(mode));
        let m = BertModel::load(&gpu, &src).await.unwrap();
        assert_eq!(
            m.head(),
            SentenceHead {
                pooling: want_pool,
                normalize: false
            }
        );
        let got = m.embed(&gpu, &texts).await.unwrap();
        for (c, e) in cases.iter().zip(&got) {
            let want = floats(&c[key]);
            let d = e[..8]
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(d <= HIDDEN_TOL, "{mode} of {:?}: max diff {d}", c["text"]);
        }
    }
    // CLS + Normalize (bge's head): unit vectors along the CLS state.
    src.insert("modules.json", modules(true, None))
        .insert("1_Pooling/config.json", pooling("cls_token"));
    assert_eq!(
        SentenceHead::load(&src).await.unwrap(),
        SentenceHead {
            pooling: Pooling::Cls,
            normalize: true
        }
    );
    if !BROWSER {
        let m = BertModel::load(&gpu, &src).await.unwrap();
        let e = m.embed_one(&gpu, texts[0]).await.unwrap();
        let norm = e.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "normalised CLS: norm {norm}");
    }
    // Refused, naming what.
    src.insert("1_Pooling/config.json", pooling("max_tokens"));
    let e = BertModel::load(&gpu, &src).await.err().unwrap();
    assert!(
        matches!(&e, Error::UnsupportedConfig { field, .. } if field == "pooling_mode_max_tokens"),
        "{e}"
    );
    src.insert("1_Pooling/config.json", pooling("mean_tokens")).insert(
        "modules.json",
        modules(true, Some("sentence_transformers.models.Dense")),
    );
    let e = BertModel::load(&gpu, &src).await.err().unwrap();
    assert!(
        matches!(&e, Error::UnsupportedConfig { value, .. } if value.contains("Dense")),
        "{e}"
    );
});

/// A safetensors file of f32 tensors.
fn safetensors(tensors: &[(&str, Vec<usize>, &[f32])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, v) in tensors {
        let start = data.len();
        data.extend(v.iter().flat_map(|x| x.to_le_bytes()));
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let h = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

gpu_test!(cross_encoder_scores_pairs_with_the_classification_head, async {
    let gpu = crate::common::gpu().await;
    let mut src = minilm_files().await;
    let h = 384;
    // MiniLM (which has a pooler) plus a random 2-label classifier in a second shard.
    let cw = cpu::random(2 * h, 5, -0.1, 0.1);
    let cb = [0.25f32, -0.5];
    src.insert(
        "head.safetensors",
        safetensors(&[
            ("classifier.weight", vec![2, h], &cw),
            ("classifier.bias", vec![2], &cb),
        ]),
    );
    let header = load::read_header(&src, "model.safetensors").await.unwrap();
    let mut map = serde_json::Map::new();
    for t in &header.tensors {
        map.insert(t.name.clone(), "model.safetensors".into());
    }
    map.insert("classifier.weight".into(), "head.safetensors".into());
    map.insert("classifier.bias".into(), "head.safetensors".into());
    src.insert(
        "model.safetensors.index.json",
        serde_json::to_vec(&serde_json::json!({"weight_map": map})).unwrap(),
    );
    let ce = CrossEncoder::load(&gpu, &src).await.unwrap();
    assert_eq!(ce.labels(), 2);
    let query = "A man is playing a guitar.";
    let docs = [
        "A man plays music.",
        "The new movie is awesome, and the actors are great in it.",
        "Cats.",
    ];
    let logits = ce.logits(&gpu, query, &docs).await.unwrap();
    // Reference: the encoder's [CLS] state for the same typed pair (checked against the fixture
    // in bert.rs), then pooler, tanh and classifier in f64 on the CPU.
    let (_, len) = src.read_range("model.safetensors", 0, 8).await.unwrap();
    let bytes = src.read_range("model.safetensors", 0, len.unwrap()).await.unwrap().0;
    let f32s = |name: &str| -> Vec<f32> {
        let t = header.tensors.iter().find(|t| t.name == name).unwrap();
        let at = header.data_start() as usize;
        bytes[at + t.start as usize..at + t.end as usize]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let (pw, pb) = (f32s("pooler.dense.weight"), f32s("pooler.dense.bias"));
    let tok = ce.encoder().tokenizer();
    for (d, got) in docs.iter().zip(&logits) {
        let (ids, types) = tok.encode_pair(query, d).unwrap();
        assert!(types.contains(&1) && types[0] == 0, "token types {types:?}");
        let mut b = gpu.batch();
        let enc = ce.encoder().record_typed(&gpu, &mut b, &[ids], Some(&[types])).unwrap();
        gpu.submit(b).unwrap();
        let cls = enc.hidden.to_f32_vec(&gpu).await.unwrap()[..h].to_vec();
        let pooled: Vec<f64> = (0..h)
            .map(|o| {
                (f64::from(pb[o])
                    + (0..h)
                        .map(|i| f64::from(pw[o * h + i]) * f64::from(cls[i]))
                        .sum::<f64>())
                .tanh()
            })
            .collect();
        for l in 0..2 {
            let want = f64::from(cb[l]) + (0..h).map(|i| f64::from(cw[l * h + i]) * pooled[i]).sum::<f64>();
            // O(1) logits from two 384-term f32 dot products and one tanh: 1e-4.
            assert!(
                (f64::from(got[l]) - want).abs() < 1e-4,
                "{d:?} logit {l}: got {} want {want}",
                got[l]
            );
        }
    }
    let scores = ce.rerank(&gpu, query, &docs).await.unwrap();
    assert_eq!(scores, logits.iter().map(|l| l[0]).collect::<Vec<_>>());
    // The pair of a query with itself and a different pair give different scores: types matter.
    assert_ne!(logits[0], logits[1]);
});
