//! Rotary position embeddings (`shaders/rope.wgsl`, seed items 11, 12), in place on Q and K
//! `[tokens, heads, head_dim]`: both layouts (HF `rotate_half` and interleaved pairs), theta from
//! the config, partial rotary dimension, and a position offset for decode.
//!
//! A [`Rope`] is built once per model: it uploads the per-pair frequencies as 64-bit fixed-point
//! turns per position, which lets the kernel reduce angles exactly at any position (see the
//! shader). Scaled variants (Llama 3, YaRN...) only change the frequencies: [`Rope::with_inv_freq`].
//!
//! ```ignore
//! let rope = Rope::new(gpu, RopeConfig { theta: 10000.0, head_dim: 64, rotary_dim: 64, layout: RopeLayout::HalfSplit })?;
//! rope.record(gpu, &mut batch, &q, Some(&k), cached_tokens)?;
//! ```

use super::to_u32;
use crate::error::{Error, Result};
use crate::gpu::{Batch, Buffer, Const, DType, Gpu, GpuTensor, Kernel};

const KERNEL: Kernel = Kernel {
    name: "rope",
    source: include_str!("../../shaders/rope.wgsl"),
    uses_reduction: false,
    uses_f16: false,
};

/// Which elements form a rotated pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// `(x[i], x[i + rotary_dim/2])`: HF `rotate_half` (Llama, Qwen2, SmolLM2, GPT-NeoX).
    HalfSplit,
    /// `(x[2i], x[2i + 1])`: GPT-J, Meta's original Llama checkpoints.
    Interleaved,
}

/// RoPE settings from the model config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeConfig {
    /// Base `theta` (`rope_theta`, 10000 by default, 1e6 in Qwen2).
    pub theta: f64,
    /// Size of one head.
    pub head_dim: usize,
    /// Rotated leading dimensions (`head_dim * partial_rotary_factor`; even, ≤ head_dim).
    pub rotary_dim: usize,
    /// Pair layout.
    pub layout: RopeLayout,
}

/// Which kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Two pairs per invocation with vec2 loads (rotary_dim % 4 == 0, even head_dim).
    Vec2 {
        /// Invocations per workgroup (64 or 128).
        workgroup: u32,
    },
    /// One pair per invocation, scalar loads (any even rotary_dim); workgroup 16 is the seed's.
    Scalar {
        /// Invocations per workgroup.
        workgroup: u32,
    },
}

/// The seed's original kernel, kept as the benchmark baseline.
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
    _pad: u32,
}

/// RoPE for one model: its config and the frequency table on the GPU.
#[derive(Debug)]
pub struct Rope {
    config: RopeConfig,
    freqs: Buffer,
}

/// `inv_freq[i] = theta^(-2i / rotary_dim)`, computed in f64 and rounded to f32 as HF keeps it
/// (the frequencies the model was trained with, within an ulp); only the angles are then exact.
pub fn inv_freq(theta: f64, rotary_dim: usize) -> Vec<f64> {
    (0..rotary_dim / 2)
        .map(|i| f64::from(theta.powf(-((2 * i) as f64) / rotary_dim as f64) as f32))
        .collect()
}

/// `inv_freq / 2pi` mod 1 as a 64-bit fixed-point fraction, split into (high, low) words.
fn fixed_point_turns(inv_freq: f64) -> [u32; 2] {
    let turns = (inv_freq / std::f64::consts::TAU).rem_euclid(1.0);
    // f64 keeps 53 bits: the fraction scaled by 2^64 is exact up to its last 11 bits.
    let fixed = (turns * 18_446_744_073_709_551_616.0) as u64;
    [(fixed >> 32) as u32, fixed as u32]
}

impl Rope {
    /// Standard RoPE frequencies from `theta`.
    pub fn new(gpu: &Gpu, config: RopeConfig) -> Result<Rope> {
        Self::with_inv_freq(gpu, config, &inv_freq(config.theta, config.rotary_dim))
    }

    /// Explicit per-pair inverse frequencies (`rotary_dim / 2` of them), for scaled RoPE variants.
    pub fn with_inv_freq(gpu: &Gpu, config: RopeConfig, inv_freq: &[f64]) -> Result<Rope> {
        const NAME: &str = "rope";
        let RopeConfig { head_dim, rotary_dim, .. } = config;
        if rotary_dim == 0 || rotary_dim % 2 != 0 || rotary_dim > head_dim {
            return Err(Error::Shape {
                op: NAME,
                detail: format!("rotary_dim {rotary_dim} must be even, non-zero and ≤ head_dim {head_dim}"),
            });
        }
        if inv_freq.len() != rotary_dim / 2 || inv_freq.iter().any(|f| !f.is_finite()) {
            return Err(Error::Shape {
                op: NAME,
                detail: format!("{} finite inverse frequencies for rotary_dim {rotary_dim}", inv_freq.len()),
            });
        }
        let words: Vec<u32> = inv_freq.iter().flat_map(|&f| fixed_point_turns(f)).collect();
        let freqs = gpu.create_buffer(
            "rope frequencies",
            (words.len() * 4) as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        )?;
        gpu.queue().write_buffer(freqs.raw(), 0, bytemuck::cast_slice(&words));
        Ok(Rope { config, freqs })
    }

    /// The config it was built with.
    pub fn config(&self) -> &RopeConfig {
        &self.config
    }

    /// The fastest variant this config allows.
    pub fn preferred_variant(&self) -> Variant {
        if self.config.rotary_dim.is_multiple_of(4) && self.config.head_dim.is_multiple_of(2) {
            Variant::Vec2 { workgroup: 128 }
        } else {
            Variant::Scalar { workgroup: 64 }
        }
    }

    /// Rotate `q` (and `k`) in place; token t sits at position `position_offset + t`.
    pub fn record(&self, gpu: &Gpu, batch: &mut Batch, q: &GpuTensor, k: Option<&GpuTensor>, position_offset: usize) -> Result<()> {
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
        let c = &self.config;
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
            super::norm::no_alias(NAME, &[q, k], &[])?;
        }
        let (vec2, wg) = match variant {
            Variant::Vec2 { workgroup } => (true, workgroup),
            Variant::Scalar { workgroup } => (false, workgroup),
        };
        if vec2 && (!c.rotary_dim.is_multiple_of(4) || !c.head_dim.is_multiple_of(2)) {
            return Err(Error::Shape {
                op: NAME,
                detail: format!("the vec2 kernel needs rotary_dim % 4 == 0 and an even head_dim, got {} / {}", c.rotary_dim, c.head_dim),
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
            _pad: 0,
        };
        let entry = match (vec2, k.is_some()) {
            (true, true) => "rope_vec2_qk",
            (true, false) => "rope_vec2_q",
            (false, true) => "rope_scalar_qk",
            (false, false) => "rope_scalar_q",
        };
        let consts = [("WG", Const::U32(wg)), ("INTERLEAVED", Const::Bool(c.layout == RopeLayout::Interleaved))];
        let pipeline = gpu.pipelines().get(gpu.device(), &KERNEL, entry, None, &consts)?;
        let groups = gpu.grid(NAME, (n as u64).div_ceil(u64::from(wg)))?;
        let (qb, kb) = if vec2 { (4, 5) } else { (1, 2) };
        let mut buffers = vec![(3, &self.freqs), (qb, q.buffer())];
        if let Some(k) = k {
            buffers.push((kb, k.buffer()));
        }
        batch.dispatch(gpu, &pipeline, &params, &buffers, groups)
    }
}
