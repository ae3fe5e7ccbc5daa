// RoPE shared by every kernel that rotates (concatenated in front of them by the Rust side):
// the per-pair frequency with the model's scaling, precise exp2 / sin / cos, the half-split
// ("rotate_half") rotation of Llama / Qwen / Gemma / Phi: for i < rot/2 element i pairs with
// i + rot/2, angle = position * inv_freq_i;
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

// THE per-pair RoPE frequency, used by every RoPE path (prefill Q: rope.wgsl, K on KV append:
// kv_cache.wgsl, decode Q: attention.wgsl; a fused kernel calls it too), so Q and K are rotated
// by the same angles. Pair i (< rot/2): inv_freq = theta^(-2i/rot), then the model's scaling,
// `scaling` = (factor, low_freq_factor, high_freq_factor, original_context) from
// RopeScaling::wgsl() on the Rust side:
//   original_context == 0: linear, inv_freq / factor (factor 1: plain RoPE);
//   else Llama 3: wavelength 2pi / inv_freq below original / high_freq_factor keeps inv_freq,
//   above original / low_freq_factor takes inv_freq / factor, between a linear blend with
//   smooth = (original / wavelength - low) / (high - low), as transformers computes it in f32.
fn rope_inv_freq(i: u32, rot: u32, log2_theta: f32, scaling: vec4<f32>) -> f32 {
    let f = exp2_precise(-(f32(2u * i) / f32(rot)) * log2_theta);
    let factor = scaling.x;
    let ctx = scaling.w;
    if (ctx == 0.0) {
        return f / factor;
    }
    let wavelen = 6.283185307179586 / f;
    if (wavelen < ctx / scaling.z) {
        return f;
    }
    if (wavelen > ctx / scaling.y) {
        return f / factor;
    }
    let blend = (ctx / wavelen - scaling.y) / (scaling.z - scaling.y);
    return (1.0 - blend) * f / factor + blend * f;
}

// (cos, sin) of pair index `i` (< rot/2) at `pos`: angle = f32(pos) * inv_freq in f32, as HF
// computes it.
fn rope_cos_sin(pos: u32, i: u32, rot: u32, log2_theta: f32, scaling: vec4<f32>) -> vec2<f32> {
    return cos_sin_precise(f32(pos) * rope_inv_freq(i, rot, log2_theta, scaling));
}

// Element `e` of a rotated head vector (half-split layout), given x[e] and its partner
// x[e ± rot/2] (rope_partner).
fn rope_apply(e: u32, x: f32, partner: f32, pos: u32, rot: u32, log2_theta: f32, scaling: vec4<f32>) -> f32 {
    if (e >= rot) {
        return x;
    }
    let half = rot / 2u;
    if (e < half) {
        let cs = rope_cos_sin(pos, e, rot, log2_theta, scaling);
        return x * cs.x - partner * cs.y;
    }
    let cs = rope_cos_sin(pos, e - half, rot, log2_theta, scaling);
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

