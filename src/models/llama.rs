//! Llama-family decoders (Llama, SmolLM2, Qwen2 with q/k/v biases), from `config.json` alone.
//!
//! Per layer: `h = rmsnorm(x)`, q/k/v projections (+ bias for Qwen2), RoPE on q (prefill; decode
//! rotates q inside the attention kernel) and on k as it is written to the KV cache, flash
//! attention (prefill) or flash-decoding (decode) straight from the cache, `x += o_proj(attn)`
//! fused into the projection's epilogue, `h = rmsnorm(x)`, SwiGLU (the product fused into the gate
//! projection's epilogue), `x += down(h)` fused likewise. Activations are f32; weights stay as
//! stored (bf16 / f16 / f32).

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, GpuTensor};
use crate::load::config::{DecoderConfig, ModelConfig};
use crate::load::source::ByteSource;
use crate::load::{load_weights, LoadOptions, Progress};
use crate::ops::attention::{self, AttentionOptions, DecodeOptions, DecodeScratch, Kv, Rope};
use crate::ops::embedding::TokenIds;
use crate::ops::ffn;
use crate::ops::kv_cache::{KvCache, KvDType};
use crate::ops::linear::{self, Act, Epilogue, Residual};
use crate::ops::norm::{self, Norm};
use crate::ops::elementwise::{self, Op};
use crate::ops::quant::{self, QuantWeight};
use crate::ops::rope::{self as rope_op, RopeConfig, RopeLayout};

mod step;
pub(crate) use step::Input;

/// A projection weight: dense (f32 / f16 / bf16, the linear / ffn ops) or quantised blocks as
/// stored (the quant GEMV / matmul).
#[derive(Debug, Clone)]
pub enum Linear {
    /// `[N, K]` dense.
    Dense(GpuTensor),
    /// `[N, K]` in ggml blocks.
    Quant(QuantWeight),
}

impl Linear {
    /// Output features N.
    pub fn rows(&self) -> usize {
        match self {
            Linear::Dense(t) => t.shape().first().copied().unwrap_or(0),
            Linear::Quant(q) => q.rows(),
        }
    }
    /// Whether the weight is quantised.
    pub fn is_quant(&self) -> bool {
        matches!(self, Linear::Quant(_))
    }
}

/// The token embedding table: one tensor for the lookup kernel, or f32 row blocks (a table over
/// the storage binding limit) gathered by one lookup dispatch per block (each writes the rows of
/// the ids that fall in it; the ids may be written on the GPU).
#[derive(Debug, Clone)]
pub enum Embedding {
    /// `[vocab, hidden]`, f32 / f16 / bf16.
    Table(GpuTensor),
    /// f32 row blocks `[rows, hidden]`, all but the last with the same row count.
    Rows(Vec<GpuTensor>),
}

pub(crate) struct Layer {
    pub(crate) attn_norm: GpuTensor,
    pub(crate) wq: Linear,
    pub(crate) wk: Linear,
    pub(crate) wv: Linear,
    pub(crate) bq: Option<GpuTensor>,
    pub(crate) bk: Option<GpuTensor>,
    pub(crate) bv: Option<GpuTensor>,
    pub(crate) wo: Linear,
    pub(crate) ffn_norm: GpuTensor,
    pub(crate) w_gate: Linear,
    pub(crate) w_up: Linear,
    pub(crate) w_down: Linear,
    pub(crate) cache: KvCache,
}

/// Activations for `t` tokens, reused while the token count stays the same.
struct Scratch {
    tokens: usize,
    x: GpuTensor,
    h: GpuTensor,
    q: GpuTensor,
    k: GpuTensor,
    v: GpuTensor,
    attn: GpuTensor,
    up: GpuTensor,
    mid: GpuTensor,
    ids: TokenIds,
    /// Temporaries of the quantised projections' epilogues (bias, residual, SwiGLU).
    tmp_h: GpuTensor,
    tmp_h2: GpuTensor,
    tmp_ff: GpuTensor,
    ones: GpuTensor,
}

/// A loaded decoder with its KV cache.
pub struct Llama {
    cfg: DecoderConfig,
    embed: Embedding,
    /// Row blocks of the lm_head (one unless it exceeds the storage binding limit) and, when
    /// split, each block's logits before they are copied into `logits`.
    lm_head: Vec<(Linear, Option<GpuTensor>)>,
    final_norm: GpuTensor,
    layers: Vec<Layer>,
    rope: Rope,
    rope_q: rope_op::Rope,
    decode_scratch: DecodeScratch,
    scratch: Option<Scratch>,
    last: GpuTensor,
    last_norm: GpuTensor,
    logits: GpuTensor,
    max_ctx: usize,
    kv_dtype: KvDType,
    dispatches_last_decode: usize,
    /// The token ids in the KV cache, in order (to reuse a chat's unchanged prefix).
    tokens: Vec<u32>,
    /// GPU-driven decoding: the sampled-id slot, the sampler, the generation's bookkeeping.
    step: step::StepState,
}

/// Options for [`Llama::load`].
#[derive(Debug, Clone)]
pub struct LlamaOptions {
    /// KV cache storage (default f16: half the memory of f32, no shader-f16 needed).
    pub kv_cache: KvDType,
    /// Context length to allocate the cache for (capped by the config's).
    pub max_context: usize,
}

impl Default for LlamaOptions {
    fn default() -> Self {
        LlamaOptions { kv_cache: KvDType::F16, max_context: 2048 }
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

impl Llama {
    /// Load `config.json` and the safetensors weights from `source`.
    pub async fn load<S: ByteSource>(
        gpu: &Gpu,
        source: &S,
        opts: &LlamaOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Llama> {
        Self::load_with(gpu, source, opts, &LoadOptions::default(), progress).await
    }

    /// [`load`](Self::load) with explicit weight-loading options (cancellation, staging size).
    pub async fn load_with<S: ByteSource>(
        gpu: &Gpu,
        source: &S,
        opts: &LlamaOptions,
        load: &LoadOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Llama> {
        let cfg = match ModelConfig::load(source).await? {
            ModelConfig::Decoder(c) => c,
            ModelConfig::Bert(_) => {
                return Err(Error::BadModelFile { file: "config.json".into(), detail: "a BERT encoder, not a decoder".into() })
            }
        };
        let weights = load_weights(gpu, source, load, progress).await?;
        let w = |name: &str| weights.get(name).cloned();
        let max_ctx = opts.max_context.min(cfg.max_position_embeddings.max(1)).max(1);
        let (nkv, hd) = (cfg.num_key_value_heads, cfg.head_dim);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let bias = |n: &str| -> Result<Option<GpuTensor>> {
                if cfg.qkv_bias {
                    Ok(Some(weights.get(&format!("{p}.self_attn.{n}.bias"))?.clone()))
                } else {
                    Ok(None)
                }
            };
            let (bq, bk, bv) = (bias("q_proj")?, bias("k_proj")?, bias("v_proj")?);
            layers.push(Layer {
                attn_norm: as_f32(gpu, &w(&format!("{p}.input_layernorm.weight"))?).await?,
                wq: Linear::Dense(w(&format!("{p}.self_attn.q_proj.weight"))?),
                wk: Linear::Dense(w(&format!("{p}.self_attn.k_proj.weight"))?),
                wv: Linear::Dense(w(&format!("{p}.self_attn.v_proj.weight"))?),
                bq: match bq { Some(b) => Some(as_f32(gpu, &b).await?), None => None },
                bk: match bk { Some(b) => Some(as_f32(gpu, &b).await?), None => None },
                bv: match bv { Some(b) => Some(as_f32(gpu, &b).await?), None => None },
                wo: Linear::Dense(w(&format!("{p}.self_attn.o_proj.weight"))?),
                ffn_norm: as_f32(gpu, &w(&format!("{p}.post_attention_layernorm.weight"))?).await?,
                w_gate: Linear::Dense(w(&format!("{p}.mlp.gate_proj.weight"))?),
                w_up: Linear::Dense(w(&format!("{p}.mlp.up_proj.weight"))?),
                w_down: Linear::Dense(w(&format!("{p}.mlp.down_proj.weight"))?),
                cache: KvCache::new(gpu, &format!("{p}.kv_cache"), max_ctx, nkv, hd, opts.kv_cache)?,
            });
        }
        let embed = w("model.embed_tokens.weight")?;
        let lm_head = if cfg.tie_word_embeddings || !weights.contains("lm_head.weight") {
            embed.clone()
        } else {
            w("lm_head.weight")?
        };
        let final_norm = as_f32(gpu, &w("model.norm.weight")?).await?;
        Self::assemble(gpu, cfg, opts, Embedding::Table(embed), vec![Linear::Dense(lm_head)], final_norm, layers, max_ctx)
    }

    /// Put a loaded model together (both loaders end here).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assemble(
        gpu: &Gpu,
        cfg: DecoderConfig,
        opts: &LlamaOptions,
        embed: Embedding,
        lm_head: Vec<Linear>,
        final_norm: GpuTensor,
        layers: Vec<Layer>,
        max_ctx: usize,
    ) -> Result<Llama> {
        let (nh, hd) = (cfg.num_attention_heads, cfg.head_dim);
        let rope = Rope { theta: cfg.rope_theta as f32, rotary_dim: hd };
        let rope_q = rope_op::Rope::new(
            gpu,
            RopeConfig { theta: cfg.rope_theta, head_dim: hd, rotary_dim: hd, layout: RopeLayout::HalfSplit },
        )?;
        let h = cfg.hidden_size;
        let v = match lm_head.iter().map(Linear::rows).sum::<usize>() {
            0 => cfg.vocab_size,
            n => n,
        };
        let split = lm_head.len() > 1;
        let lm_head = lm_head
            .into_iter()
            .enumerate()
            .map(|(i, w)| {
                let part = match split {
                    true => Some(GpuTensor::zeros(gpu, &format!("logits[part {i}]"), &[1, w.rows()], DType::F32)?),
                    false => None,
                };
                Ok((w, part))
            })
            .collect::<Result<Vec<_>>>()?;
        if let Embedding::Rows(parts) = &embed {
            if parts.iter().any(|p| p.dtype() != DType::F32 || p.last_dim() != h) {
                return Err(Error::Shape { op: "Llama", detail: format!("embedding row blocks must be f32 [rows, {h}]") });
            }
        }
        Ok(Llama {
            decode_scratch: DecodeScratch::new(gpu, nh, hd, max_ctx)?,
            last: GpuTensor::zeros(gpu, "last_hidden", &[1, h], DType::F32)?,
            last_norm: GpuTensor::zeros(gpu, "last_hidden_norm", &[1, h], DType::F32)?,
            logits: GpuTensor::zeros(gpu, "logits", &[1, v], DType::F32)?,
            cfg,
            embed,
            lm_head,
            final_norm,
            layers,
            rope,
            rope_q,
            scratch: None,
            max_ctx,
            kv_dtype: opts.kv_cache,
            dispatches_last_decode: 0,
            tokens: Vec::new(),
            step: step::StepState::new(gpu)?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    /// Tokens in the KV cache.
    pub fn cached_tokens(&self) -> usize {
        self.layers.first().map(|l| l.cache.len()).unwrap_or(0)
    }

    /// Context capacity of the cache.
    pub fn max_context(&self) -> usize {
        self.max_ctx
    }

    /// KV cache storage format.
    pub fn kv_dtype(&self) -> KvDType {
        self.kv_dtype
    }

    /// Dispatches recorded by the last one-token forward pass (a metric: see README).
    pub fn dispatches_per_token(&self) -> usize {
        self.dispatches_last_decode
    }

    /// Forget the cached tokens.
    pub fn reset(&mut self) {
        for l in &mut self.layers {
            l.cache.reset();
        }
        self.tokens.clear();
    }

    /// Keep only the first `n` cached tokens (reuse a chat's unchanged prefix).
    pub fn truncate(&mut self, n: usize) -> Result<()> {
        for l in &mut self.layers {
            l.cache.truncate(n)?;
        }
        self.tokens.truncate(n);
        Ok(())
    }

    /// Run a whole conversation's ids, reusing the longest cached prefix they share (the next
    /// turn of a chat recomputes only the new tokens). Returns the last position's logits.
    pub async fn forward_reusing(&mut self, gpu: &Gpu, ids: &[u32]) -> Result<Vec<f32>> {
        let common = self.tokens.iter().zip(ids).take_while(|(a, b)| a == b).count();
        // At least one token must run to produce logits.
        let keep = common.min(ids.len().saturating_sub(1));
        self.truncate(keep)?;
        self.forward(gpu, &ids[keep..]).await
    }

    /// Token ids held in the KV cache.
    pub fn cached_ids(&self) -> &[u32] {
        &self.tokens
    }

    fn scratch(&mut self, gpu: &Gpu, t: usize) -> Result<Scratch> {
        if let Some(s) = self.scratch.take() {
            if s.tokens == t {
                return Ok(s);
            }
        }
        let c = &self.cfg;
        let (h, nh, nkv, hd, ff) = (c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.intermediate_size);
        let z = |name: &str, shape: &[usize]| GpuTensor::zeros(gpu, name, shape, DType::F32);
        Ok(Scratch {
            tokens: t,
            x: z("x", &[t, h])?,
            h: z("h", &[t, h])?,
            q: z("q", &[t, nh * hd])?,
            k: z("k", &[t, nkv * hd])?,
            v: z("v", &[t, nkv * hd])?,
            attn: z("attn", &[t, nh * hd])?,
            up: z("up", &[t, ff])?,
            mid: z("mid", &[t, ff])?,
            ids: TokenIds::with_capacity(gpu, "ids", t)?,
            tmp_h: z("tmp_h", &[t, h])?,
            tmp_h2: z("tmp_h2", &[t, h])?,
            tmp_ff: z("tmp_ff", &[t, ff])?,
            ones: GpuTensor::from_f32(gpu, "ones", &[t, 1], DType::F32, &vec![1.0; t])?,
        })
    }

    /// Run `ids` through the model after the cached tokens and return the logits of the last one
    /// (the whole vocabulary read back: fixture tests and the old decode path; generation
    /// samples on the GPU instead, see `step.rs`).
    pub async fn forward(&mut self, gpu: &Gpu, ids: &[u32]) -> Result<Vec<f32>> {
        let mut b = gpu.batch();
        self.record(gpu, &mut b, Input::Ids(ids))?;
        gpu.submit(b)?;
        self.logits.to_f32_vec(gpu).await
    }

    /// Record `input` through the model after the cached tokens into `batch`: the last
    /// position's logits land in `self.logits`; the KV caches (and the token list) advance now,
    /// so the caller submits the batch before recording anything else.
    pub(crate) fn record(&mut self, gpu: &Gpu, batch: &mut crate::gpu::Batch, input: Input<'_>) -> Result<()> {
        let t = input.len();
        if t == 0 {
            return Err(Error::Shape { op: "Llama::forward", detail: "no tokens".into() });
        }
        let start = self.cached_tokens();
        if start + t > self.max_ctx {
            return Err(Error::ContextFull { cache: "kv_cache".into(), len: start, adding: t, max: self.max_ctx });
        }
        let mut s = self.scratch(gpu, t)?;
        let c = self.cfg.clone();
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let eps = c.rms_norm_eps as f32;
        let mut b = std::mem::take(batch);
        self.record_embedding(gpu, &mut b, &mut s, input)?;
        let q3 = s.q.reshape(&[t, nh, hd])?;
        let k3 = s.k.reshape(&[t, nkv, hd])?;
        let v3 = s.v.reshape(&[t, nkv, hd])?;
        let a3 = s.attn.reshape(&[t, nh, hd])?;
        for l in &mut self.layers {
            norm::record(gpu, &mut b, &s.x, &s.h, &Norm::rms(&l.attn_norm, eps))?;
            let ebq = Epilogue { bias: l.bq.as_ref(), ..Default::default() };
            let ebk = Epilogue { bias: l.bk.as_ref(), ..Default::default() };
            let ebv = Epilogue { bias: l.bv.as_ref(), ..Default::default() };
            project(gpu, &mut b, &s, &s.h, &l.wq, &s.q, &ebq)?;
            project(gpu, &mut b, &s, &s.h, &l.wk, &s.k, &ebk)?;
            project(gpu, &mut b, &s, &s.h, &l.wv, &s.v, &ebv)?;
            l.cache.append(gpu, &mut b, &k3, &v3, Some(self.rope))?;
            if t == 1 {
                let q1 = s.q.reshape(&[nh, hd])?;
                let a1 = s.attn.reshape(&[nh, hd])?;
                let opts = DecodeOptions { rope: Some(self.rope), ..Default::default() };
                attention::decode(gpu, &mut b, &q1, &l.cache, &a1, &self.decode_scratch, &opts)?;
            } else {
                self.rope_q.record(gpu, &mut b, &q3, None, start)?;
                let opts = AttentionOptions { causal: true, ..Default::default() };
                attention::flash_prefill(gpu, &mut b, &q3, Kv::Cache(&l.cache), &a3, &opts)?;
            }
            let add_x = Epilogue { residual: Some(Residual::Add(&s.x)), ..Default::default() };
            project(gpu, &mut b, &s, &s.attn, &l.wo, &s.x, &add_x)?;
            norm::record(gpu, &mut b, &s.x, &s.h, &Norm::rms(&l.ffn_norm, eps))?;
            match (&l.w_gate, &l.w_up) {
                // Decode: gate and up read together, silu(gate)·up in one dispatch (seed item 14).
                (Linear::Dense(g), Linear::Dense(u)) if t == 1 => ffn::record_swiglu(gpu, &mut b, &s.h, g, u, &s.mid)?,
                _ => {
                    project(gpu, &mut b, &s, &s.h, &l.w_up, &s.up, &Epilogue::NONE)?;
                    let gate = Epilogue { bias: None, act: Act::Silu, residual: Some(Residual::Mul(&s.up)) };
                    project(gpu, &mut b, &s, &s.h, &l.w_gate, &s.mid, &gate)?;
                }
            }
            project(gpu, &mut b, &s, &s.mid, &l.w_down, &s.x, &add_x)?;
        }
        let row = (c.hidden_size * 4) as u64;
        b.copy(s.x.buffer(), row * (t as u64 - 1), self.last.buffer(), 0, row);
        norm::record(gpu, &mut b, &self.last, &self.last_norm, &Norm::rms(&self.final_norm, eps))?;
        let mut at = 0u64;
        for (w, part) in &self.lm_head {
            let out = part.as_ref().unwrap_or(&self.logits);
            match w {
                Linear::Dense(w) => linear::record(gpu, &mut b, &self.last_norm, w, out, &Epilogue::NONE)?,
                Linear::Quant(q) => quant::record(gpu, &mut b, q, &self.last_norm, out)?,
            }
            if let Some(p) = part {
                let bytes = (p.numel() * 4) as u64;
                b.copy(p.buffer(), 0, self.logits.buffer(), at, bytes);
                at += bytes;
            }
        }
        if t == 1 {
            self.dispatches_last_decode = b.dispatches();
        }
        *batch = b;
        self.scratch = Some(s);
        match input {
            Input::Ids(ids) => self.tokens.extend_from_slice(ids),
            Input::Sampled => self.tokens.push(crate::ops::sample::NONE),
        }
        Ok(())
    }
}

/// `y = epilogue(x · Wᵀ)`: the fused linear ops for dense weights; for quantised ones the quant
/// GEMV / matmul followed by the epilogue as separate dispatches (bias as `ones · biasᵀ` added
/// in place by a K = 1 linear, SiLU in place, the residual sum or product elementwise).
fn project(gpu: &Gpu, b: &mut crate::gpu::Batch, s: &Scratch, x: &GpuTensor, w: &Linear, y: &GpuTensor, epi: &Epilogue) -> Result<()> {
    let q = match w {
        Linear::Dense(w) => return linear::record(gpu, b, x, w, y, epi),
        Linear::Quant(q) => q,
    };
    let n = y.last_dim();
    let (tmp, tmp2) = if n == s.tmp_h.last_dim() { (&s.tmp_h, &s.tmp_h2) } else { (&s.tmp_ff, &s.tmp_h2) };
    // Where the projection itself goes: straight into y without a residual.
    let out = if epi.residual.is_some() {
        if tmp.shape() != y.shape() {
            return Err(Error::Shape { op: "Llama::project", detail: format!("no temporary of shape {:?}", y.shape()) });
        }
        tmp
    } else {
        y
    };
    quant::record(gpu, b, q, x, out)?;
    if let Some(bias) = epi.bias {
        let col = bias.reshape(&[bias.numel(), 1])?;
        let add = Epilogue { residual: Some(Residual::Add(out)), ..Default::default() };
        linear::record(gpu, b, &s.ones, &col, out, &add)?;
    }
    if epi.act == Act::Silu {
        elementwise::record_inplace(gpu, b, Op::Silu, out)?;
    } else if epi.act != Act::None {
        return Err(Error::Shape { op: "Llama::project", detail: format!("activation {:?} after a quantised projection", epi.act) });
    }
    match epi.residual {
        None => Ok(()),
        Some(Residual::Mul(r)) => elementwise::record(gpu, b, Op::Mul, out, Some(r), y),
        Some(Residual::Add(r)) => {
            if tmp2.shape() != y.shape() {
                return Err(Error::Shape { op: "Llama::project", detail: format!("no temporary of shape {:?}", y.shape()) });
            }
            elementwise::record(gpu, b, Op::Add, r, Some(out), tmp2)?;
            b.copy(tmp2.buffer(), 0, y.buffer(), 0, (y.numel() * 4) as u64);
            Ok(())
        }
    }
}

impl crate::generate::CausalLm for Llama {
    fn submit_prompt(&mut self, gpu: &Gpu, prompt: &[u32], sampling: &crate::generate::SamplingParams, out: &crate::gpu::Buffer) -> Result<()> {
        self.submit_prefill(gpu, prompt, prompt, sampling, out)
    }
    fn submit_step(&mut self, gpu: &Gpu, out: &crate::gpu::Buffer) -> Result<()> {
        self.submit_decode(gpu, out)
    }
    fn set_logit_mask(&mut self, gpu: &Gpu, mask: Option<&[u32]>) -> Result<()> {
        Llama::set_logit_mask(self, gpu, mask)
    }
    fn finish(&mut self, accepted: &[u32]) -> Result<()> {
        self.finish_generation(accepted)
    }
    fn eos_ids(&self) -> Vec<u32> {
        self.cfg.eos_token_ids.clone()
    }
    fn context_left(&self) -> usize {
        self.max_ctx.saturating_sub(self.cached_tokens())
    }
}
