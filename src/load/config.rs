//! `config.json` (BERT encoders; Llama / Qwen2 decoders) and `generation_config.json`.
//!
//! Accepts both the transformers 4 and 5 spellings: `rope_theta` or
//! `rope_parameters.rope_theta` (or `rope_scaling.rope_theta`), `torch_dtype` or `dtype`,
//! `eos_token_id` as a number or a list.

use super::source::ByteSource;
use crate::error::{Error, Result};
pub use crate::ops::rope::RopeScaling;
use serde::Deserialize;
use serde_json::Value;

/// One id or a list of ids (`eos_token_id` is either).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

fn ids(v: Option<OneOrMany>) -> Vec<u32> {
    match v {
        None => Vec::new(),
        Some(OneOrMany::One(i)) => vec![i],
        Some(OneOrMany::Many(v)) => v,
    }
}

/// A BERT-style encoder (BertModel: MiniLM, sentence-transformers, ...).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// FFN width.
    pub intermediate_size: usize,
    /// Activation (`gelu` = erf GELU, `gelu_new` / `gelu_pytorch_tanh` = tanh approximation).
    #[serde(default = "default_gelu")]
    pub hidden_act: String,
    /// Learned positions.
    #[serde(default = "default_512")]
    pub max_position_embeddings: usize,
    /// Token type (segment) vocabulary.
    #[serde(default = "default_2")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    /// Padding id.
    #[serde(default)]
    pub pad_token_id: u32,
    /// `absolute` is the only one supported by the models here.
    #[serde(default = "default_absolute")]
    pub position_embedding_type: String,
    /// `BertModel`, `BertForSequenceClassification` (a cross-encoder), ...
    #[serde(default)]
    pub architectures: Vec<String>,
}

impl BertConfig {
    /// A classification model (a cross-encoder reranker): `BertForSequenceClassification`.
    pub fn is_classifier(&self) -> bool {
        self.architectures
            .iter()
            .any(|a| a.ends_with("ForSequenceClassification"))
    }
}

fn default_gelu() -> String {
    "gelu".into()
}
fn default_512() -> usize {
    512
}
fn default_2() -> usize {
    2
}
fn default_ln_eps() -> f64 {
    1e-12
}
fn default_absolute() -> String {
    "absolute".into()
}

/// Which decoder family (they differ in details such as Qwen2's q/k/v biases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderArch {
    /// Llama (SmolLM2, TinyLlama, Llama 2/3, ...).
    Llama,
    /// Qwen2 / Qwen2.5: biases on the q, k, v projections.
    Qwen2,
    /// Mistral: Llama layout, optional sliding window.
    Mistral,
    /// Qwen3: no q/k/v biases, per-head RMSNorm of q and k (`q_norm`, `k_norm`) before RoPE.
    Qwen3,
    /// Gemma 3 (text): (1 + w) RMSNorms, norms before and after attention and MLP, GELU(tanh)
    /// gated MLP, embeddings scaled by √hidden, q/k norms, sliding-window layers with their own
    /// RoPE base, `query_pre_attn_scalar`.
    Gemma3,
}

/// The gate activation of the gated MLP: `act(gate) · up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlpAct {
    /// SiLU (SwiGLU: Llama, Qwen).
    Silu,
    /// GELU, tanh approximation (GeGLU: Gemma's `gelu_pytorch_tanh`).
    GeluTanh,
}

/// A Llama-style decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// Family.
    pub arch: DecoderArch,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// FFN width.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (GQA); equals the query heads when absent.
    pub num_key_value_heads: usize,
    /// Per-head width; `hidden_size / num_attention_heads` when absent.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// `rope_parameters` / `rope_scaling` as written (type, factor, ...), when present.
    pub rope_parameters: Option<serde_json::Value>,
    /// Context length.
    pub max_position_embeddings: usize,
    /// The output projection is the embedding matrix (no `lm_head.weight`).
    pub tie_word_embeddings: bool,
    /// Biases on the q/k/v projections (always for Qwen2, `attention_bias` for Llama).
    pub qkv_bias: bool,
    /// Activation (`silu`).
    pub hidden_act: String,
    /// Beginning-of-sequence id.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence ids (generation stops on any).
    pub eos_token_ids: Vec<u32>,
    /// Padding id.
    pub pad_token_id: Option<u32>,
    /// Stored dtype (`bfloat16`, `float32`, ...).
    pub dtype: Option<String>,
    /// Sliding-window attention span, when the model uses one. Every layer attends to at most
    /// this many tokens; the loaders cap the context at the window, where windowed and full
    /// attention are the same computation.
    pub sliding_window: Option<usize>,
    /// RoPE frequency scaling (`rope_scaling` / `rope_parameters` type `linear` or `llama3`).
    pub rope_scaling: RopeScaling,
    /// Per-head RMSNorm of q and k before RoPE (Qwen3's, Gemma 3's `q_norm` / `k_norm`).
    pub qk_norm: bool,
    /// Norm weights are stored as `w` and applied as `1 + w` (Gemma; added once at load).
    pub norm_plus_one: bool,
    /// RMSNorm of the attention output and of the MLP output before each residual add (Gemma's
    /// `post_attention_layernorm` / `post_feedforward_layernorm`; the MLP's input norm is then
    /// `pre_feedforward_layernorm`).
    pub sandwich_norms: bool,
    /// The gated MLP's activation.
    pub mlp_act: MlpAct,
    /// Embeddings are multiplied by this (Gemma: √hidden).
    pub embed_scale: Option<f32>,
    /// Attention softmax scale when it is not `1 / √head_dim` (Gemma: `query_pre_attn_scalar^-½`).
    pub attn_scale: Option<f64>,
    /// Per layer, the sliding window of a local layer (`None`: global); empty when no layer is
    /// windowed beyond [`DecoderConfig::sliding_window`]'s context cap (Gemma 3 interleaves).
    pub layer_windows: Vec<Option<usize>>,
    /// RoPE base of the windowed layers (Gemma 3's `rope_local_base_freq`, no scaling).
    pub rope_local_theta: Option<f64>,
}

impl DecoderConfig {
    /// The longest context the model supports as loaded: `max_position_embeddings`, capped by
    /// the sliding window (see [`DecoderConfig::sliding_window`]).
    pub fn context_limit(&self) -> usize {
        let m = self.max_position_embeddings.max(1);
        self.sliding_window.map_or(m, |w| m.min(w.max(1)))
    }
}

#[derive(Deserialize)]
struct RawDecoder {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(alias = "layer_norm_epsilon")]
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_parameters: Option<serde_json::Value>,
    rope_scaling: Option<serde_json::Value>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    hidden_act: Option<String>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
    pad_token_id: Option<u32>,
    #[serde(alias = "torch_dtype")]
    dtype: Option<String>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    layer_types: Option<Vec<String>>,
    partial_rotary_factor: Option<f64>,
    mlp_bias: Option<bool>,
    attn_logit_softcapping: Option<f64>,
    final_logit_softcapping: Option<f64>,
    hidden_activation: Option<String>,
    query_pre_attn_scalar: Option<f64>,
    rope_local_base_freq: Option<f64>,
    #[serde(alias = "_sliding_window_pattern")]
    sliding_window_pattern: Option<usize>,
}

/// The RoPE scaling a `rope_parameters` / `rope_scaling` object asks for; `field` names it in
/// errors. Types other than `default`, `linear` and `llama3` are refused.
pub fn rope_scaling(file: &str, field: &str, v: Option<&Value>) -> Result<RopeScaling> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(RopeScaling::None);
    };
    let bad = |detail: String| Error::BadModelFile {
        file: file.to_string(),
        detail: format!("{field}: {detail}"),
    };
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |k: &str| -> Result<f64> {
        v.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| bad(format!("type '{kind}' needs a number '{k}'")))
    };
    let s = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor: num("factor")? },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        },
        other => {
            return Err(Error::UnsupportedConfig {
                file: file.to_string(),
                field: format!("{field}.rope_type"),
                value: format!("'{other}'"),
                supported: "default, linear, llama3".into(),
            })
        }
    };
    s.check(&format!("{file}: {field}"))?;
    Ok(s)
}

/// A parsed `config.json`.
#[derive(Debug, Clone, PartialEq)]
// Parsed once per load: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum ModelConfig {
    /// BERT encoder.
    Bert(BertConfig),
    /// Llama-style decoder.
    Decoder(DecoderConfig),
}

#[derive(Deserialize)]
struct Kind {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
}

impl ModelConfig {
    /// Read `config.json` from a model directory.
    pub async fn load<S: ByteSource>(source: &S) -> Result<Self> {
        let bytes = source.read_all("config.json").await?;
        Self::parse(&source.locate("config.json"), &bytes)
    }

    /// Parse `config.json` bytes; `file` names it in errors.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Self> {
        let bad = |detail: String| Error::BadModelFile {
            file: file.to_string(),
            detail,
        };
        let kind: Kind = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let model_type = match kind.model_type {
            Some(t) => t,
            None => match kind.architectures.first().map(String::as_str) {
                Some(a) if a.starts_with("Bert") => "bert".into(),
                Some(a) if a.starts_with("Llama") => "llama".into(),
                Some(a) if a.starts_with("Qwen2") => "qwen2".into(),
                Some(a) if a.starts_with("Qwen3") => "qwen3".into(),
                Some(a) if a.starts_with("Gemma3ForCausalLM") => "gemma3_text".into(),
                Some(a) if a.starts_with("Mistral") => "mistral".into(),
                _ => return Err(bad("no model_type and no known architectures".into())),
            },
        };
        let arch = match model_type.as_str() {
            "bert" => {
                let c: BertConfig = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
                check(file, "num_attention_heads", c.num_attention_heads, c.hidden_size)?;
                super::sanity::check_bert(file, &c)?;
                return Ok(ModelConfig::Bert(c));
            }
            "llama" => DecoderArch::Llama,
            "qwen2" => DecoderArch::Qwen2,
            "mistral" => DecoderArch::Mistral,
            "qwen3" => DecoderArch::Qwen3,
            "gemma3_text" => DecoderArch::Gemma3,
            other => {
                return Err(Error::UnsupportedConfig {
                    file: file.to_string(),
                    field: "model_type".into(),
                    value: format!("'{other}'"),
                    supported: "bert, llama, qwen2, qwen3, mistral, gemma3_text".into(),
                })
            }
        };
        let r: RawDecoder = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let unsupported = |field: &str, value: String, supported: &str| Error::UnsupportedConfig {
            file: file.to_string(),
            field: field.to_string(),
            value,
            supported: supported.to_string(),
        };
        // Every field that changes the math is implemented or refused here.
        let (rope, rope_field) = match (r.rope_parameters, r.rope_scaling) {
            (Some(p), _) => (Some(p), "rope_parameters"),
            (None, s) => (s, "rope_scaling"),
        };
        let gemma = arch == DecoderArch::Gemma3;
        // transformers 5 writes Gemma 3's RoPE per layer kind: {"full_attention": {...},
        // "sliding_attention": {...}}; 4 has rope_theta / rope_scaling (global layers) and
        // rope_local_base_freq (local layers, never scaled).
        let per_kind = rope.as_ref().and_then(|v| v.get("full_attention")).is_some();
        let (global_rope, local_rope) = match &rope {
            Some(v) if per_kind => (v.get("full_attention").cloned(), v.get("sliding_attention").cloned()),
            other => (other.clone(), None),
        };
        let global_field = if per_kind {
            format!("{rope_field}.full_attention")
        } else {
            rope_field.to_string()
        };
        let rope_scaling = rope_scaling(file, &global_field, global_rope.as_ref())?;
        if let Some(local) = &local_rope {
            let f = format!("{rope_field}.sliding_attention");
            if self::rope_scaling(file, &f, Some(local))? != RopeScaling::None {
                return Err(unsupported(&format!("{f}.rope_type"), "scaled".into(), "default"));
            }
        }
        let rope_local_theta = match (&local_rope, gemma) {
            (Some(l), _) => Some(l.get("rope_theta").and_then(Value::as_f64).unwrap_or(10_000.0)),
            (None, true) => Some(r.rope_local_base_freq.unwrap_or(10_000.0)),
            (None, false) => None,
        };
        if let Some(f) = r.partial_rotary_factor.filter(|&f| f != 1.0) {
            return Err(unsupported(
                "partial_rotary_factor",
                f.to_string(),
                "1 (RoPE over the whole head)",
            ));
        }
        if let Some(c) = r.attn_logit_softcapping {
            return Err(unsupported("attn_logit_softcapping", c.to_string(), "null"));
        }
        if let Some(c) = r.final_logit_softcapping {
            return Err(unsupported("final_logit_softcapping", c.to_string(), "null"));
        }
        if r.mlp_bias == Some(true) {
            return Err(unsupported("mlp_bias", "true".into(), "false"));
        }
        // Llama's `attention_bias` puts a bias on o_proj too, which the forward does not add.
        let qkv_bias = match (arch, r.attention_bias) {
            (DecoderArch::Qwen2, _) => true,
            (_, Some(true)) => return Err(unsupported("attention_bias", "true".into(), "false")),
            _ => false,
        };
        let (act_field, act) = match (r.hidden_activation, r.hidden_act) {
            (Some(a), _) if gemma => ("hidden_activation", a),
            (_, Some(a)) => ("hidden_act", a),
            (Some(a), None) => ("hidden_activation", a),
            (None, None) => (
                "hidden_act",
                if gemma {
                    "gelu_pytorch_tanh".into()
                } else {
                    "silu".into()
                },
            ),
        };
        let mlp_act = match act.as_str() {
            "silu" | "swish" => MlpAct::Silu,
            "gelu_pytorch_tanh" | "gelu_new" if gemma => MlpAct::GeluTanh,
            _ => {
                return Err(unsupported(
                    act_field,
                    format!("'{act}'"),
                    if gemma { "gelu_pytorch_tanh" } else { "silu" },
                ))
            }
        };
        let rope_theta = r
            .rope_theta
            .or_else(|| {
                global_rope
                    .as_ref()
                    .and_then(|v| v.get("rope_theta"))
                    .and_then(Value::as_f64)
            })
            .unwrap_or(10_000.0);
        let heads = r.num_attention_heads;
        let kv = r.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv == 0 || !heads.is_multiple_of(kv) {
            return Err(bad(format!(
                "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}"
            )));
        }
        let head_dim = match r.head_dim {
            Some(d) => d,
            None => {
                check(file, "num_attention_heads", heads, r.hidden_size)?;
                r.hidden_size / heads
            }
        };
        // transformers 5 lists each layer's kind; 4 has `use_sliding_window` (Qwen2) or a
        // `sliding_window` that is always on (Mistral).
        let windowed = match &r.layer_types {
            Some(t) => {
                if let Some(k) = t
                    .iter()
                    .find(|k| !matches!(k.as_str(), "full_attention" | "sliding_attention"))
                {
                    return Err(unsupported(
                        "layer_types",
                        format!("'{k}'"),
                        "full_attention, sliding_attention",
                    ));
                }
                t.iter().any(|k| k == "sliding_attention")
            }
            None => r.use_sliding_window.unwrap_or(arch == DecoderArch::Mistral),
        };
        // Gemma 3 interleaves local (windowed) and global layers: real per-layer windows. Other
        // families window every layer alike: the context is capped at the window instead.
        let mut layer_windows = Vec::new();
        let mut sliding_window = if windowed { r.sliding_window } else { None };
        if gemma {
            let n = r.num_hidden_layers;
            let local: Vec<bool> = match (&r.layer_types, r.sliding_window_pattern) {
                (Some(t), _) => t.iter().map(|k| k == "sliding_attention").collect(),
                (None, Some(p)) if p > 0 => (0..n).map(|i| (i + 1) % p != 0).collect(),
                _ => vec![false; n],
            };
            if local.len() != n {
                return Err(bad(format!("layer_types has {} entries for {n} layers", local.len())));
            }
            if let Some(w) = sliding_window.take().or(r.sliding_window) {
                layer_windows = local.iter().map(|&l| if l { Some(w) } else { None }).collect();
            }
        }
        let c = DecoderConfig {
            arch,
            vocab_size: r.vocab_size,
            hidden_size: r.hidden_size,
            intermediate_size: r.intermediate_size,
            num_hidden_layers: r.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim,
            rms_norm_eps: r.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            rope_parameters: rope,
            max_position_embeddings: r.max_position_embeddings.unwrap_or(2048),
            tie_word_embeddings: r.tie_word_embeddings.unwrap_or(false),
            qkv_bias,
            hidden_act: act.clone(),
            bos_token_id: r.bos_token_id,
            eos_token_ids: ids(r.eos_token_id),
            pad_token_id: r.pad_token_id,
            dtype: r.dtype,
            sliding_window,
            rope_scaling,
            qk_norm: matches!(arch, DecoderArch::Qwen3 | DecoderArch::Gemma3),
            norm_plus_one: gemma,
            sandwich_norms: gemma,
            mlp_act,
            embed_scale: gemma.then(|| (r.hidden_size as f32).sqrt()),
            attn_scale: if gemma {
                Some(r.query_pre_attn_scalar.unwrap_or(head_dim as f64).powf(-0.5))
            } else {
                None
            },
            layer_windows,
            rope_local_theta,
        };
        if c.vocab_size == 0 || c.hidden_size == 0 || c.num_hidden_layers == 0 || !c.head_dim.is_multiple_of(2) {
            return Err(bad(format!(
                "vocab_size {}, hidden_size {}, num_hidden_layers {}, head_dim {}: sizes must be positive and head_dim even",
                c.vocab_size, c.hidden_size, c.num_hidden_layers, c.head_dim
            )));
        }
        super::sanity::check_decoder(file, &c)?;
        Ok(ModelConfig::Decoder(c))
    }
}

fn check(file: &str, what: &str, heads: usize, hidden: usize) -> Result<()> {
    if heads == 0 || !hidden.is_multiple_of(heads) {
        return Err(Error::BadModelFile {
            file: file.to_string(),
            detail: format!("hidden_size {hidden} is not divisible by {what} {heads}"),
        });
    }
    Ok(())
}

/// `generation_config.json`: defaults for generation (all optional).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationConfig {
    /// Beginning-of-sequence id.
    pub bos_token_id: Option<u32>,
    /// Stop ids.
    pub eos_token_ids: Vec<u32>,
    /// Padding id.
    pub pad_token_id: Option<u32>,
    /// Sample (true) or greedy (false).
    pub do_sample: Option<bool>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Top-k sampling.
    pub top_k: Option<usize>,
    /// Repetition penalty.
    pub repetition_penalty: Option<f64>,
    /// New-token limit.
    pub max_new_tokens: Option<usize>,
    /// Total-length limit.
    pub max_length: Option<usize>,
}

#[derive(Deserialize)]
struct RawGeneration {
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
    pad_token_id: Option<u32>,
    do_sample: Option<bool>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<usize>,
    repetition_penalty: Option<f64>,
    max_new_tokens: Option<usize>,
    max_length: Option<usize>,
}

impl GenerationConfig {
    /// Read `generation_config.json`; a missing file gives the defaults.
    pub async fn load<S: ByteSource>(source: &S) -> Result<Self> {
        match source.read_optional("generation_config.json").await? {
            Some(b) => Self::parse(&source.locate("generation_config.json"), &b),
            None => Ok(Self::default()),
        }
    }

    /// Parse the bytes; `file` names it in errors.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Self> {
        let r: RawGeneration = serde_json::from_slice(bytes).map_err(|e| Error::BadModelFile {
            file: file.to_string(),
            detail: e.to_string(),
        })?;
        Ok(GenerationConfig {
            bos_token_id: r.bos_token_id,
            eos_token_ids: ids(r.eos_token_id),
            pad_token_id: r.pad_token_id,
            do_sample: r.do_sample,
            temperature: r.temperature,
            top_p: r.top_p,
            top_k: r.top_k,
            repetition_penalty: r.repetition_penalty,
            max_new_tokens: r.max_new_tokens,
            max_length: r.max_length,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen2_transformers4_spelling() {
        let json = br#"{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","vocab_size":151936,
            "hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,"num_attention_heads":14,
            "num_key_value_heads":2,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"torch_dtype":"bfloat16",
            "tie_word_embeddings":true,"max_position_embeddings":32768,"eos_token_id":151645,
            "sliding_window":32768,"use_sliding_window":false}"#;
        let ModelConfig::Decoder(c) = ModelConfig::parse("config.json", json).unwrap() else {
            panic!()
        };
        assert_eq!(c.arch, DecoderArch::Qwen2);
        assert_eq!(c.head_dim, 64);
        assert_eq!(c.num_key_value_heads, 2);
        assert_eq!(c.rope_theta, 1e6);
        assert!(c.qkv_bias && c.tie_word_embeddings);
        assert_eq!(c.dtype.as_deref(), Some("bfloat16"));
        assert_eq!(c.eos_token_ids, vec![151645]);
        assert_eq!(c.sliding_window, None);
    }

    #[test]
    fn llama_transformers5_spelling_and_defaults() {
        let json = br#"{"model_type":"llama","vocab_size":100,"hidden_size":64,"intermediate_size":128,
            "num_hidden_layers":2,"num_attention_heads":4,"dtype":"float32",
            "rope_parameters":{"rope_theta":500000.0,"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
                "high_freq_factor":4.0,"original_max_position_embeddings":8192},
            "eos_token_id":[1,2]}"#;
        let ModelConfig::Decoder(c) = ModelConfig::parse("config.json", json).unwrap() else {
            panic!()
        };
        assert_eq!((c.num_key_value_heads, c.head_dim), (4, 16));
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(
            c.rope_parameters
                .as_ref()
                .and_then(|v| v.get("factor"))
                .and_then(|v| v.as_f64()),
            Some(8.0)
        );
        assert!(!c.tie_word_embeddings && !c.qkv_bias);
        assert_eq!(c.eos_token_ids, vec![1, 2]);
        assert_eq!(c.rms_norm_eps, 1e-6);
        assert_eq!(
            c.rope_scaling,
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0
            }
        );
    }

    const BASE: &str = r#""vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
        "num_attention_heads":4"#;

    fn parse_with(model_type: &str, extra: &str) -> Result<DecoderConfig> {
        let json = format!(r#"{{"model_type":"{model_type}",{BASE}{extra}}}"#);
        match ModelConfig::parse("config.json", json.as_bytes())? {
            ModelConfig::Decoder(c) => Ok(c),
            ModelConfig::Bert(_) => panic!("not a decoder"),
        }
    }

    fn refused(model_type: &str, extra: &str, field: &str) {
        match parse_with(model_type, extra) {
            Err(Error::UnsupportedConfig { field: f, file, .. }) => {
                assert_eq!((f.as_str(), file.as_str()), (field, "config.json"), "{extra}")
            }
            other => panic!("{extra}: expected UnsupportedConfig naming {field}, got {other:?}"),
        }
    }

    #[test]
    fn fields_that_change_the_math_are_implemented_or_refused() {
        // Implemented.
        let c = parse_with("llama", r#","rope_scaling":{"type":"linear","factor":4.0}"#).unwrap();
        assert_eq!(c.rope_scaling, RopeScaling::Linear { factor: 4.0 });
        let c = parse_with("llama", r#","rope_scaling":{"rope_type":"default"},"rope_theta":1e5"#).unwrap();
        assert_eq!((c.rope_scaling, c.rope_theta), (RopeScaling::None, 1e5));
        let c = parse_with("llama", r#","head_dim":32,"hidden_act":"silu","mlp_bias":false"#).unwrap();
        assert_eq!(c.head_dim, 32, "head_dim need not be hidden / heads");
        let c = parse_with("mistral", r#","sliding_window":4096,"max_position_embeddings":32768"#).unwrap();
        assert_eq!((c.sliding_window, c.context_limit()), (Some(4096), 4096));
        let c = parse_with(
            "qwen2",
            r#","sliding_window":64,"layer_types":["full_attention","sliding_attention"]"#,
        )
        .unwrap();
        assert_eq!(c.context_limit(), 64);
        let c = parse_with(
            "qwen3",
            r#","layer_types":["full_attention","full_attention"],"sliding_window":null"#,
        )
        .unwrap();
        assert!(c.qk_norm && !c.qkv_bias && c.sliding_window.is_none());
        // Refused, naming the field.
        refused(
            "llama",
            r#","rope_scaling":{"type":"dynamic","factor":2.0}"#,
            "rope_scaling.rope_type",
        );
        refused(
            "llama",
            r#","rope_parameters":{"rope_type":"yarn","factor":4.0}"#,
            "rope_parameters.rope_type",
        );
        refused(
            "llama",
            r#","rope_scaling":{"rope_type":"longrope"}"#,
            "rope_scaling.rope_type",
        );
        refused("llama", r#","hidden_act":"gelu""#, "hidden_act");
        refused("llama", r#","partial_rotary_factor":0.5"#, "partial_rotary_factor");
        refused("llama", r#","attn_logit_softcapping":50.0"#, "attn_logit_softcapping");
        refused("llama", r#","final_logit_softcapping":30.0"#, "final_logit_softcapping");
        refused("llama", r#","mlp_bias":true"#, "mlp_bias");
        refused("llama", r#","attention_bias":true"#, "attention_bias");
        refused(
            "llama",
            r#","layer_types":["full_attention","chunked_attention"]"#,
            "layer_types",
        );
        refused("gpt2", "", "model_type");
        // Incomplete llama3 parameters are a bad file naming the missing key.
        let e = parse_with("llama", r#","rope_scaling":{"rope_type":"llama3","factor":8.0}"#).unwrap_err();
        assert!(
            matches!(&e, Error::BadModelFile { detail, .. } if detail.contains("low_freq_factor")),
            "{e}"
        );
    }

    #[test]
    fn bad_configs_name_the_file_and_field() {
        let e = ModelConfig::parse("c.json", br#"{"model_type":"gpt2"}"#).unwrap_err();
        assert!(
            matches!(&e, Error::UnsupportedConfig { file, value, .. } if file == "c.json" && value.contains("gpt2")),
            "{e}"
        );
        let e = ModelConfig::parse("c.json", br#"{"model_type":"llama","vocab_size":10}"#).unwrap_err();
        assert!(
            matches!(&e, Error::BadModelFile { detail, .. } if detail.contains("hidden_size")),
            "{e}"
        );
        let e = ModelConfig::parse(
            "c.json",
            br#"{"model_type":"llama","vocab_size":10,"hidden_size":64,"intermediate_size":8,
                "num_hidden_layers":1,"num_attention_heads":6,"num_key_value_heads":4}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::BadModelFile { detail, .. } if detail.contains("num_key_value_heads")),
            "{e}"
        );
    }

    #[test]
    fn bert_defaults() {
        let json = br#"{"architectures":["BertModel"],"vocab_size":30522,"hidden_size":384,
            "num_hidden_layers":6,"num_attention_heads":12,"intermediate_size":1536}"#;
        let ModelConfig::Bert(c) = ModelConfig::parse("config.json", json).unwrap() else {
            panic!()
        };
        assert_eq!(c.layer_norm_eps, 1e-12);
        assert_eq!(c.hidden_act, "gelu");
        assert_eq!(c.max_position_embeddings, 512);
    }

    #[test]
    fn generation_config_one_or_many() {
        let g = GenerationConfig::parse("g.json", br#"{"eos_token_id":[2,3],"temperature":0.7}"#).unwrap();
        assert_eq!(g.eos_token_ids, vec![2, 3]);
        assert_eq!(g.temperature, Some(0.7));
        let g = GenerationConfig::parse("g.json", br#"{"bos_token_id":1,"eos_token_id":2}"#).unwrap();
        assert_eq!((g.bos_token_id, g.eos_token_ids), (Some(1), vec![2]));
    }
}
