// Rotary position embeddings applied in place to Q [tokens, heads, head_dim] and K
// [tokens, kv_heads, head_dim] (seed items 11, 12). Pair i (i < rotary_dim / 2) of a head at
// position pos = offset + token is rotated by angle pos * inv_freq[i]:
//   x1' = x1 cos - x2 sin,   x2' = x2 cos + x1 sin
// where (x1, x2) = (x[i], x[i + rotary_dim/2]) in the HF "rotate_half" layout (INTERLEAVED false)
// or (x[2i], x[2i + 1]) in the interleaved layout. Dimensions >= rotary_dim are left alone.
//
// Angles are reduced exactly: freqs[i] holds inv_freq[i] / 2pi (turns per position) as a 64-bit
// fixed-point fraction (hi, lo words, computed in f64 on the CPU). The top 32 bits of
// pos * freq mod 1 are formed with integer arithmetic and split exactly into quarter turns and a
// remainder; only the remainder becomes an f32 angle, in [-pi/4, pi/4): no f32
// rounding of a large pos * inv_freq product (HF's f32 angles are off by ~|angle| * 6e-8,
// 2e-3 rad at position 32k), and cos / sin come from short polynomials, not the builtins.
//
// rope_vec2_*: WG (64 or 128) invocations per group, each rotating two neighbouring pairs with
// two vec2 loads and stores (needs rotary_dim % 4 == 0 and an even head_dim).
// rope_scalar_*: one pair per invocation with scalar loads (any even rotary_dim); with WG = 16
// this is the seed's original kernel, the benchmark baseline.
// *_qk rotate Q and K in one dispatch (units past nq belong to K); *_q rotate Q only.

struct Params {
    heads_q: u32,
    heads_k: u32,
    head_dim: u32,
    half_rot: u32,
    pos_offset: u32,
    nq: u32,
    n: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read> freqs: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read_write> q2: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> k2: array<vec2<f32>>;

const TURN: f32 = 1.4629180792671596e-9; // 2 pi / 2^32

// High 32 bits of the 64-bit product a * b.
fn mulhi(a: u32, b: u32) -> u32 {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let mid = ((a0 * b0) >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    return a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
}

// (cos, sin) of pos * inv_freq[pair]. The angle in fixed-point turns is split exactly into a
// quadrant and a remainder in [-pi/4, pi/4), where Taylor polynomials to a^9 / a^10 are accurate
// to 2e-9: the result is f32-rounding accurate on every device. (WGSL's sin/cos only promise
// 2^-11; SwiftShader's are off by 6e-6.)
fn cos_sin(pos: u32, pair: u32) -> vec2<f32> {
    let f = freqs[pair];
    let turns = pos * f.x + mulhi(pos, f.y); // wraps mod 2^32 = whole turns dropped
    let quadrant = (turns + 0x20000000u) >> 30u;
    let a = f32(bitcast<i32>(turns - (quadrant << 30u))) * TURN;
    let a2 = a * a;
    let s = a * (1.0 + a2 * (-1.6666666666666666e-1 + a2 * (8.333333333333333e-3 + a2 * (-1.984126984126984e-4 + a2 * 2.755731922398589e-6))));
    let c = 1.0 + a2 * (-0.5 + a2 * (4.1666666666666664e-2 + a2 * (-1.388888888888889e-3 + a2 * (2.48015873015873e-5 + a2 * -2.755731922398589e-7))));
    var cs = vec2<f32>(c, s);
    if ((quadrant & 1u) == 1u) {
        cs = vec2<f32>(-s, c);
    }
    if ((quadrant & 2u) == 2u) {
        cs = -cs;
    }
    return cs;
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
