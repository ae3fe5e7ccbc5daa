// Row softmax with a scale: y[r, :] = softmax(scale * x[r, :]), optionally masked in-kernel.
//
// softmax_rows: one workgroup per row, all WG invocations cooperate. Each keeps an
// online (max, sum-of-exp) pair over its strided slice of the row, one reduction combines the
// maxima and one the rescaled sums, then a second sweep writes the output: two reads and one
// write of the row instead of the naive three sweeps by one thread.
// -inf entries contribute nothing; a row with nothing visible gives zeros, not NaN.
//
// Masks, for attention scores laid out [batch * heads, q_len, k_len]
// (row = (b * heads + h) * q_len + i):
//   CAUSAL:            query i sits at absolute position offset + i and sees keys 0..=offset + i;
//   PAD == PAD_LENGTHS: batch b sees keys 0..len[b] (lengths travel in the uniform);
//   PAD == PAD_KEEP:    batch b sees key j where keep[b, j] != 0 (an HF attention_mask as f32).
// A masked key is skipped, never read or replaced by -1e9: it behaves as -inf whatever the
// scores are (even -3e38 or +1e4), and keys past the causal / length bound are not even read.
//
// mask_scores: the unfused baseline (a separate apply-mask pass): writes -inf into masked
// scores in place, to be followed by softmax_rows without a mask.
//
// softmax_row_per_thread: the naive one-thread-per-row kernel, kept as the baseline.

const PAD_NONE: u32 = 0u;
const PAD_LENGTHS: u32 = 1u;
const PAD_KEEP: u32 = 2u;

struct Params {
    rows: u32,
    cols: u32,
    scale: f32,
    q_len: u32,
    heads: u32,
    offset: u32,
    // -inf, for mask_scores: browsers reject -inf as a constant, a uniform value is fine.
    neg_inf: f32,
    _pad: u32,
    lengths: array<vec4<u32>, 16>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> keep: array<f32>;
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;

// Browsers reject -inf as a constant (Tint: "value -inf cannot be represented"), so the running
// maximum starts at the lowest finite f32 and -inf entries are recognised as v < LOWEST.
const LOWEST: f32 = -0x1.fffffep+127f;

// Keys at or past this index are masked for the row (causal and length bounds).
fn visible_end(row: u32) -> u32 {
    var end = p.cols;
    if (CAUSAL) {
        end = min(end, p.offset + row % p.q_len + 1u);
    }
    if (PAD == PAD_LENGTHS) {
        let b = row / p.q_len / p.heads;
        end = min(end, p.lengths[b / 4u][b % 4u]);
    }
    return end;
}

fn kept(row: u32, j: u32) -> bool {
    if (PAD == PAD_KEEP) {
        let b = row / p.q_len / p.heads;
        return keep[b * p.cols + j] != 0.0;
    }
    return true;
}

@compute @workgroup_size(WG)
fn softmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lane: Lane) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    let end = visible_end(row);
    var m = LOWEST;
    var s = 0.0;
    for (var i = lane.index; i < end; i = i + WG) {
        if (!kept(row, i)) {
            continue;
        }
        let v = x[base + i] * p.scale;
        if (v > m) {
            s = s * exp(m - v) + 1.0;
            m = v;
        } else if (v >= LOWEST) {
            s = s + exp(v - m);
        }
    }
    let row_max = wg_max(m, lane);
    var mine = 0.0;
    if (s > 0.0) {
        mine = s * exp(m - row_max);
    }
    let total = wg_sum(mine, lane);
    let inv = select(0.0, 1.0 / total, total > 0.0);
    for (var i = lane.index; i < p.cols; i = i + WG) {
        var out = 0.0;
        if (i < end && kept(row, i)) {
            let v = x[base + i] * p.scale;
            out = select(0.0, exp(v - row_max) * inv, v >= LOWEST);
        }
        y[base + i] = out;
    }
}

@compute @workgroup_size(WG)
fn mask_scores(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.rows * p.cols) {
        return;
    }
    let row = i / p.cols;
    let j = i % p.cols;
    if (j >= visible_end(row) || !kept(row, j)) {
        scores[i] = p.neg_inf;
    }
}

@compute @workgroup_size(WG)
fn softmax_row_per_thread(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * WG;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var m = LOWEST;
    for (var i = 0u; i < p.cols; i = i + 1u) {
        m = max(m, x[base + i] * p.scale);
    }
    var s = 0.0;
    for (var i = 0u; i < p.cols; i = i + 1u) {
        s = s + exp(x[base + i] * p.scale - m);
    }
    for (var i = 0u; i < p.cols; i = i + 1u) {
        y[base + i] = exp(x[base + i] * p.scale - m) / s;
    }
}
