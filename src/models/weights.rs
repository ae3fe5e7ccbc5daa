//! One way to read a decoder's weights from either format: the [`WeightSource`] trait (over
//! safetensors [`Weights`] and [`GgufWeights`]), asked for tensors by their Hugging Face names;
//! [`GGUF_NAMES`], the one table of HF ↔ GGUF names; and [`load_layer`], the one layer loader,
//! which checks every shape against the config before the model is put together.

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, GpuTensor};
use crate::load::config::DecoderConfig;
use crate::load::gguf::GgufWeights;
use crate::load::{Weight, Weights};
use crate::models::llama::{Layer, Linear};
use crate::ops::kv_cache::{KvCache, KvDType};

/// Tensors of a loaded checkpoint, looked up by their Hugging Face names.
pub trait WeightSource {
    /// The checkpoint (file name) for errors.
    fn file(&self) -> String;
    /// Whether the checkpoint holds the tensor.
    fn has(&self, hf: &str) -> bool;
    /// A projection weight `[N, K]`, dense or quantised as stored, as row blocks (one unless it
    /// exceeds the storage binding limit).
    fn linear_parts(&self, hf: &str) -> Result<Vec<Linear>>;
    /// A dense tensor as row blocks (one unless it exceeds the binding limit).
    fn dense_parts(&self, hf: &str) -> Result<Vec<GpuTensor>>;

    /// A projection weight held in one buffer.
    fn linear(&self, hf: &str) -> Result<Linear> {
        one(hf, self.linear_parts(hf)?)
    }
    /// A dense tensor held in one buffer.
    fn dense(&self, hf: &str) -> Result<GpuTensor> {
        one(hf, self.dense_parts(hf)?)
    }
}

fn one<T>(hf: &str, mut parts: Vec<T>) -> Result<T> {
    match parts.len() {
        1 => parts
            .pop()
            .ok_or_else(|| Error::Internal(format!("tensor '{hf}' vanished"))),
        n => Err(Error::Data {
            tensor: hf.to_string(),
            detail: format!("held as {n} row blocks where one buffer is needed"),
        }),
    }
}

impl WeightSource for Weights {
    fn file(&self) -> String {
        "model.safetensors".into()
    }
    fn has(&self, hf: &str) -> bool {
        self.contains(hf)
    }
    fn linear_parts(&self, hf: &str) -> Result<Vec<Linear>> {
        Ok(self.dense_parts(hf)?.into_iter().map(Linear::Dense).collect())
    }
    fn dense_parts(&self, hf: &str) -> Result<Vec<GpuTensor>> {
        Ok(match self.weight(hf)? {
            Weight::Whole(t) => vec![t.clone()],
            Weight::Split(s) => s.parts.clone(),
        })
    }
}

/// Hugging Face ↔ GGUF (llama.cpp) tensor names: per layer (after `model.layers.{i}.` ↔
/// `blk.{i}.`) and global. The one place the two spellings meet.
pub const GGUF_NAMES: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.q_proj.bias", "attn_q.bias"),
    ("self_attn.k_proj.bias", "attn_k.bias"),
    ("self_attn.v_proj.bias", "attn_v.bias"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("self_attn.q_norm.weight", "attn_q_norm.weight"),
    ("self_attn.k_norm.weight", "attn_k_norm.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

/// Gemma's sandwich norms (GGUF architectures `gemma2`, `gemma3`): llama.cpp's names, looked up
/// before [`GGUF_NAMES`] there (HF's `post_attention_layernorm` is the attention output's norm
/// and the MLP's input norm is `pre_feedforward_layernorm`).
pub const GGUF_NAMES_SANDWICH: &[(&str, &str)] = &[
    ("post_attention_layernorm.weight", "post_attention_norm.weight"),
    ("pre_feedforward_layernorm.weight", "ffn_norm.weight"),
    ("post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
];

/// The name tables of a GGUF architecture, first match wins.
fn tables(arch: &str) -> &'static [&'static [(&'static str, &'static str)]] {
    match arch {
        "gemma2" | "gemma3" => &[GGUF_NAMES_SANDWICH, GGUF_NAMES],
        _ => &[GGUF_NAMES],
    }
}

/// The GGUF name of an HF tensor name, `None` when the table has no entry.
pub fn gguf_name(hf: &str) -> Option<String> {
    gguf_name_in("llama", hf)
}

/// [`gguf_name`] for a GGUF architecture (`general.architecture`).
pub fn gguf_name_in(arch: &str, hf: &str) -> Option<String> {
    let (prefix, rest) = match hf.strip_prefix("model.layers.") {
        Some(r) => {
            let (i, rest) = r.split_once('.')?;
            (format!("blk.{i}."), rest)
        }
        None => (String::new(), hf),
    };
    let g = tables(arch).iter().find_map(|t| t.iter().find(|(h, _)| *h == rest))?.1;
    Some(format!("{prefix}{g}"))
}

/// The HF name of a GGUF tensor name, `None` when the table has no entry.
pub fn hf_name(gguf: &str) -> Option<String> {
    hf_name_in("llama", gguf)
}

/// [`hf_name`] for a GGUF architecture (`general.architecture`).
pub fn hf_name_in(arch: &str, gguf: &str) -> Option<String> {
    let (prefix, rest) = match gguf.strip_prefix("blk.") {
        Some(r) => {
            let (i, rest) = r.split_once('.')?;
            (format!("model.layers.{i}."), rest)
        }
        None => (String::new(), gguf),
    };
    let h = tables(arch).iter().find_map(|t| t.iter().find(|(_, g)| *g == rest))?.0;
    Some(format!("{prefix}{h}"))
}

impl GgufWeights {
    fn arch(&self) -> &str {
        self.header.architecture().unwrap_or("")
    }
    fn mapped(&self, hf: &str) -> Result<String> {
        gguf_name_in(self.arch(), hf).ok_or_else(|| Error::Data {
            tensor: hf.to_string(),
            detail: "has no GGUF name in the table".into(),
        })
    }
}

impl WeightSource for GgufWeights {
    fn file(&self) -> String {
        self.header.file.clone()
    }
    fn has(&self, hf: &str) -> bool {
        gguf_name_in(self.arch(), hf).is_some_and(|g| self.contains(&g))
    }
    fn linear_parts(&self, hf: &str) -> Result<Vec<Linear>> {
        let g = self.mapped(hf)?;
        if self.has_quant(&g) {
            Ok(self.quant_parts(&g)?.iter().cloned().map(Linear::Quant).collect())
        } else {
            Ok(GgufWeights::dense_parts(self, &g)?
                .iter()
                .cloned()
                .map(Linear::Dense)
                .collect())
        }
    }
    fn dense_parts(&self, hf: &str) -> Result<Vec<GpuTensor>> {
        let g = self.mapped(hf)?;
        Ok(GgufWeights::dense_parts(self, &g)?.to_vec())
    }
}

/// Norm weights and biases are read by kernels as f32: widen 16-bit ones once at load.
pub(crate) async fn as_f32(gpu: &Gpu, t: &GpuTensor) -> Result<GpuTensor> {
    if t.dtype() == DType::F32 {
        return Ok(t.clone());
    }
    let v = t.to_f32_vec(gpu).await?;
    GpuTensor::from_f32(gpu, t.name(), t.shape(), DType::F32, &v)
}

fn shape_error(ws: &dyn WeightSource, hf: &str, got: String, want: String) -> Error {
    Error::BadModelFile {
        file: ws.file(),
        detail: format!("tensor '{hf}' is {got}, the config needs {want}"),
    }
}

/// Rows and columns of a projection, whole.
fn linear_dims(w: &Linear) -> (usize, usize) {
    match w {
        Linear::Dense(t) => (
            t.shape().first().copied().unwrap_or(0),
            t.numel() / t.shape().first().copied().unwrap_or(1).max(1),
        ),
        Linear::Quant(q) => (q.rows(), q.cols()),
    }
}

/// A projection `[rows, cols]` (HF orientation: out × in), shape-checked.
pub(crate) fn linear_checked(ws: &dyn WeightSource, hf: &str, rows: usize, cols: usize) -> Result<Linear> {
    let w = ws.linear(hf)?;
    let (r, c) = linear_dims(&w);
    if (r, c) != (rows, cols) || matches!(&w, Linear::Dense(t) if t.shape().len() != 2) {
        return Err(shape_error(ws, hf, format!("[{r}, {c}]"), format!("[{rows}, {cols}]")));
    }
    Ok(w)
}

/// The row blocks of a projection whose rows together make `rows` (the lm_head), shape-checked.
pub(crate) fn linear_parts_checked(ws: &dyn WeightSource, hf: &str, rows: usize, cols: usize) -> Result<Vec<Linear>> {
    let parts = ws.linear_parts(hf)?;
    let total: usize = parts.iter().map(|p| linear_dims(p).0).sum();
    if total != rows || parts.iter().any(|p| linear_dims(p).1 != cols) {
        return Err(shape_error(
            ws,
            hf,
            format!("{total} rows in {} blocks", parts.len()),
            format!("[{rows}, {cols}]"),
        ));
    }
    Ok(parts)
}

/// A 1-D vector (norm weight, bias) of `len` elements, widened to f32.
pub(crate) async fn vector_checked(gpu: &Gpu, ws: &dyn WeightSource, hf: &str, len: usize) -> Result<GpuTensor> {
    let t = ws.dense(hf)?;
    if t.numel() != len {
        return Err(shape_error(ws, hf, format!("{:?}", t.shape()), format!("[{len}]")));
    }
    as_f32(gpu, &t).await
}

/// An RMSNorm weight of `len` elements as the kernels apply it (`x · w`): Gemma stores `w` for
/// `x · (1 + w)`, so 1 is added here, once (in f32, as Gemma's forward does).
pub(crate) async fn norm_checked(
    gpu: &Gpu,
    ws: &dyn WeightSource,
    cfg: &DecoderConfig,
    hf: &str,
    len: usize,
) -> Result<GpuTensor> {
    let t = vector_checked(gpu, ws, hf, len).await?;
    if !cfg.norm_plus_one {
        return Ok(t);
    }
    let v: Vec<f32> = t.to_f32_vec(gpu).await?.iter().map(|w| 1.0 + w).collect();
    GpuTensor::from_f32(gpu, t.name(), t.shape(), DType::F32, &v)
}

/// Load layer `i` of a decoder from either format, checking every shape against `cfg`.
pub(crate) async fn load_layer(
    gpu: &Gpu,
    ws: &dyn WeightSource,
    cfg: &DecoderConfig,
    i: usize,
    max_ctx: usize,
    kv: KvDType,
) -> Result<Layer> {
    let p = |s: &str| format!("model.layers.{i}.{s}");
    let (h, nh, nkv, hd, ff) = (
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
        cfg.intermediate_size,
    );
    let bias = |s: &'static str, n: usize| {
        let name = p(s);
        async move {
            match cfg.qkv_bias {
                true => Ok::<_, Error>(Some(vector_checked(gpu, ws, &name, n).await?)),
                false => Ok(None),
            }
        }
    };
    let norm = |s: &'static str, on: bool, n: usize| {
        let name = p(s);
        async move {
            match on {
                true => Ok::<_, Error>(Some(norm_checked(gpu, ws, cfg, &name, n).await?)),
                false => Ok(None),
            }
        }
    };
    // Sandwich norms (Gemma): post_attention_layernorm normalises the attention output and the
    // MLP's input norm is pre_feedforward_layernorm.
    let sw = cfg.sandwich_norms;
    let ffn_norm = if sw {
        "pre_feedforward_layernorm.weight"
    } else {
        "post_attention_layernorm.weight"
    };
    Ok(Layer {
        attn_norm: norm_checked(gpu, ws, cfg, &p("input_layernorm.weight"), h).await?,
        wq: linear_checked(ws, &p("self_attn.q_proj.weight"), nh * hd, h)?,
        wk: linear_checked(ws, &p("self_attn.k_proj.weight"), nkv * hd, h)?,
        wv: linear_checked(ws, &p("self_attn.v_proj.weight"), nkv * hd, h)?,
        bq: bias("self_attn.q_proj.bias", nh * hd).await?,
        bk: bias("self_attn.k_proj.bias", nkv * hd).await?,
        bv: bias("self_attn.v_proj.bias", nkv * hd).await?,
        wo: linear_checked(ws, &p("self_attn.o_proj.weight"), h, nh * hd)?,
        ffn_norm: norm_checked(gpu, ws, cfg, &p(ffn_norm), h).await?,
        w_gate: linear_checked(ws, &p("mlp.gate_proj.weight"), ff, h)?,
        w_up: linear_checked(ws, &p("mlp.up_proj.weight"), ff, h)?,
        w_down: linear_checked(ws, &p("mlp.down_proj.weight"), h, ff)?,
        q_norm: norm("self_attn.q_norm.weight", cfg.qk_norm, hd).await?,
        k_norm: norm("self_attn.k_norm.weight", cfg.qk_norm, hd).await?,
        post_attn_norm: norm("post_attention_layernorm.weight", sw, h).await?,
        post_ffn_norm: norm("post_feedforward_layernorm.weight", sw, h).await?,
        window: cfg.layer_windows.get(i).copied().flatten(),
        cache: KvCache::new(gpu, &p("kv_cache"), max_ctx, nkv, hd, kv)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_names_round_trip() {
        assert_eq!(
            gguf_name("model.layers.12.self_attn.q_norm.weight").as_deref(),
            Some("blk.12.attn_q_norm.weight")
        );
        assert_eq!(
            gguf_name("model.embed_tokens.weight").as_deref(),
            Some("token_embd.weight")
        );
        assert_eq!(gguf_name("model.layers.3.mlp.nonsense.weight"), None);
        for (h, g) in GGUF_NAMES {
            let (h, g) = if h.starts_with("model.") || h.starts_with("lm_head") {
                (h.to_string(), g.to_string())
            } else {
                (format!("model.layers.7.{h}"), format!("blk.7.{g}"))
            };
            assert_eq!(gguf_name(&h).as_deref(), Some(g.as_str()), "{h}");
            assert_eq!(hf_name(&g).as_deref(), Some(h.as_str()), "{g}");
        }
        // Gemma's sandwich norms: llama.cpp's ffn_norm is the MLP's input norm there.
        for (h, g) in [
            ("post_attention_layernorm.weight", "post_attention_norm.weight"),
            ("pre_feedforward_layernorm.weight", "ffn_norm.weight"),
            ("post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
            ("input_layernorm.weight", "attn_norm.weight"),
            ("self_attn.q_norm.weight", "attn_q_norm.weight"),
        ] {
            let (h, g) = (format!("model.layers.5.{h}"), format!("blk.5.{g}"));
            assert_eq!(gguf_name_in("gemma3", &h).as_deref(), Some(g.as_str()), "{h}");
            assert_eq!(hf_name_in("gemma3", &g).as_deref(), Some(h.as_str()), "{g}");
        }
        assert_eq!(
            gguf_name("model.layers.0.post_attention_layernorm.weight").as_deref(),
            Some("blk.0.ffn_norm.weight")
        );
    }
}
