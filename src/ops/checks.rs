//! Checks shared by every op, run before anything is recorded: shapes that must match, sizes that
//! must fit a u32 kernel parameter, a reduction path the device must offer, and bindings that
//! must not share a buffer.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuTensor, Reduction};

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

/// Fail unless the device can run the reduction path.
pub(crate) fn require_reduction(gpu: &Gpu, kernel: &'static str, reduction: Reduction) -> Result<()> {
    if reduction == Reduction::Subgroup && !gpu.caps().subgroups {
        return Err(Error::Unsupported {
            kernel,
            variant: "subgroup reduction".into(),
            why: "the device has no subgroups".into(),
        });
    }
    Ok(())
}

/// WebGPU forbids binding a buffer as writable storage together with any other binding of the
/// same buffer in one dispatch: check it here and name the tensors instead of failing validation.
/// Every tensor in `written` must have a buffer of its own; `read` tensors may share buffers
/// among themselves (read-only aliasing is allowed).
pub(crate) fn no_alias(op: &'static str, written: &[&GpuTensor], read: &[&GpuTensor]) -> Result<()> {
    for (i, w) in written.iter().enumerate() {
        for o in written[i + 1..].iter().chain(read) {
            if w.buffer().raw() == o.buffer().raw() {
                return Err(Error::Aliased { op, written: w.name().to_string(), other: o.name().to_string() });
            }
        }
    }
    Ok(())
}
