//! Row softmax with scale (`shaders/softmax.wgsl`): one workgroup per row with a
//! parallel online max/sum, and the one-thread-per-row baseline.
//!
//! Fused scale + mask + softmax for attention scores: [`record_masked`]
//! applies a causal mask (with the decode offset) and a padding mask (lengths or a keep mask)
//! inside the kernel; masked keys behave as -inf, a row with nothing visible gives zeros.
//!
//! No model runs this op (attention fuses its softmax into the flash kernels); it is kept as the
//! reference design of the row reductions, for its tests and for the `softmax` / `kernels1`
//! benchmarks.
//!
//! ```ignore
//! // prefill of batch 2 × 12 heads, scores [24, q, k], second sequence padded to 5 keys:
//! let lengths = [k as u32, 5];
//! softmax::record_masked(gpu, &mut b, &scores, &probs, 0.125, &Mask::causal(12, 0).lengths(&lengths))?;
//! ```

use super::checks::{same_shape, to_u32};
use crate::error::{Error, Result};
use crate::gpu::{Batch, Const, DType, Gpu, GpuTensor, Kernel, Reduction};

const KERNEL: Kernel = Kernel {
    name: "softmax",
    source: include_str!("../../shaders/softmax.wgsl"),
    uses_reduction: true,
};

/// Which kernel computes the softmax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// One workgroup per row, reductions by the given path.
    Workgroup(Reduction),
    /// The naive kernel: one thread per row (benchmark baseline).
    RowPerThread,
}

/// Most batch entries whose key lengths travel in the uniform ([`Padding::Lengths`]).
pub const MAX_LENGTHS: usize = 64;

/// Which keys each batch entry may see besides the causal bound.
#[derive(Debug, Clone, Copy, Default)]
pub enum Padding<'a> {
    /// Every key.
    #[default]
    None,
    /// Batch entry b sees keys `0..lengths[b]` (at most [`MAX_LENGTHS`] entries).
    Lengths(&'a [u32]),
    /// Batch entry b sees key j where `keep[b, j] != 0`: an HF `attention_mask` `[batch, k_len]` as f32.
    Keep(&'a GpuTensor),
}

/// Masks for attention scores laid out `[batch * heads, q_len, k_len]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mask<'a> {
    /// Heads per batch entry (rows of one batch entry are `heads * q_len` consecutive rows).
    pub heads: usize,
    /// `Some(offset)`: query i sits at absolute position `offset + i` and sees keys `0..=offset + i`
    /// (0 in prefill, the number of cached tokens in decode).
    pub causal: Option<usize>,
    /// The padding mask.
    pub padding: Padding<'a>,
}

impl<'a> Mask<'a> {
    /// Causal mask with the position of the first query.
    pub fn causal(heads: usize, offset: usize) -> Self {
        Mask {
            heads,
            causal: Some(offset),
            padding: Padding::None,
        }
    }

    /// No causal bound (encoders), padding only.
    pub fn bidirectional(heads: usize) -> Self {
        Mask {
            heads,
            causal: None,
            padding: Padding::None,
        }
    }

    /// Add per-batch valid key lengths.
    pub fn lengths(mut self, lengths: &'a [u32]) -> Self {
        self.padding = Padding::Lengths(lengths);
        self
    }

    /// Add a keep mask `[batch, k_len]` (non-zero = attend).
    pub fn keep(mut self, keep: &'a GpuTensor) -> Self {
        self.padding = Padding::Keep(keep);
        self
    }
}

/// How the masked softmax is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskedVariant {
    /// Mask applied inside the softmax kernel (one dispatch).
    Fused(Reduction),
    /// The unfused way, the benchmark baseline: a pass writing -inf into the masked scores of `x`
    /// **in place**, then the unmasked softmax (two dispatches; `x` is modified).
    Unfused(Reduction),
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    scale: f32,
    q_len: u32,
    heads: u32,
    offset: u32,
    neg_inf: f32,
    _pad: u32,
    lengths: [u32; MAX_LENGTHS],
}

super::checks::params_layout_test!(
    Params,
    KERNEL.source,
    [rows, cols, scale, q_len, heads, offset, neg_inf, lengths]
);

impl Params {
    fn plain(rows: u32, cols: u32, scale: f32) -> Self {
        Params {
            rows,
            cols,
            scale,
            q_len: 1,
            heads: 1,
            offset: 0,
            neg_inf: f32::NEG_INFINITY,
            _pad: 0,
            lengths: [0; MAX_LENGTHS],
        }
    }
}

/// Record `y = softmax(scale * x)` over the last dimension with the device's preferred variant.
pub fn record(gpu: &Gpu, batch: &mut Batch, x: &GpuTensor, y: &GpuTensor, scale: f32) -> Result<()> {
    record_variant(
        gpu,
        batch,
        x,
        y,
        scale,
        Variant::Workgroup(gpu.caps().variants.reduction),
    )
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
    let params = Params::plain(rows, cols, scale);
    match variant {
        Variant::Workgroup(reduction) => {
            super::checks::require_reduction(gpu, NAME, reduction)?;
            let consts = mask_consts(wg, false, PAD_NONE);
            let p = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "softmax_rows", Some(reduction), &consts)?;
            let buffers = [(1, x.buffer()), (2, y.buffer()), (3, x.buffer())];
            batch.dispatch(gpu, &p, &params, &buffers, gpu.grid(NAME, u64::from(rows))?)
        }
        Variant::RowPerThread => {
            let consts = mask_consts(wg, false, PAD_NONE);
            let p = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "softmax_row_per_thread", None, &consts)?;
            let groups = gpu.grid(NAME, u64::from(rows).div_ceil(u64::from(wg)))?;
            batch.dispatch(gpu, &p, &params, &[(1, x.buffer()), (2, y.buffer())], groups)
        }
    }
}

const PAD_NONE: u32 = 0;
const PAD_LENGTHS: u32 = 1;
const PAD_KEEP: u32 = 2;

fn mask_consts(wg: u32, causal: bool, pad: u32) -> [(&'static str, Const); 3] {
    [
        ("WG", Const::U32(wg)),
        ("CAUSAL", Const::Bool(causal)),
        ("PAD", Const::U32(pad)),
    ]
}

/// Record `y = softmax(scale * x + mask)` for attention scores `x: [batch * heads, q_len, k_len]`
/// with the device's preferred reduction, the mask applied inside the kernel.
pub fn record_masked(
    gpu: &Gpu,
    batch: &mut Batch,
    x: &GpuTensor,
    y: &GpuTensor,
    scale: f32,
    mask: &Mask,
) -> Result<()> {
    record_masked_variant(
        gpu,
        batch,
        x,
        y,
        scale,
        mask,
        MaskedVariant::Fused(gpu.caps().variants.reduction),
    )
}

/// Record the masked softmax with an explicit variant (tests and benchmarks).
pub fn record_masked_variant(
    gpu: &Gpu,
    batch: &mut Batch,
    x: &GpuTensor,
    y: &GpuTensor,
    scale: f32,
    mask: &Mask,
    variant: MaskedVariant,
) -> Result<()> {
    const NAME: &str = "masked_softmax";
    x.expect_dtype(NAME, &[DType::F32])?;
    y.expect_dtype(NAME, &[DType::F32])?;
    same_shape(NAME, x, y)?;
    let &[bh, q_len, k_len] = x.shape() else {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "scores '{}' must be [batch * heads, q_len, k_len], got {:?}",
                x.name(),
                x.shape()
            ),
        });
    };
    if mask.heads == 0 || bh % mask.heads != 0 {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "'{}' has {bh} rows of heads, not a multiple of heads = {}",
                x.name(),
                mask.heads
            ),
        });
    }
    let batches = bh / mask.heads;
    let mut params = Params::plain(to_u32(NAME, "rows", x.rows())?, to_u32(NAME, "k_len", k_len)?, scale);
    to_u32(NAME, "element count", x.numel())?;
    params.q_len = to_u32(NAME, "q_len", q_len)?;
    params.heads = to_u32(NAME, "heads", mask.heads)?;
    if let Some(offset) = mask.causal {
        // offset + q_len must stay indexable; beyond k_len every key is visible anyway.
        params.offset = to_u32(NAME, "causal offset + q_len", offset.saturating_add(q_len))? - params.q_len;
    }
    let pad = match mask.padding {
        Padding::None => PAD_NONE,
        Padding::Lengths(lengths) => {
            if lengths.len() != batches || batches > MAX_LENGTHS {
                return Err(Error::Shape {
                    op: NAME,
                    detail: format!(
                        "{} key lengths for a batch of {batches} (at most {MAX_LENGTHS}; use a keep mask beyond)",
                        lengths.len()
                    ),
                });
            }
            params.lengths[..batches].copy_from_slice(lengths);
            PAD_LENGTHS
        }
        Padding::Keep(keep) => {
            keep.expect_dtype(NAME, &[DType::F32])?;
            if keep.shape() != [batches, k_len] {
                return Err(Error::Shape {
                    op: NAME,
                    detail: format!(
                        "keep mask '{}' is {:?}, expected [{batches}, {k_len}]",
                        keep.name(),
                        keep.shape()
                    ),
                });
            }
            PAD_KEEP
        }
    };
    let keep = match mask.padding {
        Padding::Keep(k) => k,
        _ => x, // unused binding: any read-only tensor of the call
    };
    let reduction = match variant {
        MaskedVariant::Fused(r) | MaskedVariant::Unfused(r) => r,
    };
    super::checks::require_reduction(gpu, NAME, reduction)?;
    let wg = gpu.caps().variants.reduce_workgroup;
    let rows = u64::from(params.rows);
    match variant {
        MaskedVariant::Fused(_) => {
            super::checks::no_alias(NAME, &[y], &[x, keep])?;
            let consts = mask_consts(wg, mask.causal.is_some(), pad);
            let p = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "softmax_rows", Some(reduction), &consts)?;
            let buffers = [(1, x.buffer()), (2, y.buffer()), (3, keep.buffer())];
            batch.dispatch(gpu, &p, &params, &buffers, gpu.grid(NAME, rows)?)
        }
        MaskedVariant::Unfused(_) => {
            super::checks::no_alias(NAME, &[y, x], &[])?;
            if pad == PAD_KEEP {
                super::checks::no_alias(NAME, &[x], &[keep])?;
            }
            let consts = mask_consts(wg, mask.causal.is_some(), pad);
            let p = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "mask_scores", None, &consts)?;
            let groups = gpu.grid(NAME, (x.numel() as u64).div_ceil(u64::from(wg)))?;
            // x is written here, so the unused keep binding gets y (not bound otherwise).
            let keep = if pad == PAD_KEEP { keep } else { y };
            batch.dispatch(gpu, &p, &params, &[(3, keep.buffer()), (4, x.buffer())], groups)?;
            let plain = Params::plain(params.rows, params.cols, scale);
            let consts = mask_consts(wg, false, PAD_NONE);
            let p = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "softmax_rows", Some(reduction), &consts)?;
            let buffers = [(1, x.buffer()), (2, y.buffer()), (3, x.buffer())];
            batch.dispatch(gpu, &p, &plain, &buffers, gpu.grid(NAME, rows)?)
        }
    }
}
