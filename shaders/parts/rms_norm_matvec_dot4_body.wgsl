// parts/rms_norm_matvec_dot4_body.wgsl: the kernel of rms_norm_matvec_q8_dot4.wgsl and
// rms_norm_matvec_q4_dot4.wgsl, which differ only in the weight format: each splices in its format
// part first (parts/dot4_q8.wgsl or parts/dot4_q4.wgsl: XBlock, x_block, block_dot), then this.
// What it computes, as the Q8 variant says it (the Q4 one reads its layout instead):
// rms_norm_matvec_q8_dot4.wgsl: RMSNorm fused into a Q8 matvec for decode, in integer dot
// products, reduced with subgroupAdd:
//   y[r] = inv_rms * (W . (x * g))[r]   for r < rows,   inv_rms = 1 / sqrt(mean_k(x[k]^2) + eps)
// where W . v is computed as matvec_q8_dot4.wgsl computes it (v rounded to int8 per block of 32
// inside the kernel, then dot4I8Packed with the quants; read that file's header for the formula,
// the quant layout and why). Here the rounded vector is v = x * g, formed as x and g are loaded,
// and each thread also sums x^2 over its blocks; the subgroups fold x^2 with the row sums and
// the 1 / rms scales each row at the end (it is common to every element, so it commutes with
// the rounding). The same as rms_norm.wgsl then matvec_q8_dot4.wgsl, without the normalised
// vector or its dispatch.
//
// Bindings: 0 quants, 1 scales: the whole weight [rows, k] in the Q8 layout (as in
//   matvec_q8_dot4.wgsl); 2 x: array<vec4<f32>> (k) the vector to normalise; 3 g:
//   array<vec4<f32>> (k) the norm's weight; 4 y: array<f32> (rows) written; 5 params: Params.
// Workgroup: WORKGROUP_SIZE threads (override) own ROWS consecutive rows (override, <= MAX_ROWS);
// thread t takes blocks t, t + WORKGROUP_SIZE, ... of all ROWS rows, as in matvec_q8_dot4.wgsl.
// One scale per block of 32 (a Q8 group).
// Grid: ceil(rows / ROWS) workgroups, folded 2-D when large (flat_group_id).
// Requires: k % 32 == 0 (the dtype guarantees it), 16-byte aligned bindings, the weight within
// one storage binding, the subgroup feature. Fuses rms_norm and the dequantizing matvec.
// Reference: reference::matvec::round_x_int8 of x * g, then as matvec_q8_dot4.wgsl, times
// inv_rms (the tests compare with rms_norm then the Dot4 matvec's reference).

// The x blocks: x * g, rounded by the format part.
// include: dot4_norm_x
struct Params {
    rows: u32,        // rows of W (all in one binding)
    k: u32,           // elements per row (= length of x)
    row_words: u32,   // vec4 quant words per row: k / 16 (Q8) or k / 32 (Q4)
    eps: f32,         // added to mean(x^2) under the square root
}

@group(0) @binding(0) var<storage, read> quants: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;

override WORKGROUP_SIZE: u32 = 128u;
override ROWS: u32 = 8u;

// Per-thread accumulators: a function-scope array of constant size; ROWS may not exceed it
// (kernels::matvec::MAX_DOT4_ROWS).
const MAX_ROWS: u32 = 16u;

// Each subgroup's sum for each row, then for x^2: [ROWS + 1][WORKGROUP_SIZE].
override SUMS: u32 = ROWS + 1u;
// include: workgroup_sums_subgroup

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
    var sum_sq = 0.0;
    for (var b = lid; b < blocks; b += WORKGROUP_SIZE) {
        let xb = x_block(b);
        sum_sq += xb.sum_sq;
        for (var r = 0u; r < ROWS; r++) {
            let row = min(row0 + r, params.rows - 1u);
            acc[r] += block_dot(row, b, xb);
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        keep_sum(r, acc[r], ids);
    }
    keep_sum(ROWS, sum_sq, ids);
    fold_sums(ids);
    for (var r = lid; r < ROWS && row0 + r < params.rows; r += WORKGROUP_SIZE) {
        var total = workgroup_sum(r, ids);
        var total_sq = workgroup_sum(ROWS, ids);
        y[row0 + r] = total * inverseSqrt(total_sq / f32(params.k) + params.eps);
    }
}
