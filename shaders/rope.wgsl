// Rotary position embeddings applied in place to Q [tokens, heads, head_dim] and K
// [tokens, kv_heads, head_dim]. Pair i (i < rotary_dim / 2) of a head at
// position pos = offset + token is rotated by angle pos * inv_freq[i]:
//   x1' = x1 cos - x2 sin,   x2' = x2 cos + x1 sin
// where (x1, x2) = (x[i], x[i + rotary_dim/2]) in the HF "rotate_half" layout (INTERLEAVED false)
// or (x[2i], x[2i + 1]) in the interleaved layout. Dimensions >= rotary_dim are left alone.
// The Rust side prepends common/rope.wgsl: the frequency (with the model's scaling), angle and
// cos / sin are the ones of K on KV append and decode Q (rope_cos_sin), so Q and K always turn
// by the same angles.
//
// rope_vec2_*: WG (64 or 128) invocations per group, each rotating two neighbouring pairs with
// two vec2 loads and stores (needs rotary_dim % 4 == 0 and an even head_dim).
// rope_scalar_*: one pair per invocation with scalar loads (any even rotary_dim); with WG = 16
// this is the naive kernel, the benchmark baseline.
// *_qk rotate Q and K in one dispatch (units past nq belong to K); *_q rotate Q only.

struct Params {
    heads_q: u32,
    heads_k: u32,
    head_dim: u32,
    half_rot: u32,
    pos_offset: u32,
    nq: u32,
    n: u32,
    log2_theta: f32,
    rope_scaling: vec4<f32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(4) var<storage, read_write> q2: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> k2: array<vec2<f32>>;

fn cos_sin(pos: u32, pair: u32) -> vec2<f32> {
    return rope_cos_sin(pos, pair, 2u * p.half_rot, p.log2_theta, p.rope_scaling);
}

struct Unit {
    base: u32, // first element of the head
    pos: u32,
    j: u32,    // unit index inside the head
}

fn unit(i: u32, heads: u32, per_head: u32) -> Unit {
    let row = i / per_head;
    return Unit(row * p.head_dim, p.pos_offset + row / heads, i % per_head);
}

// --- vec2 path: unit j rotates pairs 2j and 2j + 1 ---

// Element offsets of the two vec2 the unit reads: (x1 of both pairs, x2 of both pairs) for
// rotate_half, (pair 2j, pair 2j + 1) when interleaved.
fn vec2_offsets(u: Unit) -> vec2<u32> {
    if (INTERLEAVED) {
        return vec2<u32>(u.base + 4u * u.j, u.base + 4u * u.j + 2u) / 2u;
    }
    return vec2<u32>(u.base + 2u * u.j, u.base + p.half_rot + 2u * u.j) / 2u;
}

struct Two {
    a: vec2<f32>,
    b: vec2<f32>,
}

fn rotate_two(u: Unit, a: vec2<f32>, b: vec2<f32>) -> Two {
    let c0 = cos_sin(u.pos, 2u * u.j);
    let c1 = cos_sin(u.pos, 2u * u.j + 1u);
    let c = vec2<f32>(c0.x, c1.x);
    let s = vec2<f32>(c0.y, c1.y);
    var x1 = a;
    var x2 = b;
    if (INTERLEAVED) {
        x1 = vec2<f32>(a.x, b.x);
        x2 = vec2<f32>(a.y, b.y);
    }
    let y1 = x1 * c - x2 * s;
    let y2 = x2 * c + x1 * s;
    if (INTERLEAVED) {
        return Two(vec2<f32>(y1.x, y2.x), vec2<f32>(y1.y, y2.y));
    }
    return Two(y1, y2);
}

fn vec2_q(i: u32) {
    let u = unit(i, p.heads_q, p.half_rot / 2u);
    let o = vec2_offsets(u);
    let r = rotate_two(u, q2[o.x], q2[o.y]);
    q2[o.x] = r.a;
    q2[o.y] = r.b;
}

fn vec2_k(i: u32) {
    let u = unit(i, p.heads_k, p.half_rot / 2u);
    let o = vec2_offsets(u);
    let r = rotate_two(u, k2[o.x], k2[o.y]);
    k2[o.x] = r.a;
    k2[o.y] = r.b;
}

@compute @workgroup_size(WG)
fn rope_vec2_q(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i < p.nq) {
        vec2_q(i);
    }
}

@compute @workgroup_size(WG)
fn rope_vec2_qk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i < p.nq) {
        vec2_q(i);
    } else if (i < p.n) {
        vec2_k(i - p.nq);
    }
}

// --- scalar path: unit j rotates pair j ---

fn scalar_offsets(u: Unit) -> vec2<u32> {
    if (INTERLEAVED) {
        return vec2<u32>(u.base + 2u * u.j, u.base + 2u * u.j + 1u);
    }
    return vec2<u32>(u.base + u.j, u.base + p.half_rot + u.j);
}

fn rotate_one(u: Unit, x1: f32, x2: f32) -> vec2<f32> {
    let cs = cos_sin(u.pos, u.j);
    return vec2<f32>(x1 * cs.x - x2 * cs.y, x2 * cs.x + x1 * cs.y);
}

fn scalar_q(i: u32) {
    let u = unit(i, p.heads_q, p.half_rot);
    let o = scalar_offsets(u);
    let r = rotate_one(u, q[o.x], q[o.y]);
    q[o.x] = r.x;
    q[o.y] = r.y;
}

fn scalar_k(i: u32) {
    let u = unit(i, p.heads_k, p.half_rot);
    let o = scalar_offsets(u);
    let r = rotate_one(u, k[o.x], k[o.y]);
    k[o.x] = r.x;
    k[o.y] = r.y;
}

@compute @workgroup_size(WG)
fn rope_scalar_q(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i < p.nq) {
        scalar_q(i);
    }
}

@compute @workgroup_size(WG)
fn rope_scalar_qk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i < p.nq) {
        scalar_q(i);
    } else if (i < p.n) {
        scalar_k(i - p.nq);
    }
}
