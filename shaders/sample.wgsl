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
// By default the op takes a two-stage path instead (`topk_partial`, one workgroup per chunk,
// + `topk_final` for 1 <= top_k <= WG, `topp_final` otherwise; at the end of this file): the same
// steps (`filtered`) over per-chunk candidates where those decide exactly, with the same ids.
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
    cand_k: u32,
    tail_stats: u32,
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
// u in (0, 1) from 23 bits: (2^23 - 1 + 0.5) · 2^-23 = 1 - 2^-24 < 1 (24 bits rounded the top
// value to exactly 1 and gave +inf once in 2^24 tokens). -log(u) is kept ≥ 2^-24: WGSL's log
// near 1 has an absolute error bound of 2^-21, so log(1 - 2^-24) may be 0 on a GPU.
fn gumbel(key: u32, i: u32) -> f32 {
    let h = hash(hash(i ^ key) ^ 0x9e3779b9u);
    let u = (f32(h >> 9u) + 0.5) * (1.0 / 8388608.0);
    return -log(max(-log(u), 1.0 / 16777216.0));
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
    if (tv.top == NONE) {
        if (lid == 0u) {
            emit(NONE);
        }
        return;
    }
    filtered(lid, tv, Src(false, 0u, 0u), 0.0, 0.0);
}

// ---- The filtered draw's steps (`sample_filtered` and `topp_final`) -------------------------
//
// Each step reads "items": with `Src.on` false the whole vocabulary (item e = token e, lane `lid`
// takes the tokens i = lid (mod WG) in increasing order), with it true the candidates of the
// two-stage paths above the key (th, tl) (see `topk_partial`).

// Where the two-stage paths' candidates live in `partials`: a header of HDR words per chunk, then
// cand_k (logit, index) pairs per chunk, then one word per chunk and lane.
const HDR: u32 = 8u;

fn pairs_at() -> u32 {
    return HDR * p.groups;
}

fn lanes_at() -> u32 {
    return HDR * p.groups + 2u * p.groups * p.cand_k;
}

struct Src {
    on: bool,
    th: u32,
    tl: u32,
}

struct Item {
    i: u32,
    l: f32,
    ok: bool,
}

fn n_items(src: Src) -> u32 {
    if (src.on) {
        return p.groups * p.cand_k;
    }
    return p.vocab;
}

fn item(src: Src, e: u32) -> Item {
    if (src.on) {
        let i = partials[pairs_at() + 2u * e + 1u];
        if (i == NONE) {
            return Item(i, 0.0, false);
        }
        let l = bitcast<f32>(partials[pairs_at() + 2u * e]);
        return Item(i, l, key_gt(fkey(l), lo_key(i), src.th, src.tl));
    }
    let v = logit(e);
    return Item(e, v.l, v.ok);
}

struct Key {
    h: u32,
    l: u32,
}

// The key of the `want`-th ranked item (radix select, 8 bits a pass; uniform). Call in uniform
// control flow.
fn select_kth(lid: u32, src: Src, want0: u32) -> Key {
    var kh = 0u;
    var kl = 0u;
    var want = want0;
    let n = n_items(src);
    for (var q = 0u; q < 7u; q = q + 1u) {
        atomicStore(&hist[lid], 0u);
        workgroupBarrier();
        for (var e = lid; e < n; e = e + WG) {
            let it = item(src, e);
            if (it.ok) {
                let h = fkey(it.l);
                let l = lo_key(it.i);
                if (matches(h, l, kh, kl, q)) {
                    atomicAdd(&hist[digit(h, l, q)], 1u);
                }
            }
        }
        if (take_digit(lid, q, &want, &kh, &kl)) {
            break;
        }
    }
    return Key(kh, kl);
}

var<workgroup> ok_w: u32;

struct Drawn {
    j: u32,
    // The draw is the whole vocabulary's: `exact`, or the best score is above `beat`; and (over
    // candidates) no score is NaN (NaN breaks the order, so the lanes' split would matter).
    ok: bool,
}

// Gumbel-max over the eligible items: in the top-k (`use_k`), ranked after (ph, pl) when
// `bounded`, and min-p. Uniform result; call in uniform control flow.
fn draw(lid: u32, src: Src, key: u32, m: f32, use_k: bool, kk: Key, bounded: bool, ph: u32, pl: u32, exact: bool, beat: f32) -> Drawn {
    var cv = 0.0;
    var ci = NONE;
    var nans = 0u;
    let n = n_items(src);
    for (var e = lid; e < n; e = e + WG) {
        let it = item(src, e);
        if (it.ok) {
            let h = fkey(it.l);
            let l = lo_key(it.i);
            let in_k = !use_k || !key_gt(kk.h, kk.l, h, l);
            let above = !bounded || key_gt(h, l, ph, pl);
            let d = dscore(it.l, m);
            let in_m = p.min_p <= 0.0 || exp(d) >= p.min_p;
            if (in_k && above && in_m) {
                let s = d + gumbel(key, it.i);
                nans = nans + select(0u, 1u, is_nan(s));
                if (better(s, it.i, cv, ci)) {
                    cv = s;
                    ci = it.i;
                }
            }
        }
    }
    sv[lid] = cv;
    si[lid] = ci;
    reduce_argmax(lid);
    if (lid == 0u) {
        flag = si[0];
        ok_w = select(0u, 1u, exact || (si[0] != NONE && sv[0] > beat));
    }
    let j = workgroupUniformLoad(&flag);
    var ok = workgroupUniformLoad(&ok_w) != 0u;
    if (src.on) {
        ok = ok && workgroup_count(lid, nans) == 0u;
    }
    return Drawn(j, ok);
}

fn counts(it: Item, use_k: bool, kk: Key, bounded: bool, jh: u32, jl: u32) -> bool {
    if (!it.ok) {
        return false;
    }
    let h = fkey(it.l);
    let l = lo_key(it.i);
    return (!bounded || key_gt(h, l, jh, jl)) && (!use_k || !key_gt(kk.h, kk.l, h, l));
}

var<workgroup> msum: f32;

// The weight of the items in the top-k and (when `bounded`) ranked before (jh, jl), into `msum`
// (lane 0's). Lane `lid` adds the tokens i = lid (mod WG) in increasing index order, then the
// tree reduction: over the candidates the same tokens in the same order, read through each chunk's
// lane segment (chunks in order, a segment in index order), so when every token that counts is a
// candidate the sum is bit-identical. Call in uniform control flow.
fn mass(lid: u32, src: Src, m: f32, use_k: bool, kk: Key, bounded: bool, jh: u32, jl: u32) {
    var acc = 0.0;
    if (src.on) {
        for (var g = 0u; g < p.groups; g = g + 1u) {
            let w = partials[lanes_at() + WG * g + lid];
            let first = g * p.cand_k + (w & 0xffffu);
            let end = first + (w >> 16u);
            for (var e = first; e < end; e = e + 1u) {
                let it = item(src, e);
                if (counts(it, use_k, kk, bounded, jh, jl)) {
                    acc = acc + weight(it.l, m);
                }
            }
        }
    } else {
        for (var i = lid; i < p.vocab; i = i + WG) {
            let it = item(src, i);
            if (counts(it, use_k, kk, bounded, jh, jl)) {
                acc = acc + weight(it.l, m);
            }
        }
    }
    sv[lid] = acc;
    si[lid] = 0u;
    reduce_sum(lid);
    if (lid == 0u) {
        msum = sv[0];
    }
}

var<workgroup> zsum: f32;
var<workgroup> bsum: f32;

// Steps 2-4 of a filtered draw (after the maximum and the count, `tv`), with the candidates of
// `src` where they give the whole vocabulary's result exactly and the whole vocabulary elsewhere;
// writes the id. Call in uniform control flow.
fn filtered(lid: u32, tv: TopValid, src: Src, beat: f32, tail_w: f32) {
    let top = tv.top;
    let m = tv.m;
    let all = Src(false, 0u, 0u);
    var scans = 0u;
    // 2. Top-k: the key of the k-th ranked token; over the candidates above T when they are at
    // least k (then they are the top tokens and the k-th is among them).
    var kk = Key(0u, 0u);
    let use_k = p.top_k > 0u && p.top_k < tv.valid;
    if (use_k) {
        var from_cands = false;
        if (src.on) {
            var c = 0u;
            for (var e = lid; e < n_items(src); e = e + WG) {
                c = c + select(0u, 1u, item(src, e).ok);
            }
            from_cands = workgroup_count(lid, c) >= p.top_k;
        }
        scans = scans + select(1u, 0u, from_cands);
        kk = select_kth(lid, Src(from_cands, src.th, src.tl), p.top_k);
    }
    // Every top-k token is a candidate above T: nothing dropped, or the k-th key above T.
    let closed = src.on && ((src.th == 0u && src.tl == 0u) || (use_k && key_gt(kk.h, kk.l, src.th, src.tl)));
    // 3. Draw; reject outside the nucleus (the mass of the top-k tokens ranked before the draw is
    // not below top_p times their total, Z) and draw again among the tokens ranked before it.
    let use_p = p.top_p < 1.0;
    var have_z = false;
    var z_known = false;
    var zlo = 0.0;
    var zhi = 0.0;
    var ph = 0xffffffffu;
    var pl = 0xffffffffu;
    var bounded = false;
    var past_t = false;
    var result = top;
    for (var round = 0u; round < MAX_ROUNDS; round = round + 1u) {
        let key = round_key(round);
        let exact = closed || past_t;
        var j = NONE;
        var done = false;
        if (src.on && (exact || !bounded)) {
            // Over every candidate: then the tokens left out are the dropped ones, which the
            // bound `beat` covers.
            let d = draw(lid, Src(true, 0u, 0u), key, m, use_k, kk, bounded, ph, pl, exact, beat);
            j = d.j;
            done = d.ok;
        }
        if (!done) {
            scans = scans + 1u;
            j = draw(lid, all, key, m, use_k, kk, bounded, ph, pl, true, 0.0).j;
        }
        if (!use_p || j == NONE || j == top) {
            result = select(j, top, j == NONE);
            break;
        }
        if (!have_z) {
            if (closed || !src.on) {
                scans = scans + select(1u, 0u, closed);
                mass(lid, Src(closed, src.th, src.tl), m, use_k, kk, false, 0u, 0u);
                if (lid == 0u) {
                    zsum = msum;
                }
                z_known = true;
            } else {
                // Z bracketed: every candidate's weight + the dropped tokens' (`tail_w`; lower
                // bound 0 when top-k may leave dropped tokens out), within a relative 2^-10.
                mass(lid, Src(true, 0u, 0u), m, use_k, kk, false, 0u, 0u);
                if (lid == 0u) {
                    zlo = (msum + select(tail_w, 0.0, use_k || tail_w >= V_BAD)) * (1.0 - 1.0 / 1024.0);
                    zhi = (msum + tail_w) * (1.0 + 1.0 / 1024.0);
                }
            }
            have_z = true;
        }
        let lj = logit(j).l;
        let jh = fkey(lj);
        let jl = lo_key(j);
        if (lid == 0u) {
            flag = select(0u, 1u, src.on && key_gt(jh, jl, src.th, src.tl));
        }
        let j_past_t = workgroupUniformLoad(&flag) != 0u;
        let cand_mass = closed || j_past_t;
        scans = scans + select(1u, 0u, cand_mass);
        mass(lid, Src(cand_mass, src.th, src.tl), m, use_k, kk, true, jh, jl);
        if (lid == 0u) {
            bsum = msum;
            if (z_known) {
                flag = select(0u, 1u, msum < p.top_p * zsum);
            } else if (msum < p.top_p * zlo) {
                flag = 1u;
            } else if (msum >= p.top_p * zhi) {
                flag = 0u;
            } else {
                flag = 2u;
            }
        }
        var accept = workgroupUniformLoad(&flag);
        if (accept == 2u) {
            // Too close to call with the bracket: the exact Z.
            scans = scans + 1u;
            mass(lid, all, m, use_k, kk, false, 0u, 0u);
            if (lid == 0u) {
                zsum = msum;
                flag = select(0u, 1u, bsum < p.top_p * zsum);
            }
            z_known = true;
            accept = workgroupUniformLoad(&flag);
        }
        if (accept != 0u) {
            result = j;
            break;
        }
        ph = jh;
        pl = jl;
        bounded = true;
        past_t = j_past_t;
    }
    if (lid == 0u) {
        emit(result);
        if (src.on) {
            // Diagnostics: the number of whole-vocabulary scans this draw needed.
            partials[lanes_at() + WG * p.groups] = scans;
        }
    }
}

// ---- Two-stage paths ---------------------------------------------------------------------
//
// `topk_partial` (one workgroup per chunk of WG * CPER tokens; the same for both paths) keeps its
// chunk's top cand_k tokens by the rank key (logit desc, index asc). At partials[HDR g ..] a
// header: argmax value bits, argmax index, valid count, T_g = the largest key it dropped ((0, 0)
// when none; 2 words), and with tail_stats V_g = max over its dropped tokens of l / T + g_0 (g_0
// round 0's noise; NaN -> V_BAD) and W_g = the sum over them of exp((l - chunk max) / T). Then the
// candidates as (logit bits, index) pairs at partials[HDR groups + 2 (g cand_k + s)], ordered by
// (index % WG, index): lane `lid`'s tokens, in index order, are one segment, whose
// offset | count << 16 is at partials[lanes_at() + WG g + lid]; index NONE in the slots past the
// chunk's valid tokens.
//
// Top-k path (1 <= top_k <= K_MAX = WG, cand_k = top_k): the global top-k is inside the union of
// the local ones. `topk_final` (one workgroup) does `sample_filtered`'s steps over the
// candidates: max and count from the headers, the k-th key by the same radix select, and the
// survivors (at most k <= WG) go to workgroup memory sorted by index. Every sum lane `lid` forms
// runs over the survivors with index % WG == lid in increasing index order, which is exactly the
// tokens and the order lane `lid` of `sample_filtered` adds, and the tree reduction is the same:
// Z, the top-p masses, the draws and so the ids are bit-identical to `sample_filtered`'s.
//
// Top-p / min-p path (top_k 0 or > K_MAX; cand_k = K_MAX, tail_stats on): `topp_final` (one
// workgroup) takes the max, top and count from the headers (exact: an argmax and a count) and
// T = the largest key any chunk dropped. Every token ranked above T is a candidate, so the
// candidates above T, A, are exactly the top |A| tokens. Then `filtered` (the very code of
// `sample_filtered`) runs with each quantity taken from the candidates only where they provably
// give the whole vocabulary's value bit for bit, and from a scan of the whole vocabulary (the
// `sample_filtered` loop) otherwise:
//   - the k-th key (top_k > K_MAX): from A when |A| >= top_k (then the k-th key is in A);
//   - a draw bounded by a rejected token above T: every eligible token is in A; the argmax under
//     `better` (a total order while no score is NaN) does not depend on which lane sees a token;
//   - the round-0 draw (unbounded): over all candidates, standing when the best score beats
//     `tail_floor`, a bound on the score of every dropped token from max V_g (g_0 does not depend
//     on the global maximum m, so stage 1 can add it), with a margin of 2^-14 of the magnitudes,
//     ~2^6 times the rounding WGSL allows (division 2.5 ulp, addition 0.5 ulp);
//   - the mass ranked before a draw above T: every token it adds is in A, and `mass` adds them in
//     `sample_filtered`'s per-lane order (chunk by chunk through the lane segments) and tree;
//   - Z: exactly from A when nothing was dropped or the k-th key is above T. Otherwise only a
//     bracket: every candidate's weight + sum_g W_g exp((chunk max - m) / T), times (1 -+ 2^-10)
//     (exp within 3 + 2|x| ulp, the argument split and the sums' orders stay under ~2^-13; the
//     dropped tokens count 0 in the lower bound when top-k may exclude them). The rejection test
//     mass < top_p * Z is decided when it holds at the lower bound or fails at the upper one
//     (rounding of top_p * z is monotone); in between, one scan computes Z exactly.
// A draw over candidates with a NaN score (-inf logit + infinite noise) falls back too (NaN
// makes the argmax depend on the lanes' split). So every quantity, and the id, is
// `sample_filtered`'s; the tests assert equality on flat logits (whose nucleus runs below T: the
// fallbacks) and peaked ones (decided from the candidates). Each whole-vocabulary scan is counted
// into the diagnostics word after the lane words (`GpuSampler::last_full_scans`).

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

// The tail statistics to lane 0: the maxima of sv (V) and of (ui, ci) (a key), the sum of ul
// (a tail weight). Call in uniform control flow with every lane's values stored.
fn reduce_tail(lid: u32) {
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            sv[lid] = max(sv[lid], sv[lid + s]);
            ul[lid] = ul[lid] + ul[lid + s];
            if (key_gt(ui[lid + s], ci[lid + s], ui[lid], ci[lid])) {
                ui[lid] = ui[lid + s];
                ci[lid] = ci[lid + s];
            }
        }
        workgroupBarrier();
    }
}

// "No finite tail score" for V (below every l / T + g that can occur).
const V_NONE: f32 = -3.0e38;
// V of a NaN / infinite tail score: the round-0 bound fails.
const V_BAD: f32 = 3.0e38;

// The score a round-0 draw over the candidates must beat so that no dropped token i can score
// as much: s_i = (l_i - m) / T + g_i (as `draw` rounds it). A token with (m - l_i) / T > 25 scores
// below 17.34 - 25 < -7 (g < 17.34; 1 + 2^-20 relative rounding at most); the others score at
// most V - m / T plus rounding of relative size ~2^-20 of |m| / T + |V| + 43 (division within
// 2.5 ulp, additions exact to 0.5 ulp, as WGSL requires): 2^-14 of that is the margin. A NaN /
// infinite V, an infinite m / T or a tiny T give a bound no score passes.
fn tail_floor(v: f32, m: f32) -> f32 {
    let mt = m / p.temperature;
    if (!(abs(mt) <= 1.0e37) || !(v < 1.0e37) || p.temperature < 1.0e-30) {
        return V_BAD;
    }
    if (v <= V_NONE) {
        return -7.0;
    }
    return max(-7.0, (v - mt) + (abs(v) + abs(mt) + 64.0) * (1.0 / 16384.0));
}

@compute @workgroup_size(WG)
fn topk_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.x + wid.y * nwg.x;
    let k = p.cand_k;
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
    sv[lid] = bv;
    si[lid] = bi;
    reduce_argmax(lid);
    let best_v = sv[0];
    let best_i = si[0];
    workgroupBarrier();
    let valid = workgroup_count(lid, count);
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
    // This lane's candidates (keys >= the k-th), its largest dropped key and (top-p path) the
    // largest l / T + g over its dropped tokens, g round 0's noise.
    var c = 0u;
    var dh = 0u;
    var dl = 0u;
    var vmax = V_NONE;
    var wsum = 0.0;
    let key0 = round_key(0u);
    for (var t = 0u; t < CPER; t = t + 1u) {
        let h = hk[t];
        let i = base + t * WG + lid;
        let l = lo_key(i);
        if (h != 0u) {
            if (!key_gt(kh, kl, h, l)) {
                c = c + 1u;
            } else {
                if (key_gt(h, l, dh, dl)) {
                    dh = h;
                    dl = l;
                }
                if (p.tail_stats != 0u) {
                    let lv = unkey(h);
                    let s = lv / p.temperature + gumbel(key0, i);
                    vmax = max(vmax, select(s, V_BAD, is_nan(s)));
                    wsum = wsum + weight(lv, best_v);
                }
            }
        }
    }
    // Exclusive prefix sum of the lanes' candidate counts: the segment offsets.
    si[lid] = c;
    workgroupBarrier();
    for (var o = 1u; o < WG; o = o << 1u) {
        var add = 0u;
        if (lid >= o) {
            add = si[lid - o];
        }
        workgroupBarrier();
        si[lid] = si[lid] + add;
        workgroupBarrier();
    }
    let first = si[lid] - c;
    sv[lid] = vmax;
    ui[lid] = dh;
    ci[lid] = dl;
    ul[lid] = wsum;
    reduce_tail(lid);
    if (g >= p.groups) {
        return;
    }
    if (lid == 0u) {
        let hdr = HDR * g;
        partials[hdr] = bitcast<u32>(best_v);
        partials[hdr + 1u] = best_i;
        partials[hdr + 2u] = valid;
        partials[hdr + 3u] = ui[0];
        partials[hdr + 4u] = ci[0];
        partials[hdr + 5u] = bitcast<u32>(sv[0]);
        partials[hdr + 6u] = bitcast<u32>(ul[0]);
        partials[hdr + 7u] = 0u;
    }
    let out = pairs_at() + 2u * g * k;
    var s = first;
    for (var t = 0u; t < CPER; t = t + 1u) {
        let h = hk[t];
        let i = base + t * WG + lid;
        if (h != 0u && !key_gt(kh, kl, h, lo_key(i))) {
            partials[out + 2u * s] = bitcast<u32>(unkey(h));
            partials[out + 2u * s + 1u] = i;
            s = s + 1u;
        }
    }
    partials[lanes_at() + WG * g + lid] = first | (c << 16u);
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
    let off = pairs_at();
    // 1. The maximum (`better` order, as `sample_filtered`) and the number of valid tokens.
    var bv = 0.0;
    var bi = NONE;
    var count = 0u;
    for (var g = lid; g < p.groups; g = g + WG) {
        let v = bitcast<f32>(partials[HDR * g]);
        let i = partials[HDR * g + 1u];
        count = count + partials[HDR * g + 2u];
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
        let kk = select_kth(lid, Src(true, 0u, 0u), k);
        kh = kk.h;
        kl = kk.l;
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

var<workgroup> th_w: u32;
var<workgroup> tl_w: u32;
var<workgroup> beat_w: f32;

@compute @workgroup_size(WG)
fn topp_final(@builtin(local_invocation_index) lid: u32) {
    // The maximum, top and count as `topk_final`; T and V over the chunks.
    var bv = 0.0;
    var bi = NONE;
    var count = 0u;
    var dh = 0u;
    var dl = 0u;
    var vmax = V_NONE;
    for (var g = lid; g < p.groups; g = g + WG) {
        let hdr = HDR * g;
        let v = bitcast<f32>(partials[hdr]);
        let i = partials[hdr + 1u];
        count = count + partials[hdr + 2u];
        if (better(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
        if (key_gt(partials[hdr + 3u], partials[hdr + 4u], dh, dl)) {
            dh = partials[hdr + 3u];
            dl = partials[hdr + 4u];
        }
        vmax = max(vmax, bitcast<f32>(partials[hdr + 5u]));
    }
    let tv = top_and_valid(lid, bv, bi, count);
    if (tv.top == NONE) {
        if (lid == 0u) {
            emit(NONE);
        }
        return;
    }
    // The dropped tokens' weight: each chunk's sum relative to its maximum, rescaled.
    var west = 0.0;
    for (var g = lid; g < p.groups; g = g + WG) {
        let hdr = HDR * g;
        west = west + bitcast<f32>(partials[hdr + 6u]) * weight(bitcast<f32>(partials[hdr]), tv.m);
    }
    sv[lid] = vmax;
    ui[lid] = dh;
    ci[lid] = dl;
    ul[lid] = west;
    reduce_tail(lid);
    var tail_w = V_BAD;
    if (lid == 0u) {
        th_w = ui[0];
        tl_w = ci[0];
        beat_w = tail_floor(sv[0], tv.m);
        if (abs(tv.m) <= 1.0e37 && ul[0] <= 1.0e37) {
            tail_w = ul[0];
        }
    }
    let th = workgroupUniformLoad(&th_w);
    let tl = workgroupUniformLoad(&tl_w);
    let beat = workgroupUniformLoad(&beat_w);
    filtered(lid, tv, Src(true, th, tl), beat, tail_w);
}
