//! FFN blocks with f32 / f16 / bf16 weights: GELU MLPs (BERT, GPT-2) and SwiGLU (Llama family).
//!
//! - BERT / GPT-2 style: [`record_fc1_gelu`] (`h = gelu(x·W1ᵀ + b1)`) and [`record_fc2_residual`]
//!   (`y = h·W2ᵀ + b2 + residual`, in place when the residual is `y`): the GEMV (one row) or the
//!   tiled matmul (prefill) with the epilogue fused.
//! - Llama style: [`record_swiglu`], the fused decode kernel `h = silu(x·Wgᵀ) * (x·Wuᵀ)`
//!   (`shaders/ffn.wgsl`) reading gate and up rows in the same pass with x staged in workgroup
//!   memory, in the 32 KiB or 16 KiB variant (`caps.variants.swiglu`); and
//!   [`record_swiglu_prefill`], two matmuls with the product fused into the second one's epilogue.

use super::checks::{no_alias, to_u32};
use super::linear::{self, chunk_elems, dtype_consts, weight_shape, Act, Epilogue, GateAct, NormPrologue, Residual};
use crate::error::{Error, Result};
use crate::gpu::{Batch, Const, DType, Gpu, GpuTensor, Kernel, SwigluVariant};

const KERNEL: Kernel = Kernel {
    name: "ffn",
    source: concat!(
        include_str!("../../shaders/common/linear_common.wgsl"),
        include_str!("../../shaders/ffn.wgsl")
    ),
    uses_reduction: false,
};

/// `h = gelu(x·W1ᵀ + b1)` (erf GELU), x `[rows, K]`, W1 `[N, K]`, h `[rows, N]`.
pub fn record_fc1_gelu(
    gpu: &Gpu,
    batch: &mut Batch,
    x: &GpuTensor,
    w1: &GpuTensor,
    b1: Option<&GpuTensor>,
    h: &GpuTensor,
) -> Result<()> {
    linear::record(
        gpu,
        batch,
        x,
        w1,
        h,
        &Epilogue {
            bias: b1,
            act: Act::Gelu,
            residual: None,
        },
    )
}

/// `y = h·W2ᵀ + b2 + residual`; pass `y` itself as `residual` to add in place.
pub fn record_fc2_residual(
    gpu: &Gpu,
    batch: &mut Batch,
    h: &GpuTensor,
    w2: &GpuTensor,
    b2: Option<&GpuTensor>,
    residual: &GpuTensor,
    y: &GpuTensor,
) -> Result<()> {
    linear::record(
        gpu,
        batch,
        h,
        w2,
        y,
        &Epilogue {
            bias: b2,
            act: Act::None,
            residual: Some(Residual::Add(residual)),
        },
    )
}

/// Rows per workgroup and invocations of the fused SwiGLU kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwigluShape {
    /// Outputs per workgroup (1, 2, 4 or 8).
    pub rows: u32,
    /// Invocations per workgroup (power of two).
    pub workgroup: u32,
    /// `swiglu_rows` (CPU adapters): each invocation computes `rows` whole outputs, x read from
    /// its buffer, no workgroup memory or barriers; `rows` is then per invocation.
    pub per_invocation: bool,
}

/// The launch shape used by [`record_swiglu`] for an `[n, k]` projection.
pub fn default_swiglu_shape(gpu: &Gpu, n: usize, k: usize, dtype: DType) -> SwigluShape {
    if gpu.caps().variants.cpu {
        // The GEMV's CPU shape: two rows per invocation, 4–64 invocations.
        if let super::gemv::Variant::Rows { rows, workgroup } = super::gemv::cpu_rows_variant(gpu.caps(), n) {
            return SwigluShape {
                rows,
                workgroup,
                per_invocation: true,
            };
        }
    }
    let chunks = k.div_ceil(chunk_elems(dtype)).max(1);
    let max_wg = gpu.caps().variants.reduce_workgroup.clamp(1, 256);
    let mut wg = 1u32;
    while wg * 2 <= max_wg && (wg as usize) * 4 <= chunks.max(128) {
        wg *= 2;
    }
    SwigluShape {
        rows: if n >= 2048 { 4 } else { 2 },
        workgroup: wg,
        per_invocation: false,
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    k: u32,
    eps: f32,
    _pad: u32,
}

super::checks::params_layout_test!(Params, KERNEL.source, [n, k, eps]);

/// `h = silu(x·Wgᵀ) * (x·Wuᵀ)` for one row x `[K]` (decode), with the device's variant.
pub fn record_swiglu(
    gpu: &Gpu,
    batch: &mut Batch,
    x: &GpuTensor,
    w_gate: &GpuTensor,
    w_up: &GpuTensor,
    h: &GpuTensor,
) -> Result<()> {
    let (n, k) = weight_shape("swiglu", w_gate)?;
    let shape = default_swiglu_shape(gpu, n, k, w_gate.dtype());
    record_swiglu_variant(gpu, batch, x, w_gate, w_up, h, gpu.caps().variants.swiglu, shape)
}

/// `h = silu(rmsnorm(x)·Wgᵀ) * (rmsnorm(x)·Wuᵀ)`: [`record_swiglu`] with the norm folded into
/// the prologue (x is staged times the norm weight; both dot products times 1 / rms(x)).
pub fn record_swiglu_normed(
    gpu: &Gpu,
    batch: &mut Batch,
    x: &GpuTensor,
    norm: &NormPrologue,
    w_gate: &GpuTensor,
    w_up: &GpuTensor,
    h: &GpuTensor,
) -> Result<()> {
    let (n, k) = weight_shape("swiglu", w_gate)?;
    let shape = default_swiglu_shape(gpu, n, k, w_gate.dtype());
    record_swiglu_full(
        gpu,
        batch,
        x,
        Some(norm),
        w_gate,
        w_up,
        h,
        gpu.caps().variants.swiglu,
        shape,
    )
}

/// `h = act(n(x)·Wgᵀ) * (n(x)·Wuᵀ)` for one row x: the fused kernel with the device's variant,
/// the RMSNorm prologue `n` when given and the gate activation `act` (SiLU: SwiGLU, GELU-tanh:
/// Gemma's GeGLU; the `GATE` constant of ffn.wgsl).
#[allow(clippy::too_many_arguments)]
pub fn record_gated(
    gpu: &Gpu,
    batch: &mut Batch,
    x: &GpuTensor,
    norm: Option<&NormPrologue>,
    w_gate: &GpuTensor,
    w_up: &GpuTensor,
    h: &GpuTensor,
    act: GateAct,
) -> Result<()> {
    let (n, k) = weight_shape("swiglu", w_gate)?;
    let shape = default_swiglu_shape(gpu, n, k, w_gate.dtype());
    let variant = gpu.caps().variants.swiglu;
    record_gated_full(gpu, batch, x, norm, w_gate, w_up, h, variant, shape, act)
}

/// The same with an explicit shared-memory variant and launch shape (tests, benchmarks).
#[allow(clippy::too_many_arguments)]
pub fn record_swiglu_variant(
    gpu: &Gpu,
    batch: &mut Batch,
    x: &GpuTensor,
    w_gate: &GpuTensor,
    w_up: &GpuTensor,
    h: &GpuTensor,
    variant: SwigluVariant,
    shape: SwigluShape,
) -> Result<()> {
    record_swiglu_full(gpu, batch, x, None, w_gate, w_up, h, variant, shape)
}

/// [`record_swiglu_variant`] with an optional norm prologue.
#[allow(clippy::too_many_arguments)]
pub fn record_swiglu_full(
    gpu: &Gpu,
    batch: &mut Batch,
    x: &GpuTensor,
    norm: Option<&NormPrologue>,
    w_gate: &GpuTensor,
    w_up: &GpuTensor,
    h: &GpuTensor,
    variant: SwigluVariant,
    shape: SwigluShape,
) -> Result<()> {
    record_gated_full(gpu, batch, x, norm, w_gate, w_up, h, variant, shape, GateAct::Silu)
}

/// [`record_swiglu_full`] with the gate activation chosen.
#[allow(clippy::too_many_arguments)]
pub fn record_gated_full(
    gpu: &Gpu,
    batch: &mut Batch,
    x: &GpuTensor,
    norm: Option<&NormPrologue>,
    w_gate: &GpuTensor,
    w_up: &GpuTensor,
    h: &GpuTensor,
    variant: SwigluVariant,
    shape: SwigluShape,
    act: GateAct,
) -> Result<()> {
    const NAME: &str = "swiglu";
    let (n, k) = weight_shape(NAME, w_gate)?;
    if w_up.shape() != w_gate.shape() || w_up.dtype() != w_gate.dtype() {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "gate '{}' is {:?} {}, up '{}' is {:?} {}: they must match",
                w_gate.name(),
                w_gate.shape(),
                w_gate.dtype(),
                w_up.name(),
                w_up.shape(),
                w_up.dtype()
            ),
        });
    }
    x.expect_dtype(NAME, &[DType::F32])?;
    h.expect_dtype(NAME, &[DType::F32])?;
    if x.numel() != k {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "x '{}' is {:?}: the fused kernel takes one row of K = {k} (use record_swiglu_prefill for more)",
                x.name(),
                x.shape()
            ),
        });
    }
    if h.numel() != n {
        return Err(Error::Shape {
            op: NAME,
            detail: format!("h '{}' is {:?}, expected N = {n} elements", h.name(), h.shape()),
        });
    }
    no_alias(NAME, &[h], &[x, w_gate, w_up])?;
    to_u32(NAME, "weight element count", w_gate.numel())?;
    let SwigluShape {
        rows,
        workgroup,
        per_invocation,
    } = shape;
    // x is staged in blocks of XT f32: no larger than K needs (rounded up to a power of two, at
    // least the reduction's slots), so short rows do not hold the variant's whole 16 / 32 KiB
    // of workgroup memory (more workgroups resident per SM; K = 576: 4 KiB instead of 32).
    let nv = (2 * rows + u32::from(norm.is_some())).div_ceil(4);
    let fit = (k.next_power_of_two().max(1024) as u64).max(u64::from(nv) * u64::from(workgroup) * 4);
    let stage = !gpu.caps().variants.inline_norm;
    let xt = if per_invocation {
        // swiglu_rows declares no x buffer; the module's constant only has to be valid.
        1024
    } else if !stage {
        // x read from its buffer: the workgroup buffer holds the reduction's slots only.
        nv * workgroup * 4
    } else {
        (variant.bytes() / 4).min(u32::try_from(fit).unwrap_or(u32::MAX))
    };
    let caps = gpu.caps();
    let unsupported = |why: String| Error::Unsupported {
        kernel: NAME,
        variant: format!("{variant:?} rows {rows} workgroup {workgroup}"),
        why,
    };
    if variant.bytes() > caps.max_workgroup_storage {
        return Err(unsupported(format!(
            "needs {} B of workgroup storage, the device has {}",
            variant.bytes(),
            caps.max_workgroup_storage
        )));
    }
    if !matches!(rows, 1 | 2 | 4 | 8)
        || !workgroup.is_power_of_two()
        || workgroup > caps.max_invocations.min(caps.max_workgroup_size_x)
    {
        return Err(unsupported(
            "rows must be 1, 2, 4 or 8 and the workgroup a power of two within the device's limits".into(),
        ));
    }
    if let Some(nm) = norm {
        nm.check(NAME, x, h, k)?;
    }
    // The reduction reuses the x buffer: (2 rows + norm) / 4 vec4 slots per invocation must fit.
    if !per_invocation && nv * workgroup > xt / 4 {
        return Err(unsupported(format!(
            "{} reduction slots exceed the {} vec4 of the x buffer",
            nv * workgroup,
            xt / 4
        )));
    }
    let aligned = k % chunk_elems(w_gate.dtype()) == 0;
    let mut consts: Vec<(&'static str, Const)> = dtype_consts(w_gate.dtype()).to_vec();
    consts.extend_from_slice(&[
        ("ACT", Const::U32(0)),
        ("WG", Const::U32(workgroup)),
        ("ROWS", Const::U32(rows)),
        ("XT", Const::U32(xt)),
        ("ALIGNED", Const::Bool(aligned)),
        ("NORM", Const::Bool(norm.is_some())),
        ("NV", Const::U32(nv)),
        ("GATE", Const::U32(act.code())),
        ("STAGE", Const::Bool(stage)),
    ]);
    let (entry, outputs_per_group) = if per_invocation {
        ("swiglu_rows", rows * workgroup)
    } else {
        ("swiglu_fused", rows)
    };
    let pipeline = gpu.pipelines().get(gpu.device(), &KERNEL, entry, None, &consts)?;
    let groups = gpu.grid(NAME, (n as u64).div_ceil(u64::from(outputs_per_group)))?;
    let params = Params {
        n: to_u32(NAME, "N", n)?,
        k: to_u32(NAME, "K", k)?,
        eps: norm.map_or(0.0, |nm| nm.eps),
        _pad: 0,
    };
    batch.dispatch(
        gpu,
        &pipeline,
        &params,
        &[
            (1, w_gate.buffer()),
            (2, w_gate.buffer()),
            (3, w_up.buffer()),
            (4, w_up.buffer()),
            (5, x.buffer()),
            (6, x.buffer()),
            (7, h.buffer()),
            (8, norm.map_or(x.buffer(), |nm| nm.weight.buffer())),
        ],
        groups,
    )
}

/// `h = silu(x·Wgᵀ) * (x·Wuᵀ)` for x `[rows, K]`: `up = x·Wuᵀ` into the scratch tensor `up`
/// (`[rows, N]`), then the gate projection with `silu(..) * up` fused into its epilogue.
pub fn record_swiglu_prefill(
    gpu: &Gpu,
    batch: &mut Batch,
    x: &GpuTensor,
    w_gate: &GpuTensor,
    w_up: &GpuTensor,
    up: &GpuTensor,
    h: &GpuTensor,
) -> Result<()> {
    linear::record(gpu, batch, x, w_up, up, &Epilogue::NONE)?;
    linear::record(
        gpu,
        batch,
        x,
        w_gate,
        h,
        &Epilogue {
            bias: None,
            act: Act::Silu,
            residual: Some(Residual::Mul(up)),
        },
    )
}
