//! Elementwise ops (`shaders/elementwise.wgsl`): add, mul, SiLU, alpha·x+beta, and the vec4 copy
//! kernel that benchmarks use as their bandwidth baseline.

use super::checks::{same_shape, to_u32};
use crate::error::{Error, Result};
use crate::gpu::{Batch, Const, DType, Gpu, GpuTensor, Kernel};

const KERNEL: Kernel = Kernel {
    name: "elementwise",
    source: include_str!("../../shaders/elementwise.wgsl"),
    uses_reduction: false,
};

/// Invocations per workgroup for elementwise kernels.
const WG: u32 = 256;

/// Which function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// a + b
    Add,
    /// a * b
    Mul,
    /// a * sigmoid(a)
    Silu,
    /// alpha * a + beta
    Axpb {
        /// Factor.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// tanh(a) (the BERT pooler of cross-encoders).
    Tanh,
}

impl Op {
    fn code(self) -> u32 {
        match self {
            Op::Add => 0,
            Op::Mul => 1,
            Op::Silu => 2,
            Op::Axpb { .. } => 3,
            Op::Tanh => 4,
        }
    }
    fn binary(self) -> bool {
        matches!(self, Op::Add | Op::Mul)
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

super::checks::params_layout_test!(Params, KERNEL.source, [n, alpha, beta]);

fn params(op: Op, n: u32) -> Params {
    let (alpha, beta) = match op {
        Op::Axpb { alpha, beta } => (alpha, beta),
        _ => (1.0, 0.0),
    };
    Params {
        n,
        alpha,
        beta,
        _pad: 0,
    }
}

fn pipeline(gpu: &Gpu, entry: &'static str, op: Op) -> Result<wgpu::ComputePipeline> {
    gpu.pipelines().get(
        gpu.device(),
        &KERNEL,
        entry,
        None,
        &[("WG", Const::U32(WG)), ("OP", Const::U32(op.code()))],
    )
}

/// Record `out = op(a, b)` (binary ops) or `out = op(a)` (unary ops, `b` must be `None`).
pub fn record(
    gpu: &Gpu,
    batch: &mut Batch,
    op: Op,
    a: &GpuTensor,
    b: Option<&GpuTensor>,
    out: &GpuTensor,
) -> Result<()> {
    const NAME: &str = "elementwise";
    for t in [Some(a), b, Some(out)].into_iter().flatten() {
        t.expect_dtype(NAME, &[DType::F32])?;
    }
    same_shape(NAME, a, out)?;
    let n = to_u32(NAME, "element count", a.numel())?;
    let groups = gpu.grid(NAME, u64::from(n).div_ceil(u64::from(WG)))?;
    match (op.binary(), b) {
        (true, Some(b)) => {
            same_shape(NAME, a, b)?;
            let p = pipeline(gpu, "binary", op)?;
            batch.dispatch(
                gpu,
                &p,
                &params(op, n),
                &[(1, a.buffer()), (2, b.buffer()), (3, out.buffer())],
                groups,
            )
        }
        (false, None) => {
            let p = pipeline(gpu, "unary", op)?;
            batch.dispatch(gpu, &p, &params(op, n), &[(1, a.buffer()), (3, out.buffer())], groups)
        }
        (true, None) => Err(Error::BadInput {
            op: NAME,
            detail: format!("{op:?} needs a second input"),
        }),
        (false, Some(b)) => Err(Error::BadInput {
            op: NAME,
            detail: format!("{op:?} takes one input, got '{}' too", b.name()),
        }),
    }
}

/// Record `x = op(x)` in place, for unary ops.
pub fn record_inplace(gpu: &Gpu, batch: &mut Batch, op: Op, x: &GpuTensor) -> Result<()> {
    const NAME: &str = "elementwise_inplace";
    x.expect_dtype(NAME, &[DType::F32])?;
    if op.binary() {
        return Err(Error::BadInput {
            op: NAME,
            detail: format!("{op:?} is not a unary op"),
        });
    }
    let n = to_u32(NAME, "element count", x.numel())?;
    let groups = gpu.grid(NAME, u64::from(n).div_ceil(u64::from(WG)))?;
    let p = pipeline(gpu, "unary_inplace", op)?;
    batch.dispatch(gpu, &p, &params(op, n), &[(4, x.buffer())], groups)
}

/// Record a vec4 copy of `src` into `dst` (same byte size, a multiple of 16 bytes): the
/// bandwidth baseline of benchmarks.
pub fn record_copy(gpu: &Gpu, batch: &mut Batch, src: &GpuTensor, dst: &GpuTensor) -> Result<()> {
    const NAME: &str = "copy_vec4";
    let bytes = src.buffer().size();
    if bytes != dst.buffer().size() || !bytes.is_multiple_of(16) {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "'{}' and '{}' must have the same size, a multiple of 16 bytes",
                src.name(),
                dst.name()
            ),
        });
    }
    let n = to_u32(NAME, "vec4 count", (bytes / 16) as usize)?;
    let groups = gpu.grid(NAME, u64::from(n).div_ceil(u64::from(WG)))?;
    let p = pipeline(gpu, "copy_vec4", Op::Add)?;
    batch.dispatch(
        gpu,
        &p,
        &params(Op::Add, n),
        &[(5, src.buffer()), (6, dst.buffer())],
        groups,
    )
}
