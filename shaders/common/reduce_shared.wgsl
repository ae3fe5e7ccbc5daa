// Workgroup reductions in shared memory: a tree over WG slots (WG a power of two).
// The fallback that works on every device, and the baseline the subgroup path must beat.
// Interface shared with common/reduce_subgroup.wgsl: struct Lane, wg_sum, wg_max, wg_sum4.
// Call from uniform control flow only (every invocation of the workgroup must reach it).

struct Lane {
    @builtin(local_invocation_index) index: u32,
}

var<workgroup> red_scratch: array<f32, WG>;

fn wg_sum(v: f32, lane: Lane) -> f32 {
    red_scratch[lane.index] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lane.index < s) {
            red_scratch[lane.index] = red_scratch[lane.index] + red_scratch[lane.index + s];
        }
        workgroupBarrier();
    }
    let r = red_scratch[0];
    workgroupBarrier();
    return r;
}

fn wg_max(v: f32, lane: Lane) -> f32 {
    red_scratch[lane.index] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lane.index < s) {
            red_scratch[lane.index] = max(red_scratch[lane.index], red_scratch[lane.index + s]);
        }
        workgroupBarrier();
    }
    let r = red_scratch[0];
    workgroupBarrier();
    return r;
}

// Four sums at once (one tree for four values per invocation: a quarter of the barriers).
var<workgroup> red_scratch4: array<vec4<f32>, WG>;

fn wg_sum4(v: vec4<f32>, lane: Lane) -> vec4<f32> {
    red_scratch4[lane.index] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lane.index < s) {
            red_scratch4[lane.index] = red_scratch4[lane.index] + red_scratch4[lane.index + s];
        }
        workgroupBarrier();
    }
    let r = red_scratch4[0];
    workgroupBarrier();
    return r;
}
