// argmax.wgsl: stage 1 of argmax, the best element of each block of a row.
//   candidates[m, b] = (order_key(x[m, i]), i) for the largest x[m, i] in block b, i.e. columns
//   b * block_len .. min(n, (b + 1) * block_len); ties to the lowest index; NaN never chosen
//   (a block of NaN gives index NONE). Stage 2, argmax_candidates.wgsl, picks the best block.
//
// Bindings:
//   0  x: array<f32>                  (n_rows, n) row-major, read
//   1  candidates: array<vec2<u32>>   (n_rows, n_blocks) (key, index) pairs, written
//   2  params: Params
// Workgroup: WG threads (override; a power of two), one workgroup per (row, block): group
// g = row * n_blocks + b (folded 2-D past 65535 groups: flat_group_id). Thread j scans columns
// start + j, start + j + WG, ... (four loads in flight per step) keeping its best (key, index);
// a tree in workgroup memory picks the best of the WG candidates. Splitting a row into blocks
// spreads one long row (a vocabulary) over many workgroups: on an H200 a single workgroup took
// 40 us for 151936 columns. Values are compared as order keys, unsigned integers that sort like
// the floats, so NaN handling and ties are exact integer comparisons.
// Fuses nothing. Reference: reference::argmax::argmax (of both stages together).

override WG: u32 = 256;

struct Params {
    n_rows: u32,
    n: u32,
    block_len: u32,
    n_blocks: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> candidates: array<vec2<u32>>;
@group(0) @binding(2) var<uniform> params: Params;

// Index of "no candidate": larger than every real index, so it loses every tie.
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

// Replaces the running best when `key` is strictly larger: a thread visits its columns in
// increasing order, so within a thread ties already go to the lowest index.
fn keep_larger(best_key: ptr<function, u32>, best_index: ptr<function, u32>, key: u32, index: u32) {
    if (key > *best_key) {
        *best_key = key;
        *best_index = index;
    }
}

// True when (key, index) beats (best_key, best_index): a larger key, or the same key earlier.
fn beats(key: u32, index: u32, best_key: u32, best_index: u32) -> bool {
    return key > best_key || (key == best_key && index < best_index);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let g = flat_group_id(wid, nwg);
    // Uniform per workgroup, so returning here keeps the barriers below in uniform control flow.
    if (g >= params.n_rows * params.n_blocks) {
        return;
    }
    let row = g / params.n_blocks;
    let start = (g % params.n_blocks) * params.block_len;
    let end = min(params.n, start + params.block_len);
    let base = row * params.n;
    var best_key = 0u;
    var best_index = NONE;
    var i = start + lid;
    for (; i + 3u * WG < end; i += 4u * WG) {
        let k0 = order_key(x[base + i]);
        let k1 = order_key(x[base + i + WG]);
        let k2 = order_key(x[base + i + 2u * WG]);
        let k3 = order_key(x[base + i + 3u * WG]);
        keep_larger(&best_key, &best_index, k0, i);
        keep_larger(&best_key, &best_index, k1, i + WG);
        keep_larger(&best_key, &best_index, k2, i + 2u * WG);
        keep_larger(&best_key, &best_index, k3, i + 3u * WG);
    }
    for (; i < end; i += WG) {
        keep_larger(&best_key, &best_index, order_key(x[base + i]), i);
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
        candidates[g] = vec2<u32>(best_keys[0], best_indices[0]);
    }
}
