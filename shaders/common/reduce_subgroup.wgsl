// Workgroup reductions with subgroup operations: subgroupAdd / subgroupMax inside
// each subgroup, then one lane per subgroup publishes its partial and every invocation combines
// the partials. Interface shared with common/reduce_shared.wgsl: struct Lane, wg_sum, wg_max, wg_sum4.
//
// No subgroup size is assumed (4..128 occur) and lanes need not be contiguous in
// local_invocation_index: each subgroup takes a slot with an atomic counter. The number of
// partials is WG / subgroup_size (WG is a power of two and a multiple of every subgroup size).
// Call from uniform control flow only.

struct Lane {
    @builtin(local_invocation_index) index: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_size) sg_size: u32,
}

var<workgroup> red_partials: array<f32, WG>;
var<workgroup> red_slots: atomic<u32>;

// The slot counter is reset at the start of each reduction (workgroup memory is not assumed to
// be zero-initialised): reset, barrier, publish, barrier, read. A lane still reading the previous
// reduction's partials holds the next reduction's first barrier, so two barriers suffice.
fn red_publish(partial: f32, lane: Lane) {
    if (lane.index == 0u) {
        atomicStore(&red_slots, 0u);
    }
    workgroupBarrier();
    if (lane.sg_lane == 0u) {
        red_partials[atomicAdd(&red_slots, 1u)] = partial;
    }
    workgroupBarrier();
}

fn wg_sum(v: f32, lane: Lane) -> f32 {
    red_publish(subgroupAdd(v), lane);
    let n = max(WG / lane.sg_size, 1u);
    var r = 0.0;
    for (var i = 0u; i < n; i = i + 1u) {
        r = r + red_partials[i];
    }
    return r;
}

fn wg_max(v: f32, lane: Lane) -> f32 {
    red_publish(subgroupMax(v), lane);
    let n = max(WG / lane.sg_size, 1u);
    var r = red_partials[0];
    for (var i = 1u; i < n; i = i + 1u) {
        r = max(r, red_partials[i]);
    }
    return r;
}

// Four sums at once (one subgroupAdd of a vec4 and one exchange: a quarter of the barriers).
var<workgroup> red_partials4: array<vec4<f32>, WG>;

fn wg_sum4(v: vec4<f32>, lane: Lane) -> vec4<f32> {
    let s = subgroupAdd(v);
    if (lane.index == 0u) {
        atomicStore(&red_slots, 0u);
    }
    workgroupBarrier();
    if (lane.sg_lane == 0u) {
        red_partials4[atomicAdd(&red_slots, 1u)] = s;
    }
    workgroupBarrier();
    let n = max(WG / lane.sg_size, 1u);
    var r = vec4<f32>(0.0);
    for (var i = 0u; i < n; i = i + 1u) {
        r = r + red_partials4[i];
    }
    return r;
}
