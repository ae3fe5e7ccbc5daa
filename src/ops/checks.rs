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
            detail: format!(
                "'{}' is {:?} but '{}' is {:?}",
                a.name(),
                a.shape(),
                b.name(),
                b.shape()
            ),
        })
    }
}

/// Convert a size to u32 for a kernel parameter, or say which limit it breaks.
pub(crate) fn to_u32(op: &'static str, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Shape {
        op,
        detail: format!("{what} = {v} exceeds u32 indexing"),
    })
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
                return Err(Error::Aliased {
                    op,
                    written: w.name().to_string(),
                    other: o.name().to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Test support: the Rust mirror of a kernel's `Params` uniform checked against the WGSL struct,
/// as naga lays it out (member offsets and size), so a field added on one side only fails a test
/// instead of shifting every parameter after it.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod layout {
    use wgpu::naga;

    /// Size and `(name, offset)` of every member of `struct <name>` in `source`. Only the struct's
    /// declaration is parsed: the kernel bodies need their prelude constants.
    pub(crate) fn wgsl_struct(source: &str, name: &str) -> (u32, Vec<(String, u32)>) {
        let start = source
            .find(&format!("struct {name} {{"))
            .unwrap_or_else(|| panic!("no struct {name}"));
        let end = start
            + source[start..]
                .find("\n}")
                .unwrap_or_else(|| panic!("struct {name} is not closed"))
            + 2;
        let module = naga::front::wgsl::parse_str(&source[start..end]).unwrap_or_else(|e| panic!("{e:?}"));
        let ty = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some(name))
            .map(|(_, t)| t);
        match ty.map(|t| &t.inner) {
            Some(naga::TypeInner::Struct { members, span }) => (
                *span,
                members
                    .iter()
                    .map(|m| (m.name.clone().unwrap_or_default(), m.offset))
                    .collect(),
            ),
            other => panic!("struct {name} parsed as {other:?}"),
        }
    }

    /// Assert that the WGSL `Params` of `source` has the Rust struct's size and, member by member
    /// (padding, named `_…`, aside), the Rust fields' names and offsets.
    pub(crate) fn assert_mirrors(source: &str, rust_size: usize, rust_fields: &[(&str, usize)]) {
        let (size, members) = wgsl_struct(source, "Params");
        let wgsl: Vec<(String, u32)> = members.into_iter().filter(|(n, _)| !n.starts_with('_')).collect();
        let rust: Vec<(String, u32)> = rust_fields.iter().map(|&(n, o)| (n.to_string(), o as u32)).collect();
        assert_eq!(wgsl, rust, "Params members (name, offset): WGSL left, Rust right");
        assert_eq!(size as usize, rust_size, "size of Params: WGSL left, Rust right");
    }
}

/// A test, in the op's module, that its `Params` (given with its named fields, padding left
/// out) mirrors the `struct Params` of its WGSL source ([`layout::assert_mirrors`]).
macro_rules! params_layout_test {
    ($ty:ty, $wgsl:expr, [$($field:ident),* $(,)?]) => {
        #[cfg(all(test, not(target_arch = "wasm32")))]
        #[test]
        fn params_mirror_the_wgsl_struct() {
            $crate::ops::checks::layout::assert_mirrors(
                $wgsl,
                ::std::mem::size_of::<$ty>(),
                &[$((stringify!($field), ::std::mem::offset_of!($ty, $field))),*],
            );
        }
    };
}
pub(crate) use params_layout_test;
