//! Llama-family decoders (`llama`, `qwen2`, `qwen3`, `gemma3`) from a single `.gguf` file: hyper-parameters,
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
use crate::load::config::{DecoderArch, DecoderConfig, MlpAct, RopeScaling};
use crate::load::gguf::{float_dtype, load_tensors, read_header, TensorPlan};
use crate::load::source::ByteSource;
use crate::load::{LoadOptions, Progress};
use crate::models::llama::{Llama, LlamaOptions};
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

/// The decoder configuration from a GGUF header (a file with `rope_freqs.weight` is refused:
/// see [`decoder_config_with_freqs`]).
pub fn decoder_config(header: &GgufHeader) -> Result<DecoderConfig> {
    decoder_config_with_freqs(header, None)
}

/// The Llama 3 scaling whose per-pair frequency divisors llama.cpp writes as `rope_freqs.weight`
/// (`inv_freq / factors[i]` is the scaled frequency), when `factors` are those of Llama 3's
/// formula with low / high frequency factors 1 / 4 and an original context of 8192 (every
/// Llama 3.1 / 3.2 / 3.3) or `original` (the file's `rope.scaling.original_context_length`):
/// within 1e-3 relative for every pair.
pub fn llama3_from_freq_factors(factors: &[f32], theta: f64, rot: usize, original: Option<f64>) -> Option<RopeScaling> {
    let factor = f64::from(factors.iter().copied().fold(f32::NAN, f32::max));
    if factors.len() != rot / 2 || !(factor.is_finite() && factor >= 1.0) {
        return None;
    }
    let unscaled = crate::ops::rope::inv_freq(theta, rot, RopeScaling::None);
    [original, Some(8192.0)].into_iter().flatten().find_map(|ctx| {
        let s = RopeScaling::Llama3 {
            factor,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: ctx,
        };
        let fits = unscaled.iter().zip(factors).all(|(&f, &got)| {
            let want = f / s.apply(f);
            (want - f64::from(got)).abs() <= 1e-3 * want
        });
        fits.then_some(s)
    })
}

/// [`decoder_config`] with the contents of `rope_freqs.weight` when the file has it: accepted
/// when they are Llama 3's scaling ([`llama3_from_freq_factors`]), refused otherwise.
pub fn decoder_config_with_freqs(header: &GgufHeader, rope_freqs: Option<&[f32]>) -> Result<DecoderConfig> {
    let hp = header.hparams()?;
    let bad = |detail: String| Error::BadModelFile {
        file: header.file.clone(),
        detail,
    };
    let unsupported = |field: String, value: String, supported: &str| Error::UnsupportedConfig {
        file: header.file.clone(),
        field,
        value,
        supported: supported.to_string(),
    };
    let (arch, qkv_bias, qk_norm) = match hp.architecture.as_str() {
        "llama" => (DecoderArch::Llama, false, false),
        "qwen2" => (DecoderArch::Qwen2, true, false),
        "qwen3" => (DecoderArch::Qwen3, false, true),
        "gemma3" => (DecoderArch::Gemma3, false, true),
        a => {
            return Err(unsupported(
                "general.architecture".into(),
                format!("'{a}'"),
                "llama, qwen2, qwen3, gemma3",
            ))
        }
    };
    if hp.rope_dimension_count != hp.head_dim() {
        return Err(bad(format!(
            "partial rotary ({} of {} dims) is not supported",
            hp.rope_dimension_count,
            hp.head_dim()
        )));
    }
    let a = &hp.architecture;
    let rope_scaling = match header.get_str(&format!("{a}.rope.scaling.type"))? {
        None | Some("none") => RopeScaling::None,
        Some("linear") => {
            let key = format!("{a}.rope.scaling.factor");
            let factor = header
                .get_f32(&key)?
                .ok_or_else(|| bad(format!("rope scaling 'linear' without '{key}'")))?;
            RopeScaling::Linear {
                factor: f64::from(factor),
            }
        }
        Some(t) => {
            return Err(unsupported(
                format!("{a}.rope.scaling.type"),
                format!("'{t}'"),
                "none, linear",
            ))
        }
    };
    rope_scaling.check(&header.file)?;
    // Llama 3.x files carry their frequency scaling as per-pair divisors in this tensor.
    let rope_scaling = match (header.tensors.iter().any(|t| t.name == "rope_freqs.weight"), rope_freqs) {
        (false, _) => rope_scaling,
        (true, Some(f)) if rope_scaling == RopeScaling::None => {
            let key = format!("{a}.rope.scaling.original_context_length");
            let original = match header.get_u64(&key) {
                Ok(v) => v.map(|v| v as f64),
                Err(_) => header.get_f32(&key)?.map(f64::from),
            };
            let theta = f64::from(hp.rope_freq_base);
            llama3_from_freq_factors(f, theta, hp.rope_dimension_count, original).ok_or_else(|| {
                unsupported(
                    "rope_freqs.weight".into(),
                    "per-pair factors".into(),
                    "those of Llama 3's rope scaling",
                )
            })?
        }
        (true, _) => {
            return Err(unsupported(
                "rope_freqs.weight".into(),
                "present".into(),
                "Llama 3 factors, read with the data",
            ))
        }
    };
    let tok = header.tokenizer()?;
    let embd = header.tensor("token_embd.weight")?;
    let vocab = hp.vocab_size.unwrap_or(embd.rows_cols().0 as usize);
    let mut c = DecoderConfig {
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
        rope_scaling,
        qk_norm,
        norm_plus_one: false,
        sandwich_norms: false,
        mlp_act: MlpAct::Silu,
        embed_scale: None,
        attn_scale: None,
        layer_windows: Vec::new(),
        rope_local_theta: None,
    };
    if arch == DecoderArch::Gemma3 {
        gemma3(header, &mut c)?;
    }
    crate::load::sanity::check_decoder(&header.file, &c)?;
    Ok(c)
}

/// llama.cpp's fixed values for `gemma3` files (its `llama_model::load_hparams`): every sixth
/// layer is global unless `gemma3.attention.sliding_window_pattern` says otherwise, and local
/// layers use RoPE base 10000, unscaled.
pub const GEMMA3_SLIDING_WINDOW_PATTERN: usize = 6;
/// See [`GEMMA3_SLIDING_WINDOW_PATTERN`].
pub const GEMMA3_LOCAL_ROPE_BASE: f64 = 10_000.0;

/// The Gemma 3 parts of a `gemma3` file's config: sandwich norms whose weights are stored with
/// Gemma's 1 already added (llama.cpp's converter adds it, so it is not added again),
/// GELU(tanh)-gated MLP, embeddings · √hidden, `query_pre_attn_scalar` as llama.cpp derives it
/// (key_length, or hidden / heads for the 62-layer 27B), sliding-window local layers.
fn gemma3(header: &GgufHeader, c: &mut DecoderConfig) -> Result<()> {
    let key = |k: &str| format!("gemma3.{k}");
    for k in ["final_logit_softcapping", "attn_logit_softcapping"] {
        if let Some(v) = header.get_f32(&key(k))?.filter(|&v| v != 0.0) {
            return Err(Error::UnsupportedConfig {
                file: header.file.clone(),
                field: key(k),
                value: v.to_string(),
                supported: "absent or 0".into(),
            });
        }
    }
    let window_key = key("attention.sliding_window");
    let window = header.get_u64(&window_key)?.ok_or_else(|| Error::BadModelFile {
        file: header.file.clone(),
        detail: format!("metadata '{window_key}' is missing"),
    })?;
    let pattern = header
        .get_u64(&key("attention.sliding_window_pattern"))?
        .map_or(GEMMA3_SLIDING_WINDOW_PATTERN, |p| p as usize);
    let local = |i: usize| pattern > 0 && i % pattern < pattern - 1;
    c.layer_windows = (0..c.num_hidden_layers)
        .map(|i| local(i).then_some(window as usize))
        .collect();
    c.rope_local_theta = Some(GEMMA3_LOCAL_ROPE_BASE);
    c.norm_plus_one = false;
    c.sandwich_norms = true;
    c.mlp_act = MlpAct::GeluTanh;
    c.hidden_act = "gelu_pytorch_tanh".into();
    c.embed_scale = Some((c.hidden_size as f32).sqrt());
    let scalar = match c.num_hidden_layers {
        62 => c.hidden_size / c.num_attention_heads.max(1),
        _ => c.head_dim,
    };
    c.attn_scale = Some((scalar as f64).powf(-0.5));
    Ok(())
}

/// Kernel-readable projections to dequantise at load so that a layer's q/k/v and its gate/up
/// are each of one weight type, which the fused decode layer needs (`FusedLayer::new` joins
/// them): where such a group mixes types read by a kernel (Q8_0 / Q4_0 / Q4_1 / Q4_K) with
/// types dequantised anyway (Q5_0, Q6_K, ...), the kernel-readable members are dequantised too,
/// if that at most doubles the group's dense bytes. Gemma-3-270M Q4_K_M: q / k / gate / up are
/// Q5_0, v is Q8_0 in 9 of 18 layers (+1.4 MB as f16), so the model decodes fused; Llama
/// Q4_K_M files (q / k Q4_K, v Q6_K) keep their quantised q / k (unfused).
fn dequantise_for_fusion(header: &GgufHeader) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let layers = header
        .tensors
        .iter()
        .filter_map(|t| t.name.strip_prefix("blk.")?.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |n| n + 1);
    for i in 0..layers {
        for group in [&["attn_q", "attn_k", "attn_v"][..], &["ffn_gate", "ffn_up"][..]] {
            let members: Vec<&TensorInfo> = group
                .iter()
                .filter_map(|g| {
                    let name = format!("blk.{i}.{g}.weight");
                    header.tensors.iter().find(|t| t.name == name)
                })
                .collect();
            let kernel = |t: &TensorInfo| QuantType::from_ggml(t.ggml_type).is_some();
            let dequantised = |t: &TensorInfo| float_dtype(t.ggml_type).is_none() && !kernel(t);
            let elements = |f: &dyn Fn(&TensorInfo) -> bool| -> u64 {
                members.iter().filter(|t| f(t)).map(|t| t.elements()).sum()
            };
            let (k, d) = (elements(&kernel), elements(&dequantised));
            let no_float = members.iter().all(|t| kernel(t) || dequantised(t));
            if no_float && k > 0 && d > 0 && k <= d {
                out.extend(members.iter().filter(|t| kernel(t)).map(|t| t.name.clone()));
            }
        }
    }
    out
}

/// What to make of each tensor of a llama-family file (`densify`: kernel-readable tensors to
/// dequantise anyway, [`dequantise_for_fusion`]).
fn plan(
    cfg: &DecoderConfig,
    permuted: bool,
    dense: DType,
    limit: u64,
    densify: &std::collections::BTreeSet<String>,
    info: &TensorInfo,
) -> Option<TensorPlan> {
    let mut p = TensorPlan::default_for(info, dense);
    let n = info.name.as_str();
    if densify.contains(n) {
        p.quant = false;
        p.dense = Some(dense);
    }
    if n == "token_embd.weight" {
        // Dense for the lookup; also quantised for a tied lm_head when a kernel reads it. A
        // table over the binding limit is held as f32 row blocks (gathered by buffer copies).
        let d = float_dtype(info.ggml_type).unwrap_or(dense);
        let over = GpuTensor::padded_bytes(info.elements() as usize, d) > limit;
        p.dense = Some(if over { DType::F32 } else { d });
        p.quant = cfg.tie_word_embeddings && QuantType::from_ggml(info.ggml_type).is_some();
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

/// Load a llama / qwen2 / qwen3 / gemma3 GGUF file: the decoder and its tokenizer.
pub async fn load_llama_gguf<S: ByteSource>(
    gpu: &Gpu,
    source: &S,
    file: &str,
    opts: &LlamaOptions,
    gguf: &GgufOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<GgufLlama> {
    let (header, header_requests) = read_header(source, file).await?;
    // llama.cpp's Llama 3 files: the frequency factors (rot / 2 f32 values) are read up front.
    let freqs = match header.tensors.iter().find(|t| t.name == "rope_freqs.weight") {
        Some(t) if t.ggml_type == crate::gguf::GgmlType::F32 && t.size <= 4096 => {
            let (bytes, _) = source.read_range(file, t.offset, t.offset + t.size).await?;
            Some(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect::<Vec<f32>>(),
            )
        }
        _ => None,
    };
    let cfg = decoder_config_with_freqs(&header, freqs.as_deref())?;
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
    let dense = gguf.dense;
    let limit = crate::load::stream::part_limit(gpu, &gguf.load);
    let densify = dequantise_for_fusion(&header);
    let plan_fn = |i: &TensorInfo| plan(&cfg, permuted, dense, limit, &densify, i);
    let w = load_tensors(gpu, source, file, header, &gguf.load, &plan_fn, progress).await?;
    let weight_bytes = w.gpu_bytes();

    let model = Llama::from_weights(gpu, cfg, &w, opts, &mut notes).await?;
    let mut warnings = w.warnings.clone();
    warnings.extend(notes);
    drop(w);
    Ok(GgufLlama {
        model,
        tokenizer,
        warnings,
        header_requests,
        weight_bytes,
        name,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_is_recovered_from_rope_freqs() {
        let s = RopeScaling::Llama3 {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        };
        // What llama.cpp's converter writes for Llama 3.2 (theta 5e5, head_dim 64).
        let unscaled = crate::ops::rope::inv_freq(5e5, 64, RopeScaling::None);
        let factors: Vec<f32> = unscaled.iter().map(|&f| (f / s.apply(f)) as f32).collect();
        assert!(factors.iter().any(|&f| f > 1.0 && f < 32.0), "a blended pair");
        assert_eq!(llama3_from_freq_factors(&factors, 5e5, 64, None), Some(s));
        // Other factors are not taken for Llama 3's.
        let mut off = factors.clone();
        off[20] *= 1.5;
        assert_eq!(llama3_from_freq_factors(&off, 5e5, 64, None), None);
        assert_eq!(llama3_from_freq_factors(&factors[..31], 5e5, 64, None), None);
    }
}
