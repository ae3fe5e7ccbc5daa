//! Quantised weights (`shaders/quant.wgsl`): GEMV and matmul with ggml Q8_0 / Q4_0 / Q4_1 /
//! Q4_K blocks read as stored, `y[m, n] = Σ_k x[m, k] · W[n, k]`.
//!
//! A [`QuantWeight`] is the tensor's GGUF bytes uploaded unchanged (padded to a whole number of
//! u32 words): 8.5 bits per weight for Q8_0, 4.5 for Q4_0 / Q4_K, 5 for Q4_1. The kernels
//! dequantise in registers (GEMV) or into workgroup memory one 32-wide k step at a time
//! (matmul); there is never a dequantised copy in GPU memory.
//!
//! ```ignore
//! let info = header.tensor("blk.0.ffn_up.weight")?;
//! let w = QuantWeight::from_gguf(gpu, info, &file[info.range()])?;   // [N, K] as stored
//! quant::record(gpu, &mut batch, &w, &x, &y)?;                       // x [M, K] → y [M, N]
//! ```

use super::checks::to_u32;
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, TensorInfo};
use crate::gpu::{Batch, Const, DType, Gpu, GpuTensor, Kernel, Reduction};

const KERNEL: Kernel = Kernel {
    name: "quant",
    source: concat!(
        include_str!("../../shaders/quant.wgsl"),
        include_str!("../../shaders/common/rope.wgsl"),
        include_str!("../../shaders/common/attention_rope.wgsl"),
        include_str!("../../shaders/common/qkv_epilogue.wgsl")
    ),
    uses_reduction: true,
};

/// The block formats the kernels read.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantType {
    /// 32 weights: f16 scale + 32 i8 (34 bytes).
    Q8_0,
    /// 32 weights: f16 scale + 32 nibbles, offset 8 (18 bytes).
    Q4_0,
    /// 32 weights: f16 scale, f16 min + 32 nibbles (20 bytes).
    Q4_1,
    /// 256 weights: f16 d, f16 dmin, 8 × (6-bit scale, 6-bit min), 256 nibbles (144 bytes).
    Q4_K,
}

impl QuantType {
    /// All supported types.
    pub const ALL: [QuantType; 4] = [QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4_1, QuantType::Q4_K];

    /// Weights per block.
    pub fn block_size(self) -> usize {
        match self {
            QuantType::Q4_K => 256,
            _ => 32,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            QuantType::Q8_0 => 34,
            QuantType::Q4_0 => 18,
            QuantType::Q4_1 => 20,
            QuantType::Q4_K => 144,
        }
    }

    /// The ggml type.
    pub fn ggml(self) -> GgmlType {
        match self {
            QuantType::Q8_0 => GgmlType::Q8_0,
            QuantType::Q4_0 => GgmlType::Q4_0,
            QuantType::Q4_1 => GgmlType::Q4_1,
            QuantType::Q4_K => GgmlType::Q4_K,
        }
    }

    /// The kernel-readable type of a ggml type, if any.
    pub fn from_ggml(t: GgmlType) -> Option<QuantType> {
        QuantType::ALL.into_iter().find(|q| q.ggml() == t)
    }

    /// Bytes of a `[rows, cols]` matrix.
    pub fn bytes(self, rows: usize, cols: usize) -> usize {
        rows * (cols / self.block_size()) * self.block_bytes()
    }

    fn code(self) -> u32 {
        match self {
            QuantType::Q8_0 => 0,
            QuantType::Q4_0 => 1,
            QuantType::Q4_1 => 2,
            QuantType::Q4_K => 3,
        }
    }
}

/// A `[rows, cols]` weight in ggml blocks on the GPU (rows of `cols / block_size` blocks).
#[derive(Debug, Clone)]
pub struct QuantWeight {
    qtype: QuantType,
    rows: usize,
    cols: usize,
    blocks: GpuTensor,
    /// First row inside `blocks` (a row-block view of a larger weight, see [`QuantWeight::rows_view`]).
    row0: usize,
}

impl QuantWeight {
    /// Upload `bytes` (the blocks as ggml stores them, row after row) as a `[rows, cols]` weight.
    pub fn from_blocks(
        gpu: &Gpu,
        name: &str,
        qtype: QuantType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<Self> {
        let w = Self::allocate(gpu, name, qtype, rows, cols)?;
        let want = w.block_bytes();
        if bytes.len() != want {
            return Err(Error::Data {
                tensor: name.to_string(),
                detail: format!("[{rows}, {cols}] in {qtype:?} needs {want} bytes, got {}", bytes.len()),
            });
        }
        let whole = want / 4 * 4;
        if whole > 0 {
            gpu.queue().write_buffer(w.blocks.buffer().raw(), 0, &bytes[..whole]);
        }
        if whole < want {
            let mut tail = [0u8; 4];
            tail[..want - whole].copy_from_slice(&bytes[whole..]);
            gpu.queue().write_buffer(w.blocks.buffer().raw(), whole as u64, &tail);
        }
        Ok(w)
    }

    /// A zero-filled `[rows, cols]` weight whose blocks the caller writes into
    /// [`QuantWeight::tensor`]'s buffer (the streaming GGUF loader).
    pub fn allocate(gpu: &Gpu, name: &str, qtype: QuantType, rows: usize, cols: usize) -> Result<Self> {
        const NAME: &str = "QuantWeight";
        if rows == 0 || cols == 0 || !cols.is_multiple_of(qtype.block_size()) {
            return Err(Error::Shape {
                op: NAME,
                detail: format!("'{name}' [{rows}, {cols}]: rows must be positive and K = {cols} a multiple of {qtype:?}'s {} weights", qtype.block_size()),
            });
        }
        let want = rows
            .checked_mul(cols / qtype.block_size())
            .and_then(|b| b.checked_mul(qtype.block_bytes()))
            .filter(|&b| b <= u32::MAX as usize)
            .ok_or_else(|| Error::Shape {
                op: NAME,
                detail: format!("'{name}' [{rows}, {cols}] exceeds u32 byte indexing"),
            })?;
        to_u32(NAME, "rows", rows)?;
        let blocks = GpuTensor::zeros(gpu, name, &[want.div_ceil(4)], DType::U32)?;
        Ok(QuantWeight {
            qtype,
            rows,
            cols,
            blocks,
            row0: 0,
        })
    }

    /// Rows `start .. start + rows` of this weight, sharing its buffer.
    pub fn rows_view(&self, start: usize, rows: usize) -> Result<Self> {
        if rows == 0 || start + rows > self.rows {
            return Err(Error::Shape {
                op: "QuantWeight::rows_view",
                detail: format!(
                    "rows {start}..{} of '{}' with {} rows",
                    start + rows,
                    self.name(),
                    self.rows
                ),
            });
        }
        Ok(QuantWeight {
            qtype: self.qtype,
            rows,
            cols: self.cols,
            blocks: self.blocks.clone(),
            row0: self.row0 + start,
        })
    }

    /// One weight holding the rows of `parts` in order (GPU buffer copies recorded into
    /// `batch`), when they share the type and row length and every part is whole u32 words.
    /// The parts' buffers can then be dropped: [`QuantWeight::rows_view`] gives them back.
    pub fn concat_rows(gpu: &Gpu, batch: &mut Batch, name: &str, parts: &[&QuantWeight]) -> Result<Option<Self>> {
        let Some(first) = parts.first() else { return Ok(None) };
        if parts
            .iter()
            .any(|p| p.qtype != first.qtype || p.cols != first.cols || !p.block_bytes().is_multiple_of(4))
        {
            return Ok(None);
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        let out = Self::allocate(gpu, name, first.qtype, rows, first.cols)?;
        let mut at = 0u64;
        for p in parts {
            let bytes = p.block_bytes() as u64;
            let from = p.qtype.bytes(p.row0, p.cols) as u64;
            if !from.is_multiple_of(4) {
                return Ok(None);
            }
            batch.copy(p.blocks.buffer(), from, out.blocks.buffer(), at, bytes);
            at += bytes;
        }
        Ok(Some(out))
    }

    /// Upload a GGUF tensor: `data` is its byte range of the file (`info.range()`).
    pub fn from_gguf(gpu: &Gpu, info: &TensorInfo, data: &[u8]) -> Result<Self> {
        let qtype = QuantType::from_ggml(info.ggml_type).ok_or_else(|| Error::DType {
            op: "QuantWeight::from_gguf",
            tensor: info.name.clone(),
            got: info.ggml_type.name(),
            expected: "Q8_0, Q4_0, Q4_1 or Q4_K".into(),
        })?;
        let (rows, cols) = info.rows_cols();
        Self::from_blocks(gpu, &info.name, qtype, rows as usize, cols as usize, data)
    }

    /// Block format.
    pub fn qtype(&self) -> QuantType {
        self.qtype
    }
    /// Output features N.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Input features K.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Bytes of the blocks (what one GEMV reads).
    pub fn block_bytes(&self) -> usize {
        self.qtype.bytes(self.rows, self.cols)
    }
    /// First row of this weight inside its buffer (non-zero for a [`QuantWeight::rows_view`]).
    pub fn row_offset(&self) -> usize {
        self.row0
    }
    /// The u32-word tensor holding the blocks.
    pub fn tensor(&self) -> &GpuTensor {
        &self.blocks
    }
    /// Name.
    pub fn name(&self) -> &str {
        self.blocks.name()
    }
}

/// Which kernel computes `y = x · Wᵀ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The first quantised GEMV: a workgroup per `rows` outputs of one x row, a unit (32
    /// weights) per invocation, reduction path. No model path selects it; kept as the baseline
    /// of the `quant_gemv` benchmark and tested for correctness as such ([`GemvFast`](Self::GemvFast)
    /// is what [`record`] runs for decode).
    Gemv {
        /// Outputs per workgroup (x values are loaded once for all of them).
        rows: u32,
        /// Reduction path.
        reduction: Reduction,
    },
    /// The bandwidth-tuned GEMV (`gemv_fast`): `lanes` invocations share a row group of `rows`
    /// outputs (each lane applies its units' x values to all `rows` rows); `workgroup /
    /// lanes` row groups per workgroup. `reduction` is used when `lanes == workgroup` (one
    /// `wg_sum` per row); otherwise partials go through workgroup memory with one barrier.
    GemvFast {
        /// Invocations per workgroup (a power of two within the device's limits).
        workgroup: u32,
        /// Invocations per row group (a power of two ≤ `workgroup`).
        lanes: u32,
        /// Rows per row group (1..=16; more rows share each x load, fewer lanes in flight).
        rows: u32,
        /// Units (32 weights) per lane step, 1 or 2: with 2 a lane takes two adjacent units
        /// (Q4_K: a whole 64-weight group, 32 contiguous bytes, one scale unpack) and issues
        /// the loads of both before the math.
        step: u32,
        /// Reduction path (only when `lanes == workgroup`).
        reduction: Reduction,
    },
    /// Tiled: 64 weight rows × 16·`rm` x rows per workgroup (workgroup storage:
    /// [`matmul_workgroup_bytes`]).
    Matmul {
        /// x rows per invocation (1, 2 or 4).
        rm: u32,
    },
}

impl Variant {
    /// Short name for reports.
    pub fn name(&self) -> String {
        match *self {
            Variant::Gemv { rows, reduction } => format!("gemv_rows{rows}_{}", reduction.name()),
            Variant::GemvFast {
                workgroup,
                lanes,
                rows,
                step,
                reduction,
            } => {
                let step = if step == 1 { String::new() } else { format!("_u{step}") };
                if lanes == workgroup {
                    format!("fast_wg{workgroup}_l{lanes}_r{rows}{step}_{}", reduction.name())
                } else {
                    format!("fast_wg{workgroup}_l{lanes}_r{rows}{step}")
                }
            }
            Variant::Matmul { rm } => format!("matmul_rm{rm}"),
        }
    }
}

/// The GEMV variant [`record`] uses for a `[n, k]` weight of type `qtype`, from the H100 sweep
/// (notes/q4k.md; Q4_K and Q8_0 rank the candidates alike, Q4_0 / Q4_1 share their rule):
/// - 4 rows per lane (x loaded once for 4 rows) when N ≥ 1024, else 2 (N ≥ 256) or 1, so small
///   matrices still spread over many workgroups;
/// - N ≥ 8192 (gate / up): 128 invocations, 32 lanes per row (best at 14336×4096);
/// - otherwise 64 lanes per row (each lane ~2 units of a 4096 row: most of the matrix in
///   flight): with subgroups one row group of 64 per workgroup and the subgroup `wg_sum`
///   (best at 4096×4096 and 4096×14336), without them 128 invocations = 2 row groups with
///   partials in workgroup memory (within 3 % of the best there);
/// - lanes never above half the row's units rounded up to a power of two (min 8), and the
///   workgroup within the device's invocation limit (browser: 256).
pub fn gemv_default(gpu: &Gpu, qtype: QuantType, n: usize, k: usize) -> Variant {
    let caps = gpu.caps();
    let units = (k / 32).max(1) as u32;
    let max_wg = caps.max_invocations.min(caps.max_workgroup_size_x).min(256);
    let mut cap = 1u32;
    while cap * 2 <= max_wg {
        cap *= 2;
    }
    let rows = if n >= 1024 {
        4
    } else if n >= 256 {
        2
    } else {
        1
    };
    let fit = units.div_ceil(2).next_power_of_two().max(8);
    let subgroups = caps.variants.reduction == Reduction::Subgroup;
    // H100 sweep (benches/results/h100_quant_gemv.json): for gate/up-sized N the block types
    // (Q8_0 / Q4_0 / Q4_1) gain from 64 lanes × 8 rows (1.3–1.6x over 32 × 4); Q4_K does not.
    let (wg, lanes, rows) = if n >= 8192 && qtype != QuantType::Q4_K {
        (128, 64, 8)
    } else if n >= 8192 {
        (128, 32, rows)
    } else if subgroups {
        (64, 64, rows)
    } else {
        (128, 64, rows)
    };
    let wg = wg.min(cap);
    let lanes = lanes.min(fit).min(wg);
    Variant::GemvFast {
        workgroup: wg,
        lanes,
        rows,
        step: 1,
        reduction: caps.variants.reduction,
    }
}

/// The fused constants of the plain kernels: everything off.
const OFF: [(&str, Const); 10] = [
    ("QKV_SPLIT", Const::U32(1)),
    ("QK_NORM", Const::Bool(false)),
    ("NORM", Const::Bool(false)),
    ("NORM_INLINE", Const::Bool(false)),
    ("HAS_BIAS", Const::Bool(false)),
    ("ACT", Const::U32(0)),
    ("RES", Const::U32(0)),
    ("PAIR", Const::U32(0)),
    ("HD", Const::U32(16)),
    ("KV_DTYPE", Const::U32(0)),
];

/// x rows up to which [`record`] uses the GEMV kernel.
pub const GEMV_MAX_M: usize = 4;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub units: u32,
    pub groups_n: u32,
    pub eps: f32,
    pub row0: u32,
    pub _pad0: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub pos: u32,
    pub rot: u32,
    pub log2_theta: f32,
    pub scale_stride: u32,
    pub _pad1: [u32; 2],
    /// gemv_qkv: [`crate::ops::rope::RopeScaling::wgsl`] (a vec4, 16-byte aligned at offset 64).
    pub rope_scaling: [f32; 4],
}

super::checks::params_layout_test!(
    Params,
    KERNEL.source,
    [
        m,
        n,
        k,
        units,
        groups_n,
        eps,
        row0,
        n_heads,
        n_kv_heads,
        pos,
        rot,
        log2_theta,
        scale_stride,
        rope_scaling
    ]
);

/// The prologue / epilogue constants every pipeline of quant.wgsl defines (all off for the
/// plain kernels).
#[allow(clippy::too_many_arguments)]
pub(crate) fn fused_consts(
    norm: bool,
    bias: bool,
    act: u32,
    res: u32,
    pair: u32,
    hd: u32,
    kv: u32,
    qkv_split: u32,
    qk_norm: bool,
    inline_norm: bool,
) -> [(&'static str, Const); 10] {
    [
        ("QKV_SPLIT", Const::U32(qkv_split)),
        ("QK_NORM", Const::Bool(qk_norm)),
        ("NORM", Const::Bool(norm)),
        ("NORM_INLINE", Const::Bool(norm && inline_norm)),
        ("HAS_BIAS", Const::Bool(bias)),
        ("ACT", Const::U32(act)),
        ("RES", Const::U32(res)),
        ("PAIR", Const::U32(pair)),
        ("HD", Const::U32(hd)),
        ("KV_DTYPE", Const::U32(kv)),
    ]
}

/// The workgroup-shape checks of a `GemvFast` variant; returns the reduction path to compile.
pub(crate) fn check_fast(gpu: &Gpu, variant: Variant) -> Result<Reduction> {
    const NAME: &str = "quant_matmul";
    let Variant::GemvFast {
        workgroup,
        lanes,
        rows,
        step,
        reduction,
    } = variant
    else {
        return Err(Error::Unsupported {
            kernel: NAME,
            variant: variant.name(),
            why: "not a gemv_fast variant".into(),
        });
    };
    let caps = gpu.caps();
    if !workgroup.is_power_of_two()
        || workgroup > caps.max_invocations
        || workgroup > caps.max_workgroup_size_x
        || !lanes.is_power_of_two()
        || lanes > workgroup
        || !(1..=16).contains(&rows)
        || !(1..=2).contains(&step)
    {
        return Err(Error::Unsupported {
            kernel: NAME,
            variant: variant.name(),
            why: format!(
                "workgroup and lanes must be powers of two with lanes ≤ workgroup ≤ {}, rows in 1..=16, step 1 or 2",
                caps.max_invocations.min(caps.max_workgroup_size_x)
            ),
        });
    }
    let outs = (workgroup / lanes) * rows;
    // Partials: lanes × (outs + 1) f32 (only when lanes < workgroup).
    let storage = if lanes < workgroup { lanes * (outs + 1) * 4 } else { 0 };
    if storage > caps.max_workgroup_storage {
        return Err(Error::Unsupported {
            kernel: NAME,
            variant: variant.name(),
            why: format!(
                "needs {storage} bytes of workgroup storage, the device allows {}",
                caps.max_workgroup_storage
            ),
        });
    }
    if lanes == workgroup {
        super::checks::require_reduction(gpu, NAME, reduction)?;
        Ok(reduction)
    } else {
        Ok(Reduction::SharedMemory)
    }
}

/// The constants of a `GemvFast` variant.
pub(crate) fn fast_consts(qtype: QuantType, variant: Variant) -> [(&'static str, Const); 6] {
    let (workgroup, lanes, rows, step) = match variant {
        Variant::GemvFast {
            workgroup,
            lanes,
            rows,
            step,
            ..
        } => (workgroup, lanes, rows, step),
        _ => (64, 64, 1, 1),
    };
    [
        ("QTYPE", Const::U32(qtype.code())),
        ("WG", Const::U32(workgroup)),
        ("ROWS", Const::U32(rows)),
        ("RM", Const::U32(1)),
        ("LANES", Const::U32(lanes)),
        ("STEP", Const::U32(step)),
    ]
}

pub(crate) const QUANT_KERNEL: Kernel = KERNEL;

/// `y = epilogue(x · Wᵀ)` (x rows ≤ [`GEMV_MAX_M`]) by the tuned GEMV with the prologue and
/// epilogue fused: optional RMSNorm of x (each workgroup recomputes the row's statistics), bias,
/// SiLU, residual add (in place when the residual is y) or product. With `pair` the weight is
/// `[gate; up]` (2N rows, see [`QuantWeight::concat_rows`]) and `y = act(x·Gᵀ) * (x·Uᵀ)`, `act`
/// the given gate activation.
#[allow(clippy::too_many_arguments)]
pub fn record_fused(
    gpu: &Gpu,
    batch: &mut Batch,
    w: &QuantWeight,
    x: &GpuTensor,
    y: &GpuTensor,
    norm: Option<&super::linear::NormPrologue>,
    epi: &super::linear::Epilogue,
    pair: Option<super::linear::GateAct>,
) -> Result<()> {
    let n_out = if pair.is_some() { w.rows / 2 } else { w.rows };
    let variant = gemv_default(gpu, w.qtype, n_out, w.cols);
    record_fused_variant(gpu, batch, w, x, y, norm, epi, pair, variant)
}

/// [`record_fused`] with the launch shape given (a `GemvFast` variant; benchmarks of the
/// shapes [`gemv_default`] does not pick).
#[allow(clippy::too_many_arguments)]
pub fn record_fused_variant(
    gpu: &Gpu,
    batch: &mut Batch,
    w: &QuantWeight,
    x: &GpuTensor,
    y: &GpuTensor,
    norm: Option<&super::linear::NormPrologue>,
    epi: &super::linear::Epilogue,
    pair: Option<super::linear::GateAct>,
    variant: Variant,
) -> Result<()> {
    const NAME: &str = "quant_gemv_fused";
    let pair_code = pair.map_or(0, super::linear::GateAct::code);
    let pair = pair.is_some();
    x.expect_dtype(NAME, &[DType::F32])?;
    y.expect_dtype(NAME, &[DType::F32])?;
    let n_out = if pair { w.rows / 2 } else { w.rows };
    if (pair && !w.rows.is_multiple_of(2))
        || x.last_dim() != w.cols
        || y.last_dim() != n_out
        || x.rows() != y.rows()
        || x.rows() > GEMV_MAX_M
    {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "'{}' {:?} · '{}' [{}, {}]ᵀ → '{}' {:?}: x must be [M ≤ {GEMV_MAX_M}, {}] and y [M, {n_out}]{}",
                x.name(),
                x.shape(),
                w.name(),
                w.rows,
                w.cols,
                y.name(),
                y.shape(),
                w.cols,
                if pair { " (pair: an even row count)" } else { "" }
            ),
        });
    }
    if epi.act == super::linear::Act::Gelu {
        return Err(Error::Unsupported {
            kernel: NAME,
            variant: "GELU".into(),
            why: "the quantised GEMV's epilogue has SiLU only".into(),
        });
    }
    super::checks::no_alias(NAME, &[y], &[x, &w.blocks])?;
    if let Some(nm) = norm {
        nm.check(NAME, x, y, w.cols)?;
    }
    let bound = epi.bind(NAME, y, n_out)?;
    let m = to_u32(NAME, "rows of x", x.rows())?;
    let n = to_u32(NAME, "outputs", n_out)?;
    to_u32(NAME, "elements of y", y.numel())?;
    let k = to_u32(NAME, "K", w.cols)?;
    let reduction = check_fast(gpu, variant)?;
    let Variant::GemvFast {
        workgroup, lanes, rows, ..
    } = variant
    else {
        return Err(Error::Unsupported {
            kernel: NAME,
            variant: variant.name(),
            why: "the fused prologue / epilogue exist for gemv_fast variants only".into(),
        });
    };
    let outs = (workgroup / lanes) * rows;
    let groups_n = n.div_ceil(outs);
    let [(_, has_bias), (_, act), (_, res)] = bound.consts;
    let (Const::Bool(has_bias), Const::U32(act), Const::U32(res)) = (has_bias, act, res) else {
        return Err(Error::Internal("epilogue constants".into()));
    };
    let mut consts = fast_consts(w.qtype, variant).to_vec();
    consts.extend_from_slice(&fused_consts(
        norm.is_some(),
        has_bias,
        act,
        res,
        pair_code,
        16,
        0,
        1,
        false,
        gpu.caps().variants.inline_norm,
    ));
    let p = gpu
        .pipelines()
        .get(gpu.device(), &KERNEL, "gemv_fast", Some(reduction), &consts)?;
    let params = Params {
        m,
        n,
        k,
        units: k / 32,
        groups_n,
        eps: norm.map_or(0.0, |nm| nm.eps),
        row0: to_u32(NAME, "row offset", w.row0)?,
        ..Default::default()
    };
    let dummy = x.buffer();
    let buffers = [
        (1, w.blocks.buffer()),
        (2, w.blocks.buffer()),
        (3, x.buffer()),
        (4, y.buffer()),
        (5, norm.map_or(dummy, |nm| nm.weight.buffer())),
        (6, bound.bias.as_ref().unwrap_or(dummy)),
        (7, bound.residual.as_ref().unwrap_or(dummy)),
    ];
    batch.dispatch(
        gpu,
        &p,
        &params,
        &buffers,
        gpu.grid(NAME, u64::from(groups_n) * u64::from(m))?,
    )
}

/// Workgroup storage of the matmul with `rm` x rows per invocation: the x tile (16·rm rows ×
/// 32 f32) and the weight tile (64 rows × 36 f32, padded against bank conflicts).
pub fn matmul_workgroup_bytes(rm: u32) -> u32 {
    16 * rm * 32 * 4 + 64 * 36 * 4
}

/// The variant [`record`] runs for `m` x rows of `w`: the tuned GEMV ([`gemv_default`]) for
/// decode (m ≤ [`GEMV_MAX_M`]), the tiled `Matmul` with its tile height beyond.
pub fn preferred_variant(gpu: &Gpu, w: &QuantWeight, m: usize) -> Variant {
    if m <= GEMV_MAX_M {
        return gemv_default(gpu, w.qtype, w.rows, w.cols);
    }
    let want = if m >= 48 {
        4
    } else if m >= 24 {
        2
    } else {
        1
    };
    // rm = 4 needs 17 KiB of workgroup storage: above WebGPU's default 16 KiB limit.
    let rm = [4, 2, 1]
        .into_iter()
        .find(|&rm| rm <= want && matmul_workgroup_bytes(rm) <= gpu.caps().max_workgroup_storage)
        .unwrap_or(1);
    Variant::Matmul { rm }
}

/// Record `y = x · Wᵀ` (`x: [.., K]` f32 with M rows, `y: [.., N]` f32 with M rows), GEMV for
/// small M, the tiled matmul beyond.
pub fn record(gpu: &Gpu, batch: &mut Batch, w: &QuantWeight, x: &GpuTensor, y: &GpuTensor) -> Result<()> {
    record_variant(gpu, batch, w, x, y, preferred_variant(gpu, w, x.rows()))
}

/// Record with an explicit variant (tests and benchmarks).
pub fn record_variant(
    gpu: &Gpu,
    batch: &mut Batch,
    w: &QuantWeight,
    x: &GpuTensor,
    y: &GpuTensor,
    variant: Variant,
) -> Result<()> {
    const NAME: &str = "quant_matmul";
    x.expect_dtype(NAME, &[DType::F32])?;
    y.expect_dtype(NAME, &[DType::F32])?;
    if x.last_dim() != w.cols || y.last_dim() != w.rows || x.rows() != y.rows() || x.numel() == 0 {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "'{}' {:?} · '{}' [{}, {}]ᵀ → '{}' {:?}: x must be [M, {}] and y [M, {}]",
                x.name(),
                x.shape(),
                w.name(),
                w.rows,
                w.cols,
                y.name(),
                y.shape(),
                w.cols,
                w.rows
            ),
        });
    }
    super::checks::no_alias(NAME, &[y], &[x, &w.blocks])?;
    let m = to_u32(NAME, "rows of x", x.rows())?;
    let n = to_u32(NAME, "rows of W", w.rows)?;
    to_u32(NAME, "elements of x", x.numel())?;
    to_u32(NAME, "elements of y", y.numel())?;
    let k = to_u32(NAME, "K", w.cols)?;
    let units = k / 32;
    let qtype = Const::U32(w.qtype.code());
    let buffers = [
        (1, w.blocks.buffer()),
        (2, w.blocks.buffer()),
        (3, x.buffer()),
        (4, y.buffer()),
    ];
    match variant {
        Variant::Gemv { rows, reduction } => {
            super::checks::require_reduction(gpu, NAME, reduction)?;
            if !(1..=8).contains(&rows) {
                return Err(Error::Unsupported {
                    kernel: NAME,
                    variant: format!("{variant:?}"),
                    why: format!("GEMV rows per workgroup {rows} not in 1..=8"),
                });
            }
            // Enough invocations for one unit (32 weights) each, a power of two in 64..=device.
            let wg = units
                .next_power_of_two()
                .clamp(64, gpu.caps().variants.reduce_workgroup.max(64));
            let wg = wg.min(gpu.caps().variants.reduce_workgroup);
            let groups_n = n.div_ceil(rows);
            let mut consts = vec![
                ("QTYPE", qtype),
                ("WG", Const::U32(wg)),
                ("ROWS", Const::U32(rows)),
                ("RM", Const::U32(1)),
                ("LANES", Const::U32(wg)),
                ("STEP", Const::U32(1)),
            ];
            consts.extend_from_slice(&OFF);
            let p = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "gemv", Some(reduction), &consts)?;
            let params = Params {
                m,
                n,
                k,
                units,
                groups_n,
                row0: to_u32(NAME, "row offset", w.row0)?,
                ..Default::default()
            };
            batch.dispatch(
                gpu,
                &p,
                &params,
                &buffers,
                gpu.grid(NAME, u64::from(groups_n) * u64::from(m))?,
            )
        }
        Variant::GemvFast { .. } => {
            // The fused entry point with everything off: y = x · Wᵀ.
            let reduction = check_fast(gpu, variant)?;
            let Variant::GemvFast {
                workgroup, lanes, rows, ..
            } = variant
            else {
                return Err(Error::Internal("gemv_fast variant".into()));
            };
            let groups_n = n.div_ceil((workgroup / lanes) * rows);
            let mut consts = fast_consts(w.qtype, variant).to_vec();
            consts.extend_from_slice(&OFF);
            let p = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "gemv_fast", Some(reduction), &consts)?;
            let params = Params {
                m,
                n,
                k,
                units,
                groups_n,
                row0: to_u32(NAME, "row offset", w.row0)?,
                ..Default::default()
            };
            let dummy = x.buffer();
            let buffers = [
                (1, w.blocks.buffer()),
                (2, w.blocks.buffer()),
                (3, x.buffer()),
                (4, y.buffer()),
                (5, dummy),
                (6, dummy),
                (7, dummy),
            ];
            batch.dispatch(
                gpu,
                &p,
                &params,
                &buffers,
                gpu.grid(NAME, u64::from(groups_n) * u64::from(m))?,
            )
        }
        Variant::Matmul { rm } => {
            if ![1, 2, 4].contains(&rm)
                || gpu.caps().max_invocations < 256
                || matmul_workgroup_bytes(rm) > gpu.caps().max_workgroup_storage
            {
                return Err(Error::Unsupported {
                    kernel: NAME,
                    variant: format!("matmul rm={rm}"),
                    why: format!(
                        "rm must be 1, 2 or 4, and the device must allow 256 invocations and {} bytes of workgroup storage per workgroup",
                        matmul_workgroup_bytes(rm)
                    ),
                });
            }
            let groups_n = n.div_ceil(64);
            let tiles_m = m.div_ceil(16 * rm);
            let mut consts = [
                ("QTYPE", qtype),
                ("WG", Const::U32(gpu.caps().variants.reduce_workgroup)),
                ("ROWS", Const::U32(1)),
                ("RM", Const::U32(rm)),
                ("LANES", Const::U32(gpu.caps().variants.reduce_workgroup)),
                ("STEP", Const::U32(1)),
            ]
            .to_vec();
            consts.extend_from_slice(&OFF);
            let p = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "matmul", Some(Reduction::SharedMemory), &consts)?;
            let params = Params {
                m,
                n,
                k,
                units,
                groups_n,
                row0: to_u32(NAME, "row offset", w.row0)?,
                ..Default::default()
            };
            batch.dispatch(
                gpu,
                &p,
                &params,
                &buffers,
                gpu.grid(NAME, u64::from(groups_n) * u64::from(tiles_m))?,
            )
        }
    }
}
