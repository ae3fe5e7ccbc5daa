//! repeat_kv (`shaders/repeat_kv.wgsl`): `[tokens, kv_heads, d]` ->
//! `[tokens, kv_heads * n_rep, d]` with vec4 loads; the baseline for the attention kernels,
//! which read grouped K/V heads without materialising them.

use super::checks::to_u32;
use crate::error::{Error, Result};
use crate::gpu::{Batch, Const, DType, Gpu, GpuTensor, Kernel};

const KERNEL: Kernel = Kernel {
    name: "repeat_kv",
    source: include_str!("../../shaders/repeat_kv.wgsl"),
    uses_reduction: false,
};

const WG: u32 = 256;

/// Which kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// One vec4 per invocation (d % 4 == 0).
    Vec4,
    /// One element per invocation (any d; the naive kernel, benchmark baseline).
    Scalar,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    kv_heads: u32,
    n_rep: u32,
    d: u32,
    n: u32,
}

super::checks::params_layout_test!(Params, KERNEL.source, [kv_heads, n_rep, d, n]);

/// Record `dst = repeat_kv(src, n_rep)` with the fastest variant the shape allows.
pub fn record(gpu: &Gpu, batch: &mut Batch, src: &GpuTensor, dst: &GpuTensor) -> Result<()> {
    let v = if src.last_dim().is_multiple_of(4) {
        Variant::Vec4
    } else {
        Variant::Scalar
    };
    record_variant(gpu, batch, src, dst, v)
}

/// Record with an explicit variant; `n_rep` is `dst heads / src heads`.
pub fn record_variant(gpu: &Gpu, batch: &mut Batch, src: &GpuTensor, dst: &GpuTensor, variant: Variant) -> Result<()> {
    const NAME: &str = "repeat_kv";
    src.expect_dtype(NAME, &[DType::F32])?;
    dst.expect_dtype(NAME, &[DType::F32])?;
    let (&[t, kv, d], &[t2, heads, d2]) = (src.shape(), dst.shape()) else {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "'{}' {:?} and '{}' {:?} must be [tokens, heads, d]",
                src.name(),
                src.shape(),
                dst.name(),
                dst.shape()
            ),
        });
    };
    if t != t2 || d != d2 || kv == 0 || heads % kv != 0 {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "'{}' {:?} must be [{t}, kv_heads * n_rep, {d}] for '{}' {:?}",
                dst.name(),
                dst.shape(),
                src.name(),
                src.shape()
            ),
        });
    }
    if variant == Variant::Vec4 && d % 4 != 0 {
        return Err(Error::Shape {
            op: NAME,
            detail: format!("the vec4 kernel needs d % 4 == 0, got {d}"),
        });
    }
    super::checks::no_alias(NAME, &[dst], &[src])?;
    to_u32(NAME, "element count", dst.numel())?;
    let width = if variant == Variant::Vec4 { 4 } else { 1 };
    let params = Params {
        kv_heads: to_u32(NAME, "kv_heads", kv)?,
        n_rep: to_u32(NAME, "n_rep", heads / kv)?,
        d: to_u32(NAME, "d", d / width)?,
        n: to_u32(NAME, "units", dst.numel() / width)?,
    };
    let (entry, bindings) = match variant {
        Variant::Vec4 => ("repeat_kv_vec4", [3, 4]),
        Variant::Scalar => ("repeat_kv_scalar", [1, 2]),
    };
    let p = gpu
        .pipelines()
        .get(gpu.device(), &KERNEL, entry, None, &[("WG", Const::U32(WG))])?;
    let groups = gpu.grid(NAME, u64::from(params.n).div_ceil(u64::from(WG)))?;
    batch.dispatch(
        gpu,
        &p,
        &params,
        &[(bindings[0], src.buffer()), (bindings[1], dst.buffer())],
        groups,
    )
}
