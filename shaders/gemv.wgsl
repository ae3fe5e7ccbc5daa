// GEMV for decode: y[n] = epilogue(sum_k W[n, k] * x[k]) with W [N, K] row-major (PyTorch Linear
// layout) in f32, f16 or bf16, x and y in f32. linear_common.wgsl is prepended (decoding, epilogue).
//
// gemv_vec4: a workgroup of WG invocations computes ROWS rows. Every
// invocation walks its strided share of the row's chunks (one vec4<u32> load = 8 bf16 / f16 or 4
// f32 per row) for all ROWS rows at once, so each x load serves ROWS weight loads and ROWS
// loads are in flight per step; then one wg_sum per row (subgroups where the device has them).
// Rows of any length K: when K is not a multiple of the chunk (odd K included) a row starts
// mid-vec4 or even mid-word (ALIGNED = false): each chunk is then realigned from the two aligned
// vec4 loads that cover it (the second one is the neighbour's load, an L1 hit), so DRAM traffic
// stays one pass over W. Chunks whose loads would pass the end of the buffer, and the last K % chunk
// elements, go through a scalar tail (u32 loads, exact indexing).
//
// gemv_rows: one invocation per ROWS whole rows, no barriers (CPU adapters; see the kernel).
//
// gemv_scalar: the naive kernel (one invocation per output row, one u32 = 2 bf16 per load), kept
// as the benchmark baseline, made correct for odd K (the last
// element of an odd row has a u32 of its own and is read separately).
//
// Prelude constants: WG, ROWS, ALIGNED, CHUNK (= 4 * EPW), HAS_BIAS, RES, NORM, NORM_INLINE, plus those of
// linear_common.wgsl. RES: 0 none, 1 y = v + res[n], 2 y = v + y[n] (in place), 3 y = v * res[n].
// NORM: RMSNorm prologue, y = epilogue((W · (x * nw)) / rms(x)); the kernel then must not write
// x (every workgroup reads all of it).
// gemv_qkv also needs HD (head size), QKV_LANES (lanes per row group), QKV_SPLIT (workgroups per
// head), KV_DTYPE, QK_NORM (per-head q / k RMSNorm) and the helpers of attention_rope.wgsl and
// qkv_epilogue.wgsl.

struct Params {
    n: u32,
    k: u32,
    eps: f32,           // NORM: the RMSNorm epsilon
    _pad0: u32,
    // gemv_qkv only (qkv_epilogue.wgsl): heads, position and RoPE of the token.
    n_heads: u32,
    n_kv_heads: u32,
    pos: u32,
    rot: u32,
    log2_theta: f32,
    scale_stride: u32,
    _pad1: u32,
    _pad2: u32,
    rope_scaling: vec4<f32>, // RopeScaling::wgsl(): (factor, low, high, original context)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w4: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> w1: array<u32>;
@group(0) @binding(3) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> x1: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read> res: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
// NORM: the RMSNorm weight [K] (gemv_qkv: followed by the bias [N] when HAS_BIAS, then the
// q_norm and k_norm weights [HD] each when QK_NORM).
@group(0) @binding(8) var<storage, read> nw: array<vec4<f32>>;

// Element i of x as a scalar (tensor buffers are padded to 16 bytes, so the vec4 holding the
// last element is inside the buffer).
fn x_at(i: u32) -> f32 {
    return x4[i >> 2u][i & 3u];
}

// NORM_INLINE (with NORM): the sum of squares of x accumulated in the dot-product loop itself
// (x_ss, this invocation's share: its chunks and tail elements) instead of a separate pass and
// workgroup reduction before it: x and the weights are then loaded in the same round trip, and
// the reduction of x_ss joins the rows' (gemv_vec4: one wg_sum4; gemv_grouped / gemv_qkv: a
// column of the partials). Exact algebra: the 1 / rms factor multiplies the finished dot product.
var<private> x_ss: f32;

// x times the norm weight (NORM; the 1 / rms factor is applied to the finished dot product).
fn xn4(i: u32) -> vec4<f32> {
    let v = x4[i];
    if (NORM) {
        if (NORM_INLINE) {
            x_ss = x_ss + dot(v, v);
        }
        return v * nw[i];
    }
    return v;
}
fn xn1(i: u32) -> f32 {
    let v = x_at(i);
    if (NORM) {
        if (NORM_INLINE) {
            x_ss = x_ss + v * v;
        }
        return v * nw[i >> 2u][i & 3u];
    }
    return v;
}

// The inverse rms from a reduced sum of squares.
fn inv_rms(ss: f32) -> f32 {
    return inverseSqrt(ss / f32(p.k) + p.eps);
}

// RMSNorm prologue: 1 / sqrt(mean(x^2) + eps), recomputed by every workgroup from x (K ≤ a few
// thousand floats: one pass through L2), 1 without NORM or with NORM_INLINE (the caller then
// reduces x_ss after the dot products). Call from uniform control flow.
fn norm_inv(lane: Lane) -> f32 {
    if (!NORM || NORM_INLINE) {
        return 1.0;
    }
    var ss = 0.0;
    for (var i = lane.index; i < p.k / 4u; i = i + WG) {
        let v = x4[i];
        ss = ss + dot(v, v);
    }
    for (var i = (p.k / 4u) * 4u + lane.index; i < p.k; i = i + WG) {
        let v = x_at(i);
        ss = ss + v * v;
    }
    return inverseSqrt(wg_sum(ss, lane) / f32(p.k) + p.eps);
}

fn store_output(row: u32, v: f32) {
    var o = v;
    if (HAS_BIAS) {
        o = o + bias[row];
    }
    o = activate(o);
    if (RES == 1u) {
        o = o + res[row];
    } else if (RES == 2u) {
        o = o + y[row];
    } else if (RES == 3u) {
        o = o * res[row];
    }
    y[row] = o;
}

// This invocation's partial sums of rows row0 .. row0 + ROWS (chunks li, li + stride, ...):
// rows past the end repeat the last row (the caller never stores them).
fn vec4_rows(row0: u32, li: u32, stride: u32) -> array<f32, ROWS> {
    let k = p.k;
    // Per row: first element index, its vec4 index, word offset inside that vec4, and whether it
    // starts on the high half of a word.
    var e0: array<u32, ROWS>;
    var q: array<u32, ROWS>;
    var ws: array<u32, ROWS>;
    var odd: array<bool, ROWS>;
    for (var r = 0u; r < ROWS; r = r + 1u) {
        let e = min(row0 + r, p.n - 1u) * k;
        let word = e / EPW;
        e0[r] = e;
        q[r] = word / 4u;
        ws[r] = word % 4u;
        odd[r] = (e % EPW) != 0u;
    }
    var nmain = k / CHUNK;
    if (!ALIGNED) {
        // The realigning load reads vec4 q + j + 1: keep it inside the buffer (rows ascend, so the
        // last row is the binding constraint).
        let len = arrayLength(&w4);
        let last = q[ROWS - 1u] + 1u;
        nmain = min(nmain, select(0u, len - last, len > last));
    }

    var acc: array<f32, ROWS>;
    for (var j = li; j < nmain; j = j + stride) {
        var xa: vec4<f32>;
        var xb = vec4<f32>(0.0);
        if (EPW == 2u) {
            xa = xn4(2u * j);
            xb = xn4(2u * j + 1u);
        } else {
            xa = xn4(j);
        }
        for (var r = 0u; r < ROWS; r = r + 1u) {
            let a = w4[q[r] + j];
            var words = Words(a, 0u);
            if (!ALIGNED) {
                words = realign(a, w4[q[r] + j + 1u], ws[r]);
            }
            acc[r] = acc[r] + chunk_dot(words, odd[r], xa, xb);
        }
    }
    for (var kk = nmain * CHUNK + li; kk < k; kk = kk + stride) {
        let xv = xn1(kk);
        for (var r = 0u; r < ROWS; r = r + 1u) {
            let g = e0[r] + kk;
            let wi = g / EPW;
            acc[r] = acc[r] + decode_one(w4[wi >> 2u][wi & 3u], g % EPW) * xv;
        }
    }
    return acc;
}

@compute @workgroup_size(WG)
fn gemv_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lane: Lane) {
    let row0 = (wid.x + wid.y * nwg.x) * ROWS;
    if (row0 >= p.n) {
        return;
    }
    var inv = norm_inv(lane);
    let acc = vec4_rows(row0, lane.index, WG);
    if (NORM && NORM_INLINE && ROWS <= 3u) {
        // The rows and the sum of squares in one reduction.
        var v = vec4<f32>(0.0, 0.0, 0.0, x_ss);
        for (var r = 0u; r < ROWS; r = r + 1u) {
            v[r] = acc[r];
        }
        let t = wg_sum4(v, lane);
        if (lane.index == 0u) {
            for (var r = 0u; r < ROWS; r = r + 1u) {
                if (row0 + r < p.n) {
                    store_output(row0 + r, t[r] * inv_rms(t.w));
                }
            }
        }
        return;
    }
    if (NORM && NORM_INLINE) {
        inv = inv_rms(wg_sum(x_ss, lane));
    }
    for (var r = 0u; r < ROWS; r = r + 1u) {
        let total = wg_sum(acc[r], lane);
        if (lane.index == 0u && row0 + r < p.n) {
            store_output(row0 + r, total * inv);
        }
    }
}

// RMSNorm prologue computed by one invocation alone (gemv_rows: no workgroup reduction).
fn norm_inv_local() -> f32 {
    if (!NORM) {
        return 1.0;
    }
    var ss = vec4<f32>(0.0);
    for (var i = 0u; i < p.k / 4u; i = i + 1u) {
        let v = x4[i];
        ss = ss + v * v;
    }
    var s = (ss.x + ss.y) + (ss.z + ss.w);
    for (var i = (p.k / 4u) * 4u; i < p.k; i = i + 1u) {
        let v = x_at(i);
        s = s + v * v;
    }
    return inverseSqrt(s / f32(p.k) + p.eps);
}

// gemv_rows: for CPU adapters (SwiftShader, lavapipe), where a workgroup that reaches a barrier
// costs a coroutine per SIMD group. Invocation i of the workgroup computes rows
// (workgroup · WG + i) · ROWS .. + ROWS whole (vec4_rows with stride 1), the norm prologue
// included: no workgroup memory, no barriers, no subgroups.
@compute @workgroup_size(WG)
fn gemv_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = ((wid.x + wid.y * nwg.x) * WG + li) * ROWS;
    if (row0 >= p.n) {
        return;
    }
    let inv = norm_inv_local();
    let acc = vec4_rows(row0, 0u, 1u);
    for (var r = 0u; r < ROWS; r = r + 1u) {
        if (row0 + r < p.n) {
            store_output(row0 + r, acc[r] * inv);
        }
    }
}

// gemv_grouped: gemv_vec4 for short rows. The WG invocations form WG / QKV_LANES groups of
// QKV_LANES lanes; group g computes rows g·ROWS .. g·ROWS + ROWS of the workgroup's HD (= the
// outputs per workgroup, WG / QKV_LANES · ROWS) at once, its lanes striding over the row's
// chunks. The partials go to workgroup memory (qkv_part, [lane][row]) and after one barrier
// invocation e sums output e: no per-row workgroup reductions, no subgroups.
@compute @workgroup_size(WG)
fn gemv_grouped(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lane: Lane) {
    let out0 = (wid.x + wid.y * nwg.x) * HD;
    if (out0 >= p.n) {
        return;
    }
    var inv = norm_inv(lane);
    let li = lane.index % QKV_LANES;
    let r0 = (lane.index / QKV_LANES) * ROWS;
    let acc = vec4_rows(out0 + r0, li, QKV_LANES);
    for (var r = 0u; r < ROWS; r = r + 1u) {
        qkv_part[li * (HD + 1u) + r0 + r] = acc[r];
    }
    // NORM_INLINE: the first group's lanes saw all of x once; their sums of squares go to the
    // spare column HD.
    if (NORM && NORM_INLINE && r0 == 0u) {
        qkv_part[li * (HD + 1u) + HD] = x_ss;
    }
    workgroupBarrier();
    if (NORM && NORM_INLINE) {
        var ss = 0.0;
        for (var l = 0u; l < QKV_LANES; l = l + 1u) {
            ss = ss + qkv_part[l * (HD + 1u) + HD];
        }
        inv = inv_rms(ss);
    }
    for (var e = lane.index; e < HD; e = e + WG) {
        if (out0 + e < p.n) {
            var s = 0.0;
            for (var l = 0u; l < QKV_LANES; l = l + 1u) {
                s = s + qkv_part[l * (HD + 1u) + e];
            }
            store_output(out0 + e, s * inv);
        }
    }
}

// Fused decode QKV (qkv_epilogue.wgsl is appended): workgroup (h, part) computes the QKV_R rows
// of head h that part `part` of QKV_SPLIT owns (qkv_elem: QKV_P RoPE pairs, rows e and
// e + HD / 2, so the rotation and the f16 pairs stay in the workgroup; the whole head when
// QKV_SPLIT = 1) of the concatenated [q heads | k heads | v heads] weight with the norm
// prologue, adds the bias (stored after the norm weight in nw), and hands them to the epilogue
// (RoPE, q out, KV append). The WG invocations form WG / QKV_LANES groups of QKV_LANES lanes;
// group g computes local rows g·ROWS .. g·ROWS + ROWS at once (each x load serves ROWS rows; ROWS
// divides QKV_P, so they are consecutive rows of the weight), its lanes striding over the row's
// chunks. All partials go to workgroup memory ([lane][row], row stride QKV_R + 1:
// conflict-free) and after ONE barrier invocation e sums row e's QKV_LANES partials: no per-row
// workgroup reductions, no subgroups needed. A row's sum does not depend on QKV_SPLIT.
var<workgroup> qkv_part: array<f32, QKV_LANES * (QKV_R + 1u)>;

@compute @workgroup_size(WG)
fn gemv_qkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lane: Lane) {
    let wgi = wid.x + wid.y * nwg.x;
    let hidx = wgi / QKV_SPLIT;
    let part = wgi % QKV_SPLIT;
    if (hidx >= p.n_heads + 2u * p.n_kv_heads) {
        return;
    }
    var inv = norm_inv(lane);
    let li = lane.index % QKV_LANES;
    let r0 = (lane.index / QKV_LANES) * ROWS;
    // Groups past the workgroup's rows read rows of the weight they never store.
    let acc = vec4_rows(hidx * HD + qkv_elem(part, min(r0, QKV_R - 1u)), li, QKV_LANES);
    for (var r = 0u; r < ROWS; r = r + 1u) {
        if (r0 + r < QKV_R) {
            qkv_part[li * (QKV_R + 1u) + r0 + r] = acc[r];
        }
    }
    // NORM_INLINE: the first group's sums of squares go to the spare column QKV_R.
    if (NORM && NORM_INLINE && r0 == 0u) {
        qkv_part[li * (QKV_R + 1u) + QKV_R] = x_ss;
    }
    workgroupBarrier();
    if (NORM && NORM_INLINE) {
        var ss = 0.0;
        for (var l = 0u; l < QKV_LANES; l = l + 1u) {
            ss = ss + qkv_part[l * (QKV_R + 1u) + QKV_R];
        }
        inv = inv_rms(ss);
    }
    for (var e = lane.index; e < QKV_R; e = e + WG) {
        var s = 0.0;
        for (var l = 0u; l < QKV_LANES; l = l + 1u) {
            s = s + qkv_part[l * (QKV_R + 1u) + e];
        }
        head_buf[e] = s * inv + qkv_bias(hidx * HD + qkv_elem(part, e));
    }
    qkv_epilogue(hidx, part, lane);
}

// The bias of row `row` of the concatenated QKV weight (0 without HAS_BIAS): after the K norm
// weights in nw.
fn qkv_bias(row: u32) -> f32 {
    if (!HAS_BIAS) {
        return 0.0;
    }
    let i = select(0u, p.k, NORM) + row;
    return nw[i >> 2u][i & 3u];
}

@compute @workgroup_size(WG)
fn gemv_scalar(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = (wid.x + wid.y * nwg.x) * WG + li;
    if (row >= p.n) {
        return;
    }
    let e = row * p.k;
    var acc = 0.0;
    var kk = 0u;
    if (e % EPW != 0u) {
        // Odd K, odd row: the row starts on the high half of a word.
        acc = decode_one(w1[e / EPW], 1u) * x1[0];
        kk = 1u;
    }
    for (; kk + EPW <= p.k; kk = kk + EPW) {
        let word = w1[(e + kk) / EPW];
        if (EPW == 2u) {
            acc = acc + decode_one(word, 0u) * x1[kk] + decode_one(word, 1u) * x1[kk + 1u];
        } else {
            acc = acc + bitcast<f32>(word) * x1[kk];
        }
    }
    if (kk < p.k) {
        // The last element of an odd row (K odd: its u32 holds one bf16); easy to skip.
        acc = acc + decode_one(w1[(e + kk) / EPW], 0u) * x1[kk];
    }
    store_output(row, acc);
}
