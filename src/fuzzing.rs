//! Fuzz harness bodies (feature `fuzzing`, native only; not part of the API). The cargo-fuzz
//! targets in `fuzz/fuzz_targets/` are one-line wrappers around these functions, and the corpus
//! replay test (`tests/gpu/fuzz_replay.rs`) runs the committed seed corpora through the same
//! functions, so CI exercises exactly what was fuzzed.
//!
//! Every harness takes arbitrary bytes and panics only when the library misbehaves: a panic
//! inside the library, an error kind the entry point must not return, or a result that breaks
//! a checked invariant (the fuzzer reports the panic as a crash).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::error::Error;
use crate::gguf::{self, Parsed};
use crate::gpu::{DType, Gpu, GpuTensor};
use crate::load::estimate::{estimate, DeviceLimits, EstimateOptions};
use crate::load::gguf::{self as gguf_load, TensorPlan};
use crate::load::safetensors::{self as st, ShardIndex, TensorInfo, Weight};
use crate::load::source::{check_relative, ByteSource, MemorySource, RangeReader};
use crate::load::stream::{staging_cap, DataStream};
use crate::load::{self, GenerationConfig, LoadOptions, ModelConfig, Progress};
use crate::tokenizer::{ChatMessage, Tokenizer, MAX_RENDER_BYTES};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

/// Run a future whose awaits resolve without a reactor (memory sources; native wgpu resolves
/// its error scopes and readbacks synchronously).
pub fn block_on<F: Future>(f: F) -> F::Output {
    fn noop_raw() -> RawWaker {
        fn clone(_: *const ()) -> RawWaker {
            noop_raw()
        }
        fn noop(_: *const ()) {}
        static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    // SAFETY: the vtable's functions ignore the (null) data pointer.
    let waker = unsafe { Waker::from_raw(noop_raw()) };
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// What a harness run came to: `ok`, `skipped` or the error variant's name (the replay test
/// checks that the seeds reach the end).
pub type Outcome = String;

fn kind(e: &Error) -> Outcome {
    format!("{e:?}")
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_string()
}

/// Split at 0xFF bytes (never part of UTF-8 text or JSON): one input carries several files.
fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    data.splitn(n, |&b| b == 0xFF).collect()
}

/// Loader options and source shape taken from 5 control bytes.
struct Knobs {
    hide_len: bool,
    piece: Option<usize>,
    readback: bool,
    cancel_after: Option<u8>,
    staging: usize,
    max_part: Option<u64>,
    bits: u8,
}

impl Knobs {
    fn new(ctl: &[u8]) -> Knobs {
        let staging = match ctl[1] {
            s @ 0..=127 => 4 * (usize::from(s) + 1) + usize::from(s & 3),
            s => 1usize << (s % 25),
        };
        let max_part = u16::from_le_bytes([ctl[2], ctl[3]]);
        Knobs {
            hide_len: ctl[0] & 1 != 0,
            piece: (ctl[0] & 2 != 0).then_some(usize::from(ctl[4]) + 1),
            readback: ctl[0] & 4 != 0,
            cancel_after: (ctl[0] & 8 != 0).then_some(ctl[4] % 8),
            staging,
            max_part: (max_part != 0).then_some(u64::from(max_part)),
            bits: ctl[0] >> 4,
        }
    }

    fn source(&self, files: &[(&str, &[u8])]) -> MemorySource {
        let mut m = MemorySource::new();
        for (name, bytes) in files {
            m.insert(name, bytes.to_vec());
        }
        if self.hide_len {
            m = m.with_hidden_len();
        }
        if let Some(p) = self.piece {
            m = m.with_piece_size(p);
        }
        m
    }

    fn options(&self) -> LoadOptions {
        LoadOptions {
            staging_bytes: self.staging,
            max_part_bytes: self.max_part,
            cancel: self.cancel_after.map(|_| load::CancelFlag::new()),
        }
    }
}

/// Checks the progress reports of one load: per file monotone, totals consistent, every file
/// ends with a report of its whole length; cancels after `cancel_after` reports.
struct ProgressCheck {
    reports: usize,
    last_done: u64,
    ended: Vec<(usize, u64, u64)>,
    cancel_after: Option<(u8, load::CancelFlag)>,
}

impl ProgressCheck {
    fn new(opts: &LoadOptions, knobs: &Knobs) -> Self {
        ProgressCheck {
            reports: 0,
            last_done: 0,
            ended: Vec::new(),
            cancel_after: knobs.cancel_after.zip(opts.cancel.clone()),
        }
    }

    fn see(&mut self, p: &Progress) {
        assert!(p.file_done <= p.file_total, "{p:?}");
        assert!(p.done <= p.total, "{p:?}");
        assert!(p.done >= self.last_done, "progress went back: {p:?}");
        assert!(p.file_index < p.file_count, "{p:?}");
        self.last_done = p.done;
        self.reports += 1;
        if p.file_done == p.file_total {
            self.ended.push((p.file_index, p.file_done, p.done));
        }
        if let Some((n, flag)) = &self.cancel_after {
            if self.reports > usize::from(*n) {
                flag.cancel();
            }
        }
    }
}

/// A device shared by all runs of one fuzzing process (creating one per input is far too slow).
pub fn shared_gpu() -> Option<&'static Gpu> {
    static GPU: std::sync::OnceLock<Option<Gpu>> = std::sync::OnceLock::new();
    GPU.get_or_init(|| block_on(Gpu::new()).ok()).as_ref()
}

// ---------------------------------------------------------------------------------------------
// The parsers (the first three targets)

/// GGUF header parser: the first 10 bytes steer the claimed file size and the prefix cut.
pub fn gguf_header(data: &[u8]) {
    if data.len() < 10 {
        return;
    }
    let (ctl, file) = data.split_at(10);
    let extra = u64::from(u32::from_le_bytes([ctl[0], ctl[1], ctl[2], ctl[3]]));
    let size = if ctl[4] & 1 == 1 {
        u64::MAX
    } else {
        file.len() as u64 + extra
    };
    let cut = usize::from(u16::from_le_bytes([ctl[5], ctl[6]])).min(file.len());
    let prefix = if ctl[7] & 1 == 1 { &file[..cut] } else { file };
    match gguf::parse_header("fuzz.gguf", prefix, size) {
        Ok(Parsed::Header(h)) => {
            for t in &h.tensors {
                assert!(t.offset + t.size <= size);
            }
            let _ = (h.hparams(), h.tokenizer(), h.rope_layout());
        }
        Ok(Parsed::NeedMore { bytes }) => assert!(bytes > prefix.len() as u64 && bytes <= size),
        Err(Error::BadModelFile { .. }) => {}
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

/// safetensors header parser: the first 5 bytes give the claimed data-section length (or none).
pub fn safetensors_header(data: &[u8]) {
    if data.len() < 5 {
        return;
    }
    let (ctl, json) = data.split_at(5);
    let len = (ctl[4] & 1 == 1).then(|| u64::from(u32::from_le_bytes([ctl[0], ctl[1], ctl[2], ctl[3]])));
    match st::parse_header("fuzz.safetensors", json, len) {
        Ok(h) => {
            assert_eq!(h.header_len, json.len() as u64);
            let mut last_end = 0u64;
            for t in &h.tensors {
                assert!(t.start <= t.end);
                if let Some(l) = len {
                    assert!(t.end <= l);
                }
                if !t.is_empty() {
                    assert!(t.start >= last_end, "overlap at {}", t.name);
                    last_end = t.end;
                }
                let _ = t.numel();
            }
            let _ = (h.data_len(), h.data_start());
        }
        Err(Error::BadModelFile { .. }) => {}
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

/// config.json / generation_config.json parsers and the memory estimate built on them.
pub fn config_json(data: &[u8]) {
    match GenerationConfig::parse("generation_config.json", data) {
        Ok(_) | Err(Error::BadModelFile { .. }) => {}
        Err(e) => panic!("unexpected error kind: {e}"),
    }
    match ModelConfig::parse("config.json", data) {
        Ok(cfg) => {
            let limits = DeviceLimits {
                max_buffer_size: 1 << 28,
                max_storage_binding: 1 << 27,
                budget: Some(1 << 30),
            };
            let opts = EstimateOptions {
                max_context: 4096,
                prefill_tokens: Some(512),
                ..Default::default()
            };
            match estimate(&cfg, &[], &opts, &limits) {
                Ok(_) | Err(Error::ModelTooLarge { .. }) | Err(Error::BadModelFile { .. }) => {}
                Err(e) => panic!("unexpected estimate error kind: {e}"),
            }
        }
        Err(Error::BadModelFile { .. }) => {}
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tokenizer + chat template

/// `tokenizer.json` 0xFF `tokenizer_config.json` 0xFF `chat_template.jinja` 0xFF text, each
/// optional after the first; loaded through a [`MemorySource`] as [`Tokenizer::load`] does
/// (the size checks, [`crate::tokenizer::check_tokenizer_json`], `tokenizers`, template
/// compilation), then every template rendered with a chat built from the text (fuel and output
/// cap), the rendering encoded and decoded.
pub fn tokenizer(data: &[u8]) -> Outcome {
    let p = parts(data, 4);
    let mut src = MemorySource::new();
    src.insert("tokenizer.json", p[0].to_vec());
    if let Some(c) = p.get(1).filter(|c| !c.is_empty()) {
        src.insert("tokenizer_config.json", c.to_vec());
    }
    if let Some(t) = p.get(2).filter(|t| !t.is_empty()) {
        src.insert("chat_template.jinja", t.to_vec());
    }
    let text = String::from_utf8_lossy(p.get(3).copied().unwrap_or(b"hello <|im_end|> world"));
    let tok = match block_on(Tokenizer::load(&src)) {
        Ok(t) => t,
        Err(e @ (Error::Tokenizer(_) | Error::BadModelFile { .. })) => return kind(&e),
        Err(e) => panic!("unexpected error kind from Tokenizer::load: {e}"),
    };
    let chat = [
        ChatMessage::new("system", "You are terse."),
        ChatMessage::new("user", &text),
        ChatMessage::new("assistant", "ok"),
        ChatMessage::new("user", &text),
    ];
    let names: Vec<String> = tok.template_names().iter().map(|s| s.to_string()).collect();
    for name in &names {
        let ctx = serde_json::json!({
            "messages": chat,
            "add_generation_prompt": true,
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        });
        match tok.render_template(Some(name), ctx) {
            Ok(s) => assert!(s.len() <= MAX_RENDER_BYTES, "{} bytes rendered", s.len()),
            Err(Error::Tokenizer(_)) => {}
            Err(e) => panic!("unexpected error kind from render_template: {e}"),
        }
    }
    let rendered = match tok.apply_chat_template(&chat, true) {
        Ok(s) => s,
        Err(Error::Tokenizer(_)) => text.to_string(),
        Err(e) => panic!("unexpected error kind from apply_chat_template: {e}"),
    };
    for (s, special) in [(rendered.as_str(), false), (&*text, true)] {
        match tok.encode(s, special) {
            Ok(ids) => {
                for skip in [false, true] {
                    match tok.decode(&ids, skip) {
                        Ok(_) | Err(Error::Tokenizer(_)) => {}
                        Err(e) => panic!("unexpected error kind from decode: {e}"),
                    }
                }
                for &id in ids.iter().take(64) {
                    let _ = tok.id_to_token(id);
                }
            }
            Err(Error::Tokenizer(_)) => {}
            Err(e) => panic!("unexpected error kind from encode: {e}"),
        }
    }
    let _ = (tok.eos_token_id(), tok.bos_token_id(), tok.vocab_size());
    if !text.is_empty() {
        let _ = tok.encode_pair(&text, "b");
    }
    "ok".into()
}

// ---------------------------------------------------------------------------------------------
// Shard index + file names

/// What [`check_relative`] promises, checked independently: the name, joined to a directory,
/// stays below it both as a path and as a URL (no scheme, no escapes, no separators a URL
/// parser would change).
fn stays_inside(name: &str) -> bool {
    use std::path::{Component, Path};
    !name.is_empty()
        && name.len() <= 255
        && !name.contains(['\\', '%', ':', '?', '#', '\t', '\n', '\r', ' '])
        && name.chars().all(|c| c.is_ascii_graphic())
        && !name.starts_with('/')
        && Path::new(name).components().all(|c| matches!(c, Component::Normal(_)))
        && name.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
}

/// A tiny safetensors file holding one F32 `[1]` tensor per name.
pub fn tiny_safetensors(names: &[&str]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    for (i, n) in names.iter().enumerate() {
        header.insert(
            n.to_string(),
            serde_json::json!({"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}),
        );
    }
    let json = serde_json::to_vec(&header).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend((0..names.len() * 4).map(|i| i as u8));
    out
}

/// First byte: control; then `model.safetensors.index.json` 0xFF names (0xFF-separated) for
/// [`check_relative`]. The index is parsed ([`ShardIndex::parse`] checks every shard name) and,
/// when it parses, the model directory is read with [`load::read_headers`]: shards built from
/// the index (control bits drop a shard, misplace a tensor, add an unindexed one).
pub fn shard_index(data: &[u8]) -> Outcome {
    let Some((&ctl, rest)) = data.split_first() else {
        return "skipped".into();
    };
    let p = parts(rest, 2);
    if let Some(names) = p.get(1) {
        for n in names.split(|&b| b == 0xFF) {
            let n = String::from_utf8_lossy(n);
            match check_relative("d", &n) {
                Ok(()) => assert!(stays_inside(&n), "check_relative accepted {n:?}"),
                Err(Error::BadModelFile { .. }) => {}
                Err(e) => panic!("unexpected error kind: {e}"),
            }
        }
    }
    let index = match ShardIndex::parse(load::INDEX_FILE, p[0]) {
        Ok(i) => i,
        Err(e @ Error::BadModelFile { .. }) => return kind(&e),
        Err(e) => panic!("unexpected error kind from ShardIndex::parse: {e}"),
    };
    let files = index.files();
    for f in &files {
        assert!(stays_inside(f), "ShardIndex::parse accepted {f:?}");
    }
    if files.len() > 64 || index.weight_map.len() > 4096 {
        return "skipped".into();
    }
    let mut src = MemorySource::new();
    src.insert(load::INDEX_FILE, p[0].to_vec());
    for (k, f) in files.iter().enumerate() {
        if ctl & 1 != 0 && k == usize::from(ctl >> 4) % files.len() {
            continue; // a missing shard
        }
        let mut names: Vec<&str> = index
            .weight_map
            .iter()
            .filter(|(_, file)| *file == f)
            .map(|(t, _)| t.as_str())
            .collect();
        if ctl & 2 != 0 && k == 0 {
            if let Some(t) = index.weight_map.keys().last() {
                names.push(t); // also (or instead) in the first shard
            }
        }
        if ctl & 4 != 0 {
            names.push("unindexed.weight");
        }
        if ctl & 8 != 0 && k == 0 {
            names.pop();
        }
        names.sort_unstable();
        names.dedup();
        src.insert(f, tiny_safetensors(&names));
    }
    match block_on(load::read_headers(&src)) {
        Ok(headers) => {
            assert_eq!(headers.len(), files.len());
            for (tensor, file) in &index.weight_map {
                let h = headers.iter().find(|(f, _)| f == file).expect("an indexed file");
                assert!(h.1.get(tensor).is_some(), "{tensor} missing from {file}");
            }
            "ok".into()
        }
        Err(e @ (Error::BadModelFile { .. } | Error::NotFound { .. })) => kind(&e),
        Err(e) => panic!("unexpected error kind from read_headers: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Whole loads

/// Claimed data bytes above which an input is skipped when the source hides the file length
/// (the loader then allocates each tensor when its bytes start to arrive: a header may claim
/// gigabytes, which is the device's to refuse, not a fuzzing finding).
const MAX_CLAIMED: u64 = 8 << 20;

fn expect_load_error(what: &str, e: &Error) -> Outcome {
    match e {
        Error::BadModelFile { .. } | Error::Limit { .. } | Error::Cancelled(_) => kind(e),
        Error::DType { .. } | Error::Unsupported { .. } | Error::Shape { .. } => kind(e),
        e => panic!("unexpected error kind from {what}: {e}"),
    }
}

/// 5 control bytes, then a safetensors file, loaded as `model.safetensors` from a
/// [`MemorySource`] by [`load::load_weights`] (header, plan, allocation, streamed upload);
/// control bits hide the file length, cut reads into pieces, set the staging size and the part
/// limit (row-block splits), cancel after some progress reports and read the uploads back.
pub fn safetensors_load(gpu: &Gpu, data: &[u8]) -> Outcome {
    if data.len() < 5 {
        return "skipped".into();
    }
    let (ctl, file) = data.split_at(5);
    let knobs = Knobs::new(ctl);
    if file.len() >= 8 {
        let n = u64::from_le_bytes(file[..8].try_into().unwrap());
        let json = usize::try_from(n).ok().and_then(|n| file.get(8..n.checked_add(8)?));
        if let Some(Ok(h)) = json.map(|j| st::parse_header("f", j, None)) {
            let claimed: u64 = h.tensors.iter().map(|t| t.len()).sum();
            if claimed > MAX_CLAIMED && claimed > file.len() as u64 {
                return "skipped".into();
            }
        }
    }
    let src = knobs.source(&[(load::SAFETENSORS_FILE, file)]);
    let opts = knobs.options();
    let mut check = ProgressCheck::new(&opts, &knobs);
    let r = block_on(load::load_weights(gpu, &src, &opts, &mut |p| check.see(p)));
    let w = match r {
        Ok(w) => w,
        Err(e) => return expect_load_error("load_weights", &e),
    };
    assert!(check.cancel_after.is_none() || check.reports <= usize::from(knobs.cancel_after.unwrap()) + 1);
    let header = block_on(st::read_header(&src, load::SAFETENSORS_FILE)).expect("the header read again");
    let total = header.data_len();
    assert_eq!(
        check.ended.last().map(|e| e.2),
        Some(total),
        "the last report is the total"
    );
    let data_start = header.data_start() as usize;
    for t in &header.tensors {
        if t.dtype.is_none() {
            assert!(w.skipped().contains_key(&t.name));
            continue;
        }
        let weight = w.weight(&t.name).expect("a loaded tensor");
        assert_eq!(weight.shape(), &t.shape[..]);
        if !knobs.readback {
            continue;
        }
        let bytes = match weight {
            Weight::Whole(g) => block_on(g.read_bytes(gpu)).unwrap(),
            Weight::Split(s) => {
                let mut v = Vec::new();
                for part in &s.parts {
                    v.extend(block_on(part.read_bytes(gpu)).unwrap());
                }
                v
            }
        };
        let want = &file[data_start + t.start as usize..data_start + t.end as usize];
        assert!(bytes == want, "tensor {} read back differs", t.name);
    }
    "ok".into()
}

/// 5 control bytes, then a GGUF file, loaded as `model.gguf` from a [`MemorySource`]: the
/// growing-prefix header read, the tokenizer and hyper-parameters built from it, then
/// [`gguf_load::load_tensors`] with the default plan (quantised blocks as stored, dequantised
/// to the dense dtype the control bits pick) or the q/k un-permutation; uploads read back.
pub fn gguf_load(gpu: &Gpu, data: &[u8]) -> Outcome {
    if data.len() < 5 {
        return "skipped".into();
    }
    let (ctl, file) = data.split_at(5);
    let knobs = Knobs::new(ctl);
    let src = knobs.source(&[("model.gguf", file)]);
    let header = match block_on(gguf_load::read_header(&src, "model.gguf")) {
        Ok((h, _)) => h,
        Err(e) => return expect_load_error("gguf read_header", &e),
    };
    if knobs.bits & 1 != 0 {
        match Tokenizer::from_gguf(&header) {
            Ok(t) => {
                let _ = t.encode("ab a", false).map(|ids| t.decode(&ids, false));
                let _ = t.apply_chat_template(&[ChatMessage::new("user", "hi")], true);
            }
            Err(Error::Tokenizer(_) | Error::BadModelFile { .. }) => {}
            Err(e) => panic!("unexpected error kind from Tokenizer::from_gguf: {e}"),
        }
        let _ = (header.hparams(), header.rope_layout(), header.qk_rows_permuted());
    }
    let claimed: u64 = header.tensors.iter().map(|t| t.size).sum();
    if claimed > MAX_CLAIMED && claimed > file.len() as u64 {
        return "skipped".into();
    }
    let dense = [DType::F32, DType::F16, DType::BF16, DType::F32][usize::from(knobs.bits >> 1 & 3)];
    let heads = usize::from(knobs.bits >> 3) + 1;
    let unpermute = knobs.bits & 8 != 0;
    let plan = move |i: &gguf::TensorInfo| {
        let mut p = TensorPlan::default_for(i, dense);
        if unpermute && (i.name.contains("attn_q") || i.name.contains("attn_k")) {
            p.unpermute_heads = Some(heads);
        }
        Some(p)
    };
    let opts = knobs.options();
    let mut check = ProgressCheck::new(&opts, &knobs);
    let file_name = "model.gguf";
    let r = block_on(gguf_load::load_tensors(
        gpu,
        &src,
        file_name,
        header.clone(),
        &opts,
        &plan,
        &mut |p| check.see(p),
    ));
    let w = match r {
        Ok(w) => w,
        Err(e) => return expect_load_error("load_tensors", &e),
    };
    assert!(check.ended.last().is_some(), "a load ends with a report");
    for t in &header.tensors {
        let p = plan(t).unwrap();
        // A tensor with no elements has no blocks to hold (QuantWeight refuses 0 rows).
        if p.quant && t.elements() > 0 {
            assert!(w.quant_parts(&t.name).is_ok(), "{} has quantised parts", t.name);
        }
        let Some(d) = p.dense else { continue };
        let parts = w.dense_parts(&t.name).expect("dense parts");
        let numel: usize = parts.iter().map(GpuTensor::numel).sum();
        assert_eq!(numel as u64, t.elements(), "{}", t.name);
        if knobs.readback && gguf_load::float_dtype(t.ggml_type) == Some(d) && p.unpermute_heads.is_none() {
            let mut v = Vec::new();
            for part in parts {
                v.extend(block_on(part.read_bytes(gpu)).unwrap());
            }
            assert!(
                v[..] == file[t.range().start as usize..t.range().end as usize],
                "{}",
                t.name
            );
        }
    }
    "ok".into()
}

// ---------------------------------------------------------------------------------------------
// Streaming arithmetic with sizes near multiples of 2^32

/// Values near multiples of 2^32 (and of 2^16, 2^31, 2^48), read 9 bytes at a time.
fn near_boundaries(data: &[u8]) -> Vec<u64> {
    data.chunks(9)
        .map(|c| {
            let mut b = [0u8; 9];
            b[..c.len()].copy_from_slice(c);
            let off = i64::from(i32::from_le_bytes([b[1], b[2], b[3], b[4]]) >> (b[5] % 32));
            let base: u64 = match b[0] % 8 {
                0 => 0,
                1 => u64::from(b[6] % 5) << 32,
                2 => u64::from(b[6]) << 31,
                3 => u64::from(b[6]) << 16,
                4 => u64::MAX,
                5 => u64::from(b[6] % 3 + 1) << 48,
                6 => u64::from(u32::from_le_bytes([b[5], b[6], b[7], b[8]])),
                _ => u64::from_le_bytes([b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8]]),
            };
            base.wrapping_add_signed(off)
        })
        .collect()
}

/// The splitting rule ([`load::rows_per_part`], [`load::row_blocks`]), the staging size, the
/// safetensors split plan, GGUF byte sizes and [`DataStream`]'s skips and reads, with sizes near
/// multiples of 2^32 (wasm32's usize): checked against u128 arithmetic; every read advances or
/// fails (a 0-byte read is an error, not a loop).
pub fn stream_arith(data: &[u8]) {
    let v = near_boundaries(data);
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let (rows, row_bytes, limit) = (get(0), get(1), get(2));
    let padded = |bytes: u128| bytes.div_ceil(16).max(1) * 16;
    match load::rows_per_part(rows, row_bytes, limit) {
        None => assert!(
            padded(u128::from(rows) * u128::from(row_bytes)) <= u128::from(limit),
            "{rows} x {row_bytes} said to fit {limit}"
        ),
        Some(per) => {
            assert!(
                per == 0 || padded(u128::from(per) * u128::from(row_bytes)) <= u128::from(limit),
                "{per} rows of {row_bytes} do not fit {limit}"
            );
            assert!(
                padded(u128::from(per + 1) * u128::from(row_bytes)) > u128::from(limit),
                "{} rows of {row_bytes} also fit {limit}",
                per + 1
            );
            if per > 0 {
                let n = rows.div_ceil(per);
                let mut it = load::row_blocks(rows, per);
                if let Some((r, k)) = it.next() {
                    assert_eq!(r, 0);
                    assert_eq!(k, per.min(rows));
                }
                if n <= 4096 {
                    let blocks: Vec<_> = load::row_blocks(rows, per).collect();
                    assert_eq!(blocks.len() as u64, n);
                    assert_eq!(blocks.iter().map(|b| u128::from(b.1)).sum::<u128>(), u128::from(rows));
                }
            }
        }
    }
    // The staging size for any requested size.
    let staging = LoadOptions {
        staging_bytes: get(3) as usize,
        ..Default::default()
    };
    let cap = staging_cap(&staging);
    assert!(
        (4..=load::stream::MAX_STAGING_BYTES).contains(&cap) && cap.is_multiple_of(4),
        "{cap}"
    );

    // safetensors: the split plan of a tensor of shape [rows, cols] (u64 dims as the header
    // holds them; usize on this target) against u128 arithmetic.
    let dims = [get(4), get(5)];
    if let (Ok(a), Ok(b)) = (usize::try_from(dims[0]), usize::try_from(dims[1])) {
        if a.checked_mul(b).is_some() {
            for dtype in [DType::F32, DType::F16, DType::I8] {
                let bytes = u128::from(dims[0]) * u128::from(dims[1]) * dtype.size() as u128;
                let info = TensorInfo {
                    name: "t".into(),
                    dtype_name: String::new(),
                    dtype: Some(dtype),
                    shape: vec![a, b],
                    start: 0,
                    end: u64::try_from(bytes).unwrap_or(u64::MAX),
                };
                let lim = limit.max(1);
                match st::plan_split(&info, dtype, lim, "f") {
                    Ok(None) => assert!(padded(bytes) <= u128::from(lim), "{a}x{b} {dtype:?} whole in {lim}"),
                    Ok(Some(per)) => {
                        let row = u128::from(dims[1]) * dtype.size() as u128;
                        assert!(
                            per >= 1 && padded(per as u128 * row) <= u128::from(lim),
                            "{per} rows of {row} in {lim}"
                        );
                    }
                    Err(Error::Limit { .. }) => {
                        let row = u128::from(dims[1]) * dtype.size() as u128;
                        assert!(padded(row) > u128::from(lim), "{a}x{b} refused for {lim}");
                    }
                    Err(e) => panic!("unexpected error kind from plan_split: {e}"),
                }
            }
        }
    }
    // GGUF byte sizes.
    for t in [
        gguf::GgmlType::F32,
        gguf::GgmlType::Q4_K,
        gguf::GgmlType::Q8_0,
        gguf::GgmlType::Q6_K,
    ] {
        let e = get(6);
        let want = (e % t.block_size() == 0).then(|| u128::from(e / t.block_size()) * u128::from(t.type_size()));
        let want = want.and_then(|w| u64::try_from(w).ok());
        assert_eq!(t.bytes_for(e), want, "{t} x {e}");
    }

    // DataStream over a huge virtual file: skip a gap from a position near a 2^32 multiple,
    // then read; the source may end early (a 0-byte or short read must be an error).
    let start = get(7).min(u64::MAX >> 1); // positions stay far from u64::MAX
    let gap = get(8) % (1 << 34);
    let want_next = (get(9) % 4096) as usize;
    let short_at = (get(10) & 1 == 1).then(|| start.saturating_add(get(11) % (1 << 34)));
    let staging_req = 1usize << (12 + get(12) % 13); // 4 KiB ..= 16 MiB
    let opts = LoadOptions {
        staging_bytes: staging_req,
        ..Default::default()
    };
    let cap = staging_cap(&opts) as u64;
    let end = start.saturating_add(gap).saturating_add(want_next as u64);
    let max_reads = (end - start) / cap + 4;
    if max_reads > 20_000 {
        return; // too many reads for one fuzz input
    }
    let src = HugeSource::new(end, short_at, max_reads);
    block_on(async {
        let truncated = |at: u64| Error::BadModelFile {
            file: "huge".into(),
            detail: format!("ends at {at}"),
        };
        let mut s = match DataStream::open(&src, "f", "f", start, end, start, &opts, 4).await {
            Ok(s) => s,
            Err(e) => panic!("open: {e}"),
        };
        let to = start + gap;
        let avail = short_at.unwrap_or(u64::MAX).min(end);
        match s.skip_to(to, &truncated).await {
            Ok(()) => {
                assert_eq!(s.pos(), to);
                assert!(to <= avail, "skipped to {to} past the end {avail}");
            }
            Err(Error::BadModelFile { .. }) => {
                assert!(to > avail, "a skip to {to} failed with {avail} bytes");
                return;
            }
            Err(e) => panic!("skip_to: {e}"),
        }
        if want_next == 0 {
            return;
        }
        let want = want_next.min(s.staging_len());
        match s.next(want_next, &truncated).await {
            Ok(b) => {
                assert_eq!(b.len(), want);
                assert!(to + want as u64 <= avail);
            }
            Err(Error::BadModelFile { .. }) => assert!(to + want as u64 > avail),
            Err(e) => panic!("next: {e}"),
        }
    });
}

/// A byte source of `len` virtual bytes (zeros, never copied, so gigabytes cost nothing) that
/// gives only the bytes before `short_at` when set, counts its reads and fails the run when
/// they exceed the bound (an endless loop of 0-byte reads).
struct HugeSource {
    len: u64,
    short_at: Option<u64>,
    reads: std::rc::Rc<std::cell::Cell<u64>>,
    max_reads: u64,
}

impl HugeSource {
    fn new(len: u64, short_at: Option<u64>, max_reads: u64) -> Self {
        HugeSource {
            len,
            short_at,
            reads: Default::default(),
            max_reads,
        }
    }
}

struct HugeReader {
    len: u64,
    pos: u64,
    end: u64,
    reads: std::rc::Rc<std::cell::Cell<u64>>,
    max_reads: u64,
}

impl ByteSource for HugeSource {
    type Reader = HugeReader;
    fn locate(&self, file: &str) -> String {
        format!("huge:{file}")
    }
    async fn open(&self, _file: &str, start: u64, end: Option<u64>) -> crate::Result<HugeReader> {
        let end = end
            .unwrap_or(self.len)
            .min(self.len)
            .min(self.short_at.unwrap_or(u64::MAX));
        Ok(HugeReader {
            len: self.len,
            pos: start.min(end),
            end,
            reads: self.reads.clone(),
            max_reads: self.max_reads,
        })
    }
}

impl RangeReader for HugeReader {
    fn file_len(&self) -> Option<u64> {
        Some(self.len)
    }
    async fn fill(&mut self, buf: &mut [u8]) -> crate::Result<usize> {
        let r = self.reads.get() + 1;
        self.reads.set(r);
        assert!(
            r <= self.max_reads,
            "more than {} reads: a loop that makes no progress",
            self.max_reads
        );
        let n = (self.end - self.pos).min(buf.len() as u64) as usize;
        self.pos += n as u64;
        Ok(n)
    }
}
