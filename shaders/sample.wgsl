// Token sampling on the GPU (src/ops/sample.rs; CPU reference src/cpu/sample.rs, same arithmetic).
//
// Every entry reads the logits through `logit(i)`: tokens masked out by the optional bitmask
// (bit i % 32 of word i / 32 set = allowed) and NaN logits are excluded; tokens in `seen` (the
// context) get the CTRL repetition penalty (positive logits divided by it, others multiplied).
//
// Greedy (MODE_GREEDY) and plain temperature sampling (MODE_TEMPERATURE) are one argmax over the
// vocabulary: `argmax_partial` (one workgroup per WG * PER tokens) + `argmax_final` (one
// workgroup). Temperature sampling is the Gumbel-max trick: argmax(l + T * g_i) with
// g_i = -log(-log(u_i)) draws token i with probability softmax(l / T)_i exactly; u_i comes from a
// counter-based hash of (seed, step, round, i) in u32 arithmetic, so the same seed gives the same
// ids on every device (up to the last ulp of log / exp). Ties go to the lower index.
//
// `sample_filtered` (one workgroup) adds top-k, min-p and top-p: the kept tokens are a prefix of
// the vocabulary sorted by (logit desc, index asc) (the CPU Sampler's order):
//   top-k: the k first (the k-th key found by a 7-pass radix select over (logit bits, ~index));
//   min-p: w_i = exp((l_i - max) / T) >= min_p;
//   top-p: the mass of the kept top-k tokens ranked before i is < top_p * (their total mass).
// It samples by Gumbel-max among the top-k / min-p survivors and, when top-p binds, rejects a
// draw outside the nucleus and draws again among the tokens ranked before it (each rejection
// shrinks the support and keeps the nucleus inside it, so the accepted draw is exactly the
// nucleus distribution). After MAX_ROUNDS rejections (never seen; ~log2(V) expected at worst) the
// top token is taken.
//
// With 1 <= top_k <= WG the op takes the two-stage path instead (`topk_partial` + `topk_final`,
// at the end of this file): the same steps over the union of per-chunk top-k candidates, with the
// same ids.
//
// The chosen id is written to out_ids[out_index] (the token-id buffer the next step's embedding
// reads) and marked in `seen`; NONE (0xffffffff) when no token is valid.

const NONE: u32 = 0xffffffffu;
const MODE_GREEDY: u32 = 0u;
const MODE_TEMPERATURE: u32 = 1u;
const MAX_ROUNDS: u32 = 64u;

struct Params {
    vocab: u32,
    mode: u32,
    groups: u32,
    use_mask: u32,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    penalty: f32,
    seed_lo: u32,
    seed_hi: u32,
    step: u32,
    out_index: u32,
    use_penalty: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> seen: array<u32>;
@group(0) @binding(3) var<storage, read> mask: array<u32>;
@group(0) @binding(4) var<storage, read_write> partials: array<u32>;
@group(0) @binding(5) var<storage, read_write> out_ids: array<u32>;

var<workgroup> sv: array<f32, WG>;
var<workgroup> si: array<u32, WG>;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> flag: u32;
var<workgroup> chosen: u32;

struct Val {
    l: f32,
    ok: bool,
}

fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn logit(i: u32) -> Val {
    var l = logits[i];
    let bit = 1u << (i & 31u);
    if (p.use_mask != 0u && (mask[i >> 5u] & bit) == 0u) {
        return Val(l, false);
    }
    if (is_nan(l)) {
        return Val(l, false);
    }
    if (p.use_penalty != 0u && (seen[i >> 5u] & bit) != 0u) {
        l = select(l * p.penalty, l / p.penalty, l > 0.0);
    }
    return Val(l, true);
}

// lowbias32 (C. Wellons): a 32-bit integer hash with good avalanche.
fn hash(x: u32) -> u32 {
    var v = x;
    v = v ^ (v >> 16u);
    v = v * 0x7feb352du;
    v = v ^ (v >> 15u);
    v = v * 0x846ca68bu;
    v = v ^ (v >> 16u);
    return v;
}

fn round_key(round: u32) -> u32 {
    return hash(round ^ hash(p.step ^ hash(p.seed_hi ^ hash(p.seed_lo))));
}

// Standard Gumbel noise of token i: u in (0, 1) from 24 random bits, -log(-log(u)).
fn gumbel(key: u32, i: u32) -> f32 {
    let h = hash(hash(i ^ key) ^ 0x9e3779b9u);
    let u = (f32(h >> 8u) + 0.5) * (1.0 / 16777216.0);
    return -log(-log(u));
}

// (v, i) beats (bv, bi): higher value, lower index on ties; NONE never wins.
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    if (i == NONE) {
        return false;
    }
    if (bi == NONE) {
        return true;
    }
    return v > bv || (v == bv && i < bi);
}

// Tree reduction of (sv, si) to slot 0 (call from every invocation).
fn reduce_argmax(lid: u32) {
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s && better(sv[lid + s], si[lid + s], sv[lid], si[lid])) {
            sv[lid] = sv[lid + s];
            si[lid] = si[lid + s];
        }
        workgroupBarrier();
    }
}

fn reduce_sum(lid: u32) {
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            sv[lid] = sv[lid] + sv[lid + s];
            si[lid] = si[lid] + si[lid + s];
        }
        workgroupBarrier();
    }
}

fn emit(id: u32) {
    out_ids[p.out_index] = id;
    if (id != NONE) {
        seen[id >> 5u] = seen[id >> 5u] | (1u << (id & 31u));
    }
}

// The score argmax ranks in the one-pass modes.
fn score(i: u32, key: u32) -> Val {
    let v = logit(i);
    if (p.mode == MODE_TEMPERATURE) {
        return Val(v.l + p.temperature * gumbel(key, i), v.ok);
    }
    return v;
}

@compute @workgroup_size(WG)
fn argmax_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    let key = round_key(0u);
    var bv = 0.0;
    var bi = NONE;
    let base = g * WG * PER;
    for (var k = 0u; k < PER; k = k + 1u) {
        let i = base + k * WG + lid;
        if (i < p.vocab) {
            let c = score(i, key);
            if (c.ok && better(c.l, i, bv, bi)) {
                bv = c.l;
                bi = i;
            }
        }
    }
    sv[lid] = bv;
    si[lid] = bi;
    reduce_argmax(lid);
    if (lid == 0u && g < p.groups) {
        partials[2u * g] = bitcast<u32>(sv[0]);
        partials[2u * g + 1u] = si[0];
    }
}

@compute @workgroup_size(WG)
fn argmax_final(@builtin(local_invocation_index) lid: u32) {
    var bv = 0.0;
    var bi = NONE;
    for (var g = lid; g < p.groups; g = g + WG) {
        let v = bitcast<f32>(partials[2u * g]);
        let i = partials[2u * g + 1u];
        if (better(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    sv[lid] = bv;
    si[lid] = bi;
    reduce_argmax(lid);
    if (lid == 0u) {
        emit(si[0]);
    }
}

// Monotonic u32 key of a float (larger float, larger key).
fn fkey(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Rank key of token i: (fkey(l), ~i in 24 bits); larger = ranked earlier.
fn lo_key(i: u32) -> u32 {
    return (~i) & 0xffffffu;
}

fn key_gt(h: u32, l: u32, ph: u32, pl: u32) -> bool {
    return h > ph || (h == ph && l > pl);
}

// Whether (h, l) agrees with the prefix (ph, pl) on the bits chosen in passes 0..q.
fn matches(h: u32, l: u32, ph: u32, pl: u32, q: u32) -> bool {
    if (q == 0u) {
        return true;
    }
    if (q < 4u) {
        let sh = 32u - 8u * q;
        return (h >> sh) == (ph >> sh);
    }
    if (h != ph) {
        return false;
    }
    if (q == 4u) {
        return true;
    }
    let sh = 24u - 8u * (q - 4u);
    return (l >> sh) == (pl >> sh);
}

fn digit(h: u32, l: u32, q: u32) -> u32 {
    if (q < 4u) {
        return (h >> (24u - 8u * q)) & 255u;
    }
    return (l >> (16u - 8u * (q - 4u))) & 255u;
}

// (l - m) / T <= 0, and 0 for the maximum itself (also when it is infinite).
fn dscore(l: f32, m: f32) -> f32 {
    if (l == m) {
        return 0.0;
    }
    return (l - m) / p.temperature;
}

// exp((l - m) / T): the unnormalised probability.
fn weight(l: f32, m: f32) -> f32 {
    return exp(dscore(l, m));
}

// The workgroup's best token (`better` order) and its logit, and the number of valid tokens, from
// each lane's best (bv, bi) and count; the same for every invocation. Called in uniform control
// flow (it holds barriers).
var<workgroup> top_logit: f32;

struct TopValid {
    top: u32,
    m: f32,
    valid: u32,
}

fn top_and_valid(lid: u32, bv: f32, bi: u32, count: u32) -> TopValid {
    sv[lid] = bv;
    si[lid] = bi;
    reduce_argmax(lid);
    if (lid == 0u) {
        flag = si[0];
        top_logit = sv[0];
    }
    // Both through workgroupUniformLoad: the result is uniform (Chromium checks it at the callers'
    // barriers); top_logit is sv[0], the maximum, unchanged.
    let top = workgroupUniformLoad(&flag);
    let m = workgroupUniformLoad(&top_logit);
    return TopValid(top, m, workgroup_count(lid, count));
}

// The workgroup's total of every lane's `count`, uniform (every lane calls it, in uniform
// control flow; sv / si must be free to reuse).
fn workgroup_count(lid: u32, count: u32) -> u32 {
    sv[lid] = 0.0;
    si[lid] = count;
    reduce_sum(lid);
    if (lid == 0u) {
        flag = si[0];
    }
    return workgroupUniformLoad(&flag);
}

@compute @workgroup_size(WG)
fn sample_filtered(@builtin(local_invocation_index) lid: u32) {
    let n = p.vocab;
    // 1. The maximum and the number of valid tokens.
    var bv = 0.0;
    var bi = NONE;
    var count = 0u;
    for (var i = lid; i < n; i = i + WG) {
        let v = logit(i);
        if (v.ok) {
            count = count + 1u;
            if (better(v.l, i, bv, bi)) {
                bv = v.l;
                bi = i;
            }
        }
    }
    let tv = top_and_valid(lid, bv, bi, count);
    let top = tv.top;
    let m = tv.m;
    let valid = tv.valid;
    if (top == NONE) {
        if (lid == 0u) {
            emit(NONE);
        }
        return;
    }
    // 2. Top-k: the key of the k-th ranked token (radix select, 8 bits a pass).
    var kh = 0u;
    var kl = 0u;
    let use_k = p.top_k > 0u && p.top_k < valid;
    if (use_k) {
        var want = p.top_k;
        for (var q = 0u; q < 7u; q = q + 1u) {
            atomicStore(&hist[lid], 0u);
            workgroupBarrier();
            for (var i = lid; i < n; i = i + WG) {
                let v = logit(i);
                if (v.ok) {
                    let h = fkey(v.l);
                    let l = lo_key(i);
                    if (matches(h, l, kh, kl, q)) {
                        atomicAdd(&hist[digit(h, l, q)], 1u);
                    }
                }
            }
            if (take_digit(lid, q, &want, &kh, &kl)) {
                break;
            }
        }
    }
    // 3. The total weight of the top-k tokens (top-p is relative to it).
    let use_p = p.top_p < 1.0;
    var z = 0.0;
    if (use_p) {
        var acc = 0.0;
        for (var i = lid; i < n; i = i + WG) {
            let v = logit(i);
            if (v.ok && (!use_k || !key_gt(kh, kl, fkey(v.l), lo_key(i)))) {
                acc = acc + weight(v.l, m);
            }
        }
        sv[lid] = acc;
        si[lid] = 0u;
        reduce_sum(lid);
        z = sv[0];
        workgroupBarrier();
    }
    // 4. Draw; reject outside the nucleus and draw again above the rejected token.
    var ph = 0xffffffffu;
    var pl = 0xffffffffu;
    var bounded = false;
    var result = top;
    for (var round = 0u; round < MAX_ROUNDS; round = round + 1u) {
        let key = round_key(round);
        var cv = 0.0;
        var ci = NONE;
        for (var i = lid; i < n; i = i + WG) {
            let v = logit(i);
            if (v.ok) {
                let h = fkey(v.l);
                let l = lo_key(i);
                let in_k = !use_k || !key_gt(kh, kl, h, l);
                let above = !bounded || key_gt(h, l, ph, pl);
                let d = dscore(v.l, m);
                let in_m = p.min_p <= 0.0 || exp(d) >= p.min_p;
                if (in_k && above && in_m) {
                    let s = d + gumbel(key, i);
                    if (better(s, i, cv, ci)) {
                        cv = s;
                        ci = i;
                    }
                }
            }
        }
        sv[lid] = cv;
        si[lid] = ci;
        reduce_argmax(lid);
        if (lid == 0u) {
            flag = si[0];
        }
        let j = workgroupUniformLoad(&flag);
        if (!use_p || j == NONE || j == top) {
            result = select(j, top, j == NONE);
            break;
        }
        // Mass of the kept tokens ranked before j.
        let lj = logit(j).l;
        let jh = fkey(lj);
        let jl = lo_key(j);
        var acc = 0.0;
        for (var i = lid; i < n; i = i + WG) {
            let v = logit(i);
            if (v.ok) {
                let h = fkey(v.l);
                let l = lo_key(i);
                if (key_gt(h, l, jh, jl) && (!use_k || !key_gt(kh, kl, h, l))) {
                    acc = acc + weight(v.l, m);
                }
            }
        }
        sv[lid] = acc;
        si[lid] = 0u;
        reduce_sum(lid);
        if (lid == 0u) {
            flag = select(0u, 1u, sv[0] < p.top_p * z);
        }
        let accept = workgroupUniformLoad(&flag);
        if (accept != 0u) {
            result = j;
            break;
        }
        ph = jh;
        pl = jl;
        bounded = true;
    }
    if (lid == 0u) {
        emit(result);
    }
}

// ---- Two-stage top-k path (1 <= top_k <= K_MAX = WG) --------------------------------------
//
// `topk_partial` (one workgroup per chunk of WG * CPER tokens) writes its chunk's header
// (argmax value bits, argmax index, valid count) at partials[4 g ..] and its local top-k by the
// rank key (logit desc, index asc) as (logit bits, index) pairs at partials[4 groups + 2 (g k + s)]
// (index NONE in the slots a chunk with fewer than k valid tokens leaves). The global top-k is
// inside the union of the local ones. `topk_final` (one workgroup) then does `sample_filtered`'s
// steps over the candidates: max and count from the headers, the k-th key by the same radix
// select, and the survivors (at most k <= WG) go to workgroup memory sorted by index. Every sum
// lane `lid` forms runs over the survivors with index % WG == lid in increasing index order,
// which is exactly the tokens and the order lane `lid` of `sample_filtered` adds, and the tree
// reduction is the same: Z, the top-p masses, the draws and so the ids are bit-identical to
// `sample_filtered`'s.

var<workgroup> slots: atomic<u32>;
var<workgroup> ul: array<f32, WG>;
var<workgroup> ui: array<u32, WG>;
var<workgroup> cl: array<f32, WG>;
var<workgroup> ci: array<u32, WG>;

// Inverse of `fkey`.
fn unkey(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// Radix select step (lane 0 only): the digit d of this pass from `hist`, the rank w still wanted
// inside its bin, and bit 31 set when the bin holds exactly w keys: then every key with the
// chosen prefix is in, the prefix followed by zero bits is the threshold and the select stops
// (with distinct logits usually after 2 or 3 of the 7 passes). `want` < 2^23 (bits 8..30 of `chosen`).
fn pick_digit(want: u32) {
    var cum = 0u;
    var d = 255u;
    var w = want;
    var c = 0u;
    loop {
        c = atomicLoad(&hist[d]);
        if (cum + c >= w || d == 0u) {
            w = w - cum;
            break;
        }
        cum = cum + c;
        d = d - 1u;
    }
    chosen = d | (w << 8u) | select(0u, 0x80000000u, c == w);
}

// After a histogram pass (every lane calls it, in uniform control flow): lane 0 picks the digit
// (`pick_digit`), every lane reads it, the digit joins the prefix (kh, kl) at pass q and `want`
// becomes the rank still wanted inside the chosen bin. True when the select is complete: every
// key with the prefix is in, and the prefix followed by zero bits is the threshold.
fn take_digit(lid: u32, q: u32, want: ptr<function, u32>, kh: ptr<function, u32>, kl: ptr<function, u32>) -> bool {
    workgroupBarrier();
    if (lid == 0u) {
        pick_digit(*want);
    }
    let c = workgroupUniformLoad(&chosen);
    *want = (c >> 8u) & 0x7fffffu;
    let d = c & 255u;
    if (q < 4u) {
        *kh = *kh | (d << (24u - 8u * q));
    } else {
        *kl = *kl | (d << (16u - 8u * (q - 4u)));
    }
    return (c & 0x80000000u) != 0u;
}

@compute @workgroup_size(WG)
fn topk_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    let k = p.top_k;
    let base = g * WG * CPER;
    // fkey of each of this lane's tokens (0 = not valid: every valid key is > 0).
    var hk: array<u32, CPER>;
    var bv = 0.0;
    var bi = NONE;
    var count = 0u;
    for (var t = 0u; t < CPER; t = t + 1u) {
        let i = base + t * WG + lid;
        hk[t] = 0u;
        if (i < p.vocab) {
            let v = logit(i);
            if (v.ok) {
                hk[t] = fkey(v.l);
                count = count + 1u;
                if (better(v.l, i, bv, bi)) {
                    bv = v.l;
                    bi = i;
                }
            }
        }
    }
    if (lid == 0u) {
        atomicStore(&slots, 0u);
    }
    sv[lid] = bv;
    si[lid] = bi;
    reduce_argmax(lid);
    let best_v = sv[0];
    let best_i = si[0];
    workgroupBarrier();
    let valid = workgroup_count(lid, count);
    if (lid == 0u && g < p.groups) {
        partials[4u * g] = bitcast<u32>(best_v);
        partials[4u * g + 1u] = best_i;
        partials[4u * g + 2u] = valid;
        partials[4u * g + 3u] = 0u;
    }
    // The chunk's k-th key (all valid tokens when it has no more than k).
    var kh = 0u;
    var kl = 0u;
    if (k < valid) {
        var want = k;
        for (var q = 0u; q < 7u; q = q + 1u) {
            atomicStore(&hist[lid], 0u);
            workgroupBarrier();
            for (var t = 0u; t < CPER; t = t + 1u) {
                let h = hk[t];
                if (h != 0u) {
                    let l = lo_key(base + t * WG + lid);
                    if (matches(h, l, kh, kl, q)) {
                        atomicAdd(&hist[digit(h, l, q)], 1u);
                    }
                }
            }
            if (take_digit(lid, q, &want, &kh, &kl)) {
                break;
            }
        }
    }
    if (g >= p.groups) {
        return;
    }
    let out = 4u * p.groups + 2u * g * k;
    for (var t = 0u; t < CPER; t = t + 1u) {
        let h = hk[t];
        let i = base + t * WG + lid;
        if (h != 0u && !key_gt(kh, kl, h, lo_key(i))) {
            let s = atomicAdd(&slots, 1u);
            if (s < k) {
                partials[out + 2u * s] = bitcast<u32>(unkey(h));
                partials[out + 2u * s + 1u] = i;
            }
        }
    }
    let written = min(valid, k);
    if (lid >= written && lid < k) {
        partials[out + 2u * lid] = 0u;
        partials[out + 2u * lid + 1u] = NONE;
    }
}

@compute @workgroup_size(WG)
fn topk_final(@builtin(local_invocation_index) lid: u32) {
    let k = p.top_k;
    let cands = p.groups * k;
    let off = 4u * p.groups;
    // 1. The maximum (`better` order, as `sample_filtered`) and the number of valid tokens.
    var bv = 0.0;
    var bi = NONE;
    var count = 0u;
    for (var g = lid; g < p.groups; g = g + WG) {
        let v = bitcast<f32>(partials[4u * g]);
        let i = partials[4u * g + 1u];
        count = count + partials[4u * g + 2u];
        if (better(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    if (lid == 0u) {
        atomicStore(&slots, 0u);
    }
    let tv = top_and_valid(lid, bv, bi, count);
    let top = tv.top;
    let m = tv.m;
    let valid = tv.valid;
    if (top == NONE) {
        if (lid == 0u) {
            emit(NONE);
        }
        return;
    }
    // 2. Top-k: the k-th key among the candidates.
    var kh = 0u;
    var kl = 0u;
    let use_k = k < valid;
    if (use_k) {
        var want = k;
        for (var q = 0u; q < 7u; q = q + 1u) {
            atomicStore(&hist[lid], 0u);
            workgroupBarrier();
            for (var e = lid; e < cands; e = e + WG) {
                let i = partials[off + 2u * e + 1u];
                if (i != NONE) {
                    let h = fkey(bitcast<f32>(partials[off + 2u * e]));
                    let l = lo_key(i);
                    if (matches(h, l, kh, kl, q)) {
                        atomicAdd(&hist[digit(h, l, q)], 1u);
                    }
                }
            }
            if (take_digit(lid, q, &want, &kh, &kl)) {
                break;
            }
        }
    }
    // 3. The survivors (the top-k tokens; all valid ones when they are no more than k), sorted
    // by index.
    for (var e = lid; e < cands; e = e + WG) {
        let i = partials[off + 2u * e + 1u];
        if (i != NONE) {
            let l = bitcast<f32>(partials[off + 2u * e]);
            if (!use_k || !key_gt(kh, kl, fkey(l), lo_key(i))) {
                let s = atomicAdd(&slots, 1u);
                if (s < WG) {
                    ul[s] = l;
                    ui[s] = i;
                }
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        flag = min(atomicLoad(&slots), WG);
    }
    let ns = workgroupUniformLoad(&flag);
    if (lid < ns) {
        let mine = ui[lid];
        var r = 0u;
        for (var s = 0u; s < ns; s = s + 1u) {
            r = r + select(0u, 1u, ui[s] < mine);
        }
        cl[r] = ul[lid];
        ci[r] = mine;
    }
    workgroupBarrier();
    // 4. Their total weight, summed per lane as `sample_filtered` sums it.
    let use_p = p.top_p < 1.0;
    var z = 0.0;
    if (use_p) {
        var acc = 0.0;
        for (var s = 0u; s < ns; s = s + 1u) {
            if ((ci[s] & (WG - 1u)) == lid) {
                acc = acc + weight(cl[s], m);
            }
        }
        sv[lid] = acc;
        si[lid] = 0u;
        reduce_sum(lid);
        z = sv[0];
        workgroupBarrier();
    }
    // 5. Draw, reject, draw above the rejected token (survivor `lid` scored by lane `lid`).
    var ph = 0xffffffffu;
    var pl = 0xffffffffu;
    var bounded = false;
    var result = top;
    for (var round = 0u; round < MAX_ROUNDS; round = round + 1u) {
        let key = round_key(round);
        var cv = 0.0;
        var cix = NONE;
        if (lid < ns) {
            let lv = cl[lid];
            let i = ci[lid];
            let above = !bounded || key_gt(fkey(lv), lo_key(i), ph, pl);
            let d = dscore(lv, m);
            let in_m = p.min_p <= 0.0 || exp(d) >= p.min_p;
            if (above && in_m) {
                cv = d + gumbel(key, i);
                cix = i;
            }
        }
        sv[lid] = cv;
        si[lid] = cix;
        reduce_argmax(lid);
        if (lid == 0u) {
            flag = si[0];
        }
        let j = workgroupUniformLoad(&flag);
        if (!use_p || j == NONE || j == top) {
            result = select(j, top, j == NONE);
            break;
        }
        let lj = logit(j).l;
        let jh = fkey(lj);
        let jl = lo_key(j);
        var acc = 0.0;
        for (var s = 0u; s < ns; s = s + 1u) {
            let i = ci[s];
            if ((i & (WG - 1u)) == lid) {
                let lv = cl[s];
                if (key_gt(fkey(lv), lo_key(i), jh, jl)) {
                    acc = acc + weight(lv, m);
                }
            }
        }
        sv[lid] = acc;
        si[lid] = 0u;
        reduce_sum(lid);
        if (lid == 0u) {
            flag = select(0u, 1u, sv[0] < p.top_p * z);
        }
        let accept = workgroupUniformLoad(&flag);
        if (accept != 0u) {
            result = j;
            break;
        }
        ph = jh;
        pl = jl;
        bounded = true;
    }
    if (lid == 0u) {
        emit(result);
    }
}
