//! Tiled matmul for prefill (`shaders/matmul.wgsl`):
//! `Y[M, N] = epilogue(X[M, K] · W[N, K]ᵀ)`, X and Y f32, W f32 / f16 / bf16 (Linear layout).
//!
//! Tiles of 16..128 rows and columns with register blocking (4x4 or 8x8 outputs per invocation),
//! double-buffered workgroup staging. The tile comes from [`autotune`] when this device has timed
//! the shape's bucket, otherwise from [`default_tile`]; candidates are filtered by the device's
//! invocation and workgroup-storage limits. A plain 32x32 single-buffered kernel is kept as the baseline.
//!
//! On a CPU adapter (`Capabilities::variants.cpu`: SwiftShader, lavapipe) [`record`] runs
//! `matmul_cpu` instead ([`cpu_shape`]): each invocation a 4x8 block from storage, no workgroup
//! memory or barriers, which such adapters emulate at great cost.

use super::checks::{no_alias, to_u32};
use super::linear::{chunk_elems, dtype_consts, weight_shape, Epilogue};
use super::tune::{self, TuneKey};
use crate::error::{Error, Result};
use crate::gpu::{Batch, Capabilities, Const, DType, Gpu, GpuTensor, Kernel};

pub(crate) const KERNEL: Kernel = Kernel {
    name: "matmul",
    source: concat!(
        include_str!("../../shaders/common/linear_common.wgsl"),
        include_str!("../../shaders/matmul.wgsl")
    ),
    uses_reduction: false,
};

/// A tile configuration of the tiled kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tile {
    /// Rows of Y per workgroup.
    pub bm: u32,
    /// Columns of Y per workgroup.
    pub bn: u32,
    /// K slice staged per step.
    pub bk: u32,
    /// Rows per invocation (4 or 8).
    pub tm: u32,
    /// Columns per invocation (4 or 8).
    pub tn: u32,
}

impl Tile {
    const fn new(bm: u32, bn: u32, bk: u32, tm: u32, tn: u32) -> Tile {
        Tile { bm, bn, bk, tm, tn }
    }

    /// Invocations per workgroup.
    pub fn invocations(&self) -> u32 {
        (self.bm / self.tm) * (self.bn / self.tn)
    }

    /// Workgroup storage in bytes: X and W slices, f32, double-buffered.
    pub fn storage_bytes(&self) -> u32 {
        2 * self.bk * (self.bm + self.bn) * 4
    }

    /// Whether this device can run it.
    pub fn fits(&self, caps: &Capabilities) -> bool {
        let inv = self.invocations();
        inv <= caps.max_invocations
            && inv <= caps.max_workgroup_size_x
            && self.storage_bytes() <= caps.max_workgroup_storage
    }

    /// Short name for reports, e.g. `128x128x16_8x8`.
    pub fn name(&self) -> String {
        format!("{}x{}x{}_{}x{}", self.bm, self.bn, self.bk, self.tm, self.tn)
    }

    fn valid(&self) -> bool {
        matches!(self.tm, 4 | 8)
            && matches!(self.tn, 4 | 8)
            && matches!(self.bk, 8 | 16 | 32)
            && self.bm.is_multiple_of(self.tm)
            && self.bn.is_multiple_of(self.tn)
            && self.invocations() > 0
    }
}

/// Every tile the autotuner may pick from (before filtering by the device's limits).
pub const TILES: [Tile; 8] = [
    Tile::new(128, 128, 16, 8, 8), // 256 invocations, 32 KiB: the large-problem workhorse
    Tile::new(128, 128, 8, 8, 8),  // 256, 16 KiB
    Tile::new(128, 64, 16, 8, 4),  // 256, 24 KiB
    Tile::new(64, 128, 16, 4, 8),  // 256, 24 KiB
    Tile::new(64, 64, 16, 4, 4),   // 256, 16 KiB
    Tile::new(64, 64, 16, 8, 8),   // 64, 16 KiB: fewer, longer invocations
    Tile::new(32, 64, 16, 4, 4),   // 128, 12 KiB
    Tile::new(16, 64, 16, 4, 4),   // 64, 10 KiB: a few rows (M ≤ 16)
];

/// The tiles worth timing for `m` rows on this device.
pub fn candidates(caps: &Capabilities, m: usize) -> Vec<Tile> {
    TILES
        .iter()
        .copied()
        .filter(|t| t.fits(caps))
        // A tile more than 4x taller than the problem wastes most of its work.
        .filter(|t| (t.bm as usize) <= 4 * m.max(16))
        .collect()
}

/// The tile used without tuning: the largest that fits and still gives enough workgroups.
pub fn default_tile(caps: &Capabilities, m: usize, _n: usize) -> Tile {
    // Measured on an H100 (README): the 8x8-per-invocation tiles spill registers through naga's
    // SPIR-V and run at ~1.7 TFLOPS; 64x64 with 4x4 blocks reaches ~6.7 at M = 2048.
    let prefer: &[usize] = if m >= 64 {
        &[4, 6]
    } else if m > 16 {
        &[6, 7]
    } else {
        &[7, 6]
    };
    prefer
        .iter()
        .map(|&i| TILES[i])
        .chain(TILES.iter().rev().copied())
        .find(|t| t.fits(caps))
        .unwrap_or(TILES[7])
}

/// A launch shape of the CPU-adapter kernel (`matmul_cpu`): each invocation computes a
/// `rows` x `cols` block of Y straight from storage, no workgroup memory or barriers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuShape {
    /// Rows of Y per invocation (1, 2, 4 or 8).
    pub rows: u32,
    /// Columns of Y per invocation (1, 2, 4 or 8).
    pub cols: u32,
    /// Invocations per workgroup.
    pub workgroup: u32,
}

impl CpuShape {
    /// Short name for reports, e.g. `4x4_wg64`.
    pub fn name(&self) -> String {
        format!("{}x{}_wg{}", self.rows, self.cols, self.workgroup)
    }

    fn valid(&self, caps: &Capabilities) -> bool {
        matches!(self.rows, 1 | 2 | 4 | 8)
            && matches!(self.cols, 1 | 2 | 4 | 8)
            && self.workgroup >= 1
            && self.workgroup <= caps.max_invocations
            && self.workgroup <= caps.max_workgroup_size_x
    }
}

/// The CPU launch shape: 4x8 blocks per invocation, 16 invocations per workgroup (or the device's
/// limit). lavapipe, MiniLM / SmolLM2 prefill shapes (M = 5..64, N and K 384..1536): 4x8 was the
/// fastest block of 1x4..8x8 at every shape, 2.6–6.4x the GPU default tile; workgroups of 16 and
/// 64 were within ±10 % of each other, and 16 gives a CPU adapter (which spreads workgroups over
/// its threads) more of them (benches/results/lavapipe_matmul/).
pub fn cpu_shape(caps: &Capabilities, _m: usize, _n: usize) -> CpuShape {
    let cap = caps.max_invocations.min(caps.max_workgroup_size_x).max(1);
    CpuShape {
        rows: 4,
        cols: 8,
        workgroup: cap.min(16),
    }
}

/// Which kernel computes the matmul.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The tiled, register-blocked, double-buffered kernel with this tile.
    Tiled(Tile),
    /// The CPU-adapter kernel with this launch shape ([`Capabilities`]' `variants.cpu`).
    Cpu(CpuShape),
    /// A plain 32x32 single-buffered tile kernel (benchmark baseline; no model selects it).
    Tile32,
}

impl Variant {
    /// Short name for reports.
    pub fn name(&self) -> String {
        match self {
            Variant::Tiled(t) => format!("tiled_{}", t.name()),
            Variant::Cpu(c) => format!("cpu_{}", c.name()),
            Variant::Tile32 => "tile32_baseline".into(),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    tiles_n: u32,
}

super::checks::params_layout_test!(Params, KERNEL.source, [m, n, k, tiles_n]);

struct Shape {
    m: usize,
    n: usize,
    k: usize,
}

fn check(x: &GpuTensor, w: &GpuTensor, y: &GpuTensor) -> Result<Shape> {
    const NAME: &str = "matmul";
    let (n, k) = weight_shape(NAME, w)?;
    x.expect_dtype(NAME, &[DType::F32])?;
    y.expect_dtype(NAME, &[DType::F32])?;
    if x.last_dim() != k || x.numel() == 0 {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "x '{}' is {:?}, the weight '{}' is {:?}: x's last dimension must be K = {k}",
                x.name(),
                x.shape(),
                w.name(),
                w.shape()
            ),
        });
    }
    let m = x.rows();
    if y.last_dim() != n || y.rows() != m {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "y '{}' is {:?}, expected {m} rows of N = {n} (x '{}' is {:?})",
                y.name(),
                y.shape(),
                x.name(),
                x.shape()
            ),
        });
    }
    no_alias(NAME, &[y], &[x, w])?;
    to_u32(NAME, "x element count", x.numel())?;
    to_u32(NAME, "y element count", y.numel())?;
    to_u32(NAME, "weight element count", w.numel())?;
    Ok(Shape { m, n, k })
}

/// The tile [`record`] uses for this problem: the tuned one if [`autotune`] ran for its bucket.
pub fn chosen_tile(gpu: &Gpu, m: usize, n: usize, k: usize, dtype: DType) -> Tile {
    let key = TuneKey::new(gpu, "matmul", dtype, [m, n, k]);
    tune::lookup(&key)
        .and_then(|i| TILES.get(i).copied())
        .unwrap_or_else(|| default_tile(gpu.caps(), m, n))
}

/// The variant [`record`] uses: the CPU launch shape on a CPU adapter ([`cpu_shape`]), otherwise
/// the tiled kernel with [`chosen_tile`].
pub fn chosen_variant(gpu: &Gpu, m: usize, n: usize, k: usize, dtype: DType) -> Variant {
    if gpu.caps().variants.cpu {
        Variant::Cpu(cpu_shape(gpu.caps(), m, n))
    } else {
        Variant::Tiled(chosen_tile(gpu, m, n, k, dtype))
    }
}

/// Record `y = epilogue(x · wᵀ)` with the chosen variant ([`chosen_variant`]).
pub fn record(gpu: &Gpu, batch: &mut Batch, x: &GpuTensor, w: &GpuTensor, y: &GpuTensor, epi: &Epilogue) -> Result<()> {
    let s = check(x, w, y)?;
    let v = chosen_variant(gpu, s.m, s.n, s.k, w.dtype());
    record_variant(gpu, batch, x, w, y, epi, v)
}

/// Record with an explicit variant (tests, benchmarks, the autotuner).
pub fn record_variant(
    gpu: &Gpu,
    batch: &mut Batch,
    x: &GpuTensor,
    w: &GpuTensor,
    y: &GpuTensor,
    epi: &Epilogue,
    variant: Variant,
) -> Result<()> {
    const NAME: &str = "matmul";
    let s = check(x, w, y)?;
    let bound = epi.bind(NAME, y, s.n)?;
    let dummy = x.buffer();
    let bias = bound.bias.as_ref().unwrap_or(dummy);
    let res = bound.residual.as_ref().unwrap_or(dummy);
    let mut consts: Vec<(&'static str, Const)> = dtype_consts(w.dtype()).to_vec();
    consts.extend_from_slice(&bound.consts);
    let (bm, bn) = match variant {
        Variant::Tiled(t) => (t.bm, t.bn),
        Variant::Cpu(c) => (c.rows, c.cols),
        Variant::Tile32 => (32, 32),
    };
    let tiles_n = (s.n as u64).div_ceil(u64::from(bn));
    let tiles = tiles_n * (s.m as u64).div_ceil(u64::from(bm));
    let groups = match variant {
        // One invocation per block.
        Variant::Cpu(c) => gpu.grid(NAME, tiles.div_ceil(u64::from(c.workgroup.max(1))))?,
        _ => gpu.grid(NAME, tiles)?,
    };
    let params = Params {
        m: to_u32(NAME, "M", s.m)?,
        n: to_u32(NAME, "N", s.n)?,
        k: to_u32(NAME, "K", s.k)?,
        tiles_n: u32::try_from(tiles_n).map_err(|_| Error::Shape {
            op: NAME,
            detail: "too many column tiles".into(),
        })?,
    };
    match variant {
        Variant::Tiled(t) => {
            if !t.valid() || !t.fits(gpu.caps()) {
                return Err(Error::Unsupported {
                    kernel: NAME,
                    variant: variant.name(),
                    why: format!(
                        "needs {} invocations and {} B of workgroup storage (device: {} and {} B), TM/TN in {{4, 8}}, BK in {{8, 16, 32}}",
                        t.invocations(),
                        t.storage_bytes(),
                        gpu.caps().max_invocations,
                        gpu.caps().max_workgroup_storage
                    ),
                });
            }
            consts.extend_from_slice(&tile_consts(t, s.k, w.dtype()));
            consts.extend_from_slice(&cpu_consts(CPU_UNUSED));
            let pipeline = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "matmul_tiled", None, &consts)?;
            batch.dispatch(
                gpu,
                &pipeline,
                &params,
                &[
                    (1, w.buffer()),
                    (2, w.buffer()),
                    (3, x.buffer()),
                    (4, x.buffer()),
                    (5, bias),
                    (6, res),
                    (7, y.buffer()),
                ],
                groups,
            )
        }
        Variant::Cpu(c) => {
            if !c.valid(gpu.caps()) {
                return Err(Error::Unsupported {
                    kernel: NAME,
                    variant: variant.name(),
                    why: format!(
                        "needs rows and columns per invocation in {{1, 2, 4, 8}} and {} invocations (device: {})",
                        c.workgroup,
                        gpu.caps().max_invocations.min(gpu.caps().max_workgroup_size_x)
                    ),
                });
            }
            // The module also holds the tiled kernel, whose constants must be defined (unused here).
            consts.extend_from_slice(&tile_consts(TILES[7], s.k, w.dtype()));
            consts.extend_from_slice(&cpu_consts(c));
            let pipeline = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "matmul_cpu", None, &consts)?;
            batch.dispatch(
                gpu,
                &pipeline,
                &params,
                &[
                    (1, w.buffer()),
                    (2, w.buffer()),
                    (3, x.buffer()),
                    (4, x.buffer()),
                    (5, bias),
                    (6, res),
                    (7, y.buffer()),
                ],
                groups,
            )
        }
        Variant::Tile32 => {
            // The module also holds the tiled and CPU kernels, whose constants must be defined (unused here).
            consts.extend_from_slice(&tile_consts(TILES[7], s.k, w.dtype()));
            consts.extend_from_slice(&cpu_consts(CPU_UNUSED));
            let pipeline = gpu
                .pipelines()
                .get(gpu.device(), &KERNEL, "matmul_tile32", None, &consts)?;
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

/// The CPU kernel's constants where another entry point is compiled (must be defined, unused).
const CPU_UNUSED: CpuShape = CpuShape {
    rows: 1,
    cols: 1,
    workgroup: 1,
};

/// Prelude constants of the CPU kernel.
fn cpu_consts(c: CpuShape) -> [(&'static str, Const); 3] {
    [
        ("CR", Const::U32(c.rows)),
        ("CN", Const::U32(c.cols)),
        ("CWG", Const::U32(c.workgroup)),
    ]
}

/// Prelude constants of the tiled kernel for `t` and this K and weight dtype.
fn tile_consts(t: Tile, k: usize, dtype: DType) -> [(&'static str, Const); 12] {
    let chunk = chunk_elems(dtype) as u32;
    let aligned_w = k.is_multiple_of(chunk as usize);
    let wg = t.invocations();
    let (ub, qpu) = if aligned_w {
        (t.bn * t.bk / chunk, chunk / 4)
    } else {
        (t.bn * t.bk / 4, 1)
    };
    let la = (t.bm * t.bk / 4).div_ceil(wg);
    let lb = ub.div_ceil(wg) * qpu;
    [
        ("BM", Const::U32(t.bm)),
        ("BN", Const::U32(t.bn)),
        ("BK", Const::U32(t.bk)),
        ("TM", Const::U32(t.tm)),
        ("TN", Const::U32(t.tn)),
        ("WG", Const::U32(wg)),
        ("LA", Const::U32(la)),
        ("LB", Const::U32(lb)),
        ("UB", Const::U32(ub)),
        ("QPU", Const::U32(qpu)),
        ("ALIGNED_X", Const::Bool(k.is_multiple_of(4))),
        ("ALIGNED_W", Const::Bool(aligned_w)),
    ]
}

/// Time every candidate tile for this problem once (on these tensors: `y` is overwritten), keep
/// the fastest for the shape's bucket on this device, and return it. Later calls for the same
/// bucket return the cached choice without timing.
pub async fn autotune(gpu: &Gpu, x: &GpuTensor, w: &GpuTensor, y: &GpuTensor) -> Result<Tile> {
    let s = check(x, w, y)?;
    let key = TuneKey::new(gpu, "matmul", w.dtype(), [s.m, s.n, s.k]);
    if let Some(t) = tune::lookup(&key).and_then(|i| TILES.get(i).copied()) {
        return Ok(t);
    }
    let flops = 2.0 * s.m as f64 * s.n as f64 * s.k as f64;
    // About 20 ms of work per candidate on a fast GPU, at least one dispatch.
    let reps = ((2e10 / flops.max(1.0)) as usize).clamp(1, 20);
    let mut best: Option<(f64, Tile)> = None;
    for tile in candidates(gpu.caps(), s.m) {
        let ms = tune::time_op(gpu, reps, |b| {
            record_variant(gpu, b, x, w, y, &Epilogue::NONE, Variant::Tiled(tile))
        })
        .await?;
        if best.is_none_or(|(b, _)| ms < b) {
            best = Some((ms, tile));
        }
    }
    let tile = best
        .map(|(_, t)| t)
        .unwrap_or_else(|| default_tile(gpu.caps(), s.m, s.n));
    if let Some(i) = TILES.iter().position(|t| *t == tile) {
        tune::remember(key, i)?;
    }
    Ok(tile)
}
