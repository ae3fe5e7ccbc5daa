//! Pooling over valid tokens (mean, CLS, last token), optionally L2-normalised
//! (`shaders/pooling.wgsl`): the sentence-transformers head of embedding models.

use super::checks::to_u32;
use crate::error::{Error, Result};
use crate::gpu::{Batch, Const, DType, Gpu, GpuTensor, Kernel};

const KERNEL: Kernel = Kernel {
    name: "pooling",
    source: include_str!("../../shaders/pooling.wgsl"),
    uses_reduction: true,
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    seq: u32,
    dim: u32,
    _pad: u32,
}

super::checks::params_layout_test!(Params, KERNEL.source, [batch, seq, dim]);

/// Which tokens make a sentence's embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// The mean over valid tokens (`pooling_mode_mean_tokens`: MiniLM, e5, gte).
    #[default]
    Mean,
    /// The first token, `[CLS]` (`pooling_mode_cls_token`: bge, arctic-embed).
    Cls,
    /// The last valid token (`pooling_mode_lasttoken`: decoder-based embedders).
    LastToken,
}

impl Pooling {
    fn code(self) -> u32 {
        match self {
            Pooling::Mean => 0,
            Pooling::Cls => 1,
            Pooling::LastToken => 2,
        }
    }
}

/// Record `out[b] = (l2-normalised) pool of hidden[b, t] over the valid tokens t < lens[b]`.
pub fn record(
    gpu: &Gpu,
    batch: &mut Batch,
    hidden: &GpuTensor,
    lens: &GpuTensor,
    out: &GpuTensor,
    pooling: Pooling,
    normalize: bool,
) -> Result<()> {
    const NAME: &str = "pool";
    hidden.expect_dtype(NAME, &[DType::F32])?;
    out.expect_dtype(NAME, &[DType::F32])?;
    let [b, s, d] = match hidden.shape() {
        &[b, s, d] => [b, s, d],
        other => {
            return Err(Error::Shape {
                op: NAME,
                detail: format!("'{}' must be [batch, seq, dim], got {other:?}", hidden.name()),
            })
        }
    };
    lens.expect_dtype(NAME, &[DType::U32])?;
    if out.shape() != [b, d] || lens.numel() != b {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "'{}' is {:?} and '{}' has {} lengths; expected [{b}, {d}] and {b}",
                out.name(),
                out.shape(),
                lens.name(),
                lens.numel()
            ),
        });
    }
    let params = Params {
        batch: to_u32(NAME, "batch", b)?,
        seq: to_u32(NAME, "seq", s)?,
        dim: to_u32(NAME, "dim", d)?,
        _pad: 0,
    };
    let wg = gpu.caps().variants.reduce_workgroup;
    let p = gpu.pipelines().get(
        gpu.device(),
        &KERNEL,
        "mean_pool",
        Some(gpu.caps().variants.reduction),
        &[
            ("WG", Const::U32(wg)),
            ("NORMALIZE", Const::Bool(normalize)),
            ("MODE", Const::U32(pooling.code())),
        ],
    )?;
    if b > gpu.caps().max_workgroups_per_dim as usize {
        return Err(Error::Limit {
            context: format!("{NAME} over {b} sequences"),
            limit: "maxComputeWorkgroupsPerDimension",
            needed: b as u64,
            available: u64::from(gpu.caps().max_workgroups_per_dim),
        });
    }
    batch.dispatch(
        gpu,
        &p,
        &params,
        &[(1, hidden.buffer()), (2, lens.buffer()), (3, out.buffer())],
        [params.batch, 1, 1],
    )
}
