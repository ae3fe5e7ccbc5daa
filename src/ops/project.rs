//! Projections over dense or quantised weights, one entry point for both: the dense / quantised
//! choice lives here, not in the models.
//!
//! [`record`] computes `y = epilogue(x · Wᵀ)` with an optional RMSNorm prologue:
//! - dense weights (f32 / f16 / bf16): the GEMV (one row) or the tiled matmul, epilogue fused;
//!   the norm prologue on the GEMV;
//! - quantised weights: the tuned quant GEMV (rows ≤ [`quant::GEMV_MAX_M`]) with prologue and
//!   epilogue fused; the tiled quant matmul (prefill) has no fused epilogue, so [`record`] then
//!   builds it from elementwise dispatches on the caller's [`QuantTemps`].
//!
//! [`record_swiglu`] is `h = silu(x·Gᵀ) * (x·Uᵀ)` for one row (decode) with the norm prologue:
//! the dense fused SwiGLU kernel, or the quant GEMV in pair mode over a `[gate; up]` weight.

use super::elementwise::{self, Op};
use super::linear::{self, Act, Epilogue, GateAct, NormPrologue, Residual};
use super::quant::{self, QuantWeight};
use super::{ffn, gemv};
use crate::error::{Error, Result};
use crate::gpu::{Batch, DType, Gpu, GpuTensor};

/// A projection weight: dense (f32 / f16 / bf16) or quantised blocks as stored.
#[derive(Debug, Clone)]
pub enum Linear {
    /// `[N, K]` dense.
    Dense(GpuTensor),
    /// `[N, K]` in ggml blocks.
    Quant(QuantWeight),
}

impl Linear {
    /// Output features N.
    pub fn rows(&self) -> usize {
        match self {
            Linear::Dense(t) => t.shape().first().copied().unwrap_or(0),
            Linear::Quant(q) => q.rows(),
        }
    }
    /// Input features K.
    pub fn cols(&self) -> usize {
        match self {
            Linear::Dense(t) => t.last_dim(),
            Linear::Quant(q) => q.cols(),
        }
    }
    /// Whether the weight is quantised.
    pub fn is_quant(&self) -> bool {
        matches!(self, Linear::Quant(_))
    }

    /// One weight holding the rows of `parts` in order, by GPU buffer copies recorded into
    /// `batch`: all dense of one dtype (byte sizes whole u32 words) or all quantised of one type.
    /// `None` when the parts cannot be joined that way (mixed types): the caller keeps them apart.
    pub fn concat_rows(gpu: &Gpu, batch: &mut Batch, name: &str, parts: &[&Linear]) -> Result<Option<Linear>> {
        let Some(first) = parts.first() else { return Ok(None) };
        let k = first.cols();
        if parts.iter().any(|p| p.cols() != k) {
            return Ok(None);
        }
        match first {
            Linear::Quant(_) => {
                let qs: Option<Vec<&QuantWeight>> = parts
                    .iter()
                    .map(|p| match p {
                        Linear::Quant(q) => Some(q),
                        Linear::Dense(_) => None,
                    })
                    .collect();
                match qs {
                    Some(qs) => Ok(QuantWeight::concat_rows(gpu, batch, name, &qs)?.map(Linear::Quant)),
                    None => Ok(None),
                }
            }
            Linear::Dense(t0) => {
                let dt = t0.dtype();
                let mut ts = Vec::with_capacity(parts.len());
                for p in parts {
                    match p {
                        Linear::Dense(t)
                            if t.dtype() == dt && t.shape().len() == 2 && (t.numel() * dt.size()).is_multiple_of(4) =>
                        {
                            ts.push(t)
                        }
                        _ => return Ok(None),
                    }
                }
                let rows = ts.iter().map(|t| t.rows()).sum::<usize>();
                let out = GpuTensor::zeros(gpu, name, &[rows, k], dt)?;
                let mut at = 0u64;
                for t in ts {
                    let bytes = (t.numel() * dt.size()) as u64;
                    batch.copy(t.buffer(), 0, out.buffer(), at, bytes);
                    at += bytes;
                }
                Ok(Some(Linear::Dense(out)))
            }
        }
    }
}

/// Scratch tensors for a quantised projection through the tiled matmul (prefill), whose epilogue
/// runs as separate dispatches: `ones` `[rows, 1]` (the bias as a K = 1 linear), and temporaries
/// shaped like the outputs.
pub struct QuantTemps<'a> {
    /// `[rows, 1]` of ones.
    pub ones: &'a GpuTensor,
    /// Temporaries `[rows, N]` for each output width N that occurs (two of the residual's width).
    pub tmp: &'a [&'a GpuTensor],
}

impl QuantTemps<'_> {
    fn pick(&self, y: &GpuTensor, skip: Option<&GpuTensor>) -> Result<&GpuTensor> {
        self.tmp
            .iter()
            .copied()
            .find(|t| t.shape() == y.shape() && skip.is_none_or(|s| s.buffer().raw() != t.buffer().raw()))
            .ok_or_else(|| Error::Shape {
                op: "project",
                detail: format!("no temporary of shape {:?}", y.shape()),
            })
    }
}

/// `y = epilogue(x · Wᵀ)`, with the RMSNorm of x folded into the prologue when `norm` is given
/// (one-row dense GEMV or quant GEMV only: the prefill path normalises separately). `temps` are
/// needed only for quantised weights with more than [`quant::GEMV_MAX_M`] rows and an epilogue.
#[allow(clippy::too_many_arguments)]
pub fn record(
    gpu: &Gpu,
    b: &mut Batch,
    x: &GpuTensor,
    w: &Linear,
    y: &GpuTensor,
    norm: Option<&NormPrologue>,
    epi: &Epilogue,
    temps: Option<&QuantTemps>,
) -> Result<()> {
    match w {
        Linear::Dense(w) => match norm {
            None => linear::record(gpu, b, x, w, y, epi),
            Some(nm) if x.rows() == 1 => gemv::record_normed(gpu, b, w, x, y, nm, epi),
            Some(_) => Err(Error::Shape {
                op: "project",
                detail: format!("a norm prologue needs one row of x, got {:?}", x.shape()),
            }),
        },
        Linear::Quant(q) if x.rows() <= quant::GEMV_MAX_M => quant::record_fused(gpu, b, q, x, y, norm, epi, None),
        Linear::Quant(q) => {
            if norm.is_some() {
                return Err(Error::Shape {
                    op: "project",
                    detail: format!("a norm prologue needs ≤ {} rows of x", quant::GEMV_MAX_M),
                });
            }
            let plain = epi.bias.is_none() && epi.act == Act::None && epi.residual.is_none();
            if plain {
                return quant::record(gpu, b, q, x, y);
            }
            let temps = temps.ok_or_else(|| Error::BadInput {
                op: "project",
                detail: "a quantised matmul with an epilogue needs temporaries".into(),
            })?;
            record_quant_unfused(gpu, b, q, x, y, epi, temps)
        }
    }
}

/// [`record`] as the model recorded it before the fused epilogues (the benchmark baseline): for
/// quantised weights the plain quant GEMV / matmul, then the epilogue as separate dispatches.
pub fn record_separate(
    gpu: &Gpu,
    b: &mut Batch,
    x: &GpuTensor,
    w: &Linear,
    y: &GpuTensor,
    epi: &Epilogue,
    temps: &QuantTemps,
) -> Result<()> {
    match w {
        Linear::Dense(w) => linear::record(gpu, b, x, w, y, epi),
        Linear::Quant(q) if epi.bias.is_none() && epi.act == Act::None && epi.residual.is_none() => {
            quant::record(gpu, b, q, x, y)
        }
        Linear::Quant(q) => record_quant_unfused(gpu, b, q, x, y, epi, temps),
    }
}

/// The quant matmul followed by its epilogue as separate dispatches (bias as `ones · biasᵀ`
/// added in place by a K = 1 linear, SiLU in place, the residual sum or product elementwise).
fn record_quant_unfused(
    gpu: &Gpu,
    b: &mut Batch,
    q: &QuantWeight,
    x: &GpuTensor,
    y: &GpuTensor,
    epi: &Epilogue,
    temps: &QuantTemps,
) -> Result<()> {
    let out = if epi.residual.is_some() {
        temps.pick(y, None)?
    } else {
        y
    };
    quant::record(gpu, b, q, x, out)?;
    if let Some(bias) = epi.bias {
        let col = bias.reshape(&[bias.numel(), 1])?;
        let ones = temps.ones.reshape(&[x.rows(), 1])?;
        let add = Epilogue {
            residual: Some(Residual::Add(out)),
            ..Default::default()
        };
        linear::record(gpu, b, &ones, &col, out, &add)?;
    }
    match epi.act {
        Act::None => {}
        Act::Silu => elementwise::record_inplace(gpu, b, Op::Silu, out)?,
        a => {
            return Err(Error::Unsupported {
                kernel: "project",
                variant: format!("activation {a:?} after a quantised projection"),
                why: "only SiLU is recorded after the quantised matmul".into(),
            })
        }
    }
    match epi.residual {
        None => Ok(()),
        Some(Residual::Mul(r)) => elementwise::record(gpu, b, Op::Mul, out, Some(r), y),
        Some(Residual::Add(r)) => {
            let tmp2 = temps.pick(y, Some(out))?;
            elementwise::record(gpu, b, Op::Add, r, Some(out), tmp2)?;
            b.copy(tmp2.buffer(), 0, y.buffer(), 0, (y.numel() * 4) as u64);
            Ok(())
        }
    }
}

/// The gate and up projections of a SwiGLU block as the decode kernels read them.
#[derive(Debug, Clone)]
pub enum GateUp {
    /// Dense gate and up `[N, K]` (the fused SwiGLU kernel reads both).
    Dense {
        /// Gate.
        gate: GpuTensor,
        /// Up.
        up: GpuTensor,
    },
    /// `[gate; up]` quantised, 2N rows (the quant GEMV in pair mode).
    Quant(QuantWeight),
}

impl GateUp {
    /// From separate gate and up weights; quantised ones are joined into one weight (recorded
    /// into `batch`), `None` when they cannot be (mixed types).
    pub fn new(gpu: &Gpu, batch: &mut Batch, name: &str, gate: &Linear, up: &Linear) -> Result<Option<GateUp>> {
        match (gate, up) {
            (Linear::Dense(g), Linear::Dense(u)) if g.shape() == u.shape() && g.dtype() == u.dtype() => {
                Ok(Some(GateUp::Dense {
                    gate: g.clone(),
                    up: u.clone(),
                }))
            }
            (Linear::Quant(_), Linear::Quant(_)) => match Linear::concat_rows(gpu, batch, name, &[gate, up])? {
                Some(Linear::Quant(q)) => Ok(Some(GateUp::Quant(q))),
                _ => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// Whether the weights are quantised (joined).
    pub fn is_quant(&self) -> bool {
        matches!(self, GateUp::Quant(_))
    }

    /// The gate and up weights as separate [`Linear`]s (views of the joined quantised weight).
    pub fn parts(&self) -> Result<(Linear, Linear)> {
        match self {
            GateUp::Dense { gate, up } => Ok((Linear::Dense(gate.clone()), Linear::Dense(up.clone()))),
            GateUp::Quant(q) => {
                let n = q.rows() / 2;
                Ok((Linear::Quant(q.rows_view(0, n)?), Linear::Quant(q.rows_view(n, n)?)))
            }
        }
    }
}

/// `h = act(n(x)·Gᵀ) * (n(x)·Uᵀ)` for one row x, `n` the RMSNorm prologue when given, `act`
/// the gate activation (SiLU: SwiGLU; GELU-tanh: Gemma's GeGLU).
pub fn record_swiglu(
    gpu: &Gpu,
    b: &mut Batch,
    x: &GpuTensor,
    norm: Option<&NormPrologue>,
    w: &GateUp,
    h: &GpuTensor,
    act: GateAct,
) -> Result<()> {
    if x.rows() != 1 || x.dtype() != DType::F32 {
        return Err(Error::Shape {
            op: "project::record_swiglu",
            detail: format!("x '{}' must be one f32 row, got {:?}", x.name(), x.shape()),
        });
    }
    match w {
        GateUp::Dense { gate, up } => ffn::record_gated(gpu, b, x, norm, gate, up, h, act),
        GateUp::Quant(q) => quant::record_fused(gpu, b, q, x, h, norm, &Epilogue::NONE, Some(act)),
    }
}
