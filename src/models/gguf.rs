//! Llama-family decoders (`llama`, `qwen2`) from a single `.gguf` file: hyper-parameters,
//! tokenizer and chat template from the metadata, weights streamed by
//! [`crate::load::gguf`] — projections kept as quantised blocks where a kernel reads them.
//!
//! ```ignore
//! let m = load_llama_gguf(&gpu, &FetchSource::new("/models/"), "SmolLM2.Q4_1.gguf",
//!                         &LlamaOptions::default(), &GgufOptions::default(), &mut |p| show(p)).await?;
//! let ids = m.tokenizer.encode_chat(&[ChatMessage::new("user", "Hi")], true)?;
//! ```
//!
//! Per tensor: Q8_0 / Q4_0 / Q4_1 / Q4_K projections stay as stored (quant GEMV / matmul);
//! other quantised types (Q5_0, Q5_1, Q5_K, Q6_K) are dequantised at load to
//! [`GgufOptions::dense`] (a warning each); the token embedding is dequantised for the lookup
//! and, when the lm_head is tied to it and its type has a kernel, also kept quantised for the
//! lm_head GEMV. `llama` files have llama.cpp's q/k row permutation undone while streaming (one
//! head of rows at a time, blocks moved as bytes), so the half-split RoPE kernels serve both
//! formats unchanged.

use crate::error::{Error, Result};
use crate::gguf::{GgufHeader, TensorInfo};
use crate::gpu::{DType, Gpu, GpuTensor};
use crate::load::config::{DecoderArch, DecoderConfig};
use crate::load::gguf::{float_dtype, load_tensors, read_header, GgufWeights, TensorPlan};
use crate::load::source::ByteSource;
use crate::load::{LoadOptions, Progress};
use crate::models::llama::{as_f32, Embedding, Layer, Linear, Llama, LlamaOptions};
use crate::ops::kv_cache::KvCache;
use crate::ops::quant::QuantType;
use crate::tokenizer::Tokenizer;

pub use crate::load::gguf::is_gguf;

/// GGUF-specific load options.
#[derive(Debug, Clone)]
pub struct GgufOptions {
    /// The dtype of tensors dequantised at load (default f16: half of f32's memory, read
    /// without shader-f16; f32 keeps the dequantised values exact).
    pub dense: DType,
    /// Staging size and cancellation, as for safetensors.
    pub load: LoadOptions,
    /// Check the memory estimate ([`crate::load::estimate::estimate_gguf`]) against these
    /// limits before any weight is read (`None`: no check).
    pub limits: Option<crate::load::estimate::DeviceLimits>,
}

impl Default for GgufOptions {
    fn default() -> Self {
        GgufOptions {
            dense: DType::F16,
            load: LoadOptions::default(),
            limits: None,
        }
    }
}

/// A model loaded from GGUF, with what came with it.
pub struct GgufLlama {
    /// The decoder.
    pub model: Llama,
    /// The tokenizer and chat template from the metadata.
    pub tokenizer: Tokenizer,
    /// Tensors dequantised at load (and other notes), one line each.
    pub warnings: Vec<String>,
    /// Requests made to read the header.
    pub header_requests: usize,
    /// GPU bytes of the weights.
    pub weight_bytes: u64,
    /// `general.name`, when present.
    pub name: Option<String>,
}

/// The decoder configuration from a GGUF header.
pub fn decoder_config(header: &GgufHeader) -> Result<DecoderConfig> {
    let hp = header.hparams()?;
    let bad = |detail: String| Error::BadModelFile {
        file: header.file.clone(),
        detail,
    };
    let (arch, qkv_bias) = match hp.architecture.as_str() {
        "llama" => (DecoderArch::Llama, false),
        "qwen2" => (DecoderArch::Qwen2, true),
        a => {
            return Err(bad(format!(
                "architecture '{a}' is not supported (llama, qwen2)"
            )))
        }
    };
    if hp.rope_dimension_count != hp.head_dim() {
        return Err(bad(format!(
            "partial rotary ({} of {} dims) is not supported",
            hp.rope_dimension_count,
            hp.head_dim()
        )));
    }
    let tok = header.tokenizer()?;
    let embd = header.tensor("token_embd.weight")?;
    let vocab = hp.vocab_size.unwrap_or(embd.rows_cols().0 as usize);
    let c = DecoderConfig {
        arch,
        vocab_size: vocab,
        hidden_size: hp.embedding_length,
        intermediate_size: hp.feed_forward_length,
        num_hidden_layers: hp.block_count,
        num_attention_heads: hp.head_count,
        num_key_value_heads: hp.head_count_kv,
        head_dim: hp.head_dim(),
        rms_norm_eps: f64::from(hp.rms_eps),
        rope_theta: f64::from(hp.rope_freq_base),
        rope_parameters: None,
        max_position_embeddings: hp.context_length,
        tie_word_embeddings: !header.tensors.iter().any(|t| t.name == "output.weight"),
        qkv_bias,
        hidden_act: "silu".into(),
        bos_token_id: tok.bos,
        eos_token_ids: tok.eos.into_iter().collect(),
        pad_token_id: tok.padding,
        dtype: None,
        sliding_window: None,
    };
    crate::load::sanity::check_decoder(&header.file, &c)?;
    Ok(c)
}

/// What to make of each tensor of a llama-family file.
fn plan(
    cfg: &DecoderConfig,
    permuted: bool,
    dense: DType,
    limit: u64,
    info: &TensorInfo,
) -> Option<TensorPlan> {
    let mut p = TensorPlan::default_for(info, dense);
    let n = info.name.as_str();
    if n == "token_embd.weight" {
        // Dense for the lookup; also quantised for a tied lm_head when a kernel reads it. A
        // table over the binding limit is held as f32 row blocks (gathered by buffer copies).
        let d = float_dtype(info.ggml_type).unwrap_or(dense);
        let over = GpuTensor::padded_bytes(info.elements() as usize, d) > limit;
        p.dense = Some(if over { DType::F32 } else { d });
        p.quant = cfg.tie_word_embeddings && QuantType::from_ggml(info.ggml_type).is_some();
    } else if n == "rope_freqs.weight" {
        return None;
    }
    if permuted {
        if n.ends_with(".attn_q.weight") || n.ends_with(".attn_q.bias") {
            p.unpermute_heads = Some(cfg.num_attention_heads);
        } else if n.ends_with(".attn_k.weight") || n.ends_with(".attn_k.bias") {
            p.unpermute_heads = Some(cfg.num_key_value_heads);
        }
    }
    Some(p)
}

fn linear(w: &GgufWeights, name: &str) -> Result<Linear> {
    if w.has_quant(name) {
        Ok(Linear::Quant(w.quant(name)?.clone()))
    } else {
        Ok(Linear::Dense(w.dense(name)?.clone()))
    }
}

/// A weight that may be held as row blocks (the lm_head of a large vocabulary).
fn linear_parts(w: &GgufWeights, name: &str) -> Result<Vec<Linear>> {
    if w.has_quant(name) {
        Ok(w.quant_parts(name)?
            .iter()
            .cloned()
            .map(Linear::Quant)
            .collect())
    } else {
        Ok(w.dense_parts(name)?
            .iter()
            .cloned()
            .map(Linear::Dense)
            .collect())
    }
}

/// Load a llama / qwen2 GGUF file: the decoder and its tokenizer.
pub async fn load_llama_gguf<S: ByteSource>(
    gpu: &Gpu,
    source: &S,
    file: &str,
    opts: &LlamaOptions,
    gguf: &GgufOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<GgufLlama> {
    let (header, header_requests) = read_header(source, file).await?;
    let cfg = decoder_config(&header)?;
    if let Some(limits) = &gguf.limits {
        let eo = crate::load::estimate::EstimateOptions {
            max_context: opts.max_context,
            kv_dtype: opts.kv_cache,
            prefill_tokens: None,
            max_part_bytes: gguf.load.max_part_bytes,
        };
        crate::load::estimate::estimate_gguf(&header, &cfg, &eo, limits)?;
    }
    let tokenizer = Tokenizer::from_gguf(&header)?;
    let name = header.get_str("general.name")?.map(str::to_string);
    let permuted = header.qk_rows_permuted()?;
    let mut notes = Vec::new();
    let arch = cfg_arch(&header)?;
    if let Some(t) = header.get_str(&format!("{arch}.rope.scaling.type"))? {
        if t != "none" {
            notes.push(format!("rope scaling '{t}' is ignored (plain RoPE)"));
        }
    }
    let dense = gguf.dense;
    let limit = crate::load::safetensors::part_limit(gpu, &gguf.load);
    let plan_fn = |i: &TensorInfo| plan(&cfg, permuted, dense, limit, i);
    let w = load_tensors(gpu, source, file, header, &gguf.load, &plan_fn, progress).await?;
    let weight_bytes = w.gpu_bytes();

    let max_ctx = opts
        .max_context
        .min(cfg.max_position_embeddings.max(1))
        .max(1);
    let (nkv, hd) = (cfg.num_key_value_heads, cfg.head_dim);
    let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
    for i in 0..cfg.num_hidden_layers {
        let p = |s: &str| format!("blk.{i}.{s}");
        let bias = |s: &str| -> Result<Option<GpuTensor>> {
            if cfg.qkv_bias {
                Ok(Some(w.dense(&p(s))?.clone()))
            } else {
                Ok(None)
            }
        };
        let (bq, bk, bv) = (
            bias("attn_q.bias")?,
            bias("attn_k.bias")?,
            bias("attn_v.bias")?,
        );
        layers.push(Layer {
            attn_norm: as_f32(gpu, w.dense(&p("attn_norm.weight"))?).await?,
            wq: linear(&w, &p("attn_q.weight"))?,
            wk: linear(&w, &p("attn_k.weight"))?,
            wv: linear(&w, &p("attn_v.weight"))?,
            bq: match bq {
                Some(b) => Some(as_f32(gpu, &b).await?),
                None => None,
            },
            bk: match bk {
                Some(b) => Some(as_f32(gpu, &b).await?),
                None => None,
            },
            bv: match bv {
                Some(b) => Some(as_f32(gpu, &b).await?),
                None => None,
            },
            wo: linear(&w, &p("attn_output.weight"))?,
            ffn_norm: as_f32(gpu, w.dense(&p("ffn_norm.weight"))?).await?,
            w_gate: linear(&w, &p("ffn_gate.weight"))?,
            w_up: linear(&w, &p("ffn_up.weight"))?,
            w_down: linear(&w, &p("ffn_down.weight"))?,
            cache: KvCache::new(
                gpu,
                &format!("blk.{i}.kv_cache"),
                max_ctx,
                nkv,
                hd,
                opts.kv_cache,
            )?,
        });
    }
    let embed = match w.dense_parts("token_embd.weight")? {
        [one] => Embedding::Table(one.clone()),
        parts => {
            notes.push(format!(
                "token_embd.weight held as {} f32 row blocks (over the storage binding limit)",
                parts.len()
            ));
            Embedding::Rows(parts.to_vec())
        }
    };
    let lm_head = linear_parts(
        &w,
        if cfg.tie_word_embeddings {
            "token_embd.weight"
        } else {
            "output.weight"
        },
    )?;
    if lm_head.len() > 1 {
        notes.push(format!(
            "lm_head held as {} row blocks (over the storage binding limit)",
            lm_head.len()
        ));
    }
    let final_norm = as_f32(gpu, w.dense("output_norm.weight")?).await?;
    let mut warnings = w.warnings.clone();
    warnings.extend(notes);
    drop(w);
    let model = Llama::assemble(gpu, cfg, opts, embed, lm_head, final_norm, layers, max_ctx)?;
    Ok(GgufLlama {
        model,
        tokenizer,
        warnings,
        header_requests,
        weight_bytes,
        name,
    })
}

fn cfg_arch(header: &GgufHeader) -> Result<String> {
    Ok(header.architecture()?.to_string())
}

impl Llama {
    /// Load a llama / qwen2 decoder from one `.gguf` file (see [`load_llama_gguf`] for the
    /// tokenizer and the load warnings).
    pub async fn load_gguf<S: ByteSource>(
        gpu: &Gpu,
        source: &S,
        file: &str,
        opts: &LlamaOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Llama> {
        Ok(
            load_llama_gguf(gpu, source, file, opts, &GgufOptions::default(), progress)
                .await?
                .model,
        )
    }
}
