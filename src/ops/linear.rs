//! Linear layers `y = epilogue(x · Wᵀ)` with W stored `[N, K]` row-major (the PyTorch `Linear`
//! layout) in f32, f16 or bf16, x and y in f32: the types shared by [`gemv`](super::gemv) (decode,
//! one row of x) and [`matmul`](super::matmul) (prefill), and [`record`], which picks between them.
//!
//! The epilogue is fused into both kernels and selected by prelude constants (no runtime branch):
//! `y = act(v + bias) (+ residual | * other)`. That covers FC1 + GELU, FC2 + residual and the
//! SwiGLU product of the FFN blocks.

use super::checks::no_alias;
use crate::error::{Error, Result};
use crate::gpu::{Batch, Buffer, Const, DType, Gpu, GpuTensor};

/// Activation applied after the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Act {
    /// Identity.
    #[default]
    None,
    /// GELU with erf (BERT, GPT-2 style `gelu`), erf by Abramowitz & Stegun 7.1.26.
    Gelu,
    /// SiLU: v * sigmoid(v).
    Silu,
}

impl Act {
    pub(crate) fn code(self) -> u32 {
        match self {
            Act::None => 0,
            Act::Gelu => 1,
            Act::Silu => 2,
        }
    }
}

/// The gate activation of a gated MLP, `act(x·Wgᵀ) * (x·Wuᵀ)`, as the fused decode kernels
/// (the dense `swiglu_fused` / `swiglu_rows` and the quantised GEMV's pair mode) apply it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GateAct {
    /// SiLU (SwiGLU: Llama, Qwen).
    #[default]
    Silu,
    /// GELU, tanh approximation (GeGLU: Gemma's `gelu_pytorch_tanh`), computed as
    /// `x / (1 + exp(-2u))`, `u = sqrt(2/pi) (x + 0.044715 x³)` (gelu.wgsl's tanh form).
    GeluTanh,
}

impl GateAct {
    /// The kernels' `GATE` / `PAIR` code (1 SiLU, 2 GELU-tanh; 0 is "no pair" in quant.wgsl).
    pub(crate) fn code(self) -> u32 {
        match self {
            GateAct::Silu => 1,
            GateAct::GeluTanh => 2,
        }
    }

    /// `act(g) · u` in f64 (CPU references).
    pub fn apply_f64(self, g: f64, u: f64) -> f64 {
        match self {
            GateAct::Silu => g / (1.0 + (-g).exp()) * u,
            GateAct::GeluTanh => {
                let t = (0.797_884_560_802_865_4 * (g + 0.044715 * g * g * g)).tanh();
                0.5 * g * (1.0 + t) * u
            }
        }
    }
}

/// What is combined with the activated value, elementwise over the output.
#[derive(Debug, Clone, Copy)]
pub enum Residual<'a> {
    /// `y = act(..) + t`. When `t` is `y` itself (same buffer) the add is done in place.
    Add(&'a GpuTensor),
    /// `y = act(..) * t` (SwiGLU: `silu(x·Wg) * (x·Wu)` with the up projection in `t`).
    Mul(&'a GpuTensor),
}

/// The fused epilogue: `y = act(v + bias) (+|*) residual`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// Bias `[N]`, f32.
    pub bias: Option<&'a GpuTensor>,
    /// Activation after the bias.
    pub act: Act,
    /// Residual add or elementwise product after the activation.
    pub residual: Option<Residual<'a>>,
}

impl<'a> Epilogue<'a> {
    /// No bias, no activation, no residual.
    pub const NONE: Epilogue<'static> = Epilogue {
        bias: None,
        act: Act::None,
        residual: None,
    };

    /// Only a bias.
    pub fn bias(bias: &'a GpuTensor) -> Self {
        Epilogue {
            bias: Some(bias),
            ..Default::default()
        }
    }
}

/// RMSNorm folded into a decode GEMV's prologue: `y = epilogue(W · (x / rms(x) * weight))`, each
/// workgroup recomputing `rms(x) = sqrt(mean(x²) + eps)` from x. The output must not be x.
#[derive(Debug, Clone, Copy)]
pub struct NormPrologue<'a> {
    /// Scale `[K]`, f32.
    pub weight: &'a GpuTensor,
    /// Added to the mean square.
    pub eps: f32,
}

impl NormPrologue<'_> {
    pub(crate) fn check(&self, op: &'static str, x: &GpuTensor, y: &GpuTensor, k: usize) -> Result<()> {
        self.weight.expect_dtype(op, &[DType::F32])?;
        if self.weight.numel() != k {
            return Err(Error::Shape {
                op,
                detail: format!(
                    "norm weight '{}' has {} elements, rows of x have K = {k}",
                    self.weight.name(),
                    self.weight.numel()
                ),
            });
        }
        no_alias(op, &[y], &[self.weight, x])
    }
}

/// Shape of a linear weight: `(n, k)`.
pub(crate) fn weight_shape(op: &'static str, w: &GpuTensor) -> Result<(usize, usize)> {
    w.expect_dtype(op, &[DType::F32, DType::F16, DType::BF16])?;
    match *w.shape() {
        [n, k] if n > 0 && k > 0 => Ok((n, k)),
        _ => Err(Error::Shape {
            op,
            detail: format!(
                "weight '{}' must be [N, K] with N, K ≥ 1, got {:?}",
                w.name(),
                w.shape()
            ),
        }),
    }
}

/// Prelude constants for the weight dtype: `DT`, `EPW` (elements per u32 word), `CHUNK` (elements
/// per vec4<u32> load).
pub(crate) fn dtype_consts(dtype: DType) -> [(&'static str, Const); 3] {
    let (dt, epw) = match dtype {
        DType::F16 => (1, 2),
        DType::BF16 => (2, 2),
        _ => (0, 1),
    };
    [
        ("DT", Const::U32(dt)),
        ("EPW", Const::U32(epw)),
        ("CHUNK", Const::U32(4 * epw)),
    ]
}

/// Elements per vec4<u32> load of this dtype.
pub(crate) fn chunk_elems(dtype: DType) -> usize {
    16 / dtype.size().max(1)
}

/// The epilogue's constants and buffers, checked against an output of `rows x n` in `y`.
pub(crate) struct BoundEpilogue {
    pub consts: [(&'static str, Const); 3],
    pub bias: Option<Buffer>,
    pub residual: Option<Buffer>,
}

impl Epilogue<'_> {
    pub(crate) fn bind(&self, op: &'static str, y: &GpuTensor, n: usize) -> Result<BoundEpilogue> {
        if let Some(b) = self.bias {
            b.expect_dtype(op, &[DType::F32])?;
            if b.numel() != n {
                return Err(Error::Shape {
                    op,
                    detail: format!(
                        "bias '{}' has {} elements, the output has {n} columns",
                        b.name(),
                        b.numel()
                    ),
                });
            }
        }
        let (res_mode, residual) = match self.residual {
            None => (0, None),
            Some(Residual::Add(t)) | Some(Residual::Mul(t)) => {
                t.expect_dtype(op, &[DType::F32])?;
                if t.numel() != y.numel() {
                    return Err(Error::Shape {
                        op,
                        detail: format!(
                            "residual '{}' is {:?} but the output '{}' is {:?}",
                            t.name(),
                            t.shape(),
                            y.name(),
                            y.shape()
                        ),
                    });
                }
                let in_place = t.buffer().raw() == y.buffer().raw();
                match (self.residual, in_place) {
                    (Some(Residual::Add(_)), true) => (2, None),
                    (Some(Residual::Add(_)), false) => (1, Some(t.buffer().clone())),
                    (_, false) => (3, Some(t.buffer().clone())),
                    (_, true) => {
                        return Err(Error::Aliased {
                            op,
                            written: y.name().to_string(),
                            other: t.name().to_string(),
                        })
                    }
                }
            }
        };
        Ok(BoundEpilogue {
            consts: [
                ("HAS_BIAS", Const::Bool(self.bias.is_some())),
                ("ACT", Const::U32(self.act.code())),
                ("RES", Const::U32(res_mode)),
            ],
            bias: self.bias.map(|b| b.buffer().clone()),
            residual,
        })
    }
}

/// `y = epilogue(x · Wᵀ)` for x `[.., K]` and y `[.., N]` with the same leading rows: one row goes
/// to the GEMV (decode), more rows to the tiled matmul (prefill).
pub fn record(gpu: &Gpu, batch: &mut Batch, x: &GpuTensor, w: &GpuTensor, y: &GpuTensor, epi: &Epilogue) -> Result<()> {
    if x.rows() == 1 {
        super::gemv::record(gpu, batch, w, x, y, epi)
    } else {
        super::matmul::record(gpu, batch, x, w, y, epi)
    }
}
