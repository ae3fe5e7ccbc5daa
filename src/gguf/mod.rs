//! GGUF (llama.cpp's model format) header parsing: metadata, hyper-parameters, tokenizer
//! metadata and tensor infos, from a byte **prefix** of the file.
//!
//! The parser is strict and never trusts a count: every string length, array length, tensor
//! count and tensor offset is checked against the file size before anything is allocated, and
//! every problem is an [`Error::BadModelFile`] naming the key or tensor. Versions 2 and 3,
//! little-endian only.
//!
//! Streaming use (the header of a 100 MB–1 GB file is a few MB, mostly the vocabulary): fetch a
//! first chunk, call [`parse_header`] with the total file size (from `Content-Length`), and when
//! it answers [`Parsed::NeedMore`] fetch at least that many bytes (growing geometrically, e.g.
//! `max(needed, 2 × prefix)`, so a large vocabulary costs O(log n) re-parses) and call again.
//!
//! ```ignore
//! let header = match gguf::parse_header("model.gguf", &prefix, file_size)? {
//!     Parsed::Header(h) => h,
//!     Parsed::NeedMore { bytes } => { /* fetch more, retry */ }
//! };
//! let hp = header.hparams()?;                    // llama.* / qwen2.* keys
//! let tok = header.tokenizer()?;                 // tokenizer.ggml.*
//! let q = header.tensor("blk.0.attn_q.weight")?; // type, dims, absolute offset, byte size
//! ```
//!
//! ## The Llama q/k row permutation
//! llama.cpp's converter permutes the rows of `attn_q.weight` / `attn_k.weight` (and their biases)
//! of **`llama`-architecture** models so that its RoPE can rotate adjacent pairs: within each
//! head of `head_dim = 2·half` rows, HF row `a·half + b` (`a ∈ {0, 1}`, `b < half`) is stored as
//! GGUF row `2b + a`. HF's rotate-half pair `(b, b + half)` thus becomes the adjacent pair
//! `(2b, 2b + 1)` with the same frequency `θ^(-2b/head_dim)`. `qwen2` files are not permuted.
//!
//! Two equivalent ways for a loader to handle it (pick per model, [`GgufHeader::rope_layout`]
//! tells which layout the stored rows need):
//! 1. **Keep the rows as stored and run RoPE with [`RopeLayout::Interleaved`]** for q and k
//!    (what [`GgufHeader::rope_layout`] returns for `llama`). Attention scores are unchanged:
//!    q and k get the same permutation within each head, and v / o are not permuted. This is
//!    what we recommend: no data movement, quantised blocks stay as stored.
//! 2. Undo it at load with [`unpermute_qk_rows`] (`hf_row → gguf_row`; a row is a whole number
//!    of quantisation blocks, so rows of quantised data can be moved as byte ranges) and run
//!    RoPE with [`RopeLayout::HalfSplit`], like the HF checkpoint (what `convert_gguf.py` does).
//!
//! Partial rotary (`rope.dimension_count < head_dim`) together with the permutation does not
//! occur in llama-architecture files; [`GgufHeader::rope_layout`] refuses it.

pub mod dequant;
mod parse;
#[cfg(test)]
mod tests;
mod types;
#[cfg(any(test, feature = "reference"))]
pub mod writer;

pub use types::{GgmlType, MetaArray, MetaValue};

use crate::error::{Error, Result};
use crate::ops::rope::RopeLayout;
use std::collections::HashMap;

/// Alignment of the tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// The result of parsing a prefix.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// The whole header was in the prefix.
    Header(Box<GgufHeader>),
    /// The prefix ended inside the header: at least `bytes` bytes (from the start of the file)
    /// are needed to go further. Never more than the file size.
    NeedMore {
        /// Prefix length needed to make progress.
        bytes: u64,
    },
}

/// One tensor's description.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// GGUF name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// ggml dimensions, **innermost first** (`ne[0]` is the row length: `[K, N]` for an `N × K`
    /// weight). See [`TensorInfo::shape`] for the row-major order.
    pub dims: Vec<u64>,
    /// Absolute byte offset of the data in the file (data section start + the stored offset).
    pub offset: u64,
    /// Bytes of the data (whole blocks).
    pub size: u64,
}

impl TensorInfo {
    /// Row-major shape, outermost first (`[N, K]` for a weight with rows of length K).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// `(rows, row length)` of a matrix viewed as `[rows, ne[0]]` (all outer dims folded).
    pub fn rows_cols(&self) -> (u64, u64) {
        let cols = self.dims.first().copied().unwrap_or(1);
        (self.elements() / cols.max(1), cols)
    }

    /// Byte range in the file.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset + self.size
    }
}

/// A parsed GGUF header.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    /// File name or URL (used in errors).
    pub file: String,
    /// GGUF version (2 or 3).
    pub version: u32,
    /// Total file size given to the parser.
    pub file_size: u64,
    /// Alignment of tensor data (`general.alignment`, default 32).
    pub alignment: u64,
    /// Bytes of the header proper (magic to the last tensor info).
    pub header_len: u64,
    /// Offset of the tensor data section (`header_len` rounded up to the alignment).
    pub data_offset: u64,
    /// Metadata in file order.
    pub metadata: Vec<(String, MetaValue)>,
    index: HashMap<String, usize>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
}

/// Parse the GGUF header from the first `prefix.len()` bytes of a file of `file_size` bytes.
/// `file` names the file in errors.
pub fn parse_header(file: &str, prefix: &[u8], file_size: u64) -> Result<Parsed> {
    match parse::parse(file, prefix, file_size) {
        Ok(p) => Ok(p),
        Err(parse::Stop::More(bytes)) => Ok(Parsed::NeedMore { bytes }),
        Err(parse::Stop::Bad(detail)) => Err(Error::BadModelFile {
            file: file.to_string(),
            detail,
        }),
    }
}

/// Parse a complete file held in memory (tests, native tools).
pub fn parse_file(file: &str, bytes: &[u8]) -> Result<GgufHeader> {
    match parse_header(file, bytes, bytes.len() as u64)? {
        Parsed::Header(h) => Ok(*h),
        Parsed::NeedMore { bytes: n } => Err(Error::Internal(format!(
            "GGUF parser asked for {n} bytes of a complete file"
        ))),
    }
}

/// Hyper-parameters of a llama-family model (`{arch}.*` keys).
#[derive(Debug, Clone, PartialEq)]
pub struct HParams {
    /// `general.architecture` (`llama`, `qwen2`, ...).
    pub architecture: String,
    /// `{arch}.context_length`: the trained context.
    pub context_length: usize,
    /// `{arch}.embedding_length`: hidden size.
    pub embedding_length: usize,
    /// `{arch}.block_count`: layers.
    pub block_count: usize,
    /// `{arch}.feed_forward_length`: FFN inner size.
    pub feed_forward_length: usize,
    /// `{arch}.attention.head_count`.
    pub head_count: usize,
    /// `{arch}.attention.head_count_kv` (defaults to `head_count`).
    pub head_count_kv: usize,
    /// `{arch}.attention.layer_norm_rms_epsilon`.
    pub rms_eps: f32,
    /// `{arch}.rope.freq_base` (default 10000).
    pub rope_freq_base: f32,
    /// `{arch}.rope.dimension_count` (default: head dim).
    pub rope_dimension_count: usize,
    /// `{arch}.vocab_size` when present (otherwise the tokenizer's token count).
    pub vocab_size: Option<usize>,
    /// `{arch}.attention.key_length`: the head size when it is not `embedding_length /
    /// head_count` (Qwen3-0.6B: 128 with 1024 / 16).
    pub key_length: Option<usize>,
}

impl HParams {
    /// Per-head dimension.
    pub fn head_dim(&self) -> usize {
        self.key_length
            .unwrap_or(self.embedding_length / self.head_count.max(1))
    }
}

/// Tokenizer metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`), borrowed from the header.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizerMeta<'a> {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE), `llama` (SentencePiece), `bert`...
    pub model: &'a str,
    /// `tokenizer.ggml.pre`: the pre-tokenizer name (`smollm`, `qwen2`...).
    pub pre: Option<&'a str>,
    /// `tokenizer.ggml.tokens`: id → token text.
    pub tokens: &'a [String],
    /// `tokenizer.ggml.scores` (SentencePiece).
    pub scores: Option<&'a [f32]>,
    /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
    pub token_type: Option<&'a [i32]>,
    /// `tokenizer.ggml.merges` (BPE: `"a b"` strings in rank order).
    pub merges: Option<&'a [String]>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub padding: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unknown: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.chat_template` (Jinja).
    pub chat_template: Option<&'a str>,
}

impl GgufHeader {
    fn bad(&self, detail: String) -> Error {
        Error::BadModelFile {
            file: self.file.clone(),
            detail,
        }
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.index.get(key).and_then(|&i| self.metadata.get(i)).map(|(_, v)| v)
    }

    fn typed<'a, T>(&'a self, key: &str, want: &str, f: impl Fn(&'a MetaValue) -> Option<T>) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| {
                self.bad(format!(
                    "metadata '{key}' is {} ({v:?}), expected {want}",
                    v.type_name()
                ))
            }),
        }
    }

    /// A non-negative integer value (any integer type), `None` when absent.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, "a non-negative integer", MetaValue::as_u64)
    }

    /// A float value, `None` when absent.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        self.typed(key, "a float", MetaValue::as_f32)
    }

    /// A string value, `None` when absent.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "a string", MetaValue::as_str)
    }

    /// A bool value, `None` when absent.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "a bool", MetaValue::as_bool)
    }

    fn usize_key(&self, key: &str) -> Result<Option<usize>> {
        match self.get_u64(key)? {
            None => Ok(None),
            Some(v) => usize::try_from(v)
                .map(Some)
                .map_err(|_| self.bad(format!("metadata '{key}' = {v} is too large"))),
        }
    }

    fn required(&self, key: &str) -> Result<usize> {
        self.usize_key(key)?
            .ok_or_else(|| self.bad(format!("metadata '{key}' is missing")))
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")?
            .ok_or_else(|| self.bad("metadata 'general.architecture' is missing".into()))
    }

    /// A tensor's info by name.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| self.bad(format!("tensor '{name}' is missing")))
    }

    /// The llama-family hyper-parameters, checked for consistency.
    pub fn hparams(&self) -> Result<HParams> {
        let arch = self.architecture()?.to_string();
        let k = |s: &str| format!("{arch}.{s}");
        let head_count = self.required(&k("attention.head_count"))?;
        let embedding_length = self.required(&k("embedding_length"))?;
        let head_count_kv = self.usize_key(&k("attention.head_count_kv"))?.unwrap_or(head_count);
        let key_length = self.usize_key(&k("attention.key_length"))?;
        let value_length = self.usize_key(&k("attention.value_length"))?;
        if matches!((key_length, value_length), (Some(a), Some(b)) if a != b) || key_length == Some(0) {
            return Err(self.bad(format!(
                "attention.key_length {key_length:?} and value_length {value_length:?} must be equal"
            )));
        }
        if head_count == 0
            || head_count_kv == 0
            || (key_length.is_none() && embedding_length % head_count != 0)
            || head_count % head_count_kv != 0
        {
            return Err(self.bad(format!(
                "inconsistent attention shape: embedding_length {embedding_length}, head_count {head_count}, head_count_kv {head_count_kv}"
            )));
        }
        let head_dim = key_length.unwrap_or(embedding_length / head_count);
        let rope_dimension_count = self.usize_key(&k("rope.dimension_count"))?.unwrap_or(head_dim);
        if rope_dimension_count > head_dim || rope_dimension_count % 2 != 0 {
            return Err(self.bad(format!(
                "rope.dimension_count {rope_dimension_count} does not fit head_dim {head_dim}"
            )));
        }
        let rms_eps_key = k("attention.layer_norm_rms_epsilon");
        Ok(HParams {
            context_length: self.required(&k("context_length"))?,
            embedding_length,
            block_count: self.required(&k("block_count"))?,
            feed_forward_length: self.required(&k("feed_forward_length"))?,
            head_count,
            head_count_kv,
            rms_eps: self
                .get_f32(&rms_eps_key)?
                .ok_or_else(|| self.bad(format!("metadata '{rms_eps_key}' is missing")))?,
            rope_freq_base: self.get_f32(&k("rope.freq_base"))?.unwrap_or(10_000.0),
            rope_dimension_count,
            vocab_size: self.usize_key(&k("vocab_size"))?,
            key_length,
            architecture: arch,
        })
    }

    /// The tokenizer metadata, with ids and array lengths checked against the vocabulary.
    pub fn tokenizer(&self) -> Result<TokenizerMeta<'_>> {
        let model = self
            .get_str("tokenizer.ggml.model")?
            .ok_or_else(|| self.bad("metadata 'tokenizer.ggml.model' is missing".into()))?;
        let tokens = match self.get("tokenizer.ggml.tokens").and_then(MetaValue::as_array) {
            Some(MetaArray::String(t)) => t.as_slice(),
            _ => return Err(self.bad("metadata 'tokenizer.ggml.tokens' is missing or not an array of strings".into())),
        };
        let n = tokens.len();
        let sized = |key: &str, len: usize| {
            if len == n {
                Ok(())
            } else {
                Err(self.bad(format!("metadata '{key}' has {len} entries for {n} tokens")))
            }
        };
        let scores = match self.get("tokenizer.ggml.scores") {
            None => None,
            Some(MetaValue::Array(MetaArray::F32(s))) => {
                sized("tokenizer.ggml.scores", s.len())?;
                Some(s.as_slice())
            }
            Some(v) => return Err(self.bad(format!("metadata 'tokenizer.ggml.scores' is {}", v.type_name()))),
        };
        let token_type = match self.get("tokenizer.ggml.token_type") {
            None => None,
            Some(MetaValue::Array(MetaArray::I32(s))) => {
                sized("tokenizer.ggml.token_type", s.len())?;
                Some(s.as_slice())
            }
            Some(v) => return Err(self.bad(format!("metadata 'tokenizer.ggml.token_type' is {}", v.type_name()))),
        };
        let merges = match self.get("tokenizer.ggml.merges") {
            None => None,
            Some(MetaValue::Array(MetaArray::String(s))) => Some(s.as_slice()),
            Some(v) => return Err(self.bad(format!("metadata 'tokenizer.ggml.merges' is {}", v.type_name()))),
        };
        let id = |key: &str| -> Result<Option<u32>> {
            match self.get_u64(key)? {
                None => Ok(None),
                Some(v) if v < n as u64 => Ok(Some(v as u32)),
                Some(v) => Err(self.bad(format!("metadata '{key}' = {v} is not a token id (vocabulary of {n})"))),
            }
        };
        Ok(TokenizerMeta {
            model,
            pre: self.get_str("tokenizer.ggml.pre")?,
            tokens,
            scores,
            token_type,
            merges,
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            padding: id("tokenizer.ggml.padding_token_id")?,
            unknown: id("tokenizer.ggml.unknown_token_id")?,
            add_bos: self.get_bool("tokenizer.ggml.add_bos_token")?,
            add_eos: self.get_bool("tokenizer.ggml.add_eos_token")?,
            chat_template: self.get_str("tokenizer.chat_template")?,
        })
    }

    /// Whether llama.cpp's converter permuted the q/k rows of this file (`llama` architecture).
    pub fn qk_rows_permuted(&self) -> Result<bool> {
        Ok(self.architecture()? == "llama")
    }

    /// The RoPE layout to use for q and k computed from the weights **as stored**:
    /// [`RopeLayout::Interleaved`] for permuted (`llama`) files, [`RopeLayout::HalfSplit`]
    /// otherwise (`qwen2`: llama.cpp's NEOX mode, not permuted). See the module docs.
    pub fn rope_layout(&self) -> Result<RopeLayout> {
        if !self.qk_rows_permuted()? {
            return Ok(RopeLayout::HalfSplit);
        }
        let hp = self.hparams()?;
        if hp.rope_dimension_count != hp.head_dim() {
            return Err(self.bad(format!(
                "partial rotary ({} of {}) with permuted q/k rows is not supported",
                hp.rope_dimension_count,
                hp.head_dim()
            )));
        }
        Ok(RopeLayout::Interleaved)
    }
}

/// The row order that undoes llama.cpp's q/k permutation: `out[hf_row] = gguf_row`, for a
/// weight (or bias) of `rows = n_head · head_dim` rows (`n_head` = `head_count` for q,
/// `head_count_kv` for k). Copy GGUF row `out[r]` to row `r` to get the HF (rotate-half) layout.
pub fn unpermute_qk_rows(rows: usize, n_head: usize) -> Result<Vec<usize>> {
    if n_head == 0 || !rows.is_multiple_of(n_head) || !(rows / n_head).is_multiple_of(2) {
        return Err(Error::Shape {
            op: "unpermute_qk_rows",
            detail: format!("{rows} rows do not split into {n_head} heads of an even size"),
        });
    }
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    Ok((0..rows)
        .map(|r| {
            let (h, within) = (r / head_dim, r % head_dim);
            let (a, b) = (within / half, within % half);
            h * head_dim + 2 * b + a
        })
        .collect())
}
