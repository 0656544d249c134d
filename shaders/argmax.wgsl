// argmax.wgsl: index of the largest element of each row, portable path (reduction in workgroup
// memory).  out[m] = argmax_i x[m, i]; ties go to the lowest index; NaN never wins (a row of NaN
// only gives 0).
//
// Bindings:
//   0  x: array<f32>    (rows, n) row-major, read
//   1  out: array<u32>  (rows), written
//   2  params: Params
// Workgroup: WG threads (override; a power of two), one workgroup per row (the grid is folded
// 2-D past 65535 rows: flat_group_id). Thread j scans columns j, j + WG, ... (four loads in
// flight per step) keeping its best (key, index); a tree in workgroup memory then picks the best
// of the WG candidates. Values are compared as order keys (order_key), unsigned integers that
// sort like the floats, so NaN handling and ties are exact integer comparisons.
// Variant: argmax_subgroup.wgsl (same bindings; subgroupMax / subgroupMin pick the candidate).
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

var<workgroup> best_keys: array<u32, WG>;
var<workgroup> best_indices: array<u32, WG>;

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
        @builtin(local_invocation_index) lid: u32) {
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

    best_keys[lid] = best_key;
    best_indices[lid] = best_index;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            let other_key = best_keys[lid + stride];
            let other_index = best_indices[lid + stride];
            let mine_key = best_keys[lid];
            if (other_key > mine_key || (other_key == mine_key && other_index < best_indices[lid])) {
                best_keys[lid] = other_key;
                best_indices[lid] = other_index;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[row] = select(best_indices[0], 0u, best_indices[0] == NONE);
    }
}
