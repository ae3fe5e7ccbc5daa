//! Loading: safetensors streamed into GPU buffers (real models and synthetic files), header
//! validation, row-block splitting, sharded checkpoints, cancellation, config.json.

use crate::common::gpu;
use crate::models::{model, MINILM, SMOLLM2};
use kjarni_web::load::{
    load_safetensors, load_weights, read_header, ByteSource, CancelFlag, DecoderArch, GenerationConfig, Header,
    LoadOptions, MemorySource, ModelConfig, Progress, Weight, Weights,
};
use kjarni_web::{DType, Error, Gpu, GpuTensor};
use std::cell::RefCell;

/// Bytes of wasm linear memory (0 natively).
pub(crate) fn wasm_heap_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsCast;
        let memory = wasm_bindgen::memory().unchecked_into::<js_sys::WebAssembly::Memory>();
        memory.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as u64
    }
    #[cfg(not(target_arch = "wasm32"))]
    0
}

/// A safetensors file from a raw JSON header and the data section.
fn st_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

/// Header JSON for `(name, dtype, shape, begin, end)` entries.
fn st_header(entries: &[(&str, &str, &[usize], u64, u64)]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|(n, d, s, b, e)| format!(r#""{n}":{{"dtype":"{d}","shape":{s:?},"data_offsets":[{b},{e}]}}"#))
        .collect();
    format!("{{{}}}", items.join(","))
}

fn memory(files: &[(&str, Vec<u8>)]) -> MemorySource {
    let mut m = MemorySource::new();
    for (n, b) in files {
        m.insert(n, b.clone());
    }
    m
}

/// Bytes `off..off+len` of a GPU buffer (any alignment: widened to whole words).
async fn gpu_bytes(gpu: &Gpu, t: &GpuTensor, off: usize, len: usize) -> Vec<u8> {
    let a = off / 4 * 4;
    let b = (off + len).div_ceil(4) * 4;
    let bytes = gpu
        .read_buffer(t.buffer(), a as u64, (b - a) as u64, t.name())
        .await
        .unwrap();
    bytes[off - a..off - a + len].to_vec()
}

/// Compare windows (start, middle, end) of every listed tensor with the file's own bytes.
async fn spot_check<S: ByteSource>(gpu: &Gpu, src: &S, file: &str, header: &Header, w: &Weights, names: &[&str]) {
    for &name in names {
        let info = header.get(name).unwrap_or_else(|| panic!("{name} not in header"));
        let t = w.get(name).unwrap();
        let len = info.len() as usize;
        for off in [0, len / 2 + 3, len.saturating_sub(37)] {
            let n = 37.min(len - off);
            let at = header.data_start() + info.start + off as u64;
            let (want, _) = src.read_range(file, at, at + n as u64).await.unwrap();
            assert_eq!(gpu_bytes(gpu, t, off, n).await, want, "{name} bytes {off}..{}", off + n);
        }
    }
}

/// One progress report: (file index, file done, file total, done, total).
type Report = (usize, u64, u64, u64, u64);

/// Progress reports, checked for monotonic totals.
fn progress_log(log: &RefCell<Vec<Report>>) -> impl FnMut(&Progress) + '_ {
    move |p: &Progress| {
        log.borrow_mut()
            .push((p.file_index, p.file_done, p.file_total, p.done, p.total))
    }
}

fn check_progress(log: &[Report], total: u64) {
    assert!(!log.is_empty(), "no progress reported");
    for w in log.windows(2) {
        assert!(w[1].3 > w[0].3, "progress must grow: {:?} then {:?}", w[0], w[1]);
    }
    let last = log[log.len() - 1];
    assert_eq!((last.3, last.4), (total, total), "final progress");
}

gpu_test!(minilm_streams_into_gpu_tensors, async {
    let gpu = gpu().await;
    let src = model(MINILM).await;
    let header = read_header(&src, "model.safetensors").await.unwrap();
    assert_eq!(header.tensors.len(), 104);
    assert_eq!(header.metadata.get("format").map(String::as_str), Some("pt"));
    let log = RefCell::new(Vec::new());
    let opts = LoadOptions {
        staging_bytes: 1 << 20,
        ..LoadOptions::default()
    };
    let w = load_weights(&gpu, &src, &opts, &mut progress_log(&log)).await.unwrap();
    check_progress(&log.borrow(), header.data_len());
    assert_eq!(w.len(), 103);
    // I64 position ids are not uploaded, and asking for them says why.
    assert_eq!(
        w.skipped().get("embeddings.position_ids").map(String::as_str),
        Some("I64")
    );
    let e = w.get("embeddings.position_ids").unwrap_err();
    assert!(e.to_string().contains("I64"), "{e}");
    assert!(w
        .get("lm_head.weight")
        .unwrap_err()
        .to_string()
        .contains("not in the checkpoint"));
    for (name, shape) in [
        ("embeddings.word_embeddings.weight", vec![30522, 384]),
        ("embeddings.position_embeddings.weight", vec![512, 384]),
        ("embeddings.token_type_embeddings.weight", vec![2, 384]),
        ("encoder.layer.0.attention.self.query.weight", vec![384, 384]),
        ("encoder.layer.5.intermediate.dense.weight", vec![1536, 384]),
        ("encoder.layer.5.output.LayerNorm.bias", vec![384]),
        ("pooler.dense.weight", vec![384, 384]),
    ] {
        let t = w.get(name).unwrap();
        assert_eq!((t.shape(), t.dtype()), (&shape[..], DType::F32), "{name}");
    }
    assert_eq!(w.names().filter(|n| n.starts_with("encoder.layer.")).count(), 6 * 16);
    spot_check(
        &gpu,
        &src,
        "model.safetensors",
        &header,
        &w,
        &[
            "embeddings.word_embeddings.weight",
            "embeddings.LayerNorm.weight",
            "encoder.layer.3.output.dense.bias",
            "pooler.dense.weight",
        ],
    )
    .await;
    // Values, not just bytes: the LayerNorm weight read back as f32 equals the file's floats.
    let info = header.get("embeddings.LayerNorm.weight").unwrap();
    let at = header.data_start() + info.start;
    let (raw, _) = src.read_range("model.safetensors", at, at + info.len()).await.unwrap();
    let want: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(
        w.get("embeddings.LayerNorm.weight")
            .unwrap()
            .to_f32_vec(&gpu)
            .await
            .unwrap(),
        want
    );
    assert!(
        want.iter().any(|&v| v != 0.0 && v != 1.0),
        "LayerNorm weights look trained"
    );

    let ModelConfig::Bert(c) = ModelConfig::load(&src).await.unwrap() else {
        panic!("MiniLM is a BERT")
    };
    assert_eq!(
        (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.vocab_size),
        (384, 6, 12, 30522)
    );
    assert_eq!((c.hidden_act.as_str(), c.layer_norm_eps), ("gelu", 1e-12));
});

gpu_test!(smollm2_streams_into_gpu_tensors, async {
    let gpu = gpu().await;
    let src = model(SMOLLM2).await;
    let header = read_header(&src, "model.safetensors").await.unwrap();
    let before = gpu.memory();
    let heap_before = wasm_heap_bytes();
    let log = RefCell::new(Vec::new());
    let w = load_weights(&gpu, &src, &LoadOptions::default(), &mut progress_log(&log))
        .await
        .unwrap();
    check_progress(&log.borrow(), header.data_len());
    // The 269 MB file streamed through one 8 MiB staging buffer: the wasm heap (which never
    // shrinks) grew by far less than the file.
    let grown = wasm_heap_bytes() - heap_before;
    say!(
        "wasm heap grew by {} KiB while loading {} MB",
        grown / 1024,
        header.data_len() / 1_000_000
    );
    assert!(grown < 32 << 20, "wasm heap grew by {grown} bytes");
    assert_eq!(w.len(), 272);
    assert!(w.iter().all(|(_, t)| t.dtype() == DType::BF16));
    assert!(!w.contains("lm_head.weight"), "SmolLM2 ties lm_head to the embeddings");
    let bytes: u64 = header.tensors.iter().map(|t| t.len().div_ceil(4) * 4).sum();
    assert_eq!(
        gpu.memory().live_bytes - before.live_bytes,
        bytes,
        "GPU bytes = tensor bytes (word-padded)"
    );
    assert_eq!(w.get("model.embed_tokens.weight").unwrap().shape(), &[49152, 576]);
    assert_eq!(w.get("model.norm.weight").unwrap().shape(), &[576]);
    for l in 0..30 {
        let p = format!("model.layers.{l}.");
        assert_eq!(w.names().filter(|n| n.starts_with(&p)).count(), 9, "layer {l}");
        assert_eq!(
            w.get(&format!("{p}self_attn.k_proj.weight")).unwrap().shape(),
            &[192, 576]
        );
        assert_eq!(
            w.get(&format!("{p}mlp.gate_proj.weight")).unwrap().shape(),
            &[1536, 576]
        );
    }
    spot_check(
        &gpu,
        &src,
        "model.safetensors",
        &header,
        &w,
        &[
            "model.embed_tokens.weight",
            "model.layers.0.input_layernorm.weight",
            "model.layers.29.mlp.down_proj.weight",
            "model.norm.weight",
        ],
    )
    .await;
    // bf16 → f32 widening of a norm weight matches the file's words.
    let info = header.get("model.norm.weight").unwrap();
    let at = header.data_start() + info.start;
    let (raw, _) = src.read_range("model.safetensors", at, at + info.len()).await.unwrap();
    let want: Vec<f32> = raw
        .chunks_exact(2)
        .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
        .collect();
    assert_eq!(
        w.get("model.norm.weight").unwrap().to_f32_vec(&gpu).await.unwrap(),
        want
    );

    let ModelConfig::Decoder(c) = ModelConfig::load(&src).await.unwrap() else {
        panic!("SmolLM2 is a decoder")
    };
    assert_eq!(c.arch, DecoderArch::Llama);
    assert_eq!(
        (c.num_hidden_layers, c.hidden_size, c.intermediate_size),
        (30, 576, 1536)
    );
    assert_eq!((c.num_attention_heads, c.num_key_value_heads, c.head_dim), (9, 3, 64));
    assert_eq!(c.rope_theta, 100000.0, "rope_parameters.rope_theta (transformers 5)");
    assert!((c.rms_norm_eps - 1e-5).abs() < 1e-9);
    assert!(c.tie_word_embeddings && !c.qkv_bias);
    assert_eq!(
        (c.dtype.as_deref(), c.vocab_size, c.eos_token_ids.clone()),
        (Some("bfloat16"), 49152, vec![2])
    );
    let g = GenerationConfig::load(&src).await.unwrap();
    assert_eq!((g.bos_token_id, g.eos_token_ids), (Some(1), vec![2]));
});

gpu_test!(oversized_tensors_load_as_row_blocks, async {
    let gpu = gpu().await;
    let src = model(MINILM).await;
    let header = read_header(&src, "model.safetensors").await.unwrap();
    // An 8 MiB binding limit: the 46.9 MB word embeddings become 6 blocks of 5461 rows.
    let opts = LoadOptions {
        max_part_bytes: Some(8 << 20),
        ..LoadOptions::default()
    };
    let w = load_safetensors(&gpu, &src, "model.safetensors", &opts, &mut |_| {})
        .await
        .unwrap();
    let name = "embeddings.word_embeddings.weight";
    let Weight::Split(s) = w.weight(name).unwrap() else {
        panic!("{name} should be split")
    };
    assert_eq!((s.rows_per_part, s.parts.len(), s.dtype), (5461, 6, DType::F32));
    assert_eq!(s.shape, vec![30522, 384]);
    assert_eq!(s.parts[0].shape(), &[5461, 384]);
    assert_eq!(s.parts[5].shape(), &[30522 - 5 * 5461, 384]);
    assert!(w.get(name).unwrap_err().to_string().contains("row blocks"));
    // Smaller tensors stay whole.
    assert!(matches!(
        w.weight("embeddings.position_embeddings.weight").unwrap(),
        Weight::Whole(_)
    ));
    // Rows straddling the block edges hold the file's bytes.
    let info = header.get(name).unwrap();
    let row = 384 * 4;
    for (part, r) in [(0usize, 5460usize), (1, 5461), (3, 3 * 5461 + 17), (5, 30521)] {
        let at = header.data_start() + info.start + (r * row) as u64;
        let (want, _) = src.read_range("model.safetensors", at, at + row as u64).await.unwrap();
        let local = r - part * 5461;
        assert_eq!(gpu_bytes(&gpu, &s.parts[part], local * row, row).await, want, "row {r}");
    }
});

gpu_test!(odd_offsets_and_tiny_chunks_round_trip, async {
    let gpu = gpu().await;
    // Tensors at every byte alignment, a hole, a scalar and an empty tensor; 3-byte network
    // pieces and an 8-byte staging buffer force every carry path.
    let entries: &[(&str, &str, &[usize], u64, u64)] = &[
        ("a", "I8", &[3], 0, 3),
        ("b", "F16", &[5], 3, 13),
        ("c", "BF16", &[3, 3], 16, 34),
        ("d", "F32", &[7], 34, 62),
        ("e", "I8", &[1], 62, 63),
        ("f", "F16", &[], 63, 65),
        ("z", "F32", &[0, 4], 65, 65),
    ];
    let data: Vec<u8> = (0..65u32).map(|i| (i * 37 + 11) as u8).collect();
    let file = st_bytes(&st_header(entries), &data);
    for (piece, staging) in [(3, 8), (1, 4), (64, 12), (1000, 16 << 20)] {
        let src = memory(&[("m.safetensors", file.clone())]).with_piece_size(piece);
        let opts = LoadOptions {
            staging_bytes: staging,
            ..LoadOptions::default()
        };
        let w = load_safetensors(&gpu, &src, "m.safetensors", &opts, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(w.len(), 7);
        for (name, dtype, shape, b, e) in entries {
            let t = w.get(name).unwrap();
            assert_eq!(t.shape(), *shape);
            assert_eq!(t.dtype().name().to_uppercase(), dtype.to_string());
            assert_eq!(
                t.read_bytes(&gpu).await.unwrap(),
                data[*b as usize..*e as usize],
                "{name}, piece {piece}, staging {staging}"
            );
        }
    }
});

gpu_test!(row_blocks_of_synthetic_tensors, async {
    let gpu = gpu().await;
    let entries: &[(&str, &str, &[usize], u64, u64)] = &[
        ("w", "F32", &[10, 3], 0, 120),
        ("q", "I8", &[7, 5], 121, 156),
        ("s", "F32", &[2, 2], 156, 172),
    ];
    let data: Vec<u8> = (0..172u32).map(|i| (i * 13 + 5) as u8).collect();
    let src = memory(&[("m.safetensors", st_bytes(&st_header(entries), &data))]).with_piece_size(5);
    let opts = LoadOptions {
        max_part_bytes: Some(16),
        staging_bytes: 8,
        ..LoadOptions::default()
    };
    let w = load_safetensors(&gpu, &src, "m.safetensors", &opts, &mut |_| {})
        .await
        .unwrap();
    // w: 12-byte rows, one per 16-byte part; q: 5-byte rows, 3 per part (15 bytes, padded 16).
    let Weight::Split(sw) = w.weight("w").unwrap() else {
        panic!("w should be split")
    };
    assert_eq!((sw.rows_per_part, sw.parts.len()), (1, 10));
    for (k, p) in sw.parts.iter().enumerate() {
        assert_eq!(
            p.read_bytes(&gpu).await.unwrap(),
            data[k * 12..k * 12 + 12],
            "w part {k}"
        );
    }
    let Weight::Split(sq) = w.weight("q").unwrap() else {
        panic!("q should be split")
    };
    assert_eq!((sq.rows_per_part, sq.parts.len()), (3, 3));
    assert_eq!(sq.parts[2].shape(), &[1, 5]);
    for (k, p) in sq.parts.iter().enumerate() {
        let a = 121 + k * 15;
        let b = (a + 15).min(156);
        assert_eq!(p.read_bytes(&gpu).await.unwrap(), data[a..b], "q part {k}");
    }
    assert_eq!(w.get("s").unwrap().read_bytes(&gpu).await.unwrap(), data[156..172]);
    // A file of empty tensors only: nothing to stream, still loads.
    let src0 = memory(&[("e.safetensors", st_bytes(&st_header(&[("e", "F32", &[0], 0, 0)]), &[]))]);
    let w0 = load_safetensors(&gpu, &src0, "e.safetensors", &LoadOptions::default(), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(w0.get("e").unwrap().shape(), &[0]);
    // A single row over the limit cannot be split: a Limit error naming the tensor.
    let opts = LoadOptions {
        max_part_bytes: Some(8),
        ..LoadOptions::default()
    };
    let e = load_safetensors(&gpu, &src, "m.safetensors", &opts, &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Limit { context, .. } if context.contains("'w'")),
        "{e}"
    );
});

/// Expect a `BadModelFile` error for `file` whose detail contains `needle`.
fn expect_bad<T: std::fmt::Debug>(r: Result<T, Error>, needle: &str) {
    match r {
        Err(Error::BadModelFile { file, detail }) => {
            assert!(file.ends_with("bad.safetensors"), "error names the file: {file}");
            assert!(detail.contains(needle), "expected '{needle}' in: {detail}");
        }
        other => panic!("expected BadModelFile containing '{needle}', got {other:?}"),
    }
}

gpu_test!(malformed_headers_give_typed_errors, async {
    let ok = r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![1, 2, 3], "shorter than the 8-byte"),
        (st_bytes(ok, &[0; 8])[..8].to_vec(), "runs past the end"),
        (
            {
                let mut f = st_bytes(ok, &[0; 8]);
                f[..8].copy_from_slice(&1000u64.to_le_bytes());
                f
            },
            "runs past the end",
        ),
        (
            {
                let mut f = st_bytes(ok, &[0; 8]);
                f[..8].copy_from_slice(&u64::MAX.to_le_bytes());
                f
            },
            "over the",
        ),
        (st_bytes("[1,2]", &[]), "not a JSON object"),
        (st_bytes("{\"x\": ", &[]), "not a JSON object"),
        (st_bytes("\u{0}\u{0}", &[]), "not a JSON object"),
        (
            {
                let mut f = st_bytes("{}  ", &[]);
                f[9] = 0xff;
                f
            },
            "not UTF-8",
        ),
        (st_bytes(r#"{"x":{"dtype":"F32","shape":[2]}}"#, &[0; 8]), "tensor 'x'"),
        (
            st_bytes(r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, &[0; 4]),
            "run past the end of the data section",
        ),
        (
            st_bytes(r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, &[0; 8]),
            "end before they begin",
        ),
        (
            st_bytes(r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}}"#, &[0; 9]),
            "[begin, end]",
        ),
        (
            st_bytes(r#"{"x":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}}"#, &[0; 8]),
            "unknown dtype 'F17'",
        ),
        (
            st_bytes(r#"{"x":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#, &[0; 24]),
            "needs 24 bytes",
        ),
        (
            st_bytes(
                r#"{"x":{"dtype":"BF16","shape":[4294967295,4294967295,4294967295],"data_offsets":[0,8]}}"#,
                &[0; 8],
            ),
            "overflows",
        ),
        (
            st_bytes(
                st_header(&[("p", "F32", &[2], 0, 8), ("q", "F16", &[2], 6, 10)]).as_str(),
                &[0; 10],
            ),
            "'p' [0, 8] and 'q' [6, 10] overlap",
        ),
        (
            st_bytes(
                r#"{"x":{"dtype":"I8","shape":[1],"data_offsets":[0,1]},"x":{"dtype":"I8","shape":[1],"data_offsets":[1,2]}}"#,
                &[0; 2],
            ),
            "appears twice",
        ),
        (
            st_bytes(
                r#"{"__metadata__":[1],"x":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}}"#,
                &[0; 1],
            ),
            "__metadata__",
        ),
    ];
    for (i, (bytes, needle)) in cases.into_iter().enumerate() {
        let src = memory(&[("bad.safetensors", bytes)]);
        let r = read_header(&src, "bad.safetensors").await;
        assert!(r.is_err(), "case {i} ({needle}) parsed: {r:?}");
        expect_bad(r, needle);
    }
    // A good header with every dtype the format names (unsupported ones are skipped on load).
    let h = st_header(&[
        ("a", "I64", &[1], 0, 8),
        ("b", "U8", &[3], 8, 11),
        ("c", "F64", &[0], 11, 11),
        ("d", "BOOL", &[1], 11, 12),
    ]);
    let src = memory(&[("bad.safetensors", st_bytes(&h, &[0; 12]))]);
    let header = read_header(&src, "bad.safetensors").await.unwrap();
    assert_eq!(header.tensors.iter().filter(|t| t.dtype.is_none()).count(), 4);
    // A missing file is NotFound, not a format error.
    assert!(matches!(
        read_header(&src, "nope.safetensors").await,
        Err(Error::NotFound { .. })
    ));
});

gpu_test!(truncated_stream_names_the_tensor, async {
    let gpu = gpu().await;
    let before = gpu.memory();
    // The source hides the file length (no Content-Length), so only streaming finds the end.
    let h = st_header(&[("first", "F32", &[4], 0, 16), ("second", "F32", &[4], 16, 32)]);
    let src = memory(&[("bad.safetensors", st_bytes(&h, &[7; 20]))]).with_hidden_len();
    let r = load_safetensors(&gpu, &src, "bad.safetensors", &LoadOptions::default(), &mut |_| {}).await;
    expect_bad(r, "inside tensor 'second'");
    let after = gpu.memory();
    assert_eq!(
        (after.live_buffers, after.live_bytes),
        (before.live_buffers, before.live_bytes),
        "buffers freed"
    );
});

gpu_test!(cancel_frees_what_was_allocated, async {
    let gpu = gpu().await;
    let src = model(MINILM).await;
    let before = gpu.memory();
    let cancel = CancelFlag::new();
    let opts = LoadOptions {
        cancel: Some(cancel.clone()),
        staging_bytes: 1 << 20,
        ..LoadOptions::default()
    };
    let mut reports = 0;
    let r = load_weights(&gpu, &src, &opts, &mut |p: &Progress| {
        reports += 1;
        if p.done > 10 << 20 {
            cancel.cancel();
        }
    })
    .await;
    assert!(
        matches!(&r, Err(Error::Cancelled(m)) if m.contains("model.safetensors")),
        "{r:?}"
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
        after.peak_bytes > before.live_bytes + (40 << 20),
        "buffers were allocated up front"
    );
});

gpu_test!(sharded_checkpoints_follow_the_index, async {
    let gpu = gpu().await;
    let d1: Vec<u8> = (0..24u8).collect();
    let d2: Vec<u8> = (100..106u8).collect();
    let s1 = st_bytes(
        &st_header(&[("a", "F32", &[2, 2], 0, 16), ("b", "BF16", &[4], 16, 24)]),
        &d1,
    );
    let s2 = st_bytes(&st_header(&[("c", "F16", &[3], 0, 6)]), &d2);
    let index = r#"{"metadata":{"total_size":30},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}}"#;
    let files = [
        ("model.safetensors.index.json", index.as_bytes().to_vec()),
        ("model-00001-of-00002.safetensors", s1.clone()),
        ("model-00002-of-00002.safetensors", s2.clone()),
    ];
    let src = memory(&files);
    let log = RefCell::new(Vec::new());
    let w = load_weights(&gpu, &src, &LoadOptions::default(), &mut progress_log(&log))
        .await
        .unwrap();
    check_progress(&log.borrow(), 30);
    assert_eq!(log.borrow().iter().map(|p| p.0).max(), Some(1), "two files reported");
    assert_eq!(w.names().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    assert_eq!(w.get("b").unwrap().read_bytes(&gpu).await.unwrap(), d1[16..24]);
    assert_eq!(w.get("c").unwrap().read_bytes(&gpu).await.unwrap(), d2);

    let bad_index = |map: &str| {
        let mut f = files.clone();
        f[0].1 = format!(r#"{{"weight_map":{map}}}"#).into_bytes();
        memory(&f)
    };
    let check = |r: Result<Weights, Error>, needle: &str| match r {
        Err(Error::BadModelFile { file, detail }) if detail.contains(needle) => {
            assert!(
                file.contains("model.safetensors.index.json") || file.contains("evil"),
                "{file}"
            )
        }
        other => panic!("expected BadModelFile with '{needle}', got {other:?}"),
    };
    let src = bad_index(r#"{"a":"model-00002-of-00002.safetensors"}"#);
    check(
        load_weights(&gpu, &src, &LoadOptions::default(), &mut |_| {}).await,
        "is indexed in model-00002",
    );
    let src = bad_index(r#"{"zz":"model-00001-of-00002.safetensors"}"#);
    check(
        load_weights(&gpu, &src, &LoadOptions::default(), &mut |_| {}).await,
        "that file lacks it",
    );
    let src = bad_index(r#"{"a":"../evil.safetensors"}"#);
    check(
        load_weights(&gpu, &src, &LoadOptions::default(), &mut |_| {}).await,
        "inside the model directory",
    );
    let mut f = files.clone();
    f[2].1 = st_bytes(&st_header(&[("a", "F16", &[3], 0, 6)]), &d2);
    let src = memory(&f);
    check(
        load_weights(&gpu, &src, &LoadOptions::default(), &mut |_| {}).await,
        "'a' is in both",
    );
    // A shard listed in the index but absent.
    let src = memory(&files[..2]);
    assert!(matches!(
        load_weights(&gpu, &src, &LoadOptions::default(), &mut |_| {}).await,
        Err(Error::NotFound { .. })
    ));
});

/// Natively, the header parse agrees with the `safetensors` crate on both real files.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn headers_agree_with_the_safetensors_crate() {
    pollster::block_on(async {
        for (name, count) in [(MINILM, 104), (SMOLLM2, 272)] {
            let src = model(name).await;
            let ours = read_header(&src, "model.safetensors").await.unwrap();
            let bytes = std::fs::read(src.root().join("model.safetensors")).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            assert_eq!(st.len(), count);
            assert_eq!(ours.tensors.len(), count);
            for t in &ours.tensors {
                let view = st.tensor(&t.name).unwrap();
                assert_eq!(view.shape(), &t.shape[..], "{}", t.name);
                assert_eq!(format!("{:?}", view.dtype()), t.dtype_name, "{}", t.name);
                let at = (ours.data_start() + t.start) as usize;
                assert_eq!(view.data(), &bytes[at..at + t.len() as usize], "{}", t.name);
            }
        }
    });
}
