//! KV cache (`shaders/kv_cache.wgsl`, seeds 7 and 20): per layer, K and V for up to `max_ctx`
//! tokens in f32, f16 or int8, appended on the GPU with RoPE applied to K as it is written.
//!
//! Layout: K and V are `[max_ctx, n_kv_heads, head_dim]` in the storage format, the same
//! token-major layout as the K / V activations, so the attention kernels read a cache exactly
//! like fresh K / V. f16 is two halves per u32 word (works without `shader-f16`); int8 is four
//! codes per word plus one f16 absmax per (token, head): `value = code * absmax / 127`, the scale
//! computed by the append kernel and the codes never turned back into an f32 copy (the attention
//! kernels dequantise in registers). INT8 takes (head_dim + 2) / (4 head_dim) of the f32 bytes:
//! 25.8 % at head_dim 64, 25.4 % at 128.

use super::checks::to_u32;
use super::rope::{Rope, RopeScaling};
use crate::error::{Error, Result};
use crate::gpu::{Batch, Const, DType, Gpu, GpuTensor, Kernel};

const KERNEL: Kernel = Kernel {
    name: "kv_cache",
    source: concat!(
        include_str!("../../shaders/common/rope.wgsl"),
        include_str!("../../shaders/common/attention_rope.wgsl"),
        include_str!("../../shaders/kv_cache.wgsl")
    ),
    uses_reduction: true,
};

/// Invocations per append workgroup (one workgroup per token).
const APPEND_WG: u32 = 64;

/// How K and V are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvDType {
    /// 4 bytes per element.
    F32,
    /// 2 bytes per element (IEEE half, packed in u32 words; no `shader-f16` needed).
    F16,
    /// 1 byte per element plus an f16 absmax per (token, head).
    Int8,
}

impl KvDType {
    /// The `KV_DTYPE` constant of the kernels.
    pub(crate) fn code(self) -> u32 {
        match self {
            KvDType::F32 => 0,
            KvDType::F16 => 1,
            KvDType::Int8 => 2,
        }
    }

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            KvDType::F32 => "f32",
            KvDType::F16 => "f16",
            KvDType::Int8 => "int8",
        }
    }

    fn tensor_dtype(self) -> DType {
        match self {
            KvDType::F32 => DType::F32,
            KvDType::F16 => DType::F16,
            KvDType::Int8 => DType::I8,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    tokens: u32,
    pos0: u32,
    n_kv_heads: u32,
    src_stride: u32,
    rot: u32,
    log2_theta: f32,
    scale_stride: u32,
    _pad: u32,
    rope_scaling: [f32; 4],
}

super::checks::params_layout_test!(
    Params,
    KERNEL.source,
    [
        tokens,
        pos0,
        n_kv_heads,
        src_stride,
        rot,
        log2_theta,
        scale_stride,
        rope_scaling
    ]
);

/// One layer's K and V for up to `max_ctx` tokens.
#[derive(Debug)]
pub struct KvCache {
    name: String,
    dtype: KvDType,
    max_ctx: usize,
    n_kv_heads: usize,
    head_dim: usize,
    len: usize,
    k: GpuTensor,
    v: GpuTensor,
    /// Int8: the absmax tensors. Other formats: two 4-byte placeholders (the kernels declare the
    /// bindings and never read them; two, because writable bindings may not alias).
    scales: (GpuTensor, GpuTensor),
}

impl KvCache {
    /// Allocate an empty cache. `head_dim` must be a multiple of 16 (every model head size is).
    pub fn new(
        gpu: &Gpu,
        name: &str,
        max_ctx: usize,
        n_kv_heads: usize,
        head_dim: usize,
        dtype: KvDType,
    ) -> Result<Self> {
        const OP: &str = "KvCache::new";
        if max_ctx == 0 || n_kv_heads == 0 || head_dim == 0 || !head_dim.is_multiple_of(16) || head_dim > 256 {
            return Err(Error::Shape {
                op: OP,
                detail: format!(
                    "cache '{name}': max_ctx {max_ctx}, n_kv_heads {n_kv_heads}, head_dim {head_dim}: \
                     all must be > 0 and head_dim a multiple of 16 up to 256"
                ),
            });
        }
        to_u32(OP, "cache elements", max_ctx * n_kv_heads * head_dim)?;
        let shape = [max_ctx, n_kv_heads, head_dim];
        let k = GpuTensor::zeros(gpu, &format!("{name}.k"), &shape, dtype.tensor_dtype())?;
        let v = GpuTensor::zeros(gpu, &format!("{name}.v"), &shape, dtype.tensor_dtype())?;
        let scales = if dtype == KvDType::Int8 {
            let s = [max_ctx, n_kv_heads.next_multiple_of(2)];
            (
                GpuTensor::zeros(gpu, &format!("{name}.k_absmax"), &s, DType::F16)?,
                GpuTensor::zeros(gpu, &format!("{name}.v_absmax"), &s, DType::F16)?,
            )
        } else {
            (
                GpuTensor::zeros(gpu, &format!("{name}.k_no_scales"), &[1], DType::F32)?,
                GpuTensor::zeros(gpu, &format!("{name}.v_no_scales"), &[1], DType::F32)?,
            )
        };
        Ok(KvCache {
            name: name.to_string(),
            dtype,
            max_ctx,
            n_kv_heads,
            head_dim,
            len: 0,
            k,
            v,
            scales,
        })
    }

    /// Name used in errors.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Storage format.
    pub fn dtype(&self) -> KvDType {
        self.dtype
    }
    /// Tokens stored.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether no token is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Capacity in tokens.
    pub fn max_ctx(&self) -> usize {
        self.max_ctx
    }
    /// KV heads.
    pub fn n_kv_heads(&self) -> usize {
        self.n_kv_heads
    }
    /// Head size.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }
    /// K in the storage format, `[max_ctx, n_kv_heads, head_dim]`.
    pub fn k(&self) -> &GpuTensor {
        &self.k
    }
    /// V in the storage format.
    pub fn v(&self) -> &GpuTensor {
        &self.v
    }
    /// Int8 only: the f16 absmax of K and of V per (token, head), `[max_ctx, n_kv_heads rounded up to even]`.
    pub fn absmax(&self) -> Option<(&GpuTensor, &GpuTensor)> {
        (self.dtype == KvDType::Int8).then_some((&self.scales.0, &self.scales.1))
    }
    /// GPU bytes held by the cache (K, V and scales).
    pub fn bytes(&self) -> u64 {
        let s = self.scales.0.buffer().size() + self.scales.1.buffer().size();
        self.k.buffer().size() + self.v.buffer().size() + s
    }

    /// Forget every token (the memory stays allocated).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Keep only the first `len` tokens (e.g. to roll back a rejected draft).
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.len {
            return Err(Error::Shape {
                op: "KvCache::truncate",
                detail: format!(
                    "cache '{}' holds {} tokens, cannot truncate to {len}",
                    self.name, self.len
                ),
            });
        }
        self.len = len;
        Ok(())
    }

    /// Halves per token row in the scale tensors.
    pub(crate) fn scale_stride(&self) -> u32 {
        self.n_kv_heads.next_multiple_of(2) as u32
    }

    /// The (K, V) scale tensors to bind (placeholders unless int8).
    pub(crate) fn scale_bindings(&self) -> (&GpuTensor, &GpuTensor) {
        (&self.scales.0, &self.scales.1)
    }

    /// Record the append of `k_new` / `v_new` (`[tokens, n_kv_heads, head_dim]` f32, a leading
    /// batch dimension of 1 allowed) at rows `len..len + tokens`, rotating K by `rope` at
    /// positions `len..`, and advance `len`. Fails with [`Error::ContextFull`] when it would not fit.
    pub fn append(
        &mut self,
        gpu: &Gpu,
        batch: &mut Batch,
        k_new: &GpuTensor,
        v_new: &GpuTensor,
        rope: Option<Rope>,
    ) -> Result<()> {
        const OP: &str = "KvCache::append";
        k_new.expect_dtype(OP, &[DType::F32])?;
        v_new.expect_dtype(OP, &[DType::F32])?;
        let tokens = self.check_new(OP, k_new)?;
        if self.check_new(OP, v_new)? != tokens {
            return Err(Error::Shape {
                op: OP,
                detail: format!(
                    "'{}' is {:?} but '{}' is {:?}",
                    k_new.name(),
                    k_new.shape(),
                    v_new.name(),
                    v_new.shape()
                ),
            });
        }
        let (rot, log2_theta, rope_scaling) = match rope {
            Some(r) => r.fused(OP, self.head_dim)?,
            None => (0, 0.0, RopeScaling::None.wgsl()),
        };
        if self.len + tokens > self.max_ctx {
            return Err(Error::ContextFull {
                cache: self.name.clone(),
                len: self.len,
                adding: tokens,
                max: self.max_ctx,
            });
        }
        if tokens == 0 {
            return Ok(());
        }
        let params = Params {
            tokens: to_u32(OP, "tokens", tokens)?,
            pos0: to_u32(OP, "position", self.len)?,
            n_kv_heads: self.n_kv_heads as u32,
            src_stride: (self.n_kv_heads * self.head_dim) as u32,
            rot,
            log2_theta,
            scale_stride: self.scale_stride(),
            _pad: 0,
            rope_scaling,
        };
        let consts = [
            ("D", Const::U32(self.head_dim as u32)),
            ("WG", Const::U32(APPEND_WG)),
            ("KV_DTYPE", Const::U32(self.dtype.code())),
        ];
        let pipeline = gpu.pipelines().get(
            gpu.device(),
            &KERNEL,
            "kv_append",
            Some(gpu.caps().variants.reduction),
            &consts,
        )?;
        let (ks, vs) = self.scale_bindings();
        let groups = gpu.grid("kv_append", tokens as u64)?;
        batch.dispatch(
            gpu,
            &pipeline,
            &params,
            &[
                (1, k_new.buffer()),
                (2, v_new.buffer()),
                (3, self.k.buffer()),
                (4, self.v.buffer()),
                (5, ks.buffer()),
                (6, vs.buffer()),
            ],
            groups,
        )?;
        self.len += tokens;
        Ok(())
    }

    /// Claim the next `tokens` rows for a kernel that writes them itself (the fused decode QKV):
    /// returns the first row and advances the length. Fails with [`Error::ContextFull`].
    pub(crate) fn claim(&mut self, tokens: usize) -> Result<usize> {
        if self.len + tokens > self.max_ctx {
            return Err(Error::ContextFull {
                cache: self.name.clone(),
                len: self.len,
                adding: tokens,
                max: self.max_ctx,
            });
        }
        let at = self.len;
        self.len += tokens;
        Ok(at)
    }

    /// Tokens in a new K or V tensor, after checking its shape against the cache.
    fn check_new(&self, op: &'static str, t: &GpuTensor) -> Result<usize> {
        let s = t.shape();
        let ok_tail = s.len() >= 2 && s[s.len() - 2..] == [self.n_kv_heads, self.head_dim];
        let ok_lead = match s.len() {
            3 => true,
            4 => s[0] == 1,
            _ => false,
        };
        if !(ok_tail && ok_lead) {
            return Err(Error::Shape {
                op,
                detail: format!(
                    "'{}' is {s:?}; cache '{}' takes [tokens, {}, {}] (or [1, tokens, {}, {}])",
                    t.name(),
                    self.name,
                    self.n_kv_heads,
                    self.head_dim,
                    self.n_kv_heads,
                    self.head_dim
                ),
            });
        }
        Ok(s[s.len() - 3])
    }
}
