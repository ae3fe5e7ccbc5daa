// Tiled matmul for prefill: Y[M, N] = epilogue(X[M, K] · W[N, K]ᵀ), X and Y f32, W f32 / f16 /
// bf16 in the PyTorch Linear layout. linear_common.wgsl is prepended (decoding, epilogue).
//
// matmul_tiled: a workgroup computes a BM x BN tile of Y; each of its
// (BM/TM) * (BN/TN) invocations a TM x TN block in registers (vec4 accumulators). X and W slices of
// BK columns are staged in workgroup memory transposed ([k][m], [k][n]) and converted to f32, so
// the inner loop reads TM/4 + TN/4 vec4s per k for TM * TN FMAs. The staging is double-buffered:
// the next slice is loaded from global memory into registers while the current one is computed,
// then stored to the other buffer; one barrier per slice. An invocation's rows are TM/4 groups of 4
// spaced BM/(TM/4) apart (same for columns) so the vec4 reads of a subgroup hit distinct banks.
// Edge tiles: out-of-range rows / columns / k load zeros and are not stored, so any M, N, K works.
// 16-byte weight loads need rows on 16-byte boundaries (ALIGNED_W: K % CHUNK == 0); otherwise
// weights are read element by element (u32 loads, any K). X likewise (ALIGNED_X: K % 4 == 0).
//
// matmul_tile32: the plain baseline kernel (32x32 tile, one buffer, scalar loads, 2x2 outputs per
// invocation), kept as the benchmark baseline.
//
// Prelude constants: BM, BN, BK, TM, TN, WG (= BM/TM * BN/TN), LA, LB (quads held in registers per
// invocation for X and W slices), UB, QPU (see below), ALIGNED_X, ALIGNED_W, HAS_BIAS, RES, and those of
// linear_common.wgsl. RES: 0 none, 1 + res, 2 + y (in place), 3 * res.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    tiles_n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w4: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> w1: array<u32>;
@group(0) @binding(3) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> x1: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read> res: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;

fn store_output(m: u32, n: u32, v: f32) {
    let i = m * p.n + n;
    var o = v;
    if (HAS_BIAS) {
        o = o + bias[n];
    }
    o = activate(o);
    if (RES == 1u) {
        o = o + res[i];
    } else if (RES == 2u) {
        o = o + y[i];
    } else if (RES == 3u) {
        o = o * res[i];
    }
    y[i] = o;
}

const TX: u32 = BN / TN;
const TY: u32 = BM / TM;
const GM: u32 = TM / 4u;
const GN: u32 = TN / 4u;
// Quads (4 consecutive k of one row) per slice of X. For W the prelude gives UB, the units per
// slice (chunks of CHUNK elements, one vec4<u32> each, when ALIGNED_W, else quads), and QPU, the
// quads per unit.
const QA: u32 = BM * BK / 4u;

var<workgroup> sa: array<vec4<f32>, 2u * BK * BM / 4u>;
var<workgroup> sb: array<vec4<f32>, 2u * BK * BN / 4u>;

// Registers holding the next slice between its global load and its store to workgroup memory.
struct Staged {
    a: array<vec4<f32>, LA>,
    b: array<vec4<f32>, LB>,
}

fn load_x(m: u32, k: u32) -> vec4<f32> {
    if (m >= p.m || k >= p.k) {
        return vec4<f32>(0.0);
    }
    let base = m * p.k + k;
    if (ALIGNED_X) {
        return x4[base / 4u];
    }
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c = c + 1u) {
        if (k + c < p.k) {
            v[c] = x1[base + c];
        }
    }
    return v;
}

fn load_w_quad(n: u32, k: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (n >= p.n) {
        return v;
    }
    let base = n * p.k + k;
    for (var c = 0u; c < 4u; c = c + 1u) {
        if (k + c < p.k) {
            let g = base + c;
            v[c] = decode_one(w1[g / EPW], g % EPW);
        }
    }
    return v;
}

fn load_slice(t: u32, m0: u32, n0: u32, k0: u32) -> Staged {
    var s: Staged;
    for (var i = 0u; i < LA; i = i + 1u) {
        let u = t + i * WG;
        if (u < QA) {
            s.a[i] = load_x(m0 + u / (BK / 4u), k0 + 4u * (u % (BK / 4u)));
        }
    }
    for (var i = 0u; i < LB / QPU; i = i + 1u) {
        let u = t + i * WG;
        if (u < UB) {
            if (ALIGNED_W) {
                let per_row = BK / CHUNK;
                let n = n0 + u / per_row;
                let k = k0 + CHUNK * (u % per_row);
                var c = Chunk(vec4<f32>(0.0), vec4<f32>(0.0));
                if (n < p.n && k < p.k) {
                    c = decode_chunk(w4[(n * p.k + k) / CHUNK]);
                }
                s.b[i * QPU] = c.a;
                if (QPU == 2u) {
                    s.b[i * QPU + 1u] = c.b;
                }
            } else {
                s.b[i] = load_w_quad(n0 + u / (BK / 4u), k0 + 4u * (u % (BK / 4u)));
            }
        }
    }
    return s;
}

// Transposed store of one quad: element c of row r, slice column 4 * kq + c, goes to [k][r].
fn store_quad_a(stage: u32, r: u32, kq: u32, v: vec4<f32>) {
    let base = (stage * BK + 4u * kq) * (BM / 4u) + r / 4u;
    let comp = r % 4u;
    sa[base][comp] = v.x;
    sa[base + BM / 4u][comp] = v.y;
    sa[base + 2u * (BM / 4u)][comp] = v.z;
    sa[base + 3u * (BM / 4u)][comp] = v.w;
}

fn store_quad_b(stage: u32, r: u32, kq: u32, v: vec4<f32>) {
    let base = (stage * BK + 4u * kq) * (BN / 4u) + r / 4u;
    let comp = r % 4u;
    sb[base][comp] = v.x;
    sb[base + BN / 4u][comp] = v.y;
    sb[base + 2u * (BN / 4u)][comp] = v.z;
    sb[base + 3u * (BN / 4u)][comp] = v.w;
}

fn store_slice(t: u32, stage: u32, s: Staged) {
    for (var i = 0u; i < LA; i = i + 1u) {
        let u = t + i * WG;
        if (u < QA) {
            store_quad_a(stage, u / (BK / 4u), u % (BK / 4u), s.a[i]);
        }
    }
    for (var i = 0u; i < LB / QPU; i = i + 1u) {
        let u = t + i * WG;
        if (u < UB) {
            if (ALIGNED_W) {
                let per_row = BK / CHUNK;
                let r = u / per_row;
                let kq = (u % per_row) * QPU;
                store_quad_b(stage, r, kq, s.b[i * QPU]);
                if (QPU == 2u) {
                    store_quad_b(stage, r, kq + 1u, s.b[i * QPU + 1u]);
                }
            } else {
                store_quad_b(stage, u / (BK / 4u), u % (BK / 4u), s.b[i]);
            }
        }
    }
}

@compute @workgroup_size(WG)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let tile = wid.x + wid.y * nwg.x;
    let tm = tile / p.tiles_n;
    let tn = tile % p.tiles_n;
    let m0 = tm * BM;
    let n0 = tn * BN;
    if (m0 >= p.m) {
        return;
    }
    let tx = t % TX;
    let ty = t / TX;

    var acc: array<vec4<f32>, TM * GN>;
    let slices = (p.k + BK - 1u) / BK;
    store_slice(t, 0u, load_slice(t, m0, n0, 0u));
    workgroupBarrier();
    for (var s = 0u; s < slices; s = s + 1u) {
        let cur = s % 2u;
        let more = s + 1u < slices;
        var next: Staged;
        if (more) {
            next = load_slice(t, m0, n0, (s + 1u) * BK);
        }
        let abase = cur * BK * (BM / 4u) + ty;
        let bbase = cur * BK * (BN / 4u) + tx;
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            var a: array<vec4<f32>, GM>;
            var b: array<vec4<f32>, GN>;
            for (var g = 0u; g < GM; g = g + 1u) {
                a[g] = sa[abase + kk * (BM / 4u) + g * TY];
            }
            for (var g = 0u; g < GN; g = g + 1u) {
                b[g] = sb[bbase + kk * (BN / 4u) + g * TX];
            }
            for (var g = 0u; g < GM; g = g + 1u) {
                let av = a[g];
                for (var h = 0u; h < GN; h = h + 1u) {
                    let i = g * 4u * GN + h;
                    acc[i] = fma(vec4<f32>(av.x), b[h], acc[i]);
                    acc[i + GN] = fma(vec4<f32>(av.y), b[h], acc[i + GN]);
                    acc[i + 2u * GN] = fma(vec4<f32>(av.z), b[h], acc[i + 2u * GN]);
                    acc[i + 3u * GN] = fma(vec4<f32>(av.w), b[h], acc[i + 3u * GN]);
                }
            }
        }
        if (more) {
            store_slice(t, 1u - cur, next);
        }
        workgroupBarrier();
    }

    for (var g = 0u; g < GM; g = g + 1u) {
        for (var c = 0u; c < 4u; c = c + 1u) {
            let m = m0 + g * 4u * TY + ty * 4u + c;
            if (m < p.m) {
                for (var h = 0u; h < GN; h = h + 1u) {
                    let n = n0 + h * 4u * TX + tx * 4u;
                    let v = acc[(g * 4u + c) * GN + h];
                    for (var e = 0u; e < 4u; e = e + 1u) {
                        if (n + e < p.n) {
                            store_output(m, n + e, v[e]);
                        }
                    }
                }
            }
        }
    }
}

// ---- baseline: 32x32 tile, single buffer, 256 invocations with 2x2 outputs each.

var<workgroup> ta: array<f32, 1024>;
var<workgroup> tb: array<f32, 1024>;

@compute @workgroup_size(256)
fn matmul_tile32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let tile = wid.x + wid.y * nwg.x;
    let m0 = (tile / p.tiles_n) * 32u;
    let n0 = (tile % p.tiles_n) * 32u;
    if (m0 >= p.m) {
        return;
    }
    let tx = t % 16u;
    let ty = t / 16u;
    var acc = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 = k0 + 32u) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let e = t + i * 256u;
            let r = e / 32u;
            let k = k0 + e % 32u;
            var av = 0.0;
            if (m0 + r < p.m && k < p.k) {
                av = x1[(m0 + r) * p.k + k];
            }
            ta[e] = av;
            var bv = 0.0;
            if (n0 + r < p.n && k < p.k) {
                let g = (n0 + r) * p.k + k;
                bv = decode_one(w1[g / EPW], g % EPW);
            }
            tb[e] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 32u; kk = kk + 1u) {
            let a0 = ta[(ty * 2u) * 32u + kk];
            let a1 = ta[(ty * 2u + 1u) * 32u + kk];
            let b0 = tb[(tx * 2u) * 32u + kk];
            let b1 = tb[(tx * 2u + 1u) * 32u + kk];
            acc = acc + vec4<f32>(a0 * b0, a0 * b1, a1 * b0, a1 * b1);
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + ty * 2u + i / 2u;
        let n = n0 + tx * 2u + i % 2u;
        if (m < p.m && n < p.n) {
            store_output(m, n, acc[i]);
        }
    }
}

// ---- CPU launch shape (SwiftShader, lavapipe): no workgroup memory, no barriers.
//
// On a CPU adapter a workgroup runs on one thread with its invocations emulated in SIMD groups,
// and a barrier splits the kernel into coroutines per group; staging tiles through workgroup
// memory costs more than it saves (caches do that job). Here each invocation computes a CR x CN
// block of Y on its own, reading X and W rows straight from storage, one chunk (CHUNK k values: 8
// for 16-bit weights, 4 for f32) per step into vec4 partial sums, reduced once at the end.
// Invocation g of the dispatch takes block g: blocks are numbered column-major within a row
// block (p.tiles_n = column blocks), so neighbouring invocations share X rows. Rows and columns
// past M / N load the last valid row / column (clamped, no branches in the loop) and are not
// stored. K % CHUNK != 0 (rows not 16-byte aligned) takes a scalar loop over u32 words.
//
// Prelude constants: CR, CN (rows and columns per invocation), CWG (invocations per workgroup).

@compute @workgroup_size(CWG)
fn matmul_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let block = (wid.x + wid.y * nwg.x) * CWG + t;
    let m0 = (block / p.tiles_n) * CR;
    let n0 = (block % p.tiles_n) * CN;
    if (m0 >= p.m) {
        return;
    }
    var xrow: array<u32, CR>;
    var wrow: array<u32, CN>;
    for (var r = 0u; r < CR; r = r + 1u) {
        xrow[r] = min(m0 + r, p.m - 1u) * p.k;
    }
    for (var c = 0u; c < CN; c = c + 1u) {
        wrow[c] = min(n0 + c, p.n - 1u) * p.k;
    }
    var acc: array<vec4<f32>, CR * CN>;
    if (p.k % CHUNK == 0u) {
        for (var k = 0u; k < p.k; k = k + CHUNK) {
            var wa: array<vec4<f32>, CN>;
            var wb: array<vec4<f32>, CN>;
            for (var c = 0u; c < CN; c = c + 1u) {
                let ch = decode_chunk(w4[(wrow[c] + k) / CHUNK]);
                wa[c] = ch.a;
                wb[c] = ch.b;
            }
            for (var r = 0u; r < CR; r = r + 1u) {
                let xa = x4[(xrow[r] + k) / 4u];
                if (DT == DT_F32) {
                    for (var c = 0u; c < CN; c = c + 1u) {
                        acc[r * CN + c] = fma(xa, wa[c], acc[r * CN + c]);
                    }
                } else {
                    let xb = x4[(xrow[r] + k) / 4u + 1u];
                    for (var c = 0u; c < CN; c = c + 1u) {
                        acc[r * CN + c] = fma(xb, wb[c], fma(xa, wa[c], acc[r * CN + c]));
                    }
                }
            }
        }
    } else {
        for (var k = 0u; k < p.k; k = k + 1u) {
            var wv: array<f32, CN>;
            for (var c = 0u; c < CN; c = c + 1u) {
                let g = wrow[c] + k;
                wv[c] = decode_one(w1[g / EPW], g % EPW);
            }
            for (var r = 0u; r < CR; r = r + 1u) {
                let xv = x1[xrow[r] + k];
                for (var c = 0u; c < CN; c = c + 1u) {
                    acc[r * CN + c].x = fma(xv, wv[c], acc[r * CN + c].x);
                }
            }
        }
    }
    for (var r = 0u; r < CR; r = r + 1u) {
        if (m0 + r < p.m) {
            for (var c = 0u; c < CN; c = c + 1u) {
                if (n0 + c < p.n) {
                    let a = acc[r * CN + c];
                    store_output(m0 + r, n0 + c, (a.x + a.y) + (a.z + a.w));
                }
            }
        }
    }
}
