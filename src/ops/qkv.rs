//! The fused decode QKV projection (`gemv_qkv` in `shaders/gemv.wgsl` and `shaders/quant.wgsl`,
//! epilogue in `shaders/common/qkv_epilogue.wgsl`): for one token,
//! `[q; k; v] = W_qkv · rmsnorm(x) + b`, optionally a per-head RMSNorm of q and k (Qwen3's
//! `q_norm` / `k_norm`), RoPE on q and k at the token's position (with the model's frequency
//! scaling: plain, linear, Llama 3), q written out,
//! k and v appended to the KV cache in its storage format: one dispatch instead of norm, three
//! projections and the append.
//!
//! The weight is q, k and v's rows concatenated at load ([`QkvWeight::new`]). A head is split
//! over `split` workgroups ([`default_split`]), each owning `head_dim / (2 split)` RoPE pairs
//! (rows e and e + head_dim / 2), so the rotation and the f16 pairs of the append stay inside a
//! workgroup: `split · (n_heads + 2 n_kv_heads)` workgroups. An int8 cache needs the head's absmax,
//! the per-head q / k norm the head's sum of squares, and a partially rotated head pairs other
//! elements: those keep one workgroup per head. The norm weight, the bias and the q / k norm
//! weights travel in one f32 buffer (`[norm (K) | bias (N) | q_norm (hd) | k_norm (hd)]`, the
//! optional parts absent) to stay within 8 storage bindings for dense weights (quantised: 9,
//! the second view of the block buffer; devices offering fewer fall back, see
//! [`QkvWeight::supported`]).

use super::checks::to_u32;
use super::gemv;
use super::kv_cache::{KvCache, KvDType};
use super::linear::{chunk_elems, dtype_consts, Epilogue};
use super::project::Linear;
use super::quant::{self, QuantWeight, Variant as QVariant};
use super::rope::{Rope, RopeScaling};
use crate::error::{Error, Result};
use crate::gpu::{Batch, Const, DType, Gpu, GpuTensor};

/// Concatenated q / k / v weights with their norm weight, biases and per-head q / k norm
/// weights, for [`record`].
#[derive(Debug, Clone)]
pub struct QkvWeight {
    w: Linear,
    aux: GpuTensor,
    has_bias: bool,
    qk_norm: bool,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl QkvWeight {
    /// Join `wq` `[n_heads·hd, K]`, `wk`, `wv` `[n_kv_heads·hd, K]` (GPU copies recorded into
    /// `batch`) with the attention norm weight `[K]`, the optional biases and the optional
    /// per-head RMSNorm weights of q and k (`qk_norm`: `[head_dim]` each, applied before RoPE
    /// with the eps of [`record`]; all f32). `None` when the weights cannot be joined (mixed
    /// types) or the device lacks the bindings.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        batch: &mut Batch,
        name: &str,
        (wq, wk, wv): (&Linear, &Linear, &Linear),
        norm: &GpuTensor,
        bias: Option<(&GpuTensor, &GpuTensor, &GpuTensor)>,
        qk_norm: Option<(&GpuTensor, &GpuTensor)>,
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
    ) -> Result<Option<QkvWeight>> {
        const OP: &str = "QkvWeight::new";
        let k = wq.cols();
        if wq.rows() != n_heads * head_dim || wk.rows() != n_kv_heads * head_dim || wv.rows() != n_kv_heads * head_dim {
            return Err(Error::Shape {
                op: OP,
                detail: format!(
                    "q/k/v have {}/{}/{} rows; {n_heads} and {n_kv_heads} heads of {head_dim} need {}/{}/{}",
                    wq.rows(),
                    wk.rows(),
                    wv.rows(),
                    n_heads * head_dim,
                    n_kv_heads * head_dim,
                    n_kv_heads * head_dim
                ),
            });
        }
        if !Self::supported(gpu, wq.is_quant()) || !head_dim.is_multiple_of(16) {
            return Ok(None);
        }
        let Some(w) = Linear::concat_rows(gpu, batch, name, &[wq, wk, wv])? else {
            return Ok(None);
        };
        norm.expect_dtype(OP, &[DType::F32])?;
        if norm.numel() != k {
            return Err(Error::Shape {
                op: OP,
                detail: format!("norm weight '{}' has {} elements, K = {k}", norm.name(), norm.numel()),
            });
        }
        let n = w.rows();
        let aux_len = k + if bias.is_some() { n } else { 0 } + if qk_norm.is_some() { 2 * head_dim } else { 0 };
        let aux = GpuTensor::zeros(gpu, &format!("{name}.norm_bias"), &[aux_len], DType::F32)?;
        batch.copy(norm.buffer(), 0, aux.buffer(), 0, (k * 4) as u64);
        let mut at = (k * 4) as u64;
        if let Some((bq, bk, bv)) = bias {
            for (b, len) in [(bq, wq.rows()), (bk, wk.rows()), (bv, wv.rows())] {
                b.expect_dtype(OP, &[DType::F32])?;
                if b.numel() != len {
                    return Err(Error::Shape {
                        op: OP,
                        detail: format!("bias '{}' has {} elements, expected {len}", b.name(), b.numel()),
                    });
                }
                batch.copy(b.buffer(), 0, aux.buffer(), at, (len * 4) as u64);
                at += (len * 4) as u64;
            }
        }
        if let Some((qn, kn)) = qk_norm {
            for t in [qn, kn] {
                t.expect_dtype(OP, &[DType::F32])?;
                if t.numel() != head_dim {
                    return Err(Error::Shape {
                        op: OP,
                        detail: format!(
                            "q/k norm weight '{}' has {} elements, head_dim = {head_dim}",
                            t.name(),
                            t.numel()
                        ),
                    });
                }
                batch.copy(t.buffer(), 0, aux.buffer(), at, (head_dim * 4) as u64);
                at += (head_dim * 4) as u64;
            }
        }
        Ok(Some(QkvWeight {
            w,
            aux,
            has_bias: bias.is_some(),
            qk_norm: qk_norm.is_some(),
            n_heads,
            n_kv_heads,
            head_dim,
        }))
    }

    /// Whether the device offers the storage bindings of the fused kernel (8 dense, 9 quantised).
    pub fn supported(gpu: &Gpu, quant: bool) -> bool {
        gpu.caps().max_storage_buffers_per_stage >= if quant { 9 } else { 8 }
    }

    /// The joined weight `[(n_heads + 2 n_kv_heads)·hd, K]`.
    pub fn weight(&self) -> &Linear {
        &self.w
    }

    /// q, k and v as separate weights (row views of the joined one when quantised; `None` for
    /// dense, whose parts the caller keeps).
    pub fn quant_parts(&self) -> Result<Option<(QuantWeight, QuantWeight, QuantWeight)>> {
        let Linear::Quant(q) = &self.w else { return Ok(None) };
        let (nq, nkv) = (self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim);
        Ok(Some((
            q.rows_view(0, nq)?,
            q.rows_view(nq, nkv)?,
            q.rows_view(nq + nkv, nkv)?,
        )))
    }
}

/// Workgroups per head the fused QKV uses by default: `head_dim / 8` (4 RoPE pairs, 8 rows a
/// workgroup; 8 for SmolLM2's and Qwen2.5's head_dim 64: 120 / 144 workgroups instead of 15 /
/// 18), where the cache format and the rotation allow a split (see [`effective_split`]).
pub fn default_split(head_dim: usize) -> u32 {
    (head_dim / 8).max(1) as u32
}

/// The split `want` (workgroups per head) as recorded: a power of two with at least 2 rows and
/// an even number of RoPE pairs per workgroup (f16 pairs), and 1 for int8 caches (the absmax is
/// the head's), for the per-head q / k norm (`qk_norm`: the sum of squares is the head's) and for
/// heads rotated only partly (`rot` ∉ {0, head_dim}).
pub fn effective_split(want: u32, head_dim: usize, kv: KvDType, rot: u32, qk_norm: bool) -> u32 {
    let hd = head_dim as u32;
    if kv == KvDType::Int8 || qk_norm || (rot != 0 && rot != hd) || want <= 1 {
        return 1;
    }
    let mut s = want.next_power_of_two().min(hd / 4);
    // Pairs per workgroup hd / (2 s) even, and s dividing hd / 2.
    while s > 1 && !((hd / 2).is_multiple_of(s) && (hd / (2 * s)).is_multiple_of(2)) {
        s /= 2;
    }
    s.max(1)
}

/// Record the fused QKV of one token x `[1, K]` (f32): q `[n_heads, hd]` (f32) into `q_out`,
/// K and V appended to `cache` at its next row (advancing its length), RoPE by `rope` at that
/// position on q and K (after their per-head norm when the weight has one). `eps` is the
/// RMSNorm epsilon of the prologue and of the per-head norm.
#[allow(clippy::too_many_arguments)]
pub fn record(
    gpu: &Gpu,
    batch: &mut Batch,
    x: &GpuTensor,
    w: &QkvWeight,
    eps: f32,
    q_out: &GpuTensor,
    cache: &mut KvCache,
    rope: Option<Rope>,
) -> Result<()> {
    record_tuned(gpu, batch, x, w, eps, q_out, cache, rope, None, None)
}

/// [`record`] with `split` workgroups per head (`None`: [`default_split`]; reduced to what the
/// cache and the rotation allow, [`effective_split`]). Splits with the same workgroup size
/// (up to head_dim / 8) give bit-identical results (a row's sum does not depend on the split);
/// a narrower workgroup sums 1 / rms in another order (last-bit differences).
/// At most `lanes` lanes per row group of the dense kernel (`None`: 32; a power of two in
/// 1..=32). Fewer lanes mean more row groups and fewer rows per group (the
/// per-invocation row arrays shrink): the benchmark times them side by side. Other lane counts
/// sum each row in another order (last-bit differences).
#[allow(clippy::too_many_arguments)]
pub fn record_tuned(
    gpu: &Gpu,
    batch: &mut Batch,
    x: &GpuTensor,
    w: &QkvWeight,
    eps: f32,
    q_out: &GpuTensor,
    cache: &mut KvCache,
    rope: Option<Rope>,
    split: Option<u32>,
    lanes: Option<u32>,
) -> Result<()> {
    const NAME: &str = "qkv";
    x.expect_dtype(NAME, &[DType::F32])?;
    q_out.expect_dtype(NAME, &[DType::F32])?;
    let (k, hd) = (w.w.cols(), w.head_dim);
    if x.numel() != k || q_out.numel() != w.n_heads * hd {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "x '{}' {:?} must be one row of {k}; q '{}' {:?} must hold {} heads of {hd}",
                x.name(),
                x.shape(),
                q_out.name(),
                q_out.shape(),
                w.n_heads
            ),
        });
    }
    if cache.n_kv_heads() != w.n_kv_heads || cache.head_dim() != hd {
        return Err(Error::Shape {
            op: NAME,
            detail: format!(
                "cache '{}' has {} heads of {}, the weight {} of {hd}",
                cache.name(),
                cache.n_kv_heads(),
                cache.head_dim(),
                w.n_kv_heads
            ),
        });
    }
    super::checks::no_alias(NAME, &[q_out], &[x])?;
    // The epilogue turns q and k with the model's scaled frequencies (plain, linear, Llama 3:
    // `rope_inv_freq` of shaders/common/rope.wgsl, as every other RoPE path).
    let (rot, log2_theta, rope_scaling) = match rope {
        Some(r) => r.fused(NAME, hd)?,
        None => (0, 0.0, RopeScaling::None.wgsl()),
    };
    let caps = gpu.caps();
    // CPU adapters: one workgroup per head (a barrier costs per invocation there, so fewer,
    // fuller workgroups; the arithmetic is the same).
    let want = split.unwrap_or_else(|| if caps.variants.cpu { 1 } else { default_split(hd) });
    let mut split = effective_split(want, hd, cache.dtype(), rot, w.qk_norm);
    let dense = match &w.w {
        Linear::Dense(_) => {
            // Lanes per row group: 32, or on CPU adapters (workgroups of ≤ 64) as many as let a
            // whole head fit one round, the same for every split (so every split gives the
            // same bits).
            let wg = caps.variants.reduce_workgroup;
            let storage = caps.max_workgroup_storage;
            let max_lanes = if caps.variants.cpu {
                let mut l = 32;
                while l > 1 && dense_shape_strict(wg, storage, hd as u32, 1, l).is_none() {
                    l /= 2;
                }
                l
            } else {
                lanes.map_or(32, |l| l.clamp(1, 32).next_power_of_two())
            };
            let shape = |s: u32| dense_shape(wg, storage, hd as u32 / s, s, max_lanes);
            if shape(split).is_none() {
                split = 1;
            }
            Some(shape(split).ok_or_else(|| Error::Unsupported {
                kernel: NAME,
                variant: format!("head_dim {hd}"),
                why: "no workgroup shape covers a head in one round".into(),
            })?)
        }
        Linear::Quant(_) => None,
    };
    let rows = hd as u32 / split;
    let pos = cache.claim(1)?;
    let heads = (w.n_heads + 2 * w.n_kv_heads) * split as usize;
    let n = to_u32(NAME, "rows", w.w.rows())?;
    let kk = to_u32(NAME, "K", k)?;
    let pos = to_u32(NAME, "position", pos)?;
    let kv = cache.dtype().code();
    let groups = gpu.grid(NAME, heads as u64)?;
    let (ks, vs) = cache.scale_bindings();
    let tail = [
        (10, q_out.buffer()),
        (11, cache.k().buffer()),
        (12, cache.v().buffer()),
        (13, ks.buffer()),
        (14, vs.buffer()),
    ];
    match &w.w {
        Linear::Dense(wt) => {
            let reduction = caps.variants.reduction;
            let (workgroup, lanes, group_rows) =
                dense.ok_or_else(|| Error::Internal("qkv: dense shape missing".into()))?;
            let epi = Epilogue {
                bias: None,
                ..Default::default()
            }
            .bind(NAME, q_out, w.n_heads * hd)?;
            let mut consts: Vec<(&'static str, Const)> = dtype_consts(wt.dtype()).to_vec();
            consts.extend_from_slice(&epi.consts);
            consts[3] = ("HAS_BIAS", Const::Bool(w.has_bias));
            consts.extend_from_slice(&gemv::module_consts(gpu, true, hd as u32, kv, lanes, split, w.qk_norm));
            consts.extend_from_slice(&[
                ("WG", Const::U32(workgroup)),
                ("ROWS", Const::U32(group_rows)),
                ("ALIGNED", Const::Bool(k % chunk_elems(wt.dtype()) == 0)),
            ]);
            let pipeline = gpu
                .pipelines()
                .get(gpu.device(), &gemv::KERNEL, "gemv_qkv", Some(reduction), &consts)?;
            let params = gemv::Params {
                n,
                k: kk,
                eps,
                n_heads: w.n_heads as u32,
                n_kv_heads: w.n_kv_heads as u32,
                pos,
                rot,
                log2_theta,
                scale_stride: cache.scale_stride(),
                rope_scaling,
                ..Default::default()
            };
            let mut buffers = vec![(1, wt.buffer()), (3, x.buffer()), (8, w.aux.buffer())];
            buffers.extend_from_slice(&tail);
            batch.dispatch(gpu, &pipeline, &params, &buffers, groups)
        }
        Linear::Quant(q) => {
            // Row groups of `lanes` lanes (one unit of 32 weights each per row and step), each
            // group `rows` rows of the head at once: one round of one barrier per head (HD ≤ 64 ·
            // rows per group … see quant_shape).
            let units = (k / 32).max(1) as u32;
            let (wg, lanes, group_rows) = quant_shape(caps.variants.reduce_workgroup, units, rows);
            let variant = QVariant::GemvFast {
                workgroup: wg,
                lanes,
                rows: group_rows,
                step: 1,
                reduction: caps.variants.reduction,
            };
            let reduction = quant::check_fast(gpu, variant)?;
            let mut consts = quant::fast_consts(q.qtype(), variant).to_vec();
            consts.extend_from_slice(&quant::fused_consts(
                true,
                w.has_bias,
                0,
                0,
                0,
                hd as u32,
                kv,
                split,
                w.qk_norm,
                gpu.caps().variants.inline_norm,
            ));
            let pipeline =
                gpu.pipelines()
                    .get(gpu.device(), &quant::QUANT_KERNEL, "gemv_qkv", Some(reduction), &consts)?;
            let params = quant::Params {
                m: 1,
                n,
                k: kk,
                units: kk / 32,
                groups_n: 1,
                eps,
                row0: to_u32(NAME, "row offset", q.row_offset())?,
                n_heads: w.n_heads as u32,
                n_kv_heads: w.n_kv_heads as u32,
                pos,
                rot,
                log2_theta,
                scale_stride: cache.scale_stride(),
                rope_scaling,
                ..Default::default()
            };
            let mut buffers = vec![
                (1, q.tensor().buffer()),
                (2, q.tensor().buffer()),
                (3, x.buffer()),
                (5, w.aux.buffer()),
            ];
            buffers.extend_from_slice(&tail);
            batch.dispatch(gpu, &pipeline, &params, &buffers, groups)
        }
    }
}

/// The dense `gemv_qkv` shape for `r` rows a workgroup, `split` workgroups a head (workgroup,
/// lanes per row group, rows per group): up to 256 invocations in groups of up to 32 lanes (a
/// 576-long bf16 row is 72 chunks: 2–3 steps per lane, each with the group's rows' loads in
/// flight), no more groups than rows, the groups covering the rows once; the partials (`lanes ×
/// (r + 1)` f32), the rows and the reduction slots must fit the workgroup storage. A split
/// head's group rows are a power of two dividing `r / 2` (a group's rows never straddle the two
/// halves). `None` when no shape covers the rows in one round.
fn dense_shape(max_wg: u32, storage: u32, r: u32, split: u32, max_lanes: u32) -> Option<(u32, u32, u32)> {
    if let Some(shape) = dense_shape_strict(max_wg, storage, r, split, max_lanes) {
        return Some(shape);
    }
    if split > 1 {
        // A split without a shape falls back to one workgroup a head (record_tuned).
        return None;
    }
    // One workgroup a head must always have a shape: with more storage, 32 lanes can fit where
    // their 256 / 32 groups of at most 16 rows cannot cover a 256-row head (Gemma 3 on NVIDIA's
    // 48 KiB), so fewer lanes are tried until the groups cover the head.
    let mut lanes = max_lanes.clamp(1, 32).min(max_wg.clamp(1, 256));
    while lanes > 1 {
        lanes /= 2;
        if let Some(shape) = dense_shape_with(max_wg, storage, r, split, lanes) {
            return Some(shape);
        }
    }
    None
}

/// [`dense_shape`] with the most lanes (up to `max_lanes`) whose partials fit the storage, and
/// no other lane count: the CPU adapters' lane choice, which keeps every split's sums in the same
/// order.
fn dense_shape_strict(max_wg: u32, storage: u32, r: u32, split: u32, max_lanes: u32) -> Option<(u32, u32, u32)> {
    let wg = max_wg.clamp(1, 256);
    let mut lanes = max_lanes.clamp(1, 32).min(wg);
    while lanes > 1 && lanes * (r + 1) * 4 + r * 4 + wg * 20 > storage {
        lanes /= 2;
    }
    dense_shape_with(max_wg, storage, r, split, lanes)
}

/// [`dense_shape`] with exactly `lanes` lanes a group.
fn dense_shape_with(max_wg: u32, storage: u32, r: u32, split: u32, lanes: u32) -> Option<(u32, u32, u32)> {
    let mut wg = max_wg.clamp(1, 256);
    if lanes * (r + 1) * 4 + r * 4 + wg * 20 > storage {
        return None;
    }
    while wg > lanes && wg / lanes > r {
        wg /= 2;
    }
    let groups = wg / lanes;
    let mut rows = r.div_ceil(groups).clamp(1, 16);
    if split > 1 {
        rows = 1 << rows.ilog2();
        while rows > 1 && !(r / 2).is_multiple_of(rows) {
            rows /= 2;
        }
    }
    (groups * rows >= r).then_some((wg, lanes, rows))
}

/// The quantised `gemv_qkv` shape for `r` rows a workgroup (workgroup, lanes, rows per group):
/// up to 256 invocations (or the device's reduction maximum; fewer when there are fewer rows
/// than groups), lanes a power of two ≤ 16 and ≤ the row's units, the groups' rows covering up
/// to 64 rows per round.
fn quant_shape(max_wg: u32, units: u32, r: u32) -> (u32, u32, u32) {
    let mut wg = max_wg.clamp(1, 256);
    let lanes = units.next_power_of_two().clamp(1, 16).min(wg);
    while wg > lanes && wg / lanes > r {
        wg /= 2;
    }
    let groups = wg / lanes;
    (wg, lanes, r.min(64).div_ceil(groups).clamp(1, 16))
}

#[cfg(test)]
mod shape_tests {
    use super::dense_shape;

    #[test]
    fn a_dense_shape_covers_every_head_on_every_storage_size() {
        // 16 KiB is WebGPU's default, 32 KiB lavapipe / SwiftShader, 48 KiB NVIDIA through
        // Vulkan (where Gemma 3's 256-row head found no shape: 32 lanes fitted the storage, and
        // their 8 groups of at most 16 rows covered 128 rows).
        for storage in [16_384u32, 32_768, 49_152, 65_536] {
            for wg in [64u32, 128, 256] {
                for hd in [64u32, 80, 96, 128, 256] {
                    for split in [1u32, 2, 4, 8] {
                        let r = hd / split;
                        if split > 1 && r < 4 {
                            continue;
                        }
                        // A split without a shape falls back to one workgroup a head
                        // (record_tuned), which must always have one.
                        let Some((w, lanes, rows)) = dense_shape(wg, storage, r, split, 32) else {
                            assert!(split > 1, "no shape: storage {storage}, workgroup {wg}, head_dim {hd}");
                            continue;
                        };
                        assert!(w <= wg && (w / lanes) * rows >= r, "{w} {lanes} {rows} for {r} rows");
                        assert!(lanes * (r + 1) * 4 + r * 4 + w * 20 <= storage);
                    }
                }
            }
        }
    }
}
