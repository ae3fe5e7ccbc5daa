// Embedding lookup: out[t, :] = word[ids[t], :] (+ pos[offset + t % seq_len, :])
// (+ type[type_ids[t] or 0, :]), written as f32. BERT sums all three; decoders use word only.
//
// Tables are f32, f16 or bf16 (WORD_DT / POS_DT / TYPE_DT). All are bound as array<vec4<u32>>
// and unpacked by hand (f16 with unpack2x16float, bf16 by shifting into the high half of an f32),
// so 16-bit tables work without shader-f16.
//
// embed_vec8 (hidden % 8 == 0): one invocation per 8 outputs: a 16-bit table row slice is one
// vec4<u32> load, an f32 one two vec4 loads; two vec4<f32> stores.
// embed_scalar: one invocation per output element: any hidden size, and the original
// scalar lookup kept as the benchmark baseline.
//
// Token ids are checked on the CPU before any dispatch (ops/embedding.rs), never clamped here,
// except ids written on the GPU (the sampled id of a decode step): a row is written only when
// id_base <= id < id_base + id_rows (a table held as row blocks runs one dispatch per block, each
// gathering the ids that fall in it; NONE, the sampler's "no token", writes nothing).

const DT_F32: u32 = 0u;
const DT_F16: u32 = 1u;
const DT_BF16: u32 = 2u;

struct Params {
    n: u32,
    hidden: u32,
    seq_len: u32,
    pos_offset: u32,
    id_base: u32,
    id_rows: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> word: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> pos: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> ttype: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> type_ids: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<vec4<f32>>;
// Scalar views for embed_scalar: tensors are padded to 4 bytes, not 16, so a vec4 view would cut
// off the tail of sizes that are not multiples of 4 words.
@group(0) @binding(7) var<storage, read> word_s: array<u32>;
@group(0) @binding(8) var<storage, read> pos_s: array<u32>;
@group(0) @binding(9) var<storage, read> ttype_s: array<u32>;
@group(0) @binding(10) var<storage, read_write> out_s: array<f32>;

struct Eight {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn bf16_pair(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

// Eight 16-bit values packed in four words, low half first.
fn widen(dt: u32, w: vec4<u32>) -> Eight {
    if (dt == DT_F16) {
        return Eight(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)),
                     vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w)));
    }
    return Eight(vec4<f32>(bf16_pair(w.x), bf16_pair(w.y)), vec4<f32>(bf16_pair(w.z), bf16_pair(w.w)));
}

// Element e of a table as one value: the u32 word holding it, then the right half.
fn one(dt: u32, word_of: u32, e: u32) -> f32 {
    if (dt == DT_F32) {
        return bitcast<f32>(word_of);
    }
    let half = e % 2u;
    if (dt == DT_F16) {
        return unpack2x16float(word_of)[half];
    }
    return bf16_pair(word_of)[half];
}

// Index of the u32 word holding element e.
fn word_index(dt: u32, e: u32) -> u32 {
    return select(e / 2u, e, dt == DT_F32);
}

fn word8(e: u32) -> Eight {
    if (WORD_DT == DT_F32) {
        return Eight(bitcast<vec4<f32>>(word[e / 4u]), bitcast<vec4<f32>>(word[e / 4u + 1u]));
    }
    return widen(WORD_DT, word[e / 8u]);
}

fn pos8(e: u32) -> Eight {
    if (POS_DT == DT_F32) {
        return Eight(bitcast<vec4<f32>>(pos[e / 4u]), bitcast<vec4<f32>>(pos[e / 4u + 1u]));
    }
    return widen(POS_DT, pos[e / 8u]);
}

fn type8(e: u32) -> Eight {
    if (TYPE_DT == DT_F32) {
        return Eight(bitcast<vec4<f32>>(ttype[e / 4u]), bitcast<vec4<f32>>(ttype[e / 4u + 1u]));
    }
    return widen(TYPE_DT, ttype[e / 8u]);
}

fn position(t: u32) -> u32 {
    return p.pos_offset + t % p.seq_len;
}

fn token_type(t: u32) -> u32 {
    if (TYPE_IDS) {
        return type_ids[t];
    }
    return 0u;
}

@compute @workgroup_size(WG)
fn embed_vec8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    let per_row = p.hidden / 8u;
    if (i >= p.n * per_row) {
        return;
    }
    let t = i / per_row;
    let c = (i % per_row) * 8u;
    let id = ids[t] - p.id_base;
    if (ids[t] < p.id_base || id >= p.id_rows) {
        return;
    }
    var v = word8(id * p.hidden + c);
    if (HAS_POS) {
        let q = pos8(position(t) * p.hidden + c);
        v = Eight(v.lo + q.lo, v.hi + q.hi);
    }
    if (HAS_TYPE) {
        let q = type8(token_type(t) * p.hidden + c);
        v = Eight(v.lo + q.lo, v.hi + q.hi);
    }
    let o = (t * p.hidden + c) / 4u;
    out[o] = v.lo;
    out[o + 1u] = v.hi;
}

@compute @workgroup_size(WG)
fn embed_scalar(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n * p.hidden) {
        return;
    }
    let t = i / p.hidden;
    let c = i % p.hidden;
    let id = ids[t] - p.id_base;
    if (ids[t] < p.id_base || id >= p.id_rows) {
        return;
    }
    var e = id * p.hidden + c;
    var w = word_index(WORD_DT, e);
    var v = one(WORD_DT, word_s[w], e);
    if (HAS_POS) {
        e = position(t) * p.hidden + c;
        w = word_index(POS_DT, e);
        v = v + one(POS_DT, pos_s[w], e);
    }
    if (HAS_TYPE) {
        e = token_type(t) * p.hidden + c;
        w = word_index(TYPE_DT, e);
        v = v + one(TYPE_DT, ttype_s[w], e);
    }
    out_s[i] = v;
}
