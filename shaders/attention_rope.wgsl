// Helpers shared by the attention and KV-cache kernels (concatenated in front of them by the Rust
// side): HF half-split rotary embedding (seed item 20) and the KV storage formats.
//
// RoPE, "rotate_half" layout of Llama / Qwen2 / Phi: for i < rot/2 element i pairs with
// i + rot/2, frequency inv_freq_i = theta^(-2i/rot), angle = position * inv_freq_i;
//   out[i]         = x[i] cos - x[i + rot/2] sin
//   out[i + rot/2] = x[i + rot/2] cos + x[i] sin
// elements at or past `rot` (partial rotary, e.g. Phi-2) pass through.

// exp2 and sin / cos to ~1e-7 on every implementation: WGSL only promises 3 + 2|x| ULP for exp2
// and 2^-11 absolute for sin / cos on [-pi, pi] (SwiftShader in Chromium is that coarse: RoPE
// was off by 3e-4), and long contexts reach angles of 1e4+ rad.
fn exp2_precise(x: f32) -> f32 {
    let n = floor(x);
    let f = (x - n) * 0.6931471805599453; // 2^x = 2^n * e^f, f in [0, ln 2)
    // Taylor series to degree 9: remainder < 1e-8 relative on [0, ln 2).
    var s = 2.7557319e-6;
    s = fma(s, f, 2.4801587e-5);
    s = fma(s, f, 1.9841270e-4);
    s = fma(s, f, 1.3888889e-3);
    s = fma(s, f, 8.3333333e-3);
    s = fma(s, f, 4.1666667e-2);
    s = fma(s, f, 0.16666667);
    s = fma(s, f, 0.5);
    s = fma(s, f, 1.0);
    s = fma(s, f, 1.0);
    return ldexp(s, i32(n));
}

// (cos a, sin a): a = k pi/2 + t with |t| <= pi/4 (pi/2 in three parts, Cody-Waite, so k * hi is
// exact for k < 2^16), then Taylor series in t and the quadrant's rotation.
fn cos_sin_precise(a: f32) -> vec2<f32> {
    let k = round(a * 0.6366197723675814);
    var t = a - k * 1.5703125;
    t = t - k * 4.837512969970703e-4;
    t = t - k * 7.549790126404332e-8;
    let t2 = t * t;
    var s = -2.5052108e-8;
    s = fma(s, t2, 2.7557319e-6);
    s = fma(s, t2, -1.9841270e-4);
    s = fma(s, t2, 8.3333333e-3);
    s = fma(s, t2, -0.16666667);
    s = t + t * t2 * s;
    var c = -2.7557319e-7;
    c = fma(c, t2, 2.4801587e-5);
    c = fma(c, t2, -1.3888889e-3);
    c = fma(c, t2, 4.1666667e-2);
    c = fma(c, t2, -0.5);
    c = fma(c, t2, 1.0);
    let q = bitcast<u32>(i32(k)) & 3u;
    if (q == 0u) {
        return vec2<f32>(c, s);
    } else if (q == 1u) {
        return vec2<f32>(-s, c);
    } else if (q == 2u) {
        return vec2<f32>(-c, -s);
    }
    return vec2<f32>(s, -c);
}

// (cos, sin) of pair index `i` (< rot/2) at `pos`: angle = f32(pos) * inv_freq in f32, as HF
// computes it.
fn rope_cos_sin(pos: u32, i: u32, rot: u32, log2_theta: f32) -> vec2<f32> {
    let inv_freq = exp2_precise(-(f32(2u * i) / f32(rot)) * log2_theta);
    return cos_sin_precise(f32(pos) * inv_freq);
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
