// softmax_subgroup.wgsl: softmax over the last axis, in place, fast path (subgroup reductions).
//   x[m, i] = exp(x[m, i] - max_m) / sum_j exp(x[m, j] - max_m)
//
// Bindings:
//   0  x: array<f32>  (rows, n) row-major, read_write
//   1  params: Params
// Workgroup: WG threads (override), one workgroup per row (the grid is folded 2-D past 65535 rows:
// flat_group_id). Thread j reads columns j, j + WG, ... once (four loads in flight per step),
// keeping a running max and a sum of exp(x - running max) rescaled whenever the max grows (online
// softmax); the workgroup then reduces the maxima, then the rescaled sums (each through a subgroup
// op, lane 0 of each subgroup storing the result, every thread combining those few), and thread j
// writes its columns.
// The row is read twice (the second time mostly from cache) and written once.
// Requires: the SUBGROUP feature (any subgroup size). Portable variant: softmax.wgsl.
// A row of -inf only gives NaN (0/0), as in PyTorch. Fuses nothing.
// Reference: reference::softmax::softmax.

override WG: u32 = 256;

struct Params {
    n_rows: u32,
    n: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;

// One value per subgroup (at most WG subgroups).
var<workgroup> per_subgroup: array<f32, WG>;

// Max of `v` over the workgroup, returned to every thread.
fn workgroup_max(v: f32, lane: u32, sg_id: u32, n_sg: u32) -> f32 {
    let m = subgroupMax(v);
    if (lane == 0u) {
        per_subgroup[sg_id] = m;
    }
    workgroupBarrier();
    var result = per_subgroup[0];
    for (var k = 1u; k < n_sg; k++) {
        result = max(result, per_subgroup[k]);
    }
    workgroupBarrier(); // everyone has read per_subgroup before the next reduction overwrites it
    return result;
}

// Sum of `v` over the workgroup, returned to every thread.
fn workgroup_sum(v: f32, lane: u32, sg_id: u32, n_sg: u32) -> f32 {
    let s = subgroupAdd(v);
    if (lane == 0u) {
        per_subgroup[sg_id] = s;
    }
    workgroupBarrier();
    var result = 0.0;
    for (var k = 0u; k < n_sg; k++) {
        result += per_subgroup[k];
    }
    workgroupBarrier();
    return result;
}

// Adds v to a running (max, sum of exp(x - max)), rescaling the sum when the max grows.
fn accumulate(run_max: ptr<function, f32>, run_sum: ptr<function, f32>, v: f32) {
    if (v > *run_max) {
        *run_sum = *run_sum * exp(*run_max - v) + 1.0;
        *run_max = v;
    } else {
        *run_sum += exp(v - *run_max);
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_id) sg_id: u32,
        @builtin(num_subgroups) n_sg: u32) {
    let row = flat_group_id(wid, nwg);
    // Uniform per workgroup, so returning here keeps the barriers below in uniform control flow.
    if (row >= params.n_rows) {
        return;
    }
    let base = row * params.n;
    var run_max = NEG_BIG;
    var run_sum = 0.0;
    // Four loads in flight per step: a thread waits on memory once per four columns.
    var i = lid;
    for (; i + 3u * WG < params.n; i += 4u * WG) {
        let v0 = x[base + i];
        let v1 = x[base + i + WG];
        let v2 = x[base + i + 2u * WG];
        let v3 = x[base + i + 3u * WG];
        accumulate(&run_max, &run_sum, v0);
        accumulate(&run_max, &run_sum, v1);
        accumulate(&run_max, &run_sum, v2);
        accumulate(&run_max, &run_sum, v3);
    }
    for (; i < params.n; i += WG) {
        accumulate(&run_max, &run_sum, x[base + i]);
    }
    let row_max = workgroup_max(run_max, lane, sg_id, n_sg);
    let row_sum = workgroup_sum(run_sum * exp(run_max - row_max), lane, sg_id, n_sg);
    let inv_sum = 1.0 / row_sum;
    // Loads before stores, four at a time (a load cannot move above a store to the same buffer).
    i = lid;
    for (; i + 3u * WG < params.n; i += 4u * WG) {
        let v0 = x[base + i];
        let v1 = x[base + i + WG];
        let v2 = x[base + i + 2u * WG];
        let v3 = x[base + i + 3u * WG];
        x[base + i] = exp(v0 - row_max) * inv_sum;
        x[base + i + WG] = exp(v1 - row_max) * inv_sum;
        x[base + i + 2u * WG] = exp(v2 - row_max) * inv_sum;
        x[base + i + 3u * WG] = exp(v3 - row_max) * inv_sum;
    }
    for (; i < params.n; i += WG) {
        x[base + i] = exp(x[base + i] - row_max) * inv_sum;
    }
}
