// Fused gated projection for decode: h[n] = act(Wg[n]·x) * (Wu[n]·x) (GATE: 1 SiLU, SwiGLU;
// 2 GELU-tanh, Gemma's GeGLU), with the
// gate and up weights [N, K] (f32 / f16 / bf16, Linear layout) read in the same pass and x f32.
// linear_common.wgsl is prepended (decoding).
//
// swiglu_fused: a workgroup of WG invocations computes ROWS outputs. x is staged in workgroup
// memory in blocks of XT f32 (XT = 8192: 32 KiB, or 4096: 16 KiB, the `SwigluVariant` chosen from
// the device's workgroup-storage limit), laid out so that each invocation's two vec4 reads of a
// chunk are conflict-free (first halves of all chunks, then second halves). Weights are read
// as in gemv_vec4 (16-byte loads, rows realigned when K is not a multiple of the chunk, scalar
// tail). The final reduction reuses the x buffer as scratch, so the kernel's whole workgroup
// storage is exactly XT * 4 bytes: the 32 KiB variant fits a 32 KiB device.
//
// NORM: RMSNorm prologue (x staged times the norm weight, both dot products times 1 / rms(x), the
// sum of squares reduced with the partials).
// STAGE = false: x is not staged; each invocation reads its chunks of x from the buffer (times
// the norm weight) in the dot-product loop, accumulating the sum of squares there (the
// reduction buffer xs is then only the partials' NV * WG vec4).
// Prelude constants: WG (power of two), ROWS, XT, ALIGNED, NORM, NV, GATE, STAGE, and those of
// linear_common.wgsl.

struct Params {
    n: u32,
    k: u32,
    eps: f32,  // NORM: the RMSNorm epsilon
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g4: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> g1: array<u32>;
@group(0) @binding(3) var<storage, read> u4: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> u1: array<u32>;
@group(0) @binding(5) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> x1: array<f32>;
@group(0) @binding(7) var<storage, read_write> h: array<f32>;
// NORM: the RMSNorm weight [K].
@group(0) @binding(8) var<storage, read> nw: array<vec4<f32>>;

var<workgroup> xs: array<vec4<f32>, XT / 4u>;

// The gated output act(g) · u: GATE 1 SiLU, 2 GELU-tanh as x / (1 + exp(-2u)) (gelu.wgsl's tanh
// form; the exponent capped so it never overflows).
fn gated(g: f32, u: f32) -> f32 {
    if (GATE == 2u) {
        let a = 0.7978845608028654 * (g + 0.044715 * g * g * g);
        return g / (1.0 + exp(min(-2.0 * a, 80.0))) * u;
    }
    return g / (1.0 + exp(-g)) * u;
}

// NV (prelude): vec4 slots of partial sums per invocation: gate and up for each row, then (NORM)
// the sum of squares of x: (2 ROWS + NORM + 3) / 4.

// Stage x[kb .. kb + len) (len ≤ XT, the elements the block's full chunks use), times the norm
// weight with NORM; returns this invocation's sum of squares of the raw x it staged.
fn stage_x(kb: u32, len: u32, t: u32) -> f32 {
    var ss = 0.0;
    for (var v = t; v < (len + 3u) / 4u; v = v + WG) {
        let e = kb + 4u * v;
        var val = vec4<f32>(0.0);
        if (e + 4u <= p.k) {
            val = x4[e / 4u];
        } else {
            for (var c = 0u; c < 4u; c = c + 1u) {
                if (e + c < p.k) {
                    val[c] = x1[e + c];
                }
            }
        }
        ss = ss + dot(val, val);
        if (NORM) {
            val = val * nw[e / 4u];
        }
        if (EPW == 2u) {
            xs[(v % 2u) * (XT / 8u) + v / 2u] = val;
        } else {
            xs[v] = val;
        }
    }
    return ss;
}

@compute @workgroup_size(WG)
fn swiglu_fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row0 = (wid.x + wid.y * nwg.x) * ROWS;
    if (row0 >= p.n) {
        return;
    }
    let k = p.k;
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
        let len = min(arrayLength(&g4), arrayLength(&u4));
        let last = q[ROWS - 1u] + 1u;
        nmain = min(nmain, select(0u, len - last, len > last));
    }

    var acc_g: array<f32, ROWS>;
    var acc_u: array<f32, ROWS>;
    var ss = 0.0;
    if (!STAGE) {
        // x read where it is needed (each invocation's chunks are its own: staging shares
        // nothing), the sum of squares of the raw x accumulated on the way: x and the weights
        // are loaded in one round trip, no barrier before the dot products.
        for (var j = t; j < nmain; j = j + WG) {
            var xa: vec4<f32>;
            var xb = vec4<f32>(0.0);
            if (EPW == 2u) {
                xa = x4[2u * j];
                xb = x4[2u * j + 1u];
            } else {
                xa = x4[j];
            }
            ss = ss + dot(xa, xa) + dot(xb, xb);
            if (NORM) {
                if (EPW == 2u) {
                    xa = xa * nw[2u * j];
                    xb = xb * nw[2u * j + 1u];
                } else {
                    xa = xa * nw[j];
                }
            }
            for (var r = 0u; r < ROWS; r = r + 1u) {
                let ga = g4[q[r] + j];
                let ua = u4[q[r] + j];
                var gw = Words(ga, 0u);
                var uw = Words(ua, 0u);
                if (!ALIGNED) {
                    gw = realign(ga, g4[q[r] + j + 1u], ws[r]);
                    uw = realign(ua, u4[q[r] + j + 1u], ws[r]);
                }
                acc_g[r] = acc_g[r] + chunk_dot(gw, odd[r], xa, xb);
                acc_u[r] = acc_u[r] + chunk_dot(uw, odd[r], xa, xb);
            }
        }
    }
    let per_block = XT / CHUNK;
    let blocks = select(0u, (nmain + per_block - 1u) / per_block, STAGE);
    for (var b = 0u; b < blocks; b = b + 1u) {
        workgroupBarrier();
        ss = ss + stage_x(b * XT, min(XT, nmain * CHUNK - b * XT), t);
        workgroupBarrier();
        let c0 = b * per_block;
        let c1 = min(nmain, c0 + per_block);
        for (var j = c0 + t; j < c1; j = j + WG) {
            let jj = j - c0;
            var xa: vec4<f32>;
            var xb = vec4<f32>(0.0);
            if (EPW == 2u) {
                xa = xs[jj];
                xb = xs[XT / 8u + jj];
            } else {
                xa = xs[jj];
            }
            for (var r = 0u; r < ROWS; r = r + 1u) {
                let ga = g4[q[r] + j];
                let ua = u4[q[r] + j];
                var gw = Words(ga, 0u);
                var uw = Words(ua, 0u);
                if (!ALIGNED) {
                    gw = realign(ga, g4[q[r] + j + 1u], ws[r]);
                    uw = realign(ua, u4[q[r] + j + 1u], ws[r]);
                }
                acc_g[r] = acc_g[r] + chunk_dot(gw, odd[r], xa, xb);
                acc_u[r] = acc_u[r] + chunk_dot(uw, odd[r], xa, xb);
            }
        }
    }
    for (var kk = nmain * CHUNK + t; kk < k; kk = kk + WG) {
        var xv = x1[kk];
        ss = ss + xv * xv;
        if (NORM) {
            xv = xv * nw[kk / 4u][kk % 4u];
        }
        for (var r = 0u; r < ROWS; r = r + 1u) {
            let g = e0[r] + kk;
            acc_g[r] = acc_g[r] + decode_one(g1[g / EPW], g % EPW) * xv;
            acc_u[r] = acc_u[r] + decode_one(u1[g / EPW], g % EPW) * xv;
        }
    }

    // Tree reduction of the 2 * ROWS partials in the (no longer needed) x buffer.
    workgroupBarrier();
    for (var v = 0u; v < NV; v = v + 1u) {
        var slot = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c = c + 1u) {
            let i = 4u * v + c;
            if (i < 2u * ROWS) {
                slot[c] = select(acc_u[i / 2u], acc_g[i / 2u], i % 2u == 0u);
            } else if (i == 2u * ROWS) {
                slot[c] = ss;
            }
        }
        xs[v * WG + t] = slot;
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (t < s) {
            for (var v = 0u; v < NV; v = v + 1u) {
                xs[v * WG + t] = xs[v * WG + t] + xs[v * WG + t + s];
            }
        }
        workgroupBarrier();
    }
    if (t < ROWS && row0 + t < p.n) {
        let gi = 2u * t;
        var inv = 1.0;
        if (NORM) {
            let si = 2u * ROWS;
            inv = inverseSqrt(xs[(si / 4u) * WG][si % 4u] / f32(p.k) + p.eps);
        }
        let gate = xs[(gi / 4u) * WG][gi % 4u] * inv;
        let up = xs[((gi + 1u) / 4u) * WG][(gi + 1u) % 4u] * inv;
        h[row0 + t] = gated(gate, up);
    }
}

// x times the norm weight (NORM), read from the storage buffer (swiglu_rows).
fn xn4(i: u32) -> vec4<f32> {
    if (NORM) {
        return x4[i] * nw[i];
    }
    return x4[i];
}

// swiglu_rows: for CPU adapters (SwiftShader, lavapipe), where a workgroup that reaches a barrier
// costs a coroutine per SIMD group. Invocation i of the workgroup computes outputs
// (workgroup · WG + i) · ROWS .. + ROWS whole: both dot products of each row over all of K, x read
// from its buffer (no staging), the norm's sum of squares by the invocation itself. No workgroup
// memory, no barriers.
@compute @workgroup_size(WG)
fn swiglu_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row0 = ((wid.x + wid.y * nwg.x) * WG + t) * ROWS;
    if (row0 >= p.n) {
        return;
    }
    let k = p.k;
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
        let len = min(arrayLength(&g4), arrayLength(&u4));
        let last = q[ROWS - 1u] + 1u;
        nmain = min(nmain, select(0u, len - last, len > last));
    }
    var inv = 1.0;
    if (NORM) {
        var ss4 = vec4<f32>(0.0);
        for (var i = 0u; i < k / 4u; i = i + 1u) {
            let v = x4[i];
            ss4 = ss4 + v * v;
        }
        var ss = (ss4.x + ss4.y) + (ss4.z + ss4.w);
        for (var i = (k / 4u) * 4u; i < k; i = i + 1u) {
            let v = x1[i];
            ss = ss + v * v;
        }
        inv = inverseSqrt(ss / f32(k) + p.eps);
    }

    var acc_g: array<f32, ROWS>;
    var acc_u: array<f32, ROWS>;
    for (var j = 0u; j < nmain; j = j + 1u) {
        var xa: vec4<f32>;
        var xb = vec4<f32>(0.0);
        if (EPW == 2u) {
            xa = xn4(2u * j);
            xb = xn4(2u * j + 1u);
        } else {
            xa = xn4(j);
        }
        for (var r = 0u; r < ROWS; r = r + 1u) {
            let ga = g4[q[r] + j];
            let ua = u4[q[r] + j];
            var gw = Words(ga, 0u);
            var uw = Words(ua, 0u);
            if (!ALIGNED) {
                gw = realign(ga, g4[q[r] + j + 1u], ws[r]);
                uw = realign(ua, u4[q[r] + j + 1u], ws[r]);
            }
            acc_g[r] = acc_g[r] + chunk_dot(gw, odd[r], xa, xb);
            acc_u[r] = acc_u[r] + chunk_dot(uw, odd[r], xa, xb);
        }
    }
    for (var kk = nmain * CHUNK; kk < k; kk = kk + 1u) {
        var xv = x1[kk];
        if (NORM) {
            xv = xv * nw[kk / 4u][kk % 4u];
        }
        for (var r = 0u; r < ROWS; r = r + 1u) {
            let g = e0[r] + kk;
            acc_g[r] = acc_g[r] + decode_one(g1[g / EPW], g % EPW) * xv;
            acc_u[r] = acc_u[r] + decode_one(u1[g / EPW], g % EPW) * xv;
        }
    }
    for (var r = 0u; r < ROWS; r = r + 1u) {
        if (row0 + r < p.n) {
            let gate = acc_g[r] * inv;
            let up = acc_u[r] * inv;
            h[row0 + r] = gated(gate, up);
        }
    }
}
