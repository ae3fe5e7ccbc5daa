// Helpers shared by the attention and KV-cache kernels (concatenated in front of them by the Rust
// side, after shaders/common/rope.wgsl): the KV storage formats.

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
