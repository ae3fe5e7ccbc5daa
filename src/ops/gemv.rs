//! GEMV for decode (`shaders/gemv.wgsl`): `y = epilogue(W · x)` with W
//! `[N, K]` in f32 / f16 / bf16 (read as u32 words: f16 needs no `shader-f16`), x `[K]` f32.
//!
//! The vec4 kernel computes `rows` outputs per workgroup with 16-byte weight loads and one
//! workgroup reduction per row; any K works (odd K, K < 8, rows starting mid-word) without
//! padding the weights. The naive one-thread-per-row kernel is kept as the baseline.

use super::checks::{no_alias, to_u32};
use super::linear::{chunk_elems, dtype_consts, weight_shape, Epilogue, NormPrologue};
use crate::error::{Error, Result};
use crate::gpu::{Batch, Capabilities, Const, DType, Gpu, GpuTensor, Kernel, Reduction};

pub(crate) const KERNEL: Kernel = Kernel {
    name: "gemv",
    source: concat!(
        include_str!("../../shaders/common/linear_common.wgsl"),
        include_str!("../../shaders/gemv.wgsl"),
        include_str!("../../shaders/common/rope.wgsl"),
        include_str!("../../shaders/common/attention_rope.wgsl"),
        include_str!("../../shaders/common/qkv_epilogue.wgsl")
    ),
    uses_reduction: true,
};

/// Which kernel computes the GEMV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// 16-byte loads, `rows` outputs per workgroup of `workgroup` invocations, reduced by `reduction`.
    Vec4 {
        /// Output rows per workgroup (1, 2, 4 or 8).
        rows: u32,
        /// Invocations per workgroup (a power of two ≤ the device's reduction workgroup).
        workgroup: u32,
        /// Workgroup reduction path.
        reduction: Reduction,
    },
    /// Short rows: groups of `lanes` invocations, each group `rows` rows at once, partials summed
    /// through workgroup memory after one barrier (`gemv_grouped`).
    Grouped {
        /// Lanes per row group (a power of two ≤ `workgroup`).
        lanes: u32,
        /// Rows per group (1 to 8).
        rows: u32,
        /// Invocations per workgroup (a power of two ≤ the device's reduction workgroup).
        workgroup: u32,
        /// Reduction path of the norm prologue.
        reduction: Reduction,
    },
    /// CPU adapters: each invocation computes `rows` whole rows with 16-byte loads (the norm
    /// prologue too): no workgroup memory, no barriers (`gemv_rows`).
    Rows {
        /// Rows per invocation (1, 2, 4 or 8).
        rows: u32,
        /// Invocations per workgroup (a power of two).
        workgroup: u32,
    },
    /// The naive kernel: one invocation per output row, u32 loads (benchmark baseline).
    Scalar,
}

impl Variant {
    /// Short name for reports.
    pub fn name(&self) -> String {
        match self {
            Variant::Vec4 {
                rows,
                workgroup,
                reduction,
            } => format!("vec4_r{rows}_wg{workgroup}_{}", reduction.name()),
            Variant::Grouped {
                lanes,
                rows,
                workgroup,
                reduction,
            } => format!("grouped_l{lanes}_r{rows}_wg{workgroup}_{}", reduction.name()),
            Variant::Rows { rows, workgroup } => format!("rows_r{rows}_wg{workgroup}"),
            Variant::Scalar => "scalar".into(),
        }
    }
}

/// The variant used by [`record`] for an `[n, k]` weight of `dtype`: enough invocations per row that
/// each handles at least two 16-byte chunks, and more rows per workgroup when there are many rows
/// (x loads are shared by the rows, and fewer, fuller workgroups amortise the reductions).
pub fn default_variant(caps: &Capabilities, n: usize, k: usize, dtype: DType) -> Variant {
    let chunks = k.div_ceil(chunk_elems(dtype)).max(1);
    let max_wg = caps.variants.reduce_workgroup.max(1);
    if caps.variants.cpu {
        return cpu_rows_variant(caps, n);
    }
    if chunks <= 512 && n >= 4096 && max_wg >= 64 {
        // Many short rows (the lm_head; K ≤ 4096 bf16): groups of 4–64 lanes, ≤ 3 chunks per
        // lane (a lane's loads are a dependent chain: few steps, two rows' loads in flight per
        // step), one barrier per workgroup instead of a workgroup reduction per row. H200,
        // SmolLM2 head 49152 × 576: 34 µs vs 56 µs for vec4 (profile_decoder). For the
        // hidden-sized projections (N = 576 / 896) vec4 stayed faster (9.5 vs 10.5–11.7 µs).
        let workgroup = max_wg.min(256);
        let lanes = ((chunks / 3).next_power_of_two().clamp(4, 64) as u32).min(workgroup);
        return Variant::Grouped {
            lanes,
            rows: 2,
            workgroup,
            reduction: caps.variants.reduction,
        };
    }
    let mut wg = 1u32;
    while wg * 2 <= max_wg && (wg as usize) * 2 * 2 <= chunks.max(128) {
        wg *= 2;
    }
    // One row per workgroup measured fastest on an H100 for large N (1.50 vs 1.27 TB/s at
    // 4096x4096 with 4 rows); two rows helped the small SmolLM2 shapes.
    let rows = if n >= 2048 {
        1
    } else if n >= 256 {
        2
    } else {
        1
    };
    Variant::Vec4 {
        rows,
        workgroup: wg,
        reduction: caps.variants.reduction,
    }
}

/// [`Variant::Rows`] for a CPU adapter: two rows per invocation, workgroups of 4–64 invocations
/// (at least ~16 workgroups where N allows: the adapter spreads workgroups over its threads).
pub fn cpu_rows_variant(caps: &Capabilities, n: usize) -> Variant {
    let rows = 2u32;
    let cap = caps.max_invocations.min(caps.max_workgroup_size_x).clamp(1, 64);
    let target = (n / (rows as usize * 16)).max(1).min(cap as usize) as u32;
    let workgroup = (1u32 << (31 - target.leading_zeros())).clamp(4.min(cap), cap);
    Variant::Rows { rows, workgroup }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    pub n: u32,
    pub k: u32,
    pub eps: f32,
    pub _pad0: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub pos: u32,
    pub rot: u32,
    pub log2_theta: f32,
    pub scale_stride: u32,
    pub _pad: [u32; 2],
    /// gemv_qkv: [`crate::ops::rope::RopeScaling::wgsl`] (a vec4, 16-byte aligned at offset 48).
    pub rope_scaling: [f32; 4],
}

super::checks::params_layout_test!(
    Params,
    KERNEL.source,
    [
        n,
        k,
        eps,
        n_heads,
        n_kv_heads,
        pos,
        rot,
        log2_theta,
        scale_stride,
        rope_scaling
    ]
);

/// The constants every gemv.wgsl pipeline defines beyond its own (the module also holds the
/// fused QKV entry point, whose head size and KV format they give). `NORM_INLINE` (with `norm`)
/// from the device's variants ([`crate::gpu::Variants::inline_norm`]).
pub(crate) fn module_consts(
    gpu: &Gpu,
    norm: bool,
    hd: u32,
    kv_dtype: u32,
    qkv_lanes: u32,
    qkv_split: u32,
    qk_norm: bool,
) -> [(&'static str, Const); 7] {
    [
        ("QKV_SPLIT", Const::U32(qkv_split)),
        ("QK_NORM", Const::Bool(qk_norm)),
        ("NORM", Const::Bool(norm)),
        ("NORM_INLINE", Const::Bool(norm && gpu.caps().variants.inline_norm)),
        ("HD", Const::U32(hd)),
        ("KV_DTYPE", Const::U32(kv_dtype)),
        ("QKV_LANES", Const::U32(qkv_lanes)),
    ]
}

/// Record `y = epilogue(W · x)` with the default variant.
pub fn record(gpu: &Gpu, batch: &mut Batch, w: &GpuTensor, x: &GpuTensor, y: &GpuTensor, epi: &Epilogue) -> Result<()> {
    let (n, k) = weight_shape("gemv", w)?;
    let v = default_variant(gpu.caps(), n, k, w.dtype());
    record_variant(gpu, batch, w, x, y, epi, v)
}

/// Record `y = epilogue(W · rmsnorm(x))` (the norm folded into the prologue) with the default
/// variant. `y` must not be `x` (every workgroup reads all of x).
pub fn record_normed(
    gpu: &Gpu,
    batch: &mut Batch,
    w: &GpuTensor,
    x: &GpuTensor,
    y: &GpuTensor,
    norm: &NormPrologue,
    epi: &Epilogue,
) -> Result<()> {
    let (n, k) = weight_shape("gemv", w)?;
    let v = default_variant(gpu.caps(), n, k, w.dtype());
    record_full(gpu, batch, w, x, y, Some(norm), epi, v)
}

/// Record with an explicit variant (tests and benchmarks).
pub fn record_variant(
    gpu: &Gpu,
    batch: &mut Batch,
    w: &GpuTensor,
    x: &GpuTensor,
    y: &GpuTensor,
    epi: &Epilogue,
    variant: Variant,
) -> Result<()> {
    record_full(gpu, batch, w, x, y, None, epi, variant)
}

/// Record with an optional norm prologue and an explicit variant.
#[allow(clippy::too_many_arguments)]
pub fn record_full(
    gpu: &Gpu,
    batch: &mut Batch,
    w: &GpuTensor,
    x: &GpuTensor,
    y: &GpuTensor,
    norm: Option<&NormPrologue>,
    epi: &Epilogue,
    variant: Variant,
) -> Result<()> {
    const NAME: &str = "gemv";
    let (n, k) = weight_shape(NAME, w)?;
    x.expect_dtype(NAME, &[DType::F32])?;
    y.expect_dtype(NAME, &[DType::F32])?;
    if x.numel() != k {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "x '{}' is {:?}, the weight '{}' is {:?}: x needs K = {k} elements",
                x.name(),
                x.shape(),
                w.name(),
                w.shape()
            ),
        });
    }
    if y.numel() != n {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "y '{}' is {:?}, the weight '{}' has N = {n} rows",
                y.name(),
                y.shape(),
                w.name()
            ),
        });
    }
    no_alias(NAME, &[y], &[x, w])?;
    to_u32(NAME, "weight element count", w.numel())?;
    let bound = epi.bind(NAME, y, n)?;
    if let Some(nm) = norm {
        nm.check(NAME, x, y, k)?;
    }
    let params = Params {
        n: to_u32(NAME, "N", n)?,
        k: to_u32(NAME, "K", k)?,
        eps: norm.map_or(0.0, |nm| nm.eps),
        ..Default::default()
    };
    let dummy = x.buffer();
    let bias = bound.bias.as_ref().unwrap_or(dummy);
    let res = bound.residual.as_ref().unwrap_or(dummy);
    let nw = norm.map_or(dummy, |nm| nm.weight.buffer());
    // The bindings of the vec4-weight kernels (gemv_vec4, gemv_grouped, gemv_rows).
    let vec4_bindings = [
        (1, w.buffer()),
        (3, x.buffer()),
        (5, bias),
        (6, res),
        (7, y.buffer()),
        (8, nw),
    ];

    let mut consts: Vec<(&'static str, Const)> = dtype_consts(w.dtype()).to_vec();
    consts.extend_from_slice(&bound.consts);
    consts.extend_from_slice(&module_consts(gpu, norm.is_some(), 16, 0, 1, 1, false));
    match variant {
        Variant::Vec4 {
            rows,
            workgroup,
            reduction,
        } => {
            if !matches!(rows, 1 | 2 | 4 | 8) {
                return Err(Error::Unsupported {
                    kernel: NAME,
                    variant: variant.name(),
                    why: "rows must be 1, 2, 4 or 8".into(),
                });
            }
            if !workgroup.is_power_of_two()
                || workgroup > gpu.caps().max_invocations
                || workgroup > gpu.caps().max_workgroup_size_x
            {
                return Err(Error::Unsupported {
                    kernel: NAME,
                    variant: variant.name(),
                    why: format!("workgroup must be a power of two ≤ {}", gpu.caps().max_invocations),
                });
            }
            if reduction == Reduction::Subgroup && !gpu.caps().subgroups {
                return Err(Error::Unsupported {
                    kernel: NAME,
                    variant: variant.name(),
                    why: "the device has no subgroups".into(),
                });
            }
            let aligned = k % chunk_elems(w.dtype()) == 0;
            consts.extend_from_slice(&[
                ("WG", Const::U32(workgroup)),
                ("ROWS", Const::U32(rows)),
                ("ALIGNED", Const::Bool(aligned)),
            ]);
            let pipeline = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "gemv_vec4", Some(reduction), &consts)?;
            let groups = gpu.grid(NAME, (n as u64).div_ceil(u64::from(rows)))?;
            batch.dispatch(gpu, &pipeline, &params, &vec4_bindings, groups)
        }
        Variant::Grouped {
            lanes,
            rows,
            workgroup,
            reduction,
        } => {
            let caps = gpu.caps();
            let outs = (workgroup / lanes.max(1)) * rows;
            if !workgroup.is_power_of_two()
                || workgroup > caps.max_invocations
                || workgroup > caps.max_workgroup_size_x
                || !lanes.is_power_of_two()
                || lanes > workgroup
                || !(1..=8).contains(&rows)
                || lanes * (outs + 1) * 4 + workgroup * 20 > caps.max_workgroup_storage
            {
                return Err(Error::Unsupported {
                    kernel: NAME,
                    variant: variant.name(),
                    why: format!("workgroup and lanes must be powers of two with lanes ≤ workgroup ≤ {}, rows 1 to 8, partials within the workgroup storage", caps.max_invocations),
                });
            }
            if reduction == Reduction::Subgroup && !caps.subgroups {
                return Err(Error::Unsupported {
                    kernel: NAME,
                    variant: variant.name(),
                    why: "the device has no subgroups".into(),
                });
            }
            // The module's HD is the outputs per workgroup here (sizes the partials).
            let n_consts = consts.len();
            consts[n_consts - 3] = ("HD", Const::U32(outs));
            consts[n_consts - 1] = ("QKV_LANES", Const::U32(lanes));
            consts.extend_from_slice(&[
                ("WG", Const::U32(workgroup)),
                ("ROWS", Const::U32(rows)),
                ("ALIGNED", Const::Bool(k % chunk_elems(w.dtype()) == 0)),
            ]);
            let pipeline = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "gemv_grouped", Some(reduction), &consts)?;
            let groups = gpu.grid(NAME, (n as u64).div_ceil(u64::from(outs)))?;
            batch.dispatch(gpu, &pipeline, &params, &vec4_bindings, groups)
        }
        Variant::Rows { rows, workgroup } => {
            if !matches!(rows, 1 | 2 | 4 | 8)
                || !workgroup.is_power_of_two()
                || workgroup > gpu.caps().max_invocations
                || workgroup > gpu.caps().max_workgroup_size_x
            {
                return Err(Error::Unsupported {
                    kernel: NAME,
                    variant: variant.name(),
                    why: format!(
                        "rows must be 1, 2, 4 or 8 and the workgroup a power of two ≤ {}",
                        gpu.caps().max_invocations
                    ),
                });
            }
            consts.extend_from_slice(&[
                ("WG", Const::U32(workgroup)),
                ("ROWS", Const::U32(rows)),
                ("ALIGNED", Const::Bool(k % chunk_elems(w.dtype()) == 0)),
            ]);
            let pipeline = gpu.pipelines().get(gpu.device(), &KERNEL, "gemv_rows", None, &consts)?;
            let groups = gpu.grid(NAME, (n as u64).div_ceil(u64::from(rows * workgroup)))?;
            batch.dispatch(gpu, &pipeline, &params, &vec4_bindings, groups)
        }
        Variant::Scalar => {
            if norm.is_some() {
                return Err(Error::Unsupported {
                    kernel: NAME,
                    variant: variant.name(),
                    why: "no norm prologue in the baseline kernel".into(),
                });
            }
            let wg = gpu.caps().variants.reduce_workgroup.clamp(1, 256);
            consts.extend_from_slice(&[
                ("WG", Const::U32(wg)),
                ("ROWS", Const::U32(1)),
                ("ALIGNED", Const::Bool(false)),
            ]);
            let pipeline = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "gemv_scalar", None, &consts)?;
            let groups = gpu.grid(NAME, (n as u64).div_ceil(u64::from(wg)))?;
            batch.dispatch(
                gpu,
                &pipeline,
                &params,
                &[(2, w.buffer()), (4, x.buffer()), (5, bias), (6, res), (7, y.buffer())],
                groups,
            )
        }
    }
}
