//! BERT sentence embeddings (all-MiniLM-L6-v2) against the reference fixture
//! (sentence-transformers, f32 on the CPU), natively and in headless Chromium.

use crate::models::{fixture, ids, model, MINILM, MINILM_FIXTURE};
use kjarni_web::models::bert::{BertModel, DISPATCHES_OUTSIDE_LAYERS, DISPATCHES_PER_LAYER};
use kjarni_web::ops::tune::now_ms;

/// Cosine with the reference embedding. f32 compute against f32 PyTorch: the embedding's
/// elements are ~0.05 and differ by a few 1e-6 (different summation orders over K ≤ 1536, the
/// erf approximation's 2e-7), so cosine ≥ 0.9999 leaves a wide margin while a wrong mask, a
/// missing bias or a swapped LayerNorm drops it below 0.99.
const MIN_COSINE: f64 = 0.9999;
/// 5x5 cosine matrix: entries are dot products of unit vectors each off by < 1e-5 in norm.
const COSINE_MATRIX_TOL: f64 = 1e-4;
/// Hidden-state values are O(1) (fixture rounded to 6 decimals); f32 error through 6 layers of
/// matmuls and LayerNorms is ~1e-5, so 1e-3 absolute.
const HIDDEN_TOL: f64 = 1e-3;

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
    let na: f64 = a.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn check_hidden(what: &str, got: &[f32], want: &serde_json::Value) {
    let want = floats(want);
    assert_eq!(want.len(), 8);
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        let d = (f64::from(g) - f64::from(w)).abs();
        assert!(
            d <= HIDDEN_TOL,
            "{what}[{i}]: got {g}, want {w} (|diff| {d:.2e} > {HIDDEN_TOL:e})"
        );
    }
}

/// (text, reference embedding, case json) of the fixture's 5 sentences.
fn cases() -> Vec<(String, Vec<f32>, serde_json::Value)> {
    let fx = fixture(MINILM_FIXTURE);
    let cases = fx["cases"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 5);
    cases
        .into_iter()
        .map(|c| (c["text"].as_str().unwrap().to_string(), floats(&c["embedding"]), c))
        .collect()
}

gpu_test!(bert_minilm_single_sentences_match_reference, async {
    let gpu = crate::common::gpu().await;
    let m = BertModel::load(&gpu, &model(MINILM).await).await.unwrap();
    assert_eq!((m.dim(), m.config().num_hidden_layers, m.max_tokens()), (384, 6, 256));
    let h = m.dim();
    for (text, want, case) in cases() {
        assert_eq!(m.tokenize(&text).unwrap(), ids(&case["input_ids"]), "ids of {text:?}");
        // One forward pass per sentence: the pooled embedding and the last hidden state.
        let enc = m.encode(&gpu, &[&text]).await.unwrap();
        let got = enc.pooled.to_f32_vec(&gpu).await.unwrap();
        let c = cosine(&got, &want);
        let max_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        say!(
            "single {:?}: 1 - cosine {:.1e}, max |diff| {max_diff:.2e}",
            text.chars().take(30).collect::<String>(),
            1.0 - c
        );
        assert!(c >= MIN_COSINE, "{text:?}: cosine {c} < {MIN_COSINE}");
        let norm: f64 = got.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{text:?}: norm {norm}");
        let len = case["input_ids"].as_array().unwrap().len();
        assert_eq!(enc.hidden.shape(), [1, len, h]);
        let hidden = enc.hidden.to_f32_vec(&gpu).await.unwrap();
        check_hidden(
            &format!("{text:?} first token"),
            &hidden[..8],
            &case["hidden_first_token_first8"],
        );
        check_hidden(
            &format!("{text:?} last token"),
            &hidden[(len - 1) * h..(len - 1) * h + 8],
            &case["hidden_last_token_first8"],
        );
        // The convenience calls run the same pass (shortest sentence only: browser time).
        if len <= 3 {
            assert_eq!(m.embed_one(&gpu, &text).await.unwrap(), got, "embed_one");
            let hs = m.last_hidden_state(&gpu, &[&text]).await.unwrap();
            assert_eq!((hs.len(), &hs[0][..]), (1, &hidden[..]), "last_hidden_state");
        }
    }
});

gpu_test!(bert_minilm_padded_batch_matches_reference, async {
    let gpu = crate::common::gpu().await;
    let t = now_ms();
    let m = BertModel::load(&gpu, &model(MINILM).await).await.unwrap();
    say!("timing: load {:.0} ms", now_ms() - t);
    let h = m.dim();
    let cases = cases();
    let texts: Vec<&str> = cases.iter().map(|c| c.0.as_str()).collect();
    let lens: Vec<usize> = cases
        .iter()
        .map(|c| c.2["input_ids"].as_array().unwrap().len())
        .collect();
    // The batch must really be padded, or the mask is not exercised.
    assert!(lens.iter().min() < lens.iter().max(), "fixture lengths {lens:?}");

    // One forward pass of the padded batch: dispatch count, embeddings and hidden states.
    let seqs: Vec<Vec<u32>> = texts.iter().map(|t| m.tokenize(t).unwrap()).collect();
    let mut b = gpu.batch();
    let enc = m.record(&gpu, &mut b, &seqs).unwrap();
    assert_eq!(b.dispatches(), DISPATCHES_OUTSIDE_LAYERS + 6 * DISPATCHES_PER_LAYER);
    gpu.submit(b).unwrap();
    assert_eq!((enc.lens.clone(), enc.seq), (lens.clone(), *lens.iter().max().unwrap()));
    let pooled = enc.pooled.to_f32_vec(&gpu).await.unwrap();
    let got: Vec<Vec<f32>> = pooled.chunks_exact(h).map(<[f32]>::to_vec).collect();
    assert_eq!(got.len(), 5);
    for ((text, want, _), e) in cases.iter().zip(&got) {
        let c = cosine(e, want);
        say!(
            "batch {:?}: 1 - cosine {:.1e}",
            text.chars().take(30).collect::<String>(),
            1.0 - c
        );
        assert!(c >= MIN_COSINE, "batched {text:?}: cosine {c} < {MIN_COSINE}");
    }
    // The 5x5 cosine matrix.
    let want_matrix = fixture(MINILM_FIXTURE)["cosine"].clone();
    for i in 0..5 {
        for j in 0..5 {
            let c = cosine(&got[i], &got[j]);
            let w = want_matrix[i][j].as_f64().unwrap();
            assert!(
                (c - w).abs() <= COSINE_MATRIX_TOL,
                "cosine[{i}][{j}] = {c}, fixture {w}"
            );
        }
    }
    // Hidden states of the padded batch: valid rows only, first and last token of each sequence.
    let hidden = enc.hidden.to_f32_vec(&gpu).await.unwrap();
    assert_eq!(enc.hidden.shape(), [5, enc.seq, h]);
    for (i, ((text, _, case), &len)) in cases.iter().zip(&lens).enumerate() {
        let hs = &hidden[i * enc.seq * h..(i * enc.seq + len) * h];
        check_hidden(
            &format!("batched {text:?} first token"),
            &hs[..8],
            &case["hidden_first_token_first8"],
        );
        check_hidden(
            &format!("batched {text:?} last token"),
            &hs[(len - 1) * h..(len - 1) * h + 8],
            &case["hidden_last_token_first8"],
        );
    }
    // Timings (printed, not asserted): warm calls, pipelines compiled by the calls above. Native
    // only: in headless Chromium (SwiftShader, 2 cores) the batch takes ~78 s, one sentence ~2.7 s.
    #[cfg(not(target_arch = "wasm32"))]
    {
        let reps = 3;
        let t0 = now_ms();
        for _ in 0..reps {
            m.embed(&gpu, &texts).await.unwrap();
        }
        let t1 = now_ms();
        for _ in 0..reps {
            m.embed_one(&gpu, texts[0]).await.unwrap();
        }
        let t2 = now_ms();
        say!(
            "timing: batch of 5 (padded to {} tokens) {:.1} ms, one sentence ({} tokens) {:.1} ms",
            lens.iter().max().unwrap(),
            (t1 - t0) / f64::from(reps),
            lens[0],
            (t2 - t1) / f64::from(reps)
        );
    }
    // Empty input, and an error (not a panic) for an empty token sequence.
    assert!(m.embed(&gpu, &[]).await.unwrap().is_empty());
    let mut b = gpu.batch();
    assert!(matches!(
        m.record(&gpu, &mut b, &[vec![]]),
        Err(kjarni_web::Error::BadInput { .. })
    ));
});
