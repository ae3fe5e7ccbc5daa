//! Llama-family decoders (Llama, SmolLM2, Qwen2 with q/k/v biases), from `config.json` alone.
//!
//! Per layer: `h = rmsnorm(x)`, q/k/v projections (+ bias for Qwen2), RoPE on q (prefill; decode
//! rotates q inside the attention kernel) and on k as it is written to the KV cache, flash
//! attention (prefill) or flash-decoding (decode) straight from the cache, `x += o_proj(attn)`
//! fused into the projection's epilogue, `h = rmsnorm(x)`, SwiGLU (the product fused into the gate
//! projection's epilogue), `x += down(h)` fused likewise. Activations are f32; weights stay as
//! stored (bf16 / f16 / f32, or quantised blocks from GGUF).
//!
//! One-token steps (decode) take the fused layer of [`crate::models::decoder_layer`] instead: five
//! dispatches per layer, the norms folded into the GEMVs that consume them (the final norm into
//! the lm_head), q/k/v and gate/up joined at load ([`DecodePath`]).

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, GpuTensor};
use crate::load::config::{DecoderConfig, MlpAct, ModelConfig};
use crate::load::source::ByteSource;
use crate::load::{load_weights, LoadOptions, Progress};
pub use crate::models::decoder_layer::DecodeTuning;
use crate::models::decoder_layer::{self, DecodeBuffers, FusedLayer, LayerMath, LayerRefs};
use crate::models::weights::{self, WeightSource};
use crate::ops::attention::{self, AttentionOptions, DecodeOptions, DecodeScratch, Kv};
use crate::ops::elementwise::{self, Op};
use crate::ops::embedding::TokenIds;
use crate::ops::ffn;
use crate::ops::gelu::{self, Gelu};
use crate::ops::kv_cache::{KvCache, KvDType};
use crate::ops::linear::{Act, Epilogue, GateAct, NormPrologue, Residual};
use crate::ops::norm::{self, Norm};
use crate::ops::project::{self, QuantTemps};
use crate::ops::rope::{Rope, RopeLayout};

pub use crate::ops::project::Linear;

mod step;
pub(crate) use step::Input;

/// How a one-token forward pass is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecodePath {
    /// Five dispatches per layer ([`crate::models::decoder_layer`]) where the weights allow it.
    #[default]
    Fused,
    /// The separate norm / projection / append / attention dispatches (the benchmark baseline).
    Unfused,
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
    /// Qwen3: per-head RMSNorm weights `[head_dim]` of q and k, applied before RoPE.
    pub(crate) q_norm: Option<GpuTensor>,
    /// See `q_norm`.
    pub(crate) k_norm: Option<GpuTensor>,
    /// Gemma: RMSNorm of the attention output before its residual add.
    pub(crate) post_attn_norm: Option<GpuTensor>,
    /// Gemma: RMSNorm of the MLP output before its residual add.
    pub(crate) post_ffn_norm: Option<GpuTensor>,
    /// Sliding window of a local layer (Gemma 3), which also takes the local RoPE base.
    pub(crate) window: Option<usize>,
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
    /// q and k after the per-head norms (Qwen3).
    qn: GpuTensor,
    kn: GpuTensor,
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
    /// Gemma 3's local (sliding-window) layers: their own RoPE base, unscaled.
    rope_local: Option<Rope>,
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
    /// Per layer, the fused decode weights (empty when a layer's weights cannot be fused).
    fused: Vec<FusedLayer>,
    decode_path: DecodePath,
    tuning: DecodeTuning,
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
        LlamaOptions {
            kv_cache: KvDType::F16,
            max_context: 2048,
        }
    }
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
                return Err(Error::BadModelFile {
                    file: "config.json".into(),
                    detail: "a BERT encoder, not a decoder".into(),
                })
            }
        };
        let weights = load_weights(gpu, source, load, progress).await?;
        Self::from_weights(gpu, cfg, &weights, opts, &mut Vec::new()).await
    }

    /// Build the model from loaded weights of either format (the one layer loader,
    /// [`weights::load_layer`], checks every shape); notes about how tensors are held go to
    /// `notes`.
    pub(crate) async fn from_weights(
        gpu: &Gpu,
        cfg: DecoderConfig,
        ws: &dyn WeightSource,
        opts: &LlamaOptions,
        notes: &mut Vec<String>,
    ) -> Result<Llama> {
        let max_ctx = opts.max_context.min(cfg.context_limit()).max(1);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            layers.push(weights::load_layer(gpu, ws, &cfg, i, max_ctx, opts.kv_cache).await?);
        }
        let (v, h) = (cfg.vocab_size, cfg.hidden_size);
        let embed_name = "model.embed_tokens.weight";
        let embed = match ws.dense_parts(embed_name)?.as_slice() {
            [one] => {
                if one.shape() != [v, h] {
                    return Err(Error::BadModelFile {
                        file: ws.file(),
                        detail: format!(
                            "tensor '{embed_name}' is {:?}, the config needs [{v}, {h}]",
                            one.shape()
                        ),
                    });
                }
                Embedding::Table(one.clone())
            }
            parts => {
                notes.push(format!(
                    "{embed_name} held as {} row blocks (over the storage binding limit)",
                    parts.len()
                ));
                Embedding::Rows(parts.to_vec())
            }
        };
        let tied = cfg.tie_word_embeddings || !ws.has("lm_head.weight");
        let lm_head = weights::linear_parts_checked(ws, if tied { embed_name } else { "lm_head.weight" }, v, h)?;
        if lm_head.len() > 1 {
            notes.push(format!(
                "lm_head held as {} row blocks (over the storage binding limit)",
                lm_head.len()
            ));
        }
        let final_norm = weights::norm_checked(gpu, ws, &cfg, "model.norm.weight", h).await?;
        Self::assemble(gpu, cfg, opts, embed, lm_head, final_norm, layers, max_ctx)
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
        mut layers: Vec<Layer>,
        max_ctx: usize,
    ) -> Result<Llama> {
        check_weight_shapes(&cfg, &embed, &lm_head, &final_norm, &layers)?;
        let (nh, hd) = (cfg.num_attention_heads, cfg.head_dim);
        let fused = if fusable(&cfg, &layers) {
            fuse_layers(gpu, &mut layers, (nh, cfg.num_key_value_heads, hd))?
        } else {
            Vec::new()
        };
        let rope = Rope {
            theta: cfg.rope_theta,
            head_dim: hd,
            rotary_dim: hd,
            layout: RopeLayout::HalfSplit,
            scaling: cfg.rope_scaling,
        };
        rope.check("rope")?;
        let rope_local = cfg.rope_local_theta.map(|theta| Rope::plain(theta, hd));
        if let Some(r) = rope_local {
            r.check("rope")?;
        }
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
                    true => Some(GpuTensor::zeros(
                        gpu,
                        &format!("logits[part {i}]"),
                        &[1, w.rows()],
                        DType::F32,
                    )?),
                    false => None,
                };
                Ok((w, part))
            })
            .collect::<Result<Vec<_>>>()?;
        if let Embedding::Rows(parts) = &embed {
            // Any table dtype (f32 / f16 / bf16): each block is one gather of the rows it holds.
            if parts.iter().any(|p| p.shape().len() != 2 || p.last_dim() != h) {
                return Err(Error::Shape {
                    op: "Llama",
                    detail: format!("embedding row blocks must be [rows, {h}]"),
                });
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
            rope_local,
            scratch: None,
            max_ctx,
            kv_dtype: opts.kv_cache,
            dispatches_last_decode: 0,
            tokens: Vec::new(),
            fused,
            decode_path: DecodePath::default(),
            tuning: DecodeTuning::default(),
            step: step::StepState::new(gpu)?,
        })
    }

    /// Choose how one-token steps are recorded (the fused path needs weights it could join at
    /// load; otherwise the unfused one runs whatever is chosen).
    pub fn set_decode_path(&mut self, path: DecodePath) {
        self.decode_path = path;
    }

    /// Choose the fused decode layer's kernel shapes (benchmarks compare them; the default is
    /// the chosen one).
    pub fn set_decode_tuning(&mut self, tuning: DecodeTuning) {
        self.tuning = tuning;
    }

    /// The path one-token steps take.
    pub fn decode_path(&self) -> DecodePath {
        if self.fused.len() == self.layers.len() && !self.layers.is_empty() {
            self.decode_path
        } else {
            DecodePath::Unfused
        }
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
        let (h, nh, nkv, hd, ff) = (
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim,
            c.intermediate_size,
        );
        let z = |name: &str, shape: &[usize]| GpuTensor::zeros(gpu, name, shape, DType::F32);
        Ok(Scratch {
            tokens: t,
            x: z("x", &[t, h])?,
            h: z("h", &[t, h])?,
            q: z("q", &[t, nh * hd])?,
            k: z("k", &[t, nkv * hd])?,
            v: z("v", &[t, nkv * hd])?,
            qn: z("q_normed", &[t, nh * hd])?,
            kn: z("k_normed", &[t, nkv * hd])?,
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
            return Err(Error::BadInput {
                op: "Llama::forward",
                detail: "no tokens".into(),
            });
        }
        let start = self.cached_tokens();
        if start + t > self.max_ctx {
            return Err(Error::ContextFull {
                cache: "kv_cache".into(),
                len: start,
                adding: t,
                max: self.max_ctx,
            });
        }
        let mut s = self.scratch(gpu, t)?;
        let c = self.cfg.clone();
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let eps = c.rms_norm_eps as f32;
        let mut b = std::mem::take(batch);
        self.record_embedding(gpu, &mut b, &mut s, input)?;
        // Gemma: embeddings scaled by √hidden.
        if let Some(scale) = c.embed_scale {
            elementwise::record_inplace(
                gpu,
                &mut b,
                Op::Axpb {
                    alpha: scale,
                    beta: 0.0,
                },
                &s.x,
            )?;
        }
        // Qwen3 / Gemma 3: q and k through per-head RMSNorm into qn / kn, which then stand in
        // for q and k; other models use q and k as projected.
        let qk_norm = self.layers.first().is_some_and(|l| l.q_norm.is_some());
        let (q_use, k_use) = if qk_norm { (&s.qn, &s.kn) } else { (&s.q, &s.k) };
        let q3 = q_use.reshape(&[t, nh, hd])?;
        let k3 = k_use.reshape(&[t, nkv, hd])?;
        let v3 = s.v.reshape(&[t, nkv, hd])?;
        let a3 = s.attn.reshape(&[t, nh, hd])?;
        let fused = t == 1 && self.decode_path() == DecodePath::Fused;
        let tmp = [&s.tmp_h, &s.tmp_h2, &s.tmp_ff];
        let temps = QuantTemps {
            ones: &s.ones,
            tmp: &tmp,
        };
        if fused {
            let q1 = s.q.reshape(&[nh, hd])?;
            let a1 = s.attn.reshape(&[nh, hd])?;
            let buf = DecodeBuffers {
                x: &s.x,
                q: &q1,
                attn: &a1,
                mid: &s.mid,
                tmp: &s.tmp_h,
                scratch: &self.decode_scratch,
            };
            let act = match c.mlp_act {
                MlpAct::Silu => GateAct::Silu,
                MlpAct::GeluTanh => GateAct::GeluTanh,
            };
            for (l, f) in self.layers.iter_mut().zip(&self.fused) {
                let refs = LayerRefs {
                    wo: &l.wo,
                    ffn_norm: &l.ffn_norm,
                    w_down: &l.w_down,
                    post_attn_norm: l.post_attn_norm.as_ref(),
                    post_ffn_norm: l.post_ffn_norm.as_ref(),
                };
                // Gemma 3: a local layer has its window and RoPE base (as the unfused path).
                let math = LayerMath {
                    rope: match (self.rope_local, l.window) {
                        (Some(r), Some(_)) => r,
                        _ => self.rope,
                    },
                    scale: c.attn_scale.map(|x| x as f32),
                    window: l.window,
                    act,
                    eps,
                };
                decoder_layer::record_decode(gpu, &mut b, f, &refs, &mut l.cache, &buf, &math, &self.tuning)?;
            }
        }
        for l in self.layers.iter_mut().filter(|_| !fused) {
            norm::record(gpu, &mut b, &s.x, &s.h, &Norm::rms(&l.attn_norm, eps))?;
            let ebq = Epilogue {
                bias: l.bq.as_ref(),
                ..Default::default()
            };
            let ebk = Epilogue {
                bias: l.bk.as_ref(),
                ..Default::default()
            };
            let ebv = Epilogue {
                bias: l.bv.as_ref(),
                ..Default::default()
            };
            project::record_separate(gpu, &mut b, &s.h, &l.wq, &s.q, &ebq, &temps)?;
            project::record_separate(gpu, &mut b, &s.h, &l.wk, &s.k, &ebk, &temps)?;
            project::record_separate(gpu, &mut b, &s.h, &l.wv, &s.v, &ebv, &temps)?;
            if let (Some(qn), Some(kn)) = (&l.q_norm, &l.k_norm) {
                // Qwen3 (models2): RMSNorm over each head's head_dim values.
                let rows = |x: &GpuTensor, heads: usize| x.reshape(&[t * heads, hd]);
                norm::record(gpu, &mut b, &rows(&s.q, nh)?, &rows(&s.qn, nh)?, &Norm::rms(qn, eps))?;
                norm::record(gpu, &mut b, &rows(&s.k, nkv)?, &rows(&s.kn, nkv)?, &Norm::rms(kn, eps))?;
            }
            // Gemma 3 (models2): a local layer has a sliding window and its own RoPE base;
            // `scale` is query_pre_attn_scalar^-½ where the config sets it.
            let rope = match (self.rope_local, l.window) {
                (Some(r), Some(_)) => r,
                _ => self.rope,
            };
            let (scale, window) = (c.attn_scale.map(|x| x as f32), l.window);
            l.cache.append(gpu, &mut b, &k3, &v3, Some(rope))?;
            if t == 1 {
                let q1 = q_use.reshape(&[nh, hd])?;
                let a1 = s.attn.reshape(&[nh, hd])?;
                // The unfused path as it was: the split rule at every length (a merge dispatch).
                let chunk = Some(attention::split_chunk_for(gpu, nh, &l.cache)?);
                let opts = DecodeOptions {
                    rope: Some(rope),
                    chunk,
                    scale,
                    window,
                    ..Default::default()
                };
                attention::decode(gpu, &mut b, &q1, &l.cache, &a1, &self.decode_scratch, &opts)?;
            } else {
                rope.record(gpu, &mut b, &q3, None, start)?;
                let opts = AttentionOptions {
                    causal: true,
                    scale,
                    window,
                    ..Default::default()
                };
                attention::flash_prefill(gpu, &mut b, &q3, Kv::Cache(&l.cache), &a3, &opts)?;
            }
            let add_x = Epilogue {
                residual: Some(Residual::Add(&s.x)),
                ..Default::default()
            };
            match &l.post_attn_norm {
                // Gemma (models2): x += norm(o_proj(attn)).
                Some(w) => {
                    project::record_separate(gpu, &mut b, &s.attn, &l.wo, &s.tmp_h, &Epilogue::NONE, &temps)?;
                    sandwich_add(gpu, &mut b, &s, w, eps)?;
                }
                None => project::record_separate(gpu, &mut b, &s.attn, &l.wo, &s.x, &add_x, &temps)?,
            }
            norm::record(gpu, &mut b, &s.x, &s.h, &Norm::rms(&l.ffn_norm, eps))?;
            match (&l.w_gate, &l.w_up) {
                // Gemma (models2): GELU(tanh)-gated MLP, gelu(gate) · up.
                _ if c.mlp_act == MlpAct::GeluTanh => {
                    project::record_separate(gpu, &mut b, &s.h, &l.w_up, &s.up, &Epilogue::NONE, &temps)?;
                    project::record_separate(gpu, &mut b, &s.h, &l.w_gate, &s.tmp_ff, &Epilogue::NONE, &temps)?;
                    gelu::record_inplace(gpu, &mut b, Gelu::Tanh, &s.tmp_ff)?;
                    elementwise::record(gpu, &mut b, Op::Mul, &s.tmp_ff, Some(&s.up), &s.mid)?;
                }
                // Decode: gate and up read together, silu(gate)·up in one dispatch, so x is read once for both.
                (Linear::Dense(g), Linear::Dense(u)) if t == 1 => ffn::record_swiglu(gpu, &mut b, &s.h, g, u, &s.mid)?,
                _ => {
                    project::record_separate(gpu, &mut b, &s.h, &l.w_up, &s.up, &Epilogue::NONE, &temps)?;
                    let gate = Epilogue {
                        bias: None,
                        act: Act::Silu,
                        residual: Some(Residual::Mul(&s.up)),
                    };
                    project::record_separate(gpu, &mut b, &s.h, &l.w_gate, &s.mid, &gate, &temps)?;
                }
            }
            match &l.post_ffn_norm {
                // Gemma (models2): x += norm(down(mid)).
                Some(w) => {
                    project::record_separate(gpu, &mut b, &s.mid, &l.w_down, &s.tmp_h, &Epilogue::NONE, &temps)?;
                    sandwich_add(gpu, &mut b, &s, w, eps)?;
                }
                None => project::record_separate(gpu, &mut b, &s.mid, &l.w_down, &s.x, &add_x, &temps)?,
            }
        }
        // The fused path folds the final norm into the lm_head GEMV's prologue (x is the one row).
        let head_norm = NormPrologue {
            weight: &self.final_norm,
            eps,
        };
        let (head_x, head_norm) = if fused {
            (&s.x, Some(&head_norm))
        } else {
            let row = (c.hidden_size * 4) as u64;
            b.copy(s.x.buffer(), row * (t as u64 - 1), self.last.buffer(), 0, row);
            norm::record(
                gpu,
                &mut b,
                &self.last,
                &self.last_norm,
                &Norm::rms(&self.final_norm, eps),
            )?;
            (&self.last_norm, None)
        };
        let mut at = 0u64;
        for (w, part) in &self.lm_head {
            let out = part.as_ref().unwrap_or(&self.logits);
            project::record(gpu, &mut b, head_x, w, out, head_norm, &Epilogue::NONE, None)?;
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

/// Gemma's sandwich norm: `x += rmsnorm(tmp_h) · w`, through tmp_h2 (norm), tmp_h (sum) and a
/// copy back into x.
fn sandwich_add(gpu: &Gpu, b: &mut crate::gpu::Batch, s: &Scratch, w: &GpuTensor, eps: f32) -> Result<()> {
    norm::record(gpu, b, &s.tmp_h, &s.tmp_h2, &Norm::rms(w, eps))?;
    elementwise::record(gpu, b, Op::Add, &s.x, Some(&s.tmp_h2), &s.tmp_h)?;
    b.copy(s.tmp_h.buffer(), 0, s.x.buffer(), 0, (s.x.numel() * 4) as u64);
    Ok(())
}

/// Whether the fused decode layer implements everything this configuration asks of a layer:
/// RMSNorm pre-norms (Gemma's `(1 + w)` weights as loaded: the 1 is added at load), a SiLU- or
/// GELU(tanh)-gated MLP, RoPE plain or scaled (linear, Llama 3: the fused QKV epilogue takes the
/// scaling as the other RoPE paths do) with one base or Gemma 3's local / global pair, per-head
/// q/k RMSNorms only as a pair (Qwen3, Gemma 3), any attention scale (`query_pre_attn_scalar`),
/// per-layer sliding windows, and sandwich norms after o_proj / down (Gemma: one norm dispatch
/// each adds `rmsnorm(·) · w` into x).
fn fusable(cfg: &DecoderConfig, layers: &[Layer]) -> bool {
    matches!(cfg.mlp_act, MlpAct::Silu | MlpAct::GeluTanh)
        && layers
            .iter()
            .all(|l| l.q_norm.is_some() == cfg.qk_norm && l.k_norm.is_some() == cfg.qk_norm)
}

/// Build each layer's fused decode weights. Quantised q/k/v and gate/up are joined and the
/// layer's separate weights become row views of the joined ones (no second copy); dense q/k/v
/// are copied (the prefill path keeps reading the separate ones). Empty when a layer cannot be
/// fused.
fn fuse_layers(gpu: &Gpu, layers: &mut [Layer], heads: (usize, usize, usize)) -> Result<Vec<FusedLayer>> {
    let mut b = gpu.batch();
    let mut fused = Vec::with_capacity(layers.len());
    for (i, l) in layers.iter().enumerate() {
        let bias = match (&l.bq, &l.bk, &l.bv) {
            (Some(q), Some(k), Some(v)) => Some((q, k, v)),
            _ => None,
        };
        let f = FusedLayer::new(
            gpu,
            &mut b,
            &format!("layers.{i}"),
            (&l.wq, &l.wk, &l.wv),
            bias,
            l.q_norm.as_ref().zip(l.k_norm.as_ref()),
            &l.attn_norm,
            (&l.w_gate, &l.w_up),
            heads,
        )?;
        match f {
            Some(f) => fused.push(f),
            None => return Ok(Vec::new()),
        }
    }
    gpu.submit(b)?;
    for (l, f) in layers.iter_mut().zip(&fused) {
        if let Some((q, k, v)) = f.qkv.quant_parts()? {
            (l.wq, l.wk, l.wv) = (Linear::Quant(q), Linear::Quant(k), Linear::Quant(v));
        }
        if f.gate_up.is_quant() {
            (l.w_gate, l.w_up) = f.gate_up.parts()?;
        }
    }
    Ok(fused)
}

impl crate::generate::CausalLm for Llama {
    fn submit_prompt(
        &mut self,
        gpu: &Gpu,
        prompt: &[u32],
        sampling: &crate::generate::SamplingParams,
        out: &crate::gpu::Buffer,
    ) -> Result<()> {
        self.submit_prefill(gpu, prompt, prompt, sampling, out)
    }
    fn submit_step(&mut self, gpu: &Gpu, out: &crate::gpu::Buffer) -> Result<()> {
        self.submit_decode(gpu, out)
    }
    fn submit_steps(&mut self, gpu: &Gpu, outs: &[&crate::gpu::Buffer]) -> Result<()> {
        self.submit_decode_many(gpu, outs)
    }
    fn submit_logits(&mut self, gpu: &Gpu) -> Result<bool> {
        self.submit_decode_logits(gpu)?;
        Ok(true)
    }
    fn submit_sample(&mut self, gpu: &Gpu, out: &crate::gpu::Buffer) -> Result<()> {
        self.submit_decode_sample(gpu, out)
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

/// Every weight's shape against the config (both loaders end in [`Llama::assemble`]): a file
/// whose tensors disagree with its config is refused at load, naming the tensor.
fn check_weight_shapes(
    cfg: &DecoderConfig,
    embed: &Embedding,
    lm_head: &[Linear],
    final_norm: &GpuTensor,
    layers: &[Layer],
) -> Result<()> {
    let (h, v, i) = (cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size);
    let (q, kv) = (
        cfg.num_attention_heads * cfg.head_dim,
        cfg.num_key_value_heads * cfg.head_dim,
    );
    let bad = |name: &str, got: String, want: String| Error::BadModelFile {
        file: "model weights".into(),
        detail: format!("tensor '{name}' is {got}, the config says {want}"),
    };
    let lin = |l: &Linear, n: usize, k: usize| -> Result<()> {
        let (name, got) = match l {
            Linear::Dense(t) => (
                t.name().to_string(),
                (t.shape().len() == 2).then(|| (t.shape()[0], t.shape()[1])),
            ),
            Linear::Quant(w) => (w.tensor().name().to_string(), Some((w.rows(), w.cols()))),
        };
        if got != Some((n, k)) {
            return Err(bad(&name, format!("{got:?}"), format!("[{n}, {k}]")));
        }
        Ok(())
    };
    let vec = |t: &GpuTensor, n: usize| -> Result<()> {
        if t.numel() != n {
            return Err(bad(t.name(), format!("{:?}", t.shape()), format!("{n} values")));
        }
        Ok(())
    };
    let rows = match embed {
        Embedding::Table(t) => {
            if t.shape().len() != 2 || t.last_dim() != h {
                return Err(bad(t.name(), format!("{:?}", t.shape()), format!("[{v}, {h}]")));
            }
            t.shape()[0]
        }
        Embedding::Rows(parts) => parts.iter().map(|p| p.shape().first().copied().unwrap_or(0)).sum(),
    };
    if rows != v {
        return Err(bad(
            "token embeddings",
            format!("{rows} rows"),
            format!("vocab_size {v}"),
        ));
    }
    let head_rows: usize = lm_head.iter().map(Linear::rows).sum();
    if head_rows != v {
        return Err(bad("lm_head", format!("{head_rows} rows"), format!("vocab_size {v}")));
    }
    for l in lm_head {
        let k = match l {
            Linear::Dense(t) => t.last_dim(),
            Linear::Quant(w) => w.cols(),
        };
        if k != h {
            return Err(bad("lm_head", format!("{k} columns"), format!("hidden_size {h}")));
        }
    }
    vec(final_norm, h)?;
    if layers.len() != cfg.num_hidden_layers {
        return Err(Error::Internal(format!(
            "{} layers built for {}",
            layers.len(),
            cfg.num_hidden_layers
        )));
    }
    for l in layers {
        vec(&l.attn_norm, h)?;
        vec(&l.ffn_norm, h)?;
        lin(&l.wq, q, h)?;
        lin(&l.wk, kv, h)?;
        lin(&l.wv, kv, h)?;
        lin(&l.wo, h, q)?;
        lin(&l.w_gate, i, h)?;
        lin(&l.w_up, i, h)?;
        lin(&l.w_down, h, i)?;
        for (b, n) in [(&l.bq, q), (&l.bk, kv), (&l.bv, kv)] {
            if let Some(b) = b {
                vec(b, n)?;
            }
        }
    }
    Ok(())
}
