//! One file per operation: shape checks, variant choice, dispatch size, recording.
//! Each op's WGSL is in `shaders/<name>.wgsl`, its CPU reference in `src/cpu/`.

pub mod attention;
pub mod elementwise;
pub mod ffn;
pub mod gemv;
pub mod linear;
pub mod matmul;
pub mod pooling;
pub mod project;
pub mod qkv;
pub mod quant;
pub mod embedding;
pub mod gelu;
pub mod norm;
pub mod repeat_kv;
pub mod rope;
pub mod sample;
pub mod kv_cache;
pub mod softmax;
pub mod tune;

use crate::error::{Error, Result};
use crate::gpu::GpuTensor;

/// Check that two tensors have the same shape.
pub(crate) fn same_shape(op: &'static str, a: &GpuTensor, b: &GpuTensor) -> Result<()> {
    if a.shape() == b.shape() {
        Ok(())
    } else {
        Err(Error::Shape {
            op,
            detail: format!("'{}' is {:?} but '{}' is {:?}", a.name(), a.shape(), b.name(), b.shape()),
        })
    }
}

/// Convert a size to u32 for a kernel parameter, or say which limit it breaks.
pub(crate) fn to_u32(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Shape { op, detail: format!("{what} = {v} exceeds u32 indexing") })
}
