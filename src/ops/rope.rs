//! Rotary position embeddings (`shaders/rope.wgsl`), in place on Q and K
//! `[tokens, heads, head_dim]`: both layouts (HF `rotate_half` and interleaved pairs), theta from
//! the config, partial rotary dimension, and a position offset for decode.
//!
//! The frequencies, angles and cos / sin come from `shaders/common/rope.wgsl`, shared with K on
//! KV append and decode Q: one computation, so Q and K turn by the same angles (an error in a
//! frequency then moves q·k by the error times the *distance* of the two tokens, not their
//! positions). Scaled variants (linear, Llama 3) change only the frequencies: [`RopeScaling`].
//!
//! ```ignore
//! let rope = Rope { theta: 10000.0, head_dim: 64, rotary_dim: 64, layout: RopeLayout::HalfSplit, scaling: RopeScaling::None };
//! rope.record(gpu, &mut batch, &q, Some(&k), cached_tokens)?;
//! ```

use super::checks::to_u32;
use crate::error::{Error, Result};
use crate::gpu::{Batch, Const, DType, Gpu, GpuTensor, Kernel};

const KERNEL: Kernel = Kernel {
    name: "rope",
    source: concat!(
        include_str!("../../shaders/common/rope.wgsl"),
        include_str!("../../shaders/rope.wgsl")
    ),
    uses_reduction: false,
};

/// Which elements form a rotated pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// `(x[i], x[i + rotary_dim/2])`: HF `rotate_half` (Llama, Qwen2, SmolLM2, GPT-NeoX).
    HalfSplit,
    /// `(x[2i], x[2i + 1])`: GPT-J, Meta's original Llama checkpoints.
    Interleaved,
}

/// How a model scales its RoPE frequencies (`rope_scaling` / `rope_parameters` of config.json).
/// Every RoPE path (prefill Q here, K on KV append, decode Q in the attention kernel) computes
/// the per-pair frequency with the one WGSL function `rope_inv_freq` of
/// `shaders/common/rope.wgsl`, which takes [`RopeScaling::wgsl`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum RopeScaling {
    /// `inv_freq[i] = theta^(-2i / rotary_dim)`.
    #[default]
    None,
    /// Positions divided by `factor` (`rope_type: "linear"`), i.e. every frequency divided by it.
    Linear {
        /// The divisor (> 0).
        factor: f64,
    },
    /// Llama 3.1 / 3.2 (`rope_type: "llama3"`): wavelengths longer than
    /// `original / low_freq_factor` divided by `factor`, shorter than `original /
    /// high_freq_factor` kept, a linear blend in `original / wavelength` between.
    Llama3 {
        /// Divisor of the low frequencies (8 for Llama 3.1, 32 for Llama 3.2).
        factor: f64,
        /// `low_freq_factor` (1).
        low_freq_factor: f64,
        /// `high_freq_factor` (4).
        high_freq_factor: f64,
        /// `original_max_position_embeddings` (8192).
        original_max_position_embeddings: f64,
    },
}

impl RopeScaling {
    /// The `scaling: vec4<f32>` argument of the WGSL `rope_inv_freq`: `(factor, low_freq_factor,
    /// high_freq_factor, original context)`; original context 0 means linear (plain is linear
    /// with factor 1).
    pub fn wgsl(&self) -> [f32; 4] {
        match *self {
            RopeScaling::None => [1.0, 0.0, 0.0, 0.0],
            RopeScaling::Linear { factor } => [factor as f32, 0.0, 0.0, 0.0],
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => [
                factor as f32,
                low_freq_factor as f32,
                high_freq_factor as f32,
                original_max_position_embeddings as f32,
            ],
        }
    }

    /// Scale one unscaled inverse frequency (f64: the CPU references and the frequency table).
    pub fn apply(&self, inv_freq: f64) -> f64 {
        match *self {
            RopeScaling::None => inv_freq,
            RopeScaling::Linear { factor } => inv_freq / factor,
            RopeScaling::Llama3 {
                factor,
                low_freq_factor: lo,
                high_freq_factor: hi,
                original_max_position_embeddings: ctx,
            } => {
                let wavelen = std::f64::consts::TAU / inv_freq;
                if wavelen < ctx / hi {
                    inv_freq
                } else if wavelen > ctx / lo {
                    inv_freq / factor
                } else {
                    let smooth = (ctx / wavelen - lo) / (hi - lo);
                    (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
                }
            }
        }
    }

    /// Finite, positive parameters (`low < high` for Llama 3); `what` names the source in errors.
    pub fn check(&self, what: &str) -> Result<()> {
        let ok = match *self {
            RopeScaling::None => true,
            RopeScaling::Linear { factor } => factor.is_finite() && factor > 0.0,
            RopeScaling::Llama3 {
                factor,
                low_freq_factor: lo,
                high_freq_factor: hi,
                original_max_position_embeddings: c,
            } => [factor, lo, hi, c].iter().all(|v| v.is_finite() && *v > 0.0) && lo < hi,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::BadInput {
                op: "rope",
                detail: format!("{what}: bad RoPE scaling parameters {self:?}"),
            })
        }
    }
}

/// RoPE of one model, the one type every RoPE path takes: prefill Q (and K) by this file's kernel
/// ([`Rope::record`]), K on KV append ([`crate::ops::kv_cache::KvCache::append`]), decode Q in the
/// attention kernel ([`crate::ops::attention::DecodeOptions::rope`]) and the fused QKV epilogue
/// ([`crate::ops::qkv`]). Every path checks it where it is used ([`Rope::check`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rope {
    /// Base `theta` (`rope_theta`, 10000 by default, 1e6 in Qwen2).
    pub theta: f64,
    /// Size of one head.
    pub head_dim: usize,
    /// Rotated leading dimensions (`head_dim * partial_rotary_factor`; even, ≤ head_dim); the
    /// rest pass through.
    pub rotary_dim: usize,
    /// Pair layout.
    pub layout: RopeLayout,
    /// Frequency scaling (Llama 3, linear).
    pub scaling: RopeScaling,
}

/// Which kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Two pairs per invocation with vec2 loads (rotary_dim % 4 == 0, even head_dim).
    Vec2 {
        /// Invocations per workgroup (64 or 128).
        workgroup: u32,
    },
    /// One pair per invocation, scalar loads (any even rotary_dim); workgroup 16 is the original baseline's.
    Scalar {
        /// Invocations per workgroup.
        workgroup: u32,
    },
}

/// The naive kernel, kept as the benchmark baseline.
pub const BASELINE: Variant = Variant::Scalar { workgroup: 16 };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    heads_q: u32,
    heads_k: u32,
    head_dim: u32,
    half_rot: u32,
    pos_offset: u32,
    nq: u32,
    n: u32,
    log2_theta: f32,
    rope_scaling: [f32; 4],
}

super::checks::params_layout_test!(
    Params,
    KERNEL.source,
    [
        heads_q,
        heads_k,
        head_dim,
        half_rot,
        pos_offset,
        nq,
        n,
        log2_theta,
        rope_scaling
    ]
);

/// `inv_freq[i] = theta^(-2i / rotary_dim)`, scaled, computed in f64 and rounded to f32 as HF
/// keeps it (the CPU references' frequencies).
pub fn inv_freq(theta: f64, rotary_dim: usize, scaling: RopeScaling) -> Vec<f64> {
    (0..rotary_dim / 2)
        .map(|i| f64::from(theta.powf(-((2 * i) as f64) / rotary_dim as f64) as f32))
        .map(|f| f64::from(scaling.apply(f) as f32))
        .collect()
}

impl Rope {
    /// Unscaled half-split RoPE rotating every dimension of a head.
    pub const fn plain(theta: f64, head_dim: usize) -> Rope {
        Rope {
            theta,
            head_dim,
            rotary_dim: head_dim,
            layout: RopeLayout::HalfSplit,
            scaling: RopeScaling::None,
        }
    }

    /// Even `rotary_dim` in `1..=head_dim` (else `Error::Shape`), finite theta > 1 and sound
    /// scaling parameters (else `Error::BadInput`); `op` names the caller in errors.
    pub fn check(&self, op: &'static str) -> Result<()> {
        let Rope {
            head_dim,
            rotary_dim,
            theta,
            scaling,
            ..
        } = *self;
        if rotary_dim == 0 || rotary_dim % 2 != 0 || rotary_dim > head_dim {
            return Err(Error::Shape {
                op,
                detail: format!("rotary_dim {rotary_dim} must be even, non-zero and ≤ head_dim {head_dim}"),
            });
        }
        if !(theta > 1.0 && theta.is_finite()) {
            return Err(Error::BadInput {
                op,
                detail: format!("rope theta {theta} must be finite and > 1"),
            });
        }
        scaling.check(op)
    }

    /// The fused paths (K on append, decode Q, the QKV epilogue): checked against the head size
    /// of their tensors and for the half-split layout they implement; returns (rotated dims,
    /// log2 theta, the WGSL scaling vector).
    pub(crate) fn fused(&self, op: &'static str, head_dim: usize) -> Result<(u32, f32, [f32; 4])> {
        if self.head_dim != head_dim {
            return Err(Error::Shape {
                op,
                detail: format!("RoPE for head_dim {} on heads of {head_dim}", self.head_dim),
            });
        }
        if self.layout != RopeLayout::HalfSplit {
            return Err(Error::Unsupported {
                kernel: op,
                variant: format!("RoPE layout {:?}", self.layout),
                why: "the fused RoPE paths pair (i, i + rotary_dim / 2) only".into(),
            });
        }
        self.check(op)?;
        Ok((self.rotary_dim as u32, (self.theta as f32).log2(), self.scaling.wgsl()))
    }

    /// The fastest variant this config allows.
    pub fn preferred_variant(&self) -> Variant {
        if self.rotary_dim.is_multiple_of(4) && self.head_dim.is_multiple_of(2) {
            Variant::Vec2 { workgroup: 128 }
        } else {
            Variant::Scalar { workgroup: 64 }
        }
    }

    /// Rotate `q` (and `k`) in place; token t sits at position `position_offset + t`.
    pub fn record(
        &self,
        gpu: &Gpu,
        batch: &mut Batch,
        q: &GpuTensor,
        k: Option<&GpuTensor>,
        position_offset: usize,
    ) -> Result<()> {
        self.record_variant(gpu, batch, q, k, position_offset, self.preferred_variant())
    }

    /// Record with an explicit variant (tests and benchmarks).
    pub fn record_variant(
        &self,
        gpu: &Gpu,
        batch: &mut Batch,
        q: &GpuTensor,
        k: Option<&GpuTensor>,
        position_offset: usize,
        variant: Variant,
    ) -> Result<()> {
        const NAME: &str = "rope";
        self.check(NAME)?;
        let c = self;
        let tokens = q.shape().first().copied().unwrap_or(0);
        for t in [Some(q), k].into_iter().flatten() {
            t.expect_dtype(NAME, &[DType::F32])?;
            if t.shape().len() != 3 || t.shape()[0] != tokens || t.shape()[2] != c.head_dim {
                return Err(Error::Shape {
                    op: NAME,
                    detail: format!(
                        "'{}' is {:?}, expected [{tokens}, heads, {}] (tokens of '{}', head_dim of the config)",
                        t.name(),
                        t.shape(),
                        c.head_dim,
                        q.name()
                    ),
                });
            }
            to_u32(NAME, "element count", t.numel())?;
        }
        if let Some(k) = k {
            super::checks::no_alias(NAME, &[q, k], &[])?;
        }
        let (vec2, wg) = match variant {
            Variant::Vec2 { workgroup } => (true, workgroup),
            Variant::Scalar { workgroup } => (false, workgroup),
        };
        if vec2 && (!c.rotary_dim.is_multiple_of(4) || !c.head_dim.is_multiple_of(2)) {
            return Err(Error::Shape {
                op: NAME,
                detail: format!(
                    "the vec2 kernel needs rotary_dim % 4 == 0 and an even head_dim, got {} / {}",
                    c.rotary_dim, c.head_dim
                ),
            });
        }
        if wg == 0 || wg > gpu.caps().max_invocations || wg > gpu.caps().max_workgroup_size_x {
            return Err(Error::Limit {
                context: format!("kernel '{NAME}' workgroup"),
                limit: "maxComputeInvocationsPerWorkgroup",
                needed: u64::from(wg),
                available: u64::from(gpu.caps().max_invocations.min(gpu.caps().max_workgroup_size_x)),
            });
        }
        let per_head = if vec2 { c.rotary_dim / 4 } else { c.rotary_dim / 2 };
        let heads_q = q.shape().get(1).copied().unwrap_or(0);
        let heads_k = k.map_or(0, |k| k.shape()[1]);
        let nq = tokens * heads_q * per_head;
        let n = nq + tokens * heads_k * per_head;
        let params = Params {
            heads_q: to_u32(NAME, "heads", heads_q)?.max(1),
            heads_k: to_u32(NAME, "kv heads", heads_k)?.max(1),
            head_dim: to_u32(NAME, "head_dim", c.head_dim)?,
            half_rot: to_u32(NAME, "rotary_dim", c.rotary_dim / 2)?,
            pos_offset: to_u32(NAME, "last position", position_offset + tokens)? - to_u32(NAME, "tokens", tokens)?,
            nq: to_u32(NAME, "units", nq)?,
            n: to_u32(NAME, "units", n)?,
            log2_theta: (c.theta as f32).log2(),
            rope_scaling: c.scaling.wgsl(),
        };
        let entry = match (vec2, k.is_some()) {
            (true, true) => "rope_vec2_qk",
            (true, false) => "rope_vec2_q",
            (false, true) => "rope_scalar_qk",
            (false, false) => "rope_scalar_q",
        };
        let consts = [
            ("WG", Const::U32(wg)),
            ("INTERLEAVED", Const::Bool(c.layout == RopeLayout::Interleaved)),
        ];
        let pipeline = gpu.pipelines().get(gpu.device(), &KERNEL, entry, None, &consts)?;
        let groups = gpu.grid(NAME, (n as u64).div_ceil(u64::from(wg)))?;
        let (qb, kb) = if vec2 { (4, 5) } else { (1, 2) };
        let mut buffers = vec![(qb, q.buffer())];
        if let Some(k) = k {
            buffers.push((kb, k.buffer()));
        }
        batch.dispatch(gpu, &pipeline, &params, &buffers, groups)
    }
}
