// Quantised weights read as stored by ggml (no dequantised copy in GPU memory):
//   y[m, n] = Σ_k x[m, k] · W[n, k],  W: [N, K] in Q8_0 / Q4_0 / Q4_1 / Q4_K blocks, x, y: f32.
//
// The weight buffer holds the GGUF tensor bytes unchanged (padded to whole u32 words), so a
// block starts at byte b·BLOCK_BYTES: Q8_0 (34 B) and Q4_0 (18 B) blocks start at even but not
// always 4-aligned offsets; their quants are funnel-shifted out of neighbouring u32 words
// (`shr16`). Q4_1 (20 B) is 4-aligned and Q4_K (144 B) 16-aligned (read as vec4<u32>). f16
// scales are unpacked with unpack2x16float: no shader-f16 needed.
//
// The unit of work is 32 weights of one row ("unit"): a whole block of the 32-element types,
// and for Q4_K the 16 bytes (qs[32g + 16h ..]) that hold 16 weights of sub-block 2g (low
// nibbles) and 16 of sub-block 2g + 1 (high nibbles), g = group of 64, h = half.
// Σ q·x is taken per unit with vec4 dots and scaled once: d·Σq·x (Q8_0), d·(Σq·x − 8Σx) (Q4_0),
// d·Σq·x + m·Σx (Q4_1), d·sc·Σq·x − dmin·m·Σx per sub-block (Q4_K).
//
// gemv (decode, small M): a workgroup computes ROWS outputs of one x row; each invocation
// strides over the units of the row, loads the unit's 32 x values once and uses them for all
// ROWS weight rows; one wg_sum per row.
// matmul (prefill): 64 weight rows × TM = 16·RM x rows per workgroup (16×16 invocations, RM×4
// outputs each); per step of 32 k, the x tile and the dequantised weight tile go to workgroup
// memory (vec4 along k; 8 KiB + 9 KiB at RM = 4), then 4 + RM vec4 loads feed 16·RM FMAs per
// 4 k.

// gemv_fast's fused prologue / epilogue (prelude constants, defined for every pipeline of the
// file): NORM (RMSNorm prologue: x loads times the norm weight, the dot products times
// 1 / rms(x)), HAS_BIAS, ACT (0 none, 2 SiLU), RES (0 none, 1 + res, 2 + y in place, 3 * res),
// PAIR (a gated MLP over a [gate; up] weight of 2n rows: y = act(gate · x) * (up · x); 0 off,
// 1 SiLU, 2 GELU-tanh, `gated` in this file). gemv_qkv:
// HD, KV_DTYPE, QKV_SPLIT, QK_NORM and qkv_epilogue.wgsl (appended with attention_rope.wgsl).

const Q8_0: u32 = 0u;
const Q4_0: u32 = 1u;
const Q4_1: u32 = 2u;
const Q4_K: u32 = 3u;

struct Params {
    m: u32,      // x rows
    n: u32,      // weight rows (outputs per x row; PAIR: the weight has 2n rows)
    k: u32,      // row length
    units: u32,  // k / 32
    groups_n: u32, // gemv: workgroups per x row; matmul: tiles along n
    eps: f32,    // NORM: the RMSNorm epsilon
    row0: u32,   // first row of the weight inside the buffer (a row-block view)
    _pad1: u32,
    // gemv_qkv only (qkv_epilogue.wgsl): heads, position and RoPE of the token.
    n_heads: u32,
    n_kv_heads: u32,
    pos: u32,
    rot: u32,
    log2_theta: f32,
    scale_stride: u32,
    _pad2: u32,
    _pad3: u32,
    rope_scaling: vec4<f32>, // RopeScaling::wgsl(): (factor, low, high, original context)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> wq: array<u32>;
// The same buffer as wq, for 16-byte loads of Q4_K blocks.
@group(0) @binding(2) var<storage, read> wq4: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
// gemv_fast / gemv_qkv: the RMSNorm weight [K] (NORM; gemv_qkv: followed by the bias [N] when
// HAS_BIAS, then the q_norm and k_norm weights [HD] each when QK_NORM), the bias [N] and the
// residual / product operand of the epilogue.
@group(0) @binding(5) var<storage, read> nw: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;
@group(0) @binding(7) var<storage, read> res: array<f32>;

fn block_bytes() -> u32 {
    switch (QTYPE) {
        case 0u: { return 34u; }
        case 1u: { return 18u; }
        case 2u: { return 20u; }
        default: { return 144u; }
    }
}

// Bytes 2..5 of the 6 bytes in words (a, b): the u32 at byte offset 2 of a.
fn shr16(a: u32, b: u32) -> u32 {
    return (a >> 16u) | (b << 16u);
}

// The f16 at an even byte offset.
fn f16_at(byte: u32) -> f32 {
    let v = unpack2x16float(wq[byte >> 2u]);
    return select(v.x, v.y, (byte & 2u) != 0u);
}

// Four signed bytes as floats.
fn i8x4(w: u32) -> vec4<f32> {
    let s = bitcast<vec4<i32>>(vec4<u32>(w << 24u, w << 16u, w << 8u, w)) >> vec4<u32>(24u);
    return vec4<f32>(s);
}

// Low / high nibbles of four bytes as floats.
fn lo4(w: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(15u));
}
fn hi4(w: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(w) >> vec4<u32>(4u, 12u, 20u, 28u)) & vec4<u32>(15u));
}

// The four u32 words of bytes [byte, byte + 16) for an even byte offset.
fn words16(byte: u32) -> vec4<u32> {
    let w = byte >> 2u;
    if ((byte & 2u) == 0u) {
        return vec4<u32>(wq[w], wq[w + 1u], wq[w + 2u], wq[w + 3u]);
    }
    let a = wq[w];
    let b = wq[w + 1u];
    let c = wq[w + 2u];
    let d = wq[w + 3u];
    let e = wq[w + 4u];
    return vec4<u32>(shr16(a, b), shr16(b, c), shr16(c, d), shr16(d, e));
}

// The two u32 words of bytes [byte, byte + 8) for an even byte offset.
fn words8(byte: u32) -> vec2<u32> {
    let w = byte >> 2u;
    if ((byte & 2u) == 0u) {
        return vec2<u32>(wq[w], wq[w + 1u]);
    }
    let b = wq[w + 1u];
    return vec2<u32>(shr16(wq[w], b), shr16(b, wq[w + 2u]));
}

// 6-bit scale and min of sub-block j (0..8) from the 12 scale bytes (ggml's get_scale_min_k4).
fn scale_byte(i: u32, s: vec3<u32>) -> u32 {
    return (s[i >> 2u] >> (8u * (i & 3u))) & 0xffu;
}
fn scale_min_k4(j: u32, s: vec3<u32>) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(scale_byte(j, s) & 63u), f32(scale_byte(j + 4u, s) & 63u));
    }
    let sc = (scale_byte(j + 4u, s) & 15u) | ((scale_byte(j - 4u, s) >> 6u) << 4u);
    let mn = (scale_byte(j + 4u, s) >> 4u) | ((scale_byte(j, s) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(mn));
}

// Offset (in vec4) within an x row of the i-th vec4 (0..8) of unit u.
fn x_offset(u: u32, i: u32) -> u32 {
    if (QTYPE == Q4_K) {
        // unit u: block u / 8, group g = (u % 8) / 2, half h = u % 2; vec4s 0..4 are the low
        // nibbles' x (elements 64g + 16h ..), 4..8 the high nibbles' (32 further on).
        let s = u & 7u;
        return (u >> 3u) * 64u + (s >> 1u) * 16u + (s & 1u) * 4u + (i & 3u) + (i >> 2u) * 8u;
    }
    return u * 8u + i;
}

// Σ w·x over global unit gu (row · units + u) with the unit's x values xv.
fn unit_dot(gu: u32, xv: array<vec4<f32>, 8>) -> f32 {
    if (QTYPE == Q8_0) {
        let o = gu * 34u;
        let d = f16_at(o);
        let w = o >> 2u;
        let odd = (o & 2u) != 0u;
        var prev = wq[w];
        var s = 0.0;
        for (var i = 0u; i < 8u; i = i + 1u) {
            let next = wq[w + 1u + i];
            s = s + dot(i8x4(select(shr16(prev, next), next, odd)), xv[i]);
            prev = next;
        }
        return d * s;
    }
    if (QTYPE == Q4_K) {
        let b = (gu >> 3u) * 9u;
        let head = wq4[b];
        let dm = unpack2x16float(head.x);
        let sub = gu & 7u;
        let qs = wq4[b + 1u + sub];
        let g = sub >> 1u;
        let sm_lo = scale_min_k4(2u * g, head.yzw);
        let sm_hi = scale_min_k4(2u * g + 1u, head.yzw);
        var s_lo = 0.0;
        var s_hi = 0.0;
        var x_lo = 0.0;
        var x_hi = 0.0;
        for (var c = 0u; c < 4u; c = c + 1u) {
            s_lo = s_lo + dot(lo4(qs[c]), xv[c]);
            s_hi = s_hi + dot(hi4(qs[c]), xv[4u + c]);
            x_lo = x_lo + dot(xv[c], vec4<f32>(1.0));
            x_hi = x_hi + dot(xv[4u + c], vec4<f32>(1.0));
        }
        return dm.x * (sm_lo.x * s_lo + sm_hi.x * s_hi) - dm.y * (sm_lo.y * x_lo + sm_hi.y * x_hi);
    }
    // Q4_0 / Q4_1: scale(s), then 16 bytes of nibbles: low → elements 0..16, high → 16..32.
    let o = gu * block_bytes();
    var qs: vec4<u32>;
    var d = 0.0;
    var mn = 0.0;
    if (QTYPE == Q4_1) {
        let dmv = unpack2x16float(wq[o >> 2u]);
        d = dmv.x;
        mn = dmv.y;
        let w = (o >> 2u) + 1u;
        qs = vec4<u32>(wq[w], wq[w + 1u], wq[w + 2u], wq[w + 3u]);
    } else {
        d = f16_at(o);
        qs = words16(o + 2u);
    }
    var s = 0.0;
    var sx = 0.0;
    for (var c = 0u; c < 4u; c = c + 1u) {
        s = s + dot(lo4(qs[c]), xv[c]) + dot(hi4(qs[c]), xv[4u + c]);
        sx = sx + dot(xv[c] + xv[4u + c], vec4<f32>(1.0));
    }
    if (QTYPE == Q4_1) {
        return d * s + mn * sx;
    }
    return d * (s - 8.0 * sx);
}

@compute @workgroup_size(WG)
fn gemv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lane: Lane) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.groups_n * p.m) {
        return;
    }
    let mrow = g / p.groups_n;
    let row0 = (g % p.groups_n) * ROWS;
    let xrow = mrow * (p.k >> 2u);
    var acc: array<f32, ROWS>;
    for (var u = lane.index; u < p.units; u = u + WG) {
        var xv: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i = i + 1u) {
            xv[i] = x[xrow + x_offset(u, i)];
        }
        for (var r = 0u; r < ROWS; r = r + 1u) {
            if (row0 + r < p.n) {
                acc[r] = acc[r] + unit_dot((p.row0 + row0 + r) * p.units + u, xv);
            }
        }
    }
    for (var r = 0u; r < ROWS; r = r + 1u) {
        let s = wg_sum(acc[r], lane);
        if (lane.index == 0u && row0 + r < p.n) {
            y[mrow * p.n + row0 + r] = s;
        }
    }
}

// ---- matmul: TM = 16·RM x rows × 64 weight rows per workgroup, k in steps of 32 ----

const TM: u32 = 16u * RM;
const TN: u32 = 64u;

// x tile [TM rows][32 k] and weight tile [TN rows][32 k (+4 padding)], vec4 along k. The row
// stride of 9 vec4 (36 floats) puts the 16 rows read at once (tx + 16j) on distinct banks.
const WS_STRIDE: u32 = 9u;
var<workgroup> xs: array<vec4<f32>, TM * 8u>;
var<workgroup> ws: array<vec4<f32>, TN * WS_STRIDE>;

// Eight dequantised weights k = 8·part .. 8·part + 8 of the 32 in unit (row, ku).
fn dequant8(row: u32, ku: u32, part: u32) -> array<f32, 8> {
    var out: array<f32, 8>;
    let gu = (p.row0 + row) * p.units + ku;
    if (QTYPE == Q8_0) {
        let o = gu * 34u;
        let d = f16_at(o);
        let q = words8(o + 2u + 8u * part);
        let a = i8x4(q.x) * d;
        let b = i8x4(q.y) * d;
        for (var e = 0u; e < 4u; e = e + 1u) {
            out[e] = a[e];
            out[4u + e] = b[e];
        }
        return out;
    }
    var q: vec2<u32>;
    var scale = 0.0;
    var bias = 0.0;
    var high = false;
    if (QTYPE == Q4_K) {
        // k-range of this step: sub-block sb = ku % 8 (low nibbles if even, high if odd) of
        // group sb / 2; the part's 8 weights are bytes qs[32·(sb/2) + 8·part ..].
        let b = (gu >> 3u) * 9u;
        let head = wq4[b];
        let dm = unpack2x16float(head.x);
        let sb = gu & 7u;
        let sm = scale_min_k4(sb, head.yzw);
        scale = dm.x * sm.x;
        bias = -dm.y * sm.y;
        high = (sb & 1u) == 1u;
        let w = (b + 1u) * 4u + (sb >> 1u) * 8u + part * 2u;
        q = vec2<u32>(wq[w], wq[w + 1u]);
    } else {
        let o = gu * block_bytes();
        high = part >= 2u;
        if (QTYPE == Q4_1) {
            let dmv = unpack2x16float(wq[o >> 2u]);
            scale = dmv.x;
            bias = dmv.y;
            let w = (o >> 2u) + 1u + (part & 1u) * 2u;
            q = vec2<u32>(wq[w], wq[w + 1u]);
        } else {
            scale = f16_at(o);
            bias = -8.0 * scale;
            q = words8(o + 2u + 8u * (part & 1u));
        }
    }
    var a = lo4(q.x);
    var b = lo4(q.y);
    if (high) {
        a = hi4(q.x);
        b = hi4(q.y);
    }
    for (var e = 0u; e < 4u; e = e + 1u) {
        out[e] = scale * a[e] + bias;
        out[4u + e] = scale * b[e] + bias;
    }
    return out;
}

@compute @workgroup_size(256)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    let tiles_m = (p.m + TM - 1u) / TM;
    if (g >= p.groups_n * tiles_m) {
        return;
    }
    let m0 = (g / p.groups_n) * TM;
    let n0 = (g % p.groups_n) * TN;
    let tx = lid % 16u;
    let ty = lid / 16u;
    let kv = p.k >> 2u;
    // acc[i] holds outputs (ty + 16i, tx + 16j) for j = 0..4.
    var acc: array<vec4<f32>, RM>;
    let wn = lid % TN;   // weight row of the tile this invocation dequantises
    let part = lid / TN; // which 8 of the 32 k
    for (var ku = 0u; ku < p.units; ku = ku + 1u) {
        for (var i = lid; i < TM * 8u; i = i + 256u) {
            let gm = m0 + i / 8u;
            var v = vec4<f32>(0.0);
            if (gm < p.m) {
                v = x[gm * kv + ku * 8u + i % 8u];
            }
            xs[i] = v;
        }
        var wv: array<f32, 8>;
        if (n0 + wn < p.n) {
            wv = dequant8(n0 + wn, ku, part);
        }
        ws[wn * WS_STRIDE + 2u * part] = vec4<f32>(wv[0], wv[1], wv[2], wv[3]);
        ws[wn * WS_STRIDE + 2u * part + 1u] = vec4<f32>(wv[4], wv[5], wv[6], wv[7]);
        workgroupBarrier();
        for (var kk = 0u; kk < 8u; kk = kk + 1u) {
            // k = 4kk..4kk+4 of weight rows tx + 16j, dotted with each x row's 4 values.
            let b0 = ws[tx * WS_STRIDE + kk];
            let b1 = ws[(tx + 16u) * WS_STRIDE + kk];
            let b2 = ws[(tx + 32u) * WS_STRIDE + kk];
            let b3 = ws[(tx + 48u) * WS_STRIDE + kk];
            for (var i = 0u; i < RM; i = i + 1u) {
                let a = xs[(ty + 16u * i) * 8u + kk];
                acc[i] = acc[i] + vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < RM; i = i + 1u) {
        let gm = m0 + ty + 16u * i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let gn = n0 + tx + 16u * j;
            if (gm < p.m && gn < p.n) {
                y[gm * p.n + gn] = acc[i][j];
            }
        }
    }
}

// ---- gemv_fast: LANES invocations per row group, ROWS rows per invocation ----
//
// The workgroup's WG invocations form WG / LANES row groups; a group computes ROWS consecutive
// outputs of one x row. Lane l of a group walks units l, l + LANES, ... of its rows (a unit is
// 32 weights: a block of Q8_0 / Q4_0 / Q4_1, or one 16-byte qs chunk of a Q4_K block), so the
// lanes of a group read consecutive blocks / chunks (coalesced), and each lane loads the unit's
// 32 x values once, takes Σx once, and applies them to its ROWS rows.
// Quants become floats without integer→float conversions (a quarter-rate instruction on
// NVIDIA): the nibble / byte is OR-ed into the mantissa of 2^23 and 2^23 subtracted, exactly.
// Nibbles and bytes stay at their bit position inside a 16-bit half (so the float holds
// q·16^i) and the power-of-two factor is divided out once per sum, exactly.
// Q4_K scales are unpacked once per chunk per row (two 16-bit lanes at a time), not per weight.
// Reduction: LANES == WG uses wg_sum per row (subgroup or shared path); otherwise each lane
// writes its ROWS partials to workgroup memory (padded against bank conflicts), one barrier,
// and one invocation per output sums its group's LANES partials.

const MAGIC: u32 = 0x4b000000u; // bits of 2^23: bitcast<f32>(MAGIC | v) = 2^23 + v, v < 2^23
const TWO23: f32 = 8388608.0;
const GROUPS: u32 = WG / LANES;
const OUTS: u32 = GROUPS * ROWS; // outputs per workgroup
// Partials [lane][output] with a row stride of OUTS + 1 words: conflict-free writes (lanes of a
// subgroup) and reads (consecutive outputs).
var<workgroup> gf_part: array<f32, LANES * (OUTS + 1u)>;

// The 32 x values of a unit: a = weights 0..16 of the unit's low part (a0 = elements 0..4 ...),
// b = the 16 of the high part (for 4-bit types: the high nibbles; for Q8_0: words 4..8).
struct XUnit {
    a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
    b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>,
}

fn mag(v: vec4<u32>) -> vec4<f32> {
    return bitcast<vec4<f32>>(v | vec4<u32>(MAGIC)) - vec4<f32>(TWO23);
}

// Σ over 16 bytes q (element 4c + i = byte i of word c) of (lo nibble · a) and (hi nibble · b).
fn nib_dot(q: vec4<u32>, a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
           b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) -> vec2<f32> {
    let l = q & vec4<u32>(0xffffu);
    let h = q >> vec4<u32>(16u);
    // x of byte i of every word: (a0[i], a1[i], a2[i], a3[i]).
    let lo = dot(mag(l & vec4<u32>(0xfu)), vec4<f32>(a0.x, a1.x, a2.x, a3.x))
        + dot(mag(h & vec4<u32>(0xfu)), vec4<f32>(a0.z, a1.z, a2.z, a3.z))
        + (dot(mag(l & vec4<u32>(0xf00u)), vec4<f32>(a0.y, a1.y, a2.y, a3.y))
        + dot(mag(h & vec4<u32>(0xf00u)), vec4<f32>(a0.w, a1.w, a2.w, a3.w))) * (1.0 / 256.0);
    let hi = (dot(mag(l & vec4<u32>(0xf0u)), vec4<f32>(b0.x, b1.x, b2.x, b3.x))
        + dot(mag(h & vec4<u32>(0xf0u)), vec4<f32>(b0.z, b1.z, b2.z, b3.z))) * (1.0 / 16.0)
        + (dot(mag(l & vec4<u32>(0xf000u)), vec4<f32>(b0.y, b1.y, b2.y, b3.y))
        + dot(mag(h & vec4<u32>(0xf000u)), vec4<f32>(b0.w, b1.w, b2.w, b3.w))) * (1.0 / 4096.0);
    return vec2<f32>(lo, hi);
}

// Σ over 16 signed bytes q (element 4c + i = byte i of word c) · x.
fn i8_dot(q: vec4<u32>, a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>) -> f32 {
    let s = q ^ vec4<u32>(0x80808080u); // byte + 128: unsigned
    let l = s & vec4<u32>(0xffffu);
    let h = s >> vec4<u32>(16u);
    let b0 = vec4<f32>(128.0);
    let b1 = vec4<f32>(32768.0);
    return dot(mag(l & vec4<u32>(0xffu)) - b0, vec4<f32>(a0.x, a1.x, a2.x, a3.x))
        + dot(mag(h & vec4<u32>(0xffu)) - b0, vec4<f32>(a0.z, a1.z, a2.z, a3.z))
        + (dot(mag(l & vec4<u32>(0xff00u)) - b1, vec4<f32>(a0.y, a1.y, a2.y, a3.y))
        + dot(mag(h & vec4<u32>(0xff00u)) - b1, vec4<f32>(a0.w, a1.w, a2.w, a3.w))) * (1.0 / 256.0);
}

// Offset (vec4) of unit u's low part within an x row; the high part is x_hi() vec4 further on.
fn x_hi() -> u32 {
    if (QTYPE == Q4_K) {
        return 8u;
    }
    return 4u;
}
fn x_base(u: u32) -> u32 {
    if (QTYPE == Q4_K) {
        // chunk j = u % 8 of block u / 8: group j / 2, half j % 2 (see x_offset)
        return (u >> 3u) * 64u + ((u & 7u) >> 1u) * 16u + (u & 1u) * 4u;
    }
    return u * 8u;
}

// Q4_K: the 6-bit scales (x) and mins (y) of sub-blocks 2g and 2g + 1 of a block whose header
// (d, dmin, 12 scale bytes) is `head`, as the two bytes of a 16-bit lane.
fn q4k_group_scales(head: vec4<u32>, g: u32) -> vec2<u32> {
    let sh = (g & 1u) * 16u;
    let ys = head.y >> sh;
    let zs = head.z >> sh;
    let ws = head.w >> sh;
    let sc = select((ws & 0x0f0fu) | ((ys & 0xc0c0u) >> 2u), ys & 0x3f3fu, g < 2u);
    let mn = select(((ws >> 4u) & 0x0f0fu) | ((zs & 0xc0c0u) >> 2u), zs & 0x3f3fu, g < 2u);
    return vec2<u32>(sc, mn);
}

// Σ w·x of unit u of the row whose first block is `rb` (block index; vec4 index for Q4_K).
// sx = (Σ low-part x, Σ high-part x).
fn fast_dot(rb: u32, u: u32, xu: XUnit, sx: vec2<f32>) -> f32 {
    if (QTYPE == Q4_K) {
        let b = rb + (u >> 3u) * 9u;
        let head = wq4[b];
        let qs = wq4[b + 1u + (u & 7u)];
        let dm = unpack2x16float(head.x);
        // Scales / mins of sub-blocks 2g and 2g + 1 as the two bytes of a 16-bit lane.
        let sm = q4k_group_scales(head, (u & 7u) >> 1u);
        let sc = sm.x;
        let mn = sm.y;
        let s = nib_dot(qs, xu.a0, xu.a1, xu.a2, xu.a3, xu.b0, xu.b1, xu.b2, xu.b3);
        return dm.x * (f32(sc & 0xffu) * s.x + f32((sc >> 8u) & 0xffu) * s.y)
            - dm.y * (f32(mn & 0xffu) * sx.x + f32((mn >> 8u) & 0xffu) * sx.y);
    }
    if (QTYPE == Q4_1) {
        let w = (rb + u) * 5u;
        let dm = unpack2x16float(wq[w]);
        let qs = vec4<u32>(wq[w + 1u], wq[w + 2u], wq[w + 3u], wq[w + 4u]);
        let s = nib_dot(qs, xu.a0, xu.a1, xu.a2, xu.a3, xu.b0, xu.b1, xu.b2, xu.b3);
        return dm.x * (s.x + s.y) + dm.y * (sx.x + sx.y);
    }
    // Q8_0 (34 B) / Q4_0 (18 B): even offsets; the scale is the low or high half of word 0 and
    // the quants start at word 1 (odd offset) or 2 bytes into word 0. Words read: 9 / 5, all
    // inside the block's bytes (its last byte is in the last word read).
    let o = (rb + u) * block_bytes();
    let w = o >> 2u;
    let odd = (o & 2u) != 0u;
    let w0 = wq[w];
    let w1 = wq[w + 1u];
    let w2 = wq[w + 2u];
    let w3 = wq[w + 3u];
    let w4 = wq[w + 4u];
    let dd = unpack2x16float(w0);
    let d = select(dd.x, dd.y, odd);
    let q0 = select(vec4<u32>(shr16(w0, w1), shr16(w1, w2), shr16(w2, w3), shr16(w3, w4)), vec4<u32>(w1, w2, w3, w4), odd);
    if (QTYPE == Q4_0) {
        let s = nib_dot(q0, xu.a0, xu.a1, xu.a2, xu.a3, xu.b0, xu.b1, xu.b2, xu.b3);
        return d * ((s.x + s.y) - 8.0 * (sx.x + sx.y));
    }
    let w5 = wq[w + 5u];
    let w6 = wq[w + 6u];
    let w7 = wq[w + 7u];
    let w8 = wq[w + 8u];
    let q1 = select(vec4<u32>(shr16(w4, w5), shr16(w5, w6), shr16(w6, w7), shr16(w7, w8)), vec4<u32>(w5, w6, w7, w8), odd);
    return d * (i8_dot(q0, xu.a0, xu.a1, xu.a2, xu.a3) + i8_dot(q1, xu.b0, xu.b1, xu.b2, xu.b3));
}

// Q4_K, STEP 2: Σ w·x over units u, u + 1 (u even: one 64-weight group g, 32 contiguous qs
// bytes, one scale / min unpack); x0 / x1 = the x of unit u / u + 1, sx = (Σ x of sub-block 2g,
// Σ x of sub-block 2g + 1).
fn q4k_group_dot(rb: u32, u: u32, x0: XUnit, x1: XUnit, sx: vec2<f32>) -> f32 {
    let b = rb + (u >> 3u) * 9u;
    let head = wq4[b];
    let qa = wq4[b + 1u + (u & 7u)];
    let qb = wq4[b + 2u + (u & 7u)];
    let dm = unpack2x16float(head.x);
    let sm = q4k_group_scales(head, (u & 7u) >> 1u);
    let sc = sm.x;
    let mn = sm.y;
    let s = nib_dot(qa, x0.a0, x0.a1, x0.a2, x0.a3, x0.b0, x0.b1, x0.b2, x0.b3)
        + nib_dot(qb, x1.a0, x1.a1, x1.a2, x1.a3, x1.b0, x1.b1, x1.b2, x1.b3);
    return dm.x * (f32(sc & 0xffu) * s.x + f32((sc >> 8u) & 0xffu) * s.y)
        - dm.y * (f32(mn & 0xffu) * sx.x + f32((mn >> 8u) & 0xffu) * sx.y);
}

// Weight rows fast_rows walks at once: ROWS, or with PAIR the ROWS gate rows and their ROWS up
// rows (both loaded in the same pass over x, not one pass after the other).
const RR: u32 = ROWS + ROWS * min(PAIR, 1u);

// NORM_INLINE (with NORM): this invocation's share of x's sum of squares, accumulated where
// fast_rows loads x (`count`: the first row group's lanes, which see all of x once) instead of
// a separate pass and reduction before the dot products; reduced with the rows' sums.
var<private> x_ss: f32;

// The sum of squares of the 8 vec4 of x a 32-weight unit uses (raw x, before the norm weight).
fn unit_ss(xrow: u32, b: u32, h: u32) -> f32 {
    var s = 0.0;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let v = x[xrow + b + i];
        let w = x[xrow + h + i];
        s = s + dot(v, v) + dot(w, w);
    }
    return s;
}

// vec4 i of x row `xrow` (offset in vec4), times the norm weight with NORM (the 1 / rms factor is
// applied to the finished dot products).
fn xq(xrow: u32, i: u32) -> vec4<f32> {
    if (NORM) {
        return x[xrow + i] * nw[i];
    }
    return x[xrow + i];
}

// RMSNorm prologue: 1 / sqrt(mean(x^2) + eps) of x row `xrow`, recomputed by every workgroup;
// 1 without NORM. Call from uniform control flow.
fn norm_inv(xrow: u32, lane: Lane) -> f32 {
    if (!NORM || NORM_INLINE) {
        return 1.0;
    }
    var ss = 0.0;
    for (var i = lane.index; i < p.k / 4u; i = i + WG) {
        let v = x[xrow + i];
        ss = ss + dot(v, v);
    }
    return inverseSqrt(wg_sum(ss, lane) / f32(p.k) + p.eps);
}

// Epilogue of output `row` of x row `mrow`: y = act(v + bias) (+ | *) residual. RES: 0 none,
// 1 + res, 2 + y (in place), 3 * res. ACT: 0 none, 2 SiLU.
fn store_out(mrow: u32, row: u32, v: f32) {
    let i = mrow * p.n + row;
    var o = v;
    if (HAS_BIAS) {
        o = o + bias[row];
    }
    if (ACT == 2u) {
        o = o / (1.0 + exp(-o));
    }
    if (RES == 1u) {
        o = o + res[i];
    } else if (RES == 2u) {
        o = o + y[i];
    } else if (RES == 3u) {
        o = o * res[i];
    }
    y[i] = o;
}

// PAIR's gated output act(g) · u: 1 SiLU, 2 GELU-tanh as x / (1 + exp(-2u)) (gelu.wgsl's tanh
// form; the exponent capped so it never overflows).
fn gated(g: f32, u: f32) -> f32 {
    if (PAIR == 2u) {
        let a = 0.7978845608028654 * (g + 0.044715 * g * g * g);
        return g / (1.0 + exp(min(-2.0 * a, 80.0))) * u;
    }
    return g / (1.0 + exp(-g)) * u;
}

// First block (Q4_K: vec4) of weight row `row`.
fn row_block(row: u32) -> u32 {
    if (QTYPE == Q4_K) {
        return (p.row0 + row) * (p.units >> 3u) * 9u;
    }
    return (p.row0 + row) * p.units;
}

// Lane li's (of LANES) partial sums of the rows whose first blocks are rb, against x row xrow
// (rows past ROWS: only with PAIR, the up rows). `count` (NORM_INLINE): add the raw x this lane
// loads to x_ss.
fn fast_rows(rb: array<u32, RR>, li: u32, xrow: u32, count: bool) -> array<f32, RR> {
    var acc: array<f32, RR>;
    let one = vec4<f32>(1.0);
    let ss = NORM && NORM_INLINE && count;
    if (STEP == 1u) {
        for (var u = li; u < p.units; u = u + LANES) {
            let xb = x_base(u);
            let xh = xb + x_hi();
            let xu = XUnit(xq(xrow, xb), xq(xrow, xb + 1u), xq(xrow, xb + 2u), xq(xrow, xb + 3u),
                           xq(xrow, xh), xq(xrow, xh + 1u), xq(xrow, xh + 2u), xq(xrow, xh + 3u));
            if (ss) {
                x_ss = x_ss + unit_ss(xrow, xb, xh);
            }
            let sx = vec2<f32>(dot(xu.a0 + xu.a1 + xu.a2 + xu.a3, one), dot(xu.b0 + xu.b1 + xu.b2 + xu.b3, one));
            for (var r = 0u; r < RR; r = r + 1u) {
                acc[r] = acc[r] + fast_dot(rb[r], u, xu, sx);
            }
        }
    } else if (QTYPE == Q4_K) {
        // STEP 2: units u, u + 1 (u even) = the 32 qs bytes of group g = (u % 8) / 2; x of the
        // group is 16 contiguous vec4 (sub-block 2g: 0..8, sub-block 2g + 1: 8..16).
        for (var u = 2u * li; u < p.units; u = u + 2u * LANES) {
            let xb = x_base(u);
            let x0 = XUnit(xq(xrow, xb), xq(xrow, xb + 1u), xq(xrow, xb + 2u), xq(xrow, xb + 3u),
                           xq(xrow, xb + 8u), xq(xrow, xb + 9u), xq(xrow, xb + 10u), xq(xrow, xb + 11u));
            let x1 = XUnit(xq(xrow, xb + 4u), xq(xrow, xb + 5u), xq(xrow, xb + 6u), xq(xrow, xb + 7u),
                           xq(xrow, xb + 12u), xq(xrow, xb + 13u), xq(xrow, xb + 14u), xq(xrow, xb + 15u));
            if (ss) {
                x_ss = x_ss + unit_ss(xrow, xb, xb + 8u) + unit_ss(xrow, xb + 4u, xb + 12u);
            }
            let sx = vec2<f32>(dot(x0.a0 + x0.a1 + x0.a2 + x0.a3 + x1.a0 + x1.a1 + x1.a2 + x1.a3, one),
                               dot(x0.b0 + x0.b1 + x0.b2 + x0.b3 + x1.b0 + x1.b1 + x1.b2 + x1.b3, one));
            for (var r = 0u; r < RR; r = r + 1u) {
                acc[r] = acc[r] + q4k_group_dot(rb[r], u, x0, x1, sx);
            }
        }
    } else {
        // STEP 2: blocks u and u + 1 of each row, both loaded before any math; a second unit
        // past the row's end is clamped (read, never counted).
        for (var u = 2u * li; u < p.units; u = u + 2u * LANES) {
            let u1 = min(u + 1u, p.units - 1u);
            let xb = x_base(u);
            let xh = xb + x_hi();
            let xa = XUnit(xq(xrow, xb), xq(xrow, xb + 1u), xq(xrow, xb + 2u), xq(xrow, xb + 3u),
                           xq(xrow, xh), xq(xrow, xh + 1u), xq(xrow, xh + 2u), xq(xrow, xh + 3u));
            let yb = x_base(u1);
            let yh = yb + x_hi();
            let xc = XUnit(xq(xrow, yb), xq(xrow, yb + 1u), xq(xrow, yb + 2u), xq(xrow, yb + 3u),
                           xq(xrow, yh), xq(xrow, yh + 1u), xq(xrow, yh + 2u), xq(xrow, yh + 3u));
            let sa = vec2<f32>(dot(xa.a0 + xa.a1 + xa.a2 + xa.a3, one), dot(xa.b0 + xa.b1 + xa.b2 + xa.b3, one));
            let sc = vec2<f32>(dot(xc.a0 + xc.a1 + xc.a2 + xc.a3, one), dot(xc.b0 + xc.b1 + xc.b2 + xc.b3, one));
            let second = u + 1u < p.units;
            if (ss) {
                x_ss = x_ss + unit_ss(xrow, xb, xh) + select(0.0, unit_ss(xrow, yb, yh), second);
            }
            for (var r = 0u; r < RR; r = r + 1u) {
                let da = fast_dot(rb[r], u, xa, sa);
                let dc = fast_dot(rb[r], u1, xc, sc);
                acc[r] = acc[r] + da + select(0.0, dc, second);
            }
        }
    }
    return acc;
}

// The workgroup's OUTS sums of the row groups' partials: invocation i < OUTS gets output i
// (GROUPS > 1: through workgroup memory, one barrier; GROUPS == 1: wg_sum, every lane gets all).
// Uniform control flow.
// Rows `first .. first + ROWS` of acc (PAIR: 0 the gate rows, ROWS the up rows), summed; with
// `with_ss` (NORM_INLINE) also x_ss across the first group's lanes, returned in the last slot
// of the result (index ROWS).
fn group_sums(acc: array<f32, RR>, first: u32, with_ss: bool, lane: Lane) -> array<f32, ROWS_SS> {
    var out: array<f32, ROWS_SS>;
    if (GROUPS == 1u) {
        for (var r = 0u; r < ROWS; r = r + 1u) {
            out[r] = wg_sum(acc[first + r], lane);
        }
        if (with_ss) {
            out[ROWS] = wg_sum(x_ss, lane);
        }
        return out;
    }
    let grp = lane.index / LANES;
    let li = lane.index % LANES;
    workgroupBarrier(); // a previous round's reads are done
    for (var r = 0u; r < ROWS; r = r + 1u) {
        gf_part[li * (OUTS + 1u) + grp * ROWS + r] = acc[first + r];
    }
    // The spare column OUTS: the first group's sums of squares.
    if (with_ss && grp == 0u) {
        gf_part[li * (OUTS + 1u) + OUTS] = x_ss;
    }
    workgroupBarrier();
    if (lane.index < OUTS) {
        var s = 0.0;
        for (var l = 0u; l < LANES; l = l + 1u) {
            s = s + gf_part[l * (OUTS + 1u) + lane.index];
        }
        out[0] = s;
    }
    if (with_ss) {
        var s = 0.0;
        for (var l = 0u; l < LANES; l = l + 1u) {
            s = s + gf_part[l * (OUTS + 1u) + OUTS];
        }
        out[ROWS] = s;
    }
    return out;
}

// group_sums' result: ROWS sums and the sum of squares.
const ROWS_SS: u32 = ROWS + 1u;

// 1 / rms from a reduced sum of squares (NORM_INLINE).
fn inv_rms(ss: f32) -> f32 {
    return inverseSqrt(ss / f32(p.k) + p.eps);
}

@compute @workgroup_size(WG)
fn gemv_fast(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lane: Lane) {
    let g = wid.x + wid.y * nwg.x;
    if (g >= p.groups_n * p.m) {
        return;
    }
    let mrow = g / p.groups_n;
    let out0 = (g % p.groups_n) * OUTS; // first output row of the workgroup
    let grp = lane.index / LANES;
    let li = lane.index % LANES;
    let row0 = out0 + grp * ROWS;
    let xrow = mrow * (p.k >> 2u);
    var inv = norm_inv(xrow, lane);
    // Rows past the end read the last row (never stored). PAIR (gated MLP): the up rows are n
    // further on, walked in the same pass; out = act(gate) * up.
    var rb: array<u32, RR>;
    for (var r = 0u; r < ROWS; r = r + 1u) {
        rb[r] = row_block(min(row0 + r, p.n - 1u));
        if (PAIR != 0u) {
            rb[ROWS + r] = row_block(min(row0 + r, p.n - 1u) + p.n);
        }
    }
    let inline_ss = NORM && NORM_INLINE;
    let acc = fast_rows(rb, li, xrow, grp == 0u);
    let s = group_sums(acc, 0u, inline_ss, lane);
    if (inline_ss) {
        inv = inv_rms(s[ROWS]);
    }
    var su: array<f32, ROWS_SS>;
    if (PAIR != 0u) {
        su = group_sums(acc, ROWS, false, lane);
    }
    if (GROUPS == 1u) {
        for (var r = 0u; r < ROWS; r = r + 1u) {
            if (lane.index == 0u && row0 + r < p.n) {
                var v = s[r] * inv;
                if (PAIR != 0u) {
                    v = gated(v, su[r] * inv);
                }
                store_out(mrow, row0 + r, v);
            }
        }
    } else if (lane.index < OUTS && out0 + lane.index < p.n) {
        var v = s[0] * inv;
        if (PAIR != 0u) {
            v = gated(v, su[0] * inv);
        }
        store_out(mrow, out0 + lane.index, v);
    }
}

// Fused decode QKV (qkv_epilogue.wgsl is appended): workgroup (h, part) computes the QKV_R rows
// of head h that part `part` of QKV_SPLIT owns (qkv_elem: RoPE pairs, so the rotation stays in
// the workgroup; the whole head when QKV_SPLIT = 1) of the concatenated [q heads | k heads |
// v heads] weight with the norm prologue, adds the bias (stored after the norm weight in nw),
// and hands them to the epilogue (RoPE, q out, KV append). Rounds of OUTS rows: group g
// computes rows g·ROWS .. g·ROWS + ROWS of the round (group_sums: one barrier per round with
// GROUPS > 1). Rows past the workgroup's are read (clamped), never stored.
@compute @workgroup_size(WG)
fn gemv_qkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lane: Lane) {
    let wgi = wid.x + wid.y * nwg.x;
    let hidx = wgi / QKV_SPLIT;
    let part = wgi % QKV_SPLIT;
    if (hidx >= p.n_heads + 2u * p.n_kv_heads) {
        return;
    }
    var inv = norm_inv(0u, lane);
    let grp = lane.index / LANES;
    let li = lane.index % LANES;
    let inline_ss = NORM && NORM_INLINE;
    for (var r0 = 0u; r0 < QKV_R; r0 = r0 + OUTS) {
        var rb: array<u32, RR>;
        for (var r = 0u; r < ROWS; r = r + 1u) {
            rb[r] = row_block(hidx * HD + qkv_elem(part, min(r0 + grp * ROWS + r, QKV_R - 1u)));
        }
        // NORM_INLINE: the first round's first group counts x's squares; every round after
        // already has inv.
        let s = group_sums(fast_rows(rb, li, 0u, r0 == 0u && grp == 0u), 0u, inline_ss && r0 == 0u, lane);
        if (inline_ss && r0 == 0u) {
            inv = inv_rms(s[ROWS]);
        }
        if (GROUPS == 1u) {
            if (lane.index == 0u) {
                for (var r = 0u; r < ROWS; r = r + 1u) {
                    if (r0 + r < QKV_R) {
                        head_buf[r0 + r] = s[r] * inv + qkv_bias(hidx * HD + qkv_elem(part, r0 + r));
                    }
                }
            }
        } else if (lane.index < OUTS && r0 + lane.index < QKV_R) {
            head_buf[r0 + lane.index] = s[0] * inv + qkv_bias(hidx * HD + qkv_elem(part, r0 + lane.index));
        }
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
