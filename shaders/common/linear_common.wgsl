// Shared by gemv.wgsl, matmul.wgsl and ffn.wgsl (prepended to each by the Rust side, before the
// kernel body): decoding weight words of each dtype, and the fused epilogue.
//
// Prelude constants it needs:
//   DT       0 = f32, 1 = f16, 2 = bf16 (the weight dtype)
//   EPW      elements per u32 word: 1 for f32, 2 for f16 / bf16
//   ACT      epilogue activation: 0 none, 1 GELU (erf), 2 SiLU
//
// Weights are read as u32 words, so f16 needs no `shader-f16` (unpack2x16float) and bf16 is a
// shift (bf16 is the top half of an f32). A "chunk" is one vec4<u32> load: 8 elements of a 16-bit
// dtype or 4 of f32.

const DT_F32: u32 = 0u;
const DT_F16: u32 = 1u;
const DT_BF16: u32 = 2u;

const ACT_NONE: u32 = 0u;
const ACT_GELU: u32 = 1u;
const ACT_SILU: u32 = 2u;

// Element `half` (0 = low 16 bits, 1 = high) of one word.
fn decode_one(word: u32, half: u32) -> f32 {
    if (DT == DT_F32) {
        return bitcast<f32>(word);
    } else if (DT == DT_F16) {
        return unpack2x16float(word)[half];
    }
    return bitcast<f32>(select(word << 16u, word & 0xffff0000u, half == 1u));
}

// The low (even-position) and high (odd-position) elements of four 16-bit-pair words.
struct Halves {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn halves(w: vec4<u32>) -> Halves {
    if (DT == DT_F16) {
        let a = unpack2x16float(w.x);
        let b = unpack2x16float(w.y);
        let c = unpack2x16float(w.z);
        let d = unpack2x16float(w.w);
        return Halves(vec4<f32>(a.x, b.x, c.x, d.x), vec4<f32>(a.y, b.y, c.y, d.y));
    }
    return Halves(bitcast<vec4<f32>>(w << vec4<u32>(16u)), bitcast<vec4<f32>>(w & vec4<u32>(0xffff0000u)));
}

// Four words starting `ws` words into the eight words (a, b), and the word after them: a row
// that does not start on a 16-byte boundary is realigned from two aligned vec4 loads.
struct Words {
    c: vec4<u32>,
    d: u32,
}

fn realign(a: vec4<u32>, b: vec4<u32>, ws: u32) -> Words {
    switch ws {
        case 0u: {
            return Words(a, b.x);
        }
        case 1u: {
            return Words(vec4<u32>(a.yzw, b.x), b.y);
        }
        case 2u: {
            return Words(vec4<u32>(a.zw, b.xy), b.z);
        }
        default: {
            return Words(vec4<u32>(a.w, b.xyz), b.w);
        }
    }
}

// Dot product of one row-relative chunk of weights with its x values. For 16-bit dtypes the chunk
// is the 8 elements starting at the low half of w.c (odd = false) or at its high half (odd = true,
// a row starting mid-word); xa, xb are x[0..4], x[4..8]. For f32 the chunk is w.c and xa.
fn chunk_dot(w: Words, odd: bool, xa: vec4<f32>, xb: vec4<f32>) -> f32 {
    if (DT == DT_F32) {
        return dot(bitcast<vec4<f32>>(w.c), xa);
    }
    let x_even = vec4<f32>(xa.x, xa.z, xb.x, xb.z);
    let x_odd = vec4<f32>(xa.y, xa.w, xb.y, xb.w);
    let h = halves(w.c);
    if (odd) {
        // Elements: hi(c.x), lo(c.y), hi(c.y), ..., hi(c.w), lo(d).
        let next = halves(vec4<u32>(w.c.yzw, w.d));
        return dot(h.hi, x_even) + dot(next.lo, x_odd);
    }
    return dot(h.lo, x_even) + dot(h.hi, x_odd);
}

// Chunk decoded to f32: elements 0..4 and 4..8 (16-bit dtypes, aligned chunk), or 0..4 (f32).
struct Chunk {
    a: vec4<f32>,
    b: vec4<f32>,
}

fn decode_chunk(w: vec4<u32>) -> Chunk {
    if (DT == DT_F32) {
        return Chunk(bitcast<vec4<f32>>(w), vec4<f32>(0.0));
    }
    let h = halves(w);
    return Chunk(vec4<f32>(h.lo.x, h.hi.x, h.lo.y, h.hi.y), vec4<f32>(h.lo.z, h.hi.z, h.lo.w, h.hi.w));
}

// erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7); WGSL has no erf.
fn erf_approx(x: f32) -> f32 {
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let r = 1.0 - poly * exp(-a * a);
    return select(r, -r, x < 0.0);
}

fn activate(v: f32) -> f32 {
    if (ACT == ACT_GELU) {
        return 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752));
    } else if (ACT == ACT_SILU) {
        return v / (1.0 + exp(-v));
    }
    return v;
}
