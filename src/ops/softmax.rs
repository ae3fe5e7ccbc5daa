//! Row softmax with scale (`shaders/softmax.wgsl`, seed item 1): one workgroup per row with a
//! parallel online max/sum, and the one-thread-per-row baseline.

use super::{same_shape, to_u32};
use crate::error::Result;
use crate::gpu::{Batch, Const, DType, Gpu, GpuTensor, Kernel, Reduction};

const KERNEL: Kernel = Kernel {
    name: "softmax",
    source: include_str!("../../shaders/softmax.wgsl"),
    uses_reduction: true,
    uses_f16: false,
};

/// Which kernel computes the softmax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// One workgroup per row, reductions by the given path.
    Workgroup(Reduction),
    /// The seed's original kernel: one thread per row (benchmark baseline).
    RowPerThread,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    scale: f32,
    _pad: u32,
}

/// Record `y = softmax(scale * x)` over the last dimension with the device's preferred variant.
pub fn record(gpu: &Gpu, batch: &mut Batch, x: &GpuTensor, y: &GpuTensor, scale: f32) -> Result<()> {
    record_variant(gpu, batch, x, y, scale, Variant::Workgroup(gpu.caps().variants.reduction))
}

/// Record with an explicit variant (tests and benchmarks).
pub fn record_variant(
    gpu: &Gpu,
    batch: &mut Batch,
    x: &GpuTensor,
    y: &GpuTensor,
    scale: f32,
    variant: Variant,
) -> Result<()> {
    const NAME: &str = "softmax";
    x.expect_dtype(NAME, &[DType::F32])?;
    y.expect_dtype(NAME, &[DType::F32])?;
    same_shape(NAME, x, y)?;
    let rows = to_u32(NAME, "rows", x.rows())?;
    let cols = to_u32(NAME, "row length", x.last_dim())?;
    to_u32(NAME, "element count", x.numel())?;
    let wg = gpu.caps().variants.reduce_workgroup;
    let params = Params { rows, cols, scale, _pad: 0 };
    let consts = [("WG", Const::U32(wg))];
    let (pipeline, groups) = match variant {
        Variant::Workgroup(reduction) => {
            if reduction == Reduction::Subgroup && !gpu.caps().subgroups {
                return Err(crate::Error::Unsupported {
                    kernel: NAME,
                    variant: "subgroup reduction".into(),
                    why: "the device has no subgroups".into(),
                });
            }
            let p = gpu.pipelines().get(gpu.device(), &KERNEL, "softmax_rows", Some(reduction), &consts)?;
            (p, gpu.grid(NAME, u64::from(rows))?)
        }
        Variant::RowPerThread => {
            let p = gpu.pipelines().get(gpu.device(), &KERNEL, "softmax_row_per_thread", None, &consts)?;
            (p, gpu.grid(NAME, u64::from(rows).div_ceil(u64::from(wg)))?)
        }
    };
    batch.dispatch(gpu, &pipeline, &params, &[(1, x.buffer()), (2, y.buffer())], groups)
}
