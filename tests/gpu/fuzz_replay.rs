//! Corpus replay (native only): every committed seed and regression input under `fuzz/seeds/`
//! through the harness functions the cargo-fuzz targets call (`kjarni_web::fuzzing`), so CI
//! runs exactly what was fuzzed (fuzz/README.md: commands, execution counts, findings).
//!
//! `cargo test --test gpu -- fuzz_replay::write_fuzz_seeds --ignored` rewrites the generated
//! seeds (the regression inputs `crash-*` / `slow-*` are kept as found).

use kjarni_web::fuzzing;
use kjarni_web::gguf::writer::{sample_file, GgufWriter};
use kjarni_web::gguf::{GgmlType, MetaArray, MetaValue};
use serde_json::{json, Value};
use std::path::PathBuf;

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// Run every seed of `target`; `run` returns the harness outcome where it has one. Seeds named
/// `ok-*` must come out `ok` (they reach the end of the load).
fn replay(target: &str, run: &dyn Fn(&[u8]) -> Option<String>) {
    let t0 = std::time::Instant::now();
    let all = seeds(target);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for (path, bytes) in &all {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(bytes)));
        let Ok(outcome) = r else {
            panic!("{} fails the harness", path.display());
        };
        let name = path.file_name().unwrap().to_string_lossy();
        if let (true, Some(o)) = (name.starts_with("ok-"), &outcome) {
            assert_eq!(o, "ok", "{}", path.display());
        }
        *outcomes.entry(outcome.unwrap_or_else(|| "-".into())).or_default() += 1;
    }
    println!(
        "{target}: {} inputs in {:.2} s: {outcomes:?}",
        all.len(),
        t0.elapsed().as_secs_f64()
    );
}

fn none(f: fn(&[u8])) -> impl Fn(&[u8]) -> Option<String> {
    move |d| {
        f(d);
        None
    }
}

#[test]
fn fuzz_replay_parsers() {
    replay("gguf_header", &none(fuzzing::gguf_header));
    replay("safetensors_header", &none(fuzzing::safetensors_header));
    replay("config_json", &none(fuzzing::config_json));
    replay("shard_index", &|d| Some(fuzzing::shard_index(d)));
    replay("stream_arith", &none(fuzzing::stream_arith));
}

#[test]
fn fuzz_replay_tokenizer() {
    replay("tokenizer", &|d| Some(fuzzing::tokenizer(d)));
}

#[test]
fn fuzz_replay_loads() {
    let gpu = pollster::block_on(crate::common::gpu());
    replay("safetensors_load", &|d| Some(fuzzing::safetensors_load(&gpu, d)));
    replay("gguf_load", &|d| Some(fuzzing::gguf_load(&gpu, d)));
}

// ---------------------------------------------------------------------------------------------
// Seed generation

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(0xFF);
        }
        out.extend_from_slice(p);
    }
    out
}

/// A small safetensors file: every uploaded dtype, a skipped one, an empty tensor, a hole, odd
/// offsets.
fn small_safetensors() -> Vec<u8> {
    let h = json!({
        "__metadata__": {"format": "pt"},
        "a.weight": {"dtype": "F32", "shape": [3, 5], "data_offsets": [0, 60]},
        "b.bias": {"dtype": "F16", "shape": [7], "data_offsets": [60, 74]},
        "c.weight": {"dtype": "BF16", "shape": [4, 3], "data_offsets": [80, 104]},
        "d.weight": {"dtype": "I8", "shape": [5, 3], "data_offsets": [104, 119]},
        "e.ids": {"dtype": "I64", "shape": [2], "data_offsets": [119, 135]},
        "f.empty": {"dtype": "F32", "shape": [0, 4], "data_offsets": [135, 135]},
        "g.weight": {"dtype": "F16", "shape": [6, 2], "data_offsets": [135, 159]},
    });
    let json = serde_json::to_vec(&h).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend((0..159u32).map(|i| (i * 37 % 251) as u8));
    out
}

/// A small GGUF file with q/k tensors (un-permutation), every float type and several block
/// types (dequantised or uploaded as stored).
fn small_gguf() -> Vec<u8> {
    let bytes = |n: usize, k: u32| (0..n as u32).map(|i| (i * k % 251) as u8).collect::<Vec<u8>>();
    // Block bytes chosen so dequantised values stay finite: f16 scales 0x3c00 (1.0).
    let q8 = |blocks: usize| {
        let mut v = Vec::new();
        for b in 0..blocks {
            v.extend_from_slice(&[0x00, 0x3c]);
            v.extend((0..32).map(|i| ((i * 5 + b) % 64) as u8));
        }
        v
    };
    let tokens: Vec<String> = ["<s>", "</s>", "a", "b", "ab"].iter().map(|s| s.to_string()).collect();
    GgufWriter::new()
        .kv("general.architecture", MetaValue::String("llama".into()))
        .kv("llama.embedding_length", MetaValue::U32(32))
        .kv("llama.block_count", MetaValue::U32(1))
        .kv("llama.attention.head_count", MetaValue::U32(2))
        .kv("llama.attention.head_count_kv", MetaValue::U32(1))
        .kv("llama.feed_forward_length", MetaValue::U32(64))
        .kv("llama.context_length", MetaValue::U32(128))
        .kv("tokenizer.ggml.model", MetaValue::String("llama".into()))
        .kv("tokenizer.ggml.tokens", MetaValue::Array(MetaArray::String(tokens)))
        .kv(
            "tokenizer.ggml.scores",
            MetaValue::Array(MetaArray::F32(vec![0.0, 0.0, -1.0, -1.0, -0.5])),
        )
        .kv(
            "tokenizer.ggml.token_type",
            MetaValue::Array(MetaArray::I32(vec![3, 3, 1, 1, 1])),
        )
        .kv("tokenizer.ggml.bos_token_id", MetaValue::U32(0))
        .kv("tokenizer.ggml.eos_token_id", MetaValue::U32(1))
        .kv(
            "tokenizer.chat_template",
            MetaValue::String("{% for m in messages %}{{ m.content }}{% endfor %}".into()),
        )
        .tensor("token_embd.weight", GgmlType::Q8_0, &[32, 5], q8(5))
        .tensor("blk.0.attn_q.weight", GgmlType::F32, &[4, 8], bytes(128, 13))
        .tensor("blk.0.attn_k.weight", GgmlType::F16, &[4, 4], bytes(32, 7))
        .tensor("blk.0.attn_v.weight", GgmlType::BF16, &[4, 4], bytes(32, 11))
        .tensor("blk.0.ffn_up.weight", GgmlType::Q4_0, &[32, 2], bytes(36, 3))
        .tensor("blk.0.ffn_gate.weight", GgmlType::Q4_1, &[32, 2], bytes(40, 5))
        .tensor("blk.0.ffn_down.weight", GgmlType::Q5_0, &[32, 2], bytes(44, 9))
        .tensor("output_norm.weight", GgmlType::F32, &[32], bytes(128, 1))
        .build()
}

/// GPT-2's byte-to-character table as a vocabulary from id `first`.
fn byte_vocab(first: u32) -> serde_json::Map<String, Value> {
    let mut vocab = serde_json::Map::new();
    for (b, ch) in (0u32..).zip(kjarni_web::tokenizer::byte_level_table()) {
        vocab.insert(ch.to_string(), json!(b + first));
    }
    vocab
}

fn added(tokens: &[(u32, &str)]) -> Vec<Value> {
    tokens
        .iter()
        .map(|(i, t)| json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect()
}

fn tokenizer_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut vocab = byte_vocab(3);
    for (t, i) in [
        ("<|im_start|>", 0),
        ("<|im_end|>", 1),
        ("<|endoftext|>", 2),
        ("he", 259),
        ("ll", 260),
        ("hell", 261),
    ] {
        vocab.insert(t.into(), json!(i));
    }
    let bpe = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added(&[(0, "<|im_start|>"), (1, "<|im_end|>"), (2, "<|endoftext|>")]),
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\s+|\\w+|[^\\s\\w]+"}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": [["h", "e"], ["l", "l"], ["he", "ll"]]}
    });
    let qwen_template = include_str!("../fixtures/templates/qwen2.5-instruct.jinja");
    let chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    let cfg = json!({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": chatml});
    let cfg_list = json!({"eos_token": {"content": "<|im_end|>"}, "chat_template": [
        {"name": "default", "template": chatml},
        {"name": "tool_use", "template": "{{ tools | tojson(indent=2) }}{% for m in messages %}{{ m.content | upper }}{% if loop.last %}!{% endif %}{% endfor %}{{ raise_exception('x') if messages|length > 9 }}"}]});
    let wordpiece = json!({
        "version": "1.0", "truncation": {"direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": added(&[(0, "[PAD]"), (1, "[UNK]"), (2, "[CLS]"), (3, "[SEP]")]),
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                  "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hello": 4, "world": 5, "##s": 6, "h": 7, "##ello": 8, ".": 9}}
    });
    let unigram = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added(&[(0, "<unk>"), (1, "</s>")]),
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}, {"type": "Prepend", "prepend": "\u{2581}"}]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true},
        "post_processor": {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}},
        "decoder": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true},
        "model": {"type": "Unigram", "unk_id": 0, "byte_fallback": false,
                  "vocab": [["<unk>", 0.0], ["</s>", 0.0], ["\u{2581}", -2.0], ["\u{2581}hello", -3.0], ["world", -3.5], ["o", -4.0], ["l", -4.0], ["h", -4.0], ["e", -4.0], ["w", -4.0], ["r", -4.0], ["d", -4.0]]}
    });
    let j = |v: &Value| serde_json::to_vec(v).unwrap();
    vec![
        ("bpe-chatml", cat(&[&j(&bpe), &j(&cfg), b"", b"hello world <|im_end|>"])),
        (
            "bpe-qwen-template",
            cat(&[&j(&bpe), &j(&cfg), qwen_template.as_bytes(), b"hell\xc3\xb6"]),
        ),
        ("bpe-template-list", cat(&[&j(&bpe), &j(&cfg_list), b"", b"hi"])),
        (
            "wordpiece",
            cat(&[&j(&wordpiece), b"{\"unk_token\": \"[UNK]\"}", b"", b"Hello worlds."]),
        ),
        (
            "unigram",
            cat(&[
                &j(&unigram),
                b"",
                b"{{ bos_token }}{% for m in messages %}{{ m['content'] ~ eos_token }}{% endfor %}",
                b"hello world",
            ]),
        ),
    ]
}

#[test]
#[ignore]
fn write_fuzz_seeds() {
    // gguf_header: 10 control bytes (claimed size, prefix cut) + the sample file.
    let g = sample_file();
    write("gguf_header", "sample", &cat2(&[0; 10], &g));
    write(
        "gguf_header",
        "sample-cut",
        &cat2(&[0, 0, 0, 0, 0, 0x00, 0x01, 1, 0, 0], &g),
    );
    write("gguf_header", "small", &cat2(&[0; 10], &small_gguf()));

    // safetensors_header: 5 control bytes + the JSON header.
    let s = small_safetensors();
    let n = u64::from_le_bytes(s[..8].try_into().unwrap()) as usize;
    write("safetensors_header", "small", &cat2(&[159, 0, 0, 0, 1], &s[8..8 + n]));
    write("safetensors_header", "small-nolen", &cat2(&[0; 5], &s[8..8 + n]));

    // config_json: the tiny fixtures' configs.
    for m in ["llama3", "qwen3", "gemma3"] {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/tiny/{m}/config.json"));
        write("config_json", &format!("tiny-{m}"), &std::fs::read(p).unwrap());
    }
    write(
        "config_json",
        "generation",
        br#"{"bos_token_id": 1, "eos_token_id": [2, 3], "temperature": 0.7, "top_p": 0.9, "do_sample": true}"#,
    );

    // tokenizer
    for (name, bytes) in tokenizer_seeds() {
        write("tokenizer", &format!("ok-{name}"), &bytes);
    }

    // shard_index: control byte + index + names for check_relative.
    let index = json!({"metadata": {"total_size": 16}, "weight_map": {
        "a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00001-of-00002.safetensors",
        "c.weight": "model-00002-of-00002.safetensors", "d.weight": "sub/model-00002-of-00002.safetensors"}});
    let idx = serde_json::to_vec(&index).unwrap();
    for ctl in [0u8, 1, 2, 4, 8] {
        let names: &[u8] = b"model.safetensors\xffsub/a-b_c.safetensors\xff../x\xff%2e%2e/x\xffa//b";
        let name = if ctl == 0 {
            "ok-index".to_string()
        } else {
            format!("index-{ctl}")
        };
        write("shard_index", &name, &[&[ctl][..], &cat(&[&idx, names])].concat());
    }

    // safetensors_load: 5 control bytes (flags, staging, part limit, piece) + the file.
    let knobs: [(&str, [u8; 5]); 6] = [
        ("ok-plain", [4, 200, 0, 0, 0]),
        ("ok-hidden-len", [1 | 4, 3, 0, 0, 0]),
        ("ok-pieces", [2 | 4, 1, 0, 0, 6]),
        ("ok-split", [4, 2, 32, 0, 0]),
        ("cancel", [8, 0, 0, 0, 1]),
        ("ok-all", [1 | 2 | 4, 5, 48, 0, 2]),
    ];
    for (name, ctl) in knobs {
        write("safetensors_load", name, &cat2(&ctl, &s));
    }
    // gguf_load: same control bytes; the high nibble of the first picks the tokenizer, the dense
    // dtype and the un-permutation (heads).
    let sg = small_gguf();
    let knobs: [(&str, [u8; 5]); 6] = [
        ("ok-plain", [4 | 0x10, 200, 0, 0, 0]),
        ("ok-f16-dense", [4 | 0x20, 3, 0, 0, 0]),
        ("ok-unpermute", [4 | 0x80 | 0x10, 8, 0, 0, 0]),
        ("ok-split-pieces", [2 | 4 | 0x40, 1, 160, 0, 5]),
        ("ok-hidden-len", [1 | 4, 200, 0, 0, 0]),
        ("cancel", [8, 0, 0, 0, 0]),
    ];
    for (name, ctl) in knobs {
        write("gguf_load", name, &cat2(&ctl, &sg));
    }
    write("gguf_load", "ok-sample", &cat2(&[4 | 0x10, 200, 0, 0, 0], &g));

    // stream_arith: values near 2^32 multiples (9 bytes each: kind, offset, shift, base).
    let mut v = Vec::new();
    for (k, x) in [
        (1u8, 1u8),
        (1, 2),
        (2, 1),
        (3, 4),
        (6, 0),
        (1, 3),
        (0, 0),
        (2, 3),
        (1, 1),
        (0, 0),
        (1, 0),
        (1, 0),
        (0, 0),
    ] {
        v.extend_from_slice(&[k, 3, 0, 0, 0, 0, x, 0, 0]);
    }
    write("stream_arith", "near-2-32", &v);
    write("stream_arith", "zeros", &[0u8; 117]);
}

fn cat2(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}
