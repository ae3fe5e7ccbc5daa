//! A minimal GGUF writer for tests, fuzz seeds and benchmarks (feature `reference`).

use super::types::{GgmlType, MetaArray, MetaValue};

/// Builds a GGUF v3 file in memory.
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    /// Metadata in order.
    pub metadata: Vec<(String, MetaValue)>,
    /// (name, type, ggml dims innermost first, data).
    pub tensors: Vec<(String, GgmlType, Vec<u64>, Vec<u8>)>,
    /// Data alignment (written as `general.alignment` when not 32).
    pub alignment: u64,
}

impl GgufWriter {
    /// An empty file with the default alignment.
    pub fn new() -> Self {
        GgufWriter {
            alignment: 32,
            ..Default::default()
        }
    }

    /// Add a metadata entry.
    pub fn kv(mut self, key: &str, value: MetaValue) -> Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Add a tensor (dims innermost first, data already in its ggml encoding).
    pub fn tensor(mut self, name: &str, ty: GgmlType, dims: &[u64], data: Vec<u8>) -> Self {
        self.tensors.push((name.to_string(), ty, dims.to_vec(), data));
        self
    }

    /// The file's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        let mut metadata = self.metadata.clone();
        if self.alignment != 32 {
            metadata.push(("general.alignment".into(), MetaValue::U32(self.alignment as u32)));
        }
        out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (k, v) in &metadata {
            put_str(&mut out, k);
            put_value(&mut out, v);
        }
        let align = self.alignment.max(1);
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, ty, dims, data) in &self.tensors {
            put_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + data.len() as u64).div_ceil(align) * align;
        }
        let data_start = (out.len() as u64).div_ceil(align) * align;
        out.resize(data_start as usize, 0);
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            out.resize((data_start + off) as usize, 0);
            out.extend_from_slice(data);
        }
        out
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn type_id(v: &MetaValue) -> u32 {
    match v {
        MetaValue::U8(_) => 0,
        MetaValue::I8(_) => 1,
        MetaValue::U16(_) => 2,
        MetaValue::I16(_) => 3,
        MetaValue::U32(_) => 4,
        MetaValue::I32(_) => 5,
        MetaValue::F32(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::String(_) => 8,
        MetaValue::Array(_) => 9,
        MetaValue::U64(_) => 10,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 12,
    }
}

fn array_type_id(a: &MetaArray) -> u32 {
    match a {
        MetaArray::U8(_) => 0,
        MetaArray::I8(_) => 1,
        MetaArray::U16(_) => 2,
        MetaArray::I16(_) => 3,
        MetaArray::U32(_) => 4,
        MetaArray::I32(_) => 5,
        MetaArray::F32(_) => 6,
        MetaArray::Bool(_) => 7,
        MetaArray::String(_) => 8,
        MetaArray::Array(_) => 9,
        MetaArray::U64(_) => 10,
        MetaArray::I64(_) => 11,
        MetaArray::F64(_) => 12,
    }
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    out.extend_from_slice(&type_id(v).to_le_bytes());
    put_payload(out, v);
}

fn put_payload(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.push(*x as u8),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(u8::from(*x)),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::Array(a) => put_array(out, a),
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, a: &MetaArray) {
    out.extend_from_slice(&array_type_id(a).to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    match a {
        MetaArray::U8(v) => out.extend_from_slice(v),
        MetaArray::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        MetaArray::U16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::I16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::U32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::Bool(v) => out.extend(v.iter().map(|&x| u8::from(x))),
        MetaArray::String(v) => v.iter().for_each(|s| put_str(out, s)),
        MetaArray::Array(v) => v.iter().for_each(|a| put_array(out, a)),
        MetaArray::U64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        MetaArray::F64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
}

/// A small but complete llama-style file: every value type, string arrays, a nested array,
/// tokenizer keys and three tensors (F32, Q8_0, Q4_K) with known data. Used by the parser tests,
/// the mini-fuzz test and as the cargo-fuzz seed.
pub fn sample_file() -> Vec<u8> {
    let tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "a", "b", "ab"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let q8: Vec<u8> = (0..2 * 34).map(|i| (i * 7 % 251) as u8).collect();
    let q4k: Vec<u8> = (0..144).map(|i| (i * 13 % 256) as u8).collect();
    GgufWriter::new()
        .kv("general.architecture", MetaValue::String("llama".into()))
        .kv("general.name", MetaValue::String("tiny ✓".into()))
        .kv("llama.context_length", MetaValue::U32(2048))
        .kv("llama.embedding_length", MetaValue::U32(64))
        .kv("llama.block_count", MetaValue::U32(2))
        .kv("llama.feed_forward_length", MetaValue::U64(128))
        .kv("llama.attention.head_count", MetaValue::U32(4))
        .kv("llama.attention.head_count_kv", MetaValue::U32(2))
        .kv("llama.attention.layer_norm_rms_epsilon", MetaValue::F32(1e-5))
        .kv("llama.rope.freq_base", MetaValue::F32(100_000.0))
        .kv("llama.rope.dimension_count", MetaValue::U32(16))
        .kv("test.u8", MetaValue::U8(200))
        .kv("test.i8", MetaValue::I8(-5))
        .kv("test.u16", MetaValue::U16(60_000))
        .kv("test.i16", MetaValue::I16(-30_000))
        .kv("test.i32", MetaValue::I32(-7))
        .kv("test.i64", MetaValue::I64(-1 << 40))
        .kv("test.f64", MetaValue::F64(0.125))
        .kv("test.bool", MetaValue::Bool(true))
        .kv(
            "test.nested",
            MetaValue::Array(MetaArray::Array(vec![
                MetaArray::U16(vec![1, 2]),
                MetaArray::Bool(vec![false, true]),
            ])),
        )
        .kv("tokenizer.ggml.model", MetaValue::String("gpt2".into()))
        .kv("tokenizer.ggml.pre", MetaValue::String("smollm".into()))
        .kv("tokenizer.ggml.tokens", MetaValue::Array(MetaArray::String(tokens)))
        .kv(
            "tokenizer.ggml.token_type",
            MetaValue::Array(MetaArray::I32(vec![3, 3, 3, 1, 1, 1])),
        )
        .kv(
            "tokenizer.ggml.merges",
            MetaValue::Array(MetaArray::String(vec!["a b".into()])),
        )
        .kv("tokenizer.ggml.bos_token_id", MetaValue::U32(1))
        .kv("tokenizer.ggml.eos_token_id", MetaValue::U32(2))
        .kv("tokenizer.ggml.padding_token_id", MetaValue::U32(2))
        .kv("tokenizer.ggml.add_bos_token", MetaValue::Bool(false))
        .kv("tokenizer.chat_template", MetaValue::String("{{ messages }}".into()))
        .tensor(
            "output_norm.weight",
            GgmlType::F32,
            &[64],
            (0..64u32).flat_map(|i| (i as f32).to_le_bytes()).collect(),
        )
        .tensor("blk.0.attn_k.weight", GgmlType::Q8_0, &[32, 2], q8)
        .tensor("blk.0.ffn_down.weight", GgmlType::Q4_K, &[256, 1], q4k)
        .build()
}
