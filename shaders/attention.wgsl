// Attention (seeds 6, 7, 20). The Rust side prepends common/rope.wgsl (RoPE) and
// attention_rope.wgsl (KV formats).
//
// Layouts: Q [batch, q_len, n_heads, D] and out the same; K / V [batch, kv_rows, n_kv_heads, D]
// in the KV_DTYPE format (f32 activations, or a KV cache in f32 / f16 / int8). Grouped-query
// attention reads kv_head = head / group directly (no repeat_kv copy). Query row r sits at
// position q_pos0 + r; with `causal` it sees keys j <= q_pos0 + r; with a sliding `window` > 0
// only keys j > q_pos0 + r - window (the last `window` positions, its own included: Gemma's,
// Mistral's local layers); every row sees keys j < kv_len (per batch entry when `has_lens`:
// the padding mask).
//
// Entry points:
//   flash_prefill   Flash Attention 2: one workgroup per (BR query rows, head), online softmax in
//                   f32 over BC-key tiles; Q / K chunks, P and V chunks live in workgroup memory,
//                   nothing of size N x N exists anywhere (memory O(N)).
//   decode_partial  flash-decoding: one query per head against a long cache, split into chunks;
//   decode_merge    each chunk gives (max, sum, output) per head, the merge combines them.
//   decode_single   decode while the cache fits one chunk: one workgroup per query head, one
//                   dispatch (see its comment).
//   unfused_scores, unfused_softmax, unfused_pv: the baseline with an N x N score buffer.

struct Params {
    batch: u32,
    q_len: u32,
    kv_len: u32,
    n_heads: u32,
    n_kv_heads: u32,
    group: u32,          // n_heads / n_kv_heads
    q_pos0: u32,
    causal: u32,
    scale_log2: f32,     // softmax scale * log2(e) (scores in base 2); plain scale for the baseline
    kv_batch_stride: u32,// elements per batch entry of K / V
    kv_row_stride: u32,  // elements per key row (n_kv_heads * D)
    has_lens: u32,
    rot: u32,            // RoPE dimensions applied to q in decode (0: none)
    log2_theta: f32,
    n_chunks: u32,       // decode: chunks per head
    chunk: u32,          // decode: keys per chunk
    scale_stride: u32,   // int8: halves per key row in the scale buffers
    neg_inf_bits: u32,   // 0xff800000: -inf at run time (Tint rejects -inf constants)
    window: u32,         // sliding-window span (0: none)
    _pad1: u32,
    rope_scaling: vec4<f32>, // rope_inv_freq's scaling (shaders/common/rope.wgsl)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kbuf: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> vbuf: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> kscale: array<u32>;
@group(0) @binding(5) var<storage, read> vscale: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> scores: array<f32>;
@group(0) @binding(8) var<storage, read_write> part: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> kv_lens: array<f32>;

// Lowest finite f32: the running-max start and the "masked" marker (real scores never get there).
const LOWEST: f32 = -0x1.fffffep+127f;

// ---------------------------------------------------------------------------------------------
// KV loads: four consecutive elements starting at element e (e % 4 == 0) of key row `row`, head
// `kvh`, as f32. Int8 codes are scaled by their row's step here, so nothing is materialised in f32.

fn load_k4(e: u32, row: u32, kvh: u32) -> vec4<f32> {
    if (KV_DTYPE == KV_F32) {
        return bitcast<vec4<f32>>(kbuf[e / 4u]);
    } else if (KV_DTYPE == KV_F16) {
        let w = kbuf[e / 8u];
        let pair = select(w.xy, w.zw, (e & 4u) != 0u);
        return vec4<f32>(unpack2x16float(pair.x), unpack2x16float(pair.y));
    }
    let step = i8_step(kscale[(row * p.scale_stride + kvh) / 2u], kvh);
    return unpack_i8x4(kbuf[e / 16u][(e / 4u) & 3u]) * step;
}

fn load_v4(e: u32, row: u32, kvh: u32) -> vec4<f32> {
    if (KV_DTYPE == KV_F32) {
        return bitcast<vec4<f32>>(vbuf[e / 4u]);
    } else if (KV_DTYPE == KV_F16) {
        let w = vbuf[e / 8u];
        let pair = select(w.xy, w.zw, (e & 4u) != 0u);
        return vec4<f32>(unpack2x16float(pair.x), unpack2x16float(pair.y));
    }
    let step = i8_step(vscale[(row * p.scale_stride + kvh) / 2u], kvh);
    return unpack_i8x4(vbuf[e / 16u][(e / 4u) & 3u]) * step;
}

fn kv_elem(b: u32, row: u32, kvh: u32) -> u32 {
    return b * p.kv_batch_stride + row * p.kv_row_stride + kvh * D;
}

fn q_elem(b: u32, r: u32, h: u32) -> u32 {
    return ((b * p.q_len + r) * p.n_heads + h) * D;
}

fn key_visible(key: u32, row: u32, kv_len: u32) -> bool {
    return key < kv_len && (p.causal == 0u || key <= p.q_pos0 + row) && (p.window == 0u || key + p.window > p.q_pos0 + row);
}

fn kv_len_of(b: u32) -> u32 {
    if (p.has_lens != 0u) {
        return min(p.kv_len, u32(max(kv_lens[b], 0.0)));
    }
    return p.kv_len;
}

// ---------------------------------------------------------------------------------------------
// Tiled attention: BR query rows x BC keys per step, 4 x 4 scores per invocation (TY x TX
// invocations), head dim in chunks of DK for S = Q K^T and V in chunks of VK keys for O += P V.
// Each invocation owns 4 query rows and, of O, DV vec4 column groups tx + TX * j (D padded to
// DP = 4 * TX * DV; the padding columns are zeros and never stored).

const TX: u32 = BC / 4u;
const TY: u32 = BR / 4u;
const WGF: u32 = TX * TY;
const RB4: u32 = BR / 4u + 1u;      // vec4 per row of the transposed Q chunk and of P^T (+1 pad: banks)
const CB4: u32 = BC / 4u + 1u;      // vec4 per row of the transposed K chunk
const DV: u32 = (D + 4u * TX - 1u) / (4u * TX);
const DP4: u32 = DV * TX;           // vec4 per padded V row
const A_K: u32 = DK * RB4;          // offset of K^T in sa
const A_SIZE: u32 = max(DK * (RB4 + CB4), max(BR * TX / 4u, VK * DP4));

// sa: Q^T and K^T chunks while computing S, then the per-row partial maxima / sums, then V chunks.
var<workgroup> sa: array<vec4<f32>, A_SIZE>;
// sp: P^T of the current tile, [BC][RB4] (4 consecutive query rows per vec4).
var<workgroup> sp: array<vec4<f32>, BC * RB4>;

// S tile (log2 units when q_mul = scale * log2 e): rows r0 + 4 ty + i, keys c0 + 4 tx + jj.
// Rows past q_len and keys past kv_len read as zeros. Ends with sa free for reuse.
fn score_tile(b: u32, h: u32, kvh: u32, r0: u32, c0: u32, kv_len: u32, li: u32) -> array<vec4<f32>, 4> {
    let tx = li % TX;
    let ty = li / TX;
    var s: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < D; k0 = k0 + DK) {
        // Each invocation moves 4 x 4 blocks and writes them transposed as whole vec4s (no two
        // invocations write parts of one vec4: some backends emulate that with read-modify-write).
        for (var idx = li; idx < TY * (DK / 4u); idx = idx + WGF) {
            let rb = idx / (DK / 4u);
            let kk = (idx % (DK / 4u)) * 4u;
            var v: array<vec4<f32>, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                let r = r0 + 4u * rb + i;
                if (r < p.q_len) {
                    v[i] = q[(q_elem(b, r, h) + k0 + kk) / 4u] * p.scale_log2;
                }
            }
            for (var c = 0u; c < 4u; c = c + 1u) {
                sa[(kk + c) * RB4 + rb] = vec4<f32>(v[0][c], v[1][c], v[2][c], v[3][c]);
            }
        }
        for (var idx = li; idx < TX * (DK / 4u); idx = idx + WGF) {
            let jb = idx / (DK / 4u);
            let kk = (idx % (DK / 4u)) * 4u;
            var v: array<vec4<f32>, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                let j = c0 + 4u * jb + i;
                if (j < kv_len) {
                    v[i] = load_k4(kv_elem(b, j, kvh) + k0 + kk, j, kvh);
                }
            }
            for (var c = 0u; c < 4u; c = c + 1u) {
                sa[A_K + (kk + c) * CB4 + jb] = vec4<f32>(v[0][c], v[1][c], v[2][c], v[3][c]);
            }
        }
        workgroupBarrier();
        for (var k = 0u; k < DK; k = k + 1u) {
            let qv = sa[k * RB4 + ty];
            let kv = sa[A_K + k * CB4 + tx];
            s[0] = fma(vec4<f32>(qv.x), kv, s[0]);
            s[1] = fma(vec4<f32>(qv.y), kv, s[1]);
            s[2] = fma(vec4<f32>(qv.z), kv, s[2]);
            s[3] = fma(vec4<f32>(qv.w), kv, s[3]);
        }
        workgroupBarrier();
    }
    return s;
}

// O += P V for keys c0 .. c0 + BC (P^T already in sp; keys past kv_len are zeroed in V).
fn pv_tile(o: ptr<function, array<array<vec4<f32>, DV>, 4>>, b: u32, kvh: u32, c0: u32, kv_len: u32, li: u32) {
    let tx = li % TX;
    let ty = li / TX;
    for (var v0 = 0u; v0 < BC; v0 = v0 + VK) {
        workgroupBarrier(); // sp complete; previous users of sa done
        for (var idx = li; idx < VK * DP4; idx = idx + WGF) {
            let j = idx / DP4;
            let e = (idx % DP4) * 4u;
            var v = vec4<f32>(0.0);
            if (e < D && c0 + v0 + j < kv_len) {
                v = load_v4(kv_elem(b, c0 + v0 + j, kvh) + e, c0 + v0 + j, kvh);
            }
            sa[idx] = v;
        }
        workgroupBarrier();
        for (var c = 0u; c < VK; c = c + 1u) {
            let pv = sp[(v0 + c) * RB4 + ty];
            for (var j = 0u; j < DV; j = j + 1u) {
                let vv = sa[c * DP4 + tx + TX * j];
                (*o)[0][j] = fma(vec4<f32>(pv.x), vv, (*o)[0][j]);
                (*o)[1][j] = fma(vec4<f32>(pv.y), vv, (*o)[1][j]);
                (*o)[2][j] = fma(vec4<f32>(pv.z), vv, (*o)[2][j]);
                (*o)[3][j] = fma(vec4<f32>(pv.w), vv, (*o)[3][j]);
            }
        }
    }
    workgroupBarrier(); // sa free again
}

// Sum (or max) of the TX partials of each of this invocation's 4 rows, exchanged through sa.
fn row_combine(v: vec4<f32>, li: u32, is_max: bool) -> vec4<f32> {
    let tx = li % TX;
    let ty = li / TX;
    sa[tx * TY + ty] = v;
    workgroupBarrier();
    var r = select(vec4<f32>(0.0), vec4<f32>(LOWEST), is_max);
    for (var c = 0u; c < TX; c = c + 1u) {
        let x = sa[c * TY + ty];
        r = select(r + x, max(r, x), is_max);
    }
    workgroupBarrier();
    return r;
}

fn tile_coords(linear: u32) -> vec4<u32> {
    // (query tile, head, batch): the last query tiles (most keys under a causal mask) first.
    let q_tiles = (p.q_len + BR - 1u) / BR;
    let qt = q_tiles - 1u - linear % q_tiles;
    let bh = linear / q_tiles;
    return vec4<u32>(qt, bh % p.n_heads, bh / p.n_heads, q_tiles);
}

@compute @workgroup_size(WGF)
fn flash_prefill(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let linear = wid.x + wid.y * nwg.x;
    let tc = tile_coords(linear);
    if (linear >= tc.w * p.n_heads * p.batch) {
        return;
    }
    let h = tc.y;
    let b = tc.z;
    let kvh = h / p.group;
    let r0 = tc.x * BR;
    let tx = li % TX;
    let ty = li / TX;
    let kv_len = kv_len_of(b);
    var kv_end = kv_len;
    if (p.causal != 0u) {
        kv_end = min(kv_end, p.q_pos0 + min(r0 + BR, p.q_len));
    }
    var o: array<array<vec4<f32>, DV>, 4>;
    var m = vec4<f32>(LOWEST);
    var l = vec4<f32>(0.0);
    for (var c0 = 0u; c0 < kv_end; c0 = c0 + BC) {
        var s = score_tile(b, h, kvh, r0, c0, kv_len, li);
        // Mask only where the tile can reach past kv_len or above the diagonal.
        if (c0 + BC > kv_len || (p.causal != 0u && c0 + BC > p.q_pos0 + r0 + 1u) || p.window != 0u) {
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var jj = 0u; jj < 4u; jj = jj + 1u) {
                    if (!key_visible(c0 + 4u * tx + jj, r0 + 4u * ty + i, kv_len)) {
                        s[i][jj] = LOWEST;
                    }
                }
            }
        }
        var local_max: vec4<f32>;
        for (var i = 0u; i < 4u; i = i + 1u) {
            local_max[i] = max(max(s[i].x, s[i].y), max(s[i].z, s[i].w));
        }
        let m_new = max(m, row_combine(local_max, li, true));
        let alpha = exp2(m - m_new);
        m = m_new;
        var pt: array<vec4<f32>, 4>;
        for (var i = 0u; i < 4u; i = i + 1u) {
            let pr = select(exp2(s[i] - vec4<f32>(m_new[i])), vec4<f32>(0.0), s[i] <= vec4<f32>(LOWEST));
            pt[i] = pr;
            l[i] = l[i] * alpha[i] + (pr.x + pr.y) + (pr.z + pr.w);
            for (var j = 0u; j < DV; j = j + 1u) {
                o[i][j] = o[i][j] * alpha[i];
            }
        }
        for (var jj = 0u; jj < 4u; jj = jj + 1u) {
            sp[(4u * tx + jj) * RB4 + ty] = vec4<f32>(pt[0][jj], pt[1][jj], pt[2][jj], pt[3][jj]);
        }
        pv_tile(&o, b, kvh, c0, kv_len, li);
    }
    let total = row_combine(l, li, false);
    let inv = select(vec4<f32>(0.0), vec4<f32>(1.0) / total, total > vec4<f32>(0.0));
    for (var i = 0u; i < 4u; i = i + 1u) {
        let r = r0 + 4u * ty + i;
        if (r < p.q_len) {
            let base = q_elem(b, r, h) / 4u;
            for (var j = 0u; j < DV; j = j + 1u) {
                let c = tx + TX * j;
                if (c < D / 4u) {
                    out[base + c] = o[i][j] * inv[i];
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Unfused baseline: scores [batch, n_heads, q_len, kv_len] = scale * Q K^T with -inf where
// masked, an in-place row softmax, then O = P V. Same tiles as flash_prefill, so the comparison
// measures the N x N round trips, not a different inner loop.

@compute @workgroup_size(WGF)
fn unfused_scores(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let kv_tiles = (p.kv_len + BC - 1u) / BC;
    let linear = wid.x + wid.y * nwg.x;
    let q_tiles = (p.q_len + BR - 1u) / BR;
    if (linear >= kv_tiles * q_tiles * p.n_heads * p.batch) {
        return;
    }
    let c0 = (linear % kv_tiles) * BC;
    let tc = tile_coords(linear / kv_tiles);
    let h = tc.y;
    let b = tc.z;
    let r0 = tc.x * BR;
    let tx = li % TX;
    let ty = li / TX;
    let kv_len = kv_len_of(b);
    let s = score_tile(b, h, h / p.group, r0, c0, kv_len, li);
    let neg_inf = bitcast<f32>(p.neg_inf_bits);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let r = r0 + 4u * ty + i;
        if (r < p.q_len) {
            let base = ((b * p.n_heads + h) * p.q_len + r) * p.kv_len;
            for (var jj = 0u; jj < 4u; jj = jj + 1u) {
                let c = c0 + 4u * tx + jj;
                if (c < p.kv_len) {
                    scores[base + c] = select(neg_inf, s[i][jj], key_visible(c, r, kv_len));
                }
            }
        }
    }
}

// In-place row softmax (the baseline cannot afford a second N x N buffer). -inf gives 0; a fully
// masked row gives zeros.
@compute @workgroup_size(WG)
fn unfused_softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lane: Lane) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.batch * p.n_heads * p.q_len) {
        return;
    }
    let base = row * p.kv_len;
    var m = LOWEST;
    for (var i = lane.index; i < p.kv_len; i = i + WG) {
        m = max(m, scores[base + i]);
    }
    let row_max = wg_max(m, lane);
    var s = 0.0;
    for (var i = lane.index; i < p.kv_len; i = i + WG) {
        let v = scores[base + i];
        if (v >= LOWEST) {
            s = s + exp(v - row_max);
        }
    }
    let total = wg_sum(s, lane);
    let inv = select(0.0, 1.0 / total, total > 0.0);
    for (var i = lane.index; i < p.kv_len; i = i + WG) {
        let v = scores[base + i];
        scores[base + i] = select(0.0, exp(v - row_max) * inv, v >= LOWEST);
    }
}

@compute @workgroup_size(WGF)
fn unfused_pv(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let linear = wid.x + wid.y * nwg.x;
    let tc = tile_coords(linear);
    if (linear >= tc.w * p.n_heads * p.batch) {
        return;
    }
    let h = tc.y;
    let b = tc.z;
    let kvh = h / p.group;
    let r0 = tc.x * BR;
    let tx = li % TX;
    let ty = li / TX;
    let kv_len = kv_len_of(b);
    var o: array<array<vec4<f32>, DV>, 4>;
    for (var c0 = 0u; c0 < p.kv_len; c0 = c0 + BC) {
        // P^T tile from the score buffer, 4 x 4 blocks per invocation.
        for (var idx = li; idx < TY * TX; idx = idx + WGF) {
            let rb = idx / TX;
            let cb = idx % TX;
            var v: array<vec4<f32>, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                let r = r0 + 4u * rb + i;
                if (r < p.q_len) {
                    let base = ((b * p.n_heads + h) * p.q_len + r) * p.kv_len;
                    for (var c = 0u; c < 4u; c = c + 1u) {
                        let j = c0 + 4u * cb + c;
                        if (j < p.kv_len) {
                            v[i][c] = scores[base + j];
                        }
                    }
                }
            }
            for (var c = 0u; c < 4u; c = c + 1u) {
                sp[(4u * cb + c) * RB4 + rb] = vec4<f32>(v[0][c], v[1][c], v[2][c], v[3][c]);
            }
        }
        pv_tile(&o, b, kvh, c0, kv_len, li);
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let r = r0 + 4u * ty + i;
        if (r < p.q_len) {
            let base = q_elem(b, r, h) / 4u;
            for (var j = 0u; j < DV; j = j + 1u) {
                let c = tx + TX * j;
                if (c < D / 4u) {
                    out[base + c] = o[i][j];
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decode (flash-decoding). One workgroup per (chunk of keys, kv head, group of up to HG query
// heads sharing that kv head): the cache chunk is read once for all of them.
// Phase 1: one invocation per key computes the HG scores (q in workgroup memory, broadcast).
// Chunk max and sum per head by a tree in workgroup memory. Phase 2: invocation (w, kg) owns
// elements 4w..4w+3 of every head's output for the keys kg, kg + KG, ...; the KG partial outputs
// are summed through workgroup memory. Partial (max, sum, output) go to `part`, or straight to
// `out` when there is one chunk.

const DW: u32 = D / 4u;
const KG: u32 = WGD / DW;
const CMAX: u32 = WGD * KPT;

var<workgroup> dq: array<vec4<f32>, HG * DW>;   // scaled (and rotated) q; later the output sums
var<workgroup> dsc: array<f32, HG * CMAX>;       // scores, then probabilities
var<workgroup> dred: array<f32, HG * WGD>;

// Tree max / sum of dred[g * WGD + i] over i, for all HG heads at once; result in dred[g * WGD].
fn dred_tree(li: u32, is_max: bool) {
    workgroupBarrier();
    for (var s = WGD / 2u; s > 0u; s = s >> 1u) {
        for (var idx = li; idx < HG * s; idx = idx + WGD) {
            let g = idx / s;
            let i = g * WGD + idx % s;
            if (is_max) {
                dred[i] = max(dred[i], dred[i + s]);
            } else {
                dred[i] = dred[i] + dred[i + s];
            }
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WGD)
fn decode_partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let linear = wid.x + wid.y * nwg.x;
    let n_hg = (p.group + HG - 1u) / HG;
    if (linear >= p.n_chunks * p.n_kv_heads * n_hg) {
        return;
    }
    let chunk = linear % p.n_chunks;
    let rest = linear / p.n_chunks;
    let hg = rest % n_hg;
    let kvh = rest / n_hg;
    let g0 = hg * HG;
    let ng = min(HG, p.group - g0);
    let h0 = kvh * p.group + g0;
    let j0 = chunk * p.chunk;
    let nk = min(p.chunk, p.kv_len - j0);

    for (var idx = li; idx < HG * DW; idx = idx + WGD) {
        let g = idx / DW;
        let w = idx % DW;
        var x = vec4<f32>(0.0);
        if (g < ng) {
            let qb = (h0 + g) * D;
            x = q[qb / 4u + w];
            if (p.rot > 0u) {
                for (var c = 0u; c < 4u; c = c + 1u) {
                    let e = 4u * w + c;
                    let pe = rope_partner(e, p.rot);
                    x[c] = rope_apply(e, x[c], q[(qb + pe) / 4u][pe % 4u], p.q_pos0, p.rot, p.log2_theta, p.rope_scaling);
                }
            }
        }
        dq[idx] = x * p.scale_log2;
    }
    workgroupBarrier();

    // Phase 1: scores, one key per invocation.
    var mloc: array<f32, HG>;
    for (var g = 0u; g < HG; g = g + 1u) {
        mloc[g] = LOWEST;
    }
    for (var kk = 0u; kk < KPT; kk = kk + 1u) {
        let jl = li + kk * WGD;
        var s: array<f32, HG>;
        if (jl < nk && (p.window == 0u || j0 + jl + p.window > p.q_pos0)) {
            let j = j0 + jl;
            let e0 = kv_elem(0u, j, kvh);
            if (KV_DTYPE == KV_F32) {
                for (var w = 0u; w < DW; w = w + 1u) {
                    let kv = bitcast<vec4<f32>>(kbuf[e0 / 4u + w]);
                    for (var g = 0u; g < HG; g = g + 1u) {
                        s[g] = s[g] + dot(dq[g * DW + w], kv);
                    }
                }
            } else if (KV_DTYPE == KV_F16) {
                for (var w = 0u; w < D / 8u; w = w + 1u) {
                    let raw = kbuf[e0 / 8u + w];
                    let a = vec4<f32>(unpack2x16float(raw.x), unpack2x16float(raw.y));
                    let c = vec4<f32>(unpack2x16float(raw.z), unpack2x16float(raw.w));
                    for (var g = 0u; g < HG; g = g + 1u) {
                        s[g] = s[g] + dot(dq[g * DW + 2u * w], a) + dot(dq[g * DW + 2u * w + 1u], c);
                    }
                }
            } else {
                for (var w = 0u; w < D / 16u; w = w + 1u) {
                    let raw = kbuf[e0 / 16u + w];
                    let a = unpack_i8x4(raw.x);
                    let c = unpack_i8x4(raw.y);
                    let d = unpack_i8x4(raw.z);
                    let f = unpack_i8x4(raw.w);
                    for (var g = 0u; g < HG; g = g + 1u) {
                        let qg = g * DW + 4u * w;
                        s[g] = s[g] + (dot(dq[qg], a) + dot(dq[qg + 1u], c)) + (dot(dq[qg + 2u], d) + dot(dq[qg + 3u], f));
                    }
                }
                let step = i8_step(kscale[(j * p.scale_stride + kvh) / 2u], kvh);
                for (var g = 0u; g < HG; g = g + 1u) {
                    s[g] = s[g] * step;
                }
            }
            for (var g = 0u; g < HG; g = g + 1u) {
                dsc[g * CMAX + jl] = s[g];
                mloc[g] = max(mloc[g], s[g]);
            }
        } else {
            for (var g = 0u; g < HG; g = g + 1u) {
                dsc[g * CMAX + jl] = LOWEST;
            }
        }
    }
    for (var g = 0u; g < HG; g = g + 1u) {
        dred[g * WGD + li] = mloc[g];
    }
    dred_tree(li, true);
    var mh: array<f32, HG>;
    for (var g = 0u; g < HG; g = g + 1u) {
        mh[g] = dred[g * WGD];
    }
    var lsum: array<f32, HG>;
    for (var kk = 0u; kk < KPT; kk = kk + 1u) {
        let jl = li + kk * WGD;
        for (var g = 0u; g < HG; g = g + 1u) {
            let v = dsc[g * CMAX + jl];
            let pr = select(exp2(v - mh[g]), 0.0, v <= LOWEST);
            dsc[g * CMAX + jl] = pr;
            lsum[g] = lsum[g] + pr;
        }
    }
    workgroupBarrier(); // every invocation has read the maxima out of dred
    for (var g = 0u; g < HG; g = g + 1u) {
        dred[g * WGD + li] = lsum[g];
    }
    dred_tree(li, false); // its barriers also publish the probabilities in dsc

    // Phase 2: O = P V over the chunk.
    let w = li % DW;
    let kg = li / DW;
    var o: array<vec4<f32>, HG>;
    if (kg < KG) {
        for (var jl = kg; jl < nk; jl = jl + KG) {
            let j = j0 + jl;
            let v = load_v4(kv_elem(0u, j, kvh) + 4u * w, j, kvh);
            for (var g = 0u; g < HG; g = g + 1u) {
                o[g] = fma(vec4<f32>(dsc[g * CMAX + jl]), v, o[g]);
            }
        }
    }
    for (var step = 0u; step < KG; step = step + 1u) {
        if (kg == step) {
            for (var g = 0u; g < HG; g = g + 1u) {
                if (step == 0u) {
                    dq[g * DW + w] = o[g];
                } else {
                    dq[g * DW + w] = dq[g * DW + w] + o[g];
                }
            }
        }
        workgroupBarrier();
    }
    for (var idx = li; idx < HG * DW; idx = idx + WGD) {
        let g = idx / DW;
        let wi = idx % DW;
        if (g < ng) {
            let h = h0 + g;
            let total = dred[g * WGD];
            if (p.n_chunks == 1u) {
                out[h * DW + wi] = select(vec4<f32>(0.0), dq[idx] / total, total > 0.0);
            } else {
                part[(h * p.n_chunks + chunk) * DW + wi] = dq[idx];
                if (wi == 0u) {
                    part[p.n_heads * p.n_chunks * DW + h * p.n_chunks + chunk] = vec4<f32>(mh[g], total, 0.0, 0.0);
                }
            }
        }
    }
}

@compute @workgroup_size(64)
fn decode_merge(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let h = wid.x + wid.y * nwg.x;
    if (h >= p.n_heads) {
        return;
    }
    let ml0 = p.n_heads * p.n_chunks * DW + h * p.n_chunks;
    var mx = LOWEST;
    for (var c = 0u; c < p.n_chunks; c = c + 1u) {
        mx = max(mx, part[ml0 + c].x);
    }
    var total = 0.0;
    for (var c = 0u; c < p.n_chunks; c = c + 1u) {
        let ml = part[ml0 + c];
        total = total + ml.y * exp2(ml.x - mx);
    }
    let inv = select(0.0, 1.0 / total, total > 0.0);
    for (var w = li; w < DW; w = w + 64u) {
        var acc = vec4<f32>(0.0);
        for (var c = 0u; c < p.n_chunks; c = c + 1u) {
            acc = fma(vec4<f32>(exp2(part[ml0 + c].x - mx)), part[(h * p.n_chunks + c) * DW + w], acc);
        }
        out[h * DW + w] = acc * inv;
    }
}

// ---------------------------------------------------------------------------------------------
// decode_single: decode attention while the cache fits one chunk (one dispatch, no merge): one
// workgroup of WGD invocations per query head, writing `out` itself. Beside decode_partial
// (HG = 1, n_chunks = 1) it differs in phase 2, which bounded it: an invocation owns 8
// consecutive output elements (one vec4<u32> of f16 codes, two of f32, two words of int8) of the
// keys kg, kg + SKG, ... (SKG = WGD / (D / 8) key groups), with four keys' loads issued before
// their FMAs, and the SKG partial outputs are summed by a tree (log2 SKG barriers) instead of
// SKG serial steps. Phase 1 (scores, one key per invocation and KPT round) and the softmax are
// decode_partial's. Needs D % 8 == 0.

const S8: u32 = max(D / 8u, 1u);    // invocations per key row in phase 2
const SKG: u32 = max(WGD / S8, 1u); // key groups in phase 2

var<workgroup> sq: array<vec4<f32>, D / 4u>;
var<workgroup> ssc: array<f32, WGD * KPT>;
var<workgroup> sred: array<f32, WGD>;
var<workgroup> spv: array<vec4<f32>, 2u * WGD>;

// Tree max / sum of sred[i] over i; the result in sred[0].
fn sred_tree(li: u32, is_max: bool) {
    workgroupBarrier();
    for (var s = WGD / 2u; s > 0u; s = s >> 1u) {
        if (li < s) {
            if (is_max) {
                sred[li] = max(sred[li], sred[li + s]);
            } else {
                sred[li] = sred[li] + sred[li + s];
            }
        }
        workgroupBarrier();
    }
}

// Elements e .. e + 8 (e % 8 == 0) of V row `row`, head `kvh`, as f32.
fn load_v8(e: u32, row: u32, kvh: u32) -> array<vec4<f32>, 2> {
    if (KV_DTYPE == KV_F32) {
        return array<vec4<f32>, 2>(bitcast<vec4<f32>>(vbuf[e / 4u]), bitcast<vec4<f32>>(vbuf[e / 4u + 1u]));
    } else if (KV_DTYPE == KV_F16) {
        let w = vbuf[e / 8u];
        return array<vec4<f32>, 2>(
            vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)),
            vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w))
        );
    }
    let step = i8_step(vscale[(row * p.scale_stride + kvh) / 2u], kvh);
    let w = vbuf[e / 16u];
    let hi = (e & 8u) != 0u;
    return array<vec4<f32>, 2>(
        unpack_i8x4(select(w.x, w.z, hi)) * step,
        unpack_i8x4(select(w.y, w.w, hi)) * step
    );
}

@compute @workgroup_size(WGD)
fn decode_single(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let h = wid.x + wid.y * nwg.x;
    if (h >= p.n_heads) {
        return;
    }
    let kvh = h / p.group;
    let nk = min(p.chunk, p.kv_len);

    for (var w = li; w < D / 4u; w = w + WGD) {
        let qb = h * D;
        var x = q[qb / 4u + w];
        if (p.rot > 0u) {
            for (var c = 0u; c < 4u; c = c + 1u) {
                let e = 4u * w + c;
                let pe = rope_partner(e, p.rot);
                x[c] = rope_apply(e, x[c], q[(qb + pe) / 4u][pe % 4u], p.q_pos0, p.rot, p.log2_theta, p.rope_scaling);
            }
        }
        sq[w] = x * p.scale_log2;
    }
    workgroupBarrier();

    // Phase 1: scores, one key per invocation and round (decode_partial's arithmetic).
    var mloc = LOWEST;
    for (var kk = 0u; kk < KPT; kk = kk + 1u) {
        let j = li + kk * WGD;
        var s = 0.0;
        if (j < nk && (p.window == 0u || j + p.window > p.q_pos0)) {
            let e0 = kv_elem(0u, j, kvh);
            if (KV_DTYPE == KV_F32) {
                for (var w = 0u; w < D / 4u; w = w + 1u) {
                    s = s + dot(sq[w], bitcast<vec4<f32>>(kbuf[e0 / 4u + w]));
                }
            } else if (KV_DTYPE == KV_F16) {
                for (var w = 0u; w < D / 8u; w = w + 1u) {
                    let raw = kbuf[e0 / 8u + w];
                    let a = vec4<f32>(unpack2x16float(raw.x), unpack2x16float(raw.y));
                    let c = vec4<f32>(unpack2x16float(raw.z), unpack2x16float(raw.w));
                    s = s + dot(sq[2u * w], a) + dot(sq[2u * w + 1u], c);
                }
            } else {
                for (var w = 0u; w < D / 16u; w = w + 1u) {
                    let raw = kbuf[e0 / 16u + w];
                    s = s + (dot(sq[4u * w], unpack_i8x4(raw.x)) + dot(sq[4u * w + 1u], unpack_i8x4(raw.y)))
                          + (dot(sq[4u * w + 2u], unpack_i8x4(raw.z)) + dot(sq[4u * w + 3u], unpack_i8x4(raw.w)));
                }
                s = s * i8_step(kscale[(j * p.scale_stride + kvh) / 2u], kvh);
            }
            ssc[j] = s;
            mloc = max(mloc, s);
        } else {
            ssc[j] = LOWEST;
        }
    }
    sred[li] = mloc;
    sred_tree(li, true);
    let mh = sred[0];
    var lsum = 0.0;
    for (var kk = 0u; kk < KPT; kk = kk + 1u) {
        let j = li + kk * WGD;
        let v = ssc[j];
        let pr = select(exp2(v - mh), 0.0, v <= LOWEST);
        ssc[j] = pr;
        lsum = lsum + pr;
    }
    workgroupBarrier(); // every invocation has read the maximum out of sred
    sred[li] = lsum;
    sred_tree(li, false); // its barriers also publish the probabilities in ssc
    let total = sred[0];

    // Phase 2: O = P V, 8 elements of the keys kg, kg + SKG, ... per invocation.
    let w8 = li % S8;
    let kg = li / S8;
    var o0 = vec4<f32>(0.0);
    var o1 = vec4<f32>(0.0);
    if (kg < SKG) {
        let e = kvh * D + 8u * w8;
        var j = kg;
        for (; j + 3u * SKG < nk; j = j + 4u * SKG) {
            let va = load_v8(j * p.kv_row_stride + e, j, kvh);
            let vb = load_v8((j + SKG) * p.kv_row_stride + e, j + SKG, kvh);
            let vc = load_v8((j + 2u * SKG) * p.kv_row_stride + e, j + 2u * SKG, kvh);
            let vd = load_v8((j + 3u * SKG) * p.kv_row_stride + e, j + 3u * SKG, kvh);
            let pa = vec4<f32>(ssc[j]);
            let pb = vec4<f32>(ssc[j + SKG]);
            let pc = vec4<f32>(ssc[j + 2u * SKG]);
            let pd = vec4<f32>(ssc[j + 3u * SKG]);
            o0 = fma(pd, vd[0], fma(pc, vc[0], fma(pb, vb[0], fma(pa, va[0], o0))));
            o1 = fma(pd, vd[1], fma(pc, vc[1], fma(pb, vb[1], fma(pa, va[1], o1))));
        }
        for (; j < nk; j = j + SKG) {
            let v = load_v8(j * p.kv_row_stride + e, j, kvh);
            let pj = vec4<f32>(ssc[j]);
            o0 = fma(pj, v[0], o0);
            o1 = fma(pj, v[1], o1);
        }
    }
    // Tree over the key groups: slots [kg][w8] (two vec4 each).
    spv[2u * li] = o0;
    spv[2u * li + 1u] = o1;
    workgroupBarrier();
    for (var s = SKG / 2u; s > 0u; s = s >> 1u) {
        if (kg < s) {
            let other = 2u * (li + s * S8);
            spv[2u * li] = spv[2u * li] + spv[other];
            spv[2u * li + 1u] = spv[2u * li + 1u] + spv[other + 1u];
        }
        workgroupBarrier();
    }
    if (kg == 0u) {
        out[h * (D / 4u) + 2u * w8] = select(vec4<f32>(0.0), spv[2u * w8] / total, total > 0.0);
        out[h * (D / 4u) + 2u * w8 + 1u] = select(vec4<f32>(0.0), spv[2u * w8 + 1u] / total, total > 0.0);
    }
}
