// Row softmax with a scale: y[r, :] = softmax(scale * x[r, :]).
//
// softmax_rows (seed item 1): one workgroup per row, all WG invocations cooperate. Each keeps an
// online (max, sum-of-exp) pair over its strided slice of the row, one reduction combines the
// maxima and one the rescaled sums, then a second sweep writes the output: two reads and one
// write of the row instead of the naive three sweeps by one thread.
// -inf entries (masked) contribute nothing; a row that is entirely -inf gives zeros, not NaN.
//
// Rows of up to WG * CACHED elements are read once into registers (one read, one write: the
// traffic of a copy); longer rows take the streaming path.
//
// softmax_row_per_thread: the seed's original one-thread-per-row kernel, kept as the baseline.

struct Params {
    rows: u32,
    cols: u32,
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// Browsers reject -inf as a constant (Tint: "value -inf cannot be represented"), so the running
// maximum starts at the lowest finite f32 and masked entries are recognised as v < LOWEST.
const LOWEST: f32 = -0x1.fffffep+127f;

const CACHED: u32 = 16u;

@compute @workgroup_size(WG)
fn softmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, lane: Lane) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    if (p.cols <= WG * CACHED) {
        var vals: array<f32, CACHED>;
        var m = LOWEST;
        for (var k = 0u; k < CACHED; k = k + 1u) {
            let i = lane.index + k * WG;
            var v = LOWEST;
            if (i < p.cols) {
                v = x[base + i] * p.scale;
            }
            vals[k] = v;
            m = max(m, v);
        }
        let row_max = wg_max(m, lane);
        var s = 0.0;
        for (var k = 0u; k < CACHED; k = k + 1u) {
            let i = lane.index + k * WG;
            if (i < p.cols && vals[k] >= LOWEST) {
                s = s + exp(vals[k] - row_max);
            }
        }
        let total = wg_sum(s, lane);
        let inv = select(0.0, 1.0 / total, total > 0.0);
        for (var k = 0u; k < CACHED; k = k + 1u) {
            let i = lane.index + k * WG;
            if (i < p.cols) {
                y[base + i] = select(0.0, exp(vals[k] - row_max) * inv, vals[k] >= LOWEST);
            }
        }
        return;
    }
    var m = LOWEST;
    var s = 0.0;
    for (var i = lane.index; i < p.cols; i = i + WG) {
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
        let v = x[base + i] * p.scale;
        y[base + i] = select(0.0, exp(v - row_max) * inv, v >= LOWEST);
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
