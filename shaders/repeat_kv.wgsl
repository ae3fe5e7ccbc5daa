// repeat_kv: grouped-query attention's K/V heads repeated for every query head,
// [tokens, kv_heads, d] -> [tokens, kv_heads * n_rep, d], output head h reads kv head h / n_rep
// (HF repeat_kv order). The attention kernels read the grouped heads directly; this is kept as
// their baseline and for code paths that want materialised heads.
//
// repeat_kv_vec4 (d % 4 == 0): one vec4 load and store per invocation.
// repeat_kv_scalar: one element per invocation (any d; the naive kernel).

struct Params {
    kv_heads: u32,
    n_rep: u32,
    d: u32,   // elements per head (vec4 units in repeat_kv_vec4)
    n: u32,   // output units
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dst4: array<vec4<f32>>;

// Source unit of output unit i.
fn source(i: u32) -> u32 {
    let heads_out = p.kv_heads * p.n_rep;
    let row = i / p.d;            // t * heads_out + h
    let t = row / heads_out;
    let h = row % heads_out;
    return (t * p.kv_heads + h / p.n_rep) * p.d + i % p.d;
}

@compute @workgroup_size(WG)
fn repeat_kv_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i < p.n) {
        dst4[i] = src4[source(i)];
    }
}

@compute @workgroup_size(WG)
fn repeat_kv_scalar(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i < p.n) {
        dst[i] = src[source(i)];
    }
}
