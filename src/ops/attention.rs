//! Attention (`shaders/attention.wgsl`, seeds 6, 7, 20): Flash Attention 2 for prefill,
//! flash-decoding for one new token against a long KV cache, and the unfused baseline.
//!
//! Layouts: Q and out `[batch, q_len, n_heads, head_dim]` (or without the batch dimension),
//! K / V `[batch, kv_len, n_kv_heads, head_dim]` f32 or a [`KvCache`] (f32 / f16 / int8, batch 1).
//! Grouped-query attention reads `kv_head = head / (n_heads / n_kv_heads)` directly.
//! Query row `r` is at position `q_pos0 + r` (default `kv_len - q_len`): with `causal` it sees
//! keys `j <= q_pos0 + r`; `kv_lens` (f32 `[batch]`, integer values) masks keys past each
//! sequence's valid length (padding).

use super::checks::to_u32;
use super::kv_cache::{KvCache, KvDType};
use super::rope::{Rope, RopeScaling};
use crate::error::{Error, Result};
use crate::gpu::{Batch, Capabilities, Const, DType, Gpu, GpuTensor, Kernel, Reduction};

const KERNEL: Kernel = Kernel {
    name: "attention",
    source: concat!(
        include_str!("../../shaders/common/rope.wgsl"),
        include_str!("../../shaders/common/attention_rope.wgsl"),
        include_str!("../../shaders/attention.wgsl")
    ),
    uses_reduction: true,
};

/// Where keys and values come from.
#[derive(Debug, Clone, Copy)]
pub enum Kv<'a> {
    /// f32 activations `[batch, kv_len, n_kv_heads, head_dim]` (or without batch).
    F32 {
        /// Keys.
        k: &'a GpuTensor,
        /// Values.
        v: &'a GpuTensor,
    },
    /// The first `cache.len()` tokens of a KV cache (batch 1), in its storage format.
    Cache(&'a KvCache),
}

/// Options of a prefill attention.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttentionOptions<'a> {
    /// Causal mask (decoders).
    pub causal: bool,
    /// Softmax scale; default `1 / sqrt(head_dim)`.
    pub scale: Option<f32>,
    /// Position of query row 0 among the keys; default `kv_len - q_len`.
    pub q_pos0: Option<usize>,
    /// Valid keys per batch entry (f32 `[batch]` holding integers): the padding mask.
    pub kv_lens: Option<&'a GpuTensor>,
    /// Sliding window: each query sees only the last `window` positions up to its own.
    pub window: Option<usize>,
}

/// Workgroup tiles of the flash / unfused kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlashTiles {
    /// Query rows per workgroup (multiple of 4).
    pub br: u32,
    /// Keys per step (multiple of 16).
    pub bc: u32,
    /// Head-dim chunk of Q and K held in workgroup memory for S = Q K^T.
    pub dk: u32,
    /// Keys per V chunk held in workgroup memory for O += P V.
    pub vk: u32,
}

impl FlashTiles {
    /// Invocations per workgroup: one per 4 x 4 block of the score tile.
    pub fn invocations(&self) -> u32 {
        (self.br / 4) * (self.bc / 4)
    }

    /// Workgroup memory in bytes for head size `d` (mirrors the WGSL constants).
    pub fn storage_bytes(&self, d: u32) -> u32 {
        let (tx, ty) = (self.bc / 4, self.br / 4);
        let rb4 = ty + 1;
        let cb4 = tx + 1;
        let dv = d.div_ceil(4 * tx);
        let dp4 = dv * tx;
        let a = (self.dk * (rb4 + cb4)).max(ty * tx).max(self.vk * dp4);
        (a + self.bc * rb4) * 16
    }

    fn valid_for(&self, d: u32) -> bool {
        self.br >= 4
            && self.br.is_multiple_of(4)
            && self.bc >= 16
            && self.bc.is_multiple_of(16)
            && self.dk.is_multiple_of(4)
            && self.dk > 0
            && d.is_multiple_of(self.dk)
            && self.vk > 0
            && self.bc.is_multiple_of(self.vk)
    }

    /// The largest tiles this device can hold for head size `d`: 64 x 64 with 32-wide chunks
    /// where 48 KiB of workgroup memory exist (native), 64 x 64 with 16-wide chunks in 32 KiB
    /// (the browser), smaller tiles below that.
    pub fn choose(caps: &Capabilities, d: u32) -> Result<FlashTiles> {
        const CANDIDATES: [(u32, u32, u32, u32); 7] = [
            (64, 64, 32, 32),
            (64, 64, 16, 16),
            (64, 64, 16, 8),
            (32, 32, 16, 16),
            (32, 32, 16, 8),
            (16, 16, 16, 8),
            (16, 16, 8, 4),
        ];
        CANDIDATES
            .iter()
            .map(|&(br, bc, dk, vk)| FlashTiles { br, bc, dk, vk })
            .find(|t| {
                t.valid_for(d)
                    && t.invocations() <= caps.max_invocations
                    && t.invocations() <= caps.max_workgroup_size_x
                    && t.storage_bytes(d) <= caps.max_workgroup_storage
            })
            .ok_or_else(|| Error::Unsupported {
                kernel: "flash_prefill",
                variant: format!("head_dim {d}"),
                why: format!("no tile fits {} bytes of workgroup memory", caps.max_workgroup_storage),
            })
    }
}

/// Workgroup shape of decode attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecodeTiles {
    /// Invocations per workgroup (power of two, ≥ head_dim / 4).
    pub wg: u32,
    /// Keys per invocation in the score phase: chunks hold up to `wg * kpt` keys.
    pub kpt: u32,
    /// Query heads per workgroup (sharing one KV head).
    pub hg: u32,
}

impl DecodeTiles {
    /// Workgroup memory in bytes for head size `d`.
    pub fn storage_bytes(&self, d: u32) -> u32 {
        self.hg * d * 4 + self.hg * self.wg * self.kpt * 4 + self.hg * self.wg * 4
    }

    /// Most keys per chunk.
    pub fn max_chunk(&self) -> u32 {
        self.wg * self.kpt
    }

    /// The shape for one chunk of `len` keys (no split, no merge; `len` ≤ `self.max_chunk()`):
    /// one query head per workgroup (n_heads workgroups instead of n_kv_heads: more of the GPU
    /// at short contexts; the group's K / V re-reads hit L2) and a workgroup no wider than the
    /// keys need (fewer tree levels). Falls back to `self` where that shape would not hold the
    /// chunk or not fit the device.
    pub fn single_chunk(self, caps: &Capabilities, len: usize, d: u32) -> DecodeTiles {
        // CPU adapters: 64 invocations (a barrier costs per invocation there, superlinearly
        // beyond 64: notes/dawn.md, "CPU adapters"), 2 keys each up to 128 keys.
        let widest = if caps.variants.cpu { 64 } else { 256 };
        let want = (len.next_power_of_two() as u32)
            .clamp(64, widest)
            .max((d / 4).next_power_of_two());
        let kpt = (len as u32).div_ceil(want).clamp(1, 2);
        let t = DecodeTiles { wg: want, kpt, hg: 1 };
        if t.max_chunk() as usize >= len
            && t.wg <= caps.max_invocations
            && t.wg <= caps.max_workgroup_size_x
            && t.storage_bytes(d) <= caps.max_workgroup_storage
        {
            t
        } else {
            self
        }
    }

    /// The `decode_single` shape for `len` keys: 128 invocations up to 128 keys, else 256 with 1–2
    /// keys each; `None` where it would not hold the keys or not fit the device, or where the
    /// head size is not 8 times a power of two (its phase-2 tree).
    /// Not on CPU adapters (its 128–256 invocations and log2 barriers cost more there than
    /// `decode_partial`'s 64).
    pub fn single_kernel(caps: &Capabilities, len: usize, d: u32) -> Option<DecodeTiles> {
        if caps.variants.cpu || !d.is_multiple_of(8) || !(d / 8).is_power_of_two() {
            return None;
        }
        let wg = (len.next_power_of_two() as u32).clamp(128, 256).max(d / 4);
        let kpt = (len as u32).div_ceil(wg).max(1);
        let t = DecodeTiles { wg, kpt, hg: 1 };
        let storage = d * 4 + wg * kpt * 4 + wg * 4 + 2 * wg * 16;
        (kpt <= 2
            && wg <= caps.max_invocations
            && wg <= caps.max_workgroup_size_x
            && storage <= caps.max_workgroup_storage)
            .then_some(t)
    }

    /// Pick the shape for `group` query heads per KV head and head size `d`.
    pub fn choose(caps: &Capabilities, group: u32, d: u32) -> Result<DecodeTiles> {
        // Query heads per workgroup: all of the group up to 8, else an even split of it.
        let hg = group.div_ceil(group.div_ceil(8)).max(1);
        // CPU adapters: 64 invocations where the head allows (more chunks, split and merge
        // beyond 128 keys, instead of 256-wide workgroups with barriers).
        let widest = if caps.variants.cpu { 64.max(d / 4) } else { 256 };
        for wg in [256u32, 128, 64] {
            if wg > widest || wg > caps.max_invocations || wg > caps.max_workgroup_size_x || wg < d / 4 {
                continue;
            }
            for kpt in [2u32, 1] {
                let t = DecodeTiles { wg, kpt, hg };
                if t.storage_bytes(d) <= caps.max_workgroup_storage {
                    return Ok(t);
                }
            }
        }
        Err(Error::Unsupported {
            kernel: "decode_partial",
            variant: format!("head_dim {d}, {group} query heads per KV head"),
            why: format!(
                "needs more than {} bytes of workgroup memory",
                caps.max_workgroup_storage
            ),
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    q_len: u32,
    kv_len: u32,
    n_heads: u32,
    n_kv_heads: u32,
    group: u32,
    q_pos0: u32,
    causal: u32,
    scale_log2: f32,
    kv_batch_stride: u32,
    kv_row_stride: u32,
    has_lens: u32,
    rot: u32,
    log2_theta: f32,
    n_chunks: u32,
    chunk: u32,
    scale_stride: u32,
    neg_inf_bits: u32,
    window: u32,
    _pad1: u32,
    rope_scaling: [f32; 4],
}

super::checks::params_layout_test!(
    Params,
    KERNEL.source,
    [
        batch,
        q_len,
        kv_len,
        n_heads,
        n_kv_heads,
        group,
        q_pos0,
        causal,
        scale_log2,
        kv_batch_stride,
        kv_row_stride,
        has_lens,
        rot,
        log2_theta,
        n_chunks,
        chunk,
        scale_stride,
        neg_inf_bits,
        window,
        rope_scaling
    ]
);

/// Shapes of one attention call, checked.
struct Dims {
    batch: usize,
    q_len: usize,
    n_heads: usize,
    kv_len: usize,
    n_kv_heads: usize,
    d: usize,
}

fn shape_err(op: &'static str, detail: String) -> Error {
    Error::Shape { op, detail }
}

/// [batch, tokens, heads, d] of a 3- or 4-d tensor.
fn bthd(op: &'static str, t: &GpuTensor) -> Result<[usize; 4]> {
    match *t.shape() {
        [s, h, d] => Ok([1, s, h, d]),
        [b, s, h, d] => Ok([b, s, h, d]),
        _ => Err(shape_err(
            op,
            format!(
                "'{}' is {:?}, expected [batch, tokens, heads, head_dim]",
                t.name(),
                t.shape()
            ),
        )),
    }
}

fn check_dims(op: &'static str, q: &GpuTensor, kv: Kv<'_>, out: &GpuTensor) -> Result<Dims> {
    q.expect_dtype(op, &[DType::F32])?;
    out.expect_dtype(op, &[DType::F32])?;
    let [batch, q_len, n_heads, d] = bthd(op, q)?;
    if out.shape() != q.shape() {
        return Err(shape_err(
            op,
            format!(
                "out '{}' is {:?} but q '{}' is {:?}",
                out.name(),
                out.shape(),
                q.name(),
                q.shape()
            ),
        ));
    }
    super::checks::no_alias(op, &[out], &[q])?;
    let (kv_len, n_kv_heads, kd) = match kv {
        Kv::F32 { k, v } => {
            k.expect_dtype(op, &[DType::F32])?;
            v.expect_dtype(op, &[DType::F32])?;
            if k.shape() != v.shape() {
                return Err(shape_err(
                    op,
                    format!(
                        "k '{}' is {:?} but v '{}' is {:?}",
                        k.name(),
                        k.shape(),
                        v.name(),
                        v.shape()
                    ),
                ));
            }
            let [kb, kl, kh, kd] = bthd(op, k)?;
            if kb != batch {
                return Err(shape_err(
                    op,
                    format!("k '{}' has batch {kb}, q '{}' has {batch}", k.name(), q.name()),
                ));
            }
            (kl, kh, kd)
        }
        Kv::Cache(c) => {
            if batch != 1 {
                return Err(shape_err(
                    op,
                    format!("a KV cache holds one sequence; q '{}' has batch {batch}", q.name()),
                ));
            }
            (c.len(), c.n_kv_heads(), c.head_dim())
        }
    };
    if batch * q_len == 0 || (kv_len == 0 && matches!(kv, Kv::F32 { .. })) {
        return Err(shape_err(
            op,
            format!(
                "q '{}' {:?} or the keys ({kv_len} tokens) are empty",
                q.name(),
                q.shape()
            ),
        ));
    }
    if kd != d {
        return Err(shape_err(
            op,
            format!("q '{}' has head_dim {d}, keys have {kd}", q.name()),
        ));
    }
    if d == 0 || !d.is_multiple_of(16) || d > 256 {
        return Err(shape_err(
            op,
            format!("head_dim {d} must be a multiple of 16 up to 256"),
        ));
    }
    if n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
        return Err(shape_err(
            op,
            format!("{n_heads} query heads is not a multiple of {n_kv_heads} KV heads"),
        ));
    }
    to_u32(op, "q elements", q.numel())?;
    to_u32(op, "kv elements", batch * kv_len * n_kv_heads * d)?;
    Ok(Dims {
        batch,
        q_len,
        n_heads,
        kv_len,
        n_kv_heads,
        d,
    })
}

fn base_params(
    op: &'static str,
    dims: &Dims,
    opts: &AttentionOptions<'_>,
    kv: Kv<'_>,
    log2_units: bool,
) -> Result<Params> {
    let scale = opts.scale.unwrap_or(1.0 / (dims.d as f32).sqrt());
    let q_pos0 = opts.q_pos0.unwrap_or(dims.kv_len.saturating_sub(dims.q_len));
    if let Some(l) = opts.kv_lens {
        l.expect_dtype(op, &[DType::F32])?;
        if l.numel() != dims.batch {
            return Err(shape_err(
                op,
                format!(
                    "kv_lens '{}' has {} entries for batch {}",
                    l.name(),
                    l.numel(),
                    dims.batch
                ),
            ));
        }
    }
    let (scale_stride, kv_batch_stride) = match kv {
        Kv::Cache(c) => (c.scale_stride(), 0),
        Kv::F32 { .. } => (0, dims.kv_len * dims.n_kv_heads * dims.d),
    };
    Ok(Params {
        batch: dims.batch as u32,
        q_len: dims.q_len as u32,
        kv_len: dims.kv_len as u32,
        n_heads: dims.n_heads as u32,
        n_kv_heads: dims.n_kv_heads as u32,
        group: (dims.n_heads / dims.n_kv_heads) as u32,
        q_pos0: to_u32(op, "q_pos0", q_pos0)?,
        causal: u32::from(opts.causal),
        scale_log2: if log2_units {
            scale * std::f32::consts::LOG2_E
        } else {
            scale
        },
        kv_batch_stride: to_u32(op, "kv batch stride", kv_batch_stride)?,
        kv_row_stride: (dims.n_kv_heads * dims.d) as u32,
        has_lens: u32::from(opts.kv_lens.is_some()),
        scale_stride,
        neg_inf_bits: f32::NEG_INFINITY.to_bits(),
        window: to_u32(op, "window", opts.window.unwrap_or(0))?,
        ..Params::default()
    })
}

fn kv_dtype(kv: Kv<'_>) -> KvDType {
    match kv {
        Kv::F32 { .. } => KvDType::F32,
        Kv::Cache(c) => c.dtype(),
    }
}

/// (k, v, k scales, v scales) buffers to bind.
fn kv_buffers<'a>(kv: Kv<'a>) -> [&'a GpuTensor; 4] {
    match kv {
        Kv::F32 { k, v } => [k, v, k, v],
        Kv::Cache(c) => {
            let (ks, vs) = c.scale_bindings();
            [c.k(), c.v(), ks, vs]
        }
    }
}

fn consts(gpu: &Gpu, d: usize, dtype: KvDType, tiles: FlashTiles, dec: DecodeTiles) -> [(&'static str, Const); 10] {
    [
        ("D", Const::U32(d as u32)),
        ("KV_DTYPE", Const::U32(dtype.code())),
        ("BR", Const::U32(tiles.br)),
        ("BC", Const::U32(tiles.bc)),
        ("DK", Const::U32(tiles.dk)),
        ("VK", Const::U32(tiles.vk)),
        ("WGD", Const::U32(dec.wg)),
        ("KPT", Const::U32(dec.kpt)),
        ("HG", Const::U32(dec.hg)),
        ("WG", Const::U32(gpu.caps().variants.reduce_workgroup)),
    ]
}

/// Placeholder shapes for the entry points a pipeline does not run (the module still compiles them).
const NO_TILES: FlashTiles = FlashTiles {
    br: 16,
    bc: 16,
    dk: 16,
    vk: 16,
};
const NO_DECODE: DecodeTiles = DecodeTiles { wg: 64, kpt: 1, hg: 1 };

/// Record Flash Attention 2 with the device's tiles.
pub fn flash_prefill(
    gpu: &Gpu,
    batch: &mut Batch,
    q: &GpuTensor,
    kv: Kv<'_>,
    out: &GpuTensor,
    opts: &AttentionOptions<'_>,
) -> Result<()> {
    let [_, _, _, d] = bthd("flash_prefill", q)?;
    let tiles = FlashTiles::choose(gpu.caps(), d as u32)?;
    flash_prefill_with(gpu, batch, q, kv, out, opts, tiles)
}

/// Record Flash Attention 2 with explicit tiles (tests, benchmarks).
pub fn flash_prefill_with(
    gpu: &Gpu,
    batch: &mut Batch,
    q: &GpuTensor,
    kv: Kv<'_>,
    out: &GpuTensor,
    opts: &AttentionOptions<'_>,
    tiles: FlashTiles,
) -> Result<()> {
    const OP: &str = "flash_prefill";
    let dims = check_dims(OP, q, kv, out)?;
    check_tiles(gpu, OP, tiles, dims.d)?;
    let params = base_params(OP, &dims, opts, kv, true)?;
    let c = consts(gpu, dims.d, kv_dtype(kv), tiles, NO_DECODE);
    let pipeline = gpu.pipelines().get(
        gpu.device(),
        &KERNEL,
        "flash_prefill",
        Some(Reduction::SharedMemory),
        &c,
    )?;
    let q_tiles = dims.q_len.div_ceil(tiles.br as usize) as u64;
    let groups = gpu.grid(OP, q_tiles * (dims.n_heads * dims.batch) as u64)?;
    let [k, v, ks, vs] = kv_buffers(kv);
    let lens = opts.kv_lens.unwrap_or(q);
    batch.dispatch(
        gpu,
        &pipeline,
        &params,
        &[
            (1, q.buffer()),
            (2, k.buffer()),
            (3, v.buffer()),
            (4, ks.buffer()),
            (5, vs.buffer()),
            (6, out.buffer()),
            (9, lens.buffer()),
        ],
        groups,
    )
}

fn check_tiles(gpu: &Gpu, op: &'static str, tiles: FlashTiles, d: usize) -> Result<()> {
    let caps = gpu.caps();
    let d = d as u32;
    if !tiles.valid_for(d) {
        return Err(Error::Unsupported {
            kernel: op,
            variant: format!("{tiles:?}"),
            why: format!("not a valid tiling for head_dim {d}"),
        });
    }
    if tiles.invocations() > caps.max_invocations.min(caps.max_workgroup_size_x) {
        return Err(Error::Limit {
            context: format!("{op} tiles {tiles:?}"),
            limit: "maxComputeInvocationsPerWorkgroup",
            needed: u64::from(tiles.invocations()),
            available: u64::from(caps.max_invocations),
        });
    }
    if tiles.storage_bytes(d) > caps.max_workgroup_storage {
        return Err(Error::Limit {
            context: format!("{op} tiles {tiles:?}, head_dim {d}"),
            limit: "maxComputeWorkgroupStorageSize",
            needed: u64::from(tiles.storage_bytes(d)),
            available: u64::from(caps.max_workgroup_storage),
        });
    }
    Ok(())
}

/// Elements of the score buffer the unfused baseline needs: `batch * n_heads * q_len * kv_len`.
pub fn unfused_scores_len(q: &GpuTensor, k: &GpuTensor) -> Result<usize> {
    let [b, s, h, _] = bthd("unfused", q)?;
    let [_, kl, _, _] = bthd("unfused", k)?;
    Ok(b * h * s * kl)
}

/// Record the unfused baseline: scores = scale Q K^T (masked to -inf) into `scores`
/// (f32, at least [`unfused_scores_len`] elements), an in-place row softmax, then out = P V.
#[allow(clippy::too_many_arguments)]
pub fn unfused(
    gpu: &Gpu,
    batch: &mut Batch,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    out: &GpuTensor,
    scores: &GpuTensor,
    opts: &AttentionOptions<'_>,
) -> Result<()> {
    const OP: &str = "unfused_attention";
    let kv = Kv::F32 { k, v };
    let dims = check_dims(OP, q, kv, out)?;
    scores.expect_dtype(OP, &[DType::F32])?;
    let n = dims.batch * dims.n_heads * dims.q_len * dims.kv_len;
    if scores.numel() < n {
        return Err(shape_err(
            OP,
            format!("scores '{}' has {} elements, needs {n}", scores.name(), scores.numel()),
        ));
    }
    to_u32(OP, "score elements", n)?;
    let tiles = FlashTiles::choose(gpu.caps(), dims.d as u32)?;
    let params = base_params(OP, &dims, opts, kv, false)?;
    let c = consts(gpu, dims.d, KvDType::F32, tiles, NO_DECODE);
    let get = |entry, red| gpu.pipelines().get(gpu.device(), &KERNEL, entry, Some(red), &c);
    let lens = opts.kv_lens.unwrap_or(q);
    let q_tiles = dims.q_len.div_ceil(tiles.br as usize) as u64;
    let kv_tiles = dims.kv_len.div_ceil(tiles.bc as usize) as u64;
    let bh = (dims.batch * dims.n_heads) as u64;
    batch.dispatch(
        gpu,
        &get("unfused_scores", Reduction::SharedMemory)?,
        &params,
        &[
            (1, q.buffer()),
            (2, k.buffer()),
            (4, k.buffer()),
            (7, scores.buffer()),
            (9, lens.buffer()),
        ],
        gpu.grid(OP, q_tiles * kv_tiles * bh)?,
    )?;
    batch.dispatch(
        gpu,
        &get("unfused_softmax", gpu.caps().variants.reduction)?,
        &params,
        &[(7, scores.buffer())],
        gpu.grid(OP, bh * dims.q_len as u64)?,
    )?;
    batch.dispatch(
        gpu,
        &get("unfused_pv", Reduction::SharedMemory)?,
        &params,
        &[
            (3, v.buffer()),
            (5, v.buffer()),
            (6, out.buffer()),
            (7, scores.buffer()),
            (9, lens.buffer()),
        ],
        gpu.grid(OP, q_tiles * bh)?,
    )
}

/// Options of decode attention.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeOptions {
    /// Softmax scale; default `1 / sqrt(head_dim)`.
    pub scale: Option<f32>,
    /// Rotate q by RoPE inside the kernel (K was rotated when it was appended).
    pub rope: Option<Rope>,
    /// Position of the query (for RoPE); default `cache.len() - 1` (the token just appended).
    pub q_pos: Option<usize>,
    /// Keys per chunk (at most the workgroup's score buffer, [`DecodeTiles::max_chunk`]);
    /// default: the whole cache in one chunk while it fits there (one dispatch, no merge),
    /// beyond that chunks sized so that long caches fill the GPU, then a merge.
    pub chunk: Option<usize>,
    /// Sliding window: only the last `window` positions up to the query's are attended.
    pub window: Option<usize>,
    /// At single-chunk contexts, record `decode_partial` (as before `decode_single` existed: the
    /// benchmark baseline) instead of `decode_single`.
    pub partial_only: bool,
}

/// Partial results of flash-decoding, sized once for a model (shared by all layers).
#[derive(Debug)]
pub struct DecodeScratch {
    part: GpuTensor,
    n_heads: usize,
    head_dim: usize,
    max_chunks: usize,
}

/// Smallest chunk the automatic choice uses (bounds the scratch size).
const MIN_CHUNK: usize = 64;

impl DecodeScratch {
    /// Scratch for `n_heads` query heads of `head_dim` and caches up to `max_ctx` tokens.
    pub fn new(gpu: &Gpu, n_heads: usize, head_dim: usize, max_ctx: usize) -> Result<Self> {
        let max_chunks = max_ctx.div_ceil(MIN_CHUNK).max(1);
        let part = GpuTensor::zeros(
            gpu,
            "decode partials",
            &[n_heads * max_chunks * (head_dim + 4)],
            DType::F32,
        )?;
        Ok(DecodeScratch {
            part,
            n_heads,
            head_dim,
            max_chunks,
        })
    }
}

/// The chunk of a split over `len` keys for `groups` workgroups per chunk (KV heads × head
/// groups): about 256 workgroups in flight, so long caches use the whole GPU, short ones few
/// chunks; at most the workgroup's score buffer (`max_chunk`).
fn split_chunk(len: usize, groups: usize, max_chunk: usize) -> usize {
    let want = (len * groups).div_ceil(256);
    want.next_multiple_of(MIN_CHUNK).clamp(MIN_CHUNK, max_chunk)
}

/// The chunk the split rule picks for `q_heads` query heads of `head_dim` over `cache` (the
/// default for every length before the one-chunk rule; benchmark baselines pass it as
/// [`DecodeOptions::chunk`]).
pub fn split_chunk_for(gpu: &Gpu, q_heads: usize, cache: &KvCache) -> Result<usize> {
    let n_kv = cache.n_kv_heads().max(1);
    let group = (q_heads / n_kv).max(1) as u32;
    let tiles = DecodeTiles::choose(gpu.caps(), group, cache.head_dim() as u32)?;
    let n_hg = group.div_ceil(tiles.hg) as usize;
    Ok(split_chunk(cache.len().max(1), n_kv * n_hg, tiles.max_chunk() as usize))
}

/// Record decode attention for one new query per head (`[n_heads, head_dim]`, `[1, n_heads,
/// head_dim]` or `[1, 1, n_heads, head_dim]`) against every token in `cache`.
pub fn decode(
    gpu: &Gpu,
    batch: &mut Batch,
    q: &GpuTensor,
    cache: &KvCache,
    out: &GpuTensor,
    scratch: &DecodeScratch,
    opts: &DecodeOptions,
) -> Result<()> {
    const OP: &str = "decode_attention";
    q.expect_dtype(OP, &[DType::F32])?;
    out.expect_dtype(OP, &[DType::F32])?;
    let (n_heads, d) = match *q.shape() {
        [h, d] | [1, h, d] | [1, 1, h, d] => (h, d),
        _ => {
            return Err(shape_err(
                OP,
                format!(
                    "q '{}' is {:?}, expected one token: [n_heads, head_dim]",
                    q.name(),
                    q.shape()
                ),
            ))
        }
    };
    if out.shape() != q.shape() {
        return Err(shape_err(
            OP,
            format!(
                "out '{}' {:?} must be shaped like q {:?}",
                out.name(),
                out.shape(),
                q.shape()
            ),
        ));
    }
    super::checks::no_alias(OP, &[out], &[q])?;
    let n_kv = cache.n_kv_heads();
    if d != cache.head_dim() || !n_heads.is_multiple_of(n_kv) {
        return Err(shape_err(
            OP,
            format!(
                "q '{}' has {n_heads} heads of {d}; cache '{}' has {n_kv} heads of {}",
                q.name(),
                cache.name(),
                cache.head_dim()
            ),
        ));
    }
    if scratch.n_heads < n_heads || scratch.head_dim != d {
        return Err(shape_err(
            OP,
            format!(
                "decode scratch is for {} heads of {}, got {n_heads} of {d}",
                scratch.n_heads, scratch.head_dim
            ),
        ));
    }
    let len = cache.len();
    if len == 0 {
        return Err(shape_err(
            OP,
            format!("cache '{}' is empty: append the token's K and V first", cache.name()),
        ));
    }
    let group = (n_heads / n_kv) as u32;
    let mut tiles = DecodeTiles::choose(gpu.caps(), group, d as u32)?;
    let single = opts.chunk.is_none() && len <= tiles.max_chunk() as usize;
    let single_kernel = if single && !opts.partial_only {
        DecodeTiles::single_kernel(gpu.caps(), len, d as u32)
    } else {
        None
    };
    if let Some(t) = single_kernel {
        tiles = t;
    } else if single {
        tiles = tiles.single_chunk(gpu.caps(), len, d as u32);
    }
    let n_hg = group.div_ceil(tiles.hg) as usize;
    let max_chunk = tiles.max_chunk() as usize;
    let chunk = match opts.chunk {
        Some(c) if c == 0 || c > max_chunk => {
            return Err(shape_err(
                OP,
                format!("chunk {c} must be in 1..={max_chunk} on this device"),
            ));
        }
        Some(c) => c,
        None if single => len,
        None => split_chunk(len, n_kv * n_hg, max_chunk),
    };
    let n_chunks = len.div_ceil(chunk);
    if n_chunks > scratch.max_chunks {
        return Err(shape_err(
            OP,
            format!(
                "{n_chunks} chunks of {chunk} exceed the scratch's {} (made for a shorter context)",
                scratch.max_chunks
            ),
        ));
    }
    let (rot, log2_theta, rope_scaling) = match opts.rope {
        Some(r) => r.fused(OP, d)?,
        None => (0, 0.0, RopeScaling::None.wgsl()),
    };
    let scale = opts.scale.unwrap_or(1.0 / (d as f32).sqrt());
    let params = Params {
        batch: 1,
        q_len: 1,
        kv_len: to_u32(OP, "cache length", len)?,
        n_heads: n_heads as u32,
        n_kv_heads: n_kv as u32,
        group,
        q_pos0: to_u32(OP, "q position", opts.q_pos.unwrap_or(len - 1))?,
        causal: 0,
        scale_log2: scale * std::f32::consts::LOG2_E,
        kv_batch_stride: 0,
        kv_row_stride: (n_kv * d) as u32,
        has_lens: 0,
        rot,
        log2_theta,
        n_chunks: n_chunks as u32,
        chunk: chunk as u32,
        scale_stride: cache.scale_stride(),
        neg_inf_bits: f32::NEG_INFINITY.to_bits(),
        window: to_u32(OP, "window", opts.window.unwrap_or(0))?,
        _pad1: 0,
        rope_scaling,
    };
    let c = consts(gpu, d, cache.dtype(), NO_TILES, tiles);
    let get = |entry| {
        gpu.pipelines()
            .get(gpu.device(), &KERNEL, entry, Some(Reduction::SharedMemory), &c)
    };
    let (ks, vs) = cache.scale_bindings();
    if single_kernel.is_some() {
        return batch.dispatch(
            gpu,
            &get("decode_single")?,
            &params,
            &[
                (1, q.buffer()),
                (2, cache.k().buffer()),
                (3, cache.v().buffer()),
                (4, ks.buffer()),
                (5, vs.buffer()),
                (6, out.buffer()),
            ],
            gpu.grid(OP, n_heads as u64)?,
        );
    }
    batch.dispatch(
        gpu,
        &get("decode_partial")?,
        &params,
        &[
            (1, q.buffer()),
            (2, cache.k().buffer()),
            (3, cache.v().buffer()),
            (4, ks.buffer()),
            (5, vs.buffer()),
            (6, out.buffer()),
            (8, scratch.part.buffer()),
        ],
        gpu.grid(OP, (n_chunks * n_kv * n_hg) as u64)?,
    )?;
    if n_chunks > 1 {
        batch.dispatch(
            gpu,
            &get("decode_merge")?,
            &params,
            &[(6, out.buffer()), (8, scratch.part.buffer())],
            gpu.grid(OP, n_heads as u64)?,
        )?;
    }
    Ok(())
}
