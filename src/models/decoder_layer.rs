//! One Llama-family decoder layer for one token (decode), fused: five dispatches at contexts
//! where one attention chunk suffices, for dense and quantised weights alike.
//!
//! 1. `qkv`: RMSNorm prologue, `[q; k; v] = W_qkv · h + b`, per-head RMSNorm of q and k where the
//!    model has one (Qwen3), RoPE on q and k, q out, K / V appended to the cache
//!    ([`crate::ops::qkv`]);
//! 2. decode attention straight from the cache (q already rotated; split + merge only for long
//!    caches, [`crate::ops::attention::decode`]);
//! 3. `x += o_proj(attn)` (residual in the GEMV's epilogue);
//! 4. `mid = act(gate · h) * (up · h)`, `h = rmsnorm(x)` in the prologue, `act` SiLU or
//!    GELU-tanh (Gemma);
//! 5. `x += down(mid)`.
//!
//! Only 3 and 5 write x, and neither has a norm prologue (which reads all of x), so no
//! workgroup reads an element of x another workgroup of the same dispatch writes.
//!
//! Gemma 3's sandwich norms (`x += rmsnorm(o_proj(attn)) · w_post`, likewise after down) need
//! the whole projected row's Σy² before the residual add, which no GEMV workgroup has: there 3
//! and 5 write the projection into `tmp` and one more dispatch each (`norm_rows` with
//! `ACCUMULATE`, one workgroup) adds `rmsnorm(tmp) · w` to x: 7 dispatches per layer. Local
//! layers pass their window and RoPE base, and the attention scale is the config's
//! (`query_pre_attn_scalar`), through [`LayerMath`].

use crate::error::Result;
use crate::gpu::{Batch, Gpu, GpuTensor};
use crate::ops::attention::{self, DecodeOptions, DecodeScratch};
use crate::ops::kv_cache::KvCache;
use crate::ops::linear::{Epilogue, GateAct, NormPrologue, Residual};
use crate::ops::norm::{self, Norm};
use crate::ops::project::{self, GateUp, Linear};
use crate::ops::qkv::{self, QkvWeight};
use crate::ops::rope::Rope;

/// Kernel choices of the fused decode layer (the benchmark times them side by side; the default
/// is what a model records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeTuning {
    /// Workgroups per head of the fused QKV (`None`: [`qkv::default_split`]; `Some(1)`: one
    /// workgroup per head, as before the split).
    pub qkv_split: Option<u32>,
    /// Lanes per row group of the dense fused QKV (`None`: 32; see [`qkv::record_tuned`]).
    pub qkv_lanes: Option<u32>,
    /// Decode attention at single-chunk contexts through `decode_partial` (as before
    /// `decode_single`; [`DecodeOptions::partial_only`]).
    pub attention_partial_only: bool,
}

impl DecodeTuning {
    /// The kernels as they were before the QKV split and `decode_single` (the benchmark
    /// baseline).
    pub fn previous() -> DecodeTuning {
        DecodeTuning {
            qkv_split: Some(1),
            attention_partial_only: true,
            ..Default::default()
        }
    }
}

/// The weights of one layer as the fused decode kernels read them (built at load by
/// [`FusedLayer::new`] from the layer's separate weights).
#[derive(Debug, Clone)]
pub(crate) struct FusedLayer {
    pub(crate) qkv: QkvWeight,
    pub(crate) gate_up: GateUp,
}

/// Per-layer weights the fused path reads besides [`FusedLayer`].
pub(crate) struct LayerRefs<'a> {
    pub(crate) wo: &'a Linear,
    pub(crate) ffn_norm: &'a GpuTensor,
    pub(crate) w_down: &'a Linear,
    /// Gemma's sandwich norms after o_proj and after down (`x += rmsnorm(·) · w`).
    pub(crate) post_attn_norm: Option<&'a GpuTensor>,
    pub(crate) post_ffn_norm: Option<&'a GpuTensor>,
}

/// The layer's arithmetic choices: RoPE (the local base on Gemma's sliding layers), softmax
/// scale (`None`: 1 / sqrt(head_dim)), sliding window, gate activation, RMSNorm epsilon.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerMath {
    pub(crate) rope: Rope,
    pub(crate) scale: Option<f32>,
    pub(crate) window: Option<usize>,
    pub(crate) act: GateAct,
    pub(crate) eps: f32,
}

/// The one-token activations the layer reads and writes.
pub(crate) struct DecodeBuffers<'a> {
    /// Residual stream `[1, hidden]`, updated in place.
    pub(crate) x: &'a GpuTensor,
    /// Rotated q `[n_heads, head_dim]`.
    pub(crate) q: &'a GpuTensor,
    /// Attention output `[n_heads, head_dim]`.
    pub(crate) attn: &'a GpuTensor,
    /// Gated MLP output `[1, intermediate]`.
    pub(crate) mid: &'a GpuTensor,
    /// `[1, hidden]`: a projection before its sandwich norm (Gemma).
    pub(crate) tmp: &'a GpuTensor,
    /// Flash-decoding partials.
    pub(crate) scratch: &'a DecodeScratch,
}

/// Record one fused decode layer for the token in `buf.x` at the cache's next position.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_decode(
    gpu: &Gpu,
    b: &mut Batch,
    f: &FusedLayer,
    w: &LayerRefs,
    cache: &mut KvCache,
    buf: &DecodeBuffers,
    math: &LayerMath,
    tuning: &DecodeTuning,
) -> Result<()> {
    let eps = math.eps;
    qkv::record_tuned(
        gpu,
        b,
        buf.x,
        &f.qkv,
        eps,
        buf.q,
        cache,
        Some(math.rope),
        tuning.qkv_split,
        tuning.qkv_lanes,
    )?;
    let opts = DecodeOptions {
        partial_only: tuning.attention_partial_only,
        scale: math.scale,
        window: math.window,
        ..Default::default()
    };
    attention::decode(gpu, b, buf.q, cache, buf.attn, buf.scratch, &opts)?;
    let attn = buf.attn.reshape(&[1, buf.attn.numel()])?;
    residual_projection(gpu, b, &attn, w.wo, w.post_attn_norm, buf, eps)?;
    let norm = NormPrologue {
        weight: w.ffn_norm,
        eps,
    };
    project::record_swiglu(gpu, b, buf.x, Some(&norm), &f.gate_up, buf.mid, math.act)?;
    residual_projection(gpu, b, buf.mid, w.w_down, w.post_ffn_norm, buf, eps)
}

/// `x += w · input` (residual in the GEMV's epilogue), or with a sandwich norm
/// `x += rmsnorm(w · input) · post` (the projection into `tmp`, then one norm dispatch adding
/// into x).
fn residual_projection(
    gpu: &Gpu,
    b: &mut Batch,
    input: &GpuTensor,
    w: &Linear,
    post: Option<&GpuTensor>,
    buf: &DecodeBuffers,
    eps: f32,
) -> Result<()> {
    match post {
        None => {
            let add_x = Epilogue {
                residual: Some(Residual::Add(buf.x)),
                ..Default::default()
            };
            project::record(gpu, b, input, w, buf.x, None, &add_x, None)
        }
        Some(post) => {
            project::record(gpu, b, input, w, buf.tmp, None, &Epilogue::NONE, None)?;
            norm::record(gpu, b, buf.tmp, buf.x, &Norm::rms(post, eps).accumulate())
        }
    }
}

impl FusedLayer {
    /// Join the layer's q/k/v and (quantised) gate/up weights, recording the copies into `batch`.
    /// `None` when a part cannot be fused (mixed weight types, too few storage bindings).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        gpu: &Gpu,
        batch: &mut Batch,
        name: &str,
        (wq, wk, wv): (&Linear, &Linear, &Linear),
        bias: Option<(&GpuTensor, &GpuTensor, &GpuTensor)>,
        qk_norm: Option<(&GpuTensor, &GpuTensor)>,
        attn_norm: &GpuTensor,
        (gate, up): (&Linear, &Linear),
        (n_heads, n_kv_heads, head_dim): (usize, usize, usize),
    ) -> Result<Option<FusedLayer>> {
        let Some(qkv) = QkvWeight::new(
            gpu,
            batch,
            &format!("{name}.qkv"),
            (wq, wk, wv),
            attn_norm,
            bias,
            qk_norm,
            n_heads,
            n_kv_heads,
            head_dim,
        )?
        else {
            return Ok(None);
        };
        let Some(gate_up) = GateUp::new(gpu, batch, &format!("{name}.gate_up"), gate, up)? else {
            return Ok(None);
        };
        Ok(Some(FusedLayer { qkv, gate_up }))
    }
}
