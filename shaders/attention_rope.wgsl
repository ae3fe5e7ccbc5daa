// Helpers shared by the attention and KV-cache kernels (concatenated in front of them by the Rust
// side): HF half-split rotary embedding (seed item 20) and the KV storage formats.
//
// RoPE, "rotate_half" layout of Llama / Qwen2 / Phi: for i < rot/2 element i pairs with
// i + rot/2, frequency inv_freq_i = theta^(-2i/rot), angle = position * inv_freq_i;
//   out[i]         = x[i] cos - x[i + rot/2] sin
//   out[i + rot/2] = x[i + rot/2] cos + x[i] sin
// elements at or past `rot` (partial rotary, e.g. Phi-2) pass through.

const TWO_PI: f32 = 6.283185307179586;
const INV_TWO_PI: f32 = 0.15915494309189535;

// (cos, sin) of pair index `i` (< rot/2) at `pos`. The angle is reduced to [-pi, pi] first:
// WGSL only bounds sin/cos error on that interval and long contexts reach angles of 1e4+.
fn rope_cos_sin(pos: u32, i: u32, rot: u32, log2_theta: f32) -> vec2<f32> {
    let inv_freq = exp2(-f32(2u * i) / f32(rot) * log2_theta);
    let a = f32(pos) * inv_freq;
    let r = a - TWO_PI * round(a * INV_TWO_PI);
    return vec2<f32>(cos(r), sin(r));
}

// Element `e` of a rotated head vector, given x[e] and its partner x[e ± rot/2].
fn rope_apply(e: u32, x: f32, partner: f32, pos: u32, rot: u32, log2_theta: f32) -> f32 {
    if (e >= rot) {
        return x;
    }
    let half = rot / 2u;
    if (e < half) {
        let cs = rope_cos_sin(pos, e, rot, log2_theta);
        return x * cs.x - partner * cs.y;
    }
    let cs = rope_cos_sin(pos, e - half, rot, log2_theta);
    return x * cs.x + partner * cs.y;
}

// Index of the partner element of `e` (itself when e is not rotated).
fn rope_partner(e: u32, rot: u32) -> u32 {
    if (e >= rot) {
        return e;
    }
    let half = rot / 2u;
    return select(e - half, e + half, e < half);
}

// KV storage formats (KV_DTYPE): 0 = f32 words, 1 = f16 pairs packed in u32 words (no
// shader-f16 needed), 2 = int8 quads packed in u32 words with one f16 absmax per (token, head):
// value = code * absmax / 127.
const KV_F32: u32 = 0u;
const KV_F16: u32 = 1u;
const KV_I8: u32 = 2u;

// Four signed bytes of a word, low byte first.
fn unpack_i8x4(w: u32) -> vec4<f32> {
    let s = bitcast<i32>(w);
    return vec4<f32>(vec4<i32>((s << 24u) >> 24u, (s << 16u) >> 24u, (s << 8u) >> 24u, s >> 24u));
}

// The dequantisation multiplier of (token row `row`, head `h`) from the packed f16 absmax words:
// `stride` halves per token row (the head count rounded up to even, so no word spans two rows).
fn i8_step(scales_word: u32, h: u32) -> f32 {
    let pair = unpack2x16float(scales_word);
    return select(pair.x, pair.y, (h & 1u) == 1u) * (1.0 / 127.0);
}
