//! LayerNorm and RMSNorm (`shaders/norm.wgsl`): one workgroup per row with
//! Welford statistics combined by `wg_sum` (shared-memory or subgroup path), optionally fused with
//! the residual add `y = norm(x + r)` that also stores `x + r` back into `x` (the residual stream)
//! when the caller needs it. The one-thread-per-row kernel is kept as the benchmark baseline.
//!
//! ```ignore
//! norm::record(gpu, &mut batch, &x, &y, &Norm::layer(&gamma, Some(&beta), 1e-12))?;   // BERT
//! norm::record(gpu, &mut batch, &h, &y, &Norm::rms(&w, 1e-6).residual(&attn_out, true))?; // Llama: h += attn_out; y = rms(h)
//! ```

use super::checks::{no_alias, require_reduction, to_u32};
use crate::error::{Error, Result};
use crate::gpu::{Batch, Const, DType, Gpu, GpuTensor, Kernel, Reduction};

const KERNEL: Kernel = Kernel {
    name: "norm",
    source: include_str!("../../shaders/norm.wgsl"),
    uses_reduction: true,
};

/// Which statistics normalise the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `(v - mean) / sqrt(var + eps)` (BERT, GPT-2).
    Layer,
    /// `v / sqrt(mean(v^2) + eps)` (Llama, Qwen2, SmolLM2).
    Rms,
}

/// One normalisation: weights, epsilon and the optional fused residual add.
#[derive(Debug, Clone, Copy)]
pub struct Norm<'a> {
    /// LayerNorm or RMSNorm.
    pub kind: NormKind,
    /// Scale, `[cols]` f32.
    pub gamma: &'a GpuTensor,
    /// Shift, `[cols]` f32 (LayerNorm usually has one; RMSNorm usually not).
    pub beta: Option<&'a GpuTensor>,
    /// Added to the variance / mean square before the square root.
    pub eps: f32,
    /// `r`, added to `x` before normalising; the sum is written back into `x` when the flag is set.
    pub residual: Option<(&'a GpuTensor, bool)>,
    /// Add the normalised row to `y` instead of storing it (`y += norm(x)`: Gemma's sandwich
    /// norm `x += rmsnorm(o) · w` in one dispatch).
    pub accumulate: bool,
}

impl<'a> Norm<'a> {
    /// LayerNorm with scale and optional shift.
    pub fn layer(gamma: &'a GpuTensor, beta: Option<&'a GpuTensor>, eps: f32) -> Self {
        Norm {
            kind: NormKind::Layer,
            gamma,
            beta,
            eps,
            residual: None,
            accumulate: false,
        }
    }

    /// RMSNorm with scale.
    pub fn rms(gamma: &'a GpuTensor, eps: f32) -> Self {
        Norm {
            kind: NormKind::Rms,
            gamma,
            beta: None,
            eps,
            residual: None,
            accumulate: false,
        }
    }

    /// Add the result to `y` (`y += norm(x)`) instead of storing it.
    pub fn accumulate(mut self) -> Self {
        self.accumulate = true;
        self
    }

    /// Normalise `x + r` instead of `x`; with `store_sum` also write `x + r` into `x`.
    pub fn residual(mut self, r: &'a GpuTensor, store_sum: bool) -> Self {
        self.residual = Some((r, store_sum));
        self
    }
}

/// Which kernel computes the norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// One workgroup per row, reductions by the given path.
    Workgroup(Reduction),
    /// The naive kernel: one thread per row (benchmark baseline).
    RowPerThread,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

super::checks::params_layout_test!(Params, KERNEL.source, [rows, cols, eps]);

/// Record `y = norm(x [+ r])` over the last dimension with the device's preferred variant.
pub fn record(gpu: &Gpu, batch: &mut Batch, x: &GpuTensor, y: &GpuTensor, norm: &Norm) -> Result<()> {
    record_variant(
        gpu,
        batch,
        x,
        y,
        norm,
        Variant::Workgroup(gpu.caps().variants.reduction),
    )
}

/// Record with an explicit variant (tests and benchmarks).
pub fn record_variant(
    gpu: &Gpu,
    batch: &mut Batch,
    x: &GpuTensor,
    y: &GpuTensor,
    norm: &Norm,
    variant: Variant,
) -> Result<()> {
    let name: &'static str = match norm.kind {
        NormKind::Layer => "layer_norm",
        NormKind::Rms => "rms_norm",
    };
    let cols = x.last_dim();
    for t in [
        Some(x),
        Some(y),
        Some(norm.gamma),
        norm.beta,
        norm.residual.map(|r| r.0),
    ]
    .into_iter()
    .flatten()
    {
        t.expect_dtype(name, &[DType::F32])?;
    }
    for t in [Some(y), norm.residual.map(|r| r.0)].into_iter().flatten() {
        if t.shape() != x.shape() {
            return Err(Error::Shape {
                op: name,
                detail: format!(
                    "'{}' is {:?} but input '{}' is {:?}",
                    t.name(),
                    t.shape(),
                    x.name(),
                    x.shape()
                ),
            });
        }
    }
    for t in [Some(norm.gamma), norm.beta].into_iter().flatten() {
        if t.numel() != cols {
            return Err(Error::Shape {
                op: name,
                detail: format!(
                    "weight '{}' is {:?} but rows of '{}' have {cols} elements",
                    t.name(),
                    t.shape(),
                    x.name()
                ),
            });
        }
    }
    let (r, store_sum) = match norm.residual {
        Some((r, store)) => (Some(r), store),
        None => (None, false),
    };
    // x is bound read_write and y is written: neither may share a buffer with another binding.
    let reads: Vec<&GpuTensor> = [Some(norm.gamma), norm.beta, r].into_iter().flatten().collect();
    no_alias(name, &[x, y], &reads)?;
    let params = Params {
        rows: to_u32(name, "rows", x.rows())?,
        cols: to_u32(name, "row length", cols)?,
        eps: norm.eps,
        _pad: 0,
    };
    to_u32(name, "element count", x.numel())?;
    let wg = gpu.caps().variants.reduce_workgroup;
    let consts = [
        ("WG", Const::U32(wg)),
        ("RMS", Const::Bool(norm.kind == NormKind::Rms)),
        ("BIAS", Const::Bool(norm.beta.is_some())),
        ("RESIDUAL", Const::Bool(r.is_some())),
        ("STORE_SUM", Const::Bool(store_sum)),
        ("ACCUMULATE", Const::Bool(norm.accumulate)),
    ];
    let (pipeline, groups) = match variant {
        Variant::Workgroup(reduction) => {
            require_reduction(gpu, name, reduction)?;
            let p = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "norm_rows", Some(reduction), &consts)?;
            (p, gpu.grid(name, u64::from(params.rows))?)
        }
        Variant::RowPerThread => {
            let p = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "norm_row_per_thread", None, &consts)?;
            (p, gpu.grid(name, u64::from(params.rows).div_ceil(u64::from(wg)))?)
        }
    };
    // Unused bindings (r, beta) get gamma, a read-only tensor of this call.
    let buffers = [
        (1, x.buffer()),
        (2, r.unwrap_or(norm.gamma).buffer()),
        (3, norm.gamma.buffer()),
        (4, norm.beta.unwrap_or(norm.gamma).buffer()),
        (5, y.buffer()),
    ];
    batch.dispatch(gpu, &pipeline, &params, &buffers, groups)
}
