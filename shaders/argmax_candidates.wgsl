// argmax_candidates.wgsl: stage 2 of argmax, the best of each row's block candidates.
//   out[m] = index of the candidate (key, index) in candidates[m, :] with the largest key, ties
//   to the lowest index; 0 when no block had a candidate (a row of NaN). Stage 1 is argmax.wgsl.
//
// Bindings:
//   0  candidates: array<vec2<u32>>  (n_rows, n_blocks) (order key, column index) pairs, read
//   1  out: array<u32>               (n_rows) column index of each row's maximum, written
//   2  params: Params                (the same values as stage 1)
// Workgroup: WG threads (override; a power of two), one workgroup per row (folded 2-D past
// 65535 rows: flat_group_id). Thread j takes candidates j, j + WG, ...; a tree in workgroup
// memory picks the best. Fuses nothing. Reference: reference::argmax::argmax.

override WG: u32 = 256;

struct Params {
    n_rows: u32,
    n: u32,
    block_len: u32,
    n_blocks: u32,
}

@group(0) @binding(0) var<storage, read> candidates: array<vec2<u32>>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

// Index of "no candidate": larger than every real index, so it loses every tie.
const NONE: u32 = 0xffffffffu;

var<workgroup> best_keys: array<u32, WG>;
var<workgroup> best_indices: array<u32, WG>;

// True when (key, index) beats (best_key, best_index): a larger key, or the same key earlier.
fn beats(key: u32, index: u32, best_key: u32, best_index: u32) -> bool {
    return key > best_key || (key == best_key && index < best_index);
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
    var best_key = 0u;
    var best_index = NONE;
    for (var b = lid; b < params.n_blocks; b += WG) {
        let c = candidates[row * params.n_blocks + b];
        if (beats(c.x, c.y, best_key, best_index)) {
            best_key = c.x;
            best_index = c.y;
        }
    }
    best_keys[lid] = best_key;
    best_indices[lid] = best_index;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            let key = best_keys[lid + stride];
            let index = best_indices[lid + stride];
            if (beats(key, index, best_keys[lid], best_indices[lid])) {
                best_keys[lid] = key;
                best_indices[lid] = index;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[row] = select(best_indices[0], 0u, best_indices[0] == NONE);
    }
}
