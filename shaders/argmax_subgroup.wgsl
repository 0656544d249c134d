// argmax_subgroup.wgsl: index of the largest element of each row, fast path (subgroup
// reduction).  out[m] = argmax_i x[m, i]; ties go to the lowest index; NaN never wins (a row of NaN
// only gives 0).
//
// Bindings:
//   0  x: array<f32>    (rows, n) row-major, read
//   1  out: array<u32>  (rows), written
//   2  params: Params
// Workgroup: WG threads (override), one workgroup per row (the grid is folded
// 2-D past 65535 rows: flat_group_id). Thread j scans columns j, j + WG, ... (four loads in
// flight per step) keeping its best (key, index); subgroupMax finds each subgroup's best key and
// subgroupMin the lowest index holding it; thread 0 then picks the best of the subgroups'
// candidates. Values are compared as order keys (order_key), unsigned integers that
// sort like the floats, so NaN handling and ties are exact integer comparisons.
// Requires: the SUBGROUP feature (any subgroup size). Portable variant: argmax.wgsl.
// Fuses nothing. Reference: reference::argmax::argmax.

override WG: u32 = 256;

struct Params {
    n_rows: u32,
    n: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

// Index of "no candidate yet": larger than every real index, so it loses every tie.
const NONE: u32 = 0xffffffffu;

// Each subgroup's candidate (at most WG subgroups).
var<workgroup> subgroup_keys: array<u32, WG>;
var<workgroup> subgroup_indices: array<u32, WG>;

// An unsigned key that orders like the float: -inf < negatives < 0 < positives < +inf. NaN maps
// to 0, below every number, so it is never chosen; -0 maps to the key of +0, so they tie.
fn order_key(v: f32) -> u32 {
    let bits = bitcast<u32>(v);
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        return 0u;
    }
    if (bits == 0x80000000u) {
        return 0x80000000u;
    }
    if ((bits & 0x80000000u) != 0u) {
        return ~bits;
    }
    return bits | 0x80000000u;
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
    let n = params.n;
    // Each thread visits its columns in increasing order and keeps only a strictly larger key,
    // so within a thread ties already go to the lowest index.
    var best_key = 0u;
    var best_index = NONE;
    var i = lid;
    for (; i + 3u * WG < n; i += 4u * WG) {
        let k0 = order_key(x[base + i]);
        let k1 = order_key(x[base + i + WG]);
        let k2 = order_key(x[base + i + 2u * WG]);
        let k3 = order_key(x[base + i + 3u * WG]);
        if (k0 > best_key) { best_key = k0; best_index = i; }
        if (k1 > best_key) { best_key = k1; best_index = i + WG; }
        if (k2 > best_key) { best_key = k2; best_index = i + 2u * WG; }
        if (k3 > best_key) { best_key = k3; best_index = i + 3u * WG; }
    }
    for (; i < n; i += WG) {
        let k = order_key(x[base + i]);
        if (k > best_key) { best_key = k; best_index = i; }
    }

    let sg_key = subgroupMax(best_key);
    let sg_index = subgroupMin(select(NONE, best_index, best_key == sg_key));
    if (lane == 0u) {
        subgroup_keys[sg_id] = sg_key;
        subgroup_indices[sg_id] = sg_index;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var key = subgroup_keys[0];
        var index = subgroup_indices[0];
        for (var k = 1u; k < n_sg; k++) {
            let other_key = subgroup_keys[k];
            let other_index = subgroup_indices[k];
            if (other_key > key || (other_key == key && other_index < index)) {
                key = other_key;
                index = other_index;
            }
        }
        out[row] = select(index, 0u, index == NONE);
    }
}
