//! BERT encoder for sentence embeddings (all-MiniLM-L6-v2, bge, e5, gte, arctic-embed and other
//! `BertModel` checkpoints): embeddings → post-LayerNorm encoder layers → the pooling and
//! normalisation that sentence-transformers' `modules.json` + `1_Pooling/config.json` name
//! ([`SentenceHead`]: mean, CLS or last token; L2 normalisation when a `Normalize` module is
//! listed), as sentence-transformers computes it.
//!
//! Several sentences run as one padded batch: each is padded with `[PAD]` to the batch's longest
//! sequence, attention masks the padding keys per sequence (`kv_lens`), and pooling averages
//! only each sequence's own tokens. Dispatches per forward pass: 2 (embedding lookup, its
//! LayerNorm) + 9 per layer + 1 (pooling); see [`DISPATCHES_PER_LAYER`].

use crate::error::{Error, Result};
use crate::gpu::{Batch, DType, Gpu, GpuTensor};
use crate::load::{self, BertConfig, ByteSource, LoadOptions, ModelConfig, Progress, Weight, Weights};
use crate::ops::attention::{self, AttentionOptions, Kv};
use crate::ops::embedding::{self, Lookup, Tables, TokenIds};
use crate::ops::linear::{self, Act, Epilogue};
use crate::ops::norm::{self, Norm};
use crate::ops::pooling::{self, Pooling};
use crate::tokenizer::Tokenizer;

/// Kernel dispatches of one encoder layer: Q, K, V projections (bias fused), flash attention,
/// output projection (bias fused), LayerNorm with the residual fused, FC1 (bias + GELU fused),
/// FC2 (bias fused), LayerNorm with the residual fused.
pub const DISPATCHES_PER_LAYER: usize = 9;

/// Dispatches outside the layers: embedding lookup, embedding LayerNorm, mean pooling.
pub const DISPATCHES_OUTSIDE_LAYERS: usize = 3;

struct Layer {
    q_w: GpuTensor,
    q_b: GpuTensor,
    k_w: GpuTensor,
    k_b: GpuTensor,
    v_w: GpuTensor,
    v_b: GpuTensor,
    o_w: GpuTensor,
    o_b: GpuTensor,
    ln1_w: GpuTensor,
    ln1_b: GpuTensor,
    fc1_w: GpuTensor,
    fc1_b: GpuTensor,
    fc2_w: GpuTensor,
    fc2_b: GpuTensor,
    ln2_w: GpuTensor,
    ln2_b: GpuTensor,
}

/// What sentence-transformers does after the encoder: the `Pooling` module's mode and whether a
/// `Normalize` module follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentenceHead {
    /// Which tokens are pooled.
    pub pooling: Pooling,
    /// L2-normalise the pooled vector.
    pub normalize: bool,
}

impl Default for SentenceHead {
    /// Mean pooling, normalised (all-MiniLM-L6-v2's head; used when `modules.json` is absent).
    fn default() -> Self {
        SentenceHead {
            pooling: Pooling::Mean,
            normalize: true,
        }
    }
}

const ST: &str = "sentence_transformers.models.";

impl SentenceHead {
    /// Read `modules.json` and the pooling module's `config.json` from a model directory; the
    /// default head when there is no `modules.json`. Modules other than Transformer, Pooling and
    /// Normalize (Dense projections, ...) and pooling modes other than mean / CLS / last token
    /// are refused with [`Error::UnsupportedConfig`] naming them.
    pub async fn load<S: ByteSource>(source: &S) -> Result<Self> {
        let Some(bytes) = source.read_optional("modules.json").await? else {
            return Ok(Self::default());
        };
        let file = source.locate("modules.json");
        let modules: Vec<serde_json::Value> = serde_json::from_slice(&bytes).map_err(|e| bad(&file, e.to_string()))?;
        let mut head = SentenceHead {
            pooling: Pooling::Mean,
            normalize: false,
        };
        let mut pooled = false;
        for m in &modules {
            let kind = m.get("type").and_then(|t| t.as_str()).unwrap_or("");
            match kind.strip_prefix(ST).unwrap_or(kind) {
                "Transformer" => {}
                "Normalize" => head.normalize = true,
                "Pooling" => {
                    let path = m.get("path").and_then(|p| p.as_str()).unwrap_or("1_Pooling");
                    let name = format!("{}/config.json", path.trim_end_matches('/'));
                    let cfg = source.read_all(&name).await?;
                    head.pooling = Self::parse_pooling(&source.locate(&name), &cfg)?;
                    pooled = true;
                }
                other => {
                    return Err(Error::UnsupportedConfig {
                        file,
                        field: "modules.json type".into(),
                        value: format!("'{other}'"),
                        supported: "Transformer, Pooling, Normalize".into(),
                    })
                }
            }
        }
        if !pooled {
            return Err(bad(&file, "no sentence_transformers.models.Pooling module".into()));
        }
        Ok(head)
    }

    /// The pooling mode of a `1_Pooling/config.json`: exactly one of mean, CLS, last token.
    pub fn parse_pooling(file: &str, bytes: &[u8]) -> Result<Pooling> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(file, e.to_string()))?;
        let on = |k: &str| v.get(k).and_then(|b| b.as_bool()).unwrap_or(false);
        for k in [
            "pooling_mode_max_tokens",
            "pooling_mode_mean_sqrt_len_tokens",
            "pooling_mode_weightedmean_tokens",
        ] {
            if on(k) {
                return Err(Error::UnsupportedConfig {
                    file: file.to_string(),
                    field: k.into(),
                    value: "true".into(),
                    supported: "pooling_mode_mean_tokens, pooling_mode_cls_token, pooling_mode_lasttoken".into(),
                });
            }
        }
        if v.get("include_prompt").and_then(|b| b.as_bool()) == Some(false) {
            return Err(Error::UnsupportedConfig {
                file: file.to_string(),
                field: "include_prompt".into(),
                value: "false".into(),
                supported: "true".into(),
            });
        }
        let modes = [
            ("pooling_mode_mean_tokens", Pooling::Mean),
            ("pooling_mode_cls_token", Pooling::Cls),
            ("pooling_mode_lasttoken", Pooling::LastToken),
        ];
        let set: Vec<_> = modes.iter().filter(|(k, _)| on(k)).collect();
        match set.as_slice() {
            [(_, p)] => Ok(*p),
            [] => Err(bad(file, "no pooling mode is set".into())),
            many => Err(Error::UnsupportedConfig {
                file: file.to_string(),
                field: many.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(" + "),
                value: "true".into(),
                supported: "exactly one pooling mode (concatenated modes are not implemented)".into(),
            }),
        }
    }
}

/// A loaded BERT sentence-embedding model: config, tokenizer and weights on the GPU.
pub struct BertModel {
    config: BertConfig,
    head: SentenceHead,
    tokenizer: Tokenizer,
    max_tokens: usize,
    eps: f32,
    word: GpuTensor,
    position: GpuTensor,
    token_type: GpuTensor,
    emb_ln_w: GpuTensor,
    emb_ln_b: GpuTensor,
    layers: Vec<Layer>,
}

/// The GPU tensors of one recorded forward pass (kept alive until they are read).
pub struct Encoded {
    /// Last hidden state `[batch, seq, hidden]` (padding rows included; they are not meaningful).
    pub hidden: GpuTensor,
    /// Pooled (and, per the model's head, L2-normalised) embeddings `[batch, hidden]`.
    pub pooled: GpuTensor,
    /// Valid tokens per sequence.
    pub lens: Vec<usize>,
    /// Padded sequence length.
    pub seq: usize,
    // Scratch that must outlive the submission.
    _scratch: Vec<GpuTensor>,
    _ids: (TokenIds, Option<TokenIds>),
}

fn bad(file: &str, detail: String) -> Error {
    Error::BadModelFile {
        file: file.to_string(),
        detail,
    }
}

/// Take a tensor held in one buffer (split tensors are not expected in a BERT checkpoint).
pub(crate) fn take(w: &mut Weights, name: &str) -> Result<GpuTensor> {
    match w.take(name)? {
        Weight::Whole(t) => Ok(t),
        Weight::Split(s) => Err(Error::Unsupported {
            kernel: "BertModel::load",
            variant: format!("tensor '{name}' split into {} row blocks", s.parts.len()),
            why: "BERT tables are expected to fit one storage binding".into(),
        }),
    }
}

/// A bias / LayerNorm vector as f32 (the ops take those in f32): converted through the host when
/// the checkpoint stores it as f16 / bf16 (a few KiB per vector).
pub(crate) async fn vector(gpu: &Gpu, w: &mut Weights, name: &str, len: usize) -> Result<GpuTensor> {
    let t = take(w, name)?;
    if t.numel() != len {
        return Err(bad(
            load::SAFETENSORS_FILE,
            format!("'{name}' is {:?}, expected [{len}]", t.shape()),
        ));
    }
    if t.dtype() == DType::F32 {
        return Ok(t);
    }
    let v = t.to_f32_vec(gpu).await?;
    GpuTensor::from_f32(gpu, name, &[len], DType::F32, &v)
}

/// A `[rows, cols]` matrix as stored (f32, f16 or bf16).
pub(crate) fn matrix(w: &mut Weights, name: &str, rows: usize, cols: usize) -> Result<GpuTensor> {
    let t = take(w, name)?;
    if t.shape() != [rows, cols] {
        return Err(bad(
            load::SAFETENSORS_FILE,
            format!("'{name}' is {:?}, expected [{rows}, {cols}]", t.shape()),
        ));
    }
    Ok(t)
}

impl BertModel {
    /// Load config, tokenizer and weights from a model directory (default load options).
    pub async fn load<S: ByteSource>(gpu: &Gpu, source: &S) -> Result<Self> {
        Self::load_with(gpu, source, &LoadOptions::default(), &mut |_| {}).await
    }

    /// Load with explicit options and a progress callback for the weights download.
    pub async fn load_with<S: ByteSource>(
        gpu: &Gpu,
        source: &S,
        opts: &LoadOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Self> {
        // Whatever is left (pooler, position_ids) is dropped here, freeing its buffers.
        Ok(Self::load_parts(gpu, source, opts, progress).await?.0)
    }

    /// Load the encoder; also returns the checkpoint's other tensors (a classification head).
    pub(crate) async fn load_parts<S: ByteSource>(
        gpu: &Gpu,
        source: &S,
        opts: &LoadOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(Self, Weights)> {
        let config = match ModelConfig::load(source).await? {
            ModelConfig::Bert(c) => c,
            other => return Err(bad("config.json", format!("not a BERT config: {other:?}"))),
        };
        if !matches!(config.hidden_act.as_str(), "gelu" | "gelu_python") {
            return Err(Error::Unsupported {
                kernel: "BertModel",
                variant: format!("hidden_act '{}'", config.hidden_act),
                why: "only the erf GELU ('gelu') is fused into the FFN epilogue".into(),
            });
        }
        if config.position_embedding_type != "absolute" {
            return Err(Error::Unsupported {
                kernel: "BertModel",
                variant: format!("position_embedding_type '{}'", config.position_embedding_type),
                why: "only absolute position embeddings are implemented".into(),
            });
        }
        let (h, heads, inter) = (config.hidden_size, config.num_attention_heads, config.intermediate_size);
        if heads == 0 || !h.is_multiple_of(heads) {
            return Err(bad(
                "config.json",
                format!("hidden_size {h} is not a multiple of num_attention_heads {heads}"),
            ));
        }
        // sentence-transformers truncates to max_seq_length (256 for MiniLM); BERT itself to its
        // position table.
        let mut max_tokens = config.max_position_embeddings;
        if let Some(bytes) = source.read_optional("sentence_bert_config.json").await? {
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| bad("sentence_bert_config.json", e.to_string()))?;
            if let Some(m) = v.get("max_seq_length").and_then(|m| m.as_u64()) {
                max_tokens = max_tokens.min(m as usize);
            }
        }
        let head = SentenceHead::load(source).await?;
        let tokenizer = Tokenizer::load(source).await?;
        let mut w = load::load_weights(gpu, source, opts, progress).await?;
        let p = if w.contains("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let word = matrix(
            &mut w,
            &format!("{p}embeddings.word_embeddings.weight"),
            config.vocab_size,
            h,
        )?;
        let position = matrix(
            &mut w,
            &format!("{p}embeddings.position_embeddings.weight"),
            config.max_position_embeddings,
            h,
        )?;
        let token_type = matrix(
            &mut w,
            &format!("{p}embeddings.token_type_embeddings.weight"),
            config.type_vocab_size,
            h,
        )?;
        let emb_ln_w = vector(gpu, &mut w, &format!("{p}embeddings.LayerNorm.weight"), h).await?;
        let emb_ln_b = vector(gpu, &mut w, &format!("{p}embeddings.LayerNorm.bias"), h).await?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = format!("{p}encoder.layer.{i}.");
            let n = |s: &str| format!("{l}{s}");
            layers.push(Layer {
                q_w: matrix(&mut w, &n("attention.self.query.weight"), h, h)?,
                q_b: vector(gpu, &mut w, &n("attention.self.query.bias"), h).await?,
                k_w: matrix(&mut w, &n("attention.self.key.weight"), h, h)?,
                k_b: vector(gpu, &mut w, &n("attention.self.key.bias"), h).await?,
                v_w: matrix(&mut w, &n("attention.self.value.weight"), h, h)?,
                v_b: vector(gpu, &mut w, &n("attention.self.value.bias"), h).await?,
                o_w: matrix(&mut w, &n("attention.output.dense.weight"), h, h)?,
                o_b: vector(gpu, &mut w, &n("attention.output.dense.bias"), h).await?,
                ln1_w: vector(gpu, &mut w, &n("attention.output.LayerNorm.weight"), h).await?,
                ln1_b: vector(gpu, &mut w, &n("attention.output.LayerNorm.bias"), h).await?,
                fc1_w: matrix(&mut w, &n("intermediate.dense.weight"), inter, h)?,
                fc1_b: vector(gpu, &mut w, &n("intermediate.dense.bias"), inter).await?,
                fc2_w: matrix(&mut w, &n("output.dense.weight"), h, inter)?,
                fc2_b: vector(gpu, &mut w, &n("output.dense.bias"), h).await?,
                ln2_w: vector(gpu, &mut w, &n("output.LayerNorm.weight"), h).await?,
                ln2_b: vector(gpu, &mut w, &n("output.LayerNorm.bias"), h).await?,
            });
        }
        let eps = config.layer_norm_eps as f32;
        let model = BertModel {
            config,
            head,
            tokenizer,
            max_tokens,
            eps,
            word,
            position,
            token_type,
            emb_ln_w,
            emb_ln_b,
            layers,
        };
        Ok((model, w))
    }

    /// The model's config.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The sentence-transformers head (pooling, normalisation).
    pub fn head(&self) -> SentenceHead {
        self.head
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.config.hidden_size
    }

    /// Longest token sequence (longer texts are truncated, keeping the final `[SEP]`).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Token ids of a text with `[CLS]` / `[SEP]`, truncated to [`max_tokens`](Self::max_tokens).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode(text, true)?;
        if ids.len() > self.max_tokens {
            let last = ids[ids.len() - 1];
            ids.truncate(self.max_tokens.saturating_sub(1));
            ids.push(last);
        }
        Ok(ids)
    }

    /// Record the forward pass of a padded batch of token sequences (each non-empty, at most
    /// [`max_tokens`](Self::max_tokens)). Nothing is submitted; the returned tensors are valid
    /// once `batch` has been submitted.
    pub fn record(&self, gpu: &Gpu, batch: &mut Batch, seqs: &[Vec<u32>]) -> Result<Encoded> {
        self.record_typed(gpu, batch, seqs, None)
    }

    /// [`record`](Self::record) with token type (segment) ids per sequence (sentence pairs:
    /// 0 for the first, 1 for the second); `None`: all 0.
    pub fn record_typed(
        &self,
        gpu: &Gpu,
        batch: &mut Batch,
        seqs: &[Vec<u32>],
        types: Option<&[Vec<u32>]>,
    ) -> Result<Encoded> {
        const OP: &str = "BertModel::record";
        if let Some(t) = types {
            if t.len() != seqs.len() || t.iter().zip(seqs).any(|(a, b)| a.len() != b.len()) {
                return Err(Error::Shape {
                    op: OP,
                    detail: "token types must match the sequences' lengths".into(),
                });
            }
            if let Some(bad) = t.iter().flatten().find(|&&x| x as usize >= self.config.type_vocab_size) {
                return Err(Error::BadInput {
                    op: OP,
                    detail: format!(
                        "token type {bad} is outside type_vocab_size {}",
                        self.config.type_vocab_size
                    ),
                });
            }
        }
        let b = seqs.len();
        let seq = seqs.iter().map(Vec::len).max().unwrap_or(0);
        if b == 0 || seqs.iter().any(Vec::is_empty) {
            return Err(Error::BadInput {
                op: OP,
                detail: "every sequence needs at least one token".into(),
            });
        }
        if seq > self.config.max_position_embeddings {
            return Err(Error::Shape {
                op: OP,
                detail: format!(
                    "{seq} tokens exceed max_position_embeddings {}",
                    self.config.max_position_embeddings
                ),
            });
        }
        let (h, heads, inter) = (
            self.config.hidden_size,
            self.config.num_attention_heads,
            self.config.intermediate_size,
        );
        let d = h / heads;
        let t = b * seq;
        let pad = self.config.pad_token_id;
        let mut flat = Vec::with_capacity(t);
        for s in seqs {
            flat.extend_from_slice(s);
            flat.extend(std::iter::repeat_n(pad, seq - s.len()));
        }
        let lens: Vec<usize> = seqs.iter().map(Vec::len).collect();
        let ids = TokenIds::new(gpu, "bert.ids", &flat)?;
        let type_ids = match types {
            Some(types) => {
                let mut flat_types = Vec::with_capacity(t);
                for s in types {
                    flat_types.extend_from_slice(s);
                    flat_types.extend(std::iter::repeat_n(0, seq - s.len()));
                }
                Some(TokenIds::new(gpu, "bert.token_types", &flat_types)?)
            }
            None => None,
        };
        let z = |name: &str, shape: &[usize]| GpuTensor::zeros(gpu, name, shape, DType::F32);
        let x = z("bert.hidden", &[t, h])?;
        let a = z("bert.attn_out", &[t, h])?;
        let h1 = z("bert.attn_norm", &[t, h])?;
        let q = z("bert.q", &[t, h])?;
        let k = z("bert.k", &[t, h])?;
        let v = z("bert.v", &[t, h])?;
        let ctx = z("bert.ctx", &[t, h])?;
        let f = z("bert.ffn_hidden", &[t, inter])?;
        let g = z("bert.ffn_out", &[t, h])?;
        let pooled = z("bert.pooled", &[b, h])?;
        let lens_u32: Vec<u32> = lens.iter().map(|&l| l as u32).collect();
        let pool_lens = GpuTensor::from_u32(gpu, "bert.lens", &[b], &lens_u32)?;
        let padded = lens.iter().any(|&l| l != seq);
        let kv_lens = if padded {
            let lf: Vec<f32> = lens.iter().map(|&l| l as f32).collect();
            Some(GpuTensor::from_f32(gpu, "bert.kv_lens", &[b], DType::F32, &lf)?)
        } else {
            None
        };
        let shape4 = [b, seq, heads, d];
        let (q4, k4, v4, ctx4) = (
            q.reshape(&shape4)?,
            k.reshape(&shape4)?,
            v.reshape(&shape4)?,
            ctx.reshape(&shape4)?,
        );

        // Embeddings: word + position (t % seq) + token type 0, then LayerNorm into x.
        let tables = Tables {
            word: &self.word,
            position: Some(&self.position),
            token_type: Some(&self.token_type),
        };
        let lookup = Lookup {
            ids: &ids,
            token_types: type_ids.as_ref(),
            position_offset: 0,
            seq_len: seq,
        };
        embedding::record(gpu, batch, &tables, &lookup, &a)?;
        norm::record(
            gpu,
            batch,
            &a,
            &x,
            &Norm::layer(&self.emb_ln_w, Some(&self.emb_ln_b), self.eps),
        )?;

        let attn_opts = AttentionOptions {
            causal: false,
            kv_lens: kv_lens.as_ref(),
            ..Default::default()
        };
        for l in &self.layers {
            linear::record(gpu, batch, &x, &l.q_w, &q, &Epilogue::bias(&l.q_b))?;
            linear::record(gpu, batch, &x, &l.k_w, &k, &Epilogue::bias(&l.k_b))?;
            linear::record(gpu, batch, &x, &l.v_w, &v, &Epilogue::bias(&l.v_b))?;
            attention::flash_prefill(gpu, batch, &q4, Kv::F32 { k: &k4, v: &v4 }, &ctx4, &attn_opts)?;
            linear::record(gpu, batch, &ctx, &l.o_w, &a, &Epilogue::bias(&l.o_b))?;
            // Post-LN: h1 = LN(attn + x).
            norm::record(
                gpu,
                batch,
                &a,
                &h1,
                &Norm::layer(&l.ln1_w, Some(&l.ln1_b), self.eps).residual(&x, false),
            )?;
            linear::record(
                gpu,
                batch,
                &h1,
                &l.fc1_w,
                &f,
                &Epilogue {
                    bias: Some(&l.fc1_b),
                    act: Act::Gelu,
                    residual: None,
                },
            )?;
            linear::record(gpu, batch, &f, &l.fc2_w, &g, &Epilogue::bias(&l.fc2_b))?;
            // x = LN(ffn + h1).
            norm::record(
                gpu,
                batch,
                &g,
                &x,
                &Norm::layer(&l.ln2_w, Some(&l.ln2_b), self.eps).residual(&h1, false),
            )?;
        }
        let hidden = x.reshape(&[b, seq, h])?;
        pooling::record(
            gpu,
            batch,
            &hidden,
            &pool_lens,
            &pooled,
            self.head.pooling,
            self.head.normalize,
        )?;
        let mut scratch = vec![x, a, h1, q, k, v, ctx, f, g, pool_lens];
        scratch.extend(kv_lens);
        Ok(Encoded {
            hidden,
            pooled,
            lens,
            seq,
            _scratch: scratch,
            _ids: (ids, type_ids),
        })
    }

    /// Run the encoder on texts (one padded batch) and return the submitted forward pass.
    pub async fn encode(&self, gpu: &Gpu, texts: &[&str]) -> Result<Encoded> {
        let seqs = texts.iter().map(|t| self.tokenize(t)).collect::<Result<Vec<_>>>()?;
        let mut batch = gpu.batch();
        let enc = self.record(gpu, &mut batch, &seqs)?;
        gpu.submit(batch)?;
        Ok(enc)
    }

    /// Sentence embeddings (pooled and normalised as the model's [`SentenceHead`] says), one per
    /// text, computed as one padded batch.
    pub async fn embed(&self, gpu: &Gpu, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self.encode(gpu, texts).await?;
        let flat = enc.pooled.to_f32_vec(gpu).await?;
        Ok(flat.chunks_exact(self.dim()).map(<[f32]>::to_vec).collect())
    }

    /// The embedding of one text.
    pub async fn embed_one(&self, gpu: &Gpu, text: &str) -> Result<Vec<f32>> {
        let mut v = self.embed(gpu, &[text]).await?;
        v.pop().ok_or_else(|| Error::Internal("embed returned no row".into()))
    }

    /// The last hidden state of each text's valid tokens, `[len * hidden]` row-major per text
    /// (one padded batch; padding rows removed).
    pub async fn last_hidden_state(&self, gpu: &Gpu, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self.encode(gpu, texts).await?;
        let flat = enc.hidden.to_f32_vec(gpu).await?;
        let h = self.dim();
        Ok(enc
            .lens
            .iter()
            .enumerate()
            .map(|(i, &l)| flat[i * enc.seq * h..(i * enc.seq + l) * h].to_vec())
            .collect())
    }
}
