//! GELU (`shaders/gelu.wgsl`): exact-erf (Abramowitz & Stegun 7.1.26), tanh
//! approximation, and a rational erf without exp; vec4 kernels, out of place or in place.
//! [`Gelu::from_hidden_act`] maps an HF config's `hidden_act` to the formula the model was
//! trained with (notes/kernels1.md has the error table).

use super::checks::to_u32;
use crate::error::{Error, Result};
use crate::gpu::{Batch, Const, DType, Gpu, GpuTensor, Kernel};

const KERNEL: Kernel = Kernel {
    name: "gelu",
    source: include_str!("../../shaders/gelu.wgsl"),
    uses_reduction: false,
};

const WG: u32 = 256;

/// Which GELU formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gelu {
    /// `0.5 x (1 + erf(x/√2))`, erf by A&S 7.1.26 (max error 1.5e-7): `hidden_act = "gelu"`.
    Erf,
    /// `0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³)))`: "gelu_new", "gelu_pytorch_tanh", "gelu_fast".
    Tanh,
    /// Exact-erf GELU with Eigen's rational erf (no exp); as accurate as [`Gelu::Erf`].
    ErfRational,
}

impl Gelu {
    /// The formula for an HF `hidden_act` / `hidden_activation` value, `None` if it is not a GELU
    /// this kernel implements (e.g. "quick_gelu", "silu").
    pub fn from_hidden_act(act: &str) -> Option<Gelu> {
        match act {
            "gelu" | "gelu_python" => Some(Gelu::Erf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Gelu::Tanh),
            _ => None,
        }
    }

    fn code(self) -> u32 {
        match self {
            Gelu::Erf => 0,
            Gelu::Tanh => 1,
            Gelu::ErfRational => 2,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}

super::checks::params_layout_test!(Params, KERNEL.source, [n]);

fn dispatch(
    gpu: &Gpu,
    batch: &mut Batch,
    kind: Gelu,
    entry_vec4: &'static str,
    entry_scalar: &'static str,
    n: usize,
    buffers: &[(u32, u32, &GpuTensor)],
) -> Result<()> {
    const NAME: &str = "gelu";
    let vec4 = n.is_multiple_of(4);
    let units = to_u32(NAME, "element count", if vec4 { n / 4 } else { n })?;
    let entry = if vec4 { entry_vec4 } else { entry_scalar };
    let p = gpu.pipelines().get(
        gpu.device(),
        &KERNEL,
        entry,
        None,
        &[("WG", Const::U32(WG)), ("KIND", Const::U32(kind.code()))],
    )?;
    let groups = gpu.grid(NAME, u64::from(units).div_ceil(u64::from(WG)))?;
    let bound: Vec<(u32, &crate::gpu::Buffer)> = buffers
        .iter()
        .map(|&(b4, b1, t)| (if vec4 { b4 } else { b1 }, t.buffer()))
        .collect();
    batch.dispatch(gpu, &p, &Params { n: units, _pad: [0; 3] }, &bound, groups)
}

/// Record `out = gelu(x)` (vec4 when the element count is a multiple of 4).
pub fn record(gpu: &Gpu, batch: &mut Batch, kind: Gelu, x: &GpuTensor, out: &GpuTensor) -> Result<()> {
    const NAME: &str = "gelu";
    x.expect_dtype(NAME, &[DType::F32])?;
    out.expect_dtype(NAME, &[DType::F32])?;
    if x.numel() != out.numel() {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "'{}' {:?} and '{}' {:?} differ in size",
                x.name(),
                x.shape(),
                out.name(),
                out.shape()
            ),
        });
    }
    super::checks::no_alias(NAME, &[out], &[x])?;
    dispatch(
        gpu,
        batch,
        kind,
        "gelu_vec4",
        "gelu_scalar",
        x.numel(),
        &[(3, 1, x), (4, 2, out)],
    )
}

/// Record `x = gelu(x)` in place.
pub fn record_inplace(gpu: &Gpu, batch: &mut Batch, kind: Gelu, x: &GpuTensor) -> Result<()> {
    x.expect_dtype("gelu", &[DType::F32])?;
    dispatch(
        gpu,
        batch,
        kind,
        "gelu_vec4_inplace",
        "gelu_scalar_inplace",
        x.numel(),
        &[(6, 5, x)],
    )
}
