// add_rms_norm.wgsl: residual add, then RMS normalisation of each row, portable path.
//   x[m, i] += y[m, i]
//   out[m, i] = x[m, i] / sqrt(mean_i(x[m, :]^2) + eps) * weight[i]      (x after the add)
// The decoder's "residual connection back into x, then the next block's norm" in one pass: the
// sum is formed, stored and squared in the same loop, so x is read twice instead of three times
// and one dispatch (and the barrier before it) goes away.
//
// Bindings:
//   0  x: array<f32>       (rows, n) row-major, read_write: the residual stream, updated in place
//   1  y: array<f32>       (rows, n) row-major, read: the block output added to x
//   2  weight: array<u32>  (n) f32 words, or f16 pairs when WEIGHT_F16 (element i = half i%2 of
//                          word i/2)
//   3  out: array<f32>     (rows, n) row-major, written; a buffer other than x's and y's
//   4  params: Params
// Workgroup: WG threads (override; a power of two), one workgroup per row (the grid is folded 2-D
// past 65535 rows: flat_group_id). Thread j adds, stores and squares columns j, j + WG, ... (four
// loads in flight per step); a tree in workgroup memory adds the WG partial sums; then thread j
// scales the same columns, reading back the sums it stored itself.
// Variant: add_rms_norm_subgroup.wgsl (same bindings; the sum goes through subgroupAdd).
// Fuses kernels::add::add and kernels::rms_norm::rms_norm (the tests compare with that pair).
// Reference: reference::add::add, then reference::rms_norm::rms_norm.

override WG: u32 = 256;
override WEIGHT_F16: bool = false;

struct Params {
    n_rows: u32,
    n: u32,
    eps: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

var<workgroup> partial: array<f32, WG>;

fn weight_at(i: u32) -> f32 {
    if (WEIGHT_F16) {
        return f16_from_word(weight[i >> 1u], i);
    }
    return bitcast<f32>(weight[i]);
}

// Sum of `v` over the workgroup, returned to every thread.
fn workgroup_sum(v: f32, lid: u32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    return partial[0];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = flat_group_id(wid, nwg);
    // Uniform per workgroup, so returning here keeps the barriers below in uniform control flow.
    if (row >= params.n_rows) {
        return;
    }
    let base = row * params.n;
    // Four loads in flight per step: a thread waits on memory once per four columns, which
    // decides the time of one short row (decode).
    var sum_sq = 0.0;
    var i = lid;
    for (; i + 3u * WG < params.n; i += 4u * WG) {
        let v0 = x[base + i] + y[base + i];
        let v1 = x[base + i + WG] + y[base + i + WG];
        let v2 = x[base + i + 2u * WG] + y[base + i + 2u * WG];
        let v3 = x[base + i + 3u * WG] + y[base + i + 3u * WG];
        x[base + i] = v0;
        x[base + i + WG] = v1;
        x[base + i + 2u * WG] = v2;
        x[base + i + 3u * WG] = v3;
        sum_sq += (v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3);
    }
    for (; i < params.n; i += WG) {
        let v = x[base + i] + y[base + i];
        x[base + i] = v;
        sum_sq += v * v;
    }
    let total = workgroup_sum(sum_sq, lid);
    let scale = inverseSqrt(total / f32(params.n) + params.eps);
    // Each thread reads back only the columns it stored above, so no barrier is needed for x.
    // Loads before stores: bindings may alias, so the compiler keeps loads after earlier stores.
    i = lid;
    for (; i + 3u * WG < params.n; i += 4u * WG) {
        let v0 = x[base + i] * weight_at(i);
        let v1 = x[base + i + WG] * weight_at(i + WG);
        let v2 = x[base + i + 2u * WG] * weight_at(i + 2u * WG);
        let v3 = x[base + i + 3u * WG] * weight_at(i + 3u * WG);
        out[base + i] = v0 * scale;
        out[base + i + WG] = v1 * scale;
        out[base + i + 2u * WG] = v2 * scale;
        out[base + i + 3u * WG] = v3 * scale;
    }
    for (; i < params.n; i += WG) {
        out[base + i] = x[base + i] * weight_at(i) * scale;
    }
}
