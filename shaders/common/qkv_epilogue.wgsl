// Epilogue of the fused decode QKV projection (appended to gemv.wgsl and quant.wgsl, after
// common/attention_rope.wgsl): the workgroup has computed QKV_R values (bias added) of one head of the
// concatenated [q heads | k heads | v heads] rows into `head_buf` — the whole head (QKV_SPLIT =
// 1), or part `part` of QKV_SPLIT: QKV_P RoPE pairs, local rows r < QKV_P being head elements
// part·QKV_P + r and rows QKV_P + r their partners half a head on (qkv_elem; the host splits
// only heads rotated whole or not at all, only f32 / f16 caches, and keeps QKV_P even so f16
// pairs stay in the workgroup); it
//   - QK_NORM (Qwen3): RMSNorm of each q and k head over its HD values before RoPE,
//     v * w[e] / sqrt(Σ v² / HD + eps) with the q_norm / k_norm weights [HD] stored in nw after
//     the attention norm weight [K] and the bias [N] (the host keeps QKV_SPLIT = 1: the sum
//     is the whole head's),
//   - rotates q and k heads by RoPE at position p.pos with the model's frequency scaling
//     (p.rope_scaling: plain, linear or Llama 3; rope_apply / rope_inv_freq of common/rope.wgsl,
//     so q and K are bit-identical to the rotation of the unfused path),
//   - writes a q head to q_out [n_heads, HD],
//   - appends a k / v head to the KV cache row p.pos in its storage format exactly as
//     kv_cache.wgsl does (f32; f16 pairs; int8 codes with the f16 absmax of the (token, head)).
// Int8: two heads share one u32 word of f16 scales and different workgroups own them, so the
// half is replaced with a compare-exchange loop (no stale half survives a truncated cache).
//
// Needs from the including kernel: Params fields n_heads, n_kv_heads, pos, rot, log2_theta,
// rope_scaling (vec4, RopeScaling::wgsl()), scale_stride, k, n, eps; constants WG, HD, KV_DTYPE,
// QKV_SPLIT, QK_NORM, NORM, HAS_BIAS; the f32 buffer nw; Lane, wg_sum and wg_max.

@group(0) @binding(10) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(11) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(12) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(13) var<storage, read_write> k_scales: array<atomic<u32>>;
@group(0) @binding(14) var<storage, read_write> v_scales: array<atomic<u32>>;

const QKV_R: u32 = HD / QKV_SPLIT; // rows of a workgroup
const QKV_P: u32 = QKV_R / 2u; // RoPE pairs of a workgroup (QKV_SPLIT > 1)
const QKV_EPT: u32 = (QKV_R + WG - 1u) / WG;

var<workgroup> head_buf: array<f32, QKV_R>;

// Head element of local row r of part `part`.
fn qkv_elem(part: u32, r: u32) -> u32 {
    if (QKV_SPLIT == 1u) {
        return r;
    }
    return select(HD / 2u + part * QKV_P + (r - QKV_P), part * QKV_P + r, r < QKV_P);
}

// Local row of the RoPE partner of local row r (rot is 0 or HD when QKV_SPLIT > 1).
fn qkv_partner(r: u32, rot: u32) -> u32 {
    if (QKV_SPLIT == 1u) {
        return rope_partner(r, rot);
    }
    if (rot == 0u) {
        return r;
    }
    return select(r - QKV_P, r + QKV_P, r < QKV_P);
}

fn qkv_store(is_k: bool, i: u32, w: u32) {
    if (is_k) {
        k_cache[i] = w;
    } else {
        v_cache[i] = w;
    }
}

// Replace the f16 half `high` of scale word `wi` by `bits` (low 16 bits).
fn qkv_store_scale(is_k: bool, wi: u32, high: bool, bits: u32) {
    loop {
        var old: u32;
        if (is_k) {
            old = atomicLoad(&k_scales[wi]);
        } else {
            old = atomicLoad(&v_scales[wi]);
        }
        let nv = select((old & 0xffff0000u) | bits, (old & 0xffffu) | (bits << 16u), high);
        var done: bool;
        if (is_k) {
            done = atomicCompareExchangeWeak(&k_scales[wi], old, nv).exchanged;
        } else {
            done = atomicCompareExchangeWeak(&v_scales[wi], old, nv).exchanged;
        }
        if (done) {
            break;
        }
    }
}

// Call from uniform control flow with head index hidx and part (uniform: from the workgroup id).
fn qkv_epilogue(hidx: u32, part: u32, lane: Lane) {
    workgroupBarrier(); // head_buf complete
    let is_q = hidx < p.n_heads;
    let is_k = !is_q && hidx < p.n_heads + p.n_kv_heads;
    let rot = select(0u, p.rot, is_q || is_k);
    if (QK_NORM) {
        // Every head takes part in the sum (wg_sum's barriers need uniform control flow); only
        // q and k heads are scaled. QKV_SPLIT = 1: head_buf holds element e at row e.
        var ss = 0.0;
        for (var e = lane.index; e < QKV_R; e = e + WG) {
            let v = head_buf[e];
            ss = ss + v * v;
        }
        let inv = inverseSqrt(wg_sum(ss, lane) / f32(HD) + p.eps);
        if (is_q || is_k) {
            let off = select(0u, p.k, NORM) + select(0u, p.n, HAS_BIAS) + select(HD, 0u, is_q);
            for (var e = lane.index; e < QKV_R; e = e + WG) {
                let i = off + e;
                head_buf[e] = head_buf[e] * inv * nw[i >> 2u][i & 3u];
            }
        }
        workgroupBarrier(); // the normalised head complete before RoPE reads partners
    }
    var vals: array<f32, QKV_EPT>;
    var amax = 0.0;
    for (var c = 0u; c < QKV_EPT; c = c + 1u) {
        let e = lane.index + c * WG;
        if (e < QKV_R) {
            let v = rope_apply(qkv_elem(part, e), head_buf[e], head_buf[qkv_partner(e, rot)], p.pos, rot, p.log2_theta, p.rope_scaling);
            vals[c] = v;
            amax = max(amax, abs(v));
        }
    }
    if (is_q) {
        for (var c = 0u; c < QKV_EPT; c = c + 1u) {
            let e = lane.index + c * WG;
            if (e < QKV_R) {
                q_out[hidx * HD + qkv_elem(part, e)] = vals[c];
            }
        }
        return;
    }
    workgroupBarrier(); // every partner read before head_buf is overwritten
    for (var c = 0u; c < QKV_EPT; c = c + 1u) {
        let e = lane.index + c * WG;
        if (e < QKV_R) {
            head_buf[e] = vals[c];
        }
    }
    let h = select(hidx - p.n_heads - p.n_kv_heads, hidx - p.n_heads, is_k);
    let base = (p.pos * p.n_kv_heads + h) * HD;
    if (KV_DTYPE == KV_I8) {
        // QKV_SPLIT = 1 here (the absmax is the whole head's). wg_max's barriers also publish
        // head_buf.
        let absmax = wg_max(amax, lane);
        let bits = pack2x16float(vec2<f32>(absmax, 0.0)) & 0xffffu;
        let stored = unpack2x16float(bits).x;
        let inv = select(0.0, 127.0 / stored, stored > 0.0);
        for (var w = lane.index; w < QKV_R / 4u; w = w + WG) {
            let q = clamp(round(vec4<f32>(head_buf[4u * w], head_buf[4u * w + 1u], head_buf[4u * w + 2u], head_buf[4u * w + 3u]) * inv),
                          vec4<f32>(-127.0), vec4<f32>(127.0));
            let b = vec4<u32>(bitcast<vec4<u32>>(vec4<i32>(q)) & vec4<u32>(0xffu));
            qkv_store(is_k, base / 4u + w, b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u));
        }
        if (lane.index == 0u) {
            qkv_store_scale(is_k, (p.pos * p.scale_stride + h) / 2u, (h & 1u) == 1u, bits);
        }
    } else {
        workgroupBarrier();
        if (KV_DTYPE == KV_F16) {
            // Local rows 2w, 2w + 1 are head elements e, e + 1 with e even (QKV_P is even).
            for (var w = lane.index; w < QKV_R / 2u; w = w + WG) {
                qkv_store(is_k, (base + qkv_elem(part, 2u * w)) / 2u, pack2x16float(vec2<f32>(head_buf[2u * w], head_buf[2u * w + 1u])));
            }
        } else {
            for (var e = lane.index; e < QKV_R; e = e + WG) {
                qkv_store(is_k, base + qkv_elem(part, e), bitcast<u32>(head_buf[e]));
            }
        }
    }
}
