// parts/matvec_dot4_body.wgsl: the kernel of matvec_q8_dot4.wgsl and matvec_q4_dot4.wgsl, which
// differ only in the weight format: each splices in its format part first (parts/dot4_q8.wgsl or
// parts/dot4_q4.wgsl: XBlock, round_x_block, block_dot), then this. Their headers give the
// formula and the layouts; the workgroup: WORKGROUP_SIZE threads own ROWS consecutive rows, thread
// t takes blocks of 32 elements t, t + WORKGROUP_SIZE, ...: it rounds the block's x to int8 once,
// then adds each row's block_dot to that row's partial sum; the sums are folded by subgroupAdd
// (parts/workgroup_sums_subgroup.wgsl) and thread r writes row r (or adds it, with ACCUMULATE).
struct Params {
    rows: u32,        // rows of W in this dispatch
    k: u32,           // elements per row (= length of x)
    row_words: u32,   // vec4 quant words per row: k / 16 (Q8) or k / 32 (Q4)
    row_offset: u32,  // index in y of this dispatch's first row
}

@group(0) @binding(0) var<storage, read> quants: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 128u;
override ROWS: u32 = 8u;
// The epilogue: y = W x, or with ACCUMULATE y += W x (a residual connection added in place).
override ACCUMULATE: bool = false;

// Per-thread accumulators: a function-scope array of constant size; ROWS may not exceed it
// (kernels::matvec::MAX_DOT4_ROWS).
const MAX_ROWS: u32 = 16u;

// Each subgroup's sum for each row: [ROWS][WORKGROUP_SIZE] (at most one subgroup per thread).
override SUMS: u32 = ROWS;
// include: workgroup_sums_subgroup

// x block b (elements 32b .. 32b + 32), rounded by the format part.
fn x_block(b: u32) -> XBlock {
    return round_x_block(array<vec4<f32>, 8>(x[8u * b], x[8u * b + 1u], x[8u * b + 2u], x[8u * b + 3u],
                                             x[8u * b + 4u], x[8u * b + 5u], x[8u * b + 6u], x[8u * b + 7u]));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32,
        @builtin(subgroup_id) subgroup: u32,
        @builtin(num_subgroups) n_subgroups: u32) {
    let ids = SumIds(lid, lane, subgroup, n_subgroups);
    let row0 = flat_group_id(wid, nwg) * ROWS;
    let blocks = params.k / 32u;
    // A workgroup past the last row re-reads the last row and does not store those sums.
    var acc: array<f32, MAX_ROWS>;  // zero-initialized
    for (var b = lid; b < blocks; b += WORKGROUP_SIZE) {
        let xb = x_block(b);
        for (var r = 0u; r < ROWS; r++) {
            let row = min(row0 + r, params.rows - 1u);
            acc[r] += block_dot(row, b, xb);
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        keep_sum(r, acc[r], ids);
    }
    fold_sums(ids);
    for (var r = lid; r < ROWS && row0 + r < params.rows; r += WORKGROUP_SIZE) {
        var total = workgroup_sum(r, ids);
        let i = params.row_offset + row0 + r;
        if (ACCUMULATE) {
            y[i] += total;
        } else {
            y[i] = total;
        }
    }
}
