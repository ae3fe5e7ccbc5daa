// KV-cache append (seeds 7 and 20): write T new tokens of K and V ([T, n_kv_heads, D] f32) into
// the cache at rows pos0.., converting to the cache's storage format (KV_DTYPE, see
// attention_rope.wgsl; RoPE from common/rope.wgsl) and applying RoPE to K on the way (rot > 0), so K is rotated once when it
// is written instead of on every read.
//
// One workgroup per token; it walks K then V, head by head: the head's D values go through
// workgroup memory (RoPE pairs elements D/2 apart, packing pairs neighbours), INT8 takes the
// absmax over the head with wg_max and stores it as f16 next to the codes.

struct Params {
    tokens: u32,
    pos0: u32,          // cache row (and RoPE position) of the first new token
    n_kv_heads: u32,
    src_stride: u32,    // elements between tokens in k_new / v_new
    rot: u32,           // rotary dimensions (0: no RoPE)
    log2_theta: f32,
    scale_stride: u32,  // halves per token row in the scale buffers (n_kv_heads rounded up to even)
    _pad: u32,
    rope_scaling: vec4<f32>, // rope_inv_freq's scaling (shaders/common/rope.wgsl)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> k_new: array<f32>;
@group(0) @binding(2) var<storage, read> v_new: array<f32>;
@group(0) @binding(3) var<storage, read_write> k_cache: array<u32>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(5) var<storage, read_write> k_scales: array<u32>;
@group(0) @binding(6) var<storage, read_write> v_scales: array<u32>;

const EPT: u32 = (D + WG - 1u) / WG;

var<workgroup> row: array<f32, D>;

fn store_word(is_k: bool, i: u32, w: u32) {
    if (is_k) {
        k_cache[i] = w;
    } else {
        v_cache[i] = w;
    }
}

@compute @workgroup_size(WG)
fn kv_append(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lane: Lane) {
    let t = wid.x + wid.y * nwg.x;
    if (t >= p.tokens) {
        return; // whole workgroup: barriers below stay in uniform control flow
    }
    let dst_row = p.pos0 + t;
    var prev_absmax = 0.0;
    for (var which = 0u; which < 2u; which = which + 1u) {
        let is_k = which == 0u;
        let rot = select(0u, p.rot, is_k);
        for (var h = 0u; h < p.n_kv_heads; h = h + 1u) {
            let src = t * p.src_stride + h * D;
            for (var e = lane.index; e < D; e = e + WG) {
                row[e] = select(v_new[src + e], k_new[src + e], is_k);
            }
            workgroupBarrier();
            var vals: array<f32, EPT>;
            var amax = 0.0;
            for (var k = 0u; k < EPT; k = k + 1u) {
                let e = lane.index + k * WG;
                if (e < D) {
                    let x = rope_apply(e, row[e], row[rope_partner(e, rot)], dst_row, rot, p.log2_theta, p.rope_scaling);
                    vals[k] = x;
                    amax = max(amax, abs(x));
                }
            }
            workgroupBarrier();
            for (var k = 0u; k < EPT; k = k + 1u) {
                let e = lane.index + k * WG;
                if (e < D) {
                    row[e] = vals[k];
                }
            }
            // Row and head base in elements of the cache.
            let base = (dst_row * p.n_kv_heads + h) * D;
            if (KV_DTYPE == KV_I8) {
                // wg_max starts with a barrier-protected exchange, which also publishes `row`.
                let absmax = wg_max(amax, lane);
                // The multiplier actually stored (absmax rounded to f16) quantises, so codes and
                // scale agree exactly; absmax, not absmax/127, is stored: it stays a normal f16
                // down to 6e-5, where absmax/127 would fall into f16 subnormals.
                let stored = unpack2x16float(pack2x16float(vec2<f32>(absmax, 0.0))).x;
                let inv = select(0.0, 127.0 / stored, stored > 0.0);
                for (var w = lane.index; w < D / 4u; w = w + WG) {
                    let q = clamp(round(vec4<f32>(row[4u * w], row[4u * w + 1u], row[4u * w + 2u], row[4u * w + 3u]) * inv),
                                  vec4<f32>(-127.0), vec4<f32>(127.0));
                    let b = vec4<u32>(bitcast<vec4<u32>>(vec4<i32>(q)) & vec4<u32>(0xffu));
                    store_word(is_k, base / 4u + w, b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u));
                }
                // Two heads share one word of f16 scales: write it at the odd head (or the last).
                if (lane.index == 0u && ((h & 1u) == 1u || h + 1u == p.n_kv_heads)) {
                    let pair = select(vec2<f32>(absmax, 0.0), vec2<f32>(prev_absmax, absmax), (h & 1u) == 1u);
                    let wi = (dst_row * p.scale_stride + h) / 2u;
                    if (is_k) {
                        k_scales[wi] = pack2x16float(pair);
                    } else {
                        v_scales[wi] = pack2x16float(pair);
                    }
                }
                prev_absmax = absmax;
            } else {
                workgroupBarrier();
                if (KV_DTYPE == KV_F16) {
                    for (var w = lane.index; w < D / 2u; w = w + WG) {
                        store_word(is_k, base / 2u + w, pack2x16float(vec2<f32>(row[2u * w], row[2u * w + 1u])));
                    }
                } else {
                    for (var e = lane.index; e < D; e = e + WG) {
                        store_word(is_k, base + e, bitcast<u32>(row[e]));
                    }
                }
            }
            workgroupBarrier();
        }
    }
}
