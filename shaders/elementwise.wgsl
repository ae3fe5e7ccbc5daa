// Elementwise ops, one invocation per element; OP (a prelude constant) picks the function so
// every op is its own pipeline with no runtime branch:
//   binary:        out = a OP b              (OP_ADD, OP_MUL)
//   unary:         out = f(a)                (OP_SILU, OP_AXPB: alpha * a + beta, OP_TANH)
//   unary_inplace: a = f(a)                  (same functions, one read-write buffer)
// Also copy_vec4: the bandwidth baseline for benchmarks (moves the same bytes a kernel must).

const OP_ADD: u32 = 0u;
const OP_MUL: u32 = 1u;
const OP_SILU: u32 = 2u;
const OP_AXPB: u32 = 3u;
const OP_TANH: u32 = 4u;

struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> inout: array<f32>;
@group(0) @binding(5) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> dst4: array<vec4<f32>>;

fn unary_fn(v: f32) -> f32 {
    if (OP == OP_SILU) {
        return v / (1.0 + exp(-v));
    }
    if (OP == OP_TANH) {
        // (1 - e^-2|v|) / (1 + e^-2|v|) with v's sign: no overflow, no builtin tanh (whose
        // precision WGSL leaves to the implementation).
        let t = exp(-2.0 * abs(v));
        return sign(v) * (1.0 - t) / (1.0 + t);
    }
    return p.alpha * v + p.beta;
}

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    if (OP == OP_MUL) {
        out[i] = a[i] * b[i];
    } else {
        out[i] = a[i] + b[i];
    }
}

@compute @workgroup_size(WG)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i < p.n) {
        out[i] = unary_fn(a[i]);
    }
}

@compute @workgroup_size(WG)
fn unary_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i < p.n) {
        inout[i] = unary_fn(inout[i]);
    }
}

// p.n counts vec4 elements here.
@compute @workgroup_size(WG)
fn copy_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = element(wid, nwg, lid);
    if (i < p.n) {
        dst4[i] = src4[i];
    }
}
