//! GPU memory needed by a model, computed before any weight is downloaded: from `config.json`
//! and the safetensors headers (a few small range reads), plus the KV cache a decoder allocates
//! for its context and the activation scratch of one forward pass.
//!
//! Two kinds of limit are checked, both as [`Error::ModelTooLarge`]:
//! - per buffer: a tensor that cannot be split into row blocks within the device's
//!   `maxBufferSize` / `maxStorageBufferBindingSize` (a 1-D tensor, or one row over the limit),
//!   one layer's K or V cache, or an activation buffer over the binding limit;
//! - in total: weights + KV cache + activations over a budget the caller passes. WebGPU reports
//!   no device memory size, so there is no automatic total; the JS engine passes its own
//!   budget (e.g. from `navigator.deviceMemory` or a user setting).
//!
//! The numbers follow what the loaders allocate: every buffer is padded to 16 bytes
//! ([`GpuTensor::padded_bytes`]); tensors over the part limit are held as row blocks; a decoder
//! keeps f32 copies of its 16-bit 1-D tensors (norm weights, biases); dtypes the loader skips
//! (I64, ...) cost nothing.

use super::config::{DecoderConfig, ModelConfig};
use super::read_headers;
use super::safetensors::{plan_split, Header};
use super::source::ByteSource;
use crate::error::{Error, Result};
use crate::gpu::{Capabilities, DType, Gpu, GpuTensor};
use crate::ops::kv_cache::KvDType;

/// What the model will be run with (the parts of the memory that depend on use, not on files).
#[derive(Debug, Clone)]
pub struct EstimateOptions {
    /// Decoders: context length the KV cache is allocated for (capped by the config's
    /// `max_position_embeddings` and any sliding window, as `LlamaOptions::max_context` is).
    pub max_context: usize,
    /// Decoders: KV cache storage.
    pub kv_dtype: KvDType,
    /// Tokens of the largest forward pass (prefill prompt, or BERT batch × sequence).
    /// `None`: the whole context (decoders) / `max_position_embeddings` (BERT).
    pub prefill_tokens: Option<usize>,
    /// As [`super::LoadOptions::max_part_bytes`].
    pub max_part_bytes: Option<u64>,
}

impl Default for EstimateOptions {
    fn default() -> Self {
        EstimateOptions {
            max_context: 2048,
            kv_dtype: KvDType::F16,
            prefill_tokens: None,
            max_part_bytes: None,
        }
    }
}

/// The limits an estimate is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLimits {
    /// `maxBufferSize`.
    pub max_buffer_size: u64,
    /// `maxStorageBufferBindingSize`.
    pub max_storage_binding: u64,
    /// Total bytes the caller allows the model to use (`None`: no total check).
    pub budget: Option<u64>,
}

impl DeviceLimits {
    /// The device's limits and a caller's budget.
    pub fn from_caps(caps: &Capabilities, budget: Option<u64>) -> Self {
        DeviceLimits {
            max_buffer_size: caps.max_buffer_size,
            max_storage_binding: caps.max_storage_binding,
            budget,
        }
    }
    /// The limits of `gpu`.
    pub fn of(gpu: &Gpu, budget: Option<u64>) -> Self {
        Self::from_caps(gpu.caps(), budget)
    }
    fn binding(&self) -> u64 {
        self.max_storage_binding.min(self.max_buffer_size)
    }
}

/// Bytes of GPU memory a model needs, by part.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Estimate {
    /// The weights as uploaded (padded; split tensors counted part by part).
    pub weights: u64,
    /// f32 copies the model makes at load (a decoder's 16-bit norm weights and biases).
    pub widened: u64,
    /// KV cache (decoders), all layers.
    pub kv_cache: u64,
    /// Activation scratch of the largest forward pass, plus decode scratch and logits.
    pub activations: u64,
    /// The sum.
    pub total: u64,
    /// Data bytes to download (the checkpoint's data sections).
    pub download: u64,
    /// The largest single buffer and its bytes.
    pub largest_buffer: (String, u64),
    /// Tensors that will be held as row blocks.
    pub split: Vec<String>,
    /// Tensors not uploaded because of their dtype.
    pub skipped: Vec<String>,
    /// The context the KV cache is sized for (0 for encoders).
    pub max_context: usize,
    /// Tokens the activation scratch is sized for.
    pub prefill_tokens: usize,
}

impl Estimate {
    /// As JSON (for the JS engine).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Fail with [`Error::ModelTooLarge`] when the total is over the budget.
    pub fn check_budget(&self, limits: &DeviceLimits) -> Result<()> {
        match limits.budget {
            Some(b) if self.total > b => Err(Error::ModelTooLarge {
                needed: self.total,
                limit: "memory budget",
                available: b,
                detail: format!(
                    "weights {} + f32 copies {} + KV cache {} ({} tokens) + activations {} ({} tokens)",
                    self.weights, self.widened, self.kv_cache, self.max_context, self.activations, self.prefill_tokens
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// Saturating product of sizes (configs come from the network: no overflow panics).
fn mul(dims: &[usize]) -> u64 {
    dims.iter().fold(1u64, |a, &d| a.saturating_mul(d as u64))
}

/// Padded bytes of `numel` elements, as [`GpuTensor::padded_bytes`] but saturating.
fn pad(numel: u64, dtype: DType) -> u64 {
    numel
        .saturating_mul(dtype.size() as u64)
        .div_ceil(16)
        .max(1)
        .saturating_mul(16)
}

/// Accumulates buffers, checking each against the binding limit.
struct Tally<'a> {
    limits: &'a DeviceLimits,
    largest: (String, u64),
}

impl Tally<'_> {
    /// One buffer of `numel` elements that cannot be split; returns its padded bytes.
    fn buffer(&mut self, name: &str, numel: u64, dtype: DType, hint: &str) -> Result<u64> {
        let bytes = pad(numel, dtype);
        self.note(name, bytes);
        let (limit, available) = if self.limits.max_buffer_size <= self.limits.max_storage_binding {
            ("maxBufferSize", self.limits.max_buffer_size)
        } else {
            ("maxStorageBufferBindingSize", self.limits.max_storage_binding)
        };
        if bytes > available {
            return Err(Error::ModelTooLarge {
                needed: bytes,
                limit,
                available,
                detail: format!("{name}: {hint}"),
            });
        }
        Ok(bytes)
    }
    fn note(&mut self, name: &str, bytes: u64) {
        if bytes > self.largest.1 {
            self.largest = (name.to_string(), bytes);
        }
    }
}

/// Compute the memory a model needs from its config and checkpoint headers, and check every
/// buffer against the device limits and the total against the budget.
pub fn estimate(
    config: &ModelConfig,
    headers: &[(String, Header)],
    opts: &EstimateOptions,
    limits: &DeviceLimits,
) -> Result<Estimate> {
    let mut tally = Tally {
        limits,
        largest: (String::new(), 0),
    };
    let mut part_limit = limits.binding();
    if let Some(m) = opts.max_part_bytes {
        part_limit = part_limit.min(m);
    }
    let decoder = matches!(config, ModelConfig::Decoder(_));
    let (mut weights, mut widened, mut download) = (0u64, 0u64, 0u64);
    let (mut split, mut skipped) = (Vec::new(), Vec::new());
    for (file, h) in headers {
        download = download.saturating_add(h.data_len());
        for t in &h.tensors {
            let Some(dtype) = t.dtype else {
                skipped.push(t.name.clone());
                continue;
            };
            match plan_split(t, dtype, part_limit, file) {
                Ok(None) => {
                    let b = GpuTensor::padded_bytes(t.numel(), dtype);
                    tally.note(&t.name, b);
                    weights = weights.saturating_add(b);
                }
                Ok(Some(per)) => {
                    let rows = t.shape.first().copied().unwrap_or(1);
                    let cols = t.numel() / rows.max(1);
                    let mut r = 0;
                    while r < rows {
                        let n = per.min(rows - r);
                        let b = GpuTensor::padded_bytes(n * cols, dtype);
                        tally.note(&format!("{}[rows {r}..{}]", t.name, r + n), b);
                        weights = weights.saturating_add(b);
                        r += n;
                    }
                    split.push(t.name.clone());
                }
                Err(Error::Limit { needed, available, .. }) => {
                    let limit = if opts.max_part_bytes == Some(part_limit) {
                        "max_part_bytes"
                    } else if part_limit == limits.max_buffer_size {
                        "maxBufferSize"
                    } else {
                        "maxStorageBufferBindingSize"
                    };
                    return Err(Error::ModelTooLarge {
                        needed,
                        limit,
                        available,
                        detail: format!(
                            "tensor '{}' {:?} in {file} cannot be split into row blocks within the limit \
                             ({} bytes; one row needs {needed})",
                            t.name,
                            t.shape,
                            GpuTensor::padded_bytes(t.numel(), dtype)
                        ),
                    });
                }
                Err(e) => return Err(e),
            }
            if decoder && t.shape.len() == 1 && matches!(dtype, DType::F16 | DType::BF16) {
                widened = widened.saturating_add(GpuTensor::padded_bytes(t.numel(), DType::F32));
            }
        }
    }
    let (kv_cache, activations, max_context, prefill) = match config {
        ModelConfig::Decoder(c) => decoder_runtime(c, opts, &mut tally)?,
        ModelConfig::Bert(c) => {
            let t = opts.prefill_tokens.unwrap_or(c.max_position_embeddings).max(1);
            let (h, ff) = (c.hidden_size, c.intermediate_size);
            let hint = "reduce the batch × sequence length";
            // hidden, attn_out, attn_norm, q, k, v, ctx, ffn_out: [t, h]; ffn_hidden: [t, ff].
            let act = [
                tally
                    .buffer("bert.hidden", mul(&[t, h]), DType::F32, hint)?
                    .saturating_mul(8),
                tally.buffer("bert.ffn_hidden", mul(&[t, ff]), DType::F32, hint)?,
                pad(t as u64, DType::U32).saturating_mul(2),
            ]
            .iter()
            .fold(0u64, |a, &b| a.saturating_add(b));
            (0, act, 0, t)
        }
    };
    let total = [weights, widened, kv_cache, activations]
        .iter()
        .fold(0u64, |a, &b| a.saturating_add(b));
    let est = Estimate {
        weights,
        widened,
        kv_cache,
        activations,
        total,
        download,
        largest_buffer: tally.largest,
        split,
        skipped,
        max_context,
        prefill_tokens: prefill,
    };
    est.check_budget(limits)?;
    Ok(est)
}

/// KV cache and activation bytes of a Llama-style decoder (as `models::llama` allocates them).
fn decoder_runtime(c: &DecoderConfig, opts: &EstimateOptions, tally: &mut Tally) -> Result<(u64, u64, usize, usize)> {
    let ctx = opts.max_context.min(c.context_limit()).max(1);
    let t = opts.prefill_tokens.unwrap_or(ctx).clamp(1, ctx);
    let (h, nh, nkv, hd, ff, v) = (
        c.hidden_size,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim,
        c.intermediate_size,
        c.vocab_size,
    );
    let kv_hint = format!("the KV cache of one layer for {ctx} tokens; reduce max_context or use an int8 cache");
    let kv_dt = match opts.kv_dtype {
        KvDType::F32 => DType::F32,
        KvDType::F16 => DType::F16,
        KvDType::Int8 => DType::I8,
    };
    let kv = tally.buffer("kv_cache.k", mul(&[ctx, nkv, hd]), kv_dt, &kv_hint)?;
    let scales = match opts.kv_dtype {
        KvDType::Int8 => pad(mul(&[ctx, nkv.saturating_add(1) / 2 * 2]), DType::F16),
        _ => pad(1, DType::F32),
    };
    let kv_cache = (c.num_hidden_layers as u64)
        .saturating_mul(2)
        .saturating_mul(kv.saturating_add(scales));
    let hint = format!("activations for a {t}-token prefill; pass fewer prefill_tokens");
    let z = |tally: &mut Tally, name: &str, n: u64| tally.buffer(name, n, DType::F32, &hint);
    let parts = [
        z(tally, "x", mul(&[t, h]))?.saturating_mul(2),
        // q, attn and the normed q (Qwen3 / Gemma q_norm); k, v and the normed k.
        z(tally, "q", mul(&[t, nh, hd]))?.saturating_mul(3),
        z(tally, "k", mul(&[t, nkv, hd]))?.saturating_mul(3),
        z(tally, "up", mul(&[t, ff]))?.saturating_mul(2),
        pad(t as u64, DType::U32),
        z(
            tally,
            "decode partials",
            mul(&[nh, ctx.div_ceil(64).max(1), hd.saturating_add(4)]),
        )?,
        pad(h as u64, DType::F32).saturating_mul(2),
        tally.buffer("logits", v as u64, DType::F32, "the logits of one token")?,
    ];
    let act = parts.iter().fold(0u64, |a, &b| a.saturating_add(b));
    Ok((kv_cache, act, ctx, t))
}

/// Estimate a GGUF decoder from the header its load uses (before any weight is read): the
/// stored tensor bytes (quantised blocks are uploaded as stored), the token embedding once more
/// as the dense f16 table the lookup reads when it is quantised, and the KV cache and
/// activations of `cfg`. Checked against `limits` as [`estimate`] is.
pub fn estimate_gguf(
    header: &crate::gguf::GgufHeader,
    cfg: &DecoderConfig,
    opts: &EstimateOptions,
    limits: &DeviceLimits,
) -> Result<Estimate> {
    let mut tally = Tally {
        limits,
        largest: (String::new(), 0),
    };
    let mut weights = 0u64;
    let mut download = 0u64;
    for t in &header.tensors {
        download = download.saturating_add(t.size);
        weights = weights.saturating_add(t.size.div_ceil(16).max(1) * 16);
        tally.note(&t.name, t.size);
        let float = matches!(t.ggml_type.name().as_str(), "F32" | "F16" | "BF16");
        if t.name == "token_embd.weight" && !float {
            let n = t.dims.iter().fold(1u64, |a, &d| a.saturating_mul(d));
            weights = weights.saturating_add(pad(n, DType::F16));
        }
    }
    let (kv_cache, activations, max_context, prefill) = decoder_runtime(cfg, opts, &mut tally)?;
    let total = [weights, kv_cache, activations]
        .iter()
        .fold(0u64, |a, &b| a.saturating_add(b));
    let est = Estimate {
        weights,
        widened: 0,
        kv_cache,
        activations,
        total,
        download,
        largest_buffer: tally.largest,
        split: Vec::new(),
        skipped: Vec::new(),
        max_context,
        prefill_tokens: prefill,
    };
    est.check_budget(limits)?;
    Ok(est)
}

/// Read `config.json` and the checkpoint headers from `source` (small reads, no weights) and
/// estimate. The JS engine calls this before `load_weights`.
pub async fn estimate_source<S: ByteSource>(
    source: &S,
    opts: &EstimateOptions,
    limits: &DeviceLimits,
) -> Result<Estimate> {
    let config = ModelConfig::load(source).await?;
    let headers = read_headers(source).await?;
    estimate(&config, &headers, opts, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::safetensors::parse_header;

    fn header(entries: &[(&str, &str, &[usize])]) -> (String, Header) {
        let mut off = 0u64;
        let items: Vec<String> = entries
            .iter()
            .map(|(n, d, s)| {
                let size: u64 = match *d {
                    "F32" | "I32" => 4,
                    "F16" | "BF16" => 2,
                    "I64" => 8,
                    _ => 1,
                };
                let len = size * s.iter().product::<usize>() as u64;
                let e = format!(
                    r#""{n}":{{"dtype":"{d}","shape":{s:?},"data_offsets":[{off},{}]}}"#,
                    off + len
                );
                off += len;
                e
            })
            .collect();
        let json = format!("{{{}}}", items.join(","));
        (
            "model.safetensors".into(),
            parse_header("model.safetensors", json.as_bytes(), None).unwrap(),
        )
    }

    fn decoder(layers: usize, h: usize, ff: usize, v: usize, ctx: usize) -> ModelConfig {
        let json = format!(
            r#"{{"model_type":"llama","vocab_size":{v},"hidden_size":{h},"intermediate_size":{ff},
            "num_hidden_layers":{layers},"num_attention_heads":4,"num_key_value_heads":2,
            "max_position_embeddings":{ctx},"rms_norm_eps":1e-5}}"#
        );
        ModelConfig::parse("config.json", json.as_bytes()).unwrap()
    }

    const BIG: DeviceLimits = DeviceLimits {
        max_buffer_size: 1 << 40,
        max_storage_binding: 1 << 40,
        budget: None,
    };

    #[test]
    fn decoder_parts_add_up() {
        // h 64, 4 heads of 16, 2 kv heads; 1 layer; vocab 100; ff 128; context 32.
        let cfg = decoder(1, 64, 128, 100, 32);
        let hs = [header(&[
            ("model.embed_tokens.weight", "BF16", &[100, 64]),
            ("model.layers.0.input_layernorm.weight", "BF16", &[64]),
            ("model.layers.0.mlp.up_proj.weight", "BF16", &[128, 64]),
            ("position_ids", "I64", &[32]),
        ])];
        let opts = EstimateOptions {
            max_context: 1000,
            ..Default::default()
        };
        let e = estimate(&cfg, &hs, &opts, &BIG).unwrap();
        assert_eq!(e.weights, 12800 + 128 + 16384);
        assert_eq!(e.widened, 256, "one f32 copy of the bf16 norm");
        assert_eq!(e.download, 12800 + 128 + 16384 + 256);
        assert_eq!(e.skipped, vec!["position_ids"]);
        assert_eq!(e.max_context, 32, "capped by max_position_embeddings");
        // K and V: 32 tokens × 2 heads × 16 × f16 = 2048 bytes each, + 16-byte scale stand-ins.
        assert_eq!(e.kv_cache, 2 * (2048 + 16));
        let t = 32u64;
        let act = 4 * (2 * t * 64 + 3 * t * 64 + 3 * t * 32 + 2 * t * 128) + t * 4 + 4 * 4 * 20 + 2 * 256 + 400;
        assert_eq!(e.activations, act);
        assert_eq!(e.total, e.weights + e.widened + e.kv_cache + e.activations);
        assert_eq!(e.largest_buffer, ("model.layers.0.mlp.up_proj.weight".into(), 16384));
        assert!(e.to_json().contains("\"kv_cache\":4128"), "{}", e.to_json());

        // An int8 cache is a quarter of f32 plus scales.
        let i8 = EstimateOptions {
            kv_dtype: KvDType::Int8,
            ..opts.clone()
        };
        assert_eq!(estimate(&cfg, &hs, &i8, &BIG).unwrap().kv_cache, 2 * (1024 + 128));
        // Fewer prefill tokens: smaller activations.
        let short = EstimateOptions {
            prefill_tokens: Some(1),
            ..opts
        };
        assert!(estimate(&cfg, &hs, &short, &BIG).unwrap().activations < act / 10);
    }

    #[test]
    fn over_budget_names_the_parts() {
        let cfg = decoder(1, 64, 128, 100, 32);
        let hs = [header(&[("model.embed_tokens.weight", "F32", &[100, 64])])];
        let fits = estimate(&cfg, &hs, &EstimateOptions::default(), &BIG).unwrap();
        let limits = DeviceLimits {
            budget: Some(fits.total - 1),
            ..BIG
        };
        match estimate(&cfg, &hs, &EstimateOptions::default(), &limits) {
            Err(Error::ModelTooLarge {
                needed,
                limit: "memory budget",
                available,
                detail,
            }) => {
                assert_eq!((needed, available), (fits.total, fits.total - 1));
                assert!(
                    detail.contains("KV cache") && detail.contains("weights 25600"),
                    "{detail}"
                );
            }
            other => panic!("expected ModelTooLarge, got {other:?}"),
        }
        let limits = DeviceLimits {
            budget: Some(fits.total),
            ..BIG
        };
        assert!(estimate(&cfg, &hs, &EstimateOptions::default(), &limits).is_ok());
    }

    #[test]
    fn big_tensors_split_or_fail() {
        let cfg = decoder(1, 64, 128, 100, 32);
        let small = DeviceLimits {
            max_buffer_size: 4096,
            max_storage_binding: 1 << 20,
            budget: None,
        };
        // [100, 64] f32 = 25600 bytes: 16 rows (4096 bytes) per part → 7 parts.
        let hs = [header(&[("model.embed_tokens.weight", "F32", &[100, 64])])];
        let opts = EstimateOptions {
            max_context: 8,
            prefill_tokens: Some(1),
            ..Default::default()
        };
        let e = estimate(&cfg, &hs, &opts, &small).unwrap();
        assert_eq!(e.split, vec!["model.embed_tokens.weight"]);
        assert_eq!(e.weights, 6 * 4096 + 4 * 256);
        // A 1-D tensor over the limit cannot be split.
        let hs = [header(&[("model.norm.weight", "F32", &[2000])])];
        match estimate(&cfg, &hs, &opts, &small) {
            Err(Error::ModelTooLarge {
                limit: "maxBufferSize",
                available: 4096,
                detail,
                ..
            }) => {
                assert!(
                    detail.contains("model.norm.weight") && detail.contains("cannot be split"),
                    "{detail}"
                )
            }
            other => panic!("expected ModelTooLarge, got {other:?}"),
        }
        // The KV cache of one layer over the binding limit, found from the config alone.
        let cfg = decoder(1, 64, 128, 100, 1 << 20);
        let tight = DeviceLimits {
            max_buffer_size: 1 << 30,
            max_storage_binding: 1 << 20,
            budget: None,
        };
        let opts = EstimateOptions {
            max_context: 1 << 20,
            prefill_tokens: Some(1),
            ..Default::default()
        };
        match estimate(&cfg, &[], &opts, &tight) {
            Err(Error::ModelTooLarge {
                limit: "maxStorageBufferBindingSize",
                needed,
                detail,
                ..
            }) => {
                assert_eq!(needed, (1u64 << 20) * 2 * 16 * 2);
                assert!(
                    detail.contains("KV cache") && detail.contains("max_context"),
                    "{detail}"
                );
            }
            other => panic!("expected ModelTooLarge, got {other:?}"),
        }
        // A user-set part limit splits more.
        let hs = [header(&[("model.embed_tokens.weight", "F32", &[100, 64])])];
        let opts = EstimateOptions {
            max_context: 8,
            prefill_tokens: Some(1),
            max_part_bytes: Some(1024),
            ..Default::default()
        };
        assert_eq!(estimate(&cfg, &hs, &opts, &BIG).unwrap().largest_buffer.1, 1024);
    }

    #[test]
    fn bert_activations_scale_with_tokens() {
        let json = r#"{"model_type":"bert","vocab_size":100,"hidden_size":32,"num_hidden_layers":1,
            "num_attention_heads":2,"intermediate_size":64,"max_position_embeddings":16}"#;
        let cfg = ModelConfig::parse("config.json", json.as_bytes()).unwrap();
        let hs = [header(&[("embeddings.word_embeddings.weight", "F32", &[100, 32])])];
        let e = estimate(&cfg, &hs, &EstimateOptions::default(), &BIG).unwrap();
        assert_eq!((e.kv_cache, e.widened, e.prefill_tokens), (0, 0, 16));
        assert_eq!(e.activations, 8 * 16 * 32 * 4 + 16 * 64 * 4 + 2 * 64);
    }
}
