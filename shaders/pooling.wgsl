// Sentence embedding pooling (sentence-transformers' Pooling + Normalize modules):
//   MODE 0 (mean):  out[b, :] = mean(h[b, t, :] for t < len[b])
//   MODE 1 (CLS):   out[b, :] = h[b, 0, :]
//   MODE 2 (last):  out[b, :] = h[b, len[b] - 1, :]   (last valid token)
// then optionally L2-normalised. One workgroup per sequence; invocations stride over the hidden
// dimension, each summing its columns over the pooled tokens (padding beyond len[b] is
// ignored), then one wg_sum gives the squared L2 norm. MODE and NORMALIZE are prelude consts.

struct Params {
    batch: u32,
    seq: u32,
    dim: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> h: array<f32>;
@group(0) @binding(2) var<storage, read> lens: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn mean_pool(@builtin(workgroup_id) wid: vec3<u32>, lane: Lane) {
    let b = wid.x;
    if (b >= p.batch) {
        return;
    }
    let valid = min(lens[b], p.seq);
    // Pooled tokens first .. first + n.
    var first = 0u;
    var n = valid;
    if (MODE == 1u) {
        n = min(valid, 1u);
    } else if (MODE == 2u) {
        first = max(valid, 1u) - 1u;
        n = min(valid, 1u);
    }
    let inv_n = select(0.0, 1.0 / f32(n), n > 0u);
    var sq = 0.0;
    for (var c = lane.index; c < p.dim; c = c + WG) {
        var s = 0.0;
        for (var t = first; t < first + n; t = t + 1u) {
            s = s + h[(b * p.seq + t) * p.dim + c];
        }
        let m = s * inv_n;
        out[b * p.dim + c] = m;
        sq = sq + m * m;
    }
    let norm2 = wg_sum(sq, lane);
    if (NORMALIZE) {
        // Same epsilon as torch.nn.functional.normalize (sentence-transformers).
        let inv = 1.0 / max(sqrt(norm2), 1e-12);
        for (var c = lane.index; c < p.dim; c = c + WG) {
            out[b * p.dim + c] = out[b * p.dim + c] * inv;
        }
    }
}
